// CPU implementations of sparse_attention: a thin driver around the Halide
// pipelines of sparse_attention_generators.cpp, one variant per ISA.
//
// The driver owns what Halide cannot express well: walking the block-sparse
// structure (CSR lists, analytic key ranges), threading, and dtype staging.
//   - Work items are (batch, query heads of a KV group, a tile of queries
//     inside one layout query block). Their key ranges come from
//     allowed_key_ranges(): only allowed blocks are visited.
//   - Keys are consumed in chunks of kc keys; a chunk runs unmasked only when
//     the pattern allows every pair of the tile, else the masked
//     specialisation runs. Chunks never straddle a gap between layout blocks.
//   - Prefill (Tq > 8): 64-row tiles. f16 (or padded) K/V of each (batch, KV
//     head) are widened to an f32 copy once, with F16C, before that head's
//     tiles run: Halide 14 emulates f16 conversion in software.
//   - Decode (Tq <= 8): the decode kernel reads K/V in place (f16 converted
//     in one instruction per vector where the ISA has it, else read raw as
//     f16 * 2^-112; Q comes scaled by 2^q_exp: choose_q_exp) for every KV
//     head of the call at once, so each key row is read from memory once
//     and in address order; head dims are padded to whole 64-byte lines
//     (decode_line), else the chunk's rows are staged. When there are too few
//     tiles to keep every thread busy, a tile's chunk list is split across
//     workers and the partial (m, l, acc) states are merged by log-sum-exp
//     (the last split to finish merges).
#include <HalideRuntime.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <memory>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "backends/cpu/cpu_device.h"
#include "backends/cpu/halide_call.h"
#include "kernels/sparse_attention/sparse_attention.h"

#if defined(__x86_64__)
#include "ek_sa_prefill_sse41.h"
#include "ek_sa_decode4_f32_sse41.h"
#include "ek_sa_decode4_f16_sse41.h"
#include "ek_sa_decode8_f32_sse41.h"
#include "ek_sa_decode8_f16_sse41.h"
#include "ek_sa_merge_sse41.h"
#include "ek_sa_prefill_avx2.h"
#include "ek_sa_decode4_f32_avx2.h"
#include "ek_sa_decode4_f16_avx2.h"
#include "ek_sa_decode8_f32_avx2.h"
#include "ek_sa_decode8_f16_avx2.h"
#include "ek_sa_merge_avx2.h"
#include "ek_sa_prefill_avx512.h"
#include "ek_sa_decode4_f32_avx512.h"
#include "ek_sa_decode4_f16_avx512.h"
#include "ek_sa_decode8_f32_avx512.h"
#include "ek_sa_decode8_f16_avx512.h"
#include "ek_sa_merge_avx512.h"
#elif defined(__aarch64__)
#include "ek_sa_prefill_neon.h"
#include "ek_sa_decode4_f32_neon.h"
#include "ek_sa_decode4_f16_neon.h"
#include "ek_sa_decode8_f32_neon.h"
#include "ek_sa_decode8_f16_neon.h"
#include "ek_sa_merge_neon.h"
#endif

