//! GPU Performance Monitoring (GPM, Hopper and newer): sample buffers, the
//! counters they copy, and the metrics computed between two of them.
//!
//! The hardware keeps monotonically advancing activity counters per GPU and
//! per MIG GPU instance; a sample copies them with a timestamp, and
//! `nvmlGpmMetricsGet` divides the counters' advance by the time between two
//! samples. The fake keeps such counters per GPU and per GPU instance (named
//! by id, profile and placement start, as the hardware's units are) and, at
//! every sample, advances them at the rate the World's load gives *now* for
//! the time since the instance was last sampled. So between two samples of an
//! unchanged load, the metric is that load:
//!
//! * per GPU instance: SM activity, SM occupancy and tensor activity are the
//!   mean of its compute instances' loads weighted by their SM slices, over the
//!   instance's slices; DRAM bandwidth is its `dram_active`;
//! * per GPU with MIG enabled: the same over all instances, SM metrics over
//!   the GPU's SM slices and DRAM weighted by memory slots (as fake-dcgm
//!   aggregates); with MIG disabled the World puts no load on the GPU, so its
//!   counters do not advance (0 %).
//!
//! Metrics the World has no load for (graphics engine, FP64/FP32/FP16 and
//! integer pipes, the tensor kinds, PCIe, NVLink, media engines, ...) answer
//! `NVML_ERROR_NOT_SUPPORTED` in their `nvmlReturn`, rather than a made-up 0.
//!
//! The counters a sample copies are refreshed every [`REFRESH_NS`] (100 ms):
//! nvml.h asks for more than 100 ms between two `nvmlGpmSampleGet` (and
//! `nvmlGpmMigSampleGet`) calls "due to the internal sample refresh rate".
//! So a sample copies the counters as of the latest refresh, stamped with
//! it, and two samples within one refresh period are the same copy, which
//! `nvmlGpmMetricsGet` refuses as it refuses any pair that is not in time
//! order. unverified: the real library's answer for such a pair; assumed
//! NVML_ERROR_INVALID_ARGUMENT, the code nvml.h gives for bad arguments.
//!
//! A GPU instance without compute instances gets no sample: NVIDIA's DCGM
//! skips `nvmlGpmMigSampleGet` for one (`dcgmlib/src/DcgmGpmManager.cpp`,
//! `MaybeFetchNewSample`: "a MIG sample is a GPU-I level aggregation of
//! GPU-CI counters"). unverified: what the driver answers if asked anyway;
//! assumed NVML_ERROR_NOT_SUPPORTED.
//!
//! Like the hardware, `nvmlGpmMetricsGet` does not check that its two samples
//! are of the same GPU or instance: counters of unrelated units give garbage
//! (their difference wraps), which is what a client must never publish.
//!
//! Sample buffers are heap objects from `nvmlGpmSampleAlloc`, live until
//! `nvmlGpmSampleFree`; [`fakeNvmlGpmLiveSamples`] counts them for leak tests.
//! A handle that is not a live buffer is `NVML_ERROR_INVALID_ARGUMENT`, so a
//! double free or a stale handle is refused instead of touching freed memory.

use std::collections::BTreeMap;
use std::ffi::{c_uint, CStr};
use std::sync::OnceLock;
use std::time::Instant;

use mig_model::{Architecture, Gpu, GpuInstance};
use nvml_wrapper_sys::bindings::*;

use crate::device::with_device;
use crate::handles::Dev;
use crate::state::{call_without_world, with_state, Res};
use crate::write::{nonnull, out};

const INVALID_ARGUMENT: nvmlReturn_t = nvmlReturn_enum_NVML_ERROR_INVALID_ARGUMENT;
const NOT_SUPPORTED: nvmlReturn_t = nvmlReturn_enum_NVML_ERROR_NOT_SUPPORTED;
const NOT_FOUND: nvmlReturn_t = nvmlReturn_enum_NVML_ERROR_NOT_FOUND;
const VERSION_MISMATCH: nvmlReturn_t = nvmlReturn_enum_NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
const SUCCESS: nvmlReturn_t = nvmlReturn_enum_NVML_SUCCESS;

