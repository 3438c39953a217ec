// Profiles (JSON both ways, shipped files, fingerprint), feature switches and
// kernel selection (heuristic, forced by option and environment, tuning seam),
// exercised on devices that are not attached.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>

#include "runtime/runtime.h"

#ifndef EK_SOURCE_DIR
#error "EK_SOURCE_DIR must point at the repository root"
#endif

namespace ek {
namespace {

const std::string kProfiles = std::string(EK_SOURCE_DIR) + "/profiles/";

TEST(Profile, JsonRoundTripKeepsEveryField) {
  DeviceProfile p;
  p.backend = "vulkan";
  p.vendor = "V";
  p.device_name = "D";
  p.driver_name = "drv";
  p.driver_version = "1.2";
  p.api_version = "1.3";
  p.architecture = "arch";
  p.device_class = "edge";
  p.compute_units = 12;
  p.max_workgroup_size = 256;
  p.subgroup_sizes = {32, 64};
  p.shared_memory_bytes = 49152;
  p.memory_bytes = 1 << 30;
  p.max_buffer_bytes = 1 << 27;
  p.cache_bytes = 1 << 21;
  p.unified_memory = true;
  p.features = {"fp16_arith", "subgroup_arith"};
  p.quirks = {"q"};
  p.peak_read_gbps = 12.5;
  p.peak_fp32_gflops = 100;
  p.measured = true;
  const DeviceProfile q = profile_from_json(profile_to_json(p));
  EXPECT_EQ(profile_to_json(q), profile_to_json(p));
  EXPECT_EQ(q.fingerprint(), p.fingerprint());
}

TEST(Profile, FingerprintDependsOnIdentityOnly) {
  DeviceProfile a;
  a.backend = "cpu";
  a.device_name = "x";
  DeviceProfile b = a;
  b.peak_read_gbps = 99;
  b.threads = 7;
  EXPECT_EQ(a.fingerprint(), b.fingerprint());
  b.driver_version = "2";
  EXPECT_NE(a.fingerprint(), b.fingerprint());
  DeviceProfile c = a;  // same model name, another instruction set
  c.features.insert("avx512f");
  EXPECT_NE(a.fingerprint(), c.fingerprint());
  EXPECT_EQ(a.fingerprint().size(), 16u);
}

TEST(Profile, ShippedProfilesLoad) {
  for (const char* f : {"mobile-adreno-740-vulkan.json", "mobile-mali-g715-vulkan.json",
                        "mobile-adreno-740-opencl.json", "arm64-cortex-x3-cpu.json", "x86-64-avx512-vnni-cpu.json", "x86-64-avx2-zen3-cpu.json", "lavapipe-vulkan.json",
                        "pocl-opencl.json"}) {
    SCOPED_TRACE(f);
    const DeviceProfile p = load_profile(kProfiles + f);
    EXPECT_FALSE(p.device_name.empty());
    EXPECT_GT(p.peak_read_gbps, 0);
  }
}

TEST(Profile, BadFieldsAreNamed) {
  auto err = [](const nlohmann::json& j) -> std::string {
    try {
      profile_from_json(j);
    } catch (const InvalidArgument& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_EQ(err({{"device_name", "x"}}), "profile: missing field 'backend'");
  EXPECT_EQ(err({{"backend", "cuda"}, {"device_name", "x"}}),
            "profile: backend 'cuda' is not one of cpu, vulkan, opencl");
  EXPECT_EQ(err({{"backend", "cpu"}, {"device_name", "x"}, {"compute_units", "many"}}),
            "profile: field 'compute_units' has the wrong type (string)");
  EXPECT_EQ(err({{"backend", "cpu"}, {"device_name", "x"}, {"device_class", "phone"}}),
            "profile: device_class 'phone' is not one of mobile, edge, cloud, npu, cpu");
  EXPECT_THROW(load_profile("/nonexistent.json"), InvalidArgument);
}

TEST(Profile, FeaturesCanBeSwitchedOffByEnvironment) {
  DeviceProfile p;
  p.features = {"avx512f", "avx2"};
  EXPECT_TRUE(p.has("avx512f"));
  setenv("EK_DISABLE_FEATURES", "int_dot_product,avx512f", 1);
  EXPECT_FALSE(p.has("avx512f"));
  EXPECT_TRUE(p.has("avx2"));
  unsetenv("EK_DISABLE_FEATURES");
  EXPECT_TRUE(p.has("avx512f"));
}

// ------------------------------------------------------------- selection

// A test-only op with three fake vulkan kernels of different needs.
struct FakeInvocation : Invocation {
  void execute() override {}
  void read_outputs() override {}
};
KernelImpl fake(const std::string& variant, int priority, const std::string& needs) {
  KernelImpl k;
  k.op = "test_select";
  k.backend = "vulkan";
  k.variant = variant;
  k.priority = priority;
  k.ineligible_reason = [needs](const DeviceProfile& p, const OpCall&) -> std::string {
    return needs.empty() || p.has(needs) ? "" : "needs " + needs;
  };
  k.bind = [](Device&, const OpCall&, const Tuning&) { return std::make_unique<FakeInvocation>(); };
  k.tunables = {{"wg", {64, 128, 256}, 128}};
  return k;
}
const RegisterKernel r1(fake("int_dot", 30, "int_dot_product"));
const RegisterKernel r2(fake("subgroup", 20, "subgroup_arith"));
const RegisterKernel r3(fake("shared_memory", 10, ""));

OpCall test_call() {
  OpCall c;
  c.op = "test_select";
  return c;
}

TEST(Selection, HeuristicPicksHighestEligiblePriority) {
  DeviceProfile p = load_profile(kProfiles + "mobile-adreno-740-vulkan.json");
  EXPECT_EQ(select_kernel(p, test_call()).kernel->variant, "int_dot");
  p.features.erase("int_dot_product");
  EXPECT_EQ(select_kernel(p, test_call()).kernel->variant, "subgroup");
  p.features.erase("subgroup_arith");
  const Selection s = select_kernel(p, test_call());
  EXPECT_EQ(s.kernel->variant, "shared_memory");
  EXPECT_EQ(s.tuning.at("wg"), 128);
}

TEST(Selection, EnvironmentSwitchesOffAFeature) {
  const DeviceProfile p = load_profile(kProfiles + "mobile-adreno-740-vulkan.json");
  setenv("EK_DISABLE_FEATURES", "int_dot_product", 1);
  EXPECT_EQ(select_kernel(p, test_call()).kernel->variant, "subgroup");
  unsetenv("EK_DISABLE_FEATURES");
}

TEST(Selection, ForcedByOptionAndEnvironment) {
  const DeviceProfile p = load_profile(kProfiles + "mobile-mali-g715-vulkan.json");
  SelectOptions o;
  o.variant = "shared_memory";
  EXPECT_EQ(select_kernel(p, test_call(), o).why, "forced");
  EXPECT_EQ(select_kernel(p, test_call(), o).kernel->variant, "shared_memory");
  setenv("EK_FORCE_VARIANT", "other_op=x,test_select=subgroup", 1);
  EXPECT_EQ(select_kernel(p, test_call()).kernel->variant, "subgroup");
  unsetenv("EK_FORCE_VARIANT");
  o.variant = "nonexistent";
  EXPECT_THROW(select_kernel(p, test_call(), o), NotFound);
}

TEST(Selection, ForcingAnIneligibleVariantSaysWhy) {
  DeviceProfile p = load_profile(kProfiles + "mobile-mali-g715-vulkan.json");
  p.features.erase("int_dot_product");
  SelectOptions o;
  o.variant = "int_dot";
  try {
    select_kernel(p, test_call(), o);
    FAIL() << "expected Unsupported";
  } catch (const Unsupported& e) {
    EXPECT_NE(std::string(e.what()).find("needs int_dot_product"), std::string::npos) << e.what();
  }
}

TEST(Selection, TuningSourceOverridesHeuristic) {
  struct Db : TuningSource {
    std::optional<TunedChoice> lookup(const DeviceProfile&, const OpCall&) const override {
      return TunedChoice{"subgroup", {{"wg", 256}}};
    }
  } db;
  const DeviceProfile p = load_profile(kProfiles + "mobile-adreno-740-vulkan.json");
  SelectOptions o;
  o.tuning = &db;
  const Selection s = select_kernel(p, test_call(), o);
  EXPECT_EQ(s.kernel->variant, "subgroup");
  EXPECT_EQ(s.tuning.at("wg"), 256);
  EXPECT_EQ(s.why, "tuned");
}

TEST(Selection, NoKernelForBackendIsUnsupported) {
  const DeviceProfile p = load_profile(kProfiles + "arm64-cortex-x3-cpu.json");
  EXPECT_THROW(select_kernel(p, test_call()), Unsupported);
}

TEST(Devices, EveryKnownBackendReportsAScan) {
  DeviceSet set = open_devices();
  ASSERT_EQ(set.scans.size(), 3u);
  bool cpu = false;
  for (const auto& d : set.devices) cpu |= d->backend() == "cpu";
  EXPECT_TRUE(cpu);
  EXPECT_THROW(open_devices("cuda"), InvalidArgument);
}

}  // namespace
}  // namespace ek
