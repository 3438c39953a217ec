// CPU implementations of sparse_attention: a thin driver around the Halide
// pipelines of sparse_attention_generators.cpp, one variant per ISA.
//
// The driver owns what Halide cannot express well: walking the block-sparse
// structure (CSR lists, analytic key ranges), threading, and dtype staging.
//   - Work items are (batch, query heads of one KV group, a tile of queries
//     inside one layout query block). Their key ranges come from
//     allowed_key_ranges(): only allowed blocks are visited.
//   - Keys are consumed in chunks of kc keys; a chunk is "full" (no mask) when
//     the pattern allows every pair of the tile, else the masked
//     specialisation runs. Chunks never straddle a gap between layout blocks.
//   - f16 K/V rows are widened to an f32 scratch chunk with F16C: Halide 14
//     emulates f16 conversion in software (~17 instructions per vector), which
//     would dominate memory-bound decode.
//   - Prefill tiles (64 rows) run the prefill micro-kernel; decode tiles
//     (<= 32 rows: Tq <= 8 with moderate GQA) run the decode kernel on groups
//     of 4 or 8 rows over the same staged chunk, so every K/V row is read from
//     memory once per KV group. When there are too few tiles to keep every
//     thread busy, a tile's chunk list is split across workers and the partial
//     (m, l, acc) states are merged by log-sum-exp (the last split to finish
//     merges).
#include <HalideRuntime.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <memory>
#include <mutex>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "backends/cpu/cpu_device.h"
#include "backends/cpu/halide_call.h"
#include "kernels/sparse_attention/sparse_attention.h"

#if defined(__x86_64__)
#include "ek_sa_decode4_avx2.h"
#include "ek_sa_decode4_avx512.h"
#include "ek_sa_decode4_sse41.h"
#include "ek_sa_decode8_avx2.h"
#include "ek_sa_decode8_avx512.h"
#include "ek_sa_decode8_sse41.h"
#include "ek_sa_merge_avx2.h"
#include "ek_sa_merge_avx512.h"
#include "ek_sa_merge_sse41.h"
#include "ek_sa_prefill_avx2.h"
#include "ek_sa_prefill_avx512.h"
#include "ek_sa_prefill_sse41.h"
#elif defined(__aarch64__)
#include "ek_sa_decode4_neon.h"
#include "ek_sa_decode8_neon.h"
#include "ek_sa_merge_neon.h"
#include "ek_sa_prefill_neon.h"
#endif

namespace ek {
namespace sparse_attention {
namespace {

constexpr int kPrefillRows = 64;   // rows of the prefill tile (generator param)
constexpr int kPrefillChunk = 64;  // keys per prefill step (generator param)
constexpr int kDecodeChunk = 128;  // keys per decode step (generator param)
constexpr int kDecodeMaxRows = 32; // tiles up to this many rows take the decode kernel
constexpr int kPad = 16;           // head dims are padded to this for the kernels

using TileFn = int (*)(const void*, halide_buffer_t*, halide_buffer_t*, halide_buffer_t*, halide_buffer_t*, int32_t, int32_t,
                       int32_t, int32_t, int32_t, int32_t, float, float, int32_t, halide_buffer_t*, halide_buffer_t*,
                       halide_buffer_t*, halide_buffer_t*, halide_buffer_t*, halide_buffer_t*);
using MergeFn = int (*)(const void*, halide_buffer_t*, halide_buffer_t*, halide_buffer_t*, halide_buffer_t*, halide_buffer_t*);
using WidenFn = void (*)(const uint16_t*, float*, int64_t);

// ---------------------------------------------------------------- f16 rows

void widen_scalar(const uint16_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(src[i]);
}

#if defined(__x86_64__)
// GCC 12's _mm512_cvtph_ps reads an intentionally undefined vector.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
__attribute__((target("avx2,f16c"))) void widen_f16c(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
  for (; i < n; ++i) dst[i] = f16_to_f32(src[i]);
}

__attribute__((target("avx512f,f16c"))) void widen_avx512(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i))));
  for (; i < n; ++i) dst[i] = f16_to_f32(src[i]);
}
#pragma GCC diagnostic pop
#endif

// ---------------------------------------------------------------- buffers

