//! The GPM source (NVML GPU Performance Monitoring) through its real FFI
//! path on `fake-nvml`: in process, poll by poll, through the poller with
//! the NVML source whose library it shares; and end to end, the exporter's
//! `/metrics` with and without DCGM (`fake-dcgm`) beside it.
//!
//! The in-process tests load their own copy of the fake (fresh state, its own
//! live-sample count) and name their World in `MIG_WORLD`, read at
//! `nvmlInit`; the environment is the process's, so they take turns.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use common::{built, edit_world, gauge, mig_sim, near, series, value, wait_for, Exporter};
use mig_exporter::model::{Activity, NodeSnapshot, SourceState};
use mig_exporter::poll::Poller;
use mig_exporter::source::gpm::GpmSource;
use mig_exporter::source::nvml::{NvmlOptions, NvmlSource};
use mig_model::{Product, World};

static TURN: Mutex<()> = Mutex::new(());

/// The time between two polls: GPM rates are over it. More than the 100 ms
/// nvml.h asks between two samples, so every poll takes new ones.
const INTERVAL: Duration = Duration::from_millis(150);

/// A World and a private copy of `libfake_nvml.so`, held open so that its
/// state (the live-sample count) lasts the whole test.
struct Node {
    _turn: MutexGuard<'static, ()>,
    _dir: tempfile::TempDir,
    world: PathBuf,
    library: PathBuf,
    fake: libloading::Library,
}

impl Node {
    fn new(world: &World) -> Node {
        let turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("world.json");
        world.save(&path).unwrap();
        let library = dir.path().join("libnvidia-ml.so.1");
        std::fs::copy(built("libfake_nvml.so"), &library).unwrap();
        // SAFETY: loading the fake, whose initializers have no preconditions.
        let fake = unsafe { libloading::Library::new(&library) }.unwrap();
        // Read by the fake at nvmlInit; the lock keeps other tests out.
        std::env::set_var(mig_model::WORLD_ENV, &path);
        Node {
            _turn: turn,
            _dir: dir,
            world: path,
            library,
            fake,
        }
    }

    fn edit(&self, change: impl FnOnce(&mut World)) {
        edit_world(&self.world, change);
    }

    /// The NVML source and GPM through its library, as `--nvml --no-dcgm` runs them.
    fn poller(&self) -> Poller {
        let mut nvml = NvmlSource::new(NvmlOptions {
            library: Some(self.library.clone()),
            slow_interval: Duration::from_secs(60),
            pcie_throughput: false,
        });
        let gpm = GpmSource::new(&mut nvml);
        Poller::new(Box::new(nvml)).with_utilization(Box::new(gpm))
    }

    /// Sample buffers allocated and not freed in this test's copy of the fake.
    fn live_samples(&self) -> u64 {
        // SAFETY: the fake's own export, with the signature it defines.
        unsafe {
            let f: libloading::Symbol<'_, extern "C" fn() -> u64> =
                self.fake.get(b"fakeNvmlGpmLiveSamples\0").unwrap();
            f()
        }
    }

    fn calls(&self, name: &str) -> u64 {
        // SAFETY: the fake's own export, with the signature it defines.
        unsafe {
            let f: libloading::Symbol<'_, unsafe extern "C" fn(*const std::ffi::c_char) -> u64> =
                self.fake.get(b"fakeNvmlCallCount\0").unwrap();
            let name = std::ffi::CString::new(name).unwrap();
            f(name.as_ptr())
        }
    }
}

/// One H100, MIG on: GI 2 = 3g.40gb (4:4) with its full CI, SM 0.75,
/// occupancy 0.5, DRAM 0.5; GI 7 = 1g.10gb (0:1), SM 0.25, tensor 0.4.
fn h100() -> World {
    let mut w = World::new("node", Product::H100_80GB, 1);
    let gpu = &mut w.gpus[0];
    gpu.set_mig_mode(true);
    let big = gpu.create_gpu_instance(9, Some(4)).unwrap();
    let small = gpu.create_gpu_instance(19, Some(0)).unwrap();
    assert_eq!((big, small), (2, 7));
    gpu.create_compute_instance(big, None).unwrap();
    gpu.create_compute_instance(small, None).unwrap();
    for gi in &mut gpu.gpu_instances {
        let ci = &mut gi.compute_instances[0].load;
        if gi.id == big {
            gi.load.dram_active = 0.5;
            ci.sm_active = 0.75;
            ci.sm_occupancy = 0.5;
        } else {
            ci.sm_active = 0.25;
            ci.tensor_active = 0.4;
        }
    }
    w
}

