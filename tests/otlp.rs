//! OTLP push end to end: the real exporter on the simulator pushing to
//!
//! * an OTLP gRPC receiver in this test: the resource from `OTEL_SERVICE_NAME`
//!   and `OTEL_RESOURCE_ATTRIBUTES`, the headers of `OTEL_EXPORTER_OTLP_HEADERS`,
//!   and every series of `/metrics` under the OTLP name in docs/metrics.md with the same
//!   value; series that come and go with the geometry and drift;
//! * an OTLP/HTTP receiver in this test: the signal path, the per-signal
//!   endpoint and headers;
//! * a real OTLP receiver over HTTP/protobuf that writes to a real Prometheus,
//!   where every family arrives under the Prometheus-style name in docs/metrics.md and
//!   queries return what `/metrics` says. Debian builds Prometheus without its
//!   own OTLP receiver, so the receiver is vmagent (Debian's victoria-metrics)
//!   with Prometheus naming, remote-writing to Prometheus;
//! * TLS to both transports with a CA of the test's own, and a client
//!   certificate where the collector asks for one;
//! * a collector that is down or never answers: scrapes stay fast, polls go
//!   on, failures are counted on `/metrics` and logged once, without secrets.
//!
//! vmagent comes from `MIG_TEST_VMAGENT`, Prometheus from `PATH`, openssl
//! too; `scripts/test.sh` installs them. Without them the tests fail, they
//! never skip.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value as Number;

use common::daemon::{free_address, Daemon};
use common::{wait_for, Exporter};

// ------------------------------------------------------------ the contract

/// Labels of `/metrics` and the attributes they become over OTLP.
const LABEL_TO_ATTRIBUTE: [(&str, &str); 22] = [
    ("gpu", "nvidia.gpu.index"),
    ("gpu_uuid", "hw.id"),
    ("name", "hw.model"),
    ("pci_bus_id", "nvidia.gpu.pci_bus_id"),
    ("driver_version", "hw.driver_version"),
    ("gi", "nvidia.mig.gi.id"),
    ("ci", "nvidia.mig.ci.id"),
    ("profile", "nvidia.mig.profile"),
    ("profile_id", "nvidia.mig.profile.id"),
    ("placement_start", "nvidia.mig.placement.start"),
    ("placement_size", "nvidia.mig.placement.size"),
    ("ci_profile", "nvidia.mig.ci.profile"),
    ("ci_profile_id", "nvidia.mig.ci.profile.id"),
    ("mig_uuid", "nvidia.mig.device.uuid"),
    ("reason", "nvidia.mig.drift.reason"),
    ("source", "nvidia.mig.source"),
    ("state", "nvidia.mig.source.state"),
    ("error_type", "error.type"),
    ("xid", "nvidia.gpu.xid"),
    ("namespace", "k8s.namespace.name"),
    ("pod", "k8s.pod.name"),
    ("container", "k8s.container.name"),
];

/// Families that change on every poll: `/metrics` and a push may come
/// from different polls, so only their presence is compared.
const MOVING: [&str; 3] = [
    "mig_exporter_last_successful_poll_timestamp_seconds",
    "mig_exporter_poll_duration_seconds",
    "mig_exporter_poll_errors_total",
];

/// A row of the table of every metric in docs/metrics.md, for one Prometheus family.
struct Row {
    /// The OTLP name (the first, where a family has two).
    otlp: String,
    /// The names a Prometheus-naming OTLP receiver gives it.
    prometheus_style: Vec<String>,
}

/// The OTLP table of docs/metrics.md by Prometheus family, each activity kind
/// spelled out; families that are not pushed as metrics are left out.
fn readme_table() -> BTreeMap<String, Row> {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/metrics.md")).unwrap();
    let section = doc
        .split("\n## OTLP\n")
        .nth(1)
        .expect("docs/metrics.md has an OTLP section")
        .split("\n## ")
        .next()
        .unwrap();
    let kinds = [
        "gr_engine_active",
        "sm_active",
        "sm_occupancy",
        "tensor_active",
        "dram_active",
        "fp64_active",
        "fp32_active",
        "fp16_active",
    ];
    let names =
        |cell: &str| -> Vec<String> { cell.split('`').skip(1).step_by(2).map(str::to_string).collect() };
    let mut table = BTreeMap::new();
    // The rows of the five-column table of every metric.
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() != 7 {
            continue;
        }
        // Attributes in parentheses and the resource are not metric names.
        let otlp_cell = cells[2].split('(').next().unwrap();
        if otlp_cell.starts_with("resource") {
            continue;
        }
        let Some(otlp) = names(otlp_cell).into_iter().next() else {
            continue;
        };
        let prometheus_style = names(cells[5]);
        for p in names(cells[1]) {
            let spelled: Vec<&str> = if p.contains("<kind>") {
                kinds.to_vec()
            } else {
                vec![""]
            };
            for k in spelled {
                let row = Row {
                    otlp: otlp.replace("<kind>", k),
                    prometheus_style: prometheus_style.iter().map(|n| n.replace("<kind>", k)).collect(),
                };
                table.insert(p.replace("<kind>", k), row);
            }
        }
    }
    assert!(
        table.len() > 40,
        "the OTLP table of docs/metrics.md has a row per family"
    );
    table
}

