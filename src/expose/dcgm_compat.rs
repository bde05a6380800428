//! `--compat.dcgm-exporter`: the series a MIG user's dcgm-exporter dashboards
//! and alerts read, under dcgm-exporter's names, labels and units, served on
//! `/metrics` beside ours while a team moves over (Prometheus only: the OTLP
//! push never carries them). Transitional: see
//! `docs/migrating-from-dcgm-exporter.md`.
//!
//! Everything comes straight from the [`NodeSnapshot`], never from our own
//! metric families, and a value the snapshot lacks is left out, never made up.
//!
//! What dcgm-exporter does, and where its source says so (NVIDIA/dcgm-exporter,
//! release 4.5.3-4.8.2, and NVIDIA/DCGM):
//!
//! * Entities. With its default `--devices f` (flex) it watches, per GPU, each
//!   GPU instance, or the GPU itself where it has none
//!   (`internal/pkg/devicemonitoring/device_monitoring.go`,
//!   `monitorAllGPUInstances` with `addFlexibly`); compute instances never.
//! * Labels (`internal/pkg/rendermetrics/render_metrics.go`, `gpuMetricsFormat`,
//!   filled in `internal/pkg/collector/gpu_collector.go`, `toMetric`): `gpu`
//!   (DCGM's GPU id), `UUID` (the GPU's, also on a GPU instance's series),
//!   `pci_bus_id`, `device` (`nvidia<gpu>`), `modelName`; on a GPU instance
//!   `GPU_I_PROFILE` (the instance's profile name) and `GPU_I_ID` (NVML's GPU
//!   instance id, `NvmlInstanceId`); `Hostname` when not empty (renamed
//!   `hostname` only after that release, change 655); then the label columns
//!   of `etc/default-counters.csv` (`DCGM_FI_DRIVER_VERSION`) and the
//!   attributes: `err_code` on XID, and `pod`, `namespace`, `container` where
//!   the kubelet allocated the GPU, or a MIG device of the GPU instance, to a
//!   container (`internal/pkg/transformation/kubernetes.go`, `Process` and
//!   `toDeviceToPod`: one pod per device, the last one listed).
//! * `Hostname`: `NODE_NAME`, else the host's name
//!   (`internal/pkg/hostname/hostname.go`, `getLocalHostname`). Here:
//!   `--kubernetes.node-name`, else `NODE_NAME`, else the host name the
//!   source read.
//! * Values: a blank DCGM value is skipped, so the series is absent
//!   (`gpu_collector.go`, `toString`). A field DCGM keeps per GPU, asked of a
//!   GPU instance, is the parent GPU's (NVIDIA/DCGM
//!   `dcgmlib/src/DcgmCacheManager.cpp`, `SetPracticalEntityInfo`: the
//!   practical entity of a GPU-level field is the GPU); the framebuffer is
//!   read from the instance's own NVML device (`ReadAndCacheFBMemoryInfo`,
//!   `nvmlDeviceGetMemoryInfo` on it) and profiling fields are the GPU
//!   instance's.

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue, GaugeValueEncoder};
use prometheus_client::metrics::MetricType;

use crate::model::{Activity, GpuInstanceSnapshot, GpuSnapshot, NodeSnapshot};
use crate::poll::Published;

/// Bytes in a MiB, DCGM's framebuffer unit.
const MIB: u64 = 1024 * 1024;

/// Encodes the dcgm-exporter series of the published snapshot.
#[derive(Debug)]
pub struct DcgmCompatCollector {
    published: Arc<Published>,
    /// `Hostname`'s value when the flags or `NODE_NAME` name the node; else
    /// the snapshot's host name.
    node_name: Option<String>,
}

impl DcgmCompatCollector {
    pub fn new(published: Arc<Published>, node_name: Option<String>) -> Self {
        DcgmCompatCollector {
            published,
            node_name: node_name.filter(|n| !n.is_empty()),
        }
    }
}

