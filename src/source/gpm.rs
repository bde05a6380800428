//! The GPM source: how hard each GPU and each MIG GPU instance works, from
//! NVML's GPU Performance Monitoring (Hopper and newer), with nothing but the
//! driver installed: no DCGM host engine.
//!
//! GPM gives counters, not rates: a sample copies a GPU's or a GPU instance's
//! counters, and `nvmlGpmMetricsGet` turns two samples into the activity
//! between them. So on every poll the source takes one new sample per GPU
//! and per GPU instance, computes the metrics against the sample it kept from
//! the poll before, and keeps the new one in its place:
//!
//! * the first sample of an instance gives nothing (`None`, not zero);
//! * samples are kept per instance identity: a GPU by UUID and MIG mode, a
//!   GPU instance by GPU UUID, id, profile, placement and its compute
//!   instances' MIG UUIDs. A GPU instance destroyed and recreated (same id,
//!   another shape, or new MIG devices) is another instance and starts over,
//!   so no rate is ever computed across a reconfiguration. Before a GPU
//!   instance's new sample is used, its shape is read again, so a
//!   reconfiguration between the geometry read and the sample throws the
//!   sample away rather than pairing it with the old instance's;
//! * a sample is freed as soon as a newer one replaces it, when its instance
//!   disappears from the geometry, and when the source or NVML restarts:
//!   at most one sample per instance is held between polls.
//!
//! What each GPU supports is asked (`nvmlGpmQueryDeviceSupport`, then each
//! metric's own return code), never assumed: a metric the GPU does not have
//! stays `None`. A node where no GPU has GPM (Ampere, or GPM unavailable)
//! fails the source with a message that says so, unchanged from poll to poll
//! so that it is logged once; a GPU without GPM beside GPUs with it is
//! logged once and left out.
//!
//! Compute instances have no GPM counters of their own: their activity comes
//! from DCGM only. The source reads through the NVML source's open library
//! ([`SharedNvml`]) rather than initialising NVML a second time.

use std::collections::hash_map::DefaultHasher;
use std::collections::BTreeSet;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::Nvml;
use nvml_wrapper_sys::bindings::{
    nvmlDevice_t, nvmlGpmMetricId_t_NVML_GPM_METRIC_ANY_TENSOR_UTIL as ANY_TENSOR_UTIL,
    nvmlGpmMetricId_t_NVML_GPM_METRIC_DRAM_BW_UTIL as DRAM_BW_UTIL,
    nvmlGpmMetricId_t_NVML_GPM_METRIC_FP16_UTIL as FP16_UTIL,
    nvmlGpmMetricId_t_NVML_GPM_METRIC_FP32_UTIL as FP32_UTIL,
    nvmlGpmMetricId_t_NVML_GPM_METRIC_FP64_UTIL as FP64_UTIL,
    nvmlGpmMetricId_t_NVML_GPM_METRIC_GRAPHICS_UTIL as GRAPHICS_UTIL,
    nvmlGpmMetricId_t_NVML_GPM_METRIC_SM_OCCUPANCY as SM_OCCUPANCY,
    nvmlGpmMetricId_t_NVML_GPM_METRIC_SM_UTIL as SM_UTIL,
};

use super::nvml::raw::{self, GpmSample};
use super::nvml::SharedNvml;
use super::UtilizationSource;
use crate::model::{Activity, GpuInstanceSnapshot, GpuSnapshot};

/// The [`Activity`] field a metric fills.
type Field = fn(&mut Activity) -> &mut Option<f64>;

/// The GPM metrics read, and the [`Activity`] field each one fills. All are
/// percentages 0–100 in NVML.
const METRICS: [(u32, Field); 8] = [
    (GRAPHICS_UTIL, |a| &mut a.gr_engine_active_ratio),
    (SM_UTIL, |a| &mut a.sm_active_ratio),
    (SM_OCCUPANCY, |a| &mut a.sm_occupancy_ratio),
    (ANY_TENSOR_UTIL, |a| &mut a.tensor_active_ratio),
    (DRAM_BW_UTIL, |a| &mut a.dram_active_ratio),
    (FP64_UTIL, |a| &mut a.fp64_active_ratio),
    (FP32_UTIL, |a| &mut a.fp32_active_ratio),
    (FP16_UTIL, |a| &mut a.fp16_active_ratio),
];

