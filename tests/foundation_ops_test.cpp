// rms_norm and causal_conv1d: the references against hand-computed values, and
// every validation error with its message. Backends are covered by
// conformance_test; here run_op checks that a rejected call writes nothing.
#include <gtest/gtest.h>

#include <cmath>

#include "runtime/runtime.h"

namespace ek {
namespace {

HostTensor make(DType dt, Shape shape, std::vector<float> values = {}) {
  HostTensor t(dt, std::move(shape));
  for (size_t i = 0; i < values.size(); ++i) {
    if (dt == DType::f32) t.as<float>()[i] = values[i];
    if (dt == DType::f16) t.as<uint16_t>()[i] = f32_to_f16(values[i]);
  }
  return t;
}

// Builds a call whose tensors point into `keep`.
struct Call {
  std::string op;
  std::map<std::string, HostTensor> keep;
  Params params;
  OpCall call() const {
    OpCall c;
    c.op = op;
    c.params = params;
    for (const auto& kv : keep) c.tensors[kv.first] = kv.second.ref();
    return c;
  }
};

std::string error_of(const Call& c) {
  try {
    validate_call(Registry::instance().op(c.op), c.call());
  } catch (const InvalidArgument& e) {
    return e.what();
  }
  return "";
}

// ------------------------------------------------------------------ rms_norm

Call rms_call(int64_t rows, int64_t dim) {
  Call c{"rms_norm", {}, {}};
  c.keep["x"] = make(DType::f32, {rows, dim});
  c.keep["w"] = make(DType::f32, {dim});
  c.keep["y"] = make(DType::f32, {rows, dim});
  return c;
}

TEST(RmsNormReference, HandComputed) {
  Call c = rms_call(1, 2);
  c.keep["x"] = make(DType::f32, {1, 2}, {3, 4});
  c.keep["w"] = make(DType::f32, {2}, {1, 2});
  c.params.set("eps", 1e-6);
  Registry::instance().op("rms_norm").reference(c.call());
  const double inv = 1.0 / std::sqrt(12.5 + 1e-6);  // mean(9, 16) = 12.5
  EXPECT_NEAR(c.keep["y"].as<float>()[0], 3 * inv * 1, 1e-6);
  EXPECT_NEAR(c.keep["y"].as<float>()[1], 4 * inv * 2, 1e-6);
}

TEST(RmsNormReference, GatedAppliesSiluBeforeNorm) {
  Call c = rms_call(1, 1);
  c.keep["x"] = make(DType::f32, {1, 1}, {2});
  c.keep["z"] = make(DType::f32, {1, 1}, {1});
  c.keep["w"] = make(DType::f32, {1}, {1});
  c.params.set("eps", 1e-5);
  Registry::instance().op("rms_norm").reference(c.call());
  const double g = 2 * (1 / (1 + std::exp(-1.0)));
  EXPECT_NEAR(c.keep["y"].as<float>()[0], g / std::sqrt(g * g + 1e-5), 1e-6);
}

TEST(RmsNormValidation, EveryErrorNamesTheArgument) {
  EXPECT_EQ(error_of(rms_call(2, 8)), "");
  {
    Call c = rms_call(2, 8);
    c.keep["w"] = make(DType::f32, {7});
    EXPECT_EQ(error_of(c), "rms_norm: w dim 0 is 7, expected dim=8");
  }
  {
    Call c = rms_call(2, 8);
    c.keep["w"] = make(DType::f16, {8});
    EXPECT_EQ(error_of(c), "rms_norm: w has dtype f16, expected f32");
  }
  {
    Call c = rms_call(2, 8);
    c.keep["x"] = make(DType::i32, {2, 8});
    EXPECT_EQ(error_of(c), "rms_norm: x has dtype i32, expected f32|f16");
  }
  {
    Call c = rms_call(2, 8);
    c.keep["z"] = make(DType::f32, {2, 4});
    EXPECT_EQ(error_of(c), "rms_norm: z has shape [2, 4], expected x's shape [2, 8]");
  }
  {
    Call c = rms_call(2, 8);
    c.keep["z"] = make(DType::f16, {2, 8});
    EXPECT_EQ(error_of(c), "rms_norm: z has dtype f16, expected x's dtype f32");
  }
  {
    Call c = rms_call(2, 8);
    c.params.set("eps", -1.0);
    EXPECT_EQ(error_of(c), "rms_norm: eps=-1 must be finite and > 0");
  }
  {
    Call c = rms_call(2, 8);
    c.params.set("eps", std::string("abc"));
    EXPECT_EQ(error_of(c), "rms_norm: param eps='abc' is not a number");
  }
  {
    Call c = rms_call(2, 8);
    c.params.set("epsilon", 1.0);
    EXPECT_EQ(error_of(c), "rms_norm: unknown param 'epsilon'");
  }
  {
    Call c = rms_call(2, 8);
    c.keep.erase("w");
    EXPECT_EQ(error_of(c), "rms_norm: missing tensor 'w'");
  }
  {
    Call c = rms_call(2, 8);
    c.keep["q"] = make(DType::f32, {1});
    EXPECT_EQ(error_of(c), "rms_norm: unknown tensor 'q'");
  }
  {
    Call c = rms_call(2, 8);
    c.keep["y"] = make(DType::f32, {2, 9});
    EXPECT_EQ(error_of(c), "rms_norm: output y has shape [2, 9], expected [2, 8]");
  }
  {
    Call c = rms_call(2, 8);
    c.keep["y"] = make(DType::f16, {2, 8});
    EXPECT_EQ(error_of(c), "rms_norm: output y has dtype f16, expected f32");
  }
  {
    Call c = rms_call(2, 8);
    c.keep.erase("y");
    EXPECT_EQ(error_of(c), "rms_norm: missing output tensor 'y'");
  }
  {
    Call c = rms_call(2, 0);
    EXPECT_EQ(error_of(c), "rms_norm: x last dim (dim) is 0, expected >= 1");
  }
  {
    Call c = rms_call(2, 8);
    OpCall oc = c.call();
    oc.tensors["y"] = oc.tensors["x"];  // in-place is not allowed
    EXPECT_THROW(validate_call(Registry::instance().op("rms_norm"), oc), InvalidArgument);
  }
}

// ------------------------------------------------------------- causal_conv1d

Call conv_call(int64_t B, int64_t T, int64_t D, int64_t W) {
  Call c{"causal_conv1d", {}, {}};
  c.keep["x"] = make(DType::f32, {B, T, D});
  c.keep["w"] = make(DType::f32, {D, W});
  c.keep["y"] = make(DType::f32, {B, T, D});
  c.keep["sT"] = make(DType::f32, {B, W - 1, D});
  return c;
}

TEST(CausalConv1dReference, HandComputedWithState) {
  // D=1, W=3: xx = [s0(2 rows) ; x(2 rows)] = [1, 2, 3, 4]
  Call c = conv_call(1, 2, 1, 3);
  c.keep["x"] = make(DType::f32, {1, 2, 1}, {3, 4});
  c.keep["s0"] = make(DType::f32, {1, 2, 1}, {1, 2});
  c.keep["w"] = make(DType::f32, {1, 3}, {0.5f, -1.0f, 2.0f});
  c.keep["bias"] = make(DType::f32, {1}, {0.25f});
  Registry::instance().op("causal_conv1d").reference(c.call());
  EXPECT_FLOAT_EQ(c.keep["y"].as<float>()[0], 0.25f + 0.5f * 1 - 1 * 2 + 2 * 3);
  EXPECT_FLOAT_EQ(c.keep["y"].as<float>()[1], 0.25f + 0.5f * 2 - 1 * 3 + 2 * 4);
  EXPECT_FLOAT_EQ(c.keep["sT"].as<float>()[0], 3);
  EXPECT_FLOAT_EQ(c.keep["sT"].as<float>()[1], 4);
}

TEST(CausalConv1dReference, ShortSequenceKeepsOldState) {
  // T=1 < W-1=3: the new state is the last three rows of [s0 ; x].
  Call c = conv_call(1, 1, 1, 4);
  c.keep["x"] = make(DType::f32, {1, 1, 1}, {9});
  c.keep["s0"] = make(DType::f32, {1, 3, 1}, {1, 2, 3});
  c.keep["w"] = make(DType::f32, {1, 4}, {1, 1, 1, 1});
  c.params.set("silu", true);
  Registry::instance().op("causal_conv1d").reference(c.call());
  const double s = 15;
  EXPECT_NEAR(c.keep["y"].as<float>()[0], s / (1 + std::exp(-s)), 1e-5);
  EXPECT_FLOAT_EQ(c.keep["sT"].as<float>()[0], 2);
  EXPECT_FLOAT_EQ(c.keep["sT"].as<float>()[1], 3);
  EXPECT_FLOAT_EQ(c.keep["sT"].as<float>()[2], 9);
}

TEST(CausalConv1dValidation, EveryErrorNamesTheArgument) {
  EXPECT_EQ(error_of(conv_call(2, 5, 8, 4)), "");
  {
    Call c = conv_call(2, 5, 8, 4);
    c.keep["x"] = make(DType::f32, {5, 8});
    c.keep["y"] = make(DType::f32, {5, 8});
    EXPECT_EQ(error_of(c), "causal_conv1d: x has 2 dims [5, 8], expected 3");
  }
  {
    Call c = conv_call(2, 5, 8, 5);
    EXPECT_EQ(error_of(c), "causal_conv1d: w width W=5 is not in 2..4");
  }
  {
    Call c = conv_call(2, 5, 8, 1);
    EXPECT_EQ(error_of(c), "causal_conv1d: w width W=1 is not in 2..4");
  }
  {
    Call c = conv_call(2, 5, 8, 4);
    c.keep["w"] = make(DType::f32, {7, 4});
    EXPECT_EQ(error_of(c), "causal_conv1d: w dim 0 is 7, expected D=8");
  }
  {
    Call c = conv_call(2, 5, 8, 4);
    c.keep["bias"] = make(DType::f32, {9});
    EXPECT_EQ(error_of(c), "causal_conv1d: bias dim 0 is 9, expected D=8");
  }
  {
    Call c = conv_call(2, 5, 8, 4);
    c.keep["s0"] = make(DType::f32, {2, 2, 8});
    EXPECT_EQ(error_of(c), "causal_conv1d: s0 dim 1 is 2, expected W-1=3");
  }
  {
    Call c = conv_call(2, 5, 8, 4);
    c.keep["s0"] = make(DType::f32, {1, 3, 8});
    EXPECT_EQ(error_of(c), "causal_conv1d: s0 dim 0 is 1, expected B=2");
  }
  {
    Call c = conv_call(2, 5, 8, 4);
    c.keep["s0"] = make(DType::f16, {2, 3, 8});
    EXPECT_EQ(error_of(c), "causal_conv1d: s0 has dtype f16, expected x's dtype f32");
  }
  {
    Call c = conv_call(2, 0, 8, 4);
    EXPECT_EQ(error_of(c), "causal_conv1d: x tokens T=0, expected >= 1");
  }
  {
    Call c = conv_call(2, 5, 8, 4);
    c.params.set("silu", std::string("yes"));
    EXPECT_EQ(error_of(c), "causal_conv1d: param silu='yes' is not a boolean (use 0 or 1)");
  }
  {
    Call c = conv_call(2, 5, 8, 4);
    c.keep["sT"] = make(DType::f32, {2, 4, 8});
    EXPECT_EQ(error_of(c), "causal_conv1d: output sT has shape [2, 4, 8], expected [2, 3, 8]");
  }
}

// A rejected call must leave outputs untouched on every backend.
TEST(RunOp, RejectedCallWritesNothing) {
  DeviceSet set = open_devices();
  ASSERT_FALSE(set.devices.empty());
  for (auto& dev : set.devices) {
    Call c = conv_call(1, 4, 8, 4);
    c.keep["bias"] = make(DType::f32, {9});  // wrong
    for (int i = 0; i < 32; ++i) c.keep["y"].as<float>()[i] = 7.0f;
    EXPECT_THROW(run_op(*dev, c.call()), InvalidArgument) << dev->profile().label();
    for (int i = 0; i < 32; ++i) ASSERT_EQ(c.keep["y"].as<float>()[i], 7.0f) << dev->profile().label();
  }
}

}  // namespace
}  // namespace ek
