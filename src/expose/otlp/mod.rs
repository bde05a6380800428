//! OTLP push: the published snapshot, sent to an OpenTelemetry collector on
//! the SDK's periodic reader, over gRPC or HTTP/protobuf, configured by
//! `--otlp.*` flags and the standard `OTEL_*` variables.
//!
//! Every instrument is observable and reads the published snapshot, so a
//! push never touches the hardware, and series come and go with the
//! geometry. Exports run on the SDK's own thread, one at a time, each bounded
//! by the export timeout: a collector that is down or slow delays only the
//! next push, never a poll or a scrape, and nothing queues up behind it.

pub mod families;

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use opentelemetry::metrics::{Meter, MeterProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider, Temporality};
use opentelemetry_sdk::resource::{EnvResourceDetector, TelemetryResourceDetector};
use opentelemetry_sdk::Resource;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use crate::model::NodeSnapshot;
use crate::poll::Published;
use families::{Family, Kind};

/// The OTLP transports; `http/json` is not offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    #[value(name = "grpc")]
    Grpc,
    #[value(name = "http/protobuf")]
    HttpProtobuf,
}

impl Protocol {
    fn parse(value: &str, origin: &str) -> anyhow::Result<Protocol> {
        match value.trim() {
            "grpc" => Ok(Protocol::Grpc),
            "http/protobuf" => Ok(Protocol::HttpProtobuf),
            other => bail!(
                "{origin}='{other}' is not an OTLP protocol this exporter speaks: use grpc or http/protobuf"
            ),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::HttpProtobuf => "http/protobuf",
        }
    }
}

/// Where the OTLP exporter pushes, resolved once at start from the flags
/// and the environment the way every OpenTelemetry SDK resolves it.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The full URL requests go to (for HTTP, with `/v1/metrics`).
    pub endpoint: String,
    /// The flag or variable the endpoint came from, for messages.
    pub endpoint_origin: &'static str,
    pub protocol: Protocol,
    pub interval: Duration,
    pub timeout: Duration,
    /// PEM file of the CA that signed the collector's certificate.
    pub certificate: Option<PathBuf>,
    /// PEM files of the client certificate and key, for collectors that ask for one.
    pub client_certificate: Option<(PathBuf, PathBuf)>,
}

pub const ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
pub const METRICS_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT";
const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

