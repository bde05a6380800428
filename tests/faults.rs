//! Every fault the exporter must survive, in one place: what `/metrics`
//! shows while it lasts (`mig_exporter_source_up`, `mig_exporter_poll_errors_total`,
//! no stale series), that the other sources keep working, and that it heals
//! without a restart. Faults are switched on through the test doubles
//! (`mig_model::Faults`, read by fake-nvml and fake-dcgm), `mig-sim`, the fake
//! kubelet, a tiny tmpfs, and libfaketime.
//!
//! The index of every fault test, by the fault (here: in this file):
//!
//! * GPU lost: mid-poll, here (`a_gpu_lost_in_the_middle_of_a_poll_…`);
//!   between polls, `tests/nvml.rs`
//!   `a_gpu_lost_mid_run_drops_the_series_and_recovers_without_restart`.
//! * NVML missing or not loaded at start: the library file appearing later,
//!   here (`an_nvml_library_that_appears_after_start_…`); the driver loading
//!   later, `tests/nvml.rs` `a_driver_that_loads_after_the_exporter_…`; a
//!   library path that never exists, `tests/e2e.rs`
//!   `a_missing_nvml_library_keeps_the_exporter_serving_and_says_why`; no
//!   permission for the MIG monitor capability, `tests/nvml.rs`
//!   `no_permission_for_mig_instances_names_the_capability`, and in a
//!   container whose runtime did not inject the MIG monitor device,
//!   `a_container_without_the_injected_mig_monitor_device_says_so_with_the_fix`; no permission
//!   for a MIG GPU's aggregate memory (a non-root caller), here
//!   (`an_unprivileged_exporter_keeps_a_mig_gpus_series_but_its_memory`).
//! * DCGM host engine killed and restarted: here, with the error counter and
//!   GPM carrying on (`a_killed_host_engine_…`); reconnection in the source,
//!   `tests/dcgm.rs` `a_host_engine_restart_heals_without_a_new_source`; NVML
//!   staying up, `tests/dcgm_exporter.rs`
//!   `dcgm_values_land_on_the_right_instances_follow_reconfiguration_and_…`;
//!   the library missing, `tests/dcgm_exporter.rs`
//!   `without_a_dcgm_library_nvml_metrics_are_served_with_one_clear_log_line`.
//! * A DCGM field not supported: in `/metrics`, here
//!   (`a_dcgm_field_not_supported_…`); in the source, with stale data,
//!   `tests/dcgm.rs` `unsupported_fields_and_stale_data_are_absent_not_zero`.
//! * MIG reconfigured mid-poll: never a torn geometry, `tests/nvml.rs`
//!   `a_reconfiguration_during_a_poll_never_publishes_a_torn_geometry`;
//!   exactly the affected series added and removed, `tests/e2e.rs`
//!   `reconfiguring_with_mig_sim_adds_and_removes_exactly_the_affected_series`;
//!   DCGM values following their instances, `tests/dcgm.rs`
//!   `after_a_reconfiguration_the_values_follow_their_instances`; GPM never
//!   rating across two instances, `tests/gpm.rs`
//!   `a_recreated_gpu_instance_starts_over_instead_of_a_bogus_rate`.
//! * Kubelet socket gone: mid-run and back, here
//!   (`a_kubelet_socket_that_goes_away_…`); absent at start and too slow,
//!   `tests/kubelet.rs` `an_absent_socket_marks_only_the_kubelet_down`,
//!   `a_slow_kubelet_fails_within_the_deadline`.
//! * State directory full or read-only: here, a 64 KiB tmpfs filled up
//!   (`a_full_state_directory_…`) or remounted read-only
//!   (`a_read_only_state_directory_…`); unusable (a file where the directory
//!   should be) and a state file that cannot be read, `tests/drift.rs`
//!   `an_unwritable_state_directory_is_reported_and_the_exporter_keeps_serving`,
//!   `a_state_file_that_cannot_be_read_is_reported_left_untouched_and_…`; a
//!   writer killed mid-write, `tests/drift.rs`
//!   `a_process_killed_while_writing_never_leaves_a_partial_file`.
//! * The clock jumping: the GPU's GPM sample clock, here
//!   (`gpm_rates_stay_between_0_and_1_…`); the wall clock, here: polling
//!   stays on the monotonic clock (`wall_clock_jumps_…`), and DCGM samples
//!   stamped ahead of a clock that stepped back are not live
//!   (`dcgm_values_frozen_before_the_wall_clock_steps_back_…`).
//! * Broken inputs while running: the World file, `tests/e2e.rs`
//!   `a_broken_world_file_drops_every_series_and_recovers_without_restart`;
//!   the desired config, `tests/drift.rs`
//!   `a_config_that_breaks_while_running_is_reported_and_the_last_valid_one_stays`.
//! * All of them together for minutes under a real Prometheus: `tests/soak.rs`
//!   (`scripts/soak.sh`).

