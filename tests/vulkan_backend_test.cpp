// The Vulkan backend on every Vulkan device present (lavapipe in CI): device
// enumeration and profile, buffers, the pipeline cache, timestamps, dispatch
// limits, peak microbenchmarks, and every registered Vulkan kernel of
// rms_norm and causal_conv1d over its op's case list against the reference.
// Skips (with the scan notes) where no Vulkan device exists.
#include <gtest/gtest.h>

#if !EK_HAVE_VULKAN
TEST(Vulkan, NotBuilt) { GTEST_SKIP() << "the Vulkan backend is not built (EK_WITH_VULKAN=OFF, or no glslc/headers)"; }
#else
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>

#include "backends/vulkan/vulkan_kernel.h"
#include "codegen/embedded.h"
#include "runtime/runtime.h"

namespace ek {
namespace {

DeviceSet* g_devices = nullptr;

std::string scan_notes() {
  std::string notes;
  for (const auto& s : g_devices->scans)
    for (const auto& n : s.notes) notes += "\n  " + s.backend + ": " + n;
  return notes;
}

class Vulkan : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!g_devices) g_devices = new DeviceSet(open_devices("vulkan"));
  }
  void SetUp() override {
    if (g_devices->devices.empty()) GTEST_SKIP() << "no Vulkan device:" << scan_notes();
  }
  std::vector<VulkanDevice*> devices() {
    std::vector<VulkanDevice*> out;
    for (auto& d : g_devices->devices) out.push_back(&as_vulkan(*d));
    return out;
  }
};

Dispatch copy_dispatch(const std::shared_ptr<VulkanBuffer>& src, const std::shared_ptr<VulkanBuffer>& dst,
                       uint32_t n_vec4, uint32_t wg = 64) {
  Dispatch d;
  d.shader = "vulkan/microbench.copy.spv";
  d.spec = {wg};
  d.push.u32(n_vec4).f32(0).f32(0).f32(0);
  d.buffers = {{src, 0, 0}, {dst, 0, 0}};
  d.groups = {{static_cast<uint32_t>(ceil_div(n_vec4, wg)), 1, 1}};
  return d;
}

TEST_F(Vulkan, EnumeratesDevicesWithProfile) {
  std::cout << "vulkan scan:" << scan_notes() << "\n";
  for (VulkanDevice* d : devices()) {
    const DeviceProfile& p = d->profile();
    std::cout << profile_to_json(p).dump(2) << "\n";
    EXPECT_EQ(p.backend, "vulkan");
    EXPECT_FALSE(p.vendor.empty());
    EXPECT_FALSE(p.device_name.empty());
    EXPECT_FALSE(p.driver_name.empty());
    EXPECT_FALSE(p.driver_version.empty());
    EXPECT_EQ(p.api_version.compare(0, 2, "1."), 0) << p.api_version;
    EXPECT_FALSE(p.architecture.empty());
    EXPECT_TRUE(p.device_class == "cpu" || p.device_class == "mobile" || p.device_class == "edge" ||
                p.device_class == "cloud")
        << p.device_class;
    EXPECT_GE(p.max_workgroup_size, 128);
    ASSERT_FALSE(p.subgroup_sizes.empty());
    for (int s : p.subgroup_sizes) EXPECT_TRUE(s > 0 && (s & (s - 1)) == 0) << s;
    EXPECT_GE(p.shared_memory_bytes, 16384);
    EXPECT_GT(p.memory_bytes, 0);
    EXPECT_GT(p.max_buffer_bytes, 0);
    EXPECT_LE(static_cast<uint64_t>(p.max_buffer_bytes), d->max_storage_range());
    EXPECT_EQ(p.fingerprint().size(), 16u);
    // The profile round-trips through JSON (the tuning DB and offline planning use it).
    EXPECT_EQ(profile_from_json(profile_to_json(p)).fingerprint(), p.fingerprint());
    if (p.architecture == "llvmpipe") {
      EXPECT_EQ(p.device_class, "cpu");
      EXPECT_EQ(p.vendor, "Mesa");
      EXPECT_TRUE(p.unified_memory);
      EXPECT_EQ(d->max_storage_range(), uint64_t(128) << 20);
      EXPECT_FALSE(p.quirks.empty());
    }
  }
}

