// causal_conv1d: y[b,t,d] = bias[d] + sum_{j<W} w[d,j] * xx[b,t+j,d], xx = s0 ++ x
// along time, SiLU if asked; sT = the last W-1 rows of xx.
//
// One invocation per (batch, chunk of T_CHUNK tokens, channel), channels
// fastest so neighbouring invocations read neighbouring addresses. It keeps
// the W-1 previous inputs of its channel in registers and slides over its
// chunk, so each x element is read once per chunk (plus W-1 rows of overlap).
// The invocation of the last chunk also writes sT for its channel.
//
// Variants: X_F16 (x and s0 f16, read as packed pairs with unpackHalf2x16).
// Specialization: 0 workgroup size, 1 WIDTH (2..4), 2 T_CHUNK, 3 HAS_BIAS,
// 4 HAS_STATE, 5 SILU. Bindings: 0 x, 1 w [D,W], 2 bias, 3 s0 (placeholders
// when absent), 4 y [B,T,D] f32, 5 sT [B,W-1,D] f32.
#version 450
#extension GL_EXT_control_flow_attributes : enable

layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint WIDTH = 4;
layout(constant_id = 2) const uint T_CHUNK = 16;
layout(constant_id = 3) const bool HAS_BIAS = false;
layout(constant_id = 4) const bool HAS_STATE = false;
layout(constant_id = 5) const bool SILU = false;

layout(push_constant) uniform Push {
  uint batch;
  uint tokens;
  uint channels;
  uint chunks;  // ceil(tokens / T_CHUNK)
} pc;

#if X_F16
layout(binding = 0) readonly buffer X { uint x2[]; };
layout(binding = 3) readonly buffer S0 { uint s02[]; };
float load_x(uint i) { return unpackHalf2x16(x2[i >> 1])[i & 1u]; }
float load_s0(uint i) { return unpackHalf2x16(s02[i >> 1])[i & 1u]; }
#else
layout(binding = 0) readonly buffer X { float x1[]; };
layout(binding = 3) readonly buffer S0 { float s01[]; };
float load_x(uint i) { return x1[i]; }
float load_s0(uint i) { return s01[i]; }
#endif
layout(binding = 1) readonly buffer Wt { float w[]; };
layout(binding = 2) readonly buffer Bias { float bias[]; };
layout(binding = 4) writeonly buffer Y { float y[]; };
layout(binding = 5) writeonly buffer ST { float st[]; };

const uint STATE = WIDTH - 1;  // rows of carried state

// Row r of xx (0 <= r < STATE + tokens) for batch b, channel d.
float xx(uint b, uint r, uint d) {
  if (r < STATE) return HAS_STATE ? load_s0((b * STATE + r) * pc.channels + d) : 0.0;
  return load_x((b * pc.tokens + (r - STATE)) * pc.channels + d);
}

void main() {
  const uint group = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
  const uint id = group * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
  const uint per_batch = pc.chunks * pc.channels;
  if (id >= pc.batch * per_batch) return;
  const uint b = id / per_batch;
  const uint rest = id - b * per_batch;
  const uint chunk = rest / pc.channels;
  const uint d = rest - chunk * pc.channels;
  const uint t0 = chunk * T_CHUNK;
  const uint t1 = min(t0 + T_CHUNK, pc.tokens);

  float wt[4];
  [[unroll]] for (uint j = 0; j < WIDTH; ++j) wt[j] = w[d * WIDTH + j];
  const float b0 = HAS_BIAS ? bias[d] : 0.0;

  // window[j] = xx row t + j for the output row t about to be computed.
  float window[3];
  [[unroll]] for (uint j = 0; j < STATE; ++j) window[j] = xx(b, t0 + j, d);

  for (uint t = t0; t < t1; ++t) {
    const float cur = load_x((b * pc.tokens + t) * pc.channels + d);  // xx row t + STATE
    float acc = b0;
    [[unroll]] for (uint j = 0; j < STATE; ++j) acc = fma(wt[j], window[j], acc);
    acc = fma(wt[STATE], cur, acc);
    if (SILU) acc = acc / (1.0 + exp(-acc));
    y[(b * pc.tokens + t) * pc.channels + d] = acc;
    [[unroll]] for (uint j = 0; j + 1 < STATE; ++j) window[j] = window[j + 1];
    window[STATE - 1] = cur;
  }

  if (chunk == pc.chunks - 1u) {
    // sT row r = xx row tokens + r, which the sliding window ends on.
    [[unroll]] for (uint r = 0; r < STATE; ++r) st[(b * STATE + r) * pc.channels + d] = window[r];
  }
}
