//! `--web.config.file`: TLS and basic authentication in the format of the
//! Prometheus exporter-toolkit, so one file serves this exporter and the
//! node's other exporters alike.
//!
//! Options the toolkit has but this exporter does not implement are refused
//! by name rather than ignored: a file that asks for more protection than it
//! gets must not start a server.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::http::{HeaderName, HeaderValue};
use rustls::crypto::ring::{cipher_suite, kx_group};
use rustls::crypto::SupportedKxGroup;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, SupportedCipherSuite, SupportedProtocolVersion};
use serde::Deserialize;

/// The highest bcrypt cost `basic_auth_users` may use. Each uncached check
/// costs 2^cost rounds: about a second of one core at 14, and twice that for
/// every step above, which a client sending wrong passwords would make the
/// exporter pay (the toolkit's own advice is cost 10 or so).
pub const MAX_BCRYPT_COST: u32 = 14;

/// A web config file that could not be used: which file, where, and why.
/// The message never holds a password hash or a private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebConfigError {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for WebConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(
                f,
                "web config {}, line {line}: {}",
                self.path.display(),
                self.message
            ),
            None => write!(f, "web config {}: {}", self.path.display(), self.message),
        }
    }
}

impl std::error::Error for WebConfigError {}

/// A parsed, checked web config. Files it names are read when the TLS
/// settings are built ([`TlsSettings::server_config`]), so certificates can
/// be replaced on disk without a restart.
#[derive(Clone, PartialEq)]
pub struct WebConfig {
    pub tls: Option<TlsSettings>,
    /// Extra response headers (`http_server_config.headers`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// User name → bcrypt hash; empty: no basic authentication.
    pub users: BTreeMap<String, String>,
}

/// Only user names are shown: the hashes are secrets too.
impl fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebConfig")
            .field("tls", &self.tls)
            .field("headers", &self.headers)
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// PEM text, from a file or written inline in the config.
#[derive(Clone, PartialEq)]
pub enum Pem {
    File(PathBuf),
    Inline(String),
}

impl fmt::Debug for Pem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pem::File(path) => write!(f, "File({})", path.display()),
            Pem::Inline(_) => f.write_str("Inline(..)"),
        }
    }
}

impl Pem {
    fn read(&self, what: &str) -> Result<Vec<u8>, String> {
        match self {
            Pem::File(path) => {
                std::fs::read(path).map_err(|e| format!("cannot read {what} {}: {e}", path.display()))
            }
            Pem::Inline(text) => Ok(text.as_bytes().to_vec()),
        }
    }

    /// The file to watch for changes, when the PEM comes from one.
    pub fn file(&self) -> Option<&Path> {
        match self {
            Pem::File(path) => Some(path),
            Pem::Inline(_) => None,
        }
    }
}

