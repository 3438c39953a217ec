// The OpenCL backend: enumeration (including machines without a platform or
// device), buffers, the program cache, build-failure messages, profiling, the
// peak microbenchmarks, and every registered OpenCL kernel of rms_norm and
// causal_conv1d over its op's case list against the reference.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <numeric>
#include <regex>

#include "runtime/runtime.h"

#ifdef EK_HAVE_OPENCL
#include "backends/opencl/opencl_invocation.h"
#endif

namespace ek {
namespace {

#ifndef EK_HAVE_OPENCL

TEST(OpenCLBackend, NotBuilt) { GTEST_SKIP() << "built without the OpenCL backend (EK_WITH_OPENCL=OFF)"; }

#else

struct OpenCLDevices {
  DeviceSet set;
  std::vector<OpenCLDevice*> devices;
  std::string notes;
};

// Opened once per process; tests that need a device skip without one.
OpenCLDevices& cl_devices() {
  static OpenCLDevices d = [] {
    OpenCLDevices d;
    d.set = open_devices("opencl");
    for (auto& dev : d.set.devices) d.devices.push_back(&as_opencl(*dev, "opencl_backend_test"));
    for (const auto& s : d.set.scans)
      for (const auto& n : s.notes) d.notes += (d.notes.empty() ? "" : "; ") + n;
    return d;
  }();
  return d;
}

#define REQUIRE_OPENCL_DEVICE()                                                           \
  do {                                                                                    \
    if (cl_devices().devices.empty())                                                     \
      GTEST_SKIP() << "no OpenCL device on this machine (" << cl_devices().notes << ")"; \
  } while (0)

// ---------------------------------------------------------------- enumeration

TEST(OpenCLBackend, EnumerationFillsTheProfile) {
  const auto& scans = cl_devices().set.scans;
  ASSERT_EQ(scans.size(), 1u);
  EXPECT_EQ(scans[0].backend, "opencl");
  EXPECT_FALSE(scans[0].notes.empty()) << "a scan always says what it found";
  REQUIRE_OPENCL_DEVICE();
  for (OpenCLDevice* dev : cl_devices().devices) {
    const DeviceProfile& p = dev->profile();
    SCOPED_TRACE(p.label());
    EXPECT_EQ(p.backend, "opencl");
    EXPECT_FALSE(p.device_name.empty());
    EXPECT_FALSE(p.vendor.empty());
    EXPECT_FALSE(p.driver_name.empty());
    EXPECT_FALSE(p.driver_version.empty());
    EXPECT_TRUE(std::regex_match(p.api_version, std::regex("OpenCL [1-9]\\.[0-9]"))) << p.api_version;
    EXPECT_FALSE(p.architecture.empty());
    EXPECT_TRUE(p.device_class == "cpu" || p.device_class == "mobile" || p.device_class == "edge" ||
                p.device_class == "cloud" || p.device_class == "npu")
        << p.device_class;
    EXPECT_GT(p.compute_units, 0);
    EXPECT_GT(p.max_workgroup_size, 0);
    EXPECT_GT(p.shared_memory_bytes, 0);
    EXPECT_GT(p.memory_bytes, 0);
    EXPECT_GT(p.max_buffer_bytes, 0);
    EXPECT_LE(p.max_buffer_bytes, p.memory_bytes);
    EXPECT_TRUE(p.features.count("fp16_storage"));
    EXPECT_TRUE(p.features.count("int8_storage"));
    EXPECT_EQ(p.features.count("fp16_arith") != 0, dev->has_extension("cl_khr_fp16"));
    if (p.features.count("subgroup_arith")) {
      EXPECT_FALSE(p.subgroup_sizes.empty()) << "sub-groups without a known size";
    }
    EXPECT_GE(dev->opencl_c_version(), 120);
    EXPECT_EQ(p.fingerprint().size(), 16u);
  }
}

// Runs `body` in a fresh process (threadsafe death-test style re-executes the
// binary), so environment variables set first are seen by the ICD loader and
// the driver before they initialise. Nothing OpenCL may run before it.
int run_scan_child(const char* env, const char* value) {
  setenv(env, value, 1);
  DeviceSet set = open_devices("opencl");
  for (const auto& n : set.scans.at(0).notes) std::fprintf(stderr, "note: %s\n", n.c_str());
  for (const auto& d : set.devices) std::fprintf(stderr, "device: %s (%s)\n", d->profile().label().c_str(),
                                                 d->profile().driver_name.c_str());
  std::fflush(stderr);
  return static_cast<int>(set.devices.size());
}

TEST(OpenCLBackendDeathTest, NoPlatformIsReportedNotThrown) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(std::exit(run_scan_child("OCL_ICD_VENDORS", "/nonexistent-edgekernels-icd-dir") == 0 ? 0 : 1),
              testing::ExitedWithCode(0), "note: no OpenCL platform");
}

// PoCL reads POCL_DEVICES when it initialises; an unknown driver name leaves
// its platform without devices. Other platforms' devices may remain, but no
// PoCL device may, and PoCL's empty platform must be named in the notes.
int pocl_without_devices_child() {
  setenv("POCL_DEVICES", "no-such-pocl-driver", 1);
  DeviceSet set = open_devices("opencl");
  bool ok = true, pocl_installed = false, pocl_platform_noted = false;
  for (const auto& d : set.devices) ok = ok && d->profile().driver_name != "PoCL";
  for (const auto& n : set.scans.at(0).notes) {
    std::fprintf(stderr, "note: %s\n", n.c_str());
    if (n.find("Portable Computing Language") != std::string::npos) {
      pocl_installed = true;
      pocl_platform_noted = pocl_platform_noted || n.find("no devices") != std::string::npos;
    }
  }
  std::fflush(stderr);
  return ok && (!pocl_installed || pocl_platform_noted) ? 0 : 1;
}

TEST(OpenCLBackendDeathTest, PlatformWithoutDevicesIsReportedNotThrown) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(std::exit(pocl_without_devices_child()), testing::ExitedWithCode(0), "");
}

