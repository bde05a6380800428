//! The NVML source through the same FFI code it uses on real hardware,
//! against `fake-nvml` (libfake_nvml.so, built beside the exporter) over a
//! World file that the test reconfigures and breaks while the exporter runs.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{built, edit_world, h100_world, mig_sim, series, value, wait_for, Exporter, EXPORTER};
use mig_model::{World, WorldSwap};

fn nvml_exporter(world: &Path, extra: &[&str]) -> Exporter {
    let library = built("libfake_nvml.so");
    let mut args = vec!["--nvml", "--nvml.library", library.to_str().unwrap()];
    args.extend_from_slice(extra);
    Exporter::start_with_env(&args, &[("MIG_WORLD", world)])
}

/// A two-H100 node with a mixed layout, a split GI, a GI without CI, load and telemetry.
fn mixed_world(dir: &Path) -> PathBuf {
    let world = h100_world(dir, 2, "9,14,19");
    mig_sim(&world, &["-i", "0", "mig", "-cgi", "19"]);
    mig_sim(
        &world,
        &["load", "--gpu", "0", "--gi", "2", "--fb-used-mib", "12000"],
    );
    edit_world(&world, |w| {
        let t = &mut w.gpus[1].telemetry;
        t.utilization_percent = 42;
        t.memory_used_mib = 30_000;
        t.energy_millijoules = 123_456_789;
        t.xid_events = vec![79, 79, 48];
        t.ecc_errors.aggregate_corrected = 3;
        t.remapped_rows.correctable = 2;
    });
    world
}

/// Whether `line` is an activity series (`nvidia_gpu_<kind>_ratio`,
/// `nvidia_mig_gpu_instance_<kind>_ratio`, `nvidia_mig_compute_instance_<kind>_ratio`):
/// only a utilization source provides them (DCGM or NVML GPM, or the
/// simulator standing in for them), and NVML mode reads GPM's rates where the
/// simulator gives its load, so they are compared in tests/gpm.rs instead.
fn is_activity(line: &str) -> bool {
    [
        "nvidia_gpu_",
        "nvidia_mig_gpu_instance_",
        "nvidia_mig_compute_instance_",
    ]
    .iter()
    .any(|prefix| {
        mig_exporter::model::Activity::KINDS
            .iter()
            .any(|(stem, _, _)| line.starts_with(&format!("{prefix}{stem}_ratio{{")))
    })
}

/// Families whose values are poll times, which differ between two processes.
const TIMESTAMPS: [&str; 2] = [
    "nvidia_mig_drift_since_timestamp_seconds",
    "nvidia_mig_geometry_last_change_timestamp_seconds",
];

/// `name{labels} value` lines of the GPU and MIG families, minus utilization;
/// for timestamps only `name{labels}`.
fn comparable(exposition: &str) -> BTreeSet<String> {
    let in_family = |line: &str, f: &str| line.starts_with(&format!("{f}{{"));
    exposition
        .lines()
        .filter(|l| l.starts_with("nvidia_"))
        .filter(|l| !is_activity(l))
        .map(|l| match TIMESTAMPS.iter().any(|f| in_family(l, f)) {
            true => l.rsplit_once(' ').map_or(l, |(series, _)| series).to_string(),
            false => l.to_string(),
        })
        .collect()
}