/// A GPM percentage as a ratio. Rounding may take a value a little past the
/// ends; anything further off (counters that wrapped, a GPU reset between
/// two samples) is no measurement and is left out.
fn ratio(percent: f64) -> Option<f64> {
    (percent.is_finite() && (-0.5..=100.5).contains(&percent)).then(|| (percent / 100.0).clamp(0.0, 1.0))
}

/// What a GPU instance's held sample measures. Anything that differs names
/// another instance: one destroyed and created again in its place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct InstanceKey {
    id: u32,
    profile_id: u32,
    placement: (u32, u32),
    /// Its compute instances' MIG UUIDs, hashed in any order: a compute
    /// instance created again gets a new UUID (driver R470 and newer).
    mig_devices: u64,
}

impl InstanceKey {
    fn of(gi: &GpuInstanceSnapshot) -> InstanceKey {
        let mig_devices = gi.compute_instances.iter().fold(0u64, |sum, ci| {
            let mut hasher = DefaultHasher::new();
            ci.mig_uuid.hash(&mut hasher);
            sum.wrapping_add(hasher.finish())
        });
        InstanceKey {
            id: gi.id,
            profile_id: gi.profile_id,
            placement: (gi.placement_start, gi.placement_size),
            mig_devices,
        }
    }
}

/// A GPU's NVML handle. It stays valid while its library is open, and the
/// [`Held`] that keeps it also keeps that library.
struct Device(nvmlDevice_t);

// SAFETY: a device handle is an opaque id that NVML accepts from any thread.
unsafe impl Send for Device {}

struct InstanceSample {
    key: InstanceKey,
    sample: GpmSample,
    sampled_this_poll: bool,
}

/// What is kept of one GPU (by UUID) for one library session.
struct GpuState {
    uuid: String,
    device: Device,
    /// `nvmlGpmQueryDeviceSupport`'s answer: the hardware does not change
    /// while the library stays open.
    supported: bool,
    /// The GPU's latest sample, with the MIG mode it was taken in.
    sample: Option<(bool, GpmSample)>,
    instances: Vec<InstanceSample>,
    in_geometry: bool,
}

/// Activity read on one poll, by position in the GPUs read (and of the GPU
/// instance in its GPU), so [`apply`] finds its place without a lookup.
#[derive(Debug, Default)]
struct Readings {
    gpus: Vec<(usize, Activity)>,
    gpu_instances: Vec<(usize, usize, Activity)>,
}

/// GPUs and samples held between polls, all from one library instance.
struct Held {
    gpus: Vec<GpuState>,
    nvml: Arc<Nvml>,
}

impl Held {
    /// The state of `gpu`, asking NVML for its handle and GPM support the
    /// first time this session sees it.
    fn gpu(&mut self, gpu: &GpuSnapshot) -> anyhow::Result<&mut GpuState> {
        if let Some(i) = self.gpus.iter().position(|s| s.uuid == gpu.uuid) {
            return Ok(&mut self.gpus[i]);
        }
        let at = || format!("GPU {} ({})", gpu.index, gpu.uuid);
        let device = self
            .nvml
            .device_by_uuid(gpu.uuid.as_str())
            .with_context(|| format!("{}: nvmlDeviceGetHandleByUUID", at()))?;
        // SAFETY: the handle is used only while `self.nvml` keeps the library open.
        let handle = unsafe { device.handle() };
        let supported = match raw::gpm_supported(&self.nvml, handle) {
            Ok(supported) => supported,
            Err(NvmlError::NotSupported | NvmlError::FunctionNotFound | NvmlError::FailedToLoadSymbol(_)) => {
                false
            }
            Err(e) => return Err(e).with_context(|| format!("{}: nvmlGpmQueryDeviceSupport", at())),
        };
        self.gpus.push(GpuState {
            uuid: gpu.uuid.clone(),
            device: Device(handle),
            supported,
            sample: None,
            instances: Vec::new(),
            in_geometry: false,
        });
        Ok(self.gpus.last_mut().expect("just pushed"))
    }
}

pub struct GpmSource {
    nvml: SharedNvml,
    held: Option<Held>,
    /// GPUs already logged as without GPM beside GPUs with it.
    told_unsupported: BTreeSet<String>,
}