fn readme_mapping() -> BTreeMap<String, String> {
    readme_table().into_iter().map(|(p, row)| (p, row.otlp)).collect()
}

/// One series of a Prometheus text exposition.
#[derive(Debug, Clone)]
struct Series {
    family: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn parse_exposition(text: &str) -> Vec<Series> {
    let mut types = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            types.insert(
                parts.next().unwrap().to_string(),
                parts.next().unwrap().to_string(),
            );
        }
    }
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|line| {
            let (key, value) = line.rsplit_once(' ').unwrap();
            let (name, labels) = match key.split_once('{') {
                Some((n, l)) => (n, l.trim_end_matches('}')),
                None => (key, ""),
            };
            let labels = split_labels(labels);
            // A counter's family keeps its `_total` (as docs/metrics.md names it).
            let family = if types.contains_key(name) || name.ends_with("_total") {
                name.to_string()
            } else {
                ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s).filter(|f| types.contains_key(*f)))
                    .unwrap_or(name)
                    .to_string()
            };
            Series {
                family,
                labels,
                value: value.parse().unwrap(),
            }
        })
        .collect()
}

fn split_labels(labels: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = labels;
    while let Some((key, after)) = rest.split_once("=\"") {
        let end = after.find('"').unwrap();
        out.insert(key.trim_start_matches(',').to_string(), after[..end].to_string());
        rest = &after[end + 1..];
    }
    out
}

// ------------------------------------------------------- the gRPC receiver

/// One pushed data point.
#[derive(Debug, Clone)]
struct Point {
    name: String,
    attributes: BTreeMap<String, String>,
    value: f64,
}

fn any_value(v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        other => format!("{other:?}"),
    }
}

fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), any_value(&kv.value)))
        .collect()
}

fn points(request: &ExportMetricsServiceRequest) -> Vec<Point> {
    let mut out = Vec::new();
    for rm in &request.resource_metrics {
        for sm in &rm.scope_metrics {
            for m in &sm.metrics {
                let numbers = match &m.data {
                    Some(Data::Gauge(g)) => &g.data_points,
                    Some(Data::Sum(s)) => &s.data_points,
                    other => panic!("{}: unexpected data {other:?}", m.name),
                };
                for p in numbers {
                    let value = match p.value {
                        Some(Number::AsDouble(d)) => d,
                        Some(Number::AsInt(i)) => i as f64,
                        None => panic!("{}: a point without a value", m.name),
                    };
                    out.push(Point {
                        name: m.name.clone(),
                        attributes: attributes(&p.attributes),
                        value,
                    });
                }
            }
        }
    }
    out
}

type Received = Arc<Mutex<Vec<(tonic::metadata::MetadataMap, ExportMetricsServiceRequest)>>>;

#[derive(Clone, Default)]
struct Receiver {
    received: Received,
}

#[tonic::async_trait]
impl MetricsService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let (metadata, _, body) = request.into_parts();
        self.received.lock().unwrap().push((metadata, body));
        Ok(tonic::Response::new(ExportMetricsServiceResponse {
            partial_success: None,
        }))
    }
}

/// PEM files a receiver serves TLS with; with `client_ca`, it asks every
/// client for a certificate that CA signed.
struct Tls {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

/// An OTLP gRPC receiver on loopback, in its own runtime.
struct GrpcCollector {
    address: String,
    received: Received,
    _runtime: tokio::runtime::Runtime,
}

impl GrpcCollector {
    fn start() -> GrpcCollector {
        GrpcCollector::start_with(None)
    }

