#!/usr/bin/env bash
# The heap of a node that keeps changing (bench/README.md, "Accelerated soak
# and allocator"): the release exporter in NVML mode on fake-nvml and
# fake-dcgm, run under heaptrack while mig-sim reboots the node (the H100s
# lose MIG mode and every instance) and recreates its layout CYCLES times,
# with a scrape after each. It prints heaptrack's totals and the call
# stacks of what was still allocated at exit: memory kept per reconfiguration
# shows there with a size that grows with CYCLES (run it twice to compare).
#
#   bench/heap.sh [--no-build] [CYCLES]    default 100
#
# Needs heaptrack (Debian package heaptrack) and curl.
set -euo pipefail
cd "$(dirname "$0")/.."

build=1
if [ "${1:-}" = "--no-build" ]; then
  build=0
  shift
fi
cycles="${1:-100}"
case "$cycles" in
  '' | *[!0-9]*)
    echo "bench/heap.sh: CYCLES must be a whole number, not '$cycles'" >&2
    exit 2
    ;;
esac
for tool in heaptrack heaptrack_print curl; do
  command -v "$tool" >/dev/null || { echo "bench/heap.sh: $tool is not installed (Debian package ${tool%_print})" >&2; exit 2; }
done
if [ "$build" = 1 ]; then
  cargo build --release --workspace --locked --lib --bins
fi
release="${CARGO_TARGET_DIR:-target}/release"

work="$(mktemp -d)"
heaptrack_pid=
cleanup() {
  [ -n "$heaptrack_pid" ] && pkill -f "^$release/mig-exporter --nvml" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

export MIG_WORLD="$work/world.json"
sim() { "$release/mig-sim" "$@" >/dev/null; }
# tests/soak.rs's layout: 3g.40gb, 2g.20gb and two 1g.10gb, each with a compute instance.
layout() {
  for gpu in 0 1; do
    sim -i "$gpu" -mig 1
    sim -i "$gpu" mig -cgi 9,14,19,19 -C
  done
}
sim init --gpus 2 --product h100-80gb "$MIG_WORLD"
layout

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
heaptrack -o "$work/heap" "$release/mig-exporter" --nvml \
  --nvml.library "$release/libfake_nvml.so" --dcgm.library "$release/libfake_dcgm.so" \
  --no-kubelet --poll.interval=50ms --web.listen-address="127.0.0.1:$port" \
  >"$work/log" 2>&1 &
heaptrack_pid=$!
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$port/metrics" >/dev/null && break
  sleep 0.1
done
echo "bench/heap.sh: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), $cycles reboots and layouts"
for _ in $(seq "$cycles"); do
  sim reboot
  sleep 0.2
  layout
  sleep 0.2
  curl -sf "http://127.0.0.1:$port/metrics" >/dev/null
done
# heaptrack runs the exporter as its child and writes its file when it ends.
pkill -INT -f "^$release/mig-exporter --nvml"
wait "$heaptrack_pid" || true
heaptrack_pid=
heaptrack_print --print-leaks 1 --print-peaks 0 --print-allocators 0 --print-temporary 0 \
  --peak-limit 10 --sub-peak-limit 3 "$work"/heap.*