#[test]
fn nvml_on_fake_nvml_and_the_simulator_publish_the_same_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let world = mixed_world(dir.path());
    let sim = Exporter::start(&["--world", world.to_str().unwrap()]);
    let nvml = nvml_exporter(&world, &["--nvml.pcie-throughput"]);
    wait_for(
        || value(&nvml.metrics(), "mig_exporter_source_up{source=\"nvml\"}").as_deref() == Some("1"),
        "nvml source up",
    );
    let from_sim = comparable(&sim.metrics());
    let from_nvml = comparable(&nvml.metrics());
    let only_sim: Vec<_> = from_sim.difference(&from_nvml).collect();
    let only_nvml: Vec<_> = from_nvml.difference(&from_sim).collect();
    assert!(
        only_sim.is_empty() && only_nvml.is_empty(),
        "only in simulator mode:\n{}\nonly in NVML mode:\n{}",
        only_sim.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n"),
        only_nvml
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The comparison covers the geometry it should.
    assert!(from_nvml
        .iter()
        .any(|l| l.starts_with("nvidia_mig_compute_instance_info{")));
    assert!(from_nvml
        .iter()
        .any(|l| l.starts_with("nvidia_mig_gpu_instance_compute_instances{") && l.ends_with(" 0")));
    assert!(from_nvml
        .iter()
        .any(|l| l.starts_with("nvidia_gpu_xid_errors_total{")
            && l.contains("xid=\"79\"")
            && l.ends_with(" 2")));
    // Whole-GPU utilization exists only where MIG is off.
    let util: Vec<_> = from_nvml
        .iter()
        .filter(|l| l.starts_with("nvidia_gpu_utilization_ratio{"))
        .collect();
    assert_eq!(util.len(), 1, "{util:?}");
    assert!(util[0].contains("gpu=\"1\"") && util[0].ends_with(" 0.42"));
}

#[test]
fn geometry_json_through_nvml_equals_the_simulators() {
    let dir = tempfile::tempdir().unwrap();
    let world = mixed_world(dir.path());
    let run = |args: &[&str]| {
        let out = Command::new(EXPORTER)
            .args(["geometry", "--output", "json"])
            .args(args)
            .env("MIG_WORLD", &world)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let mut v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        // Node identity differs by design: the simulator's hostname and boot id
        // are the World's, NVML mode reads this machine's.
        for key in ["hostname", "boot_id"] {
            v.as_object_mut().unwrap().remove(key);
        }
        for gpu in v["gpus"].as_array_mut().unwrap() {
            for gi in gpu["gpu_instances"].as_array_mut().unwrap() {
                gi.as_object_mut().unwrap().remove("dram_active_ratio");
                for ci in gi["compute_instances"].as_array_mut().unwrap() {
                    for key in ["sm_active_ratio", "sm_occupancy_ratio", "tensor_active_ratio"] {
                        ci.as_object_mut().unwrap().remove(key);
                    }
                }
            }
            // The simulator shows PCIe always; NVML only with --nvml.pcie-throughput.
            let health = gpu["health"].as_object_mut().unwrap();
            health.remove("pcie_tx_bytes_per_second");
            health.remove("pcie_rx_bytes_per_second");
        }
        v
    };
    let library = built("libfake_nvml.so");
    assert_eq!(
        run(&["--nvml", "--nvml.library", library.to_str().unwrap()]),
        run(&["--world", world.to_str().unwrap()])
    );
}

/// GPU 0's layout in a scrape: each GPU instance's id and its number of
/// compute instances, as `nvidia_mig_gpu_instance_compute_instances` says.
/// Fails if the scrape's `nvidia_mig_compute_instance_info` series disagree
/// with it (a compute instance of an unlisted GI, or another count).
fn layout(exposition: &str) -> BTreeMap<String, usize> {
    let label = |line: &str, name: &str| {
        line.split(&format!("{name}=\""))
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no {name} label in {line}"))
    };
    let mut said = BTreeMap::new();
    for line in exposition
        .lines()
        .filter(|l| l.starts_with("nvidia_mig_gpu_instance_compute_instances{gpu=\"0\""))
    {
        let count = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("not a count: {line}"));
        said.insert(label(line, "gi"), count);
    }
    let mut info: BTreeMap<String, usize> = said.keys().map(|gi| (gi.clone(), 0)).collect();
    for line in exposition
        .lines()
        .filter(|l| l.starts_with("nvidia_mig_compute_instance_info{gpu=\"0\""))
    {
        *info.entry(label(line, "gi")).or_default() += 1;
    }
    assert_eq!(
        said, info,
        "compute instances per GI (left) disagree with the compute instance series (right) of one scrape"
    );
    said
}