TEST_F(Vulkan, BufferRoundTrip) {
  std::mt19937 rng(7);
  for (VulkanDevice* d : devices()) {
    for (uint64_t size : {uint64_t(1), uint64_t(3), uint64_t(17), uint64_t(4096 + 5), (uint64_t(5) << 20) + 3}) {
      std::vector<uint8_t> in(size), out(size, 0);
      for (auto& b : in) b = static_cast<uint8_t>(rng());
      auto buf = d->create_buffer(size);
      EXPECT_EQ(buf->size(), size);
      EXPECT_GE(buf->allocated(), size);
      EXPECT_EQ(buf->allocated() % 16, 0u);
      d->upload(*buf, 0, in.data(), size);
      d->download(*buf, 0, out.data(), size);
      EXPECT_EQ(in, out) << "size " << size;
      if (size > 8) {  // partial ranges at an offset
        const uint8_t patch[5] = {1, 2, 3, 4, 5};
        d->upload(*buf, 3, patch, 5);
        uint8_t back[7] = {};
        d->download(*buf, 2, back, 7);
        EXPECT_EQ(back[0], in[2]);
        EXPECT_EQ(std::memcmp(back + 1, patch, 5), 0);
        EXPECT_EQ(back[6], in[8]);
      }
      EXPECT_THROW(d->upload(*buf, buf->allocated() - 2, in.data(), 4), InvalidArgument);
      EXPECT_THROW(d->download(*buf, buf->allocated() + 1, out.data(), 0), InvalidArgument);
    }
    auto empty = d->create_buffer(0);  // allowed; binds as a 16-byte placeholder
    EXPECT_EQ(empty->allocated(), 16u);
  }
}

TEST_F(Vulkan, DispatchCopiesAndTimes) {
  for (VulkanDevice* d : devices()) {
    const uint32_t n = 1000 * 4;  // vec4s, not a multiple of the workgroup
    std::vector<float> host(n * 4);
    for (size_t i = 0; i < host.size(); ++i) host[i] = static_cast<float>(i) * 0.5f - 7;
    auto src = d->create_buffer(host.size() * 4);
    auto dst = d->create_buffer(host.size() * 4);
    d->upload(*src, 0, host.data(), host.size() * 4);
    VulkanSequence seq(*d);
    seq.add(copy_dispatch(src, dst, n));
    EXPECT_EQ(seq.size(), 1u);
    seq.run();
    std::vector<float> back(host.size(), 0);
    d->download(*dst, 0, back.data(), back.size() * 4);
    EXPECT_EQ(host, back);
    if (d->has_timestamps()) {
      EXPECT_GT(seq.last_seconds(), 0.0);
      EXPECT_LT(seq.last_seconds(), 10.0);
    } else {
      EXPECT_LT(seq.last_seconds(), 0.0);
    }
    // A second run of the recorded sequence, then a chained second dispatch that
    // reads what the first wrote (the barrier between them).
    auto dst2 = d->create_buffer(host.size() * 4);
    seq.add(copy_dispatch(dst, dst2, n));
    seq.run();
    d->download(*dst2, 0, back.data(), back.size() * 4);
    EXPECT_EQ(host, back);
  }
}

