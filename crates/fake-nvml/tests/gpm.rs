//! The fake's GPM (GPU Performance Monitoring) through `nvml-wrapper` 0.13's
//! own GPM wrapper, an independent client of the same `nvml.h` layouts, and
//! through the `-sys` loaded library for the return codes the wrapper hides.

mod common;

use std::ffi::c_uint;
use std::ptr;
use std::time::Duration;

use common::{lib_path, Fake};
use mig_model::{Gpu, Product, World};
use nvml_wrapper::enums::gpm::GpmMetricId;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::gpm::gpm_metrics_get;
use nvml_wrapper::{Device, Nvml};
use nvml_wrapper_sys::bindings::*;

const SUCCESS: nvmlReturn_t = nvmlReturn_enum_NVML_SUCCESS;
const INVALID_ARGUMENT: nvmlReturn_t = nvmlReturn_enum_NVML_ERROR_INVALID_ARGUMENT;
const NOT_SUPPORTED: nvmlReturn_t = nvmlReturn_enum_NVML_ERROR_NOT_SUPPORTED;
const NOT_FOUND: nvmlReturn_t = nvmlReturn_enum_NVML_ERROR_NOT_FOUND;
const VERSION_MISMATCH: nvmlReturn_t = nvmlReturn_enum_NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
const UNINITIALIZED: nvmlReturn_t = nvmlReturn_enum_NVML_ERROR_UNINITIALIZED;

/// GPU 0: H100, MIG on: GI 2 = 3g.40gb (4:4) with a 2-slice CI (SM 0.3,
/// occupancy 0.2) and a 1-slice CI (SM 0.9, tensor 0.6), DRAM 0.5; GI 9 =
/// 1g.10gb (2:1) with its CI (SM 0.4). GPU 1: A100 40GB, MIG on, a 1g.5gb.
fn node() -> World {
    let mut w = World::new("node", Product::H100_80GB, 1);
    let gpu = &mut w.gpus[0];
    gpu.set_mig_mode(true);
    let big = gpu.create_gpu_instance(9, Some(4)).unwrap();
    gpu.create_compute_instance(big, Some(1)).unwrap();
    gpu.create_compute_instance(big, Some(0)).unwrap();
    let small = gpu.create_gpu_instance(19, Some(2)).unwrap();
    gpu.create_compute_instance(small, None).unwrap();
    assert_eq!((big, small), (2, 9));
    for gi in &mut gpu.gpu_instances {
        if gi.id == big {
            gi.load.dram_active = 0.5;
            gi.compute_instances[0].load.sm_active = 0.3;
            gi.compute_instances[0].load.sm_occupancy = 0.2;
            gi.compute_instances[1].load.sm_active = 0.9;
            gi.compute_instances[1].load.tensor_active = 0.6;
        } else {
            gi.compute_instances[0].load.sm_active = 0.4;
        }
    }
    let mut a100 = Gpu::new("node", Product::A100Sxm4_40GB, 1);
    a100.set_mig_mode(true);
    let one = a100.spec().profiles[0].id;
    let gi = a100.create_gpu_instance(one, None).unwrap();
    a100.create_compute_instance(gi, None).unwrap();
    w.gpus.push(a100);
    w.validate().expect("a valid World");
    w
}

fn raw(device: &Device<'_>) -> nvmlDevice_t {
    // SAFETY: the handle is only passed back to the library that made it.
    unsafe { device.handle() }
}

fn live_samples() -> u64 {
    // SAFETY: the fake's own export, with the signature it defines; the same
    // loaded library instance as the one nvml-wrapper opened.
    unsafe {
        let lib = libloading::Library::new(lib_path()).unwrap();
        let f: libloading::Symbol<'_, extern "C" fn() -> u64> = lib.get(b"fakeNvmlGpmLiveSamples\0").unwrap();
        f()
    }
}

const METRICS: [GpmMetricId; 8] = [
    GpmMetricId::GraphicsUtil,
    GpmMetricId::SmUtil,
    GpmMetricId::SmOccupancy,
    GpmMetricId::AnyTensorUtil,
    GpmMetricId::DramBwUtil,
    GpmMetricId::Fp64Util,
    GpmMetricId::Fp32Util,
    GpmMetricId::Fp16Util,
];

/// The values of [`METRICS`] between two samples, `None` where not supported.
fn metrics(
    nvml: &Nvml,
    a: &nvml_wrapper::GpmSample<'_>,
    b: &nvml_wrapper::GpmSample<'_>,
) -> Vec<Option<f64>> {
    gpm_metrics_get(nvml, a, b, &METRICS)
        .expect("nvmlGpmMetricsGet")
        .into_iter()
        .map(|r| match r {
            Ok(m) => Some(m.value),
            Err(NvmlError::NotSupported) => None,
            Err(e) => panic!("unexpected per-metric error {e}"),
        })
        .collect()
}