/// Whether and how clients must present a certificate. The toolkit's
/// `RequestClientCert` and `RequireAnyClientCert` accept certificates nobody
/// checked, so they are refused at parse time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ClientAuth {
    NoClientCert,
    RequestClientCert,
    RequireAnyClientCert,
    RequireClientCert,
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub enum TlsVersion {
    TLS10,
    TLS11,
    TLS12,
    TLS13,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Curve {
    CurveP256,
    CurveP384,
    CurveP521,
    X25519,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TlsSettings {
    pub cert: Pem,
    pub key: Pem,
    pub client_ca: Option<Pem>,
    pub client_auth: ClientAuth,
    pub min_version: TlsVersion,
    pub max_version: TlsVersion,
    /// TLS 1.2 suites in preference order; empty: all that rustls offers.
    pub cipher_suites: Vec<&'static str>,
    pub prefer_server_cipher_suites: bool,
    pub curves: Vec<Curve>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with tls_server_config, http_server_config, basic_auth_users"
)]
struct RawConfig {
    tls_server_config: Option<RawTls>,
    http_server_config: Option<RawHttp>,
    basic_auth_users: Option<Users>,
    rate_limit: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping of TLS settings")]
struct RawTls {
    cert: Option<String>,
    key: Option<String>,
    client_ca: Option<String>,
    cert_file: Option<String>,
    key_file: Option<String>,
    client_auth_type: Option<ClientAuth>,
    client_ca_file: Option<String>,
    client_allowed_sans: Option<serde::de::IgnoredAny>,
    min_version: Option<TlsVersion>,
    max_version: Option<TlsVersion>,
    cipher_suites: Option<Vec<String>>,
    prefer_server_cipher_suites: Option<bool>,
    curve_preferences: Option<Vec<Curve>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping of HTTP settings")]
struct RawHttp {
    http2: Option<bool>,
    headers: Option<BTreeMap<String, String>>,
}

/// A bcrypt hash, checked while parsing so that a bad one is reported with
/// its line. Its text never appears in an error.
struct BcryptHash(String);

impl<'de> Deserialize<'de> for BcryptHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        match text.parse::<bcrypt::HashParts>() {
            Ok(parts) if (4..=31).contains(&parts.get_cost()) => Ok(BcryptHash(text)),
            Ok(_) => Err(serde::de::Error::custom(
                "the bcrypt cost must be between 4 and 31",
            )),
            Err(_) => Err(serde::de::Error::custom(
                "not a bcrypt hash ($2y$, $2b$ or $2a$ followed by cost and 53 characters; \
                 make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`)",
            )),
        }
    }
}

/// User name → hash, refusing a name given twice (which hash would hold?).
struct Users {
    hashes: BTreeMap<String, String>,
    listed_twice: Option<String>,
}

impl<'de> Deserialize<'de> for Users {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Users;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping of user names to bcrypt hashes")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<Users, M::Error> {
                // Reported after parsing, where the second listing's line can be found.
                let mut users = Users {
                    hashes: BTreeMap::new(),
                    listed_twice: None,
                };
                while let Some((name, hash)) = map.next_entry::<String, BcryptHash>()? {
                    if users.hashes.insert(name.clone(), hash.0).is_some() {
                        users.listed_twice.get_or_insert(name);
                    }
                }
                Ok(users)
            }
        }
        d.deserialize_map(Visitor)
    }
}

