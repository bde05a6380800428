//! The desired config as the NVIDIA GPU operator's MIG manager reads it, read
//! from the Kubernetes API with no helper script: the config this node's
//! `nvidia.com/mig.config` label names, in the operator's mig-parted
//! ConfigMap.
//!
//! What the MIG manager applies, and so what is read here:
//!
//! * the config name: the node's `nvidia.com/mig.config` label; absent or
//!   empty, nothing is applied (NVIDIA/mig-parted cmd/nvidia-mig-manager/main.go,
//!   MigConfigLabel, and SyncableMigConfig.Set, which wakes the manager only
//!   for a non-empty value). The operator sets it to `all-disabled` on
//!   MIG-capable nodes that have none (NVIDIA/gpu-operator
//!   controllers/nodelabeling_controller.go, migConfigDefault).
//! * the configs: key `config.yaml` (NVIDIA/gpu-operator
//!   assets/state-mig-manager/0400_configmap.yaml) of, in order:
//!   - the ConfigMap `migManager.config.name` names, when the operator is
//!     given one (NVIDIA/gpu-operator controllers/object_controls.go,
//!     TransformMIGManager, CONFIG_FILE);
//!   - otherwise, from GPU operator 26.3 (mig-manager 0.14), the config the
//!     MIG manager generated from the node's own GPUs, which it publishes as
//!     ConfigMap `<node>-mig-config` in its namespace (NVIDIA/mig-parted
//!     cmd/nvidia-mig-manager/main.go, setupMigConfig and createNodeConfigMap);
//!   - when generation finds no profiles, and before 26.3 always,
//!     `default-mig-parted-config` (NVIDIA/gpu-operator
//!     controllers/object_controls.go, MigPartedDefaultConfigMapName, mounted
//!     as DEFAULT_CONFIG_FILE from 26.3 on).
//!
//!   So the ConfigMaps are tried in the order given, and the first that
//!   exists is used; `{node}` in a name is this node's name. A ConfigMap the
//!   exporter may not read (403) is an error, never skipped: skipping it could
//!   silently judge the node by another config.
//!
//! Only `get` of the Node and of each ConfigMap, never `list` or `watch`.
//! The API is read every `interval` (30 s by default), not on every poll:
//! between reads the config in force stays as the last read resolved it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::desired::{DesiredError, MIG_CONFIG_LABEL};
use crate::kube::{is_object_name, Client, KubeError};

/// The GPU operator's namespace in its own install instructions.
pub const DEFAULT_NAMESPACE: &str = "gpu-operator";
/// The key of the mig-parted config in the operator's ConfigMaps.
pub const DEFAULT_KEY: &str = "config.yaml";
/// The MIG manager's generated config, then the operator's default one.
pub const DEFAULT_CONFIG_MAPS: [&str; 2] = ["{node}-mig-config", "default-mig-parted-config"];
/// Stands for the node's name in a ConfigMap name.
pub const NODE_PLACEHOLDER: &str = "{node}";

/// Where in the API the desired config is.
#[derive(Debug, Clone)]
pub struct KubernetesSettings {
    pub node: String,
    pub namespace: String,
    /// Tried in order; `{node}` is replaced with the node's name.
    pub config_maps: Vec<String>,
    pub key: String,
    pub interval: Duration,
}

/// What one read found: the label's config name and the text of the
/// ConfigMap that holds the configs.
#[derive(Debug, Clone, PartialEq)]
pub struct Fetched {
    pub name: String,
    /// `ConfigMap NAMESPACE/NAME key KEY`, naming the text in messages.
    pub origin: PathBuf,
    pub text: String,
}

#[derive(Debug)]
pub struct KubernetesOrigin {
    client: Client,
    node: String,
    namespace: String,
    config_maps: Vec<String>,
    key: String,
    interval: Duration,
    last_read: Option<Instant>,
}

