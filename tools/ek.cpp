// ek: the edgekernels command line.
//   ek devices [--json] [--backend B] [--remeasure]
//   ek bench [--op RE] [--backend B] [--variant RE] [--shape RE] [--preset P] [--json FILE]
//   ek op list
//   ek op run OP --backend B --in NAME=FILE.npy ... --out NAME=FILE.npy ... [--param KEY=VALUE ...]
//   ek plan --profile FILE.json   (which variant each op would use on a device that is not attached)
// Every error is one line on stderr and a non-zero exit.
#include <CLI/CLI.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <regex>
#include <sstream>

#include "bench/bench_common.h"
#include "edgekernels/ek.h"
#include "runtime/runtime.h"
#include "tools/npy.h"

namespace ek {
namespace {

std::string human_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) {
    b /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.0f %s", b, units[u]);
  return buf;
}

// ------------------------------------------------------------------ devices

int cmd_devices(bool json, const std::string& backend, bool remeasure) {
  DeviceSet set = open_devices(backend);
  nlohmann::json out = nlohmann::json::array();
  if (!json)
    std::printf("%-7s %-44s %-6s %4s %9s %9s %10s %10s  %s\n", "backend", "device", "class", "CUs", "memory",
                "read GB/s", "fp32 GF/s", "int8 GOP/s", "fingerprint");
  for (auto& d : set.devices) {
    ensure_peaks(*d, remeasure);
    const DeviceProfile& p = d->profile();
    if (json) {
      out.push_back(profile_to_json(p));
      continue;
    }
    std::printf("%-7s %-44.44s %-6s %4d %9s %9.1f %10.1f %10.1f  %s\n", p.backend.c_str(), p.device_name.c_str(),
                p.device_class.c_str(), p.compute_units, human_bytes(static_cast<double>(p.memory_bytes)).c_str(),
                p.peak_read_gbps, p.peak_fp32_gflops, p.peak_int8_gops, p.fingerprint().c_str());
    std::string feats;
    for (const auto& f : p.features) feats += (feats.empty() ? "" : " ") + f;
    std::printf("        features: %s\n", feats.c_str());
  }
  if (json) {
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  for (const auto& s : set.scans) {
    bool any = false;
    for (const auto& d : set.devices) any |= d->backend() == s.backend;
    if (!any) {
      std::string notes;
      for (const auto& n : s.notes) notes += (notes.empty() ? "" : "; ") + n;
      std::printf("%-7s (no device) %s\n", s.backend.c_str(), notes.c_str());
    }
  }
  return 0;
}

// ------------------------------------------------------------------ bench

// Prints one table row per benchmark as it finishes, with progress on stderr.
class TableReporter : public benchmark::BenchmarkReporter {
 public:
  explicit TableReporter(size_t total) : total_(total) {}
  bool ReportContext(const Context&) override {
    // cpu: process CPU time per iteration, all threads (for a CPU device
    // with n threads, cpu / n is the time a quiet machine would give).
    std::printf("%-14s %-7s %-22s %-46s %11s %9s %10s %7s %11s\n", "op", "backend", "variant", "shape", "time", "GB/s",
                "GFLOP/s", "%peak", "cpu");
    return true;
  }
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& r : runs) {
      if (r.run_type == Run::RT_Aggregate && r.aggregate_name != "median") continue;
      if (r.run_type == Run::RT_Iteration && r.repetitions > 1) continue;
      ++done_;
      std::string name = r.run_name.function_name;
      // op/backend/variant/shape
      std::vector<std::string> parts;
      for (size_t i = 0, n = 0; n < 3; ++n) {
        size_t j = name.find('/', i);
        if (j == std::string::npos) break;
        parts.push_back(name.substr(i, j - i));
        i = j + 1;
        if (n == 2) parts.push_back(name.substr(i));
      }
      while (parts.size() < 4) parts.push_back("");
      if (r.error_occurred) {
        std::printf("%-14s %-7s %-22s %-46.46s  skipped: %s\n", parts[0].c_str(), parts[1].c_str(), parts[2].c_str(),
                    parts[3].c_str(), r.error_message.c_str());
      } else {
        auto get = [&](const char* k) {
          auto it = r.counters.find(k);
          return it == r.counters.end() ? NAN : it->second.value;
        };
        const double t = get("seconds");
        const double gops = get("GOP/s");
        char tbuf[32];
        if (t < 1e-3)
          std::snprintf(tbuf, sizeof tbuf, "%.1f us", t * 1e6);
        else
          std::snprintf(tbuf, sizeof tbuf, "%.3f ms", t * 1e3);
        const double cpu = r.GetAdjustedCPUTime() / benchmark::GetTimeUnitMultiplier(r.time_unit);
        char cbuf[32];
        if (cpu < 1e-3)
          std::snprintf(cbuf, sizeof cbuf, "%.1f us", cpu * 1e6);
        else
          std::snprintf(cbuf, sizeof cbuf, "%.3f ms", cpu * 1e3);
        std::printf("%-14s %-7s %-22s %-46.46s %11s %9.1f %10.1f %6.1f%% %11s\n", parts[0].c_str(), parts[1].c_str(),
                    parts[2].c_str(), parts[3].c_str(), tbuf, get("GB/s"),
                    std::isnan(gops) ? get("GFLOP/s") : gops, 100.0 * get("roofline"), cbuf);
      }
      std::fflush(stdout);
      std::fprintf(stderr, "\r[%zu/%zu] %s", done_, total_, name.c_str());
      std::fprintf(stderr, "\033[K");
      std::fflush(stderr);
    }
  }
  void Finalize() override { std::fprintf(stderr, "\r\033[K"); }