TEST_F(Vulkan, PipelineCacheHitsOnSameShaderAndSpecialization) {
  for (VulkanDevice* d : devices()) {
    auto a = d->create_buffer(1024), b = d->create_buffer(1024);
    const auto before = d->pipeline_stats();
    {
      VulkanSequence s1(*d);
      s1.add(copy_dispatch(a, b, 64, 32));
    }
    const auto after_first = d->pipeline_stats();
    {
      VulkanSequence s2(*d);
      s2.add(copy_dispatch(a, b, 64, 32));
      s2.add(copy_dispatch(b, a, 64, 32));
    }
    const auto after_same = d->pipeline_stats();
    {
      VulkanSequence s3(*d);
      s3.add(copy_dispatch(a, b, 64, 16));  // other specialization: a new pipeline
    }
    const auto after_other = d->pipeline_stats();
    EXPECT_EQ(after_same.misses, after_first.misses);
    EXPECT_EQ(after_same.hits, after_first.hits + 2);
    EXPECT_EQ(after_other.misses, after_same.misses + 1);
    EXPECT_EQ(after_other.pipelines, after_same.pipelines + 1);
    EXPECT_GE(after_first.misses + after_first.hits, before.misses + before.hits + 1);
  }
}

TEST_F(Vulkan, ZeroSizeWorkIsNotDispatched) {
  for (VulkanDevice* d : devices()) {
    auto a = d->create_buffer(64), b = d->create_buffer(64);
    const float sentinel[16] = {42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42};
    d->upload(*b, 0, sentinel, sizeof sentinel);
    VulkanSequence seq(*d);
    Dispatch k = copy_dispatch(a, b, 4);
    k.groups = {{0, 1, 1}};
    seq.add(std::move(k));
    seq.run();
    EXPECT_EQ(seq.last_seconds(), 0.0);
    float back[16];
    d->download(*b, 0, back, sizeof back);
    EXPECT_EQ(std::memcmp(back, sentinel, sizeof back), 0);
  }
}

TEST_F(Vulkan, DispatchErrorsNameTheProblem) {
  for (VulkanDevice* d : devices()) {
    auto a = d->create_buffer(64), b = d->create_buffer(64);
    VulkanSequence seq(*d);
    Dispatch missing = copy_dispatch(a, b, 4);
    missing.shader = "nope/nope.spv";
    try {
      seq.add(missing);
      ADD_FAILURE() << "missing shader accepted";
    } catch (const NotFound& e) {
      EXPECT_NE(std::string(e.what()).find("nope/nope.spv"), std::string::npos) << e.what();
    }
    Dispatch unbound = copy_dispatch(a, nullptr, 4);
    EXPECT_THROW(seq.add(unbound), InvalidArgument);
    Dispatch misaligned = copy_dispatch(a, b, 4);
    misaligned.buffers[0].offset = 1;
    EXPECT_THROW(seq.add(misaligned), InvalidArgument);
    Dispatch too_many = copy_dispatch(a, b, 4);
    too_many.groups = {{d->max_group_count(0) + 1u, 1, 1}};
    EXPECT_THROW(seq.add(too_many), Unsupported);
    EXPECT_EQ(seq.size(), 0u);
  }
}

TEST_F(Vulkan, StorageRangeLimitIsReportedNotViolated) {
  for (VulkanDevice* d : devices()) {
    const uint64_t limit = d->max_storage_range();
    const DeviceProfile& p = d->profile();
    // Eligibility sees an oversized tensor from its shape alone.
    OpCall call;
    call.op = "rms_norm";
    call.tensors["x"] = TensorRef{DType::f32, {static_cast<int64_t>(limit / 4 + 16)}, nullptr};
    EXPECT_NE(vulkan_oversized_tensors(p, call).find("storage-buffer range"), std::string::npos);
    call.tensors["x"].shape = {16};
    EXPECT_EQ(vulkan_oversized_tensors(p, call), "");
    if (limit > (uint64_t(512) << 20)) continue;  // only allocate where the limit is small (lavapipe: 128 MiB)
    auto big = d->create_buffer(limit + 64);
    auto small = d->create_buffer(64);
    VulkanSequence seq(*d);
    try {
      seq.add(copy_dispatch(big, small, 4));
      ADD_FAILURE() << "binding beyond maxStorageBufferRange accepted";
    } catch (const Unsupported& e) {
      EXPECT_NE(std::string(e.what()).find("maxStorageBufferRange"), std::string::npos) << e.what();
    }
    // A range within the limit of the same buffer is fine.
    Dispatch ok = copy_dispatch(big, small, 4);
    ok.buffers[0].range = 1024;
    EXPECT_NO_THROW(seq.add(ok));
  }
}

