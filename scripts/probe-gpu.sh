#!/usr/bin/env bash
# probe-gpu.sh OUTDIR: records a real NVIDIA node's MIG state into OUTDIR, a
# fixture directory that tests/real_fixtures.rs replays.
#
# READ-ONLY. This script only queries. It never enables or disables MIG, never
# creates or destroys GPU or compute instances, never resets a GPU and never
# changes any setting: every nvidia-smi call below is a listing (-q, -L,
# --query-gpu, mig -lgip/-lgipp/-lgi/-lci/-lcip), and scripts/probe_nvml.py
# calls only NVML Get/Is queries. Safe on a node in production.
#
# What it writes, each command's stdout in its own file, its stderr beside it
# in NAME.stderr (when there was any) and its exit status in exit-codes.tsv
# (MIG-disabled GPUs make some listings fail, and that is worth recording):
#   nvidia-smi-q.xml      nvidia-smi -q -x
#   nvidia-smi-q.txt      nvidia-smi -q
#   nvidia-smi-L.txt      nvidia-smi -L
#   nvidia-smi-query.csv  nvidia-smi --query-gpu=... (identity, MIG mode, driver)
#   mig-lgip.txt          nvidia-smi mig -lgip
#   mig-lgipp.txt         nvidia-smi mig -lgipp
#   mig-lgi.txt           nvidia-smi mig -lgi
#   mig-lci.txt           nvidia-smi mig -lci
#   mig-lcip.txt          nvidia-smi mig -lcip
#   driver-version.txt    /proc/driver/nvidia/version
#   nvml.json             scripts/probe_nvml.py (NVML through NVIDIA's pynvml)
#   recorded.txt          when, on which kernel, with which tools
#
# Environment: NVIDIA_SMI (default nvidia-smi), PYTHON (default python3; when
# it cannot `import pynvml`, nvidia-ml-py $PYNVML_VERSION is installed into a
# temporary virtualenv that is removed afterwards).
set -uo pipefail

if [ $# -ne 1 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
  echo "usage: $0 OUTDIR   (read-only capture of this node's NVIDIA GPUs and MIG state)" >&2
  exit 2
fi
out="$1"
here="$(cd "$(dirname "$0")" && pwd)"
nvidia_smi="${NVIDIA_SMI:-nvidia-smi}"
python="${PYTHON:-python3}"
pynvml_version="${PYNVML_VERSION:-13.580.126}"

mkdir -p "$out" || { echo "$0: cannot create $out" >&2; exit 1; }
printf 'file\texit_code\tcommand\n' > "$out/exit-codes.tsv"

# record FILE COMMAND...: COMMAND's stdout into OUTDIR/FILE, its stderr into
# OUTDIR/FILE.stderr (dropped when empty), its exit status into exit-codes.tsv.
record() {
  local file="$1"
  shift
  "$@" > "$out/$file" 2> "$out/$file.stderr"
  local rc=$?
  [ -s "$out/$file.stderr" ] || rm -f "$out/$file.stderr"
  printf '%s\t%s\t%s\n' "$file" "$rc" "$*" >> "$out/exit-codes.tsv"
  return 0
}

record nvidia-smi-q.xml "$nvidia_smi" -q -x
record nvidia-smi-q.txt "$nvidia_smi" -q
record nvidia-smi-L.txt "$nvidia_smi" -L
record nvidia-smi-query.csv "$nvidia_smi" \
  --query-gpu=index,name,uuid,pci.bus_id,pci.device_id,mig.mode.current,mig.mode.pending,driver_version \
  --format=csv
record mig-lgip.txt "$nvidia_smi" mig -lgip
record mig-lgipp.txt "$nvidia_smi" mig -lgipp
record mig-lgi.txt "$nvidia_smi" mig -lgi
record mig-lci.txt "$nvidia_smi" mig -lci
record mig-lcip.txt "$nvidia_smi" mig -lcip
record driver-version.txt cat /proc/driver/nvidia/version

venv=""
cleanup() { if [ -n "$venv" ]; then rm -rf "$venv"; fi; }
trap cleanup EXIT
if ! "$python" -c 'import pynvml' 2>/dev/null; then
  venv="$(mktemp -d)"
  echo "$0: no pynvml in $python; installing nvidia-ml-py $pynvml_version into $venv (removed afterwards)" >&2
  if python3 -m venv "$venv" && "$venv/bin/pip" install --quiet --disable-pip-version-check \
    "nvidia-ml-py==$pynvml_version"; then
    python="$venv/bin/python"
  else
    echo "$0: could not install nvidia-ml-py; nvml.json will record the failure" >&2
  fi
fi
record nvml.json "$python" "$here/probe_nvml.py"

{
  echo "recorded_at_utc: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "kernel: $(uname -srm)"
  echo "nvidia_smi: $(command -v "$nvidia_smi" || echo "$nvidia_smi (not found)")"
  echo "python: $python"
  echo "probe: scripts/probe-gpu.sh"
} > "$out/recorded.txt"

echo "recorded into $out:" >&2
column -t -s $'\t' "$out/exit-codes.tsv" >&2 2>/dev/null || cat "$out/exit-codes.tsv" >&2
