#!/bin/sh
# See bench/README.md. Options: --help, --quick (10 s phases), --duration N
exec python3 "$(dirname "$0")/footprint.py" "$@"
