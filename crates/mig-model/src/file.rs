//! Reading, validating and atomically writing World files.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::locate::{self, Step};
use crate::placement::{gpu_instance_id, Placement, Placer};
use crate::world::{World, WORLD_FORMAT};

/// Why a World file could not be read or written. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum WorldFileError {
    #[error("cannot read World file {}: {cause}", path.display())]
    Read { path: PathBuf, cause: std::io::Error },
    #[error("World file {} is not valid JSON for a World: {}{cause}", path.display(), in_field(field))]
    Parse {
        path: PathBuf,
        /// Where in the document: `gpus[0].gpu_instances[1].placement`, `.` for the top.
        field: String,
        /// Says the line and column.
        cause: serde_json::Error,
    },
    #[error("World file {} is inconsistent{}: {problem}", path.display(), at_line(location))]
    Invalid {
        path: PathBuf,
        /// Line and column of the field with the problem.
        location: Option<(usize, usize)>,
        problem: String,
    },
    #[error("cannot write World file {}: {cause}", path.display())]
    Write { path: PathBuf, cause: std::io::Error },
}

impl World {
    /// Parses and validates a World from JSON text; `path` only names it in errors.
    pub fn from_json(text: &str, path: &Path) -> Result<World, WorldFileError> {
        let parse_error = |field: String, cause| WorldFileError::Parse {
            path: path.to_path_buf(),
            field,
            cause,
        };
        let mut json = serde_json::Deserializer::from_str(text);
        let world: World = serde_path_to_error::deserialize(&mut json)
            .map_err(|e| parse_error(e.path().to_string(), e.into_inner()))?;
        json.end().map_err(|cause| parse_error(".".into(), cause))?;
        world
            .check()
            .map_err(|(steps, problem)| WorldFileError::Invalid {
                path: path.to_path_buf(),
                location: locate::in_json(text, &steps),
                problem,
            })?;
        Ok(world)
    }

    pub fn load(path: &Path) -> Result<World, WorldFileError> {
        let text = fs::read_to_string(path).map_err(|cause| WorldFileError::Read {
            path: path.to_path_buf(),
            cause,
        })?;
        World::from_json(&text, path)
    }

