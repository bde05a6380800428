//! `deploy/`: every manifest is checked against the Kubernetes API types
//! (k8s-openapi; the prometheus-operator kinds against the subset of their
//! schema used here), rejecting unknown fields, and the PrometheusRule is
//! `alerts/` wrapped. The Helm chart in `deploy/helm/mig-exporter` is linted
//! and rendered by a real `helm` (`MIG_TEST_HELM`, which `scripts/test.sh`
//! sets): with default values it renders the plain manifests, and with other
//! values every object still matches the types. After changing the alerts:
//! `UPDATE_DEPLOY=1 cargo test --test deploy`.

mod contract;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use contract::root;
use k8s_openapi::api::core::v1::SecretKeySelector;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

fn deploy() -> PathBuf {
    root().join("deploy")
}

/// Every YAML document of `file`, as JSON.
fn documents(file: &str) -> Vec<Json> {
    let path = deploy().join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parse_documents(&text, file)
}

/// Every non-empty YAML document of `text` (read from `origin`), as JSON.
fn parse_documents(text: &str, origin: &str) -> Vec<Json> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|doc| {
            let yaml = serde_yaml_ng::Value::deserialize(doc).unwrap_or_else(|e| panic!("{origin}: {e}"));
            serde_json::to_value(yaml).unwrap_or_else(|e| panic!("{origin}: {e}"))
        })
        .filter(|doc| !doc.is_null())
        .collect()
}

/// The paths of `doc` that `back` lacks or has with another value.
fn lost(doc: &Json, back: &Json, path: &str, out: &mut Vec<String>) {
    match (doc, back) {
        (Json::Object(a), Json::Object(b)) => {
            for (k, v) in a {
                match b.get(k) {
                    Some(w) => lost(v, w, &format!("{path}.{k}"), out),
                    None => out.push(format!("{path}.{k}")),
                }
            }
        }
        (Json::Array(a), Json::Array(b)) if a.len() == b.len() => {
            for (i, (v, w)) in a.iter().zip(b).enumerate() {
                lost(v, w, &format!("{path}[{i}]"), out);
            }
        }
        _ if doc == back => {}
        _ => out.push(format!("{path} ({doc} became {back})")),
    }
}

/// Deserializes `doc` as `T` and serializes it back: a field `T` does not
/// know is dropped on the way, and named in the error.
fn strict<T: DeserializeOwned + Serialize>(doc: &Json) -> Result<(), String> {
    let typed: T = serde_json::from_value(doc.clone()).map_err(|e| e.to_string())?;
    let back = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    lost(doc, &back, "", &mut out);
    if out.is_empty() {
        Ok(())
    } else {
        Err(format!("unknown or changed fields: {}", out.join(", ")))
    }
}

// The prometheus-operator kinds, as far as deploy/ uses them.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Custom<S> {
    api_version: String,
    kind: String,
    metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    spec: S,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ServiceMonitorSpec {
    job_label: Option<String>,
    selector: k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    namespace_selector: Option<NamespaceSelector>,
    endpoints: Vec<Endpoint>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct NamespaceSelector {
    match_names: Vec<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Endpoint {
    port: String,
    path: Option<String>,
    interval: Option<String>,
    scrape_timeout: Option<String>,
    scheme: Option<String>,
    tls_config: Option<TlsConfig>,
    basic_auth: Option<BasicAuth>,
    honor_labels: Option<bool>,
    relabelings: Vec<Relabeling>,
    metric_relabelings: Option<Vec<Relabeling>>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TlsConfig {
    ca: Option<SecretOrConfigMap>,
    cert: Option<SecretOrConfigMap>,
    key_secret: Option<SecretKeySelector>,
    server_name: Option<String>,
    insecure_skip_verify: Option<bool>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SecretOrConfigMap {
    secret: Option<SecretKeySelector>,
    config_map: Option<k8s_openapi::api::core::v1::ConfigMapKeySelector>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BasicAuth {
    username: SecretKeySelector,
    password: SecretKeySelector,
}

/// prometheus-operator pkg/apis/monitoring/v1/prometheus_types.go, `RelabelConfig`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Relabeling {
    #[serde(skip_serializing_if = "Option::is_none")]
    source_labels: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    separator: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target_label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    regex: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    replacement: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    action: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    groups: Vec<RuleGroup>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleGroup {
    name: String,
    rules: Vec<Rule>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    #[serde(skip_serializing_if = "Option::is_none")]
    alert: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    record: Option<String>,
    expr: String,
    #[serde(rename = "for", skip_serializing_if = "Option::is_none")]
    for_: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
}

/// Checks one manifest by its kind.
fn check(doc: &Json) -> Result<(), String> {
    use k8s_openapi::api::{apps, core, rbac};
    match (doc["apiVersion"].as_str(), doc["kind"].as_str()) {
        (Some("apps/v1"), Some("DaemonSet")) => strict::<apps::v1::DaemonSet>(doc),
        (Some("rbac.authorization.k8s.io/v1"), Some("ClusterRole")) => strict::<rbac::v1::ClusterRole>(doc),
        (Some("rbac.authorization.k8s.io/v1"), Some("ClusterRoleBinding")) => {
            strict::<rbac::v1::ClusterRoleBinding>(doc)
        }
        (Some("rbac.authorization.k8s.io/v1"), Some("Role")) => strict::<rbac::v1::Role>(doc),
        (Some("rbac.authorization.k8s.io/v1"), Some("RoleBinding")) => strict::<rbac::v1::RoleBinding>(doc),
        (Some("v1"), Some("ServiceAccount")) => strict::<core::v1::ServiceAccount>(doc),
        (Some("v1"), Some("Service")) => strict::<core::v1::Service>(doc),
        (Some("v1"), Some("Namespace")) => strict::<core::v1::Namespace>(doc),
        (Some("v1"), Some("ConfigMap")) => strict::<core::v1::ConfigMap>(doc),
        (Some("networking.k8s.io/v1"), Some("NetworkPolicy")) => {
            strict::<k8s_openapi::api::networking::v1::NetworkPolicy>(doc)
        }
        (Some("monitoring.coreos.com/v1"), Some("ServiceMonitor")) => {
            strict::<Custom<ServiceMonitorSpec>>(doc)
        }
        (Some("monitoring.coreos.com/v1"), Some("PrometheusRule")) => strict::<Custom<RuleSpec>>(doc),
        (api, kind) => Err(format!("no check for {api:?} {kind:?}")),
    }
}

fn manifests() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(deploy())
        .expect("deploy/")
        .filter_map(|e| Some(e.ok()?.file_name().to_str()?.to_string()))
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_manifest_matches_the_kubernetes_types_with_no_unknown_field() {
    let files = manifests();
    for expected in [
        "daemonset.yaml",
        "grafana-dashboards.yaml",
        "namespace.yaml",
        "networkpolicy.yaml",
        "prometheusrule.yaml",
        "service.yaml",
        "serviceaccount.yaml",
        "servicemonitor.yaml",
    ] {
        assert!(
            files.iter().any(|f| f == expected),
            "deploy/{expected} missing: {files:?}"
        );
    }
    for file in &files {
        for doc in documents(file) {
            if let Err(e) = check(&doc) {
                panic!("deploy/{file}: {e}");
            }
        }
    }
}

#[test]
fn an_unknown_or_misspelt_field_is_rejected() {
    let mut ds = documents("daemonset.yaml").remove(0);
    assert_eq!(check(&ds), Ok(()));
    ds["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = Json::from("Always");
    let e = check(&ds).expect_err("a misspelt container field");
    assert!(e.contains("imagePullPolicyy"), "{e}");

    let mut sm = documents("servicemonitor.yaml").remove(0);
    sm["spec"]["endpoints"][0]["honourLabels"] = Json::from(true);
    let e = check(&sm).expect_err("a misspelt endpoint field");
    assert!(e.contains("honourLabels"), "{e}");
}

/// The container (or init container) of `pod` named `name`.
fn container<'a>(pod: &'a Json, name: &str) -> &'a Json {
    ["containers", "initContainers"]
        .iter()
        .filter_map(|list| pod[list].as_array())
        .flatten()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

/// The names of `list` (`volumes`, `volumeMounts`…) of `object`.
fn names<'a>(object: &'a Json, list: &str) -> Vec<&'a str> {
    object[list]
        .as_array()
        .unwrap_or_else(|| panic!("no {list}"))
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect()
}

/// Checks what docs/security.md "What the container needs" promises: each container
/// has a read-only root, no privilege escalation and only the capabilities
/// and user it needs; `uid`/`gid` are the exporter's.
fn assert_least_privilege(pod: &Json, uid: u64, gid: u64) {
    for c in ["mig-exporter", "pod-resources-relay", "state-dir-owner"] {
        let sc = &container(pod, c)["securityContext"];
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{c}");
        // no_new_privs: a process gains no capability on exec.
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{c}");
        assert_eq!(sc["privileged"], false, "{c}");
        assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]), "{c}");
    }
    let exporter = &container(pod, "mig-exporter")["securityContext"];
    assert_eq!(exporter["runAsNonRoot"], true);
    assert_eq!(
        (exporter["runAsUser"].as_u64(), exporter["runAsGroup"].as_u64()),
        (Some(uid), Some(gid))
    );
    assert_eq!(
        exporter["capabilities"]["add"],
        serde_json::json!(["SYS_ADMIN"]),
        "only the bounding-set capability the NVIDIA runtime asks for"
    );
    let relay = &container(pod, "pod-resources-relay")["securityContext"];
    assert_eq!(relay["runAsUser"], 0, "the kubelet's socket is root's");
    assert_eq!(
        relay["runAsGroup"].as_u64(),
        Some(gid),
        "its socket's group is the exporter's"
    );
    assert!(
        relay["capabilities"].get("add").is_none(),
        "the relay has no capability"
    );
    let init = &container(pod, "state-dir-owner")["securityContext"];
    assert_eq!(init["runAsUser"], 0);
    assert_eq!(init["capabilities"]["add"], serde_json::json!(["CHOWN"]));
    assert!(
        pod["securityContext"].get("runAsUser").is_none(),
        "each container sets its own user"
    );
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    let env = |c: &str| container(pod, c)["env"].as_array().cloned().unwrap_or_default();
    assert!(env("mig-exporter").contains(&serde_json::json!(
        {"name": "NVIDIA_MIG_MONITOR_DEVICES", "value": "all"}
    )));
    assert!(env("mig-exporter").contains(&serde_json::json!(
        {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}
    )));
    for c in ["pod-resources-relay", "state-dir-owner"] {
        assert!(
            env(c).contains(&serde_json::json!({"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"})),
            "{c} gets no GPU"
        );
    }
}

