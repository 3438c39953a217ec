// The Invocation most OpenCL kernels use, so an op's OpenCL file only chooses
// build options, sets arguments and names the ND-ranges:
//
//   auto inv = std::make_unique<ClInvocation>(device, call);  // uploads inputs
//   OpenCLDevice& dev = inv->device();
//   cl::Kernel k = dev.kernel("my_op/my_op.cl",
//                             BuildOptions().define("WG", 128).flag("X_F16", f16).str(), "my_op");
//   set_kernel_args(dev, k, inv->buffer("x"), inv->buffer_or_placeholder("bias"),
//                   inv->buffer("y"), cl_int(n));
//   inv->add_step(k, cl::NDRange(round_up(n, 128)), cl::NDRange(128));
//   return inv;
//
// execute() enqueues the steps in order on the device's in-order queue and
// waits; last_device_seconds() is the profiled time from the first step's
// start to the last step's end; read_outputs() copies the outputs back.
#pragma once

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backends/opencl/opencl_device.h"
#include "kernels/common/op.h"

namespace ek {

class ClInvocation : public Invocation {
 public:
  // Uploads every input tensor of `call` (OpDef args not marked output) and
  // allocates a device buffer for every output. `device` must be an
  // OpenCLDevice; it and the call's host tensors must outlive the invocation.
  ClInvocation(Device& device, const OpCall& call);

  OpenCLDevice& device() const { return dev_; }
  // The device buffer of a tensor of the call; InvalidArgument if absent.
  const cl::Buffer& buffer(const std::string& tensor) const;
  // The tensor's buffer, or a small placeholder when the optional tensor is
  // absent (the kernel is then built with a -D that never reads it).
  const cl::Buffer& buffer_or_placeholder(const std::string& tensor) const;
  bool has(const std::string& tensor) const { return buffers_.count(tensor) != 0; }
  // An extra buffer owned by the invocation: scratch between steps, or data
  // repacked once at bind time (`init` = bytes to upload, or nullptr).
  const cl::Buffer& add_buffer(const std::string& name, size_t bytes, const void* init = nullptr);

  // Appends a dispatch run by every execute(). Steps with an empty global
  // range are skipped. The kernel's arguments must be set already.
  void add_step(const cl::Kernel& kernel, const cl::NDRange& global, const cl::NDRange& local = cl::NullRange);
  size_t num_steps() const { return steps_.size(); }

  void execute() override;
  double last_device_seconds() const override { return last_seconds_; }
  void read_outputs() override;

 private:
  struct Step {
    cl::Kernel kernel;
    cl::NDRange global;
    cl::NDRange local;
  };
  OpenCLDevice& dev_;
  std::string op_;
  std::map<std::string, cl::Buffer> buffers_;
  std::map<std::string, TensorRef> outputs_;
  std::vector<Step> steps_;
  mutable cl::Buffer placeholder_;  // created on first use
  double last_seconds_ = -1.0;
};

// The value of a tunable, or `def` when the tuning does not name it.
inline int64_t tuning_or(const Tuning& tuning, const std::string& name, int64_t def) {
  auto it = tuning.find(name);
  return it == tuning.end() ? def : it->second;
}

// The largest power of two <= min(wanted, 16) that divides n: the vector
// width for rows of n elements when lanes must not straddle rows.
inline int64_t vector_width_for(int64_t n, int64_t wanted) {
  int64_t v = 1;
  while (v * 2 <= std::min<int64_t>(wanted, 16) && n % (v * 2) == 0) v *= 2;
  return v;
}

// Smallest power of two >= n (1 for n <= 1).
inline size_t next_pow2(size_t n) {
  size_t p = 1;
  while (p < n) p *= 2;
  return p;
}

// "" when every tensor of the call fits in one device buffer, else which one
// does not (for KernelImpl::ineligible_reason, so selection can fall back).
std::string cl_buffers_ineligible(const DeviceProfile& profile, const OpCall& call);

}  // namespace ek
