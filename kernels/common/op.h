// The operator framework: what an op call is, how an operator describes its
// contract (OpDef), how an implementation describes itself (KernelImpl), and the
// registry both are entered in. Each kernels/<op>/ folder registers one OpDef and
// any number of KernelImpls with static registrars.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backends/common/device.h"
#include "kernels/common/error.h"
#include "kernels/common/tensor.h"

namespace ek {

// Scalar parameters of a call, kept as text so the CLI, the C API and JSON all
// pass them the same way; typed getters validate and name the key on error.
class Params {
 public:
  void set(const std::string& key, const std::string& value) { values_[key] = value; }
  void set(const std::string& key, double value);
  void set(const std::string& key, int64_t value) { values_[key] = std::to_string(value); }
  void set(const std::string& key, int value) { set(key, static_cast<int64_t>(value)); }
  void set(const std::string& key, bool value) { values_[key] = value ? "1" : "0"; }
  bool has(const std::string& key) const { return values_.count(key) != 0; }
  const std::map<std::string, std::string>& values() const { return values_; }

  // `op` prefixes error messages ("rms_norm: param eps='x' is not a number").
  double get_float(const std::string& op, const std::string& key, double def) const;
  int64_t get_int(const std::string& op, const std::string& key, int64_t def) const;
  bool get_bool(const std::string& op, const std::string& key, bool def) const;
  std::string get_string(const std::string& op, const std::string& key, const std::string& def) const;

 private:
  std::map<std::string, std::string> values_;
};

// One call of an operator: named host tensors (inputs and outputs, by the names
// ops.md gives them) plus scalar parameters.
struct OpCall {
  std::string op;
  std::map<std::string, TensorRef> tensors;
  Params params;

  const TensorRef* find(const std::string& name) const;
  // Throws InvalidArgument "<op>: missing tensor 'name'" when absent.
  const TensorRef& get(const std::string& name) const;
};

// Work of one call, for benchmark counters and roofline.
struct Cost {
  double bytes = 0;   // minimal bytes moved to/from memory
  double flops = 0;   // floating-point ops (FMA = 2)
  double int_ops = 0; // integer ops of int8 paths (multiply+add = 2)
};

// A named case from the shared case list; dims are op-specific ("rows", "dim", ...).
struct OpCase {
  std::string op;
  std::string name;  // "llama-3.2-1b d_model T=512", "edge: odd dim 3"
  std::map<std::string, int64_t> dims;
  Params params;
  std::set<std::string> tags;  // "smoke", "realistic", "edge", "bench"
};

// A call together with the host storage behind its tensors.
struct OwnedCall {
  OpCall call;
  std::map<std::string, HostTensor> storage;
  // Allocates outputs as the op infers them (zero-filled) and points call at them.
  void allocate(const std::string& name, DType dtype, const Shape& shape);
};

struct ArgSpec {
  std::string name;
  bool required = true;
  bool output = false;
  std::string doc;  // "x [rows, dim] f32|f16"
};

struct OpDef {
  std::string name;
  std::string doc;
  std::vector<ArgSpec> args;
  std::vector<std::string> params;  // accepted parameter keys
  // Validates the inputs and parameters of `call` (not the outputs) and returns
  // the outputs it must produce. Throws InvalidArgument naming the argument.
  std::function<std::map<std::string, TensorDesc>(const OpCall&)> infer_outputs;
  // Scalar double-precision oracle; writes the call's outputs.
  std::function<void(const OpCall&)> reference;
  std::function<Cost(const OpCall&)> cost;
  // The shared case list (tests and benchmarks use the same one).
  std::function<std::vector<OpCase>()> cases;
  // Fills the inputs of a case with deterministic data; outputs are allocated
  // by make_call afterwards.
  std::function<void(const OpCase&, std::mt19937_64&, OwnedCall&)> make_inputs;
  // (output, input) pairs where the output may be the very tensor of the input
  // (same data, dtype and shape): an update in place, e.g. a decode step's
  // state. Every kernel of the op supports it; any other overlap is rejected.
  std::vector<std::pair<std::string, std::string>> in_place = {};
};

// Full validation of a call against its OpDef: unknown or missing tensors,
// unknown parameters, inputs (via infer_outputs), and the outputs' dtype/shape.
void validate_call(const OpDef& def, const OpCall& call);
// Builds a ready-to-run call for a case: inputs from make_inputs, outputs allocated.
OwnedCall make_call(const OpDef& def, const OpCase& c, uint64_t seed);

// ---------------------------------------------------------------------------
// Implementations

struct TunableParam {
  std::string name;
  std::vector<int64_t> values;  // the range the tuner explores
  int64_t default_value = 0;
};
using Tuning = std::map<std::string, int64_t>;

// A kernel bound to one call on one device, with its data resident there, so it
// can be executed repeatedly (benchmarks) without re-uploading.
class Invocation {
 public:
  virtual ~Invocation() = default;
  // Runs the kernel once and waits for it.
  virtual void execute() = 0;
  // Device-side time of the last execute() in seconds (timestamps/events), or
  // a negative value when the backend has no device timer.
  virtual double last_device_seconds() const { return -1.0; }
  // Copies results into the output tensors of the call it was bound to.
  virtual void read_outputs() = 0;
};

struct KernelImpl {
  std::string op;
  std::string backend;  // "cpu", "vulkan", "opencl"
  std::string variant;  // "halide_avx512", "subgroup_x4", ...
  std::string doc;
  // Selection heuristic: among eligible variants the highest priority wins
  // unless the tuning database or a forced choice says otherwise.
  int priority = 0;
  double nmse_bound = 1e-7;  // accuracy this path promises (ops.md table)
  std::vector<TunableParam> tunables;
  // "" when the implementation can run this call on this device, else why not.
  std::function<std::string(const DeviceProfile&, const OpCall&)> ineligible_reason;
  std::function<std::unique_ptr<Invocation>(Device&, const OpCall&, const Tuning&)> bind;

