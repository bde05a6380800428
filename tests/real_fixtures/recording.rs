//! A recorded node (a directory `scripts/probe-gpu.sh` wrote, or an older
//! hand-made recording) read back: what `nvidia-smi` printed, parsed here
//! independently of mig-model; a World built from it for fake-nvml; and the
//! check that `mig-exporter geometry --output json --nvml` over that World
//! shows what `nvidia-smi` printed.
//!
//! The expected values come from the recorded text only, never from
//! mig-model's product tables, so a table that disagrees with a real GPU
//! fails the replay.

#![allow(dead_code)] // tests/probe.rs and tests/real_fixtures.rs each use a part

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, ensure, Context, Result};
use mig_model::{Placement, Product, World};
use serde_json::Value;

const MIB: u64 = 1024 * 1024;

/// One row of `nvidia-smi mig -lgip`, with its `-lgipp` placements and what
/// NVML added (`nvml.json`, or the pynvml lines of an older recording).
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedProfile {
    pub gpu: u32,
    pub id: u32,
    /// Without NVML's `MIG ` prefix: `1g.10gb+me`.
    pub name: String,
    pub free: u32,
    pub total: u32,
    /// The `Memory GiB` column as printed: `19.62`.
    pub memory_gib: String,
    pub sm_count: u32,
    pub decoders: u32,
    pub encoders: u32,
    pub copy_engines: u32,
    pub jpegs: u32,
    pub ofas: u32,
    /// From `-lgipp`.
    pub placement_starts: Vec<u32>,
    pub placement_size: u32,
    /// The `NVML_GPU_INSTANCE_PROFILE_*` index NVML answered this profile at.
    pub nvml_index: Option<u32>,
    /// NVML's exact `memorySizeMB`; `-lgip` prints GiB to two decimals only.
    pub memory_mib: Option<u64>,
}

impl RecordedProfile {
    /// SM slices, the `<n>g` of the name.
    pub fn compute_slices(&self) -> Result<u32> {
        self.name
            .split_once("g.")
            .and_then(|(n, _)| n.parse().ok())
            .ok_or_else(|| anyhow!("profile name '{}' has no '<n>g.'", self.name))
    }
}

/// One row of `nvidia-smi mig -lgi`.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedGi {
    pub gpu: u32,
    pub id: u32,
    pub profile_id: u32,
    pub name: String,
    pub placement: Placement,
}

/// One row of `nvidia-smi mig -lci`.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedCi {
    pub gpu: u32,
    pub gi: u32,
    pub id: u32,
    pub profile_id: u32,
    pub name: String,
    pub placement: Placement,
}

/// A GPU's identity: from `nvidia-smi -q` when it ran, else from NVML.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedGpu {
    pub index: u32,
    pub name: String,
    pub uuid: String,
    pub pci_bus_id: String,
    pub pci_device_id: Option<u32>,
    pub memory_mib: Option<u64>,
    /// Lower case, as mig-model names it: `hopper`.
    pub architecture: Option<String>,
    pub mig_current: bool,
    pub mig_pending: bool,
    /// From `nvidia-smi -L`.
    pub mig_uuids: BTreeSet<String>,
}

#[derive(Debug, Clone)]
pub struct Recording {
    pub dir: PathBuf,
    pub driver_version: String,
    pub gpus: Vec<RecordedGpu>,
    pub profiles: Vec<RecordedProfile>,
    pub gpu_instances: Vec<RecordedGi>,
    pub compute_instances: Vec<RecordedCi>,
    /// `(gpu, gi, ci)` → MIG device UUID, from NVML's MIG device handles.
    pub mig_device_uuids: BTreeMap<(u32, u32, u32), String>,
}

/// The files of a recording: those `scripts/probe-gpu.sh` writes, or, for a
/// recording made before it, `probe.txt` holding the listings together.
struct Files {
    dir: PathBuf,
    exit_codes: BTreeMap<String, i32>,
}

impl Files {
    fn open(dir: &Path) -> Result<Files> {
        let mut exit_codes = BTreeMap::new();
        let tsv = dir.join("exit-codes.tsv");
        if tsv.exists() {
            let text = std::fs::read_to_string(&tsv).with_context(|| format!("read {}", tsv.display()))?;
            for (n, line) in text.lines().enumerate().skip(1) {
                let mut fields = line.split('\t');
                let (Some(file), Some(rc)) = (fields.next(), fields.next()) else {
                    bail!(
                        "{}:{}: expected FILE<TAB>EXIT_CODE<TAB>COMMAND",
                        tsv.display(),
                        n + 1
                    );
                };
                let rc = rc
                    .parse()
                    .with_context(|| format!("{}:{}: exit code '{rc}'", tsv.display(), n + 1))?;
                exit_codes.insert(file.to_string(), rc);
            }
        }
        Ok(Files {
            dir: dir.to_path_buf(),
            exit_codes,
        })
    }

    /// A file's text when it exists and its command succeeded.
    fn text(&self, name: &str) -> Result<Option<String>> {
        let path = self.dir.join(name);
        if !path.exists() || self.exit_codes.get(name).is_some_and(|rc| *rc != 0) {
            return Ok(None);
        }
        std::fs::read_to_string(&path)
            .map(Some)
            .with_context(|| format!("read {}", path.display()))
    }

