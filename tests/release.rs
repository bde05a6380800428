//! `scripts/release.sh`: the tarball a user installs from. The script packages
//! the exporter this test build already made (`--binary`), so CI compiles
//! nothing more for it; the release build itself is the Dockerfile's build
//! command, which tests/deploy.rs holds to what CI builds.

mod contract;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use contract::root;

const EXPORTER: &str = env!("CARGO_BIN_EXE_mig-exporter");
const VERSION: &str = env!("CARGO_PKG_VERSION");

fn top_dir() -> String {
    format!("mig-exporter-{VERSION}-linux-{}", std::env::consts::ARCH)
}

fn tarball_name() -> String {
    format!("{}.tar.gz", top_dir())
}

fn release(args: &[&str]) -> Output {
    Command::new("bash")
        .arg(root().join("scripts/release.sh"))
        .args(args)
        .output()
        .expect("run scripts/release.sh")
}

/// One packaging of the test build's exporter, shared by the tests that read
/// it: the output directory, and the tarball unpacked beside it.
fn packaged() -> &'static (PathBuf, PathBuf) {
    static PACKAGED: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    PACKAGED.get_or_init(|| {
        let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("release-test");
        let _ = std::fs::remove_dir_all(&base);
        let out = base.join("dist");
        let out_arg = out.to_str().expect("UTF-8 path");
        let run = release(&["--binary", EXPORTER, "--out", out_arg]);
        assert!(
            run.status.success(),
            "scripts/release.sh failed: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        let unpacked = base.join("unpacked");
        std::fs::create_dir_all(&unpacked).unwrap();
        let untar = Command::new("tar")
            .arg("-xzf")
            .arg(out.join(tarball_name()))
            .arg("-C")
            .arg(&unpacked)
            .output()
            .expect("run tar");
        assert!(
            untar.status.success(),
            "{}",
            String::from_utf8_lossy(&untar.stderr)
        );
        (out, unpacked)
    })
}

/// Every file under `dir`, relative to `base`, with `/` separators.
fn files_under(base: &Path, dir: &Path, out: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(base, &path, out);
        } else {
            out.insert(path.strip_prefix(base).unwrap().to_string_lossy().into_owned());
        }
    }
}

fn names_in(dir: &str, suffix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root().join(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(suffix))
        .collect();
    names.sort();
    names
}

#[test]
fn the_tarball_holds_the_binary_dashboards_alert_rules_units_and_docs() {
    let (out, _) = packaged();
    let listing = Command::new("tar")
        .arg("-tzf")
        .arg(out.join(tarball_name()))
        .output()
        .expect("run tar");
    assert!(
        listing.status.success(),
        "{}",
        String::from_utf8_lossy(&listing.stderr)
    );
    let files: BTreeSet<String> = String::from_utf8(listing.stdout)
        .expect("UTF-8 listing")
        .lines()
        .filter(|l| !l.ends_with('/'))
        .map(str::to_string)
        .collect();

    let top = top_dir();
    let mut expected: BTreeSet<String> = [
        "mig-exporter",
        "LICENSE",
        "README.md",
        "CHANGELOG.md",
        "BUILD-INFO",
    ]
    .iter()
    .map(|f| format!("{top}/{f}"))
    .collect();
    expected.insert(format!("{top}/alerts/mig-exporter.rules.yml"));
    for unit in names_in("deploy/systemd", ".service") {
        expected.insert(format!("{top}/systemd/{unit}"));
    }
    for doc in names_in("docs", ".md") {
        expected.insert(format!("{top}/docs/{doc}"));
    }
    let mut dashboards = BTreeSet::new();
    files_under(&root(), &root().join("dashboards"), &mut dashboards);
    expected.extend(dashboards.iter().map(|d| format!("{top}/{d}")));
    assert!(
        expected.contains(&format!("{top}/docs/stability.md"))
            && expected.contains(&format!("{top}/dashboards/mig-node.json")),
        "{expected:?}"
    );

    assert_eq!(files, expected, "the tarball's files");
    assert!(
        !files.iter().any(|f| f.contains("alerts/tests")),
        "the promtool tests stay out"
    );
}