#[test]
fn the_daemonset_runs_each_container_with_only_what_it_needs() {
    let ds = documents("daemonset.yaml").remove(0);
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["runtimeClassName"], "nvidia");
    assert_least_privilege(pod, 65532, 65532);
    let host_paths: Vec<&str> = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .filter_map(|v| v["hostPath"]["path"].as_str())
        .collect();
    assert_eq!(
        host_paths,
        ["/var/lib/kubelet/pod-resources", "/var/lib/mig-exporter"]
    );
    // Only the relay sees the kubelet's socket; the exporter reads the relay's.
    assert_eq!(
        names(container(pod, "mig-exporter"), "volumeMounts"),
        ["pod-resources-relay", "state"]
    );
    assert_eq!(
        names(container(pod, "pod-resources-relay"), "volumeMounts"),
        ["pod-resources", "pod-resources-relay"]
    );
    assert_eq!(
        names(container(pod, "state-dir-owner"), "volumeMounts"),
        ["state"]
    );
    let clis = container_clis(&ds);
    let serve = &clis["mig-exporter"].serve;
    let relay = relay_args(&clis["pod-resources-relay"]);
    assert_eq!(
        serve.kubelet.pod_resources_socket.as_deref(),
        Some(relay.listen_socket.as_path()),
        "the exporter reads the relay's socket"
    );
    assert_eq!(
        relay.upstream,
        std::path::Path::new("/var/lib/kubelet/pod-resources/kubelet.sock")
    );
    assert_eq!(
        serve.drift.state_file.as_deref(),
        Some(std::path::Path::new("/var/lib/mig-exporter/state.json"))
    );
    let c = container(pod, "mig-exporter");
    assert!(
        c["resources"]["requests"]["memory"].is_string() && c["resources"]["limits"]["memory"].is_string()
    );
    assert_state_dir_owner(pod, "65532:65532");
}

/// The init container gives the state directory, mode 0700, to `owner`
/// (`uid:gid`), and does nothing more.
fn assert_state_dir_owner(pod: &Json, owner: &str) {
    let command = container(pod, "state-dir-owner")["command"]
        .as_array()
        .expect("command")
        .iter()
        .map(|a| a.as_str().expect("string"))
        .collect::<Vec<_>>();
    assert_eq!(command[..2], ["/bin/sh", "-c"]);
    assert_eq!(
        command[2],
        format!(
            "stat -c %u:%g:%a /var/lib/mig-exporter | grep -qx {owner}:700 \
             || {{ chmod 0700 /var/lib/mig-exporter && chown -R -h {owner} /var/lib/mig-exporter; }}"
        )
    );
}

/// One Prometheus regex of a relabeling, fully anchored as Prometheus anchors
/// it (prometheus/prometheus model/relabel/relabel.go, `NewRegexp`): only the
/// forms the manifests use, literal alternatives and the default `(.*)`.
fn relabel_match<'a>(regex: &str, value: &'a str) -> Option<&'a str> {
    match regex {
        "(.*)" => Some(value),
        _ => {
            assert!(
                regex
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '|'),
                "the test's relabel evaluator does not know the regex {regex:?}"
            );
            regex
                .split('|')
                .any(|alternative| alternative == value)
                .then_some(value)
        }
    }
}

/// Applies `relabelings` (prometheus-operator's form) to `labels` as
/// Prometheus does for the actions the manifests use: `replace` (the
/// default: source values joined by `;`, the regex's match in `$1`, an empty
/// result deletes the target) and `labeldrop`.
fn relabel(labels: &mut BTreeMap<String, String>, relabelings: &Json) {
    for r in relabelings.as_array().expect("relabelings") {
        let regex = r["regex"].as_str().unwrap_or("(.*)");
        match r["action"]
            .as_str()
            .unwrap_or("replace")
            .to_ascii_lowercase()
            .as_str()
        {
            "replace" => {
                let separator = r["separator"].as_str().unwrap_or(";");
                let source: Vec<&str> = r["sourceLabels"]
                    .as_array()
                    .map(|names| {
                        names
                            .iter()
                            .map(|n| labels.get(n.as_str().unwrap()).map_or("", String::as_str))
                            .collect()
                    })
                    .unwrap_or_default();
                let joined = source.join(separator);
                let Some(matched) = relabel_match(regex, &joined) else {
                    continue;
                };
                let value = r["replacement"].as_str().unwrap_or("$1").replace("$1", matched);
                let target = r["targetLabel"]
                    .as_str()
                    .expect("a replace names its target")
                    .to_string();
                if value.is_empty() {
                    labels.remove(&target);
                } else {
                    labels.insert(target, value);
                }
            }
            "labeldrop" => labels.retain(|name, _| relabel_match(regex, name).is_none()),
            other => panic!("the test's relabel evaluator does not know action {other}"),
        }
    }
}

/// The labels a series scraped with `labels` gets from the endpoint of the
/// ServiceMonitor `sm`, for an exporter pod `mig-exporter-x7k2p` in namespace
/// `mig-exporter` on node `gpu-node-1`. The target labels before the
/// endpoint's relabelings are those prometheus-operator gives every
/// ServiceMonitor target (pkg/prometheus/promcfg.go,
/// `generateServiceMonitorConfig`: namespace, service, pod, container, job,
/// endpoint); the merge is Prometheus's (honor_labels: the series' own label
/// wins, else the series' label becomes exported_<name>).
fn scraped_labels(sm: &Json, series: &[(&str, &str)]) -> BTreeMap<String, String> {
    let endpoint = &sm["spec"]["endpoints"][0];
    let mut target: BTreeMap<String, String> = [
        ("__address__", "10.2.3.4:10110"),
        ("__meta_kubernetes_pod_node_name", "gpu-node-1"),
        ("namespace", "mig-exporter"),
        ("service", "mig-exporter"),
        ("pod", "mig-exporter-x7k2p"),
        ("container", "mig-exporter"),
        ("job", "mig-exporter"),
        ("endpoint", "metrics"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    relabel(&mut target, &endpoint["relabelings"]);
    let instance = target["__address__"].clone();
    target.entry("instance".to_string()).or_insert(instance);
    target.retain(|name, _| !name.starts_with("__"));
    let honor = endpoint["honorLabels"] == true;
    let mut labels: BTreeMap<String, String> = series
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for (name, value) in target {
        match labels.remove(&name) {
            Some(own) if honor => {
                labels.insert(name, own);
            }
            Some(own) => {
                labels.insert(format!("exported_{name}"), own);
                labels.insert(name, value);
            }
            None => {
                labels.insert(name, value);
            }
        }
    }
    if let Some(metric) = endpoint.get("metricRelabelings") {
        relabel(&mut labels, metric);
    }
    labels
}

/// Issue 17: `sum by (namespace)` of a slice's activity must not answer the
/// exporter's own namespace. Workload namespace, pod and container come only
/// from `nvidia_mig_instance_pod_info` (the kubelet's owners).
fn assert_no_exporter_pod_labels_on_series(sm: &Json, origin: &str) {
    let activity = scraped_labels(
        sm,
        &[
            ("__name__", "nvidia_mig_compute_instance_sm_active_ratio"),
            ("gpu", "0"),
            ("gi", "1"),
            ("ci", "0"),
            ("profile", "1g.10gb"),
        ],
    );
    for label in ["namespace", "pod", "container", "exported_namespace"] {
        assert!(!activity.contains_key(label), "{origin}: {label} on {activity:?}");
    }
    assert_eq!(activity["node"], "gpu-node-1", "{origin}");
    let owner = scraped_labels(
        sm,
        &[
            ("__name__", "nvidia_mig_instance_pod_info"),
            ("mig_uuid", "MIG-0f5c"),
            ("namespace", "team-a"),
            ("pod", "train-0"),
            ("container", "trainer"),
        ],
    );
    assert_eq!(
        (&owner["namespace"], &owner["pod"], &owner["container"]),
        (
            &"team-a".to_string(),
            &"train-0".to_string(),
            &"trainer".to_string()
        ),
        "{origin}: the owner's labels stay as the exporter wrote them"
    );
    assert!(!owner.contains_key("exported_namespace"), "{origin}: {owner:?}");
}

#[test]
fn the_servicemonitor_puts_no_exporter_namespace_pod_or_container_on_series() {
    let sm = documents("servicemonitor.yaml").remove(0);
    assert_no_exporter_pod_labels_on_series(&sm, "deploy/servicemonitor.yaml");
    let docs = render(None).unwrap_or_else(|e| panic!("{e}"));
    assert_no_exporter_pod_labels_on_series(find(&docs, "ServiceMonitor").unwrap(), "the chart");
    // With the user's relabelings, after the chart's, the same still holds.
    let docs = render(Some(OVERRIDES)).unwrap_or_else(|e| panic!("{e}"));
    assert_no_exporter_pod_labels_on_series(find(&docs, "ServiceMonitor").unwrap(), "OVERRIDES");

    // Without the labeldrop, the exporter pod's labels land on every series.
    let mut bare = sm.clone();
    bare["spec"]["endpoints"][0]["relabelings"]
        .as_array_mut()
        .unwrap()
        .retain(|r| r["action"] != "labeldrop");
    let activity = scraped_labels(
        &bare,
        &[("__name__", "nvidia_mig_compute_instance_sm_active_ratio")],
    );
    assert_eq!(
        activity["namespace"], "mig-exporter",
        "the evaluator sees the problem"
    );
}

#[test]
fn the_monitoring_docs_show_the_servicemonitors_relabelings() {
    let sm = documents("servicemonitor.yaml").remove(0);
    let endpoint = &sm["spec"]["endpoints"][0];
    assert_eq!(endpoint["honorLabels"], true);
    assert_eq!(
        endpoint["relabelings"],
        serde_json::json!([
            {"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node"},
            {"action": "labeldrop", "regex": "namespace|pod|container"},
        ])
    );
    // docs/monitoring.md ("The `node` label") shows it for other Kubernetes scrape configs.
    let doc = std::fs::read_to_string(root().join("docs/monitoring.md")).expect("docs/monitoring.md");
    assert!(
        doc.contains(
            "- sourceLabels: [__meta_kubernetes_pod_node_name]\n        targetLabel: node\n      \
             - action: labeldrop\n        regex: namespace|pod|container"
        ),
        "docs/monitoring.md shows the same relabelling"
    );
}

const RULE_HEADER: &str = "# Generated from alerts/mig-exporter.rules.yml: do not edit; run\n\
# `UPDATE_DEPLOY=1 cargo test --test deploy` after changing the alerts.\n";

#[test]
fn the_prometheus_rule_is_the_alert_file() {
    let alerts_path = root().join("alerts/mig-exporter.rules.yml");
    let alerts: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(&alerts_path).expect("alerts"))
            .expect("alerts YAML");
    let expected = serde_yaml_ng::to_value(serde_json::json!({
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "mig-exporter",
            "namespace": "mig-exporter",
            "labels": {
                "app.kubernetes.io/name": "mig-exporter",
                "app.kubernetes.io/instance": "mig-exporter",
            },
        },
        "spec": {"groups": serde_json::to_value(&alerts["groups"]).expect("groups")},
    }))
    .expect("PrometheusRule");
    let path = deploy().join("prometheusrule.yaml");
    if std::env::var_os("UPDATE_DEPLOY").is_some() {
        let text = serde_yaml_ng::to_string(&expected).expect("YAML");
        std::fs::write(&path, format!("{RULE_HEADER}{text}")).expect("write");
    }
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_DEPLOY=1 to create it)", path.display()));
    let found: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("PrometheusRule YAML");
    assert!(
        found == expected,
        "deploy/prometheusrule.yaml differs from alerts/: run UPDATE_DEPLOY=1 cargo test --test deploy"
    );
    assert!(text.starts_with(RULE_HEADER));
}