    /// A listing from its own file, or from an older recording's `probe.txt`.
    fn listing(&self, name: &str) -> Result<(String, String)> {
        if let Some(text) = self.text(name)? {
            return Ok((name.to_string(), text));
        }
        if self.exit_codes.is_empty() {
            if let Some(text) = self.text("probe.txt")? {
                return Ok(("probe.txt".to_string(), text));
            }
        }
        Ok((name.to_string(), String::new()))
    }
}

impl Recording {
    pub fn load(dir: &Path) -> Result<Recording> {
        let files = Files::open(dir)?;
        let nvml = match files.text("nvml.json")? {
            Some(text) => Some(
                serde_json::from_str::<Value>(&text)
                    .with_context(|| format!("{}: not JSON", dir.join("nvml.json").display()))?,
            ),
            None => None,
        };
        let (file, lgip) = files.listing("mig-lgip.txt")?;
        let mut profiles =
            parse_lgip(&lgip).with_context(|| format!("{}: -lgip", dir.join(&file).display()))?;
        let (file, lgipp) = files.listing("mig-lgipp.txt")?;
        let placements =
            parse_lgipp(&lgipp).with_context(|| format!("{}: -lgipp", dir.join(&file).display()))?;
        for p in &mut profiles {
            let (starts, size) = placements
                .get(&(p.gpu, p.id))
                .ok_or_else(|| anyhow!("-lgipp has no placements of GPU {} profile {}", p.gpu, p.id))?;
            p.placement_starts = starts.clone();
            p.placement_size = *size;
        }
        let nvml_profiles = match &nvml {
            Some(nvml) => nvml_profile_facts(nvml)?,
            None => legacy_nvml_profile_facts(&files.listing("probe.txt")?.1)?,
        };
        for p in &mut profiles {
            let gpu_key = if nvml.is_some() { p.gpu } else { 0 };
            if let Some((index, mib)) = nvml_profiles.get(&(gpu_key, p.id)) {
                p.nvml_index = Some(*index);
                p.memory_mib = Some(*mib);
            }
        }
        let (file, lgi) = files.listing("mig-lgi.txt")?;
        let gpu_instances =
            parse_lgi(&lgi).with_context(|| format!("{}: -lgi", dir.join(&file).display()))?;
        let (file, lci) = files.listing("mig-lci.txt")?;
        let compute_instances =
            parse_lci(&lci).with_context(|| format!("{}: -lci", dir.join(&file).display()))?;
        let (file, list) = files.listing("nvidia-smi-L.txt")?;
        let listed = parse_list(&list).with_context(|| format!("{}: -L", dir.join(&file).display()))?;

        let (gpus, driver_version) = match files.text("nvidia-smi-q.txt")? {
            Some(q) => {
                parse_q(&q, &listed).with_context(|| format!("{}", dir.join("nvidia-smi-q.txt").display()))?
            }
            None => {
                let nvml = nvml
                    .as_ref()
                    .ok_or_else(|| anyhow!("{}: neither nvidia-smi -q nor nvml.json", dir.display()))?;
                nvml_identity(nvml, &listed).context("nvml.json")?
            }
        };
        let mig_device_uuids = match &nvml {
            Some(nvml) => nvml_mig_devices(nvml).context("nvml.json: mig_devices")?,
            None => BTreeMap::new(),
        };
        Ok(Recording {
            dir: dir.to_path_buf(),
            driver_version,
            gpus,
            profiles,
            gpu_instances,
            compute_instances,
            mig_device_uuids,
        })
    }

    fn profiles_of(&self, gpu: u32) -> impl Iterator<Item = &RecordedProfile> {
        self.profiles.iter().filter(move |p| p.gpu == gpu)
    }

    /// The World this recording shows, for fake-nvml to serve. Written as a
    /// World file's JSON and read back through mig-model's own loader and
    /// validation, so it is a World any fake reads.
    pub fn world(&self) -> Result<World> {
        let mut gpus = Vec::new();
        for recorded in &self.gpus {
            let mut gpu_instances = Vec::new();
            for gi in self.gpu_instances.iter().filter(|g| g.gpu == recorded.index) {
                let mut compute_instances = Vec::new();
                for ci in self
                    .compute_instances
                    .iter()
                    .filter(|c| c.gpu == gi.gpu && c.gi == gi.id)
                {
                    let uuid = self
                        .mig_device_uuids
                        .get(&(ci.gpu, ci.gi, ci.id))
                        .ok_or_else(|| {
                            anyhow!(
                                "GPU {} GI {} CI {}: no MIG device UUID (nvml.json mig_devices ties them)",
                                ci.gpu,
                                ci.gi,
                                ci.id
                            )
                        })?;
                    compute_instances.push(serde_json::json!({
                        "id": ci.id,
                        "profile_id": ci.profile_id,
                        "placement": ci.placement,
                        "uuid": uuid,
                    }));
                }
                gpu_instances.push(serde_json::json!({
                    "id": gi.id,
                    "profile_id": gi.profile_id,
                    "placement": gi.placement,
                    "compute_instances": compute_instances,
                }));
            }
            gpus.push(serde_json::json!({
                "index": recorded.index,
                "product": self.inline_product(recorded)?,
                "uuid": recorded.uuid,
                "pci_bus_id": recorded.pci_bus_id,
                "mig": {"current": recorded.mig_current, "pending": recorded.mig_pending},
                "gpu_instances": gpu_instances,
            }));
        }
        let world = serde_json::json!({
            "format": mig_model::world::WORLD_FORMAT,
            "hostname": "replay",
            "boot_id": mig_model::world::uuid_from(&["replay", &self.dir.display().to_string()], 4),
            "driver_version": self.driver_version,
            "gpus": gpus,
        });
        let world: World = serde_json::from_value(world)
            .map_err(|e| anyhow!("the World built from {}: {e}", self.dir.display()))?;
        world
            .validate()
            .map_err(|e| anyhow!("the World built from {}: {e}", self.dir.display()))?;
        Ok(world)
    }

