//! The HTTP/1.1 server under the router: limits against slow or huge
//! requests, and TLS and basic authentication from `--web.config.file`.
//!
//! Without a web config a request costs what it did with `axum::serve`: the
//! checks below are a few header lookups, with no lock and no allocation.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use axum::body::{Body, Bytes, HttpBody};
use axum::http::{header, HeaderValue, Method, Request, Response, StatusCode};
use axum::response::IntoResponse;
use axum::{BoxError, Router};
use base64::Engine;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use subtle::ConstantTimeEq;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use super::web_config::{WebConfig, WebConfigError};

/// Request heads larger than this get 431: a scrape's head is a few hundred bytes.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Request heads with more header lines than this get 431.
pub const MAX_HEADERS: usize = 64;
/// How long a successful basic-auth check is remembered, so that a scrape
/// does not pay a bcrypt verification (tens of milliseconds of CPU at cost 10)
/// every time. Each use of a remembered check remembers it this long again.
pub const AUTH_CACHE_TTL: Duration = Duration::from_secs(300);
const AUTH_CACHE_ENTRIES: usize = 256;
/// Longest wait for the single bcrypt slot: a request that cannot have it by
/// then gets 503 with `Retry-After`, so a flood of wrong passwords holds each
/// connection for a bounded time. At the cost cap (14), one verification takes
/// about a second of one core.
pub const AUTH_SLOT_WAIT: Duration = Duration::from_secs(2);

/// Limits on connections and requests.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest wait for a request's head, the time a kept-alive connection
    /// sits idle included, and for a TLS handshake; then the connection closes.
    pub read_timeout: Duration,
    /// Longest time from reading a request's head to having written its whole
    /// response; a client that does not read it in time is disconnected.
    pub write_timeout: Duration,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
}

/// Serves `router` on every one of `listeners` until `shutdown` completes, then lets open
/// connections finish their request (for at most `read_timeout`).
pub async fn serve(
    listeners: Vec<TcpListener>,
    router: Router,
    limits: Limits,
    web: Option<Arc<WebConfigFile>>,
    shutdown: impl Future<Output = ()>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.read_timeout)
        .max_header_size(MAX_HEADER_BYTES)
        .max_headers(MAX_HEADERS);
    let http = Arc::new(http);
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = accept_any(&listeners) => match accepted {
                Ok(stream) => stream,
                Err(e) => {
                    // Out of file descriptors, mostly: wait rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            http: http.clone(),
            router: router.clone(),
            web: web.clone(),
            read_timeout: limits.read_timeout,
            write_timeout: limits.write_timeout,
        };
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            connection.serve(stream, watcher).await;
            drop(permit);
        });
    }
    drop(listeners);
    if tokio::time::timeout(limits.read_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("connections still open at shutdown are closed");
    }
}

/// The next connection on any of `listeners` (`--web.listen-address` repeats).
/// Each call starts with a different listener, so a busy one cannot starve the others.
async fn accept_any(listeners: &[TcpListener]) -> std::io::Result<TcpStream> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Poll;
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    if listeners.is_empty() {
        return std::future::pending().await;
    }
    let start = NEXT.fetch_add(1, Ordering::Relaxed);
    std::future::poll_fn(|cx| {
        for i in 0..listeners.len() {
            let listener = &listeners[(start + i) % listeners.len()];
            if let Poll::Ready(accepted) = listener.poll_accept(cx) {
                return Poll::Ready(accepted.map(|(stream, _)| stream));
            }
        }
        Poll::Pending
    })
    .await
}

struct Connection {
    http: Arc<hyper::server::conn::http1::Builder>,
    router: Router,
    web: Option<Arc<WebConfigFile>>,
    read_timeout: Duration,
    write_timeout: Duration,
}