impl Settings {
    /// `None` when nothing asks for OTLP: no `--otlp.endpoint` and no
    /// endpoint variable, or `OTEL_SDK_DISABLED=true`. `env` reads one
    /// variable (the process environment outside tests).
    pub fn resolve(
        endpoint_flag: Option<&str>,
        protocol_flag: Option<Protocol>,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Option<Settings>> {
        let var = |name: &str| env(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        if var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        let protocol = match protocol_flag {
            Some(p) => p,
            None => match (
                var("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"),
                var("OTEL_EXPORTER_OTLP_PROTOCOL"),
            ) {
                (Some(p), _) => Protocol::parse(&p, "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL")?,
                (None, Some(p)) => Protocol::parse(&p, "OTEL_EXPORTER_OTLP_PROTOCOL")?,
                // The specification's default.
                (None, None) => Protocol::HttpProtobuf,
            },
        };
        // A base endpoint gets the signal's path on HTTP; a per-signal
        // endpoint is taken as it is (the specification's rule).
        let (base, origin) = match (endpoint_flag, var(METRICS_ENDPOINT), var(ENDPOINT)) {
            (Some(flag), _, _) => (Some(flag.trim().to_string()), "--otlp.endpoint"),
            (None, Some(url), _) => {
                return Settings::finish(url, METRICS_ENDPOINT, protocol, &var).map(Some);
            }
            (None, None, Some(url)) => (Some(url), ENDPOINT),
            (None, None, None) => (None, ENDPOINT),
        };
        let Some(base) = base else { return Ok(None) };
        let endpoint = match protocol {
            Protocol::Grpc => base,
            Protocol::HttpProtobuf => format!("{}/v1/metrics", base.trim_end_matches('/')),
        };
        Settings::finish(endpoint, origin, protocol, &var).map(Some)
    }

    fn finish(
        endpoint: String,
        origin: &'static str,
        protocol: Protocol,
        var: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Settings> {
        let url = reqwest::Url::parse(&endpoint)
            .map_err(|e| anyhow!("{origin}: '{}' is not a URL ({e})", redact(&endpoint)))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            bail!(
                "{origin}: '{}' must be an http:// or https:// URL with a host (e.g. http://collector:4318)",
                redact(&endpoint)
            );
        }
        let millis = |names: &[&str], default: Duration| -> anyhow::Result<Duration> {
            for &name in names {
                if let Some(v) = var(name) {
                    return match v.parse::<u64>() {
                        Ok(ms) if ms > 0 => Ok(Duration::from_millis(ms)),
                        _ => bail!("{name}='{v}' is not a positive number of milliseconds"),
                    };
                }
            }
            Ok(default)
        };
        let interval = millis(&["OTEL_METRIC_EXPORT_INTERVAL"], DEFAULT_INTERVAL)?;
        let timeout = millis(
            &["OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"],
            DEFAULT_TIMEOUT,
        )?;
        let file = |signal: &str, general: &str| var(signal).or_else(|| var(general)).map(PathBuf::from);
        let certificate = file(
            "OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE",
            "OTEL_EXPORTER_OTLP_CERTIFICATE",
        );
        let client_certificate = match (
            file(
                "OTEL_EXPORTER_OTLP_METRICS_CLIENT_CERTIFICATE",
                "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
            ),
            file("OTEL_EXPORTER_OTLP_METRICS_CLIENT_KEY", "OTEL_EXPORTER_OTLP_CLIENT_KEY"),
        ) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => bail!(
                "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_KEY go together: one is set without the other"
            ),
        };
        Ok(Settings {
            endpoint,
            endpoint_origin: origin,
            protocol,
            interval,
            timeout,
            certificate,
            client_certificate,
        })
    }

    fn is_https(&self) -> bool {
        self.endpoint.starts_with("https://")
    }
}

/// The `user:password@` of a URL, found in the text, so that a URL too
/// broken to parse has it found too.
fn userinfo(endpoint: &str) -> Option<&str> {
    let (_, rest) = endpoint.split_once("://")?;
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    authority.rfind('@').map(|at| &authority[..=at])
}

/// The URL without a user or password, for logs and messages.
pub fn redact(endpoint: &str) -> String {
    match userinfo(endpoint) {
        Some(userinfo) => endpoint.replacen(userinfo, "", 1),
        None => endpoint.to_string(),
    }
}

/// Pushes and failed pushes, shown on `/metrics`.
#[derive(Debug, Default)]
pub struct ExportStats {
    exports: AtomicU64,
    failures: AtomicU64,
}

impl ExportStats {
    pub fn exports(&self) -> u64 {
        self.exports.load(Ordering::Relaxed)
    }

    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
}

/// Encodes [`ExportStats`] beside the snapshot's families on `/metrics`.
#[derive(Debug)]
pub struct StatsCollector(pub Arc<ExportStats>);

impl Collector for StatsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        for (name, help, value) in [
            (
                "mig_exporter_otlp_exports",
                "OTLP pushes to the collector, failed or not.",
                self.0.exports(),
            ),
            (
                "mig_exporter_otlp_export_errors",
                "OTLP pushes that failed (collector down, slow past the timeout, or refusing).",
                self.0.failures(),
            ),
        ] {
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            metric.encode_counter::<NoLabelSet, _, u64>(&value, None)?;
        }
        Ok(())
    }
}

/// The running push pipeline; dropping it sends a last push, waiting at
/// most the SDK's shutdown timeout (5 s) for it.
pub struct Pusher {
    _provider: SdkMeterProvider,
}

