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

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use mig_model::locate::{Step, Walk};
use mig_model::ProfileName;
use serde::de::DeserializeSeed;
use serde_yaml_ng::{Mapping, Value};

use super::detect::{describe_counts, Geometry};
use super::from_kubernetes::KubernetesOrigin;
use crate::model::{GpuSnapshot, ProfileCapacity};

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

/// A parsed mig-parted config file: config name → its entries.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub configs: BTreeMap<String, Vec<Entry>>,
}

/// One entry of a config: which GPUs it selects and what they should be.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// PCI device ids; empty selects every product.
    pub device_filter: Vec<DeviceId>,
    pub devices: Devices,
    pub mig_enabled: bool,
    /// Profile → count, in file order; zero counts kept as written.
    pub mig_devices: Vec<(ProfileName, u32)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Devices {
    All,
    Indexes(Vec<u32>),
}

/// A PCI device id as mig-parted writes it: `0x233010DE` (device 0x2330,
/// vendor 0x10DE), optionally `:0x<subsystem device><subsystem vendor>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceId {
    pub device: u16,
    pub vendor: u16,
    pub subsystem: Option<u32>,
}

impl DeviceId {
    pub fn packed(self) -> u32 {
        (u32::from(self.device) << 16) | u32::from(self.vendor)
    }

    /// Matches on device and vendor. The subsystem part, when given, is not
    /// compared: the snapshot does not carry the subsystem id.
    pub fn matches(self, packed: u32) -> bool {
        self.packed() == packed
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:04X}{:04X}", self.device, self.vendor)?;
        if let Some(sub) = self.subsystem {
            write!(f, ":0x{sub:08X}")?;
        }
        Ok(())
    }
}

impl Entry {
    /// `entry 1 (devices: [0, 1], device-filter: 0x233010DE)`, for messages.
    pub fn describe(&self, index: usize) -> String {
        let devices = match &self.devices {
            Devices::All => "all".to_string(),
            Devices::Indexes(list) => format!(
                "[{}]",
                list.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
            ),
        };
        let mut s = format!("entry {index} (devices: {devices}");
        if !self.device_filter.is_empty() {
            let ids: Vec<String> = self.device_filter.iter().map(DeviceId::to_string).collect();
            s.push_str(&format!(", device-filter: {}", ids.join(", ")));
        }
        s.push(')');
        s
    }

    /// Whether this entry selects the GPU at `index` with PCI device id `device_id`.
    pub fn selects(&self, index: u32, device_id: Option<u32>) -> bool {
        let filtered_in = self.device_filter.is_empty()
            || device_id.is_some_and(|id| self.device_filter.iter().any(|f| f.matches(id)));
        filtered_in
            && match &self.devices {
                Devices::All => true,
                Devices::Indexes(list) => list.contains(&index),
            }
    }
}

/// Parses a mig-parted config file's text; `path` only names it in errors.
pub fn parse(text: &str, path: &Path) -> Result<Spec, DesiredError> {
    let doc: Value = serde_yaml_ng::from_str(text).map_err(|cause| DesiredError::Yaml {
        path: path.to_path_buf(),
        cause,
    })?;
    let err = |at: &[Step], problem: String| DesiredError::Spec {
        path: path.to_path_buf(),
        location: locate(text, at),
        problem,
    };
    let top = match doc {
        Value::Mapping(m) => m,
        Value::Null => Mapping::new(),
        other => {
            return Err(err(
                &[],
                format!(
                    "expected a mapping with 'version' and 'mig-configs', found {}",
                    kind(&other)
                ),
            ))
        }
    };
    let mut version = None;
    let mut configs = None;
    for (key, value) in &top {
        match key_str(key).map_err(|p| err(&[], p))? {
            "version" => version = Some(value),
            "mig-configs" => configs = Some(value),
            other => {
                return Err(err(
                    &[Step::Key(other.into())],
                    format!("unexpected field '{other}'"),
                ))
            }
        }
    }
    let version_at = [Step::value("version")];
    match version {
        None => {
            return Err(err(
                &[],
                "missing required field 'version' (expected 'version: v1')".into(),
            ))
        }
        Some(Value::String(v)) if v == "v1" => {}
        Some(Value::String(v)) => {
            return Err(err(
                &version_at,
                format!("unknown version '{v}' (this exporter reads version v1)"),
            ))
        }
        Some(other) => {
            return Err(err(
                &version_at,
                format!("'version' must be the string v1, found {}", kind(other)),
            ))
        }
    }
    let configs_at = [Step::value("mig-configs")];
    let configs = match configs {
        Some(Value::Mapping(m)) if !m.is_empty() => m,
        Some(Value::Mapping(_)) | Some(Value::Null) => {
            return Err(err(
                &configs_at,
                "at least one entry in 'mig-configs' is required".into(),
            ))
        }
        None => return Err(err(&[], "at least one entry in 'mig-configs' is required".into())),
        Some(other) => {
            return Err(err(
                &configs_at,
                format!(
                    "'mig-configs' must map config names to lists of entries, found {}",
                    kind(other)
                ),
            ))
        }
    };
    let mut out = BTreeMap::new();
    for (name, entries) in configs {
        let name = key_str(name).map_err(|p| err(&configs_at, p))?.to_string();
        let config_at = [Step::value("mig-configs"), Step::Value(name.clone())];
        let at = |steps: &[Step], problem: String| {
            let steps: Vec<Step> = config_at.iter().chain(steps).cloned().collect();
            err(&steps, format!("config '{name}': {problem}"))
        };
        let list = match entries {
            Value::Sequence(list) if !list.is_empty() => list,
            Value::Sequence(_) | Value::Null => return Err(at(&[], "at least one entry is required".into())),
            other => {
                return Err(at(
                    &[],
                    format!("expected a list of entries, found {}", kind(other)),
                ))
            }
        };
        let mut parsed = Vec::with_capacity(list.len());
        for (i, entry) in list.iter().enumerate() {
            let entry = parse_entry(entry).map_err(|(steps, problem)| {
                let steps: Vec<Step> = std::iter::once(Step::Item(i)).chain(steps).collect();
                at(&steps, format!("entry {i}: {problem}"))
            })?;
            parsed.push(entry);
        }
        out.insert(name, parsed);
    }
    Ok(Spec { configs: out })
}

