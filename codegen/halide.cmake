# Halide glue. Every Halide AOT library of the project shares one runtime (one
# thread pool, one set of runtime symbols): ek_halide.runtime, made in codegen/.
#
# ek_add_halide_library(LIB FROM <generator target> GENERATOR <name>
#                       [TARGETS t1 ...] [AUTOSCHEDULER Halide::Adams2019]
#                       [PARAMS k=v ...] [FEATURES f ...] [EMIT_SCHEDULE])
# adds a static AOT library whose function is named LIB and links it into
# edgekernels. Targets default to EK_HALIDE_BASE_TARGET. EMIT_SCHEDULE also
# writes the schedule the autoscheduler chose to <build dir>/LIB.schedule.h.
function(ek_add_halide_library LIB)
  cmake_parse_arguments(ARG "EMIT_SCHEDULE" "FROM;GENERATOR;AUTOSCHEDULER" "TARGETS;PARAMS;FEATURES" ${ARGN})
  if(NOT ARG_TARGETS)
    set(ARG_TARGETS "${EK_HALIDE_BASE_TARGET}")
  endif()
  set(extra USE_RUNTIME ek_halide.runtime)
  if(ARG_AUTOSCHEDULER)
    list(APPEND extra AUTOSCHEDULER ${ARG_AUTOSCHEDULER})
  endif()
  if(ARG_FEATURES)
    list(APPEND extra FEATURES ${ARG_FEATURES})
  endif()
  if(ARG_EMIT_SCHEDULE)
    list(APPEND extra SCHEDULE schedule_file)
  endif()
  add_halide_library(${LIB} FROM ${ARG_FROM} GENERATOR ${ARG_GENERATOR}
                     TARGETS ${ARG_TARGETS} PARAMS ${ARG_PARAMS} ${extra})
  target_link_libraries(edgekernels PRIVATE ${LIB})
endfunction()

# ---------------------------------------------------------------------------
# Per-ISA variants.
#
# A CPU kernel ships as several AOT libraries of one generator: one per ISA
# (the runtime picks by the CPU profile, so a baseline variant always exists)
# and per schedule (hand-written, or the autoscheduler's). ISA names and what
# they compile for:
#   x86-64:  sse41 (baseline), avx2 (+fma, f16c), avx512 (Skylake-X set)
#   aarch64: neon (baseline), dotprod
# EK_HALIDE_ISAS lists the hand-scheduled ISAs of this architecture,
# EK_HALIDE_AUTO_ISAS the autoscheduled ones. The C++ side that registers the
# variants lists the same names per architecture (see kernels/rms_norm/rms_norm_cpu.cpp).
if(EK_ARCH_X86)
  set(EK_HALIDE_ISAS sse41 avx2 avx512)
  set(EK_HALIDE_AUTO_ISAS avx2 avx512)
elseif(EK_ARCH_ARM)
  set(EK_HALIDE_ISAS neon)
  set(EK_HALIDE_AUTO_ISAS neon)
else()
  set(EK_HALIDE_ISAS "")
  set(EK_HALIDE_AUTO_ISAS "")
endif()

# The autoscheduler and the machine it assumes: parallelism (cores), last-level
# cache bytes, and the cost of a load relative to arithmetic (Halide 14's
# MachineParams). Adams2019 uses its built-in cost model weights.
set(EK_HALIDE_AUTOSCHEDULER "Halide::Adams2019" CACHE STRING
    "Autoscheduler plugin target for the halide_auto_* variants (Halide::Adams2019 or Halide::Mullapudi2016)")
set(EK_HALIDE_MACHINE_PARAMS "8,16777216,40" CACHE STRING
    "Halide machine_params for the autoscheduler: parallelism,llc_bytes,balance")

# ek_halide_isa_target(<isa> <out-var>): the Halide target of an ISA name.
function(ek_halide_isa_target ISA OUT)
  if(ISA STREQUAL "sse41" OR ISA STREQUAL "neon")
    set(t "${EK_HALIDE_BASE_TARGET}")
  elseif(ISA STREQUAL "avx2")
    set(t "${EK_HALIDE_AVX2_TARGET}")
  elseif(ISA STREQUAL "avx512")
    set(t "${EK_HALIDE_AVX512_TARGET}")
  elseif(ISA STREQUAL "avx512_vnni")
    set(t "${EK_HALIDE_AVX512_VNNI_TARGET}")
  elseif(ISA STREQUAL "dotprod")
    set(t "${EK_HALIDE_DOTPROD_TARGET}")
  endif()
  if(NOT t)
    message(FATAL_ERROR "ek_halide_isa_target: no Halide target for ISA '${ISA}' on ${CMAKE_SYSTEM_PROCESSOR}")
  endif()
  set(${OUT} "${t}" PARENT_SCOPE)
endfunction()

