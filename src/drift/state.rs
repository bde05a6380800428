//! Last-known-good state: each GPU's last healthy geometry, by GPU UUID, with
//! the boot id it was seen under, kept in a file across restarts and reboots.
//!
//! ```json
//! {
//!   "version": 1,
//!   "gpus": {
//!     "GPU-…": {
//!       "index": 0,
//!       "name": "NVIDIA H100 80GB HBM3",
//!       "boot_id": "4b1c…",
//!       "geometry": { "mig_enabled": true, "instances": { "1g.10gb": 7 } },
//!       "since_seconds": 1750000000.0
//!     }
//!   }
//! }
//! ```
//!
//! Writes are atomic (a temp file in the same directory, mode 0600, fsync,
//! rename, fsync of the directory), so a reader, or a process killed during a
//! write, sees the old file or the new one, never a torn one. The file is
//! never followed through a symbolic link, nor replaced when it is one. A file
//! that cannot be read (truncated, garbage, another format version) is left
//! exactly as it is and never overwritten: the exporter keeps the state in
//! memory, reports the error and reads the file again on every poll, so
//! moving it away recovers without a restart.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::detect::Geometry;
use crate::model::{GpuSnapshot, SourceHealth};

/// Version of the state file format.
pub const STATE_VERSION: u32 = 1;

/// Where the state of a real node (`--nvml`) is kept unless `--state.file`
/// says otherwise, when [`DEFAULT_STATE_DIR`] exists.
pub const DEFAULT_STATE_FILE: &str = "/var/lib/mig-exporter/state.json";

/// The state directory that packaging provides (systemd `StateDirectory=`,
/// the DaemonSet's hostPath); the exporter does not create it on its own.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/mig-exporter";

/// The `source` label of the state file's health series.
pub const SOURCE_NAME: &str = "state_file";

/// A state file larger than this is not read (it holds a few hundred bytes per GPU).
const MAX_STATE_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateDoc {
    pub version: u32,
    /// GPU UUID → its last healthy geometry.
    pub gpus: BTreeMap<String, GpuState>,
}

impl Default for StateDoc {
    fn default() -> Self {
        StateDoc {
            version: STATE_VERSION,
            gpus: BTreeMap::new(),
        }
    }
}

/// One GPU's last healthy geometry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuState {
    /// The GPU's index when it was seen, for messages.
    pub index: u32,
    pub name: String,
    /// `/proc/sys/kernel/random/boot_id` of the boot it was seen in.
    pub boot_id: String,
    pub geometry: Geometry,
    /// Unix time this geometry was first seen.
    pub since_seconds: f64,
}

impl GpuState {
    /// Same GPU, boot and geometry: recording it again changes nothing.
    fn same_as(&self, other: &GpuState) -> bool {
        self.index == other.index
            && self.name == other.name
            && self.boot_id == other.boot_id
            && self.geometry == other.geometry
    }
}

impl StateDoc {
    /// The state of a node as read: every GPU of `gpus` as of `boot_id`.
    pub fn from_gpus(boot_id: &str, gpus: &[GpuSnapshot], since_seconds: f64) -> StateDoc {
        StateDoc {
            version: STATE_VERSION,
            gpus: gpus
                .iter()
                .map(|g| {
                    (
                        g.uuid.clone(),
                        GpuState {
                            index: g.index,
                            name: g.name.clone(),
                            boot_id: boot_id.to_string(),
                            geometry: Geometry::observed(g),
                            since_seconds,
                        },
                    )
                })
                .collect(),
        }
    }
}

