//! The metric contract, written once: every metric's Prometheus name, OTLP
//! name, unit, kind, help, labels and the level it describes, with how to
//! read its series from a [`NodeSnapshot`]. The Prometheus encoder
//! (`metrics.rs`) and the OTLP encoder (`otlp/families.rs`) both walk this
//! table, and `docs/metrics.md` is generated from it ([`reference`]).
//!
//! A reader emits each series as its label values, in the order of the
//! metric's [`Metric::labels`], and its value; it allocates nothing, so the
//! Prometheus encoder writes a scrape without an allocation per series.

use std::borrow::Cow;
use std::fmt;
use std::fmt::Write as _;
use std::sync::OnceLock;

use prometheus_client::encoding::{EncodeLabelValue, LabelValueEncoder};

use crate::model::{
    Activity, ComputeInstanceSnapshot, DurationHistogram, EccErrorCounts, GpuInstanceSnapshot, GpuSnapshot,
    NodeSnapshot, SourceHealth, SourceState,
};

/// What a metric is. Gauges and up-down counters are gauges in Prometheus;
/// a histogram is pushed over OTLP as two counters, its sum and its count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    UpDownCounter,
    Counter,
    Histogram,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Gauge => "gauge",
            Kind::UpDownCounter => "up-down counter",
            Kind::Counter => "counter",
            Kind::Histogram => "histogram",
        }
    }
}

/// What one series of a metric is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Exporter,
    Gpu,
    Profile,
    GpuInstance,
    ComputeInstance,
    Pod,
    DriftFinding,
    Source,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Exporter => "exporter",
            Level::Gpu => "GPU",
            Level::Profile => "GPU-instance profile",
            Level::GpuInstance => "GPU instance",
            Level::ComputeInstance => "compute instance",
            Level::Pod => "pod",
            Level::DriftFinding => "drift finding",
            Level::Source => "source",
        }
    }
}

/// A label: its Prometheus name and the OTLP attribute it becomes (empty
/// for the labels of families that are not pushed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label {
    pub prometheus: &'static str,
    pub otlp: &'static str,
}

const fn l(prometheus: &'static str, otlp: &'static str) -> Label {
    Label { prometheus, otlp }
}

/// The label table: every label of `/metrics` and its OTLP attribute.
pub mod label {
    use super::{l, Label};

    pub const GPU: Label = l("gpu", "nvidia.gpu.index");
    pub const GPU_UUID: Label = l("gpu_uuid", "hw.id");
    pub const NAME: Label = l("name", "hw.model");
    pub const PCI_BUS_ID: Label = l("pci_bus_id", "nvidia.gpu.pci_bus_id");
    pub const DRIVER_VERSION: Label = l("driver_version", "hw.driver_version");
    pub const GI: Label = l("gi", "nvidia.mig.gi.id");
    pub const CI: Label = l("ci", "nvidia.mig.ci.id");
    pub const PROFILE: Label = l("profile", "nvidia.mig.profile");
    pub const PROFILE_ID: Label = l("profile_id", "nvidia.mig.profile.id");
    pub const PLACEMENT_START: Label = l("placement_start", "nvidia.mig.placement.start");
    pub const PLACEMENT_SIZE: Label = l("placement_size", "nvidia.mig.placement.size");
    pub const CI_PROFILE: Label = l("ci_profile", "nvidia.mig.ci.profile");
    pub const CI_PROFILE_ID: Label = l("ci_profile_id", "nvidia.mig.ci.profile.id");
    pub const MIG_UUID: Label = l("mig_uuid", "nvidia.mig.device.uuid");
    pub const ERROR_TYPE: Label = l("error_type", "error.type");
    pub const XID: Label = l("xid", "nvidia.gpu.xid");
    pub const REASON: Label = l("reason", "nvidia.mig.drift.reason");
    pub const NAMESPACE: Label = l("namespace", "k8s.namespace.name");
    pub const POD: Label = l("pod", "k8s.pod.name");
    pub const CONTAINER: Label = l("container", "k8s.container.name");
    pub const SOURCE: Label = l("source", "nvidia.mig.source");
    pub const STATE: Label = l("state", "nvidia.mig.source.state");
    /// `mig_exporter_build_info` is not pushed: the resource has `service.version`.
    pub const VERSION: Label = l("version", "");
    pub const REVISION: Label = l("revision", "");

    /// Every label, in the order the reference lists them.
    pub const ALL: [Label; 24] = [
        GPU,
        GPU_UUID,
        NAME,
        PCI_BUS_ID,
        DRIVER_VERSION,
        GI,
        CI,
        PROFILE,
        PROFILE_ID,
        PLACEMENT_START,
        PLACEMENT_SIZE,
        CI_PROFILE,
        CI_PROFILE_ID,
        MIG_UUID,
        ERROR_TYPE,
        XID,
        REASON,
        NAMESPACE,
        POD,
        CONTAINER,
        SOURCE,
        STATE,
        VERSION,
        REVISION,
    ];
}

use label::*;

const GPU_LABELS: &[Label] = &[GPU, GPU_UUID];
const GI_LABELS: &[Label] = &[GPU, GPU_UUID, GI, PROFILE];
const CI_LABELS: &[Label] = &[GPU, GPU_UUID, GI, CI, PROFILE, MIG_UUID];
const ERROR_LABELS: &[Label] = &[GPU, GPU_UUID, ERROR_TYPE];
const FINDING_LABELS: &[Label] = &[GPU, GPU_UUID, REASON];
const SOURCE_LABELS: &[Label] = &[SOURCE];

/// A label value, borrowed from the snapshot: text or a number. An absent
/// optional value is an empty label in Prometheus and no attribute in OTLP.
#[derive(Debug, Clone, Copy)]
pub enum Lv<'a> {
    S(&'a str),
    N(u32),
    L(u64),
    Opt(Option<u32>),
    OptS(Option<&'a str>),
}

impl EncodeLabelValue for Lv<'_> {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), fmt::Error> {
        match self {
            Lv::S(s) | Lv::OptS(Some(s)) => EncodeLabelValue::encode(s, encoder),
            Lv::N(n) | Lv::Opt(Some(n)) => EncodeLabelValue::encode(n, encoder),
            Lv::L(n) => EncodeLabelValue::encode(n, encoder),
            Lv::Opt(None) | Lv::OptS(None) => EncodeLabelValue::encode(&"", encoder),
        }
    }
}

