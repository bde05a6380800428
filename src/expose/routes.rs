//! The HTTP server: `/metrics`, `/healthz`, `/readyz` and the landing page.
//! Every endpoint only reads the published snapshot; none changes any state.
//! Each route takes GET and HEAD only (other methods get 405 with `Allow`),
//! other paths 404. Connection and request limits, TLS and basic auth are
//! [`super::listener`]'s.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus_client::registry::Registry;

use super::metrics::{self, Format};
use super::page;
use crate::model::NodeSnapshot;
use crate::poll::Published;

#[derive(Clone)]
struct AppState {
    published: Arc<Published>,
    registry: Arc<Registry>,
    telemetry_path: Arc<str>,
    bodies: Arc<BodyCache>,
}

/// The last `/metrics` body of each format, with the snapshot it was encoded
/// for. The exposition depends on nothing but the published snapshot, so
/// until the next poll publishes another one, scrapes share one encoding
/// (several Prometheus servers, or a burst of scrapes, cost one encode per
/// poll). Holding the snapshot's `Arc` keeps its address from being reused.
#[derive(Default)]
struct BodyCache {
    slots: Mutex<[Option<Arc<Encoded>>; 2]>,
}

/// A snapshot's encoding in one format, and its gzip form, made on the first
/// scrape that accepts gzip: a node nobody scrapes with gzip never compresses.
struct Encoded {
    snapshot: Arc<NodeSnapshot>,
    body: Bytes,
    gzip: OnceLock<Bytes>,
}

impl Encoded {
    /// The gzip body; concurrent first callers wait for one compression.
    fn gzipped(&self) -> Bytes {
        self.gzip.get_or_init(|| Bytes::from(gzip(&self.body))).clone()
    }
}

/// Level 1, the cheapest: 8 GPUs with seven instances each, 140 kB, come to
/// 11 kB in about 0.3 ms, paid once per snapshot and format.
fn gzip(body: &[u8]) -> Vec<u8> {
    let mut encoder =
        flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 8), flate2::Compression::fast());
    // Writing into a Vec cannot fail.
    encoder.write_all(body).expect("gzip into memory");
    encoder.finish().expect("gzip into memory")
}

impl BodyCache {
    fn slot(format: Format) -> usize {
        match format {
            Format::PrometheusText => 0,
            Format::OpenMetrics => 1,
        }
    }

    /// The body for `format`: the cached one when `snapshot` is still the
    /// published one, else a fresh encoding (never an older snapshot's).
    fn body(
        &self,
        registry: &Registry,
        snapshot: Arc<NodeSnapshot>,
        format: Format,
    ) -> Result<Arc<Encoded>, std::fmt::Error> {
        let slot = Self::slot(format);
        {
            let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(cached) = &slots[slot] {
                if Arc::ptr_eq(&cached.snapshot, &snapshot) {
                    return Ok(cached.clone());
                }
            }
        }
        // Encoded outside the lock; the registry reads the published snapshot,
        // which is `snapshot` or a newer one, so a body is never older than its key.
        let encoded = Arc::new(Encoded {
            snapshot,
            body: Bytes::from(metrics::render(registry, format)?),
            gzip: OnceLock::new(),
        });
        self.slots.lock().unwrap_or_else(|e| e.into_inner())[slot] = Some(encoded.clone());
        Ok(encoded)
    }
}

pub fn router(published: Arc<Published>, telemetry_path: &str) -> Router {
    router_with(published, telemetry_path, Vec::new(), super::budget::Budget::FULL)
}