    pub fn to_json(&self) -> String {
        // A World holds only strings, numbers and plain structs: serializing cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }

    /// Writes the World so that a reader sees the old file or the new one,
    /// never a torn one: temp file in the same directory, fsync, rename, fsync dir.
    pub fn save(&self, path: &Path) -> Result<(), WorldFileError> {
        let err = |cause| WorldFileError::Write {
            path: path.to_path_buf(),
            cause,
        };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(self.to_json().as_bytes())?;
            f.sync_all()?;
            fs::rename(&tmp, path)?;
            fs::File::open(dir)?.sync_all()
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            err(e)
        })
    }

    /// Checks what JSON types cannot: known profiles, legal placements, the
    /// GI-id numbering, no collisions, budgets, CI shapes, loads in range.
    pub fn validate(&self) -> Result<(), String> {
        self.check().map_err(|(_, problem)| problem)
    }

    /// [`World::validate`], with where in the document the problem is.
    fn check(&self) -> Result<(), (Vec<Step>, String)> {
        if self.format != WORLD_FORMAT {
            return Err((
                vec![Step::value("format")],
                format!(
                    "format {} is not supported (expected {WORLD_FORMAT})",
                    self.format
                ),
            ));
        }
        let mut indexes: Vec<u32> = self.gpus.iter().map(|g| g.index).collect();
        indexes.sort();
        indexes.dedup();
        if indexes.len() != self.gpus.len() {
            return Err((vec![Step::value("gpus")], "two GPUs share an index".into()));
        }
        for (gpu_at, gpu) in self.gpus.iter().enumerate() {
            let gpu_steps = [Step::value("gpus"), Step::Item(gpu_at)];
            let at = |fields: &[Step], what: String| {
                let steps = gpu_steps.iter().chain(fields).cloned().collect();
                (steps, format!("gpus[index={}]: {what}", gpu.index))
            };
            let spec = gpu.spec();
            if !gpu.mig.current && !gpu.gpu_instances.is_empty() {
                return Err(at(
                    &[Step::value("mig"), Step::value("current")],
                    "GPU instances exist while MIG mode is disabled".into(),
                ));
            }
            let mut existing = Vec::new();
            for (gi_at, gi) in gpu.gpu_instances.iter().enumerate() {
                let gi_steps = [Step::value("gpu_instances"), Step::Item(gi_at)];
                let at = |fields: &[Step], what: String| {
                    let steps: Vec<Step> = gi_steps.iter().chain(fields).cloned().collect();
                    at(&steps, format!("gpu_instances[id={}]: {what}", gi.id))
                };
                let profile = gpu.product.profile_by_id(gi.profile_id).ok_or_else(|| {
                    at(
                        &[Step::value("profile_id")],
                        format!("{} has no GPU instance profile id {}", gpu.product, gi.profile_id),
                    )
                })?;
                if !spec.offers(profile.id, &self.driver_version) {
                    return Err(at(
                        &[Step::value("profile_id")],
                        format!(
                            "driver {} does not offer {} (profile {}); drivers offer it from R{}",
                            self.driver_version,
                            profile.name,
                            profile.id,
                            spec.first_driver_branch(profile.id)
                        ),
                    ));
                }
                Placer::new(spec, existing.iter().copied())
                    .check(profile, gi.placement)
                    .map_err(|r| {
                        at(
                            &[Step::value("placement")],
                            format!("placement {} for {} refused: {r:?}", gi.placement, profile.name),
                        )
                    })?;
                existing.push((profile, gi.placement));
                // The driver numbers new GIs by placement (gpu_instance_id), but
                // real nodes also show other ids of the same size class (an H100
                // with a 1g.10gb at 2:1 as GI 13), so any id of the class is valid.
                let first = gpu_instance_id(Placement::new(0, gi.placement.size), spec.memory_slots);
                let class = first..2 * first + 1;
                let id = [Step::value("id")];
                if !class.contains(&gi.id) {
                    return Err(at(
                        &id,
                        format!(
                            "a GI of size {} must have an id in {}..={}",
                            gi.placement.size,
                            class.start,
                            class.end - 1
                        ),
                    ));
                }
                if gpu.gpu_instances.iter().filter(|other| other.id == gi.id).count() > 1 {
                    return Err(at(&id, "two GPU instances share this id".into()));
                }
                let load = |field: &str| [Step::value("load"), Step::value(field)];
                check_ratio(gi.load.dram_active, "dram_active").map_err(|p| at(&load("dram_active"), p))?;
                if gi.load.memory_used_mib > profile.memory_mib {
                    return Err(at(
                        &load("memory_used_mib"),
                        format!(
                            "memory_used_mib {} exceeds the profile's {} MiB",
                            gi.load.memory_used_mib, profile.memory_mib
                        ),
                    ));
                }
                let ci_profiles = gpu.product.ci_profiles(profile);
                let mut used = 0u32;
                for (ci_at, ci) in gi.compute_instances.iter().enumerate() {
                    let ci_steps = [Step::value("compute_instances"), Step::Item(ci_at)];
                    let at = |fields: &[Step], what: String| {
                        let steps: Vec<Step> = ci_steps.iter().chain(fields).cloned().collect();
                        at(&steps, format!("compute_instances[id={}]: {what}", ci.id))
                    };
                    let cp = ci_profiles
                        .iter()
                        .find(|p| p.id == ci.profile_id)
                        .ok_or_else(|| {
                            at(
                                &[Step::value("profile_id")],
                                format!("no compute instance profile id {}", ci.profile_id),
                            )
                        })?;
                    let placement = [Step::value("placement")];
                    if ci.placement.size != cp.compute_slices
                        || !cp.placement_starts.contains(&ci.placement.start)
                    {
                        return Err(at(&placement, format!("placement {} is not valid", ci.placement)));
                    }
                    if used & ci.placement.slot_mask() != 0 {
                        return Err(at(&placement, "overlaps another compute instance".into()));
                    }
                    used |= ci.placement.slot_mask();
                    if !ci.uuid.starts_with("MIG-") {
                        return Err(at(
                            &[Step::value("uuid")],
                            format!("uuid '{}' does not start with MIG-", ci.uuid),
                        ));
                    }
                    for (v, name) in [
                        (ci.load.sm_active, "sm_active"),
                        (ci.load.sm_occupancy, "sm_occupancy"),
                        (ci.load.tensor_active, "tensor_active"),
                    ] {
                        check_ratio(v, name).map_err(|p| at(&load(name), p))?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// A World file read again only when it changes, for the test doubles
/// (`fake-nvml`, `fake-dcgm`) that look at it on every library call.
///
/// A change is seen through the file's device, inode, size and timestamps.
/// Timestamps are only as fine as the kernel's tick and an atomic save may
/// reuse an inode, so for a short while after a write the bytes are compared too.
#[derive(Debug, Default)]
pub struct WorldCache {
    cached: Option<(FileKey, String, std::sync::Arc<World>)>,
    /// The last error `get_or_report` printed, so a broken file is reported
    /// once, not on every library call.
    last_error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileKey {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

/// How long after a write the bytes are compared as well as the metadata.
const RACY_WINDOW: std::time::Duration = std::time::Duration::from_millis(100);

impl WorldCache {
    /// The World in `path`, read and validated again if the file changed.
    pub fn get(&mut self, path: &Path) -> Result<std::sync::Arc<World>, WorldFileError> {
        use std::os::unix::fs::MetadataExt;
        let read_error = |cause| WorldFileError::Read {
            path: path.to_path_buf(),
            cause,
        };
        let meta = fs::metadata(path).map_err(read_error)?;
        let key = FileKey {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        };
        let recent = meta
            .modified()
            .ok()
            .and_then(|m| std::time::SystemTime::now().duration_since(m).ok())
            .is_none_or(|age| age < RACY_WINDOW);
        if let Some((cached_key, _, world)) = &self.cached {
            if *cached_key == key && !recent {
                return Ok(world.clone());
            }
        }
        let text = fs::read_to_string(path).map_err(read_error)?;
        if let Some((cached_key, cached_text, world)) = &mut self.cached {
            if *cached_text == text {
                *cached_key = key;
                return Ok(world.clone());
            }
        }
        let world = std::sync::Arc::new(World::from_json(&text, path)?);
        self.cached = Some((key, text, world.clone()));
        Ok(world)
    }

    /// [`get`](Self::get) for the test doubles, which have no caller to hand
    /// an error to: each new error is printed once to stderr under `who`.
    pub fn get_or_report(&mut self, path: &Path, who: &str) -> Option<std::sync::Arc<World>> {
        match self.get(path) {
            Ok(world) => {
                self.last_error = None;
                Some(world)
            }
            Err(e) => {
                let message = e.to_string();
                if self.last_error.as_deref() != Some(message.as_str()) {
                    eprintln!("{who}: {message}");
                    self.last_error = Some(message);
                }
                None
            }
        }
    }
}

/// `, line 7 column 9` for messages, or nothing when the position is unknown.
fn at_line(location: &Option<(usize, usize)>) -> String {
    location.map_or_else(String::new, |(line, column)| {
        format!(", line {line} column {column}")
    })
}

/// `gpus[0].index: ` before a parse error's message, nothing for the top level.
fn in_field(field: &str) -> String {
    if field == "." {
        String::new()
    } else {
        format!("{field}: ")
    }
}

fn check_ratio(v: f64, name: &str) -> Result<(), String> {
    if (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        Err(format!("{name} {v} is outside 0..1"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::product::Product;

    #[test]
    fn round_trips_and_writes_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("world.json");
        let mut w = World::new("n", Product::H100_80GB, 2);
        w.gpus[0].set_mig_mode(true);
        let gi = w.gpus[0].create_gpu_instance(9, None).unwrap();
        w.gpus[0].create_compute_instance(gi, None).unwrap();
        w.save(&path).unwrap();
        assert_eq!(World::load(&path).unwrap(), w);
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp file left behind");
    }

    #[test]
    fn errors_name_the_file_and_the_problem() {
        let p = Path::new("/tmp/x/world.json");
        let e = World::from_json("{", p).unwrap_err().to_string();
        assert!(e.contains("/tmp/x/world.json") && e.contains("line 1"), "{e}");

        let mut w = World::new("n", Product::H100_80GB, 1);
        w.gpus[0].set_mig_mode(true);
        w.gpus[0].create_gpu_instance(19, None).unwrap();
        w.gpus[0].gpu_instances[0].profile_id = 99;
        let e = World::from_json(&w.to_json(), p).unwrap_err().to_string();
        assert!(
            e.contains("no GPU instance profile id 99") && e.contains("gpus[index=0]"),
            "{e}"
        );

        let e = World::load(Path::new("/nonexistent/w.json"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/w.json"), "{e}");

        let e = World::from_json(&w.to_json().replace("\"hostname\"", "\"hostnme\""), p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("hostnme"), "{e}");
    }

    #[test]
    fn parse_errors_name_the_field_and_the_line() {
        let p = Path::new("/tmp/x/world.json");
        let text = World::new("n", Product::H100_80GB, 1)
            .to_json()
            .replace("\"persistence_mode\": true", "\"persistence_mode\": \"yes\"");
        let line = 1 + text.lines().position(|l| l.contains("persistence_mode")).unwrap();
        let e = World::from_json(&text, p).unwrap_err().to_string();
        assert!(
            e.starts_with("World file /tmp/x/world.json is not valid JSON for a World: ")
                && e.contains("gpus[0].persistence_mode: invalid type: string \"yes\", expected a boolean")
                && e.contains(&format!("at line {line} column 31")),
            "{e}"
        );
        let valid = World::new("n", Product::H100_80GB, 1).to_json();
        let e = World::from_json(&format!("{valid} x"), p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("World: trailing characters at line"), "{e}");
    }

    #[test]
    fn inconsistencies_name_the_line_of_the_field() {
        let p = Path::new("/tmp/x/world.json");
        let mut w = World::new("n", Product::H100_80GB, 2);
        w.gpus[1].set_mig_mode(true);
        let gi = w.gpus[1].create_gpu_instance(19, None).unwrap();
        w.gpus[1].create_compute_instance(gi, None).unwrap();
        w.gpus[1].gpu_instances[0].compute_instances[0].load.sm_active = 1.5;
        let text = w.to_json();
        let line = 1 + text
            .lines()
            .position(|l| l.contains("\"sm_active\": 1.5"))
            .unwrap();
        let e = World::from_json(&text, p).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "World file /tmp/x/world.json is inconsistent, line {line} column 32: gpus[index=1]: \
                 gpu_instances[id={gi}]: compute_instances[id=0]: sm_active 1.5 is outside 0..1"
            )
        );
        w.gpus[1].gpu_instances[0].compute_instances[0].load.sm_active = 0.5;
        w.gpus[1].gpu_instances[0].profile_id = 99;
        let text = w.to_json();
        let line = 1 + text
            .lines()
            .position(|l| l.contains("\"profile_id\": 99"))
            .unwrap();
        let e = World::from_json(&text, p).unwrap_err().to_string();
        assert!(e.contains(&format!("inconsistent, line {line} column ")), "{e}");
    }

    #[test]
    fn rejects_colliding_instances() {
        let mut w = World::new("n", Product::H100_80GB, 1);
        w.gpus[0].set_mig_mode(true);
        w.gpus[0].create_gpu_instance(9, Some(0)).unwrap();
        let mut dup = w.gpus[0].gpu_instances[0].clone();
        dup.profile_id = 5; // a 4g.40gb on the same slots
        dup.id = 2;
        w.gpus[0].gpu_instances.push(dup);
        let e = World::from_json(&w.to_json(), Path::new("w"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("refused"), "{e}");
    }

    #[test]
    fn accepts_any_id_of_the_size_class_but_no_other() {
        // A real H100 showed a 1g.10gb at 2:1 as GI 13 (the driver's formula says 9).
        let mut w = World::new("n", Product::H100_80GB, 1);
        w.gpus[0].set_mig_mode(true);
        w.gpus[0].create_gpu_instance(19, Some(2)).unwrap();
        w.gpus[0].gpu_instances[0].id = 13;
        World::from_json(&w.to_json(), Path::new("w")).unwrap();
        w.gpus[0].gpu_instances[0].id = 5;
        let e = World::from_json(&w.to_json(), Path::new("w"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("must have an id in 7..=14"), "{e}");
    }

    #[test]
    fn the_cache_sees_every_save() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.json");
        let mut w = World::new("n", Product::H100_80GB, 1);
        w.save(&path).unwrap();
        let mut cache = WorldCache::default();
        assert_eq!(*cache.get(&path).unwrap(), w);
        // Two saves within the same timestamp tick and with the same size.
        w.gpus[0].telemetry.temperature_celsius = 55;
        w.save(&path).unwrap();
        assert_eq!(
            cache.get(&path).unwrap().gpus[0].telemetry.temperature_celsius,
            55
        );
        w.gpus[0].telemetry.temperature_celsius = 56;
        w.save(&path).unwrap();
        assert_eq!(
            cache.get(&path).unwrap().gpus[0].telemetry.temperature_celsius,
            56
        );
        std::fs::write(&path, "{").unwrap();
        assert!(cache.get(&path).unwrap_err().to_string().contains("w.json"));
    }

    #[test]
    fn a_failed_save_leaves_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub");
        fs::create_dir(&path).unwrap(); // renaming a file over a directory fails
        let w = World::new("n", Product::H100_80GB, 1);
        assert!(w.save(&path).is_err());
        assert!(path.is_dir());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
