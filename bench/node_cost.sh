#!/bin/sh
# See bench/README.md. Options: --help
exec python3 "$(dirname "$0")/node_cost.py" "$@"