#[test]
fn the_packaged_binary_is_the_given_one_executable_and_of_this_version() {
    let (_, unpacked) = packaged();
    let binary = unpacked.join(top_dir()).join("mig-exporter");
    let packed = std::fs::read(&binary).expect("packaged binary");
    assert!(packed == std::fs::read(EXPORTER).expect("test build's binary"));
    let mode = std::fs::metadata(&binary).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o755, "{}", binary.display());
    let version = Command::new(&binary).arg("--version").output().expect("run it");
    let version = String::from_utf8_lossy(&version.stdout);
    assert!(version.split_whitespace().any(|w| w == VERSION), "{version}");
}

#[test]
fn the_checksum_file_verifies_the_tarball() {
    let (out, _) = packaged();
    let sums = std::fs::read_to_string(out.join("sha256sums.txt")).expect("sha256sums.txt");
    let lines: Vec<&str> = sums.lines().collect();
    assert_eq!(lines.len(), 1, "{sums}");
    let (hex, name) = lines[0]
        .split_once("  ")
        .expect("`HASH  NAME` as sha256sum writes it");
    assert_eq!(name, tarball_name());
    let bytes = std::fs::read(out.join(name)).expect("tarball");
    let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
    let computed: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, computed);
    let check = Command::new("sha256sum")
        .args(["--check", "--strict", "sha256sums.txt"])
        .current_dir(out)
        .output()
        .expect("run sha256sum");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

/// The newest `GLIBC_x.y` symbol version in `binary`, read independently of the script.
fn newest_glibc(binary: &[u8]) -> Option<Vec<u32>> {
    let mut newest: Option<Vec<u32>> = None;
    for (at, _) in binary.windows(6).enumerate().filter(|(_, w)| *w == b"GLIBC_") {
        let rest = &binary[at + 6..];
        let end = rest
            .iter()
            .position(|c| !(c.is_ascii_digit() || *c == b'.'))
            .unwrap_or(rest.len());
        let Ok(text) = std::str::from_utf8(&rest[..end]) else {
            continue;
        };
        let parts: Option<Vec<u32>> = text
            .trim_end_matches('.')
            .split('.')
            .map(|p| p.parse().ok())
            .collect();
        if let Some(parts) = parts.filter(|p| p.len() >= 2) {
            if newest.as_ref().is_none_or(|n| parts > *n) {
                newest = Some(parts);
            }
        }
    }
    newest
}

#[test]
fn build_info_names_the_version_target_and_oldest_glibc_the_binary_runs_on() {
    let (_, unpacked) = packaged();
    let info = std::fs::read_to_string(unpacked.join(top_dir()).join("BUILD-INFO")).expect("BUILD-INFO");
    let field = |key: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}: ")))
            .unwrap_or_else(|| panic!("BUILD-INFO has no {key}: {info}"))
            .to_string()
    };
    assert_eq!(field("version"), VERSION);
    assert_eq!(
        field("target"),
        format!("{}-unknown-linux-gnu", std::env::consts::ARCH)
    );
    let glibc = newest_glibc(&std::fs::read(EXPORTER).unwrap()).expect("a glibc build");
    let glibc: Vec<String> = glibc.iter().map(u32::to_string).collect();
    assert_eq!(field("minimum glibc"), glibc.join("."));
}

#[test]
fn what_is_not_this_versions_exporter_is_refused_with_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("dist");
    let out_arg = out.to_str().unwrap();
    let script = dir.path().join("mig-exporter");
    std::fs::write(&script, format!("#!/bin/sh\necho 'mig-exporter {VERSION}'\n")).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    // The test binary itself: an executable of this machine that is no exporter.
    let other = std::env::current_exe().unwrap();
    let missing = dir.path().join("absent");
    for (binary, says) in [
        (script.as_path(), "not an ELF executable"),
        (other.as_path(), "--version"),
        (missing.as_path(), "no such file"),
    ] {
        let run = release(&["--binary", binary.to_str().unwrap(), "--out", out_arg]);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success(), "{}: packaged", binary.display());
        assert!(
            stderr.contains(&binary.display().to_string()) && stderr.contains(says),
            "{}: {stderr}",
            binary.display()
        );
        assert!(!out.exists(), "{}: wrote {}", binary.display(), out.display());
    }
    let run = release(&["--binry", EXPORTER]);
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("unknown argument '--binry'"));
}

