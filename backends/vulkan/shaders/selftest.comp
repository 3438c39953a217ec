// Device self-tests of instructions that drivers emulate or get wrong: the
// packed int8 dot products of ek_int_dot.glsl. out[3i..3i+2] = sdot, sudot,
// udot of a[i] and b[i] (each word four 8-bit lanes).
#version 450
#include "ek_int_dot.glsl"

layout(local_size_x_id = 0) in;
layout(push_constant) uniform Push { uint n; } pc;
layout(binding = 0) readonly buffer A { uint a[]; };
layout(binding = 1) readonly buffer B { uint b[]; };
layout(binding = 2) writeonly buffer Out { int res[]; };

void main() {
  const uint i = gl_GlobalInvocationID.x;
  if (i >= pc.n) return;
  res[3 * i] = ek_sdot4x8(int(a[i]), int(b[i]));
  res[3 * i + 1] = ek_sudot4x8(int(a[i]), b[i]);
  res[3 * i + 2] = int(ek_udot4x8(a[i], b[i]));
}