    /// mig-model's compiled-in product of a recorded GPU, by its recorded
    /// name and PCI device id, when there is one.
    pub fn known_product(&self, gpu: &RecordedGpu) -> Option<Product> {
        Product::ALL.into_iter().find(|p| {
            let spec = p.spec();
            spec.name == gpu.name && gpu.pci_device_id.is_none_or(|id| id == spec.pci_device_id)
        })
    }

    /// The GPU's product as mig-model's inline product table, built from the
    /// recording alone: `-q` (or NVML) for the GPU, `-lgip` and `-lgipp` for
    /// the profiles, NVML for each profile's index and exact memory. The
    /// replayed World names it rather than a compiled-in table, so what the
    /// GPU printed is the truth and GPUs without a table replay too.
    pub fn inline_product(&self, gpu: &RecordedGpu) -> Result<Value> {
        let profiles: Vec<&RecordedProfile> = self.profiles_of(gpu.index).collect();
        ensure!(!profiles.is_empty(), "GPU {}: no -lgip profiles", gpu.index);
        let mut rows = Vec::new();
        for (position, p) in profiles.iter().enumerate() {
            // Without NVML's facts: -lgip's GiB (two decimals) in MiB, and
            // the profile's position for an index, unique as NVML's are.
            let memory_mib = match p.memory_mib {
                Some(mib) => mib,
                None => {
                    let gib: f64 = p
                        .memory_gib
                        .parse()
                        .with_context(|| format!("profile {}: memory '{}'", p.id, p.memory_gib))?;
                    (gib * 1024.0).round() as u64
                }
            };
            rows.push(serde_json::json!({
                "id": p.id,
                "nvml_index": p.nvml_index.unwrap_or(position as u32),
                "name": p.name,
                "compute_slices": p.compute_slices()?,
                "memory_slices": p.placement_size,
                "sm_count": p.sm_count,
                "memory_mib": memory_mib,
                "max_instances": p.total,
                "engines": {
                    "copy": p.copy_engines,
                    "decoder": p.decoders,
                    "encoder": p.encoders,
                    "jpeg": p.jpegs,
                    "ofa": p.ofas,
                },
                "placement_starts": p.placement_starts,
            }));
        }
        let mut compute_slices = 0;
        for p in &profiles {
            compute_slices = compute_slices.max(p.compute_slices()?);
        }
        let memory_slots = profiles
            .iter()
            .flat_map(|p| p.placement_starts.iter().map(|s| s + p.placement_size))
            .max()
            .unwrap_or(0);
        let slug: String = gpu
            .name
            .to_lowercase()
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join("-");
        Ok(serde_json::json!({
            "slug": format!("recorded-{slug}"),
            "name": gpu.name,
            "architecture": gpu.architecture.clone()
                .ok_or_else(|| anyhow!("GPU {}: no architecture recorded", gpu.index))?,
            "pci_device_id": gpu.pci_device_id
                .ok_or_else(|| anyhow!("GPU {}: no PCI device id recorded", gpu.index))?,
            "memory_mib": gpu.memory_mib
                .ok_or_else(|| anyhow!("GPU {}: no memory size recorded", gpu.index))?,
            // Nothing recorded gives the whole GPU's SMs (nvmlDeviceGetAttributes
            // is NOT_SUPPORTED off MIG, nvml_mig_probe.txt): the largest
            // profile's stand in. Equal on the H100 (132); an A100's 7g has
            // 98 of 108. The geometry compared does not show it.
            "sm_count": profiles.iter().map(|p| p.sm_count).max().unwrap_or(0),
            "compute_slices": compute_slices,
            "memory_slots": memory_slots,
            "profiles": rows,
        }))
    }

