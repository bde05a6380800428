//! The OTLP encoder: every metric of the contract (`contract.rs`) as an
//! OpenTelemetry instrument, under its OTLP name, each label as its
//! attribute, and the hardware attributes the semantic conventions give a
//! GPU on every point about one. Metrics that share an OTLP name (the PCIe
//! pair) become one instrument; a histogram becomes two counters, its sum
//! and its count.

use opentelemetry::KeyValue;

use crate::expose::budget::Budget;
use crate::expose::contract::{self, label, Lv, Metric, Value};
use crate::model::NodeSnapshot;

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
    /// The Prometheus families this one carries (two for the PCIe pair).
    pub prometheus: Vec<String>,
    pub name: String,
    /// UCUM, as OpenTelemetry writes units; `{…}` units are annotations.
    pub unit: &'static str,
    pub description: String,
    pub kind: Kind,
    pub read: Read,
}

pub const VENDOR: &str = "NVIDIA";

/// Which part of a metric's value a family pushes.
#[derive(Clone, Copy)]
enum Part {
    Value,
    /// A histogram's sum, or its count.
    Sum,
    Count,
}

fn number(value: Value, part: Part) -> f64 {
    match (value, part) {
        (Value::U(v), _) => v as f64,
        (Value::F(v), _) => v,
        (Value::Histogram(h), Part::Count) => h.count as f64,
        (Value::Histogram(h), _) => h.sum,
    }
}

/// The attributes of one point: each label as its attribute (an empty
/// optional one left out), the metric's fixed attributes, and for a point
/// about a GPU (one with `hw.id`) the hardware semantic conventions' GPU
/// attributes: `hw.type` = `gpu`, `hw.vendor`, `hw.name`, and the
/// recommended `hw.model` (the product name) and `hw.driver_version` where
/// the snapshot has them.
fn attributes(s: &NodeSnapshot, m: &Metric, values: &[Lv]) -> Vec<KeyValue> {
    let mut a = Vec::with_capacity(values.len() + m.otlp_attributes.len() + 5);
    let (mut uuid, mut index) = (None, None);
    for (l, v) in m.labels.iter().zip(values) {
        let key = l.otlp;
        match *v {
            Lv::S(text) | Lv::OptS(Some(text)) => {
                if *l == label::GPU_UUID {
                    uuid = Some(text);
                }
                a.push(KeyValue::new(key, text.to_string()));
            }
            Lv::N(n) | Lv::Opt(Some(n)) => {
                if *l == label::GPU {
                    index = Some(n);
                }
                a.push(KeyValue::new(key, i64::from(n)));
            }
            Lv::L(n) => a.push(KeyValue::new(key, i64::try_from(n).unwrap_or(i64::MAX))),
            Lv::Opt(None) | Lv::OptS(None) => {}
        }
    }
    for &(key, value) in m.otlp_attributes {
        a.push(KeyValue::new(key, value));
    }
    if let Some(uuid) = uuid {
        a.push(KeyValue::new("hw.type", "gpu"));
        a.push(KeyValue::new("hw.vendor", VENDOR));
        if let Some(index) = index {
            a.push(KeyValue::new("hw.name", format!("gpu{index}")));
        }
        let has = |a: &[KeyValue], key: &str| a.iter().any(|kv| kv.key.as_str() == key);
        if !has(&a, "hw.model") {
            let gpu = s
                .gpus
                .iter()
                .find(|g| g.uuid == uuid && index.is_none_or(|i| i == g.index));
            if let Some(g) = gpu {
                a.push(KeyValue::new("hw.model", g.name.clone()));
            }
        }
        if !has(&a, "hw.driver_version") {
            if let Some(driver) = &s.driver_version {
                a.push(KeyValue::new("hw.driver_version", driver.clone()));
            }
        }
    }
    a
}

fn family(name: &str, unit: &'static str, kind: Kind, m: &'static Metric, part: Part) -> Family {
    Family {
        prometheus: vec![m.prometheus.to_string()],
        name: name.to_string(),
        unit,
        description: m.help.to_string(),
        kind,
        read: Box::new(move |s, emit| push(s, m, part, emit)),
    }
}

fn push(s: &NodeSnapshot, m: &Metric, part: Part, emit: &mut Emit) {
    if let Some(read) = &m.read {
        read(s, &mut |values, value| {
            emit(number(value, part), attributes(s, m, values))
        });
    }
}

/// Every pushed family, in the order of the contract.
pub fn all() -> Vec<Family> {
    all_with(Budget::FULL)
}

/// The pushed families `budget` exposes, in the order of the contract.
pub fn all_with(budget: Budget) -> Vec<Family> {
    let mut families: Vec<Family> = Vec::new();
    let mut shared: Vec<(usize, Vec<&'static Metric>)> = Vec::new();
    for m in contract::metrics() {
        if m.otlp.is_empty() || m.read.is_none() || !budget.includes(m) {
            continue;
        }
        let kind = match m.kind {
            contract::Kind::Gauge => Kind::Gauge,
            contract::Kind::UpDownCounter => Kind::UpDownCounter,
            contract::Kind::Counter | contract::Kind::Histogram => Kind::Counter,
        };
        if let Some((count, count_unit)) = m.otlp_count {
            families.push(family(m.otlp, m.unit, kind, m, Part::Sum));
            families.push(family(count, count_unit, kind, m, Part::Count));
            continue;
        }
        match families.iter().position(|f| f.name == m.otlp) {
            // Another metric under the same name (the PCIe pair): its
            // fixed attributes tell the points apart.
            Some(i) => {
                families[i].prometheus.push(m.prometheus.to_string());
                match shared.iter_mut().find(|(j, _)| *j == i) {
                    Some((_, metrics)) => metrics.push(m),
                    None => shared.push((i, vec![m])),
                }
            }
            None => families.push(family(m.otlp, m.unit, kind, m, Part::Value)),
        }
    }
    for (i, more) in shared {
        let first = contract::metrics()
            .iter()
            .find(|m| m.otlp == families[i].name && budget.includes(m))
            .expect("the family came from the table");
        let mut metrics = vec![first];
        metrics.extend(more);
        families[i].description = metrics
            .iter()
            .map(|m| m.help.as_ref())
            .collect::<Vec<_>>()
            .join(" ");
        families[i].read = Box::new(move |s, emit| {
            for m in &metrics {
                push(s, m, Part::Value, emit);
            }
        });
    }
    families
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

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
