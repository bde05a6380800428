//! A minimal client of the Kubernetes API server, reached the way a pod
//! reaches it from inside the cluster: HTTPS to
//! `KUBERNETES_SERVICE_HOST:KUBERNETES_SERVICE_PORT`, the server verified
//! against the service account's CA, the request carrying the service
//! account's bearer token (kubernetes/client-go rest/config.go,
//! InClusterConfig: the same variables, the same two files under
//! /var/run/secrets/kubernetes.io/serviceaccount, the host and port joined
//! with brackets around an IPv6 address).
//!
//! It only ever GETs one object: the exporter reads and never writes. The
//! token and the CA are read again for every request, because the kubelet
//! rewrites a projected token before it expires (client-go re-reads its
//! token file every minute for the same reason, transport/token_source.go,
//! NewCachedFileTokenSource) and the CA file follows the `kube-root-ca.crt`
//! ConfigMap.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper::header::{ACCEPT, AUTHORIZATION, HOST, USER_AGENT};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;

/// Where the kubelet mounts the service account's token and CA
/// (kubernetes plugin/pkg/admission/serviceaccount/admission.go,
/// DefaultAPITokenMountPath).
pub const DEFAULT_TOKEN_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
pub const DEFAULT_CA_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";

/// The largest answer read. A ConfigMap holds at most 1 MiB of data
/// (kubernetes pkg/apis/core/validation/validation.go, ValidateConfigMap,
/// MaxSecretSize); a Node with its images listed is tens of kilobytes.
const MAX_BODY: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error(
        "no Kubernetes API server: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set \
         (not running in a pod?); give --kubernetes.api-server"
    )]
    NotInCluster,
    #[error("Kubernetes API server '{url}': {problem}")]
    BadServer { url: String, problem: String },
    #[error("cannot read the service account token {}: {problem}", path.display())]
    Token { path: PathBuf, problem: String },
    #[error("cannot use the API server's CA {}: {problem}", path.display())]
    Ca { path: PathBuf, problem: String },
    #[error("GET {url}: {problem}")]
    Request { url: String, problem: String },
    #[error("GET {url}: no answer within {after:?}")]
    Timeout { url: String, after: Duration },
    /// The API server answered with an error status; `reason` and `message`
    /// are its `Status` object's, when it sent one.
    #[error("GET {url}: HTTP {code} {reason}: {message}")]
    Status {
        url: String,
        code: u16,
        reason: String,
        message: String,
    },
}

impl KubeError {
    /// The object does not exist (HTTP 404).
    pub fn is_not_found(&self) -> bool {
        matches!(self, KubeError::Status { code: 404, .. })
    }
}

/// Where the API server is: the URL as given, and what to dial and verify.
#[derive(Debug, Clone)]
pub struct ApiServer {
    /// `https://host:port`, for messages.
    url: String,
    /// The host without brackets, to dial.
    host: String,
    port: u16,
    /// `host:port` as the Host header writes it (brackets kept).
    authority: String,
    server_name: ServerName<'static>,
}