  std::string id() const { return op + "/" + backend + "/" + variant; }
  Tuning default_tuning() const;
};

class Registry {
 public:
  static Registry& instance();
  void add_op(OpDef def);
  void add_kernel(KernelImpl impl);
  const OpDef& op(const std::string& name) const;  // throws NotFound
  const OpDef* find_op(const std::string& name) const;
  std::vector<const OpDef*> ops() const;
  std::vector<const KernelImpl*> kernels(const std::string& op = "", const std::string& backend = "") const;

 private:
  std::map<std::string, OpDef> ops_;
  std::vector<std::unique_ptr<KernelImpl>> kernels_;
};

struct RegisterOp {
  explicit RegisterOp(OpDef def) { Registry::instance().add_op(std::move(def)); }
};
struct RegisterKernel {
  explicit RegisterKernel(KernelImpl impl) { Registry::instance().add_kernel(std::move(impl)); }
};

// nmse(out, ref) = sum((out-ref)^2) / max(sum(ref^2), 1e-30), in double (ops.md).
double nmse(const TensorRef& out, const TensorRef& ref);
// Number of elements where ref is finite but out is not.
int64_t count_nonfinite_where_ref_finite(const TensorRef& out, const TensorRef& ref);

// Small helpers ops use in their contracts.
std::string dims_str(const TensorRef& t);
void check_rank(const std::string& op, const std::string& name, const TensorRef& t, int rank);
void check_dtype(const std::string& op, const std::string& name, const TensorRef& t,
                 std::initializer_list<DType> allowed);
void check_dim(const std::string& op, const std::string& name, const TensorRef& t, int axis,
               int64_t expected, const std::string& expected_name);
void fill_uniform(const HostTensor& t, std::mt19937_64& rng, double lo, double hi);

}  // namespace ek
