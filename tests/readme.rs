//! Every command in the README runs in a test. The commands are the lines of
//! its fenced shell blocks (`sh`, `bash`, `shell`; a line ending in `\`
//! continues on the next) and inline code that starts like a command line
//! (`mig-exporter --nvml …`, `kubectl apply …`). [`COMMANDS`] says for each
//! one how it is tested: run here, for real, against the test build and the
//! test doubles (the demo start, the tarball install into a scratch root, the
//! scrape with curl, `geometry` and `check`, `helm template` and `helm lint`
//! with the README's values), or, where it cannot run here (a registry push,
//! a cluster, a full release build), the existing test that checks its
//! effect. A command added to the README without an entry fails
//! [`every_command_in_the_readme_is_run_here_or_names_the_test_of_its_effect`],
//! and so does an entry whose command left the README or whose test is gone.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::daemon::{free_address, http};
use common::{built, mig_sim, EXPORTER, NO_DRIVER, NVML_LIBRARY_ENV};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn readme() -> String {
    std::fs::read_to_string(root().join("README.md")).expect("README.md")
}

/// How a README command is tested.
enum How {
    /// Run in this file, by the test function named.
    Here(&'static str),
    /// Cannot run here; `test` (file and function) checks what it does.
    Elsewhere {
        file: &'static str,
        function: &'static str,
    },
}
use How::{Elsewhere, Here};

/// Every command of the README, exactly as the README writes it (a
/// continued line joined with single spaces), and how it is tested.
const COMMANDS: &[(&str, How)] = &[
    // Quick start: the demo. Run as `cargo run` runs it: the package's only
    // binary, with no arguments, on a machine without NVIDIA's driver.
    ("cargo run --release", Here("the_quick_start_serves_the_marked_demo")),
    // Quick start: the tests. Not run from inside the tests it runs: CI's
    // entry point must be exactly this command.
    ("bash scripts/test.sh", Here("the_test_command_is_what_ci_runs")),
    // Install on a GPU node. A release build takes minutes: tests/release.rs
    // runs the script on the test build (`--binary`), which packs the same
    // files; the lines after it run here on such a tarball.
    (
        "bash scripts/release.sh",
        Elsewhere {
            file: "tests/release.rs",
            function: "the_tarball_holds_the_binary_dashboards_alert_rules_units_and_docs",
        },
    ),
    ("cd target/release-dist && sha256sum -c sha256sums.txt", Here("the_tarball_install_runs_into_a_scratch_root")),
    ("tar -xzf mig-exporter-0.1.0-linux-x86_64.tar.gz", Here("the_tarball_install_runs_into_a_scratch_root")),
    (
        "sudo install -m 0755 mig-exporter-0.1.0-linux-x86_64/mig-exporter /usr/local/bin/",
        Here("the_tarball_install_runs_into_a_scratch_root"),
    ),
    (
        "sudo install -m 0644 mig-exporter-0.1.0-linux-x86_64/systemd/mig-exporter.service /etc/systemd/system/",
        Here("the_tarball_install_runs_into_a_scratch_root"),
    ),
    (
        "sudo install -m 0644 mig-exporter-0.1.0-linux-x86_64/systemd/mig-exporter-check.service /etc/systemd/system/",
        Here("the_tarball_install_runs_into_a_scratch_root"),
    ),
    // systemctl needs a booted systemd and root; the installed units are
    // read here (what `enable --now` acts on), and tests/deploy.rs runs
    // their command lines' flags through the exporter's parser.
    ("sudo systemctl daemon-reload", Here("the_installed_units_are_what_systemctl_enables")),
    ("sudo systemctl enable --now mig-exporter", Here("the_installed_units_are_what_systemctl_enables")),
    ("mig-exporter --nvml --no-kubelet", Here("the_installed_units_are_what_systemctl_enables")),
    // A second release build, into ~/.cargo: the Dockerfile's build stage
    // builds the same package the same way (`cargo build --release --locked`),
    // which tests/deploy.rs checks against what CI builds.
    (
        "cargo install --locked --path .",
        Elsewhere {
            file: "tests/deploy.rs",
            function: "the_image_build_stage_copies_what_exists_and_builds_what_ci_builds",
        },
    ),
    (
        "curl -s localhost:10110/metrics | grep -E '^mig_exporter_(source_up|simulated)'",
        Here("the_node_checks_run_on_fake_nvml"),
    ),
    ("mig-exporter geometry --nvml", Here("the_node_checks_run_on_fake_nvml")),
    // Kubernetes. No Docker daemon or registry here: tests/deploy.rs checks
    // that the Dockerfile builds what CI builds, tests/start.rs runs the
    // image's entrypoint, and the chart below runs the pushed name.
    (
        "docker build -t registry.example.com/mig-exporter:0.1.0 .",
        Elsewhere {
            file: "tests/start.rs",
            function: "the_image_reads_the_hardware_whatever_arguments_docker_run_gives",
        },
    ),
    ("docker push registry.example.com/mig-exporter:0.1.0", Here("the_helm_install_renders_and_lints_with_the_readme_values")),
    ("kubectl create namespace mig-exporter", Here("the_namespace_commands_give_the_manifests_labels")),
    (
        "kubectl label namespace mig-exporter pod-security.kubernetes.io/enforce=privileged \
         pod-security.kubernetes.io/audit=privileged pod-security.kubernetes.io/warn=privileged",
        Here("the_namespace_commands_give_the_manifests_labels"),
    ),
    (
        "helm install mig-exporter deploy/helm/mig-exporter --namespace mig-exporter \
         --set image.repository=registry.example.com/mig-exporter --set image.tag=0.1.0",
        Here("the_helm_install_renders_and_lints_with_the_readme_values"),
    ),
    (
        "kubectl -n mig-exporter rollout status daemonset/mig-exporter",
        Here("the_helm_install_renders_and_lints_with_the_readme_values"),
    ),
    // Needs a cluster: tests/deploy.rs reads every manifest into the API types.
    (
        "kubectl apply -f deploy/",
        Elsewhere {
            file: "tests/deploy.rs",
            function: "every_manifest_matches_the_kubernetes_types_with_no_unknown_field",
        },
    ),
    ("mig-exporter check", Here("check_tells_ok_from_drift_on_fake_nvml")),
    (
        "mig-exporter check --nvml --mig.config /etc/mig.yaml --mig.config-name all-1g.10gb",
        Here("check_tells_ok_from_drift_on_fake_nvml"),
    ),
    // Compatibility: the GPU models with a built-in table.
    ("mig-sim products", Here("the_gpu_models_named_are_those_mig_sim_lists")),
    // Needs a collector: tests/otlp.rs pushes to a real HTTP receiver.
    (
        "mig-exporter --nvml --otlp.endpoint http://collector:4318",
        Elsewhere {
            file: "tests/otlp.rs",
            function: "http_pushes_go_to_the_signal_path_with_the_headers_of_the_environment",
        },
    ),
    // Needs certificates and a client: tests/web_security.rs serves a web
    // config with TLS and basic auth to curl.
    (
        "mig-exporter --nvml --web.config.file /etc/mig-exporter/web.yml",
        Elsewhere {
            file: "tests/web_security.rs",
            function: "basic_auth_guards_every_page_and_never_logs_a_secret",
        },
    ),
];

/// Programs whose name opens inline code that is a command line.
const PROGRAMS: [&str; 11] = [
    "mig-exporter",
    "mig-sim",
    "cargo",
    "bash",
    "curl",
    "sudo",
    "systemctl",
    "kubectl",
    "helm",
    "docker",
    "nvidia-smi",
];

/// The commands of a README: fenced shell blocks line by line, then inline
/// code (which may wrap across lines) that starts with one of [`PROGRAMS`]
/// and a space, or is `mig-exporter check`.
fn commands(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut prose = String::new();
    let mut fence: Option<bool> = None; // Some(is shell) inside a block
    let mut pending = String::new();
    for line in text.lines() {
        if let Some(info) = line.strip_prefix("```") {
            fence = match fence {
                None => Some(matches!(info.trim(), "sh" | "bash" | "shell")),
                Some(_) => None,
            };
            continue;
        }
        match fence {
            Some(true) => {
                // A comment after the command is not part of it.
                let line = line.split(" #").next().unwrap_or(line).trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                if let Some(head) = line.strip_suffix('\\') {
                    pending.push_str(head.trim_end());
                    pending.push(' ');
                    continue;
                }
                pending.push_str(line);
                found.push(std::mem::take(&mut pending));
            }
            Some(false) => {}
            None => {
                prose.push_str(line);
                prose.push('\n');
            }
        }
    }
    assert!(
        pending.is_empty(),
        "a shell block ends in a continued line: {pending}"
    );
    for code in prose.split('`').skip(1).step_by(2) {
        let code = code.split_whitespace().collect::<Vec<_>>().join(" ");
        if PROGRAMS.iter().any(|p| code.starts_with(&format!("{p} "))) || code == "mig-exporter check" {
            found.push(code);
        }
    }
    found
}

#[test]
fn every_command_in_the_readme_is_run_here_or_names_the_test_of_its_effect() {
    let in_readme: BTreeSet<String> = commands(&readme()).into_iter().collect();
    let table: BTreeMap<&str, &How> = COMMANDS.iter().map(|(c, h)| (*c, h)).collect();
    assert_eq!(table.len(), COMMANDS.len(), "a command listed twice in COMMANDS");
    let untested: Vec<&String> = in_readme
        .iter()
        .filter(|c| !table.contains_key(c.as_str()))
        .collect();
    assert!(
        untested.is_empty(),
        "README commands with no test: run each in tests/readme.rs, or name the test of its effect in COMMANDS: {untested:#?}"
    );
    let gone: Vec<&&str> = table.keys().filter(|c| !in_readme.contains(**c)).collect();
    assert!(
        gone.is_empty(),
        "COMMANDS lists commands the README no longer has: {gone:#?}"
    );

    let this_file = include_str!("readme.rs");
    for (command, how) in COMMANDS {
        match how {
            Here(function) => assert!(
                this_file.contains(&format!("#[test]\nfn {function}()")),
                "{command}: tests/readme.rs has no test `{function}`"
            ),
            Elsewhere { file, function } => {
                let text =
                    std::fs::read_to_string(root().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
                assert!(
                    text.contains(&format!("#[test]\nfn {function}()")),
                    "{command}: {file} has no test `{function}`"
                );
            }
        }
    }
}

#[test]
fn commands_are_found_in_shell_blocks_and_inline_code_only() {
    let text = "Run `mig-exporter --nvml` or `--help`.\n\n```sh\na --x \\\n  --y   # why\n# alone\nb\n```\n\n```yaml\nc: d\n```\n";
    assert_eq!(commands(text), ["a --x --y", "b", "mig-exporter --nvml"]);
    // Inline code may wrap.
    assert_eq!(
        commands("see `kubectl get\n  nodes` and `x`"),
        ["kubectl get nodes"]
    );
}

/// The README command that starts with `prefix`: the test runs what the
/// README says, not a copy of it.
fn command(prefix: &str) -> String {
    let all = commands(&readme());
    let matching: Vec<&String> = all.iter().filter(|c| c.starts_with(prefix)).collect();
    assert_eq!(
        matching.len(),
        1,
        "README commands starting with {prefix:?}: {matching:?}"
    );
    matching[0].clone()
}

/// Runs `script` with bash in `dir`; fails the test, with its output, on a
/// non-zero exit. Returns stdout.
fn bash(dir: &Path, script: &str, env: &[(&str, &str)]) -> String {
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .current_dir(dir)
        .envs(env.iter().copied())
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "{script}\nfailed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// A child process killed when the test ends.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until `/readyz` on `address` answers 200.
fn wait_ready(address: &str, child: &mut Running) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.0.try_wait().expect("wait") {
            panic!("the exporter exited before it was ready: {status}");
        }
        if http(address, "GET", "/readyz").is_some_and(|(s, _)| s == 200) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the exporter at {address} never became ready"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `world.json` in `dir`: one H100 80GB in MIG mode split into seven
/// `1g.10gb` GPU instances, each with its compute instance (`all-1g.10gb`).
fn all_1g_world(dir: &Path) -> PathBuf {
    let world = dir.join("world.json");
    let path = world.to_str().expect("UTF-8 path");
    mig_sim(&world, &["init", "--gpus", "1", "--product", "h100-80gb", path]);
    mig_sim(&world, &["-mig", "1"]);
    mig_sim(&world, &["-i", "0", "mig", "-cgi", "19,19,19,19,19,19,19", "-C"]);
    world
}

#[test]
fn the_quick_start_serves_the_marked_demo() {
    assert_eq!(command("cargo run"), "cargo run --release");
    // `cargo run` runs the package's binary: there must be just the one.
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).expect("Cargo.toml");
    assert!(
        manifest.contains("\nname = \"mig-exporter\"\n"),
        "the root package is mig-exporter"
    );
    assert!(
        !manifest.contains("[[bin]]") && !root().join("src/bin").exists(),
        "one binary only"
    );
    // The port the README opens is the default one.
    let help = Command::new(EXPORTER).arg("--help").output().expect("--help");
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("[default: :10110]"), "{help}");

    // No arguments, as `cargo run --release` starts it, on a machine without
    // the driver. Only the port moves (through its environment variable), so
    // that tests running at once do not collide on 10110.
    let address = free_address();
    let mut exporter = Running(
        Command::new(EXPORTER)
            .env(NVML_LIBRARY_ENV, NO_DRIVER)
            .env("MIG_EXPORTER_WEB_LISTEN_ADDRESS", &address)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the exporter"),
    );
    wait_ready(&address, &mut exporter);
    let (status, metrics) = http(&address, "GET", "/metrics").expect("scrape");
    assert_eq!(status, 200);
    assert!(
        metrics.lines().any(|l| l == "mig_exporter_simulated 1"),
        "{metrics}"
    );
    // 8 H100 80GB, as the README says.
    let gpus = metrics
        .lines()
        .filter(|l| l.starts_with("nvidia_gpu_info{") && l.contains("H100 80GB"))
        .count();
    assert_eq!(gpus, 8, "{metrics}");
    let (status, page) = http(&address, "GET", "/").expect("landing page");
    assert_eq!(status, 200);
    assert!(
        page.to_lowercase().contains("simulated"),
        "the page says so: {page}"
    );
    drop(exporter);
}

#[test]
fn the_test_command_is_what_ci_runs() {
    let test_command = command("bash scripts/test");
    assert_eq!(test_command, "bash scripts/test.sh");
    let ci = std::fs::read_to_string(root().join(".ci/run")).expect(".ci/run");
    let last = ci
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .expect("a command");
    assert_eq!(
        last,
        format!("exec {test_command}"),
        ".ci/run ends by running the README's command"
    );
    // And it runs the workspace's tests, this file among them.
    let script = std::fs::read_to_string(root().join("scripts/test.sh")).expect("scripts/test.sh");
    assert!(
        script.lines().any(|l| l.starts_with("cargo test --workspace")),
        "{script}"
    );
}

/// The README's install lines, from `cd target/release-dist` on, with the
/// architecture this test runs on, and with `sudo` dropped and the absolute
/// destinations moved under `scratch`.
fn install_script(scratch: &Path) -> String {
    let arch = std::env::consts::ARCH;
    let all = commands(&readme());
    let first = all
        .iter()
        .position(|c| c.starts_with("cd target/release-dist"))
        .expect("the install lines");
    let lines: Vec<String> = all[first..]
        .iter()
        .take_while(|c| c.starts_with("cd ") || c.starts_with("tar ") || c.starts_with("sudo install "))
        .map(|c| {
            c.replace("linux-x86_64", &format!("linux-{arch}"))
                .replacen("sudo ", "", 1)
                .replace(
                    " /usr/local/bin/",
                    &format!(" {}/usr/local/bin/", scratch.display()),
                )
                .replace(
                    " /etc/systemd/system/",
                    &format!(" {}/etc/systemd/system/", scratch.display()),
                )
        })
        .collect();
    assert_eq!(lines.len(), 5, "{lines:#?}");
    lines.join("\n")
}

/// The README's tarball, installed into `scratch` (`usr/local/bin`,
/// `etc/systemd/system`) by the README's own lines.
fn install_into(scratch: &Path) {
    let work = scratch.join("work");
    std::fs::create_dir_all(scratch.join("usr/local/bin")).unwrap();
    std::fs::create_dir_all(scratch.join("etc/systemd/system")).unwrap();
    // What `bash scripts/release.sh` leaves, made from the test build.
    let out = Command::new("bash")
        .arg(root().join("scripts/release.sh"))
        .args(["--binary", EXPORTER, "--out"])
        .arg(work.join("target/release-dist"))
        .current_dir(root())
        .output()
        .expect("run scripts/release.sh");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = bash(&work, &install_script(scratch), &[]);
    assert!(
        printed.contains(": OK"),
        "sha256sum -c checked the tarball: {printed}"
    );
}

#[test]
fn the_tarball_install_runs_into_a_scratch_root() {
    let dir = tempfile::tempdir().unwrap();
    install_into(dir.path());
    let installed = dir.path().join("usr/local/bin/mig-exporter");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&installed)
        .expect("installed")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
    let version = Command::new(&installed)
        .arg("--version")
        .output()
        .expect("run it");
    assert!(version.status.success());
    assert!(
        String::from_utf8_lossy(&version.stdout).contains(env!("CARGO_PKG_VERSION")),
        "the installed binary is this version"
    );
    for unit in ["mig-exporter.service", "mig-exporter-check.service"] {
        let path = dir.path().join("etc/systemd/system").join(unit);
        assert_eq!(
            std::fs::read(&path).unwrap_or_else(|e| panic!("{unit}: {e}")),
            std::fs::read(root().join("deploy/systemd").join(unit)).unwrap(),
            "{unit} is the one in deploy/systemd"
        );
    }
}