// A halide_buffer_t over host f32/i32 memory with up to 4 dims, on the stack.
struct HBuf {
  halide_buffer_t buf{};
  halide_dimension_t dims[4];
  HBuf(void* host, halide_type_code_t code, std::initializer_list<std::pair<int64_t, int64_t>> extent_stride) {
    buf.host = static_cast<uint8_t*>(host);
    buf.type = halide_type_t(code, 32);
    buf.dimensions = static_cast<int32_t>(extent_stride.size());
    buf.dim = dims;
    int i = 0;
    for (const auto& es : extent_stride)
      dims[i++] = halide_dimension_t(0, static_cast<int32_t>(es.first), static_cast<int32_t>(es.second));
  }
  HBuf(const HBuf&) = delete;  // buf.dim points into this object
  HBuf& operator=(const HBuf&) = delete;
  halide_buffer_t* operator&() { return &buf; }
};
HBuf f32buf(const float* p, std::initializer_list<std::pair<int64_t, int64_t>> es) {
  return HBuf(const_cast<float*>(p), halide_type_float, es);
}

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// Scratch reused by each worker thread across work units (the Halide pool's
// threads live as long as the process).
float* thread_scratch(size_t floats) {
  thread_local std::unique_ptr<float[], void (*)(float*)> mem(nullptr, [](float* p) { std::free(p); });
  thread_local size_t capacity = 0;
  if (capacity < floats) {
    const size_t bytes = round_up(static_cast<int64_t>(floats * sizeof(float)), 64);
    mem.reset(static_cast<float*>(std::aligned_alloc(64, bytes)));
    if (!mem) throw OutOfMemory(cat(kOp, ": cannot allocate ", bytes, " bytes of CPU scratch"));
    capacity = floats;
  }
  return mem.get();
}

// ---------------------------------------------------------------- plan

struct Isa {
  TileFn prefill;
  TileFn decode4;
  TileFn decode8;
  MergeFn merge;
  WidenFn widen;
};

struct Item {
  int64_t b = 0, kvh = 0;
  int64_t h0 = 0, nh = 0;   // query heads [h0, h0 + nh)
  int64_t i0 = 0, nq = 0;   // queries [i0, i0 + nq)
  int64_t layout_row = 0;
  int64_t chunks = 0;       // key chunks over all splits
  int nsplit = 1;
  bool decode = false;
  int64_t rows_pad = 0;     // state rows (64 for prefill, multiple of 4/8 for decode)
  size_t split_state = 0;   // offset of the split states (nsplit > 1)
  std::unique_ptr<std::atomic<int>> pending;
};

struct Unit {
  int64_t item;
  int split;
};

class Plan {
 public:
  Plan(const OpCall& call, const Isa& isa, int threads) : isa_(isa) {
    a_ = Args::parse(call);
    q_ = call.get("Q");
    k_ = call.get("K");
    v_ = call.get("V");
    o_ = call.get("O").as<float>();
    lse_ = a_.want_lse ? call.get("L").as<float>() : nullptr;
    dk_pad_ = round_up(a_.dk, kPad);
    dv_pad_ = round_up(a_.dv, kPad);
    build_items(threads);
  }

  void execute() {
    error_.store(0);
    for (Item& it : items_)
      if (it.pending) it.pending->store(it.nsplit);
    halide_do_par_for(nullptr, &Plan::task, 0, static_cast<int>(units_.size()), reinterpret_cast<uint8_t*>(this));
    if (error_.load()) throw DeviceError(cat(kOp, ": CPU kernel failed: ", error_message_));
  }

 private:
  static int task(void*, int index, uint8_t* closure) {
    Plan* self = reinterpret_cast<Plan*>(closure);
    try {
      self->run_unit(self->units_[static_cast<size_t>(index)]);
    } catch (const std::exception& e) {
      self->fail(e.what());
    }
    return 0;
  }

  void fail(const std::string& msg) {
    std::lock_guard<std::mutex> lock(error_mutex_);
    if (error_.exchange(1) == 0) error_message_ = msg;
  }