mod common;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::kubelet::{devices, pod, FakeKubelet};
use common::{built, edit_world, gauge, mig_sim, near, run_ok, series, value, wait_for, Exporter, EXPORTER};

/// One H100 with a 3g.40gb (GI 2) and a 1g.10gb (GI 7), each with its compute
/// instance and load; `gpus` H100s alike.
fn h100_world(dir: &Path, gpus: u32) -> PathBuf {
    let world = dir.join("world.json");
    let w = world.to_str().unwrap();
    mig_sim(
        &world,
        &["init", "--gpus", &gpus.to_string(), "--product", "h100-80gb", w],
    );
    for gpu in 0..gpus {
        let i = gpu.to_string();
        mig_sim(&world, &["-i", &i, "-mig", "1"]);
        mig_sim(&world, &["-i", &i, "mig", "-cgi", "9,19", "-C"]);
    }
    let load = |gi: &str, args: &[&str]| {
        let mut all = vec!["load", "--gpu", "0", "--gi", gi];
        all.extend_from_slice(args);
        mig_sim(&world, &all);
    };
    load(
        "2",
        &[
            "--sm-active",
            "0.75",
            "--sm-occupancy",
            "0.5",
            "--dram-active",
            "0.5",
        ],
    );
    load("7", &["--sm-active", "0.25", "--sm-occupancy", "0.125"]);
    world
}

/// The exporter in NVML mode over `world` through fake-nvml (GPM on), then `extra`.
fn nvml_exporter(world: &Path, extra: &[&str]) -> Exporter {
    let library = built("libfake_nvml.so");
    let mut args = vec!["--nvml", "--nvml.library", library.to_str().unwrap()];
    args.extend_from_slice(extra);
    Exporter::start_with_env(&args, &[("MIG_WORLD", world)])
}

fn up(text: &str, source: &str) -> Option<String> {
    value(text, &format!("mig_exporter_source_up{{source=\"{source}\"}}"))
}

fn errors(text: &str, source: &str) -> f64 {
    value(
        text,
        &format!("mig_exporter_poll_errors_total{{source=\"{source}\"}}"),
    )
    .and_then(|v| v.parse().ok())
    .unwrap_or_else(|| panic!("no poll_errors_total for {source}:\n{text}"))
}

/// The `gpu` label values of `nvidia_gpu_info`.
fn gpus_shown(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| l.starts_with("nvidia_gpu_info{"))
        .filter_map(|l| l.split("gpu=\"").nth(1)?.split('"').next().map(str::to_string))
        .collect()
}

/// The reason the landing page gives for `source` being down.
fn down_reason(exporter: &Exporter, source: &str) -> String {
    let (_, page) = exporter.get("/", None);
    page.split(&format!("data-source=\"{source}\">"))
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .unwrap_or_default()
        .to_string()
}

/// Waits until `source`'s error counter has grown by `polls` from now: the
/// fault is counted on every poll, not once.
fn wait_for_errors(exporter: &Exporter, source: &str, polls: f64) {
    let from = errors(&exporter.metrics(), source);
    wait_for(
        || errors(&exporter.metrics(), source) >= from + polls,
        &format!("{polls} more {source} errors"),
    );
}

/// Asserts that `source`'s error counter no longer grows.
fn assert_errors_stopped(exporter: &Exporter, source: &str) {
    let at = errors(&exporter.metrics(), source);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        errors(&exporter.metrics(), source),
        at,
        "{source} errors stop growing once it is up"
    );
}

