// The C API: versioning, context creation, errors as status + message (never
// a crash), DLPack checks, and a real op run on every backend that has a
// device, compared with the reference.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "edgekernels/ek.hpp"
#include "runtime/runtime.h"

namespace {

struct Dl {
  std::vector<int64_t> shape;
  std::vector<float> data;
  DLTensor t{};
  Dl(std::vector<int64_t> s, float fill = 0) : shape(std::move(s)) {
    int64_t n = 1;
    for (auto d : shape) n *= d;
    data.assign(static_cast<size_t>(n), fill);
    t.data = data.data();
    t.device = {kDLCPU, 0};
    t.ndim = static_cast<int32_t>(shape.size());
    t.dtype = {kDLFloat, 32, 1};
    t.shape = shape.data();
  }
};

TEST(CApi, Version) {
  EXPECT_EQ(ek_abi_version(), EK_ABI_VERSION);
  EXPECT_EQ(ek_version() >> 22, static_cast<uint32_t>(EK_VERSION_MAJOR));
}

TEST(CApi, NullArgumentsAreErrorsNotCrashes) {
  EXPECT_EQ(ek_context_create(nullptr, nullptr), EK_ERR_INVALID_ARGUMENT);
  EXPECT_STREQ(ek_last_error(), "ek_context_create: out is NULL");
  EXPECT_EQ(ek_op_run(nullptr, "rms_norm", nullptr, 0, nullptr, 0, nullptr), EK_ERR_INVALID_ARGUMENT);
  EXPECT_STREQ(ek_last_error(), "ek_op_run: ctx is NULL");
  EXPECT_EQ(ek_context_profile_json(nullptr, nullptr, 0, nullptr), EK_ERR_INVALID_ARGUMENT);
  ek_context_destroy(nullptr);
}

TEST(CApi, UnknownBackendAndDevice) {
  ek_context_options o;
  ek_context_options_init(&o);
  o.backend = "cuda";
  ek_context* ctx = nullptr;
  EXPECT_EQ(ek_context_create(&o, &ctx), EK_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(ctx, nullptr);
  EXPECT_NE(std::string(ek_last_error()).find("unknown backend 'cuda'"), std::string::npos);
  o.backend = "cpu";
  o.device_index = 5;
  EXPECT_EQ(ek_context_create(&o, &ctx), EK_ERR_NOT_FOUND);
  EXPECT_NE(std::string(ek_last_error()).find("no device 5 on backend 'cpu'"), std::string::npos);
}

TEST(CApi, ProfileJson) {
  edgekernels::Context ctx("cpu");
  const std::string js = ctx.profile_json();
  EXPECT_NE(js.find("\"backend\": \"cpu\""), std::string::npos);
  char small[8];
  size_t needed = 0;
  ASSERT_EQ(ek_context_profile_json(ctx.get(), small, sizeof small, &needed), EK_OK);
  EXPECT_EQ(needed, js.size() + 1);
  EXPECT_EQ(std::strlen(small), 7u);  // truncated, NUL-terminated
}

TEST(CApi, BadCallsReportTheArgument) {
  edgekernels::Context ctx("cpu");
  Dl x({2, 8}), w({7}), y({2, 8});
  ek_tensor_arg args[] = {{"x", &x.t}, {"w", &w.t}, {"y", &y.t}};
  EXPECT_EQ(ek_op_run(ctx.get(), "rms_norm", args, 3, nullptr, 0, nullptr), EK_ERR_INVALID_ARGUMENT);
  EXPECT_STREQ(ek_last_error(), "rms_norm: w dim 0 is 7, expected dim=8");

  EXPECT_EQ(ek_op_run(ctx.get(), "no_such_op", args, 3, nullptr, 0, nullptr), EK_ERR_NOT_FOUND);
  EXPECT_NE(std::string(ek_last_error()).find("unknown op 'no_such_op'"), std::string::npos);

  Dl w8({8});
  int64_t strides[] = {1, 2};  // column-major: rejected
  x.t.strides = strides;
  ek_tensor_arg args2[] = {{"x", &x.t}, {"w", &w8.t}, {"y", &y.t}};
  EXPECT_EQ(ek_op_run(ctx.get(), "rms_norm", args2, 3, nullptr, 0, nullptr), EK_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(ek_last_error()).find("tensor x: strides are not compact"), std::string::npos);
  x.t.strides = nullptr;

  x.t.device = {kDLVulkan, 0};
  EXPECT_EQ(ek_op_run(ctx.get(), "rms_norm", args2, 3, nullptr, 0, nullptr), EK_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(ek_last_error()).find("is not host memory"), std::string::npos);
  x.t.device = {kDLCPU, 0};

  ek_param bad[] = {{"eps", nullptr}};
  EXPECT_EQ(ek_op_run(ctx.get(), "rms_norm", args2, 3, bad, 1, nullptr), EK_ERR_INVALID_ARGUMENT);

  ek_tensor_arg dup[] = {{"x", &x.t}, {"x", &x.t}};
  EXPECT_EQ(ek_op_run(ctx.get(), "rms_norm", dup, 2, nullptr, 0, nullptr), EK_ERR_INVALID_ARGUMENT);
  EXPECT_STREQ(ek_last_error(), "rms_norm: tensor 'x' given twice");
}

// Runs `body` with a context on each backend that has a device; a backend
// without one is reported as skipped, not passed.
template <class Body>
void on_every_backend(const char* what, Body body) {
  ek::DeviceSet set = ek::open_devices();
  for (const std::string backend : {"cpu", "vulkan", "opencl"}) {
    bool present = false;
    for (auto& d : set.devices) present |= d->backend() == backend;
    if (!present) {
      std::printf("[  SKIPPED ] %s on %s: no device\n", what, backend.c_str());
      continue;
    }
    SCOPED_TRACE(backend);
    edgekernels::Context ctx(backend);
    body(ctx);
  }
}

// A real run through the C++ wrapper on every device, checked against the
// reference; a backend with no device is reported as skipped.
TEST(CApi, RunsRmsNormOnEveryDevice) {
  on_every_backend("C API run", [](edgekernels::Context& ctx) {
    Dl x({3, 5}), w({5}), y({3, 5}), ref({3, 5});
    for (size_t i = 0; i < x.data.size(); ++i) x.data[i] = std::sin(static_cast<float>(i));
    for (size_t i = 0; i < w.data.size(); ++i) w.data[i] = 0.5f + 0.1f * i;
    ctx.run("rms_norm", {{"x", &x.t}, {"w", &w.t}, {"y", &y.t}}, {{"eps", "1e-5"}});
    for (int r = 0; r < 3; ++r) {
      double ss = 0;
      for (int i = 0; i < 5; ++i) ss += x.data[r * 5 + i] * x.data[r * 5 + i];
      const double inv = 1 / std::sqrt(ss / 5 + 1e-5);
      for (int i = 0; i < 5; ++i) EXPECT_NEAR(y.data[r * 5 + i], x.data[r * 5 + i] * inv * w.data[i], 1e-5);
    }
    EXPECT_THROW(ctx.run("rms_norm", {{"x", &x.t}, {"y", &y.t}}), edgekernels::Exception);
  });
}

// A decoder's loop through the C API: the state updated in place (the same
// DLTensor passed as h0 and hT) gives what a ping-pong of two state buffers
// gives, step after step; a partly overlapping hT is rejected.
TEST(CApi, DecodeStateUpdatedInPlace) {
  on_every_backend("C API in-place decode", [](edgekernels::Context& ctx) {
    const int64_t D = 48, N = 16;
    Dl u({1, 1, D}), delta({1, 1, D}), A({D, N}), Bm({1, 1, 1, N}), Cm({1, 1, 1, N});
    Dl state({1, D, N}), ping({1, D, N}), pong({1, D, N}), y_in_place({1, 1, D}), y_separate({1, 1, D});
    for (int64_t i = 0; i < D * N; ++i) {
      A.data[i] = -1.0f - static_cast<float>(i % N);
      state.data[i] = ping.data[i] = std::cos(static_cast<float>(i));
    }
    for (int step = 0; step < 3; ++step) {
      for (int64_t d = 0; d < D; ++d) {
        u.data[d] = std::sin(0.3f * static_cast<float>(d + step));
        delta.data[d] = 0.05f + 0.01f * static_cast<float>((d + step) % 7);
      }
      for (int64_t n = 0; n < N; ++n) {
        Bm.data[n] = std::sin(0.7f * static_cast<float>(n + step));
        Cm.data[n] = std::cos(0.4f * static_cast<float>(n + step));
      }
      Dl& in = step % 2 ? pong : ping;
      Dl& out = step % 2 ? ping : pong;
      ctx.run("selective_scan", {{"u", &u.t}, {"delta", &delta.t}, {"A", &A.t}, {"Bm", &Bm.t}, {"Cm", &Cm.t},
                                 {"h0", &in.t}, {"hT", &out.t}, {"y", &y_separate.t}});
      ctx.run("selective_scan", {{"u", &u.t}, {"delta", &delta.t}, {"A", &A.t}, {"Bm", &Bm.t}, {"Cm", &Cm.t},
                                 {"h0", &state.t}, {"hT", &state.t}, {"y", &y_in_place.t}});
      EXPECT_EQ(0, std::memcmp(y_in_place.data.data(), y_separate.data.data(), D * sizeof(float))) << "step " << step;
      EXPECT_EQ(0, std::memcmp(state.data.data(), out.data.data(), D * N * sizeof(float))) << "step " << step;
    }
    // hT starting one row into h0: a partial overlap, rejected before any write.
    Dl big({1, D + 1, N});
    DLTensor shifted = big.t;
    shifted.shape = state.t.shape;
    shifted.data = big.data.data() + N;
    DLTensor first = big.t;
    first.shape = state.t.shape;
    try {
      ctx.run("selective_scan", {{"u", &u.t}, {"delta", &delta.t}, {"A", &A.t}, {"Bm", &Bm.t}, {"Cm", &Cm.t},
                                 {"h0", &first}, {"hT", &shifted}, {"y", &y_in_place.t}});
      ADD_FAILURE() << "a partly overlapping hT was accepted";
    } catch (const edgekernels::Exception& e) {
      EXPECT_NE(std::string(e.what()).find("overlaps tensor h0 without being the same tensor"), std::string::npos) << e.what();
    }
  });
}

}  // namespace
