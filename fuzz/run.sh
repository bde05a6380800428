#!/usr/bin/env bash
# Builds the cargo-fuzz targets and runs each for MIG_FUZZ_SECONDS seconds
# (default 20), starting from the committed corpus in fuzz/corpus/<target>.
# What the run adds to the corpus goes to a temporary directory and is thrown
# away, so the committed seeds stay small and reviewed. A crash, a failed
# property or a hang fails the script and prints the input that caused it.
#
#   bash fuzz/run.sh                       # every target
#   MIG_FUZZ_SECONDS=600 bash fuzz/run.sh mig_config
set -euo pipefail
cd "$(dirname "$0")/.."

target_dir="${CARGO_TARGET_DIR:-target}"
mkdir -p "$target_dir"
target_dir="$(cd "$target_dir" && pwd)"

# cargo-fuzz from crates.io, installed once under the target directory.
cargo_fuzz_version=0.13.2
tools="$target_dir/tools"
if ! "$tools/bin/cargo-fuzz" --version 2>/dev/null | grep -qx "cargo-fuzz $cargo_fuzz_version"; then
  echo "==> installing cargo-fuzz $cargo_fuzz_version into $tools"
  cargo install --locked --quiet --root "$tools" "cargo-fuzz@$cargo_fuzz_version"
fi
export PATH="$tools/bin:$PATH"
# cargo-fuzz passes nightly-only flags (-Z sanitizer, sanitizer coverage);
# this lets the stable toolchain accept them, so no nightly is needed.
export RUSTC_BOOTSTRAP=1

# An unoptimized build takes a fraction of an optimized one's time and still
# runs thousands of inputs a second; AddressSanitizer stays on for the unsafe
# code underneath (unsafe-libyaml behind the YAML parser). Its own target
# directory, so it does not invalidate the main build.
fuzz_args=(--dev --fuzz-dir fuzz --target-dir "$target_dir/fuzz")
echo "==> cargo fmt --check (fuzz targets)"
cargo fmt --manifest-path fuzz/Cargo.toml -- --check
echo "==> cargo fuzz build"
cargo fuzz build "${fuzz_args[@]}"

binaries="$target_dir/fuzz/$(rustc -vV | sed -n 's/^host: //p')/debug"
seconds="${MIG_FUZZ_SECONDS:-20}"
artifacts="$target_dir/fuzz-artifacts"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$artifacts"

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list --fuzz-dir fuzz)
fi
for target in "${targets[@]}"; do
  echo "==> fuzzing $target for ${seconds}s"
  mkdir -p "$work/$target"
  rm -f "$artifacts/$target"-*
  log="$work/$target.log"
  # The libFuzzer binary itself: `cargo fuzz run` would only check the build
  # again. ASAN_OPTIONS as cargo-fuzz sets it: ASan's one-definition-rule
  # check reports false violations in Rust programs.
  if ASAN_OPTIONS=detect_odr_violation=0 "$binaries/$target" "$work/$target" "fuzz/corpus/$target" \
    -max_total_time="$seconds" -timeout=30 -artifact_prefix="$artifacts/$target-" >"$log" 2>&1; then
    grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1 || true
  else
    tail -n 60 "$log"
    echo "FAILED: fuzz target $target; the input that failed it:"
    ls -1 "$artifacts/$target"-* 2>/dev/null || echo "  (none written; see the log above)"
    echo "Replay: $binaries/$target FILE"
    exit 1
  fi
done
