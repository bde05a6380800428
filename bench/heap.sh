#!/bin/sh
# See bench/README.md. Options: --help, CYCLES, --fake-nvml FILE
exec python3 "$(dirname "$0")/heap.py" "$@"
