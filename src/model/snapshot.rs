//! [`NodeSnapshot`]: everything one poll learned, published atomically.
//!
//! Sources fill the parts they can read. A value a source could not read is
//! `None` and is not exported: a missing value is never shown as zero.

use serde::Serialize;

#[derive(Debug, Clone, Default, Serialize)]
pub struct NodeSnapshot {
    /// Unix time when the poll that built this snapshot finished.
    pub taken_at_seconds: f64,
    pub hostname: String,
    pub boot_id: Option<String>,
    pub driver_version: Option<String>,
    pub nvml_version: Option<String>,
    pub gpus: Vec<GpuSnapshot>,
    pub sources: Vec<SourceHealth>,
    /// What drift detection found on this poll; empty while the geometry
    /// source is down (nothing is judged on a failed read).
    pub drift: DriftSnapshot,
    /// Which container holds each GPU and MIG device (the kubelet source);
    /// empty without it or while it is down.
    pub pods: Vec<PodDevice>,
    /// Why the node cannot be read at all until someone fixes its setup, with
    /// the fix (e.g. a container runtime that did not inject the MIG monitor
    /// device): readiness fails and the landing page says it.
    pub blocked: Option<String>,
    /// The node is the simulator's (a built-in scenario or a World file),
    /// not hardware: `mig_exporter_simulated` is 1 and the landing page says so.
    pub simulated: bool,
}

/// One GPU or MIG device allocated to one container, from the kubelet.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct PodDevice {
    /// The MIG device's UUID, or the GPU's for a whole GPU.
    pub mig_uuid: String,
    pub gpu: u32,
    /// `None` for a whole GPU.
    pub gi: Option<u32>,
    pub ci: Option<u32>,
    pub namespace: String,
    pub pod: String,
    pub container: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct GpuSnapshot {
    pub index: u32,
    pub uuid: String,
    pub name: String,
    pub pci_bus_id: String,
    /// `nvmlDeviceGetMinorNumber`: N of `/dev/nvidiaN`. NVIDIA's DRA driver
    /// names its devices by it (`gpu-N`, `gpu-N-mig-…`), not by the index.
    /// `None` where NVML would not say.
    pub minor_number: Option<u32>,
    /// `pciDeviceId` (`0x233010DE`): what mig-parted's `device-filter` selects by.
    pub pci_device_id: u32,
    /// `None` where NVML would not say (the aggregate memory of a GPU in MIG
    /// mode needs privileges the exporter may lack).
    pub memory_total_bytes: Option<u64>,
    pub mig_current: bool,
    pub mig_pending: bool,
    pub compute_slices_capacity: u32,
    pub compute_slices_used: u32,
    pub memory_slices_capacity: u32,
    pub memory_slices_used: u32,
    /// Every GPU-instance profile the driver offers, with how many more could
    /// be created now: the rules the desired config is judged by.
    pub profiles: Vec<ProfileCapacity>,
    pub gpu_instances: Vec<GpuInstanceSnapshot>,
    pub health: DeviceHealth,
}

/// Whole-GPU readings besides geometry. Each is `None` when the source could
/// not read it (not supported, or not read on this poll's cadence).
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeviceHealth {
    pub persistence_mode: Option<bool>,
    pub ecc_mode_current: Option<bool>,
    pub ecc_mode_pending: Option<bool>,
    pub ecc_errors: Option<EccErrorCounts>,
    pub remapped_rows: Option<RemappedRowCounts>,
    pub power_watts: Option<f64>,
    pub power_limit_watts: Option<f64>,
    pub temperature_celsius: Option<f64>,
    pub sm_clock_hz: Option<f64>,
    /// Whole-GPU utilization; NVML does not report it while MIG is enabled.
    pub utilization_ratio: Option<f64>,
    /// Framebuffer in use on the whole GPU.
    pub memory_used_bytes: Option<u64>,
    /// Read on the slow cadence (≈4 ms per call on a real H100).
    pub energy_joules: Option<f64>,
    /// Read on the slow cadence and only when enabled (≈21 ms per call).
    pub pcie_tx_bytes_per_second: Option<f64>,
    pub pcie_rx_bytes_per_second: Option<f64>,
    /// XID errors seen since the exporter started, per XID code, sorted by
    /// code; codes never seen are absent (see [`DeviceHealth::xid_counts`]).
    pub xid_errors: Vec<(u64, u64)>,
    /// Whether the source counts this GPU's XID events at all (NVML: an event
    /// set registered for the GPU; the simulator: always). Only then does a
    /// code of [`ALERTED_XIDS`] not seen yet count as 0.
    pub xid_counted: bool,
    /// The code of the last XID error seen since the exporter started; `None`
    /// before the first (and where XID events cannot be read). What
    /// dcgm-exporter's `DCGM_FI_DEV_XID_ERRORS` shows, which the counts above
    /// cannot tell once two codes have been seen.
    pub last_xid: Option<u64>,
    /// Framebuffer free on the whole GPU (DCGM).
    pub memory_free_bytes: Option<u64>,
    /// Whole-GPU profiling activity (DCGM).
    #[serde(flatten)]
    pub activity: Activity,
}

