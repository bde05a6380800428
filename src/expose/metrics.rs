//! The metric contract: encodes a [`NodeSnapshot`] straight into Prometheus
//! text or OpenMetrics through a prometheus-client [`Collector`]; no global
//! registry, no metric objects kept between scrapes.

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeGaugeValue, EncodeLabelSet, EncodeLabelValue, LabelValueEncoder,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::model::{
    Activity, ComputeInstanceSnapshot, DeviceHealth, DriftFinding, EccErrorCounts, GpuInstanceSnapshot,
    GpuSnapshot, NodeSnapshot, SourceState,
};
use crate::poll::Published;

/// Exposition formats, chosen by the scraper's `Accept` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    PrometheusText,
    OpenMetrics,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::PrometheusText => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// OpenMetrics when the client asks for it (as Prometheus does), the
    /// classic text format otherwise (curl, browsers, promtool).
    pub fn negotiate(accept: Option<&str>) -> Format {
        let wants_openmetrics = accept.is_some_and(|accept| {
            accept.split(',').any(|part| {
                let mut params = part.split(';').map(str::trim);
                let media = params.next().unwrap_or("");
                let q = params
                    .find_map(|p| p.strip_prefix("q="))
                    .and_then(|q| q.parse::<f32>().ok())
                    .unwrap_or(1.0);
                media.eq_ignore_ascii_case("application/openmetrics-text") && q > 0.0
            })
        });
        if wants_openmetrics {
            Format::OpenMetrics
        } else {
            Format::PrometheusText
        }
    }
}

/// Builds the registry that `/metrics` encodes: one collector over the
/// published snapshot.
pub fn registry(published: Arc<Published>) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(SnapshotCollector { published }));
    registry
}

pub fn render(registry: &Registry, format: Format) -> Result<String, fmt::Error> {
    let mut out = String::with_capacity(64 * 1024);
    match format {
        Format::PrometheusText => prometheus_client::encoding::prometheus_text::encode(&mut out, registry)?,
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, registry)?,
    }
    Ok(out)
}

#[derive(Debug)]
pub struct SnapshotCollector {
    published: Arc<Published>,
}

impl Collector for SnapshotCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        encode_snapshot(&self.published.load(), &mut encoder)
    }
}

/// A label value: text or a number, so label sets need no allocation.
#[derive(Clone, Copy)]
enum Lv<'a> {
    S(&'a str),
    N(u32),
    L(u64),
}

impl EncodeLabelValue for Lv<'_> {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), fmt::Error> {
        match self {
            Lv::S(s) => EncodeLabelValue::encode(s, encoder),
            Lv::N(n) => EncodeLabelValue::encode(n, encoder),
            Lv::L(n) => EncodeLabelValue::encode(n, encoder),
        }
    }
}

type Labels<'a, const N: usize> = [(&'static str, Lv<'a>); N];

fn gpu_labels(g: &GpuSnapshot) -> Labels<'_, 2> {
    [("gpu", Lv::N(g.index)), ("gpu_uuid", Lv::S(&g.uuid))]
}

fn gi_labels<'a>(g: &'a GpuSnapshot, gi: &'a GpuInstanceSnapshot) -> Labels<'a, 4> {
    [
        ("gpu", Lv::N(g.index)),
        ("gpu_uuid", Lv::S(&g.uuid)),
        ("gi", Lv::N(gi.id)),
        ("profile", Lv::S(&gi.profile)),
    ]
}

fn ci_labels<'a>(
    g: &'a GpuSnapshot,
    gi: &'a GpuInstanceSnapshot,
    ci: &'a ComputeInstanceSnapshot,
) -> Labels<'a, 6> {
    [
        ("gpu", Lv::N(g.index)),
        ("gpu_uuid", Lv::S(&g.uuid)),
        ("gi", Lv::N(gi.id)),
        ("ci", Lv::N(ci.id)),
        ("profile", Lv::S(&gi.profile)),
        ("mig_uuid", Lv::S(&ci.mig_uuid)),
    ]
}

/// Encodes one gauge family; a family with no series is left out entirely.
fn gauge<L, V, I>(enc: &mut DescriptorEncoder, name: &str, help: &str, series: I) -> Result<(), fmt::Error>
where
    L: EncodeLabelSet,
    V: EncodeGaugeValue,
    I: IntoIterator<Item = (L, V)>,
{
    family(enc, name, help, MetricType::Gauge, series, |m, v| {
        m.encode_gauge(v)
    })
}

