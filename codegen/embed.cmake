# ek_embed_files(TARGET SYMBOL FILES name=path[+path...] ...)
# (path+path: the files concatenated under one name, e.g. a shared prelude.)
# Generates a C++ source embedding the files and adds it to TARGET. May be
# called from any directory (kernels/<op>/, backends/<name>/): a custom
# command only runs for targets of its own directory, so a custom target
# here generates the file and TARGET depends on it.
function(ek_embed_files TARGET SYMBOL)
  cmake_parse_arguments(ARG "" "" "FILES" ${ARGN})
  set(out "${CMAKE_CURRENT_BINARY_DIR}/embedded_${SYMBOL}.cpp")
  set(deps "")
  foreach(pair IN LISTS ARG_FILES)
    string(REGEX REPLACE "^[^=]*=" "" paths "${pair}")
    string(REPLACE "+" ";" paths "${paths}")
    list(APPEND deps ${paths})
  endforeach()
  add_custom_command(OUTPUT "${out}"
    COMMAND ek_embed_files "${out}" "${SYMBOL}" ${ARG_FILES}
    DEPENDS ek_embed_files ${deps}
    COMMENT "Embedding ${SYMBOL}"
    VERBATIM)
  add_custom_target(ek_embed_${SYMBOL} DEPENDS "${out}")
  add_dependencies(${TARGET} ek_embed_${SYMBOL})
  target_sources(${TARGET} PRIVATE "${out}")
endfunction()
