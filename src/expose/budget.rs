//! The series budget: collectors, in node_exporter's sense, that a big
//! fleet may leave out of `/metrics` and the OTLP push with
//! `--no-collector.<name>`. Each collector is a group of families of the
//! metric contract (`contract.rs`), told apart by their level and name, so
//! the table itself stays the one place that defines a metric; both
//! encoders ask [`Budget::includes`] before walking a family.
//!
//! A collector only filters what is exposed: the sources are read, and
//! drift is judged, as without it. Drift detection works on the geometry
//! reading itself, never on an exposed family, and no collector holds a
//! drift, geometry or exporter family.

use crate::expose::contract::{self, Level, Metric};
use crate::model::Activity;

/// A group of families that can be left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Collector {
    CiActivity,
    GiActivity,
    GpuActivity,
    GiMemory,
    Health,
    GpuTelemetry,
    Profiles,
}

/// The GPU families of [`Collector::Health`]: the inputs of the shipped
/// XID, ECC and row-remapping alerts, with the modes behind them.
const HEALTH: &[&str] = &[
    "nvidia_gpu_persistence_mode",
    "nvidia_gpu_ecc_mode_current",
    "nvidia_gpu_ecc_mode_pending",
    "nvidia_gpu_ecc_errors_volatile_total",
    "nvidia_gpu_ecc_errors_aggregate_total",
    "nvidia_gpu_remapped_rows_total",
    "nvidia_gpu_row_remapping_pending",
    "nvidia_gpu_row_remapping_failed",
    "nvidia_gpu_xid_errors_total",
];

/// The GPU families of [`Collector::GpuTelemetry`]: power, heat, clock,
/// the whole GPU's framebuffer use, energy and PCIe.
const TELEMETRY: &[&str] = &[
    "nvidia_gpu_power_watts",
    "nvidia_gpu_power_limit_watts",
    "nvidia_gpu_temperature_celsius",
    "nvidia_gpu_sm_clock_hz",
    "nvidia_gpu_memory_used_bytes",
    "nvidia_gpu_memory_free_bytes",
    "nvidia_gpu_energy_joules_total",
    "nvidia_gpu_pcie_tx_bytes_per_second",
    "nvidia_gpu_pcie_rx_bytes_per_second",
];

/// Whole-GPU utilization, read by NVML while MIG is off: with the GPU's activity.
const GPU_UTILIZATION: &str = "nvidia_gpu_utilization_ratio";

/// The per-GPU families derived from the profiles' remaining capacity
/// (`src/model/fragmentation.rs`), left out with them.
const FRAGMENTATION: &[&str] = &[
    "nvidia_mig_memory_slices_unplaceable",
    "nvidia_mig_largest_creatable_profile_memory_slices",
    "nvidia_mig_largest_creatable_profile_compute_slices",
];

/// True when `name` is one of the activity families `contract.rs` builds
/// under `prefix` (`{prefix}_{stem}_ratio` for each [`Activity::KINDS`]).
fn is_activity(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .and_then(|rest| rest.strip_suffix("_ratio"))
        .is_some_and(|stem| Activity::KINDS.iter().any(|(s, _, _)| *s == stem))
}

impl Collector {
    pub const ALL: [Collector; 7] = [
        Collector::CiActivity,
        Collector::GiActivity,
        Collector::GpuActivity,
        Collector::GiMemory,
        Collector::Health,
        Collector::GpuTelemetry,
        Collector::Profiles,
    ];

