//! How the exporter starts. A start that names no source (no --nvml,
//! --simulate or --world) reads the hardware where NVIDIA's driver answers,
//! and elsewhere serves the demo, marked in the log, on the landing page and
//! in `mig_exporter_simulated`. --nvml never falls back to a demo, and the
//! packaged starts always read the hardware: the image here, the chart, the
//! DaemonSet and the systemd units in tests/deploy.rs. Also the flags'
//! environment variables and --version.
//!
//! The driver is fake-nvml (libfake_nvml.so over a World file), found as
//! --nvml.library finds it: MIG_EXPORTER_NVML_LIBRARY, which the bare start honours too.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{built, h100_world, value, Exporter, EXPORTER, NO_DRIVER, NVML_LIBRARY_ENV};

const BANNER: &str = "class=\"simulated\"";

fn demo_warnings(exporter: &Exporter) -> Vec<String> {
    exporter
        .log()
        .into_iter()
        .filter(|l| l.contains("level=warn") && l.contains("SIMULATED"))
        .collect()
}

#[test]
fn a_bare_start_where_the_driver_answers_reads_the_hardware() {
    let dir = tempfile::tempdir().unwrap();
    let world = h100_world(dir.path(), 2, "9,19");
    let library = built("libfake_nvml.so");
    let exporter = Exporter::start_with_env(&[], &[(NVML_LIBRARY_ENV, &library), ("MIG_WORLD", &world)]);
    let text = exporter.metrics();
    assert_eq!(
        value(&text, "mig_exporter_source_up{source=\"nvml\"}").as_deref(),
        Some("1"),
        "{text}"
    );
    assert_eq!(value(&text, "mig_exporter_simulated").as_deref(), Some("0"));
    assert!(
        text.lines().filter(|l| l.starts_with("nvidia_gpu_info{")).count() == 2,
        "the World's two GPUs, not the demo's eight: {text}"
    );
    assert!(!exporter.get("/", None).1.contains(BANNER));
    assert!(demo_warnings(&exporter).is_empty(), "{:#?}", exporter.log());
    assert!(
        exporter
            .log()
            .iter()
            .any(|l| l.contains("reading this node through NVML")),
        "{:#?}",
        exporter.log()
    );
}

#[test]
fn a_bare_start_without_a_driver_serves_the_demo_and_says_so_everywhere() {
    let exporter = Exporter::start_with_env(&[], &[(NVML_LIBRARY_ENV, Path::new(NO_DRIVER))]);
    let text = exporter.metrics();
    assert_eq!(
        value(&text, "mig_exporter_simulated").as_deref(),
        Some("1"),
        "{text}"
    );
    assert_eq!(
        value(&text, "mig_exporter_source_up{source=\"sim\"}").as_deref(),
        Some("1")
    );
    assert_eq!(
        text.lines().filter(|l| l.starts_with("nvidia_gpu_info{")).count(),
        8,
        "the h100-mixed demo"
    );
    let warnings = demo_warnings(&exporter);
    assert_eq!(warnings.len(), 1, "{:#?}", exporter.log());
    for part in ["--nvml", "--simulate", NO_DRIVER] {
        assert!(warnings[0].contains(part), "{part} in {}", warnings[0]);
    }
    let (_, page) = exporter.get("/", None);
    assert!(page.contains(BANNER) && page.contains("Simulated node"), "{page}");
}

#[test]
fn nvml_without_a_driver_is_a_source_down_never_the_demo() {
    // The library from the environment variable: --nvml.library's, as the packaged starts could set it.
    let exporter = Exporter::start_unready(&["--nvml"], &[(NVML_LIBRARY_ENV, Path::new(NO_DRIVER))]);
    let text = exporter.metrics();
    assert_eq!(
        value(&text, "mig_exporter_source_up{source=\"nvml\"}").as_deref(),
        Some("0"),
        "{text}"
    );
    assert_eq!(value(&text, "mig_exporter_simulated").as_deref(), Some("0"));
    assert!(!text.contains("nvidia_gpu_info{"), "{text}");
    let (_, page) = exporter.get("/", None);
    assert!(!page.contains(BANNER), "{page}");
    assert!(
        page.contains("cannot load /nonexistent/libnvidia-ml.so.1"),
        "{page}"
    );
    assert!(demo_warnings(&exporter).is_empty(), "{:#?}", exporter.log());
}

