//! `--mig.config-from-kubernetes` end to end: the real exporter on a
//! simulated H100 node reads its desired config from a fake Kubernetes API
//! server over TLS (a test CA made with openssl), as it would in a pod: the
//! node's `nvidia.com/mig.config` label and the GPU operator's mig-parted
//! ConfigMap, with the service account's bearer token.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use common::{h100_world, openssl, value, wait_for, Exporter};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;

const NODE: &str = "gpu-node-1";
const NAMESPACE: &str = "gpu-operator";
const ACCOUNT: &str = "system:serviceaccount:mig-exporter:mig-exporter";

/// One request the fake API server answered.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Seen {
    method: String,
    path: String,
    authorized: bool,
}

/// What the fake API server holds; tests change it while the exporter runs.
#[derive(Default)]
struct Cluster {
    token: String,
    labels: BTreeMap<String, String>,
    /// ConfigMap name (in NAMESPACE) → data.
    config_maps: BTreeMap<String, BTreeMap<String, String>>,
    /// Paths whose `get` RBAC does not allow.
    forbidden: BTreeSet<String>,
    seen: Vec<Seen>,
}

/// A Kubernetes API server that knows one Node and the ConfigMaps of one
/// namespace, over TLS, answering as kube-apiserver does.
struct FakeApiServer {
    url: String,
    cluster: Arc<Mutex<Cluster>>,
}

impl FakeApiServer {
    fn start(dir: &Path, token: &str) -> FakeApiServer {
        let (cert, key) = server_certificate(dir, "ca");
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
            .expect("server certificate")
            .collect::<Result<_, _>>()
            .expect("PEM certificate");
        let key = PrivateKeyDer::from_pem_file(&key).expect("server key");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("TLS versions")
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .expect("server certificate and key"),
        );
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("https://{}", listener.local_addr().expect("address"));
        let cluster = Arc::new(Mutex::new(Cluster {
            token: token.to_string(),
            ..Cluster::default()
        }));
        let shared = cluster.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let config = config.clone();
                let cluster = shared.clone();
                std::thread::spawn(move || {
                    let Ok(connection) = rustls::ServerConnection::new(config) else {
                        return;
                    };
                    // A client that refuses the certificate ends here with an error.
                    let _ = serve(rustls::StreamOwned::new(connection, stream), &cluster);
                });
            }
        });
        FakeApiServer { url, cluster }
    }

    fn set(&self, change: impl FnOnce(&mut Cluster)) {
        change(&mut self.cluster.lock().unwrap());
    }

    fn seen(&self) -> Vec<Seen> {
        self.cluster.lock().unwrap().seen.clone()
    }
}

/// Answers one request, then closes the connection.
fn serve(
    mut stream: rustls::StreamOwned<rustls::ServerConnection, std::net::TcpStream>,
    cluster: &Mutex<Cluster>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(&mut stream);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut authorization = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("authorization") {
                authorization = Some(value.trim().to_string());
            }
        }
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let (code, body) = answer(
        &mut cluster.lock().unwrap(),
        &method,
        &path,
        authorization.as_deref(),
    );
    let body = body.to_string();
    write!(
        stream,
        "HTTP/1.1 {code} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        match code {
            200 => "OK",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            _ => "Method Not Allowed",
        },
        body.len()
    )?;
    stream.flush()?;
    stream.conn.send_close_notify();
    stream.flush()
}