impl GpmSource {
    /// Reads through the library `nvml` names (the NVML source's).
    pub fn new(nvml: SharedNvml) -> Self {
        GpmSource {
            nvml,
            held: None,
            told_unsupported: BTreeSet::new(),
        }
    }

    /// How many samples are held between polls (one per instance measured).
    pub fn held_samples(&self) -> usize {
        self.held.as_ref().map_or(0, |h| {
            h.gpus
                .iter()
                .map(|g| usize::from(g.sample.is_some()) + g.instances.len())
                .sum()
        })
    }

    fn read(&mut self, gpus: &[GpuSnapshot]) -> anyhow::Result<Readings> {
        let nvml = self
            .nvml
            .get()
            .ok_or_else(|| anyhow!("NVML is not open (the nvml source is down)"))?;
        // NVML was reopened: the old samples go, freed through the old library.
        if self.held.as_ref().is_some_and(|h| !Arc::ptr_eq(&h.nvml, &nvml)) {
            self.held = None;
        }
        let held = self.held.get_or_insert_with(|| Held {
            gpus: Vec::new(),
            nvml: nvml.clone(),
        });
        for state in &mut held.gpus {
            state.in_geometry = false;
        }
        let mut out = Readings {
            gpus: Vec::with_capacity(gpus.len()),
            gpu_instances: Vec::with_capacity(gpus.iter().map(|g| g.gpu_instances.len()).sum()),
        };
        // The buffer a new sample is read into: the one it replaces becomes
        // the next spare, so a poll allocates at most one buffer (and frees
        // it at the end) besides those of instances seen for the first time.
        let mut spare: Option<GpmSample> = None;
        let mut unsupported = Vec::new();
        for (gpu_at, gpu) in gpus.iter().enumerate() {
            let at = || format!("GPU {} ({})", gpu.index, gpu.uuid);
            let state = held.gpu(gpu)?;
            state.in_geometry = true;
            if !state.supported {
                unsupported.push(gpu);
                continue;
            }
            let device = state.device.0;

            let mut sample = spare_or_new(&mut spare, &nvml)?;
            sample
                .read_gpu(device)
                .with_context(|| format!("{}: nvmlGpmSampleGet", at()))?;
            match &mut state.sample {
                Some((mig, latest)) if *mig == gpu.mig_current => {
                    if let Some(activity) = advance(latest, sample, &mut spare) {
                        out.gpus.push((gpu_at, activity));
                    }
                }
                first => spare = first.replace((gpu.mig_current, sample)).map(|(_, old)| old),
            }

            for instance in &mut state.instances {
                instance.sampled_this_poll = false;
            }
            let gpu_instances = if gpu.mig_current {
                &gpu.gpu_instances[..]
            } else {
                &[]
            };
            for (gi_at, gi) in gpu_instances.iter().enumerate() {
                let mut sample = spare_or_new(&mut spare, &nvml)?;
                match sample.read_gpu_instance(device, gi.id) {
                    Ok(()) => {}
                    // Destroyed since the geometry was read: nothing, and it starts over.
                    Err(NvmlError::NotFound | NvmlError::InvalidArg) => {
                        spare = Some(sample);
                        continue;
                    }
                    Err(e) => {
                        return Err(e).with_context(|| {
                            format!("{}: GPU instance {}: nvmlGpmMigSampleGet", at(), gi.id)
                        })
                    }
                }
                // The sample must be of the instance the geometry shows, not of
                // one created in its place since.
                match raw::gpu_instance_by_id(&nvml, device, gi.id) {
                    Ok(now)
                        if now.profile_id == gi.profile_id
                            && now.placement == (gi.placement_start, gi.placement_size) => {}
                    Ok(_) | Err(NvmlError::NotFound | NvmlError::InvalidArg | NvmlError::NotSupported) => {
                        spare = Some(sample);
                        continue;
                    }
                    Err(e) => {
                        return Err(e).with_context(|| {
                            format!("{}: GPU instance {}: nvmlDeviceGetGpuInstanceById", at(), gi.id)
                        })
                    }
                }
                let key = InstanceKey::of(gi);
                match state.instances.iter_mut().find(|i| i.key == key) {
                    Some(instance) => {
                        instance.sampled_this_poll = true;
                        if let Some(activity) = advance(&mut instance.sample, sample, &mut spare) {
                            out.gpu_instances.push((gpu_at, gi_at, activity));
                        }
                    }
                    None => state.instances.push(InstanceSample {
                        key,
                        sample,
                        sampled_this_poll: true,
                    }),
                }
            }
            // Instances gone from the geometry (or not sampled this time) start over.
            state.instances.retain(|i| i.sampled_this_poll);
        }
        held.gpus.retain(|g| g.in_geometry);

        if !gpus.is_empty() && unsupported.len() == gpus.len() {
            let which: Vec<String> = unsupported
                .iter()
                .map(|g| format!("GPU {} ({})", g.index, g.name))
                .collect();
            bail!(
                "NVML GPM is not supported on {}: it needs a Hopper or newer GPU with GPM available; \
                 --no-gpm turns this source off",
                which.join(", ")
            );
        }
        for gpu in unsupported {
            if !self.told_unsupported.contains(&gpu.uuid) {
                self.told_unsupported.insert(gpu.uuid.clone());
                tracing::info!(
                    source = "gpm",
                    gpu = gpu.index,
                    gpu_uuid = %gpu.uuid,
                    name = %gpu.name,
                    "NVML GPM is not supported on this GPU: no GPM activity for it"
                );
            }
        }
        Ok(out)
    }
}

