//! The DCGM source through its real FFI path, against `fake-dcgm`
//! (libfake_dcgm.so, built beside the exporter) over a World file that the
//! test changes with `mig-sim` while the source keeps running.
//!
//! The fake reads `MIG_WORLD` at `dcgmInit`, and the environment is the
//! process's: the tests take turns (one lock), and each loads its own copy
//! of the library so no state carries over from one test to the next.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::{built, edit_world, h100_world, mig_sim};
use std::sync::Arc;

use mig_exporter::expose::metrics::{self, Format};
use mig_exporter::model::{Activity, GpuSnapshot, NodeSnapshot, SourceState};
use mig_exporter::poll::Published;
use mig_exporter::source::dcgm::{DcgmAddress, DcgmOptions, DcgmSource, Utilization};
use mig_exporter::source::failure_state;
use mig_exporter::source::sim::reading_from_world;
use mig_model::{CiLoad, World};

static TURN: Mutex<()> = Mutex::new(());

/// A test's World and its own copy of the fake library.
struct Node {
    _turn: MutexGuard<'static, ()>,
    dir: tempfile::TempDir,
    world: PathBuf,
    library: PathBuf,
}

impl Node {
    /// Two H100s. GPU 0: a 3g.40gb and two 1g.10gb, each with its default
    /// CI. GPU 1: MIG disabled.
    fn new() -> Node {
        let turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let world = h100_world(dir.path(), 2, "9,19,19");
        let library = dir.path().join("libdcgm.so.4");
        std::fs::copy(built("libfake_dcgm.so"), &library).unwrap();
        // Read by the fake at dcgmInit; the lock keeps other tests out.
        std::env::set_var(mig_model::WORLD_ENV, &world);
        Node {
            _turn: turn,
            dir,
            world,
            library,
        }
    }

    fn options(&self) -> DcgmOptions {
        DcgmOptions {
            library: Some(self.library.clone()),
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_millis(100),
            ..DcgmOptions::default()
        }
    }

    fn load(&self) -> World {
        World::load(&self.world).unwrap()
    }

    fn edit(&self, change: impl FnOnce(&mut World)) {
        edit_world(&self.world, change);
    }

    fn sim(&self, args: &[&str]) {
        mig_sim(&self.world, args);
    }

    /// The geometry as NVML reports it: the World's instances with none of
    /// the utilization NVML cannot read.
    fn geometry(&self) -> Vec<GpuSnapshot> {
        let mut gpus = reading_from_world(&self.load()).gpus;
        for gpu in &mut gpus {
            for gi in &mut gpu.gpu_instances {
                gi.activity = Default::default();
                for ci in &mut gi.compute_instances {
                    ci.activity = Default::default();
                }
            }
        }
        gpus
    }

    /// GPU 0's GI ids by profile id, in id order.
    fn gis(&self, profile_id: u32) -> Vec<u32> {
        self.load().gpus[0]
            .gpu_instances
            .iter()
            .filter(|g| g.profile_id == profile_id)
            .map(|g| g.id)
            .collect()
    }

    fn uuid(&self, gpu: usize) -> String {
        self.load().gpus[gpu].uuid.clone()
    }
}

