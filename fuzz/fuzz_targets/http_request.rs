//! HTTP requests to the exporter's router, in process (no socket): any
//! method, request target, `Accept` and `Accept-Encoding` headers. Unknown
//! paths are 404, the known ones answer GET, `/metrics` in the format `Accept`
//! asks for (gzip or not), and no request makes the server fail (5xx).
#![no_main]

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{header, HeaderValue, Method, Request, StatusCode, Uri};
use axum::Router;
use libfuzzer_sys::fuzz_target;
use mig_exporter::expose::metrics::Format;
use mig_exporter::expose::routes::router;
use mig_exporter::poll::{Poller, Published};
use mig_exporter::source::scenarios::{self, DEFAULT_SCENARIO};
use mig_exporter::source::sim::SimSource;
use tower::ServiceExt;

const TELEMETRY_PATH: &str = "/metrics";
const KNOWN_PATHS: [&str; 4] = ["/", TELEMETRY_PATH, "/healthz", "/readyz"];
const METHODS: [&str; 8] = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "BREW"];

struct Server {
    runtime: tokio::runtime::Runtime,
    app: Router,
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let world = scenarios::build(DEFAULT_SCENARIO).expect("the default scenario");
        let published = Arc::new(Published::default());
        published.publish(Poller::new(Box::new(SimSource::Scenario(world))).poll_once());
        Server {
            runtime: tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("a runtime"),
            app: router(published, TELEMETRY_PATH),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    // One byte picks the method; the request target, the Accept value and the
    // Accept-Encoding value follow, split at newlines (none can hold one on the wire).
    let Some((&method, rest)) = data.split_first() else {
        return;
    };
    let method = Method::from_bytes(METHODS[usize::from(method) % METHODS.len()].as_bytes()).unwrap();
    let (target, accept) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    // What hyper would refuse before routing never reaches the router.
    let Ok(uri) = Uri::try_from(target) else {
        return;
    };
    let (accept, encoding) = match accept {
        Some(rest) => match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (Some(&rest[..i]), Some(&rest[i + 1..])),
            None => (Some(rest), None),
        },
        None => (None, None),
    };
    let Ok(accept) = accept.map(HeaderValue::from_bytes).transpose() else {
        return;
    };
    let Ok(encoding) = encoding.map(HeaderValue::from_bytes).transpose() else {
        return;
    };
    let path = uri.path().to_string();
    let mut request = Request::builder().method(method.clone()).uri(uri);
    if let Some(value) = &accept {
        request = request.header(header::ACCEPT, value.clone());
    }
    if let Some(value) = encoding {
        request = request.header(header::ACCEPT_ENCODING, value);
    }
    let request = request.body(Body::empty()).expect("a request from valid parts");

    let server = server();
    let response = server
        .runtime
        .block_on(server.app.clone().oneshot(request))
        .expect("the router is infallible");
    let status = response.status();
    assert!(!status.is_server_error(), "{method} {path}: {status}");
    if !KNOWN_PATHS.contains(&path.as_str()) {
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}");
        return;
    }
    if method != Method::GET && method != Method::HEAD {
        assert!(status.is_client_error(), "{method} {path}: {status}");
        return;
    }
    assert_eq!(status, StatusCode::OK, "{method} {path}");
    if path == TELEMETRY_PATH {
        let asked = accept.as_ref().and_then(|v| v.to_str().ok());
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .expect("a content type");
        assert_eq!(
            content_type,
            Format::negotiate(asked).content_type(),
            "Accept: {asked:?}"
        );
    }
    let body = server
        .runtime
        .block_on(axum::body::to_bytes(response.into_body(), usize::MAX))
        .expect("a whole body");
    assert!(
        method == Method::HEAD || !body.is_empty(),
        "{method} {path}: empty body"
    );
});
