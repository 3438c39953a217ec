#!/usr/bin/env bash
# Builds edgekernels and runs every test: unit, runtime, C API and the
# conformance suite once per backend (cpu, vulkan via lavapipe, opencl via PoCL
# here). Usage: tools/run_tests.sh [release|asan]
set -euo pipefail
cd "$(dirname "$0")/.."
preset="${1:-release}"
bash tools/setup.sh
# Vulkan loaders warn without a runtime dir; give them one.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/ek-runtime-$(id -u)}"
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
# Measured peaks are cached per device; tests never depend on them.
export EK_CACHE_DIR="${EK_CACHE_DIR:-$PWD/build-cache}"

# In CI every backend must really run: lavapipe and PoCL are installed above.
if [ "${CI:-}" = true ]; then export EK_REQUIRE_BACKENDS="${EK_REQUIRE_BACKENDS:-cpu,vulkan,opencl}"; fi
cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset" -j"$(nproc)"
status=0
ctest --preset "$preset" || status=$?
builddir=build; [ "$preset" = asan ] && builddir=build-asan
echo
echo "Conformance per backend:"
grep -h "^conformance\[" "$builddir/Testing/Temporary/LastTest.log" | sort -u || echo "  (no conformance summary found)"
exit $status