/// XID codes the shipped alerts watch (`alerts/mig-exporter.rules.yml`).
/// Where a GPU's XIDs are counted, each has a series from the start, at 0
/// until the first one, so that `increase()` sees the first event. Sorted.
pub const ALERTED_XIDS: &[u64] = &[48, 63, 64, 74, 79, 92, 94, 95, 119, 120];

impl DeviceHealth {
    /// The XID counts to expose, by code: every code seen, and where XIDs are
    /// counted at all, every code of [`ALERTED_XIDS`] not seen yet at 0.
    /// Sorted by code (as `xid_errors` is); allocates nothing.
    pub fn xid_counts(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let zeros: &[u64] = if self.xid_counted { ALERTED_XIDS } else { &[] };
        let mut seen = self.xid_errors.iter().copied().peekable();
        let mut zeros = zeros.iter().copied().peekable();
        std::iter::from_fn(move || match (seen.peek().copied(), zeros.peek().copied()) {
            (Some((code, n)), Some(z)) if code <= z => {
                seen.next();
                if code == z {
                    zeros.next();
                }
                Some((code, n))
            }
            (_, Some(z)) => {
                zeros.next();
                Some((z, 0))
            }
            (Some(pair), None) => {
                seen.next();
                Some(pair)
            }
            (None, None) => None,
        })
    }
}

/// How busy a GPU, GPU instance or compute instance was: DCGM's profiling
/// fields (`DCGM_FI_PROF_*`) or their NVML GPM counterparts, ratios 0–1,
/// each `None` when not read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Activity {
    pub gr_engine_active_ratio: Option<f64>,
    pub sm_active_ratio: Option<f64>,
    pub sm_occupancy_ratio: Option<f64>,
    pub tensor_active_ratio: Option<f64>,
    /// A GPU or GPU-instance reading: memory belongs to the GPU instance.
    pub dram_active_ratio: Option<f64>,
    pub fp64_active_ratio: Option<f64>,
    pub fp32_active_ratio: Option<f64>,
    pub fp16_active_ratio: Option<f64>,
}

/// One kind of [`Activity`]: its metric stem (`sm_active` becomes
/// `nvidia_gpu_sm_active_ratio`, ...), its help text, and how to read it.
pub type ActivityKind = (&'static str, &'static str, fn(&Activity) -> Option<f64>);

impl Activity {
    /// Takes `other`'s value for each kind this one has none of; values
    /// already here stay. Utilization sources run one after the other, each
    /// filling only what the ones before it left `None`.
    pub fn fill_from(&mut self, other: &Activity) {
        let Activity {
            gr_engine_active_ratio,
            sm_active_ratio,
            sm_occupancy_ratio,
            tensor_active_ratio,
            dram_active_ratio,
            fp64_active_ratio,
            fp32_active_ratio,
            fp16_active_ratio,
        } = *other;
        self.gr_engine_active_ratio = self.gr_engine_active_ratio.or(gr_engine_active_ratio);
        self.sm_active_ratio = self.sm_active_ratio.or(sm_active_ratio);
        self.sm_occupancy_ratio = self.sm_occupancy_ratio.or(sm_occupancy_ratio);
        self.tensor_active_ratio = self.tensor_active_ratio.or(tensor_active_ratio);
        self.dram_active_ratio = self.dram_active_ratio.or(dram_active_ratio);
        self.fp64_active_ratio = self.fp64_active_ratio.or(fp64_active_ratio);
        self.fp32_active_ratio = self.fp32_active_ratio.or(fp32_active_ratio);
        self.fp16_active_ratio = self.fp16_active_ratio.or(fp16_active_ratio);
    }

