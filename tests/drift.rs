//! Drift detection end to end: every failure mode scripted with the real
//! `mig-sim` on a World file while the real exporter runs, the state file's
//! failure modes, malformed mig-parted configs and `mig-exporter check`.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{built, mig_sim, value, wait_for, Exporter, EXPORTER};
use mig_exporter::drift::state::{self, GpuState, StateDoc};
use mig_exporter::drift::Geometry;

/// What the drift tests read off a running exporter besides metrics.
trait DriftView {
    fn page(&self) -> String;
    fn log_has(&self, what: &[&str]) -> bool;
}

impl DriftView for Exporter {
    fn page(&self) -> String {
        self.get("/", None).1
    }

    fn log_has(&self, what: &[&str]) -> bool {
        self.log().iter().any(|l| what.iter().all(|w| l.contains(w)))
    }
}

/// `(gpu, reason)` of every `nvidia_mig_drift` series.
fn findings(exposition: &str) -> BTreeSet<(u32, String)> {
    exposition
        .lines()
        .filter_map(|l| l.strip_prefix("nvidia_mig_drift{"))
        .filter_map(|l| {
            let gpu = l.split("gpu=\"").nth(1)?.split('"').next()?.parse().ok()?;
            let reason = l.split("reason=\"").nth(1)?.split('"').next()?.to_string();
            Some((gpu, reason))
        })
        .collect()
}

fn expect(pairs: &[(u32, &str)]) -> BTreeSet<(u32, String)> {
    pairs.iter().map(|(g, r)| (*g, r.to_string())).collect()
}