/// A problem in an entry, and where in the entry it is.
type EntryProblem = (Vec<Step>, String);

fn parse_entry(value: &Value) -> Result<Entry, EntryProblem> {
    let here = |problem: String| (Vec::new(), problem);
    let Value::Mapping(map) = value else {
        return Err(here(format!("expected a mapping, found {}", kind(value))));
    };
    let mut device_filter = Vec::new();
    let mut devices = None;
    let mut mig_enabled = None;
    let mut mig_devices: Option<Vec<(ProfileName, u32)>> = None;
    for (key, value) in map {
        let field = key_str(key).map_err(here)?;
        let in_field = |problem: String| (vec![Step::value(field)], problem);
        match field {
            "device-filter" => device_filter = parse_device_filter(value).map_err(in_field)?,
            "devices" => devices = Some(parse_devices(value).map_err(in_field)?),
            "mig-enabled" => match value {
                Value::Bool(b) => mig_enabled = Some(*b),
                other => {
                    return Err(in_field(format!(
                        "'mig-enabled' must be true or false, found {}",
                        kind(other)
                    )))
                }
            },
            "mig-devices" => {
                mig_devices = parse_mig_devices(value).map_err(|(steps, problem)| {
                    (
                        std::iter::once(Step::value(field)).chain(steps).collect(),
                        problem,
                    )
                })?
            }
            other => {
                return Err((
                    vec![Step::Key(other.into())],
                    format!("unexpected field '{other}'"),
                ))
            }
        }
    }
    let devices = devices.ok_or_else(|| here("missing required field 'devices'".into()))?;
    let mig_enabled = mig_enabled.ok_or_else(|| here("missing required field 'mig-enabled'".into()))?;
    let mig_devices = match (mig_enabled, mig_devices) {
        (true, None) => {
            return Err(here(
                "missing required field 'mig-devices' when 'mig-enabled' is true".into(),
            ))
        }
        (false, Some(d)) if !d.is_empty() => {
            return Err((
                vec![Step::value("mig-devices")],
                "'mig-devices' lists MIG devices while 'mig-enabled' is false".into(),
            ))
        }
        (_, d) => d.unwrap_or_default(),
    };
    Ok(Entry {
        device_filter,
        devices,
        mig_enabled,
        mig_devices,
    })
}

fn parse_device_filter(value: &Value) -> Result<Vec<DeviceId>, String> {
    let one = |v: &Value| {
        match v {
        Value::String(s) => parse_device_id(s),
        Value::Number(n) => Err(format!(
            "device-filter {n} must be a string such as \"0x233010DE\" (quote it: unquoted, YAML reads it as a number)"
        )),
        other => Err(format!("device-filter must be a string, found {}", kind(other))),
    }
    };
    match value {
        Value::Sequence(list) => list.iter().map(one).collect(),
        v => Ok(vec![one(v)?]),
    }
}