/// The GPUs (`gpu` label values) that have a series of `family`.
fn gpus_with(text: &str, family: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{family}{{")))
        .filter_map(|l| l.split("gpu=\"").nth(1)?.split('"').next().map(str::to_string))
        .collect()
}

#[test]
fn an_unprivileged_exporter_keeps_a_mig_gpus_series_but_its_memory() {
    let dir = tempfile::tempdir().unwrap();
    let world = h100_world(dir.path(), 2);
    // GPU 1 without MIG; the exporter lacks the privileges NVML asks for the
    // memory of a GPU in MIG mode (nvml.h, nvmlDeviceGetMemoryInfo).
    edit_world(&world, |w| {
        w.gpus[1].set_mig_mode(false);
        w.faults.unprivileged = true;
    });
    let exporter = nvml_exporter(&world, &["--no-dcgm"]);
    let both: BTreeSet<String> = ["0".into(), "1".into()].into();
    wait_for(
        || gpus_shown(&exporter.metrics()) == both,
        "both GPUs in /metrics",
    );
    let text = exporter.metrics();
    assert_eq!(up(&text, "nvml").as_deref(), Some("1"), "{text}");
    for family in ["nvidia_gpu_memory_total_bytes", "nvidia_gpu_memory_used_bytes"] {
        assert_eq!(
            gpus_with(&text, family),
            ["1".to_string()].into(),
            "{family}: only the GPU without MIG"
        );
    }
    for family in ["nvidia_gpu_temperature_celsius", "nvidia_mig_mode_current"] {
        assert_eq!(gpus_with(&text, family), both, "{family}");
    }
    assert!(
        gauge(&text, "nvidia_mig_gpu_instance_memory_used_bytes", Some(2)).is_some(),
        "per-instance memory is still read"
    );
    assert!(gauge(&text, "nvidia_mig_compute_instance_info", Some(7)).is_some());
    assert_errors_stopped(&exporter, "nvml");

    edit_world(&world, |w| w.faults = Default::default());
    wait_for(
        || gpus_with(&exporter.metrics(), "nvidia_gpu_memory_total_bytes") == both,
        "GPU 0's memory once permitted",
    );
}

const ONE_LAYOUT: &str = r#"version: v1
mig-configs:
  faults:
    - devices: all
      mig-enabled: true
      mig-devices:
        "3g.40gb": 1
        "1g.10gb": 1
"#;

#[test]
fn a_gpu_lost_in_the_middle_of_a_poll_publishes_no_half_read_node_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let world = h100_world(dir.path(), 2);
    let config = dir.path().join("mig-parted.yaml");
    std::fs::write(&config, ONE_LAYOUT).unwrap();
    // A slow MIG-mode read on every GPU stretches each poll over several
    // hundred milliseconds, so that the loss lands while a poll is reading.
    edit_world(&world, |w| {
        w.faults
            .call_latency_us
            .insert("nvmlDeviceGetMigMode".into(), 60_000);
    });
    let exporter = nvml_exporter(&world, &["--no-dcgm", "--mig.config", config.to_str().unwrap()]);
    let both: BTreeSet<String> = ["0".to_string(), "1".to_string()].into();
    wait_for(|| gpus_shown(&exporter.metrics()) == both, "both GPUs");

    edit_world(&world, |w| w.faults.lost_gpus = vec![1]);
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        let shown = gpus_shown(&exporter.metrics());
        assert!(
            shown.is_empty() || shown == both,
            "a poll that failed half-way published GPUs {shown:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    wait_for(
        || up(&exporter.metrics(), "nvml").as_deref() == Some("0"),
        "source_up{nvml} 0",
    );
    wait_for_errors(&exporter, "nvml", 2.0);
    let text = exporter.metrics();
    assert!(series(&text).is_empty(), "no stale series:\n{text}");
    assert!(!text.contains("nvidia_mig_drift{"), "a lost GPU is not judged");
    assert_eq!(
        up(&text, "mig_config").as_deref(),
        Some("1"),
        "the desired config is still read"
    );
    assert_eq!(exporter.get("/healthz", None).0, 200);
    let reason = down_reason(&exporter, "nvml");
    assert!(
        reason.contains("GPU 1") && reason.contains("fell off the bus"),
        "{reason}"
    );

    edit_world(&world, |w| w.faults.lost_gpus.clear());
    wait_for(|| gpus_shown(&exporter.metrics()) == both, "both GPUs back");
    let text = exporter.metrics();
    assert_eq!(up(&text, "nvml").as_deref(), Some("1"));
    assert!(!text.contains("nvidia_mig_drift{"), "{text}");
    assert_errors_stopped(&exporter, "nvml");
}

#[test]
fn an_nvml_library_that_appears_after_start_is_loaded_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let world = h100_world(dir.path(), 1);
    let lib_dir = dir.path().join("driver");
    let library = lib_dir.join("libnvidia-ml.so.1");
    let exporter = Exporter::start_with_env(
        &["--nvml", "--nvml.library", library.to_str().unwrap(), "--no-dcgm"],
        &[("MIG_WORLD", &world)],
    );
    let text = exporter.metrics();
    assert_eq!(up(&text, "nvml").as_deref(), Some("0"));
    assert!(series(&text).is_empty());
    assert!(down_reason(&exporter, "nvml").contains("cannot load"));
    wait_for_errors(&exporter, "nvml", 3.0);

    // The driver's package is installed: the file appears whole (rename).
    std::fs::create_dir(&lib_dir).unwrap();
    std::fs::copy(built("libfake_nvml.so"), lib_dir.join("partial")).unwrap();
    std::fs::rename(lib_dir.join("partial"), &library).unwrap();
    wait_for(
        || up(&exporter.metrics(), "nvml").as_deref() == Some("1"),
        "the library loaded",
    );
    assert!(gauge(&exporter.metrics(), "nvidia_mig_gpu_instance_info", Some(2)).is_some());
    // GPM reads through the library the NVML source opened late.
    wait_for(
        || {
            near(
                gauge(
                    &exporter.metrics(),
                    "nvidia_mig_gpu_instance_sm_active_ratio",
                    Some(2),
                ),
                0.75,
            )
        },
        "GPM activity through the new library",
    );
    assert_errors_stopped(&exporter, "nvml");
    let said = exporter
        .log()
        .iter()
        .filter(|l| l.contains("cannot load"))
        .count();
    assert_eq!(said, 1, "the missing library is logged once, not on every poll");
}