  void build_items(int threads) {
    const int64_t G = a_.group();
    const bool per_head_layout = a_.has_layout && a_.layout_heads == a_.hq && G > 1;
    const bool decode_path = a_.tq <= 8;
    const int64_t max_heads = per_head_layout ? 1 : std::min<int64_t>(G, decode_path ? 64 : kPrefillRows);
    const int64_t q_block = a_.has_layout ? a_.block_q : a_.tq;
    std::vector<KeyRange> ranges;
    for (int64_t b = 0; b < a_.batch; ++b)
      for (int64_t kvh = 0; kvh < a_.hkv; ++kvh)
        for (int64_t h0 = kvh * G; h0 < (kvh + 1) * G; h0 += max_heads) {
          const int64_t nh = std::min(max_heads, (kvh + 1) * G - h0);
          const int64_t tile_q = decode_path ? a_.tq : std::max<int64_t>(1, kPrefillRows / nh);
          for (int64_t qb0 = 0; qb0 < a_.tq; qb0 += q_block) {
            const int64_t qb_end = std::min(a_.tq, qb0 + q_block);
            for (int64_t i0 = qb0; i0 < qb_end; i0 += tile_q) {
              Item it;
              it.b = b;
              it.kvh = kvh;
              it.h0 = h0;
              it.nh = nh;
              it.i0 = i0;
              it.nq = std::min(tile_q, qb_end - i0);
              it.layout_row = a_.has_layout ? a_.layout_head(h0) * a_.q_blocks + qb0 / a_.block_q : 0;
              const int64_t rows = it.nh * it.nq;
              it.decode = rows <= kDecodeMaxRows;
              it.rows_pad = it.decode ? round_up(rows, rows <= 4 ? 4 : 8) : kPrefillRows;
              allowed_key_ranges(a_, it.layout_row, it.i0, it.i0 + it.nq, ranges);
              const int64_t kc = it.decode ? kDecodeChunk : kPrefillChunk;
              for (const KeyRange& r : ranges) it.chunks += (r.size() + kc - 1) / kc;
              items_.push_back(std::move(it));
            }
          }
        }
    // Split long chunk lists when there are too few tiles for the threads.
    const int64_t want_units = 4 * std::max(1, threads);
    size_t state_floats = 0;
    if (static_cast<int64_t>(items_.size()) < want_units) {
      const int64_t per_item = (want_units + items_.size() - 1) / std::max<size_t>(1, items_.size());
      for (Item& it : items_) {
        it.nsplit = static_cast<int>(std::max<int64_t>(1, std::min(per_item, it.chunks / 2)));
        if (it.nsplit > 1) {
          it.split_state = state_floats;
          state_floats += static_cast<size_t>(it.nsplit * it.rows_pad * (dv_pad_ + 2));
          it.pending = std::make_unique<std::atomic<int>>(it.nsplit);
        }
      }
    }
    split_states_.assign(state_floats, 0.0f);
    for (size_t i = 0; i < items_.size(); ++i)
      for (int s = 0; s < items_[i].nsplit; ++s) units_.push_back({static_cast<int64_t>(i), s});
    // Longest first: better balance of the dynamic schedule.
    std::stable_sort(units_.begin(), units_.end(), [&](const Unit& x, const Unit& y) {
      const Item& a = items_[static_cast<size_t>(x.item)];
      const Item& b = items_[static_cast<size_t>(y.item)];
      return a.chunks / a.nsplit > b.chunks / b.nsplit;
    });
  }

  // Widens (or copies) rows [k0, k0 + n) of K or V of (b, kvh) into `dst`
  // [kc][d_pad], zero-filling padding columns and rows n..kc-1.
  void stage_rows(const TensorRef& t, int64_t b, int64_t kvh, int64_t d, int64_t d_pad, int64_t k0, int64_t n,
                  int64_t kc, float* dst) const {
    for (int64_t r = 0; r < n; ++r) {
      const int64_t src = ((b * a_.tk + k0 + r) * a_.hkv + kvh) * d;
      float* out = dst + r * d_pad;
      if (t.dtype == DType::f16)
        isa_.widen(t.as<uint16_t>() + src, out, d);
      else
        std::memcpy(out, t.as<float>() + src, static_cast<size_t>(d) * sizeof(float));
      if (d_pad > d) std::memset(out + d, 0, static_cast<size_t>(d_pad - d) * sizeof(float));
    }
    if (n < kc) std::memset(dst + n * d_pad, 0, static_cast<size_t>((kc - n) * d_pad) * sizeof(float));
  }