/// Why the state file could not be used. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read state file {}: {cause}", path.display())]
    Read { path: PathBuf, cause: std::io::Error },
    #[error("state file {} is a symbolic link: it is neither followed nor replaced", path.display())]
    Symlink { path: PathBuf },
    #[error("state file {} is not a regular file", path.display())]
    NotAFile { path: PathBuf },
    #[error(
        "state file {} is corrupt (truncated or not a state file): {}{cause}; it is left as it is, \
         never overwritten: move it away to start afresh",
        path.display(), if field == "." { String::new() } else { format!("{field}: ") }
    )]
    Corrupt {
        path: PathBuf,
        /// Where in the document: `gpus.GPU-….index`, `.` for the top.
        field: String,
        /// Says the line and column.
        cause: serde_json::Error,
    },
    #[error(
        "state file {} has format version {found}, this exporter reads version {STATE_VERSION}; \
         it is left as it is, never overwritten: move it away to start afresh",
        path.display()
    )]
    Version { path: PathBuf, found: String },
    #[error("state file {} is larger than {MAX_STATE_BYTES} bytes", path.display())]
    TooLarge { path: PathBuf },
    #[error("cannot write state file {}: {cause}", path.display())]
    Write { path: PathBuf, cause: std::io::Error },
}

/// Reads the state file; `None` when there is none yet.
pub fn load(path: &Path) -> Result<Option<StateDoc>, StateError> {
    let read_err = |cause| StateError::Read {
        path: path.to_path_buf(),
        cause,
    };
    // O_NOFOLLOW: a symbolic link fails with ELOOP instead of being followed;
    // O_NONBLOCK: a FIFO planted there cannot hang the exporter.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path);
    let file = match file {
        Ok(f) => f,
        // No such file, or a path through a regular file: nothing to read.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR) => {
            return Ok(None)
        }
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(StateError::Symlink {
                path: path.to_path_buf(),
            })
        }
        Err(e) => return Err(read_err(e)),
    };
    let meta = file.metadata().map_err(read_err)?;
    if !meta.is_file() {
        return Err(StateError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    if meta.len() > MAX_STATE_BYTES {
        return Err(StateError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    let mut text = String::new();
    file.take(MAX_STATE_BYTES)
        .read_to_string(&mut text)
        .map_err(read_err)?;
    parse(&text, path).map(Some)
}

/// Parses state file text; `path` only names it in errors.
pub fn parse(text: &str, path: &Path) -> Result<StateDoc, StateError> {
    let corrupt = |field: String, cause| StateError::Corrupt {
        path: path.to_path_buf(),
        field,
        cause,
    };
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| corrupt(".".into(), e))?;
    let version = value.get("version");
    if version.and_then(serde_json::Value::as_u64) != Some(u64::from(STATE_VERSION)) {
        return Err(StateError::Version {
            path: path.to_path_buf(),
            found: version.map_or_else(|| "(none)".to_string(), |v| v.to_string()),
        });
    }
    // Read again from the text, not the value, for errors with a line and field.
    let mut json = serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(&mut json).map_err(|e| corrupt(e.path().to_string(), e.into_inner()))
}

/// Writes the state atomically: temp file (mode 0600) in the same directory,
/// fsync, rename over the old file, fsync of the directory. Creates the
/// directory (mode 0700) when it is missing. Refuses to replace a symbolic
/// link or anything but a regular file.
pub fn save(path: &Path, doc: &StateDoc) -> Result<(), StateError> {
    let write_err = |cause| StateError::Write {
        path: path.to_path_buf(),
        cause,
    };
    let dir = parent_dir(path);
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(write_err)?;
    }
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(StateError::Symlink {
                path: path.to_path_buf(),
            })
        }
        Ok(m) if !m.is_file() => {
            return Err(StateError::NotAFile {
                path: path.to_path_buf(),
            })
        }
        _ => {}
    }
    // A StateDoc holds only strings, numbers and maps: serializing cannot fail.
    let text = serde_json::to_string_pretty(doc).unwrap_or_default() + "\n";
    let tmp = temp_path(path);
    let create = || {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
    };
    let mut file = match create() {
        // Left by a process of the same pid killed mid-write (pid 1 in a container).
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            fs::remove_file(&tmp).map_err(write_err)?;
            create().map_err(write_err)?
        }
        other => other.map_err(write_err)?,
    };
    let written = file
        .write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .and_then(|()| {
            drop(file);
            fs::rename(&tmp, path)
        });
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(write_err(e));
    }
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(write_err)
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `.state.json.<pid>.tmp` beside the state file.
fn temp_path(path: &Path) -> PathBuf {
    parent_dir(path).join(format!(".{}.{}.tmp", file_name(path), std::process::id()))
}