impl Collector for DcgmCompatCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let snapshot = self.published.load();
        encode(&snapshot, self.node_name.as_deref(), &mut encoder)
    }
}

/// A value as DCGM types the field: an integer (`DCGM_FT_INT64`) or a double.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Int(u64),
    Float(f64),
}

impl EncodeGaugeValue for Value {
    fn encode(&self, encoder: &mut GaugeValueEncoder) -> Result<(), fmt::Error> {
        match self {
            Value::Int(v) => EncodeGaugeValue::encode(v, encoder),
            Value::Float(v) => EncodeGaugeValue::encode(v, encoder),
        }
    }
}

/// MiB, rounded down as DCGM divides NVML's bytes
/// (`DcgmCacheManager::ReadAndCacheFBMemoryInfo`: `used / (1024 * 1024)`).
pub fn bytes_to_mib(bytes: u64) -> u64 {
    bytes / MIB
}

/// A non-negative finite reading rounded to an integer, `None` otherwise:
/// DCGM's integer fields hold whole numbers and NVML gives whole MHz, °C and
/// percent, so rounding only undoes float error.
fn whole(v: f64) -> Option<u64> {
    (v.is_finite() && v >= 0.0).then(|| v.round() as u64)
}

/// MHz from Hz (`DCGM_FI_DEV_SM_CLOCK` is NVML's `NVML_CLOCK_SM` in MHz).
pub fn hz_to_mhz(hz: f64) -> Option<u64> {
    whole(hz / 1e6)
}

/// Percent from a ratio 0–1 (`DCGM_FI_DEV_GPU_UTIL` is an integer percent).
pub fn ratio_to_percent(ratio: f64) -> Option<u64> {
    whole(ratio * 100.0)
}

/// Millijoules from joules (`DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION` is mJ).
pub fn joules_to_millijoules(joules: f64) -> Option<u64> {
    whole(joules * 1000.0)
}

/// Whole degrees Celsius (`DCGM_FI_DEV_GPU_TEMP` is an integer).
pub fn whole_celsius(celsius: f64) -> Option<u64> {
    whole(celsius)
}

/// A ratio as it is (the `DCGM_FI_PROF_*` fields are ratios 0–1, not percent).
fn ratio(v: Option<f64>) -> Option<Value> {
    v.filter(|r| r.is_finite()).map(Value::Float)
}

/// One entity dcgm-exporter watches: a GPU without GPU instances, or one GPU
/// instance of a GPU.
struct Entity<'a> {
    gpu: &'a GpuSnapshot,
    gi: Option<&'a GpuInstanceSnapshot>,
    labels: Vec<(&'static str, String)>,
}

impl Entity<'_> {
    /// The GPU instance's activity, or the GPU's.
    fn activity(&self) -> &Activity {
        self.gi.map_or(&self.gpu.health.activity, |gi| &gi.activity)
    }
}

