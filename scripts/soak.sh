#!/usr/bin/env bash
# The soak (tests/soak.rs): the exporter in NVML mode on fake-nvml and
# fake-dcgm, scraped every second by a real Prometheus, while MIG is
# reconfigured, the node rebooted, the DCGM host engine restarted and pods
# churned at random. Fails with a message saying what went wrong.
#
#   scripts/soak.sh [SECONDS]    default 120 (at least 64), or $MIG_SOAK_SECONDS
#   MIG_SOAK_SEED=N scripts/soak.sh    replays a run (the seed is printed)
#
# Needs `prometheus` (Debian package prometheus; scripts/test.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-${MIG_SOAK_SECONDS:-120}}"
case "$seconds" in
  '' | *[!0-9]*)
    echo "soak.sh: SECONDS must be a whole number of seconds, not '$seconds'" >&2
    exit 2
    ;;
esac
command -v prometheus >/dev/null || { echo "soak.sh: prometheus is not installed (Debian package prometheus)" >&2; exit 2; }

# The soak runs the fakes and binaries built beside the exporter. Clippy's
# --all-targets leaves out a test that `cargo test` does not run: lint it here.
cargo build --workspace --locked --lib --bins --examples
cargo clippy --workspace --locked --test soak -- -D warnings
MIG_SOAK_SECONDS="$seconds" exec cargo test --workspace --locked --test soak -- --nocapture