impl Connection {
    async fn serve(self, stream: TcpStream, watcher: hyper_util::server::graceful::Watcher) {
        let deadline = Arc::new(WriteDeadline::new());
        let stream = DeadlineIo::new(stream, deadline.clone());
        let write_timeout = self.write_timeout;
        let Some(web) = self.web.clone() else {
            let router = self.router;
            let service = hyper::service::service_fn(move |req| {
                deadline.arm(write_timeout);
                plain(router.clone(), req)
            });
            let _ = watcher
                .watch(self.http.serve_connection(TokioIo::new(stream), service))
                .await;
            return;
        };
        // The config is re-read when its files change, so certificates can
        // be replaced on disk; a config that became invalid refuses connections.
        let Ok(active) = web.current() else { return };
        let router = self.router;
        let service = hyper::service::service_fn(move |req| {
            deadline.arm(write_timeout);
            guarded(web.clone(), router.clone(), req)
        });
        match &active.tls {
            None => {
                let _ = watcher
                    .watch(self.http.serve_connection(TokioIo::new(stream), service))
                    .await;
            }
            Some(acceptor) => match tokio::time::timeout(self.read_timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = watcher
                        .watch(self.http.serve_connection(TokioIo::new(tls), service))
                        .await;
                }
                Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!("TLS handshake timed out"),
            },
        }
    }
}

async fn plain(router: Router, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    if let Some(refused) = refuse_body(&req) {
        return Ok(refused);
    }
    router.oneshot(req).await
}

async fn guarded<B>(
    web: Arc<WebConfigFile>,
    router: Router,
    req: Request<B>,
) -> Result<Response<Body>, Infallible>
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let Ok(active) = web.current() else {
        return Ok((StatusCode::INTERNAL_SERVER_ERROR, "the web config is not valid\n").into_response());
    };
    let mut response = match web
        .authorized(&active, req.headers().get(header::AUTHORIZATION))
        .await
    {
        Auth::Denied => {
            let mut r = (StatusCode::UNAUTHORIZED, "unauthorized\n").into_response();
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
            r
        }
        Auth::Busy => {
            let mut r = (
                StatusCode::SERVICE_UNAVAILABLE,
                "too many password checks at once; retry later\n",
            )
                .into_response();
            let retry = web.slot_wait.as_secs().max(1);
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry));
            r
        }
        Auth::Allowed => match refuse_body(&req) {
            Some(refused) => refused,
            None => router.oneshot(req).await?,
        },
    };
    for (name, value) in &active.config.headers {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    Ok(response)
}

/// No endpoint reads a body: a GET or HEAD that brings one gets 413 (other
/// methods get the router's 405).
fn refuse_body<B>(req: &Request<B>) -> Option<Response<Body>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return None;
    }
    let headers = req.headers();
    let has_body = headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    has_body.then(|| {
        let mut r = (StatusCode::PAYLOAD_TOO_LARGE, "requests take no body\n").into_response();
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        r
    })
}

/// User name and password of an `Authorization: Basic …` header.
pub fn basic_credentials(header: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let (scheme, encoded) = header.split_at(header.iter().position(|b| *b == b' ')?);
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim_ascii())
        .ok()?;
    let colon = decoded.iter().position(|b| *b == b':')?;
    Some((decoded[..colon].to_vec(), decoded[colon + 1..].to_vec()))
}

/// The web config as it is now: re-read when the file or a file it names
/// changes (checked on each connection and request by their modification
/// time, size and inode, without a lock).
pub struct WebConfigFile {
    path: PathBuf,
    tls_at_start: bool,
    loaded: ArcSwap<Loaded>,
    reload: Mutex<()>,
    /// Successful checks (a digest of user, hash and password) until when they hold.
    verified: Mutex<HashMap<[u8; 32], Instant>>,
    /// How long a successful check is remembered after its last use ([`AUTH_CACHE_TTL`]).
    cache_ttl: Duration,
    /// One bcrypt verification at a time: a flood of wrong passwords costs one core, not all.
    bcrypt: Semaphore,
    /// Longest wait for `bcrypt` ([`AUTH_SLOT_WAIT`]).
    slot_wait: Duration,
}

/// What a request's credentials are worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Auth {
    Allowed,
    Denied,
    /// Not checked: the bcrypt slot stayed taken for [`AUTH_SLOT_WAIT`].
    Busy,
}

struct Loaded {
    stamps: Vec<(PathBuf, Option<Stamp>)>,
    active: Result<Arc<Active>, Arc<str>>,
}

/// What identifies a version of a file cheaply.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode,
    })
}

/// A loaded config with its TLS acceptor and users ready to check.
pub struct Active {
    pub config: WebConfig,
    tls: Option<TlsAcceptor>,
    users: Vec<User>,
}