namespace ek {
namespace sparse_attention {
namespace {

constexpr int kPrefillRows = 64;   // rows of the prefill tile (generator param)
constexpr int kPrefillChunk = 64;  // keys per prefill step (generator param)
constexpr int kDecodeChunk = 256;  // keys per decode step (generator param)
constexpr int kPad = 16;           // head dims are padded to this for the kernels

using TileFn = int (*)(const void*, halide_buffer_t*, halide_buffer_t*, halide_buffer_t*, halide_buffer_t*, int32_t, int32_t,
                       int32_t, int32_t, int32_t, int32_t, float, float, int32_t, halide_buffer_t*, halide_buffer_t*,
                       halide_buffer_t*, halide_buffer_t*, halide_buffer_t*, halide_buffer_t*);
// Decode tiles take one more scalar than TileFn: q_exp (after capped).
using DecodeFn = int (*)(const void*, halide_buffer_t*, halide_buffer_t*, halide_buffer_t*, halide_buffer_t*, int32_t,
                         int32_t, int32_t, int32_t, int32_t, int32_t, float, float, int32_t, int32_t, halide_buffer_t*,
                         halide_buffer_t*, halide_buffer_t*, halide_buffer_t*, halide_buffer_t*, halide_buffer_t*);
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

// A halide_buffer_t over host memory with up to 4 dims, on the stack.
struct HBuf {
  halide_buffer_t buf{};
  halide_dimension_t dims[4];
  HBuf(void* host, halide_type_code_t code, int bits,
       std::initializer_list<std::pair<int64_t, int64_t>> extent_stride) {
    buf.host = static_cast<uint8_t*>(host);
    buf.type = halide_type_t(code, static_cast<uint8_t>(bits));
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
  return HBuf(const_cast<float*>(p), halide_type_float, 32, es);
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
  DecodeFn decode4_f32, decode8_f32, decode4_f16, decode8_f16;
  MergeFn merge;
  WidenFn widen;
};

// Query heads [h0, h0 + nh) of KV head kvh: one block of kernel rows
// (row = head hi * nq + query qi).
struct Slot {
  int64_t kvh = 0, h0 = 0, nh = 0;
};

// A tile of work: the slots' query heads x queries [i0, i0 + nq), which share
// one layout row and hence one list of allowed key ranges.
struct Item {
  int64_t b = 0, i0 = 0, nq = 0, layout_row = 0;
  std::vector<Slot> slots;
  bool decode = false;
  bool multi_head = false;  // decode: one call covers every slot (consecutive KV heads)
  int64_t rows = 0;         // kernel rows per slot: 64 (prefill), 4 or 8 (decode)
  int64_t group = -1;       // (b, kvh) staging group of prefill head staging
  int64_t chunks = 0;       // key chunks over all splits
  int nsplit = 1;
  size_t split_state = 0;   // offset of the parked split states (nsplit > 1)
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
    kv_f16_ = a_.kv_dtype == DType::f16;
    // Decode kernels view K/V rows as whole 64-byte lines (decode_line).
    const int64_t pad = a_.tq <= 8 ? std::max<int64_t>(kPad, decode_line()) : kPad;
    dk_pad_ = round_up(a_.dk, pad);
    dv_pad_ = round_up(a_.dv, pad);
    if (kv_f16_ && a_.tq <= 8) choose_q_exp();
    build_items(threads);
  }

  void execute() {
    for (Item& it : items_)
      if (it.pending) it.pending->store(it.nsplit);
    try {
      if (groups_.empty()) {
        par_for(0, static_cast<int>(units_.size()), &Plan::unit_task);
      } else {
        // Prefill head staging: widen one (b, KV head)'s keys to f32 once, then
        // run that head's tiles on it.
        for (size_t g = 0; g < groups_.size(); ++g) {
          stage_group_ = static_cast<int64_t>(g);
          const int blocks = static_cast<int>((groups_[g].rows.size() + kStageBlock - 1) / kStageBlock);
          par_for(0, blocks, &Plan::stage_task);
          par_for(groups_[g].unit_begin, groups_[g].unit_end - groups_[g].unit_begin, &Plan::unit_task);
        }
      }
    } catch (const std::exception& e) {
      throw DeviceError(cat(kOp, ": CPU kernel failed: ", e.what()));
    }
  }

 private:
  static constexpr size_t kStageBlock = 256;  // key rows per staging task

  // A (b, KV head) of prefill head staging: the key rows its tiles read (the
  // union of their ranges) and its units.
  struct Group {
    int64_t b = 0, kvh = 0;
    std::vector<int64_t> rows;
    int unit_begin = 0, unit_end = 0;
  };

  using TaskFn = void (Plan::*)(int);
  void par_for(int begin, int count, TaskFn fn) {
    cpu::parallel_for(count, [&](int i) { (this->*fn)(begin + i); });
  }
  void unit_task(int index) { run_unit(units_[static_cast<size_t>(index)]); }
  void stage_task(int block) {
    const Group& g = groups_[static_cast<size_t>(stage_group_)];
    const size_t lo = static_cast<size_t>(block) * kStageBlock, hi = std::min(g.rows.size(), lo + kStageBlock);
    for (size_t i = lo; i < hi; ++i) {
      const int64_t j = g.rows[i];
      widen_row(k_, g.b, j, g.kvh, a_.dk, dk_pad_, head_k_.data() + j * dk_pad_);
      widen_row(v_, g.b, j, g.kvh, a_.dv, dv_pad_, head_v_.data() + j * dv_pad_);
    }
  }

  // f32 copy of row j of K or V (b, kvh) with zero-padded columns.
  void widen_row(const TensorRef& t, int64_t b, int64_t j, int64_t kvh, int64_t d, int64_t d_pad, float* out) const {
    const int64_t src = ((b * a_.tk + j) * a_.hkv + kvh) * d;
    if (t.dtype == DType::f16)
      isa_.widen(t.as<uint16_t>() + src, out, d);
    else
      std::memcpy(out, t.as<float>() + src, static_cast<size_t>(d) * sizeof(float));
    if (d_pad > d) std::memset(out + d, 0, static_cast<size_t>(d_pad - d) * sizeof(float));
  }