/// What a counter set belongs to: a GPU, or one GPU instance of it (by id,
/// profile and placement start: another instance there has other counters).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Unit {
    Gpu {
        uuid: String,
    },
    Gi {
        gpu: String,
        id: u32,
        profile_id: u32,
        start: u32,
    },
}

/// Monotonic counters, in nanoseconds of activity (active time at the rate
/// of the load) and the timestamp they were last advanced to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counters {
    at_ns: u64,
    sm_active: u64,
    sm_occupancy: u64,
    tensor_active: u64,
    dram_active: u64,
}

/// The load a unit has now, each a ratio 0–1.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Load {
    sm_active: f64,
    sm_occupancy: f64,
    tensor_active: f64,
    dram_active: f64,
}

/// One sample buffer: empty until a `nvmlGpm*SampleGet` fills it.
#[derive(Debug, Default)]
struct Sample {
    taken: Option<Counters>,
}

/// The library's GPM state: live sample buffers (by address) and counters.
#[derive(Debug, Default)]
pub(crate) struct Gpm {
    samples: BTreeMap<usize, Box<Sample>>,
    counters: BTreeMap<Unit, Counters>,
}

/// How often the counters a sample copies are refreshed (nvml.h: samples
/// more than 100 ms apart, "due to the internal sample refresh rate").
pub const REFRESH_NS: u64 = 100_000_000;

/// Nanoseconds on a monotonic clock, never 0.
fn now_ns() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_nanos())
        .unwrap_or(u64::MAX)
        .saturating_add(1)
}

/// The time of the latest counter refresh at `now`, never 0.
fn refreshed_at(now: u64) -> u64 {
    (now - now % REFRESH_NS).max(1)
}

/// `ratio` of `dt_ns`, rounded: the counter's advance.
fn advance(ratio: f64, dt_ns: u64) -> u64 {
    (ratio.clamp(0.0, 1.0) * dt_ns as f64).round() as u64
}

/// Sum over a GI's compute instances of a load times the CI's SM slices.
fn ci_weighted(gi: &GpuInstance, pick: fn(&mig_model::CiLoad) -> f64) -> f64 {
    gi.compute_instances
        .iter()
        .map(|ci| pick(&ci.load) * f64::from(ci.compute_slices()))
        .sum()
}

fn over(weighted: f64, slices: u32) -> f64 {
    if slices == 0 {
        0.0
    } else {
        (weighted / f64::from(slices)).clamp(0.0, 1.0)
    }
}

fn gi_load(gpu: &Gpu, gi: &GpuInstance) -> Load {
    let slices = gpu.gi_profile(gi).map_or(gi.placement.size, |p| p.compute_slices);
    Load {
        sm_active: over(ci_weighted(gi, |l| l.sm_active), slices),
        sm_occupancy: over(ci_weighted(gi, |l| l.sm_occupancy), slices),
        tensor_active: over(ci_weighted(gi, |l| l.tensor_active), slices),
        dram_active: gi.load.dram_active.clamp(0.0, 1.0),
    }
}

fn gpu_load(gpu: &Gpu) -> Load {
    if !gpu.mig.current {
        return Load::default();
    }
    let spec = gpu.spec();
    let sum = |pick: fn(&mig_model::CiLoad) -> f64| -> f64 {
        gpu.gpu_instances.iter().map(|gi| ci_weighted(gi, pick)).sum()
    };
    let dram: f64 = gpu
        .gpu_instances
        .iter()
        .map(|gi| gi.load.dram_active * f64::from(gi.placement.size))
        .sum();
    Load {
        sm_active: over(sum(|l| l.sm_active), spec.compute_slices),
        sm_occupancy: over(sum(|l| l.sm_occupancy), spec.compute_slices),
        tensor_active: over(sum(|l| l.tensor_active), spec.compute_slices),
        dram_active: over(dram, spec.memory_slots),
    }
}

/// Whether the product has GPM: Hopper and newer.
fn supports_gpm(gpu: &Gpu) -> bool {
    gpu.spec().architecture != Architecture::Ampere
}

impl Gpm {
    /// The live sample buffer `handle` names.
    fn sample(&mut self, handle: nvmlGpmSample_t) -> Res<&mut Sample> {
        self.samples
            .get_mut(&(handle as usize))
            .map(|b| &mut **b)
            .ok_or(INVALID_ARGUMENT)
    }