/// The router with `extra` collectors encoded after the snapshot's families
/// (the OTLP pusher's counters), and only the families `budget` exposes. A
/// scrape body is cached per snapshot, so their values show at most one
/// poll late.
pub fn router_with(
    published: Arc<Published>,
    telemetry_path: &str,
    extra: Vec<Box<dyn prometheus_client::collector::Collector>>,
    budget: super::budget::Budget,
) -> Router {
    let mut registry = metrics::registry_with(published.clone(), budget);
    for collector in extra {
        registry.register_collector(collector);
    }
    let state = AppState {
        registry: Arc::new(registry),
        published,
        telemetry_path: telemetry_path.into(),
        bodies: Arc::default(),
    };
    Router::new()
        .route("/", get(landing))
        .route(telemetry_path, get(scrape))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(state)
}

async fn scrape(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept);
    let snapshot = state.published.load();
    match state.bodies.body(&state.registry, snapshot, format) {
        // Vary names both: a cache must not hand one client's format or coding to another.
        Ok(encoded) if accepts_gzip(&headers) => (
            [
                (header::CONTENT_TYPE, format.content_type()),
                (header::CONTENT_ENCODING, "gzip"),
                (header::VARY, "Accept, Accept-Encoding"),
            ],
            encoded.gzipped(),
        )
            .into_response(),
        Ok(encoded) => (
            [
                (header::CONTENT_TYPE, format.content_type()),
                (header::VARY, "Accept, Accept-Encoding"),
            ],
            encoded.body.clone(),
        )
            .into_response(),
        Err(_) => {
            tracing::error!("encoding the snapshot failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n").into_response()
        }
    }
}

/// Whether a client sent this `Accept-Encoding` takes gzip (RFC 9110
/// §12.5.3): gzip (or `x-gzip`, or `*` when gzip is not named) with a q above
/// 0, ranked at least as high as identity. No header means identity.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    let (mut gzip, mut identity, mut any) = (None, None, None);
    for value in headers.get_all(header::ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or_default().trim();
            let slot = if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
                &mut gzip
            } else if coding.eq_ignore_ascii_case("identity") {
                &mut identity
            } else if coding == "*" {
                &mut any
            } else {
                continue;
            };
            if let Some(q) = quality(parts) {
                *slot = Some(q);
            }
        }
    }
    let gzip = gzip.or(any).unwrap_or(0);
    let identity = identity.or(any).unwrap_or(1000);
    gzip > 0 && gzip >= identity
}

/// The q of one `Accept-Encoding` item in thousandths (1000 when absent);
/// None for a malformed q, so that item is ignored.
fn quality<'a>(params: impl Iterator<Item = &'a str>) -> Option<u16> {
    for param in params {
        let (name, value) = param.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("q") {
            continue;
        }
        let value = value.trim();
        let q: f32 = value.parse().ok()?;
        let well_formed = value.len() <= 5 && value.starts_with(['0', '1']) && (0.0..=1.0).contains(&q);
        return well_formed.then(|| (q * 1000.0).round() as u16);
    }
    Some(1000)
}

/// Ready once a poll completed, unless the node cannot be read until its
/// setup is fixed: a pod that cannot work should not look ready, and its
/// probe's body says why.
async fn ready(State(state): State<AppState>) -> Response {
    if !state.published.is_ready() {
        return (StatusCode::SERVICE_UNAVAILABLE, "no complete snapshot yet\n").into_response();
    }
    match &state.published.load().blocked {
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")).into_response(),
        None => (StatusCode::OK, "ready\n").into_response(),
    }
}

