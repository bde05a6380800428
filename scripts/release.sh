#!/usr/bin/env bash
# Builds the release tarball of mig-exporter for this machine's architecture:
#   mig-exporter-VERSION-linux-ARCH.tar.gz  the binary, LICENSE, README.md,
#       CHANGELOG.md, docs/*.md (the alerts' runbooks, the stability promise),
#       dashboards/, alerts/mig-exporter.rules.yml and systemd/ (the units of
#       deploy/systemd), under one top directory, plus BUILD-INFO
#   sha256sums.txt                          its SHA-256, for `sha256sum -c`
# VERSION is Cargo.toml's. The binary links glibc dynamically (NVML and DCGM
# are loaded with dlopen, which a static musl binary cannot do with the
# driver's glibc libraries); BUILD-INFO and the script's last line name the
# oldest glibc it runs on, read off the symbol versions it needs. Build on the
# oldest distribution you deploy to.
#
#   scripts/release.sh [--out DIR] [--binary PATH]
#     --out DIR      where the tarball and sha256sums.txt go
#                    (default: ${CARGO_TARGET_DIR:-target}/release-dist)
#     --binary PATH  package this already-built mig-exporter instead of running
#                    `cargo build --release --locked --bin mig-exporter` (the
#                    Dockerfile's build command; tests/release.rs passes the
#                    test build's binary, so CI builds nothing more for it)
#
# Needs bash, GNU tar, gzip, sha256sum and, without --binary, cargo.
set -euo pipefail
cd "$(dirname "$0")/.."

die() {
  echo "scripts/release.sh: $*" >&2
  exit 1
}

out=""
binary=""
while [ $# -gt 0 ]; do
  case "$1" in
    --out) [ $# -ge 2 ] || die "--out needs a directory"; out="$2"; shift 2 ;;
    --out=*) out="${1#--out=}"; shift ;;
    --binary) [ $# -ge 2 ] || die "--binary needs a path"; binary="$2"; shift 2 ;;
    --binary=*) binary="${1#--binary=}"; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done
target_dir="${CARGO_TARGET_DIR:-target}"
out="${out:-$target_dir/release-dist}"

# The workspace version: the first `version = "..."` of [workspace.package].
version="$(sed -n '/^\[workspace\.package\]/,/^\[/ s/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml | head -1)"
[ -n "$version" ] || die "Cargo.toml: no version in [workspace.package]"

revision="$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
if [ -z "$binary" ]; then
  # The revision goes into mig_exporter_build_info (src/lib.rs).
  MIG_EXPORTER_REVISION="$revision" cargo build --release --locked --bin mig-exporter
  binary="$target_dir/release/mig-exporter"
fi
[ -f "$binary" ] || die "--binary $binary: no such file"
[ -x "$binary" ] || die "--binary $binary: not executable"

# The architecture from the ELF header (e_machine, bytes 18-19, little endian),
# so a binary built for another machine is named for the one it runs on.
magic="$(od -An -tx1 -N4 "$binary" | tr -d ' \n')"
[ "$magic" = "7f454c46" ] || die "--binary $binary: not an ELF executable"
machine="$(od -An -tu2 -j18 -N2 --endian=little "$binary" | tr -d ' \n')"
case "$machine" in
  62) arch=x86_64 ;;
  183) arch=aarch64 ;;
  *) die "--binary $binary: ELF machine $machine is neither x86_64 (62) nor aarch64 (183)" ;;
esac

# A stale binary would ship under the wrong name: --version must say this version.
if [ "$arch" = "$(uname -m)" ]; then
  reported="$("$binary" --version 2>&1 | head -1)" || die "--binary $binary: --version failed: $reported"
  case " $reported " in
    *" $version "* | *" v$version "*) ;;
    *) die "--binary $binary: --version says '$reported', but Cargo.toml's version is $version" ;;
  esac
fi

# The newest glibc symbol version the binary asks for is the oldest glibc it runs on.
glibc="$(LC_ALL=C grep -aoE 'GLIBC_[0-9]+(\.[0-9]+)+' "$binary" | sed 's/^GLIBC_//' | sort -uV | tail -1 || true)"
[ -n "$glibc" ] || die "--binary $binary: no glibc symbol versions found (not a glibc build?)"

name="mig-exporter-$version-linux-$arch"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
top="$stage/$name"
mkdir -p "$top/alerts" "$top/systemd" "$top/docs"
install -m 0755 "$binary" "$top/mig-exporter"
install -m 0644 LICENSE README.md CHANGELOG.md "$top/"
install -m 0644 docs/*.md "$top/docs/"
# The rules only: alerts/tests holds their promtool tests.
install -m 0644 alerts/mig-exporter.rules.yml "$top/alerts/"
install -m 0644 deploy/systemd/*.service "$top/systemd/"
cp -R dashboards "$top/dashboards"
chmod -R u=rwX,go=rX "$top/dashboards"
{
  echo "version: $version"
  echo "revision: $revision"
  echo "target: $arch-unknown-linux-gnu"
  echo "minimum glibc: $glibc"
  echo "rustc: $(rustc --version 2>/dev/null || echo unknown)"
} > "$top/BUILD-INFO"
chmod 0644 "$top/BUILD-INFO"

# The same tree gives the same bytes: sorted names, no owner, one mtime (the
# commit's, or SOURCE_DATE_EPOCH), gzip without a name or a time stamp.
epoch="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}"
mkdir -p "$out"
tarball="$name.tar.gz"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" -C "$stage" -cf - "$name" \
  | gzip -n > "$out/$tarball.part"
mv "$out/$tarball.part" "$out/$tarball"
(cd "$out" && sha256sum "$tarball" > sha256sums.txt)
echo "$out/$tarball (glibc $glibc or newer)"