fn spare_or_new(spare: &mut Option<GpmSample>, nvml: &Arc<Nvml>) -> anyhow::Result<GpmSample> {
    match spare.take() {
        Some(sample) => Ok(sample),
        None => GpmSample::alloc(nvml).context("nvmlGpmSampleAlloc"),
    }
}

/// Makes `new` the `latest` sample and returns the activity between the one
/// it replaces (which becomes the `spare` buffer) and it.
fn advance(latest: &mut GpmSample, new: GpmSample, spare: &mut Option<GpmSample>) -> Option<Activity> {
    let activity = activity_between(latest, &new);
    *spare = Some(std::mem::replace(latest, new));
    activity
}

fn activity_between(first: &GpmSample, second: &GpmSample) -> Option<Activity> {
    let values = match raw::gpm_metrics(first, second, &METRICS.map(|(id, _)| id)) {
        Ok(values) => values,
        Err(e) => {
            tracing::debug!(source = "gpm", error = %e, "nvmlGpmMetricsGet failed");
            return None;
        }
    };
    let mut activity = Activity::default();
    for ((_, field), value) in METRICS.iter().zip(values) {
        // A metric the GPU does not have (NotSupported) stays None.
        *field(&mut activity) = value.ok().and_then(ratio);
    }
    Some(activity)
}

/// Puts GPM's readings on the GPUs and GPU instances they were read from,
/// filling only the ratios the sources before it (DCGM) left `None`.
fn apply(readings: &Readings, gpus: &mut [GpuSnapshot]) {
    for (gpu, activity) in &readings.gpus {
        gpus[*gpu].health.activity.fill_from(activity);
    }
    for (gpu, gi, activity) in &readings.gpu_instances {
        gpus[*gpu].gpu_instances[*gi].activity.fill_from(activity);
    }
}