TEST_F(Vulkan, MeasuresPeaks) {
  for (VulkanDevice* d : devices()) {
    d->measure_peaks(0.6);
    const DeviceProfile& p = d->profile();
    std::cout << p.label() << ": read " << p.peak_read_gbps << " GB/s, copy " << p.peak_copy_gbps << " GB/s, fp32 "
              << p.peak_fp32_gflops << " GFLOP/s, int8 dot " << p.peak_int8_gops << " GOP/s\n";
    EXPECT_TRUE(p.measured);
    EXPECT_GT(p.peak_read_gbps, 0.1);
    EXPECT_GT(p.peak_copy_gbps, 0.1);
    EXPECT_GT(p.peak_fp32_gflops, 0.1);
    EXPECT_GE(p.peak_int8_gops, 0.0);
    if (p.has("int_dot_product") && find_embedded("vulkan/microbench.int8_dot.spv")) EXPECT_GT(p.peak_int8_gops, 0.1);
  }
}

// The packed int8 dot products of ek_int_dot.glsl (GL_EXT_spirv_intrinsics)
// compute what they should.
TEST_F(Vulkan, IntegerDotProductIntrinsics) {
  if (!find_embedded("vulkan/selftest.int8_dot.spv")) GTEST_SKIP() << "glslc lacks GL_EXT_spirv_intrinsics";
  for (VulkanDevice* d : devices()) {
    if (!d->profile().has("int_dot_product")) continue;
    const uint32_t n = 1000;
    std::mt19937 rng(3);
    std::vector<uint32_t> a(n), b(n);
    for (uint32_t i = 0; i < n; ++i) {
      a[i] = rng();
      b[i] = rng();
    }
    a[0] = 0x80808080u;  // -128 x 255 extremes
    b[0] = 0xffffffffu;
    auto ba = d->create_buffer(n * 4), bb = d->create_buffer(n * 4), out = d->create_buffer(n * 12);
    d->upload(*ba, 0, a.data(), n * 4);
    d->upload(*bb, 0, b.data(), n * 4);
    VulkanSequence seq(*d);
    Dispatch k;
    k.shader = "vulkan/selftest.int8_dot.spv";
    k.spec = {64};
    k.push.u32(n);
    k.buffers = {{ba, 0, 0}, {bb, 0, 0}, {out, 0, 0}};
    k.groups = {{static_cast<uint32_t>(ceil_div(n, 64)), 1, 1}};
    seq.add(std::move(k));
    seq.run();
    std::vector<int32_t> res(3 * n);
    d->download(*out, 0, res.data(), res.size() * 4);
    for (uint32_t i = 0; i < n; ++i) {
      int32_t ss = 0, su = 0;
      uint32_t uu = 0;
      for (int l = 0; l < 4; ++l) {
        const int8_t as = static_cast<int8_t>(a[i] >> (8 * l)), bs = static_cast<int8_t>(b[i] >> (8 * l));
        const uint8_t au = static_cast<uint8_t>(a[i] >> (8 * l)), bu = static_cast<uint8_t>(b[i] >> (8 * l));
        ss += as * bs;
        su += as * bu;
        uu += uint32_t(au) * bu;
      }
      ASSERT_EQ(res[3 * i], ss) << "sdot " << i;
      ASSERT_EQ(res[3 * i + 1], su) << "sudot " << i;
      ASSERT_EQ(static_cast<uint32_t>(res[3 * i + 2]), uu) << "udot " << i;
    }
  }
}

// ---------------------------------------------------------------- operators