/// A series' value: an integer, a float, or (for a histogram) the histogram.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    U(u64),
    F(f64),
    Histogram(&'a DurationHistogram),
}

/// Receives one series: its label values and its value.
pub type Emit<'a, 'e> = dyn FnMut(&[Lv<'a>], Value<'a>) + 'e;

/// Emits every series of a metric in a snapshot.
pub type Read = Box<dyn for<'a> Fn(&'a NodeSnapshot, &mut Emit<'a, '_>) + Send + Sync>;

pub struct Metric {
    /// The name of its samples on `/metrics` (a counter's with `_total`).
    pub prometheus: Cow<'static, str>,
    /// The OTLP instrument; empty where the metric is not pushed. Metrics
    /// that share one tell their series apart by [`Metric::otlp_attributes`].
    pub otlp: &'static str,
    /// A histogram's count, pushed as a counter of its own: name and unit.
    pub otlp_count: Option<(&'static str, &'static str)>,
    /// UCUM, as OpenTelemetry writes units; `{…}` units are annotations.
    pub unit: &'static str,
    pub kind: Kind,
    pub level: Level,
    pub help: Cow<'static, str>,
    pub labels: &'static [Label],
    /// Attributes every OTLP point of the metric has besides its labels'.
    pub otlp_attributes: &'static [(&'static str, &'static str)],
    /// `None` for the exporter's own counters that are not in a snapshot
    /// (the OTLP pusher's, encoded beside it).
    pub read: Option<Read>,
}

impl Metric {
    /// The name prometheus-client takes: without a counter's `_total`.
    pub fn family_name(&self) -> &str {
        match self.kind {
            Kind::Counter => self.prometheus.strip_suffix("_total").unwrap_or(&self.prometheus),
            _ => &self.prometheus,
        }
    }

    /// The names an OTLP receiver with Prometheus naming gives the metric's
    /// instruments (Prometheus's own receiver, vmagent with
    /// `-opentelemetry.usePrometheusNaming`): dots become underscores, the
    /// unit a suffix, gauges of unit 1 end in `_ratio`, counters in `_total`.
    pub fn prometheus_style(&self) -> Vec<String> {
        let name = |otlp: &str, unit: &str, counter: bool| {
            let mut n = otlp.replace('.', "_");
            let suffix = match unit {
                "By" => "_bytes",
                "By/s" => "_bytes_per_second",
                "s" => "_seconds",
                "W" => "_watts",
                "J" => "_joules",
                "Hz" => "_hertz",
                "Cel" => "_celsius",
                "1" if !counter => "_ratio",
                _ => "",
            };
            if !n.ends_with(suffix) {
                n.push_str(suffix);
            }
            if counter {
                n.push_str("_total");
            }
            n
        };
        if self.otlp.is_empty() {
            return Vec::new();
        }
        let counter = matches!(self.kind, Kind::Counter | Kind::Histogram);
        let mut names = vec![name(self.otlp, self.unit, counter)];
        if let Some((count, unit)) = self.otlp_count {
            names.push(name(count, unit, true));
        }
        names
    }
}

/// One row of the table: an argument per column, in the reference's order.
#[allow(clippy::too_many_arguments)]
fn metric(
    prometheus: &'static str,
    otlp: &'static str,
    unit: &'static str,
    kind: Kind,
    level: Level,
    labels: &'static [Label],
    help: &'static str,
    read: impl for<'a> Fn(&'a NodeSnapshot, &mut Emit<'a, '_>) + Send + Sync + 'static,
) -> Metric {
    Metric {
        prometheus: Cow::Borrowed(prometheus),
        otlp,
        otlp_count: None,
        unit,
        kind,
        level,
        help: Cow::Borrowed(help),
        labels,
        otlp_attributes: &[],
        read: Some(Box::new(read)),
    }
}

fn gpu_values(g: &GpuSnapshot) -> [Lv<'_>; 2] {
    [Lv::N(g.index), Lv::S(&g.uuid)]
}

fn gi_values<'a>(g: &'a GpuSnapshot, gi: &'a GpuInstanceSnapshot) -> [Lv<'a>; 4] {
    [Lv::N(g.index), Lv::S(&g.uuid), Lv::N(gi.id), Lv::S(&gi.profile)]
}

fn ci_values<'a>(
    g: &'a GpuSnapshot,
    gi: &'a GpuInstanceSnapshot,
    ci: &'a ComputeInstanceSnapshot,
) -> [Lv<'a>; 6] {
    [
        Lv::N(g.index),
        Lv::S(&g.uuid),
        Lv::N(gi.id),
        Lv::N(ci.id),
        Lv::S(&gi.profile),
        Lv::S(&ci.mig_uuid),
    ]
}

/// Every GPU instance with its GPU.
pub(crate) fn gis(s: &NodeSnapshot) -> impl Iterator<Item = (&GpuSnapshot, &GpuInstanceSnapshot)> {
    s.gpus
        .iter()
        .flat_map(|g| g.gpu_instances.iter().map(move |gi| (g, gi)))
}

pub(crate) fn cis(
    s: &NodeSnapshot,
) -> impl Iterator<Item = (&GpuSnapshot, &GpuInstanceSnapshot, &ComputeInstanceSnapshot)> {
    gis(s).flat_map(|(g, gi)| gi.compute_instances.iter().map(move |ci| (g, gi, ci)))
}

fn flag(b: bool) -> Value<'static> {
    Value::U(u64::from(b))
}

/// A GPU metric of one value the GPU may lack.
fn per_gpu(
    prometheus: &'static str,
    otlp: &'static str,
    unit: &'static str,
    kind: Kind,
    help: &'static str,
    read: fn(&GpuSnapshot) -> Option<Value<'static>>,
) -> Metric {
    metric(
        prometheus,
        otlp,
        unit,
        kind,
        Level::Gpu,
        GPU_LABELS,
        help,
        move |s, emit| {
            for g in &s.gpus {
                if let Some(v) = read(g) {
                    emit(&gpu_values(g), v);
                }
            }
        },
    )
}