/// Go's name of each TLS 1.2 cipher suite rustls (ring) implements.
const TLS12_SUITES: [(&str, SupportedCipherSuite); 6] = [
    (
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        cipher_suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        cipher_suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
];

/// Suites Go accepts in `cipher_suites` that rustls lacks (CBC) or that TLS
/// 1.3 does not let a server choose.
const GO_ONLY_SUITES: [&str; 7] = [
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
];

/// The toolkit's configurable response headers; a non-empty list holds the only values allowed.
const EXTRA_HEADERS: [(&str, &[&str]); 5] = [
    ("Content-Security-Policy", &[]),
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
];

impl WebConfig {
    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| WebConfigError {
            path: path.to_path_buf(),
            line: None,
            message: format!("cannot read it: {e}"),
        })?;
        WebConfig::parse(&text, path)
    }

    /// Parses the text of the file at `path`; relative file names in it are
    /// relative to the file's directory, as in the toolkit. Reads no file.
    pub fn parse(text: &str, path: &Path) -> Result<WebConfig, WebConfigError> {
        let fail = |line: Option<usize>, message: String| WebConfigError {
            path: path.to_path_buf(),
            line,
            message,
        };
        // An empty file (or only comments) is a valid config with nothing in it.
        let raw: Option<RawConfig> = serde_yaml_ng::from_str(text).map_err(|e| {
            let line = e.location().map(|l| l.line());
            // The location goes in front, in the same form as every other error.
            let message = e.to_string();
            let message = match message.rfind(" at line ") {
                Some(at) if line.is_some() => message[..at].to_string(),
                _ => message,
            };
            fail(line, message)
        })?;
        let Some(raw) = raw else {
            return Ok(WebConfig {
                tls: None,
                headers: Vec::new(),
                users: BTreeMap::new(),
            });
        };
        let at = |section: &str, key: &str| line_of(text, section, key);
        if raw.rate_limit.is_some() {
            return Err(fail(
                at("rate_limit", ""),
                "rate_limit is not supported by mig-exporter; remove it".into(),
            ));
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let tls = match raw.tls_server_config {
            Some(t) => Some(tls_settings(t, base).map_err(|(key, message)| {
                fail(
                    at("tls_server_config", key),
                    format!("tls_server_config.{key}: {message}"),
                )
            })?),
            None => None,
        };
        let mut headers = Vec::new();
        if let Some(http) = raw.http_server_config {
            if http.http2 == Some(true) {
                return Err(fail(
                    at("http_server_config", "http2"),
                    "http_server_config.http2: mig-exporter serves HTTP/1.1 only; set http2: false \
                     or remove it (clients fall back to HTTP/1.1)"
                        .into(),
                ));
            }
            for (name, value) in http.headers.unwrap_or_default() {
                let header = extra_header(&name, &value).map_err(|message| {
                    fail(
                        at("http_server_config", &name),
                        format!("http_server_config.headers: {message}"),
                    )
                })?;
                headers.extend(header);
            }
        }
        let users = match raw.basic_auth_users {
            Some(Users {
                listed_twice: Some(name),
                ..
            }) => {
                return Err(fail(
                    at("basic_auth_users", &name),
                    format!("basic_auth_users: user {name:?} is listed twice"),
                ))
            }
            Some(users) => users.hashes,
            None => BTreeMap::new(),
        };
        for (name, hash) in &users {
            // Parsed while reading, so it parses.
            let cost = hash.parse::<bcrypt::HashParts>().map_or(0, |p| p.get_cost());
            if cost > MAX_BCRYPT_COST {
                return Err(fail(
                    at("basic_auth_users", name),
                    format!(
                        "basic_auth_users: user {name:?} has a bcrypt hash of cost {cost}, above \
                         {MAX_BCRYPT_COST}, the most mig-exporter accepts (every check of a wrong \
                         password would cost {}x a cost-{MAX_BCRYPT_COST} one); make a new hash, \
                         e.g. `htpasswd -nBC 10 \"\" | tr -d ':\\n'`",
                        1u64 << (cost - MAX_BCRYPT_COST)
                    ),
                ));
            }
        }
        Ok(WebConfig { tls, headers, users })
    }

    /// What the config allows that its author may not have meant, one
    /// sentence each, for a warning at start and on each reload.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self
            .tls
            .as_ref()
            .is_some_and(|t| t.client_auth == ClientAuth::VerifyClientCertIfGiven)
            && self.users.is_empty()
        {
            warnings.push(
                "client_auth_type VerifyClientCertIfGiven without basic_auth_users authenticates no \
                 one: a client without a certificate is served; use RequireAndVerifyClientCert, or \
                 add basic_auth_users"
                    .to_string(),
            );
        }
        warnings
    }

    /// Files whose change makes the config a different one: re-read then.
    pub fn files(&self) -> Vec<&Path> {
        let Some(tls) = &self.tls else { return Vec::new() };
        [Some(&tls.cert), Some(&tls.key), tls.client_ca.as_ref()]
            .into_iter()
            .flatten()
            .filter_map(Pem::file)
            .collect()
    }
}