    /// Checks `geometry` (the exporter's `geometry --output json`) against
    /// what `nvidia-smi` printed; every difference is listed.
    pub fn check_geometry(&self, geometry: &Value) -> Result<()> {
        let mut diff = Diff::default();
        diff.expect(
            "driver_version".into(),
            &geometry["driver_version"],
            Value::from(self.driver_version.clone()),
        );
        let shown = geometry["gpus"].as_array().cloned().unwrap_or_default();
        diff.expect(
            "GPU count".into(),
            &Value::from(shown.len()),
            Value::from(self.gpus.len()),
        );
        for recorded in &self.gpus {
            let i = recorded.index;
            let Some(gpu) = shown.iter().find(|g| g["index"] == i) else {
                diff.0.push(format!("GPU {i}: not in the exporter's output"));
                continue;
            };
            let at = |diff: &mut Diff, field: &str, expected: Value| {
                diff.expect(format!("GPU {i} {field}"), &gpu[field], expected)
            };
            at(&mut diff, "name", recorded.name.clone().into());
            at(&mut diff, "uuid", recorded.uuid.clone().into());
            at(&mut diff, "pci_bus_id", recorded.pci_bus_id.clone().into());
            at(&mut diff, "mig_current", recorded.mig_current.into());
            at(&mut diff, "mig_pending", recorded.mig_pending.into());
            if let Some(id) = recorded.pci_device_id {
                at(&mut diff, "pci_device_id", id.into());
            }
            if let Some(mib) = recorded.memory_mib {
                at(&mut diff, "memory_total_bytes", (mib * MIB).into());
            }
            let profiles: Vec<&RecordedProfile> = self.profiles_of(i).collect();
            let mut compute_capacity = 0;
            for p in &profiles {
                compute_capacity = compute_capacity.max(p.compute_slices()?);
            }
            at(&mut diff, "compute_slices_capacity", compute_capacity.into());
            at(
                &mut diff,
                "memory_slices_capacity",
                profiles
                    .iter()
                    .map(|p| p.placement_size)
                    .max()
                    .unwrap_or(0)
                    .into(),
            );
            let expected_profiles: Vec<Value> = profiles
                .iter()
                .map(|p| {
                    Ok(serde_json::json!({
                        "id": p.id,
                        "name": p.name,
                        "compute_slices": p.compute_slices()?,
                        "memory_slices": p.placement_size,
                        "placement_starts": p.placement_starts,
                        "memory_gib": p.memory_gib,
                        "sm_count": p.sm_count,
                        "max_instances": p.total,
                        "remaining_instances": p.free,
                    }))
                })
                .collect::<Result<_>>()?;
            let shown_profiles: Vec<Value> = gpu["profiles"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|p| {
                    let mut p = p.clone();
                    let bytes = p["memory_bytes"].as_u64().unwrap_or(0);
                    if let Some(map) = p.as_object_mut() {
                        map.remove("memory_bytes");
                        // `-lgip` prints GiB to two decimals, rounding as printf does.
                        map.insert(
                            "memory_gib".into(),
                            format!("{:.2}", bytes as f64 / (1024.0 * MIB as f64)).into(),
                        );
                    }
                    p
                })
                .collect();
            diff.expect_items(
                format!("GPU {i} profile (-lgip, -lgipp)"),
                &shown_profiles,
                &expected_profiles,
            );

            let gis: Vec<&RecordedGi> = self.gpu_instances.iter().filter(|g| g.gpu == i).collect();
            let mut slots = 0u64;
            let mut compute_used = 0;
            let mut expected_gis = Vec::new();
            for gi in &gis {
                slots |= ((1u64 << gi.placement.size) - 1) << gi.placement.start;
                let profile = profiles.iter().find(|p| p.id == gi.profile_id).ok_or_else(|| {
                    anyhow!("-lgi GI {} has profile {} that -lgip lacks", gi.id, gi.profile_id)
                })?;
                compute_used += profile.compute_slices()?;
                let cis: Vec<Value> = self
                    .compute_instances
                    .iter()
                    .filter(|c| c.gpu == i && c.gi == gi.id)
                    .map(|c| {
                        serde_json::json!({
                            "id": c.id,
                            "profile_id": c.profile_id,
                            "profile": c.name,
                            "placement_start": c.placement.start,
                            "placement_size": c.placement.size,
                            "mig_uuid": self.mig_device_uuids.get(&(i, gi.id, c.id)),
                        })
                    })
                    .collect();
                expected_gis.push(serde_json::json!({
                    "id": gi.id,
                    "profile_id": gi.profile_id,
                    "profile": gi.name,
                    "placement_start": gi.placement.start,
                    "placement_size": gi.placement.size,
                    "compute_slices": profile.compute_slices()?,
                    "compute_instances": sorted_by_id(cis),
                }));
            }
            at(&mut diff, "compute_slices_used", compute_used.into());
            at(&mut diff, "memory_slices_used", slots.count_ones().into());
            let shown_gis: Vec<Value> = gpu["gpu_instances"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|gi| {
                    let cis: Vec<Value> = gi["compute_instances"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                        .iter()
                        .map(|c| {
                            let mut c = pick(
                                c,
                                &[
                                    "id",
                                    "profile_id",
                                    "profile",
                                    "placement_start",
                                    "placement_size",
                                    "mig_uuid",
                                ],
                            );
                            // Without NVML's MIG device list the UUIDs are checked as a set below.
                            if self.mig_device_uuids.is_empty() {
                                c["mig_uuid"] = Value::Null;
                            }
                            c
                        })
                        .collect();
                    let mut gi = pick(
                        gi,
                        &[
                            "id",
                            "profile_id",
                            "profile",
                            "placement_start",
                            "placement_size",
                            "compute_slices",
                        ],
                    );
                    gi["compute_instances"] = sorted_by_id(cis).into();
                    gi
                })
                .collect();
            diff.expect_items(
                format!("GPU {i} GPU instance (-lgi, -lci)"),
                &sorted_by_id(shown_gis),
                &sorted_by_id(expected_gis),
            );
            let shown_uuids: BTreeSet<String> = gpu["gpu_instances"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|gi| gi["compute_instances"].as_array().cloned().unwrap_or_default())
                .filter_map(|c| c["mig_uuid"].as_str().map(str::to_string))
                .collect();
            diff.expect(
                format!("GPU {i} MIG device UUIDs (-L)"),
                &serde_json::json!(shown_uuids),
                serde_json::json!(recorded.mig_uuids),
            );
        }
        ensure!(
            diff.0.is_empty(),
            "{}: the exporter's geometry differs from the recording:\n  {}",
            self.dir.display(),
            diff.0.join("\n  ")
        );
        Ok(())
    }
}

/// Differences found, one line each.
#[derive(Default)]
struct Diff(Vec<String>);

impl Diff {
    fn expect(&mut self, what: String, actual: &Value, expected: Value) {
        if *actual != expected {
            self.0
                .push(format!("{what}: exporter {actual}, recorded {expected}"));
        }
    }