 private:
  size_t total_, done_ = 0;
};

struct BenchPreset {
  const char* name;
  const char* op;
  const char* shape;
  const char* doc;
};
const BenchPreset kPresets[] = {
    {"quick", ".*", "(T=1(/| |$)|decode Tk|q2g128/decode_hot/hybrid-edge-1b)",
     "decode-size cases of every op on every device (the main job's sweep)"},
    {"foundation", "rms_norm|causal_conv1d", ".*", "rms_norm and causal_conv1d"},
    {"matmul", "matmul_q2", ".*", "2-bit matmul: decode GEMV cold/hot and prefill GEMM"},
    {"scan", "selective_scan|ssd_scan", ".*", "Mamba-1 and Mamba-2 scans and decode steps"},
    {"attention", "attention", ".*", "sparse attention prefill and decode"},
};

int cmd_bench(std::string op, const std::string& backend, const std::string& variant, std::string shape,
              const std::string& preset, const std::string& json_file, double min_time, int repetitions,
              bool list_only) {
  if (!preset.empty()) {
    const BenchPreset* p = nullptr;
    for (const auto& candidate : kPresets)
      if (preset == candidate.name) p = &candidate;
    if (!p) {
      std::string names;
      for (const auto& c : kPresets) names += std::string(names.empty() ? "" : ", ") + c.name;
      throw InvalidArgument(cat("unknown preset '", preset, "' (have: ", names, ")"));
    }
    if (op.empty()) op = p->op;
    if (shape.empty()) shape = p->shape;
  }
  if (!backend.empty()) setenv("EK_BENCH_BACKENDS", backend.c_str(), 1);
  for (const auto* re : {&op, &shape})
    try {
      std::regex check(*re);
    } catch (const std::regex_error&) {
      throw InvalidArgument(cat("bad regular expression '", *re, "'"));
    }
  if (!variant.empty()) std::regex check(variant);
  // Names are op/backend/variant/shape; POSIX extended regex as Google Benchmark uses.
  // Names are op/backend/variant/shape. Wildcards stay [^/]* so the regex
  // (POSIX, as Google Benchmark compiles it) never backtracks across parts.
  auto part = [](const std::string& re) { return re.empty() || re == ".*" ? std::string("[^/]*") : "[^/]*(" + re + ")[^/]*"; };
  const std::string filter = "^" + part(op) + "/[^/]*/" + part(variant) + "/" +
                             (shape.empty() || shape == ".*" ? std::string("") : ".*(" + shape + ")");
  bench::register_all_cases();
  std::vector<std::string> args = {"ek", "--benchmark_filter=" + filter,
                                   "--benchmark_min_time=" + std::to_string(min_time)};
  if (repetitions > 1) {
    args.push_back("--benchmark_repetitions=" + std::to_string(repetitions));
    args.push_back("--benchmark_report_aggregates_only=true");
  }
  if (!json_file.empty()) {
    args.push_back("--benchmark_out=" + json_file);
    args.push_back("--benchmark_out_format=json");
  }
  if (list_only) args.push_back("--benchmark_list_tests=true");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(&a[0]);
  int argc = static_cast<int>(argv.size());
  for (Device* d : bench::devices())
    benchmark::AddCustomContext("device." + d->backend() + "." + d->profile().fingerprint(),
                                profile_to_json(d->profile()).dump());
  if (list_only) {
    benchmark::Initialize(&argc, argv.data());
    benchmark::RunSpecifiedBenchmarks();
    return 0;
  }
  // Count the matching cases first (for the progress line): list them into a
  // discarded stream, then parse the flags again with listing off.
  size_t total = 0;
  {
    std::vector<std::string> list_args = args;
    list_args.push_back("--benchmark_list_tests=true");
    std::vector<char*> list_argv;
    for (auto& a : list_args) list_argv.push_back(&a[0]);
    int list_argc = static_cast<int>(list_argv.size());
    benchmark::Initialize(&list_argc, list_argv.data());
    std::ostringstream sink;
    std::streambuf* old = std::cout.rdbuf(sink.rdbuf());
    total = benchmark::RunSpecifiedBenchmarks();
    std::cout.rdbuf(old);
  }
  args.push_back("--benchmark_list_tests=false");
  argv.clear();
  for (auto& a : args) argv.push_back(&a[0]);
  argc = static_cast<int>(argv.size());
  benchmark::Initialize(&argc, argv.data());
  if (total == 0) throw InvalidArgument("no benchmark matches the given --op/--backend/--variant/--shape");
  TableReporter table(total);
  const size_t ran = benchmark::RunSpecifiedBenchmarks(&table);
  benchmark::Shutdown();
  if (ran == 0) throw InvalidArgument("no benchmark matches the given --op/--backend/--variant/--shape");
  return 0;
}