/// The status and JSON body kube-apiserver would answer with.
fn answer(
    cluster: &mut Cluster,
    method: &str,
    path: &str,
    authorization: Option<&str>,
) -> (u16, serde_json::Value) {
    let authorized = authorization == Some(&format!("Bearer {}", cluster.token));
    cluster.seen.push(Seen {
        method: method.into(),
        path: path.into(),
        authorized,
    });
    // The Status object of a failed request (kubernetes staging/src/k8s.io/apimachinery/
    // pkg/api/errors/errors.go: NewUnauthorized, NewForbidden, NewNotFound).
    let status = |code: u16, reason: &str, message: String, name: &str, kind: &str| {
        (
            code,
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                   "message": message, "reason": reason,
                   "details": {"name": name, "kind": kind}, "code": code}),
        )
    };
    if !authorized {
        return (
            401,
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                   "message": "Unauthorized", "reason": "Unauthorized", "code": 401}),
        );
    }
    let node_path = format!("/api/v1/nodes/{NODE}");
    let config_map = path
        .strip_prefix(&format!("/api/v1/namespaces/{NAMESPACE}/configmaps/"))
        .map(str::to_string);
    let (resource, name, scope) = if path == node_path {
        ("nodes", NODE.to_string(), "at the cluster scope".to_string())
    } else if let Some(name) = &config_map {
        (
            "configmaps",
            name.clone(),
            format!("in the namespace \"{NAMESPACE}\""),
        )
    } else {
        return status(
            404,
            "NotFound",
            "the server could not find the requested resource".into(),
            "",
            "",
        );
    };
    if method != "GET" {
        return status(
            405,
            "MethodNotAllowed",
            format!("{method} is not allowed here"),
            &name,
            resource,
        );
    }
    if cluster.forbidden.contains(path) {
        // kubernetes staging/src/k8s.io/apiserver/pkg/endpoints/handlers/responsewriters/
        // errors.go, forbiddenMessage, inside NewForbidden's "%s %q is forbidden: %v".
        return status(
            403,
            "Forbidden",
            format!(
                "{resource} \"{name}\" is forbidden: User \"{ACCOUNT}\" cannot get resource \"{resource}\" in API group \"\" {scope}"
            ),
            &name,
            resource,
        );
    }
    if resource == "nodes" {
        return (
            200,
            json!({"kind": "Node", "apiVersion": "v1",
                   "metadata": {"name": NODE, "labels": cluster.labels},
                   "status": {"nodeInfo": {"kubeletVersion": "v1.34.1"}}}),
        );
    }
    match cluster.config_maps.get(&name) {
        Some(data) => (
            200,
            json!({"kind": "ConfigMap", "apiVersion": "v1",
                   "metadata": {"name": name, "namespace": NAMESPACE}, "data": data}),
        ),
        None => status(
            404,
            "NotFound",
            format!("configmaps \"{name}\" not found"),
            &name,
            "configmaps",
        ),
    }
}

/// A CA named `ca` in `dir` and a server certificate it signs for
/// 127.0.0.1, as kube-apiserver's serving certificate names its service IP.
fn server_certificate(dir: &Path, ca: &str) -> (PathBuf, PathBuf) {
    let key = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
    openssl(
        dir,
        &format!(
            "req -x509 {key} -keyout {ca}.key -out {ca}.crt -subj /CN={ca} -days 2 \
             -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign"
        ),
    );
    openssl(
        dir,
        &format!("req {key} -keyout apiserver.key -out apiserver.csr -subj /CN=kube-apiserver"),
    );
    std::fs::write(
        dir.join("apiserver.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &format!(
            "x509 -req -in apiserver.csr -CA {ca}.crt -CAkey {ca}.key -CAcreateserial -days 2 \
             -out apiserver.crt -extfile apiserver.ext"
        ),
    );
    (dir.join("apiserver.crt"), dir.join("apiserver.key"))
}

/// The operator's default ConfigMap, as far as an H100 needs it (NVIDIA/gpu-operator
/// assets/state-mig-manager/0400_configmap.yaml).
const OPERATOR_DEFAULT: &str = r#"version: v1
mig-configs:
  all-disabled:
    - devices: all
      mig-enabled: false

  all-enabled:
    - devices: all
      mig-enabled: true
      mig-devices: {}

  # H100-80GB, H800-80GB, H100-NVL
  all-1g.10gb:
    - devices: all
      mig-enabled: true
      mig-devices:
        "1g.10gb": 7
"#;

/// What the MIG manager generates for one H100 80GB and publishes as
/// `<node>-mig-config`: gopkg.in/yaml.v2 output of mig-parted's spec under its
/// "DO NOT EDIT" header, `mig-devices: {}` on disabled entries, one config
/// per profile at its largest count (NVIDIA/mig-parted pkg/mig/builder/builder.go,
/// buildMigConfigSpec; api/spec/v1/spec.go field tags; cmd/nvidia-mig-manager/
/// main.go, writeGeneratedConfig). unverified: the exact key order and
/// quoting are assumed from yaml.v2's defaults, not copied from a node.
const GENERATED: &str = r#"# DO NOT EDIT: Auto-generated MIG configuration from GPU hardware.
# Generated by "nvidia-mig-manager".
version: v1
mig-configs:
  all-1g.10gb:
  - devices: all
    mig-enabled: true
    mig-devices:
      1g.10gb: 7
  all-3g.40gb:
  - devices: all
    mig-enabled: true
    mig-devices:
      3g.40gb: 2
  all-disabled:
  - devices: all
    mig-enabled: false
    mig-devices: {}
  all-enabled:
  - devices: all
    mig-enabled: true
    mig-devices: {}