/// Encodes one integer counter family (`_total` is added); a family with no
/// series is left out entirely.
fn counter<L, I>(enc: &mut DescriptorEncoder, name: &str, help: &str, series: I) -> Result<(), fmt::Error>
where
    L: EncodeLabelSet,
    I: IntoIterator<Item = (L, u64)>,
{
    family(enc, name, help, MetricType::Counter, series, |m, v| {
        m.encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(v, None)
    })
}

/// The `error_type` values of ECC errors and remapped rows: one spelling.
pub(crate) const CORRECTED: &str = "corrected";
pub(crate) const UNCORRECTED: &str = "uncorrected";

/// The two ECC counter families: `nvidia_gpu_ecc_errors_<scope>_total`, its
/// help, and its (error_type, count) pairs. nvml.h (`nvmlEccCounterType_t`):
/// "Volatile counts are reset each time the driver loads", "Aggregate counts
/// persist across reboots (i.e. for the lifetime of the device)".
pub(crate) type EccScope = (
    &'static str,
    &'static str,
    fn(&EccErrorCounts) -> [(&'static str, u64); 2],
);
pub(crate) const ECC_SCOPES: [EccScope; 2] = [
    (
        "volatile",
        "ECC errors since the driver last loaded (NVML's volatile count), by error type.",
        |e| {
            [
                (CORRECTED, e.volatile_corrected),
                (UNCORRECTED, e.volatile_uncorrected),
            ]
        },
    ),
    (
        "aggregate",
        "ECC errors over the GPU's lifetime, across reboots (NVML's aggregate count), by error type.",
        |e| {
            [
                (CORRECTED, e.aggregate_corrected),
                (UNCORRECTED, e.aggregate_uncorrected),
            ]
        },
    ),
];

fn error_labels<'a>(g: &'a GpuSnapshot, kind: &'static str) -> Labels<'a, 3> {
    [
        ("gpu", Lv::N(g.index)),
        ("gpu_uuid", Lv::S(&g.uuid)),
        ("error_type", Lv::S(kind)),
    ]
}

fn family<L, V, I>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric_type: MetricType,
    series: I,
    write: impl Fn(&mut prometheus_client::encoding::MetricEncoder, &V) -> Result<(), fmt::Error>,
) -> Result<(), fmt::Error>
where
    L: EncodeLabelSet,
    I: IntoIterator<Item = (L, V)>,
{
    let mut series = series.into_iter().peekable();
    if series.peek().is_none() {
        return Ok(());
    }
    let mut metric = enc.encode_descriptor(name, help, None, metric_type)?;
    for (labels, value) in series {
        write(&mut metric.encode_family(&labels)?, &value)?;
    }
    Ok(())
}

/// One gauge family per [`Activity`] kind, `{prefix}_{stem}_ratio`, over the
/// entities `series` yields, its help saying what the level's ratio is over
/// (`scope`); a kind no entity has is left out.
fn activity_gauges<'a, L, I>(
    enc: &mut DescriptorEncoder,
    prefix: &str,
    scope: &str,
    series: impl Fn() -> I,
) -> Result<(), fmt::Error>
where
    L: EncodeLabelSet,
    I: Iterator<Item = (L, &'a Activity)>,
{
    for (stem, help, read) in Activity::KINDS {
        let mut values = series()
            .filter_map(|(labels, a)| Some((labels, read(a)?)))
            .peekable();
        if values.peek().is_some() {
            // Built once per family and scrape, not per series.
            gauge(
                enc,
                &format!("{prefix}_{stem}_ratio"),
                &Activity::help(help, scope),
                values,
            )?;
        }
    }
    Ok(())
}

/// Every GPU instance with its GPU (also what the OTLP families walk).
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

fn flag(b: bool) -> u32 {
    u32::from(b)
}

pub fn encode_snapshot(s: &NodeSnapshot, enc: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
    encode_gpus(s, enc)?;
    encode_health(s, enc)?;
    encode_profiles(s, enc)?;
    encode_instances(s, enc)?;
    encode_drift(s, enc)?;
    encode_pods(s, enc)?;
    encode_exporter(s, enc)
}

fn encode_gpus(s: &NodeSnapshot, enc: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
    let driver = s.driver_version.as_deref().unwrap_or("");
    gauge(
        enc,
        "nvidia_gpu_info",
        "Physical GPU facts; always 1.",
        s.gpus.iter().map(|g| {
            let labels: Labels<5> = [
                ("gpu", Lv::N(g.index)),
                ("gpu_uuid", Lv::S(&g.uuid)),
                ("name", Lv::S(&g.name)),
                ("pci_bus_id", Lv::S(&g.pci_bus_id)),
                ("driver_version", Lv::S(driver)),
            ];
            (labels, 1u32)
        }),
    )?;
    gauge(
        enc,
        "nvidia_gpu_memory_total_bytes",
        "Framebuffer of the physical GPU.",
        s.gpus
            .iter()
            .filter_map(|g| Some((gpu_labels(g), g.memory_total_bytes?))),
    )?;
    gauge(
        enc,
        "nvidia_mig_mode_current",
        "1 if MIG mode is in force on the GPU.",
        s.gpus.iter().map(|g| (gpu_labels(g), flag(g.mig_current))),
    )?;
    gauge(
        enc,
        "nvidia_mig_mode_pending",
        "1 if MIG mode will be in force after the next GPU reset; differs from current while a change waits.",
        s.gpus.iter().map(|g| (gpu_labels(g), flag(g.mig_pending))),
    )?;
    gauge(
        enc,
        "nvidia_mig_compute_slices_capacity",
        "SM slices the GPU divides into (7, or 4 on A30 and RTX PRO 6000).",
        s.gpus.iter().map(|g| (gpu_labels(g), g.compute_slices_capacity)),
    )?;
    gauge(
        enc,
        "nvidia_mig_compute_slices_used",
        "SM slices held by GPU instances.",
        s.gpus.iter().map(|g| (gpu_labels(g), g.compute_slices_used)),
    )?;
    gauge(
        enc,
        "nvidia_mig_memory_slices_capacity",
        "Memory placement slots of the GPU (8; 4 on A30; 12 on RTX PRO 6000, 3 per quarter).",
        s.gpus.iter().map(|g| (gpu_labels(g), g.memory_slices_capacity)),
    )?;
    gauge(
        enc,
        "nvidia_mig_memory_slices_used",
        "Memory placement slots held by GPU instances.",
        s.gpus.iter().map(|g| (gpu_labels(g), g.memory_slices_used)),
    )
}

/// One gauge per GPU for a health reading the source may not have.
fn health_gauge<V: EncodeGaugeValue>(
    s: &NodeSnapshot,
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    read: impl Fn(&DeviceHealth) -> Option<V>,
) -> Result<(), fmt::Error> {
    gauge(
        enc,
        name,
        help,
        s.gpus
            .iter()
            .filter_map(|g| Some((gpu_labels(g), read(&g.health)?))),
    )
}

fn encode_health(s: &NodeSnapshot, enc: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
    health_gauge(
        s,
        enc,
        "nvidia_gpu_persistence_mode",
        "1 if persistence mode is on; off lets the driver tear MIG state down when the last client exits.",
        |h| h.persistence_mode.map(flag),
    )?;
    health_gauge(
        s,
        enc,
        "nvidia_gpu_ecc_mode_current",
        "1 if ECC is enabled.",
        |h| h.ecc_mode_current.map(flag),
    )?;
    health_gauge(
        s,
        enc,
        "nvidia_gpu_ecc_mode_pending",
        "1 if ECC is enabled after the next reset.",
        |h| h.ecc_mode_pending.map(flag),
    )?;
    // Two families, not one with a scope label, so that `sum()` over either
    // never adds a count to the count it is part of.
    for (scope, help, read) in ECC_SCOPES {
        counter(
            enc,
            &format!("nvidia_gpu_ecc_errors_{scope}"),
            help,
            s.gpus
                .iter()
                .filter_map(|g| g.health.ecc_errors.map(|e| (g, e)))
                .flat_map(|(g, e)| read(&e).map(|(kind, n)| (error_labels(g, kind), n))),
        )?;
    }
    // A counter: nvml.h (13.3, nvmlDeviceGetRemappedRows) reports the "number
    // of rows remapped due to correctable / uncorrectable errors", and a
    // remapping is permanent ("a reset will be required to actually remap the
    // row"), so the counts only grow. unverified: that they fall only when
    // the remapping table is cleared by a field repair; nvml.h says nothing of
    // a decrease.
    counter(
        enc,
        "nvidia_gpu_remapped_rows",
        "Memory rows the GPU has remapped, by the error that caused it.",
        s.gpus
            .iter()
            .filter_map(|g| g.health.remapped_rows.map(|r| (g, r)))
            .flat_map(|(g, r)| {
                [
                    (CORRECTED, u64::from(r.correctable)),
                    (UNCORRECTED, u64::from(r.uncorrectable)),
                ]
                .map(|(kind, n)| (error_labels(g, kind), n))
            }),
    )?;
    health_gauge(
        s,
        enc,
        "nvidia_gpu_row_remapping_pending",
        "1 if a row remapping waits for a GPU reset.",
        |h| h.remapped_rows.map(|r| flag(r.pending)),
    )?;
    health_gauge(
        s,
        enc,
        "nvidia_gpu_row_remapping_failed",
        "1 if a row remapping failed.",
        |h| h.remapped_rows.map(|r| flag(r.failure)),
    )?;
    health_gauge(s, enc, "nvidia_gpu_power_watts", "Power draw of the GPU.", |h| {
        h.power_watts
    })?;
    health_gauge(
        s,
        enc,
        "nvidia_gpu_power_limit_watts",
        "Enforced power limit.",
        |h| h.power_limit_watts,
    )?;
    health_gauge(
        s,
        enc,
        "nvidia_gpu_temperature_celsius",
        "GPU core temperature.",
        |h| h.temperature_celsius,
    )?;
    health_gauge(s, enc, "nvidia_gpu_sm_clock_hz", "SM clock.", |h| h.sm_clock_hz)?;
    health_gauge(
        s,
        enc,
        "nvidia_gpu_utilization_ratio",
        "Whole-GPU utilization; absent while MIG is enabled (NVML does not report it then).",
        |h| h.utilization_ratio,
    )?;
    health_gauge(
        s,
        enc,
        "nvidia_gpu_memory_used_bytes",
        "Framebuffer in use on the whole GPU.",
        |h| h.memory_used_bytes,
    )?;
    health_gauge(
        s,
        enc,
        "nvidia_gpu_memory_free_bytes",
        "Framebuffer free on the whole GPU.",
        |h| h.memory_free_bytes,
    )?;
    activity_gauges(enc, "nvidia_gpu", Activity::GPU_SCOPE, || {
        s.gpus.iter().map(|g| (gpu_labels(g), &g.health.activity))
    })?;
    family(
        enc,
        "nvidia_gpu_energy_joules",
        "Energy consumed since the driver loaded (read on the slow cadence).",
        MetricType::Counter,
        s.gpus
            .iter()
            .filter_map(|g| Some((gpu_labels(g), g.health.energy_joules?))),
        |m, v| m.encode_counter::<prometheus_client::encoding::NoLabelSet, _, f64>(v, None),
    )?;
    health_gauge(
        s,
        enc,
        "nvidia_gpu_pcie_tx_bytes_per_second",
        "PCIe transmit throughput (slow cadence, when enabled).",
        |h| h.pcie_tx_bytes_per_second,
    )?;
    health_gauge(
        s,
        enc,
        "nvidia_gpu_pcie_rx_bytes_per_second",
        "PCIe receive throughput (slow cadence, when enabled).",
        |h| h.pcie_rx_bytes_per_second,
    )?;
    counter(
        enc,
        "nvidia_gpu_xid_errors",
        "XID errors the GPU raised since the exporter started, by XID code; the codes the shipped alerts watch are 0 until the first one.",
        s.gpus.iter().flat_map(|g| {
            g.health.xid_counts().map(move |(xid, n)| {
                let labels: Labels<3> = [
                    ("gpu", Lv::N(g.index)),
                    ("gpu_uuid", Lv::S(&g.uuid)),
                    ("xid", Lv::L(xid)),
                ];
                (labels, n)
            })
        }),
    )
}

fn encode_profiles(s: &NodeSnapshot, enc: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
    let profiles = || {
        s.gpus.iter().flat_map(|g| {
            g.profiles.iter().map(move |p| {
                let labels: Labels<4> = [
                    ("gpu", Lv::N(g.index)),
                    ("gpu_uuid", Lv::S(&g.uuid)),
                    ("profile", Lv::S(&p.name)),
                    ("profile_id", Lv::N(p.id)),
                ];
                (labels, p)
            })
        })
    };
    gauge(
        enc,
        "nvidia_mig_profile_max_instances",
        "Instances of this GPU-instance profile that fit an empty GPU.",
        profiles().map(|(l, p)| (l, p.max_instances)),
    )?;
    gauge(
        enc,
        "nvidia_mig_profile_remaining_instances",
        "Instances of this profile that could still be created next to the existing ones (NVML remaining capacity).",
        profiles().map(|(l, p)| (l, p.remaining_instances)),
    )
}

fn encode_instances(s: &NodeSnapshot, enc: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
    gauge(
        enc,
        "nvidia_mig_gpu_instance_info",
        "A GPU instance (GI) with its profile and placement; always 1.",
        gis(s).map(|(g, gi)| {
            let labels: Labels<7> = [
                ("gpu", Lv::N(g.index)),
                ("gpu_uuid", Lv::S(&g.uuid)),
                ("gi", Lv::N(gi.id)),
                ("profile", Lv::S(&gi.profile)),
                ("profile_id", Lv::N(gi.profile_id)),
                ("placement_start", Lv::N(gi.placement_start)),
                ("placement_size", Lv::N(gi.placement_size)),
            ];
            (labels, 1u32)
        }),
    )?;
    gauge(
        enc,
        "nvidia_mig_gpu_instance_compute_slices",
        "SM slices of the GPU instance.",
        gis(s).map(|(g, gi)| (gi_labels(g, gi), gi.compute_slices)),
    )?;
    gauge(
        enc,
        "nvidia_mig_gpu_instance_compute_instances",
        "Compute instances inside the GPU instance; 0 means CUDA cannot use it.",
        gis(s).map(|(g, gi)| (gi_labels(g, gi), gi.compute_instances.len() as u64)),
    )?;
    gauge(
        enc,
        "nvidia_mig_gpu_instance_memory_total_bytes",
        "Framebuffer of the GPU instance.",
        gis(s).map(|(g, gi)| (gi_labels(g, gi), gi.memory_total_bytes)),
    )?;
    gauge(
        enc,
        "nvidia_mig_gpu_instance_memory_used_bytes",
        "Framebuffer in use in the GPU instance.",
        gis(s).filter_map(|(g, gi)| Some((gi_labels(g, gi), gi.memory_used_bytes?))),
    )?;
    gauge(
        enc,
        "nvidia_mig_gpu_instance_memory_free_bytes",
        "Framebuffer free in the GPU instance.",
        gis(s).filter_map(|(g, gi)| Some((gi_labels(g, gi), gi.memory_free_bytes?))),
    )?;
    activity_gauges(
        enc,
        "nvidia_mig_gpu_instance",
        Activity::GPU_INSTANCE_SCOPE,
        || gis(s).map(|(g, gi)| (gi_labels(g, gi), &gi.activity)),
    )?;
    gauge(
        enc,
        "nvidia_mig_compute_instance_info",
        "A compute instance (CI), the unit CUDA sees as a MIG device; always 1.",
        cis(s).map(|(g, gi, ci)| {
            let labels: Labels<10> = [
                ("gpu", Lv::N(g.index)),
                ("gpu_uuid", Lv::S(&g.uuid)),
                ("gi", Lv::N(gi.id)),
                ("ci", Lv::N(ci.id)),
                ("profile", Lv::S(&gi.profile)),
                ("ci_profile", Lv::S(&ci.profile)),
                ("ci_profile_id", Lv::N(ci.profile_id)),
                ("placement_start", Lv::N(ci.placement_start)),
                ("placement_size", Lv::N(ci.placement_size)),
                ("mig_uuid", Lv::S(&ci.mig_uuid)),
            ];
            (labels, 1u32)
        }),
    )?;
    activity_gauges(
        enc,
        "nvidia_mig_compute_instance",
        Activity::COMPUTE_INSTANCE_SCOPE,
        || cis(s).map(|(g, gi, ci)| (ci_labels(g, gi, ci), &ci.activity)),
    )
}

fn encode_pods(s: &NodeSnapshot, enc: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
    let id = |n: Option<u32>| n.map(|n| n.to_string()).unwrap_or_default();
    let pods: Vec<_> = s.pods.iter().map(|p| (p, id(p.gi), id(p.ci))).collect();
    gauge(
        enc,
        "nvidia_mig_instance_pod_info",
        "A MIG device (or, with gi and ci empty, a whole GPU) the kubelet allocated to a container; always 1.",
        pods.iter().map(|(p, gi, ci)| {
            let labels: Labels<7> = [
                ("mig_uuid", Lv::S(&p.mig_uuid)),
                ("gpu", Lv::N(p.gpu)),
                ("gi", Lv::S(gi)),
                ("ci", Lv::S(ci)),
                ("namespace", Lv::S(&p.namespace)),
                ("pod", Lv::S(&p.pod)),
                ("container", Lv::S(&p.container)),
            ];
            (labels, 1u32)
        }),
    )
}

fn finding_labels(f: &DriftFinding) -> Labels<'_, 3> {
    [
        ("gpu", Lv::N(f.gpu)),
        ("gpu_uuid", Lv::S(&f.gpu_uuid)),
        ("reason", Lv::S(f.reason.as_str())),
    ]
}