// ------------------------------------------------------------------ op

DLTensor to_dl(const HostTensor& t, std::vector<int64_t>& shape_store) {
  DLTensor d{};
  d.data = t.data();
  d.device = {kDLCPU, 0};
  d.ndim = static_cast<int32_t>(t.shape().size());
  shape_store = t.shape();
  d.shape = shape_store.data();
  d.strides = nullptr;
  d.byte_offset = 0;
  switch (t.dtype()) {
    case DType::f32: d.dtype = {kDLFloat, 32, 1}; break;
    case DType::f16: d.dtype = {kDLFloat, 16, 1}; break;
    case DType::i8: d.dtype = {kDLInt, 8, 1}; break;
    case DType::u8: d.dtype = {kDLUInt, 8, 1}; break;
    case DType::i32: d.dtype = {kDLInt, 32, 1}; break;
    case DType::i64: d.dtype = {kDLInt, 64, 1}; break;
  }
  return d;
}

std::pair<std::string, std::string> split_kv(const std::string& s, const char* what) {
  auto eq = s.find('=');
  EK_CHECK_ARG(eq != std::string::npos && eq > 0, what, " '", s, "' is not NAME=VALUE");
  return {s.substr(0, eq), s.substr(eq + 1)};
}

int cmd_op_run(const std::string& op, const std::string& backend, int device_index,
               const std::vector<std::string>& ins, const std::vector<std::string>& outs,
               const std::vector<std::string>& params, const std::string& variant) {
  const OpDef& def = Registry::instance().op(op);
  OpCall call;
  call.op = op;
  std::map<std::string, HostTensor> storage;
  for (const auto& s : ins) {
    auto kv = split_kv(s, "--in");
    auto spec = std::find_if(def.args.begin(), def.args.end(), [&](const ArgSpec& a) { return a.name == kv.first; });
    EK_CHECK_ARG(spec != def.args.end() && !spec->output, op, ": '", kv.first, "' is not an input of ", op);
    storage[kv.first] = read_npy(kv.second);
    call.tensors[kv.first] = storage[kv.first].ref();
  }
  for (const auto& s : params) {
    auto kv = split_kv(s, "--param");
    call.params.set(kv.first, kv.second);
  }
  std::map<std::string, std::string> out_files;
  for (const auto& s : outs) {
    auto kv = split_kv(s, "--out");
    out_files[kv.first] = kv.second;
  }
  // Outputs are allocated as the op infers them (this validates the inputs).
  const auto inferred = def.infer_outputs(call);
  for (const auto& kv : out_files)
    EK_CHECK_ARG(inferred.count(kv.first), op, ": '", kv.first, "' is not an output of ", op, " for these inputs");
  for (const auto& kv : inferred) {
    storage[kv.first] = HostTensor(kv.second.dtype, kv.second.shape);
    call.tensors[kv.first] = storage[kv.first].ref();
  }
  // Run through the C API, as an embedding runtime would.
  std::vector<std::vector<int64_t>> shapes(call.tensors.size());
  std::vector<DLTensor> dls;
  dls.reserve(call.tensors.size());
  std::vector<ek_tensor_arg> targs;
  size_t i = 0;
  for (auto& kv : storage) {
    dls.push_back(to_dl(kv.second, shapes[i++]));
    targs.push_back({kv.first.c_str(), &dls.back()});
  }
  std::vector<ek_param> pargs;
  for (const auto& kv : call.params.values()) pargs.push_back({kv.first.c_str(), kv.second.c_str()});
  ek_context_options o;
  ek_context_options_init(&o);
  o.backend = backend.c_str();
  o.device_index = device_index;
  ek_context* ctx = nullptr;
  if (ek_context_create(&o, &ctx) != EK_OK) throw Error(Status::not_found, ek_last_error());
  ek_run_options ro{variant.empty() ? nullptr : variant.c_str()};
  const ek_status st = ek_op_run(ctx, op.c_str(), targs.data(), targs.size(), pargs.data(), pargs.size(), &ro);
  ek_context_destroy(ctx);
  if (st != EK_OK) throw Error(static_cast<Status>(st), ek_last_error());
  for (const auto& kv : out_files) write_npy(kv.second, storage[kv.first].ref());
  return 0;
}