/// `0x233010DE` or `0x233010DE:0x16CB10DE`, as mig-parted reads them
/// (hexadecimal with `0x`, otherwise decimal).
pub fn parse_device_id(s: &str) -> Result<DeviceId, String> {
    let bad = |why: &str| format!("device-filter '{s}' is not a PCI device id such as 0x233010DE ({why})");
    let number = |part: &str| -> Result<u32, String> {
        let part = part.trim();
        let parsed = match part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
            Some(hex) => u32::from_str_radix(hex, 16),
            None => part.parse::<u32>(),
        };
        parsed.map_err(|_| bad("not a 32-bit number"))
    };
    let mut parts = s.split(':');
    let primary = number(parts.next().unwrap_or_default())?;
    let subsystem = parts.next().map(number).transpose()?;
    if parts.next().is_some() {
        return Err(bad("more than one ':'"));
    }
    Ok(DeviceId {
        device: (primary >> 16) as u16,
        vendor: (primary & 0xFFFF) as u16,
        subsystem,
    })
}

fn parse_devices(value: &Value) -> Result<Devices, String> {
    match value {
        Value::String(s) if s == "all" => Ok(Devices::All),
        Value::String(s) => Err(format!(
            "invalid string for 'devices': '{s}' (expected 'all' or a list of GPU indexes)"
        )),
        Value::Sequence(list) => list
            .iter()
            .map(|v| {
                v.as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| format!("'devices' must list GPU indexes, found {}", show(v)))
            })
            .collect::<Result<Vec<u32>, String>>()
            .map(Devices::Indexes),
        other => Err(format!(
            "'devices' must be 'all' or a list of GPU indexes, found {}",
            kind(other)
        )),
    }
}

fn parse_mig_devices(value: &Value) -> Result<Option<Vec<(ProfileName, u32)>>, EntryProblem> {
    let map = match value {
        Value::Null => return Ok(None),
        Value::Mapping(m) => m,
        other => {
            return Err((
                Vec::new(),
                format!("'mig-devices' must map profiles to counts, found {}", kind(other)),
            ))
        }
    };
    let mut out: Vec<(ProfileName, u32)> = Vec::new();
    for (key, count) in map {
        let key = key_str(key).map_err(|p| (Vec::new(), p))?;
        let at_key = |problem: String| (vec![Step::Key(key.into())], problem);
        let profile = parse_profile(key).map_err(at_key)?;
        let count = count
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| {
                (
                    vec![Step::value(key)],
                    format!(
                        "mig-devices '{key}': count must be a whole number >= 0, found {}",
                        show(count)
                    ),
                )
            })?;
        if out.iter().any(|(p, _)| *p == profile) {
            return Err(at_key(format!("mig-devices lists profile '{profile}' twice")));
        }
        out.push((profile, count));
    }
    Ok(Some(out))
}

/// A GPU-instance profile name as mig-parted writes it (`1g.10gb`, `1g.10gb+me`).
fn parse_profile(key: &str) -> Result<ProfileName, String> {
    if let Some((slices, gi_profile)) = key.split_once('.') {
        if slices
            .strip_suffix('c')
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(format!(
                "mig-devices '{key}': compute-instance profiles are not supported; \
                 mig-exporter compares GPU-instance profiles such as '{gi_profile}'"
            ));
        }
    }
    key.parse::<ProfileName>()
        .map_err(|e| format!("mig-devices: {e}"))
}

fn key_str(key: &Value) -> Result<&str, String> {
    match key {
        Value::String(s) => Ok(s),
        other => Err(format!("keys must be strings, found {}", show(other))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("'{s}'"),
        Value::Bool(b) => b.to_string(),
        other => kind(other).to_string(),
    }
}

/// Line and column of the node at `steps` in `text` (see [`mig_model::locate`]).
fn locate(text: &str, steps: &[Step]) -> Option<(usize, usize)> {
    let refusal = Walk(steps)
        .deserialize(serde_yaml_ng::Deserializer::from_str(text))
        .err()?;
    refusal.location().map(|l| (l.line(), l.column()))
}

/// `, line 7 column 9` for messages, or nothing when the position is unknown.
fn at_line(location: &Option<(usize, usize)>) -> String {
    location.map_or_else(String::new, |(line, column)| {
        format!(", line {line} column {column}")
    })
}

impl Spec {
    /// The config called `name`, or the only one when no name is given (as
    /// mig-parted does).
    pub fn select<'a>(
        &'a self,
        name: Option<&str>,
        path: &Path,
    ) -> Result<(&'a str, &'a [Entry]), DesiredError> {
        let names = || self.configs.keys().cloned().collect::<Vec<_>>();
        let found = match name {
            Some(name) => self
                .configs
                .get_key_value(name)
                .ok_or_else(|| DesiredError::UnknownName {
                    path: path.to_path_buf(),
                    name: name.to_string(),
                    names: names(),
                })?,
            None if self.configs.len() == 1 => {
                self.configs.iter().next().ok_or_else(|| DesiredError::NoName {
                    path: path.to_path_buf(),
                    names: names(),
                })?
            }
            None => {
                return Err(DesiredError::NoName {
                    path: path.to_path_buf(),
                    names: names(),
                })
            }
        };
        Ok((found.0.as_str(), found.1.as_slice()))
    }
}

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

