#!/usr/bin/env bash
# Runs every test of the project, as CI does. Installs what it needs on a
# fresh Debian machine first: Prometheus's promtool and Chromium (Debian
# packages), Prometheus and Alertmanager (Debian packages, for the dashboard and
# alert tests), libclang (Debian package libclang-dev, for bindgen), rustfmt and
# clippy (rustup components).
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v promtool >/dev/null || missing+=(prometheus)
# Prometheus itself (same package) and Alertmanager, for tests/monitoring.rs:
# dashboards and alert rules end to end.
command -v prometheus >/dev/null || missing+=(prometheus)
command -v prometheus-alertmanager >/dev/null || missing+=(prometheus-alertmanager)
command -v chromium >/dev/null || missing+=(chromium)
# python3 with venv, for NVIDIA's pynvml in fake-nvml's ABI test.
command -v python3 >/dev/null || missing+=(python3)
python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
# libclang for bindgen, which regenerates the DCGM bindings to check them.
dpkg-query -W -f='${Status}' libclang-dev 2>/dev/null | grep -q 'ok installed' || missing+=(libclang-dev)
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing ${missing[*]} (Debian packages)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
for component in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$component" || rustup component add "$component"
done

# NVIDIA's Python binding (PyPI nvidia-ml-py, module pynvml) in a virtualenv
# under the target directory; crates/fake-nvml/tests/pynvml.rs runs it from
# MIG_TEST_PYTHON. Installed once, then only checked.
pyvenv="${CARGO_TARGET_DIR:-target}/pyvenv"
pynvml_version=13.580.126
if ! "$pyvenv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('nvidia-ml-py') != '$pynvml_version')" 2>/dev/null; then
  echo "==> installing nvidia-ml-py $pynvml_version into $pyvenv"
  python3 -m venv "$pyvenv"
  "$pyvenv/bin/pip" install --quiet --disable-pip-version-check "nvidia-ml-py==$pynvml_version"
fi
MIG_TEST_PYTHON="$(cd "$pyvenv" && pwd)/bin/python"
export MIG_TEST_PYTHON

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "==> cargo build"
# Tests run the built artifacts (libfake_nvml.so, libfake_dcgm.so, the binaries,
# examples/state_writer):
# build them all first, whatever subset a test binary's own dependencies pull in.
cargo build --workspace --locked --lib --bins --examples
echo "==> cargo test"
cargo test --workspace --locked
echo "==> DCGM bindings match src/source/dcgm/dcgm_api.h"
# bindgen regenerates them (cargo feature dcgm-bindgen); a default build uses
# the committed src/source/dcgm/bindings.rs and needs no libclang.
cargo clippy --locked -p mig-exporter --features dcgm-bindgen --test dcgm_bindings -- -D warnings
cargo test --locked -p mig-exporter --features dcgm-bindgen --test dcgm_bindings