/// A key's error: the key (under `tls_server_config`) and what is wrong.
type KeyError = (&'static str, String);

fn tls_settings(raw: RawTls, base: &Path) -> Result<TlsSettings, KeyError> {
    let nonempty = |s: Option<String>| s.filter(|s| !s.is_empty());
    let file = |s: String| Pem::File(base.join(s));
    let one_of = |inline: Option<String>, path: Option<String>, inline_key, file_key| match (
        nonempty(inline),
        nonempty(path),
    ) {
        (Some(_), Some(_)) => Err((file_key, format!("set {inline_key} or {file_key}, not both"))),
        (Some(text), None) => Ok(Some(Pem::Inline(text))),
        // PEM text in a file name would be quoted by every error about the
        // file, and it may be a private key.
        (None, Some(path)) if path.contains('\n') || path.contains("-----BEGIN") => Err((
            file_key,
            format!("holds PEM text, not a file name; put the text in {inline_key}"),
        )),
        (None, Some(path)) => Ok(Some(file(path))),
        (None, None) => Ok(None),
    };
    if raw.client_allowed_sans.is_some() {
        return Err((
            "client_allowed_sans",
            "not supported by mig-exporter; restrict clients through the CA in client_ca_file".into(),
        ));
    }
    let cert = one_of(raw.cert, raw.cert_file, "cert", "cert_file")?
        .ok_or(("cert_file", "missing: set cert_file (or cert)".to_string()))?;
    let key = one_of(raw.key, raw.key_file, "key", "key_file")?
        .ok_or(("key_file", "missing: set key_file (or key)".to_string()))?;
    let client_ca = one_of(raw.client_ca, raw.client_ca_file, "client_ca", "client_ca_file")?;
    let client_auth = raw.client_auth_type.unwrap_or(ClientAuth::NoClientCert);
    match client_auth {
        ClientAuth::RequestClientCert | ClientAuth::RequireAnyClientCert | ClientAuth::RequireClientCert => {
            return Err((
                "client_auth_type",
                format!(
                    "{client_auth:?} accepts certificates that nobody verified and is not supported; \
                     use RequireAndVerifyClientCert (or VerifyClientCertIfGiven)"
                ),
            ))
        }
        ClientAuth::NoClientCert if client_ca.is_some() => {
            return Err((
                "client_auth_type",
                "a client CA is set but client_auth_type is NoClientCert; \
                 set RequireAndVerifyClientCert"
                    .into(),
            ))
        }
        ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert
            if client_ca.is_none() =>
        {
            return Err((
                "client_auth_type",
                format!("{client_auth:?} needs client_ca_file (or client_ca) to verify against"),
            ))
        }
        _ => {}
    }
    let min_version = raw.min_version.unwrap_or(TlsVersion::TLS12);
    let max_version = raw.max_version.unwrap_or(TlsVersion::TLS13);
    for (key, version) in [("min_version", min_version), ("max_version", max_version)] {
        if version < TlsVersion::TLS12 {
            return Err((key, format!("{version:?} is not supported: use TLS12 or TLS13")));
        }
    }
    if min_version > max_version {
        return Err((
            "min_version",
            format!("{min_version:?} is above max_version {max_version:?}"),
        ));
    }
    let mut cipher_suites = Vec::new();
    for name in raw.cipher_suites.unwrap_or_default() {
        let Some((known, _)) = TLS12_SUITES.iter().find(|(n, _)| *n == name) else {
            let supported: Vec<_> = TLS12_SUITES.iter().map(|(n, _)| *n).collect();
            let why = if GO_ONLY_SUITES.contains(&name.as_str()) {
                "is not supported by mig-exporter"
            } else {
                "is not a cipher suite"
            };
            return Err((
                "cipher_suites",
                format!("{name} {why}; choose from {}", supported.join(", ")),
            ));
        };
        cipher_suites.push(*known);
    }
    let curves = raw.curve_preferences.unwrap_or_default();
    if curves.contains(&Curve::CurveP521) {
        return Err((
            "curve_preferences",
            "CurveP521 is not supported; choose from X25519, CurveP256, CurveP384".into(),
        ));
    }
    Ok(TlsSettings {
        cert,
        key,
        client_ca,
        client_auth,
        min_version,
        max_version,
        cipher_suites,
        prefer_server_cipher_suites: raw.prefer_server_cipher_suites.unwrap_or(true),
        curves,
    })
}

fn extra_header(name: &str, value: &str) -> Result<Option<(HeaderName, HeaderValue)>, String> {
    let Some((known, allowed)) = EXTRA_HEADERS.iter().find(|(n, _)| *n == name) else {
        let names: Vec<_> = EXTRA_HEADERS.iter().map(|(n, _)| *n).collect();
        return Err(format!("{name} cannot be set; choose from {}", names.join(", ")));
    };
    if value.is_empty() {
        return Ok(None);
    }
    if !allowed.is_empty() && !allowed.contains(&value) {
        return Err(format!(
            "{name} must be one of {}, not {value:?}",
            allowed.join(", ")
        ));
    }
    let value =
        HeaderValue::from_str(value).map_err(|_| format!("{name}: {value:?} is not a header value"))?;
    Ok(Some((HeaderName::from_static(known_lowercase(known)), value)))
}

/// `HeaderName::from_static` takes only lowercase names.
fn known_lowercase(name: &str) -> &'static str {
    match name {
        "Content-Security-Policy" => "content-security-policy",
        "Strict-Transport-Security" => "strict-transport-security",
        "X-Content-Type-Options" => "x-content-type-options",
        "X-Frame-Options" => "x-frame-options",
        _ => "x-xss-protection",
    }
}