    /// Advances `unit`'s counters to the latest refresh at `load` and returns
    /// them. A unit sampled for the first time starts at zero then.
    fn read(&mut self, unit: Unit, load: Load) -> Counters {
        let now = refreshed_at(now_ns());
        let c = self.counters.entry(unit).or_insert(Counters {
            at_ns: now,
            ..Counters::default()
        });
        let dt = now.saturating_sub(c.at_ns);
        c.at_ns = c.at_ns.max(now);
        c.sm_active = c.sm_active.wrapping_add(advance(load.sm_active, dt));
        c.sm_occupancy = c.sm_occupancy.wrapping_add(advance(load.sm_occupancy, dt));
        c.tensor_active = c.tensor_active.wrapping_add(advance(load.tensor_active, dt));
        c.dram_active = c.dram_active.wrapping_add(advance(load.dram_active, dt));
        *c
    }

    /// Forgets the counters of `gpu`'s GPU instances that no longer exist, so
    /// the fake's memory does not grow with reconfigurations.
    fn prune(&mut self, gpu: &Gpu) {
        self.counters.retain(|unit, _| match unit {
            Unit::Gi {
                gpu: uuid,
                id,
                profile_id,
                start,
            } if *uuid == gpu.uuid => gpu
                .gpu_instances
                .iter()
                .any(|g| g.id == *id && g.profile_id == *profile_id && g.placement.start == *start),
            _ => true,
        });
    }
}

/// `counters` as a sample records them: stamped by the sample clock, which
/// the `gpm_clock_offset_ns` fault moves away from the time they advanced in.
fn on_sample_clock(counters: Counters, world: &mig_model::World) -> Counters {
    Counters {
        at_ns: counters
            .at_ns
            .saturating_add_signed(world.faults.gpm_clock_offset_ns),
        ..counters
    }
}

/// `isSupportedDevice` is 1 on Hopper and newer, 0 on Ampere; the struct's
/// version must be `NVML_GPM_SUPPORT_VERSION`. A MIG device handle is
/// `NVML_ERROR_NOT_SUPPORTED`: GPM is asked of the GPU.
///
/// # Safety
/// `support` is NULL or points to a writable `nvmlGpmSupport_t`.
#[no_mangle]
pub unsafe extern "C" fn nvmlGpmQueryDeviceSupport(
    device: nvmlDevice_t,
    support: *mut nvmlGpmSupport_t,
) -> nvmlReturn_t {
    with_device("nvmlGpmQueryDeviceSupport", device, |_, _, dev| {
        let Dev::Gpu(gpu) = dev else {
            return Err(NOT_SUPPORTED);
        };
        nonnull(support)?;
        // SAFETY: non-null; the version word comes first.
        let version = unsafe { (*support).version };
        if version != NVML_GPM_SUPPORT_VERSION {
            return Err(VERSION_MISMATCH);
        }
        unsafe {
            out(
                support,
                nvmlGpmSupport_t {
                    version,
                    isSupportedDevice: c_uint::from(supports_gpm(gpu)),
                },
            )
        }
    })
}

/// A new, empty sample buffer.
///
/// # Safety
/// `sample` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn nvmlGpmSampleAlloc(sample: *mut nvmlGpmSample_t) -> nvmlReturn_t {
    call_without_world("nvmlGpmSampleAlloc", |st| {
        nonnull(sample)?;
        let boxed = Box::<Sample>::default();
        let address = &*boxed as *const Sample as usize;
        st.gpm.samples.insert(address, boxed);
        unsafe { out(sample, address as nvmlGpmSample_t) }
    })
}

/// Frees a buffer from `nvmlGpmSampleAlloc`; `NVML_ERROR_INVALID_ARGUMENT`
/// for anything else (NULL, a freed buffer).
#[no_mangle]
pub extern "C" fn nvmlGpmSampleFree(sample: nvmlGpmSample_t) -> nvmlReturn_t {
    call_without_world("nvmlGpmSampleFree", |st| {
        st.gpm
            .samples
            .remove(&(sample as usize))
            .map(drop)
            .ok_or(INVALID_ARGUMENT)
    })
}