/// `key=value` lines of `section` in a systemd unit.
fn unit_settings(text: &str, section: &str) -> Vec<(String, String)> {
    let mut current = String::new();
    let mut found = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            current = line.to_string();
        } else if current == format!("[{section}]") && !line.starts_with('#') {
            if let Some((k, v)) = line.split_once('=') {
                found.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
    }
    found
}

#[test]
fn the_installed_units_are_what_systemctl_enables() {
    // systemd-analyze verify needs the system's own units (it fails on
    // sysinit.target in a container without systemd), so the unit is read
    // here; tests/deploy.rs runs its flags through the exporter's parser.
    let dir = tempfile::tempdir().unwrap();
    install_into(dir.path());
    let enable = command("sudo systemctl enable");
    let name = enable.rsplit(' ').next().unwrap();
    let unit_path = dir
        .path()
        .join("etc/systemd/system")
        .join(format!("{name}.service"));
    let unit = std::fs::read_to_string(&unit_path).expect("the unit `systemctl enable` names is installed");
    let service = unit_settings(&unit, "Service");
    let exec = &service
        .iter()
        .find(|(k, _)| k == "ExecStart")
        .expect("ExecStart")
        .1;
    // It starts the binary where the README installs it, reading the hardware.
    let (binary, args) = exec.split_once(' ').unwrap();
    let install = command("sudo install -m 0755");
    let destination = install.rsplit(' ').next().unwrap();
    assert_eq!(
        binary,
        format!("{destination}mig-exporter"),
        "ExecStart runs what the README installs"
    );
    assert!(dir.path().join(binary.trim_start_matches('/')).is_file());
    let described = command("mig-exporter --nvml --no-kubelet");
    assert!(
        format!("mig-exporter {args}").starts_with(&described),
        "the README says the unit runs `{described}`; it runs `{exec}`"
    );
    // `enable` hooks it into boot, `--now` starts it.
    let install = unit_settings(&unit, "Install");
    assert!(
        install
            .iter()
            .any(|(k, v)| k == "WantedBy" && v == "multi-user.target"),
        "{unit}"
    );
    // The check unit it is ordered after is installed beside it.
    let after = &unit_settings(&unit, "Unit")
        .into_iter()
        .find(|(k, _)| k == "After")
        .expect("After")
        .1;
    for ordered in after.split_whitespace().filter(|u| u.starts_with("mig-exporter")) {
        assert!(
            dir.path().join("etc/systemd/system").join(ordered).is_file(),
            "{ordered}"
        );
    }
    assert_eq!(
        command("sudo systemctl daemon-reload"),
        "sudo systemctl daemon-reload"
    );
}

