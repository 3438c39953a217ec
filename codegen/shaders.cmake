# Vulkan compute shaders: templates + variants files -> GLSL per variant
# (ek_expand_shaders) -> SPIR-V (glslc) -> embedded in the library
# (ek_embed_files), found at run time with find_embedded("<ns>/<variant>.spv").
#
# Included by backends/vulkan/CMakeLists.txt. Sets (cache, so every directory
# sees them):
#   EK_GLSLC                 path of glslc ("EK_GLSLC-NOTFOUND" without it)
#   EK_GLSLC_FEATURES        the optional GLSL extensions this glslc accepts, as
#                            names variants files use in "requires_glslc":
#                              integer_dot_product  GL_EXT_integer_dot_product
#                              spirv_intrinsics     GL_EXT_spirv_intrinsics (lets a
#                                                   shader emit e.g. OpSDot without
#                                                   the dot-product extension)
#                              coopmat_khr          GL_KHR_cooperative_matrix
#                              coopmat_nv           GL_NV_cooperative_matrix
#                              bfloat16             GL_EXT_bfloat16
#                              float16_arith        GL_EXT_shader_explicit_arithmetic_types_float16
#   EK_GLSLC_HAS_<NAME>      ON/OFF for each of those (upper case)
#
# ek_add_shaders(OP_DIR <dir> [NAMESPACE <ns>] [TARGET <target>])
#   Every <stem>.variants.json in <dir> describes variants of <stem>.comp (or of
#   its "template"). Format:
#     {
#       "doc": "...",                       optional
#       "template": "x.comp",               optional, default <stem>.comp
#       "target_env": "vulkan1.1",          optional glslc --target-env, default vulkan1.1
#       "defines": {"NAME": value},         optional, for all variants
#       "variants": [
#         {"name": "rms_norm.subgroup.f32", "defines": {"NAME": value},
#          "requires_glslc": ["spirv_intrinsics"], "target_env": "vulkan1.3", "doc": "..."}
#       ]
#     }
#   Variants whose requires_glslc are not all in EK_GLSLC_FEATURES are skipped
#   (and absent at run time: kernels check find_embedded). Values that tuning
#   explores belong in specialization constants, not in variants.
#   Include paths: <dir> and kernels/common/glsl (shared GLSL helpers).
#   Embedded names: "<ns>/<variant name>.spv", ns defaulting to the folder name.

find_program(EK_GLSLC glslc DOC "glslc (shaderc) GLSL -> SPIR-V compiler")

function(_ek_probe_glslc)
  set(probe_dir "${CMAKE_BINARY_DIR}/glslc_probe")
  file(MAKE_DIRECTORY "${probe_dir}")
  set(names "")
  # Each probe uses the extension, not just enables it: some glslang versions
  # accept the #extension line but not its types or built-ins.
  set(src_integer_dot_product [=[
#extension GL_EXT_integer_dot_product : require
layout(binding = 0) buffer B { int v[]; };
void main() { v[0] = dotPacked4x8EXT(v[1], v[2]); }
]=])
  set(src_spirv_intrinsics [=[
#extension GL_EXT_spirv_intrinsics : require
layout(binding = 0) buffer B { int v[]; };
spirv_instruction(extensions = ["SPV_KHR_integer_dot_product"], capabilities = [6019, 6018], id = 4450)
int ek_sdot4x8(int a, int b, spirv_literal int fmt);
void main() { v[0] = ek_sdot4x8(v[1], v[2], 0); }
]=])
  set(src_coopmat_khr [=[
#extension GL_KHR_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
void main() {
  coopmat<float16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseA> a = coopmat<float16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseA>(0.0);
  coopmat<float16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseB> b = coopmat<float16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseB>(0.0);
  coopmat<float, gl_ScopeSubgroup, 16, 16, gl_MatrixUseAccumulator> c = coopmat<float, gl_ScopeSubgroup, 16, 16, gl_MatrixUseAccumulator>(0.0);
  c = coopMatMulAdd(a, b, c);
}
]=])
  set(src_coopmat_nv [=[
#extension GL_NV_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
void main() {
  fcoopmatNV<16, gl_ScopeSubgroup, 16, 16> a = fcoopmatNV<16, gl_ScopeSubgroup, 16, 16>(0.0);
  fcoopmatNV<32, gl_ScopeSubgroup, 16, 16> c = fcoopmatNV<32, gl_ScopeSubgroup, 16, 16>(0.0);
  c = coopMatMulAddNV(a, a, c);
}
]=])
  set(src_bfloat16 [=[
#extension GL_EXT_bfloat16 : require
layout(binding = 0) buffer B { float v[]; };
void main() { bfloat16_t x = bfloat16_t(v[1]); v[0] = float(x); }
]=])
  set(src_float16_arith [=[
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
layout(binding = 0) buffer B { float v[]; };
void main() { float16_t x = float16_t(v[1]) * float16_t(2.0); v[0] = float(x); }
]=])
  foreach(name integer_dot_product spirv_intrinsics coopmat_khr coopmat_nv bfloat16 float16_arith)
    string(TOUPPER "${name}" upper)
    file(WRITE "${probe_dir}/${name}.comp" "#version 450\nlayout(local_size_x = 1) in;\n${src_${name}}")
    execute_process(
      COMMAND "${EK_GLSLC}" --target-env=vulkan1.3 -o "${probe_dir}/${name}.spv" "${probe_dir}/${name}.comp"
      RESULT_VARIABLE rc OUTPUT_QUIET ERROR_QUIET)
    if(rc EQUAL 0)
      set(EK_GLSLC_HAS_${upper} ON CACHE INTERNAL "")
      list(APPEND names ${name})
    else()
      set(EK_GLSLC_HAS_${upper} OFF CACHE INTERNAL "")
    endif()
  endforeach()
  set(EK_GLSLC_FEATURES "${names}" CACHE INTERNAL "optional GLSL extensions glslc accepts")