  // K/V elements per 64-byte line: the decode kernels take K and V as
  // (line element, line, head, key), see the generator.
  int64_t decode_line() const { return static_cast<int64_t>(64 / dtype_size(a_.kv_dtype)); }

  // The f16 decode kernels take Q * 2^q_exp and undo the scale on q.k
  // themselves. Kernels that read f16 bits raw (f16_bits_to_f32_raw: the
  // value * 2^-112) need it so that q.k stays clear of the f32 subnormals;
  // kernels that convert exactly need |Q| * 2^q_exp * 65504 summed over the
  // head dim to stay finite. q_exp = 103 - e for max |Q| < 2^e, within
  // 0..112, keeps |Q * 2^q_exp| < 2^103 and serves both.
  void choose_q_exp() {
    float max_q = 0.0f;
    const int64_t n = a_.batch * a_.tq * a_.hq * a_.dk;
    for (int64_t i = 0; i < n; ++i) {
      const float x = std::fabs(q_.dtype == DType::f16 ? f16_to_f32(q_.as<uint16_t>()[i]) : q_.as<float>()[i]);
      if (std::isfinite(x)) max_q = std::max(max_q, x);
    }
    int e = 0;
    std::frexp(max_q, &e);  // max_q < 2^e
    q_exp_ = std::max(0, std::min(112, 103 - e));
    q_scale_ = std::ldexp(1.0f, q_exp_);
  }