    /// Lists of objects with an `id`, in order: the ids first, then each
    /// object's fields, so a difference names the item and the field.
    fn expect_items(&mut self, what: String, actual: &[Value], expected: &[Value]) {
        let ids = |items: &[Value]| Value::from(items.iter().map(|v| v["id"].clone()).collect::<Vec<_>>());
        if ids(actual) != ids(expected) {
            self.expect(format!("{what} ids"), &ids(actual), ids(expected));
            return;
        }
        for (a, e) in actual.iter().zip(expected) {
            let keys: BTreeSet<&String> = a
                .as_object()
                .into_iter()
                .chain(e.as_object())
                .flat_map(|m| m.keys())
                .collect();
            for key in keys {
                self.expect(
                    format!("{what} {} {key}", e["id"]),
                    &a[key.as_str()],
                    e[key.as_str()].clone(),
                );
            }
        }
    }
}

fn pick(v: &Value, keys: &[&str]) -> Value {
    Value::Object(keys.iter().map(|k| (k.to_string(), v[*k].clone())).collect())
}

fn sorted_by_id(mut items: Vec<Value>) -> Vec<Value> {
    items.sort_by_key(|v| v["id"].as_u64());
    items
}

/// `mig-exporter geometry --output json --nvml` over `world`, through fake-nvml.
pub fn exporter_geometry(exporter: &Path, fake_nvml: &Path, world: &Path) -> Result<Value> {
    let out = Command::new(exporter)
        .args(["geometry", "--output", "json", "--nvml", "--nvml.library"])
        .arg(fake_nvml)
        .env(mig_model::WORLD_ENV, world)
        .output()
        .with_context(|| format!("run {}", exporter.display()))?;
    ensure!(
        out.status.success(),
        "mig-exporter geometry --nvml failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).context("geometry output is not JSON")
}

/// Replays the recording in `dir`: its World through fake-nvml and the
/// exporter, checked against the recorded text.
pub fn replay(dir: &Path, exporter: &Path, fake_nvml: &Path) -> Result<Recording> {
    let recording = Recording::load(dir)?;
    ensure!(!recording.gpus.is_empty(), "{}: no GPU recorded", dir.display());
    ensure!(
        !recording.profiles.is_empty(),
        "{}: no GPU instance profiles recorded (-lgip)",
        dir.display()
    );
    let world = recording.world()?;
    let scratch = tempfile::tempdir()?;
    let path = scratch.path().join("world.json");
    world.save(&path).map_err(|e| anyhow!("save the World: {e}"))?;
    let geometry = exporter_geometry(exporter, fake_nvml, &path)?;
    recording.check_geometry(&geometry)?;
    Ok(recording)
}

// ---- nvidia-smi text ----

/// Rows of the boxed table titled `title` (`| GPU instances: |`): each row's
/// cells split at whitespace, one entry per physical line, `None` at a rule
/// (`+---+`) so that two-line rows can be told apart.
fn table_lines<'a>(text: &'a str, title: &str) -> Vec<(usize, Option<Vec<&'a str>>)> {
    let mut lines = text.lines().enumerate();
    let mut rows = Vec::new();
    let mut in_table = false;
    let mut in_body = false;
    for (n, line) in &mut lines {
        let line = line.trim_end();
        if !in_table {
            in_table = line.starts_with('|') && line.trim_matches('|').trim() == title;
            continue;
        }
        if !in_body {
            in_body = line.starts_with("|=");
            continue;
        }
        if line.starts_with('+') {
            rows.push((n + 1, None));
        } else if line.starts_with('|') {
            rows.push((n + 1, Some(line.trim_matches('|').split_whitespace().collect())));
        } else {
            // The table ended; another table of the same title may follow
            // (one per GPU on some drivers).
            in_table = false;
            in_body = false;
        }
    }
    rows
}

fn num<T: std::str::FromStr>(cell: &str, line: usize, what: &str) -> Result<T> {
    cell.trim_end_matches('*')
        .parse()
        .map_err(|_| anyhow!("line {line}: {what} '{cell}' is not a number"))
}

fn placement(cell: &str, line: usize) -> Result<Placement> {
    let (start, size) = cell
        .split_once(':')
        .ok_or_else(|| anyhow!("line {line}: placement '{cell}' is not START:SIZE"))?;
    Ok(Placement::new(
        num(start, line, "placement start")?,
        num(size, line, "placement size")?,
    ))
}

fn profile_name(cells: &[&str], at: usize, line: usize) -> Result<String> {
    match (cells.get(at), cells.get(at + 1)) {
        (Some(&"MIG"), Some(name)) => Ok(name.to_string()),
        _ => bail!("line {line}: expected 'MIG <profile>' in {cells:?}"),
    }
}

/// `nvidia-smi mig -lgip`: two lines a profile, the second holding CE, JPEG, OFA.
pub fn parse_lgip(text: &str) -> Result<Vec<RecordedProfile>> {
    let mut profiles = Vec::new();
    let mut pending: Option<RecordedProfile> = None;
    for (line, cells) in table_lines(text, "GPU instance profiles:") {
        let Some(cells) = cells else {
            if let Some(p) = pending.take() {
                bail!("line {line}: profile {} has no engine line", p.id);
            }
            continue;
        };
        match pending.take() {
            None => {
                // GPU, MIG, name, ID, free/total, GiB, P2P, SM, DEC, ENC
                ensure!(cells.len() == 10, "line {line}: expected 10 cells, got {cells:?}");
                let (free, total) = cells[4]
                    .split_once('/')
                    .ok_or_else(|| anyhow!("line {line}: instances '{}' is not FREE/TOTAL", cells[4]))?;
                pending = Some(RecordedProfile {
                    gpu: num(cells[0], line, "GPU")?,
                    name: profile_name(&cells, 1, line)?,
                    id: num(cells[3], line, "profile ID")?,
                    free: num(free, line, "free instances")?,
                    total: num(total, line, "total instances")?,
                    memory_gib: cells[5].to_string(),
                    sm_count: num(cells[7], line, "SM")?,
                    decoders: num(cells[8], line, "DEC")?,
                    encoders: num(cells[9], line, "ENC")?,
                    copy_engines: 0,
                    jpegs: 0,
                    ofas: 0,
                    placement_starts: Vec::new(),
                    placement_size: 0,
                    nvml_index: None,
                    memory_mib: None,
                });
            }
            Some(mut p) => {
                ensure!(
                    cells.len() == 3,
                    "line {line}: expected CE JPEG OFA, got {cells:?}"
                );
                p.copy_engines = num(cells[0], line, "CE")?;
                p.jpegs = num(cells[1], line, "JPEG")?;
                p.ofas = num(cells[2], line, "OFA")?;
                profiles.push(p);
            }
        }
    }
    Ok(profiles)
}

/// Each profile's placement starts and size, by (GPU, profile id).
pub type Placements = BTreeMap<(u32, u32), (Vec<u32>, u32)>;

/// `nvidia-smi mig -lgipp`: `GPU  0 Profile ID 19 Placements: {0,1,2}:1`
/// (`Placement :` for one), keyed by (GPU, profile id).
pub fn parse_lgipp(text: &str) -> Result<Placements> {
    let mut placements = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        let Some(rest) = line.strip_prefix("GPU ") else {
            continue;
        };
        let Some((gpu, rest)) = rest.trim_start().split_once(" Profile ID ") else {
            continue;
        };
        let (id, rest) = rest
            .trim_start()
            .split_once(' ')
            .ok_or_else(|| anyhow!("line {}: no placements in '{line}'", n + 1))?;
        let set = rest
            .split_once('{')
            .and_then(|(_, s)| s.split_once("}:"))
            .ok_or_else(|| anyhow!("line {}: expected '{{STARTS}}:SIZE' in '{line}'", n + 1))?;
        let starts = set
            .0
            .split(',')
            .map(|s| num(s.trim(), n + 1, "placement start"))
            .collect::<Result<Vec<u32>>>()?;
        placements.insert(
            (num(gpu, n + 1, "GPU")?, num(id, n + 1, "profile ID")?),
            (starts, num(set.1.trim(), n + 1, "placement size")?),
        );
    }
    Ok(placements)
}

