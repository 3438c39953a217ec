// The C API: a thin, exception-free shell over runtime/. Every entry point
// catches, stores the message per thread and returns a status.
#include <cstring>

#include "edgekernels/ek.h"
#include "backends/cpu/cpu_device.h"
#include "runtime/runtime.h"

struct ek_context {
  ek::DeviceSet set;
  ek::Device* device = nullptr;
};

namespace {

thread_local std::string g_last_error;

ek_status to_status(ek::Status s) { return static_cast<ek_status>(static_cast<int>(s)); }

template <class F>
ek_status guarded(F&& f) {
  try {
    f();
    return EK_OK;
  } catch (const ek::Error& e) {
    g_last_error = e.what();
    return to_status(e.status());
  } catch (const std::bad_alloc&) {
    g_last_error = "out of host memory";
    return EK_ERR_OUT_OF_MEMORY;
  } catch (const std::exception& e) {
    g_last_error = std::string("internal error: ") + e.what();
    return EK_ERR_INTERNAL;
  }
}

ek::DType dtype_from_dl(const DLDataType& t, const std::string& name) {
  EK_CHECK_ARG(t.lanes == 1, "tensor ", name, ": vector lanes=", int(t.lanes), " are not supported");
  if (t.code == kDLFloat && t.bits == 32) return ek::DType::f32;
  if (t.code == kDLFloat && t.bits == 16) return ek::DType::f16;
  if (t.code == kDLInt && t.bits == 8) return ek::DType::i8;
  if (t.code == kDLUInt && t.bits == 8) return ek::DType::u8;
  if (t.code == kDLInt && t.bits == 32) return ek::DType::i32;
  if (t.code == kDLInt && t.bits == 64) return ek::DType::i64;
  throw ek::InvalidArgument(ek::cat("tensor ", name, ": unsupported DLPack dtype code=", int(t.code),
                                    " bits=", int(t.bits)));
}

ek::TensorRef tensor_from_dl(const DLTensor* t, const std::string& name) {
  EK_CHECK_ARG(t != nullptr, "tensor ", name, " is NULL");
  EK_CHECK_ARG(t->device.device_type == kDLCPU || t->device.device_type == kDLCUDAHost, "tensor ", name,
               ": device_type=", int(t->device.device_type), " is not host memory (kDLCPU)");
  EK_CHECK_ARG(t->ndim >= 0 && (t->ndim == 0 || t->shape != nullptr), "tensor ", name, ": bad ndim/shape");
  ek::TensorRef r;
  r.dtype = dtype_from_dl(t->dtype, name);
  r.shape.assign(t->shape, t->shape + t->ndim);
  if (t->strides) {
    int64_t expected = 1;
    for (int i = t->ndim - 1; i >= 0; --i) {
      EK_CHECK_ARG(t->shape[i] == 1 || t->strides[i] == expected, "tensor ", name,
                   ": strides are not compact row-major (dim ", i, " has stride ", t->strides[i], ", expected ",
                   expected, ")");
      expected *= t->shape[i];
    }
  }
  r.data = static_cast<char*>(t->data) + t->byte_offset;
  return r;
}

}  // namespace

extern "C" {

uint32_t ek_version(void) { return (EK_VERSION_MAJOR << 22) | (EK_VERSION_MINOR << 12) | EK_VERSION_PATCH; }
int ek_abi_version(void) { return EK_ABI_VERSION; }
const char* ek_last_error(void) { return g_last_error.c_str(); }
const char* ek_status_string(ek_status s) { return ek::status_name(static_cast<ek::Status>(s)); }

void ek_context_options_init(ek_context_options* o) {
  if (!o) return;
  o->backend = nullptr;
  o->device_index = 0;
  o->cpu_threads = 0;
  o->measure_peaks = 0;
}

ek_status ek_context_create(const ek_context_options* options, ek_context** out) {
  return guarded([&] {
    EK_CHECK_ARG(out != nullptr, "ek_context_create: out is NULL");
    *out = nullptr;
    ek_context_options o;
    ek_context_options_init(&o);
    if (options) o = *options;
    const std::string backend = o.backend ? o.backend : "";
    EK_CHECK_ARG(o.device_index >= 0, "ek_context_create: device_index=", o.device_index, " is negative");
    EK_CHECK_ARG(o.cpu_threads >= 0, "ek_context_create: cpu_threads=", o.cpu_threads, " is negative");
    auto ctx = std::make_unique<ek_context>();
    ctx->set = ek::open_devices(backend);
    int seen = 0;
    for (auto& d : ctx->set.devices) {
      if (!backend.empty() && d->backend() != backend) continue;
      if (seen++ == o.device_index) {
        ctx->device = d.get();
        break;
      }
    }
    if (!ctx->device) {
      std::string notes;
      for (const auto& s : ctx->set.scans)
        for (const auto& n : s.notes) notes += "; " + s.backend + ": " + n;
      throw ek::NotFound(ek::cat("ek_context_create: no device ", o.device_index, " on backend '",
                                 backend.empty() ? "any" : backend, "' (found ", seen, ")", notes));
    }
    if (o.cpu_threads > 0)
      if (auto* cpu = dynamic_cast<ek::CpuDevice*>(ctx->device)) cpu->set_threads(o.cpu_threads);
    if (o.measure_peaks) ek::ensure_peaks(*ctx->device);
    *out = ctx.release();
  });
}

void ek_context_destroy(ek_context* ctx) { delete ctx; }

ek_status ek_context_profile_json(const ek_context* ctx, char* buffer, size_t capacity, size_t* needed) {
  return guarded([&] {
    EK_CHECK_ARG(ctx != nullptr, "ek_context_profile_json: ctx is NULL");
    const std::string s = ek::profile_to_json(ctx->device->profile()).dump(2);
    if (needed) *needed = s.size() + 1;
    if (buffer && capacity > 0) {
      const size_t n = std::min(capacity - 1, s.size());
      std::memcpy(buffer, s.data(), n);
      buffer[n] = '\0';
    }
  });
}

ek_status ek_op_run(ek_context* ctx, const char* op, const ek_tensor_arg* tensors, size_t num_tensors,
                    const ek_param* params, size_t num_params, const ek_run_options* options) {
  return guarded([&] {
    EK_CHECK_ARG(ctx != nullptr, "ek_op_run: ctx is NULL");
    EK_CHECK_ARG(op != nullptr, "ek_op_run: op is NULL");
    EK_CHECK_ARG(tensors != nullptr || num_tensors == 0, "ek_op_run: tensors is NULL");
    EK_CHECK_ARG(params != nullptr || num_params == 0, "ek_op_run: params is NULL");
    ek::OpCall call;
    call.op = op;
    ek::Registry::instance().op(op);  // NotFound for an unknown op
    for (size_t i = 0; i < num_tensors; ++i) {
      EK_CHECK_ARG(tensors[i].name != nullptr, op, ": tensor argument ", i, " has no name");
      EK_CHECK_ARG(!call.tensors.count(tensors[i].name), op, ": tensor '", tensors[i].name, "' given twice");
      call.tensors[tensors[i].name] = tensor_from_dl(tensors[i].tensor, tensors[i].name);
    }
    for (size_t i = 0; i < num_params; ++i) {
      EK_CHECK_ARG(params[i].key != nullptr && params[i].value != nullptr, op, ": param ", i,
                   " has a NULL key or value");
      call.params.set(params[i].key, std::string(params[i].value));
    }
    ek::SelectOptions so;
    if (options && options->variant) so.variant = options->variant;
    ek::run_op(*ctx->device, call, so);
  });
}

}  // extern "C"