/// The environment that makes `mig-exporter --nvml` read `world` through fake-nvml.
fn fake_driver(world: &Path) -> Vec<(&'static str, String)> {
    vec![
        (NVML_LIBRARY_ENV, built("libfake_nvml.so").display().to_string()),
        ("MIG_WORLD", world.display().to_string()),
        // No DCGM here: the library file is absent, so the source is off.
        (
            "MIG_EXPORTER_DCGM_LIBRARY",
            "/nonexistent/libdcgm.so.4".to_string(),
        ),
    ]
}

#[test]
fn the_node_checks_run_on_fake_nvml() {
    let dir = tempfile::tempdir().unwrap();
    let world = all_1g_world(dir.path());
    let env = fake_driver(&world);
    // The unit's start: --nvml, no kubelet.
    let address = free_address();
    let mut exporter = Running(
        Command::new(EXPORTER)
            .args(["--nvml", "--no-kubelet", "--web.listen-address", &address])
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start"),
    );
    wait_ready(&address, &mut exporter);
    let curl = command("curl ").replace("localhost:10110", &address);
    let printed = bash(dir.path(), &curl, &[]);
    let lines: BTreeSet<&str> = printed.lines().collect();
    // What the README says the check shows.
    assert!(
        lines.contains("mig_exporter_source_up{source=\"nvml\"} 1"),
        "{printed}"
    );
    assert!(lines.contains("mig_exporter_simulated 0"), "{printed}");

    let geometry = command("mig-exporter geometry").replacen("mig-exporter", EXPORTER, 1);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let printed = bash(dir.path(), &geometry, &env);
    assert!(printed.matches("1g.10gb").count() >= 7, "{printed}");
    drop(exporter);
}