/// Waits until the exporter reports exactly `wanted` and returns that exposition.
fn wait_for_findings(exporter: &Exporter, wanted: &BTreeSet<(u32, String)>) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let text = exporter.metrics();
        let last = findings(&text);
        if last == *wanted {
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out: findings {last:?}, wanted {wanted:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn world(dir: &Path, product: &str, gpus: u32) -> PathBuf {
    let world = dir.join("world.json");
    let n = gpus.to_string();
    mig_sim(
        &world,
        &[
            "init",
            "--gpus",
            &n,
            "--product",
            product,
            world.to_str().unwrap(),
        ],
    );
    world
}

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("mig-parted.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

const H100_CONFIG: &str = r#"version: v1
mig-configs:
  all-disabled:
    - devices: all
      mig-enabled: false
  all-1g.10gb:
    - devices: all
      mig-enabled: true
      mig-devices:
        "1g.10gb": 7
  mixed:
    - device-filter: "0x233010DE"
      devices: all
      mig-enabled: true
      mig-devices:
        "3g.40gb": 1
        "2g.20gb": 1
        "1g.10gb": 2
"#;

const A100_CONFIG: &str = r#"version: v1
mig-configs:
  all-1g.5gb:
    - devices: all
      mig-enabled: true
      mig-devices:
        "1g.5gb": 7
  gpu0-1g.5gb:
    - devices: [0]
      mig-enabled: true
      mig-devices:
        "1g.5gb": 7
"#;

fn args<'a>(world: &'a Path, config: &'a Path, name: &'a str, state: &'a Path) -> Vec<&'a str> {
    vec![
        "--world",
        world.to_str().unwrap(),
        "--mig.config",
        config.to_str().unwrap(),
        "--mig.config-name",
        name,
        "--state.file",
        state.to_str().unwrap(),
    ]
}

fn seven(profile: &str) -> String {
    [profile; 7].join(",")
}

#[test]
fn hopper_reboot_is_mig_mode_lost_and_geometry_lost_until_restored() {
    let dir = tempfile::tempdir().unwrap();
    let world = world(dir.path(), "h100-80gb", 2);
    mig_sim(&world, &["-mig", "1"]);
    mig_sim(&world, &["mig", "-cgi", &seven("19"), "-C"]);
    let config = write_config(dir.path(), H100_CONFIG);
    let state = dir.path().join("state.json");
    let exporter = Exporter::start(&args(&world, &config, "all-1g.10gb", &state));

    let healthy = wait_for_findings(&exporter, &BTreeSet::new());
    let uuid0 = healthy
        .lines()
        .find_map(|l| l.strip_prefix("nvidia_mig_mode_current{gpu=\"0\",gpu_uuid=\""))
        .and_then(|l| l.split('"').next())
        .unwrap()
        .to_string();
    assert_eq!(
        value(
            &healthy,
            &format!("nvidia_mig_expected_instances{{gpu=\"0\",gpu_uuid=\"{uuid0}\",profile=\"1g.10gb\"}}")
        )
        .as_deref(),
        Some("7")
    );
    assert!(healthy.contains("nvidia_mig_geometry_last_change_timestamp_seconds{gpu=\"1\""));

    mig_sim(&world, &["reboot"]);
    let lost = wait_for_findings(
        &exporter,
        &expect(&[
            (0, "mig_mode_lost"),
            (0, "geometry_lost"),
            (1, "mig_mode_lost"),
            (1, "geometry_lost"),
        ]),
    );
    let since_key = format!(
        "nvidia_mig_drift_since_timestamp_seconds{{gpu=\"0\",gpu_uuid=\"{uuid0}\",reason=\"mig_mode_lost\"}}"
    );
    let since: f64 = value(&lost, &since_key).unwrap().parse().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let later = exporter.metrics();
    assert_eq!(
        value(&later, &since_key).unwrap().parse::<f64>().unwrap(),
        since,
        "since is kept across polls"
    );
    wait_for(
        || exporter.log_has(&["drift detected", "reason=mig_mode_lost", "gpu=0"]),
        "a log line when the finding appears",
    );

    let page = exporter.page();
    let gpu0 = page
        .split("data-gpu=\"0\"")
        .nth(1)
        .unwrap()
        .split("data-gpu=\"1\"")
        .next()
        .unwrap();
    assert!(
        gpu0.contains("data-reason=\"mig_mode_lost\"")
            && gpu0.contains("data-reason=\"geometry_lost\"")
            && gpu0.contains("expected MIG enabled, 7x 1g.10gb")
            && gpu0.contains("observed MIG disabled"),
        "landing page shows the findings with their messages: {gpu0}"
    );

    // Restore what the config asks: every finding clears.
    mig_sim(&world, &["-mig", "1"]);
    mig_sim(&world, &["mig", "-cgi", &seven("19"), "-C"]);
    wait_for_findings(&exporter, &BTreeSet::new());
    wait_for(
        || exporter.log_has(&["drift cleared", "reason=geometry_lost", "gpu=1"]),
        "a log line when the finding clears",
    );
    assert!(!exporter.page().contains("data-reason="));
}

#[test]
fn ampere_reboot_is_geometry_lost_only() {
    let dir = tempfile::tempdir().unwrap();
    let world = world(dir.path(), "a100-sxm4-40gb", 2);
    mig_sim(&world, &["-mig", "1"]);
    mig_sim(&world, &["mig", "-cgi", &seven("19"), "-C"]);
    let config = write_config(dir.path(), A100_CONFIG);
    let state = dir.path().join("state.json");
    let exporter = Exporter::start(&args(&world, &config, "all-1g.5gb", &state));
    wait_for_findings(&exporter, &BTreeSet::new());

    mig_sim(&world, &["reboot"]);
    let text = wait_for_findings(&exporter, &expect(&[(0, "geometry_lost"), (1, "geometry_lost")]));
    assert!(
        text.lines()
            .any(|l| l.starts_with("nvidia_mig_mode_current{gpu=\"0\"") && l.ends_with(" 1")),
        "Ampere keeps MIG mode across the reboot"
    );

    mig_sim(&world, &["mig", "-cgi", &seven("1g.5gb"), "-C"]);
    wait_for_findings(&exporter, &BTreeSet::new());
}

#[test]
fn gpu_instances_created_without_compute_instances_are_gi_without_ci() {
    let dir = tempfile::tempdir().unwrap();
    let world = world(dir.path(), "h100-80gb", 1);
    mig_sim(&world, &["-mig", "1"]);
    mig_sim(&world, &["mig", "-cgi", "9", "-C"]);
    let state = dir.path().join("state.json");
    let exporter = Exporter::start(&[
        "--world",
        world.to_str().unwrap(),
        "--state.file",
        state.to_str().unwrap(),
    ]);
    wait_for_findings(&exporter, &BTreeSet::new());

    mig_sim(&world, &["mig", "-cgi", "14,19"]); // no -C
    wait_for_findings(&exporter, &expect(&[(0, "gi_without_ci")]));
    let page = exporter.page();
    assert!(
        page.contains("(2g.20gb)") && page.contains("(1g.10gb)") && page.contains("have no compute instance"),
        "the message names each bare GPU instance"
    );
    let gis: Vec<String> = page
        .split("class=\"gi noci\" data-gi=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next().map(str::to_string))
        .collect();
    mig_sim(&world, &["mig", "-cci", "-gi", &gis.join(",")]);
    wait_for_findings(&exporter, &BTreeSet::new());
}

#[test]
fn an_interrupted_reconfigure_is_profile_mismatch_naming_the_missing_profiles() {
    let dir = tempfile::tempdir().unwrap();
    let world = world(dir.path(), "h100-80gb", 1);
    mig_sim(&world, &["-mig", "1"]);
    let config = write_config(dir.path(), H100_CONFIG);
    let state = dir.path().join("state.json");
    let exporter = Exporter::start(&args(&world, &config, "mixed", &state));
    wait_for_findings(&exporter, &expect(&[(0, "geometry_lost")]));

    // The MIG manager got as far as the 3g.40gb and one 1g.10gb.
    mig_sim(&world, &["mig", "-cgi", "9,19", "-C"]);
    wait_for_findings(&exporter, &expect(&[(0, "profile_mismatch")]));
    let page = exporter.page();
    assert!(
        page.contains("missing 1x 1g.10gb, 1x 2g.20gb")
            && page.contains("expected MIG enabled, 2x 1g.10gb, 1x 2g.20gb, 1x 3g.40gb")
            && page.contains("observed MIG enabled, 1x 1g.10gb, 1x 3g.40gb"),
        "{page}"
    );
    let out = run_check(&args(&world, &config, "mixed", &state), "table");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("profile_mismatch") && text.contains("missing 1x 1g.10gb, 1x 2g.20gb"),
        "{text}"
    );

    mig_sim(&world, &["mig", "-cgi", "14,19", "-C"]);
    wait_for_findings(&exporter, &BTreeSet::new());
}

#[test]
fn a_refused_ampere_enable_is_mig_mode_pending() {
    let dir = tempfile::tempdir().unwrap();
    let world = world(dir.path(), "a100-sxm4-40gb", 2);
    let config = write_config(dir.path(), A100_CONFIG);
    let state = dir.path().join("state.json");
    mig_sim(&world, &["clients", "--gpu", "0", "--count", "1"]);
    mig_sim(&world, &["-i", "0", "-mig", "1"]);
    let exporter = Exporter::start(&args(&world, &config, "gpu0-1g.5gb", &state));
    let text = wait_for_findings(&exporter, &expect(&[(0, "mig_mode_pending")]));
    assert!(text.contains("nvidia_mig_mode_pending{gpu=\"0\""));
    assert!(exporter
        .page()
        .contains("MIG mode is disabled now and enabled after the next GPU reset"));

    // The reset comes with a reboot: MIG is on, the instances are still to be made.
    mig_sim(&world, &["reboot"]);
    wait_for_findings(&exporter, &expect(&[(0, "geometry_lost")]));
    mig_sim(&world, &["-i", "0", "mig", "-cgi", &seven("19"), "-C"]);
    wait_for_findings(&exporter, &BTreeSet::new());
}

#[test]
fn enabled_mig_where_the_config_wants_it_disabled_is_unexpected_mig() {
    let dir = tempfile::tempdir().unwrap();
    let world = world(dir.path(), "h100-80gb", 1);
    let config = write_config(dir.path(), H100_CONFIG);
    let state = dir.path().join("state.json");
    let exporter = Exporter::start(&args(&world, &config, "all-disabled", &state));
    wait_for_findings(&exporter, &BTreeSet::new());
    mig_sim(&world, &["-mig", "1"]);
    wait_for_findings(&exporter, &expect(&[(0, "unexpected_mig")]));
    mig_sim(&world, &["-mig", "0"]);
    wait_for_findings(&exporter, &BTreeSet::new());
}

#[test]
fn last_known_good_catches_a_reboot_without_a_desired_config_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let world = world(dir.path(), "h100-80gb", 2);
    mig_sim(&world, &["-mig", "1"]);
    mig_sim(&world, &["mig", "-cgi", "9,9", "-C"]);
    let state = dir.path().join("state.json");
    let world_args = [
        "--world",
        world.to_str().unwrap(),
        "--state.file",
        state.to_str().unwrap(),
    ];
    {
        let exporter = Exporter::start(&world_args);
        wait_for_findings(&exporter, &BTreeSet::new());
        wait_for(
            || {
                state::load(&state)
                    .ok()
                    .flatten()
                    .is_some_and(|d| d.gpus.len() == 2)
            },
            "the state file",
        );
    }
    let saved = state::load(&state).unwrap().unwrap();
    assert!(saved
        .gpus
        .values()
        .all(|g| g.geometry.instances.get("3g.40gb") == Some(&2) && g.geometry.mig_enabled));
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&state).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);

    // The node reboots while no exporter runs; the next one still knows.
    mig_sim(&world, &["reboot"]);
    let exporter = Exporter::start(&world_args);
    wait_for_findings(
        &exporter,
        &expect(&[
            (0, "mig_mode_lost"),
            (0, "geometry_lost"),
            (0, "changed_since_reboot"),
            (1, "mig_mode_lost"),
            (1, "geometry_lost"),
            (1, "changed_since_reboot"),
        ]),
    );
    assert!(exporter.page().contains("geometry changed across the reboot"));
    assert_eq!(
        state::load(&state).unwrap().unwrap(),
        saved,
        "lost geometry is never recorded as good"
    );

    // Only GPU 0 comes back as it was: GPU 1 stays flagged.
    mig_sim(&world, &["-mig", "1"]);
    mig_sim(&world, &["-i", "0", "mig", "-cgi", "9,9", "-C"]);
    mig_sim(&world, &["-i", "1", "mig", "-cgi", "9", "-C"]);
    let text = wait_for_findings(&exporter, &expect(&[(1, "changed_since_reboot")]));
    assert!(!text.contains("reason=\"geometry_lost\""));
    let page = exporter.page();
    assert!(page.contains("missing 1x 3g.40gb"), "{page}");
    mig_sim(&world, &["-i", "1", "mig", "-cgi", "9", "-C"]);
    wait_for_findings(&exporter, &BTreeSet::new());
    let boot = serde_json::from_slice::<serde_json::Value>(&std::fs::read(&world).unwrap()).unwrap()
        ["boot_id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_for(
        || {
            state::load(&state)
                .ok()
                .flatten()
                .is_some_and(|d| d.gpus.values().all(|g| g.boot_id == boot))
        },
        "the restored geometry recorded under the new boot",
    );
}