// ---------------------------------------------------------------- memory

TEST(OpenCLBackend, BufferRoundTrip) {
  REQUIRE_OPENCL_DEVICE();
  for (OpenCLDevice* dev : cl_devices().devices) {
    SCOPED_TRACE(dev->profile().label());
    for (size_t bytes : {size_t(1), size_t(12345), size_t(3) << 20}) {
      std::vector<uint8_t> in(bytes), out(bytes, 0);
      std::iota(in.begin(), in.end(), uint8_t(7));
      cl::Buffer buf = dev->alloc(bytes, "round_trip");
      dev->upload(buf, in.data(), bytes);
      dev->download(buf, out.data(), bytes);
      EXPECT_EQ(in, out) << bytes << " bytes";
    }
    // Offsets, and a fill.
    std::vector<uint32_t> words(1000, 0);
    cl::Buffer buf = dev->alloc(words.size() * 4, "offsets");
    dev->fill_u32(buf, 0xdeadbeefu, words.size() * 4);
    const uint32_t mid[3] = {1, 2, 3};
    dev->upload(buf, mid, sizeof mid, 400);
    dev->download(buf, words.data(), words.size() * 4);
    EXPECT_EQ(words[0], 0xdeadbeefu);
    EXPECT_EQ(words[100], 1u);
    EXPECT_EQ(words[102], 3u);
    EXPECT_EQ(words[103], 0xdeadbeefu);
    uint32_t tail[2] = {0, 0};
    dev->download(buf, tail, sizeof tail, 998 * 4);
    EXPECT_EQ(tail[1], 0xdeadbeefu);
    // Empty buffers exist (as placeholders) and zero-byte copies do nothing.
    cl::Buffer empty = dev->alloc(0, "empty");
    EXPECT_NE(empty(), nullptr);
    dev->upload(empty, nullptr, 0);
    dev->download(empty, nullptr, 0);
  }
}