#[test]
fn check_tells_ok_from_drift_on_fake_nvml() {
    let dir = tempfile::tempdir().unwrap();
    let world = all_1g_world(dir.path());
    let config = dir.path().join("mig.yaml");
    std::fs::write(
        &config,
        "version: v1\nmig-configs:\n  all-1g.10gb:\n    - devices: all\n      mig-enabled: true\n      mig-devices:\n        \"1g.10gb\": 7\n",
    )
    .unwrap();
    let check = command("mig-exporter check --nvml")
        .replacen("mig-exporter", EXPORTER, 1)
        .replace("/etc/mig.yaml", config.to_str().unwrap());
    let run = || {
        let out = Command::new("bash")
            .args(["-c", &check])
            .envs(fake_driver(&world))
            .output()
            .expect("run check");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, printed) = run();
    assert_eq!(code, Some(0), "{printed}");
    assert!(printed.starts_with("OK: no MIG drift on 1 GPUs"), "{printed}");
    // A Hopper reboot loses the layout: exit 1, as the README says.
    mig_sim(&world, &["reboot"]);
    let (code, printed) = run();
    assert_eq!(code, Some(1), "{printed}");
    assert!(printed.starts_with("DRIFT: "), "{printed}");
    assert!(printed.contains("mig_mode_lost"), "{printed}");
}