/// A GPU-instance metric of one value the instance may lack.
fn per_gi(
    prometheus: &'static str,
    otlp: &'static str,
    unit: &'static str,
    kind: Kind,
    help: &'static str,
    read: fn(&GpuInstanceSnapshot) -> Option<Value<'static>>,
) -> Metric {
    metric(
        prometheus,
        otlp,
        unit,
        kind,
        Level::GpuInstance,
        GI_LABELS,
        help,
        move |s, emit| {
            for (g, gi) in gis(s) {
                if let Some(v) = read(gi) {
                    emit(&gi_values(g, gi), v);
                }
            }
        },
    )
}

/// A source metric of one value the source may lack.
fn per_source(
    prometheus: &'static str,
    otlp: &'static str,
    unit: &'static str,
    kind: Kind,
    help: &'static str,
    read: fn(&SourceHealth) -> Option<Value<'_>>,
) -> Metric {
    metric(
        prometheus,
        otlp,
        unit,
        kind,
        Level::Source,
        SOURCE_LABELS,
        help,
        move |s, emit| {
            for h in &s.sources {
                if let Some(v) = read(h) {
                    emit(&[Lv::S(h.name)], v);
                }
            }
        },
    )
}

/// Walks the entities of one level: each one's label values and activity.
type ActivityWalk = for<'a> fn(&'a NodeSnapshot, &mut dyn FnMut(&[Lv<'a>], &'a Activity));

/// One gauge per [`Activity`] kind at one level: `{prefix}_{stem}_ratio` in
/// Prometheus, `{otlp_prefix}.{stem}` in OTLP (so that Prometheus's OTLP
/// translation gives back the `/metrics` name), its help saying what the
/// level's ratio is over (`scope`).
fn activity(
    table: &mut Vec<Metric>,
    prefix: &str,
    otlp_prefix: &str,
    level: Level,
    labels: &'static [Label],
    scope: &str,
    walk: ActivityWalk,
) {
    for (stem, help, read) in Activity::KINDS {
        table.push(Metric {
            prometheus: Cow::Owned(format!("{prefix}_{stem}_ratio")),
            // Built once for the process: the table lives as long as it.
            otlp: Box::leak(format!("{otlp_prefix}.{stem}").into_boxed_str()),
            otlp_count: None,
            unit: "1",
            kind: Kind::Gauge,
            level,
            help: Cow::Owned(Activity::help(help, scope)),
            labels,
            otlp_attributes: &[],
            read: Some(Box::new(move |s, emit| {
                walk(s, &mut |values, a| {
                    if let Some(v) = read(a) {
                        emit(values, Value::F(v));
                    }
                })
            })),
        });
    }
}

/// The `error_type` values of ECC errors and remapped rows: one spelling.
pub const CORRECTED: &str = "corrected";
pub const UNCORRECTED: &str = "uncorrected";

/// nvml.h (`nvmlEccCounterType_t`): "Volatile counts are reset each time the
/// driver loads", "Aggregate counts persist across reboots (i.e. for the
/// lifetime of the device)". Two families, not one with a scope label, so
/// that `sum()` over either never adds a count to the count it is part of.
fn ecc(
    prometheus: &'static str,
    otlp: &'static str,
    help: &'static str,
    read: fn(&EccErrorCounts) -> [(&'static str, u64); 2],
) -> Metric {
    metric(
        prometheus,
        otlp,
        "{error}",
        Kind::Counter,
        Level::Gpu,
        ERROR_LABELS,
        help,
        move |s, emit| {
            for g in &s.gpus {
                if let Some(e) = g.health.ecc_errors {
                    for (kind, n) in read(&e) {
                        emit(&[Lv::N(g.index), Lv::S(&g.uuid), Lv::S(kind)], Value::U(n));
                    }
                }
            }
        },
    )
}

/// Every metric, in the order of the `/metrics` exposition.
pub fn metrics() -> &'static [Metric] {
    static TABLE: OnceLock<Vec<Metric>> = OnceLock::new();
    TABLE.get_or_init(table)
}

/// The metric with this `/metrics` sample name (a counter's with `_total`).
pub fn find(prometheus: &str) -> Option<&'static Metric> {
    metrics().iter().find(|m| m.prometheus == prometheus)
}

/// Every sample name `/metrics` can have: each metric's, and a histogram's
/// `_bucket`, `_sum` and `_count` (for tests that check dashboards and
/// alert rules name only these).
#[doc(hidden)]
pub fn sample_names() -> Vec<String> {
    let mut names = Vec::new();
    for m in metrics() {
        names.push(m.prometheus.to_string());
        if m.kind == Kind::Histogram {
            for suffix in ["_bucket", "_sum", "_count"] {
                names.push(format!("{}{suffix}", m.prometheus));
            }
        }
    }
    names
}

