// Packed 4x8-bit integer dot products (SPV_KHR_integer_dot_product: OpSDot,
// OpUDot, OpSUDot) for any glslc: emitted through GL_EXT_spirv_intrinsics,
// because some glslc builds (Debian 12's) lack GL_EXT_integer_dot_product.
//
// A variant including this needs, in its variants file,
//   "requires_glslc": ["spirv_intrinsics"], "target_env": "vulkan1.2"   (or later)
// and its kernel needs the device feature "int_dot_product" (profile feature
// "int_dot_product_accelerated" says whether the hardware has a native
// instruction; llvmpipe emulates it).
//
//   int ek_sdot4x8(int a, int b)    sum of a.i8[k] * b.i8[k]      (signed x signed)
//   uint ek_udot4x8(uint a, uint b) sum of a.u8[k] * b.u8[k]      (unsigned x unsigned)
//   int ek_sudot4x8(int a, uint b)  sum of a.i8[k] * b.u8[k]      (signed x unsigned)
#ifndef EK_INT_DOT_GLSL
#define EK_INT_DOT_GLSL

#extension GL_EXT_spirv_intrinsics : require

// Capabilities DotProduct (6019) and DotProductInput4x8BitPacked (6018); the
// literal operand 0 is PackedVectorFormat4x8Bit.
spirv_instruction(extensions = ["SPV_KHR_integer_dot_product"], capabilities = [6019, 6018], id = 4450)
int ek_spv_sdot(int a, int b, spirv_literal int packed_format);
spirv_instruction(extensions = ["SPV_KHR_integer_dot_product"], capabilities = [6019, 6018], id = 4451)
uint ek_spv_udot(uint a, uint b, spirv_literal int packed_format);
spirv_instruction(extensions = ["SPV_KHR_integer_dot_product"], capabilities = [6019, 6018], id = 4452)
int ek_spv_sudot(int a, uint b, spirv_literal int packed_format);

#define ek_sdot4x8(a, b) ek_spv_sdot((a), (b), 0)
#define ek_udot4x8(a, b) ek_spv_udot((a), (b), 0)
#define ek_sudot4x8(a, b) ek_spv_sudot((a), (b), 0)

#endif  // EK_INT_DOT_GLSL