fn gi_activity(snapshot: &NodeSnapshot, gi: u32) -> Activity {
    snapshot.gpus[0]
        .gpu_instance(gi)
        .unwrap_or_else(|| panic!("GI {gi} in the snapshot"))
        .activity
}

/// A poller on `node` that has polled twice, and its second snapshot: the
/// first with a rate.
fn polled_twice(node: &Node) -> (Poller, NodeSnapshot) {
    let mut poller = node.poller();
    poller.poll_once();
    std::thread::sleep(INTERVAL);
    let second = poller.poll_once();
    (poller, second)
}

/// GI 7 of [`h100`] destroyed and created again in the same place with
/// another profile (1g.10gb+me): the same id, another shape, another MIG
/// device, SM activity 0.6.
fn recreate_gi_7(w: &mut World) {
    let gpu = &mut w.gpus[0];
    gpu.destroy_compute_instance(7, 0).unwrap();
    gpu.destroy_gpu_instance(7).unwrap();
    assert_eq!(gpu.create_gpu_instance(20, Some(0)).unwrap(), 7);
    gpu.create_compute_instance(7, None).unwrap();
    let gi = gpu.gpu_instances.iter_mut().find(|g| g.id == 7).unwrap();
    gi.compute_instances[0].load.sm_active = 0.6;
}

fn close(got: Option<f64>, want: f64) -> bool {
    got.is_some_and(|g| (g - want).abs() < 1e-6)
}

fn source_up(snapshot: &NodeSnapshot, name: &str) -> bool {
    snapshot
        .sources
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no source {name}"))
        .up
}

#[test]
fn the_first_poll_has_no_activity_and_the_next_one_the_load() {
    let node = Node::new(&h100());
    let mut poller = node.poller();
    let first = poller.poll_once();
    assert!(source_up(&first, "nvml") && source_up(&first, "gpm"));
    assert_eq!(
        first.gpus[0].health.activity,
        Activity::default(),
        "no rate from one sample"
    );
    for gi in &first.gpus[0].gpu_instances {
        assert_eq!(gi.activity, Activity::default(), "GI {}: absent, not zero", gi.id);
    }

    std::thread::sleep(INTERVAL);
    let second = poller.poll_once();
    let big = gi_activity(&second, 2);
    assert!(close(big.sm_active_ratio, 0.75), "{big:?}");
    assert!(close(big.sm_occupancy_ratio, 0.5), "{big:?}");
    assert!(close(big.dram_active_ratio, 0.5), "{big:?}");
    assert!(close(big.tensor_active_ratio, 0.0), "{big:?}");
    let small = gi_activity(&second, 7);
    assert!(close(small.sm_active_ratio, 0.25), "{small:?}");
    assert!(close(small.tensor_active_ratio, 0.4), "{small:?}");
    // The GPU: SMs over its 7 slices, DRAM over its 8 memory slots.
    let gpu = second.gpus[0].health.activity;
    assert!(close(gpu.sm_active_ratio, (0.75 * 3.0 + 0.25) / 7.0), "{gpu:?}");
    assert!(close(gpu.dram_active_ratio, 0.5 * 4.0 / 8.0), "{gpu:?}");
    // What the GPU does not support (here: graphics, FP pipes) stays absent.
    for a in [big, small, gpu] {
        assert_eq!(
            (
                a.gr_engine_active_ratio,
                a.fp64_active_ratio,
                a.fp32_active_ratio,
                a.fp16_active_ratio
            ),
            (None, None, None, None)
        );
    }
    // Compute instances have no GPM counters: their activity is DCGM's only.
    for gi in &second.gpus[0].gpu_instances {
        for ci in &gi.compute_instances {
            assert_eq!(ci.activity, Activity::default());
        }
    }
    // A load set while running shows on the next poll.
    node.edit(|w| {
        for gi in &mut w.gpus[0].gpu_instances {
            if gi.id == 7 {
                gi.compute_instances[0].load.sm_active = 1.0;
            }
        }
    });
    std::thread::sleep(INTERVAL);
    let third = poller.poll_once();
    assert!(close(gi_activity(&third, 7).sm_active_ratio, 1.0));
}