/// `documents` of a multi-document YAML stream, as JSON.
fn yaml_documents(text: &str) -> Vec<serde_json::Value> {
    use serde::Deserialize;
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|doc| {
            let value = serde_yaml_ng::Value::deserialize(doc).expect("YAML");
            serde_json::to_value(value).expect("JSON")
        })
        .filter(|v| !v.is_null())
        .collect()
}

#[test]
fn the_namespace_commands_give_the_manifests_labels() {
    let create = command("kubectl create namespace");
    let namespace = create.rsplit(' ').next().unwrap();
    let label = command("kubectl label namespace");
    let words: Vec<&str> = label.split_whitespace().collect();
    assert_eq!(words[3], namespace, "{label}");
    let labels: BTreeMap<&str, &str> = words[4..]
        .iter()
        .map(|w| {
            w.split_once('=')
                .unwrap_or_else(|| panic!("{w} is not key=value"))
        })
        .collect();
    // The same namespace and Pod Security labels as deploy/namespace.yaml,
    // which tests/deploy.rs checks against what the pod needs.
    let manifest =
        yaml_documents(&std::fs::read_to_string(root().join("deploy/namespace.yaml")).unwrap()).remove(0);
    assert_eq!(manifest["metadata"]["name"], namespace);
    let wanted: BTreeMap<String, String> = manifest["metadata"]["labels"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.starts_with("pod-security.kubernetes.io/"))
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    let given: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(given, wanted);
    // And Helm installs into it.
    assert!(command("helm install").contains(&format!("--namespace {namespace}")));
}