/// The `ExecStart` arguments of a systemd unit, without the binary and the
/// `$VAR`s that `/etc/default/mig-exporter` fills in.
fn exec_start(unit: &str) -> Vec<String> {
    let path = deploy().join("systemd").join(unit);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap_or_else(|| panic!("{unit}: no ExecStart"));
    let mut words = line.split_whitespace();
    assert_eq!(words.next(), Some("/usr/local/bin/mig-exporter"), "{unit}");
    words
        .filter(|w| !w.starts_with('$'))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_systemd_units_run_flags_the_exporter_accepts() {
    use clap::Parser;
    use mig_exporter::cli::{Cli, Command};
    let serve = exec_start("mig-exporter.service");
    let cli = Cli::try_parse_from(std::iter::once("mig-exporter".to_string()).chain(serve.clone()))
        .unwrap_or_else(|e| panic!("mig-exporter.service: {serve:?}: {e}"));
    assert!(cli.command.is_none() && cli.serve.source.nvml, "{serve:?}");
    let check = exec_start("mig-exporter-check.service");
    let cli = Cli::try_parse_from(std::iter::once("mig-exporter".to_string()).chain(check.clone()))
        .unwrap_or_else(|e| panic!("mig-exporter-check.service: {check:?}: {e}"));
    assert!(
        matches!(&cli.command, Some(Command::Check(args)) if args.source.nvml),
        "the gate judges the hardware, never a demo: {check:?}"
    );
    let unit = std::fs::read_to_string(deploy().join("systemd/mig-exporter-check.service")).expect("unit");
    assert!(
        unit.contains("Type=oneshot") && unit.contains("RemainAfterExit=yes"),
        "a gate that stays met"
    );
}

// The Helm chart.

fn chart() -> PathBuf {
    deploy().join("helm/mig-exporter")
}

/// The `helm` binary the chart tests run.
fn helm() -> PathBuf {
    if let Some(path) = std::env::var_os("MIG_TEST_HELM") {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "MIG_TEST_HELM={} is not a file", path.display());
        return path;
    }
    if let Some(path) = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("helm"))
        .find(|p| p.is_file())
    {
        return path;
    }
    panic!(
        "the Helm chart tests need helm (v3.8 or later): `bash scripts/test.sh` downloads it into \
         target/tools/ and sets MIG_TEST_HELM; or put helm on PATH, or set MIG_TEST_HELM to its path"
    )
}

/// Runs `helm` with `args`: Ok(stdout) or Err(stderr).
fn run_helm(args: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new(helm())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", helm().display()));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!("helm {args:?} failed ({}): {stderr}{stdout}", out.status))
    }
}

/// `helm template` of the chart as release `mig-exporter` in namespace
/// `mig-exporter`, with `values` (a values file's text, if any).
fn render(values: Option<&str>) -> Result<Vec<Json>, String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let chart = chart();
    let mut args = vec![
        "template",
        "mig-exporter",
        chart.to_str().unwrap(),
        "--namespace",
        "mig-exporter",
    ];
    let file = dir.path().join("values.yaml");
    if let Some(values) = values {
        std::fs::write(&file, values).expect("values file");
        args.extend(["--values", file.to_str().unwrap()]);
    }
    Ok(parse_documents(&run_helm(&args)?, "helm template"))
}

fn lint(values: Option<&str>) -> Result<String, String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let chart = chart();
    let mut args = vec!["lint", "--strict", chart.to_str().unwrap()];
    let file = dir.path().join("values.yaml");
    if let Some(values) = values {
        std::fs::write(&file, values).expect("values file");
        args.extend(["--values", file.to_str().unwrap()]);
    }
    run_helm(&args)
}

/// The rendered object of `kind`, if any.
fn find<'a>(docs: &'a [Json], kind: &str) -> Option<&'a Json> {
    docs.iter().find(|d| d["kind"] == kind)
}

/// The labels Helm charts add to each object and the plain manifests do not have.
const HELM_LABELS: [&str; 2] = ["helm.sh/chart", "app.kubernetes.io/managed-by"];

/// Every option of values.yaml set to something other than its default.
const OVERRIDES: &str = r#"
image:
  repository: registry.example.com/gpu/mig-exporter
  tag: 0.2.0-rc.1
  pullPolicy: Always
imagePullSecrets:
  - name: registry-credentials
serviceAccount:
  annotations:
    example.com/owner: ml-platform
runtimeClassName: nvidia-cdi
priorityClassName: gpu-monitoring
nodeSelector:
  # Helm merges maps with the defaults: null removes a default key.
  nvidia.com/gpu.present: null
  nvidia.com/mig.capable: "true"
tolerations:
  - key: dedicated
    operator: Equal
    value: gpu
    effect: NoExecute
affinity:
  nodeAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      nodeSelectorTerms:
        - matchExpressions:
            - key: nvidia.com/gpu.product
              operator: In
              values: [NVIDIA-H100-80GB-HBM3]
podAnnotations:
  example.com/scrape-note: via ServiceMonitor
podLabels:
  team: ml-platform
updateStrategy:
  type: RollingUpdate
  rollingUpdate:
    maxUnavailable: 10%
resources:
  requests:
    cpu: 20m
    memory: 64Mi
  limits:
    cpu: 200m
    memory: 256Mi
service:
  port: 9445
webConfig:
  secretName: mig-exporter-web
  file: web-config.yml
helperResources:
  requests:
    cpu: 2m
    memory: 16Mi
  limits:
    memory: 64Mi
securityContext:
  runAsUser: 1000
  runAsGroup: 2000
dcgm:
  enabled: true
  address: $(NODE_IP):5556
hostPaths:
  podResources: /var/snap/microk8s/common/var/lib/kubelet/pod-resources
  state: /srv/mig-exporter
logFormat: logfmt
compat:
  dcgmExporter: true
extraArgs:
  - --poll.interval=2s
  - --mig.config=/etc/mig-parted/config.yaml
extraEnv:
  - name: RUST_BACKTRACE
    value: "1"
extraVolumes:
  - name: mig-parted-config
    configMap:
      name: default-mig-parted-config
extraVolumeMounts:
  - name: mig-parted-config
    mountPath: /etc/mig-parted
    readOnly: true
migManager:
  pauseForMigChange: false
networkPolicy:
  from:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: monitoring
