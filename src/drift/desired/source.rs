//! Following the desired config while the exporter runs: the file and its
//! name, or the node's label and the GPU operator's ConfigMap.

use std::path::{Path, PathBuf};

use super::{parse, resolve, DesiredError, Entry, Resolved, MIG_CONFIG_LABEL};
use crate::drift::from_kubernetes::KubernetesOrigin;
use crate::model::GpuSnapshot;

/// How the config name is chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigName {
    /// `--mig.config-name NAME`.
    Fixed(String),
    /// `--mig.config-name-file FILE`: the node's `nvidia.com/mig.config` label, re-read on every poll.
    File(PathBuf),
    /// Neither: the file's only config.
    Only,
}

/// Reads the config name from a label file. The file holds either the bare
/// value or Kubernetes downward-API label lines (`key="value"`), of which the
/// `nvidia.com/mig.config` one is taken. `None`: no config selected (the
/// label is absent or empty).
pub fn read_name_file(path: &Path) -> Result<Option<String>, DesiredError> {
    let text = std::fs::read_to_string(path).map_err(|cause| DesiredError::NameFile {
        path: path.to_path_buf(),
        cause,
    })?;
    Ok(name_from_label_text(&text))
}

pub fn name_from_label_text(text: &str) -> Option<String> {
    let labelled = text.lines().find_map(|line| {
        line.trim()
            .strip_prefix(MIG_CONFIG_LABEL)
            .and_then(|rest| rest.strip_prefix('='))
    });
    let value = match labelled {
        Some(v) => v.trim().trim_matches('"').to_string(),
        None if text.contains('=') => return None, // a labels file without the label
        None => text.trim().to_string(),
    };
    (!value.is_empty()).then_some(value)
}

/// The `source` label of the desired config's health series.
pub const SOURCE_NAME: &str = "mig_config";

/// The desired config as the exporter follows it: the file and the name are
/// read again on every poll (a ConfigMap and a label change while the
/// exporter runs), or the node's label and the GPU operator's ConfigMap are
/// read from the Kubernetes API every `--mig.config-interval`. A config that
/// stops being valid or cannot be read is reported, and the last valid one
/// stays in force, as Prometheus keeps its last good configuration.
#[derive(Debug)]
pub struct DesiredSource {
    origin: Origin,
    in_force: Option<Resolved>,
    error: Option<DesiredError>,
    health: crate::model::SourceHealth,
    logged: Option<String>,
}

/// Where the config and its name come from.
#[derive(Debug)]
enum Origin {
    File { path: PathBuf, name: ConfigName },
    Kubernetes(Box<KubernetesOrigin>),
}

/// A config selected by name, before it is resolved against the GPUs.
#[derive(Debug, Clone, PartialEq)]
pub struct Selected {
    /// Names where the text came from: the file, or the ConfigMap and key.
    pub path: PathBuf,
    pub name: String,
    pub entries: Vec<Entry>,
}

impl DesiredSource {
    pub fn new(path: PathBuf, name: ConfigName) -> DesiredSource {
        DesiredSource::with_origin(Origin::File { path, name })
    }

    /// The config the node's `nvidia.com/mig.config` label names, in the GPU
    /// operator's ConfigMap, read through the Kubernetes API.
    pub fn from_kubernetes(origin: KubernetesOrigin) -> DesiredSource {
        DesiredSource::with_origin(Origin::Kubernetes(Box::new(origin)))
    }

    fn with_origin(origin: Origin) -> DesiredSource {
        DesiredSource {
            origin,
            in_force: None,
            error: None,
            health: crate::model::SourceHealth {
                up: true,
                ..crate::model::SourceHealth::new(SOURCE_NAME)
            },
            logged: None,
        }
    }

    /// For the log: the file, or where in the Kubernetes API.
    pub fn describe(&self) -> String {
        match &self.origin {
            Origin::File { path, .. } => path.display().to_string(),
            Origin::Kubernetes(k) => k.describe(),
        }
    }