  void run_unit(const Unit& u) {
    Item& it = items_[static_cast<size_t>(u.item)];
    cpu::HalideCallContext hctx;
    const int64_t kc = it.decode ? kDecodeChunk : kPrefillChunk;
    const int64_t R = it.rows_pad, rows = it.nh * it.nq;
    const int64_t dk = dk_pad_, dv = dv_pad_;
    // Scratch: Q rows, qpos, 2 states (m, l, acc), K and V chunks.
    const size_t q_sz = static_cast<size_t>(R * dk), st_sz = static_cast<size_t>(R * (dv + 2));
    const size_t kv_sz = static_cast<size_t>(kc * (dk + dv));
    float* mem = thread_scratch(q_sz + static_cast<size_t>(R) + 2 * st_sz + kv_sz);
    float* qs = mem;
    int32_t* qpos = reinterpret_cast<int32_t*>(qs + q_sz);
    float* state[2] = {qs + q_sz + R, qs + q_sz + R + st_sz};
    float* kbuf = state[1] + st_sz;
    float* vbuf = kbuf + kc * dk;

    // Q rows (row r = head hi * nq + query qi), widened and zero-padded; the
    // prefill kernel takes them transposed (rows innermost).
    std::memset(qs, 0, q_sz * sizeof(float));
    std::vector<float> row(static_cast<size_t>(a_.dk));
    for (int64_t r = 0; r < R; ++r) {
      const int64_t hi = std::min(r / it.nq, it.nh - 1), qi = r < rows ? r % it.nq : it.nq - 1;
      qpos[r] = static_cast<int32_t>(a_.q_offset + it.i0 + qi);
      if (r >= rows) continue;
      const int64_t src = ((it.b * a_.tq + it.i0 + qi) * a_.hq + it.h0 + hi) * a_.dk;
      if (q_.dtype == DType::f16)
        isa_.widen(q_.as<uint16_t>() + src, row.data(), a_.dk);
      else
        std::memcpy(row.data(), q_.as<float>() + src, static_cast<size_t>(a_.dk) * sizeof(float));
      for (int64_t d = 0; d < a_.dk; ++d) {
        if (it.decode)
          qs[r * dk + d] = row[static_cast<size_t>(d)];
        else
          qs[d * R + r] = row[static_cast<size_t>(d)];
      }
    }
    // Initial state: m = -inf, l = 0, acc = 0.
    {
      float* st = state[0];
      std::fill(st, st + R, -INFINITY);
      std::fill(st + R, st + 2 * R, 0.0f);
      std::fill(st + 2 * R, st + st_sz, 0.0f);
    }
    int cur = 0;

    const int64_t p0 = a_.q_offset + it.i0, p1 = a_.q_offset + it.i0 + it.nq - 1;
    const int32_t causal = a_.pattern.causal ? 1 : 0;
    const int32_t window = static_cast<int32_t>(a_.pattern.window);
    const int32_t sinks = static_cast<int32_t>(std::min<int64_t>(a_.pattern.sinks, a_.tk));
    const float scale = static_cast<float>(a_.scale), softcap = static_cast<float>(a_.softcap);
    const int32_t capped = a_.softcap > 0 ? 1 : 0;
    const bool direct_ok = k_.dtype == DType::f32 && dk == a_.dk && dv == a_.dv;

    // This split's share of the chunk list.
    const int64_t c_begin = it.chunks * u.split / it.nsplit, c_end = it.chunks * (u.split + 1) / it.nsplit;
    std::vector<KeyRange> ranges;
    allowed_key_ranges(a_, it.layout_row, it.i0, it.i0 + it.nq, ranges);
    int64_t c = 0;
    for (const KeyRange& r : ranges) {
      for (int64_t k0 = r.lo; k0 < r.hi; k0 += kc, ++c) {
        if (c < c_begin || c >= c_end) continue;
        const int64_t n = std::min(kc, r.hi - k0);
        const bool full = n == kc && a_.pattern.all_allowed(p0, p1, k0, k0 + n);
        // K/V chunk: the caller's f32 rows in place when they need no padding,
        // else staged into [kc][d_pad] scratch.
        const float* kp;
        const float* vp;
        int64_t k_stride, v_stride;
        if (direct_ok && n == kc) {
          kp = k_.as<float>() + ((it.b * a_.tk + k0) * a_.hkv + it.kvh) * a_.dk;
          vp = v_.as<float>() + ((it.b * a_.tk + k0) * a_.hkv + it.kvh) * a_.dv;
          k_stride = a_.hkv * a_.dk;
          v_stride = a_.hkv * a_.dv;
        } else {
          stage_rows(k_, it.b, it.kvh, a_.dk, dk, k0, n, kc, kbuf);
          stage_rows(v_, it.b, it.kvh, a_.dv, dv, k0, n, kc, vbuf);
          kp = kbuf;
          vp = vbuf;
          k_stride = dk;
          v_stride = dv;
        }
        const float* in = state[cur];
        float* out = state[cur ^ 1];
        if (!it.decode) {
          HBuf qb = f32buf(qs, {{R, 1}, {dk, R}});
          HBuf kb = f32buf(kp, {{dk, 1}, {kc, k_stride}});
          HBuf vb = f32buf(vp, {{dv, 1}, {kc, v_stride}});
          HBuf pb(qpos, halide_type_int, {{R, 1}});
          HBuf mi = f32buf(in, {{R, 1}}), li = f32buf(in + R, {{R, 1}}), ai = f32buf(in + 2 * R, {{dv, 1}, {R, dv}});
          HBuf mo = f32buf(out, {{R, 1}}), lo = f32buf(out + R, {{R, 1}}),
               ao = f32buf(out + 2 * R, {{dv, 1}, {R, dv}});
          const int rc = isa_.prefill(&hctx, &qb, &kb, &vb, &pb, static_cast<int32_t>(n), static_cast<int32_t>(k0),
                                      full ? 0 : 1, causal, window, sinks, scale, softcap, capped, &mi, &li, &ai, &mo,
                                      &lo, &ao);
          if (rc != 0) throw DeviceError(cat("prefill tile failed (code ", rc, "): ", hctx.error));
        } else {
          // Groups of 4 or 8 rows over the same staged chunk.
          const int64_t g = R <= 4 ? 4 : 8;
          TileFn fn = g == 4 ? isa_.decode4 : isa_.decode8;
          for (int64_t r0 = 0; r0 < R; r0 += g) {
            HBuf qb = f32buf(qs + r0 * dk, {{dk, 1}, {g, dk}});
            HBuf kb = f32buf(kp, {{dk, 1}, {kc, k_stride}});
            HBuf vb = f32buf(vp, {{dv, 1}, {kc, v_stride}});
            HBuf pb(qpos + r0, halide_type_int, {{g, 1}});
            HBuf mi = f32buf(in + r0, {{g, 1}}), li = f32buf(in + R + r0, {{g, 1}}),
                 ai = f32buf(in + 2 * R + r0 * dv, {{dv, 1}, {g, dv}});
            HBuf mo = f32buf(out + r0, {{g, 1}}), lo = f32buf(out + R + r0, {{g, 1}}),
                 ao = f32buf(out + 2 * R + r0 * dv, {{dv, 1}, {g, dv}});
            const int rc = fn(&hctx, &qb, &kb, &vb, &pb, static_cast<int32_t>(n), static_cast<int32_t>(k0), full ? 0 : 1,
                              causal, window, sinks, scale, softcap, capped, &mi, &li, &ai, &mo, &lo, &ao);
            if (rc != 0) throw DeviceError(cat("decode tile failed (code ", rc, "): ", hctx.error));
          }
        }
        cur ^= 1;
      }
    }

    const float* st = state[cur];
    if (it.nsplit == 1) {
      merge(it, st, 1, static_cast<size_t>(R * (dv + 2)));
      return;
    }
    // Park this split's state; the last split to finish merges them all.
    float* slot = split_states_.data() + it.split_state + static_cast<size_t>(u.split) * st_sz;
    std::memcpy(slot, st, st_sz * sizeof(float));
    if (it.pending->fetch_sub(1, std::memory_order_acq_rel) == 1)
      merge(it, split_states_.data() + it.split_state, it.nsplit, st_sz);
  }