/// The image's last stage: its ENTRYPOINT (exec form) and its ENV variables.
fn image_start() -> (Vec<String>, Vec<(String, String)>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("Dockerfile");
    let text = std::fs::read_to_string(&path).expect("Dockerfile");
    let last_stage = text.rsplit("\nFROM ").next().expect("a FROM");
    let mut entrypoint = None;
    let mut env = Vec::new();
    for line in last_stage.lines() {
        if let Some(json) = line.strip_prefix("ENTRYPOINT ") {
            let words: Vec<String> = serde_json::from_str(json)
                .unwrap_or_else(|e| panic!("ENTRYPOINT is not in exec form: {json}: {e}"));
            entrypoint = Some(words);
        } else if let Some(assignment) = line.strip_prefix("ENV ") {
            let (name, value) = assignment
                .split_once('=')
                .unwrap_or_else(|| panic!("ENV without '=': {line}"));
            env.push((name.trim().to_string(), value.trim().to_string()));
        }
        assert!(
            !line.starts_with("CMD "),
            "a CMD is dropped by `docker run IMAGE FLAG`: {line}"
        );
    }
    let entrypoint = entrypoint.expect("an ENTRYPOINT");
    assert_eq!(
        entrypoint.first().map(String::as_str),
        Some("/usr/local/bin/mig-exporter")
    );
    (entrypoint, env)
}

/// `docker run IMAGE ARGS` on a machine without a driver: the exporter with
/// the image's environment and entrypoint arguments.
fn run_image(args: &[&str]) -> Output {
    let (entrypoint, env) = image_start();
    Command::new(EXPORTER)
        .args(&entrypoint[1..])
        .args(args)
        .envs(env)
        .env(NVML_LIBRARY_ENV, NO_DRIVER)
        .output()
        .unwrap()
}