    /// Serializes all but `dram_active_ratio` (for compute instances).
    fn serialize_without_dram<S: serde::Serializer>(a: &Activity, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(None)?;
        for (stem, _, read) in Activity::KINDS {
            if stem != "dram_active" {
                map.serialize_entry(&format_args!("{stem}_ratio"), &read(a))?;
            }
        }
        map.end()
    }

    /// What a GPU's ratios are over, added to each kind's help.
    pub const GPU_SCOPE: &'static str = "Over the whole GPU.";

    /// What a GPU instance's ratios are over, added to each kind's help. DCGM
    /// normalises a GPU instance's activity over all of its slices: NVIDIA/DCGM
    /// issue 138 shows a 2g instance whose work keeps one GPC busy reading
    /// 0.5, and NVIDIA's answer there is that compute instances filling the
    /// instance reach 1.
    pub const GPU_INSTANCE_SCOPE: &'static str =
        "Over all of the GPU instance's slices, as DCGM normalises it: \
         below 1 while its compute instances, or their work, leave some of its slices idle.";

    /// What a compute instance's ratios are over, added to each kind's help.
    pub const COMPUTE_INSTANCE_SCOPE: &'static str = "Over the compute instance's own slices.";

    /// A kind's help text at a level: DCGM's definition, then what the
    /// level's ratio is over (one of the `*_SCOPE` constants).
    pub fn help(kind_help: &str, scope: &str) -> String {
        format!("{kind_help} {scope}")
    }