fn table() -> Vec<Metric> {
    use Kind::{Counter, Gauge, UpDownCounter};
    let mut t = vec![
        metric(
            "nvidia_gpu_info",
            "nvidia.gpu.info",
            "",
            Gauge,
            Level::Gpu,
            &[GPU, GPU_UUID, NAME, PCI_BUS_ID, DRIVER_VERSION],
            "Physical GPU facts; always 1.",
            |s, emit| {
                let driver = s.driver_version.as_deref();
                for g in &s.gpus {
                    let values = [
                        Lv::N(g.index),
                        Lv::S(&g.uuid),
                        Lv::S(&g.name),
                        Lv::S(&g.pci_bus_id),
                        Lv::OptS(driver),
                    ];
                    emit(&values, Value::U(1));
                }
            },
        ),
        per_gpu(
            "nvidia_gpu_memory_total_bytes",
            "hw.gpu.memory.limit",
            "By",
            UpDownCounter,
            "Framebuffer of the physical GPU.",
            |g| g.memory_total_bytes.map(Value::U),
        ),
        per_gpu(
            "nvidia_mig_mode_current",
            "nvidia.mig.mode.current",
            "",
            Gauge,
            "1 if MIG mode is in force on the GPU.",
            |g| Some(flag(g.mig_current)),
        ),
        per_gpu(
            "nvidia_mig_mode_pending",
            "nvidia.mig.mode.pending",
            "",
            Gauge,
            "1 if MIG mode will be in force after the next GPU reset; differs from current while a change waits.",
            |g| Some(flag(g.mig_pending)),
        ),
        per_gpu(
            "nvidia_mig_compute_slices_capacity",
            "nvidia.mig.compute_slices.capacity",
            "{slice}",
            Gauge,
            "SM slices the GPU divides into (7, or 4 on A30 and RTX PRO 6000).",
            |g| Some(Value::U(g.compute_slices_capacity.into())),
        ),
        per_gpu(
            "nvidia_mig_compute_slices_used",
            "nvidia.mig.compute_slices.used",
            "{slice}",
            Gauge,
            "SM slices held by GPU instances.",
            |g| Some(Value::U(g.compute_slices_used.into())),
        ),
        per_gpu(
            "nvidia_mig_memory_slices_capacity",
            "nvidia.mig.memory_slices.capacity",
            "{slice}",
            Gauge,
            "Memory placement slots of the GPU (8; 4 on A30; 12 on RTX PRO 6000, 3 per quarter).",
            |g| Some(Value::U(g.memory_slices_capacity.into())),
        ),
        per_gpu(
            "nvidia_mig_memory_slices_used",
            "nvidia.mig.memory_slices.used",
            "{slice}",
            Gauge,
            "Memory placement slots held by GPU instances.",
            |g| Some(Value::U(g.memory_slices_used.into())),
        ),
        per_gpu(
            "nvidia_gpu_persistence_mode",
            "nvidia.gpu.persistence_mode",
            "",
            Gauge,
            "1 if persistence mode is on; off lets the driver tear MIG state down when the last client exits.",
            |g| g.health.persistence_mode.map(flag),
        ),
        per_gpu(
            "nvidia_gpu_ecc_mode_current",
            "nvidia.gpu.ecc_mode.current",
            "",
            Gauge,
            "1 if ECC is enabled.",
            |g| g.health.ecc_mode_current.map(flag),
        ),
        per_gpu(
            "nvidia_gpu_ecc_mode_pending",
            "nvidia.gpu.ecc_mode.pending",
            "",
            Gauge,
            "1 if ECC is enabled after the next reset.",
            |g| g.health.ecc_mode_pending.map(flag),
        ),
        ecc(
            "nvidia_gpu_ecc_errors_volatile_total",
            "nvidia.gpu.ecc.errors.volatile",
            "ECC errors since the driver last loaded (NVML's volatile count), by error type.",
            |e| [(CORRECTED, e.volatile_corrected), (UNCORRECTED, e.volatile_uncorrected)],
        ),
        ecc(
            "nvidia_gpu_ecc_errors_aggregate_total",
            "nvidia.gpu.ecc.errors.aggregate",
            "ECC errors over the GPU's lifetime, across reboots (NVML's aggregate count), by error type.",
            |e| [(CORRECTED, e.aggregate_corrected), (UNCORRECTED, e.aggregate_uncorrected)],
        ),
        // A counter: nvml.h (13.3, nvmlDeviceGetRemappedRows) reports the
        // "number of rows remapped due to correctable / uncorrectable errors",
        // and a remapping is permanent ("a reset will be required to actually
        // remap the row"), so the counts only grow. unverified: that they fall
        // only when the remapping table is cleared by a field repair; nvml.h
        // says nothing of a decrease.
        metric(
            "nvidia_gpu_remapped_rows_total",
            "nvidia.gpu.remapped_rows",
            "{row}",
            Counter,
            Level::Gpu,
            ERROR_LABELS,
            "Memory rows the GPU has remapped, by the error that caused it.",
            |s, emit| {
                for g in &s.gpus {
                    if let Some(r) = g.health.remapped_rows {
                        for (kind, n) in [(CORRECTED, r.correctable), (UNCORRECTED, r.uncorrectable)] {
                            emit(&[Lv::N(g.index), Lv::S(&g.uuid), Lv::S(kind)], Value::U(n.into()));
                        }
                    }
                }
            },
        ),
        per_gpu(
            "nvidia_gpu_row_remapping_pending",
            "nvidia.gpu.row_remapping.pending",
            "",
            Gauge,
            "1 if a row remapping waits for a GPU reset.",
            |g| g.health.remapped_rows.map(|r| flag(r.pending)),
        ),
        per_gpu(
            "nvidia_gpu_row_remapping_failed",
            "nvidia.gpu.row_remapping.failed",
            "",
            Gauge,
            "1 if a row remapping failed.",
            |g| g.health.remapped_rows.map(|r| flag(r.failure)),
        ),
        per_gpu(
            "nvidia_gpu_power_watts",
            "hw.power",
            "W",
            Gauge,
            "Power draw of the GPU.",
            |g| g.health.power_watts.map(Value::F),
        ),
        per_gpu(
            "nvidia_gpu_power_limit_watts",
            "nvidia.gpu.power.limit",
            "W",
            Gauge,
            "Enforced power limit.",
            |g| g.health.power_limit_watts.map(Value::F),
        ),
        per_gpu(
            "nvidia_gpu_temperature_celsius",
            "nvidia.gpu.temperature",
            "Cel",
            Gauge,
            "GPU core temperature.",
            |g| g.health.temperature_celsius.map(Value::F),
        ),
        per_gpu(
            "nvidia_gpu_sm_clock_hz",
            "nvidia.gpu.sm_clock",
            "Hz",
            Gauge,
            "SM clock.",
            |g| g.health.sm_clock_hz.map(Value::F),
        ),
        Metric {
            otlp_attributes: &[("hw.gpu.task", "general")],
            ..per_gpu(
                "nvidia_gpu_utilization_ratio",
                "hw.gpu.utilization",
                "1",
                Gauge,
                "Whole-GPU utilization; absent while MIG is enabled (NVML does not report it then).",
                |g| g.health.utilization_ratio.map(Value::F),
            )
        },
        per_gpu(
            "nvidia_gpu_memory_used_bytes",
            "hw.gpu.memory.usage",
            "By",
            UpDownCounter,
            "Framebuffer in use on the whole GPU.",
            |g| g.health.memory_used_bytes.map(Value::U),
        ),
        per_gpu(
            "nvidia_gpu_memory_free_bytes",
            "nvidia.gpu.memory.free",
            "By",
            UpDownCounter,
            "Framebuffer free on the whole GPU.",
            |g| g.health.memory_free_bytes.map(Value::U),
        ),
    ];
    activity(
        &mut t,
        "nvidia_gpu",
        "nvidia.gpu",
        Level::Gpu,
        GPU_LABELS,
        Activity::GPU_SCOPE,
        |s, point| {
            for g in &s.gpus {
                point(&gpu_values(g), &g.health.activity);
            }
        },
    );
    t.extend([
        per_gpu(
            "nvidia_gpu_energy_joules_total",
            "hw.energy",
            "J",
            Counter,
            "Energy consumed since the driver loaded (read on the slow cadence).",
            |g| g.health.energy_joules.map(Value::F),
        ),
        Metric {
            otlp_attributes: &[("network.io.direction", "transmit")],
            ..per_gpu(
                "nvidia_gpu_pcie_tx_bytes_per_second",
                "nvidia.gpu.pcie.throughput",
                "By/s",
                Gauge,
                "PCIe transmit throughput (slow cadence, when enabled).",
                |g| g.health.pcie_tx_bytes_per_second.map(Value::F),
            )
        },
        Metric {
            otlp_attributes: &[("network.io.direction", "receive")],
            ..per_gpu(
                "nvidia_gpu_pcie_rx_bytes_per_second",
                "nvidia.gpu.pcie.throughput",
                "By/s",
                Gauge,
                "PCIe receive throughput (slow cadence, when enabled).",
                |g| g.health.pcie_rx_bytes_per_second.map(Value::F),
            )
        },
        metric(
            "nvidia_gpu_xid_errors_total",
            "nvidia.gpu.xid_errors",
            "{error}",
            Counter,
            Level::Gpu,
            &[GPU, GPU_UUID, XID],
            "XID errors the GPU raised since the exporter started, by XID code; the codes the shipped alerts watch are 0 until the first one.",
            |s, emit| {
                for g in &s.gpus {
                    for (xid, n) in g.health.xid_counts() {
                        emit(&[Lv::N(g.index), Lv::S(&g.uuid), Lv::L(xid)], Value::U(n));
                    }
                }
            },
        ),
        profile(
            "nvidia_mig_profile_max_instances",
            "nvidia.mig.profile.max_instances",
            "Instances of this GPU-instance profile that fit an empty GPU.",
            |p| p.max_instances,
        ),
        profile(
            "nvidia_mig_profile_remaining_instances",
            "nvidia.mig.profile.remaining_instances",
            "Instances of this profile that could still be created next to the existing ones (NVML remaining capacity).",
            |p| p.remaining_instances,
        ),
        // Fragmentation (src/model/fragmentation.rs): derived from NVML's
        // remaining capacity per profile, the profiles' possible placements
        // and the GPU instances' placements; only for GPUs in MIG mode.
        per_gpu(
            "nvidia_mig_memory_slices_unplaceable",
            "nvidia.mig.memory_slices.unplaceable",
            "{slice}",
            Gauge,
            "Free memory placement slots that no GPU instance creatable now could occupy: no placement of a \
             profile with remaining instances covers them without overlapping an existing instance. They stay \
             idle until an instance is destroyed. Only for GPUs in MIG mode.",
            |g| g.memory_slices_unplaceable().map(|n| Value::U(n.into())),
        ),
        per_gpu(
            "nvidia_mig_largest_creatable_profile_memory_slices",
            "nvidia.mig.largest_creatable_profile.memory_slices",
            "{slice}",
            Gauge,
            "Memory placement slots of the largest profile of which one more instance can be created now \
             (remaining instances above 0); 0 if none can. Only for GPUs in MIG mode.",
            |g| g.largest_creatable_profile_slices().map(|(memory, _)| Value::U(memory.into())),
        ),
        per_gpu(
            "nvidia_mig_largest_creatable_profile_compute_slices",
            "nvidia.mig.largest_creatable_profile.compute_slices",
            "{slice}",
            Gauge,
            "SM slices of the largest profile of which one more instance can be created now (remaining \
             instances above 0); 0 if none can. Less than the free SM slices: they cannot all go to one new \
             instance. Only for GPUs in MIG mode.",
            |g| g.largest_creatable_profile_slices().map(|(_, compute)| Value::U(compute.into())),
        ),
        metric(
            "nvidia_mig_gpu_instance_info",
            "nvidia.mig.gpu_instance.info",
            "",
            Gauge,
            Level::GpuInstance,
            &[GPU, GPU_UUID, GI, PROFILE, PROFILE_ID, PLACEMENT_START, PLACEMENT_SIZE],
            "A GPU instance (GI) with its profile and placement; always 1.",
            |s, emit| {
                for (g, gi) in gis(s) {
                    let values = [
                        Lv::N(g.index),
                        Lv::S(&g.uuid),
                        Lv::N(gi.id),
                        Lv::S(&gi.profile),
                        Lv::N(gi.profile_id),
                        Lv::N(gi.placement_start),
                        Lv::N(gi.placement_size),
                    ];
                    emit(&values, Value::U(1));
                }
            },
        ),
        per_gi(
            "nvidia_mig_gpu_instance_compute_slices",
            "nvidia.mig.gpu_instance.compute_slices",
            "{slice}",
            Gauge,
            "SM slices of the GPU instance.",
            |gi| Some(Value::U(gi.compute_slices.into())),
        ),
        per_gi(
            "nvidia_mig_gpu_instance_compute_instances",
            "nvidia.mig.gpu_instance.compute_instances",
            "{instance}",
            Gauge,
            "Compute instances inside the GPU instance; 0 means CUDA cannot use it.",
            |gi| Some(Value::U(gi.compute_instances.len() as u64)),
        ),
        per_gi(
            "nvidia_mig_gpu_instance_memory_total_bytes",
            "nvidia.mig.gpu_instance.memory.limit",
            "By",
            UpDownCounter,
            "Framebuffer of the GPU instance.",
            |gi| Some(Value::U(gi.memory_total_bytes)),
        ),
        per_gi(
            "nvidia_mig_gpu_instance_memory_used_bytes",
            "nvidia.mig.gpu_instance.memory.usage",
            "By",
            UpDownCounter,
            "Framebuffer in use in the GPU instance.",
            |gi| gi.memory_used_bytes.map(Value::U),
        ),
        per_gi(
            "nvidia_mig_gpu_instance_memory_free_bytes",
            "nvidia.mig.gpu_instance.memory.free",
            "By",
            UpDownCounter,
            "Framebuffer free in the GPU instance.",
            |gi| gi.memory_free_bytes.map(Value::U),
        ),
    ]);
    activity(
        &mut t,
        "nvidia_mig_gpu_instance",
        "nvidia.mig.gpu_instance",
        Level::GpuInstance,
        GI_LABELS,
        Activity::GPU_INSTANCE_SCOPE,
        |s, point| {
            for (g, gi) in gis(s) {
                point(&gi_values(g, gi), &gi.activity);
            }
        },
    );
    t.push(metric(
        "nvidia_mig_compute_instance_info",
        "nvidia.mig.compute_instance.info",
        "",
        Gauge,
        Level::ComputeInstance,
        &[
            GPU,
            GPU_UUID,
            GI,
            CI,
            PROFILE,
            CI_PROFILE,
            CI_PROFILE_ID,
            PLACEMENT_START,
            PLACEMENT_SIZE,
            MIG_UUID,
        ],
        "A compute instance (CI), the unit CUDA sees as a MIG device; always 1.",
        |s, emit| {
            for (g, gi, ci) in cis(s) {
                let values = [
                    Lv::N(g.index),
                    Lv::S(&g.uuid),
                    Lv::N(gi.id),
                    Lv::N(ci.id),
                    Lv::S(&gi.profile),
                    Lv::S(&ci.profile),
                    Lv::N(ci.profile_id),
                    Lv::N(ci.placement_start),
                    Lv::N(ci.placement_size),
                    Lv::S(&ci.mig_uuid),
                ];
                emit(&values, Value::U(1));
            }
        },
    ));
    activity(
        &mut t,
        "nvidia_mig_compute_instance",
        "nvidia.mig.compute_instance",
        Level::ComputeInstance,
        CI_LABELS,
        Activity::COMPUTE_INSTANCE_SCOPE,
        |s, point| {
            for (g, gi, ci) in cis(s) {
                point(&ci_values(g, gi, ci), &ci.activity);
            }
        },
    );
    t.extend(drift());
    t.push(metric(
        "nvidia_mig_instance_pod_info",
        "nvidia.mig.instance.pod.info",
        "",
        Gauge,
        Level::Pod,
        &[MIG_UUID, GPU, GI, CI, NAMESPACE, POD, CONTAINER],
        "A MIG device (or, with gi and ci empty, a whole GPU) the kubelet allocated to a container; always 1.",
        |s, emit| {
            for p in &s.pods {
                let values = [
                    Lv::S(&p.mig_uuid),
                    Lv::N(p.gpu),
                    Lv::Opt(p.gi),
                    Lv::Opt(p.ci),
                    Lv::S(&p.namespace),
                    Lv::S(&p.pod),
                    Lv::S(&p.container),
                ];
                emit(&values, Value::U(1));
            }
        },
    ));
    t.extend(exporter());
    t
}