/// The labels of an entity, in dcgm-exporter's order: the device's, then
/// `DCGM_FI_DRIVER_VERSION`, then the attributes (`extra`, and the pod's),
/// sorted by name as its template's range over a map gives them.
fn labels(
    s: &NodeSnapshot,
    hostname: &str,
    g: &GpuSnapshot,
    gi: Option<&GpuInstanceSnapshot>,
    extra: &[(&'static str, String)],
) -> Vec<(&'static str, String)> {
    let mut labels = vec![
        ("gpu", g.index.to_string()),
        ("UUID", g.uuid.clone()),
        ("pci_bus_id", g.pci_bus_id.clone()),
        ("device", format!("nvidia{}", g.index)),
        ("modelName", g.name.clone()),
    ];
    if let Some(gi) = gi {
        labels.push(("GPU_I_PROFILE", gi.profile.clone()));
        labels.push(("GPU_I_ID", gi.id.to_string()));
    }
    if !hostname.is_empty() {
        labels.push(("Hostname", hostname.to_string()));
    }
    if let Some(driver) = s.driver_version.as_deref().filter(|d| !d.is_empty()) {
        labels.push(("DCGM_FI_DRIVER_VERSION", driver.to_string()));
    }
    let mut attributes = extra.to_vec();
    // The device's container: the GPU instance's MIG devices for an instance,
    // the whole GPU (no GPU instance) for a GPU; the last one, as in a map.
    let owner = s
        .pods
        .iter()
        .rfind(|p| p.gpu == g.index && p.gi == gi.map(|gi| gi.id));
    if let Some(p) = owner {
        attributes.push(("pod", p.pod.clone()));
        attributes.push(("namespace", p.namespace.clone()));
        attributes.push(("container", p.container.clone()));
    }
    attributes.sort_by_key(|(name, _)| *name);
    labels.extend(attributes);
    labels
}

/// The entities flex mode watches, in GPU order.
fn entities<'a>(s: &'a NodeSnapshot, hostname: &str) -> Vec<Entity<'a>> {
    let mut out = Vec::new();
    for g in &s.gpus {
        if g.gpu_instances.is_empty() {
            out.push(Entity {
                gpu: g,
                gi: None,
                labels: labels(s, hostname, g, None, &[]),
            });
        }
        for gi in &g.gpu_instances {
            out.push(Entity {
                gpu: g,
                gi: Some(gi),
                labels: labels(s, hostname, g, Some(gi), &[]),
            });
        }
    }
    out
}

/// A field: its dcgm-exporter name, our help, the Prometheus type, and its
/// value on an entity.
type Field = (
    &'static str,
    &'static str,
    MetricType,
    fn(&Entity) -> Option<Value>,
);

/// DCGM's counters (`counter` in `etc/default-counters.csv`) are typed
/// `unknown` here: a `counter` family's samples must end in `_total`, which
/// would rename them, and rate() reads them the same either way.
const COUNTER: MetricType = MetricType::Unknown;

