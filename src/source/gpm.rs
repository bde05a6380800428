//! The GPM source: how hard each GPU and each MIG GPU instance works, from
//! NVML's GPU Performance Monitoring (Hopper and newer), with nothing but the
//! driver installed: no DCGM host engine.
//!
//! GPM gives counters, not rates: a sample copies a GPU's or a GPU instance's
//! counters, and `nvmlGpmMetricsGet` turns two samples into the activity
//! between them. So on every poll one new sample is taken per GPU and per GPU
//! instance, the metrics are computed against the sample kept from the poll
//! before, and the new one is kept in its place:
//!
//! * the first sample of an instance gives nothing (`None`, not zero);
//! * samples are kept per instance identity: a GPU by UUID and MIG mode, a
//!   GPU instance by GPU UUID, id, profile, placement and its compute
//!   instances' ids, profiles, placements and MIG UUIDs (a UUID alone is no
//!   identity: a driver may give a recreated compute instance its old one).
//!   A GPU instance destroyed and recreated (same id, another shape, or other
//!   compute instances) is another instance and starts over, so no rate is
//!   ever computed across a reconfiguration;
//! * samples of one instance are at least [`MIN_SAMPLE_GAP`] (100 ms) apart,
//!   as nvml.h asks ("due to the internal sample refresh rate"): a poll
//!   sooner than that keeps the held sample and publishes the rate its
//!   latest pair measured, whatever `--poll.interval` says;
//! * a GPU instance without compute instances is not sampled: its sample
//!   would aggregate no compute-instance counters, and NVIDIA's DCGM skips
//!   it too (`dcgmlib/src/DcgmGpmManager.cpp`, `MaybeFetchNewSample`);
//! * a sample that fails for one GPU instance leaves that instance without a
//!   rate (it starts over) and is logged; the others are still measured;
//! * a sample is freed as soon as a newer one replaces it, when its instance
//!   disappears from the geometry, and when NVML is opened again: at most one
//!   sample per instance is held between polls.
//!
//! The samples are taken by the NVML source while it reads each GPU
//! ([`GpmSampling`]): a GPU's right after its MIG mode, its GPU instances'
//! between listing them and checking that list again at the end. That check
//! is what makes the geometry consistent, so it also proves each sample is
//! of the instance the geometry shows, and no call is spent on a check of
//! GPM's own. This source then puts the readings on the snapshot.
//!
//! What each GPU supports is asked (`nvmlGpmQueryDeviceSupport`, then each
//! metric's own return code), never assumed: a metric the GPU does not have
//! stays `None`. A node where no GPU has GPM (Ampere, or GPM unavailable)
//! is no failure: the source is `unsupported` (not down, so no alert), with
//! a message that says why, unchanged from poll to poll so that it is logged
//! once; a GPU without GPM beside GPUs with it is logged once and left out.
//!
//! Compute instances have no GPM counters of their own: their activity comes
//! from DCGM only.

use std::collections::hash_map::DefaultHasher;
use std::collections::BTreeSet;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

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
use super::nvml::NvmlSource;
use super::{NotApplicable, UtilizationSource};
use crate::model::{Activity, GpuInstanceSnapshot, GpuSnapshot, SourceState};

/// The least time between two samples of one GPU or GPU instance: nvml.h
/// (NVIDIA/go-nvml `gen/nvml/nvml.h`, `nvmlGpmSampleGet` and
/// `nvmlGpmMigSampleGet`) asks for more than 100 ms.
pub const MIN_SAMPLE_GAP: Duration = Duration::from_millis(100);

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
    /// Its compute instances' ids, profiles, placements and MIG UUIDs, hashed
    /// in any order. The UUID alone would not do: a compute instance created
    /// again in its place may get the old one back (users' published
    /// `nvidia-smi -L` output, RTX PRO 6000 and A100 80GB PCIe on R515).
    mig_devices: u64,
}