#[test]
fn a_recreated_gpu_instance_starts_over_instead_of_a_bogus_rate() {
    let node = Node::new(&h100());
    let (mut poller, before) = polled_twice(&node);
    assert!(close(gi_activity(&before, 7).sm_active_ratio, 0.25));

    // Between two polls.
    node.edit(recreate_gi_7);
    std::thread::sleep(INTERVAL);
    let metrics_before = node.calls("nvmlGpmMetricsGet");
    let after = poller.poll_once();
    assert_eq!(after.gpus[0].gpu_instance(7).unwrap().profile_id, 20);
    assert_eq!(
        gi_activity(&after, 7),
        Activity::default(),
        "the recreated GI has no previous sample: nothing, not a rate across two instances"
    );
    // Rates were computed for the GPU and GI 2 only, never across GI 7's two lives.
    assert_eq!(node.calls("nvmlGpmMetricsGet") - metrics_before, 2);
    assert!(
        close(gi_activity(&after, 2).sm_active_ratio, 0.75),
        "others keep theirs"
    );

    std::thread::sleep(INTERVAL);
    let next = poller.poll_once();
    assert!(
        close(gi_activity(&next, 7).sm_active_ratio, 0.6),
        "its own rate next time"
    );
}

#[test]
fn a_gpu_instance_recreated_while_the_poll_samples_it_gets_no_rate_across_its_two_lives() {
    let node = Node::new(&h100());
    let (mut poller, before) = polled_twice(&node);
    assert!(close(gi_activity(&before, 7).sm_active_ratio, 0.25));

    // Each GPU-instance sample takes 200 ms, and GI 7 is recreated 100 ms
    // into the poll: after the poll listed the GIs and while it samples
    // GI 2, so GI 7's sample is of the new instance.
    node.edit(|w| {
        w.faults
            .call_latency_us
            .insert("nvmlGpmMigSampleGet".into(), 200_000);
    });
    let mut recreated = World::load(&node.world).unwrap();
    recreate_gi_7(&mut recreated);
    let path = node.world.clone();
    // Samples are due again (none is taken sooner than 100 ms after the last).
    std::thread::sleep(INTERVAL);
    let swap = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        recreated.save(&path).unwrap();
    });
    let during = poller.poll_once();
    swap.join().unwrap();
    assert!(source_up(&during, "nvml") && source_up(&during, "gpm"));
    assert_eq!(
        gi_activity(&during, 7),
        Activity::default(),
        "no rate between the old GI's sample and the new one's"
    );
    assert_eq!(
        during.gpus[0].gpu_instance(7).unwrap().profile_id,
        20,
        "the check of the GI list saw the change and read it again"
    );
    assert!(
        close(gi_activity(&during, 2).sm_active_ratio, 0.75),
        "GI 2, unchanged, keeps the sample taken before the list was read again"
    );
    assert_eq!(node.live_samples(), 3, "one held sample per instance");

    std::thread::sleep(INTERVAL);
    let next = poller.poll_once();
    assert!(close(gi_activity(&next, 7).sm_active_ratio, 0.6));
}

