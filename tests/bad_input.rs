//! Bad input files given on the command line: the real `mig-exporter`
//! binary says which file, which line and which field, exits non-zero where
//! it cannot go on, and never panics. The parsers themselves are fuzzed in
//! fuzz/ (see "Fuzzing" in CONTRIBUTING.md).

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::EXPORTER;

/// Runs the exporter; one that is still running after 30 s is killed and fails the test.
fn exporter(args: &[&str]) -> Output {
    let mut child = Command::new(EXPORTER)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start mig-exporter");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("wait for mig-exporter").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("mig-exporter {args:?} did not stop on bad input");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("read mig-exporter's output");
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("panicked"),
        "mig-exporter {args:?} panicked: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write a test file");
    path.display().to_string()
}

const CONFIG: &str = "\
version: v1
mig-configs:
  all-1g.10gb:
    - devices: all
      mig-enabled: ENABLED
      mig-devices:
        PROFILE: 7
";

fn config(enabled: &str, profile: &str) -> String {
    CONFIG.replace("ENABLED", enabled).replace("PROFILE", profile)
}

#[test]
fn serving_stops_on_a_bad_mig_config_naming_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    for (text, expected) in [
        (
            config("yes", "1g.10gb"),
            ", line 5 column 20: config 'all-1g.10gb': entry 0: 'mig-enabled' must be true or false, found a string",
        ),
        (
            config("true", "1g.10gb+big"),
            ", line 7 column 9: config 'all-1g.10gb': entry 0: mig-devices: '1g.10gb+big' is not a MIG profile name (unknown suffix",
        ),
        (
            config("true", "1g.10gb").replace("      mig-enabled", "     mig-enabled"),
            " is not valid YAML: did not find expected '-' indicator at line 5 column 6",
        ),
    ] {
        let file = write(dir.path(), "mig-config.yaml", &text);
        let out = exporter(&["--web.listen-address", "127.0.0.1:0", "--mig.config", &file]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(&format!("mig-exporter: mig config {file}{expected}")),
            "for\n{text}\ngot: {stderr}\nwant: {expected}"
        );
    }
}

#[test]
fn check_cannot_tell_with_a_bad_mig_config_and_says_where() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "mig-config.yaml", &config("true", "1c.1g.10gb"));
    let out = exporter(&["check", "--mig.config", &file]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "mig config {file}, line 7 column 9: config 'all-1g.10gb': entry 0: mig-devices '1c.1g.10gb': \
             compute-instance profiles are not supported"
        )),
        "{stdout}"
    );
}

#[test]
fn a_bad_world_file_stops_the_exporter_naming_file_field_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let text = mig_model::World::new("node", mig_model::Product::H100_80GB, 2)
        .to_json()
        .replacen("\"index\": 1", "\"index\": -1", 1);
    let line = 1 + text.lines().position(|l| l.contains("\"index\": -1")).unwrap();
    let file = write(dir.path(), "world.json", &text);
    for args in [vec!["geometry", "--world", &file], vec!["--world", &file]] {
        let out = exporter(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "World file {file} is not valid JSON for a World: gpus[1].index: invalid value: integer `-1`, \
                 expected u32 at line {line} column"
            )),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn an_inconsistent_world_file_is_refused_naming_the_line_of_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let mut world = mig_model::World::new("node", mig_model::Product::H100_80GB, 1);
    world.gpus[0].set_mig_mode(true);
    world.gpus[0].create_gpu_instance(19, None).unwrap();
    world.gpus[0].gpu_instances[0].load.dram_active = 2.0;
    let text = world.to_json();
    let line = 1 + text
        .lines()
        .position(|l| l.contains("\"dram_active\": 2.0"))
        .unwrap();
    let file = write(dir.path(), "world.json", &text);
    let out = exporter(&["geometry", "--world", &file]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let gi = world.gpus[0].gpu_instances[0].id;
    assert!(
        stderr.contains(&format!(
            "World file {file} is inconsistent, line {line} column 30: gpus[index=0]: gpu_instances[id={gi}]: \
             dram_active 2 is outside 0..1"
        )),
        "{stderr}"
    );
}

#[test]
fn check_cannot_tell_with_a_bad_state_file_and_says_where() {
    let dir = tempfile::tempdir().unwrap();
    let text = "{\n  \"version\": 1,\n  \"gpus\": {\n    \"GPU-a\": {\"index\": 0, \"name\": \"n\", \
                \"boot_id\": \"b\", \"geometry\": {\"mig_enabled\": \"yes\"}, \"since_seconds\": 0}\n  }\n}\n";
    let file = write(dir.path(), "state.json", text);
    let out = exporter(&["check", "--state.file", &file]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "state file {file} is corrupt (truncated or not a state file): gpus.GPU-a.geometry.mig_enabled: \
             invalid type: string \"yes\", expected a boolean at line 4 column"
        )),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        text,
        "a bad state file is left as it is"
    );
}
