#!/usr/bin/env bash
# aarch64 (ARM) conformance under qemu-user, reproducibly on an x86-64 Debian 12 host:
#   1. host build of the Halide generators (they run at build time),
#   2. cross build of libedgekernels + conformance_test for aarch64
#      (codegen/toolchains/aarch64-linux-gnu.cmake; GoogleTest built from
#      Debian's sources, Vulkan/OpenCL/benchmarks off),
#   3. conformance_test (CPU backend) under qemu-aarch64, once per CPU model:
#        max         NEON + dotprod: every ARM variant runs, halide_dotprod_int8 included
#        cortex-a53  ARMv8.0 NEON only: the dotprod variants must report "not
#                    applicable" and no baseline kernel may use a later instruction
#      plus the CPU unit tests (ARM_UNIT_TESTS) under each model,
# and prints the conformance counts per CPU model. Installs what it needs with
# apt-get when missing. Not part of CI (.ci/run): ~15 minutes on 2 cores
# (build 5, qemu runs 10).
#
# Environment: JOBS (build parallelism, default 2), ARM_QEMU_CPUS (default
# "max cortex-a53"), ARM_GTEST_FILTER (conformance cases, default: all),
# ARM_UNIT_TESTS (default: the CPU unit tests; "" for none), ARM_HOST_BUILD_DIR
# (default build-host), ARM_BUILD_DIR (default build-arm64), EK_CPU_THREADS.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

jobs=${JOBS:-2}
host_dir=${ARM_HOST_BUILD_DIR:-build-host}
arm_dir=${ARM_BUILD_DIR:-build-arm64}
qemu_cpus=${ARM_QEMU_CPUS:-max cortex-a53}
gtest_filter=${ARM_GTEST_FILTER:-*}
unit_tests=${ARM_UNIT_TESTS-runtime_test c_api_test foundation_ops_test matmul_q2_test cpu_halide_test selective_scan_test ssd_scan_test sparse_attention_test}
sysroot=/usr/aarch64-linux-gnu

packages=(
  build-essential cmake ninja-build
  libhalide14-0-dev llvm-14 nlohmann-json3-dev libcli11-dev libdlpack-dev
  libgtest-dev              # its sources (/usr/src/googletest) are built for aarch64
  g++-aarch64-linux-gnu qemu-user
)
bash "$(dirname "$0")/setup.sh" "${packages[@]}"

echo "== host generators ($host_dir)"
cmake -S . -B "$host_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DEK_BUILD_TESTS=OFF -DEK_BUILD_BENCH=OFF \
      -DEK_WITH_VULKAN=OFF -DEK_WITH_OPENCL=OFF >/dev/null
build() {  # build <dir> <targets...>: quiet, the log's tail on failure
  local dir=$1; shift
  ninja -C "$dir" -j"$jobs" "$@" >"$dir/arm_cross_test-build.log" 2>&1 ||
    { tail -n 40 "$dir/arm_cross_test-build.log"; echo "arm_cross_test: build failed in $dir" >&2; exit 1; }
  tail -n 1 "$dir/arm_cross_test-build.log"
}
build "$host_dir" edgekernels-halide_generators

echo "== aarch64 cross build ($arm_dir)"
cmake -S . -B "$arm_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release --no-warn-unused-cli \
      -DCMAKE_TOOLCHAIN_FILE=codegen/toolchains/aarch64-linux-gnu.cmake \
      -Dedgekernels-halide_generators_ROOT="$PWD/$host_dir/cmake" \
      -DEK_WITH_VULKAN=OFF -DEK_WITH_OPENCL=OFF -DEK_BUILD_BENCH=OFF -DEK_BUILD_TESTS=ON >/dev/null
build "$arm_dir" conformance_test $unit_tests
built=$(date +%s)

qemu=$(command -v qemu-aarch64 || command -v qemu-aarch64-static)
rc=0
summary=()
for cpu in $qemu_cpus; do
  log="$arm_dir/conformance-$cpu.log"
  echo "== conformance under qemu-aarch64 -cpu $cpu (log: $log)"
  t0=$(date +%s)
  set +e
  QEMU_LD_PREFIX=$sysroot EK_TEST_BACKENDS=cpu \
    "$qemu" -cpu "$cpu" "$arm_dir/tests/conformance_test" --gtest_filter="$gtest_filter" >"$log" 2>&1
  run_rc=$?
  set -e
  t1=$(date +%s)
  # Per variant: cases passed / failed / not applicable.
  awk '/^\[       OK \]/ {split($4, a, "."); ok[a[1]]++}
       /^\[  FAILED  \] [^0-9]/ && !/listed below/ {split($4, a, "."); if (!seen[$4]++) bad[a[1]]++}
       /^\[  SKIPPED \] [^0-9]/ && !/listed below/ {split($4, a, "."); if (!seen[$4]++) na[a[1]]++}
       END {for (v in ok) names[v]; for (v in bad) names[v]; for (v in na) names[v];
            for (v in names) printf "  %-40s %4d passed %3d failed %3d not applicable\n", v, ok[v], bad[v], na[v]}' \
      "$log" | sort
  line=$(grep -m1 '^conformance\[cpu\]' "$log" || echo "conformance[cpu]: no summary (exit code $run_rc)")
  echo "  $line ($((t1 - t0)) s)"
  summary+=("-cpu $cpu: $line ($((t1 - t0)) s)")
  if [ $run_rc -ne 0 ]; then
    rc=1
    grep -E '^\[  FAILED  \]|Failure|threw' "$log" | head -n 20 || true
  fi
  for t in $unit_tests; do
    t0=$(date +%s)
    set +e
    QEMU_LD_PREFIX=$sysroot EK_TEST_BACKENDS=cpu "$qemu" -cpu "$cpu" "$arm_dir/tests/$t" >"$arm_dir/$t-$cpu.log" 2>&1
    run_rc=$?
    set -e
    result=$(grep -E '^\[  PASSED  \]|^\[  FAILED  \] [0-9]' "$arm_dir/$t-$cpu.log" | tr '\n' ' ')
    echo "  $t: ${result:-no result (exit code $run_rc)}($(($(date +%s) - t0)) s)"
    if [ $run_rc -ne 0 ]; then
      rc=1
      summary+=("-cpu $cpu: $t FAILED (log: $arm_dir/$t-$cpu.log)")
    fi
  done
done

end=$(date +%s)
echo "== summary (build $((built - start)) s, total $((end - start)) s)"
printf '  %s\n' "${summary[@]}"
exit $rc
