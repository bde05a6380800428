//! The OTLP metric contract: every Prometheus family of `metrics.rs`, under
//! OpenTelemetry's hardware names (`hw.*`) where one exists and
//! `nvidia.gpu.*` / `nvidia.mig.*` otherwise. docs/metrics.md's OTLP table lists
//! the same mapping; a test keeps the two equal.

use opentelemetry::KeyValue;

use super::super::metrics::{cis, gis, CORRECTED, ECC_SCOPES, UNCORRECTED};
use crate::model::{
    Activity, ComputeInstanceSnapshot, DriftFinding, GpuInstanceSnapshot, GpuSnapshot, NodeSnapshot,
    ProfileCapacity, SourceHealth, SourceState,
};

/// How a family is pushed. Gauges and up-down counters arrive in Prometheus
/// as gauges; counters as `_total` counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    UpDownCounter,
    Counter,
}

/// Receives one data point: its value and attributes.
pub type Emit<'a> = dyn FnMut(f64, Vec<KeyValue>) + 'a;

/// Reads a family's data points from a snapshot.
pub type Read = Box<dyn Fn(&NodeSnapshot, &mut Emit) + Send + Sync>;

pub struct Family {
    /// The Prometheus families this one carries (`nvidia_gpu_<kind>_ratio`
    /// for the activity families; two for the PCIe pair).
    pub prometheus: Vec<String>,
    pub name: String,
    /// UCUM, as OpenTelemetry writes units; `{…}` units are annotations.
    pub unit: &'static str,
    pub description: String,
    pub kind: Kind,
    pub read: Read,
}

fn family(
    prometheus: &str,
    name: &str,
    unit: &'static str,
    kind: Kind,
    description: &str,
    read: impl Fn(&NodeSnapshot, &mut Emit) + Send + Sync + 'static,
) -> Family {
    Family {
        prometheus: vec![prometheus.to_string()],
        name: name.to_string(),
        unit,
        description: description.to_string(),
        kind,
        read: Box::new(read),
    }
}

pub const VENDOR: &str = "NVIDIA";

/// What identifies a GPU on every point about it, as the hardware semantic
/// conventions for GPUs have it: `hw.id` (required; unique on the host),
/// `hw.type` = `gpu`, and the recommended `hw.name`, `hw.vendor`, `hw.model`
/// (the product name) and `hw.driver_version` (the NVIDIA driver's, where
/// the source read it).
pub fn gpu_attributes(s: &NodeSnapshot, g: &GpuSnapshot) -> Vec<KeyValue> {
    let mut a = vec![
        KeyValue::new("hw.id", g.uuid.clone()),
        KeyValue::new("hw.type", "gpu"),
        KeyValue::new("hw.name", format!("gpu{}", g.index)),
        KeyValue::new("hw.vendor", VENDOR),
        KeyValue::new("hw.model", g.name.clone()),
        KeyValue::new("nvidia.gpu.index", i64::from(g.index)),
    ];
    if let Some(driver) = &s.driver_version {
        a.push(KeyValue::new("hw.driver_version", driver.clone()));
    }
    a
}

fn gi_attributes(s: &NodeSnapshot, g: &GpuSnapshot, gi: &GpuInstanceSnapshot) -> Vec<KeyValue> {
    let mut a = gpu_attributes(s, g);
    a.push(KeyValue::new("nvidia.mig.gi.id", i64::from(gi.id)));
    a.push(KeyValue::new("nvidia.mig.profile", gi.profile.clone()));
    a
}

fn ci_attributes(
    s: &NodeSnapshot,
    g: &GpuSnapshot,
    gi: &GpuInstanceSnapshot,
    ci: &ComputeInstanceSnapshot,
) -> Vec<KeyValue> {
    let mut a = gi_attributes(s, g, gi);
    a.push(KeyValue::new("nvidia.mig.ci.id", i64::from(ci.id)));
    a.push(KeyValue::new("nvidia.mig.device.uuid", ci.mig_uuid.clone()));
    a
}

fn with(mut attributes: Vec<KeyValue>, more: impl IntoIterator<Item = KeyValue>) -> Vec<KeyValue> {
    attributes.extend(more);
    attributes
}

fn flag(b: bool) -> f64 {
    f64::from(u8::from(b))
}

