//! `deploy/`: every manifest is checked against the Kubernetes API types
//! (k8s-openapi; the prometheus-operator kinds against the subset of their
//! schema used here), rejecting unknown fields, and the PrometheusRule is
//! `alerts/` wrapped. After changing the alerts:
//! `UPDATE_DEPLOY=1 cargo test --test deploy`.

mod contract;

use std::collections::BTreeMap;
use std::path::PathBuf;

use contract::root;
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
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| {
            let yaml = serde_yaml_ng::Value::deserialize(doc).unwrap_or_else(|e| panic!("{file}: {e}"));
            serde_json::to_value(yaml).unwrap_or_else(|e| panic!("{file}: {e}"))
        })
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
    honor_labels: Option<bool>,
    relabelings: Vec<Relabeling>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Relabeling {
    source_labels: Vec<String>,
    target_label: String,
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
    use k8s_openapi::api::{apps, core};
    match (doc["apiVersion"].as_str(), doc["kind"].as_str()) {
        (Some("apps/v1"), Some("DaemonSet")) => strict::<apps::v1::DaemonSet>(doc),
        (Some("v1"), Some("ServiceAccount")) => strict::<core::v1::ServiceAccount>(doc),
        (Some("v1"), Some("Service")) => strict::<core::v1::Service>(doc),
        (Some("v1"), Some("Namespace")) => strict::<core::v1::Namespace>(doc),
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
        "namespace.yaml",
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

#[test]
fn the_daemonset_mounts_the_kubelet_socket_and_state_dir_read_only_root() {
    let ds = documents("daemonset.yaml").remove(0);
    let pod = &ds["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(pod["runtimeClassName"], "nvidia");
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
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
    let args: Vec<&str> = c["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Json::as_str)
        .collect();
    assert!(
        args.contains(&"--kubelet.pod-resources-socket=/var/lib/kubelet/pod-resources/kubelet.sock"),
        "{args:?}"
    );
    assert!(
        c["resources"]["requests"]["memory"].is_string() && c["resources"]["limits"]["memory"].is_string()
    );
}

#[test]
fn the_servicemonitor_honors_labels_and_sets_node_like_the_readme() {
    let sm = documents("servicemonitor.yaml").remove(0);
    let endpoint = &sm["spec"]["endpoints"][0];
    assert_eq!(endpoint["honorLabels"], true);
    assert_eq!(
        endpoint["relabelings"][0],
        serde_json::json!({"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node"})
    );
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    assert!(
        readme.contains("- sourceLabels: [__meta_kubernetes_pod_node_name]\n        targetLabel: node"),
        "the README shows the same relabelling"
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
            "labels": {"app.kubernetes.io/name": "mig-exporter"},
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
    assert!(matches!(cli.command, Some(Command::Check(_))), "{check:?}");
    let unit = std::fs::read_to_string(deploy().join("systemd/mig-exporter-check.service")).expect("unit");
    assert!(
        unit.contains("Type=oneshot") && unit.contains("RemainAfterExit=yes"),
        "a gate that stays met"
    );
}