  void build_items(int threads) {
    const int64_t G = a_.group();
    const bool per_query_head_layout = a_.has_layout && a_.layout_heads == a_.hq && G > 1;
    const bool decode_path = a_.tq <= 8;
    const int64_t q_block = a_.has_layout ? a_.block_q : a_.tq;
    std::vector<KeyRange> ranges;
    auto add_item = [&](Item it) {
      allowed_key_ranges(a_, it.layout_row, it.i0, it.i0 + it.nq, ranges);
      const int64_t kc = it.decode ? kDecodeChunk : kPrefillChunk;
      for (const KeyRange& r : ranges) it.chunks += (r.size() + kc - 1) / kc;
      items_.push_back(std::move(it));
    };
    for (int64_t b = 0; b < a_.batch; ++b)
      for (int64_t qb0 = 0; qb0 < a_.tq; qb0 += q_block) {
        const int64_t qb_end = std::min(a_.tq, qb0 + q_block);
        const int64_t layout_block = a_.has_layout ? qb0 / a_.block_q : 0;
        if (decode_path) {
          const int64_t nq = qb_end - qb0;
          // Decode rows: heads of a slot x the (<= 8) queries, in calls of 4 or 8 rows.
          const int64_t heads_per_slot = per_query_head_layout ? 1 : std::max<int64_t>(1, std::min(G, 8 / nq));
          const bool shared = !a_.has_layout || a_.layout_heads == 1;
          if (shared && heads_per_slot == G) {
            // Every KV head in one item: calls cover all heads of a key tile,
            // which streams K and V through memory in address order.
            for (int64_t kv0 = 0; kv0 < a_.hkv; kv0 += 64) {
              Item it;
              it.b = b;
              it.i0 = qb0;
              it.nq = nq;
              it.layout_row = layout_block;
              it.decode = true;
              it.multi_head = true;
              it.rows = G * nq <= 4 ? 4 : 8;
              for (int64_t kvh = kv0; kvh < std::min(a_.hkv, kv0 + 64); ++kvh) it.slots.push_back({kvh, kvh * G, G});
              add_item(std::move(it));
            }
            continue;
          }
          for (int64_t kvh = 0; kvh < a_.hkv; ++kvh) {
            // Slots of one KV head share its key rows (read once, then cached);
            // per-query-head layouts give every head its own item.
            const int64_t items_per_kv = per_query_head_layout ? G : 1;
            for (int64_t part = 0; part < items_per_kv; ++part) {
              Item it;
              it.b = b;
              it.i0 = qb0;
              it.nq = nq;
              it.decode = true;
              const int64_t h_begin = per_query_head_layout ? kvh * G + part : kvh * G;
              const int64_t h_end = per_query_head_layout ? h_begin + 1 : (kvh + 1) * G;
              it.layout_row = a_.has_layout ? a_.layout_head(h_begin) * a_.q_blocks + layout_block : 0;
              it.rows = heads_per_slot * nq <= 4 ? 4 : 8;
              for (int64_t h0 = h_begin; h0 < h_end; h0 += heads_per_slot)
                it.slots.push_back({kvh, h0, std::min(heads_per_slot, h_end - h0)});
              add_item(std::move(it));
            }
          }
          continue;
        }
        // Prefill: 64-row tiles of nh heads x 64/nh queries.
        for (int64_t kvh = 0; kvh < a_.hkv; ++kvh) {
          const int64_t max_heads = per_query_head_layout ? 1 : std::min<int64_t>(G, kPrefillRows);
          for (int64_t h0 = kvh * G; h0 < (kvh + 1) * G; h0 += max_heads) {
            const int64_t nh = std::min(max_heads, (kvh + 1) * G - h0);
            const int64_t tile_q = std::max<int64_t>(1, kPrefillRows / nh);
            for (int64_t i0 = qb0; i0 < qb_end; i0 += tile_q) {
              Item it;
              it.b = b;
              it.i0 = i0;
              it.nq = std::min(tile_q, qb_end - i0);
              it.layout_row = a_.has_layout ? a_.layout_head(h0) * a_.q_blocks + layout_block : 0;
              it.rows = kPrefillRows;
              it.slots.push_back({kvh, h0, nh});
              it.group = b * a_.hkv + kvh;
              add_item(std::move(it));
            }
          }
        }
      }

    // Split long chunk lists when there are too few tiles for the threads.
    const int64_t want_units = 4 * std::max(1, threads);
    size_t state_floats = 0;
    if (static_cast<int64_t>(items_.size()) < want_units) {
      const int64_t per_item = (want_units + static_cast<int64_t>(items_.size()) - 1) /
                               std::max<int64_t>(1, static_cast<int64_t>(items_.size()));
      for (Item& it : items_) {
        it.nsplit = static_cast<int>(std::max<int64_t>(1, std::min(per_item, it.chunks / 2)));
        if (it.nsplit > 1) {
          it.split_state = state_floats;
          state_floats += static_cast<size_t>(it.nsplit) * state_size(it);
          it.pending = std::make_unique<std::atomic<int>>(it.nsplit);
        }
      }
    }
    split_states_.assign(state_floats, 0.0f);

    // Prefill head staging: f16 (or padded) K/V of each (b, KV head) widened
    // once instead of once per tile, when there are enough tiles per head to
    // keep the threads busy and the f32 copy of one head stays modest.
    const bool needs_staging = kv_f16_ || dk_pad_ != a_.dk || dv_pad_ != a_.dv;
    const size_t head_floats = static_cast<size_t>((a_.tk + kPrefillChunk) * (dk_pad_ + dv_pad_));
    bool head_staging = needs_staging && !decode_path && head_floats * sizeof(float) <= (size_t(256) << 20) &&
                        static_cast<int64_t>(items_.size()) >= 4 * std::max(1, threads) * a_.batch * a_.hkv;
    if (head_staging) {
      head_k_.assign(static_cast<size_t>((a_.tk + kPrefillChunk) * dk_pad_), 0.0f);
      head_v_.assign(static_cast<size_t>((a_.tk + kPrefillChunk) * dv_pad_), 0.0f);
      groups_.resize(static_cast<size_t>(a_.batch * a_.hkv));
      std::vector<std::vector<KeyRange>> group_ranges(groups_.size());
      for (const Item& it : items_) {
        allowed_key_ranges(a_, it.layout_row, it.i0, it.i0 + it.nq, ranges);
        auto& gr = group_ranges[static_cast<size_t>(it.group)];
        gr.insert(gr.end(), ranges.begin(), ranges.end());
      }
      for (size_t g = 0; g < groups_.size(); ++g) {
        Group& grp = groups_[g];
        grp.b = static_cast<int64_t>(g) / a_.hkv;
        grp.kvh = static_cast<int64_t>(g) % a_.hkv;
        auto& gr = group_ranges[g];
        std::sort(gr.begin(), gr.end(), [](const KeyRange& x, const KeyRange& y) { return x.lo < y.lo; });
        int64_t next = 0;
        for (const KeyRange& r : gr)
          for (int64_t j = std::max(r.lo, next); j < r.hi; ++j) grp.rows.push_back(j);
        for (const KeyRange& r : gr) next = std::max(next, r.hi);
        (void)next;
      }
      // Deduplicate rows per group (ranges of different tiles overlap).
      for (Group& grp : groups_) {
        std::sort(grp.rows.begin(), grp.rows.end());
        grp.rows.erase(std::unique(grp.rows.begin(), grp.rows.end()), grp.rows.end());
      }
    }

    for (size_t i = 0; i < items_.size(); ++i)
      for (int sp = 0; sp < items_[i].nsplit; ++sp) units_.push_back({static_cast<int64_t>(i), sp});
    // By staging group, then longest first (better balance of the dynamic
    // schedule).
    std::stable_sort(units_.begin(), units_.end(), [&](const Unit& x, const Unit& y) {
      const Item& p = items_[static_cast<size_t>(x.item)];
      const Item& q = items_[static_cast<size_t>(y.item)];
      if (head_staging && p.group != q.group) return p.group < q.group;
      return p.chunks / p.nsplit > q.chunks / q.nsplit;
    });
    if (head_staging) {
      for (size_t u = 0; u < units_.size(); ++u) {
        Group& g = groups_[static_cast<size_t>(items_[static_cast<size_t>(units_[u].item)].group)];
        if (g.unit_end == 0) g.unit_begin = static_cast<int>(u);
        g.unit_end = static_cast<int>(u) + 1;
      }
    }
  }