/// Copies the GPU's counters into `sample`. `NVML_ERROR_NOT_SUPPORTED` on
/// Ampere and for a MIG device handle; `NVML_ERROR_INVALID_ARGUMENT` when
/// `sample` is not a live buffer.
#[no_mangle]
pub extern "C" fn nvmlGpmSampleGet(device: nvmlDevice_t, sample: nvmlGpmSample_t) -> nvmlReturn_t {
    with_device("nvmlGpmSampleGet", device, |st, w, dev| {
        let Dev::Gpu(gpu) = dev else {
            return Err(NOT_SUPPORTED);
        };
        st.gpm.sample(sample)?;
        if !supports_gpm(gpu) {
            return Err(NOT_SUPPORTED);
        }
        st.gpm.prune(gpu);
        let counters = st.gpm.read(
            Unit::Gpu {
                uuid: gpu.uuid.clone(),
            },
            gpu_load(gpu),
        );
        st.gpm.sample(sample)?.taken = Some(on_sample_clock(counters, w));
        Ok(())
    })
}

/// Copies GPU instance `gpu_instance_id`'s counters into `sample`. `device`
/// is the GPU (a MIG device handle is `NVML_ERROR_INVALID_ARGUMENT`);
/// `NVML_ERROR_NOT_SUPPORTED` on Ampere; with MIG disabled no id is valid
/// (`NVML_ERROR_INVALID_ARGUMENT`); an id no GPU instance has (destroyed) is
/// `NVML_ERROR_NOT_FOUND`, as `nvmlDeviceGetGpuInstanceById` answers; a GPU
/// instance without compute instances is `NVML_ERROR_NOT_SUPPORTED`
/// (unverified, see the module's notes).
#[no_mangle]
pub extern "C" fn nvmlGpmMigSampleGet(
    device: nvmlDevice_t,
    gpu_instance_id: c_uint,
    sample: nvmlGpmSample_t,
) -> nvmlReturn_t {
    with_device("nvmlGpmMigSampleGet", device, |st, w, dev| {
        let Dev::Gpu(gpu) = dev else {
            return Err(INVALID_ARGUMENT);
        };
        st.gpm.sample(sample)?;
        if !supports_gpm(gpu) {
            return Err(NOT_SUPPORTED);
        }
        if !gpu.mig.current {
            return Err(INVALID_ARGUMENT);
        }
        let gi = gpu
            .gpu_instances
            .iter()
            .find(|g| g.id == gpu_instance_id)
            .ok_or(NOT_FOUND)?;
        // No compute instance, no counters to aggregate (see the module's notes).
        if gi.compute_instances.is_empty() {
            return Err(NOT_SUPPORTED);
        }
        st.gpm.prune(gpu);
        let counters = st.gpm.read(
            Unit::Gi {
                gpu: gpu.uuid.clone(),
                id: gi.id,
                profile_id: gi.profile_id,
                start: gi.placement.start,
            },
            gi_load(gpu, gi),
        );
        st.gpm.sample(sample)?.taken = Some(on_sample_clock(counters, w));
        Ok(())
    })
}

/// A metric's names and unit, as `metricInfo` carries them.
struct Info {
    short: &'static CStr,
    long: &'static CStr,
}

/// Picks one counter out of a counter set.
type Counter = fn(&Counters) -> u64;

/// The metrics the fake computes, and from which counter.
fn modeled(id: c_uint) -> Option<(Info, Counter)> {
    Some(match id {
        nvmlGpmMetricId_t_NVML_GPM_METRIC_SM_UTIL => (
            Info {
                short: c"SM_UTIL",
                long: c"SM utilization",
            },
            |c| c.sm_active,
        ),
        nvmlGpmMetricId_t_NVML_GPM_METRIC_SM_OCCUPANCY => (
            Info {
                short: c"SM_OCCUPANCY",
                long: c"SM occupancy",
            },
            |c| c.sm_occupancy,
        ),
        nvmlGpmMetricId_t_NVML_GPM_METRIC_ANY_TENSOR_UTIL => (
            Info {
                short: c"ANY_TENSOR_UTIL",
                long: c"Any tensor pipe utilization",
            },
            |c| c.tensor_active,
        ),
        nvmlGpmMetricId_t_NVML_GPM_METRIC_DRAM_BW_UTIL => (
            Info {
                short: c"DRAM_BW_UTIL",
                long: c"DRAM bandwidth utilization",
            },
            |c| c.dram_active,
        ),
        _ => return None,
    })
}

