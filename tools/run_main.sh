#!/usr/bin/env bash
# The main job: build, list every detected device with its measured peaks,
# then a quick benchmark sweep of every op on every device, as a table.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/ek-runtime-$(id -u)}"
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
cmake --preset release >/dev/null
cmake --build --preset release -j"$(nproc)"
./build/tools/ek devices
echo
./build/tools/ek bench --preset quick --min-time 0.05 "$@"