/// Removes temp files that a process killed mid-write left beside the state
/// file (only names this module creates; links are removed, not followed).
pub fn remove_stale_temp_files(path: &Path) -> usize {
    let prefix = format!(".{}.", file_name(path));
    let Ok(entries) = fs::read_dir(parent_dir(path)) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_ours = name
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(".tmp"))
            .is_some_and(|pid| !pid.is_empty() && pid.chars().all(|c| c.is_ascii_digit()));
        if is_ours && fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// The last-known-good state a tracker works with: in memory, and in a file
/// when one is configured.
#[derive(Debug)]
pub struct StateStore {
    doc: StateDoc,
    dirty: bool,
    file: Option<StateFile>,
}

#[derive(Debug)]
struct StateFile {
    path: PathBuf,
    /// `check` reads the file but never writes it.
    read_only: bool,
    /// The file exists but cannot be read: it is left alone until it can.
    unreadable: Option<StateError>,
    write_error: Option<StateError>,
    health: SourceHealth,
    logged: Option<String>,
}

impl StateStore {
    /// State kept in memory only (built-in scenarios): `doc` is what the
    /// node is taken to have had before.
    pub fn in_memory(doc: StateDoc) -> StateStore {
        StateStore {
            doc,
            dirty: false,
            file: None,
        }
    }

    /// State kept in `path`. A file that cannot be read is reported (see
    /// [`StateStore::error`]) and the state starts empty in memory.
    pub fn open(path: &Path, read_only: bool) -> StateStore {
        if !read_only {
            let removed = remove_stale_temp_files(path);
            if removed > 0 {
                tracing::info!(path = %path.display(), removed, "removed temp files of an interrupted state write");
            }
        }
        let started = Instant::now();
        let mut health = SourceHealth {
            up: true,
            ..SourceHealth::new(SOURCE_NAME)
        };
        let (doc, unreadable) = match load(path) {
            Ok(doc) => (doc.unwrap_or_default(), None),
            Err(e) => (StateDoc::default(), Some(e)),
        };
        health.poll_duration.observe(started.elapsed().as_secs_f64());
        let mut store = StateStore {
            doc,
            dirty: false,
            file: Some(StateFile {
                path: path.to_path_buf(),
                read_only,
                unreadable,
                write_error: None,
                health,
                logged: None,
            }),
        };
        store.log_error();
        store
    }

    pub fn get(&self, gpu_uuid: &str) -> Option<&GpuState> {
        self.doc.gpus.get(gpu_uuid)
    }

    pub fn doc(&self) -> &StateDoc {
        &self.doc
    }

    /// Records a GPU's healthy geometry; written on the next [`StateStore::sync`]
    /// if it changed.
    pub fn record(&mut self, gpu_uuid: &str, state: GpuState) {
        if self.doc.gpus.get(gpu_uuid).is_some_and(|old| old.same_as(&state)) {
            return;
        }
        self.doc.gpus.insert(gpu_uuid.to_string(), state);
        self.dirty = true;
    }

    /// Why the state file is not in use now (unreadable, or the last write failed).
    pub fn error(&self) -> Option<&StateError> {
        let f = self.file.as_ref()?;
        f.unreadable.as_ref().or(f.write_error.as_ref())
    }

    /// Health of the state file, for `mig_exporter_source_up{source="state_file"}`.
    pub fn health(&self) -> Option<&SourceHealth> {
        self.file.as_ref().map(|f| &f.health)
    }

    /// Before a poll's comparisons: reads an unreadable file again, so that
    /// a file moved away or repaired is used without a restart.
    pub fn refresh(&mut self) {
        let Some(f) = self.file.as_mut() else { return };
        if f.unreadable.is_none() {
            return;
        }
        match load(&f.path) {
            Ok(found) => {
                f.unreadable = None;
                // What was learnt in memory meanwhile is newer than the file.
                for (uuid, state) in found.map(|d| d.gpus).unwrap_or_default() {
                    self.doc.gpus.entry(uuid).or_insert(state);
                }
                self.dirty = !self.doc.gpus.is_empty();
                tracing::info!(path = %f.path.display(), "state file is readable again");
            }
            Err(e) => f.unreadable = Some(e),
        }
    }