/// A config resolved against the node: what each selected GPU should be.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// `config 'NAME' in FILE`.
    pub origin: String,
    /// GPU UUID → desired geometry, for the GPUs some entry selects.
    pub gpus: BTreeMap<String, Geometry>,
}

/// Resolves the entries of config `name` (from `path`) for `gpus`, checking
/// each selected GPU can hold what the entry asks.
pub fn resolve(
    path: &Path,
    name: &str,
    entries: &[Entry],
    gpus: &[GpuSnapshot],
) -> Result<Resolved, DesiredError> {
    let mut wanted = BTreeMap::new();
    // (entry, GPU name, problem) → GPU indexes, so `devices: all` on eight
    // identical GPUs reports a problem once.
    let mut problems: BTreeMap<(usize, String, String), Vec<u32>> = BTreeMap::new();
    for gpu in gpus {
        for (i, entry) in entries.iter().enumerate() {
            if !entry.selects(gpu.index, Some(gpu.pci_device_id)) {
                continue;
            }
            match expected_for(entry, gpu) {
                Ok(geometry) => {
                    wanted.insert(gpu.uuid.clone(), geometry);
                }
                Err(problem) => problems
                    .entry((i, gpu.name.clone(), problem))
                    .or_default()
                    .push(gpu.index),
            }
        }
    }
    if !problems.is_empty() {
        return Err(DesiredError::Invalid {
            path: path.to_path_buf(),
            config: name.to_string(),
            problems: problems
                .into_iter()
                .map(|((i, gpu_name, problem), indexes)| {
                    let list: Vec<String> = indexes.iter().map(u32::to_string).collect();
                    let gpus = if indexes.len() == 1 { "GPU" } else { "GPUs" };
                    format!(
                        "{} on {gpus} {} ({gpu_name}): {problem}",
                        entries[i].describe(i),
                        list.join(", ")
                    )
                })
                .collect(),
        });
    }
    Ok(Resolved {
        origin: format!("config '{name}' in {}", path.display()),
        gpus: wanted,
    })
}

/// What `entry` wants of `gpu`, or why the GPU cannot have it.
fn expected_for(entry: &Entry, gpu: &GpuSnapshot) -> Result<Geometry, String> {
    if !entry.mig_enabled {
        return Ok(Geometry::disabled());
    }
    let wanted: Vec<(ProfileName, u32)> = entry
        .mig_devices
        .iter()
        .copied()
        .filter(|(_, n)| *n > 0)
        .collect();
    check_fits(gpu, &wanted)?;
    Ok(Geometry {
        mig_enabled: true,
        instances: wanted.iter().map(|(p, n)| (p.to_string(), *n)).collect(),
    })
}

/// Every profile is one the GPU's driver offers, and the instances can be
/// placed together: each at one of its profile's placements, none sharing a
/// memory slot, within the GPU's SM slices and each profile's instance count.
///
/// The rules are the GPU's own, as the source read them (on a real node, the
/// driver's profile and placement calls), not a compiled-in table: a GPU the
/// project has never seen, or a driver that offers fewer profiles than
/// another, is judged by what it offers.
fn check_fits(gpu: &GpuSnapshot, wanted: &[(ProfileName, u32)]) -> Result<(), String> {
    if wanted.is_empty() {
        return Ok(());
    }
    if gpu.profiles.is_empty() {
        return Err("the GPU reports no MIG profiles (not MIG-capable?)".into());
    }
    let known = || {
        let names: Vec<&str> = gpu.profiles.iter().map(|p| p.name.as_str()).collect();
        names.join(", ")
    };
    let mut list: Vec<&ProfileCapacity> = Vec::new();
    for (name, count) in wanted {
        // Driver names that do not parse as a profile name cannot be asked for.
        let profile = gpu
            .profiles
            .iter()
            .find(|p| p.name.parse::<ProfileName>().ok() == Some(*name))
            .ok_or_else(|| format!("no profile '{name}' on this GPU (known: {})", known()))?;
        if *count > profile.max_instances {
            return Err(format!(
                "{count}x {name} do not fit: at most {} fit one GPU",
                profile.max_instances
            ));
        }
        list.extend(std::iter::repeat_n(profile, *count as usize));
    }
    let compute: u32 = list.iter().map(|p| p.compute_slices).sum();
    let counts: BTreeMap<String, u32> = wanted.iter().map(|(p, n)| (p.to_string(), *n)).collect();
    if compute > gpu.compute_slices_capacity {
        return Err(format!(
            "{} need {compute} SM slices, the GPU has {}",
            describe_counts(&counts),
            gpu.compute_slices_capacity
        ));
    }
    // Largest first, then equal profiles in increasing placement order only.
    list.sort_by_key(|p| {
        (
            std::cmp::Reverse(p.memory_slices),
            std::cmp::Reverse(p.compute_slices),
            p.id,
        )
    });
    if !place(&list, 0, None) {
        return Err(format!(
            "{} cannot be placed together: their memory slices overlap in every placement",
            describe_counts(&counts)
        ));
    }
    Ok(())
}