dashboards:
  labels:
    grafana_dashboard: "1"
    team: ml-platform
  annotations:
    grafana_folder: MIG
serviceMonitor:
  interval: 15s
  scrapeTimeout: 10s
  relabelings:
    - sourceLabels: [__meta_kubernetes_pod_label_team]
      targetLabel: team
  metricRelabelings:
    - action: labeldrop
      regex: ecc_kind
  labels:
    release: kube-prometheus-stack
  scheme: https
  tlsConfig:
    ca:
      secret:
        name: mig-exporter-web
        key: ca.crt
    serverName: mig-exporter
  basicAuth:
    username:
      name: mig-exporter-scrape
      key: username
    password:
      name: mig-exporter-scrape
      key: password
prometheusRule:
  labels:
    release: kube-prometheus-stack
"#;

/// What turns parts off.
const SWITCHED_OFF: &str = r#"
serviceAccount:
  create: false
  name: gpu-monitoring
runtimeClassName: ""
priorityClassName: ""
kubelet:
  enabled: false
dcgm:
  enabled: false
serviceMonitor:
  enabled: false
prometheusRule:
  enabled: false
networkPolicy:
  enabled: false
dashboards:
  enabled: false
"#;

/// The args of every container and init container of a DaemonSet that runs
/// the image's entrypoint (no `command`), parsed by the exporter's own
/// command line, with `$(NODE_IP)` expanded as the kubelet would; by name.
fn container_clis(ds: &Json) -> BTreeMap<String, mig_exporter::cli::Cli> {
    use clap::Parser;
    let pod = &ds["spec"]["template"]["spec"];
    let mut clis = BTreeMap::new();
    for c in ["containers", "initContainers"]
        .iter()
        .filter_map(|list| pod[list].as_array())
        .flatten()
        .filter(|c| c.get("command").is_none())
    {
        let name = c["name"].as_str().expect("container name");
        let args: Vec<String> = c["args"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: no args"))
            .iter()
            .map(|a| a.as_str().expect("string arg").replace("$(NODE_IP)", "10.0.0.7"))
            .collect();
        let cli = mig_exporter::cli::Cli::try_parse_from(
            std::iter::once("mig-exporter".to_string()).chain(args.clone()),
        )
        .unwrap_or_else(|e| panic!("{name}: {args:?}: {e}"));
        clis.insert(name.to_string(), cli);
    }
    clis
}

/// The exporter container's parsed args.
fn parse_args(ds: &Json) -> mig_exporter::cli::Cli {
    container_clis(ds)
        .remove("mig-exporter")
        .expect("the mig-exporter container")
}

fn relay_args(cli: &mig_exporter::cli::Cli) -> &mig_exporter::relay::RelayArgs {
    match &cli.command {
        Some(mig_exporter::cli::Command::RelayPodResources(args)) => args,
        other => panic!("not relay-pod-resources: {other:?}"),
    }
}

/// A packaged start reads the hardware or shows why it cannot: it passes
/// --nvml, never leaving the choice to the driver probe of a bare start.
#[test]
fn the_daemonset_and_the_chart_always_pass_nvml() {
    let mut starts = vec![("deploy/daemonset.yaml".to_string(), documents("daemonset.yaml"))];
    for (name, values) in [
        ("default", None),
        ("OVERRIDES", Some(OVERRIDES)),
        ("SWITCHED_OFF", Some(SWITCHED_OFF)),
    ] {
        starts.push((
            format!("chart with {name} values"),
            render(values).unwrap_or_else(|e| panic!("{e}")),
        ));
    }
    for (origin, docs) in starts {
        let ds = find(&docs, "DaemonSet").unwrap_or_else(|| panic!("{origin}: no DaemonSet"));
        let cli = parse_args(ds);
        assert!(
            cli.command.is_none() && cli.serve.source.nvml,
            "{origin}: the exporter container serves with --nvml"
        );
        assert!(
            cli.serve.source.simulate.is_none() && cli.serve.source.world.is_none(),
            "{origin}"
        );
    }
}

#[test]
fn the_chart_passes_helm_lint_strict_with_default_and_other_values() {
    for values in [None, Some(OVERRIDES), Some(SWITCHED_OFF)] {
        if let Err(e) = lint(values) {
            panic!("{e}");
        }
    }
}

#[test]
fn the_chart_with_default_values_renders_the_plain_manifests() {
    let rendered = render(None).unwrap_or_else(|e| panic!("{e}"));
    let key = |d: &Json| format!("{}/{}", d["kind"].as_str().unwrap_or("?"), d["metadata"]["name"]);
    let mut chart: BTreeMap<String, Json> = BTreeMap::new();
    for mut doc in rendered {
        let name = key(&doc);
        let labels = doc["metadata"]["labels"]
            .as_object_mut()
            .unwrap_or_else(|| panic!("{name} has no labels"));
        for label in HELM_LABELS {
            assert!(labels.remove(label).is_some(), "{name}: {label} missing");
        }
        chart.insert(name, doc);
    }
    let plain: BTreeMap<String, Json> = manifests()
        .iter()
        .flat_map(|f| documents(f))
        // helm install --create-namespace makes the namespace.
        .filter(|d| d["kind"] != "Namespace")
        .map(|d| (key(&d), d))
        .collect();
    assert_eq!(chart.keys().collect::<Vec<_>>(), plain.keys().collect::<Vec<_>>());
    for (name, expected) in &plain {
        let mut differences = Vec::new();
        lost(expected, &chart[name], "", &mut differences);
        let mut extra = Vec::new();
        lost(&chart[name], expected, "", &mut extra);
        differences.extend(
            extra
                .into_iter()
                .filter(|d| !d.contains(" became "))
                .map(|d| format!("{d} only in the chart")),
        );
        assert!(
            differences.is_empty(),
            "the chart's {name} differs from deploy/: {differences:?}"
        );
    }
}

#[test]
fn every_rendered_object_matches_the_kubernetes_types_whatever_the_values() {
    for values in [None, Some(OVERRIDES), Some(SWITCHED_OFF)] {
        let docs = render(values).unwrap_or_else(|e| panic!("{e}"));
        assert!(find(&docs, "DaemonSet").is_some());
        for doc in &docs {
            if let Err(e) = check(doc) {
                panic!("{} {}: {e}", doc["kind"], doc["metadata"]["name"]);
            }
        }
        let clis = container_clis(find(&docs, "DaemonSet").unwrap());
        assert!(clis.contains_key("mig-exporter"), "{:?}", clis.keys());
    }
    let clis = container_clis(&documents("daemonset.yaml")[0]);
    assert_eq!(
        clis.keys().collect::<Vec<_>>(),
        ["mig-exporter", "pod-resources-relay"],
        "the init container runs chown, not the exporter"
    );
}

#[test]
fn the_chart_values_reach_the_objects() {
    let docs = render(Some(OVERRIDES)).unwrap_or_else(|e| panic!("{e}"));
    let ds = find(&docs, "DaemonSet").expect("DaemonSet");
    let pod = &ds["spec"]["template"]["spec"];
    let c = container(pod, "mig-exporter");
    let values: Json =
        serde_json::to_value(serde_yaml_ng::from_str::<serde_yaml_ng::Value>(OVERRIDES).unwrap()).unwrap();
    for name in ["mig-exporter", "pod-resources-relay", "state-dir-owner"] {
        let c = container(pod, name);
        assert_eq!(
            c["image"], "registry.example.com/gpu/mig-exporter:0.2.0-rc.1",
            "{name}"
        );
        assert_eq!(c["imagePullPolicy"], "Always", "{name}");
    }
    for name in ["pod-resources-relay", "state-dir-owner"] {
        assert_eq!(
            container(pod, name)["resources"],
            values["helperResources"],
            "{name}"
        );
    }
    assert_least_privilege(pod, 1000, 2000);
    assert_state_dir_owner(pod, "1000:2000");
    // The web config, from its Secret; probes that TLS or auth cannot fail.
    assert!(pod["volumes"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!({"name": "web-config", "secret": {"secretName": "mig-exporter-web"}})));
    assert!(c["volumeMounts"].as_array().unwrap().contains(&serde_json::json!(
        {"name": "web-config", "mountPath": "/etc/mig-exporter/web", "readOnly": true}
    )));
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(c[probe]["tcpSocket"]["port"], "metrics", "{probe}");
        assert!(c[probe].get("httpGet").is_none(), "{probe}");
    }
    assert_eq!(pod["imagePullSecrets"], values["imagePullSecrets"]);
    assert_eq!(pod["runtimeClassName"], "nvidia-cdi");
    assert_eq!(pod["priorityClassName"], "gpu-monitoring");
    assert_eq!(
        pod["nodeSelector"],
        serde_json::json!({"nvidia.com/mig.capable": "true"})
    );
    assert_eq!(pod["tolerations"], values["tolerations"]);
    assert_eq!(pod["affinity"], values["affinity"]);
    assert_eq!(c["resources"], values["resources"]);
    assert_eq!(ds["spec"]["updateStrategy"], values["updateStrategy"]);
    let template = &ds["spec"]["template"]["metadata"];
    assert_eq!(template["annotations"], values["podAnnotations"]);
    assert_eq!(template["labels"]["team"], "ml-platform");
    assert_eq!(
        template["labels"]["app.kubernetes.io/name"], "mig-exporter",
        "the selector labels stay"
    );
    assert_eq!(c["ports"][0]["containerPort"], 9445);
    assert_eq!(c["env"].as_array().unwrap().last(), Some(&values["extraEnv"][0]));
    assert_eq!(
        pod["volumes"].as_array().unwrap().last(),
        Some(&values["extraVolumes"][0])
    );
    assert_eq!(
        c["volumeMounts"].as_array().unwrap().last(),
        Some(&values["extraVolumeMounts"][0])
    );
    let host_paths: Vec<&str> = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["hostPath"]["path"].as_str())
        .collect();
    assert_eq!(
        host_paths,
        [
            "/var/snap/microk8s/common/var/lib/kubelet/pod-resources",
            "/srv/mig-exporter"
        ]
    );

    let cli = parse_args(ds);
    let serve = &cli.serve;
    let listen: Vec<String> = serve.listen_address.iter().map(|a| a.to_string()).collect();
    assert_eq!(listen, [":9445"]);
    assert_eq!(
        serve.poll_interval,
        std::time::Duration::from_secs(2),
        "extraArgs"
    );
    assert_eq!(
        serve.drift.mig_config.as_deref(),
        Some(std::path::Path::new("/etc/mig-parted/config.yaml"))
    );
    assert_eq!(format!("{}", serve.source.dcgm_address), "10.0.0.7:5556");
    assert!(serve.compat_dcgm_exporter, "compat.dcgmExporter");
    let defaults = render(None).unwrap_or_else(|e| panic!("{e}"));
    let default_serve = parse_args(find(&defaults, "DaemonSet").expect("DaemonSet")).serve;
    assert!(!default_serve.compat_dcgm_exporter, "off by default");
    assert_eq!(
        serve.web_config_file.as_deref(),
        Some(std::path::Path::new("/etc/mig-exporter/web/web-config.yml"))
    );

    let service = find(&docs, "Service").expect("Service");
    assert_eq!(service["spec"]["ports"][0]["port"], 9445);
    let sa = find(&docs, "ServiceAccount").expect("ServiceAccount");
    assert_eq!(
        sa["metadata"]["annotations"],
        values["serviceAccount"]["annotations"]
    );
    let sm = find(&docs, "ServiceMonitor").expect("ServiceMonitor");
    let endpoint = &sm["spec"]["endpoints"][0];
    assert_eq!(endpoint["interval"], "15s");
    assert_eq!(endpoint["scrapeTimeout"], "10s");
    assert_eq!(
        endpoint["relabelings"].as_array().unwrap().last(),
        Some(&values["serviceMonitor"]["relabelings"][0]),
        "the user's relabelings come after the chart's"
    );
    assert_eq!(
        endpoint["metricRelabelings"],
        values["serviceMonitor"]["metricRelabelings"]
    );
    let policy = find(&docs, "NetworkPolicy").expect("NetworkPolicy");
    assert_eq!(
        policy["spec"]["ingress"][0]["from"],
        values["networkPolicy"]["from"]
    );
    let dashboards: Vec<&Json> = docs.iter().filter(|d| d["kind"] == "ConfigMap").collect();
    assert_eq!(dashboards.len(), 3);
    for d in dashboards {
        assert_eq!(d["metadata"]["labels"]["team"], "ml-platform");
        assert_eq!(d["metadata"]["labels"]["grafana_dashboard"], "1");
        assert_eq!(d["metadata"]["annotations"], values["dashboards"]["annotations"]);
    }
    assert!(
        pod["nodeSelector"].get("nvidia.com/gpu.deploy.client").is_none(),
        "migManager.pauseForMigChange: false"
    );
    assert_eq!(endpoint["scheme"], "https");
    assert_eq!(endpoint["tlsConfig"], values["serviceMonitor"]["tlsConfig"]);
    assert_eq!(endpoint["basicAuth"], values["serviceMonitor"]["basicAuth"]);
    assert_eq!(sm["metadata"]["labels"]["release"], "kube-prometheus-stack");
    let rule = find(&docs, "PrometheusRule").expect("PrometheusRule");
    assert_eq!(rule["metadata"]["labels"]["release"], "kube-prometheus-stack");
}