#[test]
fn a_killed_host_engine_is_counted_gpm_carries_the_gpu_instances_and_a_restart_heals_it() {
    let dir = tempfile::tempdir().unwrap();
    let world = h100_world(dir.path(), 1);
    let dcgm = built("libfake_dcgm.so");
    let exporter = nvml_exporter(&world, &["--dcgm.library", dcgm.to_str().unwrap()]);
    let ci_sm = "nvidia_mig_compute_instance_sm_active_ratio";
    let gi_sm = "nvidia_mig_gpu_instance_sm_active_ratio";
    wait_for(
        || near(gauge(&exporter.metrics(), ci_sm, Some(2)), 0.75),
        "DCGM's compute-instance activity",
    );

    edit_world(&world, |w| w.faults.dcgm_hostengine_down = true);
    wait_for(
        || up(&exporter.metrics(), "dcgm").as_deref() == Some("0"),
        "source_up{dcgm} 0",
    );
    wait_for_errors(&exporter, "dcgm", 3.0);
    let text = exporter.metrics();
    assert!(
        !text.contains(&format!("{ci_sm}{{")),
        "no stale compute-instance activity:\n{text}"
    );
    for source in ["nvml", "gpm"] {
        assert_eq!(up(&text, source).as_deref(), Some("1"), "{source} keeps working");
    }
    assert!(gauge(&text, "nvidia_mig_compute_instance_info", Some(2)).is_some());
    // GPM has no compute-instance counters, but fills the GPU instances.
    wait_for(
        || near(gauge(&exporter.metrics(), gi_sm, Some(2)), 0.75),
        "GPM's GPU-instance activity while DCGM is down",
    );
    let reason = down_reason(&exporter, "dcgm");
    assert!(reason.contains("Host engine connection invalid"), "{reason}");

    edit_world(&world, |w| w.faults.dcgm_hostengine_down = false);
    wait_for(
        || near(gauge(&exporter.metrics(), ci_sm, Some(2)), 0.75),
        "DCGM back after the restart",
    );
    assert_eq!(up(&exporter.metrics(), "dcgm").as_deref(), Some("1"));
    assert_errors_stopped(&exporter, "dcgm");
}

#[test]
fn a_dcgm_field_not_supported_is_absent_while_the_other_fields_stay_and_dcgm_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    let world = h100_world(dir.path(), 1);
    let dcgm = built("libfake_dcgm.so");
    let exporter = nvml_exporter(&world, &["--dcgm.library", dcgm.to_str().unwrap()]);
    let ci = |kind: &str| format!("nvidia_mig_compute_instance_{kind}_ratio");
    let gi = |kind: &str| format!("nvidia_mig_gpu_instance_{kind}_ratio");
    wait_for(
        || near(gauge(&exporter.metrics(), &ci("sm_occupancy"), Some(2)), 0.5),
        "DCGM's occupancy",
    );
    let errors_before = errors(&exporter.metrics(), "dcgm");

    // DCGM_FI_PROF_SM_OCCUPANCY, as on a GPU whose profiling module lacks it.
    edit_world(&world, |w| w.faults.dcgm_unsupported_fields = vec![1003]);
    wait_for(
        || gauge(&exporter.metrics(), &ci("sm_occupancy"), Some(2)).is_none(),
        "occupancy absent, not zero",
    );
    std::thread::sleep(Duration::from_millis(300));
    let text = exporter.metrics();
    assert!(!text.contains(&format!("{}{{", ci("sm_occupancy"))), "{text}");
    assert!(
        near(gauge(&text, &ci("sm_active"), Some(2)), 0.75),
        "other fields stay"
    );
    assert!(near(gauge(&text, &ci("sm_active"), Some(7)), 0.25));
    // GPM fills what DCGM left empty on the GPU instances.
    assert!(near(gauge(&text, &gi("sm_occupancy"), Some(2)), 0.5), "{text}");
    assert_eq!(
        up(&text, "dcgm").as_deref(),
        Some("1"),
        "a field is not the source"
    );
    assert_eq!(errors(&text, "dcgm"), errors_before);

    edit_world(&world, |w| w.faults.dcgm_unsupported_fields.clear());
    wait_for(
        || near(gauge(&exporter.metrics(), &ci("sm_occupancy"), Some(2)), 0.5),
        "occupancy back",
    );
}