/// A per-GPU family of one value the GPU may lack.
fn per_gpu(
    prometheus: &str,
    name: &str,
    unit: &'static str,
    kind: Kind,
    description: &str,
    read: fn(&GpuSnapshot) -> Option<f64>,
) -> Family {
    family(prometheus, name, unit, kind, description, move |s, emit| {
        for g in &s.gpus {
            if let Some(v) = read(g) {
                emit(v, gpu_attributes(s, g));
            }
        }
    })
}

/// A per-GPU-instance family of one value the instance may lack.
fn per_gi(
    prometheus: &str,
    name: &str,
    unit: &'static str,
    kind: Kind,
    description: &str,
    read: fn(&GpuInstanceSnapshot) -> Option<f64>,
) -> Family {
    family(prometheus, name, unit, kind, description, move |s, emit| {
        for (g, gi) in gis(s) {
            if let Some(v) = read(gi) {
                emit(v, gi_attributes(s, g, gi));
            }
        }
    })
}

/// Walks the entities of one level: each one's activity and attributes.
type ActivityPoints = fn(&NodeSnapshot, &mut dyn FnMut(&Activity, Vec<KeyValue>));

/// One family per activity kind at one level (`nvidia.gpu.sm_active`, ...),
/// named so that Prometheus's OTLP translation gives back the `/metrics` name.
fn activity(
    families: &mut Vec<Family>,
    prometheus_prefix: &str,
    otlp_prefix: &str,
    scope: &str,
    points: ActivityPoints,
) {
    for (stem, help, read) in Activity::KINDS {
        families.push(Family {
            prometheus: vec![format!("{prometheus_prefix}_{stem}_ratio")],
            name: format!("{otlp_prefix}.{stem}"),
            unit: "1",
            description: Activity::help(help, scope),
            kind: Kind::Gauge,
            read: Box::new(move |s, emit| {
                points(s, &mut |a, attributes| {
                    if let Some(v) = read(a) {
                        emit(v, attributes);
                    }
                })
            }),
        });
    }
}