#[test]
fn the_chart_switches_parts_off() {
    let docs = render(Some(SWITCHED_OFF)).unwrap_or_else(|e| panic!("{e}"));
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        ["Service", "DaemonSet"],
        "no account, monitor, rule, network policy or dashboards"
    );
    let ds = find(&docs, "DaemonSet").unwrap();
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "gpu-monitoring");
    assert!(pod.get("runtimeClassName").is_none() && pod.get("priorityClassName").is_none());
    assert_eq!(
        names(pod, "volumes"),
        ["state"],
        "no pod-resources mount without the kubelet source"
    );
    assert_eq!(names(pod, "containers"), ["mig-exporter"], "no relay either");
    assert_eq!(names(pod, "initContainers"), ["state-dir-owner"]);
    let c = container(pod, "mig-exporter");
    assert_eq!(names(c, "volumeMounts"), ["state"]);
    for probe in ["readinessProbe", "livenessProbe"] {
        assert!(
            c[probe]["httpGet"]["path"].is_string(),
            "{probe} without a web config"
        );
    }
    let cli = parse_args(ds);
    assert!(cli.serve.kubelet.no_kubelet && cli.serve.source.no_dcgm);

    let e = render(Some("serviceAccount:\n  create: false\n")).expect_err("no account name");
    assert!(e.contains("serviceAccount.name"), "{e}");
}

#[test]
fn the_chart_rejects_misspelt_or_mistyped_values_naming_them() {
    let e = render(Some("nodeselector:\n  gpu: \"true\"\n")).expect_err("misspelt key");
    assert!(e.contains("nodeselector"), "{e}");
    let e = render(Some("service:\n  port: metrics\n")).expect_err("a port name");
    assert!(e.contains("/service/port"), "{e}");
    let e = render(Some("serviceMonitor:\n  scheme: tcp\n")).expect_err("a scheme");
    assert!(e.contains("/serviceMonitor/scheme"), "{e}");
    let e = render(Some("image:\n  pullPolicy: Sometimes\n")).expect_err("a pull policy");
    assert!(e.contains("/image/pullPolicy"), "{e}");
    let e = render(Some("hostPaths:\n  state: var/lib/mig-exporter\n")).expect_err("a relative path");
    assert!(e.contains("/hostPaths/state"), "{e}");
}

/// `--mig.config-from-kubernetes` from the chart, with the operator's defaults.
const FROM_KUBERNETES: &str = "migConfigFromKubernetes:\n  enabled: true\n";

/// The operator given its own ConfigMap (`migManager.config.name`), on OpenShift.
const FROM_KUBERNETES_CUSTOM: &str = r#"
serviceAccount:
  create: false
  name: gpu-monitoring
migConfigFromKubernetes:
  enabled: true
  namespace: nvidia-gpu-operator
  configMaps: [custom-mig-parted-configs]
  key: mig.yaml
  interval: 2m
"#;

/// Every rendered object of `kind`.
fn all<'a>(docs: &'a [Json], kind: &str) -> Vec<&'a Json> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