/// `nvidia_mig_instance_pod_info` lines.
fn owners(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with("nvidia_mig_instance_pod_info{"))
        .map(str::to_string)
        .collect()
}

/// A fake kubelet at `dir/kubelet.sock` where `pod-0` holds `mig_uuid`.
fn kubelet_holding(dir: &Path, mig_uuid: &str) -> FakeKubelet {
    let kubelet = FakeKubelet::start(dir);
    kubelet.set(|a| {
        a.pods.pod_resources = vec![pod(
            "ml",
            "pod-0",
            "main",
            vec![devices("nvidia.com/mig-3g.40gb", &[mig_uuid])],
        )];
    });
    kubelet
}

#[test]
fn a_kubelet_socket_that_goes_away_is_reported_and_picked_up_again_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let world = h100_world(dir.path(), 1);
    let mig_uuid = mig_model::World::load(&world).unwrap().gpus[0]
        .gpu_instances
        .iter()
        .find(|g| g.id == 2)
        .unwrap()
        .compute_instances[0]
        .uuid
        .clone();
    let kubelet = kubelet_holding(dir.path(), &mig_uuid);
    let socket = kubelet.socket.clone();
    let exporter = Exporter::start(&[
        "--world",
        world.to_str().unwrap(),
        "--kubelet.pod-resources-socket",
        socket.to_str().unwrap(),
    ]);
    wait_for(
        || owners(&exporter.metrics()).len() == 1,
        "the pod's owner series",
    );
    let geometry = series(&exporter.metrics());

    // The kubelet restarts: its socket is gone for a while.
    drop(kubelet);
    std::fs::remove_file(&socket).unwrap();
    wait_for(
        || up(&exporter.metrics(), "kubelet").as_deref() == Some("0"),
        "source_up{kubelet} 0",
    );
    wait_for_errors(&exporter, "kubelet", 3.0);
    let text = exporter.metrics();
    assert!(owners(&text).is_empty(), "no stale owners:\n{text}");
    assert_eq!(up(&text, "sim").as_deref(), Some("1"));
    let without_owners: BTreeSet<String> = geometry
        .iter()
        .filter(|s| !s.starts_with("nvidia_mig_instance_pod_info{"))
        .cloned()
        .collect();
    assert_eq!(series(&text), without_owners, "everything else is still served");
    assert!(down_reason(&exporter, "kubelet").contains("kubelet.sock"));

    let _kubelet = kubelet_holding(dir.path(), &mig_uuid);
    wait_for(|| owners(&exporter.metrics()).len() == 1, "owners back");
    assert_eq!(up(&exporter.metrics(), "kubelet").as_deref(), Some("1"));
    assert_errors_stopped(&exporter, "kubelet");
}

/// The exporter in its own mount namespace where `mount_point` is a tmpfs of
/// `kib` KiB: a disk that can really fill up, never seen by the host and gone
/// with the process. Without root, a user namespace provides the mount.
fn exporter_with_tmpfs(mount_point: &Path, kib: u32, args: &[&str]) -> Exporter {
    let mut command = Command::new("unshare");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        command.arg("--map-root-user");
    }
    command.args([
        "--mount",
        "sh",
        "-c",
        &format!(
            "mount -t tmpfs -o size={kib}k,mode=0700 mig-faults \"{}\" && exec \"$0\" \"$@\"",
            mount_point.display()
        ),
        EXPORTER,
    ]);
    Exporter::start_command(command, args)
}

/// Fills the file system of `dir` with `path` until it is full.
fn fill(path: &Path) {
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 4096];
    loop {
        if let Err(e) = file.write_all(&chunk) {
            assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
            return;
        }
    }
}

/// The exporter on a one-GPU World with its state file on a private 64 KiB
/// tmpfs, once it has written the first state file.
struct StateOnTmpfs {
    world: PathBuf,
    state_dir: PathBuf,
    state: PathBuf,
    exporter: Exporter,
    first: String,
    _dir: tempfile::TempDir,
}

