// Kernel selection. Order of authority: an explicit variant (API option or
// EK_FORCE_VARIANT), then the tuning database, then the heuristic: the eligible
// kernel with the highest declared priority (implementations set priority from
// how specialised they are: ISA-specific > generic, subgroup > shared-memory >
// scalar), ties broken by id for determinism.
#include <cstdlib>
#include <sstream>

#include "runtime/runtime.h"

namespace ek {
namespace {

// EK_FORCE_VARIANT="rms_norm=halide_auto,causal_conv1d=subgroup" or just "variant".
std::string forced_from_env(const std::string& op) {
  const char* env = std::getenv("EK_FORCE_VARIANT");
  if (!env) return "";
  std::stringstream ss(env);
  std::string any;
  for (std::string item; std::getline(ss, item, ',');) {
    auto eq = item.find('=');
    if (eq == std::string::npos) {
      any = item;
    } else if (item.substr(0, eq) == op) {
      return item.substr(eq + 1);
    }
  }
  return any;
}

}  // namespace

std::vector<Candidate> candidates(const DeviceProfile& p, const OpCall& call) {
  std::vector<Candidate> out;
  for (const KernelImpl* k : Registry::instance().kernels(call.op, p.backend)) {
    std::string why = k->ineligible_reason ? k->ineligible_reason(p, call) : "";
    out.push_back({k, why});
  }
  return out;
}

Selection select_kernel(const DeviceProfile& p, const OpCall& call, const SelectOptions& opts) {
  const auto cands = candidates(p, call);
  if (cands.empty()) throw Unsupported(cat(call.op, ": no kernel registered for backend ", p.backend));
  std::string forced = !opts.variant.empty() ? opts.variant : forced_from_env(call.op);
  if (!forced.empty()) {
    for (const auto& c : cands) {
      if (c.kernel->variant != forced) continue;
      if (!c.ineligible.empty())
        throw Unsupported(cat(call.op, ": forced variant ", forced, " cannot run on ", p.label(), ": ", c.ineligible));
      return {c.kernel, c.kernel->default_tuning(), "forced"};
    }
    std::string names;
    for (const auto& c : cands) names += (names.empty() ? "" : ", ") + c.kernel->variant;
    // A variant forced through the environment may name another op's variant;
    // only an explicit API choice must exist.
    if (!opts.variant.empty())
      throw NotFound(cat(call.op, ": no variant '", forced, "' on backend ", p.backend, " (have: ", names, ")"));
  }
  if (opts.tuning) {
    if (auto t = opts.tuning->lookup(p, call)) {
      for (const auto& c : cands)
        if (c.kernel->variant == t->variant && c.ineligible.empty()) {
          Tuning tuning = c.kernel->default_tuning();
          for (const auto& kv : t->tuning) tuning[kv.first] = kv.second;
          return {c.kernel, tuning, "tuned"};
        }
    }
  }
  const Candidate* best = nullptr;
  for (const auto& c : cands)
    if (c.ineligible.empty() && (!best || c.kernel->priority > best->kernel->priority)) best = &c;
  if (!best) {
    std::string reasons;
    for (const auto& c : cands) reasons += cat("; ", c.kernel->variant, ": ", c.ineligible);
    throw Unsupported(cat(call.op, ": no eligible kernel on ", p.label(), reasons));
  }
  return {best->kernel, best->kernel->default_tuning(), cat("heuristic: priority ", best->kernel->priority)};
}

void run_op(Device& dev, const OpCall& call, const SelectOptions& opts) {
  const OpDef& def = Registry::instance().op(call.op);
  validate_call(def, call);
  const Selection s = select_kernel(dev.profile(), call, opts);
  auto inv = s.kernel->bind(dev, call, s.tuning);
  inv->execute();
  inv->read_outputs();
}

}  // namespace ek