#[test]
fn the_chart_reads_the_mig_config_from_the_operator_with_get_on_the_node_and_the_configmap_only() {
    // Off by default: no RBAC object, no token, and the plain manifests say the same.
    let docs = render(None).unwrap_or_else(|e| panic!("{e}"));
    for kind in ["ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"] {
        assert!(find(&docs, kind).is_none(), "{kind} by default");
    }
    let pod = &find(&docs, "DaemonSet").unwrap()["spec"]["template"]["spec"];
    assert!(!names(pod, "volumes").contains(&"kube-api-access"));
    assert!(
        !parse_args(find(&docs, "DaemonSet").unwrap())
            .serve
            .drift
            .mig_config_from_kubernetes
    );

    for values in [FROM_KUBERNETES, FROM_KUBERNETES_CUSTOM] {
        lint(Some(values)).unwrap_or_else(|e| panic!("{e}"));
    }
    let docs = render(Some(FROM_KUBERNETES)).unwrap_or_else(|e| panic!("{e}"));
    for doc in &docs {
        if let Err(e) = check(doc) {
            panic!("{} {}: {e}", doc["kind"], doc["metadata"]["name"]);
        }
    }
    let account =
        serde_json::json!([{"kind": "ServiceAccount", "name": "mig-exporter", "namespace": "mig-exporter"}]);
    // Nodes: get only. resourceNames cannot name the node each pod runs on.
    let cluster_roles = all(&docs, "ClusterRole");
    assert_eq!(cluster_roles.len(), 1);
    assert_eq!(
        cluster_roles[0]["rules"],
        serde_json::json!([{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}])
    );
    let bindings = all(&docs, "ClusterRoleBinding");
    assert_eq!(bindings.len(), 1);
    assert_eq!(
        bindings[0]["roleRef"]["name"],
        cluster_roles[0]["metadata"]["name"]
    );
    assert_eq!(bindings[0]["roleRef"]["kind"], "ClusterRole");
    assert_eq!(bindings[0]["subjects"], account);
    // ConfigMaps of the operator's namespace: get only; by name unless a name is per node.
    let roles = all(&docs, "Role");
    assert_eq!(roles.len(), 1);
    assert_eq!(roles[0]["metadata"]["namespace"], "gpu-operator");
    assert_eq!(
        roles[0]["rules"],
        serde_json::json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}])
    );
    let role_bindings = all(&docs, "RoleBinding");
    assert_eq!(role_bindings.len(), 1);
    assert_eq!(role_bindings[0]["metadata"]["namespace"], "gpu-operator");
    assert_eq!(role_bindings[0]["roleRef"]["name"], roles[0]["metadata"]["name"]);
    assert_eq!(role_bindings[0]["roleRef"]["kind"], "Role");
    assert_eq!(role_bindings[0]["subjects"], account);
    assert_eq!(
        find(&docs, "ServiceAccount").unwrap()["automountServiceAccountToken"],
        false,
        "no token for every container"
    );

    // Only the exporter container gets the token and the CA, where it looks for them.
    let ds = find(&docs, "DaemonSet").unwrap();
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["automountServiceAccountToken"], false);
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "kube-api-access")
        .expect("the token volume");
    assert_eq!(
        volume["projected"]["sources"],
        serde_json::json!([
            {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}
        ])
    );
    let mount = serde_json::json!({
        "name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true
    });
    assert!(container(pod, "mig-exporter")["volumeMounts"]
        .as_array()
        .unwrap()
        .contains(&mount));
    for other in ["pod-resources-relay", "state-dir-owner"] {
        assert!(
            !names(container(pod, other), "volumeMounts").contains(&"kube-api-access"),
            "{other}"
        );
    }
    assert_least_privilege(pod, 65532, 65532);
    let cli = parse_args(ds);
    let drift = &cli.serve.drift;
    assert!(drift.mig_config_from_kubernetes);
    assert_eq!(drift.mig_config_namespace, "gpu-operator");
    assert_eq!(
        drift.mig_config_configmaps,
        ["{node}-mig-config", "default-mig-parted-config"]
    );
    assert_eq!(drift.mig_config_key, "config.yaml");
    assert_eq!(drift.mig_config_interval, std::time::Duration::from_secs(30));
    let token = &drift.kubernetes.kubernetes_token_file;
    let ca = &drift.kubernetes.kubernetes_ca_file;
    assert_eq!(
        (token.to_str(), ca.to_str()),
        (
            Some("/var/run/secrets/kubernetes.io/serviceaccount/token"),
            Some("/var/run/secrets/kubernetes.io/serviceaccount/ca.crt")
        ),
        "the exporter's defaults are where the chart mounts them"
    );
    assert!(container(pod, "mig-exporter")["env"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!({"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}})));

    // With one fixed ConfigMap, the Role names it and nothing else.
    let docs = render(Some(FROM_KUBERNETES_CUSTOM)).unwrap_or_else(|e| panic!("{e}"));
    let roles = all(&docs, "Role");
    assert_eq!(roles[0]["metadata"]["namespace"], "nvidia-gpu-operator");
    assert_eq!(
        roles[0]["rules"],
        serde_json::json!([{
            "apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"],
            "resourceNames": ["custom-mig-parted-configs"]
        }])
    );
    let account = serde_json::json!([{"kind": "ServiceAccount", "name": "gpu-monitoring", "namespace": "mig-exporter"}]);
    assert_eq!(all(&docs, "RoleBinding")[0]["subjects"], account);
    assert_eq!(all(&docs, "ClusterRoleBinding")[0]["subjects"], account);
    let drift = parse_args(find(&docs, "DaemonSet").unwrap()).serve.drift;
    assert_eq!(drift.mig_config_configmaps, ["custom-mig-parted-configs"]);
    assert_eq!(drift.mig_config_namespace, "nvidia-gpu-operator");
    assert_eq!(drift.mig_config_key, "mig.yaml");
    assert_eq!(drift.mig_config_interval, std::time::Duration::from_secs(120));

    let e =
        render(Some("migConfigFromKubernetes:\n  namespace: GPU_Operator\n")).expect_err("a bad namespace");
    assert!(e.contains("/migConfigFromKubernetes/namespace"), "{e}");
    let e = render(Some("migConfigFromKubernetes:\n  configMaps: []\n")).expect_err("no ConfigMap");
    assert!(e.contains("/migConfigFromKubernetes/configMaps"), "{e}");
}

const CHART_RULES_HEADER: &str = "# Copied from alerts/mig-exporter.rules.yml: do not edit; run\n\
# `UPDATE_DEPLOY=1 cargo test --test deploy` after changing the alerts.\n";

#[test]
fn the_charts_prometheus_rule_is_the_alert_file() {
    let alerts = std::fs::read_to_string(root().join("alerts/mig-exporter.rules.yml")).expect("alerts");
    let path = chart().join("files/mig-exporter.rules.yml");
    let expected = format!("{CHART_RULES_HEADER}{alerts}");
    if std::env::var_os("UPDATE_DEPLOY").is_some() {
        std::fs::write(&path, &expected).expect("write");
    }
    let found = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        found == expected,
        "{} differs from alerts/: run UPDATE_DEPLOY=1 cargo test --test deploy",
        path.display()
    );
    let docs = render(None).unwrap_or_else(|e| panic!("{e}"));
    let rule = find(&docs, "PrometheusRule").expect("PrometheusRule");
    let alerts: Json =
        serde_json::to_value(serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&alerts).unwrap()).unwrap();
    assert_eq!(rule["spec"]["groups"], alerts["groups"]);
}

/// Issue 18: runbook links absolute and configurable, kube-prometheus style
/// (the kubernetes-mixin's `runbookURLPattern`: `%s` is the alert name in
/// lower case), and labels for every alert (kube-prometheus-stack's
/// `defaultRules.additionalRuleLabels`).
#[test]
fn the_charts_runbook_links_and_rule_labels_are_values() {
    let alerts: Json = serde_json::to_value(
        serde_yaml_ng::from_str::<serde_yaml_ng::Value>(
            &std::fs::read_to_string(root().join("alerts/mig-exporter.rules.yml")).expect("alerts"),
        )
        .unwrap(),
    )
    .unwrap();
    let values = r#"
prometheusRule:
  runbookURLPattern: https://wiki.example.com/gpu/runbooks/mig/%s?from=alert
  additionalRuleLabels:
    team: gpu-platform
    severity: page-everyone
"#;
    let docs = render(Some(values)).unwrap_or_else(|e| panic!("{e}"));
    let rule = find(&docs, "PrometheusRule").expect("PrometheusRule");
    let mut count = 0;
    for (group, expected) in rule["spec"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .zip(alerts["groups"].as_array().unwrap())
    {
        for (rendered, original) in group["rules"]
            .as_array()
            .unwrap()
            .iter()
            .zip(expected["rules"].as_array().unwrap())
        {
            // A recording rule is the rule file's, untouched.
            let Some(name) = original["alert"].as_str() else {
                assert!(
                    original["record"].is_string(),
                    "neither alert nor record: {original}"
                );
                assert_eq!(rendered, original);
                count += 1;
                continue;
            };
            assert_eq!(rendered["alert"], name);
            assert_eq!(
                rendered["annotations"]["runbook_url"],
                format!(
                    "https://wiki.example.com/gpu/runbooks/mig/{}?from=alert",
                    name.to_lowercase()
                )
                .as_str()
            );
            assert_eq!(rendered["labels"]["team"], "gpu-platform", "{name}");
            assert_eq!(
                rendered["labels"]["severity"], original["labels"]["severity"],
                "{name}: the rule's own severity wins"
            );
            // Everything else is the rule file's.
            for key in ["expr", "for"] {
                assert_eq!(rendered.get(key), original.get(key), "{name}: {key}");
            }
            for key in ["summary", "description"] {
                assert_eq!(
                    rendered["annotations"][key], original["annotations"][key],
                    "{name}: {key}"
                );
            }
            count += 1;
        }
    }
    assert_eq!(
        count,
        alerts["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["rules"].as_array().unwrap().len())
            .sum::<usize>()
    );
    // The default is the rule file's placeholder, so the plain manifests and
    // the release tarball's rule file carry the same links.
    let chart_values: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(chart().join("values.yaml")).unwrap()).unwrap();
    let default = chart_values["prometheusRule"]["runbookURLPattern"]
        .as_str()
        .expect("a default");
    assert_eq!(
        default,
        "https://runbooks.example.com/mig-exporter/runbooks.md#%s"
    );

    for bad in ["https://wiki.example.com/runbooks/mig", "docs/runbooks.md#%s"] {
        let e = render(Some(&format!(
            "prometheusRule:\n  runbookURLPattern: \"{bad}\"\n"
        )))
        .expect_err(bad);
        assert!(e.contains("runbookURLPattern"), "{bad}: {e}");
    }
}

/// What the build stage of the Dockerfile copies into the image: the first
/// path component of every `COPY` source before the second `FROM`.
fn dockerfile_build_copies() -> BTreeSet<String> {
    let text = std::fs::read_to_string(root().join("Dockerfile")).expect("Dockerfile");
    let mut copied = BTreeSet::new();
    for line in text
        .lines()
        .skip_while(|l| !l.starts_with("FROM "))
        .skip(1)
        .take_while(|l| !l.starts_with("FROM "))
    {
        let Some(args) = line.strip_prefix("COPY ") else {
            continue;
        };
        let words: Vec<&str> = args.split_whitespace().filter(|w| !w.starts_with("--")).collect();
        for source in &words[..words.len().saturating_sub(1)] {
            copied.insert(
                source
                    .trim_end_matches('/')
                    .split('/')
                    .next()
                    .unwrap()
                    .to_string(),
            );
        }
    }
    copied
}

/// `cargo metadata --no-deps` of the workspace.
fn cargo_metadata() -> Json {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let out = std::process::Command::new(&cargo)
        .args(["metadata", "--offline", "--no-deps", "--format-version", "1"])
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("{cargo} metadata: {e}"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("cargo metadata JSON")
}

#[test]
fn the_image_build_copies_every_file_cargo_needs() {
    let metadata = cargo_metadata();
    let copied = dockerfile_build_copies();
    assert!(copied.contains("Cargo.lock"), "{copied:?}");
    let mut missing = BTreeSet::new();
    for package in metadata["packages"].as_array().expect("packages") {
        let files = std::iter::once(&package["manifest_path"]).chain(
            package["targets"]
                .as_array()
                .expect("targets")
                .iter()
                .map(|t| &t["src_path"]),
        );
        for file in files {
            let file = PathBuf::from(file.as_str().expect("path"));
            let relative = file.strip_prefix(root()).expect("inside the workspace");
            let top = relative
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_string_lossy()
                .into_owned();
            if !copied.contains(&top) {
                missing.insert(relative.display().to_string());
            }
        }
    }
    assert!(
        missing.is_empty(),
        "the Dockerfile's build stage does not copy {missing:?}: cargo fails on a declared target it cannot find"
    );
}

/// The instructions of the Dockerfile's stage `n` (0: the build stage), with
/// continuation lines joined and comments dropped: (instruction, arguments).
fn dockerfile_stage(n: usize) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(root().join("Dockerfile")).expect("Dockerfile");
    let mut instructions: Vec<String> = Vec::new();
    let mut continued = false;
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (body, continues) = match line.strip_suffix('\\') {
            Some(body) => (body.trim(), true),
            None => (line, false),
        };
        match instructions.last_mut() {
            Some(last) if continued => {
                last.push(' ');
                last.push_str(body);
            }
            _ => instructions.push(body.to_string()),
        }
        continued = continues;
    }
    instructions
        .split(|i| i.starts_with("FROM "))
        .nth(n + 1)
        .unwrap_or_else(|| panic!("the Dockerfile has no stage {n}"))
        .iter()
        .map(|i| {
            let (op, args) = i.split_once(' ').unwrap_or((i, ""));
            (op.to_string(), args.to_string())
        })
        .collect()
}

