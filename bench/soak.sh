#!/usr/bin/env bash
# The accelerated soak (bench/README.md, "Accelerated soak and allocator"):
# the soak of tests/soak.rs (fake-nvml, fake-dcgm, GPM, a fake kubelet with
# pod churn, reconfigurations, reboots, host-engine restarts, GPU instances
# without a compute instance) on a release build, with the exporter polling
# every 50 ms. It prints the polls, the faults by kind, resident memory after
# the warm-up and its growth over the run (KiB, KiB/min, KiB per 1000 polls;
# anonymous and file-backed apart),
# and fails when memory grows by more than 1 MiB after the warm-up or the
# run made fewer than 30 000 polls per 30 minutes (a machine too busy).
#
#   bench/soak.sh [--no-build] [SECONDS]   default 1800 (at least 64)
#   MIG_SOAK_SEED=N bench/soak.sh 600      replays a run's faults
#   MIG_SOAK_MIN_POLLS=N, MIG_SOAK_MAX_GROWTH_KIB=N   other bars
#   MIG_SOAK_FAULTS=reboot bench/soak.sh 600   one kind of fault after the warm-up (or none)
#
# Allocator settings pass through the environment to the exporter, e.g.
# GLIBC_TUNABLES=glibc.malloc.arena_max=1 (which also turns off the
# exporter's own mallopt calls) or LD_PRELOAD of another malloc.
# Needs `prometheus` (Debian package prometheus).
set -euo pipefail
cd "$(dirname "$0")/.."

build=1
if [ "${1:-}" = "--no-build" ]; then
  build=0
  shift
fi
seconds="${1:-1800}"
case "$seconds" in
  '' | *[!0-9]*)
    echo "bench/soak.sh: SECONDS must be a whole number of seconds, not '$seconds'" >&2
    exit 2
    ;;
esac
command -v prometheus >/dev/null || { echo "bench/soak.sh: prometheus is not installed (Debian package prometheus)" >&2; exit 2; }

if [ "$build" = 1 ]; then
  # The soak runs the fakes and mig-sim found beside the exporter.
  cargo build --release --workspace --locked --lib --bins --examples
  cargo test --release --locked --test soak --no-run
fi

echo "bench/soak.sh: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg), \
commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), ${seconds} s at a 50 ms poll"
status=0
MIG_SOAK_SECONDS="$seconds" \
  MIG_SOAK_POLL_MS=50 \
  MIG_SOAK_MAX_GROWTH_KIB="${MIG_SOAK_MAX_GROWTH_KIB:-1024}" \
  MIG_SOAK_MIN_POLLS="${MIG_SOAK_MIN_POLLS:-$((seconds * 50 / 3))}" \
  cargo test --release --locked --test soak -- --nocapture --exact soak || status=$?
echo "bench/soak.sh: ended $(date -u '+%Y-%m-%d %H:%M:%S UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
exit "$status"