/// Longer than the 100 ms between counter refreshes (nvml.h asks for more
/// than 100 ms between two samples), so two samples this far apart differ.
const GAP: Duration = Duration::from_millis(110);

fn close(got: Option<f64>, want: f64) -> bool {
    got.is_some_and(|g| (g - want).abs() < 1e-3)
}

#[test]
fn support_follows_the_architecture() {
    let fake = Fake::new(&node());
    let nvml = fake.nvml();
    assert!(nvml.device_by_index(0).unwrap().gpm_support().unwrap(), "Hopper");
    assert!(!nvml.device_by_index(1).unwrap().gpm_support().unwrap(), "Ampere");
    let ampere = nvml.device_by_index(1).unwrap();
    assert!(matches!(ampere.gpm_sample(), Err(NvmlError::NotSupported)));
    assert!(matches!(ampere.gpm_mig_sample(1), Err(NvmlError::NotSupported)));

    // The struct version is checked.
    let lib = nvml.lib();
    let query = lib.nvmlGpmQueryDeviceSupport.as_ref().unwrap();
    let mut support = nvmlGpmSupport_t {
        version: NVML_GPM_SUPPORT_VERSION + 1,
        isSupportedDevice: 7,
    };
    let h = raw(&nvml.device_by_index(0).unwrap());
    assert_eq!(unsafe { query(h, &mut support) }, VERSION_MISMATCH);
    assert_eq!(support.isSupportedDevice, 7, "nothing written on failure");
    assert_eq!(unsafe { query(h, ptr::null_mut()) }, INVALID_ARGUMENT);
}

#[test]
fn metrics_between_two_samples_are_the_worlds_load() {
    let world = node();
    let fake = Fake::new(&world);
    let nvml = fake.nvml();
    let dev = nvml.device_by_index(0).unwrap();
    let (gpu1, big1, small1) = (
        dev.gpm_sample().unwrap(),
        dev.gpm_mig_sample(2).unwrap(),
        dev.gpm_mig_sample(9).unwrap(),
    );
    std::thread::sleep(GAP);
    let (gpu2, big2, small2) = (
        dev.gpm_sample().unwrap(),
        dev.gpm_mig_sample(2).unwrap(),
        dev.gpm_mig_sample(9).unwrap(),
    );

    // GI 2: SM (0.3·2 + 0.9·1) / 3 slices, occupancy 0.2·2/3, tensor 0.6/3, DRAM 0.5.
    let m = metrics(&nvml, &big1, &big2);
    assert_eq!(m[0], None, "the World has no graphics-engine load");
    assert!(close(m[1], 50.0), "{m:?}");
    assert!(close(m[2], 100.0 * 0.4 / 3.0), "{m:?}");
    assert!(close(m[3], 20.0), "{m:?}");
    assert!(close(m[4], 50.0), "{m:?}");
    assert_eq!(&m[5..], &[None, None, None], "no FP pipe load in the World");
    // GI 9: one slice at 0.4.
    let m = metrics(&nvml, &small1, &small2);
    assert!(close(m[1], 40.0) && close(m[4], 0.0), "{m:?}");
    // The GPU: all SM slices (7), DRAM over the 8 memory slots (GI 2 spans 4).
    let m = metrics(&nvml, &gpu1, &gpu2);
    assert!(close(m[1], 100.0 * 1.9 / 7.0), "{m:?}");
    assert!(close(m[4], 25.0), "{m:?}");

    // A new load shows in the next interval.
    let mut w = world.clone();
    for gi in &mut w.gpus[0].gpu_instances {
        if gi.id == 9 {
            gi.compute_instances[0].load.sm_active = 1.0;
        }
    }
    fake.save(&w);
    std::thread::sleep(GAP);
    let small3 = dev.gpm_mig_sample(9).unwrap();
    assert!(close(metrics(&nvml, &small2, &small3)[1], 100.0));
}

#[test]
fn samples_of_unrelated_units_give_garbage_as_on_the_hardware() {
    // A GPU of its own, so its units' counters start in this test.
    let mut world = node();
    let uuid = &mut world.gpus[0].uuid;
    let last = if uuid.ends_with('0') { '1' } else { '0' };
    uuid.pop();
    uuid.push(last);
    let fake = Fake::new(&world);
    let nvml = fake.nvml();
    let dev = nvml.device_by_index(0).unwrap();
    let _start = dev.gpm_mig_sample(2).unwrap();
    std::thread::sleep(GAP);
    let first = dev.gpm_mig_sample(2).unwrap();
    std::thread::sleep(GAP);
    // Another GPU instance's counters start at its first sample: the "rate"
    // from GI 2's counters to them is no load at all.
    let other = dev.gpm_mig_sample(9).unwrap();
    let sm = metrics(&nvml, &first, &other)[1].unwrap();
    assert!(!(0.0..=100.0).contains(&sm), "{sm}");
}

