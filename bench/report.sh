#!/bin/sh
# See bench/README.md. Options: --help, --quick (a smoke run), --no-build, --update-docs
exec python3 "$(dirname "$0")/report.py" "$@"