fn profile(
    prometheus: &'static str,
    otlp: &'static str,
    help: &'static str,
    read: fn(&crate::model::ProfileCapacity) -> u32,
) -> Metric {
    metric(
        prometheus,
        otlp,
        "{instance}",
        Kind::Gauge,
        Level::Profile,
        &[GPU, GPU_UUID, PROFILE, PROFILE_ID],
        help,
        move |s, emit| {
            for g in &s.gpus {
                for p in &g.profiles {
                    let values = [Lv::N(g.index), Lv::S(&g.uuid), Lv::S(&p.name), Lv::N(p.id)];
                    emit(&values, Value::U(read(p).into()));
                }
            }
        },
    )
}

fn drift() -> [Metric; 4] {
    [
        metric(
            "nvidia_mig_drift",
            "nvidia.mig.drift",
            "",
            Kind::Gauge,
            Level::DriftFinding,
            FINDING_LABELS,
            "1 for each drift finding: the GPU's MIG geometry is not what it should be, and reason says how \
             (mig_mode_lost, geometry_lost, profile_mismatch, gi_without_ci, mig_mode_pending, unexpected_mig, changed_since_reboot, advertised_mismatch, advertised_unhealthy).",
            |s, emit| {
                for f in &s.drift.findings {
                    let values = [Lv::N(f.gpu), Lv::S(&f.gpu_uuid), Lv::S(f.reason.as_str())];
                    emit(&values, Value::U(1));
                }
            },
        ),
        metric(
            "nvidia_mig_drift_since_timestamp_seconds",
            "nvidia.mig.drift.since",
            "s",
            Kind::Gauge,
            Level::DriftFinding,
            FINDING_LABELS,
            "Unix time of the first poll that found the drift; kept while it persists.",
            |s, emit| {
                for f in &s.drift.findings {
                    let values = [Lv::N(f.gpu), Lv::S(&f.gpu_uuid), Lv::S(f.reason.as_str())];
                    emit(&values, Value::F(f.since_seconds));
                }
            },
        ),
        metric(
            "nvidia_mig_expected_instances",
            "nvidia.mig.expected_instances",
            "{instance}",
            Kind::Gauge,
            Level::Profile,
            &[GPU, GPU_UUID, PROFILE],
            "GPU instances of the profile the desired MIG config wants on the GPU.",
            |s, emit| {
                for e in &s.drift.expected {
                    let values = [Lv::N(e.gpu), Lv::S(&e.gpu_uuid), Lv::S(&e.profile)];
                    emit(&values, Value::U(e.count.into()));
                }
            },
        ),
        metric(
            "nvidia_mig_geometry_last_change_timestamp_seconds",
            "nvidia.mig.geometry.last_change",
            "s",
            Kind::Gauge,
            Level::Gpu,
            GPU_LABELS,
            "Unix time the GPU's MIG geometry (mode, GPU and compute instances) was first seen as it is now.",
            |s, emit| {
                for c in &s.drift.geometry_changes {
                    emit(&[Lv::N(c.gpu), Lv::S(&c.gpu_uuid)], Value::F(c.changed_at_seconds));
                }
            },
        ),
    ]
}