#[test]
fn destroyed_instances_and_mig_disabled_fail_like_nvml() {
    let world = node();
    let fake = Fake::new(&world);
    let nvml = fake.nvml();
    let dev = nvml.device_by_index(0).unwrap();
    let lib = nvml.lib();
    let alloc = lib.nvmlGpmSampleAlloc.as_ref().unwrap();
    let free = lib.nvmlGpmSampleFree.as_ref().unwrap();
    let mig_get = lib.nvmlGpmMigSampleGet.as_ref().unwrap();
    let get = lib.nvmlGpmSampleGet.as_ref().unwrap();
    let mut s: nvmlGpmSample_t = ptr::null_mut();
    assert_eq!(unsafe { alloc(&mut s) }, SUCCESS);
    let h = raw(&dev);
    assert_eq!(unsafe { mig_get(h, 2, s) }, SUCCESS);
    assert_eq!(unsafe { mig_get(h, 5, s) }, NOT_FOUND, "no GI 5");

    // GI 9 destroyed: its id is not found any more.
    let mut w = world.clone();
    let gpu = &mut w.gpus[0];
    let ci = gpu
        .gpu_instances
        .iter()
        .find(|g| g.id == 9)
        .unwrap()
        .compute_instances[0]
        .id;
    gpu.destroy_compute_instance(9, ci).unwrap();
    gpu.destroy_gpu_instance(9).unwrap();
    fake.save(&w);
    assert_eq!(unsafe { mig_get(h, 9, s) }, NOT_FOUND);

    // A MIG device handle is not a GPU; with MIG disabled no GI id is valid.
    let mig = dev.mig_device_by_index(0).unwrap();
    assert_eq!(unsafe { mig_get(raw(&mig), 2, s) }, INVALID_ARGUMENT);
    assert_eq!(unsafe { get(raw(&mig), s) }, NOT_SUPPORTED);
    let mut off = World::new("node", Product::H100_80GB, 1);
    off.gpus[0].uuid = w.gpus[0].uuid.clone();
    fake.save(&off);
    assert_eq!(unsafe { mig_get(h, 2, s) }, INVALID_ARGUMENT);
    assert_eq!(unsafe { get(h, s) }, SUCCESS, "the whole GPU samples without MIG");

    // Freed buffers and foreign pointers are refused, never touched.
    assert_eq!(unsafe { free(s) }, SUCCESS);
    assert_eq!(unsafe { free(s) }, INVALID_ARGUMENT, "double free");
    assert_eq!(unsafe { get(h, s) }, INVALID_ARGUMENT, "a freed buffer");
    assert_eq!(unsafe { free(ptr::null_mut()) }, INVALID_ARGUMENT);
    assert_eq!(unsafe { alloc(ptr::null_mut()) }, INVALID_ARGUMENT);
}

#[test]
fn metrics_get_checks_its_request() {
    let fake = Fake::new(&node());
    let nvml = fake.nvml();
    let dev = nvml.device_by_index(0).unwrap();
    let lib = nvml.lib();
    let metrics_get = lib.nvmlGpmMetricsGet.as_ref().unwrap();
    let a = dev.gpm_mig_sample(2).unwrap();
    std::thread::sleep(GAP);
    let b = dev.gpm_mig_sample(2).unwrap();
    let empty = nvml_wrapper::GpmSample::into_handle(dev.gpm_mig_sample(2).unwrap());
    // SAFETY: zeroed is valid for this plain C struct.
    let request = |s1, s2, n: c_uint, ids: &[c_uint]| {
        let mut r: nvmlGpmMetricsGet_t = unsafe { std::mem::zeroed() };
        r.version = NVML_GPM_METRICS_GET_VERSION;
        r.numMetrics = n;
        r.sample1 = s1;
        r.sample2 = s2;
        for (m, id) in r.metrics.iter_mut().zip(ids) {
            m.metricId = *id;
        }
        r
    };
    let (ha, hb) = unsafe { (a.handle(), b.handle()) };
    let ids = [
        nvmlGpmMetricId_t_NVML_GPM_METRIC_SM_UTIL,
        nvmlGpmMetricId_t_NVML_GPM_METRIC_FP64_UTIL,
        0,
        nvmlGpmMetricId_t_NVML_GPM_METRIC_MAX,
    ];
    let mut r = request(ha, hb, 4, &ids);
    assert_eq!(unsafe { metrics_get(&mut r) }, SUCCESS);
    let codes: Vec<_> = r.metrics[..4].iter().map(|m| m.nvmlReturn).collect();
    assert_eq!(
        codes,
        [SUCCESS, NOT_SUPPORTED, INVALID_ARGUMENT, INVALID_ARGUMENT]
    );
    assert!((r.metrics[0].value - 50.0).abs() < 1e-3);
    assert!(!r.metrics[0].metricInfo.shortName.is_null());

    let mut r = request(ha, hb, 4, &ids);
    r.version = 2;
    assert_eq!(unsafe { metrics_get(&mut r) }, VERSION_MISMATCH);
    let mut r = request(ha, hb, NVML_GPM_METRIC_MAX_PLUS_ONE, &ids);
    assert_eq!(
        unsafe { metrics_get(&mut r) },
        INVALID_ARGUMENT,
        "too many metrics"
    );
    let mut r = request(hb, ha, 1, &ids);
    assert_eq!(
        unsafe { metrics_get(&mut r) },
        INVALID_ARGUMENT,
        "samples out of order"
    );
    let mut fresh: nvmlGpmSample_t = ptr::null_mut();
    assert_eq!(
        unsafe { lib.nvmlGpmSampleAlloc.as_ref().unwrap()(&mut fresh) },
        SUCCESS
    );
    let mut r = request(ha, fresh, 1, &ids);
    assert_eq!(
        unsafe { metrics_get(&mut r) },
        INVALID_ARGUMENT,
        "an empty sample"
    );
    assert_eq!(unsafe { metrics_get(ptr::null_mut()) }, INVALID_ARGUMENT);
    let free = lib.nvmlGpmSampleFree.as_ref().unwrap();
    assert_eq!(unsafe { free(fresh) }, SUCCESS);
    assert_eq!(unsafe { free(empty) }, SUCCESS);
}

