// C++ convenience layer over the C API: RAII context and exceptions.
#pragma once

#include <initializer_list>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "edgekernels/ek.h"

namespace edgekernels {

class Exception : public std::runtime_error {
 public:
  Exception(ek_status status, const std::string& message) : std::runtime_error(message), status_(status) {}
  ek_status status() const { return status_; }

 private:
  ek_status status_;
};

inline void check(ek_status s) {
  if (s != EK_OK) throw Exception(s, ek_last_error());
}

class Context {
 public:
  explicit Context(const std::string& backend = "", int device_index = 0, int cpu_threads = 0) {
    ek_context_options o;
    ek_context_options_init(&o);
    o.backend = backend.c_str();
    o.device_index = device_index;
    o.cpu_threads = cpu_threads;
    check(ek_context_create(&o, &ctx_));
  }
  ~Context() { ek_context_destroy(ctx_); }
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;
  Context(Context&& o) noexcept : ctx_(std::exchange(o.ctx_, nullptr)) {}

  std::string profile_json() const {
    size_t needed = 0;
    check(ek_context_profile_json(ctx_, nullptr, 0, &needed));
    std::string s(needed, '\0');
    check(ek_context_profile_json(ctx_, &s[0], s.size(), &needed));
    s.resize(needed - 1);
    return s;
  }

  // run("rms_norm", {{"x", &x}, {"w", &w}, {"y", &y}}, {{"eps", "1e-5"}});
  void run(const std::string& op, std::initializer_list<ek_tensor_arg> tensors,
           std::initializer_list<std::pair<std::string, std::string>> params = {},
           const std::string& variant = "") {
    std::vector<ek_param> p;
    for (const auto& kv : params) p.push_back({kv.first.c_str(), kv.second.c_str()});
    ek_run_options o{variant.empty() ? nullptr : variant.c_str()};
    check(ek_op_run(ctx_, op.c_str(), tensors.begin(), tensors.size(), p.data(), p.size(), &o));
  }

  ek_context* get() const { return ctx_; }

 private:
  ek_context* ctx_ = nullptr;
};

}  // namespace edgekernels