impl StateOnTmpfs {
    fn start() -> StateOnTmpfs {
        let dir = tempfile::tempdir().unwrap();
        let world = h100_world(dir.path(), 1);
        let state_dir = dir.path().join("state");
        std::fs::create_dir(&state_dir).unwrap();
        let state = state_dir.join("state.json");
        let exporter = exporter_with_tmpfs(
            &state_dir,
            64,
            &[
                "--world",
                world.to_str().unwrap(),
                "--state.file",
                state.to_str().unwrap(),
            ],
        );
        let mut fixture = StateOnTmpfs {
            world,
            state_dir,
            state,
            exporter,
            first: String::new(),
            _dir: dir,
        };
        assert!(
            std::fs::read_dir(&fixture.state_dir).unwrap().next().is_none(),
            "the host's directory is untouched"
        );
        wait_for(|| fixture.inside(&fixture.state).exists(), "the first state file");
        fixture.first = std::fs::read_to_string(fixture.inside(&fixture.state)).unwrap();
        assert!(fixture.first.contains("\"3g.40gb\": 1"), "{}", fixture.first);
        fixture
    }

    /// `path` as the exporter sees it, through its mount namespace.
    fn inside(&self, path: &Path) -> PathBuf {
        Path::new(&format!("/proc/{}/root", self.exporter.pid())).join(path.strip_prefix("/").unwrap())
    }

    /// A new healthy layout that cannot be recorded: the state source is down
    /// for `reason`, the geometry is still served, nothing is called drift,
    /// and the old file stays whole.
    fn new_layout_cannot_be_written(&self, reason: &str) {
        let exporter = &self.exporter;
        mig_sim(&self.world, &["mig", "-cgi", "19", "-C"]);
        wait_for(
            || up(&exporter.metrics(), "state_file").as_deref() == Some("0"),
            "source_up{state_file} 0",
        );
        wait_for_errors(exporter, "state_file", 2.0);
        let text = exporter.metrics();
        assert_eq!(up(&text, "sim").as_deref(), Some("1"), "geometry is still served");
        assert!(gauge(&text, "nvidia_mig_gpu_instance_info", None).is_some());
        assert!(
            !text.contains("nvidia_mig_drift{"),
            "a disk fault is not drift:\n{text}"
        );
        let down = down_reason(exporter, "state_file");
        assert!(
            down.contains("cannot write state file") && down.contains(reason),
            "{down}"
        );
        assert!(exporter.log().iter().any(|l| l.contains(reason)));
        assert_eq!(
            std::fs::read_to_string(self.inside(&self.state)).unwrap(),
            self.first,
            "the old file stays whole"
        );
    }

    /// Once the disk is usable again the new layout is written, with no restart.
    fn new_layout_is_written(&self) {
        wait_for(
            || up(&self.exporter.metrics(), "state_file").as_deref() == Some("1"),
            "source_up{state_file} 1 once the disk is usable",
        );
        let now = std::fs::read_to_string(self.inside(&self.state)).unwrap();
        assert!(
            now.contains("\"1g.10gb\": 2"),
            "the new layout is written:\n{now}"
        );
        assert_errors_stopped(&self.exporter, "state_file");
    }
}

#[test]
fn a_full_state_directory_is_reported_the_old_file_kept_and_written_once_there_is_room() {
    let node = StateOnTmpfs::start();
    let filler = node.inside(&node.state_dir.join("filler"));
    fill(&filler);
    node.new_layout_cannot_be_written("No space left on device");
    let entries: BTreeSet<String> = std::fs::read_dir(node.inside(&node.state_dir))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        entries,
        ["filler".to_string(), "state.json".to_string()].into(),
        "no temp file left by the failed writes"
    );
    std::fs::remove_file(filler).unwrap();
    node.new_layout_is_written();
}

#[test]
fn a_read_only_state_directory_is_reported_the_old_file_kept_and_written_once_writable() {
    let node = StateOnTmpfs::start();
    remount(&node.exporter, &node.state_dir, "ro");
    node.new_layout_cannot_be_written("Read-only file system");
    remount(&node.exporter, &node.state_dir, "rw");
    node.new_layout_is_written();
}

/// Every activity ratio in `text` (GPU, GPU instance, compute instance).
fn ratios(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| l.starts_with("nvidia_") && l.contains("_ratio{"))
        .filter_map(|l| {
            let (series, v) = l.rsplit_once(' ')?;
            Some((series.to_string(), v.parse().ok()?))
        })
        .collect()
}