#[test]
fn many_polls_and_reconfigurations_keep_the_samples_bounded() {
    let node = Node::new(&h100());
    let mut poller = node.poller();
    for poll in 0..60 {
        // Every 5 polls, GI 7 is destroyed or created again.
        if poll % 5 == 4 {
            node.edit(|w| {
                let gpu = &mut w.gpus[0];
                if gpu.gpu_instance(7).is_ok() {
                    gpu.destroy_compute_instance(7, 0).unwrap();
                    gpu.destroy_gpu_instance(7).unwrap();
                } else {
                    gpu.create_gpu_instance(19, Some(0)).unwrap();
                    gpu.create_compute_instance(7, None).unwrap();
                }
            });
        }
        let snapshot = poller.poll_once();
        assert!(source_up(&snapshot, "gpm"), "poll {poll}");
        // One held sample per instance measured: the GPU and each GI.
        let instances = 1 + snapshot.gpus[0].gpu_instances.len() as u64;
        assert_eq!(node.live_samples(), instances, "poll {poll}");
        std::thread::sleep(Duration::from_millis(110));
    }
    let taken = node.calls("nvmlGpmSampleGet") + node.calls("nvmlGpmMigSampleGet");
    assert!(taken >= 120, "samples were taken all along: {taken}");
    let allocated = node.calls("nvmlGpmSampleAlloc");
    assert!(
        allocated < taken / 2,
        "sample buffers are reused, not allocated per sample: {allocated} for {taken} samples"
    );
    drop(poller);
    assert_eq!(node.live_samples(), 0, "every sample freed with the source");
}

/// [`h100`] where a compute instance created again in its place gets its old
/// MIG UUID back (`mig_uuids: reused_per_placement`).
fn h100_reusing_mig_uuids() -> World {
    let mut w = World::new("node", Product::H100_80GB, 1);
    w.gpus[0].mig_uuids = mig_model::MigUuids::ReusedPerPlacement;
    let mut loaded = h100();
    loaded.gpus[0].mig_uuids = mig_model::MigUuids::ReusedPerPlacement;
    // Rebuilt under the new rule, with the same layout and load.
    let gpu = &mut w.gpus[0];
    gpu.set_mig_mode(true);
    for gi in &loaded.gpus[0].gpu_instances {
        let id = gpu
            .create_gpu_instance(gi.profile_id, Some(gi.placement.start))
            .unwrap();
        gpu.create_compute_instance(id, None).unwrap();
        let mine = gpu.gpu_instance_mut(id).unwrap();
        mine.load = gi.load;
        mine.compute_instances[0].load = gi.compute_instances[0].load;
    }
    w
}

#[test]
fn a_compute_instance_recreated_with_its_old_mig_uuid_gets_no_rate_across_its_two_lives() {
    let node = Node::new(&h100_reusing_mig_uuids());
    let (mut poller, before) = polled_twice(&node);
    assert!(close(gi_activity(&before, 2).sm_active_ratio, 0.75));
    let old = before.gpus[0].gpu_instance(2).unwrap().compute_instances[0].clone();

    // GI 2 stays; its compute instance is destroyed and another profile
    // (1c.3g.40gb) created in its place, with the same id and MIG UUID.
    node.edit(|w| {
        let gpu = &mut w.gpus[0];
        gpu.destroy_compute_instance(2, 0).unwrap();
        gpu.create_compute_instance(2, Some(0)).unwrap();
        gpu.gpu_instance_mut(2).unwrap().compute_instances[0]
            .load
            .sm_active = 0.9;
    });
    std::thread::sleep(INTERVAL);
    let metrics_before = node.calls("nvmlGpmMetricsGet");
    let after = poller.poll_once();
    let new = &after.gpus[0].gpu_instance(2).unwrap().compute_instances[0];
    assert_eq!(
        (new.id, &new.mig_uuid),
        (old.id, &old.mig_uuid),
        "the UUID came back"
    );
    assert_ne!(new.profile_id, old.profile_id, "the new profile is read");
    assert_eq!(
        gi_activity(&after, 2),
        Activity::default(),
        "no rate across the compute instance's two lives"
    );
    assert_eq!(
        node.calls("nvmlGpmMetricsGet") - metrics_before,
        2,
        "rates for the GPU and GI 7 only"
    );
    std::thread::sleep(INTERVAL);
    let next = poller.poll_once();
    // One slice of three at 0.9.
    assert!(
        close(gi_activity(&next, 2).sm_active_ratio, 0.3),
        "{:?}",
        gi_activity(&next, 2)
    );
}