TEST(OpenCLBackend, OversizedBufferIsOutOfMemoryNamingTheDevice) {
  REQUIRE_OPENCL_DEVICE();
  OpenCLDevice* dev = cl_devices().devices[0];
  const size_t too_big = static_cast<size_t>(dev->profile().max_buffer_bytes) + 1;
  try {
    dev->alloc(too_big, "huge_weights");
    FAIL() << "expected OutOfMemory";
  } catch (const OutOfMemory& e) {
    EXPECT_NE(std::string(e.what()).find(dev->profile().label()), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("huge_weights"), std::string::npos) << e.what();
  }
}

// ---------------------------------------------------------------- programs

const char* kScaleSource = R"CL(
kernel void scale(global float* p, float f, int n) {
  const int i = get_global_id(0);
  if (i < n) p[i] = p[i] * f + OFFSET;
}
)CL";

TEST(OpenCLBackend, ProgramCacheHitsOnSameSourceAndOptions) {
  REQUIRE_OPENCL_DEVICE();
  OpenCLDevice* dev = cl_devices().devices[0];
  const auto s0 = dev->program_cache_stats();
  cl::Program a = dev->program_from_source("test/scale.cl", kScaleSource, "-DOFFSET=1.0f");
  const auto s1 = dev->program_cache_stats();
  EXPECT_EQ(s1.builds, s0.builds + 1);
  cl::Program b = dev->program_from_source("test/scale.cl", kScaleSource, "-DOFFSET=1.0f");
  const auto s2 = dev->program_cache_stats();
  EXPECT_EQ(s2.builds, s1.builds);
  EXPECT_EQ(s2.hits, s1.hits + 1);
  EXPECT_EQ(a(), b()) << "a hit returns the cached program";
  dev->program_from_source("test/scale.cl", kScaleSource, "-DOFFSET=2.0f");
  EXPECT_EQ(dev->program_cache_stats().builds, s2.builds + 1) << "other options, other program";

  // Embedded sources: same key, same program; kernels are fresh objects.
  const std::string opts = BuildOptions().define("WG", 64).define("VEC", 1).flag("X_F16", false).flag("GATED", false)
                               .flag("USE_SUBGROUPS", false).str();
  cl::Kernel k1 = dev->kernel("rms_norm/rms_norm.cl", opts, "ek_rms_norm");
  const auto s3 = dev->program_cache_stats();
  cl::Kernel k2 = dev->kernel("rms_norm/rms_norm.cl", opts, "ek_rms_norm");
  EXPECT_EQ(dev->program_cache_stats().hits, s3.hits + 1);
  EXPECT_EQ(dev->program_cache_stats().builds, s3.builds);
  EXPECT_NE(k1(), k2());
  EXPECT_THROW(dev->program("no/such_source.cl", ""), NotFound);
}

TEST(OpenCLBackend, BuildFailureNamesDeviceSourceAndLog) {
  REQUIRE_OPENCL_DEVICE();
  OpenCLDevice* dev = cl_devices().devices[0];
  const char* broken = "kernel void broken(global float* p) { p[0] = undeclared_thing_42; }";
  for (int attempt = 0; attempt < 2; ++attempt) {  // failures are not cached
    try {
      dev->program_from_source("test/broken.cl", broken, "-DSOME_OPTION=3");
      FAIL() << "expected DeviceError";
    } catch (const DeviceError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(dev->profile().label()), std::string::npos) << msg;
      EXPECT_NE(msg.find("test/broken.cl"), std::string::npos) << msg;
      EXPECT_NE(msg.find("-DSOME_OPTION=3"), std::string::npos) << msg;
      EXPECT_NE(msg.find("undeclared_thing_42"), std::string::npos) << "build log missing: " << msg;
    }
  }
  EXPECT_THROW(dev->kernel(dev->program_from_source("test/scale.cl", kScaleSource, "-DOFFSET=0.0f"), "test/scale.cl",
                           "no_such_kernel"),
               DeviceError);
}