  // Floats of one item's (m, l, acc) state: per slot m[rows], l[rows],
  // acc[rows][dv_pad], slots after each other within each array.
  size_t state_size(const Item& it) const {
    return it.slots.size() * static_cast<size_t>(it.rows * (dv_pad_ + 2));
  }

  // Copies rows [k0, k0 + n) of K or V for the item's KV heads into `dst`
  // laid out [kc][slots][d_pad] in the kernel's input dtype (f32, or f16
  // bits), zero padding columns and rows n..kc-1. `widen` converts f16 to f32.
  void stage_chunk(const TensorRef& t, const Item& it, int64_t d, int64_t d_pad, int64_t k0, int64_t n, int64_t kc,
                   bool widen, void* dst) const {
    const size_t esz = widen ? sizeof(float) : dtype_size(t.dtype);
    const int64_t ns = it.multi_head ? static_cast<int64_t>(it.slots.size()) : 1;
    char* out = static_cast<char*>(dst);
    std::memset(out, 0, static_cast<size_t>(kc * ns * d_pad) * esz);
    for (int64_t r = 0; r < n; ++r)
      for (int64_t s = 0; s < ns; ++s) {
        const int64_t kvh = it.slots[static_cast<size_t>(s)].kvh;
        const int64_t src = ((it.b * a_.tk + k0 + r) * a_.hkv + kvh) * d;
        char* o = out + static_cast<size_t>((r * ns + s) * d_pad) * esz;
        if (widen && t.dtype == DType::f16)
          isa_.widen(t.as<uint16_t>() + src, reinterpret_cast<float*>(o), d);
        else
          std::memcpy(o, static_cast<const char*>(t.data) + static_cast<size_t>(src) * dtype_size(t.dtype),
                      static_cast<size_t>(d) * dtype_size(t.dtype));
      }
  }