/// The 1-based line of `key`'s last listing in the top-level `section` (the
/// section's own line when `key` is empty or not found), for errors found
/// after parsing.
fn line_of(text: &str, section: &str, key: &str) -> Option<usize> {
    let is_key = |line: &str, key: &str| {
        let line = line.trim_start().trim_start_matches(['"', '\'']);
        line.strip_prefix(key)
            .map(|rest| rest.trim_start_matches(['"', '\'']).trim_start().starts_with(':'))
            .unwrap_or(false)
    };
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|l| !l.starts_with([' ', '\t', '#']) && is_key(l, section))?;
    let inside = lines[start + 1..]
        .iter()
        .take_while(|l| l.trim().is_empty() || l.starts_with([' ', '\t', '#']));
    let found = inside
        .enumerate()
        .filter(|(_, l)| !key.is_empty() && is_key(l, key))
        .last()
        .map(|(i, _)| i);
    Some(start + 1 + found.map_or(0, |i| i + 1))
}

impl TlsSettings {
    /// The rustls server config: reads the certificate, key and client CA now.
    pub fn server_config(&self) -> Result<ServerConfig, String> {
        let mut provider = rustls::crypto::ring::default_provider();
        let chosen: Vec<SupportedCipherSuite> = self
            .cipher_suites
            .iter()
            .filter_map(|name| TLS12_SUITES.iter().find(|(n, _)| n == name).map(|(_, s)| *s))
            .collect();
        if !chosen.is_empty() {
            // TLS 1.3 suites stay as they are: the list is for TLS 1.2, as in Go.
            provider
                .cipher_suites
                .retain(|s| s.version() == &rustls::version::TLS13);
            provider.cipher_suites.extend(chosen);
        }
        if !self.curves.is_empty() {
            provider.kx_groups = self.curves.iter().map(|c| kx(*c)).collect();
        }
        let provider = Arc::new(provider);
        let versions: Vec<&'static SupportedProtocolVersion> = [
            (TlsVersion::TLS12, &rustls::version::TLS12),
            (TlsVersion::TLS13, &rustls::version::TLS13),
        ]
        .into_iter()
        .filter(|(v, _)| (self.min_version..=self.max_version).contains(v))
        .map(|(_, p)| p)
        .collect();
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)
            .map_err(|e| format!("TLS settings: {e}"))?;
        let builder = match &self.client_ca {
            Some(ca) if self.client_auth != ClientAuth::NoClientCert => {
                let mut roots = RootCertStore::empty();
                for cert in certificates(&ca.read("client CA")?, "client CA")? {
                    roots.add(cert).map_err(|e| format!("client CA: {e}"))?;
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                let verifier = if self.client_auth == ClientAuth::VerifyClientCertIfGiven {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                builder.with_client_cert_verifier(verifier.build().map_err(|e| format!("client CA: {e}"))?)
            }
            _ => builder.with_no_client_auth(),
        };
        let chain = certificates(&self.cert.read("certificate")?, "certificate")?;
        // The key's own parse error is not shown: it could quote key material.
        let key = PrivateKeyDer::from_pem_slice(&self.key.read("key")?)
            .map_err(|_| "key: no PEM private key (PKCS#8, PKCS#1 or SEC1) found".to_string())?;
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|e| format!("certificate and key: {e}"))?;
        config.ignore_client_order = self.prefer_server_cipher_suites;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

fn kx(curve: Curve) -> &'static dyn SupportedKxGroup {
    match curve {
        Curve::CurveP256 => kx_group::SECP256R1,
        Curve::CurveP384 => kx_group::SECP384R1,
        // P-521 is refused at parse time.
        Curve::X25519 | Curve::CurveP521 => kx_group::X25519,
    }
}