/// Every field served, in `etc/default-counters.csv` order; the help says
/// the unit, as dcgm-exporter's does.
const FIELDS: [Field; 22] = [
    (
        "DCGM_FI_DEV_SM_CLOCK",
        "SM clock (MHz).",
        MetricType::Gauge,
        |e| e.gpu.health.sm_clock_hz.and_then(hz_to_mhz).map(Value::Int),
    ),
    (
        "DCGM_FI_DEV_GPU_TEMP",
        "GPU temperature (C).",
        MetricType::Gauge,
        |e| {
            e.gpu
                .health
                .temperature_celsius
                .and_then(whole_celsius)
                .map(Value::Int)
        },
    ),
    (
        "DCGM_FI_DEV_POWER_USAGE",
        "Power draw (W).",
        MetricType::Gauge,
        |e| {
            e.gpu
                .health
                .power_watts
                .filter(|w| w.is_finite())
                .map(Value::Float)
        },
    ),
    (
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
        "Energy consumed since the driver loaded (mJ).",
        COUNTER,
        |e| {
            e.gpu
                .health
                .energy_joules
                .and_then(joules_to_millijoules)
                .map(Value::Int)
        },
    ),
    (
        "DCGM_FI_DEV_GPU_UTIL",
        "GPU utilization (%); none while MIG is enabled, where NVML does not report it.",
        MetricType::Gauge,
        |e| {
            e.gpu
                .health
                .utilization_ratio
                .and_then(ratio_to_percent)
                .map(Value::Int)
        },
    ),
    (
        "DCGM_FI_DEV_FB_FREE",
        "Framebuffer free (MiB).",
        MetricType::Gauge,
        |e| {
            match e.gi {
                Some(gi) => gi.memory_free_bytes,
                None => e.gpu.health.memory_free_bytes,
            }
            .map(|b| Value::Int(bytes_to_mib(b)))
        },
    ),
    (
        "DCGM_FI_DEV_FB_USED",
        "Framebuffer used (MiB).",
        MetricType::Gauge,
        |e| {
            match e.gi {
                Some(gi) => gi.memory_used_bytes,
                None => e.gpu.health.memory_used_bytes,
            }
            .map(|b| Value::Int(bytes_to_mib(b)))
        },
    ),
    // ECC is commented out in etc/default-counters.csv; served for those who
    // enabled it. Single-bit errors are NVML's corrected ones and double-bit
    // its uncorrected (nvml.h, nvmlMemoryErrorType_t).
    (
        "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL",
        "Single-bit (corrected) ECC errors since the driver loaded.",
        COUNTER,
        |e| e.gpu.health.ecc_errors.map(|c| Value::Int(c.volatile_corrected)),
    ),
    (
        "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
        "Double-bit (uncorrected) ECC errors since the driver loaded.",
        COUNTER,
        |e| {
            e.gpu
                .health
                .ecc_errors
                .map(|c| Value::Int(c.volatile_uncorrected))
        },
    ),
    (
        "DCGM_FI_DEV_ECC_SBE_AGG_TOTAL",
        "Single-bit (corrected) ECC errors over the GPU's life.",
        COUNTER,
        |e| e.gpu.health.ecc_errors.map(|c| Value::Int(c.aggregate_corrected)),
    ),
    (
        "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL",
        "Double-bit (uncorrected) ECC errors over the GPU's life.",
        COUNTER,
        |e| {
            e.gpu
                .health
                .ecc_errors
                .map(|c| Value::Int(c.aggregate_uncorrected))
        },
    ),
    (
        "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
        "Memory rows remapped for uncorrectable errors.",
        COUNTER,
        |e| {
            e.gpu
                .health
                .remapped_rows
                .map(|r| Value::Int(u64::from(r.uncorrectable)))
        },
    ),
    (
        "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS",
        "Memory rows remapped for correctable errors.",
        COUNTER,
        |e| {
            e.gpu
                .health
                .remapped_rows
                .map(|r| Value::Int(u64::from(r.correctable)))
        },
    ),
    (
        "DCGM_FI_DEV_ROW_REMAP_FAILURE",
        "1 if a row remapping failed.",
        MetricType::Gauge,
        |e| {
            e.gpu
                .health
                .remapped_rows
                .map(|r| Value::Int(u64::from(r.failure)))
        },
    ),
    (
        "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
        "Fraction of time the graphics or compute engine was active (ratio).",
        MetricType::Gauge,
        |e| ratio(e.activity().gr_engine_active_ratio),
    ),
    (
        "DCGM_FI_PROF_SM_ACTIVE",
        "Fraction of cycles an SM had at least one warp resident (ratio).",
        MetricType::Gauge,
        |e| ratio(e.activity().sm_active_ratio),
    ),
    (
        "DCGM_FI_PROF_SM_OCCUPANCY",
        "Resident warps over the most the SMs hold (ratio).",
        MetricType::Gauge,
        |e| ratio(e.activity().sm_occupancy_ratio),
    ),
    (
        "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE",
        "Fraction of cycles the tensor pipes were busy (ratio).",
        MetricType::Gauge,
        |e| ratio(e.activity().tensor_active_ratio),
    ),
    (
        "DCGM_FI_PROF_DRAM_ACTIVE",
        "Fraction of cycles the memory interface was busy (ratio).",
        MetricType::Gauge,
        |e| ratio(e.activity().dram_active_ratio),
    ),
    (
        "DCGM_FI_PROF_PIPE_FP64_ACTIVE",
        "Fraction of cycles the FP64 pipes were busy (ratio).",
        MetricType::Gauge,
        |e| ratio(e.activity().fp64_active_ratio),
    ),
    (
        "DCGM_FI_PROF_PIPE_FP32_ACTIVE",
        "Fraction of cycles the FP32 pipes were busy (ratio).",
        MetricType::Gauge,
        |e| ratio(e.activity().fp32_active_ratio),
    ),
    (
        "DCGM_FI_PROF_PIPE_FP16_ACTIVE",
        "Fraction of cycles the FP16 pipes were busy (ratio).",
        MetricType::Gauge,
        |e| ratio(e.activity().fp16_active_ratio),
    ),
];