/// The commands of the stage's `RUN` instructions (split at `&&`), as words.
fn run_commands(stage: &[(String, String)]) -> Vec<Vec<String>> {
    stage
        .iter()
        .filter(|(op, _)| op == "RUN")
        .flat_map(|(_, args)| {
            args.split("&&")
                .map(|c| c.split_whitespace().map(str::to_string).collect())
        })
        .filter(|command: &Vec<String>| !command.is_empty())
        .collect()
}

#[test]
fn the_image_build_stage_copies_what_exists_and_builds_what_ci_builds() {
    let build = dockerfile_stage(0);
    for (_, args) in build.iter().filter(|(op, _)| op == "COPY") {
        let words: Vec<&str> = args.split_whitespace().filter(|w| !w.starts_with("--")).collect();
        for source in &words[..words.len().saturating_sub(1)] {
            assert!(
                root().join(source).exists(),
                "the Dockerfile copies {source}, which does not exist"
            );
        }
    }

    let commands = run_commands(&build);
    let cargo: Vec<&Vec<String>> = commands.iter().filter(|c| c[0] == "cargo").collect();
    assert_eq!(
        cargo.len(),
        1,
        "one cargo command in the build stage: {commands:?}"
    );
    let cargo = cargo[0];
    assert_eq!(cargo[1], "build", "{cargo:?}");
    // scripts/release.sh builds the tarball's binary with the same command.
    let release = std::fs::read_to_string(root().join("scripts/release.sh")).expect("scripts/release.sh");
    assert!(
        release.contains(&cargo.join(" ")),
        "scripts/release.sh does not run the Dockerfile's `{}`",
        cargo.join(" ")
    );

    // CI (scripts/test.sh) compiles the same targets from the same lock file;
    // the release profile changes code generation, not what must compile.
    let test_sh = std::fs::read_to_string(root().join("scripts/test.sh")).expect("scripts/test.sh");
    let ci: Vec<&str> = test_sh
        .lines()
        .find(|l| l.starts_with("cargo build "))
        .expect("scripts/test.sh runs cargo build")
        .split_whitespace()
        .collect();
    assert!(ci.contains(&"--workspace") && ci.contains(&"--locked"), "{ci:?}");
    let root_bins: Vec<String> = cargo_metadata()["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter(|p| p["manifest_path"].as_str() == Some(root().join("Cargo.toml").to_str().unwrap()))
        .flat_map(|p| p["targets"].as_array().expect("targets").clone())
        .filter(|t| t["kind"].as_array().is_some_and(|k| k.iter().any(|k| k == "bin")))
        .map(|t| t["name"].as_str().expect("target name").to_string())
        .collect();
    let mut words = cargo[2..].iter();
    while let Some(word) = words.next() {
        match word.as_str() {
            "--release" => {}
            "--locked" => {}
            "--bin" => {
                let bin = words.next().expect("--bin NAME");
                assert!(
                    root_bins.contains(bin),
                    "--bin {bin}: not a binary of the package ({root_bins:?})"
                );
                assert!(
                    ci.contains(&"--bins"),
                    "scripts/test.sh does not build --bins: {ci:?}"
                );
            }
            other => panic!(
                "the Dockerfile's cargo build passes {other}, which scripts/test.sh's build does not cover"
            ),
        }
    }

    // The runtime stage takes the binary from where the build stage put it.
    let installed = commands
        .iter()
        .find(|c| c[0] == "install")
        .and_then(|c| c.last())
        .expect("the build stage installs the binary");
    let runtime = dockerfile_stage(1);
    let (_, copy) = runtime
        .iter()
        .find(|(op, args)| op == "COPY" && args.starts_with("--from=build "))
        .expect("the runtime stage copies from the build stage");
    assert_eq!(copy.split_whitespace().nth(1), Some(installed.as_str()), "{copy}");
}

#[test]
fn the_image_the_dockerfile_builds_is_the_one_the_chart_and_daemonset_run() {
    let version = env!("CARGO_PKG_VERSION");
    let chart_yaml: Json = serde_json::to_value(
        serde_yaml_ng::from_str::<serde_yaml_ng::Value>(
            &std::fs::read_to_string(chart().join("Chart.yaml")).expect("Chart.yaml"),
        )
        .expect("Chart.yaml YAML"),
    )
    .unwrap();
    assert_eq!(
        chart_yaml["appVersion"], version,
        "the chart's appVersion is Cargo.toml's version"
    );
    let values: Json = serde_json::to_value(
        serde_yaml_ng::from_str::<serde_yaml_ng::Value>(
            &std::fs::read_to_string(chart().join("values.yaml")).expect("values.yaml"),
        )
        .expect("values.yaml YAML"),
    )
    .unwrap();
    let tag = match values["image"]["tag"].as_str() {
        Some("") | None => version,
        Some(tag) => tag,
    };
    let image = format!(
        "{}:{tag}",
        values["image"]["repository"].as_str().expect("image.repository")
    );
    assert_eq!(image, format!("mig-exporter:{version}"));

    let ds = documents("daemonset.yaml").remove(0);
    let pod = &ds["spec"]["template"]["spec"];
    for list in ["initContainers", "containers"] {
        for container in pod[list].as_array().into_iter().flatten() {
            assert_eq!(
                container["image"],
                image.as_str(),
                "deploy/daemonset.yaml {}",
                container["name"]
            );
        }
    }

    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).expect("Dockerfile");
    let built: Vec<&str> = dockerfile
        .lines()
        .filter_map(|l| l.trim_start_matches('#').trim().strip_prefix("docker build -t "))
        .filter_map(|rest| rest.split_whitespace().next())
        .collect();
    assert_eq!(
        built,
        [image.as_str()],
        "the Dockerfile's `docker build -t` tags the image the chart runs"
    );
}

// Issue 17: the default install on a GPU-operator cluster.

/// The dashboards of `dashboards/`, by file name, as they are.
fn dashboard_files() -> BTreeMap<String, String> {
    let dir = root().join("dashboards");
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).expect("dashboards/") {
        let path = entry.expect("dashboards/ entry").path();
        if path.extension().is_some_and(|e| e == "json") {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            files.insert(name, std::fs::read_to_string(&path).expect("dashboard"));
        }
    }
    assert_eq!(files.len(), 3, "{files:?}");
    files
}

const DASHBOARDS_HEADER: &str = "# Generated from dashboards/*.json: do not edit; run\n\
# `UPDATE_DEPLOY=1 cargo test --test deploy` after changing the dashboards.\n\
# One ConfigMap per dashboard, labelled for Grafana's dashboard sidecar as\n\
# kube-prometheus-stack configures it (its values.yaml: grafana.sidecar.dashboards,\n\
# label grafana_dashboard, labelValue \"1\", searchNamespace ALL).\n";