#[test]
fn a_gpu_instance_without_compute_instances_is_not_sampled_and_the_others_are() {
    let mut world = h100();
    let bare = world.gpus[0].create_gpu_instance(19, Some(1)).unwrap();
    let node = Node::new(&world);
    let (mut poller, second) = polled_twice(&node);
    assert!(source_up(&second, "gpm"), "{:?}", second.sources);
    assert!(close(gi_activity(&second, 2).sm_active_ratio, 0.75));
    assert!(close(gi_activity(&second, 7).sm_active_ratio, 0.25));
    assert_eq!(gi_activity(&second, bare), Activity::default());
    // As NVIDIA's DCGM does: no sample is asked for it at all.
    let asked = node.calls("nvmlGpmMigSampleGet");
    std::thread::sleep(INTERVAL);
    let third = poller.poll_once();
    assert!(source_up(&third, "gpm"));
    assert_eq!(node.calls("nvmlGpmMigSampleGet") - asked, 2, "GI 2 and GI 7 only");
    assert_eq!(node.live_samples(), 3, "the GPU, GI 2 and GI 7");
}

#[test]
fn a_gpu_instance_whose_sample_fails_leaves_the_source_and_the_gpu_measured() {
    let mut world = h100();
    // NVML_ERROR_UNKNOWN for every GPU-instance sample.
    world
        .faults
        .failing_calls
        .insert("nvmlGpmMigSampleGet".into(), 999);
    let node = Node::new(&world);
    let (mut poller, second) = polled_twice(&node);
    assert!(source_up(&second, "gpm"), "{:?}", second.sources);
    let gpu = second.gpus[0].health.activity;
    assert!(close(gpu.sm_active_ratio, (0.75 * 3.0 + 0.25) / 7.0), "{gpu:?}");
    for gi in [2, 7] {
        assert_eq!(gi_activity(&second, gi), Activity::default(), "GI {gi}");
    }
    assert_eq!(node.live_samples(), 1, "only the GPU's sample is held");

    // Once it samples again, it measures again from its next pair.
    node.edit(|w| w.faults = Default::default());
    std::thread::sleep(INTERVAL);
    poller.poll_once();
    std::thread::sleep(INTERVAL);
    let healed = poller.poll_once();
    assert!(close(gi_activity(&healed, 2).sm_active_ratio, 0.75));
}

#[test]
fn polls_faster_than_gpms_100_ms_publish_the_latest_rate_every_time() {
    let node = Node::new(&h100());
    let (mut poller, _) = polled_twice(&node);
    // Far faster than samples may be taken: nvml.h asks for more than 100 ms
    // between two, and two within one of the counters' refreshes give no rate.
    for poll in 0..15 {
        std::thread::sleep(Duration::from_millis(20));
        let snapshot = poller.poll_once();
        assert!(source_up(&snapshot, "gpm"), "poll {poll}");
        let big = gi_activity(&snapshot, 2);
        assert!(close(big.sm_active_ratio, 0.75), "poll {poll}: {big:?}");
        let gpu = snapshot.gpus[0].health.activity;
        assert!(
            close(gpu.sm_active_ratio, (0.75 * 3.0 + 0.25) / 7.0),
            "poll {poll}: {gpu:?}"
        );
    }
    assert_eq!(node.live_samples(), 3, "one held sample per instance");
}

#[test]
fn an_nvml_restart_frees_the_old_samples_and_starts_over() {
    let node = Node::new(&h100());
    let (mut poller, before) = polled_twice(&node);
    assert!(close(gi_activity(&before, 2).sm_active_ratio, 0.75));
    assert_eq!(node.live_samples(), 3);

    // The GPU falls off the bus: NVML fails and reopens the library later.
    node.edit(|w| w.faults.lost_gpus = vec![0]);
    let lost = poller.poll_once();
    assert!(!source_up(&lost, "nvml") && lost.gpus.is_empty());
    assert_eq!(node.live_samples(), 0, "the samples go with the failed session");
    node.edit(|w| w.faults = Default::default());
    let back = poller.poll_once();
    assert!(source_up(&back, "nvml") && source_up(&back, "gpm"));
    assert_eq!(
        gi_activity(&back, 2),
        Activity::default(),
        "the first sample of the new session gives nothing"
    );
    assert_eq!(node.live_samples(), 3, "the old session's samples were freed");
}