struct User {
    name_digest: [u8; 32],
    hash: String,
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    for part in parts {
        // Length-prefixed, so that ("ab", "c") and ("a", "bc") differ.
        context.update(&(part.len() as u64).to_be_bytes());
        context.update(part);
    }
    let mut out = [0; 32];
    out.copy_from_slice(context.finish().as_ref());
    out
}

impl Active {
    fn build(config: WebConfig, path: &Path) -> Result<Active, WebConfigError> {
        let tls = match &config.tls {
            None => None,
            Some(settings) => {
                let server = settings.server_config().map_err(|message| WebConfigError {
                    path: path.to_path_buf(),
                    line: None,
                    message: format!("tls_server_config: {message}"),
                })?;
                Some(TlsAcceptor::from(Arc::new(server)))
            }
        };
        let users = config
            .users
            .iter()
            .map(|(name, hash)| User {
                name_digest: sha256(&[name.as_bytes()]),
                hash: hash.clone(),
            })
            .collect();
        Ok(Active { config, tls, users })
    }
}

impl WebConfigFile {
    /// Reads the config and everything it names; any error stops the start.
    pub fn open(path: &Path) -> Result<WebConfigFile, WebConfigError> {
        let stamps = Self::stamps_of(path, None);
        let config = WebConfig::load(path)?;
        let stamps = Self::stamps_of(path, Some(&config))
            .into_iter()
            .chain(stamps)
            .collect();
        let tls_at_start = config.tls.is_some();
        for warning in config.warnings() {
            tracing::warn!(file = %path.display(), "{warning}");
        }
        let active = Active::build(config, path)?;
        Ok(WebConfigFile {
            path: path.to_path_buf(),
            tls_at_start,
            loaded: ArcSwap::from_pointee(Loaded {
                stamps,
                active: Ok(Arc::new(active)),
            }),
            reload: Mutex::new(()),
            verified: Mutex::default(),
            cache_ttl: AUTH_CACHE_TTL,
            bcrypt: Semaphore::new(1),
            slot_wait: AUTH_SLOT_WAIT,
        })
    }

    /// Whether connections are TLS (decided at start, as in the toolkit).
    pub fn tls(&self) -> bool {
        self.tls_at_start
    }

    fn stamps_of(path: &Path, config: Option<&WebConfig>) -> Vec<(PathBuf, Option<Stamp>)> {
        let files = config.map(WebConfig::files).unwrap_or_else(|| vec![path]);
        files.into_iter().map(|p| (p.to_path_buf(), stamp(p))).collect()
    }

    /// The config now, re-read first when one of its files changed.
    pub fn current(&self) -> Result<Arc<Active>, Arc<str>> {
        let loaded = self.loaded.load();
        if loaded.stamps.iter().all(|(path, was)| stamp(path) == *was) {
            return loaded.active.clone();
        }
        let _one_reload = self.reload.lock().unwrap_or_else(|e| e.into_inner());
        let loaded = self.loaded.load();
        if loaded.stamps.iter().all(|(path, was)| stamp(path) == *was) {
            return loaded.active.clone();
        }
        let fresh = self.load();
        let active = fresh.active.clone();
        self.loaded.store(Arc::new(fresh));
        active
    }

    fn load(&self) -> Loaded {
        // Stamped before reading: a change while reading is seen next time.
        let mut stamps = Self::stamps_of(&self.path, None);
        let active = WebConfig::load(&self.path).and_then(|config| {
            stamps.extend(Self::stamps_of(&self.path, Some(&config)));
            if config.tls.is_some() != self.tls_at_start {
                return Err(WebConfigError {
                    path: self.path.clone(),
                    line: None,
                    message: "TLS cannot be turned on or off while running; restart the exporter".into(),
                });
            }
            Active::build(config, &self.path)
        });
        match active {
            Ok(active) => {
                tracing::info!(file = %self.path.display(), "web config reloaded");
                for warning in active.config.warnings() {
                    tracing::warn!(file = %self.path.display(), "{warning}");
                }
                Loaded {
                    stamps,
                    active: Ok(Arc::new(active)),
                }
            }
            Err(e) => {
                tracing::error!("{e}; refusing connections until it is fixed");
                Loaded {
                    stamps,
                    active: Err(e.to_string().into()),
                }
            }
        }
    }

