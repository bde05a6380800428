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
}

#[derive(Debug, Clone, Serialize)]
pub struct GpuSnapshot {
    pub index: u32,
    pub uuid: String,
    pub name: String,
    pub pci_bus_id: String,
    pub memory_total_bytes: u64,
    pub mig_current: bool,
    pub mig_pending: bool,
    pub compute_slices_capacity: u32,
    pub compute_slices_used: u32,
    pub memory_slices_capacity: u32,
    pub memory_slices_used: u32,
    /// Every GPU-instance profile with how many more could be created now.
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
    /// XID errors seen since the exporter started, per XID code.
    pub xid_errors: Vec<(u64, u64)>,
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
    pub dram_active_ratio: Option<f64>,
    pub compute_instances: Vec<ComputeInstanceSnapshot>,
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
    pub sm_active_ratio: Option<f64>,
    pub sm_occupancy_ratio: Option<f64>,
    pub tensor_active_ratio: Option<f64>,
}

/// How one source fared, cumulative over the exporter's life.
#[derive(Debug, Clone, Serialize)]
pub struct SourceHealth {
    pub name: &'static str,
    pub up: bool,
    /// Why the last poll failed, when it did.
    pub last_error: Option<String>,
    pub last_success_seconds: Option<f64>,
    pub errors_total: u64,
    pub poll_duration: DurationHistogram,
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

impl GpuSnapshot {
    pub fn gpu_instance(&self, id: u32) -> Option<&GpuInstanceSnapshot> {
        self.gpu_instances.iter().find(|g| g.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
