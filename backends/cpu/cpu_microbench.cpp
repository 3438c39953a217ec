// Peak-rate microbenchmarks for the CPU profile: streaming read and copy
// bandwidth over a buffer far larger than the last-level cache, fp32 FMA
// throughput and int8 dot-product throughput with the widest ISA present.
// Each kernel runs on all worker threads at once; the best of several timed
// repetitions is reported, since shared machines only ever make things slower.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <thread>
#include <vector>

#include "backends/cpu/cpu_device.h"
#include "kernels/common/error.h"
#include "kernels/common/tensor.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace ek {
namespace {

using Clock = std::chrono::steady_clock;

// Runs body(thread_index) on n threads, started together; returns wall seconds.
double run_parallel(int n, const std::function<void(int)>& body) {
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> pool;
  Clock::time_point start;
  for (int i = 0; i < n; ++i)
    pool.emplace_back([&, i] {
      ready.fetch_add(1);
      while (!go.load(std::memory_order_acquire)) {
      }
      body(i);
    });
  while (ready.load() < n) {
  }
  start = Clock::now();
  go.store(true, std::memory_order_release);
  for (auto& t : pool) t.join();
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Repeats `once` (which returns the units of work it did) until `seconds` have
// passed (at least 3 times); returns the best units per second.
double best_rate(double seconds, const std::function<double(double*)>& once) {
  double best = 0;
  const auto until = Clock::now() + std::chrono::duration<double>(seconds);
  for (int rep = 0; rep < 3 || Clock::now() < until; ++rep) {
    double elapsed = 0;
    double work = once(&elapsed);
    if (elapsed > 0) best = std::max(best, work / elapsed);
    if (rep > 50) break;
  }
  return best;
}

// Allocated like the kernels' own large buffers (kernels/common/tensor.h:
// huge pages where allowed), so peaks and kernels see the same paging.
struct AlignedBuffer {
  explicit AlignedBuffer(size_t n) : size(n) {
    try {
      p = static_cast<char*>(allocate_host_bytes(n));
    } catch (const OutOfMemory&) {
      return;  // callers report a rate of 0
    }
    std::memset(p, 1, n);  // nonzero data; every page already touched
  }
  ~AlignedBuffer() { std::free(p); }
  size_t size;
  char* p = nullptr;
};

#if defined(__x86_64__)
#define EK_SUM_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define EK_SUM_CLONES
#endif
EK_SUM_CLONES uint64_t sum_bytes(const uint64_t* p, size_t n) {
  uint64_t a = 0, b = 0, c = 0, d = 0;
  for (size_t i = 0; i + 4 <= n; i += 4) {
    a += p[i];
    b += p[i + 1];
    c += p[i + 2];
    d += p[i + 3];
  }
  return a + b + c + d;
}

volatile uint64_t g_sink;

#if defined(__x86_64__)
__attribute__((target("avx512f"))) float fma_avx512(int64_t iters) {
  __m512 a[16];
  const __m512 m = _mm512_set1_ps(0.999f), c = _mm512_set1_ps(0.001f);
  for (int i = 0; i < 16; ++i) a[i] = _mm512_set1_ps(static_cast<float>(i));
  for (int64_t it = 0; it < iters; ++it)
    for (int i = 0; i < 16; ++i) a[i] = _mm512_fmadd_ps(a[i], m, c);
  __m512 s = a[0];
  for (int i = 1; i < 16; ++i) s = _mm512_add_ps(s, a[i]);
  return _mm512_reduce_add_ps(s);
}
__attribute__((target("avx2,fma"))) float fma_avx2(int64_t iters) {
  __m256 a[12];
  const __m256 m = _mm256_set1_ps(0.999f), c = _mm256_set1_ps(0.001f);
  for (int i = 0; i < 12; ++i) a[i] = _mm256_set1_ps(static_cast<float>(i));
  for (int64_t it = 0; it < iters; ++it)
    for (int i = 0; i < 12; ++i) a[i] = _mm256_fmadd_ps(a[i], m, c);
  __m256 s = a[0];
  for (int i = 1; i < 12; ++i) s = _mm256_add_ps(s, a[i]);
  float out[8];
  _mm256_storeu_ps(out, s);
  return out[0] + out[7];
}
__attribute__((target("avx512f,avx512vnni"))) int32_t dot_avx512vnni(int64_t iters) {
  __m512i a[16];
  const __m512i u = _mm512_set1_epi8(3), s = _mm512_set1_epi8(-2);
  for (int i = 0; i < 16; ++i) a[i] = _mm512_set1_epi32(i);
  for (int64_t it = 0; it < iters; ++it)
    for (int i = 0; i < 16; ++i) a[i] = _mm512_dpbusd_epi32(a[i], u, s);
  __m512i r = a[0];
  for (int i = 1; i < 16; ++i) r = _mm512_add_epi32(r, a[i]);
  return _mm512_reduce_add_epi32(r);
}
__attribute__((target("avx2,avxvnni"))) int32_t dot_avxvnni(int64_t iters) {
  __m256i a[12];
  const __m256i u = _mm256_set1_epi8(3), s = _mm256_set1_epi8(-2);
  for (int i = 0; i < 12; ++i) a[i] = _mm256_set1_epi32(i);
  for (int64_t it = 0; it < iters; ++it)
    for (int i = 0; i < 12; ++i) a[i] = _mm256_dpbusd_avx_epi32(a[i], u, s);
  __m256i r = a[0];
  for (int i = 1; i < 12; ++i) r = _mm256_add_epi32(r, a[i]);
  return _mm256_extract_epi32(r, 0);
}
// AVX2 without VNNI: maddubs (u8*s8 pairs -> i16) then madd with ones (-> i32),
// the sequence low-bit CPU kernels use; 32 multiply-adds per 2 instructions.
__attribute__((target("avx2"))) int32_t dot_avx2(int64_t iters) {
  __m256i a[8];
  const __m256i u = _mm256_set1_epi8(3), s = _mm256_set1_epi8(-2), ones = _mm256_set1_epi16(1);
  for (int i = 0; i < 8; ++i) a[i] = _mm256_set1_epi32(i);
  for (int64_t it = 0; it < iters; ++it)
    for (int i = 0; i < 8; ++i)
      a[i] = _mm256_add_epi32(a[i], _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), ones));
  __m256i r = a[0];
  for (int i = 1; i < 8; ++i) r = _mm256_add_epi32(r, a[i]);
  return _mm256_extract_epi32(r, 0);
}
#endif