    fn start_with(tls: Option<Tls>) -> GrpcCollector {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let receiver = Receiver::default();
        let received = receiver.received.clone();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let mut server = tonic::transport::Server::builder();
        if let Some(tls) = tls {
            let identity = tonic::transport::Identity::from_pem(&tls.cert, &tls.key);
            let mut config = tonic::transport::ServerTlsConfig::new().identity(identity);
            if let Some(ca) = tls.client_ca {
                config = config.client_ca_root(tonic::transport::Certificate::from_pem(ca));
            }
            server = server.tls_config(config).unwrap();
        }
        runtime.spawn(
            server
                .add_service(MetricsServiceServer::new(receiver))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        GrpcCollector {
            address,
            received,
            _runtime: runtime,
        }
    }

    /// The next push that arrives after `after` pushes.
    fn push_after(&self, after: usize) -> (tonic::metadata::MetadataMap, ExportMetricsServiceRequest) {
        wait_for(|| self.received.lock().unwrap().len() > after, "an OTLP push");
        self.received.lock().unwrap()[after].clone()
    }
}

fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> Vec<(&'a str, &'a Path)> {
    vars.iter().map(|(k, v)| (*k, Path::new(*v))).collect()
}

#[test]
fn grpc_push_carries_the_resource_the_headers_and_every_series_of_metrics() {
    let collector = GrpcCollector::start();
    let endpoint = format!("http://{}", collector.address);
    let exporter = Exporter::start_with_env(
        &["--log.level", "debug"],
        &env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "300"),
            ("OTEL_SERVICE_NAME", "gpu-fleet"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment.name=test,service.name=overridden,service.namespace=mig",
            ),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "authorization=Bearer%20s3cret-token,x-tenant=lab",
            ),
            ("NODE_NAME", "node-a"),
        ]),
    );
    // A push of the snapshot that a scrape then shows (the simulator's
    // values do not move between polls, only the exporter's own timings).
    let (metadata, request) = collector.push_after(1);
    let metrics = parse_exposition(&exporter.metrics());

    assert_eq!(metadata.get("authorization").unwrap(), "Bearer s3cret-token");
    assert_eq!(metadata.get("x-tenant").unwrap(), "lab");

    let resource = attributes(&request.resource_metrics[0].resource.as_ref().unwrap().attributes);
    assert_eq!(
        resource["service.name"], "gpu-fleet",
        "OTEL_SERVICE_NAME wins: {resource:?}"
    );
    assert_eq!(resource["service.namespace"], "mig");
    assert_eq!(resource["deployment.environment.name"], "test");
    assert_eq!(resource["service.version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(resource["k8s.node.name"], "node-a");
    assert_eq!(
        resource["service.instance.id"], "node-a",
        "the node name tells the pushes of many nodes apart"
    );
    assert!(!resource["host.name"].is_empty(), "{resource:?}");

    let pushed = points(&request);
    let mapping = readme_mapping();
    let labels: BTreeMap<&str, &str> = LABEL_TO_ATTRIBUTE.into_iter().collect();
    let mut families = BTreeSet::new();
    for series in &metrics {
        if series.family.starts_with("mig_exporter_otlp_") || series.family == "mig_exporter_build_info" {
            continue;
        }
        let Some(name) = mapping.get(&series.family) else {
            panic!("{} is not in the OTLP table of docs/metrics.md", series.family)
        };
        families.insert(series.family.clone());
        if series.family == "mig_exporter_poll_duration_seconds" {
            continue; // pushed as its sum and count, checked below
        }
        let mut wanted: BTreeMap<String, String> = series
            .labels
            .iter()
            .map(|(k, v)| {
                let attribute = labels
                    .get(k.as_str())
                    .unwrap_or_else(|| panic!("label {k} has no attribute"));
                (attribute.to_string(), v.clone())
            })
            .collect();
        if let Some(direction) = series.family.strip_prefix("nvidia_gpu_pcie_") {
            let direction = if direction.starts_with("tx") {
                "transmit"
            } else {
                "receive"
            };
            wanted.insert("network.io.direction".into(), direction.into());
        }
        let found: Vec<&Point> = pushed
            .iter()
            .filter(|p| &p.name == name && wanted.iter().all(|(k, v)| p.attributes.get(k) == Some(v)))
            .collect();
        assert_eq!(
            found.len(),
            1,
            "{} {:?} is pushed once as {name} {wanted:?}",
            series.family,
            series.labels
        );
        if !MOVING.contains(&series.family.as_str()) {
            assert_eq!(
                found[0].value, series.value,
                "{} {:?}",
                series.family, series.labels
            );
        }
        if wanted.contains_key("hw.id") {
            let a = &found[0].attributes;
            assert_eq!(a["hw.type"], "gpu");
            assert_eq!(a["hw.vendor"], "NVIDIA");
            // The hardware conventions' recommended GPU attributes, on every GPU point.
            assert!(a["hw.model"].starts_with("NVIDIA "), "{} {a:?}", series.family);
            assert!(!a["hw.driver_version"].is_empty(), "{} {a:?}", series.family);
        }
    }
    assert!(
        families.len() > 30,
        "the default scenario has most families: {families:?}"
    );
    for name in ["nvidia.mig.source.poll.time", "nvidia.mig.source.polls"] {
        assert!(pushed.iter().any(|p| p.name == name && p.value > 0.0), "{name}");
    }
    // Only what /metrics has is pushed: no series of its own.
    assert_eq!(
        pushed.len(),
        metrics
            .iter()
            .filter(|s| !s.family.starts_with("mig_exporter_otlp_") && s.family != "mig_exporter_build_info")
            .filter(|s| !s.family.starts_with("mig_exporter_poll_duration_seconds"))
            .count()
            + 2 * metrics
                .iter()
                .filter(|s| s.family == "mig_exporter_source_info")
                .count(),
        "one point per series, and the poll-duration sum and count per source"
    );

    let log = exporter.log().join("\n");
    assert!(log.contains("pushing metrics over OTLP"), "{log}");
    assert!(
        !log.contains("s3cret"),
        "no header value in the log, even at debug"
    );
}

/// The points of one push with this name.
fn named(request: &ExportMetricsServiceRequest, name: &str) -> Vec<Point> {
    points(request).into_iter().filter(|p| p.name == name).collect()
}

#[test]
fn geometry_and_drift_changes_reach_the_collector_on_the_next_push() {
    let dir = tempfile::tempdir().unwrap();
    let world = common::h100_world(dir.path(), 1, "9,19,19");
    let collector = GrpcCollector::start();
    let endpoint = format!("http://{}", collector.address);
    let _exporter = Exporter::start_with_env(
        &[
            "--world",
            world.to_str().unwrap(),
            "--otlp.endpoint",
            &endpoint,
            "--otlp.protocol",
            "grpc",
        ],
        &env(&[("OTEL_METRIC_EXPORT_INTERVAL", "200")]),
    );
    let (_, first) = collector.push_after(0);
    let gis = named(&first, "nvidia.mig.gpu_instance.info");
    assert_eq!(gis.len(), 3, "{gis:?}");
    assert!(named(&first, "nvidia.mig.drift").is_empty());
    let small = gis
        .iter()
        .find(|p| p.attributes["nvidia.mig.profile"] == "1g.10gb")
        .unwrap()
        .attributes["nvidia.mig.gi.id"]
        .clone();
    let resource = attributes(&first.resource_metrics[0].resource.as_ref().unwrap().attributes);
    assert_eq!(
        resource["service.name"], "mig-exporter",
        "the default service name"
    );
    assert!(
        !resource.contains_key("k8s.node.name"),
        "no NODE_NAME, no node name"
    );
    assert_eq!(
        resource["service.instance.id"], resource["host.name"],
        "without a node name, the host name tells nodes apart"
    );

    // Waits for a push that `done` accepts; pushes of the old state may come first.
    let push_where = |what: &str, done: &dyn Fn(&ExportMetricsServiceRequest) -> bool| {
        let mut seen = collector.received.lock().unwrap().len();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let (_, push) = collector.push_after(seen);
            if done(&push) {
                return push;
            }
            seen += 1;
            assert!(Instant::now() < deadline, "no push with {what}");
        }
    };

    // A GPU instance without its compute instance: unusable, a drift finding.
    common::mig_sim(&world, &["-i", "0", "mig", "-dci", "-gi", &small]);
    let push = push_where("the finding", &|p| !named(p, "nvidia.mig.drift").is_empty());
    let drift = named(&push, "nvidia.mig.drift");
    assert_eq!(drift.len(), 1, "{drift:?}");
    assert_eq!(drift[0].value, 1.0);
    assert_eq!(drift[0].attributes["nvidia.mig.drift.reason"], "gi_without_ci");
    assert!(drift[0].attributes["hw.id"].starts_with("GPU-"));
    let empty = named(&push, "nvidia.mig.gpu_instance.compute_instances");
    let empty: Vec<_> = empty
        .iter()
        .filter(|p| p.attributes["nvidia.mig.gi.id"] == small)
        .collect();
    assert_eq!(empty[0].value, 0.0);

    // Destroyed: its series leave the push, and so does the finding.
    common::mig_sim(&world, &["-i", "0", "mig", "-dgi", "-gi", &small]);
    let push = push_where("two GPU instances", &|p| {
        named(p, "nvidia.mig.gpu_instance.info").len() == 2
    });
    assert!(named(&push, "nvidia.mig.drift").is_empty());
    for p in points(&push) {
        assert_ne!(
            p.attributes.get("nvidia.mig.gi.id"),
            Some(&small),
            "{p:?} is gone"
        );
    }
}

