# Halide glue. Every Halide AOT library of the project shares one runtime (one
# thread pool, one set of runtime symbols), created by the first library added.
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
  get_property(rt GLOBAL PROPERTY EK_HALIDE_RUNTIME)
  set(extra "")
  if(rt)
    list(APPEND extra USE_RUNTIME ${rt})
  endif()
  if(ARG_AUTOSCHEDULER)
    list(APPEND extra AUTOSCHEDULER ${ARG_AUTOSCHEDULER})
  endif()
  if(ARG_FEATURES)
    list(APPEND extra FEATURES ${ARG_FEATURES})
  endif()
  add_halide_library(${LIB} FROM ${ARG_FROM} GENERATOR ${ARG_GENERATOR}
                     TARGETS ${ARG_TARGETS} PARAMS ${ARG_PARAMS} ${extra})
  if(NOT rt)
    set_property(GLOBAL PROPERTY EK_HALIDE_RUNTIME ${LIB}.runtime)
    set_target_properties(${LIB}.runtime PROPERTIES POSITION_INDEPENDENT_CODE ON)
  endif()
  target_link_libraries(edgekernels PRIVATE ${LIB})
endfunction()
