/* edgekernels C API.
 *
 * Every function returns an ek_status; on failure ek_last_error() gives a
 * one-line message naming the argument ("rms_norm: w dim 0 is 7, expected
 * dim=8"), kept per thread until the next failing call on that thread.
 * Tensors are DLPack DLTensors in host memory (kDLCPU), dense row-major.
 * Names of tensors and parameters are those of docs/ops (ops.md).
 */
#ifndef EDGEKERNELS_EK_H_
#define EDGEKERNELS_EK_H_

#include <dlpack/dlpack.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EK_VERSION_MAJOR 0
#define EK_VERSION_MINOR 1
#define EK_VERSION_PATCH 0
/* Bumped on any incompatible change of this header. */
#define EK_ABI_VERSION 1

typedef enum ek_status {
  EK_OK = 0,
  EK_ERR_INVALID_ARGUMENT = 1,
  EK_ERR_UNSUPPORTED = 2,
  EK_ERR_DEVICE = 3,
  EK_ERR_OUT_OF_MEMORY = 4,
  EK_ERR_NOT_FOUND = 5,
  EK_ERR_INTERNAL = 6
} ek_status;

/* (major << 22) | (minor << 12) | patch of the loaded library. */
uint32_t ek_version(void);
/* EK_ABI_VERSION of the loaded library; compare with the header's. */
int ek_abi_version(void);
/* Message of the last failure on this thread ("" if none). */
const char* ek_last_error(void);
const char* ek_status_string(ek_status status);

typedef struct ek_context ek_context;

typedef struct ek_context_options {
  /* "cpu", "vulkan", "opencl", or NULL/"" for the first device found in
   * that order. */
  const char* backend;
  /* Index among the devices of that backend (0 = first). */
  int device_index;
  /* CPU worker threads; 0 = all hardware threads (or EK_CPU_THREADS). */
  int cpu_threads;
  /* Nonzero: load measured peaks from the cache or measure them now. */
  int measure_peaks;
} ek_context_options;

/* Fills `options` with the defaults. */
void ek_context_options_init(ek_context_options* options);
ek_status ek_context_create(const ek_context_options* options, ek_context** out);
void ek_context_destroy(ek_context* ctx);

/* The context device's capability profile as JSON. Writes at most `capacity`
 * bytes including the terminating NUL; *needed (if not NULL) receives the
 * size required. */
ek_status ek_context_profile_json(const ek_context* ctx, char* buffer, size_t capacity, size_t* needed);

typedef struct ek_tensor_arg {
  const char* name;        /* "x", "w", "y", ... */
  const DLTensor* tensor;  /* host memory, compact row-major */
} ek_tensor_arg;

typedef struct ek_param {
  const char* key;   /* "eps", "silu", ... */
  const char* value; /* "1e-5", "1", ... */
} ek_param;

typedef struct ek_run_options {
  /* Force a kernel variant ("halide_avx2", "subgroup", ...); NULL = select. */
  const char* variant;
} ek_run_options;

/* Runs operator `op` on the context's device. Inputs and outputs are passed
 * together by name. Validation happens before any output is written. An
 * output must not overlap an input, except where the op updates in place:
 * the scans' `hT` may be the very tensor of `h0` (same data and shape). */
ek_status ek_op_run(ek_context* ctx, const char* op, const ek_tensor_arg* tensors, size_t num_tensors,
                    const ek_param* params, size_t num_params, const ek_run_options* options);

#ifdef __cplusplus
}
#endif

#endif /* EDGEKERNELS_EK_H_ */