fn exporter() -> Vec<Metric> {
    vec![
        // Not pushed: the OTLP resource has `service.version`.
        metric(
            "mig_exporter_build_info",
            "",
            "",
            Kind::Gauge,
            Level::Exporter,
            &[VERSION, REVISION],
            "The exporter's build; always 1.",
            |_, emit| {
                emit(
                    &[Lv::S(env!("CARGO_PKG_VERSION")), Lv::S(crate::REVISION)],
                    Value::U(1),
                )
            },
        ),
        metric(
            "mig_exporter_simulated",
            "nvidia.mig.simulated",
            "",
            Kind::Gauge,
            Level::Exporter,
            &[],
            "1 if the node is the built-in simulator's (--simulate, --world, or a start without --nvml \
             where no NVIDIA driver answered), not hardware; 0 with --nvml.",
            |s, emit| emit(&[], flag(s.simulated)),
        ),
        metric(
            "mig_exporter_source_info",
            "nvidia.mig.source.info",
            "",
            Kind::Gauge,
            Level::Source,
            &[SOURCE, STATE],
            "Each source the exporter runs; always 1. state: enabled (it should work: see mig_exporter_source_up), \
             unsupported (the hardware cannot have it) or disabled (not set up on this node).",
            |s, emit| {
                for h in &s.sources {
                    emit(&[Lv::S(h.name), Lv::S(h.state.as_str())], Value::U(1));
                }
            },
        ),
        // Only a source that should work can be down: one that does not apply
        // here has no source_up, so no alert on it can fire.
        per_source(
            "mig_exporter_source_up",
            "nvidia.mig.source.up",
            "",
            Kind::Gauge,
            "1 if the source's last poll succeeded; only for enabled sources.",
            |h| (h.state == SourceState::Enabled).then(|| flag(h.up)),
        ),
        per_source(
            "mig_exporter_last_successful_poll_timestamp_seconds",
            "nvidia.mig.source.last_success",
            "s",
            Kind::Gauge,
            "Unix time of the source's last successful poll.",
            |h| h.last_success_seconds.map(Value::F),
        ),
        per_source(
            "mig_exporter_poll_errors_total",
            "nvidia.mig.source.poll.errors",
            "{error}",
            Kind::Counter,
            "Polls of the source that failed.",
            |h| Some(Value::U(h.errors_total)),
        ),
        // A histogram cannot be observed from cumulative buckets through the
        // OpenTelemetry API; its sum and count give the mean poll time.
        Metric {
            otlp_count: Some(("nvidia.mig.source.polls", "{poll}")),
            ..per_source(
                "mig_exporter_poll_duration_seconds",
                "nvidia.mig.source.poll.time",
                "s",
                Kind::Histogram,
                "Time one poll of the source took.",
                |h| Some(Value::Histogram(&h.poll_duration)),
            )
        },
        // The OTLP pusher's own counters, encoded beside the snapshot's
        // families (otlp::StatsCollector); not pushed.
        Metric {
            read: None,
            ..metric(
                "mig_exporter_otlp_exports_total",
                "",
                "",
                Kind::Counter,
                Level::Exporter,
                &[],
                "OTLP pushes to the collector, failed or not.",
                |_, _| {},
            )
        },
        Metric {
            read: None,
            ..metric(
                "mig_exporter_otlp_export_errors_total",
                "",
                "",
                Kind::Counter,
                Level::Exporter,
                &[],
                "OTLP pushes that failed (collector down, slow past the timeout, or refusing).",
                |_, _| {},
            )
        },
    ]
}