fn source_up(text: &str, source: &str) -> Option<String> {
    value(text, &format!("mig_exporter_source_up{{source=\"{source}\"}}"))
}

#[test]
fn a_state_file_that_cannot_be_read_is_reported_left_untouched_and_the_exporter_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let world = world(dir.path(), "h100-80gb", 1);
    let full = serde_json::to_string_pretty(&doc_for_world(&world)).unwrap();
    for (name, content, error) in [
        ("truncated", full[..full.len() / 2].to_string(), "is corrupt"),
        ("garbage", "\u{7f}ELF\u{2}\u{1}garbage".to_string(), "is corrupt"),
        (
            "wrong version",
            full.replace("\"version\": 1", "\"version\": 7"),
            "has format version 7",
        ),
    ] {
        let state = dir.path().join(format!("{}.json", name.replace(' ', "-")));
        std::fs::write(&state, &content).unwrap();
        let exporter = Exporter::start(&[
            "--world",
            world.to_str().unwrap(),
            "--state.file",
            state.to_str().unwrap(),
        ]);
        let text = exporter.metrics();
        assert_eq!(source_up(&text, "state_file").as_deref(), Some("0"), "{name}");
        assert_eq!(
            source_up(&text, "sim").as_deref(),
            Some("1"),
            "{name}: still serving"
        );
        assert!(text.contains("nvidia_mig_mode_current{gpu=\"0\""), "{name}");
        let page = exporter.page();
        assert!(
            page.contains("state_file down")
                && page.contains(state.to_str().unwrap())
                && page.contains(error),
            "{name}: the landing page says why"
        );
        assert!(exporter.log_has(&["state file", error]), "{name}: logged");
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            std::fs::read_to_string(&state).unwrap(),
            content,
            "{name}: never overwritten"
        );

        // Moved away: the exporter writes a good one without a restart.
        std::fs::remove_file(&state).unwrap();
        wait_for(
            || source_up(&exporter.metrics(), "state_file").as_deref() == Some("1"),
            "state_file up again",
        );
        wait_for(
            || state::load(&state).ok().flatten().is_some(),
            "a fresh state file",
        );
    }
}

