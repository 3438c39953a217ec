# ek_embed_files(TARGET SYMBOL FILES name=path ...)
# Generates a C++ source embedding the files and adds it to TARGET.
function(ek_embed_files TARGET SYMBOL)
  cmake_parse_arguments(ARG "" "" "FILES" ${ARGN})
  set(out "${CMAKE_CURRENT_BINARY_DIR}/embedded_${SYMBOL}.cpp")
  set(deps "")
  foreach(pair IN LISTS ARG_FILES)
    string(REGEX REPLACE "^[^=]*=" "" path "${pair}")
    list(APPEND deps "${path}")
  endforeach()
  add_custom_command(OUTPUT "${out}"
    COMMAND ek_embed_files "${out}" "${SYMBOL}" ${ARG_FILES}
    DEPENDS ek_embed_files ${deps}
    COMMENT "Embedding ${SYMBOL}"
    VERBATIM)
  target_sources(${TARGET} PRIVATE "${out}")
  # A custom command only attaches to targets of its own directory; callers in
  # kernels/<op>/ add to a target made elsewhere, so order it through a target.
  add_custom_target(ek_embed_${SYMBOL} DEPENDS "${out}")
  add_dependencies(${TARGET} ek_embed_${SYMBOL})
endfunction()