# ek_add_halide_variants(<prefix> FROM <generator target> GENERATOR <name>
#                        [PARAMS k=v ...]       instantiation, for every variant
#                        [HAND_PARAMS k=v ...]  schedule knobs of the hand variants
#                        [ISAS isa ...]         default EK_HALIDE_ISAS
#                        [AUTO_ISAS isa ...]    default EK_HALIDE_AUTO_ISAS
#                        [AUTOSCHEDULER tgt]    default EK_HALIDE_AUTOSCHEDULER
#                        [NO_AUTO])
# adds, linked into edgekernels, the AOT libraries
#   <prefix>_<isa>        hand schedule, one per ISA
#   <prefix>_auto_<isa>   autoscheduled (EK_HALIDE_AUTOSCHEDULER), one per AUTO_ISA;
#                         the chosen schedule is kept as <lib>.schedule.h in the build dir
# each with its function (and header <lib>.h) named like the library. All take
# a leading user_context argument: kernels pass a per-call context that
# collects Halide's error messages (backends/cpu/halide_call.h).
function(ek_add_halide_variants PREFIX)
  cmake_parse_arguments(ARG "NO_AUTO" "FROM;GENERATOR;AUTOSCHEDULER" "PARAMS;HAND_PARAMS;ISAS;AUTO_ISAS" ${ARGN})
  if(NOT ARG_AUTOSCHEDULER)
    set(ARG_AUTOSCHEDULER ${EK_HALIDE_AUTOSCHEDULER})
  endif()
  if(NOT ARG_ISAS)
    set(ARG_ISAS ${EK_HALIDE_ISAS})
  endif()
  if(NOT ARG_AUTO_ISAS)
    set(ARG_AUTO_ISAS ${EK_HALIDE_AUTO_ISAS})
  endif()
  if(ARG_NO_AUTO)
    set(ARG_AUTO_ISAS "")
  endif()
  foreach(isa IN LISTS ARG_ISAS)
    ek_halide_isa_target(${isa} target)
    ek_add_halide_library(${PREFIX}_${isa} FROM ${ARG_FROM} GENERATOR ${ARG_GENERATOR}
                          TARGETS ${target} FEATURES user_context
                          PARAMS ${ARG_PARAMS} ${ARG_HAND_PARAMS})
  endforeach()
  foreach(isa IN LISTS ARG_AUTO_ISAS)
    ek_halide_isa_target(${isa} target)
    ek_add_halide_library(${PREFIX}_auto_${isa} FROM ${ARG_FROM} GENERATOR ${ARG_GENERATOR}
                          TARGETS ${target} FEATURES user_context
                          AUTOSCHEDULER ${ARG_AUTOSCHEDULER} EMIT_SCHEDULE
                          PARAMS ${ARG_PARAMS} machine_params=${EK_HALIDE_MACHINE_PARAMS})
  endforeach()
endfunction()

# ek_halide_generator_f16(<generator target>): lets the generator include
# codegen/halide_f16.h and embeds in it the f16 -> f32 conversion bitcode of
# codegen/halide_f16.ll.in for x86-64 and AArch64 (assembled by LLVM 14's
# llvm-as, from llvm-14, which Halide's packages depend on), defining
# EK_HALIDE_F16: the generator's pipelines then convert f16 with vcvtph2ps
# (F16C targets) or fcvtl (AArch64). Without llvm-as the generators keep
# their software conversion. It also embeds codegen/halide_x86_math.ll.in
# (exp2 with vscalefps, codegen/halide_x86_math.h) for the AVX-512 builds.
# In a cross build the generator comes from the host build (not a target
# here): nothing to do.
find_program(EK_LLVM_AS NAMES llvm-as-14 llvm-as HINTS /usr/lib/llvm-14/bin)
function(ek_halide_generator_f16 GEN)
  if(NOT TARGET ${GEN})
    return()
  endif()
  target_include_directories(${GEN} PRIVATE "${PROJECT_SOURCE_DIR}")
  if(NOT EK_LLVM_AS)
    message(STATUS "${GEN}: llvm-as not found, f16 kept in software conversion")
    return()
  endif()
  # Data layout and triple as Halide 14 sets them for each architecture's
  # modules (a mismatch makes LLVM's linker warn).
  set(layout_x86_64 "e-m:e-p270:32:32-p271:32:32-p272:64:64-i64:64-f80:128-n8:16:32:64-S128")
  set(triple_x86_64 "x86_64-unknown-linux-gnu")
  set(layout_aarch64 "e-m:e-i8:8:32-i16:16:32-i64:64-i128:128-n32:64-S128")
  set(triple_aarch64 "aarch64--linux-gnueabihf")
  # Each bitcode file per architecture it is written for: the f16 conversion
  # for both, exp2 with vscalefps (codegen/halide_x86_math.h) for x86-64 only.
  set(files "")
  foreach(item IN ITEMS f16:x86_64 f16:aarch64 x86_math:x86_64)
    string(REPLACE ":" ";" parts "${item}")
    list(GET parts 0 what)
    list(GET parts 1 arch)
    set(EK_LLVM_DATALAYOUT "${layout_${arch}}")
    set(EK_LLVM_TRIPLE "${triple_${arch}}")
    set(ll "${CMAKE_CURRENT_BINARY_DIR}/${GEN}_${what}_${arch}.ll")
    set(bc "${CMAKE_CURRENT_BINARY_DIR}/${GEN}_${what}_${arch}.bc")
    configure_file("${PROJECT_SOURCE_DIR}/codegen/halide_${what}.ll.in" "${ll}" @ONLY)
    add_custom_command(OUTPUT "${bc}"
      COMMAND "${EK_LLVM_AS}" "${ll}" -o "${bc}"
      DEPENDS "${ll}"
      COMMENT "Assembling codegen/halide_${what}.ll.in (${arch}) for ${GEN}"
      VERBATIM)
    list(APPEND files "halide/${what}_${arch}.bc=${bc}")
  endforeach()
  ek_embed_files(${GEN} ${GEN}_f16 FILES ${files})
  target_sources(${GEN} PRIVATE "${PROJECT_SOURCE_DIR}/codegen/embedded.cpp")
  target_compile_definitions(${GEN} PRIVATE EK_HALIDE_F16=1)
endfunction()