#[test]
fn the_dashboards_ship_as_configmaps_for_grafanas_sidecar() {
    let files = dashboard_files();
    let expected: Vec<Json> = files
        .iter()
        .map(|(file, text)| {
            serde_json::json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": format!("mig-exporter-dashboard-{}", file.trim_end_matches(".json")),
                    "namespace": "mig-exporter",
                    "labels": {
                        "app.kubernetes.io/name": "mig-exporter",
                        "app.kubernetes.io/instance": "mig-exporter",
                        "grafana_dashboard": "1",
                    },
                },
                "data": {file.as_str(): text},
            })
        })
        .collect();
    let path = deploy().join("grafana-dashboards.yaml");
    let chart_dir = chart().join("files/dashboards");
    if std::env::var_os("UPDATE_DEPLOY").is_some() {
        let mut text = DASHBOARDS_HEADER.to_string();
        for doc in &expected {
            text.push_str("---\n");
            text.push_str(&serde_yaml_ng::to_string(doc).expect("YAML"));
        }
        std::fs::write(&path, text).expect("write");
        std::fs::create_dir_all(&chart_dir).expect("chart files/dashboards");
        for (file, text) in &files {
            std::fs::write(chart_dir.join(file), text).expect("write");
        }
    }
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        text.starts_with(DASHBOARDS_HEADER) && documents("grafana-dashboards.yaml") == expected,
        "deploy/grafana-dashboards.yaml differs from dashboards/: run UPDATE_DEPLOY=1 cargo test --test deploy"
    );
    for (file, text) in &files {
        let copy = std::fs::read_to_string(chart_dir.join(file)).unwrap_or_default();
        assert!(
            &copy == text,
            "the chart's files/dashboards/{file} differs from dashboards/: run UPDATE_DEPLOY=1 cargo test --test deploy"
        );
    }
    // The chart renders the same, byte for byte (the plain manifests equal it,
    // see the_chart_with_default_values_renders_the_plain_manifests).
    let docs = render(None).unwrap_or_else(|e| panic!("{e}"));
    let rendered: BTreeMap<String, String> = docs
        .iter()
        .filter(|d| d["kind"] == "ConfigMap" && d["metadata"]["labels"]["grafana_dashboard"] == "1")
        .flat_map(|d| d["data"].as_object().unwrap().clone())
        .map(|(k, v)| (k, v.as_str().unwrap().to_string()))
        .collect();
    assert_eq!(rendered, files);
}

/// The Pod Security Standards level a pod spec needs, by the two baseline
/// checks the exporter's pod could fail (kubernetes/kubernetes
/// staging/src/k8s.io/pod-security-admission/policy/check_hostPathVolumes.go:
/// no hostPath volume; check_capabilities_baseline.go: only these
/// capabilities may be added). Anything failing baseline needs privileged.
fn pod_security_level(pod: &Json) -> &'static str {
    const BASELINE_CAPABILITIES: [&str; 13] = [
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    ];
    let host_path = pod["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|v| v.get("hostPath").is_some());
    let capability_beyond_baseline = ["containers", "initContainers"]
        .iter()
        .filter_map(|list| pod[list].as_array())
        .flatten()
        .filter_map(|c| c["securityContext"]["capabilities"]["add"].as_array())
        .flatten()
        .any(|cap| !BASELINE_CAPABILITIES.contains(&cap.as_str().unwrap_or_default()));
    if host_path || capability_beyond_baseline {
        "privileged"
    } else {
        "baseline"
    }
}

#[test]
fn the_namespace_allows_the_pod_security_level_the_pod_needs() {
    let ds = documents("daemonset.yaml").remove(0);
    let needed = pod_security_level(&ds["spec"]["template"]["spec"]);
    assert_eq!(needed, "privileged", "hostPath volumes and SYS_ADMIN");
    let namespace = documents("namespace.yaml").remove(0);
    for mode in ["enforce", "audit", "warn"] {
        assert_eq!(
            namespace["metadata"]["labels"][format!("pod-security.kubernetes.io/{mode}")],
            needed,
            "{mode}"
        );
    }
    // Helm cannot label the namespace it installs into: the README's install
    // labels it first, and the chart's notes say so.
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    assert!(
        readme.contains("kubectl label namespace mig-exporter pod-security.kubernetes.io/enforce=privileged"),
        "the README's Helm install labels the namespace"
    );
    let notes = std::fs::read_to_string(chart().join("templates/NOTES.txt")).expect("NOTES.txt");
    assert!(
        notes.contains("pod-security.kubernetes.io/enforce=privileged"),
        "{notes}"
    );
    // Without the kubelet source there is still the state directory's hostPath.
    let docs = render(Some(SWITCHED_OFF)).unwrap_or_else(|e| panic!("{e}"));
    let pod = &find(&docs, "DaemonSet").unwrap()["spec"]["template"]["spec"];
    assert_eq!(pod_security_level(pod), "privileged");
}

#[test]
fn the_network_policy_admits_the_scrape_port_only() {
    let policies = [
        documents("networkpolicy.yaml").remove(0),
        find(&render(None).unwrap_or_else(|e| panic!("{e}")), "NetworkPolicy")
            .expect("on by default")
            .clone(),
    ];
    let ds = documents("daemonset.yaml").remove(0);
    let pod = &ds["spec"]["template"];
    for policy in &policies {
        let spec = &policy["spec"];
        assert_eq!(
            spec["podSelector"]["matchLabels"], ds["spec"]["selector"]["matchLabels"],
            "it selects the exporter's pods"
        );
        assert_eq!(
            spec["policyTypes"],
            serde_json::json!(["Ingress"]),
            "egress stays open"
        );
        assert_eq!(
            spec["ingress"],
            serde_json::json!([{"ports": [{"port": "metrics", "protocol": "TCP"}]}]),
            "one rule, the scrape port"
        );
        let ports = &container(&pod["spec"], "mig-exporter")["ports"];
        assert_eq!(ports[0]["name"], "metrics");
        let exposed: usize = pod["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["ports"].as_array().map_or(0, Vec::len))
            .sum();
        assert_eq!(exposed, 1, "no other port to admit");
    }
}

#[test]
fn the_daemonset_steps_aside_while_the_mig_manager_changes_mig() {
    // NVIDIA/mig-parted pkg/mig/reconfigure/reconfigure.go: shutdownKubernetesGPUClients
    // sets the node's nvidia.com/gpu.deploy.client to paused-for-mig-change (when
    // the node has it; NVIDIA/gpu-operator controllers/state_manager.go,
    // gpuStateLabels, sets it to "true" on GPU nodes), and
    // waitForPodsWithNodeSelector waits for every DaemonSet pod on the node whose
    // spec.nodeSelector has that key: an affinity would not be waited for.
    let key = "nvidia.com/gpu.deploy.client";
    let chart = render(None).unwrap_or_else(|e| panic!("{e}"));
    for (origin, ds) in [
        ("deploy/daemonset.yaml", documents("daemonset.yaml").remove(0)),
        ("the chart", find(&chart, "DaemonSet").unwrap().clone()),
    ] {
        let selector = ds["spec"]["template"]["spec"]["nodeSelector"]
            .as_object()
            .unwrap_or_else(|| panic!("{origin}: no nodeSelector"))
            .clone();
        assert_eq!(selector.get(key), Some(&Json::from("true")), "{origin}");
        let runs_on = |labels: &[(&str, &str)]| {
            selector
                .iter()
                .all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && Some(*lv) == v.as_str()))
        };
        let gpu_node = [("nvidia.com/gpu.present", "true"), (key, "true")];
        assert!(runs_on(&gpu_node), "{origin}: a GPU node of the GPU operator");
        let paused = [("nvidia.com/gpu.present", "true"), (key, "paused-for-mig-change")];
        assert!(!runs_on(&paused), "{origin}: gone while the MIG manager works");
    }
    let docs = render(Some("migManager:\n  pauseForMigChange: false\n")).unwrap_or_else(|e| panic!("{e}"));
    let selector = &find(&docs, "DaemonSet").unwrap()["spec"]["template"]["spec"]["nodeSelector"];
    assert_eq!(
        selector,
        &serde_json::json!({"nvidia.com/gpu.present": "true"}),
        "off: for nodes without the GPU operator's label"
    );
}

#[test]
fn a_default_install_reads_no_dcgm_and_the_operators_host_engine_when_told() {
    // NVIDIA/gpu-operator deployments/gpu-operator/values.yaml ships
    // dcgm.enabled: false, so by default there is no host engine to reach.
    for (origin, ds) in [
        ("deploy/daemonset.yaml", documents("daemonset.yaml").remove(0)),
        (
            "the chart",
            find(&render(None).unwrap_or_else(|e| panic!("{e}")), "DaemonSet")
                .unwrap()
                .clone(),
        ),
    ] {
        assert!(parse_args(&ds).serve.source.no_dcgm, "{origin}: --no-dcgm");
    }
    // The operator's standalone host engine: Service nvidia-dcgm, port 5555
    // (NVIDIA/gpu-operator assets/state-dcgm/0500_service.yaml), the name its
    // own dcgm-exporter is given (controllers/object_controls.go,
    // TransformDCGMExporter: DCGM_REMOTE_HOSTENGINE_INFO=nvidia-dcgm:5555).
    let docs = render(Some("dcgm:\n  enabled: true\n")).unwrap_or_else(|e| panic!("{e}"));
    let cli = parse_args(find(&docs, "DaemonSet").unwrap());
    assert!(!cli.serve.source.no_dcgm);
    assert_eq!(
        cli.serve.source.dcgm_address.to_string(),
        "nvidia-dcgm.gpu-operator.svc:5555"
    );
    let docs = render(Some(
        "dcgm:\n  enabled: true\n  operatorNamespace: nvidia-gpu-operator\n",
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let cli = parse_args(find(&docs, "DaemonSet").unwrap());
    assert_eq!(
        cli.serve.source.dcgm_address.to_string(),
        "nvidia-dcgm.nvidia-gpu-operator.svc:5555"
    );
}

#[test]
fn the_exporter_listens_on_both_address_families_for_ipv6_only_clusters() {
    let chart = render(None).unwrap_or_else(|e| panic!("{e}"));
    for (origin, ds) in [
        ("deploy/daemonset.yaml", documents("daemonset.yaml").remove(0)),
        ("the chart", find(&chart, "DaemonSet").unwrap().clone()),
    ] {
        let cli = parse_args(&ds);
        let listen = &cli.serve.listen_address;
        assert_eq!(listen.len(), 1, "{origin}");
        assert!(
            listen[0].is_every_address(),
            "{origin}: {} would not take the pod's IPv6 address",
            listen[0]
        );
        assert_eq!(listen[0].port(), 10110, "{origin}");
    }
}