    /// After a poll's comparisons: writes what changed, unless the file is
    /// unreadable (never overwritten) or read-only. Accounts for it in the
    /// file's health.
    pub fn sync(&mut self, now: f64) {
        let Some(f) = self.file.as_mut() else {
            self.dirty = false;
            return;
        };
        let started = Instant::now();
        if self.dirty && f.unreadable.is_none() && !f.read_only {
            match save(&f.path, &self.doc) {
                Ok(()) => {
                    if f.write_error.take().is_some() {
                        tracing::info!(path = %f.path.display(), "state file written again");
                    }
                    self.dirty = false;
                }
                Err(e) => f.write_error = Some(e),
            }
        }
        let error = f
            .unreadable
            .as_ref()
            .or(f.write_error.as_ref())
            .map(|e| e.to_string());
        f.health.record(started.elapsed().as_secs_f64(), now, error);
        self.log_error();
    }

    /// Logs the file's error when it changes (once, not on every poll).
    fn log_error(&mut self) {
        let error = self.error().map(|e| e.to_string());
        let Some(f) = self.file.as_mut() else { return };
        if error == f.logged {
            return;
        }
        if let Some(message) = &error {
            tracing::warn!(
                error = %message,
                "last-known-good state is kept in memory only; the exporter goes on"
            );
        }
        f.logged = error;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn doc_with(uuid: &str, boot: &str, count: u32) -> StateDoc {
        let mut doc = StateDoc::default();
        doc.gpus.insert(
            uuid.to_string(),
            GpuState {
                index: 0,
                name: "NVIDIA H100 80GB HBM3".into(),
                boot_id: boot.into(),
                geometry: Geometry {
                    mig_enabled: true,
                    instances: BTreeMap::from([("1g.10gb".to_string(), count)]),
                },
                since_seconds: 1_750_000_000.0,
            },
        );
        doc
    }

    #[test]
    fn round_trips_with_mode_0600_and_no_temp_file_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.json");
        let doc = doc_with("GPU-a", "boot-1", 7);
        save(&path, &doc).unwrap();
        assert_eq!(load(&path).unwrap(), Some(doc));
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777;
        assert_eq!(dir_mode, 0o700, "a created directory is private too");
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
        assert_eq!(load(&dir.path().join("none.json")).unwrap(), None);
    }

    #[test]
    fn truncated_garbage_and_wrong_version_are_clear_errors() {
        let p = Path::new("/var/lib/mig-exporter/state.json");
        let full = serde_json::to_string_pretty(&doc_with("GPU-a", "b", 7)).unwrap();
        let truncated = &full[..full.len() / 2];
        let e = parse(truncated, p).unwrap_err().to_string();
        assert!(e.contains("state.json is corrupt") && e.contains("EOF"), "{e}");
        let e = parse("\u{0}\u{1}garbage", p).unwrap_err().to_string();
        assert!(e.contains("is corrupt") && e.contains("never overwritten"), "{e}");
        let e = parse(&full.replace("\"version\": 1", "\"version\": 2"), p)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("has format version 2, this exporter reads version 1"),
            "{e}"
        );
        let e = parse("{\"gpus\": {}}", p).unwrap_err().to_string();
        assert!(e.contains("format version (none)"), "{e}");
        let e = parse(&full.replace("\"boot_id\"", "\"boot\""), p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `boot`"), "{e}");
    }

    #[test]
    fn a_bad_value_is_named_by_its_field_and_line() {
        let p = Path::new("/var/lib/mig-exporter/state.json");
        let full = serde_json::to_string_pretty(&doc_with("GPU-a", "b", 7)).unwrap();
        let bad = full.replace("\"index\": 0", "\"index\": \"zero\"");
        let line = 1 + bad.lines().position(|l| l.contains("\"index\"")).unwrap();
        let e = parse(&bad, p).unwrap_err().to_string();
        assert!(
            e.contains("state.json is corrupt (truncated or not a state file): gpus.GPU-a.index: invalid type: string \"zero\", expected u32")
                && e.contains(&format!("at line {line} column")),
            "{e}"
        );
    }