fn helm() -> PathBuf {
    if let Some(path) = std::env::var_os("MIG_TEST_HELM") {
        return PathBuf::from(path);
    }
    common::which("helm").expect(
        "the README's helm command needs helm: `bash scripts/test.sh` downloads it and sets MIG_TEST_HELM, or put helm on PATH",
    )
}

#[test]
fn the_helm_install_renders_and_lints_with_the_readme_values() {
    let install = command("helm install");
    let args: Vec<&str> = install.split_whitespace().collect();
    assert_eq!(&args[..2], ["helm", "install"]);
    let run = |verb: &str, rest: &[&str]| {
        let out = Command::new(helm())
            .arg(verb)
            .args(rest)
            .current_dir(root())
            .output()
            .expect("run helm");
        assert!(
            out.status.success(),
            "helm {verb} {rest:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    // `helm install` is `helm template` sent to a cluster.
    let rendered = yaml_documents(&run("template", &args[2..]));
    let chart_and_sets: Vec<&str> = args[3..]
        .iter()
        .copied()
        .filter(|a| !a.starts_with("--namespace") && *a != "mig-exporter")
        .collect();
    let mut lint = vec!["--strict"];
    lint.extend(chart_and_sets);
    run("lint", &lint);

    // The rollout the README waits for: a DaemonSet of that name in that namespace.
    let rollout = command("kubectl -n mig-exporter rollout status");
    let (namespace, kind_name) = (
        rollout.split_whitespace().nth(2).unwrap(),
        rollout.rsplit(' ').next().unwrap(),
    );
    let (_, name) = kind_name.split_once('/').unwrap();
    let ds = rendered
        .iter()
        .find(|d| d["kind"] == "DaemonSet" && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no DaemonSet {name} among {} objects", rendered.len()));
    assert_eq!(ds["metadata"]["namespace"], namespace);
    // It runs the image the README pushed, reading the hardware.
    let pushed = command("docker push").rsplit(' ').next().unwrap().to_string();
    let containers = ds["spec"]["template"]["spec"]["containers"].as_array().unwrap();
    let exporter = containers
        .iter()
        .find(|c| c["name"] == "mig-exporter")
        .expect("the exporter container");
    assert_eq!(exporter["image"], pushed.as_str());
    let arguments: Vec<&str> = exporter["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    assert!(arguments.contains(&"--nvml"), "{arguments:?}");
    // The README's scrape target label comes from the ServiceMonitor.
    let monitor = rendered
        .iter()
        .find(|d| d["kind"] == "ServiceMonitor")
        .expect("a ServiceMonitor");
    assert!(monitor.to_string().contains("__meta_kubernetes_pod_node_name"));
}

#[test]
fn the_gpu_models_named_are_those_mig_sim_lists() {
    let out = Command::new(built("mig-sim"))
        .args(command("mig-sim products").split_whitespace().skip(1))
        .output()
        .expect("run mig-sim");
    assert!(out.status.success());
    let listed = String::from_utf8(out.stdout).unwrap();
    let text = readme();
    let compatibility = text
        .split("\n## Compatibility\n")
        .nth(1)
        .expect("a Compatibility section")
        .split("\n## ")
        .next()
        .unwrap();
    let mut models = 0;
    // Each NVML name's model (`NVIDIA A100-SXM4-40GB` → `A100`,
    // `NVIDIA RTX PRO 6000 Blackwell Server Edition` as it is) is named.
    for line in listed.lines().skip(1) {
        let name = line
            .split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .nth(1)
            .expect("an NVML name");
        let name = name.strip_prefix("NVIDIA ").expect("NVIDIA's name");
        let model = if name.starts_with("RTX") {
            name.to_string()
        } else {
            name.split([' ', '-']).next().unwrap().to_string()
        };
        assert!(
            compatibility.contains(&model),
            "{model} ({line}) is not named under Compatibility"
        );
        models += 1;
    }
    assert_eq!(models, 16, "{listed}");
}

#[test]
fn the_readme_stays_a_front_door_under_16_kib_whose_links_resolve() {
    let text = readme();
    assert!(
        text.len() < 16 * 1024,
        "README.md is {} bytes: move detail into docs/ (limit 16 KiB)",
        text.len()
    );
    // Contributor material lives in CONTRIBUTING.md and docs/.
    for heading in ["## Tests", "## Benchmarks", "## Fuzz", "## How it works"] {
        assert!(
            !text.contains(&format!("\n{heading}\n")),
            "{heading} belongs in CONTRIBUTING.md"
        );
    }
    // Every relative link names a file of the repository, and an anchor a
    // heading of it.
    let mut links = 0;
    for target in text.split("](").skip(1).filter_map(|rest| rest.split(')').next()) {
        if target.contains("://") {
            continue;
        }
        let (path, anchor) = target.split_once('#').unwrap_or((target, ""));
        let file = root().join(path);
        assert!(file.exists(), "README links {target}, which does not exist");
        if !anchor.is_empty() {
            let linked = std::fs::read_to_string(&file).unwrap();
            let anchors: Vec<String> = linked
                .lines()
                .filter_map(|l| l.strip_prefix('#'))
                .map(|h| {
                    h.trim_start_matches('#')
                        .trim()
                        .to_lowercase()
                        .chars()
                        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
                        .map(|c| if c == ' ' { '-' } else { c })
                        .collect()
                })
                .collect();
            assert!(
                anchors.iter().any(|a| a == anchor),
                "README links {target}: no such heading in {path}"
            );
        }
        links += 1;
    }
    assert!(links > 10, "{links} links");
}

/// The lines between `<!-- report:begin -->` and `<!-- report:end -->` in
/// `text`: the first names the report (`From [PATH](PATH):`), the others are
/// copied from it.
fn report_block(text: &str, doc: &str) -> (String, Vec<String>) {
    let (_, rest) = text
        .split_once("<!-- report:begin -->\n")
        .unwrap_or_else(|| panic!("{doc} has no <!-- report:begin --> block"));
    let (block, _) = rest
        .split_once("<!-- report:end -->")
        .unwrap_or_else(|| panic!("{doc}: the report block has no end"));
    let mut lines = block.lines().map(str::to_string);
    let first = lines.next().unwrap_or_default();
    let path = first
        .strip_prefix("From [")
        .and_then(|r| r.split_once("]("))
        .and_then(|(shown, r)| (r.strip_suffix("):") == Some(shown)).then_some(shown))
        .unwrap_or_else(|| panic!("{doc}: the report block opens with {first:?}, not From [PATH](PATH):"))
        .to_string();
    (path, lines.collect())
}

/// The performance figures of README.md and docs/performance.md and
/// bench/README.md's table of targets are copies of one committed report of `bench/report.sh`: every line of
/// each block is a line of the report both name, and the table rows follow
/// one another there as in the doc, so a figure edited in one place (or a
/// row dropped) fails here.
#[test]
fn the_performance_figures_are_copies_of_one_committed_report() {
    let docs = [
        ("README.md", root(), readme()),
        (
            "bench/README.md",
            root().join("bench"),
            std::fs::read_to_string(root().join("bench/README.md")).expect("bench/README.md"),
        ),
        (
            "docs/performance.md",
            root().join("docs"),
            std::fs::read_to_string(root().join("docs/performance.md")).expect("docs/performance.md"),
        ),
    ];
    let mut reports = BTreeSet::new();
    for (doc, dir, text) in &docs {
        let (path, lines) = report_block(text, doc);
        let file = dir
            .join(&path)
            .canonicalize()
            .unwrap_or_else(|e| panic!("{doc} names {path}: {e}"));
        assert!(
            file.starts_with(root().join("bench/results").canonicalize().unwrap())
                && file.extension().is_some_and(|e| e == "md"),
            "{doc} names {path}, not a report under bench/results/"
        );
        let report = std::fs::read_to_string(&file).unwrap();
        let report_lines: BTreeSet<&str> = report.lines().collect();
        for line in lines.iter().filter(|l| !l.is_empty()) {
            assert!(
                report_lines.contains(line.as_str()),
                "{doc}: this line of the report block is not in {path}:\n{line}"
            );
        }
        let rows: Vec<&str> = lines
            .iter()
            .map(String::as_str)
            .filter(|l| l.starts_with('|'))
            .collect();
        assert!(
            rows.len() >= 7,
            "{doc}: the report block holds {} table rows",
            rows.len()
        );
        assert!(
            report.contains(&format!("\n{}\n", rows.join("\n"))),
            "{doc}: the table's rows are not one table of {path}, in this order"
        );
        reports.insert(file);
    }
    assert_eq!(reports.len(), 1, "the docs name different reports: {reports:?}");
}
