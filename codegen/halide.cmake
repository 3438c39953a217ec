# Halide glue. Every Halide AOT library of the project shares one runtime (one
# thread pool, one set of runtime symbols): ek_halide.runtime, made in codegen/.
#
# ek_add_halide_library(LIB FROM <generator target> GENERATOR <name>
#                       [TARGETS t1 ...] [AUTOSCHEDULER Halide::Adams2019]
#                       [PARAMS k=v ...])
# adds a static AOT library whose function is named LIB and links it into
# edgekernels. Targets default to EK_HALIDE_BASE_TARGET.
function(ek_add_halide_library LIB)
  cmake_parse_arguments(ARG "" "FROM;GENERATOR;AUTOSCHEDULER" "TARGETS;PARAMS;FEATURES" ${ARGN})
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
  add_halide_library(${LIB} FROM ${ARG_FROM} GENERATOR ${ARG_GENERATOR}
                     TARGETS ${ARG_TARGETS} PARAMS ${ARG_PARAMS} ${extra})
  target_link_libraries(edgekernels PRIVATE ${LIB})
endfunction()
