//! Per-function call counts and time spent, for tests and benchmarks.
//!
//! Not part of NVML: exported as `fakeNvml*` so a benchmark that loads the
//! fake can `dlsym` them and sum the library's share of a poll.

use std::collections::BTreeMap;
use std::ffi::{c_char, CStr};
use std::sync::Mutex;
use std::time::Instant;

#[derive(Debug, Default, Clone, Copy)]
struct Stat {
    calls: u64,
    nanos: u64,
}

static STATS: Mutex<BTreeMap<&'static str, Stat>> = Mutex::new(BTreeMap::new());

/// Counts a call of `name` that began at `start`. The clock is read once the
/// counter is found, so this bookkeeping counts as time inside the library
/// (where it runs) rather than as the caller's.
pub(crate) fn record(name: &'static str, start: Instant) {
    crate::stats_file::start_once();
    let mut stats = STATS.lock().unwrap_or_else(|e| e.into_inner());
    let s = stats.entry(name).or_default();
    s.calls += 1;
    s.nanos = s
        .nanos
        .saturating_add(u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX));
}

/// Every function's `(name, calls, nanos)`, sorted by name (for [`crate::stats_file`]).
pub(crate) fn snapshot() -> Vec<(&'static str, u64, u64)> {
    let stats = STATS.lock().unwrap_or_else(|e| e.into_inner());
    stats.iter().map(|(&name, s)| (name, s.calls, s.nanos)).collect()
}

/// `name`'s stat, or the sum over all functions when `name` is NULL; 0 for a
/// function never called (or a name that is not valid UTF-8).
unsafe fn lookup(name: *const c_char, field: fn(&Stat) -> u64) -> u64 {
    let stats = STATS.lock().unwrap_or_else(|e| e.into_inner());
    if name.is_null() {
        return stats.values().map(field).sum();
    }
    // SAFETY: the caller passes a NUL-terminated string, as for every NVML string argument.
    let Ok(name) = (unsafe { CStr::from_ptr(name) }).to_str() else {
        return 0;
    };
    stats.get(name).map_or(0, field)
}

/// How many times the NVML function `name` (e.g. `"nvmlDeviceGetMigMode"`) was
/// called since the library was loaded or the counters reset; with `name`
/// NULL, all NVML calls together.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn fakeNvmlCallCount(name: *const c_char) -> u64 {
    std::panic::catch_unwind(|| unsafe { lookup(name, |s| s.calls) }).unwrap_or(0)
}

/// Nanoseconds spent inside the NVML function `name` (latency faults
/// included); with `name` NULL, inside all NVML functions together.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn fakeNvmlCallNanos(name: *const c_char) -> u64 {
    std::panic::catch_unwind(|| unsafe { lookup(name, |s| s.nanos) }).unwrap_or(0)
}

/// Sets every call count and time back to zero.
#[no_mangle]
pub extern "C" fn fakeNvmlResetCallCounts() {
    let _ = std::panic::catch_unwind(|| STATS.lock().unwrap_or_else(|e| e.into_inner()).clear());
}
