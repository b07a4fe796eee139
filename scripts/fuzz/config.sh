#!/usr/bin/env bash
# Long run of the control-file parser fuzz test: ITERATIONS mutated files from SEED.
# Usage: scripts/fuzz/config.sh [ITERATIONS] [SEED]
set -euo pipefail
cd "$(dirname "$0")/../.."
WARDEN_FUZZ_ITERATIONS=${1:-20000} WARDEN_FUZZ_SEED=${2:-$RANDOM} \
    swift test --filter "FuzzTests/mutatedFilesNeverCrashOrHang"