/// Encodes one family over `series`; a family with none is left out.
fn family(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric_type: MetricType,
    series: Vec<(&Vec<(&'static str, String)>, Value)>,
) -> Result<(), fmt::Error> {
    if series.is_empty() {
        return Ok(());
    }
    let mut metric = enc.encode_descriptor(name, help, None, metric_type)?;
    for (labels, value) in series {
        metric.encode_family(labels)?.encode_gauge(&value)?;
    }
    Ok(())
}

/// Encodes every dcgm-exporter series of `s`; `node_name` is `Hostname`
/// where set, else the snapshot's host name.
pub fn encode(
    s: &NodeSnapshot,
    node_name: Option<&str>,
    enc: &mut DescriptorEncoder,
) -> Result<(), fmt::Error> {
    let hostname = node_name.unwrap_or(&s.hostname);
    let entities = entities(s, hostname);
    for (name, help, metric_type, read) in FIELDS.iter() {
        let series = entities
            .iter()
            .filter_map(|e| Some((&e.labels, read(e)?)))
            .collect();
        family(enc, name, help, *metric_type, series)?;
    }
    encode_xid(s, hostname, enc)
}

/// `DCGM_FI_DEV_XID_ERRORS`: the code of the last XID, with that code again in
/// `err_code` (`gpu_collector.go`, `toMetric`; "Value of the last XID error
/// encountered" in `etc/default-counters.csv`). DCGM has no value before the
/// first XID (NVIDIA/DCGM `DcgmCacheManager.cpp`: the field is only appended
/// by the event thread, `RecordXidForGpu`; `GetLatestSample` answers
/// `DCGM_ST_NO_DATA`, a blank dcgm-exporter skips), so neither has this.
///
/// One series per GPU, without `GPU_I_ID`, also on a MIG GPU: DCGM files an
/// XID that NVML attributes to a GPU instance under that instance
/// (`RecordXidForGpuInstance`), but the exporter's XID events are per GPU,
/// and putting the GPU's XID on one of its instances would be a guess.
/// `err_msg`, dcgm-exporter's text for the code, is not served.
fn encode_xid(s: &NodeSnapshot, hostname: &str, enc: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
    let series: Vec<_> = s
        .gpus
        .iter()
        .filter_map(|g| {
            let xid = g.health.last_xid?;
            Some((
                labels(s, hostname, g, None, &[("err_code", xid.to_string())]),
                xid,
            ))
        })
        .collect();
    family(
        enc,
        "DCGM_FI_DEV_XID_ERRORS",
        "The code of the last XID error the GPU raised since the exporter started.",
        MetricType::Gauge,
        series.iter().map(|(l, xid)| (l, Value::Int(*xid))).collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EccErrorCounts, PodDevice, RemappedRowCounts};
    use crate::source::{scenarios, sim};

    #[test]
    fn framebuffer_bytes_become_mib_rounded_down_as_dcgm_divides() {
        assert_eq!(bytes_to_mib(0), 0);
        assert_eq!(bytes_to_mib(MIB - 1), 0);
        assert_eq!(bytes_to_mib(MIB), 1);
        assert_eq!(bytes_to_mib(20_000 * MIB + MIB / 2), 20_000);
        // An 80 GB H100's framebuffer, 81559 MiB.
        assert_eq!(bytes_to_mib(85_520_809_984), 81_559);
    }

    #[test]
    fn hertz_become_whole_megahertz() {
        assert_eq!(hz_to_mhz(1_980_000_000.0), Some(1980));
        assert_eq!(
            hz_to_mhz(1_755e6 + 1e-3),
            Some(1755),
            "float error is rounded off"
        );
        assert_eq!(hz_to_mhz(0.0), Some(0));
        assert_eq!(hz_to_mhz(-1e6), None);
        assert_eq!(hz_to_mhz(f64::NAN), None);
    }

    #[test]
    fn ratios_become_whole_percent() {
        assert_eq!(ratio_to_percent(0.6), Some(60));
        assert_eq!(ratio_to_percent(0.07), Some(7), "0.07 * 100 is 7.000000000000001");
        assert_eq!(ratio_to_percent(1.0), Some(100));
        assert_eq!(ratio_to_percent(f64::INFINITY), None);
    }

    #[test]
    fn joules_become_millijoules_and_celsius_stay_whole() {
        assert_eq!(joules_to_millijoules(1234.567), Some(1_234_567));
        assert_eq!(joules_to_millijoules(0.0), Some(0));
        assert_eq!(joules_to_millijoules(-1.0), None);
        assert_eq!(whole_celsius(41.0), Some(41));
        assert_eq!(whole_celsius(f64::NAN), None);
    }

    fn exposition(s: &NodeSnapshot, node_name: Option<&str>) -> String {
        let published = Arc::new(Published::default());
        published.publish(s.clone());
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(DcgmCompatCollector::new(
            published,
            node_name.map(str::to_string),
        )));
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &registry).unwrap();
        out
    }

    /// The sample lines of one family.
    fn samples<'a>(text: &'a str, family: &str) -> Vec<&'a str> {
        let prefix = format!("{family}{{");
        text.lines().filter(|l| l.starts_with(&prefix)).collect()
    }

    fn value(line: &str) -> f64 {
        line.rsplit_once(' ').unwrap().1.parse().unwrap()
    }

    /// h100-mixed with the readings a DCGM node has, GPU 1 out of MIG mode.
    fn node() -> NodeSnapshot {
        let reading = sim::reading_from_world(&scenarios::build("h100-mixed").unwrap());
        let mut s = NodeSnapshot {
            hostname: "gpu-node-7".into(),
            driver_version: reading.driver_version,
            gpus: reading.gpus,
            ..NodeSnapshot::default()
        };
        s.gpus.truncate(2);
        let g0 = &mut s.gpus[0];
        assert!(
            g0.gpu_instances.len() >= 2,
            "h100-mixed's GPU 0 has GPU instances"
        );
        for (i, gi) in g0.gpu_instances.iter_mut().enumerate() {
            gi.activity.sm_active_ratio = Some(0.25 * (i + 1) as f64);
            gi.memory_used_bytes = Some(1000 * MIB + 7);
            gi.memory_free_bytes = Some(9000 * MIB);
        }
        g0.health.sm_clock_hz = Some(1_980e6);
        g0.health.temperature_celsius = Some(41.0);
        g0.health.power_watts = Some(312.5);
        g0.health.ecc_errors = Some(EccErrorCounts {
            volatile_corrected: 3,
            volatile_uncorrected: 1,
            aggregate_corrected: 30,
            aggregate_uncorrected: 2,
        });
        g0.health.remapped_rows = Some(RemappedRowCounts {
            correctable: 4,
            uncorrectable: 1,
            pending: false,
            failure: true,
        });
        g0.health.xid_errors = vec![(48, 1), (79, 2)];
        g0.health.last_xid = Some(48);
        let g1 = &mut s.gpus[1];
        g1.gpu_instances.clear();
        g1.mig_current = false;
        g1.health.utilization_ratio = Some(0.6);
        g1.health.memory_used_bytes = Some(2 * MIB);
        g1.health.memory_free_bytes = None;
        g1.health.activity.gr_engine_active_ratio = Some(0.5);
        g1.health.last_xid = None;
        s.pods = vec![PodDevice {
            mig_uuid: s.gpus[0].gpu_instances[1].compute_instances[0].mig_uuid.clone(),
            gpu: 0,
            gi: Some(s.gpus[0].gpu_instances[1].id),
            ci: Some(0),
            namespace: "ml".into(),
            pod: "trainer-0".into(),
            container: "main".into(),
        }];
        s
    }

    #[test]
    fn a_mig_gpu_has_one_series_per_gpu_instance_and_a_gpu_without_instances_one() {
        let s = node();
        let text = exposition(&s, None);
        let g0 = &s.gpus[0];
        let used = samples(&text, "DCGM_FI_DEV_FB_USED");
        assert_eq!(used.len(), g0.gpu_instances.len() + 1, "{text}");
        for gi in &g0.gpu_instances {
            let want = format!(
                "DCGM_FI_DEV_FB_USED{{gpu=\"0\",UUID=\"{}\",pci_bus_id=\"{}\",device=\"nvidia0\",modelName=\"{}\",\
                 GPU_I_PROFILE=\"{}\",GPU_I_ID=\"{}\",Hostname=\"gpu-node-7\",DCGM_FI_DRIVER_VERSION=\"{}\"",
                g0.uuid,
                g0.pci_bus_id,
                g0.name,
                gi.profile,
                gi.id,
                s.driver_version.as_deref().unwrap()
            );
            let line = used
                .iter()
                .find(|l| l.starts_with(&want))
                .unwrap_or_else(|| panic!("{want} in {text}"));
            assert_eq!(value(line), 1000.0, "bytes rounded down to MiB");
        }
        // GPU 1 has no GPU instance: one series, without GPU_I_*.
        let whole = used.iter().find(|l| l.contains("gpu=\"1\"")).unwrap();
        assert!(!whole.contains("GPU_I_"), "{whole}");
        assert_eq!(value(whole), 2.0);
        // Free is DCGM's: GPU 1 has none, so no series, never total minus used.
        let free = samples(&text, "DCGM_FI_DEV_FB_FREE");
        assert_eq!(free.len(), g0.gpu_instances.len());
        assert!(free.iter().all(|l| value(l) == 9000.0));
    }

    #[test]
    fn gpu_level_fields_repeat_the_gpus_value_on_each_gpu_instance_in_dcgms_units() {
        let s = node();
        let text = exposition(&s, None);
        let n = s.gpus[0].gpu_instances.len();
        for (family, want) in [
            ("DCGM_FI_DEV_SM_CLOCK", 1980.0),
            ("DCGM_FI_DEV_GPU_TEMP", 41.0),
            ("DCGM_FI_DEV_POWER_USAGE", 312.5),
            ("DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", 3.0),
            ("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", 1.0),
            ("DCGM_FI_DEV_ECC_SBE_AGG_TOTAL", 30.0),
            ("DCGM_FI_DEV_ECC_DBE_AGG_TOTAL", 2.0),
            ("DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", 4.0),
            ("DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", 1.0),
            ("DCGM_FI_DEV_ROW_REMAP_FAILURE", 1.0),
        ] {
            let on_gpu0: Vec<f64> = samples(&text, family)
                .into_iter()
                .filter(|l| l.contains("gpu=\"0\""))
                .map(value)
                .collect();
            assert_eq!(on_gpu0, vec![want; n], "{family}");
        }
        // A counter keeps dcgm-exporter's name: no _total suffix.
        assert!(
            text.contains("# TYPE DCGM_FI_DEV_ECC_SBE_VOL_TOTAL untyped\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE DCGM_FI_DEV_SM_CLOCK gauge\n"));
        // Utilization: percent on the GPU without MIG, absent under MIG.
        let util = samples(&text, "DCGM_FI_DEV_GPU_UTIL");
        assert_eq!(util.len(), 1, "{util:?}");
        assert!(util[0].contains("gpu=\"1\"") && value(util[0]) == 60.0);
    }

    #[test]
    fn activity_is_the_gpu_instances_ratio_and_absent_where_not_read() {
        let s = node();
        let text = exposition(&s, None);
        let active = samples(&text, "DCGM_FI_PROF_SM_ACTIVE");
        for (i, gi) in s.gpus[0].gpu_instances.iter().enumerate() {
            let line = active
                .iter()
                .find(|l| l.contains(&format!("GPU_I_ID=\"{}\"", gi.id)))
                .unwrap();
            assert_eq!(value(line), 0.25 * (i + 1) as f64, "a ratio, not percent");
        }
        // GPU 1 reads the graphics engine only.
        let gr = samples(&text, "DCGM_FI_PROF_GR_ENGINE_ACTIVE");
        assert!(gr.iter().any(|l| l.contains("gpu=\"1\"") && value(l) == 0.5));
        assert!(!active.iter().any(|l| l.contains("gpu=\"1\"")));

        let mut bare = s.clone();
        for g in &mut bare.gpus {
            g.health = Default::default();
            for gi in &mut g.gpu_instances {
                gi.activity = Activity::default();
                gi.memory_used_bytes = None;
                gi.memory_free_bytes = None;
            }
        }
        let text = exposition(&bare, None);
        assert!(!text.contains("DCGM_"), "nothing read, nothing served: {text}");
    }

    #[test]
    fn the_last_xid_is_per_gpu_with_its_code_and_absent_before_the_first() {
        let s = node();
        let text = exposition(&s, None);
        let xid = samples(&text, "DCGM_FI_DEV_XID_ERRORS");
        assert_eq!(xid.len(), 1, "{xid:?}");
        assert!(xid[0].contains("gpu=\"0\"") && xid[0].contains("err_code=\"48\""));
        assert!(!xid[0].contains("GPU_I_ID"), "{}", xid[0]);
        assert_eq!(value(xid[0]), 48.0, "the last code, not a count");
    }

    #[test]
    fn the_simulator_reports_the_last_of_several_xids_not_the_largest_or_most_frequent() {
        let mut world = scenarios::build("h100-mixed").unwrap();
        world.gpus[0].telemetry.xid_events = vec![79, 79, 13, 48, 79, 31];
        let reading = sim::reading_from_world(&world);
        assert_eq!(reading.gpus[0].health.last_xid, Some(31));
        assert_eq!(reading.gpus[1].health.last_xid, None);
        let s = NodeSnapshot {
            gpus: reading.gpus,
            ..NodeSnapshot::default()
        };
        let xid = samples(&exposition(&s, None), "DCGM_FI_DEV_XID_ERRORS")
            .into_iter()
            .map(|l| (l.contains("err_code=\"31\""), value(l)))
            .collect::<Vec<_>>();
        assert_eq!(xid, [(true, 31.0)]);
    }

    #[test]
    fn pods_label_their_gpu_instance_and_hostname_is_the_node_name_when_given() {
        let s = node();
        let gi = s.gpus[0].gpu_instances[1].id;
        let text = exposition(&s, Some("node-a"));
        let used = samples(&text, "DCGM_FI_DEV_FB_USED");
        let held = used
            .iter()
            .find(|l| l.contains(&format!("GPU_I_ID=\"{gi}\"")))
            .unwrap();
        assert!(
            held.ends_with(&format!(
                "Hostname=\"node-a\",DCGM_FI_DRIVER_VERSION=\"{}\",container=\"main\",namespace=\"ml\",pod=\"trainer-0\"}} 1000",
                s.driver_version.as_deref().unwrap()
            )),
            "{held}"
        );
        assert_eq!(used.iter().filter(|l| l.contains("pod=")).count(), 1);
        assert!(!text.contains("gpu-node-7"));

        let mut nameless = s.clone();
        nameless.hostname.clear();
        nameless.driver_version = None;
        let text = exposition(&nameless, None);
        assert!(!text.contains("Hostname") && !text.contains("DCGM_FI_DRIVER_VERSION="));
    }
}