/// GPU 0's layout in a World file: GI id → its number of compute instances.
fn world_layout(world: &Path) -> BTreeMap<String, usize> {
    let w = World::load(world).expect("read the World");
    w.gpus[0]
        .gpu_instances
        .iter()
        .map(|gi| (gi.id.to_string(), gi.compute_instances.len()))
        .collect()
}

fn nvml_polls(exposition: &str) -> Option<u64> {
    value(
        exposition,
        "mig_exporter_poll_duration_seconds_count{source=\"nvml\"}",
    )?
    .parse()
    .ok()
}

#[test]
fn a_reconfiguration_during_a_poll_never_publishes_a_torn_geometry() {
    let dir = tempfile::tempdir().unwrap();
    let world = mixed_world(dir.path());
    // Slow compute-instance reads widen the window between reading GIs and CIs.
    edit_world(&world, |w| {
        w.faults
            .call_latency_us
            .insert("nvmlGpuInstanceGetComputeInstances".into(), 30_000);
    });
    let exporter = nvml_exporter(&world, &[]);
    let old = world_layout(&world);
    wait_for(
        || layout(&exporter.metrics()) == old,
        "the first layout in /metrics",
    );

    // Swap the layout back and forth while scraping: every scrape must show one
    // of the two complete layouts, each GI with the CI count of the layout
    // its GI ids came from.
    // The other layout is prepared on a copy: the live file only ever holds
    // one of the two complete layouts.
    let saved = std::fs::read(&world).unwrap();
    let other = dir.path().join("other.json");
    std::fs::write(&other, &saved).unwrap();
    mig_sim(&other, &["-i", "0", "mig", "-dci"]);
    mig_sim(&other, &["-i", "0", "mig", "-dgi"]);
    mig_sim(&other, &["-i", "0", "mig", "-cgi", "0", "-C"]);
    let reconfigured = std::fs::read(&other).unwrap();
    let new = world_layout(&other);
    assert_ne!(old, new);
    let deadline = Instant::now() + Duration::from_secs(4);
    let mut seen = BTreeSet::new();
    let mut flip = false;
    while Instant::now() < deadline {
        std::fs::write(
            dir.path().join("next.json"),
            if flip { &saved } else { &reconfigured },
        )
        .unwrap();
        std::fs::rename(dir.path().join("next.json"), &world).unwrap();
        flip = !flip;
        for _ in 0..5 {
            let text = exporter.metrics();
            let now = layout(&text);
            if now.is_empty() {
                // A poll that gave up on a layout that kept changing publishes nothing from NVML.
                assert_eq!(
                    value(&text, "mig_exporter_source_up{source=\"nvml\"}").as_deref(),
                    Some("0")
                );
                continue;
            }
            assert!(
                now == old || now == new,
                "torn geometry: GI → CIs {now:?} (old {old:?}, new {new:?})"
            );
            seen.insert(now == new);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    assert!(!seen.is_empty(), "at least one complete geometry was published");
}

#[test]
fn a_reconfiguration_between_two_calls_of_one_poll_is_read_again_never_published_torn() {
    let dir = tempfile::tempdir().unwrap();
    // One GPU, so every nvmlGpuInstanceGetComputeInstances call reads its GIs.
    let world = h100_world(dir.path(), 1, "9,14,19");
    // Each poll begins with half a second in nvmlDeviceGetCount, before it
    // reads any instance: every poll's snapshot can be scraped before the
    // next is published, and a hook set right after a publish is in place
    // before the next poll reads compute instances. The new World keeps it.
    edit_world(&world, |w| {
        w.faults
            .call_latency_us
            .insert("nvmlDeviceGetCount_v2".into(), 500_000);
    });
    // The new layout keeps every GPU instance as it is (ids, profiles,
    // placements) and changes only compute instances, every GI's count: the
    // GI list reads the same before and after, so only the exporter's check
    // of MIG devices against compute instances can see the change.
    let then = dir.path().join("then.json");
    std::fs::copy(&world, &then).unwrap();
    let w = World::load(&world).unwrap();
    let gi = |profile: u32| {
        w.gpus[0]
            .gpu_instances
            .iter()
            .find(|g| g.profile_id == profile)
            .map(|g| g.id.to_string())
            .unwrap()
    };
    mig_sim(&then, &["-i", "0", "mig", "-dci"]);
    mig_sim(&then, &["-i", "0", "mig", "-cci", "0,0,0", "-gi", &gi(9)]);
    mig_sim(&then, &["-i", "0", "mig", "-cci", "0,0", "-gi", &gi(14)]);
    let (old, new) = (world_layout(&world), world_layout(&then));
    assert_eq!(old.keys().collect::<Vec<_>>(), new.keys().collect::<Vec<_>>());
    assert!(old.iter().all(|(gi, n)| new[gi] != *n), "{old:?} {new:?}");

    let exporter = nvml_exporter(&world, &["--log.level", "debug"]);
    wait_for(
        || layout(&exporter.metrics()) == old,
        "the old layout in /metrics",
    );
    // Right after a poll is published, the next is half a second from its
    // first compute-instance read: the World changes after that call, within
    // the poll's read of the layout, before the GI list is checked again.
    let first = nvml_polls(&exporter.metrics()).expect("the NVML poll count");
    wait_for(
        || nvml_polls(&exporter.metrics()) != Some(first),
        "a fresh NVML poll",
    );
    edit_world(&world, |w| {
        w.faults.world_swap = Some(Box::new(WorldSwap {
            call: "nvmlGpuInstanceGetComputeInstances".into(),
            after: 1,
            then: then.clone(),
        }))
    });

    // Every snapshot from then on, one per poll count, each judged when scraped.
    let mut snapshots: BTreeMap<u64, Option<BTreeMap<String, usize>>> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while snapshots.values().filter(|s| s.as_ref() == Some(&new)).count() < 2 {
        assert!(
            Instant::now() < deadline,
            "the new layout never published twice; snapshots by poll: {snapshots:?}"
        );
        let text = exporter.metrics();
        let poll = nvml_polls(&text).expect("the NVML poll count");
        let up = value(&text, "mig_exporter_source_up{source=\"nvml\"}");
        let now = (up.as_deref() == Some("1")).then(|| layout(&text));
        if let Some(now) = &now {
            assert!(
                *now == old || *now == new,
                "poll {poll} published a torn geometry: GI → CIs {now:?} (old {old:?}, new {new:?})"
            );
        }
        if let Some(earlier) = snapshots.insert(poll, now.clone()) {
            assert_eq!(earlier, now, "one poll, two snapshots");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let polls: Vec<u64> = snapshots.keys().copied().collect();
    let (lowest, highest) = (polls[0], polls[polls.len() - 1]);
    assert_eq!(
        polls,
        (lowest..=highest).collect::<Vec<_>>(),
        "a snapshot went unscraped: every one must be judged"
    );
    // What the exporter says it does: a change inside a read is read again
    // within the same poll, so the poll the change overlapped publishes the
    // new layout; never a torn mix, and here not a failed poll either (one
    // change, and a second read sees none).
    let mut switched = false;
    for (poll, snapshot) in &snapshots {
        let Some(now) = snapshot else {
            panic!("poll {poll} failed, though the layout changed only once: {snapshots:?}")
        };
        assert!(
            !switched || *now == new,
            "poll {poll} published the old layout after the new: {snapshots:?}"
        );
        switched = *now == new;
    }
    // And the change did land inside a poll's read, which saw it.
    let log = exporter.log();
    let fired = log
        .iter()
        .position(|l| l.contains("fake-nvml: world_swap: after call 1 of nvmlGpuInstanceGetComputeInstances"))
        .unwrap_or_else(|| panic!("the World was never swapped mid-poll; log: {log:#?}"));
    assert!(
        log[fired..].iter().any(|l| l.contains("reading again")),
        "the exporter never read the geometry again after the World changed inside its read; log: {log:#?}"
    );
}

/// Applies each step's `mig-sim` commands to `world` in turn; after each, the
/// exporter in NVML mode must come to publish what the simulator does.
fn nvml_follows_the_simulator_through(world: &Path, steps: &[&[&[&str]]]) {
    let sim = Exporter::start(&["--world", world.to_str().unwrap()]);
    let nvml = nvml_exporter(world, &["--nvml.pcie-throughput"]);
    for commands in steps {
        wait_for(
            || comparable(&nvml.metrics()) == comparable(&sim.metrics()),
            "NVML mode as the simulator",
        );
        let before = comparable(&sim.metrics());
        for command in commands.iter() {
            mig_sim(world, command);
        }
        wait_for(
            || {
                let from_sim = comparable(&sim.metrics());
                from_sim != before && comparable(&nvml.metrics()) == from_sim
            },
            &format!("NVML mode as the simulator after {commands:?}"),
        );
    }
}

#[test]
fn what_a_poll_keeps_for_the_next_never_hides_a_reconfiguration() {
    let dir = tempfile::tempdir().unwrap();
    let world = mixed_world(dir.path());
    // Remaining capacity is reused while the GI list stays the same; each
    // step changes what a key of something kept could miss, and NVML mode
    // must follow the simulator.
    let steps: [&[&[&str]]; 5] = [
        // A compute instance of another profile in the old one's place (same id).
        &[
            &["-i", "0", "mig", "-dci", "-gi", "2"],
            &["-i", "0", "mig", "-cci", "0", "-gi", "2"],
        ],
        // One more compute instance in the same GPU instance.
        &[&["-i", "0", "mig", "-cci", "0", "-gi", "2"]],
        // The same compute instance recreated: a new MIG UUID, nothing else.
        &[
            &["-i", "0", "mig", "-dci", "-gi", "9"],
            &["-i", "0", "mig", "-cci", "-gi", "9"],
        ],
        // A GPU instance without compute instances goes, then comes back.
        &[&["-i", "0", "mig", "-dgi", "-gi", "10"]],
        &[&["-i", "0", "mig", "-cgi", "19"]],
    ];
    nvml_follows_the_simulator_through(&world, &steps);
}

/// [`mixed_world`]'s layout on a node whose driver gives a compute instance
/// created again in its place its old MIG UUID (`mig-sim init --mig-uuids reused`).
fn mixed_world_reusing_mig_uuids(dir: &Path) -> PathBuf {
    let world = dir.join("world.json");
    let path = world.to_str().unwrap();
    mig_sim(
        &world,
        &[
            "init",
            "--gpus",
            "2",
            "--product",
            "h100-80gb",
            "--mig-uuids",
            "reused",
            path,
        ],
    );
    mig_sim(&world, &["-i", "0", "-mig", "1"]);
    mig_sim(&world, &["-i", "0", "mig", "-cgi", "9,14,19", "-C"]);
    mig_sim(&world, &["-i", "0", "mig", "-cgi", "19"]);
    world
}

#[test]
fn a_compute_instance_recreated_with_its_old_mig_uuid_shows_its_new_profile_on_the_next_poll() {
    let dir = tempfile::tempdir().unwrap();
    let world = mixed_world_reusing_mig_uuids(dir.path());
    let uuid_of_gi_2 = |w: &Path| {
        let world = mig_model::World::load(w).unwrap();
        world.gpus[0].gpu_instance(2).unwrap().compute_instances[0]
            .uuid
            .clone()
    };
    let before = uuid_of_gi_2(&world);
    let steps: [&[&[&str]]; 3] = [
        // GI 2's full compute instance replaced by a 1c.3g.40gb in its place.
        &[
            &["-i", "0", "mig", "-dci", "-gi", "2"],
            &["-i", "0", "mig", "-cci", "0", "-gi", "2"],
        ],
        // And back to the full one.
        &[
            &["-i", "0", "mig", "-dci", "-gi", "2"],
            &["-i", "0", "mig", "-cci", "2", "-gi", "2"],
        ],
        // GI 9 destroyed and a 1g.10gb+me created in its place, with its CI.
        &[
            &["-i", "0", "mig", "-dci", "-gi", "9"],
            &["-i", "0", "mig", "-dgi", "-gi", "9"],
            &["-i", "0", "mig", "-cgi", "20", "-C"],
        ],
    ];
    nvml_follows_the_simulator_through(&world, &steps);
    assert_eq!(uuid_of_gi_2(&world), before, "the MIG UUID did come back");
}

#[test]
fn mig_device_indexes_with_holes_still_list_every_device() {
    let dir = tempfile::tempdir().unwrap();
    let world = mixed_world(dir.path());
    // The MIG device of the lowest GI id goes first, leaving index 0 empty
    // while the others keep theirs; a new one then fills it.
    let steps: [&[&[&str]]; 2] = [
        &[&["-i", "0", "mig", "-dci", "-gi", "2"]],
        &[&["-i", "0", "mig", "-cci", "-gi", "10"]],
    ];
    let lowest = mig_model::World::load(&world).unwrap().gpus[0]
        .gpu_instances
        .iter()
        .filter(|gi| !gi.compute_instances.is_empty())
        .map(|gi| gi.id)
        .min();
    assert_eq!(lowest, Some(2), "the layout this test assumes");
    nvml_follows_the_simulator_through(&world, &steps);
}

fn nvml_up(exporter: &Exporter) -> Option<String> {
    value(&exporter.metrics(), "mig_exporter_source_up{source=\"nvml\"}")
}

/// The reason the landing page gives for the NVML source being down.
fn nvml_down_reason(exporter: &Exporter) -> String {
    let (_, page) = exporter.get("/", None);
    page.split("data-source=\"nvml\">")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_gpu_lost_mid_run_drops_the_series_and_recovers_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let world = mixed_world(dir.path());
    let exporter = nvml_exporter(&world, &[]);
    wait_for(|| nvml_up(&exporter).as_deref() == Some("1"), "nvml source up");

    edit_world(&world, |w| w.faults.lost_gpus = vec![0]);
    wait_for(|| nvml_up(&exporter).as_deref() == Some("0"), "source_up 0");
    assert!(
        series(&exporter.metrics()).is_empty(),
        "no stale series while a GPU is lost"
    );
    // nvml-wrapper's wording of NVML_ERROR_GPU_IS_LOST, after which GPU and call.
    let reason = nvml_down_reason(&exporter);
    assert!(
        reason.contains("GPU 0: nvmlDeviceGetHandleByIndex: device fell off the bus"),
        "{reason}"
    );

    edit_world(&world, |w| w.faults = Default::default());
    wait_for(|| nvml_up(&exporter).as_deref() == Some("1"), "recovery");
    assert!(!series(&exporter.metrics()).is_empty());
    let errors: f64 = value(
        &exporter.metrics(),
        "mig_exporter_poll_errors_total{source=\"nvml\"}",
    )
    .unwrap()
    .parse()
    .unwrap();
    assert!(errors >= 1.0);
}

#[test]
fn a_driver_that_loads_after_the_exporter_is_picked_up_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let world = mixed_world(dir.path());
    edit_world(&world, |w| w.faults.driver_not_loaded = true);
    let exporter = nvml_exporter(&world, &[]);
    assert_eq!(nvml_up(&exporter).as_deref(), Some("0"));
    assert!(series(&exporter.metrics()).is_empty());
    let reason = nvml_down_reason(&exporter);
    assert!(
        reason.contains("nvmlInit: NVIDIA driver is not loaded"),
        "{reason}"
    );

    edit_world(&world, |w| w.faults = Default::default());
    wait_for(
        || nvml_up(&exporter).as_deref() == Some("1"),
        "the driver picked up",
    );
    assert!(!series(&exporter.metrics()).is_empty());
}

/// Issue 17: NVIDIA container toolkit 1.18.0 to 1.20.0 in its CDI modes do
/// not inject the MIG monitor device NVIDIA_MIG_MONITOR_DEVICES asks for
/// (src/source/nvml/monitor.rs has the sources). Then NVML refuses to list
/// MIG instances (nvml.h: NVML_ERROR_NO_PERMISSION), and readiness and the
/// landing page say exactly that, with the fix, instead of an empty node.
#[test]
fn a_container_without_the_injected_mig_monitor_device_says_so_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let world = mixed_world(dir.path());
    edit_world(&world, |w| {
        w.faults
            .failing_calls
            .insert("nvmlDeviceGetGpuInstances".into(), 4);
    });
    // The container's view: the driver's capability file (the real H100's
    // monitor entry, /work/shared/fixtures/h100-80gb-hbm3-real/probe.txt),
    // and no /dev/nvidia-caps/nvidia-cap2.
    let root = dir.path().join("root");
    let proc = root.join("proc/driver/nvidia/capabilities/mig");
    std::fs::create_dir_all(&proc).unwrap();
    std::fs::write(
        proc.join("monitor"),
        "DeviceFileMinor: 2\nDeviceFileMode: 292\nDeviceFileModify: 1\n",
    )
    .unwrap();
    std::fs::create_dir_all(root.join("dev/nvidia-caps")).unwrap();
    let library = built("libfake_nvml.so");
    let exporter = Exporter::start_unready(
        &[
            "--nvml",
            "--nvml.library",
            library.to_str().unwrap(),
            "--nvml.capabilities-root",
            root.to_str().unwrap(),
        ],
        &[
            ("MIG_WORLD", world.as_path()),
            ("NVIDIA_MIG_MONITOR_DEVICES", Path::new("all")),
        ],
    );
    let expected = [
        "NVIDIA_MIG_MONITOR_DEVICES=all",
        "/dev/nvidia-caps/nvidia-cap2 is missing",
        "NVIDIA container toolkit 1.18.0 to 1.20.0",
        "nvidia-container-toolkit issue 1740",
        "upgrade the toolkit on the node to 1.20.1 or later",
    ];
    wait_for(
        || exporter.get("/readyz", None).1.contains("issue 1740"),
        "readiness to name the toolkit bug",
    );
    let (status, body) = exporter.get("/readyz", None);
    assert_eq!(status, 503, "{body}");
    let (_, page) = exporter.get("/", None);
    for needle in expected {
        assert!(body.contains(needle), "/readyz lacks {needle:?}: {body}");
        assert!(page.contains(needle), "the landing page lacks {needle:?}");
    }
    assert!(page.contains("class=\"blocked\""), "shown above the (empty) GPUs");
    assert_eq!(nvml_up(&exporter).as_deref(), Some("0"));

    // With the device there, the refusal has another cause: the generic
    // explanation, and no claim about the toolkit.
    std::fs::write(root.join("dev/nvidia-caps/nvidia-cap2"), "").unwrap();
    wait_for(
        || exporter.get("/readyz", None).0 == 200,
        "no toolkit claim once the device exists",
    );
    assert!(nvml_down_reason(&exporter).contains("/proc/driver/nvidia/capabilities/mig/monitor"));
    assert!(!exporter.get("/", None).1.contains("issue 1740"));
}

#[test]
fn no_permission_for_mig_instances_names_the_capability() {
    let dir = tempfile::tempdir().unwrap();
    let world = mixed_world(dir.path());
    // What the driver answers when /dev/nvidia-caps for mig/monitor is not readable.
    edit_world(&world, |w| {
        w.faults
            .failing_calls
            .insert("nvmlDeviceGetGpuInstances".into(), 4);
    });
    let exporter = nvml_exporter(&world, &[]);
    assert_eq!(nvml_up(&exporter).as_deref(), Some("0"));
    let reason = nvml_down_reason(&exporter);
    assert!(
        reason.contains("/proc/driver/nvidia/capabilities/mig/monitor"),
        "{reason}"
    );

    edit_world(&world, |w| w.faults = Default::default());
    wait_for(
        || nvml_up(&exporter).as_deref() == Some("1"),
        "recovery once permitted",
    );
}