"#;

struct Setup {
    dir: tempfile::TempDir,
    api: FakeApiServer,
    world: PathBuf,
}

/// One H100 with seven 1g.10gb instances on GPU 0, labelled `all-1g.10gb`,
/// the operator's default ConfigMap, and no generated one yet.
fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let api = FakeApiServer::start(dir.path(), "token-1");
    std::fs::write(dir.path().join("token"), "token-1\n").unwrap();
    let world = h100_world(dir.path(), 1, &["19"; 7].join(","));
    api.set(|c| {
        c.labels
            .insert("nvidia.com/mig.config".into(), "all-1g.10gb".into());
        c.labels.insert("nvidia.com/gpu.present".into(), "true".into());
        c.config_maps.insert(
            "default-mig-parted-config".into(),
            BTreeMap::from([("config.yaml".into(), OPERATOR_DEFAULT.into())]),
        );
    });
    Setup { dir, api, world }
}

impl Setup {
    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn start(&self, ca: &str) -> Exporter {
        Exporter::start(&[
            "--world",
            &self.world.display().to_string(),
            "--state.file",
            &self.path("state.json"),
            "--mig.config-from-kubernetes",
            "--kubernetes.node-name",
            NODE,
            "--kubernetes.api-server",
            &self.api.url,
            "--kubernetes.token-file",
            &self.path("token"),
            "--kubernetes.ca-file",
            &self.path(ca),
            "--mig.config-interval",
            "100ms",
        ])
    }
}

fn source_up(text: &str) -> Option<String> {
    value(text, "mig_exporter_source_up{source=\"mig_config\"}")
}

fn drift_reasons(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| l.starts_with("nvidia_mig_drift{"))
        .filter_map(|l| Some(l.split("reason=\"").nth(1)?.split('"').next()?.to_string()))
        .collect()
}

/// The landing page as text, its HTML escapes undone.
fn page_text(exporter: &Exporter) -> String {
    exporter
        .get("/", None)
        .1
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn wait_for_page(exporter: &Exporter, what: &str) {
    wait_for(|| page_text(exporter).contains(what), what);
}

#[test]
fn the_label_and_the_operators_configmap_give_the_desired_config_read_with_gets_only() {
    let s = setup();
    let exporter = s.start("ca.crt");
    wait_for_page(
        &exporter,
        "desired MIG config: config 'all-1g.10gb' in ConfigMap gpu-operator/default-mig-parted-config key config.yaml",
    );
    let text = exporter.metrics();
    assert_eq!(source_up(&text).as_deref(), Some("1"));
    assert!(drift_reasons(&text).is_empty(), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("nvidia_mig_expected_instances{")
                && l.contains("profile=\"1g.10gb\"")
                && l.ends_with(" 7")),
        "{text}"
    );

    // The MIG manager publishes the config it generated for this node: it is the one applied.
    s.api.set(|c| {
        c.config_maps.insert(
            format!("{NODE}-mig-config"),
            BTreeMap::from([("config.yaml".into(), GENERATED.into())]),
        );
    });
    wait_for_page(
        &exporter,
        "desired MIG config: config 'all-1g.10gb' in ConfigMap gpu-operator/gpu-node-1-mig-config key config.yaml",
    );

    // The label changes: the node should now have MIG disabled.
    s.api.set(|c| {
        c.labels
            .insert("nvidia.com/mig.config".into(), "all-disabled".into());
    });
    wait_for(
        || drift_reasons(&exporter.metrics()) == BTreeSet::from(["unexpected_mig".to_string()]),
        "unexpected_mig after the label change",
    );
    // The label is removed: no desired state, nothing to compare with.
    s.api.set(|c| {
        c.labels.remove("nvidia.com/mig.config");
    });
    wait_for(
        || {
            let text = exporter.metrics();
            drift_reasons(&text).is_empty() && !text.contains("nvidia_mig_expected_instances{")
        },
        "no desired state without the label",
    );
    assert_eq!(source_up(&exporter.metrics()).as_deref(), Some("1"));

    // Read-only, with the token, and nothing but this node and these two ConfigMaps.
    let seen = s.api.seen();
    let allowed: BTreeSet<String> = [
        format!("/api/v1/nodes/{NODE}"),
        format!("/api/v1/namespaces/{NAMESPACE}/configmaps/{NODE}-mig-config"),
        format!("/api/v1/namespaces/{NAMESPACE}/configmaps/default-mig-parted-config"),
    ]
    .into();
    assert!(seen.len() >= 6, "{seen:?}");
    for request in &seen {
        assert_eq!(request.method, "GET", "{request:?}");
        assert!(request.authorized, "{request:?}");
        assert!(allowed.contains(&request.path), "{request:?}");
    }
}

