//! The exporter in NVML mode with DCGM beside it, through the real FFI paths
//! on `fake-nvml` and `fake-dcgm`, both over one World file.

mod common;

use std::path::{Path, PathBuf};

use common::{built, edit_world, mig_sim, series, value, wait_for, Exporter};

fn start(world: &Path, dcgm_library: &Path) -> Exporter {
    let nvml = built("libfake_nvml.so");
    Exporter::start_with_env(
        &[
            "--nvml",
            "--nvml.library",
            nvml.to_str().unwrap(),
            "--dcgm.library",
            dcgm_library.to_str().unwrap(),
        ],
        &[("MIG_WORLD", world)],
    )
}

fn h100_world(dir: &Path) -> PathBuf {
    let world = dir.join("world.json");
    mig_sim(
        &world,
        &[
            "init",
            "--gpus",
            "1",
            "--product",
            "h100-80gb",
            world.to_str().unwrap(),
        ],
    );
    mig_sim(&world, &["-mig", "1"]);
    // 3g.40gb at 4:4 (GI 2) and 1g.10gb at 0:1 (GI 7), each with its CI.
    mig_sim(&world, &["mig", "-cgi", "9,19", "-C"]);
    world
}

fn gauge(exporter: &Exporter, family: &str, gi: u32) -> Option<String> {
    let text = exporter.metrics();
    let tag = format!("gi=\"{gi}\"");
    text.lines()
        .find(|l| l.starts_with(&format!("{family}{{")) && l.contains(&tag))
        .and_then(|l| l.rsplit_once(' '))
        .map(|(_, v)| v.to_string())
}

fn dcgm_up(exporter: &Exporter) -> Option<String> {
    value(&exporter.metrics(), "mig_exporter_source_up{source=\"dcgm\"}")
}

#[test]
fn dcgm_values_land_on_the_right_instances_follow_reconfiguration_and_survive_a_host_engine_restart() {
    let dir = tempfile::tempdir().unwrap();
    let world = h100_world(dir.path());
    mig_sim(
        &world,
        &[
            "load",
            "--gpu",
            "0",
            "--gi",
            "2",
            "--sm-active",
            "0.75",
            "--dram-active",
            "0.5",
        ],
    );
    mig_sim(
        &world,
        &["load", "--gpu", "0", "--gi", "7", "--sm-active", "0.25"],
    );
    let exporter = start(&world, &built("libfake_dcgm.so"));
    let sm = "nvidia_mig_compute_instance_sm_active_ratio";
    wait_for(
        || gauge(&exporter, sm, 2).as_deref() == Some("0.75"),
        "GI 2's SM activity from DCGM",
    );
    assert_eq!(gauge(&exporter, sm, 7).as_deref(), Some("0.25"));
    assert_eq!(
        gauge(&exporter, "nvidia_mig_gpu_instance_dram_active_ratio", 2).as_deref(),
        Some("0.5")
    );
    assert_eq!(dcgm_up(&exporter).as_deref(), Some("1"));

    // Reconfigure while running: GI 7 goes, a 2g.20gb comes (at 0:2, GI 3); the
    // series follow without a restart.
    mig_sim(&world, &["mig", "-dci", "-gi", "7"]);
    mig_sim(&world, &["mig", "-dgi", "-gi", "7"]);
    mig_sim(&world, &["mig", "-cgi", "14", "-C"]);
    mig_sim(&world, &["load", "--gpu", "0", "--gi", "3", "--sm-active", "0.6"]);
    wait_for(
        || gauge(&exporter, sm, 3).as_deref() == Some("0.6"),
        "the new GI's activity",
    );
    assert_eq!(gauge(&exporter, sm, 7), None, "no series for the destroyed GI");
    assert_eq!(gauge(&exporter, sm, 2).as_deref(), Some("0.75"));

    // The host engine goes away: DCGM is down, NVML geometry stays, activity is absent, not zero.
    let edit = |down: bool| edit_world(&world, |w| w.faults.dcgm_hostengine_down = down);
    edit(true);
    wait_for(|| dcgm_up(&exporter).as_deref() == Some("0"), "source_up{dcgm} 0");
    wait_for(
        || gauge(&exporter, sm, 2).is_none(),
        "activity absent while DCGM is down",
    );
    assert_eq!(
        value(&exporter.metrics(), "mig_exporter_source_up{source=\"nvml\"}").as_deref(),
        Some("1")
    );
    assert!(series(&exporter.metrics())
        .iter()
        .any(|s| s.starts_with("nvidia_mig_gpu_instance_info{")));

    edit(false);
    wait_for(
        || gauge(&exporter, sm, 2).as_deref() == Some("0.75"),
        "activity back after the restart",
    );
    assert_eq!(dcgm_up(&exporter).as_deref(), Some("1"));
}

#[test]
fn without_a_dcgm_library_nvml_metrics_are_served_with_one_clear_log_line() {
    let dir = tempfile::tempdir().unwrap();
    let world = h100_world(dir.path());
    let exporter = start(&world, Path::new("/nonexistent/libdcgm.so.4"));
    // No DCGM on the node is not DCGM down: no source_up to alert on.
    let disabled = "mig_exporter_source_info{source=\"dcgm\",state=\"disabled\"}";
    wait_for(
        || value(&exporter.metrics(), disabled).as_deref() == Some("1"),
        "DCGM disabled",
    );
    let text = exporter.metrics();
    assert_eq!(dcgm_up(&exporter), None, "{text}");
    assert_eq!(
        value(&text, "mig_exporter_source_up{source=\"nvml\"}").as_deref(),
        Some("1")
    );
    assert!(series(&text)
        .iter()
        .any(|s| s.starts_with("nvidia_mig_compute_instance_info{")));
    assert!(!text.contains("nvidia_mig_compute_instance_sm_active_ratio{"));
    // Several polls later, the missing library is still said once.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let said: Vec<String> = exporter
        .log()
        .into_iter()
        .filter(|l| l.contains("source=dcgm") && l.contains("/nonexistent/libdcgm.so.4"))
        .collect();
    assert_eq!(said.len(), 1, "{said:#?}");
}