    /// The name in `--no-collector.<name>`.
    pub fn name(self) -> &'static str {
        match self {
            Collector::CiActivity => "ci-activity",
            Collector::GiActivity => "gi-activity",
            Collector::GpuActivity => "gpu-activity",
            Collector::GiMemory => "gi-memory",
            Collector::Health => "health",
            Collector::GpuTelemetry => "gpu-telemetry",
            Collector::Profiles => "profiles",
        }
    }

    /// The flag that leaves it out.
    pub fn flag(self) -> String {
        format!("--no-collector.{}", self.name())
    }

    /// The collector a metric of the contract belongs to; `None` for the
    /// families that are always exposed (identity, geometry, drift, pods,
    /// the exporter's own).
    pub fn of(m: &Metric) -> Option<Collector> {
        let name: &str = &m.prometheus;
        match m.level {
            Level::ComputeInstance if is_activity(name, "nvidia_mig_compute_instance") => {
                Some(Collector::CiActivity)
            }
            Level::GpuInstance if is_activity(name, "nvidia_mig_gpu_instance") => Some(Collector::GiActivity),
            Level::GpuInstance if name.starts_with("nvidia_mig_gpu_instance_memory_") => {
                Some(Collector::GiMemory)
            }
            Level::Gpu if is_activity(name, "nvidia_gpu") || name == GPU_UTILIZATION => {
                Some(Collector::GpuActivity)
            }
            Level::Gpu if HEALTH.contains(&name) => Some(Collector::Health),
            Level::Gpu if TELEMETRY.contains(&name) => Some(Collector::GpuTelemetry),
            // Not nvidia_mig_expected_instances: that one is drift's.
            Level::Profile if name.starts_with("nvidia_mig_profile_") => Some(Collector::Profiles),
            // What the profiles' remaining capacity leaves creatable.
            Level::Gpu if FRAGMENTATION.contains(&name) => Some(Collector::Profiles),
            _ => None,
        }
    }

    /// The `/metrics` names of its families, in the contract's order.
    pub fn families(self) -> Vec<&'static str> {
        contract::metrics()
            .iter()
            .filter(|m| Collector::of(m) == Some(self))
            .map(|m| m.prometheus.as_ref())
            .collect()
    }

    /// The shipped alerts (`alerts/mig-exporter.rules.yml`) that read one of
    /// its families, and so cannot fire (or fire on half their input)
    /// without it. A test checks this against the rules file.
    pub fn alerts(self) -> &'static [&'static str] {
        match self {
            Collector::CiActivity => &["MigInstanceSaturated", "MigSliceAllocatedIdle"],
            Collector::GiMemory => &["MigInstanceSaturated"],
            Collector::Health => &[
                "MigGpuXidResetRequired",
                "MigGpuXidMemoryError",
                "MigGpuEccUncorrectableError",
                "MigGpuRowRemappingFailed",
                "MigGpuRowRemappingPending",
            ],
            Collector::GiActivity
            | Collector::GpuActivity
            | Collector::GpuTelemetry
            | Collector::Profiles => &[],
        }
    }
}

/// Which collectors are exposed: all of them unless a flag says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Budget {
    /// One bit per [`Collector::ALL`] index: set when left out.
    off: u8,
}

impl Budget {
    /// Every collector: the default output.
    pub const FULL: Budget = Budget { off: 0 };

    fn bit(c: Collector) -> u8 {
        let i = Collector::ALL.iter().position(|x| *x == c).unwrap_or(0);
        1 << i
    }

    /// Every collector left out: the smallest output.
    pub fn trimmed() -> Budget {
        Collector::ALL.iter().fold(Budget::FULL, |b, c| b.without(*c))
    }

    #[must_use]
    pub fn without(self, c: Collector) -> Budget {
        Budget {
            off: self.off | Self::bit(c),
        }
    }

    pub fn exposes(self, c: Collector) -> bool {
        self.off & Self::bit(c) == 0
    }

    /// Whether the metric's family is exposed under this budget.
    pub fn includes(self, m: &Metric) -> bool {
        Collector::of(m).is_none_or(|c| self.exposes(c))
    }

    /// The collectors left out, in [`Collector::ALL`]'s order.
    pub fn left_out(self) -> Vec<Collector> {
        Collector::ALL.into_iter().filter(|c| !self.exposes(*c)).collect()
    }