/// The metrics between `sample1` and `sample2` (taken later), in percent.
/// The struct's version must be `NVML_GPM_METRICS_GET_VERSION` and
/// `numMetrics` at most `NVML_GPM_METRIC_MAX`; both samples must be live,
/// filled buffers, `sample2` taken after `sample1` (else
/// `NVML_ERROR_INVALID_ARGUMENT`). Each metric gets its own `nvmlReturn`:
/// success with a value for the metrics the World models,
/// `NVML_ERROR_NOT_SUPPORTED` for other metric ids of `nvml.h`, and
/// `NVML_ERROR_INVALID_ARGUMENT` for ids that are none.
///
/// # Safety
/// `metrics_get` is NULL or points to a writable `nvmlGpmMetricsGet_t`.
#[no_mangle]
pub unsafe extern "C" fn nvmlGpmMetricsGet(metrics_get: *mut nvmlGpmMetricsGet_t) -> nvmlReturn_t {
    call_without_world("nvmlGpmMetricsGet", |st| {
        nonnull(metrics_get)?;
        // SAFETY: non-null and, by the caller's contract, a whole struct.
        let request = unsafe { &mut *metrics_get };
        if request.version != NVML_GPM_METRICS_GET_VERSION {
            return Err(VERSION_MISMATCH);
        }
        let count = request.numMetrics as usize;
        if count > request.metrics.len() {
            return Err(INVALID_ARGUMENT);
        }
        let first = st.gpm.sample(request.sample1)?.taken.ok_or(INVALID_ARGUMENT)?;
        let second = st.gpm.sample(request.sample2)?.taken.ok_or(INVALID_ARGUMENT)?;
        if second.at_ns <= first.at_ns {
            return Err(INVALID_ARGUMENT);
        }
        let elapsed = (second.at_ns - first.at_ns) as f64;
        for metric in &mut request.metrics[..count] {
            metric.value = 0.0;
            metric.metricInfo = nvmlGpmMetric_t__bindgen_ty_1 {
                shortName: std::ptr::null_mut(),
                longName: std::ptr::null_mut(),
                unit: std::ptr::null_mut(),
            };
            let id = metric.metricId;
            metric.nvmlReturn = match modeled(id) {
                Some((info, counter)) => {
                    let active = counter(&second).wrapping_sub(counter(&first));
                    metric.value = 100.0 * active as f64 / elapsed;
                    // NVML's strings are static; the caller only reads them.
                    metric.metricInfo = nvmlGpmMetric_t__bindgen_ty_1 {
                        shortName: info.short.as_ptr().cast_mut(),
                        longName: info.long.as_ptr().cast_mut(),
                        unit: c"%".as_ptr().cast_mut(),
                    };
                    SUCCESS
                }
                None if id > 0 && id < nvmlGpmMetricId_t_NVML_GPM_METRIC_MAX => NOT_SUPPORTED,
                None => INVALID_ARGUMENT,
            };
        }
        Ok(())
    })
}