#[test]
fn gpm_rates_stay_between_0_and_1_when_the_gpu_sample_clock_jumps() {
    let dir = tempfile::tempdir().unwrap();
    let world = h100_world(dir.path(), 1);
    let exporter = nvml_exporter(&world, &["--no-dcgm"]);
    let gi_sm = "nvidia_mig_gpu_instance_sm_active_ratio";
    wait_for(
        || near(gauge(&exporter.metrics(), gi_sm, Some(2)), 0.75),
        "GPM's rate",
    );
    // Backwards by less than a poll interval: the next pair of samples spans
    // a few milliseconds of clock for a whole poll of counters, i.e. several
    // times 100 %. Backwards by more: the second sample is older than the
    // first. Forwards by an hour: the pair spans an hour of clock.
    for (offset_ns, what) in [
        (-90_000_000, "back 90 ms"),
        (-10_000_000_000, "back 10 s"),
        (3_600_000_000_000, "forward 1 h"),
    ] {
        edit_world(&world, |w| w.faults.gpm_clock_offset_ns += offset_ns);
        let deadline = Instant::now() + Duration::from_millis(800);
        let mut absent = false;
        while Instant::now() < deadline {
            let text = exporter.metrics();
            for (series, v) in ratios(&text) {
                assert!((0.0..=1.0).contains(&v), "{what}: {series} {v}");
            }
            assert_eq!(up(&text, "gpm").as_deref(), Some("1"), "{what}");
            absent |= gauge(&text, gi_sm, Some(2)).is_none()
                && gauge(&text, "nvidia_mig_gpu_instance_info", Some(2)).is_some();
            std::thread::sleep(Duration::from_millis(5));
        }
        if offset_ns < 0 {
            assert!(absent, "{what}: the garbage pair publishes nothing, once");
        }
        wait_for(
            || near(gauge(&exporter.metrics(), gi_sm, Some(2)), 0.75),
            &format!("{what}: the next pair measures again"),
        );
    }
}

const FAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// Polls so far, from the geometry source's duration histogram.
fn polls(text: &str, source: &str) -> f64 {
    value(
        text,
        &format!("mig_exporter_poll_duration_seconds_count{{source=\"{source}\"}}"),
    )
    .and_then(|v| v.parse().ok())
    .unwrap_or(0.0)
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The exporter in NVML mode with DCGM over `world`, then `extra`, with its
/// wall clock (CLOCK_REALTIME, and so fake-dcgm's timestamps) offset by
/// what `clock` says (libfaketime's syntax: `+0`, `-1d`), re-read on every
/// call. The monotonic clock and file times stay real, so the fakes notice
/// World changes.
fn exporter_on_faked_wall_clock(world: &Path, clock: &Path, extra: &[&str]) -> Exporter {
    assert!(
        Path::new(FAKETIME).exists(),
        "{FAKETIME} is missing: install the Debian package libfaketime (scripts/test.sh does)"
    );
    if !clock.exists() {
        std::fs::write(clock, "+0\n").unwrap();
    }
    let mut command = Command::new(EXPORTER);
    command.envs([
        ("LD_PRELOAD", OsStr::new(FAKETIME)),
        ("FAKETIME_TIMESTAMP_FILE", clock.as_os_str()),
        ("FAKETIME_NO_CACHE", OsStr::new("1")),
        ("FAKETIME_DONT_FAKE_MONOTONIC", OsStr::new("1")),
        ("NO_FAKE_STAT", OsStr::new("1")),
        ("MIG_WORLD", world.as_os_str()),
    ]);
    let (nvml, dcgm) = (built("libfake_nvml.so"), built("libfake_dcgm.so"));
    let mut args = vec![
        "--nvml",
        "--nvml.library",
        nvml.to_str().unwrap(),
        "--dcgm.library",
        dcgm.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    Exporter::start_command(command, &args)
}

#[test]
fn wall_clock_jumps_neither_stall_polling_nor_move_drift_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let world = h100_world(dir.path(), 1);
    // A GPU instance without a compute instance: a finding whose `since` must hold.
    mig_sim(&world, &["mig", "-cgi", "19"]);
    let clock = dir.path().join("faketime.rc");
    let exporter = exporter_on_faked_wall_clock(&world, &clock, &[]);
    let since_key = |text: &str| {
        text.lines()
            .find(|l| {
                l.starts_with("nvidia_mig_drift_since_timestamp_seconds{") && l.contains("gi_without_ci")
            })
            .map(str::to_string)
    };
    wait_for(|| since_key(&exporter.metrics()).is_some(), "the finding");
    wait_for(
        || {
            gauge(
                &exporter.metrics(),
                "nvidia_mig_compute_instance_sm_active_ratio",
                Some(2),
            )
            .is_some()
                && gauge(
                    &exporter.metrics(),
                    "nvidia_mig_gpu_instance_sm_active_ratio",
                    Some(2),
                )
                .is_some()
        },
        "DCGM and GPM activity",
    );
    let since = since_key(&exporter.metrics()).unwrap();
    let geometry_changed = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("nvidia_mig_geometry_last_change_timestamp_seconds{"))
            .map(str::to_string)
    };
    let changed_at = geometry_changed(&exporter.metrics());

    for (jump, seconds) in [("-1d", -86_400.0), ("+2d", 2.0 * 86_400.0)] {
        std::fs::write(&clock, format!("{jump}\n")).unwrap();
        let before = polls(&exporter.metrics(), "nvml");
        // 100 ms polls on the monotonic clock: a scheduler on the wall clock
        // would sleep a day after the jump back, or fire every poll at once forwards.
        std::thread::sleep(Duration::from_millis(1500));
        let text = exporter.metrics();
        let done = polls(&text, "nvml") - before;
        assert!((5.0..=20.0).contains(&done), "{jump}: {done} polls in 1.5 s");
        let last: f64 = value(
            &text,
            "mig_exporter_last_successful_poll_timestamp_seconds{source=\"nvml\"}",
        )
        .unwrap()
        .parse()
        .unwrap();
        assert!(
            (last - (unix_now() + seconds)).abs() < 5.0,
            "{jump}: poll times follow the wall clock ({last})"
        );
        assert_eq!(
            since_key(&text).as_deref(),
            Some(since.as_str()),
            "{jump}: the finding keeps its since"
        );
        assert_eq!(
            geometry_changed(&text),
            changed_at,
            "{jump}: the geometry did not change"
        );
        for source in ["nvml", "dcgm", "gpm"] {
            assert_eq!(up(&text, source).as_deref(), Some("1"), "{jump}: {source}");
        }
        for (series, v) in ratios(&text) {
            assert!((0.0..=1.0).contains(&v), "{jump}: {series} {v}");
        }
        let negative: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| l.rsplit_once(' ').is_some_and(|(_, v)| v.starts_with('-')))
            .collect();
        assert!(negative.is_empty(), "{jump}: negative values {negative:#?}");
    }
    // The finding clears on the jumped clock, its duration never negative.
    let bare = mig_model::World::load(&world).unwrap().gpus[0]
        .gpu_instances
        .iter()
        .find(|g| g.compute_instances.is_empty())
        .map(|g| g.id.to_string())
        .unwrap();
    mig_sim(&world, &["mig", "-dgi", "-gi", &bare]);
    wait_for(|| since_key(&exporter.metrics()).is_none(), "the finding cleared");
    let cleared = exporter
        .log()
        .into_iter()
        .find(|l| l.contains("drift cleared"))
        .unwrap();
    assert!(!cleared.contains("lasted_seconds=-"), "{cleared}");
}

