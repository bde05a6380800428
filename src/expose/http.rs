//! The HTTP server: `/metrics`, `/healthz`, `/readyz` and the landing page.
//! Every endpoint only reads the published snapshot; none changes any state.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus_client::registry::Registry;

use super::metrics::{self, Format};
use super::page;
use crate::poll::Published;

#[derive(Clone)]
struct AppState {
    published: Arc<Published>,
    registry: Arc<Registry>,
    telemetry_path: Arc<str>,
}

pub fn router(published: Arc<Published>, telemetry_path: &str) -> Router {
    let state = AppState {
        registry: Arc::new(metrics::registry(published.clone())),
        published,
        telemetry_path: telemetry_path.into(),
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
    match metrics::render(&state.registry, format) {
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