    /// Whether a config that cannot be used when the exporter starts stops
    /// it. A file is the deployer's own: a mistake in it is a deploy error,
    /// best caught at once. The GPU operator's ConfigMap and the node's label
    /// belong to others and change under a running exporter, and the API
    /// server may be briefly away: the exporter serves meanwhile and reports
    /// the problem as `mig_exporter_source_up{source="mig_config"} 0`,
    /// rather than crash-looping and losing every other metric with it.
    pub fn fatal_at_start(&self) -> bool {
        matches!(self.origin, Origin::File { .. })
    }

    /// Reads the file and the name, and selects the config: everything that
    /// can be checked before a GPU is read. `None`: no config is selected
    /// (the label file is empty, or the node has no label).
    pub fn load(&self) -> Result<Option<Selected>, DesiredError> {
        let (path, name, text) = match &self.origin {
            Origin::File { path, name } => {
                let name = match name {
                    ConfigName::Fixed(name) => Some(name.clone()),
                    ConfigName::File(file) => match read_name_file(file)? {
                        Some(name) => Some(name),
                        None => return Ok(None),
                    },
                    ConfigName::Only => None,
                };
                let text = std::fs::read_to_string(path).map_err(|cause| DesiredError::Read {
                    path: path.clone(),
                    cause,
                })?;
                (path.clone(), name, text)
            }
            Origin::Kubernetes(k) => match k.fetch()? {
                Some(fetched) => (fetched.origin, Some(fetched.name), fetched.text),
                None => return Ok(None),
            },
        };
        let spec = parse(&text, &path)?;
        let (name, entries) = spec.select(name.as_deref(), &path)?;
        Ok(Some(Selected {
            path,
            name: name.to_string(),
            entries: entries.to_vec(),
        }))
    }

    /// Loads and resolves the config for `gpus`; returns the config in force.
    /// From the Kubernetes API only once its interval has passed: until then
    /// the config in force and the source's health stay as the last read left
    /// them.
    pub fn refresh(&mut self, gpus: &[GpuSnapshot], now: f64) -> Option<&Resolved> {
        if let Origin::Kubernetes(k) = &mut self.origin {
            if !k.due(std::time::Instant::now()) {
                return self.in_force.as_ref();
            }
        }
        let started = std::time::Instant::now();
        let result = self.load().and_then(|selected| {
            selected
                .map(|s| resolve(&s.path, &s.name, &s.entries, gpus))
                .transpose()
        });
        let elapsed = started.elapsed().as_secs_f64();
        match result {
            Ok(resolved) => {
                let origin = resolved.as_ref().map(|r| r.origin.clone());
                if self.in_force.as_ref().map(|r| &r.origin) != origin.as_ref() || self.error.is_some() {
                    match &origin {
                        Some(origin) => tracing::info!(desired = %origin, "desired MIG config in force"),
                        None => tracing::info!(
                            from = %self.describe(),
                            "no MIG config selected (the config name is empty): no desired state"
                        ),
                    }
                }
                self.in_force = resolved;
                self.error = None;
                self.health.record(elapsed, now, None);
                self.logged = None;
            }
            Err(e) => {
                let message = e.to_string();
                if self.logged.as_ref() != Some(&message) {
                    tracing::warn!(
                        error = %message,
                        in_force = self.in_force.as_ref().map_or("none", |r| r.origin.as_str()),
                        "invalid MIG config; the last valid one stays in force"
                    );
                    self.logged = Some(message.clone());
                }
                self.health.record(elapsed, now, Some(message));
                self.error = Some(e);
            }
        }
        self.in_force.as_ref()
    }

    /// Why the last read failed, if it did.
    pub fn error(&self) -> Option<&DesiredError> {
        self.error.as_ref()
    }

    pub fn health(&self) -> &crate::model::SourceHealth {
        &self.health
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_files_hold_a_bare_value_or_downward_api_lines() {
        assert_eq!(
            name_from_label_text("all-1g.10gb\n").as_deref(),
            Some("all-1g.10gb")
        );
        assert_eq!(
            name_from_label_text("app=\"exporter\"\nnvidia.com/mig.config=\"all-3g.40gb\"\n").as_deref(),
            Some("all-3g.40gb")
        );
        assert_eq!(name_from_label_text("app=\"exporter\"\n"), None);
        assert_eq!(name_from_label_text("  \n"), None);
        assert_eq!(name_from_label_text("nvidia.com/mig.config=\"\""), None);
    }
}