    #[test]
    fn a_symlink_is_neither_followed_nor_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target.json");
        fs::write(&target, "precious").unwrap();
        let link = dir.path().join("state.json");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = load(&link).unwrap_err().to_string();
        assert!(e.contains("is a symbolic link"), "{e}");
        assert!(save(&link, &StateDoc::default()).is_err());
        assert_eq!(fs::read_to_string(&target).unwrap(), "precious");
        assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        fs::create_dir(&path).unwrap(); // not a regular file: refused
        let e = save(&path, &StateDoc::default()).unwrap_err().to_string();
        assert!(e.contains("is not a regular file"), "{e}");
        assert!(path.is_dir());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn stale_temp_files_are_removed_and_a_same_pid_leftover_does_not_block_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        fs::write(dir.path().join(".state.json.4242.tmp"), "{\"vers").unwrap();
        fs::write(dir.path().join(".other.json.1.tmp"), "keep").unwrap();
        assert_eq!(remove_stale_temp_files(&path), 1);
        assert!(dir.path().join(".other.json.1.tmp").exists());
        fs::write(temp_path(&path), "partial").unwrap();
        save(&path, &doc_with("GPU-a", "b", 1)).unwrap();
        assert!(!temp_path(&path).exists());
        assert!(load(&path).unwrap().is_some());
    }

    #[test]
    fn an_unreadable_file_is_never_overwritten_and_is_used_once_moved_away() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        fs::write(&path, "{\"version\": 1, \"gpus\": {").unwrap();
        let mut store = StateStore::open(&path, false);
        assert!(store.error().unwrap().to_string().contains("is corrupt"));
        let s = doc_with("GPU-a", "b", 7).gpus.remove("GPU-a").unwrap();
        store.record("GPU-a", s.clone());
        store.refresh();
        store.sync(1.0);
        assert_eq!(fs::read_to_string(&path).unwrap(), "{\"version\": 1, \"gpus\": {");
        let health = store.health().unwrap();
        assert!(!health.up && health.last_error.as_deref().unwrap().contains("is corrupt"));
        assert_eq!(store.get("GPU-a"), Some(&s), "kept in memory meanwhile");

        fs::remove_file(&path).unwrap();
        store.refresh();
        store.sync(2.0);
        assert!(store.error().is_none());
        assert!(store.health().unwrap().up);
        assert_eq!(load(&path).unwrap().unwrap().gpus["GPU-a"], s);
    }

    #[test]
    fn an_unwritable_directory_is_reported_and_retried() {
        // A directory nobody can create files in, root included: its place
        // is taken by a regular file.
        let dir = tempfile::tempdir().unwrap();
        let blocked = dir.path().join("blocked");
        fs::write(&blocked, "not a directory").unwrap();
        let path = blocked.join("state.json");
        let mut store = StateStore::open(&path, false);
        assert!(store.error().is_none(), "no file to read yet is not an error");
        store.record("GPU-a", doc_with("GPU-a", "b", 7).gpus.remove("GPU-a").unwrap());
        store.sync(1.0);
        let e = store.error().unwrap().to_string();
        assert!(
            e.starts_with("cannot write state file") && e.contains("blocked/state.json"),
            "{e}"
        );
        let health = store.health().unwrap();
        assert!(!health.up && health.errors_total == 1);
        assert!(blocked.is_file(), "nothing replaced");

        fs::remove_file(&blocked).unwrap();
        store.sync(2.0);
        assert!(store.error().is_none(), "retried on the next poll");
        assert!(store.health().unwrap().up);
        assert!(load(&path).unwrap().unwrap().gpus.contains_key("GPU-a"));
    }

    #[test]
    fn read_only_stores_never_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let mut store = StateStore::open(&path, true);
        store.record("GPU-a", doc_with("GPU-a", "b", 7).gpus.remove("GPU-a").unwrap());
        store.sync(1.0);
        assert!(!path.exists());
    }
}
