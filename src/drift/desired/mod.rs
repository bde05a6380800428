//! Desired state: `nvidia-mig-parted` config files, the same files a MIG
//! manager applies, so the exporter checks what the node was asked to be.
//!
//! ```yaml
//! version: v1
//! mig-configs:
//!   all-1g.10gb:
//!     - devices: all
//!       mig-enabled: true
//!       mig-devices:
//!         "1g.10gb": 7
//!   custom:
//!     - device-filter: "0x233010DE"     # PCI device id; or a list of them
//!       devices: [0, 1]
//!       mig-enabled: true
//!       mig-devices: {"3g.40gb": 2}
//!     - devices: [2, 3]
//!       mig-enabled: false
//! ```
//!
//! Parsing follows mig-parted's own: `version: v1` is required, unknown keys
//! are rejected, `devices` and `mig-enabled` are required, `mig-devices` is
//! required when MIG is enabled and must be empty when it is not, and an entry
//! selects a GPU when its device filter (if any) matches the GPU's PCI device
//! id and `devices` is `all` or lists the GPU's index. When several entries
//! select a GPU the last one wins, as when mig-parted applies them in order.
//!
//! A selected config is then checked against each GPU's own rules, as the
//! source read them (the driver's profiles and placements under `--nvml`):
//! every profile must be one the GPU offers and the instances must fit it
//! together, tried over every placement. Every error names the file, the config
//! and the entry; those found while reading the file also the line, column and
//! field.
//!
//! [`parse`] reads the file, [`resolve`] checks a selected config against
//! the GPUs, and [`source`] follows the file (or the Kubernetes label and
//! ConfigMap) while the exporter runs.

mod parse;
mod resolve;
mod source;

use std::path::PathBuf;

pub use parse::{parse, parse_device_id, DeviceId, Devices, Entry, Spec};
pub use resolve::{resolve, Resolved};
pub use source::{name_from_label_text, read_name_file, ConfigName, DesiredSource, Selected, SOURCE_NAME};

use parse::at_line;

/// The node label the NVIDIA MIG manager applies configs from.
pub const MIG_CONFIG_LABEL: &str = "nvidia.com/mig.config";

#[derive(Debug, thiserror::Error)]
pub enum DesiredError {
    #[error("cannot read mig config {}: {cause}", path.display())]
    Read { path: PathBuf, cause: std::io::Error },
    #[error("mig config {} is not valid YAML: {cause}", path.display())]
    Yaml {
        path: PathBuf,
        cause: serde_yaml_ng::Error,
    },
    #[error("mig config {}{}: {problem}", path.display(), at_line(location))]
    Spec {
        path: PathBuf,
        /// Line and column of the field with the problem.
        location: Option<(usize, usize)>,
        problem: String,
    },
    #[error(
        "mig config {} has {} configs ({}); choose one with --mig.config-name or --mig.config-name-file",
        path.display(), names.len(), names.join(", ")
    )]
    NoName { path: PathBuf, names: Vec<String> },
    #[error("mig config {} has no config '{name}' (known: {})", path.display(), names.join(", "))]
    UnknownName {
        path: PathBuf,
        name: String,
        names: Vec<String>,
    },
    #[error("cannot read the mig config name from {}: {cause}", path.display())]
    NameFile { path: PathBuf, cause: std::io::Error },
    #[error("mig config {}, config '{config}' does not fit this node: {}", path.display(), problems.join("; "))]
    Invalid {
        path: PathBuf,
        config: String,
        problems: Vec<String>,
    },
    /// `--mig.config-from-kubernetes`: the API server could not be asked, or refused.
    #[error("cannot read {what} from the Kubernetes API: {cause}")]
    Kubernetes {
        what: String,
        cause: crate::kube::KubeError,
    },
    #[error("{what} in the Kubernetes API: {problem}")]
    KubernetesAnswer { what: String, problem: String },
    #[error(
        "node {node}'s label {MIG_CONFIG_LABEL} names config '{name}', but none of {} exists",
        tried.join(", ")
    )]
    NoConfigMap {
        node: String,
        name: String,
        tried: Vec<String>,
    },
}

impl From<crate::kube::KubeError> for DesiredError {
    fn from(cause: crate::kube::KubeError) -> Self {
        DesiredError::Kubernetes {
            what: "the MIG config".into(),
            cause,
        }
    }
}

#[cfg(test)]
mod fixtures {
    use std::path::Path;

    use mig_model::{Product, World};

    use super::parse;
    use crate::model::GpuSnapshot;
    use crate::source::sim::reading_from_world;

    pub const PATH: &str = "/etc/mig/config.yaml";

    pub fn parse_err(text: &str) -> String {
        parse(text, Path::new(PATH)).unwrap_err().to_string()
    }

    pub fn gpus(product: Product, n: u32) -> Vec<GpuSnapshot> {
        reading_from_world(&World::new("node", product, n)).gpus
    }

    pub const CONFIG: &str = r#"
version: v1
mig-configs:
  all-disabled:
    - devices: all
      mig-enabled: false
  all-1g.10gb:
    - devices: all
      mig-enabled: true
      mig-devices:
        "1g.10gb": 7
  mixed:
    - device-filter: ["0x233010DE", "0x233110DE"]
      devices: [0]
      mig-enabled: true
      mig-devices: {"3g.40gb": 2, "1g.10gb": 0}
    - devices: [1]
      mig-enabled: true
      mig-devices: {}
    - device-filter: "0x20B010DE"
      devices: all
      mig-enabled: false
"#;
}