    /// Whether the request may pass: always without users, else when its
    /// basic-auth credentials match a user's bcrypt hash.
    async fn authorized(&self, active: &Active, header: Option<&HeaderValue>) -> Auth {
        self.authorized_at(active, header, Instant::now()).await
    }

    /// [`Self::authorized`] as if it were `now`, which the cache's lifetimes count from.
    async fn authorized_at(&self, active: &Active, header: Option<&HeaderValue>, now: Instant) -> Auth {
        let Some(first) = active.users.first() else {
            return Auth::Allowed;
        };
        let Some((name, password)) = header.and_then(|h| basic_credentials(h.as_bytes())) else {
            return Auth::Denied;
        };
        let name_digest = sha256(&[&name]);
        // Every name is compared, in constant time, so timing tells nothing about them.
        let mut matched = None;
        for user in &active.users {
            if bool::from(user.name_digest.ct_eq(&name_digest)) {
                matched = Some(user);
            }
        }
        // An unknown user costs a bcrypt check too, so it cannot be told apart by time.
        let hash = matched.unwrap_or(first).hash.clone();
        let key = sha256(&[&name, hash.as_bytes(), &password]);
        if matched.is_some() && self.remembered(&key, now) {
            return Auth::Allowed;
        }
        let _slot = match tokio::time::timeout(self.slot_wait, self.bcrypt.acquire()).await {
            Ok(Ok(slot)) => slot,
            Ok(Err(_closed)) => return Auth::Denied,
            Err(_waited) => return Auth::Busy,
        };
        // The same credentials may have been verified while this one waited.
        if matched.is_some() && self.remembered(&key, now) {
            return Auth::Allowed;
        }
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
            .await
            .unwrap_or(false)
            && matched.is_some();
        if !ok {
            return Auth::Denied;
        }
        let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if verified.len() >= AUTH_CACHE_ENTRIES {
            verified.retain(|_, until| *until > now);
            if verified.len() >= AUTH_CACHE_ENTRIES {
                verified.clear();
            }
        }
        verified.insert(key, now + self.cache_ttl);
        Auth::Allowed
    }

    /// Whether `key` was verified and has been used within the cache's
    /// lifetime; a use starts its lifetime again.
    fn remembered(&self, key: &[u8; 32], now: Instant) -> bool {
        let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        match verified.get_mut(key) {
            Some(until) if *until > now => {
                *until = (*until).max(now + self.cache_ttl);
                true
            }
            _ => false,
        }
    }
}

/// When a connection's response must be written by: set as each request is
/// handed to the router, so a client that does not read what it asked for
/// holds its connection (one of `--web.max-connections`) for a bounded time.
/// Without a lock: an atomic of nanoseconds since the connection opened.
struct WriteDeadline {
    opened: Instant,
    /// Nanoseconds after `opened`, plus one; 0: no deadline yet.
    at: AtomicU64,
}

impl WriteDeadline {
    fn new() -> WriteDeadline {
        WriteDeadline {
            opened: Instant::now(),
            at: AtomicU64::new(0),
        }
    }

    fn arm(&self, timeout: Duration) {
        let at = (self.opened.elapsed() + timeout).as_nanos();
        let at = u64::try_from(at).unwrap_or(u64::MAX - 1) + 1;
        self.at.store(at, Ordering::Relaxed);
    }

    fn get(&self) -> Option<Instant> {
        match self.at.load(Ordering::Relaxed) {
            0 => None,
            at => self.opened.checked_add(Duration::from_nanos(at - 1)),
        }
    }
}

/// A connection's socket whose writes fail once its [`WriteDeadline`] has
/// passed, also while one waits for the client to make room.
struct DeadlineIo<S> {
    inner: S,
    deadline: Arc<WriteDeadline>,
    /// Wakes a write blocked on a full socket at the deadline; made on the first such wait.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> DeadlineIo<S> {
    fn new(inner: S, deadline: Arc<WriteDeadline>) -> DeadlineIo<S> {
        DeadlineIo {
            inner,
            deadline,
            timer: None,
        }
    }

