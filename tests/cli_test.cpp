// The `ek` command line, run as a user would: .npy round trips of both
// foundation ops on every backend with a device (checked against the
// reference), and one-line errors with a non-zero exit for bad input.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>

#include "runtime/runtime.h"
#include "tools/npy.h"

#ifndef EK_TOOL
#error "EK_TOOL must be the path of the ek executable"
#endif

namespace ek {
namespace {

struct Result {
  int code;
  std::string err;
};

Result run_ek(const std::string& args) {
  const std::string err_file = testing::TempDir() + "ek_stderr.txt";
  const std::string cmd = std::string(EK_TOOL) + " " + args + " >/dev/null 2>" + err_file;
  const int status = std::system(cmd.c_str());
  std::ifstream in(err_file);
  std::stringstream ss;
  ss << in.rdbuf();
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, ss.str()};
}

std::string tmp(const std::string& name) { return testing::TempDir() + name; }

std::vector<std::string> backends_with_devices() {
  DeviceSet set = open_devices();
  std::vector<std::string> out;
  for (const auto& d : set.devices)
    if (std::find(out.begin(), out.end(), d->backend()) == out.end()) out.push_back(d->backend());
  return out;
}

// Writes the inputs of a case as .npy, runs `ek op run`, compares the outputs
// read back with the reference.
void round_trip(const std::string& op, const std::string& case_name, const std::string& backend) {
  const OpDef& def = Registry::instance().op(op);
  const auto cases = def.cases();
  auto it = std::find_if(cases.begin(), cases.end(), [&](const OpCase& c) { return c.name == case_name; });
  ASSERT_NE(it, cases.end()) << case_name;
  OwnedCall oc = make_call(def, *it, 7);
  std::string args = "op run " + op + " --backend " + backend;
  const auto outs = def.infer_outputs(oc.call);
  for (const auto& kv : oc.call.tensors) {
    if (outs.count(kv.first)) {
      args += " --out " + kv.first + "=" + tmp(op + "_" + kv.first + "_out.npy");
    } else {
      write_npy(tmp(op + "_" + kv.first + ".npy"), kv.second);
      args += " --in " + kv.first + "=" + tmp(op + "_" + kv.first + ".npy");
    }
  }
  for (const auto& kv : oc.call.params.values()) args += " --param " + kv.first + "=" + kv.second;
  const Result r = run_ek(args);
  ASSERT_EQ(r.code, 0) << r.err;
  def.reference(oc.call);
  for (const auto& kv : outs) {
    HostTensor got = read_npy(tmp(op + "_" + kv.first + "_out.npy"));
    EXPECT_EQ(got.shape(), kv.second.shape);
    EXPECT_LE(nmse(got.ref(), oc.call.get(kv.first)), 1e-5) << kv.first;
  }
}

TEST(Cli, OpRunRoundTripsNpyOnEveryBackend) {
  for (const std::string& b : backends_with_devices()) {
    SCOPED_TRACE(b);
    round_trip("rms_norm", "edge: dim=3 gated", b);
    round_trip("causal_conv1d", "edge: W=3 D=17 T=2 B=3", b);
  }
}

TEST(Cli, WrongShapeIsOneLineAndNonZero) {
  HostTensor x(DType::f32, {2, 8}), w(DType::f32, {7});
  write_npy(tmp("x.npy"), x.ref());
  write_npy(tmp("w.npy"), w.ref());
  const Result r = run_ek("op run rms_norm --backend cpu --in x=" + tmp("x.npy") + " --in w=" + tmp("w.npy") +
                          " --out y=" + tmp("y.npy"));
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "ek: rms_norm: w dim 0 is 7, expected dim=8\n");
}

TEST(Cli, OtherErrorsAreOneLine) {
  for (const std::string args : {"op run nosuchop --backend cpu", "op run rms_norm --backend cpu --in x=/nonexistent.npy",
                                 "op run rms_norm --backend cuda", "bench --op '('", "devices --backend metal",
                                 "plan --profile /nonexistent.json", "frobnicate"}) {
    SCOPED_TRACE(args);
    const Result r = run_ek(args);
    EXPECT_NE(r.code, 0);
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_EQ(r.err.rfind("ek: ", 0), 0u) << r.err;
  }
}

TEST(Cli, NpyRejectsTruncatedData) {
  HostTensor x(DType::f32, {4, 4});
  write_npy(tmp("t.npy"), x.ref());
  std::string bytes;
  {
    std::ifstream in(tmp("t.npy"), std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  std::ofstream(tmp("t.npy"), std::ios::binary) << bytes.substr(0, bytes.size() - 5);
  EXPECT_THROW(read_npy(tmp("t.npy")), InvalidArgument);
}

}  // namespace
}  // namespace ek