  void run_unit(const Unit& u) {
    Item& it = items_[static_cast<size_t>(u.item)];
    cpu::HalideCallContext hctx;
    const int64_t kc = it.decode ? kDecodeChunk : kPrefillChunk;
    const int64_t R = it.rows, S = static_cast<int64_t>(it.slots.size());
    const int64_t dk = dk_pad_, dv = dv_pad_;
    // Scratch: Q rows, qpos, two states, K and V chunks (widest dtype).
    const size_t q_sz = static_cast<size_t>(S * R * dk), st_sz = state_size(it);
    const size_t kv_sz = static_cast<size_t>(kc * (it.multi_head ? S : 1) * (dk + dv));
    float* mem = thread_scratch(q_sz + static_cast<size_t>(R) + 2 * st_sz + kv_sz);
    float* qs = mem;
    int32_t* qpos = reinterpret_cast<int32_t*>(qs + q_sz);
    float* state[2] = {qs + q_sz + R, qs + q_sz + R + st_sz};
    float* kbuf = state[1] + st_sz;
    float* vbuf = kbuf + kc * (it.multi_head ? S : 1) * dk;
    // State arrays: m [S][R], l [S][R], acc [S][R][dv].
    auto m_of = [&](float* st, int64_t s) { return st + s * R; };
    auto l_of = [&](float* st, int64_t s) { return st + S * R + s * R; };
    auto acc_of = [&](float* st, int64_t s) { return st + 2 * S * R + s * R * dv; };

    // Q rows (row r = head hi * nq + query qi of a slot), widened and
    // zero-padded; the prefill kernel takes them transposed (rows innermost).
    std::memset(qs, 0, q_sz * sizeof(float));
    std::vector<float> row(static_cast<size_t>(a_.dk));
    for (int64_t r = 0; r < R; ++r) qpos[r] = static_cast<int32_t>(a_.q_offset + it.i0 + std::min(r % it.nq, it.nq - 1));
    for (int64_t s = 0; s < S; ++s) {
      const Slot& sl = it.slots[static_cast<size_t>(s)];
      for (int64_t r = 0; r < sl.nh * it.nq; ++r) {
        const int64_t hi = r / it.nq, qi = r % it.nq;
        const int64_t src = ((it.b * a_.tq + it.i0 + qi) * a_.hq + sl.h0 + hi) * a_.dk;
        if (q_.dtype == DType::f16)
          isa_.widen(q_.as<uint16_t>() + src, row.data(), a_.dk);
        else
          std::memcpy(row.data(), q_.as<float>() + src, static_cast<size_t>(a_.dk) * sizeof(float));
        for (int64_t d = 0; d < a_.dk; ++d) {
          if (it.decode)
            qs[(s * R + r) * dk + d] = row[static_cast<size_t>(d)] * q_scale_;
          else
            qs[d * R + r] = row[static_cast<size_t>(d)];
        }
      }
    }
    {
      float* st = state[0];
      std::fill(st, st + S * R, -INFINITY);
      std::fill(st + S * R, st + st_sz, 0.0f);
    }
    int cur = 0;

    const int64_t p0 = a_.q_offset + it.i0, p1 = a_.q_offset + it.i0 + it.nq - 1;
    const int32_t causal = a_.pattern.causal ? 1 : 0;
    const int32_t window = static_cast<int32_t>(a_.pattern.window);
    const int32_t sinks = static_cast<int32_t>(std::min<int64_t>(a_.pattern.sinks, a_.tk));
    const float scale = static_cast<float>(a_.scale), softcap = static_cast<float>(a_.softcap);
    const int32_t capped = a_.softcap > 0 ? 1 : 0;
    const bool padded = dk != a_.dk || dv != a_.dv;
    const bool staged_head = !groups_.empty();

    // This split's share of the chunk list.
    const int64_t c_begin = it.chunks * u.split / it.nsplit, c_end = it.chunks * (u.split + 1) / it.nsplit;
    std::vector<KeyRange> ranges;
    allowed_key_ranges(a_, it.layout_row, it.i0, it.i0 + it.nq, ranges);
    int64_t c = 0;
    for (const KeyRange& rg : ranges) {
      for (int64_t k0 = rg.lo; k0 < rg.hi; k0 += kc, ++c) {
        if (c < c_begin || c >= c_end) continue;
        const int64_t n = std::min(kc, rg.hi - k0);
        const int32_t masked = n == kc && a_.pattern.all_allowed(p0, p1, k0, k0 + n) ? 0 : 1;
        const float* in = state[cur];
        float* out = state[cur ^ 1];
        if (!it.decode) {
          // Prefill: f32 K/V rows from the head staging copy, the caller's
          // f32 tensors, or a per-chunk staged copy.
          const Slot& sl = it.slots[0];
          const float *kp, *vp;
          int64_t k_stride, v_stride;
          if (staged_head) {
            kp = head_k_.data() + k0 * dk;
            vp = head_v_.data() + k0 * dv;
            k_stride = dk;
            v_stride = dv;
          } else if (!kv_f16_ && !padded && n == kc) {
            kp = k_.as<float>() + ((it.b * a_.tk + k0) * a_.hkv + sl.kvh) * a_.dk;
            vp = v_.as<float>() + ((it.b * a_.tk + k0) * a_.hkv + sl.kvh) * a_.dv;
            k_stride = a_.hkv * a_.dk;
            v_stride = a_.hkv * a_.dv;
          } else {
            stage_chunk(k_, it, a_.dk, dk, k0, n, kc, true, kbuf);
            stage_chunk(v_, it, a_.dv, dv, k0, n, kc, true, vbuf);
            kp = kbuf;
            vp = vbuf;
            k_stride = dk;
            v_stride = dv;
          }
          HBuf qb = f32buf(qs, {{R, 1}, {dk, R}});
          HBuf kb = f32buf(kp, {{dk, 1}, {kc, k_stride}});
          HBuf vb = f32buf(vp, {{dv, 1}, {kc, v_stride}});
          HBuf pb(qpos, halide_type_int, 32, {{R, 1}});
          HBuf mi = f32buf(in, {{R, 1}}), li = f32buf(in + R, {{R, 1}}), ai = f32buf(in + 2 * R, {{dv, 1}, {R, dv}});
          HBuf mo = f32buf(out, {{R, 1}}), lo = f32buf(out + R, {{R, 1}}),
               ao = f32buf(out + 2 * R, {{dv, 1}, {R, dv}});
          const int rc = isa_.prefill(&hctx, &qb, &kb, &vb, &pb, static_cast<int32_t>(n), static_cast<int32_t>(k0),
                                      masked, causal, window, sinks, scale, softcap, capped, &mi, &li, &ai, &mo, &lo,
                                      &ao);
          if (rc != 0) throw DeviceError(cat("prefill tile failed (code ", rc, "): ", hctx.error));
        } else {
          // Decode: K/V read in place (f16 or f32) unless the chunk is short
          // or head dims need padding; then the raw rows are staged.
          const bool staged = n < kc || padded;
          const int64_t ns = it.multi_head ? S : 1;
          const halide_type_code_t code = kv_f16_ ? halide_type_uint : halide_type_float;
          const int bits = kv_f16_ ? 16 : 32;
          const size_t esz = dtype_size(a_.kv_dtype);
          if (staged) {
            stage_chunk(k_, it, a_.dk, dk, k0, n, kc, false, kbuf);
            stage_chunk(v_, it, a_.dv, dv, k0, n, kc, false, vbuf);
          }
          DecodeFn fn = R == 4 ? (kv_f16_ ? isa_.decode4_f16 : isa_.decode4_f32)
                             : (kv_f16_ ? isa_.decode8_f16 : isa_.decode8_f32);
          // One call for all slots (multi-head), else one per slot.
          for (int64_t s0 = 0; s0 < S; s0 += ns) {
            const int64_t kvh = it.slots[static_cast<size_t>(s0)].kvh;
            const char *kp, *vp;
            int64_t kh_stride, kj_stride, vh_stride, vj_stride;
            if (staged) {
              kp = reinterpret_cast<const char*>(kbuf);
              vp = reinterpret_cast<const char*>(vbuf);
              kh_stride = dk;
              kj_stride = ns * dk;
              vh_stride = dv;
              vj_stride = ns * dv;
            } else {
              kp = static_cast<const char*>(k_.data) + static_cast<size_t>(((it.b * a_.tk + k0) * a_.hkv + kvh) * a_.dk) * esz;
              vp = static_cast<const char*>(v_.data) + static_cast<size_t>(((it.b * a_.tk + k0) * a_.hkv + kvh) * a_.dv) * esz;
              kh_stride = a_.dk;
              kj_stride = a_.hkv * a_.dk;
              vh_stride = a_.dv;
              vj_stride = a_.hkv * a_.dv;
            }
            HBuf qb = f32buf(qs + s0 * R * dk, {{dk, 1}, {R, dk}, {ns, R * dk}});
            const int64_t line = decode_line();
            HBuf kb(const_cast<char*>(kp), code, bits, {{line, 1}, {dk / line, line}, {ns, kh_stride}, {kc, kj_stride}});
            HBuf vb(const_cast<char*>(vp), code, bits, {{line, 1}, {dv / line, line}, {ns, vh_stride}, {kc, vj_stride}});
            HBuf pb(qpos, halide_type_int, 32, {{R, 1}});
            HBuf mi = f32buf(m_of(const_cast<float*>(in), s0), {{R, 1}, {ns, R}});
            HBuf li = f32buf(l_of(const_cast<float*>(in), s0), {{R, 1}, {ns, R}});
            HBuf ai = f32buf(acc_of(const_cast<float*>(in), s0), {{dv, 1}, {R, dv}, {ns, R * dv}});
            HBuf mo = f32buf(m_of(out, s0), {{R, 1}, {ns, R}});
            HBuf lo = f32buf(l_of(out, s0), {{R, 1}, {ns, R}});
            HBuf ao = f32buf(acc_of(out, s0), {{dv, 1}, {R, dv}, {ns, R * dv}});
            const int rc = fn(&hctx, &qb, &kb, &vb, &pb, static_cast<int32_t>(n), static_cast<int32_t>(k0), masked,
                              causal, window, sinks, scale, softcap, capped, q_exp_, &mi, &li, &ai, &mo, &lo,
                              &ao);
            if (rc != 0) throw DeviceError(cat("decode tile failed (code ", rc, "): ", hctx.error));
          }
        }
        cur ^= 1;
      }
    }

    const float* st = state[cur];
    if (it.nsplit == 1) {
      merge(it, st, 1, st_sz);
      return;
    }
    // Park this split's state; the last split to finish merges them all.
    float* slot = split_states_.data() + it.split_state + static_cast<size_t>(u.split) * st_sz;
    std::memcpy(slot, st, st_sz * sizeof(float));
    if (it.pending->fetch_sub(1, std::memory_order_acq_rel) == 1)
      merge(it, split_states_.data() + it.split_state, it.nsplit, st_sz);
  }

