//! The Prometheus encoder: writes a [`NodeSnapshot`] straight into
//! Prometheus text or OpenMetrics through a prometheus-client [`Collector`],
//! walking the metric contract (`contract.rs`); no global registry, no
//! metric objects kept between scrapes.

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabel, EncodeLabelSet, LabelSetEncoder, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::budget::Budget;
use super::contract::{self, Kind, Label, Lv, Metric, Value};
use crate::model::NodeSnapshot;
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
/// published snapshot, with every family.
pub fn registry(published: Arc<Published>) -> Registry {
    registry_with(published, Budget::FULL)
}

/// The registry with only the families `budget` exposes.
pub fn registry_with(published: Arc<Published>, budget: Budget) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(SnapshotCollector { published, budget }));
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
    budget: Budget,
}

impl Collector for SnapshotCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        encode_snapshot_with(&self.published.load(), self.budget, &mut encoder)
    }
}

/// The label set of one series: the metric's labels with the values its
/// reader emitted, borrowed; encoding it allocates nothing.
struct LabelSet<'s, 'a> {
    labels: &'static [Label],
    values: &'s [Lv<'a>],
}

impl EncodeLabelSet for LabelSet<'_, '_> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), fmt::Error> {
        for (label, value) in self.labels.iter().zip(self.values) {
            EncodeLabel::encode(&(label.prometheus, *value), encoder.encode_label())?;
        }
        Ok(())
    }
}

/// One family being encoded: its descriptor is written with its first
/// series, so that a family with no series is left out entirely.
struct FamilyEncoder<'e, 'x> {
    metric: &'static Metric,
    descriptor: Option<&'e mut DescriptorEncoder<'x>>,
    family: Option<MetricEncoder<'e>>,
    result: Result<(), fmt::Error>,
}

impl<'e, 'x> FamilyEncoder<'e, 'x> {
    fn new(metric: &'static Metric, descriptor: &'e mut DescriptorEncoder<'x>) -> Self {
        FamilyEncoder {
            metric,
            descriptor: Some(descriptor),
            family: None,
            result: Ok(()),
        }
    }

    fn series(&mut self, values: &[Lv], value: Value) {
        if self.result.is_ok() {
            self.result = self.write(values, value);
        }
    }

    fn write(&mut self, values: &[Lv], value: Value) -> Result<(), fmt::Error> {
        let m = self.metric;
        if let Some(descriptor) = self.descriptor.take() {
            let metric_type = match m.kind {
                Kind::Gauge | Kind::UpDownCounter => MetricType::Gauge,
                Kind::Counter => MetricType::Counter,
                Kind::Histogram => MetricType::Histogram,
            };
            self.family = Some(descriptor.encode_descriptor(m.family_name(), &m.help, None, metric_type)?);
        }
        let Some(family) = self.family.as_mut() else {
            return Err(fmt::Error);
        };
        let labels = LabelSet {
            labels: m.labels,
            values,
        };
        let mut series = family.encode_family(&labels)?;
        match (m.kind, value) {
            (Kind::Gauge | Kind::UpDownCounter, Value::U(v)) => series.encode_gauge(&v),
            (Kind::Gauge | Kind::UpDownCounter, Value::F(v)) => series.encode_gauge(&v),
            (Kind::Counter, Value::U(v)) => series.encode_counter::<NoLabelSet, _, u64>(&v, None),
            (Kind::Counter, Value::F(v)) => series.encode_counter::<NoLabelSet, _, f64>(&v, None),
            (Kind::Histogram, Value::Histogram(h)) => {
                series.encode_histogram::<NoLabelSet>(h.sum, h.count, &h.buckets(), None)
            }
            // A reader that emits a value its kind cannot take (a test
            // catches it): the scrape fails rather than lie.
            _ => Err(fmt::Error),
        }
    }
}

/// Encodes every metric of the contract ([`contract::metrics`]) that has
/// series in the snapshot, in the table's order.
pub fn encode_snapshot(s: &NodeSnapshot, enc: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
    encode_snapshot_with(s, Budget::FULL, enc)
}

/// [`encode_snapshot`] of only the families `budget` exposes.
pub fn encode_snapshot_with(
    s: &NodeSnapshot,
    budget: Budget,
    enc: &mut DescriptorEncoder,
) -> Result<(), fmt::Error> {
    for metric in contract::metrics() {
        let Some(read) = &metric.read else { continue };
        if !budget.includes(metric) {
            continue;
        }
        let mut family = FamilyEncoder::new(metric, enc);
        read(s, &mut |values, value| family.series(values, value));
        family.result?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Activity, DeviceHealth, EccErrorCounts, GpuSnapshot, ALERTED_XIDS};
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
