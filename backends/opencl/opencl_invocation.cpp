#include "backends/opencl/opencl_invocation.h"

#include <algorithm>

namespace ek {

ClInvocation::ClInvocation(Device& device, const OpCall& call)
    : dev_(as_opencl(device, call.op)), op_(call.op) {
  const OpDef& def = Registry::instance().op(call.op);
  for (const auto& kv : call.tensors) {
    auto spec = std::find_if(def.args.begin(), def.args.end(), [&](const ArgSpec& a) { return a.name == kv.first; });
    EK_CHECK_ARG(spec != def.args.end(), call.op, ": unknown tensor '", kv.first, "'");
    const TensorRef& t = kv.second;
    cl::Buffer buf = dev_.alloc(t.nbytes(), cat(call.op, ".", kv.first));
    if (spec->output)
      outputs_[kv.first] = t;
    else
      dev_.upload(buf, t.data, t.nbytes());
    buffers_.emplace(kv.first, std::move(buf));
  }
}

const cl::Buffer& ClInvocation::buffer(const std::string& tensor) const {
  auto it = buffers_.find(tensor);
  if (it == buffers_.end()) throw InvalidArgument(cat(op_, ": no device buffer for tensor '", tensor, "'"));
  return it->second;
}

const cl::Buffer& ClInvocation::buffer_or_placeholder(const std::string& tensor) const {
  auto it = buffers_.find(tensor);
  if (it != buffers_.end()) return it->second;
  if (!placeholder_()) placeholder_ = dev_.alloc(0, cat(op_, ".placeholder"));
  return placeholder_;
}

const cl::Buffer& ClInvocation::add_buffer(const std::string& name, size_t bytes, const void* init) {
  EK_CHECK_ARG(!buffers_.count(name), op_, ": buffer '", name, "' already exists");
  cl::Buffer buf = dev_.alloc(bytes, cat(op_, ".", name));
  if (init) dev_.upload(buf, init, bytes);
  return buffers_.emplace(name, std::move(buf)).first->second;
}

void ClInvocation::add_step(const cl::Kernel& kernel, const cl::NDRange& global, const cl::NDRange& local) {
  steps_.push_back({kernel, global, local});
}

void ClInvocation::execute() {
  cl::Event first, last;
  for (const Step& s : steps_) {
    cl::Event e = dev_.enqueue(s.kernel, s.global, s.local);
    if (!e()) continue;  // empty range: nothing enqueued
    if (!first()) first = e;
    last = e;
  }
  if (!first()) {
    last_seconds_ = 0.0;
    return;
  }
  dev_.check(last.wait(), cat(op_, ": waiting for the kernels"));
  dev_.finish();
  last_seconds_ = dev_.elapsed_seconds(first, last);
}

void ClInvocation::read_outputs() {
  for (const auto& kv : outputs_) dev_.download(buffers_.at(kv.first), kv.second.data, kv.second.nbytes());
}

std::string cl_buffers_ineligible(const DeviceProfile& profile, const OpCall& call) {
  if (profile.max_buffer_bytes <= 0) return "";
  for (const auto& kv : call.tensors)
    if (kv.second.nbytes() > static_cast<uint64_t>(profile.max_buffer_bytes))
      return cat("tensor ", kv.first, " needs ", kv.second.nbytes(), " bytes, more than the device's largest buffer (",
                 profile.max_buffer_bytes, " bytes)");
  return "";
}

}  // namespace ek