  // Merges `nsplit` states laid out `stride` floats apart and writes the
  // tile's O rows and L entries in place.
  void merge(const Item& it, const float* states, int nsplit, size_t stride) {
    const int64_t R = it.rows_pad, dv = dv_pad_, nq = it.nq, nh = it.nh;
    const int64_t s = static_cast<int64_t>(stride);
    // acc spans the padded columns (zeros) so the merge may round its vectors up.
    HBuf acc = f32buf(states + 2 * R, {{dv, 1}, {nq, dv}, {nh, nq * dv}, {nsplit, s}});
    HBuf m = f32buf(states, {{nq, 1}, {nh, nq}, {nsplit, s}});
    HBuf l = f32buf(states + R, {{nq, 1}, {nh, nq}, {nsplit, s}});
    float* o = o_ + ((it.b * a_.tq + it.i0) * a_.hq + it.h0) * a_.dv;
    HBuf ob = f32buf(o, {{a_.dv, 1}, {nq, a_.hq * a_.dv}, {nh, a_.dv}});
    float lse_scratch[kPrefillRows * 2];
    std::vector<float> lse_big;
    float* lp;
    int64_t lse_q_stride, lse_h_stride;
    if (lse_) {
      lp = lse_ + (it.b * a_.hq + it.h0) * a_.tq + it.i0;
      lse_q_stride = 1;
      lse_h_stride = a_.tq;
    } else {
      if (nq * nh > static_cast<int64_t>(sizeof(lse_scratch) / sizeof(float))) lse_big.resize(nq * nh);
      lp = lse_big.empty() ? lse_scratch : lse_big.data();
      lse_q_stride = 1;
      lse_h_stride = nq;
    }
    HBuf lb = f32buf(lp, {{nq, lse_q_stride}, {nh, lse_h_stride}});
    cpu::HalideCallContext hctx;
    const int rc = isa_.merge(&hctx, &acc, &m, &l, &ob, &lb);
    if (rc != 0) throw DeviceError(cat("merge failed (code ", rc, "): ", hctx.error));
  }