int cmd_op_list() {
  for (const OpDef* def : Registry::instance().ops()) {
    std::printf("%s: %s\n", def->name.c_str(), def->doc.c_str());
    for (const auto& a : def->args)
      std::printf("  %-4s %-12s %s%s\n", a.output ? "out" : "in", a.name.c_str(), a.doc.c_str(),
                  a.required ? "" : " (optional)");
    std::string ps;
    for (const auto& p : def->params) ps += (ps.empty() ? "" : ", ") + p;
    std::printf("  params: %s\n  kernels:", ps.c_str());
    for (const KernelImpl* k : Registry::instance().kernels(def->name)) std::printf(" %s/%s", k->backend.c_str(), k->variant.c_str());
    std::printf("\n");
  }
  return 0;
}

// For a profile loaded from JSON (a device that need not be attached): which
// variant each op's cases would get, and why the others are rejected.
int cmd_plan(const std::string& profile_path, const std::string& op_filter) {
  const DeviceProfile p = load_profile(profile_path);
  std::printf("plan for %s (%s, fingerprint %s)\n", p.label().c_str(), p.device_class.c_str(), p.fingerprint().c_str());
  for (const OpDef* def : Registry::instance().ops()) {
    if (!op_filter.empty() && def->name != op_filter) continue;
    for (const OpCase& c : def->cases()) {
      if (!c.tags.count("realistic")) continue;
      OwnedCall oc = make_call(*def, c, 1);
      std::string chosen;
      try {
        Selection s = select_kernel(p, oc.call);
        chosen = s.kernel->variant + " (" + s.why + ")";
      } catch (const Error& e) {
        chosen = std::string("none: ") + e.what();
      }
      std::printf("  %-14s %-48.48s -> %s\n", def->name.c_str(), c.name.c_str(), chosen.c_str());
    }
  }
  return 0;
}

}  // namespace
}  // namespace ek