    /// Says, in the log, what is left out and which shipped alerts lose
    /// their input; nothing with the default budget.
    pub fn log(self) {
        for c in self.left_out() {
            let alerts = c.alerts();
            tracing::info!(
                collector = c.name(),
                families = %c.families().join(","),
                alerts_without_input = %if alerts.is_empty() { "none".to_string() } else { alerts.join(",") },
                "left out of /metrics and the OTLP push ({})",
                c.flag()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::Arc;

    use super::*;
    use crate::drift::{DriftTracker, StateDoc, StateStore};
    use crate::expose::metrics::{registry_with, render, Format};
    use crate::expose::otlp::families;
    use crate::model::NodeSnapshot;
    use crate::poll::{Poller, Published};
    use crate::source::sim::SimSource;
    use crate::source::{scenarios, sim};

    /// h100-mixed with every family the simulator leaves empty filled in on
    /// GPU 0 (whole-GPU activity and utilization, framebuffer free), so that
    /// every collector has series to leave out.
    fn node() -> NodeSnapshot {
        let world = scenarios::build("h100-mixed").unwrap();
        let reading = sim::reading_from_world(&world);
        let mut s = NodeSnapshot {
            gpus: reading.gpus,
            driver_version: reading.driver_version,
            ..Default::default()
        };
        let h = &mut s.gpus[0].health;
        h.activity.sm_active_ratio = Some(0.5);
        h.utilization_ratio = Some(0.25);
        h.memory_free_bytes = Some(1 << 30);
        s
    }

    fn exposition(s: &NodeSnapshot, budget: Budget) -> String {
        let published = Arc::new(Published::default());
        published.publish(s.clone());
        render(&registry_with(published, budget), Format::PrometheusText).unwrap()
    }

    /// The families with series on `/metrics`, by their `# TYPE` lines.
    fn prometheus_families(text: &str) -> BTreeSet<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .map(|name| {
                let m = contract::metrics()
                    .iter()
                    .find(|m| m.family_name() == name || m.prometheus == name)
                    .unwrap_or_else(|| panic!("{name} is in the contract"));
                m.prometheus.to_string()
            })
            .collect()
    }

    /// The Prometheus families the OTLP push carries points of.
    fn otlp_families(s: &NodeSnapshot, budget: Budget) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for f in families::all_with(budget) {
            let mut points = 0;
            (f.read)(s, &mut |_, _| points += 1);
            if points > 0 {
                out.extend(f.prometheus.iter().cloned());
            }
        }
        out
    }

    fn switch_leaves_out_its_families_and_nothing_else(c: Collector) {
        let s = node();
        let families: BTreeSet<String> = c.families().iter().map(|f| f.to_string()).collect();
        assert!(!families.is_empty(), "{}", c.name());
        let budget = Budget::FULL.without(c);

        let full = prometheus_families(&exposition(&s, Budget::FULL));
        let cut = prometheus_families(&exposition(&s, budget));
        let present: BTreeSet<String> = full.intersection(&families).cloned().collect();
        assert!(!present.is_empty(), "{}: the test node has its series", c.name());
        assert!(cut.is_disjoint(&families), "{}: left out of /metrics", c.name());
        let rest: BTreeSet<String> = full.difference(&families).cloned().collect();
        assert_eq!(cut, rest, "{}: every other family stays on /metrics", c.name());

        let full = otlp_families(&s, Budget::FULL);
        let cut = otlp_families(&s, budget);
        assert!(!full.is_disjoint(&families), "{}: pushed by default", c.name());
        assert!(cut.is_disjoint(&families), "{}: left out of OTLP", c.name());
        let rest: BTreeSet<String> = full.difference(&families).cloned().collect();
        assert_eq!(cut, rest, "{}: every other family is still pushed", c.name());
    }

    #[test]
    fn no_collector_ci_activity() {
        switch_leaves_out_its_families_and_nothing_else(Collector::CiActivity);
    }

    #[test]
    fn no_collector_gi_activity() {
        switch_leaves_out_its_families_and_nothing_else(Collector::GiActivity);
    }

    #[test]
    fn no_collector_gpu_activity() {
        switch_leaves_out_its_families_and_nothing_else(Collector::GpuActivity);
    }

    #[test]
    fn no_collector_gi_memory() {
        switch_leaves_out_its_families_and_nothing_else(Collector::GiMemory);
    }

    #[test]
    fn no_collector_health() {
        switch_leaves_out_its_families_and_nothing_else(Collector::Health);
    }

    #[test]
    fn no_collector_gpu_telemetry() {
        switch_leaves_out_its_families_and_nothing_else(Collector::GpuTelemetry);
    }

    #[test]
    fn no_collector_profiles() {
        switch_leaves_out_its_families_and_nothing_else(Collector::Profiles);
    }

    #[test]
    fn the_default_budget_exposes_every_family_with_series() {
        let s = node();
        let mut with_series = BTreeSet::new();
        let mut pushed = BTreeSet::new();
        for m in contract::metrics() {
            let Some(read) = &m.read else { continue };
            let mut n = 0;
            read(&s, &mut |_, _| n += 1);
            if n > 0 {
                with_series.insert(m.prometheus.to_string());
                if !m.otlp.is_empty() {
                    pushed.insert(m.prometheus.to_string());
                }
            }
        }
        let published = Arc::new(Published::default());
        published.publish(s.clone());
        let text = render(
            &crate::expose::metrics::registry(published),
            Format::PrometheusText,
        )
        .unwrap();
        assert_eq!(prometheus_families(&text), with_series);
        assert_eq!(prometheus_families(&exposition(&s, Budget::FULL)), with_series);
        assert_eq!(otlp_families(&s, Budget::FULL), pushed);
        for c in Collector::ALL {
            assert!(
                Budget::FULL.exposes(c) && !Budget::trimmed().exposes(c),
                "{}",
                c.name()
            );
        }
    }

    #[test]
    fn collectors_hold_listed_families_and_never_drift_geometry_or_identity() {
        for name in HEALTH.iter().chain(TELEMETRY).chain([&GPU_UTILIZATION]) {
            assert!(contract::find(name).is_some(), "{name} is in the contract");
        }
        for m in contract::metrics() {
            let c = Collector::of(m);
            if matches!(
                m.level,
                Level::DriftFinding | Level::Exporter | Level::Source | Level::Pod
            ) || m.prometheus.contains("drift")
                || m.prometheus.ends_with("_info")
                || m.prometheus == "nvidia_mig_expected_instances"
                || m.prometheus == "nvidia_mig_geometry_last_change_timestamp_seconds"
                || m.prometheus.starts_with("nvidia_mig_mode_")
                || (m.prometheus.contains("_slices_") && !FRAGMENTATION.contains(&m.prometheus.as_ref()))
                || m.prometheus == "nvidia_mig_gpu_instance_compute_instances"
            {
                assert_eq!(c, None, "{} is always exposed", m.prometheus);
            }
            // A new whole-GPU reading needs a decision: in a collector, or
            // added here as always exposed.
            if m.level == Level::Gpu
                && m.prometheus.starts_with("nvidia_gpu_")
                && !["nvidia_gpu_info", "nvidia_gpu_memory_total_bytes"].contains(&m.prometheus.as_ref())
            {
                assert!(c.is_some(), "{} belongs to a collector", m.prometheus);
            }
        }
        let names: BTreeSet<&str> = Collector::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(names.len(), Collector::ALL.len());
    }

    /// The families each shipped alert reads, from the rules file.
    fn alert_inputs() -> BTreeMap<String, BTreeSet<String>> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("alerts/mig-exporter.rules.yml");
        let rules = std::fs::read_to_string(&path).unwrap();
        let known: Vec<&str> = contract::metrics()
            .iter()
            .map(|m| m.prometheus.as_ref())
            .collect();
        let mut out = BTreeMap::new();
        for block in rules.split("- alert: ").skip(1) {
            let name = block.split_whitespace().next().unwrap().to_string();
            let body = block.split("annotations:").next().unwrap();
            let inputs = known
                .iter()
                .filter(|f| {
                    body.match_indices(**f).any(|(i, _)| {
                        let after = body[i + f.len()..].chars().next();
                        !after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                    })
                })
                .map(|f| f.to_string())
                .collect();
            out.insert(name, inputs);
        }
        assert!(out.len() > 10, "{}", out.len());
        out
    }

