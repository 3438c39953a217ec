# Cross build for 64-bit Arm Linux with Debian's g++-aarch64-linux-gnu.
# tools/arm_cross_test.sh does all of this and runs the tests under qemu-aarch64.
#
# Halide generators run at build time, so they come from a native (host)
# build of this project:
#   cmake -S . -B build-host -G Ninja -DCMAKE_BUILD_TYPE=Release -DEK_BUILD_TESTS=OFF -DEK_BUILD_BENCH=OFF \
#         -DEK_WITH_VULKAN=OFF -DEK_WITH_OPENCL=OFF
#   ninja -C build-host edgekernels-halide_generators
#   cmake -S . -B build-arm64 -G Ninja -DCMAKE_BUILD_TYPE=Release \
#         -DCMAKE_TOOLCHAIN_FILE=codegen/toolchains/aarch64-linux-gnu.cmake \
#         -Dedgekernels-halide_generators_ROOT=$PWD/build-host/cmake \
#         -DEK_WITH_VULKAN=OFF -DEK_WITH_OPENCL=OFF -DEK_BUILD_BENCH=OFF
#   ninja -C build-arm64 edgekernels conformance_test
#   QEMU_LD_PREFIX=/usr/aarch64-linux-gnu EK_TEST_BACKENDS=cpu \
#     qemu-aarch64 -cpu max build-arm64/tests/conformance_test
# The Halide kernels are compiled for the arm-64-linux targets of the top
# CMakeLists (EK_HALIDE_BASE_TARGET, EK_HALIDE_DOTPROD_TARGET). The tests build
# GoogleTest from Debian's sources (/usr/src/googletest, tests/CMakeLists.txt);
# EK_BUILD_BENCH=OFF: Google Benchmark is not installed for the target.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
# Header-only and build-tool packages (Halide's CMake helpers and runtime
# headers, nlohmann_json, CLI11) are architecture independent: take the host's.
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)
# Debian installs Halide's CMake package under the host's multiarch directory,
# which a cross build does not search.
if(NOT Halide_DIR)
  execute_process(COMMAND gcc -dumpmachine OUTPUT_VARIABLE ek_host_multiarch
                  OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  if(NOT ek_host_multiarch)
    set(ek_host_multiarch x86_64-linux-gnu)
  endif()
  set(Halide_DIR /usr/lib/${ek_host_multiarch}/cmake/Halide14 CACHE PATH "Halide's CMake package (host)")
  set(HalideHelpers_DIR /usr/lib/${ek_host_multiarch}/cmake/HalideHelpers14 CACHE PATH "Halide's CMake helpers (host)")
endif()
