//! Reading a `nvidia-mig-parted` config file into a [`Spec`], with errors
//! that give the file, config, entry, line and column.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use mig_model::locate::{Step, Walk};
use mig_model::ProfileName;
use serde::de::DeserializeSeed;
use serde_yaml_ng::{Mapping, Value};

use super::DesiredError;

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
pub(super) fn at_line(location: &Option<(usize, usize)>) -> String {
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
#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::desired::fixtures::{parse_err, CONFIG, PATH};

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
}