    /// Every kind, in exposition order; help texts follow DCGM's definitions.
    pub const KINDS: [ActivityKind; 8] = [
        (
            "gr_engine_active",
            "Fraction of time the graphics or compute engine was active (DCGM graphics engine active).",
            |a| a.gr_engine_active_ratio,
        ),
        (
            "sm_active",
            "Fraction of cycles an SM had at least one warp resident, averaged over the SMs (DCGM SM active).",
            |a| a.sm_active_ratio,
        ),
        (
            "sm_occupancy",
            "Resident warps over the maximum the SMs hold, averaged over the SMs and time (DCGM SM occupancy).",
            |a| a.sm_occupancy_ratio,
        ),
        (
            "tensor_active",
            "Fraction of cycles the tensor pipes were busy (DCGM tensor pipe active).",
            |a| a.tensor_active_ratio,
        ),
        (
            "dram_active",
            "Fraction of cycles the memory interface was busy sending or receiving data (DCGM DRAM active).",
            |a| a.dram_active_ratio,
        ),
        (
            "fp64_active",
            "Fraction of cycles the FP64 pipes were busy (DCGM FP64 pipe active).",
            |a| a.fp64_active_ratio,
        ),
        (
            "fp32_active",
            "Fraction of cycles the FP32 pipes were busy (DCGM FP32 pipe active).",
            |a| a.fp32_active_ratio,
        ),
        (
            "fp16_active",
            "Fraction of cycles the FP16 pipes were busy (DCGM FP16 pipe active).",
            |a| a.fp16_active_ratio,
        ),
    ];
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct EccErrorCounts {
    pub volatile_corrected: u64,
    pub volatile_uncorrected: u64,
    pub aggregate_corrected: u64,
    pub aggregate_uncorrected: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RemappedRowCounts {
    pub correctable: u32,
    pub uncorrectable: u32,
    pub pending: bool,
    pub failure: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProfileCapacity {
    pub id: u32,
    pub name: String,
    pub compute_slices: u32,
    pub memory_slices: u32,
    pub memory_bytes: u64,
    pub sm_count: u32,
    pub max_instances: u32,
    pub remaining_instances: u32,
    /// Memory slots where an instance may start, free or not
    /// (`nvmlDeviceGetGpuInstancePossiblePlacements_v2`); each spans `memory_slices`.
    pub placement_starts: Vec<u32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GpuInstanceSnapshot {
    pub id: u32,
    pub profile_id: u32,
    pub profile: String,
    pub placement_start: u32,
    pub placement_size: u32,
    pub compute_slices: u32,
    pub memory_total_bytes: u64,
    pub memory_used_bytes: Option<u64>,
    pub compute_instances: Vec<ComputeInstanceSnapshot>,
    /// Framebuffer free in this GPU instance (DCGM).
    pub memory_free_bytes: Option<u64>,
    /// The GPU instance's activity over all its SMs and its memory.
    #[serde(flatten)]
    pub activity: Activity,
}

#[derive(Debug, Clone, Serialize)]
pub struct ComputeInstanceSnapshot {
    pub id: u32,
    pub profile_id: u32,
    /// `1c.3g.40gb`, or the GI's profile name when the CI spans the whole GI.
    pub profile: String,
    pub placement_start: u32,
    pub placement_size: u32,
    pub mig_uuid: String,
    /// The compute instance's activity over its SMs. DRAM activity is the
    /// GPU instance's: it stays `None` here and is not serialized.
    #[serde(flatten, serialize_with = "Activity::serialize_without_dram")]
    pub activity: Activity,
}

/// Whether a source is one that should work on this node. Only an enabled
/// source can be down: one the hardware cannot have, or one the node does
/// not run, is no failure and is exposed as such (`mig_exporter_source_info`),
/// without `mig_exporter_source_up`, so no alert fires for it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceState {
    /// It should work; `up` says whether its last poll did.
    #[default]
    Enabled,
    /// The hardware cannot have it: NVML GPM where no GPU has GPM (Ampere).
    Unsupported,
    /// Not set up on this node: no DCGM (see `source::dcgm` for exactly which
    /// failures mean that, and which mean DCGM is down).
    Disabled,
}

impl SourceState {
    /// The `state` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceState::Enabled => "enabled",
            SourceState::Unsupported => "unsupported",
            SourceState::Disabled => "disabled",
        }
    }
}

impl std::fmt::Display for SourceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How one source fared, cumulative over the exporter's life.
#[derive(Debug, Clone, Serialize)]
pub struct SourceHealth {
    pub name: &'static str,
    /// Whether it should work at all; `up` means something only when enabled.
    pub state: SourceState,
    pub up: bool,
    /// Why the last poll failed, when it did, or why the source is
    /// unsupported or disabled.
    pub last_error: Option<String>,
    pub last_success_seconds: Option<f64>,
    /// Failed polls while enabled: a source that does not apply fails no poll.
    pub errors_total: u64,
    pub poll_duration: DurationHistogram,
}

impl SourceHealth {
    /// A source not polled yet.
    pub fn new(name: &'static str) -> Self {
        SourceHealth {
            name,
            state: SourceState::Enabled,
            up: false,
            last_error: None,
            last_success_seconds: None,
            errors_total: 0,
            poll_duration: DurationHistogram::default(),
        }
    }

    /// Books one poll of the source: how long it took, and whether it
    /// succeeded (`error` is `None`) or why not. A failure counts in
    /// `errors_total` only while the source is enabled; set `state` first.
    pub fn record(&mut self, elapsed_seconds: f64, now: f64, error: Option<String>) {
        self.poll_duration.observe(elapsed_seconds);
        self.up = error.is_none();
        match error {
            None => self.last_success_seconds = Some(now),
            Some(_) if self.state == SourceState::Enabled => self.errors_total += 1,
            Some(_) => {}
        }
        self.last_error = error;
    }
}

/// Poll-duration histogram with fixed buckets, owned by the poller and copied
/// into each snapshot, so a scrape only reads.
#[derive(Debug, Clone, Serialize)]
pub struct DurationHistogram {
    pub bounds: &'static [f64],
    /// Non-cumulative count per bound, plus one for +Inf at the end.
    pub counts: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

/// Seconds: geometry polls take well under a millisecond on the simulator and
/// a few on real hardware (MIG mode alone is ~160 µs per GPU).
pub const POLL_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

impl Default for DurationHistogram {
    fn default() -> Self {
        DurationHistogram {
            bounds: POLL_BUCKETS,
            counts: vec![0; POLL_BUCKETS.len() + 1],
            sum: 0.0,
            count: 0,
        }
    }
}

impl DurationHistogram {
    pub fn observe(&mut self, seconds: f64) {
        let i = self
            .bounds
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[i] += 1;
        self.sum += seconds;
        self.count += 1;
    }