impl Pusher {
    /// Starts pushing. Must run inside the Tokio runtime the transports use.
    pub fn start(
        settings: &Settings,
        published: Arc<Published>,
        stats: Arc<ExportStats>,
        host_name: &str,
        node_name: Option<&str>,
        budget: crate::expose::budget::Budget,
    ) -> anyhow::Result<Pusher> {
        let exporter = build_exporter(settings)?;
        let counting = CountingExporter {
            inner: exporter,
            stats,
            endpoint: redact(&settings.endpoint),
            userinfo: userinfo(&settings.endpoint).map(str::to_string),
            log: Mutex::new(FailureLog::default()),
        };
        let reader = PeriodicReader::builder(counting)
            .with_interval(settings.interval)
            .build();
        let provider = SdkMeterProvider::builder()
            .with_resource(resource(host_name, node_name, &|name| std::env::var(name).ok()))
            .with_reader(reader)
            .build();
        register(&provider.meter("mig-exporter"), published, budget);
        tracing::info!(
            endpoint = %redact(&settings.endpoint),
            from = settings.endpoint_origin,
            protocol = settings.protocol.as_str(),
            interval = ?settings.interval,
            "pushing metrics over OTLP"
        );
        Ok(Pusher { _provider: provider })
    }
}

/// Resource: `service.name` (mig-exporter unless `OTEL_SERVICE_NAME` or
/// `OTEL_RESOURCE_ATTRIBUTES` says otherwise), `service.version`, the node
/// as `host.name`, `k8s.node.name` from `--kubernetes.node-name` (given as
/// `node_name`) or else `NODE_NAME` (the DaemonSet's downward API), and
/// `service.instance.id`: the Kubernetes node name where there is one, the
/// host name otherwise, so that the pushes of many nodes never make one
/// series. `OTEL_RESOURCE_ATTRIBUTES` overrides the defaults and
/// `OTEL_SERVICE_NAME` overrides everything.
pub fn resource(host_name: &str, node_name: Option<&str>, env: &dyn Fn(&str) -> Option<String>) -> Resource {
    let mut defaults = vec![
        KeyValue::new("service.name", "mig-exporter"),
        KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
    ];
    if !host_name.is_empty() {
        defaults.push(KeyValue::new("host.name", host_name.to_string()));
    }
    let node = node_name
        .map(str::to_string)
        .or_else(|| env(crate::cli::NODE_NAME_ENV))
        .filter(|n| !n.is_empty());
    if let Some(instance) = node.as_deref().or(Some(host_name)).filter(|n| !n.is_empty()) {
        defaults.push(KeyValue::new("service.instance.id", instance.to_string()));
    }
    if let Some(node) = node {
        defaults.push(KeyValue::new("k8s.node.name", node));
    }
    let mut builder = Resource::builder_empty()
        .with_attributes(defaults)
        .with_detector(Box::new(TelemetryResourceDetector))
        .with_detector(Box::new(EnvResourceDetector::new()));
    if let Some(name) = env("OTEL_SERVICE_NAME").filter(|n| !n.is_empty()) {
        builder = builder.with_service_name(name);
    }
    builder.build()
}

fn build_exporter(settings: &Settings) -> anyhow::Result<opentelemetry_otlp::MetricExporter> {
    let read = |path: &PathBuf, what: &str| {
        std::fs::read(path).with_context(|| format!("OTLP {what} {}", path.display()))
    };
    let certificate = settings
        .certificate
        .as_ref()
        .map(|p| read(p, "CA certificate"))
        .transpose()?;
    let identity = settings
        .client_certificate
        .as_ref()
        .map(|(cert, key)| {
            Ok::<_, anyhow::Error>((read(cert, "client certificate")?, read(key, "client key")?))
        })
        .transpose()?;
    let built = match settings.protocol {
        Protocol::Grpc => {
            let mut builder = opentelemetry_otlp::MetricExporter::builder()
                .with_tonic()
                .with_endpoint(settings.endpoint.clone())
                .with_timeout(settings.timeout)
                .with_temporality(Temporality::Cumulative);
            if settings.is_https() {
                use tonic::transport::{Certificate, ClientTlsConfig, Identity};
                let mut tls = ClientTlsConfig::new().with_native_roots();
                if let Some(pem) = &certificate {
                    tls = tls.ca_certificate(Certificate::from_pem(pem));
                }
                if let Some((cert, key)) = &identity {
                    tls = tls.identity(Identity::from_pem(cert, key));
                }
                builder = builder.with_tls_config(tls);
            }
            builder.build()
        }
        Protocol::HttpProtobuf => {
            // reqwest reads the process-wide provider; another part of the
            // exporter may have installed the same one first.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let mut client = reqwest::Client::builder().timeout(settings.timeout);
            if let Some(pem) = &certificate {
                let certs = reqwest::Certificate::from_pem_bundle(pem).context("OTLP CA certificate")?;
                client = client.tls_certs_merge(certs);
            }
            if let Some((cert, key)) = &identity {
                let pem = [key.as_slice(), b"\n", cert.as_slice()].concat();
                client =
                    client.identity(reqwest::Identity::from_pem(&pem).context("OTLP client certificate")?);
            }
            let client = RuntimeHttpClient {
                client: client.build().context("OTLP HTTP client")?,
                runtime: tokio::runtime::Handle::try_current()
                    .context("the OTLP HTTP client needs the async runtime")?,
            };
            opentelemetry_otlp::MetricExporter::builder()
                .with_http()
                .with_http_client(client)
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(settings.endpoint.clone())
                .with_timeout(settings.timeout)
                .with_temporality(Temporality::Cumulative)
                .build()
        }
    };
    built.map_err(|e| anyhow!("OTLP exporter for {}: {e}", redact(&settings.endpoint)))
}