#[test]
fn samples_within_one_refresh_are_the_same_copy_and_give_no_metrics() {
    let fake = Fake::new(&node());
    let nvml = fake.nvml();
    let dev = nvml.device_by_index(0).unwrap();
    // Back to back: almost always one refresh period; the odd pair that
    // straddles a refresh is followed by one that does not.
    let refused = (0..3).any(|_| {
        let a = dev.gpm_mig_sample(2).unwrap();
        let b = dev.gpm_mig_sample(2).unwrap();
        matches!(
            gpm_metrics_get(&nvml, &a, &b, &METRICS),
            Err(NvmlError::InvalidArg)
        )
    });
    assert!(refused, "two samples of one refresh give no metrics");
    let a = dev.gpm_sample().unwrap();
    std::thread::sleep(GAP);
    let b = dev.gpm_sample().unwrap();
    assert!(
        gpm_metrics_get(&nvml, &a, &b, &METRICS).is_ok(),
        "more than 100 ms apart"
    );
}

#[test]
fn a_gpu_instance_without_compute_instances_has_no_sample() {
    let mut world = node();
    let gpu = &mut world.gpus[0];
    let bare = gpu.create_gpu_instance(19, Some(0)).unwrap();
    let fake = Fake::new(&world);
    let nvml = fake.nvml();
    let dev = nvml.device_by_index(0).unwrap();
    assert!(matches!(dev.gpm_mig_sample(bare), Err(NvmlError::NotSupported)));
    assert!(
        dev.gpm_mig_sample(2).is_ok(),
        "GIs with compute instances still sample"
    );
}

const NVML_GPM_METRIC_MAX_PLUS_ONE: c_uint = nvmlGpmMetricId_t_NVML_GPM_METRIC_MAX + 1;

#[test]
fn sample_buffers_are_counted_until_freed_and_need_init() {
    let fake = Fake::new(&node());
    let nvml = fake.nvml();
    let dev = nvml.device_by_index(0).unwrap();
    let before = live_samples();
    let samples: Vec<_> = (0..50).map(|_| dev.gpm_mig_sample(2).unwrap()).collect();
    assert_eq!(live_samples(), before + 50);
    drop(samples);
    assert_eq!(live_samples(), before, "nvml-wrapper frees on drop");

    // A buffer outlives a World file that cannot be read, and is still freed.
    let lib = nvml.lib();
    let mut s: nvmlGpmSample_t = ptr::null_mut();
    assert_eq!(
        unsafe { lib.nvmlGpmSampleAlloc.as_ref().unwrap()(&mut s) },
        SUCCESS
    );
    std::fs::write(&fake.path, "not a World").unwrap();
    assert_eq!(unsafe { lib.nvmlGpmSampleFree.as_ref().unwrap()(s) }, SUCCESS);
    assert_eq!(live_samples(), before);
    fake.save(&node());
    drop(nvml);

    // Before init (after the last shutdown) nothing is allocated.
    let lib = unsafe { NvmlLib::new(lib_path()) }.unwrap();
    let mut s: nvmlGpmSample_t = ptr::null_mut();
    assert_eq!(unsafe { lib.nvmlGpmSampleAlloc(&mut s) }, UNINITIALIZED);
    assert_eq!(live_samples(), before);
}