async fn landing(State(state): State<AppState>) -> Html<String> {
    Html(page::render(&state.published.load(), &state.telemetry_path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::poll::Poller;
    use crate::source::scenarios::{self, DEFAULT_SCENARIO};
    use crate::source::sim::SimSource;

    #[test]
    fn scrapes_share_one_encoding_until_the_next_snapshot() {
        let published = Arc::new(Published::default());
        let source = SimSource::Scenario(scenarios::build(DEFAULT_SCENARIO).expect("scenario"));
        let full = Poller::new(Box::new(source)).poll_once();
        let mut smaller = full.clone();
        smaller.gpus.truncate(1);
        let registry = metrics::registry(published.clone());
        let cache = BodyCache::default();
        let body = |format| {
            cache
                .body(&registry, published.load(), format)
                .expect("encodes")
                .body
                .clone()
        };

        published.publish(full);
        let first = body(Format::PrometheusText);
        let again = body(Format::PrometheusText);
        assert_eq!(
            first.as_ptr(),
            again.as_ptr(),
            "the same snapshot is not encoded again"
        );
        let open = body(Format::OpenMetrics);
        assert!(open.ends_with(b"# EOF\n"), "each format has its own body");

        published.publish(smaller);
        let next = body(Format::PrometheusText);
        assert_ne!(next, first, "a new snapshot is encoded afresh");
        let fresh = metrics::render(&registry, Format::PrometheusText).expect("encodes");
        assert_eq!(next, fresh.as_bytes());
    }

    #[test]
    fn the_gzip_body_is_made_once_per_snapshot_only_when_asked_and_decodes_to_the_body() {
        use std::io::Read;
        let published = Arc::new(Published::default());
        let source = SimSource::Scenario(scenarios::build(DEFAULT_SCENARIO).expect("scenario"));
        let full = Poller::new(Box::new(source)).poll_once();
        let registry = metrics::registry(published.clone());
        let cache = BodyCache::default();
        let entry = |format| cache.body(&registry, published.load(), format).expect("encodes");

        published.publish(full.clone());
        let text = entry(Format::PrometheusText);
        assert!(
            text.gzip.get().is_none(),
            "nothing is compressed before a gzip scrape"
        );
        let first = entry(Format::PrometheusText).gzipped();
        let again = entry(Format::PrometheusText).gzipped();
        assert_eq!(first.as_ptr(), again.as_ptr(), "one compression per snapshot");
        assert!(
            first.len() * 4 < text.body.len(),
            "{} of {} bytes",
            first.len(),
            text.body.len()
        );
        let mut decoded = Vec::new();
        flate2::read::GzDecoder::new(&first[..])
            .read_to_end(&mut decoded)
            .expect("valid gzip");
        assert_eq!(decoded, text.body);
        assert!(
            entry(Format::OpenMetrics).gzip.get().is_none(),
            "each format compresses on its own first gzip scrape"
        );

        published.publish(full);
        let next = entry(Format::PrometheusText);
        assert!(next.gzip.get().is_none(), "a new snapshot starts uncompressed");
        assert_ne!(next.gzipped().as_ptr(), first.as_ptr());
    }

    fn accepts(value: &str) -> bool {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT_ENCODING, value.parse().expect("a header value"));
        accepts_gzip(&headers)
    }

    #[test]
    fn accept_encoding_is_honoured_with_its_q_values() {
        assert!(!accepts_gzip(&HeaderMap::new()), "no header: identity");
        for yes in [
            "gzip",
            "GZIP",
            "x-gzip",
            "gzip, deflate, br",
            "deflate, gzip;q=1.0, *;q=0.5",
            "*",
            "br;q=1, *;q=0.1, identity;q=0.01",
            "identity;q=0, gzip;q=0.001",
            "gzip ; q=0.8, identity;q=0.5",
        ] {
            assert!(accepts(yes), "{yes}");
        }
        for no in [
            "",
            "identity",
            "deflate, br",
            "gzip;q=0",
            "gzip;q=0.000",
            "GZip; Q=0",
            "*;q=0",
            "*, gzip;q=0",
            "gzip;q=0.5, identity",
            "gzip;q=0.5, *",
            "gzip;q=2",
            "gzip;q=abc",
            "gzip;q=-1",
        ] {
            assert!(!accepts(no), "{no}");
        }
        let mut split = HeaderMap::new();
        split.append(
            header::ACCEPT_ENCODING,
            "deflate".parse().expect("a header value"),
        );
        split.append(header::ACCEPT_ENCODING, "gzip".parse().expect("a header value"));
        assert!(accepts_gzip(&split), "header lines are one list");
    }
}