    fn timed_out() -> std::io::Error {
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the client did not read its response within --web.write-timeout",
        )
    }

    /// Runs a write operation; one that has to wait for the client to make
    /// room fails once the deadline has passed. One that can go on at once
    /// does: after a response, a connection may sit idle past its deadline,
    /// and an error page written without a request to arm it is small.
    fn bounded<T>(
        &mut self,
        cx: &mut Context<'_>,
        op: impl FnOnce(&mut S, &mut Context<'_>) -> Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        let done = op(&mut self.inner, cx);
        if done.is_ready() {
            return done;
        }
        let Some(at) = self.deadline.get() else {
            return Poll::Pending;
        };
        if Instant::now() >= at {
            return Poll::Ready(Err(Self::timed_out()));
        }
        let at = tokio::time::Instant::from_std(at);
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        if timer.deadline() != at {
            timer.as_mut().reset(at);
        }
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Self::timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for DeadlineIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for DeadlineIo<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.get_mut()
            .bounded(cx, |inner, cx| Pin::new(inner).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.get_mut()
            .bounded(cx, |inner, cx| Pin::new(inner).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.get_mut()
            .bounded(cx, |inner, cx| Pin::new(inner).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.get_mut()
            .bounded(cx, |inner, cx| Pin::new(inner).poll_shutdown(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_decoded() {
        let header = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("alice:pa:ss")
        );
        assert_eq!(
            basic_credentials(header.as_bytes()),
            Some((b"alice".to_vec(), b"pa:ss".to_vec())),
            "the password may hold colons"
        );
        assert_eq!(basic_credentials(b"Bearer abc"), None);
        assert_eq!(basic_credentials(b"Basic !!!"), None);
        assert_eq!(basic_credentials(b"Basic"), None);
    }

    fn basic(user: &str, password: &str) -> HeaderValue {
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        HeaderValue::from_str(&format!("Basic {encoded}")).unwrap()
    }

    /// A web config file in `dir` with users alice and bob, both with password "right".
    fn two_users(dir: &Path, cost: u32) -> WebConfigFile {
        let path = dir.join("web.yml");
        let hash = bcrypt::hash("right", cost).unwrap();
        std::fs::write(
            &path,
            format!("basic_auth_users:\n  alice: {hash}\n  bob: {hash}\n"),
        )
        .unwrap();
        WebConfigFile::open(&path).unwrap()
    }

    #[tokio::test]
    async fn a_verified_password_is_remembered_and_a_wrong_one_never_is() {
        let dir = tempfile::tempdir().unwrap();
        let web = two_users(dir.path(), 10);
        let active = web.current().unwrap();
        let check = |header: Option<HeaderValue>| {
            let (web, active) = (&web, active.clone());
            async move { web.authorized(&active, header.as_ref()).await }
        };

        assert_eq!(check(None).await, Auth::Denied);
        assert_eq!(check(Some(basic("alice", "wrong"))).await, Auth::Denied);
        assert_eq!(
            check(Some(basic("carol", "right"))).await,
            Auth::Denied,
            "an unknown user, a known password"
        );
        assert!(
            web.verified.lock().unwrap().is_empty(),
            "failures are not remembered"
        );

        let first = Instant::now();
        assert_eq!(check(Some(basic("alice", "right"))).await, Auth::Allowed);
        let verifying = first.elapsed();
        let again = Instant::now();
        assert_eq!(check(Some(basic("alice", "right"))).await, Auth::Allowed);
        assert!(
            again.elapsed() * 10 < verifying,
            "remembered: {:?} after a bcrypt check of {verifying:?}",
            again.elapsed()
        );
        assert_eq!(check(Some(basic("bob", "wrong"))).await, Auth::Denied);
        assert_eq!(web.verified.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_remembered_check_lives_on_while_used_and_ends_when_not() {
        let dir = tempfile::tempdir().unwrap();
        let mut web = two_users(dir.path(), 4);
        web.slot_wait = Duration::from_millis(20);
        let ttl = web.cache_ttl;
        let active = web.current().unwrap();
        let alice = basic("alice", "right");
        let t0 = Instant::now();
        assert_eq!(web.authorized_at(&active, Some(&alice), t0).await, Auth::Allowed);

        // With the bcrypt slot taken, only a remembered check can pass.
        let held = web.bcrypt.try_acquire().unwrap();
        let at = |fraction: f64| t0 + ttl.mul_f64(fraction);
        assert_eq!(
            web.authorized_at(&active, Some(&alice), at(0.8)).await,
            Auth::Allowed,
            "within its lifetime"
        );
        assert_eq!(
            web.authorized_at(&active, Some(&alice), at(1.6)).await,
            Auth::Allowed,
            "past its first lifetime: the use at 0.8 started it again"
        );
        assert_eq!(
            web.authorized_at(&active, Some(&alice), at(2.7)).await,
            Auth::Busy,
            "unused for longer than its lifetime: forgotten, so bcrypt is needed again"
        );
        drop(held);
        assert_eq!(
            web.authorized_at(&active, Some(&alice), at(2.7)).await,
            Auth::Allowed
        );
    }

    #[tokio::test]
    async fn a_full_bcrypt_slot_answers_503_with_retry_after_in_bounded_time() {
        let dir = tempfile::tempdir().unwrap();
        let mut web = two_users(dir.path(), 4);
        web.slot_wait = Duration::from_millis(200);
        let web = Arc::new(web);
        let router = Router::new().route("/metrics", axum::routing::get(|| async { "ok\n" }));
        let request = |user: &str, password: &str| {
            Request::get("/metrics")
                .header(header::AUTHORIZATION, basic(user, password))
                .body(Body::empty())
                .unwrap()
        };
        let response = guarded(web.clone(), router.clone(), request("alice", "right"))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);

        // A flood of checks holds the slot.
        let held = web.bcrypt.try_acquire().unwrap();
        for (user, password) in [("bob", "right"), ("alice", "wrong"), ("mallory", "x")] {
            let started = Instant::now();
            let response = guarded(web.clone(), router.clone(), request(user, password))
                .await
                .unwrap();
            let waited = started.elapsed();
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "{user}");
            assert_eq!(
                response.headers().get(header::RETRY_AFTER),
                Some(&HeaderValue::from_static("1")),
                "{user}"
            );
            assert!(
                waited >= web.slot_wait && waited < web.slot_wait + Duration::from_secs(2),
                "{user}: answered after {waited:?}"
            );
        }
        let response = guarded(web.clone(), router.clone(), request("alice", "right"))
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "a verified scraper is served during the flood"
        );
        drop(held);
        let response = guarded(web.clone(), router, request("bob", "right"))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            AUTH_SLOT_WAIT.as_secs(),
            2,
            "docs/security.md gives the wait for the bcrypt slot"
        );
    }

    #[tokio::test]
    async fn a_write_the_client_does_not_read_fails_at_its_deadline() {
        use tokio::io::AsyncWriteExt;
        let response = vec![b'x'; 64 * 1024];
        // A client that never reads: a 1 KiB pipe fills at once.
        let (server, _client) = tokio::io::duplex(1024);
        let deadline = Arc::new(WriteDeadline::new());
        let mut io = DeadlineIo::new(server, deadline.clone());
        let unarmed = tokio::time::timeout(Duration::from_millis(300), io.write_all(&response)).await;
        assert!(unarmed.is_err(), "no request read, no deadline: it waits");

        deadline.arm(Duration::from_millis(200));
        let started = Instant::now();
        let e = tokio::time::timeout(Duration::from_secs(5), io.write_all(&response))
            .await
            .expect("the write ends at its deadline")
            .unwrap_err();
        let took = started.elapsed();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        assert!(
            took >= Duration::from_millis(150) && took < Duration::from_secs(2),
            "{took:?}"
        );

        // A connection that sits idle past its deadline is not cut off by it.
        let (server, mut client) = tokio::io::duplex(1024 * 1024);
        let deadline = Arc::new(WriteDeadline::new());
        let mut io = DeadlineIo::new(server, deadline.clone());
        deadline.arm(Duration::from_millis(10));
        io.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        io.flush().await.expect("nothing to wait for");
        io.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            .await
            .expect("a write that need not wait");
        drop(io);
        let mut got = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut client, &mut got)
            .await
            .unwrap();
        assert!(got.ends_with(b"400 Bad Request\r\n\r\n"));
    }

    #[test]
    fn digests_separate_their_parts() {
        assert_ne!(sha256(&[b"ab", b"c"]), sha256(&[b"a", b"bc"]));
    }
}
