//! The HTTP server: `/metrics`, `/healthz`, `/readyz` and the landing page.
//! Every endpoint only reads the published snapshot; none changes any state.
//! Each route takes GET and HEAD only (other methods get 405 with `Allow`),
//! other paths 404. Connection and request limits, TLS and basic auth are
//! [`super::server`]'s.

use std::sync::{Arc, Mutex};

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
    slots: Mutex<[Option<Encoded>; 2]>,
}

/// A snapshot and its encoding in one format.
type Encoded = (Arc<NodeSnapshot>, Bytes);

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
    ) -> Result<Bytes, std::fmt::Error> {
        let slot = Self::slot(format);
        {
            let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((cached, body)) = &slots[slot] {
                if Arc::ptr_eq(cached, &snapshot) {
                    return Ok(body.clone());
                }
            }
        }
        // Encoded outside the lock; the registry reads the published snapshot,
        // which is `snapshot` or a newer one, so a body is never older than its key.
        let body = Bytes::from(metrics::render(registry, format)?);
        self.slots.lock().unwrap_or_else(|e| e.into_inner())[slot] = Some((snapshot, body.clone()));
        Ok(body)
    }
}

pub fn router(published: Arc<Published>, telemetry_path: &str) -> Router {
    router_with(published, telemetry_path, Vec::new())
}

/// The router with `extra` collectors encoded after the snapshot's families
/// (the OTLP pusher's counters). A scrape body is cached per snapshot, so
/// their values show at most one poll late.
pub fn router_with(
    published: Arc<Published>,
    telemetry_path: &str,
    extra: Vec<Box<dyn prometheus_client::collector::Collector>>,
) -> Router {
    let mut registry = metrics::registry(published.clone());
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
        Ok(body) => ([(header::CONTENT_TYPE, format.content_type())], body).into_response(),
        Err(_) => {
            tracing::error!("encoding the snapshot failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n").into_response()
        }
    }
}

async fn ready(State(state): State<AppState>) -> Response {
    if state.published.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "no complete snapshot yet\n").into_response()
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
        let body = |format| cache.body(&registry, published.load(), format).expect("encodes");

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
}