endfunction()

if(EK_GLSLC)
  execute_process(COMMAND "${EK_GLSLC}" --version OUTPUT_VARIABLE _ek_glslc_version ERROR_QUIET)
  string(SHA1 _ek_glslc_key "${EK_GLSLC}${_ek_glslc_version}")
  if(NOT DEFINED EK_GLSLC_PROBED_FOR OR NOT EK_GLSLC_PROBED_FOR STREQUAL _ek_glslc_key)
    _ek_probe_glslc()
    set(EK_GLSLC_PROBED_FOR "${_ek_glslc_key}" CACHE INTERNAL "")
    message(STATUS "glslc: ${EK_GLSLC}; optional extensions accepted: ${EK_GLSLC_FEATURES}")
  endif()
endif()

function(ek_add_shaders)
  cmake_parse_arguments(ARG "" "OP_DIR;NAMESPACE;TARGET" "" ${ARGN})
  if(NOT ARG_OP_DIR)
    message(FATAL_ERROR "ek_add_shaders: OP_DIR is required")
  endif()
  get_filename_component(op_dir "${ARG_OP_DIR}" ABSOLUTE)
  if(NOT ARG_NAMESPACE)
    get_filename_component(ARG_NAMESPACE "${op_dir}" NAME)
  endif()
  if(NOT ARG_TARGET)
    set(ARG_TARGET edgekernels)
  endif()
  if(NOT EK_GLSLC)
    message(FATAL_ERROR "ek_add_shaders(${ARG_NAMESPACE}): glslc not found (install glslc or set EK_WITH_VULKAN=OFF)")
  endif()

  file(GLOB variant_files CONFIGURE_DEPENDS "${op_dir}/*.variants.json")
  list(SORT variant_files)
  set(embed_pairs "")
  foreach(vf IN LISTS variant_files)
    set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${vf}")
    get_filename_component(vf_name "${vf}" NAME)
    string(REGEX REPLACE "\\.variants\\.json$" "" stem "${vf_name}")
    file(READ "${vf}" doc)
    string(JSON template ERROR_VARIABLE err GET "${doc}" template)
    if(err)
      set(template "${stem}.comp")
    endif()
    string(JSON default_env ERROR_VARIABLE err GET "${doc}" target_env)
    if(err)
      set(default_env vulkan1.1)
    endif()
    string(JSON count ERROR_VARIABLE err LENGTH "${doc}" variants)
    if(err OR count EQUAL 0)
      message(FATAL_ERROR "${vf}: 'variants' must be a non-empty array (${err})")
    endif()

    set(out_dir "${CMAKE_CURRENT_BINARY_DIR}/shaders/${stem}")
    file(MAKE_DIRECTORY "${out_dir}")
    set(expanded "")
    math(EXPR last "${count} - 1")
    foreach(i RANGE ${last})
      string(JSON name GET "${doc}" variants ${i} name)
      string(JSON env ERROR_VARIABLE err GET "${doc}" variants ${i} target_env)
      if(err)
        set(env "${default_env}")
      endif()
      set(missing "")
      string(JSON nreq ERROR_VARIABLE err LENGTH "${doc}" variants ${i} requires_glslc)
      if(NOT err AND nreq GREATER 0)
        math(EXPR rlast "${nreq} - 1")
        foreach(r RANGE ${rlast})
          string(JSON req GET "${doc}" variants ${i} requires_glslc ${r})
          if(NOT req IN_LIST EK_GLSLC_FEATURES)
            list(APPEND missing ${req})
          endif()
        endforeach()
      endif()
      if(missing)
        message(STATUS "shader ${ARG_NAMESPACE}/${name}: not built, glslc lacks ${missing}")
        continue()
      endif()
      set(comp "${out_dir}/${name}.comp")
      set(spv "${out_dir}/${name}.spv")
      list(APPEND expanded "${comp}")
      add_custom_command(OUTPUT "${spv}"
        COMMAND "${EK_GLSLC}" --target-env=${env} -O
                -I "${op_dir}" -I "${PROJECT_SOURCE_DIR}/kernels/common/glsl"
                -MD -MF "${spv}.d" -o "${spv}" "${comp}"
        DEPENDS "${comp}"
        DEPFILE "${spv}.d"
        COMMENT "glslc ${ARG_NAMESPACE}/${name}"
        VERBATIM)
      list(APPEND embed_pairs "${ARG_NAMESPACE}/${name}.spv=${spv}")
    endforeach()

    string(REPLACE ";" "," have "${EK_GLSLC_FEATURES}")
    add_custom_command(OUTPUT ${expanded} "${out_dir}/expanded.stamp"
      COMMAND ek_expand_shaders "${vf}" "${out_dir}" "${out_dir}/expanded.stamp" --have "${have}"
      DEPENDS ek_expand_shaders "${vf}" "${op_dir}/${template}"
      COMMENT "Expanding shader variants of ${ARG_NAMESPACE}/${stem}"
      VERBATIM)
  endforeach()

  if(embed_pairs)
    string(MAKE_C_IDENTIFIER "spirv_${ARG_NAMESPACE}" symbol)
    ek_embed_files(${ARG_TARGET} ${symbol} FILES ${embed_pairs})
  endif()
endfunction()