// ------------------------------------------------- dead and hanging collectors

fn counter(exposition: &str, name: &str) -> u64 {
    common::value(exposition, name)
        .unwrap_or_else(|| panic!("{name} is on /metrics"))
        .parse()
        .unwrap()
}

/// Scrapes for a while and checks each is fast, that polls go on and that
/// failed pushes are counted.
fn scrapes_stay_fast_while_pushes_fail(exporter: &Exporter, what: &str) {
    let first_poll = |m: &str| {
        common::value(
            m,
            "mig_exporter_last_successful_poll_timestamp_seconds{source=\"sim\"}",
        )
    };
    let start = first_poll(&exporter.metrics());
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut slowest = Duration::ZERO;
    loop {
        let t = Instant::now();
        let metrics = exporter.metrics();
        slowest = slowest.max(t.elapsed());
        if counter(&metrics, "mig_exporter_otlp_export_errors_total") >= 2 {
            assert!(counter(&metrics, "mig_exporter_otlp_exports_total") >= 2);
            assert_ne!(first_poll(&metrics), start, "{what}: polls go on");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: failed pushes are not counted:\n{metrics}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        slowest < Duration::from_millis(500),
        "{what}: a scrape took {slowest:?}"
    );
    let log = exporter.log();
    let warnings: Vec<&String> = log.iter().filter(|l| l.contains("OTLP push failed")).collect();
    assert_eq!(
        warnings.len(),
        1,
        "{what}: one warning a minute, not one per push: {log:#?}"
    );
    assert!(
        !log.join("\n").contains("s3cret"),
        "{what}: no header value in the log"
    );
}

#[test]
fn a_dead_or_hanging_collector_never_stalls_scrapes_and_is_counted() {
    // Nothing listens on a port that was just freed.
    let dead = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    // This one accepts connections and never answers.
    let hanging = TcpListener::bind("127.0.0.1:0").unwrap();
    let hanging_address = hanging.local_addr().unwrap();
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    std::thread::spawn(move || {
        for stream in hanging.incoming().map_while(Result::ok) {
            keep.lock().unwrap().push(stream);
        }
    });
    for (protocol, address, what) in [
        ("grpc", dead, "dead gRPC collector"),
        ("http/protobuf", dead, "dead HTTP collector"),
        ("grpc", hanging_address, "hanging gRPC collector"),
        ("http/protobuf", hanging_address, "hanging HTTP collector"),
    ] {
        // Credentials in the URL must not reach the log either.
        let endpoint = format!("http://user:s3cret@{address}");
        let exporter = Exporter::start_with_env(
            &["--otlp.endpoint", &endpoint, "--otlp.protocol", protocol],
            &env(&[
                ("OTEL_METRIC_EXPORT_INTERVAL", "200"),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "300"),
                ("OTEL_EXPORTER_OTLP_HEADERS", "authorization=s3cret"),
            ]),
        );
        scrapes_stay_fast_while_pushes_fail(&exporter, what);
    }
    assert!(
        !held.lock().unwrap().is_empty(),
        "the hanging collector was reached"
    );
}