impl InstanceKey {
    fn of(gi: &GpuInstanceSnapshot) -> InstanceKey {
        let mig_devices = gi.compute_instances.iter().fold(0u64, |sum, ci| {
            let mut hasher = DefaultHasher::new();
            (
                ci.id,
                ci.profile_id,
                ci.placement_start,
                ci.placement_size,
                &ci.mig_uuid,
            )
                .hash(&mut hasher);
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

struct InstanceSample {
    key: InstanceKey,
    sample: GpmSample,
    /// When `sample` was taken (after the call returned, so the next one is
    /// at least this long after it in the driver too).
    taken: Instant,
    /// What the pair ending in `sample` measured.
    latest: Option<Activity>,
    /// Listed on the poll under way, and sampled or kept for it; `activity`
    /// is what it publishes.
    seen_this_poll: bool,
    activity: Option<Activity>,
    /// Its position in the GPU-instance list the NVML source read last (the
    /// one it returns), so the reading is put on the snapshot without a lookup.
    at: usize,
}

/// What is kept of one GPU (by UUID) for one library session.
struct GpuState {
    uuid: String,
    /// `nvmlGpmQueryDeviceSupport`'s answer: the hardware does not change
    /// while the library stays open.
    supported: bool,
    /// The GPU's latest sample, with the MIG mode it was taken in.
    sample: Option<GpuSample>,
    instances: Vec<InstanceSample>,
    /// Read on the poll under way, and the activity its sample measured.
    read_this_poll: bool,
    activity: Option<Activity>,
}

/// A GPU's held sample.
struct GpuSample {
    mig_current: bool,
    sample: GpmSample,
    taken: Instant,
    /// What the pair ending in `sample` measured.
    latest: Option<Activity>,
}

/// GPUs and samples held between polls, all from one library instance.
struct Held {
    gpus: Vec<GpuState>,
    /// The buffer a new sample is read into: the one it replaces becomes the
    /// next spare, so a poll allocates one buffer (and frees it at the end)
    /// besides those of instances seen for the first time.
    spare: Option<GpmSample>,
    /// The keys of the GPU instances being sampled, kept to reuse the memory.
    keys: Vec<InstanceKey>,
    /// `(GPU UUID, GI id)` of the GPU instances whose sample failed and was
    /// logged; one is logged again only after it sampled once more.
    failing: Vec<(String, u32)>,
    nvml: Arc<Nvml>,
}

/// Which GPU a failure is about, formatted only when there is one.
fn which_gpu(index: u32, uuid: &str) -> String {
    format!("GPU {index} ({uuid})")
}

impl Held {
    fn sample_gpu(
        &mut self,
        index: u32,
        uuid: &str,
        device: nvmlDevice_t,
        mig_current: bool,
    ) -> anyhow::Result<()> {
        let state = match self.gpus.iter().position(|s| s.uuid == uuid) {
            Some(i) => &mut self.gpus[i],
            None => {
                let supported = match raw::gpm_supported(&self.nvml, device) {
                    Ok(supported) => supported,
                    Err(
                        NvmlError::NotSupported
                        | NvmlError::FunctionNotFound
                        | NvmlError::FailedToLoadSymbol(_),
                    ) => false,
                    Err(e) => {
                        return Err(e).with_context(|| {
                            format!("{}: nvmlGpmQueryDeviceSupport", which_gpu(index, uuid))
                        })
                    }
                };
                self.gpus.push(GpuState {
                    uuid: uuid.to_string(),
                    supported,
                    sample: None,
                    instances: Vec::new(),
                    read_this_poll: false,
                    activity: None,
                });
                self.gpus.last_mut().expect("just pushed")
            }
        };
        state.read_this_poll = true;
        if !state.supported {
            return Ok(());
        }
        if let Some(held) = &state.sample {
            if held.mig_current == mig_current && held.taken.elapsed() < MIN_SAMPLE_GAP {
                state.activity = held.latest;
                return Ok(());
            }
        }
        let mut sample = spare_or_new(&mut self.spare, &self.nvml)?;
        sample
            .read_gpu(device)
            .with_context(|| format!("{}: nvmlGpmSampleGet", which_gpu(index, uuid)))?;
        let taken = Instant::now();
        match &mut state.sample {
            Some(held) if held.mig_current == mig_current => {
                held.latest = advance(&mut held.sample, sample, &mut self.spare);
                held.taken = taken;
                state.activity = held.latest;
            }
            first => {
                let fresh = GpuSample {
                    mig_current,
                    sample,
                    taken,
                    latest: None,
                };
                self.spare = first.replace(fresh).map(|old| old.sample);
            }
        }
        Ok(())
    }

    fn sample_instances(
        &mut self,
        index: u32,
        uuid: &str,
        device: nvmlDevice_t,
        gpu_instances: &[GpuInstanceSnapshot],
    ) -> anyhow::Result<()> {
        let Some(state) = self.gpus.iter_mut().find(|s| s.uuid == uuid && s.supported) else {
            return Ok(());
        };
        let keys = &mut self.keys;
        keys.clear();
        keys.extend(gpu_instances.iter().map(InstanceKey::of));
        // The list read again after a change: what it no longer shows goes.
        state.instances.retain(|i| keys.contains(&i.key));
        for (at, (gi, key)) in gpu_instances.iter().zip(keys.iter()).enumerate() {
            if gi.compute_instances.is_empty() {
                continue;
            }
            let known = state.instances.iter().position(|i| i.key == *key);
            if let Some(i) = known {
                let instance = &mut state.instances[i];
                // Already sampled from an earlier reading of this list, or too
                // recently for another sample: what its latest pair measured.
                let recent = instance.taken.elapsed() < MIN_SAMPLE_GAP;
                if instance.seen_this_poll || recent {
                    if !instance.seen_this_poll {
                        instance.seen_this_poll = true;
                        instance.activity = instance.latest;
                    }
                    instance.at = at;
                    continue;
                }
            }
            let mut sample = spare_or_new(&mut self.spare, &self.nvml)?;
            match sample.read_gpu_instance(device, gi.id) {
                Ok(()) => {
                    if let Some(failed) = self.failing.iter().position(|(u, g)| u == uuid && *g == gi.id) {
                        self.failing.swap_remove(failed);
                    }
                }
                // Destroyed since it was listed: the list check sees it too and
                // reads again.
                Err(NvmlError::NotFound | NvmlError::InvalidArg) => {
                    self.spare = Some(sample);
                    continue;
                }
                // This instance has no rate this time (and starts over); the
                // others are still measured.
                Err(e) => {
                    self.spare = Some(sample);
                    if let Some(i) = known {
                        let old = state.instances.swap_remove(i);
                        drop(old.sample);
                    }
                    if !self.failing.iter().any(|(u, g)| u == uuid && *g == gi.id) {
                        self.failing.push((uuid.to_string(), gi.id));
                        tracing::warn!(
                            source = "gpm",
                            gpu = index,
                            gpu_uuid = %uuid,
                            gi = gi.id,
                            error = %e,
                            "nvmlGpmMigSampleGet failed: no GPM activity for this GPU instance until it samples again"
                        );
                    }
                    continue;
                }
            }
            let taken = Instant::now();
            match known {
                Some(i) => {
                    let instance = &mut state.instances[i];
                    instance.latest = advance(&mut instance.sample, sample, &mut self.spare);
                    instance.taken = taken;
                    instance.seen_this_poll = true;
                    instance.activity = instance.latest;
                    instance.at = at;
                }
                None => state.instances.push(InstanceSample {
                    key: *key,
                    sample,
                    taken,
                    latest: None,
                    seen_this_poll: true,
                    activity: None,
                    at,
                }),
            }
        }
        Ok(())
    }

    /// The activity the poll under way measured, by position in `gpus` (the
    /// poll's geometry), and the GPUs without GPM among them. Then what the
    /// geometry no longer shows is freed, and so is the spare buffer.
    fn readings<'g>(&mut self, gpus: &'g [GpuSnapshot]) -> anyhow::Result<(Readings, Vec<&'g GpuSnapshot>)> {
        let mut out = Readings {
            gpus: Vec::with_capacity(gpus.len()),
            gpu_instances: Vec::with_capacity(gpus.iter().map(|g| g.gpu_instances.len()).sum()),
        };
        let mut unsupported = Vec::new();
        for (gpu_at, gpu) in gpus.iter().enumerate() {
            let Some(state) = self.gpus.iter().find(|s| s.uuid == gpu.uuid && s.read_this_poll) else {
                bail!(
                    "{} was not sampled by the NVML source",
                    which_gpu(gpu.index, &gpu.uuid)
                );
            };
            if !state.supported {
                unsupported.push(gpu);
                continue;
            }
            if let Some(activity) = state.activity {
                out.gpus.push((gpu_at, activity));
            }
            if !gpu.mig_current {
                continue;
            }
            for instance in state.instances.iter().filter(|i| i.seen_this_poll) {
                let in_place = gpu
                    .gpu_instances
                    .get(instance.at)
                    .is_some_and(|gi| gi.id == instance.key.id);
                if let (true, Some(activity)) = (in_place, instance.activity) {
                    out.gpu_instances.push((gpu_at, instance.at, activity));
                }
            }
        }
        self.gpus.retain(|g| g.read_this_poll);
        for gpu in &mut self.gpus {
            gpu.instances.retain(|i| i.seen_this_poll);
        }
        self.spare = None;
        Ok((out, unsupported))
    }
}

/// Activity read on one poll, by position in the GPUs read (and of the GPU
/// instance in its GPU), so [`apply`] finds its place without a lookup.
#[derive(Debug, Default)]
struct Readings {
    gpus: Vec<(usize, Activity)>,
    gpu_instances: Vec<(usize, usize, Activity)>,
}

/// The samples, shared by the NVML source, which takes them while it reads
/// each GPU, and the GPM source, which puts what they measured on the
/// snapshot. One poll at a time uses it, on the poller's thread.
#[derive(Default)]
pub struct GpmSampling {
    held: Option<Held>,
    /// The first failure of the poll under way: the GPM source reports it.
    failed: Option<anyhow::Error>,
}

impl GpmSampling {
    /// At the start of each NVML poll. Samples of a library opened before
    /// this one are freed (through it).
    pub(crate) fn begin_poll(&mut self, nvml: &Arc<Nvml>) {
        self.failed = None;
        if self.held.as_ref().is_some_and(|h| !Arc::ptr_eq(&h.nvml, nvml)) {
            self.held = None;
        }
        let held = self.held.get_or_insert_with(|| Held {
            gpus: Vec::new(),
            spare: None,
            keys: Vec::new(),
            failing: Vec::new(),
            nvml: nvml.clone(),
        });
        for gpu in &mut held.gpus {
            gpu.read_this_poll = false;
            gpu.activity = None;
            for instance in &mut gpu.instances {
                instance.seen_this_poll = false;
                instance.activity = None;
            }
        }
    }

    /// When the NVML source closes its library: the samples taken through it
    /// are freed now, before it shuts down.
    pub(crate) fn end_session(&mut self) {
        self.held = None;
    }

    /// The GPU's own sample, once a poll, right after its MIG mode is read.
    pub(crate) fn sample_gpu(&mut self, index: u32, uuid: &str, device: nvmlDevice_t, mig_current: bool) {
        self.record(|held| held.sample_gpu(index, uuid, device, mig_current));
    }

    /// Samples of the GPU instances just read, before the NVML source
    /// checks that their list has not changed. Called again for each
    /// reading of the list; an instance still in it keeps its sample.
    pub(crate) fn sample_instances(
        &mut self,
        index: u32,
        uuid: &str,
        device: nvmlDevice_t,
        gpu_instances: &[GpuInstanceSnapshot],
    ) {
        self.record(|held| held.sample_instances(index, uuid, device, gpu_instances));
    }

    /// Runs `step` unless this poll failed already; keeps its failure for the
    /// GPM source rather than failing the geometry read.
    fn record(&mut self, step: impl FnOnce(&mut Held) -> anyhow::Result<()>) {
        if self.failed.is_some() {
            return;
        }
        if let Some(held) = self.held.as_mut() {
            if let Err(e) = step(held) {
                self.failed = Some(e);
            }
        }
    }
}

/// The [`GpmSampling`] an [`NvmlSource`] fills and a [`GpmSource`] reads.
pub type SharedGpmSampling = Arc<Mutex<GpmSampling>>;

pub struct GpmSource {
    sampling: SharedGpmSampling,
    /// GPUs already logged as without GPM beside GPUs with it.
    told_unsupported: BTreeSet<String>,
}

impl GpmSource {
    /// Has `nvml` take GPM samples on each of its polls, read by this source.
    pub fn new(nvml: &mut NvmlSource) -> Self {
        let sampling = SharedGpmSampling::default();
        nvml.take_gpm_samples(sampling.clone());
        GpmSource {
            sampling,
            told_unsupported: BTreeSet::new(),
        }
    }

    fn read(&mut self, gpus: &[GpuSnapshot]) -> anyhow::Result<Readings> {
        let mut sampling = self.sampling.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(e) = sampling.failed.take() {
            // Start over: the samples go now, and a later read has no pair.
            sampling.held = None;
            return Err(e);
        }
        let held = sampling
            .held
            .as_mut()
            .ok_or_else(|| anyhow!("NVML is not open (the nvml source is down)"))?;
        let (readings, unsupported) = held.readings(gpus)?;
        drop(sampling);

        if !gpus.is_empty() && unsupported.len() == gpus.len() {
            let which: Vec<String> = unsupported
                .iter()
                .map(|g| format!("GPU {} ({})", g.index, g.name))
                .collect();
            // Not a failure: nothing on this node can give GPM activity.
            return Err(NotApplicable::new(
                SourceState::Unsupported,
                format!(
                    "NVML GPM is not supported on {}: it needs a Hopper or newer GPU with GPM available; \
                     --no-gpm turns this source off",
                    which.join(", ")
                ),
            )
            .into());
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
        Ok(readings)
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
        let readings = self.read(gpus).context("GPM")?;
        apply(&readings, gpus);
        Ok(())
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
        // A compute instance created again with its old MIG UUID is still
        // another one when its profile, placement or id differs.
        let mut same_uuid = gi.clone();
        same_uuid.compute_instances[0].profile_id += 1;
        assert_ne!(InstanceKey::of(&same_uuid), key, "same UUID, another CI profile");
        let mut same_uuid = gi.clone();
        same_uuid.compute_instances[0].placement_size += 1;
        assert_ne!(
            InstanceKey::of(&same_uuid),
            key,
            "same UUID, another CI placement"
        );
        let mut same_uuid = gi.clone();
        same_uuid.compute_instances[0].id += 1;
        assert_ne!(InstanceKey::of(&same_uuid), key, "same UUID, another CI id");
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
    fn without_an_open_nvml_the_source_fails() {
        let mut nvml = NvmlSource::new(crate::source::nvml::NvmlOptions {
            library: None,
            slow_interval: std::time::Duration::from_secs(60),
            pcie_throughput: false,
        });
        let mut source = GpmSource::new(&mut nvml);
        let e = source.fill(&mut []).unwrap_err();
        assert!(format!("{e:#}").contains("NVML is not open"), "{e:#}");
    }

    #[test]
    fn the_source_can_move_to_the_pollers_thread() {
        fn send<T: Send + 'static>() {}
        send::<GpmSource>();
    }
}