/// Whether `rest` can be placed in the memory slots not in `used`; `after` is
/// the start of the last instance placed when it has the profile of
/// `rest[0]`, since instances of one profile are interchangeable and are
/// placed left to right.
fn place(rest: &[&ProfileCapacity], used: u64, after: Option<u32>) -> bool {
    let Some((profile, tail)) = rest.split_first() else {
        return true;
    };
    for &start in &profile.placement_starts {
        if after.is_some_and(|s| start <= s) || start + profile.memory_slices > 64 {
            continue;
        }
        let slots = ((1u64 << profile.memory_slices) - 1) << start;
        if used & slots != 0 {
            continue;
        }
        let next_after = tail.first().filter(|next| next.id == profile.id).map(|_| start);
        if place(tail, used | slots, next_after) {
            return true;
        }
    }
    false
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
        self.health.poll_duration.observe(started.elapsed().as_secs_f64());
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
                self.health.up = true;
                self.health.last_error = None;
                self.health.last_success_seconds = Some(now);
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
                self.health.up = false;
                self.health.errors_total += 1;
                self.health.last_error = Some(message);
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
    use crate::source::sim::reading_from_world;
    use mig_model::{Product, World};

    const PATH: &str = "/etc/mig/config.yaml";

    fn parse_err(text: &str) -> String {
        parse(text, Path::new(PATH)).unwrap_err().to_string()
    }

    fn gpus(product: Product, n: u32) -> Vec<GpuSnapshot> {
        reading_from_world(&World::new("node", product, n)).gpus
    }

    const CONFIG: &str = r#"
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

    #[test]
    fn parses_mig_parted_configs() {
        let spec = parse(CONFIG, Path::new(PATH)).unwrap();
        assert_eq!(
            spec.configs.keys().collect::<Vec<_>>(),
            ["all-1g.10gb", "all-disabled", "mixed"]
        );
        let (name, entries) = spec.select(Some("mixed"), Path::new(PATH)).unwrap();
        assert_eq!(name, "mixed");
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0].devices, Devices::Indexes(vec![0]));
        assert_eq!(entries[0].device_filter[0].packed(), 0x2330_10DE);
        assert_eq!(entries[0].mig_devices[0], (ProfileName::new(3, 40), 2));
        assert!(entries[1].mig_enabled && entries[1].mig_devices.is_empty());
        assert_eq!(
            entries[2].describe(2),
            "entry 2 (devices: all, device-filter: 0x20B010DE)"
        );
    }

    #[test]
    fn resolves_each_gpu_to_the_last_entry_that_selects_it() {
        let spec = parse(CONFIG, Path::new(PATH)).unwrap();
        let (name, entries) = spec.select(Some("mixed"), Path::new(PATH)).unwrap();
        let node = gpus(Product::H100_80GB, 3);
        let r = resolve(Path::new(PATH), name, entries, &node).unwrap();
        assert_eq!(r.origin, "config 'mixed' in /etc/mig/config.yaml");
        assert_eq!(
            r.gpus[&node[0].uuid].instances,
            BTreeMap::from([("3g.40gb".to_string(), 2)])
        );
        assert_eq!(
            r.gpus[&node[1].uuid],
            Geometry {
                mig_enabled: true,
                instances: BTreeMap::new()
            }
        );
        assert!(!r.gpus.contains_key(&node[2].uuid), "no entry selects GPU 2");
        // On A100s the H100 entry selects nothing, and the A100 filter's
        // "devices: all" entry comes last and wins over entry 1 on GPU 1.
        let a100 = gpus(Product::A100Sxm4_40GB, 2);
        assert_eq!(Product::A100Sxm4_40GB.spec().pci_device_id, 0x20B0_10DE);
        let r = resolve(Path::new(PATH), name, entries, &a100).unwrap();
        assert_eq!(r.gpus[&a100[0].uuid], Geometry::disabled());
        assert_eq!(r.gpus[&a100[1].uuid], Geometry::disabled());
    }

    #[test]
    fn picks_the_only_config_without_a_name_and_refuses_to_guess_among_several() {
        let one = "version: v1\nmig-configs:\n  only:\n    - devices: all\n      mig-enabled: false\n";
        let spec = parse(one, Path::new(PATH)).unwrap();
        assert_eq!(spec.select(None, Path::new(PATH)).unwrap().0, "only");
        let spec = parse(CONFIG, Path::new(PATH)).unwrap();
        let e = spec.select(None, Path::new(PATH)).unwrap_err().to_string();
        assert!(
            e.contains("has 3 configs") && e.contains("--mig.config-name"),
            "{e}"
        );
    }

    #[test]
    fn unknown_config_name_names_the_file_and_the_known_configs() {
        let spec = parse(CONFIG, Path::new(PATH)).unwrap();
        let e = spec
            .select(Some("all-2g.20gb"), Path::new(PATH))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "mig config /etc/mig/config.yaml has no config 'all-2g.20gb' (known: all-1g.10gb, all-disabled, mixed)"
        );
    }

    #[test]
    fn malformed_configs_are_rejected_naming_config_and_entry() {
        let entry = |body: &str| {
            format!("version: v1\nmig-configs:\n  c1:\n    - devices: all\n      mig-enabled: false\n  c2:\n{body}")
        };
        for (text, expected) in [
            ("mig-configs: {}\n".to_string(), "missing required field 'version'"),
            ("version: v2\nmig-configs: {}\n".into(), "unknown version 'v2'"),
            ("version: v1\nmig-config: {}\n".into(), "unexpected field 'mig-config'"),
            ("version: v1\nmig-configs: {}\n".into(), "at least one entry in 'mig-configs'"),
            ("version: v1\nmig-configs:\n  c: []\n".into(), "config 'c': at least one entry"),
            (
                entry("    - devices: all\n      mig-enabled: true\n      mig-device: {}\n"),
                "config 'c2': entry 0: unexpected field 'mig-device'",
            ),
            (
                entry("    - devices: all\n      mig-enabled: true\n"),
                "config 'c2': entry 0: missing required field 'mig-devices' when 'mig-enabled' is true",
            ),
            (
                entry("    - mig-enabled: false\n"),
                "config 'c2': entry 0: missing required field 'devices'",
            ),
            (
                entry("    - devices: some\n      mig-enabled: false\n"),
                "config 'c2': entry 0: invalid string for 'devices': 'some'",
            ),
            (
                entry("    - devices: [0, -1]\n      mig-enabled: false\n"),
                "'devices' must list GPU indexes, found -1",
            ),
            (
                entry("    - devices: all\n      mig-enabled: false\n      mig-devices: {\"1g.10gb\": 1}\n"),
                "config 'c2': entry 0: 'mig-devices' lists MIG devices while 'mig-enabled' is false",
            ),
            (
                entry("    - devices: all\n      mig-enabled: yes\n      mig-devices: {}\n"),
                "'mig-enabled' must be true or false, found a string",
            ),
            (
                entry("    - device-filter: 0x233010DE\n      devices: all\n      mig-enabled: false\n"),
                "must be a string such as \"0x233010DE\" (quote it",
            ),
            (
                entry("    - device-filter: \"H100\"\n      devices: all\n      mig-enabled: false\n"),
                "device-filter 'H100' is not a PCI device id",
            ),
            (
                entry("    - devices: all\n      mig-enabled: true\n      mig-devices: {\"1g.10gb\": -1}\n"),
                "config 'c2': entry 0: mig-devices '1g.10gb': count must be a whole number >= 0, found -1",
            ),
            (
                entry("    - devices: all\n      mig-enabled: true\n      mig-devices: {\"big\": 1}\n"),
                "config 'c2': entry 0: mig-devices: 'big' is not a MIG profile name",
            ),
            (
                entry("    - devices: all\n      mig-enabled: true\n      mig-devices: {\"1c.3g.40gb\": 2}\n"),
                "compute-instance profiles are not supported; mig-exporter compares GPU-instance profiles such as '3g.40gb'",
            ),
            ("version: v1\nmig-configs: [\n".into(), "is not valid YAML"),
        ] {
            let e = parse_err(&text);
            assert!(e.contains(expected) && e.contains(PATH), "for {text:?}:\n  got {e}\n  want {expected}");
        }
    }

    #[test]
    fn config_errors_give_the_line_and_column_of_the_field() {
        let text = "\
version: v1
mig-configs:
  c1:
    - devices: all
      mig-enabled: false
  c2:
    - devices: [0]
      mig-enabled: true
      mig-devices:
        \"1g.10gb\": 2
        \"3g.40gb\": COUNT
    - devices: [1]
      mig-enabled: ENABLED
      mig-devices: {}
";
        let config = |count: &str, enabled: &str| text.replace("COUNT", count).replace("ENABLED", enabled);
        assert!(parse(&config("1", "true"), Path::new(PATH)).is_ok());
        for (text, expected) in [
            (
                config("-1", "true"),
                ", line 11 column 20: config 'c2': entry 0: mig-devices '3g.40gb': count must be",
            ),
            (
                config("1", "yes"),
                ", line 13 column 20: config 'c2': entry 1: 'mig-enabled' must be true or false",
            ),
            (
                config("1", "true").replace("\"1g.10gb\"", "1g.10"),
                ", line 10 column 9: config 'c2': entry 0: mig-devices: '1g.10' is not a MIG profile name",
            ),
            (
                config("1", "true").replace("    - devices: [1]\n", "    - device: [1]\n"),
                ", line 12 column 7: config 'c2': entry 1: unexpected field 'device'",
            ),
            (
                config("1", "true").replace("    - devices: [0]\n      ", "    - "),
                ", line 7 column 7: config 'c2': entry 0: missing required field 'devices'",
            ),
            (
                config("1", "true").replace("v1", "v2"),
                ", line 1 column 10: unknown version 'v2'",
            ),
        ] {
            let e = parse_err(&text);
            assert!(
                e.starts_with(&format!("mig config {PATH}{expected}")),
                "for\n{text}\n  got {e}\n  want {expected}"
            );
        }
    }

    #[test]
    fn a_compute_instance_style_key_without_a_dot_is_an_error_not_a_panic() {
        // Found by the fuzz target mig_config: "1c" was sliced past its end.
        let text = "version: v1\nmig-configs:\n  c:\n    - devices: all\n      mig-enabled: true\n      mig-devices: {\"1c\": 1}\n";
        let e = parse_err(text);
        assert!(e.contains("mig-devices: '1c' is not a MIG profile name"), "{e}");
    }

    fn resolve_err(product: Product, mig_devices: &str) -> String {
        let text = format!(
            "version: v1\nmig-configs:\n  ok:\n    - devices: all\n      mig-enabled: false\n  bad:\n    - devices: [1]\n      mig-enabled: false\n    - devices: all\n      mig-enabled: true\n      mig-devices: {mig_devices}\n"
        );
        let spec = parse(&text, Path::new(PATH)).unwrap();
        let (name, entries) = spec.select(Some("bad"), Path::new(PATH)).unwrap();
        resolve(Path::new(PATH), name, entries, &gpus(product, 8))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_profile_the_gpu_does_not_have_is_named_with_file_config_entry_and_gpus() {
        let e = resolve_err(Product::H100_80GB, "{\"1g.5gb\": 7}");
        assert!(
            e.starts_with("mig config /etc/mig/config.yaml, config 'bad' does not fit this node: ")
                && e.contains("entry 1 (devices: all) on GPUs 0, 1, 2, 3, 4, 5, 6, 7 (NVIDIA H100 80GB HBM3): no profile '1g.5gb' on this GPU (known: 1g.10gb,"),
            "{e}"
        );
    }

    #[test]
    fn counts_that_cannot_fit_are_refused_by_the_placer() {
        let e = resolve_err(Product::H100_80GB, "{\"1g.10gb\": 8}");
        assert!(e.contains("8x 1g.10gb do not fit: at most 7 fit one GPU"), "{e}");
        let e = resolve_err(
            Product::H100_80GB,
            "{\"4g.40gb\": 1, \"3g.40gb\": 1, \"1g.10gb\": 1}",
        );
        assert!(e.contains("need 8 SM slices, the GPU has 7"), "{e}");
        // 4 + 3 SM slices fit the budget, but the 4g.40gb takes slots 0-3 and
        // three 1g.20gb need 2 slots each: 6 slots in the 4 left.
        let e = resolve_err(Product::H100_80GB, "{\"4g.40gb\": 1, \"1g.20gb\": 3}");
        assert!(e.contains("cannot be placed together"), "{e}");
    }

    #[test]
    fn layouts_that_fit_are_accepted_on_every_product() {
        let spec_text = "version: v1\nmig-configs:\n  c:\n    - devices: all\n      mig-enabled: true\n      mig-devices: {\"1g.10gb\": 3, \"2g.20gb\": 2}\n";
        let spec = parse(spec_text, Path::new(PATH)).unwrap();
        let (name, entries) = spec.select(None, Path::new(PATH)).unwrap();
        let node = gpus(Product::H100_80GB, 1);
        let r = resolve(Path::new(PATH), name, entries, &node).unwrap();
        assert_eq!(r.gpus[&node[0].uuid].instances.values().sum::<u32>(), 5);
        // Every product's full "all 1g" layout fits.
        for product in Product::ALL {
            let p1 = &product.spec().profiles[0];
            let text = format!(
                "version: v1\nmig-configs:\n  c:\n    - devices: all\n      mig-enabled: true\n      mig-devices: {{\"{}\": {}}}\n",
                p1.name, p1.max_instances
            );
            let spec = parse(&text, Path::new(PATH)).unwrap();
            let (name, entries) = spec.select(None, Path::new(PATH)).unwrap();
            resolve(Path::new(PATH), name, entries, &gpus(product, 1))
                .unwrap_or_else(|e| panic!("{product}: {e}"));
        }
    }

    #[test]
    fn a_gpu_is_judged_by_the_profiles_and_placements_read_off_it_not_by_a_table() {
        let mut node = gpus(Product::H100_80GB, 1);
        // H800 NVL (mig-parted's device filter 0x233A10DE): a GPU no compiled-in table describes.
        node[0].name = "NVIDIA H800 NVL (not in the tables)".into();
        node[0].pci_device_id = 0x233A_10DE;
        let check = |node: &[GpuSnapshot], devices: &str| {
            let text = format!(
                "version: v1\nmig-configs:\n  c:\n    - devices: all\n      mig-enabled: true\n      mig-devices: {devices}\n"
            );
            let spec = parse(&text, Path::new(PATH)).unwrap();
            let (name, entries) = spec.select(None, Path::new(PATH)).unwrap();
            resolve(Path::new(PATH), name, entries, node).map_err(|e| e.to_string())
        };
        assert!(check(&node, "{\"3g.40gb\": 1, \"4g.40gb\": 1}").is_ok());
        let e = check(&node, "{\"1g.5gb\": 1}").unwrap_err();
        assert!(
            e.contains("no profile '1g.5gb' on this GPU (known: 1g.10gb"),
            "{e}"
        );
        let e = check(&node, "{\"1g.10gb\": 8}").unwrap_err();
        assert!(e.contains("8x 1g.10gb do not fit: at most 7"), "{e}");
        let e = check(&node, "{\"4g.40gb\": 1, \"3g.40gb\": 1, \"2g.20gb\": 1}").unwrap_err();
        assert!(e.contains("need 9 SM slices, the GPU has 7"), "{e}");

        // The placements read off the GPU decide: a 3g.40gb that may only
        // start where the 4g.40gb must sit no longer fits beside it.
        let mut narrow = node.clone();
        for p in &mut narrow[0].profiles {
            if p.name == "3g.40gb" {
                p.placement_starts = vec![0];
            }
        }
        let e = check(&narrow, "{\"3g.40gb\": 1, \"4g.40gb\": 1}").unwrap_err();
        assert!(e.contains("cannot be placed together"), "{e}");
        // A profile the driver does not offer cannot be asked for.
        let mut fewer = node.clone();
        fewer[0].profiles.retain(|p| p.name != "1g.20gb");
        let e = check(&fewer, "{\"1g.20gb\": 1}").unwrap_err();
        assert!(e.contains("no profile '1g.20gb' on this GPU"), "{e}");

        // The device filter matches the id read off the GPU.
        let text = "version: v1\nmig-configs:\n  c:\n    - device-filter: \"0x233010DE\"\n      devices: all\n      mig-enabled: false\n";
        let spec = parse(text, Path::new(PATH)).unwrap();
        let (name, entries) = spec.select(None, Path::new(PATH)).unwrap();
        assert!(resolve(Path::new(PATH), name, entries, &node)
            .unwrap()
            .gpus
            .is_empty());
        let text = text.replace("0x233010DE", "0x233A10DE");
        let spec = parse(&text, Path::new(PATH)).unwrap();
        let (name, entries) = spec.select(None, Path::new(PATH)).unwrap();
        assert_eq!(
            resolve(Path::new(PATH), name, entries, &node).unwrap().gpus.len(),
            1
        );
    }

    #[test]
    fn device_ids_parse_as_mig_parted_writes_them() {
        let id = parse_device_id("0x233010DE").unwrap();
        assert_eq!((id.device, id.vendor, id.subsystem), (0x2330, 0x10DE, None));
        let id = parse_device_id("0x20B010DE:0x134F10DE").unwrap();
        assert_eq!(id.subsystem, Some(0x134F_10DE));
        assert!(id.matches(0x20B0_10DE));
        assert_eq!(parse_device_id("590352606").unwrap().packed(), 0x2330_10DE);
        assert!(parse_device_id("0x1:0x2:0x3").is_err());
        assert!(parse_device_id("0xZZ").is_err());
    }

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