impl KubernetesOrigin {
    /// Checks the names (they become API paths) and fills in `{node}`.
    pub fn new(client: Client, settings: KubernetesSettings) -> Result<KubernetesOrigin, String> {
        let KubernetesSettings {
            node,
            namespace,
            config_maps,
            key,
            interval,
        } = settings;
        let check = |what: &str, name: &str| {
            if is_object_name(name) {
                Ok(())
            } else {
                Err(format!(
                    "{what} '{name}' is not a Kubernetes object name (lowercase letters, digits, '-' and '.')"
                ))
            }
        };
        check("node name", &node)?;
        check("namespace", &namespace)?;
        if config_maps.is_empty() {
            return Err("no ConfigMap to read the mig-parted configs from".into());
        }
        let config_maps: Vec<String> = config_maps
            .iter()
            .map(|name| name.replace(NODE_PLACEHOLDER, &node))
            .collect();
        for name in &config_maps {
            check("ConfigMap name", name)?;
        }
        // A ConfigMap key (kubernetes .../util/validation/validation.go, IsConfigMapKey).
        if key.is_empty()
            || !key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
        {
            return Err(format!(
                "ConfigMap key '{key}' is not one (letters, digits, '-', '_' and '.')"
            ));
        }
        Ok(KubernetesOrigin {
            client,
            node,
            namespace,
            config_maps,
            key,
            interval,
            last_read: None,
        })
    }

    /// For the log: where the config is read from.
    pub fn describe(&self) -> String {
        format!(
            "label {MIG_CONFIG_LABEL} of node {} and key {} of ConfigMap {} in namespace {}, from {} every {:?}",
            self.node,
            self.key,
            self.config_maps.join(" or "),
            self.namespace,
            self.client.server().url(),
            self.interval
        )
    }

    /// Whether a read is due at `now`; if so, it counts as made.
    pub fn due(&mut self, now: Instant) -> bool {
        let due = self
            .last_read
            .is_none_or(|at| now.duration_since(at) >= self.interval);
        if due {
            self.last_read = Some(now);
        }
        due
    }

    /// Reads the label and, when it names a config, the ConfigMap.
    /// `None`: the node has no (or an empty) `nvidia.com/mig.config` label.
    pub fn fetch(&self) -> Result<Option<Fetched>, DesiredError> {
        self.client.run(self.read())
    }

    async fn read(&self) -> Result<Option<Fetched>, DesiredError> {
        let node_path = format!("/api/v1/nodes/{}", self.node);
        let node = self
            .client
            .get(&node_path)
            .await
            .map_err(|cause| self.failed(format!("node {}", self.node), cause))?;
        let Some(name) = config_label(&node).map_err(|problem| DesiredError::KubernetesAnswer {
            what: format!("node {}", self.node),
            problem,
        })?
        else {
            return Ok(None);
        };
        for config_map in &self.config_maps {
            let path = format!("/api/v1/namespaces/{}/configmaps/{config_map}", self.namespace);
            let object = match self.client.get(&path).await {
                Ok(object) => object,
                Err(e) if e.is_not_found() => continue,
                Err(cause) => return Err(self.failed(self.config_map(config_map), cause)),
            };
            let text = data(&object, &self.key).map_err(|problem| DesiredError::KubernetesAnswer {
                what: self.config_map(config_map),
                problem,
            })?;
            return Ok(Some(Fetched {
                name,
                origin: PathBuf::from(format!("{} key {}", self.config_map(config_map), self.key)),
                text,
            }));
        }
        Err(DesiredError::NoConfigMap {
            node: self.node.clone(),
            name,
            tried: self.config_maps.iter().map(|c| self.config_map(c)).collect(),
        })
    }

    fn config_map(&self, name: &str) -> String {
        format!("ConfigMap {}/{name}", self.namespace)
    }

    fn failed(&self, what: String, cause: KubeError) -> DesiredError {
        DesiredError::Kubernetes { what, cause }
    }
}

/// The node's `nvidia.com/mig.config` label; `None` when absent or empty.
fn config_label(node: &Value) -> Result<Option<String>, String> {
    if node
        .get("kind")
        .and_then(Value::as_str)
        .is_some_and(|k| k != "Node")
    {
        return Err(format!("the answer is a {}, not a Node", node["kind"]));
    }
    let metadata = node
        .get("metadata")
        .and_then(Value::as_object)
        .ok_or("the answer has no metadata (not a Node?)")?;
    let label = match metadata.get("labels") {
        None | Some(Value::Null) => None,
        Some(Value::Object(labels)) => labels.get(MIG_CONFIG_LABEL),
        Some(_) => return Err("metadata.labels is not a map".into()),
    };
    match label {
        None => Ok(None),
        Some(Value::String(v)) if v.trim().is_empty() => Ok(None),
        Some(Value::String(v)) => Ok(Some(v.trim().to_string())),
        Some(other) => Err(format!("label {MIG_CONFIG_LABEL} is not a string: {other}")),
    }
}