#[test]
fn dcgm_values_frozen_before_the_wall_clock_steps_back_are_not_served_as_live() {
    let dir = tempfile::tempdir().unwrap();
    let world = h100_world(dir.path(), 1);
    let clock = dir.path().join("faketime.rc");
    let exporter = exporter_on_faked_wall_clock(&world, &clock, &["--no-gpm"]);
    let ci_sm = "nvidia_mig_compute_instance_sm_active_ratio";
    wait_for(
        || near(gauge(&exporter.metrics(), ci_sm, Some(2)), 0.75),
        "DCGM's value",
    );
    // The host engine stops sampling; the load changes unseen; then the
    // clock steps back an hour, so the frozen sample looks an hour young.
    edit_world(&world, |w| w.faults.dcgm_stale_data = true);
    std::thread::sleep(Duration::from_millis(300));
    mig_sim(&world, &["load", "--gpu", "0", "--gi", "2", "--sm-active", "0.2"]);
    std::fs::write(&clock, "-1h\n").unwrap();
    wait_for(
        || gauge(&exporter.metrics(), ci_sm, Some(2)).is_none(),
        "the frozen value withdrawn, not served for an hour",
    );
    let text = exporter.metrics();
    assert_eq!(up(&text, "dcgm").as_deref(), Some("1"), "DCGM still answers");
    assert!(gauge(&text, "nvidia_mig_compute_instance_info", Some(2)).is_some());

    edit_world(&world, |w| w.faults.dcgm_stale_data = false);
    wait_for(
        || near(gauge(&exporter.metrics(), ci_sm, Some(2)), 0.2),
        "fresh samples on the stepped-back clock",
    );
}

/// Remounts the exporter's private tmpfs at `mount_point` read-only or
/// read-write again, from inside its mount (and user) namespace.
fn remount(exporter: &Exporter, mount_point: &Path, mode: &str) {
    let pid = exporter.pid().to_string();
    let mut command = Command::new("nsenter");
    command.args(["--target", &pid, "--mount"]);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        command.args(["--user", "--preserve-credentials"]);
    }
    command
        .args(["mount", "-o", &format!("remount,{mode}")])
        .arg(mount_point);
    run_ok(&mut command, &format!("remount {mode} (nsenter, util-linux)"));
}
