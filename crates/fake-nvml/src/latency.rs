//! How a latency fault waits.
//!
//! The calling thread sleeps. A sleep of a few microseconds takes tens of
//! microseconds on many machines (timer slack, a virtual machine's timers),
//! far off the 2 µs that most real driver calls take, so with
//! `FAKE_NVML_SPIN_LATENCY=1` in the environment (an opt-in for benchmarks)
//! a latency under 1 ms is spun instead, to within a fraction of a microsecond.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const SPIN_ENV: &str = "FAKE_NVML_SPIN_LATENCY";
const SPIN_BELOW: Duration = Duration::from_millis(1);

fn spin_enabled() -> bool {
    static SPIN: OnceLock<bool> = OnceLock::new();
    *SPIN.get_or_init(|| std::env::var(SPIN_ENV).is_ok_and(|v| v == "1"))
}

/// Waits `delay`: sleeps, or spins when it is short and `FAKE_NVML_SPIN_LATENCY=1`.
pub(crate) fn wait(delay: Duration) {
    if delay < SPIN_BELOW && spin_enabled() {
        let start = Instant::now();
        while start.elapsed() < delay {
            std::hint::spin_loop();
        }
    } else {
        std::thread::sleep(delay);
    }
}