/// reqwest's async client, run on the exporter's runtime: the SDK's reader
/// thread polls exports outside any runtime, where reqwest cannot connect.
#[derive(Debug)]
struct RuntimeHttpClient {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl HttpClient for RuntimeHttpClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        self.runtime
            .spawn(async move { client.send_bytes(request).await })
            .await?
    }
}

/// Counts every push and logs failures: the first at once, then at most
/// one line a minute with how many failed meanwhile, and one when pushes
/// work again.
struct CountingExporter {
    inner: opentelemetry_otlp::MetricExporter,
    stats: Arc<ExportStats>,
    endpoint: String,
    userinfo: Option<String>,
    log: Mutex<FailureLog>,
}

#[derive(Default)]
struct FailureLog {
    last_logged: Option<Instant>,
    unlogged: u64,
    failing: bool,
}

const FAILURE_LOG_EVERY: Duration = Duration::from_secs(60);

impl CountingExporter {
    fn record(&self, result: &OTelSdkResult) {
        self.stats.exports.fetch_add(1, Ordering::Relaxed);
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(()) => {
                if log.failing {
                    tracing::info!(endpoint = %self.endpoint, "OTLP push works again");
                }
                *log = FailureLog::default();
            }
            Err(e) => {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                log.failing = true;
                log.unlogged += 1;
                if log.last_logged.is_none_or(|t| t.elapsed() >= FAILURE_LOG_EVERY) {
                    let mut error = e.to_string();
                    if let Some(userinfo) = &self.userinfo {
                        error = error.replace(userinfo.as_str(), "");
                    }
                    tracing::warn!(
                        endpoint = %self.endpoint,
                        failed = log.unlogged,
                        error = %error,
                        "OTLP push failed; the next pushes carry on, /metrics is unaffected"
                    );
                    log.last_logged = Some(Instant::now());
                    log.unlogged = 0;
                }
            }
        }
    }
}

impl PushMetricExporter for CountingExporter {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let result = self.inner.export(metrics).await;
        self.record(&result);
        result
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}

/// The snapshot one collection reads: every callback of a collection sees
/// the same one, so a push never mixes two polls.
struct Pinned {
    published: Arc<Published>,
    snapshot: Mutex<Arc<NodeSnapshot>>,
}

impl Pinned {
    fn refresh(&self) -> Arc<NodeSnapshot> {
        let latest = self.published.load();
        *self.snapshot.lock().unwrap_or_else(|e| e.into_inner()) = latest.clone();
        latest
    }