/// Reads until `ok` holds (the source may be in its backoff), or fails.
fn read_until(
    source: &mut DcgmSource,
    geometry: &[GpuSnapshot],
    what: &str,
    mut ok: impl FnMut(&Utilization) -> bool,
) -> Utilization {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let last = match source.read(geometry) {
            Ok(u) if ok(&u) => return u,
            Ok(u) => format!("{u:?}"),
            Err(e) => format!("{e:#}"),
        };
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; last: {last}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ci_sm(u: &Utilization, gpu: &str, gi: u32) -> Option<f64> {
    u.compute_instance(gpu, gi, 0)
        .and_then(|r| r.activity.sm_active_ratio)
}

#[test]
fn values_set_with_mig_sim_load_land_on_the_right_gi_and_ci() {
    let node = Node::new();
    let (big, small) = (node.gis(9)[0], node.gis(19));
    node.sim(&[
        "load",
        "--gpu",
        "0",
        "--gi",
        &big.to_string(),
        "--sm-active",
        "0.8",
        "--sm-occupancy",
        "0.6",
        "--dram-active",
        "0.4",
        "--fb-used-mib",
        "1000",
    ]);
    node.sim(&[
        "load",
        "--gpu",
        "0",
        "--gi",
        &small[1].to_string(),
        "--tensor-active",
        "0.3",
    ]);
    let gpu0 = node.uuid(0);
    let mut source = DcgmSource::new(node.options());
    let mut geometry = node.geometry();
    let u = source.read(&geometry).expect("read through fake-dcgm");

    let ci = u.compute_instance(&gpu0, big, 0).expect("the 3g.40gb's CI");
    assert_eq!(
        (ci.activity.sm_active_ratio, ci.activity.sm_occupancy_ratio),
        (Some(0.8), Some(0.6))
    );
    assert_eq!(
        ci.activity.dram_active_ratio, None,
        "DRAM activity is a GI reading"
    );
    assert_eq!(ci.power_watts, None, "never the parent GPU's value");
    let gi = u.gpu_instance(&gpu0, big).expect("the 3g.40gb");
    assert_eq!(gi.activity.dram_active_ratio, Some(0.4));
    let gi_sm = gi.activity.sm_active_ratio.expect("GI SM active");
    assert!((gi_sm - 0.8).abs() < 1e-9, "one CI spanning the GI: {gi_sm}");
    assert_eq!(gi.memory_used_bytes, Some(1000 << 20));
    assert_eq!(
        gi.activity.gr_engine_active_ratio,
        Some(0.0),
        "graphics engine active is read like the other profiling fields"
    );
    let other = u
        .compute_instance(&gpu0, small[1], 0)
        .expect("the second 1g.10gb's CI");
    assert_eq!(
        (other.activity.tensor_active_ratio, other.activity.sm_active_ratio),
        (Some(0.3), Some(0.0))
    );
    assert_eq!(
        u.compute_instance(&gpu0, small[0], 0)
            .and_then(|r| r.activity.tensor_active_ratio),
        Some(0.0)
    );
    let gpu = u.gpu(&gpu0).expect("GPU 0 by UUID");
    assert_eq!(gpu.power_watts, Some(137.0));
    assert_eq!(gpu.temperature_celsius, Some(54.0));
    let gpu1 = u
        .gpu(&node.uuid(1))
        .expect("GPU 1, MIG disabled, still a DCGM GPU");
    assert_eq!(
        gpu1.activity.sm_active_ratio,
        Some(0.0),
        "a MIG-disabled GPU has its own, idle, profiling load"
    );
    assert!(u.gpu_instance(&node.uuid(1), big).is_none());

    mig_exporter::source::dcgm::apply(&u, &mut geometry);
    let g0 = &geometry[0];
    let snap_gi = g0.gpu_instance(big).unwrap();
    assert_eq!(snap_gi.activity.dram_active_ratio, Some(0.4));
    assert_eq!(snap_gi.compute_instances[0].activity.sm_active_ratio, Some(0.8));
    assert_eq!(
        g0.gpu_instance(small[1]).unwrap().compute_instances[0]
            .activity
            .tensor_active_ratio,
        Some(0.3)
    );
}

/// Entities the fake's live connections watch.
fn watched(library: &Path) -> Vec<(u32, u32)> {
    type Hook = unsafe extern "C" fn(*mut [u32; 2], u32, *mut u32) -> i32;
    // SAFETY: the same file the source loaded; the hook's contract is in fake-dcgm.
    let lib = unsafe { libloading::Library::new(library) }.unwrap();
    let hook: libloading::Symbol<Hook> = unsafe { lib.get(b"fakeDcgmWatchedEntities\0") }.unwrap();
    let mut out = [[0u32; 2]; 256];
    let mut count = 0u32;
    // SAFETY: 256 entries of two unsigned ints (dcgmGroupEntityPair_t).
    assert_eq!(unsafe { hook(out.as_mut_ptr(), 256, &mut count) }, 0);
    out[..count as usize].iter().map(|p| (p[0], p[1])).collect()
}

#[test]
fn after_a_reconfiguration_the_values_follow_their_instances() {
    let node = Node::new();
    let (big, small) = (node.gis(9)[0], node.gis(19));
    node.sim(&[
        "load",
        "--gpu",
        "0",
        "--gi",
        &big.to_string(),
        "--sm-active",
        "0.7",
    ]);
    node.sim(&[
        "load",
        "--gpu",
        "0",
        "--gi",
        &small[1].to_string(),
        "--sm-active",
        "0.2",
    ]);
    let gpu0 = node.uuid(0);
    let mut source = DcgmSource::new(node.options());
    let u = source.read(&node.geometry()).unwrap();
    assert_eq!(ci_sm(&u, &gpu0, small[1]), Some(0.2));
    // GPU 1 (MIG off) and 3 GIs + 3 CIs on GPU 0.
    let before = watched(&node.library);
    assert_eq!(before.len(), 2 + 6, "{before:?}");

    // Destroy the lowest GI: DCGM renumbers every instance after it, so
    // entity ids now name other instances.
    let first = node.load().gpus[0].gpu_instances[0].id;
    node.sim(&["-i", "0", "mig", "-dci", "-gi", &first.to_string()]);
    node.sim(&["-i", "0", "mig", "-dgi", "-gi", &first.to_string()]);
    let u = source.read(&node.geometry()).unwrap();
    let gone = |u: &Utilization| {
        u.gpu_instance(&gpu0, first).is_none() && u.compute_instance(&gpu0, first, 0).is_none()
    };
    assert!(gone(&u), "the destroyed GI is gone: {u:?}");
    assert_eq!(ci_sm(&u, &gpu0, small[1]), Some(0.2), "{u:?}");
    if first != big {
        assert_eq!(ci_sm(&u, &gpu0, big), Some(0.7), "{u:?}");
    }
    let after = watched(&node.library);
    assert_eq!(
        after.len(),
        2 + 4,
        "watches of the destroyed instances dropped: {after:?}"
    );

    // Create a new one: it is watched and read on the next call.
    node.sim(&["-i", "0", "mig", "-cgi", "19", "-C"]);
    let new_gi = *node
        .gis(19)
        .iter()
        .find(|id| !small.contains(id))
        .expect("a new 1g.10gb");
    node.sim(&[
        "load",
        "--gpu",
        "0",
        "--gi",
        &new_gi.to_string(),
        "--sm-active",
        "0.55",
    ]);
    let u = source.read(&node.geometry()).unwrap();
    assert_eq!(ci_sm(&u, &gpu0, new_gi), Some(0.55), "{u:?}");
    assert_eq!(ci_sm(&u, &gpu0, small[1]), Some(0.2), "{u:?}");
}

#[test]
fn a_host_engine_restart_heals_without_a_new_source() {
    let node = Node::new();
    let big = node.gis(9)[0];
    node.sim(&[
        "load",
        "--gpu",
        "0",
        "--gi",
        &big.to_string(),
        "--sm-active",
        "0.9",
    ]);
    let gpu0 = node.uuid(0);
    let geometry = node.geometry();
    let mut source = DcgmSource::new(node.options());
    assert_eq!(ci_sm(&source.read(&geometry).unwrap(), &gpu0, big), Some(0.9));

    node.edit(|w| w.faults.dcgm_hostengine_down = true);
    let e = format!("{:#}", source.read(&geometry).unwrap_err());
    assert!(e.contains("Host engine connection invalid/disconnected"), "{e}");
    // Reconnecting fails while it is down.
    std::thread::sleep(Duration::from_millis(150));
    let e = format!("{:#}", source.read(&geometry).unwrap_err());
    assert!(
        e.contains("cannot connect to the host engine at localhost:5555"),
        "{e}"
    );

    node.edit(|w| w.faults.dcgm_hostengine_down = false);
    let u = read_until(&mut source, &geometry, "values after the restart", |u| {
        ci_sm(u, &gpu0, big) == Some(0.9)
    });
    assert!(u.gpu(&gpu0).is_some());
}

#[test]
fn unsupported_fields_and_stale_data_are_absent_not_zero() {
    let node = Node::new();
    let big = node.gis(9)[0];
    node.sim(&[
        "load",
        "--gpu",
        "0",
        "--gi",
        &big.to_string(),
        "--sm-active",
        "0.8",
        "--sm-occupancy",
        "0.5",
    ]);
    let gpu0 = node.uuid(0);
    let geometry = node.geometry();
    let mut source = DcgmSource::new(DcgmOptions {
        max_age: Duration::from_millis(300),
        ..node.options()
    });
    node.edit(|w| w.faults.dcgm_unsupported_fields = vec![1002]);
    let u = source.read(&geometry).unwrap();
    let ci = u.compute_instance(&gpu0, big, 0).unwrap();
    assert_eq!(
        (ci.activity.sm_active_ratio, ci.activity.sm_occupancy_ratio),
        (None, Some(0.5))
    );

    node.edit(|w| w.faults.dcgm_unsupported_fields.clear());
    assert_eq!(ci_sm(&source.read(&geometry).unwrap(), &gpu0, big), Some(0.8));
    // The host engine stops sampling: its last value ages out.
    node.edit(|w| w.faults.dcgm_stale_data = true);
    assert_eq!(ci_sm(&source.read(&geometry).unwrap(), &gpu0, big), Some(0.8));
    node.sim(&[
        "load",
        "--gpu",
        "0",
        "--gi",
        &big.to_string(),
        "--sm-active",
        "0.1",
    ]);
    let frozen = source.read(&geometry).unwrap();
    // 0.8 while it is young enough, absent after; never the unsampled 0.1.
    assert_ne!(
        ci_sm(&frozen, &gpu0, big),
        Some(0.1),
        "the engine no longer samples"
    );
    std::thread::sleep(Duration::from_millis(400));
    let u = source.read(&geometry).unwrap();
    assert_eq!(ci_sm(&u, &gpu0, big), None, "older than max_age: {u:?}");
    assert!(
        u.compute_instance(&gpu0, big, 0).is_some(),
        "the CI is still known"
    );

    node.edit(|w| w.faults.dcgm_stale_data = false);
    assert_eq!(ci_sm(&source.read(&geometry).unwrap(), &gpu0, big), Some(0.1));
}

#[test]
fn a_unix_socket_must_exist_and_embedded_mode_needs_no_host_engine() {
    let node = Node::new();
    let socket = node.dir.path().join("nv-hostengine.sock");
    let geometry = node.geometry();
    let mut source = DcgmSource::new(DcgmOptions {
        address: DcgmAddress::parse(&format!("unix://{}", socket.display())).unwrap(),
        ..node.options()
    });
    let e = format!("{:#}", source.read(&geometry).unwrap_err());
    assert!(
        e.contains(&format!(
            "cannot connect to the host engine at unix://{}",
            socket.display()
        )),
        "{e}"
    );
    std::fs::write(&socket, b"").unwrap();
    read_until(&mut source, &geometry, "a connection over the socket", |u| {
        u.gpu(&node.uuid(0)).is_some()
    });
    drop(source);

    node.edit(|w| w.faults.dcgm_hostengine_down = true);
    let mut embedded = DcgmSource::new(DcgmOptions {
        embedded: true,
        ..node.options()
    });
    let u = embedded
        .read(&geometry)
        .expect("an embedded engine is in this process");
    assert!(u.gpu(&node.uuid(0)).is_some());
}

#[test]
fn no_host_engine_is_no_dcgm_until_dcgm_was_read_and_dcgm_down_after() {
    let node = Node::new();
    let gpu0 = node.uuid(0);
    let geometry = node.geometry();
    // The GPU operator's default: DCGM's library is there, no host engine answers.
    node.edit(|w| w.faults.dcgm_hostengine_down = true);
    let mut source = DcgmSource::new(node.options());
    let e = source.read(&geometry).unwrap_err();
    assert_eq!(failure_state(&e), SourceState::Disabled, "{e:#}");
    assert!(
        format!("{e:#}").contains("cannot connect to the host engine at localhost:5555"),
        "{e:#}"
    );
    std::thread::sleep(Duration::from_millis(150));
    let e = source.read(&geometry).unwrap_err();
    assert_eq!(failure_state(&e), SourceState::Disabled, "still none: {e:#}");

    // The host engine comes up and is read; then it stops answering: down.
    node.edit(|w| w.faults.dcgm_hostengine_down = false);
    read_until(&mut source, &geometry, "the host engine answering", |u| {
        u.gpu(&gpu0).is_some()
    });
    node.edit(|w| w.faults.dcgm_hostengine_down = true);
    let e = source.read(&geometry).unwrap_err();
    assert_eq!(failure_state(&e), SourceState::Enabled, "{e:#}");
    // Reconnecting fails as it did before DCGM was read, and now it is down.
    std::thread::sleep(Duration::from_millis(150));
    let e = source.read(&geometry).unwrap_err();
    assert!(
        format!("{e:#}").contains("cannot connect to the host engine"),
        "{e:#}"
    );
    assert_eq!(failure_state(&e), SourceState::Enabled, "{e:#}");
}

#[test]
fn a_missing_library_is_named_in_the_error() {
    let node = Node::new();
    let mut source = DcgmSource::new(DcgmOptions {
        library: Some(node.dir.path().join("libdcgm.so.404")),
        ..node.options()
    });
    let e = format!("{:#}", source.read(&node.geometry()).unwrap_err());
    assert!(
        e.contains("cannot load") && e.contains("libdcgm.so.404") && e.contains("is DCGM 4 installed?"),
        "{e}"
    );
}

/// `/metrics` for `gpus`, as the exporter serves it.
fn exposition(gpus: Vec<GpuSnapshot>) -> String {
    let published = Arc::new(Published::default());
    published.publish(NodeSnapshot {
        gpus,
        ..Default::default()
    });
    metrics::render(&metrics::registry(published), Format::PrometheusText).unwrap()
}

/// The value of the series of `family` whose labels include each of `labels`.
fn series(text: &str, family: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{family}{{")))
        .find(|l| labels.iter().all(|label| l.contains(label)))
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse().ok())
}

/// DCGM numbers MIG entities by its own rule (an H100's start at GPU id × 7,
/// by GI profile before GI id) and renumbers them at will: the source must
/// place each value through the hierarchy. GPU 1's GIs are created against
/// profile order, so both an assumed `gpu × 8 + n` and an assumed id order
/// would put values on the wrong instances.
#[test]
fn values_are_placed_through_the_hierarchy_whatever_dcgm_numbers_its_entities() {
    let node = Node::new();
    node.sim(&["-i", "1", "-mig", "1"]);
    node.sim(&["-i", "1", "mig", "-cgi", "9,14,19", "-C"]);
    // A distinct load per instance, in GPU then GI id order.
    let load = |gpu: usize, position: usize| [[0.11, 0.12, 0.13], [0.21, 0.22, 0.23]][gpu][position];
    node.edit(|w| {
        for (g, gpu) in w.gpus.iter_mut().enumerate() {
            gpu.gpu_instances.sort_by_key(|gi| gi.id);
            for (k, gi) in gpu.gpu_instances.iter_mut().enumerate() {
                gi.load.dram_active = load(g, k);
                gi.compute_instances[0].load.sm_active = load(g, k);
            }
        }
    });
    let world = node.load();
    let mut source = DcgmSource::new(node.options());
    let u = source.read(&node.geometry()).expect("read through fake-dcgm");
    let mut placed = 0;
    for (g, gpu) in world.gpus.iter().enumerate() {
        for (k, gi) in gpu.gpu_instances.iter().enumerate() {
            let want = Some(load(g, k));
            assert_eq!(ci_sm(&u, &gpu.uuid, gi.id), want, "GPU {g} GI {}: {u:?}", gi.id);
            let r = u.gpu_instance(&gpu.uuid, gi.id).expect("every GI");
            assert_eq!(r.activity.dram_active_ratio, want, "GPU {g} GI {}", gi.id);
            placed += 1;
        }
    }
    assert_eq!(placed, 6);
    // What the source watches is what the hierarchy names: two GPUs, and
    // GPU 1's GIs and CIs at 7, 8, 9.
    let mut ids = watched(&node.library);
    ids.sort();
    assert_eq!(
        ids,
        vec![
            (1, 0),
            (1, 1),
            (4, 0),
            (4, 1),
            (4, 2),
            (4, 7),
            (4, 8),
            (4, 9),
            (5, 0),
            (5, 1),
            (5, 2),
            (5, 7),
            (5, 8),
            (5, 9)
        ],
        "(entity group, id): GPUs 1, GPU instances 4, compute instances 5"
    );
}

/// The most common production case: MIG disabled. DCGM's GPU-level
/// profiling fields are the GPU's activity, published under
/// `nvidia_gpu_<kind>_ratio`.
#[test]
fn a_gpu_with_mig_disabled_publishes_its_dcgm_activity() {
    let node = Node::new();
    node.edit(|w| {
        let t = &mut w.gpus[1].telemetry;
        t.compute_load = CiLoad {
            gr_engine_active: 0.9,
            sm_active: 0.65,
            sm_occupancy: 0.3,
            tensor_active: 0.2,
            fp64_active: 0.05,
            fp32_active: 0.4,
            fp16_active: 0.1,
        };
        t.dram_active = 0.35;
    });
    let uuid = node.uuid(1);
    let mut geometry = node.geometry();
    let mut source = DcgmSource::new(node.options());
    let u = source.read(&geometry).unwrap();
    let want = Activity {
        gr_engine_active_ratio: Some(0.9),
        sm_active_ratio: Some(0.65),
        sm_occupancy_ratio: Some(0.3),
        tensor_active_ratio: Some(0.2),
        dram_active_ratio: Some(0.35),
        fp64_active_ratio: Some(0.05),
        fp32_active_ratio: Some(0.4),
        fp16_active_ratio: Some(0.1),
    };
    assert_eq!(u.gpu(&uuid).expect("GPU 1").activity, want);

    mig_exporter::source::dcgm::apply(&u, &mut geometry);
    let text = exposition(geometry);
    let gpu1 = format!("gpu_uuid=\"{uuid}\"");
    for (stem, value) in [
        ("gr_engine_active", 0.9),
        ("sm_active", 0.65),
        ("sm_occupancy", 0.3),
        ("tensor_active", 0.2),
        ("dram_active", 0.35),
        ("fp64_active", 0.05),
        ("fp32_active", 0.4),
        ("fp16_active", 0.1),
    ] {
        assert_eq!(
            series(&text, &format!("nvidia_gpu_{stem}_ratio"), &["gpu=\"1\"", &gpu1]),
            Some(value),
            "{stem}"
        );
    }
}

/// DCGM answers blanks for a GPU instance without compute instances (there
/// is no MIG device to read): no series, neither a zero nor the GPU's value
/// nor the whole framebuffer.
#[test]
fn a_gpu_instance_without_compute_instances_publishes_no_dcgm_value() {
    let node = Node::new();
    let before = node.gis(19);
    node.sim(&["-i", "0", "mig", "-cgi", "19"]);
    let empty = *node
        .gis(19)
        .iter()
        .find(|id| !before.contains(id))
        .expect("a new 1g.10gb without CIs");
    node.edit(|w| {
        let gpu = &mut w.gpus[0];
        for gi in &mut gpu.gpu_instances {
            gi.load.dram_active = 0.5;
            gi.load.memory_used_mib = 300;
            for ci in &mut gi.compute_instances {
                ci.load.sm_active = 0.9;
                ci.load.gr_engine_active = 0.9;
            }
        }
    });
    let gpu0 = node.uuid(0);
    let mut geometry = node.geometry();
    let mut source = DcgmSource::new(node.options());
    let u = source.read(&geometry).unwrap();
    let r = u.gpu_instance(&gpu0, empty).expect("DCGM knows the GI");
    assert_eq!(r.activity, Activity::default(), "blanks, not zeros: {r:?}");
    assert_eq!((r.memory_used_bytes, r.memory_free_bytes), (None, None));
    let gpu = u.gpu(&gpu0).unwrap();
    assert!(
        gpu.activity.sm_active_ratio.is_some_and(|v| v > 0.0),
        "the GPU has a value: {gpu:?}"
    );

    mig_exporter::source::dcgm::apply(&u, &mut geometry);
    let text = exposition(geometry);
    let gi = format!("gi=\"{empty}\"");
    let labels = ["gpu=\"0\"", gi.as_str()];
    assert!(series(&text, "nvidia_mig_gpu_instance_info", &labels).is_some());
    for stem in ["gr_engine_active", "sm_active", "dram_active", "fp32_active"] {
        let family = format!("nvidia_mig_gpu_instance_{stem}_ratio");
        assert_eq!(series(&text, &family, &labels), None, "{family}");
        assert!(
            series(&text, &family, &["gpu=\"0\""]).is_some(),
            "{family} is published for the other GIs"
        );
    }
    for family in [
        "nvidia_mig_gpu_instance_memory_used_bytes",
        "nvidia_mig_gpu_instance_memory_free_bytes",
    ] {
        assert_eq!(series(&text, family, &labels), None, "{family}");
    }
}