  Isa isa_;
  Args a_;
  TensorRef q_, k_, v_;
  float* o_ = nullptr;
  float* lse_ = nullptr;
  int64_t dk_pad_ = 0, dv_pad_ = 0;
  std::vector<Item> items_;
  std::vector<Unit> units_;
  std::vector<float> split_states_;
  std::atomic<int> error_{0};
  std::mutex error_mutex_;
  std::string error_message_;
};

class CpuInvocation : public Invocation {
 public:
  CpuInvocation(const OpCall& call, const Isa& isa, int threads) : plan_(call, isa, threads), threads_(threads) {}
  void execute() override {
    cpu::use_device_threads(threads_);
    plan_.execute();
  }
  void read_outputs() override {}  // kernels write the call's O and L in place

 private:
  Plan plan_;
  int threads_;
};

// ---------------------------------------------------------------- registration

KernelImpl make_impl(const std::string& variant, int priority, const Isa& isa, std::vector<std::string> features,
                     const std::string& doc) {
  KernelImpl k;
  k.op = kOp;
  k.backend = "cpu";
  k.variant = variant;
  k.doc = doc;
  k.priority = priority;
  k.nmse_bound = 1e-7;
  k.ineligible_reason = [features](const DeviceProfile& p, const OpCall&) -> std::string {
    for (const std::string& f : features)
      if (!p.has(f)) return cat("needs CPU feature ", f);
    return "";
  };
  k.bind = [isa, variant](Device& dev, const OpCall& call, const Tuning&) -> std::unique_ptr<Invocation> {
    auto* cpu = dynamic_cast<CpuDevice*>(&dev);
    if (!cpu) throw InvalidArgument(cat(kOp, "/cpu/", variant, ": device ", dev.profile().label(), " is not a CPU"));
    return std::make_unique<CpuInvocation>(call, isa, cpu->threads());
  };
  return k;
}

#if defined(__x86_64__)
const RegisterKernel reg_sse41(make_impl("halide_sse41", 10,
                                         Isa{ek_sa_prefill_sse41, ek_sa_decode4_sse41, ek_sa_decode8_sse41,
                                             ek_sa_merge_sse41, widen_scalar},
                                         {"sse41"}, "Halide flash-attention tiles, SSE4.1 baseline"));
const RegisterKernel reg_avx2(make_impl("halide_avx2", 20,
                                        Isa{ek_sa_prefill_avx2, ek_sa_decode4_avx2, ek_sa_decode8_avx2,
                                            ek_sa_merge_avx2, widen_f16c},
                                        {"avx2", "fma", "f16c"},
                                        "Halide flash-attention tiles, AVX2 + FMA, F16C widening of f16 K/V"));
const RegisterKernel reg_avx512(make_impl("halide_avx512", 30,
                                          Isa{ek_sa_prefill_avx512, ek_sa_decode4_avx512, ek_sa_decode8_avx512,
                                              ek_sa_merge_avx512, widen_avx512},
                                          {"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx2", "fma", "f16c"},
                                          "Halide flash-attention tiles, AVX-512 (Skylake-SP subset), F16C widening"));
#elif defined(__aarch64__)
const RegisterKernel reg_neon(make_impl("halide_neon", 10,
                                        Isa{ek_sa_prefill_neon, ek_sa_decode4_neon, ek_sa_decode8_neon,
                                            ek_sa_merge_neon, widen_scalar},
                                        {"neon"}, "Halide flash-attention tiles, NEON"));
#endif

}  // namespace
}  // namespace sparse_attention
}  // namespace ek