  // Merges `nsplit` states laid out `stride` floats apart and writes every
  // slot's O rows and L entries in place.
  void merge(const Item& it, const float* states, int nsplit, size_t stride) {
    const int64_t R = it.rows, S = static_cast<int64_t>(it.slots.size()), dv = dv_pad_, nq = it.nq;
    const int64_t sp = static_cast<int64_t>(stride);
    cpu::HalideCallContext hctx;
    for (int64_t s = 0; s < S; ++s) {
      const Slot& sl = it.slots[static_cast<size_t>(s)];
      const int64_t nh = sl.nh;
      // acc spans the padded columns (zeros) so the merge may round its
      // vectors up.
      HBuf acc = f32buf(states + 2 * S * R + s * R * dv, {{dv, 1}, {nq, dv}, {nh, nq * dv}, {nsplit, sp}});
      HBuf m = f32buf(states + s * R, {{nq, 1}, {nh, nq}, {nsplit, sp}});
      HBuf l = f32buf(states + S * R + s * R, {{nq, 1}, {nh, nq}, {nsplit, sp}});
      float* o = o_ + ((it.b * a_.tq + it.i0) * a_.hq + sl.h0) * a_.dv;
      HBuf ob = f32buf(o, {{a_.dv, 1}, {nq, a_.hq * a_.dv}, {nh, a_.dv}});
      float lse_scratch[kPrefillRows];
      float* lp = lse_ ? lse_ + (it.b * a_.hq + sl.h0) * a_.tq + it.i0 : lse_scratch;
      HBuf lb = f32buf(lp, {{nq, 1}, {nh, lse_ ? a_.tq : nq}});
      const int rc = isa_.merge(&hctx, &acc, &m, &l, &ob, &lb);
      if (rc != 0) throw DeviceError(cat("merge failed (code ", rc, "): ", hctx.error));
    }
  }