impl ApiServer {
    /// `https://HOST[:PORT]`; only HTTPS, so the token never crosses the
    /// network in the clear.
    pub fn parse(url: &str) -> Result<ApiServer, KubeError> {
        let bad = |problem: &str| KubeError::BadServer {
            url: url.to_string(),
            problem: problem.to_string(),
        };
        let uri: hyper::Uri = url
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| bad(&format!("not a URL: {e}")))?;
        if uri.scheme_str() != Some("https") {
            return Err(bad("the scheme must be https"));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(bad("give only the scheme, host and port"));
        }
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        let host = authority.host().trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = authority.port_u16().unwrap_or(443);
        let server_name = ServerName::try_from(host.to_string())
            .map_err(|_| bad("the host is neither a DNS name nor an IP address"))?;
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        Ok(ApiServer {
            url: format!("https://{authority}"),
            host: host.to_string(),
            port,
            authority,
            server_name,
        })
    }

    /// The API server a pod is given: `KUBERNETES_SERVICE_HOST` and
    /// `KUBERNETES_SERVICE_PORT`, read through `env`.
    pub fn in_cluster(env: impl Fn(&str) -> Option<String>) -> Result<ApiServer, KubeError> {
        let host = env("KUBERNETES_SERVICE_HOST").filter(|h| !h.is_empty());
        let port = env("KUBERNETES_SERVICE_PORT").filter(|p| !p.is_empty());
        let (Some(host), Some(port)) = (host, port) else {
            return Err(KubeError::NotInCluster);
        };
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        ApiServer::parse(&format!("https://{host}:{port}"))
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

/// A read-only client of one API server. Call [`Client::run`] from a thread
/// that is not running async code (the poller's blocking thread): it has a
/// small runtime of its own, like the kubelet client.
pub struct Client {
    server: ApiServer,
    token_file: PathBuf,
    ca_file: PathBuf,
    timeout: Duration,
    runtime: crate::client_runtime::ClientRuntime,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("server", &self.server.url)
            .field("token_file", &self.token_file)
            .field("ca_file", &self.ca_file)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client of `server`; [`Client::run`] gives up after `timeout`. The
    /// files are read when a request is made, not here.
    pub fn new(
        server: ApiServer,
        token_file: PathBuf,
        ca_file: PathBuf,
        timeout: Duration,
    ) -> std::io::Result<Client> {
        let runtime = crate::client_runtime::ClientRuntime::new()?;
        Ok(Client {
            server,
            token_file,
            ca_file,
            timeout,
            runtime,
        })
    }

    pub fn server(&self) -> &ApiServer {
        &self.server
    }

    /// Runs `work` (GETs through this client) to its end, or fails once the
    /// client's timeout has passed.
    pub fn run<T, E: From<KubeError>>(&self, work: impl Future<Output = Result<T, E>>) -> Result<T, E> {
        let after = self.timeout;
        self.runtime.block_on(async {
            match tokio::time::timeout(after, work).await {
                Ok(result) => result,
                Err(_) => Err(KubeError::Timeout {
                    url: self.server.url.clone(),
                    after,
                }
                .into()),
            }
        })
    }

    /// GETs the object at `path` (`/api/v1/nodes/NAME`) and parses it.
    pub async fn get(&self, path: &str) -> Result<Value, KubeError> {
        let url = format!("{}{path}", self.server.url);
        let failed = |problem: String| KubeError::Request {
            url: url.clone(),
            problem,
        };
        let token = read_token(&self.token_file)?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(client_config(&self.ca_file)?));
        let tcp = tokio::net::TcpStream::connect((self.server.host.as_str(), self.server.port))
            .await
            .map_err(|e| failed(format!("cannot connect: {e}")))?;
        let stream = tls
            .connect(self.server.server_name.clone(), tcp)
            .await
            .map_err(|e| failed(format!("TLS: {e}")))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| failed(format!("HTTP: {e}")))?;
        // Drives the connection while the request waits on it; ends with it.
        let driver = tokio::spawn(connection);
        let request = hyper::Request::get(path)
            .header(HOST, &self.server.authority)
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .header(ACCEPT, "application/json")
            .header(USER_AGENT, concat!("mig-exporter/", env!("CARGO_PKG_VERSION")))
            .body(Empty::<Bytes>::new())
            .map_err(|e| failed(format!("cannot build the request: {e}")))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| failed(format!("HTTP: {e}")))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| failed(format!("reading the answer: {e}")))?
            .to_bytes();
        drop(sender);
        driver.abort();
        if !status.is_success() {
            return Err(status_error(url, status, &body));
        }
        serde_json::from_slice(&body).map_err(|e| failed(format!("the answer is not JSON: {e}")))
    }
}

/// The token, trimmed of the whitespace a file may end with.
fn read_token(path: &Path) -> Result<String, KubeError> {
    let problem = |problem: String| KubeError::Token {
        path: path.to_path_buf(),
        problem,
    };
    let text = std::fs::read_to_string(path).map_err(|e| problem(e.to_string()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(problem("the file is empty".into()));
    }
    // Not echoed: it is a credential.
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(problem(
            "it holds characters a bearer token cannot have (not a token file?)".into(),
        ));
    }
    Ok(token.to_string())
}