/// `data[key]` of a ConfigMap.
fn data(config_map: &Value, key: &str) -> Result<String, String> {
    let data = match config_map.get("data") {
        None | Some(Value::Null) => serde_json::Map::new(),
        Some(Value::Object(data)) => data.clone(),
        Some(_) => return Err("data is not a map".into()),
    };
    match data.get(key) {
        Some(Value::String(text)) => Ok(text.clone()),
        Some(_) => Err(format!("data.{key} is not a string")),
        None => {
            let keys: Vec<&str> = data.keys().map(String::as_str).collect();
            Err(format!(
                "no key '{key}' (keys: {})",
                if keys.is_empty() {
                    "none".to_string()
                } else {
                    keys.join(", ")
                }
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_label_is_read_off_the_node_and_absent_or_empty_selects_nothing() {
        let node = |labels: Value| json!({"kind": "Node", "metadata": {"name": "n", "labels": labels}});
        assert_eq!(
            config_label(&node(json!({MIG_CONFIG_LABEL: "all-1g.10gb", "other": "x"}))).unwrap(),
            Some("all-1g.10gb".into())
        );
        assert_eq!(config_label(&node(json!({"other": "x"}))).unwrap(), None);
        assert_eq!(config_label(&node(json!({MIG_CONFIG_LABEL: ""}))).unwrap(), None);
        assert_eq!(
            config_label(&json!({"kind": "Node", "metadata": {"name": "n"}})).unwrap(),
            None
        );
        let e = config_label(&json!({"kind": "Status", "metadata": {}})).unwrap_err();
        assert!(e.contains("not a Node"), "{e}");
        assert!(config_label(&json!({"kind": "Node"}))
            .unwrap_err()
            .contains("no metadata"));
    }

    #[test]
    fn the_config_map_key_is_read_and_a_missing_one_names_the_keys_there() {
        let cm = json!({"kind": "ConfigMap", "data": {"config.yaml": "version: v1\n", "other.yaml": ""}});
        assert_eq!(data(&cm, "config.yaml").unwrap(), "version: v1\n");
        assert_eq!(
            data(&cm, "mig.yaml").unwrap_err(),
            "no key 'mig.yaml' (keys: config.yaml, other.yaml)"
        );
        assert_eq!(
            data(&json!({"kind": "ConfigMap"}), "config.yaml").unwrap_err(),
            "no key 'config.yaml' (keys: none)"
        );
    }

    fn settings(node: &str, config_maps: &[&str], key: &str) -> KubernetesSettings {
        KubernetesSettings {
            node: node.into(),
            namespace: DEFAULT_NAMESPACE.into(),
            config_maps: config_maps.iter().map(|s| s.to_string()).collect(),
            key: key.into(),
            interval: Duration::from_secs(30),
        }
    }

    fn client() -> Client {
        let server = crate::kube::ApiServer::parse("https://127.0.0.1:1").unwrap();
        Client::new(server, "token".into(), "ca.crt".into(), Duration::from_secs(1)).unwrap()
    }

    #[test]
    fn names_become_api_paths_only_when_they_are_object_names() {
        let origin =
            KubernetesOrigin::new(client(), settings("gpu-1", &DEFAULT_CONFIG_MAPS, DEFAULT_KEY)).unwrap();
        assert_eq!(
            origin.config_maps,
            ["gpu-1-mig-config", "default-mig-parted-config"]
        );
        for (settings, problem) in [
            (
                settings("../x", &DEFAULT_CONFIG_MAPS, DEFAULT_KEY),
                "node name '../x'",
            ),
            (settings("gpu-1", &["a/b"], DEFAULT_KEY), "ConfigMap name 'a/b'"),
            (settings("gpu-1", &[], DEFAULT_KEY), "no ConfigMap"),
            (settings("gpu-1", &["c"], "a/b"), "ConfigMap key 'a/b'"),
        ] {
            let e = KubernetesOrigin::new(client(), settings).unwrap_err();
            assert!(e.contains(problem), "{e}");
        }
    }

    #[test]
    fn reads_are_due_once_per_interval() {
        let mut origin = KubernetesOrigin::new(client(), settings("n", &["c"], "k")).unwrap();
        let start = Instant::now();
        assert!(origin.due(start));
        assert!(!origin.due(start + Duration::from_secs(29)));
        assert!(origin.due(start + Duration::from_secs(30)));
        assert!(!origin.due(start + Duration::from_secs(31)));
    }
}