#[test]
fn the_changelog_and_readme_link_the_stability_promise() {
    let changelog = std::fs::read_to_string(root().join("CHANGELOG.md")).expect("CHANGELOG.md");
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    assert!(root().join("docs/stability.md").is_file());
    assert!(
        changelog.contains("(docs/stability.md)"),
        "CHANGELOG.md links docs/stability.md"
    );
    assert!(
        readme.contains("(docs/stability.md)"),
        "README.md links docs/stability.md"
    );
    // Keep a Changelog: the version Cargo.toml builds has its section, or is still Unreleased.
    assert!(
        changelog.contains("## [Unreleased]") || changelog.contains(&format!("## [{VERSION}]")),
        "CHANGELOG.md has no section for {VERSION}"
    );
}

/// `version` as (major, minor), e.g. "1.88" or "1.85.0".
fn major_minor(version: &str) -> (u32, u32) {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// What `cargo install --locked --path .` builds, from `cargo metadata`: the
/// exporter and every package it reaches through normal and build
/// dependencies with the default features (dev dependencies left out).
fn installed_packages() -> Vec<serde_json::Value> {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--locked", "--format-version", "1"])
        .current_dir(root())
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("cargo metadata JSON");
    let packages = meta["packages"].as_array().expect("packages");
    let nodes = meta["resolve"]["nodes"].as_array().expect("resolve nodes");
    let exporter = packages
        .iter()
        .find(|p| p["name"] == "mig-exporter")
        .expect("the mig-exporter package")["id"]
        .clone();
    let mut reached = BTreeSet::new();
    let mut todo = vec![exporter];
    while let Some(id) = todo.pop() {
        let Some(id_str) = id.as_str() else { continue };
        if !reached.insert(id_str.to_string()) {
            continue;
        }
        let node = nodes
            .iter()
            .find(|n| n["id"] == id)
            .expect("a resolve node per package");
        for dep in node["deps"].as_array().into_iter().flatten() {
            let kinds = dep["dep_kinds"].as_array().into_iter().flatten();
            if kinds
                .into_iter()
                .any(|k| k["kind"].is_null() || k["kind"] == "build")
            {
                todo.push(dep["pkg"].clone());
            }
        }
    }
    packages
        .iter()
        .filter(|p| p["id"].as_str().is_some_and(|id| reached.contains(id)))
        .cloned()
        .collect()
}

/// The README promises that `cargo install` works with Rust 1.88 (the
/// workspace's `rust-version`; clippy's `incompatible_msrv` holds our own code
/// to it) and needs no libclang. No toolchain other than CI's compiles it
/// here, so this checks what each dependency declares: none may need a newer
/// Rust, and bindgen (which loads libclang) stays behind the optional
/// `dcgm-bindgen` feature.
#[test]
fn the_install_build_needs_no_newer_rust_than_declared_and_no_libclang() {
    let ours = major_minor(env!("CARGO_PKG_RUST_VERSION"));
    assert_eq!(
        ours,
        (1, 88),
        "the README and docs/install.md say Rust 1.88: update them with rust-version"
    );
    let packages = installed_packages();
    assert!(
        packages.len() > 50,
        "too few packages reached: {}",
        packages.len()
    );
    let name = |p: &serde_json::Value| p["name"].as_str().unwrap_or("?").to_string();
    let newer: Vec<String> = packages
        .iter()
        .filter_map(|p| {
            let needs = p["rust_version"].as_str()?;
            (major_minor(needs) > ours).then(|| format!("{} {} needs Rust {needs}", name(p), p["version"]))
        })
        .collect();
    assert!(
        newer.is_empty(),
        "dependencies of `cargo install` need a newer Rust than 1.88: {newer:?}"
    );
    let clang: Vec<String> = packages
        .iter()
        .map(name)
        .filter(|n| ["bindgen", "clang-sys"].contains(&n.as_str()))
        .collect();
    assert!(
        clang.is_empty(),
        "the default build pulls in libclang through {clang:?}"
    );
}