/// `nvidia-smi mig -lgi`: GPU, `MIG <name>`, profile id, GI id, start:size.
pub fn parse_lgi(text: &str) -> Result<Vec<RecordedGi>> {
    let mut gis = Vec::new();
    for (line, cells) in table_lines(text, "GPU instances:") {
        let Some(cells) = cells else { continue };
        ensure!(cells.len() == 6, "line {line}: expected 6 cells, got {cells:?}");
        gis.push(RecordedGi {
            gpu: num(cells[0], line, "GPU")?,
            name: profile_name(&cells, 1, line)?,
            profile_id: num(cells[3], line, "profile ID")?,
            id: num(cells[4], line, "GPU instance ID")?,
            placement: placement(cells[5], line)?,
        });
    }
    Ok(gis)
}

/// `nvidia-smi mig -lci`: GPU, GI id, `MIG <name>`, profile id, CI id, start:size.
pub fn parse_lci(text: &str) -> Result<Vec<RecordedCi>> {
    let mut cis = Vec::new();
    for (line, cells) in table_lines(text, "Compute instances:") {
        let Some(cells) = cells else { continue };
        ensure!(cells.len() == 7, "line {line}: expected 7 cells, got {cells:?}");
        cis.push(RecordedCi {
            gpu: num(cells[0], line, "GPU")?,
            gi: num(cells[1], line, "GPU instance ID")?,
            name: profile_name(&cells, 2, line)?,
            profile_id: num(cells[4], line, "profile ID")?,
            id: num(cells[5], line, "compute instance ID")?,
            placement: placement(cells[6], line)?,
        });
    }
    Ok(cis)
}

/// What `nvidia-smi -L` lists, by GPU index: name, UUID, MIG device UUIDs.
pub type Listed = BTreeMap<u32, (String, String, BTreeSet<String>)>;