// Runs `k` on `c` and checks every output against the reference.
void check_case(VulkanDevice& dev, const KernelImpl& k, const OpCase& c, const Tuning& tuning, bool timed) {
  const OpDef& def = Registry::instance().op(k.op);
  OwnedCall oc = make_call(def, c, 1234);
  validate_call(def, oc.call);
  const std::string why = k.ineligible_reason ? k.ineligible_reason(dev.profile(), oc.call) : "";
  if (!why.empty()) {
    std::cout << "  [ineligible] " << k.id() << " " << c.name << ": " << why << "\n";
    return;
  }
  auto inv = k.bind(dev, oc.call, tuning);
  inv->execute();
  inv->execute();  // outputs are rewritten, not accumulated
  inv->read_outputs();
  if (timed && dev.has_timestamps()) EXPECT_GT(inv->last_device_seconds(), 0.0) << k.id() << " " << c.name;

  // Reference into separate storage.
  OpCall ref = oc.call;
  std::map<std::string, HostTensor> ref_out;
  for (const auto& kv : def.infer_outputs(oc.call)) {
    ref_out[kv.first] = HostTensor(kv.second.dtype, kv.second.shape);
    ref.tensors[kv.first] = ref_out[kv.first].ref();
  }
  def.reference(ref);
  for (const auto& kv : ref_out) {
    const TensorRef out = oc.call.tensors.at(kv.first);
    const double e = nmse(out, kv.second.ref());
    EXPECT_LE(e, k.nmse_bound) << k.id() << " case '" << c.name << "' output " << kv.first;
    EXPECT_EQ(count_nonfinite_where_ref_finite(out, kv.second.ref()), 0) << k.id() << " " << c.name;
  }
}

void check_op(VulkanDevice& dev, const std::string& op) {
  const OpDef& def = Registry::instance().op(op);
  const auto kernels = Registry::instance().kernels(op, "vulkan");
  ASSERT_FALSE(kernels.empty()) << "no vulkan kernel registered for " << op;
  for (const KernelImpl* k : kernels) {
    for (const OpCase& c : def.cases()) {
      SCOPED_TRACE(k->id() + " / " + c.name);
      check_case(dev, *k, c, k->default_tuning(), true);
    }
  }
}

// Every value of every tunable on the small cases (each is another pipeline).
void check_tunables(VulkanDevice& dev, const std::string& op) {
  const OpDef& def = Registry::instance().op(op);
  for (const KernelImpl* k : Registry::instance().kernels(op, "vulkan"))
    for (const TunableParam& p : k->tunables)
      for (int64_t v : p.values)
        for (const OpCase& c : def.cases()) {
          if (!c.tags.count("smoke") && c.name.find("edge") == std::string::npos) continue;
          int64_t elems = 1;
          for (const auto& kv : c.dims) elems *= std::max<int64_t>(1, kv.second);
          if (elems > (int64_t(1) << 20)) continue;
          Tuning t = k->default_tuning();
          t[p.name] = v;
          SCOPED_TRACE(cat(k->id(), " ", p.name, "=", v, " / ", c.name));
          check_case(dev, *k, c, t, false);
        }
}

TEST_F(Vulkan, RmsNormMatchesReference) {
  for (VulkanDevice* d : devices()) check_op(*d, "rms_norm");
}
TEST_F(Vulkan, RmsNormTunables) {
  for (VulkanDevice* d : devices()) check_tunables(*d, "rms_norm");
}
TEST_F(Vulkan, CausalConv1dMatchesReference) {
  for (VulkanDevice* d : devices()) check_op(*d, "causal_conv1d");
}
TEST_F(Vulkan, CausalConv1dTunables) {
  for (VulkanDevice* d : devices()) check_tunables(*d, "causal_conv1d");
}