fn encode_drift(s: &NodeSnapshot, enc: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
    let d = &s.drift;
    gauge(
        enc,
        "nvidia_mig_drift",
        "1 for each drift finding: the GPU's MIG geometry is not what it should be, and reason says how \
         (mig_mode_lost, geometry_lost, profile_mismatch, gi_without_ci, mig_mode_pending, unexpected_mig, changed_since_reboot, advertised_mismatch, advertised_unhealthy).",
        d.findings.iter().map(|f| (finding_labels(f), 1u32)),
    )?;
    gauge(
        enc,
        "nvidia_mig_drift_since_timestamp_seconds",
        "Unix time of the first poll that found the drift; kept while it persists.",
        d.findings.iter().map(|f| (finding_labels(f), f.since_seconds)),
    )?;
    gauge(
        enc,
        "nvidia_mig_expected_instances",
        "GPU instances of the profile the desired MIG config wants on the GPU.",
        d.expected.iter().map(|e| {
            let labels: Labels<3> = [
                ("gpu", Lv::N(e.gpu)),
                ("gpu_uuid", Lv::S(&e.gpu_uuid)),
                ("profile", Lv::S(&e.profile)),
            ];
            (labels, e.count)
        }),
    )?;
    gauge(
        enc,
        "nvidia_mig_geometry_last_change_timestamp_seconds",
        "Unix time the GPU's MIG geometry (mode, GPU and compute instances) was first seen as it is now.",
        d.geometry_changes.iter().map(|c| {
            let labels: Labels<2> = [("gpu", Lv::N(c.gpu)), ("gpu_uuid", Lv::S(&c.gpu_uuid))];
            (labels, c.changed_at_seconds)
        }),
    )
}