    /// `(upper bound, count in that bucket)` pairs ending with `+Inf`; the
    /// encoder accumulates them.
    pub fn buckets(&self) -> Vec<(f64, u64)> {
        self.bounds
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(self.counts.iter().copied())
            .collect()
    }
}

/// Why a GPU's MIG geometry is not what it should be: the `reason` label of
/// `nvidia_mig_drift`. The order is the order findings are listed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftReason {
    /// MIG mode expected enabled, found disabled (a Hopper reboot).
    MigModeLost,
    /// GPU instances expected, none found (any reboot; a destroyed layout).
    GeometryLost,
    /// Some GPU instances exist, but the per-profile counts differ from the desired config.
    ProfileMismatch,
    /// A GPU instance without a compute instance: CUDA cannot use it.
    GiWithoutCi,
    /// MIG mode after the next reset differs from the mode in force.
    MigModePending,
    /// The desired config wants MIG disabled, and it is enabled.
    UnexpectedMig,
    /// After a reboot the geometry differs from the last known good one of the previous boot.
    ChangedSinceReboot,
    /// The devices the kubelet advertises do not match the GPU's MIG devices.
    AdvertisedMismatch,
    /// Devices that exist are not advertised because the device plugin marked
    /// them unhealthy after a critical XID.
    AdvertisedUnhealthy,
}

impl DriftReason {
    pub const ALL: [DriftReason; 9] = [
        DriftReason::MigModeLost,
        DriftReason::GeometryLost,
        DriftReason::ProfileMismatch,
        DriftReason::GiWithoutCi,
        DriftReason::MigModePending,
        DriftReason::UnexpectedMig,
        DriftReason::ChangedSinceReboot,
        DriftReason::AdvertisedMismatch,
        DriftReason::AdvertisedUnhealthy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DriftReason::MigModeLost => "mig_mode_lost",
            DriftReason::GeometryLost => "geometry_lost",
            DriftReason::ProfileMismatch => "profile_mismatch",
            DriftReason::GiWithoutCi => "gi_without_ci",
            DriftReason::MigModePending => "mig_mode_pending",
            DriftReason::UnexpectedMig => "unexpected_mig",
            DriftReason::ChangedSinceReboot => "changed_since_reboot",
            DriftReason::AdvertisedMismatch => "advertised_mismatch",
            DriftReason::AdvertisedUnhealthy => "advertised_unhealthy",
        }
    }
}

impl std::fmt::Display for DriftReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One finding of drift detection on one GPU.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DriftFinding {
    pub gpu: u32,
    pub gpu_uuid: String,
    pub reason: DriftReason,
    /// For people: names the GPU and what was expected versus observed.
    pub message: String,
    /// Unix time of the first poll that found it; kept while it persists.
    pub since_seconds: f64,
}

/// Instances of a profile the desired config wants on a GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExpectedInstances {
    pub gpu: u32,
    pub gpu_uuid: String,
    pub profile: String,
    pub count: u32,
}

/// When a GPU's geometry (MIG mode, GPU and compute instances) last changed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GeometryChange {
    pub gpu: u32,
    pub gpu_uuid: String,
    pub changed_at_seconds: f64,
}