TEST(OpenCLBackend, KernelArgumentErrorsNameTheKernel) {
  REQUIRE_OPENCL_DEVICE();
  OpenCLDevice* dev = cl_devices().devices[0];
  cl::Kernel k = dev->kernel(dev->program_from_source("test/scale.cl", kScaleSource, "-DOFFSET=0.0f"),
                             "test/scale.cl", "scale");
  cl::Buffer buf = dev->alloc(64, "args");
  try {
    set_kernel_args(*dev, k, buf, cl_float(2), cl_long(16));  // n is an int: wrong size
    FAIL() << "expected DeviceError";
  } catch (const DeviceError& e) {
    EXPECT_NE(std::string(e.what()).find("argument 2"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("scale"), std::string::npos) << e.what();
  }
}

// ---------------------------------------------------------------- dispatch

TEST(OpenCLBackend, ProfiledKernelTimeIsPositiveAndResultCorrect) {
  REQUIRE_OPENCL_DEVICE();
  for (OpenCLDevice* dev : cl_devices().devices) {
    SCOPED_TRACE(dev->profile().label());
    const int n = 1 << 20;
    std::vector<float> host(n);
    for (int i = 0; i < n; ++i) host[i] = static_cast<float>(i % 1000);
    cl::Buffer buf = dev->alloc(n * sizeof(float), "scale");
    dev->upload(buf, host.data(), n * sizeof(float));
    cl::Kernel k = dev->kernel(dev->program_from_source("test/scale.cl", kScaleSource, "-DOFFSET=0.5f"),
                               "test/scale.cl", "scale");
    set_kernel_args(*dev, k, buf, cl_float(2), cl_int(n - 3));
    cl::Event e = dev->enqueue(k, cl::NDRange(round_up(n, 64)), cl::NDRange(64));
    ASSERT_NE(e(), nullptr);
    dev->finish();
    EXPECT_GT(dev->elapsed_seconds(e, e), 0.0);
    std::vector<float> out(n);
    dev->download(buf, out.data(), n * sizeof(float));
    for (int i : {0, 1, 999, 123456, n - 4}) EXPECT_EQ(out[i], host[i] * 2 + 0.5f) << i;
    for (int i : {n - 3, n - 1}) EXPECT_EQ(out[i], host[i]) << "guarded tail " << i;
    // Zero-size ranges enqueue nothing.
    EXPECT_EQ(dev->enqueue(k, cl::NDRange(0), cl::NDRange(64))(), nullptr);
    EXPECT_EQ(dev->enqueue(k, cl::NDRange(64, 0), cl::NullRange)(), nullptr);
  }
}

TEST(OpenCLBackend, InvocationTimesAndSkipsEmptyWork) {
  REQUIRE_OPENCL_DEVICE();
  OpenCLDevice* dev = cl_devices().devices[0];
  const OpDef& def = Registry::instance().op("rms_norm");
  const KernelImpl* impl = nullptr;
  for (const KernelImpl* k : Registry::instance().kernels("rms_norm", "opencl"))
    if (k->variant == "workgroup_reduce") impl = k;
  ASSERT_NE(impl, nullptr);

  OpCase c = def.cases().front();
  OwnedCall oc = make_call(def, c, 3);
  auto inv = impl->bind(*dev, oc.call, impl->default_tuning());
  inv->execute();
  EXPECT_GT(inv->last_device_seconds(), 0.0);

  // rows = 0: nothing to run, nothing enqueued, nothing read.
  OwnedCall empty;
  empty.call.op = "rms_norm";
  empty.allocate("x", DType::f32, {0, 8});
  empty.allocate("w", DType::f32, {8});
  empty.allocate("y", DType::f32, {0, 8});
  validate_call(def, empty.call);
  auto inv0 = impl->bind(*dev, empty.call, impl->default_tuning());
  inv0->execute();
  EXPECT_EQ(inv0->last_device_seconds(), 0.0);
  inv0->read_outputs();

  // Binding to another backend's device is an error, not a crash.
  DeviceSet cpu = open_devices("cpu");
  ASSERT_FALSE(cpu.devices.empty());
  EXPECT_THROW(impl->bind(*cpu.devices[0], oc.call, impl->default_tuning()), InvalidArgument);
}

TEST(OpenCLBackend, MeasuredPeaksArePositive) {
  REQUIRE_OPENCL_DEVICE();
  OpenCLDevice* dev = cl_devices().devices[0];
  dev->measure_peaks(0.4);
  const DeviceProfile& p = dev->profile();
  EXPECT_TRUE(p.measured);
  EXPECT_GT(p.peak_read_gbps, 0.1);
  EXPECT_GT(p.peak_copy_gbps, 0.1);
  EXPECT_GT(p.peak_fp32_gflops, 0.1);
  EXPECT_GT(p.peak_int8_gops, 0.1);
  std::printf("[ peaks    ] %s: read %.1f GB/s, copy %.1f GB/s, fp32 %.1f GFLOP/s, int8 %.1f GOP/s\n",
              p.label().c_str(), p.peak_read_gbps, p.peak_copy_gbps, p.peak_fp32_gflops, p.peak_int8_gops);
}

// ---------------------------------------------------------------- kernels vs reference

struct CheckResult {
  int ran = 0;
  int ineligible = 0;
};

// Binds `impl` to the call of case `c` with `tuning`, runs it and compares every
// output with the reference; adds failures with context.
void check_case(OpenCLDevice& dev, const OpDef& def, const KernelImpl& impl, const OpCase& c, const Tuning& tuning,
                CheckResult& result) {
  SCOPED_TRACE(cat(impl.id(), " on ", dev.profile().label(), " case '", c.name, "'"));
  OwnedCall got = make_call(def, c, 42);
  const std::string why = impl.ineligible_reason ? impl.ineligible_reason(dev.profile(), got.call) : "";
  if (!why.empty()) {
    ++result.ineligible;
    return;
  }
  validate_call(def, got.call);
  auto inv = impl.bind(dev, got.call, tuning);
  inv->execute();
  inv->execute();  // repeated execution gives the same result
  inv->read_outputs();
  OwnedCall want = make_call(def, c, 42);
  def.reference(want.call);
  for (const auto& out : def.infer_outputs(want.call)) {
    const TensorRef& g = got.call.get(out.first);
    const TensorRef& r = want.call.get(out.first);
    const double e = nmse(g, r);
    EXPECT_LE(e, impl.nmse_bound) << out.first << " nmse " << e;
    EXPECT_EQ(count_nonfinite_where_ref_finite(g, r), 0) << out.first;
  }
  ++result.ran;
}

void check_all_cases(const std::string& op) {
  REQUIRE_OPENCL_DEVICE();
  const OpDef& def = Registry::instance().op(op);
  const auto impls = Registry::instance().kernels(op, "opencl");
  ASSERT_FALSE(impls.empty()) << "no OpenCL kernel registered for " << op;
  for (OpenCLDevice* dev : cl_devices().devices) {
    for (const KernelImpl* impl : impls) {
      CheckResult r;
      for (const OpCase& c : def.cases()) check_case(*dev, def, *impl, c, impl->default_tuning(), r);
      std::printf("[ cases    ] %s on %s: %d ran, %d ineligible\n", impl->id().c_str(), dev->profile().label().c_str(),
                  r.ran, r.ineligible);
    }
  }
}

// Every value of every tunable (one at a time, the others at their default),
// plus whole tunings given in `combos` (e.g. the GPU defaults, which a CPU
// device would not pick by itself), on the given cases, so each -D path the
// tuner or another device can pick is compiled and checked here.
void check_tunables(const std::string& op, const std::vector<std::string>& case_names,
                    const std::vector<Tuning>& combos) {
  REQUIRE_OPENCL_DEVICE();
  const OpDef& def = Registry::instance().op(op);
  std::vector<OpCase> picked;
  for (const OpCase& c : def.cases())
    if (std::find(case_names.begin(), case_names.end(), c.name) != case_names.end()) picked.push_back(c);
  ASSERT_EQ(picked.size(), case_names.size()) << "case list changed";
  OpenCLDevice& dev = *cl_devices().devices[0];
  for (const KernelImpl* impl : Registry::instance().kernels(op, "opencl")) {
    CheckResult r;
    for (const TunableParam& t : impl->tunables)
      for (int64_t v : t.values) {
        Tuning tuning = impl->default_tuning();
        tuning[t.name] = v;
        SCOPED_TRACE(cat(t.name, "=", v));
        for (const OpCase& c : picked) check_case(dev, def, *impl, c, tuning, r);
      }
    for (const Tuning& combo : combos) {
      Tuning tuning = impl->default_tuning();
      std::string label;
      for (const auto& kv : combo) {
        tuning[kv.first] = kv.second;
        label += cat(kv.first, "=", kv.second, " ");
      }
      SCOPED_TRACE(label);
      for (const OpCase& c : picked) check_case(dev, def, *impl, c, tuning, r);
    }
    std::printf("[ tunables ] %s: %d runs, %d ineligible\n", impl->id().c_str(), r.ran, r.ineligible);
  }
}

TEST(OpenCLKernels, RmsNormAllCasesMatchReference) { check_all_cases("rms_norm"); }
TEST(OpenCLKernels, CausalConv1dAllCasesMatchReference) { check_all_cases("causal_conv1d"); }

TEST(OpenCLKernels, RmsNormEveryTunableValue) {
  check_tunables("rms_norm", {"edge: dim=3 gated", "edge: odd dim=1023 T=7", "llama-3.2-3b d_model=3072 T=8 f16",
                              "edge: dim=33 gated T=1", "edge: many rows=4099 dim=16"},
                 {{{"WG", 256}, {"VEC", 4}}, {{"WG", 64}, {"VEC", 16}}, {{"WG", 1024}, {"VEC", 2}}});
}

TEST(OpenCLKernels, CausalConv1dEveryTunableValue) {
  check_tunables("causal_conv1d", {"edge: W=3 D=17 T=2 B=3", "edge: W=4 T=2 < W-1 state", "edge: f16 W=3 D=5 T=9",
                                   "mamba-130m d_inner=1536 T=16 f16", "edge: W=2 D=3 T=1"},
                 {{{"VEC", 4}, {"TT", 16}, {"WG", 64}}, {{"VEC", 1}, {"TT", 1}, {"WG", 256}},
                  {{"VEC", 16}, {"TT", 256}, {"WG", 8}}});
}

TEST(OpenCLKernels, SubgroupVariantNeedsSubgroups) {
  REQUIRE_OPENCL_DEVICE();
  const OpDef& def = Registry::instance().op("rms_norm");
  OwnedCall oc = make_call(def, def.cases().front(), 1);
  for (const KernelImpl* k : Registry::instance().kernels("rms_norm", "opencl")) {
    if (k->variant != "subgroup") continue;
    for (OpenCLDevice* dev : cl_devices().devices) {
      const std::string why = k->ineligible_reason(dev->profile(), oc.call);
      EXPECT_EQ(why.empty(), dev->profile().has("subgroup_arith")) << why;
    }
    DeviceProfile without = cl_devices().devices[0]->profile();
    without.features.erase("subgroup_arith");
    EXPECT_NE(k->ineligible_reason(without, oc.call).find("subgroup_arith"), std::string::npos);
  }
}

// The runtime path: selection picks an OpenCL kernel and run_op matches the reference.
TEST(OpenCLKernels, RunOpSelectsAnOpenCLKernel) {
  REQUIRE_OPENCL_DEVICE();
  for (const char* op : {"rms_norm", "causal_conv1d"}) {
    const OpDef& def = Registry::instance().op(op);
    for (const OpCase& c : def.cases()) {
      if (!c.tags.count("smoke")) continue;
      SCOPED_TRACE(cat(op, " '", c.name, "'"));
      OwnedCall got = make_call(def, c, 9);
      const Selection s = select_kernel(cl_devices().devices[0]->profile(), got.call);
      EXPECT_EQ(s.kernel->backend, "opencl");
      run_op(*cl_devices().devices[0], got.call);
      OwnedCall want = make_call(def, c, 9);
      def.reference(want.call);
      for (const auto& out : def.infer_outputs(want.call))
        EXPECT_LE(nmse(got.call.get(out.first), want.call.get(out.first)), s.kernel->nmse_bound) << out.first;
    }
  }
}

#endif  // EK_HAVE_OPENCL

}  // namespace
}  // namespace ek
