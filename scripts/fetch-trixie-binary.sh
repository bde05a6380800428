#!/usr/bin/env bash
# Fetches one binary out of a Debian trixie package into DEST_DIR, without
# installing anything system-wide: the package's .deb is downloaded from the
# Debian mirror this machine's apt already uses, with a private apt state
# (its own sources, lists and cache under a temporary directory), and only
# ./usr/bin/BINARY is extracted (and the package's version, into
# DEST_DIR/BINARY.deb-version). Does nothing when DEST_DIR/BINARY exists.
# Used by scripts/test.sh (vmagent) and bench/fleet.py (victoria-metrics).
#
# Usage: scripts/fetch-trixie-binary.sh PACKAGE BINARY DEST_DIR
set -euo pipefail

if [ $# -ne 3 ]; then
  echo "usage: $0 PACKAGE BINARY DEST_DIR" >&2
  exit 2
fi
package="$1" binary="$2" dest="$3"
[ -x "$dest/$binary" ] && exit 0

sources=/etc/apt/sources.list.d/debian.sources
if [ ! -r "$sources" ]; then
  echo "$0: $sources is missing, so Debian trixie's $package cannot be fetched for $binary" >&2
  exit 1
fi
echo "==> fetching $binary (Debian trixie's $package) into $dest"
mkdir -p "$dest"
dest="$(cd "$dest" && pwd)"
apt_dir="$(mktemp -d)"
trap 'rm -rf "$apt_dir"' EXIT
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/parts"
sed 's/bookworm-updates//; s/bookworm-security/trixie-security/; s/bookworm/trixie/' "$sources" \
  > "$apt_dir/parts/trixie.sources"
apt_private=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$apt_dir/parts"
  -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache" -o APT::Sandbox::User=root)
apt-get "${apt_private[@]}" update -qq
(cd "$apt_dir" && apt-get "${apt_private[@]}" download "$package" >/dev/null)
deb="$(echo "$apt_dir"/"${package}"_*.deb)"
dpkg-deb --fsys-tarfile "$deb" | tar -xO "./usr/bin/$binary" > "$dest/$binary.part"
# Debian's build leaves the binary's own version string empty: keep the package's beside it.
dpkg-deb -f "$deb" Version > "$dest/$binary.deb-version"
chmod 755 "$dest/$binary.part"
mv "$dest/$binary.part" "$dest/$binary"
