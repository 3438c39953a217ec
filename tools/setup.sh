#!/usr/bin/env bash
# Installs what edgekernels needs on Debian 12, non-interactively, only when
# something is missing. Safe to run repeatedly.
# Usage: tools/setup.sh [PACKAGE...]  (default: the project's packages below;
# other scripts pass their own list, e.g. tools/arm_cross_test.sh)
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config
  libhalide14-0-dev llvm-14   # llvm-14: llvm-as for codegen/halide_f16.ll.in
  libvulkan-dev glslc glslang-tools spirv-tools vulkan-tools mesa-vulkan-drivers
  ocl-icd-opencl-dev opencl-headers opencl-clhpp-headers pocl-opencl-icd clinfo
  libgtest-dev libbenchmark-dev nlohmann-json3-dev libcli11-dev libdlpack-dev
)
if [ $# -gt 0 ]; then packages=("$@"); fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "edgekernels setup: installing ${missing[*]}"
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo_cmd=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