int main(int argc, char** argv) {
  CLI::App app{"edgekernels: 2-bit matmul, selective scan and sparse attention kernels on CPU, Vulkan and OpenCL"};
  app.require_subcommand(1);
  app.failure_message(CLI::FailureMessage::simple);

  auto* devices = app.add_subcommand("devices", "List devices with their measured peaks");
  bool json = false, remeasure = false;
  std::string backend;
  devices->add_flag("--json", json, "Print the full capability profiles as JSON");
  devices->add_option("--backend", backend, "Only this backend (cpu, vulkan, opencl; comma list)");
  devices->add_flag("--remeasure", remeasure, "Ignore cached peaks and measure again");

  auto* bench = app.add_subcommand("bench", "Run benchmark cases and print a table");
  std::string op_re, variant_re, shape_re, preset, json_file;
  double min_time = 0.1;
  int repetitions = 1;
  bool list_only = false;
  bench->add_option("--op", op_re, "Regular expression on op names");
  bench->add_option("--backend", backend, "Backend(s): cpu, vulkan, opencl (comma list)");
  bench->add_option("--variant", variant_re, "Regular expression on variant names");
  bench->add_option("--shape", shape_re, "Regular expression on case names");
  bench->add_option("--preset", preset, "Named selection: quick, foundation, matmul, scan, attention");
  bench->add_option("--json", json_file, "Also write Google Benchmark JSON to this file");
  bench->add_option("--min-time", min_time, "Minimum seconds per case")->check(CLI::PositiveNumber);
  bench->add_option("--repetitions", repetitions, "Repetitions per case (the table shows the median)")
      ->check(CLI::Range(1, 100));
  bench->add_flag("--list", list_only, "List matching cases without running them");
  std::vector<std::string> tune;
  bench->add_option("--tune", tune, "NAME=VALUE kernel tunable for every case whose kernel declares it")
      ->take_all();

  auto* op = app.add_subcommand("op", "Operators: list them, or run one on .npy files");
  op->require_subcommand(1);
  op->add_subcommand("list", "List operators, their tensors, params and kernels");
  auto* run = op->add_subcommand("run", "Run an operator on NumPy .npy inputs");
  std::string op_name, run_variant;
  int device_index = 0;
  std::vector<std::string> ins, outs, params;
  run->add_option("op", op_name, "Operator name (see `ek op list`)")->required();
  run->add_option("--backend", backend, "cpu, vulkan or opencl")->required();
  run->add_option("--device", device_index, "Device index within the backend");
  run->add_option("--in", ins, "NAME=FILE.npy input tensor")->take_all();
  run->add_option("--out", outs, "NAME=FILE.npy output tensor to write")->take_all();
  run->add_option("--param", params, "KEY=VALUE parameter (booleans as 0/1)")->take_all();
  run->add_option("--variant", run_variant, "Force a kernel variant");

  auto* plan = app.add_subcommand("plan", "Show kernel selection for a device profile loaded from JSON");
  std::string profile_path, plan_op;
  plan->add_option("--profile", profile_path, "Profile JSON (e.g. profiles/mobile-adreno-7xx.json)")->required();
  plan->add_option("--op", plan_op, "Only this op");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);
    std::fprintf(stderr, "ek: %s\n", e.what());
    return 2;
  }
  try {
    if (*devices) return ek::cmd_devices(json, backend, remeasure);
    if (*bench) {
      std::string joined;
      for (const auto& t : tune) joined += (joined.empty() ? "" : ",") + t;
      if (!joined.empty()) setenv("EK_BENCH_TUNE", joined.c_str(), 1);
    }
    if (*bench)
      return ek::cmd_bench(op_re, backend, variant_re, shape_re, preset, json_file, min_time, repetitions, list_only);
    if (*run) return ek::cmd_op_run(op_name, backend, device_index, ins, outs, params, run_variant);
    if (*op) return ek::cmd_op_list();
    if (*plan) return ek::cmd_plan(profile_path, plan_op);
  } catch (const std::exception& e) {
    std::string msg = e.what();
    std::replace(msg.begin(), msg.end(), '\n', ' ');
    std::fprintf(stderr, "ek: %s\n", msg.c_str());
    return 1;
  }
  return 0;
}