/// Drift detection's part of a snapshot.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DriftSnapshot {
    /// Findings ordered by GPU index, then reason.
    pub findings: Vec<DriftFinding>,
    /// What the desired config wants, per GPU and profile (empty without one).
    pub expected: Vec<ExpectedInstances>,
    pub geometry_changes: Vec<GeometryChange>,
    /// The desired config in force ("config 'NAME' in FILE"), when one is.
    pub desired: Option<String>,
    /// Why the kubelet's advertised devices are not judged, when they are
    /// read but cannot be (see `Advertised::not_judged`).
    pub advertised_not_judged: Option<String>,
}

impl DriftSnapshot {
    pub fn findings_of<'a>(&'a self, gpu_uuid: &'a str) -> impl Iterator<Item = &'a DriftFinding> + 'a {
        self.findings.iter().filter(move |f| f.gpu_uuid == gpu_uuid)
    }

    pub fn expected_of<'a>(&'a self, gpu_uuid: &'a str) -> impl Iterator<Item = &'a ExpectedInstances> + 'a {
        self.expected.iter().filter(move |e| e.gpu_uuid == gpu_uuid)
    }
}

impl GpuSnapshot {
    pub fn gpu_instance(&self, id: u32) -> Option<&GpuInstanceSnapshot> {
        self.gpu_instances.iter().find(|g| g.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xid_counts_add_the_alerted_codes_at_zero_only_where_xids_are_counted() {
        let mut h = DeviceHealth {
            xid_errors: vec![(13, 2), (79, 1), (200, 4)],
            ..DeviceHealth::default()
        };
        let uncounted: Vec<_> = h.xid_counts().collect();
        assert_eq!(uncounted, h.xid_errors, "no made-up zeros without an XID reading");
        h.xid_counted = true;
        let counted: Vec<_> = h.xid_counts().collect();
        let mut want: Vec<(u64, u64)> = ALERTED_XIDS
            .iter()
            .map(|&x| (x, u64::from(x == 79)))
            .chain([(13, 2), (200, 4)])
            .collect();
        want.sort();
        assert_eq!(counted, want, "each code once, seen counts kept, sorted");
        assert!(ALERTED_XIDS.windows(2).all(|w| w[0] < w[1]), "sorted");
        h.xid_errors.clear();
        assert_eq!(h.xid_counts().count(), ALERTED_XIDS.len());
    }

    #[test]
    fn fill_from_fills_only_the_gaps() {
        let mut a = Activity {
            sm_active_ratio: Some(0.5),
            ..Activity::default()
        };
        let b = Activity {
            sm_active_ratio: Some(0.9),
            tensor_active_ratio: Some(0.3),
            fp16_active_ratio: Some(0.1),
            ..Activity::default()
        };
        a.fill_from(&b);
        assert_eq!(a.sm_active_ratio, Some(0.5), "a value already there stays");
        assert_eq!(a.tensor_active_ratio, Some(0.3));
        assert_eq!(a.fp16_active_ratio, Some(0.1));
        assert_eq!(a.dram_active_ratio, None);
        // Every kind is filled: a source with every value fills an empty one whole.
        let full = Activity {
            gr_engine_active_ratio: Some(0.1),
            sm_active_ratio: Some(0.2),
            sm_occupancy_ratio: Some(0.3),
            tensor_active_ratio: Some(0.4),
            dram_active_ratio: Some(0.5),
            fp64_active_ratio: Some(0.6),
            fp32_active_ratio: Some(0.7),
            fp16_active_ratio: Some(0.8),
        };
        let mut empty = Activity::default();
        empty.fill_from(&full);
        assert_eq!(empty, full);
    }

    #[test]
    fn histogram_counts_each_observation_in_its_bucket() {
        let mut h = DurationHistogram::default();
        h.observe(0.0004);
        h.observe(0.003);
        h.observe(7.0);
        let b = h.buckets();
        assert_eq!(b.first(), Some(&(0.0005, 1)));
        assert_eq!(b.iter().find(|(le, _)| *le == 0.005), Some(&(0.005, 1)));
        assert_eq!(b.last(), Some(&(f64::INFINITY, 1)));
        assert_eq!(b.iter().map(|(_, n)| n).sum::<u64>(), 3);
        assert_eq!(h.count, 3);
        assert!((h.sum - 7.0034).abs() < 1e-9);
    }
}