/// The state a healthy exporter would write for `world`.
fn doc_for_world(world: &Path) -> StateDoc {
    let w: serde_json::Value = serde_json::from_slice(&std::fs::read(world).unwrap()).unwrap();
    let mut doc = StateDoc::default();
    for gpu in w["gpus"].as_array().unwrap() {
        doc.gpus.insert(
            gpu["uuid"].as_str().unwrap().to_string(),
            GpuState {
                index: gpu["index"].as_u64().unwrap() as u32,
                name: "NVIDIA H100 80GB HBM3".into(),
                boot_id: w["boot_id"].as_str().unwrap().to_string(),
                geometry: Geometry::disabled(),
                since_seconds: 1.0,
            },
        );
    }
    doc
}

#[test]
fn an_unwritable_state_directory_is_reported_and_the_exporter_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let world = world(dir.path(), "h100-80gb", 1);
    // No one, root included, can create files in a "directory" that is a regular file.
    let blocked = dir.path().join("blocked");
    std::fs::write(&blocked, "a file where the state directory should be").unwrap();
    let state = blocked.join("state.json");
    let exporter = Exporter::start(&[
        "--world",
        world.to_str().unwrap(),
        "--state.file",
        state.to_str().unwrap(),
    ]);
    wait_for(
        || source_up(&exporter.metrics(), "state_file").as_deref() == Some("0"),
        "state_file down",
    );
    let text = exporter.metrics();
    assert_eq!(source_up(&text, "sim").as_deref(), Some("1"));
    assert!(
        findings(&text).is_empty(),
        "an unwritable state file is not drift"
    );
    let page = exporter.page();
    assert!(
        page.contains("cannot write state file") && page.contains("blocked/state.json"),
        "{page}"
    );
    wait_for(|| exporter.log_has(&["cannot write state file"]), "logged");
    assert_eq!(
        std::fs::read_to_string(&blocked).unwrap(),
        "a file where the state directory should be"
    );
}