#[test]
fn bad_otlp_settings_stop_the_exporter_at_start_with_the_variable_named() {
    for (vars, expected) in [
        (
            vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")],
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ),
        (
            vec![
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ],
            "OTEL_EXPORTER_OTLP_PROTOCOL='http/json'",
        ),
        (
            vec![
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
                ("OTEL_METRIC_EXPORT_INTERVAL", "soon"),
            ],
            "OTEL_METRIC_EXPORT_INTERVAL='soon'",
        ),
        (
            vec![
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://127.0.0.1:4318"),
                ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/nonexistent/ca.pem"),
            ],
            "/nonexistent/ca.pem",
        ),
    ] {
        let out = Command::new(common::EXPORTER)
            .args(["--web.listen-address", "127.0.0.1:0"])
            .envs(vars.iter().copied())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{vars:?}: {stderr}");
        assert!(stderr.contains(expected), "{vars:?} names {expected}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

// ------------------------------------ an OTLP receiver in front of Prometheus

fn vmagent_binary() -> PathBuf {
    let path = std::env::var_os("MIG_TEST_VMAGENT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!(
                "MIG_TEST_VMAGENT is not set: run `bash scripts/test.sh`, which unpacks vmagent from Debian \
             trixie's victoria-metrics package under target/tools/vmagent and sets it, or set it to a \
             vmagent binary (1.112 or newer)"
            )
        });
    assert!(
        path.is_file(),
        "MIG_TEST_VMAGENT={} is not a file",
        path.display()
    );
    path
}

fn prometheus_binary() -> PathBuf {
    common::which("prometheus").unwrap_or_else(|| {
        panic!("prometheus is not installed: it comes with the Debian package `prometheus`, which scripts/test.sh installs")
    })
}

/// Polls until `f` gives a value; fails with what the daemons said.
fn wait<T>(daemons: &[&Daemon], what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= deadline {
            let logs: Vec<String> = daemons.iter().map(|d| d.log_tail()).collect();
            panic!("timed out waiting for {what}\n{}", logs.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A `/metrics` family, its name in Prometheus, and the label pairs
/// (`/metrics`, Prometheus) that identify a series in both.
type Check = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

#[test]
fn pushed_metrics_reach_a_real_prometheus_with_the_values_of_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 1m\n").unwrap();
    let prometheus_address = free_address();
    let prometheus = Daemon::start(
        "prometheus",
        &prometheus_binary(),
        &[
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", dir.path().join("prometheus").display()),
            format!("--web.listen-address={prometheus_address}"),
            "--web.enable-remote-write-receiver".to_string(),
        ],
        prometheus_address.clone(),
        Some("/-/ready"),
        dir.path().join("prometheus.log"),
    );
    let vmagent_address = free_address();
    let vmagent = Daemon::start(
        "vmagent",
        &vmagent_binary(),
        &[
            format!("-httpListenAddr={vmagent_address}"),
            format!("-remoteWrite.url=http://{prometheus_address}/api/v1/write"),
            format!(
                "-remoteWrite.tmpDataPath={}",
                dir.path().join("vmagent").display()
            ),
            "-remoteWrite.flushInterval=200ms".to_string(),
            "-opentelemetry.usePrometheusNaming".to_string(),
        ],
        vmagent_address.clone(),
        Some("/health"),
        dir.path().join("vmagent.log"),
    );
    let endpoint = format!("http://{vmagent_address}/opentelemetry");
    let exporter = Exporter::start_with_env(
        &["--otlp.endpoint", &endpoint, "--otlp.protocol", "http/protobuf"],
        &env(&[("OTEL_METRIC_EXPORT_INTERVAL", "500")]),
    );
    let metrics = parse_exposition(&exporter.metrics());
    // /metrics family, the Prometheus-style name of the pushed series (the
    // last column of docs/metrics.md's table), and the label pairs that identify a series in both.
    let checks: [Check; 7] = [
        (
            "nvidia_gpu_memory_total_bytes",
            "hw_gpu_memory_limit_bytes",
            &[("gpu_uuid", "hw_id")],
        ),
        (
            "nvidia_mig_compute_slices_used",
            "nvidia_mig_compute_slices_used",
            &[("gpu_uuid", "hw_id")],
        ),
        (
            "nvidia_mig_profile_remaining_instances",
            "nvidia_mig_profile_remaining_instances",
            &[("gpu_uuid", "hw_id"), ("profile_id", "nvidia_mig_profile_id")],
        ),
        (
            "nvidia_mig_gpu_instance_info",
            "nvidia_mig_gpu_instance_info",
            &[("gpu_uuid", "hw_id"), ("gi", "nvidia_mig_gi_id")],
        ),
        (
            "nvidia_mig_gpu_instance_dram_active_ratio",
            "nvidia_mig_gpu_instance_dram_active_ratio",
            &[("gpu_uuid", "hw_id"), ("gi", "nvidia_mig_gi_id")],
        ),
        (
            "nvidia_mig_compute_instance_sm_active_ratio",
            "nvidia_mig_compute_instance_sm_active_ratio",
            &[("mig_uuid", "nvidia_mig_device_uuid")],
        ),
        (
            "nvidia_mig_geometry_last_change_timestamp_seconds",
            "nvidia_mig_geometry_last_change_seconds",
            &[("gpu_uuid", "hw_id")],
        ),
    ];
    for (family, promql, keys) in checks {
        let expected: BTreeMap<Vec<String>, f64> = metrics
            .iter()
            .filter(|s| s.family == family)
            .map(|s| {
                (
                    keys.iter().map(|(label, _)| s.labels[*label].clone()).collect(),
                    s.value,
                )
            })
            .collect();
        assert!(!expected.is_empty(), "{family} is on /metrics");
        let got = wait(
            &[&prometheus, &vmagent],
            &format!("{promql} in Prometheus"),
            || {
                let result = prometheus.query(promql);
                let got: BTreeMap<Vec<String>, f64> = result
                    .iter()
                    .map(|r| {
                        let key = keys
                            .iter()
                            .map(|(_, l)| r["metric"][*l].as_str().unwrap_or_default().to_string())
                            .collect();
                        (key, r["value"][1].as_str().unwrap().parse().unwrap())
                    })
                    .collect();
                (got.len() == expected.len()).then_some(got)
            },
        );
        assert_eq!(got, expected, "{promql} in Prometheus is {family} on /metrics");
    }
    // Every family of /metrics arrives under the Prometheus-style name in docs/metrics.md.
    let table = readme_table();
    let wanted: BTreeSet<String> = metrics
        .iter()
        .filter_map(|s| table.get(&s.family))
        .flat_map(|row| row.prometheus_style.clone())
        .collect();
    assert!(wanted.len() > 30, "{wanted:?}");
    let pattern = wanted.iter().cloned().collect::<Vec<_>>().join("|");
    let every = format!(r#"count by (__name__) ({{__name__=~"{pattern}"}})"#);
    wait(&[&prometheus, &vmagent], "every family in Prometheus", || {
        let arrived: BTreeSet<String> = prometheus
            .query(&every)
            .iter()
            .map(|r| r["metric"]["__name__"].as_str().unwrap().to_string())
            .collect();
        (arrived == wanted).then_some(())
    });
    assert_eq!(
        counter(&exporter.metrics(), "mig_exporter_otlp_export_errors_total"),
        0
    );
}

// ------------------------------------------------------------------ TLS

/// A test CA in `dir` (`ca.pem`) and, signed by it, `server.pem`/`server.key`
/// for localhost and 127.0.0.1 and `client.pem`/`client.key` for a client,
/// made with the openssl command.
fn certificates(dir: &Path) {
    let openssl = |args: &str| {
        let out = Command::new("openssl")
            .args(args.split_whitespace())
            .current_dir(dir)
            .output()
            .expect("openssl is installed (Debian package openssl, which scripts/test.sh installs)");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "openssl {args}: {stderr}");
    };
    let key = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
    openssl(&format!(
        "req -x509 {key} -keyout ca.key -out ca.pem -days 2 -subj /CN=test-CA"
    ));
    for (name, usage) in [
        (
            "server",
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth",
        ),
        ("client", "extendedKeyUsage=clientAuth"),
    ] {
        std::fs::write(
            dir.join(format!("{name}.ext")),
            format!("basicConstraints=CA:FALSE\n{usage}\n"),
        )
        .unwrap();
        openssl(&format!(
            "req {key} -keyout {name}.key -out {name}.csr -subj /CN={name}"
        ));
        openssl(&format!(
            "x509 -req -in {name}.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out {name}.pem -days 2 \
             -extfile {name}.ext"
        ));
    }
}

#[test]
fn pushes_go_over_tls_to_collectors_the_given_ca_signed_with_a_client_certificate_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let file = |name: &str| dir.path().join(name).display().to_string();
    let pem = |name: &str| std::fs::read(dir.path().join(name)).unwrap();
    let (ca, client_cert, client_key) = (file("ca.pem"), file("client.pem"), file("client.key"));
    let port = |address: &str| address.rsplit_once(':').unwrap().1.to_string();

    // gRPC: the receiver of this test, asking for a client certificate.
    let grpc = GrpcCollector::start_with(Some(Tls {
        cert: pem("server.pem"),
        key: pem("server.key"),
        client_ca: Some(pem("ca.pem")),
    }));
    let grpc_endpoint = format!("https://localhost:{}", port(&grpc.address));
    // HTTP/protobuf: vmagent serving HTTPS (it forwards nowhere here).
    let vmagent_address = free_address();
    let vmagent = Daemon::start(
        "vmagent",
        &vmagent_binary(),
        &[
            format!("-httpListenAddr={vmagent_address}"),
            "-tls".to_string(),
            format!("-tlsCertFile={}", file("server.pem")),
            format!("-tlsKeyFile={}", file("server.key")),
            "-remoteWrite.url=http://127.0.0.1:9/api/v1/write".to_string(),
            format!("-remoteWrite.tmpDataPath={}", file("vmagent")),
        ],
        vmagent_address,
        None,
        dir.path().join("vmagent.log"),
    );
    let http_endpoint = format!("https://localhost:{}/opentelemetry", port(&vmagent.address));

    let start = |protocol: &str, endpoint: &str, vars: &[(&str, &str)]| {
        let mut vars = vars.to_vec();
        vars.push(("OTEL_METRIC_EXPORT_INTERVAL", "200"));
        Exporter::start_with_env(
            &["--otlp.endpoint", endpoint, "--otlp.protocol", protocol],
            &env(&vars),
        )
    };
    // Pushes and failed pushes so far.
    let pushes = |exporter: &Exporter| {
        let metrics = exporter.metrics();
        (
            counter(&metrics, "mig_exporter_otlp_exports_total"),
            counter(&metrics, "mig_exporter_otlp_export_errors_total"),
        )
    };
    let refused = |exporter: &Exporter, what: &str| {
        wait_for(|| pushes(exporter).1 >= 1, what);
        let (exports, errors) = pushes(exporter);
        assert_eq!(exports, errors, "{what}: no push goes through");
    };

    // Without the CA, neither collector's certificate is trusted.
    refused(&start("grpc", &grpc_endpoint, &[]), "gRPC without the CA");
    refused(
        &start("http/protobuf", &http_endpoint, &[]),
        "HTTPS without the CA",
    );
    // With the CA but no client certificate, the gRPC collector refuses the client.
    let ca_only = [("OTEL_EXPORTER_OTLP_CERTIFICATE", ca.as_str())];
    refused(
        &start("grpc", &grpc_endpoint, &ca_only),
        "gRPC without a client certificate",
    );
    assert!(grpc.received.lock().unwrap().is_empty());

    let mutual = [
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", ca.as_str()),
        ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", client_cert.as_str()),
        ("OTEL_EXPORTER_OTLP_CLIENT_KEY", client_key.as_str()),
    ];
    let _grpc_client = start("grpc", &grpc_endpoint, &mutual);
    let (_, request) = grpc.push_after(0);
    assert!(points(&request)
        .iter()
        .any(|p| p.name == "nvidia.mig.gpu_instance.info"));

    let https = start("http/protobuf", &http_endpoint, &ca_only);
    wait_for(|| pushes(&https).0 >= 2, "pushes over HTTPS");
    assert_eq!(pushes(&https).1, 0, "{:#?}", https.log());
}

// ------------------------------------------------------- the HTTP receiver

/// One OTLP/HTTP request: its path, headers (names in lower case) and body.
struct HttpPush {
    path: String,
    headers: BTreeMap<String, String>,
    body: ExportMetricsServiceRequest,
}

/// A minimal OTLP/HTTP receiver on loopback: answers every request with an
/// empty protobuf response and keeps what it got.
fn http_receiver() -> (String, Arc<Mutex<Vec<HttpPush>>>) {
    use prost::Message;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let pushes = Arc::new(Mutex::new(Vec::new()));
    let keep = pushes.clone();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().map_while(Result::ok) {
            let mut data = Vec::new();
            let mut buf = [0u8; 65536];
            let head_end = loop {
                let n = stream.read(&mut buf).unwrap_or(0);
                if n == 0 {
                    break None;
                }
                data.extend_from_slice(&buf[..n]);
                if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                    break Some(i + 4);
                }
            };
            let Some(head_end) = head_end else { continue };
            let head = String::from_utf8_lossy(&data[..head_end]).to_string();
            let mut lines = head.lines();
            let path = lines
                .next()
                .unwrap()
                .split_whitespace()
                .nth(1)
                .unwrap()
                .to_string();
            let headers: BTreeMap<String, String> = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                .collect();
            let length: usize = headers.get("content-length").map_or(0, |l| l.parse().unwrap());
            while data.len() < head_end + length {
                let n = stream.read(&mut buf).unwrap_or(0);
                if n == 0 {
                    break;
                }
                data.extend_from_slice(&buf[..n]);
            }
            // A request cut short by an exporter being stopped is no push.
            let Ok(body) = ExportMetricsServiceRequest::decode(&data[head_end..]) else {
                continue;
            };
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            keep.lock().unwrap().push(HttpPush { path, headers, body });
        }
    });
    (address, pushes)
}

