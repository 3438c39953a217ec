// rms_norm: y = v / sqrt(mean(v^2) + eps) * w over each row, v = x or, gated
// (Mamba-2), v = x * silu(z). One workgroup per row: a strided pass sums v^2
// (vec4 loads when dim % 4 == 0), a workgroup reduction (subgroup arithmetic or
// shared memory, EK_REDUCE_SUBGROUP), then a second pass over the row, which
// is still in cache, writes y. Gated, the first pass also stores v in y and
// the second rescales it in place (each invocation rereads only what it
// wrote), so silu's exp runs once per element. fp32 accumulation throughout.
//
// Variants (rms_norm.variants.json): X_F16 (x and z are f16, read as packed
// pairs with unpackHalf2x16, so no 16-bit storage feature is needed) and
// EK_REDUCE_SUBGROUP. Specialization: 0 = workgroup size, 1 = GATED.
// Bindings: 0 x, 1 w [dim] f32, 2 z (a placeholder when not gated), 3 y f32.
#version 450

layout(local_size_x_id = 0) in;
layout(constant_id = 1) const bool GATED = false;

#include "ek_reduce.glsl"

layout(push_constant) uniform Push {
  uint rows;
  uint dim;
  float eps;
} pc;

#if X_F16
layout(binding = 0) readonly buffer X2 { uint x2[]; };   // f16 pairs
layout(binding = 0) readonly buffer X4 { uvec2 x4[]; };  // f16 quads
layout(binding = 2) readonly buffer Z2 { uint z2[]; };
layout(binding = 2) readonly buffer Z4 { uvec2 z4[]; };
float load_x(uint i) { return unpackHalf2x16(x2[i >> 1])[i & 1u]; }
float load_z(uint i) { return unpackHalf2x16(z2[i >> 1])[i & 1u]; }
vec4 load_x4(uint q) { const uvec2 u = x4[q]; return vec4(unpackHalf2x16(u.x), unpackHalf2x16(u.y)); }
vec4 load_z4(uint q) { const uvec2 u = z4[q]; return vec4(unpackHalf2x16(u.x), unpackHalf2x16(u.y)); }
#else
layout(binding = 0) readonly buffer X1 { float x1[]; };
layout(binding = 0) readonly buffer X4 { vec4 x4[]; };
layout(binding = 2) readonly buffer Z1 { float z1[]; };
layout(binding = 2) readonly buffer Z4 { vec4 z4[]; };
float load_x(uint i) { return x1[i]; }
float load_z(uint i) { return z1[i]; }
vec4 load_x4(uint q) { return x4[q]; }
vec4 load_z4(uint q) { return z4[q]; }
#endif
layout(binding = 1) readonly buffer W1 { float w1[]; };
layout(binding = 1) readonly buffer W4 { vec4 w4[]; };
layout(binding = 3) buffer Y1 { float y1[]; };
layout(binding = 3) buffer Y4 { vec4 y4[]; };

float value(uint i) {
  const float x = load_x(i);
  if (!GATED) return x;
  const float z = load_z(i);
  return x * (z / (1.0 + exp(-z)));
}

vec4 value4(uint q) {
  const vec4 x = load_x4(q);
  if (!GATED) return x;
  const vec4 z = load_z4(q);
  return x * (z / (1.0 + exp(-z)));
}

void main() {
  const uint row = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
  if (row >= pc.rows) return;  // whole workgroups only: the barriers stay uniform
  const uint tid = gl_LocalInvocationID.x;
  const uint nt = gl_WorkGroupSize.x;
  const uint base = row * pc.dim;
  const bool quads = (pc.dim & 3u) == 0u;

  float ss = 0.0;
  if (quads) {
    const uint q0 = base >> 2, nq = pc.dim >> 2;
    for (uint q = tid; q < nq; q += nt) {
      const vec4 v = value4(q0 + q);
      if (GATED) y4[q0 + q] = v;
      ss += dot(v, v);
    }
  } else {
    for (uint i = tid; i < pc.dim; i += nt) {
      const float v = value(base + i);
      if (GATED) y1[base + i] = v;
      ss += v * v;
    }
  }
  ss = ek_workgroup_sum(ss);
  const float inv = 1.0 / sqrt(ss / float(pc.dim) + pc.eps);

  if (quads) {
    const uint q0 = base >> 2, nq = pc.dim >> 2;
    for (uint q = tid; q < nq; q += nt) y4[q0 + q] = (GATED ? y4[q0 + q] : load_x4(q0 + q)) * inv * w4[q];
  } else {
    for (uint i = tid; i < pc.dim; i += nt) y1[base + i] = (GATED ? y1[base + i] : load_x(base + i)) * inv * w1[i];
  }
}