fn encode_exporter(s: &NodeSnapshot, enc: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
    let build: Labels<2> = [
        ("version", Lv::S(env!("CARGO_PKG_VERSION"))),
        ("revision", Lv::S(crate::REVISION)),
    ];
    gauge(
        enc,
        "mig_exporter_build_info",
        "The exporter's build; always 1.",
        [(build, 1u32)],
    )?;
    gauge(
        enc,
        "mig_exporter_simulated",
        "1 if the node is the built-in simulator's (--simulate, --world, or a start without --nvml \
         where no NVIDIA driver answered), not hardware; 0 with --nvml.",
        [([] as Labels<0>, flag(s.simulated))],
    )?;
    let source = |h: &crate::model::SourceHealth| -> Labels<'static, 1> { [("source", Lv::S(h.name))] };
    gauge(
        enc,
        "mig_exporter_source_info",
        "Each source the exporter runs; always 1. state: enabled (it should work: see mig_exporter_source_up), \
         unsupported (the hardware cannot have it) or disabled (not set up on this node).",
        s.sources.iter().map(|h| {
            let labels: Labels<2> = [("source", Lv::S(h.name)), ("state", Lv::S(h.state.as_str()))];
            (labels, 1u32)
        }),
    )?;
    // Only a source that should work can be down: one that does not apply
    // here has no source_up, so no alert on it can fire.
    gauge(
        enc,
        "mig_exporter_source_up",
        "1 if the source's last poll succeeded; only for enabled sources.",
        s.sources
            .iter()
            .filter(|h| h.state == SourceState::Enabled)
            .map(|h| (source(h), flag(h.up))),
    )?;
    gauge(
        enc,
        "mig_exporter_last_successful_poll_timestamp_seconds",
        "Unix time of the source's last successful poll.",
        s.sources
            .iter()
            .filter_map(|h| Some((source(h), h.last_success_seconds?))),
    )?;
    family(
        enc,
        "mig_exporter_poll_errors",
        "Polls of the source that failed.",
        MetricType::Counter,
        s.sources.iter().map(|h| (source(h), h.errors_total)),
        |m, v| m.encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(v, None),
    )?;
    family(
        enc,
        "mig_exporter_poll_duration_seconds",
        "Time one poll of the source took.",
        MetricType::Histogram,
        s.sources.iter().map(|h| (source(h), &h.poll_duration)),
        |m, h| {
            m.encode_histogram::<prometheus_client::encoding::NoLabelSet>(h.sum, h.count, &h.buckets(), None)
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ALERTED_XIDS;
    use crate::source::{scenarios, sim};

    fn exposition(gpus: Vec<GpuSnapshot>) -> String {
        let published = Arc::new(Published::default());
        published.publish(NodeSnapshot {
            gpus,
            ..Default::default()
        });
        render(&registry(published), Format::PrometheusText).unwrap()
    }

    #[test]
    fn ecc_scopes_are_two_families_remapped_rows_count_and_one_spelling() {
        let mut gpus = sim::reading_from_world(&scenarios::build("h100-mixed").unwrap()).gpus;
        gpus[0].health.ecc_errors = Some(EccErrorCounts {
            volatile_corrected: 1,
            volatile_uncorrected: 2,
            aggregate_corrected: 30,
            aggregate_uncorrected: 40,
        });
        if let Some(r) = gpus[0].health.remapped_rows.as_mut() {
            r.correctable = 5;
            r.uncorrectable = 6;
        }
        let n = gpus.len();
        let text = exposition(gpus);
        let uuid = {
            let line = text
                .lines()
                .find(|l| l.starts_with("nvidia_gpu_info{gpu=\"0\""))
                .unwrap();
            line.split("gpu_uuid=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
                .to_string()
        };
        for (family, corrected, uncorrected) in [
            ("nvidia_gpu_ecc_errors_volatile_total", 1, 2),
            ("nvidia_gpu_ecc_errors_aggregate_total", 30, 40),
            ("nvidia_gpu_remapped_rows_total", 5, 6),
        ] {
            assert_eq!(
                series(&text, family).len(),
                2 * n,
                "{family}: two error types per GPU"
            );
            assert!(
                text.contains(&format!("# TYPE {family} counter\n")),
                "{family} is a counter"
            );
            for (kind, value) in [("corrected", corrected), ("uncorrected", uncorrected)] {
                let line = format!("{family}{{gpu=\"0\",gpu_uuid=\"{uuid}\",error_type=\"{kind}\"}} {value}");
                assert!(text.lines().any(|l| l == line), "{line}");
            }
        }
        assert!(!text.contains("counter=\""), "no scope label left");
        assert!(!text.contains("correctable"), "one spelling of error_type");
        assert!(!text.contains("nvidia_gpu_ecc_errors_total"));
    }

    #[test]
    fn alerted_xids_are_zero_where_xids_are_read_and_absent_where_not() {
        let mut gpus = sim::reading_from_world(&scenarios::build("h100-mixed").unwrap()).gpus;
        gpus[0].health.xid_errors = vec![(13, 4), (79, 2)];
        gpus[1].health.xid_counted = false;
        gpus[1].health.xid_errors = vec![(31, 1)];
        let n = gpus.len();
        let text = exposition(gpus);
        let xids = |gpu: &str| -> Vec<(String, String)> {
            text.lines()
                .filter(|l| l.starts_with(&format!("nvidia_gpu_xid_errors_total{{gpu=\"{gpu}\",")))
                .map(|l| {
                    let code = l.split("xid=\"").nth(1).unwrap().split('"').next().unwrap();
                    (code.to_string(), l.rsplit(' ').next().unwrap().to_string())
                })
                .collect()
        };
        let mut want: Vec<(u64, u64)> = ALERTED_XIDS
            .iter()
            .map(|&x| (x, u64::from(x == 79) * 2))
            .collect();
        want.push((13, 4));
        want.sort();
        let want: Vec<(String, String)> = want.iter().map(|(x, v)| (x.to_string(), v.to_string())).collect();
        assert_eq!(xids("0"), want, "seen codes kept, alerted codes at 0, by code");
        assert_eq!(
            xids("1"),
            [("31".to_string(), "1".to_string())],
            "a GPU whose XIDs are not read gets no made-up zeros"
        );
        assert_eq!(
            series(&text, "nvidia_gpu_xid_errors_total").len(),
            (n - 1) * ALERTED_XIDS.len() + 2
        );
        // No XID reading at all (a source without health): no family.
        assert!(!exposition(Vec::new()).contains("nvidia_gpu_xid_errors"));
        let mut bare = sim::reading_from_world(&scenarios::build("h100-mixed").unwrap()).gpus;
        for g in &mut bare {
            g.health = DeviceHealth::default();
        }
        assert!(!exposition(bare).contains("nvidia_gpu_xid_errors"));
    }

    #[test]
    fn the_simulated_series_says_whether_the_node_is_made_up() {
        for simulated in [true, false] {
            let published = Arc::new(Published::default());
            published.publish(NodeSnapshot {
                simulated,
                ..Default::default()
            });
            let text = render(&registry(published), Format::PrometheusText).unwrap();
            let line = format!("mig_exporter_simulated {}", u32::from(simulated));
            assert!(text.lines().any(|l| l == line), "{line} in {text}");
        }
    }

    /// The series of one family: its lines up to the value.
    fn series<'a>(text: &'a str, family: &str) -> Vec<&'a str> {
        let prefix = format!("{family}{{");
        text.lines()
            .filter(|l| l.starts_with(&prefix))
            .filter_map(|l| l.rsplit_once(' ').map(|(s, _)| s))
            .collect()
    }

    #[test]
    fn every_activity_kind_is_encoded_at_every_level_and_only_when_read() {
        let mut gpus = sim::reading_from_world(&scenarios::build("h100-mixed").unwrap()).gpus;
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
        let g = &mut gpus[0];
        g.health.activity = full;
        g.health.memory_free_bytes = Some(1 << 30);
        let gi = &mut g.gpu_instances[0];
        gi.activity = full;
        gi.memory_free_bytes = Some(1 << 20);
        gi.compute_instances[0].activity = full;
        let text = exposition(gpus);

        for (stem, help, read) in Activity::KINDS {
            let value = read(&full).unwrap();
            let gpu = format!("nvidia_gpu_{stem}_ratio");
            assert_eq!(series(&text, &gpu).len(), 1, "{gpu}");
            assert!(
                text.contains(&format!("# HELP {gpu} {help} Over the whole GPU.\n")),
                "{gpu}"
            );
            assert!(text.contains(&format!("{gpu}{{gpu=\"0\",gpu_uuid=\"")), "{gpu}");
            assert!(text
                .lines()
                .any(|l| l.starts_with(&gpu) && l.ends_with(&format!(" {value}"))));
            let gi = format!("nvidia_mig_gpu_instance_{stem}_ratio");
            // DCGM normalises a GI over all its slices (NVIDIA/DCGM issue 138).
            assert!(
                text.contains(&format!(
                    "# HELP {gi} {help} Over all of the GPU instance's slices, as DCGM normalises it: \
                     below 1 while its compute instances, or their work, leave some of its slices idle.\n"
                )),
                "{gi}"
            );
            // The simulator reads DRAM activity on every GI.
            let gis = series(&text, &gi);
            assert!(!gis.is_empty(), "{gi}");
            assert!(
                gis[0].contains(",gi=\"") && gis[0].contains(",profile=\""),
                "{gi}"
            );
            let ci = format!("nvidia_mig_compute_instance_{stem}_ratio");
            assert!(
                text.contains(&format!(
                    "# HELP {ci} {help} Over the compute instance's own slices.\n"
                )),
                "{ci}"
            );
            let cis = series(&text, &ci);
            assert!(!cis.is_empty(), "{ci}");
            assert!(
                cis.iter()
                    .all(|s| s.contains(",ci=\"") && s.contains(",mig_uuid=\"")),
                "{ci}"
            );
        }
        assert_eq!(
            series(&text, "nvidia_mig_gpu_instance_gr_engine_active_ratio").len(),
            1
        );
        assert_eq!(
            series(&text, "nvidia_mig_compute_instance_fp64_active_ratio").len(),
            1
        );
        assert_eq!(series(&text, "nvidia_gpu_memory_free_bytes").len(), 1);
        assert_eq!(
            series(&text, "nvidia_mig_gpu_instance_memory_free_bytes").len(),
            1
        );

        let plain = exposition(sim::reading_from_world(&scenarios::build("h100-mixed").unwrap()).gpus);
        for family in [
            "nvidia_gpu_sm_active_ratio",
            "nvidia_mig_gpu_instance_sm_active_ratio",
            "nvidia_mig_compute_instance_dram_active_ratio",
            "nvidia_gpu_memory_free_bytes",
        ] {
            assert!(!plain.contains(family), "{family} has no values and is left out");
        }
    }
}