/// `nvidia-smi -L`: `GPU 0: NAME (UUID: GPU-…)`, then its MIG devices
/// `  MIG 1g.10gb Device  0: (UUID: MIG-…)`. Index → (name, UUID, MIG UUIDs).
pub fn parse_list(text: &str) -> Result<Listed> {
    let mut gpus = Listed::new();
    let mut current = None;
    for (n, line) in text.lines().enumerate() {
        let uuid = || {
            line.rsplit_once("(UUID: ")
                .and_then(|(_, u)| u.strip_suffix(')'))
                .map(str::to_string)
                .ok_or_else(|| anyhow!("line {}: no '(UUID: …)' in '{line}'", n + 1))
        };
        if let Some(rest) = line.strip_prefix("GPU ") {
            let Some((index, rest)) = rest.split_once(": ") else {
                continue;
            };
            let Ok(index) = index.parse::<u32>() else { continue };
            let name = rest
                .rsplit_once(" (UUID: ")
                .map(|(name, _)| name.to_string())
                .ok_or_else(|| anyhow!("line {}: no '(UUID: …)' in '{line}'", n + 1))?;
            gpus.insert(index, (name, uuid()?, BTreeSet::new()));
            current = Some(index);
        } else if line.trim_start().starts_with("MIG ") && line.contains(" Device ") {
            let index = current.ok_or_else(|| anyhow!("line {}: a MIG device before any GPU", n + 1))?;
            if let Some(gpu) = gpus.get_mut(&index) {
                gpu.2.insert(uuid()?);
            }
        }
    }
    Ok(gpus)
}

/// `nvidia-smi -q`: the driver version and each GPU's identity and MIG mode.
fn parse_q(text: &str, listed: &Listed) -> Result<(Vec<RecordedGpu>, String)> {
    let field = |line: &str| {
        line.split_once(" : ")
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
    };
    let mut driver = None;
    let mut sections: Vec<Vec<(String, String)>> = Vec::new();
    let mut path: Vec<(usize, String)> = Vec::new();
    for line in text.lines() {
        if line.starts_with("GPU ") {
            sections.push(Vec::new());
            path.clear();
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        while path.last().is_some_and(|(i, _)| *i >= indent) {
            path.pop();
        }
        match (field(line), sections.last_mut()) {
            (Some((k, v)), None) if k == "Driver Version" => driver = Some(v),
            (Some((k, v)), Some(section)) => {
                let mut key: Vec<&str> = path.iter().map(|(_, p)| p.as_str()).collect();
                key.push(&k);
                section.push((key.join("/"), v));
            }
            (None, _) if !line.trim().is_empty() => path.push((indent, line.trim().to_string())),
            _ => {}
        }
    }
    let driver = driver.ok_or_else(|| anyhow!("no 'Driver Version'"))?;
    let mut gpus = Vec::new();
    for (index, section) in sections.iter().enumerate() {
        let get = |key: &str| {
            section
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                .ok_or_else(|| anyhow!("GPU {index}: no '{key}'"))
        };
        let enabled = |key: &str| -> Result<bool> {
            match get(key)?.as_str() {
                "Enabled" => Ok(true),
                "Disabled" | "N/A" => Ok(false),
                other => bail!("GPU {index}: '{key}' is '{other}'"),
            }
        };
        let uuid = get("GPU UUID")?;
        // `-q` lists GPUs by PCI bus, `-L` by index: the UUID ties them.
        let (index, mig_uuids) = listed
            .iter()
            .find(|(_, (_, u, _))| *u == uuid)
            .map(|(i, (_, _, m))| (*i, m.clone()))
            .unwrap_or((index as u32, BTreeSet::new()));
        let hex = get("PCI/Device Id")?;
        let pci_device_id = u32::from_str_radix(hex.trim_start_matches("0x"), 16)
            .with_context(|| format!("GPU {index}: PCI device id '{hex}'"))?;
        let memory = get("FB Memory Usage/Total")?;
        let memory_mib = memory
            .strip_suffix(" MiB")
            .and_then(|m| m.parse().ok())
            .ok_or_else(|| anyhow!("GPU {index}: FB memory total '{memory}'"))?;
        gpus.push(RecordedGpu {
            index,
            name: get("Product Name")?,
            uuid,
            pci_bus_id: get("PCI/Bus Id")?,
            pci_device_id: Some(pci_device_id),
            memory_mib: Some(memory_mib),
            architecture: get("Product Architecture").ok().map(|a| a.to_lowercase()),
            mig_current: enabled("MIG Mode/Current")?,
            mig_pending: enabled("MIG Mode/Pending")?,
            mig_uuids,
        });
    }
    Ok((gpus, driver))
}

// ---- NVML, as recorded by scripts/probe_nvml.py ----

/// A recorded call's value; `None` when NVML refused it.
fn value<'a>(call: &'a Value, what: &str) -> Result<Option<&'a Value>> {
    match call["rc"].as_u64() {
        Some(0) => Ok(Some(&call["value"])),
        Some(_) => Ok(None),
        None => bail!("{what}: no return code in {call}"),
    }
}

fn nvml_gpus(nvml: &Value) -> Result<&Vec<Value>> {
    nvml["gpus"].as_array().ok_or_else(|| anyhow!("no 'gpus' list"))
}

