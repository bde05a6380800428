#!/bin/sh
# See bench/README.md. Usage: bench/fleet.sh N [options]; options: --help
exec python3 "$(dirname "$0")/fleet.py" "$@"