// ------------------------------------------------------------ the reference

/// `docs/metrics.md`: the metric reference, generated from the table.
pub fn reference() -> String {
    let code = |s: &str| {
        if s.is_empty() {
            String::new()
        } else {
            format!("`{s}`")
        }
    };
    let mut out = String::from(
        "# Metrics\n\n\
         <!-- Generated from src/expose/contract.rs by a test; do not edit here.\n\
         UPDATE_DOCS=1 cargo test --lib contract rewrites it. -->\n\n\
         Every family of `/metrics` (below) and of the OTLP push ([OTLP](#otlp)),\n\
         from the metric contract (`src/expose/contract.rs`), the one table both\n\
         encoders walk; a test fails when this page differs from it.\n\n\
         Labels: `gpu` (index), `gpu_uuid`, `gi` (GPU instance id), `ci` (compute\n\
         instance id), `profile` (the GPU instance's profile, e.g. `3g.40gb`),\n\
         `mig_uuid`. Constant facts are `_info` series with value 1, to join on. The\n\
         level says what one series is about. A gauge or an up-down counter is a\n\
         gauge in Prometheus; a counter's samples end in `_total`; a histogram has\n\
         `_bucket`, `_sum` and `_count` samples.\n\n\
         | metric | level | labels | kind | help |\n\
         |---|---|---|---|---|\n",
    );
    for m in metrics() {
        let labels: Vec<&str> = m.labels.iter().map(|l| l.prometheus).collect();
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} |",
            m.prometheus,
            m.level.as_str(),
            labels.join(", "),
            m.kind.as_str(),
            m.help.replace('|', "\\|"),
        );
    }
    out.push_str(
        "\nA value a source cannot read is left out, never reported as 0; a family\n\
         with no series is left out whole. Series of a destroyed instance disappear\n\
         on the next poll. The whole exposition of every scenario is kept in\n\
         `tests/golden/`; a change to the contract shows there. The values of the\n\
         geometry and memory families (MIG mode, slices, profile capacity, GPU and\n\
         compute instances, memory) are checked against an oracle written on\n\
         NVIDIA's pynvml alone (`tests/oracle.rs`; the families it covers are listed\n\
         at the top of `tests/oracle/nvml_oracle.py`), over every scenario,\n\
         reconfigurations and reboots, and in the golden files. What a release may\n\
         change in these names, and how a rename is announced, is promised in\n\
         [docs/stability.md](stability.md); every change is listed in\n\
         [CHANGELOG.md](../CHANGELOG.md).\n\n\
         Coming from dcgm-exporter: [docs/migrating-from-dcgm-exporter.md](migrating-from-dcgm-exporter.md) \
         maps its series, labels and units to these and rewrites its common panels and alerts.\n\n\
         ## OTLP\n\n\
         Every Prometheus metric and its OTLP name, unit (UCUM, as OpenTelemetry\n\
         writes it; `{…}` units are annotations) and instrument. The last column is\n\
         the name an OTLP receiver with Prometheus naming gives it (Prometheus's own\n\
         receiver, or vmagent with `-opentelemetry.usePrometheusNaming`): dots become\n\
         underscores, the unit becomes a suffix (`_ratio` for a gauge of unit 1),\n\
         counters end in `_total`.\n\n\
         | Prometheus | OTLP | unit | instrument | Prometheus-style name |\n\
         |---|---|---|---|---|\n",
    );
    for m in metrics() {
        let mut otlp = code(m.otlp);
        let mut unit = m.unit.to_string();
        let mut instrument = m.kind.as_str().to_string();
        if let Some((count, count_unit)) = m.otlp_count {
            let _ = write!(otlp, ", `{count}`");
            let _ = write!(unit, ", {count_unit}");
            instrument = "counters: the histogram's sum and count".to_string();
        }
        for (k, v) in m.otlp_attributes {
            let _ = write!(otlp, " (`{k}` = `{v}`)");
        }
        if otlp.is_empty() {
            unit.clear();
            instrument.clear();
            otlp = if m.prometheus == "mig_exporter_build_info" {
                "resource `service.version`".to_string()
            } else {
                "not pushed".to_string()
            };
        }
        let style: Vec<String> = m.prometheus_style().iter().map(|n| code(n)).collect();
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} |",
            m.prometheus,
            otlp,
            unit,
            instrument,
            style.join(", "),
        );
    }
    out.push_str(
        "\nUp-down counters and gauges arrive in Prometheus as gauges; counters as\n\
         `_total` counters. All values are cumulative.\n\n\
         The labels become attributes. Every point about a GPU (one with `hw.id`)\n\
         also has `hw.type` = `gpu`, `hw.vendor` = `NVIDIA`, `hw.name` = `gpu0`…,\n\
         `hw.model` (the GPU's product name) and `hw.driver_version` (the NVIDIA\n\
         driver's), as OpenTelemetry's hardware semantic conventions recommend for GPU\n\
         metrics. An empty optional label (`gi` and `ci` of a whole GPU a pod holds)\n\
         is no attribute.\n\n\
         | label | attribute |\n\
         |---|---|\n",
    );
    for l in label::ALL {
        let attribute = if l.otlp.is_empty() {
            "not pushed".to_string()
        } else {
            code(l.otlp)
        };
        let _ = writeln!(out, "| `{}` | {attribute} |", l.prometheus);
    }
    out.push_str(
        "\n`tests/otlp.rs` checks these names against real pushes. Over gRPC, every\n\
         series of `/metrics` arrives under its OTLP name with the same value. Over\n\
         HTTP/protobuf, the push goes to vmagent, which writes to a real Prometheus;\n\
         every family arrives there under its Prometheus-style name, and queries\n\
         return the values of `/metrics`. (Debian builds Prometheus without its own\n\
         OTLP receiver, in every release, so the test cannot push to Prometheus\n\
         directly.)\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::source::{scenarios, sim};

    #[test]
    fn the_metric_reference_is_generated_from_the_table() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/metrics.md");
        let generated = reference();
        if std::env::var_os("UPDATE_DOCS").is_some() {
            std::fs::write(&path, &generated).unwrap();
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == generated,
            "docs/metrics.md differs from the contract; regenerate it with UPDATE_DOCS=1 cargo test --lib contract"
        );
    }

    #[test]
    fn names_are_unique_and_valid_in_both_worlds() {
        let mut prometheus = BTreeSet::new();
        for m in metrics() {
            assert!(
                prometheus.insert(m.prometheus.to_string()),
                "{} twice",
                m.prometheus
            );
            assert!(
                m.prometheus
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{}",
                m.prometheus
            );
            assert_eq!(
                m.prometheus.ends_with("_total"),
                m.kind == Kind::Counter,
                "{}: a counter's name, and only a counter's, ends in _total",
                m.prometheus
            );
            if !m.otlp.is_empty() {
                assert!(
                    m.otlp.starts_with("hw.") || m.otlp.starts_with("nvidia."),
                    "{}",
                    m.otlp
                );
                assert!(
                    m.otlp
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "._".contains(c)),
                    "{}",
                    m.otlp
                );
                assert!(m.unit.is_ascii() && m.unit.len() <= 63, "{}", m.unit);
                for l in m.labels {
                    assert!(
                        !l.otlp.is_empty(),
                        "{} pushes label {} without an attribute",
                        m.prometheus,
                        l.prometheus
                    );
                }
            }
        }
        // One OTLP name is shared only by metrics its fixed attributes tell apart.
        for a in metrics() {
            for b in metrics() {
                if a.prometheus != b.prometheus && !a.otlp.is_empty() && a.otlp == b.otlp {
                    assert!(
                        !a.otlp_attributes.is_empty() && a.otlp_attributes != b.otlp_attributes,
                        "{} and {} share {}",
                        a.prometheus,
                        b.prometheus,
                        a.otlp
                    );
                    assert_eq!((a.unit, a.kind, a.labels), (b.unit, b.kind, b.labels));
                }
            }
        }
        let labels: BTreeSet<&str> = label::ALL.iter().map(|l| l.prometheus).collect();
        assert_eq!(labels.len(), label::ALL.len());
        for m in metrics() {
            for l in m.labels {
                assert!(
                    label::ALL.contains(l),
                    "{} of {} is in the label table",
                    l.prometheus,
                    m.prometheus
                );
            }
        }
    }

    /// A snapshot with a series of nearly every metric: every scenario's
    /// GPUs, the simulator's sources and drift, a pod.
    fn snapshots() -> Vec<NodeSnapshot> {
        scenarios::SCENARIOS
            .iter()
            .map(|(name, _)| {
                let reading = sim::reading_from_world(&scenarios::build(name).unwrap());
                NodeSnapshot {
                    gpus: reading.gpus,
                    driver_version: reading.driver_version,
                    ..Default::default()
                }
            })
            .collect()
    }

    #[test]
    fn every_reader_emits_one_value_per_label_and_the_value_its_kind_takes() {
        let mut seen = 0;
        for s in snapshots() {
            for m in metrics() {
                let Some(read) = &m.read else { continue };
                read(&s, &mut |values, v| {
                    assert_eq!(values.len(), m.labels.len(), "{}", m.prometheus);
                    assert_eq!(
                        matches!(v, Value::Histogram(_)),
                        m.kind == Kind::Histogram,
                        "{}",
                        m.prometheus
                    );
                    seen += 1;
                });
            }
        }
        assert!(seen > 1000, "{seen}");
    }
}