#[test]
fn a_forbidden_configmap_is_reported_with_path_status_and_message_and_the_last_good_config_stays() {
    let s = setup();
    let exporter = s.start("ca.crt");
    wait_for_page(&exporter, "desired MIG config: config 'all-1g.10gb'");
    assert!(drift_reasons(&exporter.metrics()).is_empty());

    // RBAC stops allowing the ConfigMap, and meanwhile the label asks for MIG off.
    let path = format!("/api/v1/namespaces/{NAMESPACE}/configmaps/default-mig-parted-config");
    s.api.set(|c| {
        c.forbidden.insert(path.clone());
        c.labels
            .insert("nvidia.com/mig.config".into(), "all-disabled".into());
    });
    wait_for(
        || source_up(&exporter.metrics()).as_deref() == Some("0"),
        "mig_config down",
    );
    let page = page_text(&exporter);
    let expected = format!(
        "cannot read ConfigMap gpu-operator/default-mig-parted-config from the Kubernetes API: GET {}{path}: \
         HTTP 403 Forbidden: configmaps \"default-mig-parted-config\" is forbidden: User \"{ACCOUNT}\" cannot \
         get resource \"configmaps\" in API group \"\" in the namespace \"gpu-operator\"",
        s.api.url
    );
    assert!(page.contains(&expected), "wanted {expected}\nin {page}");
    assert!(
        exporter
            .log()
            .iter()
            .any(|l| l.contains("HTTP 403 Forbidden") && l.contains("invalid MIG config")),
        "{:?}",
        exporter.log()
    );
    // Judged against the last good config, not against nothing and not against the new label.
    let text = exporter.metrics();
    assert!(drift_reasons(&text).is_empty(), "{text}");
    assert!(
        page.contains("desired MIG config: config 'all-1g.10gb'"),
        "{page}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("nvidia_mig_expected_instances{") && l.ends_with(" 7")),
        "{text}"
    );

    // Allowed again: the new label applies.
    s.api.set(|c| {
        c.forbidden.clear();
    });
    wait_for(
        || drift_reasons(&exporter.metrics()) == BTreeSet::from(["unexpected_mig".to_string()]),
        "unexpected_mig once readable",
    );
    assert_eq!(source_up(&exporter.metrics()).as_deref(), Some("1"));

    // The kubelet rotates the token: the exporter reads the file again.
    s.api.set(|c| c.token = "token-2".into());
    wait_for(
        || source_up(&exporter.metrics()).as_deref() == Some("0"),
        "down on the old token",
    );
    let page_now = page_text(&exporter);
    assert!(
        page_now.contains(&format!(
            "GET {}/api/v1/nodes/{NODE}: HTTP 401 Unauthorized: Unauthorized",
            s.api.url
        )),
        "{page_now}"
    );
    std::fs::write(s.dir.path().join("token"), "token-2\n").unwrap();
    wait_for(
        || source_up(&exporter.metrics()).as_deref() == Some("1"),
        "up on the new token",
    );
}

#[test]
fn an_api_server_the_ca_does_not_vouch_for_is_refused_and_the_exporter_serves_on() {
    let s = setup();
    // Another CA, which did not sign the API server's certificate.
    let other = tempfile::tempdir().unwrap();
    server_certificate(other.path(), "other");
    std::fs::copy(other.path().join("other.crt"), s.dir.path().join("other.crt")).unwrap();
    let exporter = s.start("other.crt");
    wait_for(
        || source_up(&exporter.metrics()).as_deref() == Some("0"),
        "mig_config down",
    );
    let page = page_text(&exporter);
    assert!(
        page.contains(&format!(
            "cannot read node {NODE} from the Kubernetes API: GET {}/api/v1/nodes/{NODE}: TLS: invalid peer certificate",
            s.api.url
        )),
        "{page}"
    );
    assert!(
        s.api.seen().is_empty(),
        "no request, so no token, reaches a server that is not trusted"
    );
    // The geometry is still served.
    assert!(exporter.metrics().contains("nvidia_mig_gpu_instance_info{"));
}