/// GPUs in the state file `examples/state_writer` writes: large enough that
/// kills land inside writes, small enough that each write is quick.
const WRITER_GPUS: usize = 64;

#[test]
fn a_process_killed_while_writing_never_leaves_a_partial_file() {
    // On the target's file system rather than a tmpfs, so fsync costs what it does on a node.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = dir.path().join("state.json");
    let mut interrupted = 0;
    let mut attempt = 0u64;
    // Kill at varying moments until several kills have landed inside a write
    // (a temp file is left), bounded in count.
    while attempt < 20 || (interrupted < 3 && attempt < 300) {
        attempt += 1;
        let mut child = Command::new(built("examples/state_writer"))
            .arg(&path)
            .arg(WRITER_GPUS.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for(|| path.exists(), "a first write");
        std::thread::sleep(Duration::from_millis(15 + attempt * 7 % 40));
        child.kill().unwrap(); // SIGKILL: no chance to clean up
        child.wait().unwrap();

        let doc = state::load(&path)
            .unwrap_or_else(|e| panic!("attempt {attempt}: {e}"))
            .unwrap();
        assert_eq!(doc.gpus.len(), WRITER_GPUS, "attempt {attempt}: a whole file");
        let rounds: BTreeSet<u64> = doc.gpus.values().map(|g| g.since_seconds as u64).collect();
        assert_eq!(rounds.len(), 1, "attempt {attempt}: one write, not a mix");
        let temps = state::remove_stale_temp_files(&path);
        interrupted += usize::from(temps > 0);
    }
    assert!(
        interrupted > 0,
        "no kill in {attempt} landed during a write (only between writes): the test proved nothing"
    );
}

fn run_check(args: &[&str], output: &str) -> Output {
    Command::new(EXPORTER)
        .arg("check")
        .args(["--output", output])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn check_exits_0_without_drift_1_with_drift_and_2_when_it_cannot_tell() {
    let dir = tempfile::tempdir().unwrap();
    let world = world(dir.path(), "h100-80gb", 2);
    mig_sim(&world, &["-mig", "1"]);
    mig_sim(&world, &["mig", "-cgi", &seven("19"), "-C"]);
    let config = write_config(dir.path(), H100_CONFIG);
    let state = dir.path().join("state.json");
    let a = args(&world, &config, "all-1g.10gb", &state);

    let out = run_check(&a, "table");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.starts_with("OK: no MIG drift on 2 GPUs"), "{text}");
    assert!(!state.exists(), "check only reads the state file");

    mig_sim(&world, &["reboot"]);
    let out = run_check(&a, "json");
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["status"], "drift");
    let reasons: BTreeSet<(u64, String)> = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["gpu"].as_u64().unwrap(),
                f["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        reasons,
        [
            (0, "mig_mode_lost"),
            (0, "geometry_lost"),
            (1, "mig_mode_lost"),
            (1, "geometry_lost")
        ]
        .iter()
        .map(|(g, r)| (*g, r.to_string()))
        .collect()
    );
    assert_eq!(json["expected"][0]["profile"], "1g.10gb");
    assert_eq!(json["expected"][0]["count"], 7);
    let out = run_check(&a, "table");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(text.starts_with("DRIFT: 4 findings on 2 of 2 GPUs"), "{text}");

    // Cannot tell: an unreadable node, an unknown config, a corrupt state file.
    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, "{").unwrap();
    let missing = dir.path().join("none.yaml");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (args(&broken, &config, "all-1g.10gb", &state), "broken.json"),
        (
            args(&world, &config, "all-2g.20gb", &state),
            "has no config 'all-2g.20gb'",
        ),
        (args(&world, &missing, "x", &state), "none.yaml"),
        (args(&world, &config, "all-1g.10gb", &broken), "state file"),
    ];
    for (case, says) in cases {
        let out = run_check(&case, "table");
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(2), "{case:?}: {text}");
        assert!(
            text.starts_with("UNKNOWN: cannot tell: ") && text.contains(says),
            "{text}"
        );
    }
    let out = run_check(&args(&world, &config, "all-2g.20gb", &state), "json");
    assert_eq!(out.status.code(), Some(2));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["status"], "unknown");
}