fn certificates(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{what}: not PEM certificates: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{what}: no PEM certificate found"));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$2y$10$mDwo.lAisC94iLAyP81MCesa29IzH37oigHC/42V2pdJlUprsJPze";

    fn parse(text: &str) -> Result<WebConfig, WebConfigError> {
        WebConfig::parse(text, Path::new("/etc/mig-exporter/web.yml"))
    }

    fn error(text: &str) -> WebConfigError {
        parse(text).unwrap_err()
    }

    #[test]
    fn an_exporter_toolkit_file_parses() {
        let config = parse(&format!(
            "# TLS and basic auth\n\
             tls_server_config:\n  cert_file: server.crt\n  key_file: /keys/server.key\n  \
             client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n  \
             min_version: TLS13\n  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]\n  \
             prefer_server_cipher_suites: false\n  curve_preferences: [X25519, CurveP256]\n\
             http_server_config:\n  http2: false\n  headers:\n    X-Content-Type-Options: nosniff\n    \
             Content-Security-Policy: \"\"\n\
             basic_auth_users:\n  alice: {HASH}\n"
        ))
        .unwrap();
        let tls = config.tls.as_ref().unwrap();
        assert_eq!(
            tls.cert,
            Pem::File("/etc/mig-exporter/server.crt".into()),
            "relative to the file"
        );
        assert_eq!(tls.key, Pem::File("/keys/server.key".into()));
        assert_eq!(tls.client_auth, ClientAuth::RequireAndVerifyClientCert);
        assert_eq!(
            (tls.min_version, tls.max_version),
            (TlsVersion::TLS13, TlsVersion::TLS13)
        );
        assert_eq!(tls.curves, [Curve::X25519, Curve::CurveP256]);
        assert!(!tls.prefer_server_cipher_suites);
        assert_eq!(config.headers.len(), 1, "an empty header value sets nothing");
        assert_eq!(config.users["alice"], HASH);
        assert_eq!(
            config.files(),
            [
                Path::new("/etc/mig-exporter/server.crt"),
                Path::new("/keys/server.key"),
                Path::new("/etc/mig-exporter/ca.crt")
            ]
        );
    }

    #[test]
    fn an_empty_file_asks_for_nothing() {
        for text in ["", "\n", "# nothing yet\n"] {
            let config = parse(text).unwrap();
            assert!(config.tls.is_none() && config.users.is_empty() && config.headers.is_empty());
        }
    }

    #[test]
    fn errors_name_the_file_the_line_and_the_field() {
        let e = error("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_ca_files: c\n");
        assert_eq!(e.line, Some(4));
        let text = e.to_string();
        assert!(
            text.starts_with("web config /etc/mig-exporter/web.yml, line 4: "),
            "{text}"
        );
        assert!(text.contains("client_ca_files"), "{text}");

        let e = error(&format!(
            "basic_auth_users:\n  alice: {HASH}\n  bob: {HASH}\n  alice: {HASH}\n"
        ));
        assert_eq!(e.line, Some(4), "{e}");
        assert!(e.message.contains("\"alice\" is listed twice"), "{e}");

        let e = error("basic_auth_users:\n  alice: x\n  bob: $2y$10$short\n");
        assert_eq!(e.line, Some(2), "{e}");
        assert!(e.message.contains("bcrypt"), "{e}");

        let e = error("tls_server_config:\n  cert_file: a\n\n  key_file: b\n  min_version: TLS10\n");
        assert_eq!(e.line, Some(5), "{e}");
        assert!(e.message.contains("tls_server_config.min_version"), "{e}");

        let e = error("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_ca_file: ca.crt\n");
        assert_eq!(
            e.line,
            Some(1),
            "client_auth_type is missing: the section is named"
        );
        assert!(e.message.contains("NoClientCert"), "{e}");

        let e = error("tls_server_config:\n  key_file: b\n");
        assert!(e.message.contains("cert_file"), "{e}");
        let e = error("tls_server_config:\n  cert_file: a\n  cert: inline\n  key_file: b\n");
        assert!(e.message.contains("not both"), "{e}");
        let e = error("tls_server_config: {cert_file: a, key_file: b, client_auth_type: Maybe}\n");
        assert_eq!(e.line, Some(1));
        assert!(e.message.contains("Maybe"), "{e}");
        let e = error("rate_limit:\n  interval: 1s\n  burst: 20\n");
        assert_eq!(e.line, Some(1));
        let e = error("tls_server_config: [\n");
        assert!(e.line.is_some(), "{e}");
    }

    #[test]
    fn options_this_exporter_cannot_honour_are_refused() {
        let tls = "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_ca_file: ca\n";
        let verified = "  client_auth_type: RequireAndVerifyClientCert\n";
        for (extra, why, line) in [
            ("  client_auth_type: RequestClientCert\n", "not supported", 5),
            ("  client_auth_type: RequireAnyClientCert\n", "not supported", 5),
            ("  client_allowed_sans: [x]\n", "client_allowed_sans", 6),
            ("  max_version: TLS11\n", "TLS11", 6),
            (
                "  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA]\n",
                "not supported",
                6,
            ),
            ("  cipher_suites: [TLS_AES_128_GCM_SHA256]\n", "not supported", 6),
            ("  cipher_suites: [ROT13]\n", "not a cipher suite", 6),
            ("  curve_preferences: [CurveP521]\n", "CurveP521", 6),
            ("  max_version: TLS12\n  min_version: TLS13\n", "above", 7),
        ] {
            let text = if line == 5 {
                format!("{tls}{extra}")
            } else {
                format!("{tls}{verified}{extra}")
            };
            let e = error(&text);
            assert!(e.message.contains(why), "{extra}: {e}");
            assert_eq!(e.line, Some(line), "{extra}: {e}");
        }
        let e = error("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: VerifyClientCertIfGiven\n");
        assert!(e.message.contains("client_ca_file"), "{e}");
        let e = error("http_server_config:\n  headers:\n    Server: mine\n");
        assert_eq!(e.line, Some(3), "{e}");
        let e = error("http_server_config:\n  headers:\n    X-Frame-Options: allow\n");
        assert!(e.message.contains("deny, sameorigin"), "{e}");
    }

    #[test]
    fn a_bcrypt_cost_above_the_cap_is_refused_naming_the_user() {
        let at_cap = HASH.replacen("$10$", &format!("${MAX_BCRYPT_COST}$"), 1);
        let above = HASH.replacen("$10$", &format!("${}$", MAX_BCRYPT_COST + 1), 1);
        let config = parse(&format!("basic_auth_users:\n  alice: {at_cap}\n")).unwrap();
        assert_eq!(
            config.users["alice"], at_cap,
            "cost {MAX_BCRYPT_COST} is accepted"
        );

        let e = error(&format!("basic_auth_users:\n  alice: {HASH}\n  bob: {above}\n"));
        assert_eq!(e.line, Some(3), "{e}");
        let text = e.to_string();
        assert!(
            text.starts_with("web config /etc/mig-exporter/web.yml, line 3: "),
            "{text}"
        );
        assert!(
            text.contains("\"bob\"") && text.contains("cost 15") && text.contains("14"),
            "{text}"
        );
        assert!(!text.contains(&above[7..]), "the hash is not quoted: {text}");
        assert_eq!(MAX_BCRYPT_COST, 14, "docs/security.md gives the cap");
    }

    #[test]
    fn verify_client_cert_if_given_without_users_is_warned_about() {
        let tls = "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_ca_file: ca\n";
        let if_given = "  client_auth_type: VerifyClientCertIfGiven\n";
        let users = format!("basic_auth_users:\n  alice: {HASH}\n");
        let warnings = parse(&format!("{tls}{if_given}")).unwrap().warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("VerifyClientCertIfGiven") && warnings[0].contains("authenticates no one"),
            "{warnings:?}"
        );
        for quiet in [
            format!("{tls}{if_given}{users}"),
            format!("{tls}  client_auth_type: RequireAndVerifyClientCert\n"),
            "tls_server_config:\n  cert_file: a\n  key_file: b\n".to_string(),
            String::new(),
        ] {
            let warnings = parse(&quiet).unwrap().warnings();
            assert!(warnings.is_empty(), "{quiet}: {warnings:?}");
        }
    }

    #[test]
    fn the_security_docs_example_is_valid() {
        // The web config example of docs/security.md, the first YAML block there.
        let security = include_str!("../../docs/security.md");
        let start = security.find("```yaml\n").expect("a YAML example") + "```yaml\n".len();
        let example = &security[start..start + security[start..].find("```").unwrap()];
        let config = parse(example).unwrap();
        let tls = config.tls.expect("TLS");
        assert_eq!(tls.client_auth, ClientAuth::RequireAndVerifyClientCert);
        assert!(bcrypt::verify("change-me", &config.users["prometheus"]).unwrap());
    }

    #[test]
    fn a_key_pasted_as_a_file_name_is_not_quoted() {
        let e = error("tls_server_config:\n  cert_file: a\n  key_file: |\n    -----BEGIN PRIVATE KEY-----\n    SECRET\n");
        assert!(
            e.message.contains("tls_server_config.key_file") && e.message.contains("key"),
            "{e}"
        );
        assert!(!e.to_string().contains("SECRET"), "{e}");
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let config = parse(&format!(
            "tls_server_config:\n  cert: CERT\n  key: TOP-SECRET-KEY\nbasic_auth_users:\n  alice: {HASH}\n"
        ))
        .unwrap();
        let shown = format!("{config:?}");
        assert!(shown.contains("alice"), "{shown}");
        assert!(
            !shown.contains(HASH) && !shown.contains("TOP-SECRET-KEY"),
            "{shown}"
        );
    }
}