/// Every family, in the order of the `/metrics` exposition.
pub fn all() -> Vec<Family> {
    use Kind::{Counter, Gauge, UpDownCounter};
    let mut f = vec![
        family(
            "nvidia_gpu_info",
            "nvidia.gpu.info",
            "",
            Gauge,
            "Physical GPU facts; always 1.",
            |s, emit| {
                for g in &s.gpus {
                    let more = [KeyValue::new("nvidia.gpu.pci_bus_id", g.pci_bus_id.clone())];
                    emit(1.0, with(gpu_attributes(s, g), more));
                }
            },
        ),
        per_gpu(
            "nvidia_gpu_memory_total_bytes",
            "hw.gpu.memory.limit",
            "By",
            UpDownCounter,
            "Framebuffer of the physical GPU.",
            |g| g.memory_total_bytes.map(|b| b as f64),
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
            "1 if MIG mode will be in force after the next GPU reset.",
            |g| Some(flag(g.mig_pending)),
        ),
        per_gpu(
            "nvidia_mig_compute_slices_capacity",
            "nvidia.mig.compute_slices.capacity",
            "{slice}",
            Gauge,
            "SM slices the GPU divides into.",
            |g| Some(f64::from(g.compute_slices_capacity)),
        ),
        per_gpu(
            "nvidia_mig_compute_slices_used",
            "nvidia.mig.compute_slices.used",
            "{slice}",
            Gauge,
            "SM slices held by GPU instances.",
            |g| Some(f64::from(g.compute_slices_used)),
        ),
        per_gpu(
            "nvidia_mig_memory_slices_capacity",
            "nvidia.mig.memory_slices.capacity",
            "{slice}",
            Gauge,
            "Memory placement slots of the GPU.",
            |g| Some(f64::from(g.memory_slices_capacity)),
        ),
        per_gpu(
            "nvidia_mig_memory_slices_used",
            "nvidia.mig.memory_slices.used",
            "{slice}",
            Gauge,
            "Memory placement slots held by GPU instances.",
            |g| Some(f64::from(g.memory_slices_used)),
        ),
        per_gpu(
            "nvidia_gpu_persistence_mode",
            "nvidia.gpu.persistence_mode",
            "",
            Gauge,
            "1 if persistence mode is on.",
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
    ];
    // Two families, as in /metrics, so that a sum never double counts.
    for (scope, help, read) in ECC_SCOPES {
        f.push(Family {
            prometheus: vec![format!("nvidia_gpu_ecc_errors_{scope}_total")],
            name: format!("nvidia.gpu.ecc.errors.{scope}"),
            unit: "{error}",
            description: help.to_string(),
            kind: Kind::Counter,
            read: Box::new(move |s, emit| {
                for g in &s.gpus {
                    let Some(e) = g.health.ecc_errors else { continue };
                    for (kind, n) in read(&e) {
                        let more = [KeyValue::new("error.type", kind)];
                        emit(n as f64, with(gpu_attributes(s, g), more));
                    }
                }
            }),
        });
    }
    f.extend([
        family(
            "nvidia_gpu_remapped_rows_total",
            "nvidia.gpu.remapped_rows",
            "{row}",
            Counter,
            "Memory rows the GPU has remapped, by the error that caused it.",
            |s, emit| {
                for g in &s.gpus {
                    let Some(r) = g.health.remapped_rows else { continue };
                    for (kind, n) in [(CORRECTED, r.correctable), (UNCORRECTED, r.uncorrectable)] {
                        emit(
                            f64::from(n),
                            with(gpu_attributes(s, g), [KeyValue::new("error.type", kind)]),
                        );
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
            |g| g.health.power_watts,
        ),
        per_gpu(
            "nvidia_gpu_power_limit_watts",
            "nvidia.gpu.power.limit",
            "W",
            Gauge,
            "Enforced power limit.",
            |g| g.health.power_limit_watts,
        ),
        per_gpu(
            "nvidia_gpu_temperature_celsius",
            "nvidia.gpu.temperature",
            "Cel",
            Gauge,
            "GPU core temperature.",
            |g| g.health.temperature_celsius,
        ),
        per_gpu(
            "nvidia_gpu_sm_clock_hz",
            "nvidia.gpu.sm_clock",
            "Hz",
            Gauge,
            "SM clock.",
            |g| g.health.sm_clock_hz,
        ),
        family(
            "nvidia_gpu_utilization_ratio",
            "hw.gpu.utilization",
            "1",
            Gauge,
            "Whole-GPU utilization; absent while MIG is enabled.",
            |s, emit| {
                for g in &s.gpus {
                    if let Some(v) = g.health.utilization_ratio {
                        emit(
                            v,
                            with(gpu_attributes(s, g), [KeyValue::new("hw.gpu.task", "general")]),
                        );
                    }
                }
            },
        ),
        per_gpu(
            "nvidia_gpu_memory_used_bytes",
            "hw.gpu.memory.usage",
            "By",
            UpDownCounter,
            "Framebuffer in use on the whole GPU.",
            |g| g.health.memory_used_bytes.map(|b| b as f64),
        ),
        per_gpu(
            "nvidia_gpu_memory_free_bytes",
            "nvidia.gpu.memory.free",
            "By",
            UpDownCounter,
            "Framebuffer free on the whole GPU.",
            |g| g.health.memory_free_bytes.map(|b| b as f64),
        ),
    ]);
    activity(
        &mut f,
        "nvidia_gpu",
        "nvidia.gpu",
        Activity::GPU_SCOPE,
        |s, point| {
            for g in &s.gpus {
                point(&g.health.activity, gpu_attributes(s, g));
            }
        },
    );
    f.extend([
        per_gpu(
            "nvidia_gpu_energy_joules_total",
            "hw.energy",
            "J",
            Counter,
            "Energy consumed since the driver loaded.",
            |g| g.health.energy_joules,
        ),
        Family {
            prometheus: vec![
                "nvidia_gpu_pcie_tx_bytes_per_second".into(),
                "nvidia_gpu_pcie_rx_bytes_per_second".into(),
            ],
            name: "nvidia.gpu.pcie.throughput".into(),
            unit: "By/s",
            description: "PCIe throughput by direction (transmit, receive).".into(),
            kind: Gauge,
            read: Box::new(|s, emit| {
                for g in &s.gpus {
                    let h = &g.health;
                    for (direction, v) in [
                        ("transmit", h.pcie_tx_bytes_per_second),
                        ("receive", h.pcie_rx_bytes_per_second),
                    ] {
                        if let Some(v) = v {
                            let more = [KeyValue::new("network.io.direction", direction)];
                            emit(v, with(gpu_attributes(s, g), more));
                        }
                    }
                }
            }),
        },
        family(
            "nvidia_gpu_xid_errors_total",
            "nvidia.gpu.xid_errors",
            "{error}",
            Counter,
            "XID errors the GPU raised since the exporter started, by XID code; \
             the codes the shipped alerts watch are 0 until the first one.",
            |s, emit| {
                for g in &s.gpus {
                    for (xid, n) in g.health.xid_counts() {
                        let xid = i64::try_from(xid).unwrap_or(i64::MAX);
                        emit(
                            n as f64,
                            with(gpu_attributes(s, g), [KeyValue::new("nvidia.gpu.xid", xid)]),
                        );
                    }
                }
            },
        ),
    ]);
    let profile = |prometheus: &str, name: &str, description: &str, read: fn(&ProfileCapacity) -> u32| {
        family(
            prometheus,
            name,
            "{instance}",
            Gauge,
            description,
            move |s, emit| {
                for g in &s.gpus {
                    for p in &g.profiles {
                        let more = [
                            KeyValue::new("nvidia.mig.profile", p.name.clone()),
                            KeyValue::new("nvidia.mig.profile.id", i64::from(p.id)),
                        ];
                        emit(f64::from(read(p)), with(gpu_attributes(s, g), more));
                    }
                }
            },
        )
    };
    f.extend([
        profile(
            "nvidia_mig_profile_max_instances",
            "nvidia.mig.profile.max_instances",
            "Instances of this GPU-instance profile that fit an empty GPU.",
            |p| p.max_instances,
        ),
        profile(
            "nvidia_mig_profile_remaining_instances",
            "nvidia.mig.profile.remaining_instances",
            "Instances of this profile that could still be created next to the existing ones.",
            |p| p.remaining_instances,
        ),
        family(
            "nvidia_mig_gpu_instance_info",
            "nvidia.mig.gpu_instance.info",
            "",
            Gauge,
            "A GPU instance with its profile and placement; always 1.",
            |s, emit| {
                for (g, gi) in gis(s) {
                    let more = [
                        KeyValue::new("nvidia.mig.profile.id", i64::from(gi.profile_id)),
                        KeyValue::new("nvidia.mig.placement.start", i64::from(gi.placement_start)),
                        KeyValue::new("nvidia.mig.placement.size", i64::from(gi.placement_size)),
                    ];
                    emit(1.0, with(gi_attributes(s, g, gi), more));
                }
            },
        ),
        per_gi(
            "nvidia_mig_gpu_instance_compute_slices",
            "nvidia.mig.gpu_instance.compute_slices",
            "{slice}",
            Gauge,
            "SM slices of the GPU instance.",
            |gi| Some(f64::from(gi.compute_slices)),
        ),
        per_gi(
            "nvidia_mig_gpu_instance_compute_instances",
            "nvidia.mig.gpu_instance.compute_instances",
            "{instance}",
            Gauge,
            "Compute instances inside the GPU instance; 0 means CUDA cannot use it.",
            |gi| Some(gi.compute_instances.len() as f64),
        ),
        per_gi(
            "nvidia_mig_gpu_instance_memory_total_bytes",
            "nvidia.mig.gpu_instance.memory.limit",
            "By",
            UpDownCounter,
            "Framebuffer of the GPU instance.",
            |gi| Some(gi.memory_total_bytes as f64),
        ),
        per_gi(
            "nvidia_mig_gpu_instance_memory_used_bytes",
            "nvidia.mig.gpu_instance.memory.usage",
            "By",
            UpDownCounter,
            "Framebuffer in use in the GPU instance.",
            |gi| gi.memory_used_bytes.map(|b| b as f64),
        ),
        per_gi(
            "nvidia_mig_gpu_instance_memory_free_bytes",
            "nvidia.mig.gpu_instance.memory.free",
            "By",
            UpDownCounter,
            "Framebuffer free in the GPU instance.",
            |gi| gi.memory_free_bytes.map(|b| b as f64),
        ),
    ]);
    activity(
        &mut f,
        "nvidia_mig_gpu_instance",
        "nvidia.mig.gpu_instance",
        Activity::GPU_INSTANCE_SCOPE,
        |s, point| {
            for (g, gi) in gis(s) {
                point(&gi.activity, gi_attributes(s, g, gi));
            }
        },
    );
    f.push(family(
        "nvidia_mig_compute_instance_info",
        "nvidia.mig.compute_instance.info",
        "",
        Gauge,
        "A compute instance (a MIG device); always 1.",
        |s, emit| {
            for (g, gi, ci) in cis(s) {
                let more = [
                    KeyValue::new("nvidia.mig.ci.profile", ci.profile.clone()),
                    KeyValue::new("nvidia.mig.ci.profile.id", i64::from(ci.profile_id)),
                    KeyValue::new("nvidia.mig.placement.start", i64::from(ci.placement_start)),
                    KeyValue::new("nvidia.mig.placement.size", i64::from(ci.placement_size)),
                ];
                emit(1.0, with(ci_attributes(s, g, gi, ci), more));
            }
        },
    ));
    activity(
        &mut f,
        "nvidia_mig_compute_instance",
        "nvidia.mig.compute_instance",
        Activity::COMPUTE_INSTANCE_SCOPE,
        |s, point| {
            for (g, gi, ci) in cis(s) {
                point(&ci.activity, ci_attributes(s, g, gi, ci));
            }
        },
    );
    f.extend(drift_families());
    f.extend(exporter_families());
    f
}

/// The GPU a drift record names: its attributes as on every GPU point where
/// the snapshot has the GPU; `hw.id` and the index where it does not (a GPU
/// the desired config names that is gone).
fn drift_gpu(s: &NodeSnapshot, gpu: u32, uuid: &str) -> Vec<KeyValue> {
    if let Some(g) = s.gpus.iter().find(|g| g.uuid == uuid && g.index == gpu) {
        return gpu_attributes(s, g);
    }
    vec![
        KeyValue::new("hw.id", uuid.to_string()),
        KeyValue::new("hw.type", "gpu"),
        KeyValue::new("hw.name", format!("gpu{gpu}")),
        KeyValue::new("hw.vendor", VENDOR),
        KeyValue::new("nvidia.gpu.index", i64::from(gpu)),
    ]
}

fn drift_families() -> Vec<Family> {
    use Kind::Gauge;
    let finding = |prometheus: &str,
                   name: &str,
                   unit: &'static str,
                   description: &str,
                   read: fn(&DriftFinding) -> f64| {
        family(prometheus, name, unit, Gauge, description, move |s, emit| {
            for f in &s.drift.findings {
                let more = [KeyValue::new("nvidia.mig.drift.reason", f.reason.as_str())];
                emit(read(f), with(drift_gpu(s, f.gpu, &f.gpu_uuid), more));
            }
        })
    };
    vec![
        finding(
            "nvidia_mig_drift",
            "nvidia.mig.drift",
            "",
            "1 for each drift finding: the GPU's MIG geometry is not what it should be; the reason says how.",
            |_| 1.0,
        ),
        finding(
            "nvidia_mig_drift_since_timestamp_seconds",
            "nvidia.mig.drift.since",
            "s",
            "Unix time of the first poll that found the drift; kept while it persists.",
            |f| f.since_seconds,
        ),
        family(
            "nvidia_mig_expected_instances",
            "nvidia.mig.expected_instances",
            "{instance}",
            Gauge,
            "GPU instances of the profile the desired MIG config wants on the GPU.",
            |s, emit| {
                for e in &s.drift.expected {
                    let more = [KeyValue::new("nvidia.mig.profile", e.profile.clone())];
                    emit(f64::from(e.count), with(drift_gpu(s, e.gpu, &e.gpu_uuid), more));
                }
            },
        ),
        family(
            "nvidia_mig_geometry_last_change_timestamp_seconds",
            "nvidia.mig.geometry.last_change",
            "s",
            Gauge,
            "Unix time the GPU's MIG geometry was first seen as it is now.",
            |s, emit| {
                for c in &s.drift.geometry_changes {
                    emit(c.changed_at_seconds, drift_gpu(s, c.gpu, &c.gpu_uuid));
                }
            },
        ),
        family(
            "nvidia_mig_instance_pod_info",
            "nvidia.mig.instance.pod.info",
            "",
            Gauge,
            "A MIG device (or a whole GPU) the kubelet allocated to a container; always 1.",
            |s, emit| {
                for p in &s.pods {
                    let mut a = vec![
                        KeyValue::new("nvidia.mig.device.uuid", p.mig_uuid.clone()),
                        KeyValue::new("nvidia.gpu.index", i64::from(p.gpu)),
                        KeyValue::new("k8s.namespace.name", p.namespace.clone()),
                        KeyValue::new("k8s.pod.name", p.pod.clone()),
                        KeyValue::new("k8s.container.name", p.container.clone()),
                    ];
                    a.extend(p.gi.map(|gi| KeyValue::new("nvidia.mig.gi.id", i64::from(gi))));
                    a.extend(p.ci.map(|ci| KeyValue::new("nvidia.mig.ci.id", i64::from(ci))));
                    emit(1.0, a);
                }
            },
        ),
    ]
}

fn exporter_families() -> Vec<Family> {
    use Kind::{Counter, Gauge};
    let source = |prometheus: &str,
                  name: &str,
                  unit: &'static str,
                  kind: Kind,
                  description: &str,
                  read: fn(&SourceHealth) -> Option<f64>| {
        family(prometheus, name, unit, kind, description, move |s, emit| {
            for h in &s.sources {
                if let Some(v) = read(h) {
                    emit(v, vec![KeyValue::new("nvidia.mig.source", h.name)]);
                }
            }
        })
    };
    vec![
        family(
            "mig_exporter_simulated",
            "nvidia.mig.simulated",
            "",
            Gauge,
            "1 if the node is the built-in simulator's, not hardware; 0 with --nvml.",
            |s, emit| emit(flag(s.simulated), Vec::new()),
        ),
        family(
            "mig_exporter_source_info",
            "nvidia.mig.source.info",
            "",
            Gauge,
            "Each source the exporter runs; always 1. nvidia.mig.source.state: enabled (it should work), \
             unsupported (the hardware cannot have it) or disabled (not set up on this node).",
            |s, emit| {
                for h in &s.sources {
                    emit(
                        1.0,
                        vec![
                            KeyValue::new("nvidia.mig.source", h.name),
                            KeyValue::new("nvidia.mig.source.state", h.state.as_str()),
                        ],
                    );
                }
            },
        ),
        // Only a source that should work can be down (as in /metrics).
        source(
            "mig_exporter_source_up",
            "nvidia.mig.source.up",
            "",
            Gauge,
            "1 if the source's last poll succeeded; only for enabled sources.",
            |h| (h.state == SourceState::Enabled).then(|| flag(h.up)),
        ),
        source(
            "mig_exporter_last_successful_poll_timestamp_seconds",
            "nvidia.mig.source.last_success",
            "s",
            Gauge,
            "Unix time of the source's last successful poll.",
            |h| h.last_success_seconds,
        ),
        source(
            "mig_exporter_poll_errors_total",
            "nvidia.mig.source.poll.errors",
            "{error}",
            Counter,
            "Polls of the source that failed.",
            |h| Some(h.errors_total as f64),
        ),
        // A histogram cannot be observed from cumulative buckets through the
        // OpenTelemetry API; its sum and count give the mean poll time.
        source(
            "mig_exporter_poll_duration_seconds",
            "nvidia.mig.source.poll.time",
            "s",
            Counter,
            "Time spent polling the source (the poll-duration histogram's sum).",
            |h| Some(h.poll_duration.sum),
        ),
        source(
            "mig_exporter_poll_duration_seconds",
            "nvidia.mig.source.polls",
            "{poll}",
            Counter,
            "Polls of the source (the poll-duration histogram's count).",
            |h| Some(h.poll_duration.count as f64),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// A name with its activity kind written `<kind>`, as docs/metrics.md has it.
    fn generic(name: &str) -> String {
        Activity::KINDS
            .iter()
            .find_map(|(stem, _, _)| {
                name.strip_suffix(&format!("_{stem}_ratio"))
                    .map(|p| format!("{p}_<kind>_ratio"))
                    .or_else(|| {
                        name.strip_suffix(&format!(".{stem}"))
                            .map(|p| format!("{p}.<kind>"))
                    })
            })
            .unwrap_or_else(|| name.to_string())
    }

    fn ticked(cell: &str) -> Vec<String> {
        cell.split('`').skip(1).step_by(2).map(str::to_string).collect()
    }

    /// docs/metrics.md's table of every metric: Prometheus names, OTLP names
    /// (what stands before any parenthesis), unit, instrument.
    fn readme_rows() -> Vec<(Vec<String>, Vec<String>, String, String)> {
        let doc = include_str!("../../../docs/metrics.md");
        let section = doc.split("\n## OTLP\n").nth(1).expect("an OTLP section");
        let section = section.split("\n## ").next().unwrap();
        section
            .lines()
            .filter(|l| l.starts_with("| `"))
            .map(|l| l.split('|').map(str::trim).collect::<Vec<_>>())
            .filter(|cells| cells.len() == 7)
            .map(|c| {
                let otlp = c[2].split('(').next().unwrap();
                let otlp = if otlp.starts_with("resource") || otlp.starts_with("not pushed") {
                    Vec::new()
                } else {
                    ticked(otlp)
                };
                (ticked(c[1]), otlp, c[3].to_string(), c[4].to_string())
            })
            .collect()
    }

    #[test]
    fn the_metrics_docs_map_every_family_as_the_code_does() {
        let rows = readme_rows();
        let from_readme: BTreeSet<(String, String)> = rows
            .iter()
            .flat_map(|(prometheus, otlp, _, _)| {
                prometheus
                    .iter()
                    .flat_map(move |p| otlp.iter().map(move |o| (p.clone(), o.clone())))
            })
            .collect();
        let families = all();
        let from_code: BTreeSet<(String, String)> = families
            .iter()
            .flat_map(|f| f.prometheus.iter().map(|p| (generic(p), generic(&f.name))))
            .collect();
        assert_eq!(from_readme, from_code);

        for (prometheus, otlp, unit, instrument) in rows.iter().filter(|r| r.1.len() == 1) {
            let f = families
                .iter()
                .find(|f| generic(&f.name) == otlp[0])
                .unwrap_or_else(|| panic!("{otlp:?}"));
            assert_eq!(unit, f.unit, "unit of {otlp:?}");
            let kind = match f.kind {
                Kind::Gauge => "gauge",
                Kind::UpDownCounter => "up-down counter",
                Kind::Counter => "counter",
            };
            assert_eq!(instrument, kind, "instrument of {otlp:?}");
            // Prometheus's own counters stay counters.
            assert_eq!(
                prometheus.iter().all(|p| p.ends_with("_total")),
                f.kind == Kind::Counter,
                "{prometheus:?}"
            );
        }
    }

    #[test]
    fn every_family_of_every_golden_exposition_has_a_row() {
        let readme: BTreeSet<String> = readme_rows().into_iter().flat_map(|r| r.0).collect();
        let golden = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
        let mut seen = 0;
        for entry in std::fs::read_dir(golden).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            for line in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
                let family = line.split_whitespace().next().unwrap();
                // OpenMetrics names a counter family without `_total`.
                let known = [family.to_string(), format!("{family}_total")];
                assert!(
                    known.iter().any(|f| readme.contains(&generic(f))),
                    "{family} has no row in the OTLP table of docs/metrics.md"
                );
                seen += 1;
            }
        }
        assert!(seen > 100);
    }

    /// Every point of every family over a snapshot: (name, value, attributes).
    fn points(s: &NodeSnapshot) -> Vec<(String, f64, Vec<KeyValue>)> {
        let mut out = Vec::new();
        for f in all() {
            (f.read)(s, &mut |v, a| out.push((f.name.clone(), v, a)));
        }
        out
    }

    fn attribute(a: &[KeyValue], key: &str) -> Option<String> {
        a.iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.to_string())
    }

    fn node() -> NodeSnapshot {
        let reading =
            crate::source::sim::reading_from_world(&crate::source::scenarios::build("h100-mixed").unwrap());
        NodeSnapshot {
            gpus: reading.gpus,
            driver_version: reading.driver_version,
            ..Default::default()
        }
    }

    #[test]
    fn ecc_scopes_are_two_counters_and_error_types_have_one_spelling() {
        let mut s = node();
        s.gpus[0].health.ecc_errors = Some(crate::model::EccErrorCounts {
            volatile_corrected: 1,
            volatile_uncorrected: 2,
            aggregate_corrected: 30,
            aggregate_uncorrected: 40,
        });
        let families = all();
        for name in [
            "nvidia.gpu.ecc.errors.volatile",
            "nvidia.gpu.ecc.errors.aggregate",
            "nvidia.gpu.remapped_rows",
        ] {
            let f = families.iter().find(|f| f.name == name).unwrap();
            assert_eq!(f.kind, Kind::Counter, "{name}");
        }
        let p = points(&s);
        let gpu0 = |name: &str, kind: &str| -> Vec<f64> {
            p.iter()
                .filter(|(n, _, a)| {
                    n == name
                        && attribute(a, "nvidia.gpu.index").as_deref() == Some("0")
                        && attribute(a, "error.type").as_deref() == Some(kind)
                })
                .map(|(_, v, _)| *v)
                .collect()
        };
        assert_eq!(gpu0("nvidia.gpu.ecc.errors.volatile", "corrected"), [1.0]);
        assert_eq!(gpu0("nvidia.gpu.ecc.errors.volatile", "uncorrected"), [2.0]);
        assert_eq!(gpu0("nvidia.gpu.ecc.errors.aggregate", "corrected"), [30.0]);
        assert_eq!(gpu0("nvidia.gpu.ecc.errors.aggregate", "uncorrected"), [40.0]);
        for (name, _, a) in &p {
            if let Some(kind) = attribute(a, "error.type") {
                assert!(kind == "corrected" || kind == "uncorrected", "{name}: {kind}");
            }
            assert!(attribute(a, "nvidia.gpu.ecc.counter").is_none(), "{name}");
        }
    }

    #[test]
    fn alerted_xids_are_pushed_at_zero_only_where_xids_are_read() {
        let mut s = node();
        s.gpus[0].health.xid_errors = vec![(79, 3)];
        s.gpus[1].health.xid_counted = false;
        let p = points(&s);
        let xids = |gpu: &str| -> Vec<(String, f64)> {
            p.iter()
                .filter(|(n, _, a)| {
                    n == "nvidia.gpu.xid_errors" && attribute(a, "nvidia.gpu.index").as_deref() == Some(gpu)
                })
                .map(|(_, v, a)| (attribute(a, "nvidia.gpu.xid").unwrap(), *v))
                .collect()
        };
        let want: Vec<(String, f64)> = crate::model::ALERTED_XIDS
            .iter()
            .map(|&x| (x.to_string(), if x == 79 { 3.0 } else { 0.0 }))
            .collect();
        assert_eq!(xids("0"), want);
        assert!(xids("1").is_empty(), "no zeros for a GPU whose XIDs are not read");
    }

    #[test]
    fn every_gpu_point_has_the_model_and_the_driver_version() {
        let s = node();
        let driver = s.driver_version.clone().unwrap();
        let mut gpu_points = 0;
        for (name, _, a) in points(&s) {
            let Some(uuid) = attribute(&a, "hw.id") else {
                continue;
            };
            let g = s.gpus.iter().find(|g| g.uuid == uuid).unwrap();
            assert_eq!(
                attribute(&a, "hw.model").as_deref(),
                Some(g.name.as_str()),
                "{name}"
            );
            assert_eq!(
                attribute(&a, "hw.driver_version").as_deref(),
                Some(driver.as_str()),
                "{name}"
            );
            gpu_points += 1;
        }
        assert!(gpu_points > 100, "{gpu_points}");
        // Without a driver version read, none is made up.
        let unknown = NodeSnapshot {
            driver_version: None,
            ..node()
        };
        assert!(points(&unknown)
            .iter()
            .all(|(_, _, a)| attribute(a, "hw.driver_version").is_none()));
    }

    #[test]
    fn names_and_units_are_valid_opentelemetry_instrument_names() {
        for f in all() {
            assert!(f.name.len() <= 255 && f.name.starts_with(|c: char| c.is_ascii_alphabetic()));
            assert!(
                f.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c)),
                "{}",
                f.name
            );
            assert!(f.unit.is_ascii() && f.unit.len() <= 63, "{}", f.unit);
        }
        let names: Vec<String> = all().into_iter().map(|f| f.name).collect();
        let unique: BTreeSet<&String> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "each name once");
    }
}