#[test]
fn http_pushes_go_to_the_signal_path_with_the_headers_of_the_environment() {
    let (address, pushes) = http_receiver();
    // The first push to `path`; pushes of an exporter stopped before may still come in.
    let first = |path: &str| {
        wait_for(
            || pushes.lock().unwrap().iter().any(|p| p.path == path),
            &format!("an OTLP/HTTP push to {path}"),
        );
        let mut pushes = pushes.lock().unwrap();
        let i = pushes.iter().position(|p| p.path == path).unwrap();
        pushes.remove(i)
    };

    // A base endpoint (with a path of its own) gets /v1/metrics.
    let base = format!("http://{address}/otlp");
    let exporter = Exporter::start_with_env(
        &[],
        &env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &base),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "authorization=Bearer%20s3cret,x-tenant=lab",
            ),
            ("OTEL_METRIC_EXPORT_INTERVAL", "200"),
            ("OTEL_SERVICE_NAME", "over-http"),
        ]),
    );
    // http/protobuf is the default protocol.
    let push = first("/otlp/v1/metrics");
    assert_eq!(push.headers["content-type"], "application/x-protobuf");
    assert_eq!(push.headers["authorization"], "Bearer s3cret");
    assert_eq!(push.headers["x-tenant"], "lab");
    let resource = attributes(
        &push.body.resource_metrics[0]
            .resource
            .as_ref()
            .unwrap()
            .attributes,
    );
    assert_eq!(resource["service.name"], "over-http");
    assert!(points(&push.body)
        .iter()
        .any(|p| p.name == "nvidia.mig.gpu_instance.info"));
    assert!(!exporter.log().join("\n").contains("s3cret"));
    drop(exporter);

    // The metrics endpoint is taken as it is, and its headers win.
    let full = format!("http://{address}/custom/metrics");
    let _exporter = Exporter::start_with_env(
        &[],
        &env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9"),
            ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", &full),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=lab"),
            ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "x-tenant=metrics"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "200"),
        ]),
    );
    let push = first("/custom/metrics");
    assert_eq!(push.headers["x-tenant"], "metrics");
}