#[test]
fn on_ampere_gpm_is_not_supported_and_nvml_geometry_is_still_served() {
    let mut world = World::new("node", Product::A100Sxm4_40GB, 2);
    for gpu in &mut world.gpus {
        gpu.set_mig_mode(true);
        let gi = gpu.create_gpu_instance(19, None).unwrap();
        gpu.create_compute_instance(gi, None).unwrap();
        gpu.gpu_instances[0].compute_instances[0].load.sm_active = 0.5;
    }
    let node = Node::new(&world);
    let mut poller = node.poller();
    for _ in 0..3 {
        let snapshot = poller.poll_once();
        assert!(source_up(&snapshot, "nvml"));
        assert_eq!(snapshot.gpus.len(), 2, "geometry is served");
        assert_eq!(snapshot.gpus[0].gpu_instances.len(), 1);
        let gpm = snapshot.sources.iter().find(|s| s.name == "gpm").unwrap();
        assert!(!gpm.up);
        assert_eq!(
            gpm.state,
            SourceState::Unsupported,
            "no failure: Ampere has no GPM"
        );
        assert_eq!(gpm.errors_total, 0);
        let reason = gpm.last_error.as_deref().unwrap_or_default();
        assert!(
            reason.contains("GPM is not supported on GPU 0 (NVIDIA A100-SXM4-40GB), GPU 1")
                && reason.contains("--no-gpm"),
            "{reason}"
        );
        for gpu in &snapshot.gpus {
            assert_eq!(gpu.health.activity, Activity::default());
            assert_eq!(gpu.gpu_instances[0].activity, Activity::default());
        }
        std::thread::sleep(INTERVAL);
    }
    assert_eq!(node.calls("nvmlGpmSampleAlloc"), 0, "nothing sampled on Ampere");
    assert_eq!(node.live_samples(), 0);
}

#[test]
fn gpm_turned_off_on_a_hopper_is_reported_like_ampere() {
    let mut world = h100();
    // What a driver without GPM for this GPU answers: Not Supported.
    world
        .faults
        .failing_calls
        .insert("nvmlGpmQueryDeviceSupport".into(), 3);
    let node = Node::new(&world);
    let (_poller, snapshot) = polled_twice(&node);
    let gpm = snapshot.sources.iter().find(|s| s.name == "gpm").unwrap();
    assert!(!gpm.up);
    assert_eq!(gpm.state, SourceState::Unsupported);
    assert!(
        gpm.last_error
            .as_deref()
            .is_some_and(|e| e.contains("GPM is not supported on GPU 0 (NVIDIA H100 80GB HBM3)")),
        "{:?}",
        gpm.last_error
    );
    assert_eq!(gi_activity(&snapshot, 2), Activity::default());
    assert!(source_up(&snapshot, "nvml"));
    assert_eq!(node.live_samples(), 0);
}

#[test]
fn beside_a_gpu_without_gpm_the_others_are_still_measured() {
    let mut world = h100();
    let mut a100 = mig_model::Gpu::new("node", Product::A100Sxm4_40GB, 1);
    a100.set_mig_mode(true);
    let gi = a100.create_gpu_instance(19, None).unwrap();
    a100.create_compute_instance(gi, None).unwrap();
    world.gpus.push(a100);
    world.validate().unwrap();
    let node = Node::new(&world);
    let (_poller, snapshot) = polled_twice(&node);
    assert!(source_up(&snapshot, "gpm"), "a GPU without GPM is no failure");
    assert!(close(gi_activity(&snapshot, 2).sm_active_ratio, 0.75));
    let ampere = &snapshot.gpus[1];
    assert_eq!(ampere.health.activity, Activity::default());
    assert_eq!(ampere.gpu_instances[0].activity, Activity::default());
    assert_eq!(
        node.live_samples(),
        3,
        "only the H100 and its two GIs are sampled"
    );
}

// ---- End to end: the exporter's /metrics ------------------------------------