  Isa isa_;
  Args a_;
  TensorRef q_, k_, v_;
  float* o_ = nullptr;
  float* lse_ = nullptr;
  int64_t dk_pad_ = 0, dv_pad_ = 0;
  bool kv_f16_ = false;
  float q_scale_ = 1.0f;  // decode with f16 K/V: 2^q_exp_, see choose_q_exp
  int32_t q_exp_ = 0;
  std::vector<Item> items_;
  std::vector<Unit> units_;
  std::vector<float> split_states_;
  std::vector<Group> groups_;
  int64_t stage_group_ = 0;
  std::vector<float> head_k_, head_v_;
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
  k.ineligible_reason = [features](const DeviceProfile& p, const OpCall&) {
    return cpu::missing_cpu_feature(p, features);
  };
  k.bind = [isa, variant](Device& dev, const OpCall& call, const Tuning&) -> std::unique_ptr<Invocation> {
    CpuDevice& cpu = cpu::cpu_device_for(dev, cat(kOp, "/cpu/", variant));
    return std::make_unique<CpuInvocation>(call, isa, cpu.threads());
  };
  return k;
}

#define EK_SA_ISA(isa, widen_fn)                                                                      \
  Isa {                                                                                                \
    ek_sa_prefill_##isa, ek_sa_decode4_f32_##isa, ek_sa_decode8_f32_##isa, ek_sa_decode4_f16_##isa,    \
        ek_sa_decode8_f16_##isa, ek_sa_merge_##isa, widen_fn                                           \
  }
#if defined(__x86_64__)
const RegisterKernel reg_sse41(make_impl("halide_sse41", 10, EK_SA_ISA(sse41, widen_scalar), {"sse41"},
                                         "Halide flash-attention tiles, SSE4.1 baseline"));
const RegisterKernel reg_avx2(make_impl("halide_avx2", 20, EK_SA_ISA(avx2, widen_f16c), {"avx2", "fma", "f16c"},
                                        "Halide flash-attention tiles, AVX2 + FMA, F16C widening of f16 K/V"));
const RegisterKernel reg_avx512(make_impl("halide_avx512", 30, EK_SA_ISA(avx512, widen_avx512),
                                          {"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx2", "fma", "f16c"},
                                          "Halide flash-attention tiles, AVX-512 (Skylake-SP subset), F16C widening"));
#elif defined(__aarch64__)
const RegisterKernel reg_neon(make_impl("halide_neon", 10, EK_SA_ISA(neon, widen_scalar), {"neon"},
                                        "Halide flash-attention tiles, NEON"));
#endif

}  // namespace
}  // namespace sparse_attention
}  // namespace ek
