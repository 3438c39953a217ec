// Helpers shared by the scan op tests (selective_scan, ssd_scan): copies of a
// call with its f16 activations widened to f32, or its f32 activations
// rounded to f16, outputs allocated anew.
#pragma once

#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <string>

#include "kernels/common/op.h"
#include "kernels/common/tensor.h"

namespace ek::scan_test {

// Every f16 tensor replaced by an f32 copy of the same values (exact: every
// f16 is an f32).
inline OwnedCall widened_to_f32(const OpDef& def, const OpCall& call) {
  OwnedCall oc;
  oc.call = call;
  for (auto& kv : oc.call.tensors) {
    if (kv.second.dtype != DType::f16) continue;
    oc.allocate(kv.first, DType::f32, kv.second.shape);
    const TensorRef& src = call.get(kv.first);
    for (int64_t i = 0; i < src.numel(); ++i) oc.storage[kv.first].as<float>()[i] = f16_to_f32(src.as<uint16_t>()[i]);
  }
  for (const auto& kv : def.infer_outputs(oc.call)) oc.allocate(kv.first, kv.second.dtype, kv.second.shape);
  return oc;
}

// The named activations (those present) rounded to f16: the f16 storage of ops.md.
inline OwnedCall rounded_to_f16(const OpDef& def, const OpCall& call, std::initializer_list<const char*> names) {
  OwnedCall oc;
  oc.call = call;
  for (const char* name : names) {
    const TensorRef* src = call.find(name);
    if (!src) continue;
    oc.allocate(name, DType::f16, src->shape);
    for (int64_t i = 0; i < src->numel(); ++i) oc.storage[name].as<uint16_t>()[i] = f32_to_f16(src->as<float>()[i]);
  }
  for (const auto& kv : def.infer_outputs(oc.call)) oc.allocate(kv.first, kv.second.dtype, kv.second.shape);
  return oc;
}

// A copy of `call` with its own copy of h0 and hT set to that very tensor
// (the state updated in place); the other outputs allocated anew.
inline OwnedCall with_state_in_place(const OpDef& def, const OpCall& call) {
  OwnedCall oc;
  oc.call = call;
  const TensorRef& h0 = call.get("h0");
  oc.allocate("h0", h0.dtype, h0.shape);
  std::memcpy(oc.call.get("h0").data, h0.data, h0.nbytes());
  for (const auto& kv : def.infer_outputs(oc.call)) oc.allocate(kv.first, kv.second.dtype, kv.second.shape);
  oc.call.tensors["hT"] = oc.call.get("h0");
  return oc;
}

// ops.md's accuracy table for f16 storage of the activations: y and hT of
// `got` within nmse 1e-5 of the exact (double) result `ref`; prints the
// figures.
inline void expect_f16_storage_within_ops_bound(const OpCall& got, const OpCall& ref, const std::string& what) {
  for (const char* out : {"y", "hT"}) {
    const double e = nmse(got.get(out), ref.get(out));
    EXPECT_LE(e, 1e-5) << what << " output " << out;
    std::printf("%s %s: nmse of f16 storage vs exact %.3g\n", what.c_str(), out, e);
  }
}

// Bitwise equality of two tensors of the same dtype and shape.
inline bool same_bits(const TensorRef& a, const TensorRef& b) {
  return a.dtype == b.dtype && a.shape == b.shape && std::memcmp(a.data, b.data, a.nbytes()) == 0;
}

}  // namespace ek::scan_test