/// One H100 via `mig-sim`: 3g.40gb (GI 2) and 1g.10gb (GI 7), each with its
/// CI, loaded with `mig-sim load`.
fn loaded_world(dir: &Path) -> PathBuf {
    let world = dir.join("world.json");
    let w = world.to_str().unwrap();
    mig_sim(&world, &["init", "--gpus", "1", "--product", "h100-80gb", w]);
    mig_sim(&world, &["-mig", "1"]);
    mig_sim(&world, &["mig", "-cgi", "9,19", "-C"]);
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
            "--sm-occupancy",
            "0.5",
            "--dram-active",
            "0.5",
        ],
    );
    mig_sim(
        &world,
        &[
            "load",
            "--gpu",
            "0",
            "--gi",
            "7",
            "--sm-active",
            "0.25",
            "--tensor-active",
            "0.4",
            "--dram-active",
            "0.125",
        ],
    );
    world
}

fn exporter(world: &Path, extra: &[&str]) -> Exporter {
    let library = built("libfake_nvml.so");
    let mut args = vec!["--nvml", "--nvml.library", library.to_str().unwrap()];
    args.extend_from_slice(extra);
    Exporter::start_with_env(&args, &[("MIG_WORLD", world)])
}

/// The activity series (`nvidia_*_<kind>_ratio` of the activity kinds).
fn activity_series(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            Activity::KINDS
                .iter()
                .any(|(stem, _, _)| l.contains(&format!("_{stem}_ratio{{")))
        })
        .filter_map(|l| l.rsplit_once(' ').map(|(k, _)| k.to_string()))
        .collect()
}

fn assert_no_duplicates(series: &[String]) {
    let mut sorted = series.to_vec();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), series.len(), "a series appears twice: {series:#?}");
}

#[test]
fn without_dcgm_gpm_ratios_in_metrics_match_the_load_set_with_mig_sim() {
    let dir = tempfile::tempdir().unwrap();
    let world = loaded_world(dir.path());
    let exporter = exporter(&world, &["--no-dcgm"]);
    let sm = "nvidia_mig_gpu_instance_sm_active_ratio";
    wait_for(
        || gauge(&exporter.metrics(), sm, Some(2)).is_some(),
        "GPM activity in /metrics",
    );
    let text = exporter.metrics();
    assert_eq!(
        value(&text, "mig_exporter_source_up{source=\"gpm\"}").as_deref(),
        Some("1")
    );
    assert_eq!(
        value(&text, "mig_exporter_source_up{source=\"dcgm\"}"),
        None,
        "--no-dcgm"
    );
    assert!(near(gauge(&text, sm, Some(2)), 0.75), "{text}");
    assert!(near(gauge(&text, sm, Some(7)), 0.25));
    let family = |kind: &str| format!("nvidia_mig_gpu_instance_{kind}_ratio");
    assert!(near(gauge(&text, &family("sm_occupancy"), Some(2)), 0.5));
    assert!(near(gauge(&text, &family("tensor_active"), Some(7)), 0.4));
    assert!(near(gauge(&text, &family("dram_active"), Some(2)), 0.5));
    assert!(near(gauge(&text, &family("dram_active"), Some(7)), 0.125));
    assert!(near(
        gauge(&text, "nvidia_gpu_sm_active_ratio", None),
        (0.75 * 3.0 + 0.25) / 7.0
    ));
    assert!(near(
        gauge(&text, "nvidia_gpu_dram_active_ratio", None),
        (0.5 * 4.0 + 0.125) / 8.0
    ));
    // No value GPM cannot give: none per compute instance, none the GPU lacks.
    let activity = activity_series(&text);
    assert!(!activity
        .iter()
        .any(|s| s.starts_with("nvidia_mig_compute_instance_")));
    assert!(!activity
        .iter()
        .any(|s| s.contains("_gr_engine_active_ratio{") || s.contains("_fp64_active_ratio{")));
    // GPU: sm, occupancy, tensor, dram; each of 2 GIs the same four.
    assert_eq!(activity.len(), 4 * 3, "{activity:#?}");
    assert_no_duplicates(&activity);
}

