#include "kernels/common/op.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <sstream>

namespace ek {

const char* status_name(Status s) {
  switch (s) {
    case Status::ok: return "ok";
    case Status::invalid_argument: return "invalid argument";
    case Status::unsupported: return "unsupported";
    case Status::device_error: return "device error";
    case Status::out_of_memory: return "out of memory";
    case Status::not_found: return "not found";
    case Status::internal: return "internal error";
  }
  return "?";
}

// ---------------------------------------------------------------- Params

void Params::set(const std::string& key, double value) {
  std::ostringstream o;
  o.precision(17);
  o << value;
  values_[key] = o.str();
}

double Params::get_float(const std::string& op, const std::string& key, double def) const {
  auto it = values_.find(key);
  if (it == values_.end()) return def;
  const char* s = it->second.c_str();
  char* end = nullptr;
  double v = std::strtod(s, &end);
  EK_CHECK_ARG(end != s && *end == '\0', op, ": param ", key, "='", it->second, "' is not a number");
  return v;
}

int64_t Params::get_int(const std::string& op, const std::string& key, int64_t def) const {
  auto it = values_.find(key);
  if (it == values_.end()) return def;
  const char* s = it->second.c_str();
  char* end = nullptr;
  errno = 0;
  long long v = std::strtoll(s, &end, 10);
  EK_CHECK_ARG(end != s && *end == '\0' && errno == 0, op, ": param ", key, "='", it->second,
               "' is not an integer");
  return v;
}

bool Params::get_bool(const std::string& op, const std::string& key, bool def) const {
  auto it = values_.find(key);
  if (it == values_.end()) return def;
  const std::string& v = it->second;
  if (v == "1" || v == "true") return true;
  if (v == "0" || v == "false") return false;
  throw InvalidArgument(cat(op, ": param ", key, "='", v, "' is not a boolean (use 0 or 1)"));
}

std::string Params::get_string(const std::string&, const std::string& key, const std::string& def) const {
  auto it = values_.find(key);
  return it == values_.end() ? def : it->second;
}

// ---------------------------------------------------------------- OpCall

const TensorRef* OpCall::find(const std::string& name) const {
  auto it = tensors.find(name);
  return it == tensors.end() ? nullptr : &it->second;
}

const TensorRef& OpCall::get(const std::string& name) const {
  const TensorRef* t = find(name);
  if (!t) throw InvalidArgument(cat(op, ": missing tensor '", name, "'"));
  return *t;
}

void OwnedCall::allocate(const std::string& name, DType dtype, const Shape& shape) {
  storage[name] = HostTensor(dtype, shape);
  call.tensors[name] = storage[name].ref();
}

void validate_call(const OpDef& def, const OpCall& call) {
  const std::string& op = def.name;
  for (const auto& kv : call.tensors) {
    auto it = std::find_if(def.args.begin(), def.args.end(),
                           [&](const ArgSpec& a) { return a.name == kv.first; });
    EK_CHECK_ARG(it != def.args.end(), op, ": unknown tensor '", kv.first, "'");
    const TensorRef& t = kv.second;
    int64_t n = shape_numel(t.shape, cat(op, ": ", kv.first));
    EK_CHECK_ARG(t.data != nullptr || n == 0, op, ": tensor '", kv.first, "' has no data");
  }
  for (const ArgSpec& a : def.args)
    if (a.required && !a.output) call.get(a.name);
  for (const auto& kv : call.params.values())
    EK_CHECK_ARG(std::find(def.params.begin(), def.params.end(), kv.first) != def.params.end(), op,
                 ": unknown param '", kv.first, "'");

  const auto outs = def.infer_outputs(call);
  for (const auto& kv : outs) {
    const TensorRef* t = call.find(kv.first);
    EK_CHECK_ARG(t != nullptr, op, ": missing output tensor '", kv.first, "'");
    EK_CHECK_ARG(t->dtype == kv.second.dtype, op, ": output ", kv.first, " has dtype ",
                 dtype_name(t->dtype), ", expected ", dtype_name(kv.second.dtype));
    EK_CHECK_ARG(t->shape == kv.second.shape, op, ": output ", kv.first, " has shape ",
                 shape_str(t->shape), ", expected ", shape_str(kv.second.shape));
  }
  for (const ArgSpec& a : def.args)
    if (a.output && call.find(a.name))
      EK_CHECK_ARG(outs.count(a.name), op, ": output '", a.name, "' is not produced by this call");
  // Inputs and outputs must not overlap: kernels may write outputs before
  // they have finished reading inputs. The op's in-place pairs may alias
  // exactly (the same tensor), never partly.
  for (const auto& o : outs) {
    const TensorRef& ot = call.get(o.first);
    const char* ob = static_cast<const char*>(ot.data);
    for (const auto& kv : call.tensors) {
      if (kv.first == o.first || kv.second.nbytes() == 0 || ot.nbytes() == 0) continue;
      const char* ib = static_cast<const char*>(kv.second.data);
      bool overlap = ib < ob + ot.nbytes() && ob < ib + kv.second.nbytes();
      if (!overlap) continue;
      const bool pair = std::find(def.in_place.begin(), def.in_place.end(), std::make_pair(o.first, kv.first)) !=
                        def.in_place.end();
      const bool same = ib == ob && kv.second.dtype == ot.dtype && kv.second.shape == ot.shape;
      EK_CHECK_ARG(!pair || same, op, ": output ", o.first, " overlaps tensor ", kv.first,
                   " without being the same tensor (an in-place update needs the same data, dtype and shape)");
      EK_CHECK_ARG(pair, op, ": output ", o.first, " overlaps tensor ", kv.first);
    }
  }
}

OwnedCall make_call(const OpDef& def, const OpCase& c, uint64_t seed) {
  OwnedCall oc;
  oc.call.op = def.name;
  oc.call.params = c.params;
  std::mt19937_64 rng(seed);
  def.make_inputs(c, rng, oc);
  for (const auto& kv : def.infer_outputs(oc.call)) oc.allocate(kv.first, kv.second.dtype, kv.second.shape);
  return oc;
}

// ---------------------------------------------------------------- kernels

Tuning KernelImpl::default_tuning() const {
  Tuning t;
  for (const auto& p : tunables) t[p.name] = p.default_value;
  return t;
}

Registry& Registry::instance() {
  static Registry r;
  return r;
}

void Registry::add_op(OpDef def) {
  std::string name = def.name;
  ops_[name] = std::move(def);
}

void Registry::add_kernel(KernelImpl impl) { kernels_.push_back(std::make_unique<KernelImpl>(std::move(impl))); }

const OpDef* Registry::find_op(const std::string& name) const {
  auto it = ops_.find(name);
  return it == ops_.end() ? nullptr : &it->second;
}

const OpDef& Registry::op(const std::string& name) const {
  const OpDef* d = find_op(name);
  if (!d) {
    std::string known;
    for (const auto& kv : ops_) known += (known.empty() ? "" : ", ") + kv.first;
    throw NotFound(cat("unknown op '", name, "' (known: ", known, ")"));
  }
  return *d;
}

std::vector<const OpDef*> Registry::ops() const {
  std::vector<const OpDef*> out;
  for (const auto& kv : ops_) out.push_back(&kv.second);
  return out;
}

std::vector<const KernelImpl*> Registry::kernels(const std::string& op, const std::string& backend) const {
  std::vector<const KernelImpl*> out;
  for (const auto& k : kernels_)
    if ((op.empty() || k->op == op) && (backend.empty() || k->backend == backend)) out.push_back(k.get());
  std::sort(out.begin(), out.end(), [](const KernelImpl* a, const KernelImpl* b) { return a->id() < b->id(); });
  return out;
}

// ---------------------------------------------------------------- checks

double nmse(const TensorRef& out, const TensorRef& ref) {
  if (out.numel() != ref.numel())
    throw InvalidArgument(cat("nmse: ", out.numel(), " vs ", ref.numel(), " elements"));
  double num = 0, den = 0;
  for (int64_t i = 0; i < ref.numel(); ++i) {
    double r = load_as_double(ref, i), o = load_as_double(out, i);
    if (!std::isfinite(r)) continue;  // non-finite reference elements are checked by identity elsewhere
    num += (o - r) * (o - r);
    den += r * r;
  }
  if (std::isnan(num)) return INFINITY;
  return num / std::max(den, 1e-30);
}

int64_t count_nonfinite_where_ref_finite(const TensorRef& out, const TensorRef& ref) {
  int64_t bad = 0;
  for (int64_t i = 0; i < ref.numel(); ++i)
    if (std::isfinite(load_as_double(ref, i)) && !std::isfinite(load_as_double(out, i))) ++bad;
  return bad;
}

std::string dims_str(const TensorRef& t) { return shape_str(t.shape); }

void check_rank(const std::string& op, const std::string& name, const TensorRef& t, int rank) {
  EK_CHECK_ARG(t.rank() == rank, op, ": ", name, " has ", t.rank(), " dims ", shape_str(t.shape),
               ", expected ", rank);
}

void check_dtype(const std::string& op, const std::string& name, const TensorRef& t,
                 std::initializer_list<DType> allowed) {
  std::string list;
  for (DType d : allowed) {
    if (d == t.dtype) return;
    list += (list.empty() ? "" : "|") + std::string(dtype_name(d));
  }
  throw InvalidArgument(cat(op, ": ", name, " has dtype ", dtype_name(t.dtype), ", expected ", list));
}

void check_dim(const std::string& op, const std::string& name, const TensorRef& t, int axis,
               int64_t expected, const std::string& expected_name) {
  EK_CHECK_ARG(t.shape[axis] == expected, op, ": ", name, " dim ", axis, " is ", t.shape[axis],
               ", expected ", expected_name, "=", expected);
}

void fill_uniform(const HostTensor& t, std::mt19937_64& rng, double lo, double hi) {
  std::uniform_real_distribution<double> dist(lo, hi);
  for (int64_t i = 0; i < t.numel(); ++i) {
    double v = dist(rng);
    switch (t.dtype()) {
      case DType::f32: t.as<float>()[i] = static_cast<float>(v); break;
      case DType::f16: t.as<uint16_t>()[i] = f32_to_f16(static_cast<float>(v)); break;
      default: throw InvalidArgument("fill_uniform: only f32/f16 tensors");
    }
  }
}

}  // namespace ek