impl UtilizationSource for GpmSource {
    fn name(&self) -> &'static str {
        "gpm"
    }

    fn fill(&mut self, gpus: &mut [GpuSnapshot]) -> anyhow::Result<()> {
        match self.read(gpus) {
            Ok(readings) => {
                apply(&readings, gpus);
                Ok(())
            }
            Err(e) => {
                // Start over: the samples go now, and a later read has no pair.
                self.held = None;
                Err(e.context("GPM"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_become_ratios_and_garbage_is_dropped() {
        assert_eq!(ratio(50.0), Some(0.5));
        assert_eq!(ratio(0.0), Some(0.0));
        assert_eq!(ratio(100.2), Some(1.0), "rounding past the end");
        assert_eq!(ratio(-0.1), Some(0.0));
        assert_eq!(ratio(1.8e17), None, "wrapped counters");
        assert_eq!(ratio(-3.0), None);
        assert_eq!(ratio(f64::NAN), None);
        assert_eq!(ratio(f64::INFINITY), None);
    }

    #[test]
    fn each_metric_fills_its_own_field() {
        let mut seen = BTreeSet::new();
        for (i, (id, field)) in METRICS.iter().enumerate() {
            let mut a = Activity::default();
            *field(&mut a) = Some(i as f64);
            // Exactly one kind is set, and it is a different one for each metric.
            let set: Vec<&str> = Activity::KINDS
                .iter()
                .filter(|(_, _, read)| read(&a).is_some())
                .map(|(stem, _, _)| *stem)
                .collect();
            assert_eq!(set.len(), 1, "metric {id}");
            assert!(seen.insert(set[0]), "metric {id} fills {} again", set[0]);
            let expected = match *id {
                GRAPHICS_UTIL => "gr_engine_active",
                SM_UTIL => "sm_active",
                SM_OCCUPANCY => "sm_occupancy",
                ANY_TENSOR_UTIL => "tensor_active",
                DRAM_BW_UTIL => "dram_active",
                FP64_UTIL => "fp64_active",
                FP32_UTIL => "fp32_active",
                FP16_UTIL => "fp16_active",
                other => panic!("unexpected metric {other}"),
            };
            assert_eq!(set[0], expected);
        }
        assert_eq!(seen.len(), Activity::KINDS.len(), "every kind has its metric");
    }

    #[test]
    fn apply_fills_only_what_is_none() {
        let reading = crate::source::sim::reading_from_world(
            &crate::source::scenarios::build("h100-mixed").expect("scenario"),
        );
        let mut gpus = reading.gpus;
        let gpu = &mut gpus[0];
        gpu.health.activity = Activity::default();
        gpu.health.activity.sm_active_ratio = Some(0.9);
        gpu.gpu_instances[0].activity = Activity::default();
        let mut readings = Readings::default();
        let gpm = Activity {
            sm_active_ratio: Some(0.1),
            tensor_active_ratio: Some(0.2),
            ..Activity::default()
        };
        readings.gpus.push((0, gpm));
        readings.gpu_instances.push((0, 0, gpm));
        apply(&readings, &mut gpus);
        let gpu = &gpus[0];
        assert_eq!(
            gpu.health.activity.sm_active_ratio,
            Some(0.9),
            "the earlier source's value stays"
        );
        assert_eq!(gpu.health.activity.tensor_active_ratio, Some(0.2));
        assert_eq!(gpu.gpu_instances[0].activity.sm_active_ratio, Some(0.1));
        assert_eq!(
            gpus[1].health.activity.tensor_active_ratio, None,
            "another GPU's reading"
        );
    }

    #[test]
    fn instance_keys_change_with_shape_and_mig_devices() {
        let reading = crate::source::sim::reading_from_world(
            &crate::source::scenarios::build("h100-mixed").expect("scenario"),
        );
        let gpu = &reading.gpus[0];
        let gi = &gpu.gpu_instances[0];
        assert!(
            !gi.compute_instances.is_empty(),
            "the scenario's GI has a MIG device"
        );
        let key = InstanceKey::of(gi);
        assert_eq!(key, InstanceKey::of(&gi.clone()));
        let mut moved = gi.clone();
        moved.placement_start += 1;
        assert_ne!(InstanceKey::of(&moved), key);
        let mut other_profile = gi.clone();
        other_profile.profile_id += 1;
        assert_ne!(InstanceKey::of(&other_profile), key);
        let mut recreated = gi.clone();
        recreated.compute_instances[0].mig_uuid.push('x');
        assert_ne!(InstanceKey::of(&recreated), key, "same shape, new MIG device");
        let mut one_more = gi.clone();
        one_more.compute_instances.push(gi.compute_instances[0].clone());
        one_more.compute_instances[1].mig_uuid.push('y');
        let mut reordered = one_more.clone();
        reordered.compute_instances.reverse();
        assert_ne!(InstanceKey::of(&one_more), key, "one more MIG device");
        assert_eq!(
            InstanceKey::of(&reordered),
            InstanceKey::of(&one_more),
            "listing order is no identity"
        );
    }

    #[test]
    fn without_an_open_nvml_the_source_fails_and_holds_nothing() {
        let mut source = GpmSource::new(SharedNvml::default());
        let e = source.fill(&mut []).unwrap_err();
        assert!(format!("{e:#}").contains("NVML is not open"), "{e:#}");
        assert_eq!(source.held_samples(), 0);
    }

    #[test]
    fn the_source_can_move_to_the_pollers_thread() {
        fn send<T: Send + 'static>() {}
        send::<GpmSource>();
    }
}