float fma_scalar(int64_t iters) {
  float a[8];
  for (int i = 0; i < 8; ++i) a[i] = static_cast<float>(i);
  for (int64_t it = 0; it < iters; ++it)
    for (int i = 0; i < 8; ++i) a[i] = a[i] * 0.999f + 0.001f;
  return a[0] + a[7];
}

}  // namespace

double cpu_measure_read_gbps(int threads, int64_t bytes, double seconds) {
  AlignedBuffer buf(static_cast<size_t>(bytes));
  if (!buf.p) return 0;
  const size_t words = buf.size / 8 / threads;
  return best_rate(seconds, [&](double* elapsed) {
           *elapsed = run_parallel(threads, [&](int t) {
             g_sink = sum_bytes(reinterpret_cast<const uint64_t*>(buf.p) + t * words, words);
           });
           return static_cast<double>(words * 8 * threads);
         }) / 1e9;
}

double cpu_measure_copy_gbps(int threads, int64_t bytes, double seconds) {
  AlignedBuffer src(static_cast<size_t>(bytes / 2)), dst(static_cast<size_t>(bytes / 2));
  if (!src.p || !dst.p) return 0;
  const size_t chunk = src.size / threads;
  return best_rate(seconds, [&](double* elapsed) {
           *elapsed = run_parallel(threads, [&](int t) { std::memcpy(dst.p + t * chunk, src.p + t * chunk, chunk); });
           return 2.0 * chunk * threads;  // bytes read + bytes written
         }) / 1e9;
}

double cpu_measure_fp32_gflops(int threads, const DeviceProfile& p, double seconds) {
  const int64_t iters = 2000000;
  double flops_per_iter = 2.0 * 8;
  std::function<float(int64_t)> kernel = fma_scalar;
#if defined(__x86_64__)
  if (p.has("avx512f")) {
    kernel = fma_avx512;
    flops_per_iter = 2.0 * 16 * 16;
  } else if (p.has("avx2") && p.has("fma")) {
    kernel = fma_avx2;
    flops_per_iter = 2.0 * 12 * 8;
  }
#endif
  return best_rate(seconds, [&](double* elapsed) {
           *elapsed = run_parallel(threads, [&](int) { g_sink = static_cast<uint64_t>(kernel(iters)); });
           return flops_per_iter * iters * threads;
         }) / 1e9;
}

double cpu_measure_int8_gops(int threads, const DeviceProfile& p, double seconds) {
#if defined(__x86_64__)
  const int64_t iters = 2000000;
  std::function<int32_t(int64_t)> kernel;
  double ops_per_iter = 0;  // multiply + add = 2 ops per int8 product
  if (p.has("avx512_vnni")) {
    kernel = dot_avx512vnni;
    ops_per_iter = 2.0 * 64 * 16;
  } else if (p.has("avx_vnni")) {
    kernel = dot_avxvnni;
    ops_per_iter = 2.0 * 32 * 12;
  } else if (p.has("avx2")) {
    kernel = dot_avx2;
    ops_per_iter = 2.0 * 32 * 8;
  } else {
    return 0;
  }
  return best_rate(seconds, [&](double* elapsed) {
           *elapsed = run_parallel(threads, [&](int) { g_sink = static_cast<uint64_t>(kernel(iters)); });
           return ops_per_iter * iters * threads;
         }) / 1e9;
#else
  (void)threads;
  (void)p;
  (void)seconds;
  return 0;
#endif
}

}  // namespace ek