/// How many GPM sample buffers are allocated and not freed: a client that
/// frees what it allocates keeps this bounded. Not part of NVML.
#[no_mangle]
pub extern "C" fn fakeNvmlGpmLiveSamples() -> u64 {
    std::panic::catch_unwind(|| with_state(|st| st.gpm.samples.len() as u64)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mig_model::{Product, World};

    fn h100() -> World {
        let mut w = World::new("n", Product::H100_80GB, 1);
        let gpu = &mut w.gpus[0];
        gpu.set_mig_mode(true);
        let big = gpu.create_gpu_instance(9, None).unwrap();
        gpu.create_compute_instance(big, Some(1)).unwrap(); // 2 slices
        gpu.create_compute_instance(big, Some(0)).unwrap(); // 1 slice
        let small = gpu.create_gpu_instance(19, None).unwrap();
        gpu.create_compute_instance(small, None).unwrap();
        let g = gpu.gpu_instances.iter_mut().find(|g| g.id == big).unwrap();
        g.load.dram_active = 0.5;
        g.compute_instances[0].load.sm_active = 0.3;
        g.compute_instances[1].load.sm_active = 0.9;
        g.compute_instances[1].load.tensor_active = 0.6;
        w
    }

    #[test]
    fn instance_load_is_the_slice_weighted_mean_and_the_gpu_aggregates() {
        let w = h100();
        let gpu = &w.gpus[0];
        let big = gpu.gpu_instances.iter().find(|g| g.profile_id == 9).unwrap();
        let l = gi_load(gpu, big);
        assert!((l.sm_active - (0.3 * 2.0 + 0.9) / 3.0).abs() < 1e-12, "{l:?}");
        assert!((l.tensor_active - 0.6 / 3.0).abs() < 1e-12);
        assert_eq!(l.dram_active, 0.5);
        let g = gpu_load(gpu);
        assert!((g.sm_active - (0.3 * 2.0 + 0.9) / 7.0).abs() < 1e-12, "{g:?}");
        // 3g.40gb spans 4 of the 8 memory slots.
        assert!((g.dram_active - 0.5 * 4.0 / 8.0).abs() < 1e-12);
        let mut off = w.clone();
        off.gpus[0].set_mig_mode(false);
        assert_eq!(gpu_load(&off.gpus[0]), Load::default());
    }

    #[test]
    fn counters_advance_monotonically_at_the_load() {
        let mut gpm = Gpm::default();
        let unit = Unit::Gpu { uuid: "GPU-a".into() };
        let load = Load {
            sm_active: 0.25,
            dram_active: 1.0,
            ..Load::default()
        };
        let a = gpm.read(unit.clone(), load);
        std::thread::sleep(std::time::Duration::from_nanos(REFRESH_NS + 10_000_000));
        let b = gpm.read(unit.clone(), load);
        let dt = (b.at_ns - a.at_ns) as f64;
        assert!(dt > 0.0);
        assert!(((b.sm_active - a.sm_active) as f64 / dt - 0.25).abs() < 1e-6);
        assert_eq!(b.dram_active - a.dram_active, b.at_ns - a.at_ns);
        assert_eq!(b.tensor_active, a.tensor_active, "no tensor load: no advance");
        let c = gpm.read(unit, Load::default());
        assert!(
            c.sm_active >= b.sm_active && c.at_ns >= b.at_ns,
            "never backwards"
        );
    }

    #[test]
    fn counters_are_copied_as_of_the_latest_refresh() {
        assert_eq!(refreshed_at(1), 1, "never 0");
        assert_eq!(refreshed_at(REFRESH_NS - 1), 1);
        assert_eq!(refreshed_at(REFRESH_NS), REFRESH_NS);
        assert_eq!(refreshed_at(3 * REFRESH_NS + 7), 3 * REFRESH_NS);
        let mut gpm = Gpm::default();
        let unit = Unit::Gpu { uuid: "GPU-a".into() };
        let load = Load {
            sm_active: 1.0,
            ..Load::default()
        };
        // Two reads at once land in one refresh period: the same copy.
        let a = gpm.read(unit.clone(), load);
        let b = gpm.read(unit, load);
        assert_eq!(a, b);
        assert_eq!(a.at_ns % REFRESH_NS, if a.at_ns == 1 { 1 } else { 0 });
    }

    #[test]
    fn pruning_forgets_destroyed_instances_only() {
        let w = h100();
        let gpu = &w.gpus[0];
        let mut gpm = Gpm::default();
        for gi in &gpu.gpu_instances {
            gpm.read(
                Unit::Gi {
                    gpu: gpu.uuid.clone(),
                    id: gi.id,
                    profile_id: gi.profile_id,
                    start: gi.placement.start,
                },
                Load::default(),
            );
        }
        gpm.read(
            Unit::Gi {
                gpu: gpu.uuid.clone(),
                id: 99,
                profile_id: 19,
                start: 6,
            },
            Load::default(),
        );
        gpm.prune(gpu);
        assert_eq!(gpm.counters.len(), gpu.gpu_instances.len());
    }
}