// Paths the shared case lists do not reach: f16 rows without a vec4 multiple
// (packed-pair loads), rows wider than the workgroup, f16 state without bias.
TEST_F(Vulkan, ExtraShapesMatchReference) {
  std::vector<OpCase> cases;
  for (int64_t dim : {1, 2, 3, 5, 1023, 4097})
    for (int64_t gated : {0, 1}) {
      OpCase c;
      c.op = "rms_norm";
      c.name = cat("f16 dim=", dim, gated ? " gated" : "");
      c.dims = {{"rows", 3}, {"dim", dim}, {"gated", gated}, {"f16", 1}};
      c.params.set("eps", 1e-5);
      cases.push_back(c);
    }
  for (int64_t W : {2, 3, 4})
    for (int64_t T : {1, 2, 3, 40}) {
      OpCase c;
      c.op = "causal_conv1d";
      c.name = cat("f16 W=", W, " T=", T, " state, no bias");
      c.dims = {{"B", 2}, {"T", T}, {"D", 7}, {"W", W}, {"bias", 0}, {"state", 1}, {"f16", 1}};
      c.params.set("silu", false);
      cases.push_back(c);
    }
  for (VulkanDevice* d : devices())
    for (const OpCase& c : cases)
      for (const KernelImpl* k : Registry::instance().kernels(c.op, "vulkan")) {
        SCOPED_TRACE(k->id() + " / " + c.name);
        check_case(*d, *k, c, k->default_tuning(), false);
        Tuning t = k->default_tuning();
        t["block"] = 64;  // the GPU-style width on any device
        check_case(*d, *k, c, t, false);
      }
}

TEST_F(Vulkan, SelectionPrefersSubgroupAndFallsBack) {
  for (VulkanDevice* d : devices()) {
    const OpDef& def = Registry::instance().op("rms_norm");
    OwnedCall oc = make_call(def, def.cases().front(), 1);
    if (d->profile().has("subgroup_arith")) {
      EXPECT_EQ(select_kernel(d->profile(), oc.call).kernel->variant, "subgroup");
    }
    ::setenv("EK_DISABLE_FEATURES", "subgroup_arith", 1);
    const Selection s = select_kernel(d->profile(), oc.call);
    ::unsetenv("EK_DISABLE_FEATURES");
    EXPECT_EQ(s.kernel->variant, "shared");
    // run_op end to end through the runtime.
    run_op(*d, oc.call);
    OpCall ref = oc.call;
    HostTensor y(DType::f32, oc.call.tensors.at("y").shape);
    ref.tensors["y"] = y.ref();
    def.reference(ref);
    EXPECT_LE(nmse(oc.call.tensors.at("y"), y.ref()), 1e-7);
  }
}

TEST_F(Vulkan, BindRejectsOtherBackendsDevice) {
  const auto set = open_devices("cpu");
  ASSERT_FALSE(set.devices.empty());
  const KernelImpl* k = Registry::instance().kernels("rms_norm", "vulkan").front();
  const OpDef& def = Registry::instance().op("rms_norm");
  OwnedCall oc = make_call(def, def.cases().front(), 1);
  EXPECT_THROW(k->bind(*set.devices.front(), oc.call, k->default_tuning()), InvalidArgument);
}

// Without a loader the backend reports itself absent; checked in a fresh
// process (the loader is opened once per process).
TEST(VulkanLoader, MissingLoaderIsReportedNotFatal) {
  if (std::getenv("EK_TEST_VULKAN_CHILD")) {
    DeviceSet set = open_devices("vulkan");
    EXPECT_TRUE(set.devices.empty());
    ASSERT_EQ(set.scans.size(), 1u);
    ASSERT_FALSE(set.scans[0].notes.empty());
    EXPECT_NE(set.scans[0].notes[0].find("no Vulkan loader"), std::string::npos) << set.scans[0].notes[0];
    return;
  }
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::setenv("EK_TEST_VULKAN_CHILD", "1", 1);
    ::setenv("EK_VULKAN_LOADER", "/nonexistent/libvulkan.so.1", 1);
    execl("/proc/self/exe", "vulkan_backend_test", "--gtest_filter=VulkanLoader.MissingLoaderIsReportedNotFatal",
          static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "child crashed";
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

}  // namespace
}  // namespace ek
#endif  // EK_HAVE_VULKAN