/// (GPU, profile id) → (NVML profile index, memorySizeMB).
fn nvml_profile_facts(nvml: &Value) -> Result<BTreeMap<(u32, u32), (u32, u64)>> {
    let mut facts = BTreeMap::new();
    for gpu in nvml_gpus(nvml)? {
        let index = as_u32(&gpu["index"], "gpus[].index")?;
        for p in gpu["gpu_instance_profiles"].as_array().into_iter().flatten() {
            if p["rc"] != 0 {
                continue;
            }
            let id = as_u32(&p["info"]["id"], "profile id")?;
            let mib = p["info"]["memory_mib"]
                .as_u64()
                .ok_or_else(|| anyhow!("profile {id}: no memory_mib"))?;
            facts.insert((index, id), (as_u32(&p["index"], "profile index")?, mib));
        }
    }
    Ok(facts)
}

/// The pynvml lines of an older recording's `probe.txt`:
/// `profile 0 {'id': 19, …, 'memorySizeMB': 9984, …}`. One GPU only.
fn legacy_nvml_profile_facts(text: &str) -> Result<BTreeMap<(u32, u32), (u32, u64)>> {
    let mut facts = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let Some(rest) = line.strip_prefix("profile ") else {
            continue;
        };
        let Some((index, dict)) = rest.split_once(" {") else {
            continue;
        };
        let key = |name: &str| -> Result<u64> {
            dict.split_once(&format!("'{name}': "))
                .and_then(|(_, v)| v.split([',', '}']).next())
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| anyhow!("probe.txt line {}: no '{name}'", n + 1))
        };
        let index = num(index, n + 1, "profile index")?;
        facts.insert((0, key("id")? as u32), (index, key("memorySizeMB")?));
    }
    Ok(facts)
}

fn as_u32(v: &Value, what: &str) -> Result<u32> {
    v.as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| anyhow!("{what}: '{v}' is not a number"))
}

fn nvml_identity(nvml: &Value, listed: &Listed) -> Result<(Vec<RecordedGpu>, String)> {
    let driver = value(&nvml["driver_version"], "driver_version")?
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("no driver version"))?
        .to_string();
    let mut gpus = Vec::new();
    for gpu in nvml_gpus(nvml)? {
        let index = as_u32(&gpu["index"], "gpus[].index")?;
        let text = |key: &str| -> Result<String> {
            value(&gpu[key], key)?
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| anyhow!("GPU {index}: NVML gave no {key}"))
        };
        let pci = value(&gpu["pci"], "pci")?.ok_or_else(|| anyhow!("GPU {index}: no PCI info"))?;
        let mode = value(&gpu["mig_mode"], "mig_mode")?;
        let uuid = text("uuid")?;
        let mig_uuids = listed
            .values()
            .find(|(_, u, _)| *u == uuid)
            .map(|(_, _, m)| m.clone())
            .unwrap_or_default();
        gpus.push(RecordedGpu {
            index,
            name: text("name")?,
            uuid,
            pci_bus_id: pci["bus_id"]
                .as_str()
                .ok_or_else(|| anyhow!("GPU {index}: no bus id"))?
                .to_string(),
            pci_device_id: Some(as_u32(&pci["pci_device_id"], "pci_device_id")?),
            memory_mib: value(&gpu["memory_total_bytes"], "memory_total_bytes")?
                .and_then(Value::as_u64)
                .map(|b| b / MIB),
            architecture: value(&gpu["architecture"], "architecture")?
                .and_then(Value::as_u64)
                .and_then(nvml_architecture)
                .map(str::to_string),
            mig_current: mode.is_some_and(|m| m["current"] == 1),
            mig_pending: mode.is_some_and(|m| m["pending"] == 1),
            mig_uuids,
        });
    }
    Ok((gpus, driver))
}

/// `nvmlDeviceArchitecture_t` (NVIDIA/go-nvml gen/nvml/nvml.h,
/// `NVML_DEVICE_ARCH_*`) of the GPUs that have MIG.
fn nvml_architecture(arch: u64) -> Option<&'static str> {
    match arch {
        7 => Some("ampere"),
        9 => Some("hopper"),
        10 => Some("blackwell"),
        _ => None,
    }
}

/// (GPU, GI, CI) → UUID of every MIG device NVML handed out.
fn nvml_mig_devices(nvml: &Value) -> Result<BTreeMap<(u32, u32, u32), String>> {
    let mut devices = BTreeMap::new();
    for gpu in nvml_gpus(nvml)? {
        let index = as_u32(&gpu["index"], "gpus[].index")?;
        for d in gpu["mig_devices"].as_array().into_iter().flatten() {
            if d["rc"] != 0 {
                continue;
            }
            let (Some(uuid), Some(gi), Some(ci)) = (
                value(&d["uuid"], "uuid")?,
                value(&d["gpu_instance_id"], "gpu_instance_id")?,
                value(&d["compute_instance_id"], "compute_instance_id")?,
            ) else {
                continue;
            };
            let uuid = uuid.as_str().ok_or_else(|| anyhow!("MIG device UUID '{uuid}'"))?;
            devices.insert(
                (
                    index,
                    as_u32(gi, "gpu_instance_id")?,
                    as_u32(ci, "compute_instance_id")?,
                ),
                uuid.to_string(),
            );
        }
    }
    Ok(devices)
}