#[test]
fn with_dcgm_beside_gpm_each_series_appears_once_and_carries_dcgms_value() {
    let dir = tempfile::tempdir().unwrap();
    let world = loaded_world(dir.path());
    let dcgm = built("libfake_dcgm.so");
    let exporter = exporter(&world, &["--dcgm.library", dcgm.to_str().unwrap()]);
    let ci_sm = "nvidia_mig_compute_instance_sm_active_ratio";
    let gi_sm = "nvidia_mig_gpu_instance_sm_active_ratio";
    wait_for(
        || {
            let text = exporter.metrics();
            gauge(&text, ci_sm, Some(2)).is_some() && gauge(&text, gi_sm, Some(2)).is_some()
        },
        "DCGM and GPM both read",
    );
    let text = exporter.metrics();
    for source in ["nvml", "dcgm", "gpm"] {
        assert_eq!(
            value(&text, &format!("mig_exporter_source_up{{source=\"{source}\"}}")).as_deref(),
            Some("1"),
            "{source}"
        );
    }
    let activity = activity_series(&text);
    assert_no_duplicates(&activity);
    assert!(near(gauge(&text, gi_sm, Some(2)), 0.75));

    // Make the two disagree: DCGM's host engine stops sampling (its values
    // stay those of now, live for its 5 s max age), then the load changes,
    // which GPM sees at once. DCGM's value is the one published.
    edit_world(&world, |w| w.faults.dcgm_stale_data = true);
    std::thread::sleep(Duration::from_millis(400));
    mig_sim(&world, &["load", "--gpu", "0", "--gi", "2", "--sm-active", "0.2"]);
    std::thread::sleep(Duration::from_millis(600));
    let text = exporter.metrics();
    assert!(
        near(gauge(&text, gi_sm, Some(2)), 0.75),
        "DCGM's value wins:\n{text}"
    );
    assert_no_duplicates(&activity_series(&text));
    // Once DCGM's values are too old to publish, GPM's fill the gap.
    wait_for(
        || near(gauge(&exporter.metrics(), gi_sm, Some(2)), 0.2),
        "GPM's value where DCGM has none",
    );
    let text = exporter.metrics();
    assert_eq!(gauge(&text, ci_sm, Some(2)), None, "CIs: DCGM only");
    assert_no_duplicates(&activity_series(&text));
}

#[test]
fn on_an_ampere_node_gpm_says_once_that_it_is_not_supported() {
    let dir = tempfile::tempdir().unwrap();
    let world = dir.path().join("world.json");
    let w = world.to_str().unwrap();
    mig_sim(&world, &["init", "--gpus", "1", "--product", "a100-sxm4-40gb", w]);
    mig_sim(&world, &["-mig", "1"]);
    mig_sim(&world, &["mig", "-cgi", "19", "-C"]);
    let exporter = exporter(&world, &["--no-dcgm"]);
    let unsupported = "mig_exporter_source_info{source=\"gpm\",state=\"unsupported\"}";
    wait_for(
        || value(&exporter.metrics(), unsupported).as_deref() == Some("1"),
        "GPM unsupported",
    );
    // Several polls later: still unsupported (never down), said once, nothing
    // published, geometry served.
    std::thread::sleep(Duration::from_millis(500));
    let text = exporter.metrics();
    assert_eq!(value(&text, unsupported).as_deref(), Some("1"));
    assert_eq!(
        value(&text, "mig_exporter_source_up{source=\"gpm\"}"),
        None,
        "no source_up for a source the hardware cannot have"
    );
    assert_eq!(
        value(&text, "mig_exporter_source_up{source=\"nvml\"}").as_deref(),
        Some("1")
    );
    assert!(series(&text)
        .iter()
        .any(|s| s.starts_with("nvidia_mig_gpu_instance_info{")));
    assert!(activity_series(&text).is_empty(), "{text}");
    let said: Vec<String> = exporter
        .log()
        .into_iter()
        .filter(|l| l.contains("source=gpm") && l.contains("not supported"))
        .collect();
    assert_eq!(said.len(), 1, "{said:#?}");
    let (_, page) = exporter.get("/", None);
    assert!(
        page.contains("gpm unsupported") && page.contains("not supported") && !page.contains("gpm down"),
        "{page}"
    );
}