#[test]
fn the_image_reads_the_hardware_whatever_arguments_docker_run_gives() {
    let (entrypoint, env) = image_start();
    let mut env: Vec<(&str, &Path)> = env.iter().map(|(k, v)| (k.as_str(), Path::new(v))).collect();
    env.push((NVML_LIBRARY_ENV, Path::new(NO_DRIVER)));
    // Exporter's own --web.listen-address and --poll.interval are `docker run` arguments here.
    let args: Vec<&str> = entrypoint[1..].iter().map(String::as_str).collect();
    let exporter = Exporter::start_unready(&args, &env);
    let text = exporter.metrics();
    assert_eq!(
        value(&text, "mig_exporter_source_up{source=\"nvml\"}").as_deref(),
        Some("0"),
        "{text}"
    );
    assert_eq!(value(&text, "mig_exporter_simulated").as_deref(), Some("0"));
    assert!(demo_warnings(&exporter).is_empty(), "{:#?}", exporter.log());

    // Its subcommands read the hardware too.
    let out = run_image(&["geometry"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(
        stderr.contains("cannot load /nonexistent/libnvidia-ml.so.1"),
        "{stderr}"
    );
}

fn exporter(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(EXPORTER)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

#[test]
fn flags_come_from_mig_exporter_environment_variables_and_the_command_line_wins() {
    let json = |out: &Output| -> serde_json::Value {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let env = [
        ("MIG_EXPORTER_SIMULATE", "a100-single"),
        ("MIG_EXPORTER_OUTPUT", "json"),
    ];
    let node = json(&exporter(&["geometry"], &env));
    let name = node["gpus"][0]["name"].as_str().unwrap_or_default().to_string();
    assert!(name.contains("A100"), "{node}");
    let node = json(&exporter(&["geometry", "--simulate", "h100-mixed"], &env));
    assert!(
        node["gpus"][0]["name"]
            .as_str()
            .unwrap_or_default()
            .contains("H100"),
        "{node}"
    );

    // A bad value names the flag it is for.
    let out = exporter(
        &["geometry", "--simulate", "a100-single"],
        &[("MIG_EXPORTER_NVML_SLOW_INTERVAL", "1m30")],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("--nvml.slow-interval") && stderr.contains("'1m30' has no unit"),
        "{stderr}"
    );
}

#[test]
fn a_collector_left_out_is_missing_from_metrics_and_named_in_the_start_log() {
    // One switch on the command line, one from its environment variable.
    let exporter = Exporter::start_with_env(
        &["--simulate", "h100-mixed", "--no-collector.health"],
        &[("MIG_EXPORTER_NO_COLLECTOR_PROFILES", Path::new("true"))],
    );
    let text = exporter.metrics();
    for gone in [
        "nvidia_gpu_xid_errors_total",
        "nvidia_gpu_ecc_errors_volatile_total",
        "nvidia_mig_profile_remaining_instances",
    ] {
        assert!(!text.contains(gone), "{gone} left out");
    }
    for kept in [
        "nvidia_gpu_info{",
        "nvidia_gpu_power_watts{",
        "nvidia_mig_gpu_instance_info{",
        "nvidia_mig_compute_instance_sm_active_ratio{",
        "nvidia_mig_geometry_last_change_timestamp_seconds{",
    ] {
        assert!(text.contains(kept), "{kept} kept: {text}");
    }
    let log = exporter.log();
    let line = |collector: &str| {
        log.iter()
            .find(|l| l.contains(&format!("collector={collector}")))
            .unwrap_or_else(|| panic!("{collector} in {log:#?}"))
            .clone()
    };
    let health = line("health");
    assert!(
        health.contains("nvidia_gpu_xid_errors_total") && health.contains("MigGpuXidResetRequired"),
        "{health}"
    );
    assert!(line("profiles").contains("alerts_without_input=none"));
    assert!(
        !log.iter().any(|l| l.contains("collector=ci-activity")),
        "only what is left out: {log:#?}"
    );
}

#[test]
fn version_prints_version_revision_build_date_and_rust_version() {
    let out = exporter(&["--version"], &[]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some(
            format!(
                "mig-exporter version {} (revision: {})",
                env!("CARGO_PKG_VERSION"),
                mig_exporter::REVISION
            )
            .as_str()
        ),
        "{text}"
    );
    let fields: Vec<(&str, &str)> = lines.filter_map(|l| l.trim().split_once(": ")).collect();
    let field = |name: &str| fields.iter().find(|(k, _)| *k == name).map(|(_, v)| v.trim());
    let date = field("build date").unwrap_or_else(|| panic!("{text}"));
    assert!(
        date == "unknown"
            || (date.len() == 17
                && date.as_bytes()[8] == b'-'
                && date[..8].bytes().all(|b| b.is_ascii_digit())),
        "{date}"
    );
    assert!(
        field("rust version").is_some_and(|v| v.starts_with("rustc 1.")),
        "{text}"
    );
    assert!(field("platform").is_some(), "{text}");
}

/// SIGTERM while the sources that own a small runtime of their own (the
/// kubelet client, the Kubernetes API client of the desired config) are
/// set up: the exporter stops with status 0, and nothing panics while the
/// poller and those runtimes are dropped.
#[test]
fn sigterm_stops_the_exporter_cleanly_with_its_kubelet_and_kubernetes_clients() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("kubelet.sock");
    let socket = socket.to_str().unwrap();
    let mut exporter = Exporter::start(&[
        "--simulate",
        "h100-mixed",
        "--kubelet.pod-resources-socket",
        socket,
        "--mig.config-from-kubernetes",
        "--kubernetes.node-name",
        "gpu-node-1",
        "--kubernetes.api-server",
        "https://127.0.0.1:1",
    ]);
    let text = exporter.metrics();
    for source in ["kubelet", "mig_config"] {
        assert!(
            text.contains(&format!("mig_exporter_source_info{{source=\"{source}\"")),
            "{source} runs: {text}"
        );
    }
    let status = exporter.terminate();
    let log = exporter.log();
    assert!(status.success(), "exit {status}: {log:#?}");
    assert!(!log.iter().any(|l| l.contains("panicked")), "{log:#?}");
}

/// Each poll runs on a thread of the runtime's blocking pool. tokio ends an
/// idle one after 10 s, so at a longer interval every poll would start a
/// new thread (src/cli.rs, `blocking_keep_alive`). Over two polls 11 s
/// apart the exporter's threads stay the same ones.
#[test]
fn a_poll_interval_longer_than_ten_seconds_keeps_its_polling_thread() {
    let dir = tempfile::tempdir().unwrap();
    let world = h100_world(dir.path(), 1, "19");
    let exporter = Exporter::start(&["--world", world.to_str().unwrap(), "--poll.interval", "11s"]);
    let polls = || -> u64 {
        value(
            &exporter.metrics(),
            "mig_exporter_poll_duration_seconds_count{source=\"sim\"}",
        )
        .and_then(|v| v.parse().ok())
        .expect("the poll count")
    };
    let threads = || -> std::collections::BTreeSet<String> {
        std::fs::read_dir(format!("/proc/{}/task", exporter.pid()))
            .expect("the exporter's threads")
            .map(|t| t.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    // The poll at start, then one every 11 s: wait (at most 15 s each) for the next two.
    common::wait_for(|| polls() >= 2, "the first poll after start");
    let after_first = threads();
    common::wait_for(|| polls() >= 3, "the second poll after start");
    let after_second = threads();
    assert_eq!(
        after_first, after_second,
        "the exporter's threads (ids) changed between two polls 11 s apart"
    );
}