    #[test]
    fn each_collector_names_the_shipped_alerts_that_read_it() {
        let inputs = alert_inputs();
        for c in Collector::ALL {
            let families: BTreeSet<String> = c.families().iter().map(|f| f.to_string()).collect();
            let reading: BTreeSet<&str> = inputs
                .iter()
                .filter(|(_, i)| !i.is_disjoint(&families))
                .map(|(a, _)| a.as_str())
                .collect();
            let declared: BTreeSet<&str> = c.alerts().iter().copied().collect();
            assert_eq!(declared, reading, "{}", c.name());
        }
        // Drift alerts read nothing a collector holds.
        for (alert, i) in &inputs {
            if i.contains("nvidia_mig_drift") {
                assert!(
                    i.iter()
                        .all(|f| contract::find(f).and_then(Collector::of).is_none()),
                    "{alert}"
                );
            }
        }
    }

    /// 8 × H100 80GB with seven 1g.10gb GPU instances each, a compute
    /// instance in each, polled once as `serve` polls it (the simulator's
    /// load, its source series, drift without a desired config).
    fn h100_seven_1g() -> NodeSnapshot {
        let mut world = mig_model::World::new("budget-node", mig_model::Product::H100_80GB, 8);
        for gpu in &mut world.gpus {
            gpu.set_mig_mode(true);
            for _ in 0..7 {
                // Profile 19 is 1g.10gb on an H100 80GB (scenarios.rs, H100_MIX).
                let gi = gpu.create_gpu_instance(19, None).unwrap();
                gpu.create_compute_instance(gi, None).unwrap();
            }
        }
        let mut poller = Poller::new(Box::new(SimSource::Scenario(world))).with_drift(DriftTracker::new(
            None,
            StateStore::in_memory(StateDoc::default()),
        ));
        poller.poll_once()
    }