#[test]
fn check_on_the_rebooted_scenario_compares_with_the_layout_before_the_reboot() {
    let out = Command::new(EXPORTER)
        .args(["check", "--simulate", "h100-rebooted"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.starts_with("DRIFT: 24 findings on 8 of 8 GPUs"), "{text}");
    let out = Command::new(EXPORTER)
        .args(["check", "--simulate", "h100-mixed"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn malformed_configs_stop_the_exporter_at_start_naming_file_config_and_entry() {
    let dir = tempfile::tempdir().unwrap();
    let world = world(dir.path(), "h100-80gb", 2);
    let state = dir.path().join("state.json");
    let bad = |name: &str, body: &str| {
        let path = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, format!("version: v1\nmig-configs:\n  ok:\n    - devices: all\n      mig-enabled: false\n  bad:\n{body}")).unwrap();
        path
    };
    let cases = [
        (
            bad("unknown-profile", "    - devices: all\n      mig-enabled: true\n      mig-devices: {\"1g.5gb\": 7}\n"),
            "bad",
            vec!["unknown-profile.yaml", "config 'bad'", "entry 0 (devices: all)", "no profile '1g.5gb'"],
        ),
        (
            bad(
                "too-many",
                "    - devices: [0]\n      mig-enabled: false\n    - devices: [1]\n      mig-enabled: true\n      mig-devices: {\"3g.40gb\": 2, \"2g.20gb\": 1}\n",
            ),
            "bad",
            vec!["too-many.yaml", "config 'bad'", "entry 1 (devices: [1]) on GPU 1", "need 8 SM slices, the GPU has 7"],
        ),
        (
            bad("unknown-key", "    - devices: all\n      mig-enabled: false\n      mig-devcies: {}\n"),
            "bad",
            vec!["unknown-key.yaml", "config 'bad': entry 0: unexpected field 'mig-devcies'"],
        ),
        (
            bad("fine", "    - devices: all\n      mig-enabled: false\n"),
            "nope",
            vec!["fine.yaml", "has no config 'nope' (known: bad, ok)"],
        ),
    ];
    for (config, name, says) in cases {
        let out = Command::new(EXPORTER)
            .args(["--web.listen-address", "127.0.0.1:0"])
            .args(args(&world, &config, name, &state))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        for s in says {
            assert!(err.contains(s), "missing {s:?} in {err}");
        }
        let out = run_check(&args(&world, &config, name, &state), "table");
        assert_eq!(
            out.status.code(),
            Some(2),
            "check cannot tell with {}",
            config.display()
        );
    }
}

#[test]
fn a_config_that_breaks_while_running_is_reported_and_the_last_valid_one_stays() {
    let dir = tempfile::tempdir().unwrap();
    let world = world(dir.path(), "h100-80gb", 1);
    mig_sim(&world, &["-mig", "1"]);
    let config = write_config(dir.path(), H100_CONFIG);
    let state = dir.path().join("state.json");
    let exporter = Exporter::start(&args(&world, &config, "all-1g.10gb", &state));
    wait_for_findings(&exporter, &expect(&[(0, "geometry_lost")]));

    std::fs::write(&config, H100_CONFIG.replace("\"1g.10gb\": 7", "\"1g.10gb\": 9")).unwrap();
    wait_for(
        || source_up(&exporter.metrics(), "mig_config").as_deref() == Some("0"),
        "mig_config down",
    );
    let text = exporter.metrics();
    assert_eq!(
        findings(&text),
        expect(&[(0, "geometry_lost")]),
        "judged against the last valid config"
    );
    assert!(text.contains("profile=\"1g.10gb\"} 7"));
    let page = exporter.page();
    assert!(
        page.contains("mig_config down") && page.contains("9x 1g.10gb do not fit: at most 7 fit one GPU"),
        "{page}"
    );
    wait_for(
        || exporter.log_has(&["invalid MIG config", "config 'all-1g.10gb'"]),
        "logged",
    );

    std::fs::write(&config, H100_CONFIG.replace("\"1g.10gb\": 7", "\"1g.10gb\": 2")).unwrap();
    wait_for(
        || source_up(&exporter.metrics(), "mig_config").as_deref() == Some("1"),
        "mig_config up again",
    );
    wait_for_findings(&exporter, &expect(&[(0, "geometry_lost")]));
    assert!(exporter.metrics().contains("profile=\"1g.10gb\"} 2"));
}

#[test]
fn the_config_name_follows_the_label_file() {
    let dir = tempfile::tempdir().unwrap();
    let world = world(dir.path(), "h100-80gb", 1);
    mig_sim(&world, &["-mig", "1"]);
    mig_sim(&world, &["mig", "-cgi", &seven("19"), "-C"]);
    let config = write_config(dir.path(), H100_CONFIG);
    let label = dir.path().join("labels");
    std::fs::write(
        &label,
        "app=\"exporter\"\nnvidia.com/mig.config=\"all-1g.10gb\"\n",
    )
    .unwrap();
    let state = dir.path().join("state.json");
    let exporter = Exporter::start(&[
        "--world",
        world.to_str().unwrap(),
        "--mig.config",
        config.to_str().unwrap(),
        "--mig.config-name-file",
        label.to_str().unwrap(),
        "--state.file",
        state.to_str().unwrap(),
    ]);
    wait_for_findings(&exporter, &BTreeSet::new());
    assert!(exporter.page().contains("config &#39;all-1g.10gb&#39;"));

    // The label changes: the node should now have MIG disabled.
    std::fs::write(&label, "nvidia.com/mig.config=\"all-disabled\"\n").unwrap();
    wait_for_findings(&exporter, &expect(&[(0, "unexpected_mig")]));
    // The label is removed: no desired state, nothing to compare with.
    std::fs::write(&label, "app=\"exporter\"\n").unwrap();
    wait_for_findings(&exporter, &BTreeSet::new());
    assert!(!exporter.metrics().contains("nvidia_mig_expected_instances"));
}

/// DESIGN's rule: `drift/` never imports a source module; what it shares with
/// one (the kubelet's advertised devices) lives in `model/`. Test modules may
/// build readings with the simulator source.
#[test]
fn drift_imports_no_source_module_outside_its_tests() {
    let files = common::files_under(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src/drift"));
    assert!(files.len() > 8, "{files:?}");
    let mut offenders = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for (n, line) in code.lines().enumerate() {
            if line.contains("crate::source") || line.contains("super::super::source") {
                offenders.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(offenders.is_empty(), "{}", offenders.join("\n"));
}