/// TLS that trusts only the CAs in `ca_file`, as the service account's
/// `ca.crt` names them.
fn client_config(ca_file: &Path) -> Result<rustls::ClientConfig, KubeError> {
    let problem = |problem: String| KubeError::Ca {
        path: ca_file.to_path_buf(),
        problem,
    };
    let pem = std::fs::read(ca_file).map_err(|e| problem(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| problem(format!("not PEM certificates: {e}")))?;
        roots.add(cert).map_err(|e| problem(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(problem("no PEM certificate found".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| problem(format!("TLS settings: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The error an error status stands for: the API server's `Status` object
/// (kubernetes staging/src/k8s.io/apimachinery/pkg/apis/meta/v1/types.go,
/// Status: `reason`, `message`, `code`) when the body is one, else the body.
fn status_error(url: String, status: hyper::StatusCode, body: &[u8]) -> KubeError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let field = |name: &str| {
        parsed
            .as_ref()
            .and_then(|v| v.get(name))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let reason = field("reason")
        .or_else(|| status.canonical_reason().map(str::to_string))
        .unwrap_or_default();
    let message = field("message").unwrap_or_else(|| {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        if text.is_empty() {
            "(no message)".to_string()
        } else {
            text.chars().take(300).collect()
        }
    });
    KubeError::Status {
        url,
        code: status.as_u16(),
        reason,
        message,
    }
}

/// Whether `name` can be an object name in an API path: a DNS subdomain
/// (kubernetes staging/src/k8s.io/apimachinery/pkg/util/validation/validation.go,
/// IsDNS1123Subdomain), which node, namespace and ConfigMap names all are.
pub fn is_object_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_servers_parse_with_ipv6_brackets_and_the_default_port() {
        let s = ApiServer::parse("https://10.96.0.1:6443").unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.url()),
            ("10.96.0.1", 6443, "https://10.96.0.1:6443")
        );
        let s = ApiServer::parse("https://[fd00::1]").unwrap();
        assert_eq!((s.host.as_str(), s.port), ("fd00::1", 443));
        assert_eq!(s.authority, "[fd00::1]:443");
        let s = ApiServer::parse("https://kubernetes.default.svc/").unwrap();
        assert_eq!(s.url(), "https://kubernetes.default.svc:443");
        for (url, problem) in [
            ("http://10.96.0.1", "the scheme must be https"),
            ("https://10.96.0.1/api", "give only the scheme, host and port"),
            ("10.96.0.1:443", "the scheme must be https"),
        ] {
            let e = ApiServer::parse(url).unwrap_err().to_string();
            assert!(e.contains(problem) && e.contains(url), "{url}: {e}");
        }
    }

    #[test]
    fn the_in_cluster_server_joins_host_and_port_as_client_go_does() {
        let env = |host: &'static str, port: &'static str| {
            move |name: &str| match name {
                "KUBERNETES_SERVICE_HOST" => Some(host.to_string()),
                "KUBERNETES_SERVICE_PORT" => Some(port.to_string()),
                _ => None,
            }
        };
        assert_eq!(
            ApiServer::in_cluster(env("10.96.0.1", "443")).unwrap().url(),
            "https://10.96.0.1:443"
        );
        assert_eq!(
            ApiServer::in_cluster(env("fd00:10:96::1", "443")).unwrap().url(),
            "https://[fd00:10:96::1]:443"
        );
        let e = ApiServer::in_cluster(env("", "443")).unwrap_err();
        assert!(matches!(e, KubeError::NotInCluster), "{e}");
        assert!(e.to_string().contains("--kubernetes.api-server"));
    }

    #[test]
    fn error_statuses_carry_the_api_servers_reason_and_message() {
        let body = br#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"nodes \"gpu-1\" is forbidden: User \"system:serviceaccount:mon:mig-exporter\" cannot get resource \"nodes\"","reason":"Forbidden","details":{"name":"gpu-1","kind":"nodes"},"code":403}"#;
        let e = status_error(
            "https://10.96.0.1:443/api/v1/nodes/gpu-1".into(),
            hyper::StatusCode::FORBIDDEN,
            body,
        );
        assert_eq!(
            e.to_string(),
            "GET https://10.96.0.1:443/api/v1/nodes/gpu-1: HTTP 403 Forbidden: nodes \"gpu-1\" is forbidden: \
             User \"system:serviceaccount:mon:mig-exporter\" cannot get resource \"nodes\""
        );
        assert!(!e.is_not_found());
        let e = status_error("u".into(), hyper::StatusCode::NOT_FOUND, b"");
        assert_eq!(e.to_string(), "GET u: HTTP 404 Not Found: (no message)");
        assert!(e.is_not_found());
        let e = status_error(
            "u".into(),
            hyper::StatusCode::BAD_GATEWAY,
            b"<html>proxy down</html>\n",
        );
        assert_eq!(
            e.to_string(),
            "GET u: HTTP 502 Bad Gateway: <html>proxy down</html>"
        );
    }

    #[test]
    fn tokens_are_trimmed_and_bad_ones_are_refused_without_being_echoed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "eyJhbGciOi.x-y_z\n").unwrap();
        assert_eq!(read_token(&path).unwrap(), "eyJhbGciOi.x-y_z");
        std::fs::write(&path, "secret part\nmore").unwrap();
        let e = read_token(&path).unwrap_err().to_string();
        assert!(
            e.contains("characters a bearer token cannot have") && !e.contains("secret"),
            "{e}"
        );
        std::fs::write(&path, "\n").unwrap();
        assert!(read_token(&path).unwrap_err().to_string().contains("empty"));
        let e = read_token(&dir.path().join("none")).unwrap_err().to_string();
        assert!(
            e.contains("cannot read the service account token") && e.contains("none"),
            "{e}"
        );
    }

    #[test]
    fn a_ca_file_without_certificates_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.crt");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let e = client_config(&path).unwrap_err().to_string();
        assert!(
            e.contains("ca.crt") && e.contains("no PEM certificate found"),
            "{e}"
        );
    }

    #[test]
    fn object_names_are_dns_subdomains() {
        for ok in [
            "gpu-node-1",
            "ip-10-0-0-7.ec2.internal",
            "default-mig-parted-config",
            "a",
        ] {
            assert!(is_object_name(ok), "{ok}");
        }
        for bad in ["", "Gpu", "a/b", "../x", "-a", "a-", "a..b", "a b", "a%2F"] {
            assert!(!is_object_name(bad), "{bad}");
        }
    }
}
