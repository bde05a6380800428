//! Opt-in, for benchmarks: the call counters of another process.
//!
//! A benchmark cannot `dlsym` [`crate::fakeNvmlCallNanos`] inside the exporter
//! it measures, so with `FAKE_NVML_STATS_FILE=PATH` in the environment the
//! library writes its counters to `PATH` from a thread of its own, every
//! `FAKE_NVML_STATS_INTERVAL_MS` milliseconds (default 20), atomically (a
//! temp file beside it, then a rename). One line per NVML function called,
//! `name calls nanos`, sorted by name, after a first line `#written_unix_ns N`.
//! Without the variable nothing is started and nothing is written.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Once;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const STATS_FILE_ENV: &str = "FAKE_NVML_STATS_FILE";
pub const STATS_INTERVAL_ENV: &str = "FAKE_NVML_STATS_INTERVAL_MS";

static START: Once = Once::new();

/// Starts the writer thread on the first call when `FAKE_NVML_STATS_FILE` is set.
pub(crate) fn start_once() {
    START.call_once(|| {
        let Some(path) = std::env::var_os(STATS_FILE_ENV).filter(|p| !p.is_empty()) else {
            return;
        };
        let every = std::env::var(STATS_INTERVAL_ENV)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|&ms| ms > 0)
            .unwrap_or(20);
        let path = PathBuf::from(path);
        let _ = std::thread::Builder::new()
            .name("fake-nvml-stats".into())
            .spawn(move || loop {
                if let Err(e) = write(&path) {
                    eprintln!("fake-nvml: cannot write {}: {e}", path.display());
                }
                std::thread::sleep(Duration::from_millis(every));
            });
    });
}

fn write(path: &std::path::Path) -> std::io::Result<()> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut text = format!("#written_unix_ns {now}\n");
    for (name, calls, nanos) in crate::stats::snapshot() {
        text.push_str(&format!("{name} {calls} {nanos}\n"));
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(text.as_bytes())?;
    drop(file);
    std::fs::rename(&tmp, path)
}