    fn get(&self) -> Arc<NodeSnapshot> {
        self.snapshot.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// One observable instrument per family. The SDK runs callbacks in the
/// order they were registered, so the first one pins the snapshot for the
/// rest of the collection.
fn register(meter: &Meter, published: Arc<Published>, budget: crate::expose::budget::Budget) {
    let pinned = Arc::new(Pinned {
        snapshot: Mutex::new(published.load()),
        published,
    });
    for (i, family) in families::all_with(budget).into_iter().enumerate() {
        let Family {
            name,
            unit,
            description,
            kind,
            read,
            ..
        } = family;
        let pinned = pinned.clone();
        let snapshot = move || if i == 0 { pinned.refresh() } else { pinned.get() };
        match kind {
            Kind::Gauge => {
                meter
                    .f64_observable_gauge(name)
                    .with_unit(unit)
                    .with_description(description)
                    .with_callback(move |o| read(&snapshot(), &mut |v, a| o.observe(v, &a)))
                    .build();
            }
            Kind::UpDownCounter => {
                meter
                    .f64_observable_up_down_counter(name)
                    .with_unit(unit)
                    .with_description(description)
                    .with_callback(move |o| read(&snapshot(), &mut |v, a| o.observe(v, &a)))
                    .build();
            }
            Kind::Counter => {
                meter
                    .f64_observable_counter(name)
                    .with_unit(unit)
                    .with_description(description)
                    .with_callback(move |o| read(&snapshot(), &mut |v, a| o.observe(v, &a)))
                    .build();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(
        flag: Option<&str>,
        protocol: Option<Protocol>,
        vars: &[(&str, &str)],
    ) -> anyhow::Result<Option<Settings>> {
        Settings::resolve(flag, protocol, |name| {
            vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
        })
    }

    fn endpoint(flag: Option<&str>, protocol: Option<Protocol>, vars: &[(&str, &str)]) -> (String, Protocol) {
        let s = resolve(flag, protocol, vars).unwrap().expect("on");
        (s.endpoint, s.protocol)
    }

    #[test]
    fn nothing_is_pushed_without_an_endpoint_or_when_the_sdk_is_disabled() {
        assert_eq!(resolve(None, None, &[]).unwrap(), None);
        assert_eq!(
            resolve(
                None,
                Some(Protocol::Grpc),
                &[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]
            )
            .unwrap(),
            None
        );
        let disabled = [(ENDPOINT, "http://c:4318"), ("OTEL_SDK_DISABLED", "TRUE")];
        assert_eq!(resolve(None, None, &disabled).unwrap(), None);
        assert!(resolve(
            None,
            None,
            &[(ENDPOINT, "http://c:4318"), ("OTEL_SDK_DISABLED", "false")]
        )
        .unwrap()
        .is_some());
    }

    #[test]
    fn endpoints_follow_the_specification() {
        let http = Some(Protocol::HttpProtobuf);
        // A base endpoint gets the signal's path on HTTP, not on gRPC.
        assert_eq!(
            endpoint(None, None, &[(ENDPOINT, "http://c:4318")]).0,
            "http://c:4318/v1/metrics"
        );
        assert_eq!(
            endpoint(None, http, &[(ENDPOINT, "http://c:4318/otlp/")]).0,
            "http://c:4318/otlp/v1/metrics"
        );
        assert_eq!(
            endpoint(None, Some(Protocol::Grpc), &[(ENDPOINT, "http://c:4317")]).0,
            "http://c:4317"
        );
        // The per-signal endpoint is taken as it is and wins over the base one.
        let both = [
            (ENDPOINT, "http://base:4318"),
            (METRICS_ENDPOINT, "http://m:9090/api/v1/otlp/v1/metrics"),
        ];
        assert_eq!(
            endpoint(None, None, &both).0,
            "http://m:9090/api/v1/otlp/v1/metrics"
        );
        // The flag wins over both and is a base endpoint.
        let s = resolve(Some("https://flag:4318"), None, &both).unwrap().unwrap();
        assert_eq!(s.endpoint, "https://flag:4318/v1/metrics");
        assert_eq!(s.endpoint_origin, "--otlp.endpoint");
        assert!(s.is_https());
    }

    #[test]
    fn protocol_interval_and_timeout_come_from_flags_then_variables() {
        let base = (ENDPOINT, "http://c:4317");
        assert_eq!(
            endpoint(None, None, &[base]).1,
            Protocol::HttpProtobuf,
            "the default"
        );
        assert_eq!(
            endpoint(None, None, &[base, ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]).1,
            Protocol::Grpc
        );
        let both = [
            base,
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/protobuf"),
        ];
        assert_eq!(endpoint(None, None, &both).1, Protocol::HttpProtobuf);
        assert_eq!(endpoint(None, Some(Protocol::Grpc), &both).1, Protocol::Grpc);

        let s = resolve(None, None, &[base]).unwrap().unwrap();
        assert_eq!((s.interval, s.timeout), (DEFAULT_INTERVAL, DEFAULT_TIMEOUT));
        let timed = [
            base,
            ("OTEL_METRIC_EXPORT_INTERVAL", "1500"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2000"),
            ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "700"),
        ];
        let s = resolve(None, None, &timed).unwrap().unwrap();
        assert_eq!(s.interval, Duration::from_millis(1500));
        assert_eq!(
            s.timeout,
            Duration::from_millis(700),
            "the per-signal variable wins"
        );
    }

    #[test]
    fn bad_values_are_errors_that_name_the_variable() {
        let base = (ENDPOINT, "http://c:4318");
        let message = |vars: &[(&str, &str)]| format!("{:#}", resolve(None, None, vars).unwrap_err());
        assert!(message(&[base, ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")])
            .contains("OTEL_EXPORTER_OTLP_PROTOCOL='http/json'"));
        assert!(message(&[(ENDPOINT, "c:4318")]).contains(ENDPOINT));
        assert!(message(&[(METRICS_ENDPOINT, "ftp://c/x")]).contains(METRICS_ENDPOINT));
        assert!(message(&[base, ("OTEL_METRIC_EXPORT_INTERVAL", "0")])
            .contains("OTEL_METRIC_EXPORT_INTERVAL='0'"));
        assert!(message(&[base, ("OTEL_EXPORTER_OTLP_TIMEOUT", "5s")])
            .contains("OTEL_EXPORTER_OTLP_TIMEOUT='5s'"));
        assert!(message(&[base, ("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/k.pem")]).contains("go together"));
        let secret = format!(
            "{:#}",
            resolve(Some("http://user:s3cret@"), None, &[]).unwrap_err()
        );
        assert!(!secret.contains("s3cret"), "{secret}");
    }

    #[test]
    fn logged_endpoints_carry_no_credentials() {
        assert_eq!(
            redact("https://user:pw@c:4318/v1/metrics"),
            "https://c:4318/v1/metrics"
        );
        assert_eq!(redact("http://c:4318/v1/metrics"), "http://c:4318/v1/metrics");
        assert_eq!(redact("http://u:p@/x@y"), "http:///x@y");
        assert_eq!(redact("not a url"), "not a url");
        assert_eq!(userinfo("https://user:pw@c:4318/v1"), Some("user:pw@"));
        assert_eq!(userinfo("https://c:4318/v1@x"), None);
    }

    #[test]
    fn the_resource_names_the_service_the_node_and_its_host() {
        let get = |r: &Resource, key: &str| {
            r.get(&opentelemetry::Key::from(key.to_string()))
                .map(|v| v.to_string())
        };
        let plain = resource("node-7", None, &|_| None);
        assert_eq!(
            get(&plain, "service.version").as_deref(),
            Some(env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(get(&plain, "host.name").as_deref(), Some("node-7"));
        assert_eq!(get(&plain, "k8s.node.name"), None);
        assert_eq!(
            get(&plain, "service.instance.id").as_deref(),
            Some("node-7"),
            "the host name where no node name is known"
        );
        let vars = |name: &str| match name {
            "NODE_NAME" => Some("k8s-node-3".to_string()),
            "OTEL_SERVICE_NAME" => Some("fleet".to_string()),
            _ => None,
        };
        let named = resource("node-7", None, &vars);
        assert_eq!(get(&named, "k8s.node.name").as_deref(), Some("k8s-node-3"));
        assert_eq!(get(&named, "service.instance.id").as_deref(), Some("k8s-node-3"));
        assert_eq!(get(&named, "service.name").as_deref(), Some("fleet"));
        // --kubernetes.node-name wins over NODE_NAME.
        let flagged = resource("node-7", Some("gpu-a"), &vars);
        assert_eq!(get(&flagged, "k8s.node.name").as_deref(), Some("gpu-a"));
        assert_eq!(get(&flagged, "service.instance.id").as_deref(), Some("gpu-a"));
    }
}