    /// Series a scrape stores: the sample lines of the exposition.
    fn series(text: &str) -> usize {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .count()
    }

    #[test]
    fn series_per_gpu_instance_on_8_h100_with_seven_1g_each() {
        let s = h100_seven_1g();
        let gis: usize = s.gpus.iter().map(|g| g.gpu_instances.len()).sum();
        assert_eq!(gis, 56);
        let full = series(&exposition(&s, Budget::FULL));
        let trimmed = series(&exposition(&s, Budget::trimmed()));
        println!("| collector | flag | series per node | per GPU instance |");
        let mut saved_total = 0;
        for c in Collector::ALL {
            let saved = full - series(&exposition(&s, Budget::FULL.without(c)));
            saved_total += saved;
            println!(
                "| {} | `{}` | {saved} | {:.2} |",
                c.name(),
                c.flag(),
                saved as f64 / gis as f64
            );
        }
        let per_gi = |n: usize| n as f64 / gis as f64;
        println!(
            "default: {full} series, {:.2} per GPU instance; every collector left out: {trimmed}, {:.2} per GPU instance",
            per_gi(full),
            per_gi(trimmed)
        );
        // Collectors share no family: their savings add up to the trim.
        assert_eq!(full - trimmed, saved_total);
        assert!(per_gi(full) > 15.0, "{}", per_gi(full));
        assert!(per_gi(trimmed) <= 6.0, "{}", per_gi(trimmed));
    }
}
