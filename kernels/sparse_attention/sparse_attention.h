// sparse_attention: block-sparse flash attention (ops.md "sparse_attention").
//
// Tensors (all dense, row-major, last dim innermost):
//   Q [B, Tq, Hq, Dk]   f32|f16
//   K [B, Tk, Hkv, Dk]  f32|f16, V [B, Tk, Hkv, Dv] with K's dtype
//   O [B, Tq, Hq, Dv]   f32 output
//   L [B, Hq, Tq]       f32 output, optional: log-sum-exp (natural log) of the
//                       scaled, soft-capped scores over the allowed keys
//   Optional block layout (CSR, i32), Hl in {1, Hkv, Hq} layout heads:
//   block_counts  [Hl, nQb]         number of listed key blocks per query block
//   block_indices [Hl, nQb, maxKb]  key block numbers; entries past the count
//                                   are ignored
//   full_counts   [Hl, nQb]         the same for key blocks known to be fully
//   full_indices  [Hl, nQb, maxKf]  allowed by the analytic pattern
//   nQb = ceil(Tq / block_q), nKb = ceil(Tk / block_k). A layout is given by
//   either pair or both; layout head g serves query head h = g (Hl = Hq),
//   h / (Hq / Hkv) = g (Hl = Hkv) or every head (Hl = 1).
//
// Params:
//   scale     float, default 1/sqrt(Dk); finite
//   softcap   float c >= 0, default 0 = off; s = c * tanh(s / c) after scaling
//   q_offset  int, default Tk - Tq: query i sits at position q_offset + i, key
//             j at position j
//   causal    bool, default 0: key pos <= query pos
//   window    int W >= 0, default 0 = none: query pos - key pos < W
//   sinks     int S >= 0, default 0: keys < S pass the window test (they stay
//             subject to causal); without a window they change nothing
//   block_q, block_k  int >= 1, the layout's block sizes; required with a
//             layout, rejected without one
//
// Allowed pairs = the analytic pattern AND the layout (a key block is in the
// layout of query block qb when it is listed in either list). A block in the
// full list must be fully allowed by the pattern for every existing (query,
// key) pair of the block (validated), and may not also be in the partial list;
// no block may be listed twice. Rows with no allowed key get O = 0, L = -inf.
// O[i] = sum_j softmax_j(s_ij) v_j over allowed j, s_ij = cap(scale q_i.k_j).
//
// Query head h reads KV head h / (Hq / Hkv). Every kernel follows only the
// allowed blocks: work and K/V reads scale with the allowed pairs, never with
// Tq * Tk, and no [Tq, Tk] matrix is ever materialised.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/common/op.h"

namespace ek {
namespace sparse_attention {

constexpr const char* kOp = "sparse_attention";

// ---------------------------------------------------------------- pattern

// Half-open key interval [lo, hi).
struct KeyRange {
  int64_t lo = 0, hi = 0;
  bool empty() const { return hi <= lo; }
  int64_t size() const { return hi > lo ? hi - lo : 0; }
};

// The analytic part of the mask. Positions are absolute (query i at
// q_offset + i, key j at j).
struct Pattern {
  bool causal = false;
  int64_t window = 0;  // 0 = no window
  int64_t sinks = 0;

  bool allowed(int64_t qpos, int64_t key) const {
    if (causal && key > qpos) return false;
    if (window > 0 && key >= sinks && qpos - key >= window) return false;
    return true;
  }
  // Allowed keys of one query position within [0, tk): at most two ranges
  // (sinks, window), written to out[0..return).
  int keys_for_position(int64_t qpos, int64_t tk, KeyRange out[2]) const;
  // Keys allowed for at least one position in [p0, p1], within [0, tk).
  int union_keys(int64_t p0, int64_t p1, int64_t tk, KeyRange out[2]) const;
  // Every pair (p, key) with p in [p0, p1], key in [k0, k1) allowed?
  bool all_allowed(int64_t p0, int64_t p1, int64_t k0, int64_t k1) const;
  // Some pair allowed?
  bool any_allowed(int64_t p0, int64_t p1, int64_t k0, int64_t k1) const;
};

// ---------------------------------------------------------------- layout

// A block layout held on the host: CSR lists of partial (pattern-masked) and
// full key blocks per (layout head, query block). Builders below produce it;
// add_to() attaches it to a call.
struct BlockLayout {
  int64_t heads = 1;       // Hl
  int64_t block_q = 64, block_k = 64;
  int64_t q_blocks = 0;    // nQb
  int64_t k_blocks = 0;    // nKb
  // Per (head, query block), sorted ascending, disjoint between the lists.
  std::vector<std::vector<int32_t>> partial;  // [heads * q_blocks]
  std::vector<std::vector<int32_t>> full;     // [heads * q_blocks]

  std::vector<int32_t>& partial_row(int64_t h, int64_t qb) { return partial[h * q_blocks + qb]; }
  std::vector<int32_t>& full_row(int64_t h, int64_t qb) { return full[h * q_blocks + qb]; }
  const std::vector<int32_t>& partial_row(int64_t h, int64_t qb) const { return partial[h * q_blocks + qb]; }
  const std::vector<int32_t>& full_row(int64_t h, int64_t qb) const { return full[h * q_blocks + qb]; }

  // Number of listed blocks (both lists).
  int64_t listed_blocks() const;
  // Creates block_counts/block_indices (and full_counts/full_indices when any
  // block is full) in `oc` and sets block_q/block_k. An all-empty list still
  // gets tensors (maxKb = 1, counts 0) so "no allowed block" is expressible.
  void add_to(OwnedCall& oc) const;
};

// Geometry a layout is built for.
struct LayoutShape {
  int64_t tq = 0, tk = 0;
  int64_t q_offset = 0;     // as the call's q_offset (default tk - tq)
  int64_t block_q = 64, block_k = 64;
  int64_t heads = 1;        // Hl
};

// Empty / partial / full classification of one block against the pattern
// (full = every existing pair allowed, so no per-element test is needed).
enum class BlockClass { empty, partial, full };
BlockClass classify_block(const Pattern& p, const LayoutShape& s, int64_t qb, int64_t kb);

// Sliding window (+ sinks, + causal) as a layout: every block the pattern
// touches, classified. Identical results to the analytic pattern alone; it
// exists for layout-only consumers and to cross-check both paths.
BlockLayout sliding_window_layout(const LayoutShape& s, const Pattern& p);

// BigBird-style layout: per query block qb, the key blocks of the local band
// (local_blocks wide, centred on the block holding qb's diagonal position),
// the first global_blocks key blocks, random_blocks distinct random other
// blocks (seeded, independent per layout head), and query blocks whose first
// query lies in the first global_blocks * block_k positions attend to every
// block (global rows). Blocks are classified against `p` (pass a default
// Pattern for none), so the layout may be combined with causal etc.
struct BigBirdOptions {
  int64_t local_blocks = 3;
  int64_t global_blocks = 2;
  int64_t random_blocks = 3;
  uint64_t seed = 0;
};
BlockLayout bigbird_layout(const LayoutShape& s, const BigBirdOptions& o, const Pattern& p = {});

// A layout file (JSON):
//   {"format": "edgekernels.block_layout", "version": 1,
//    "block_q": 64, "block_k": 64, "q_blocks": 64, "k_blocks": 64,
//    "heads": [ [ [kb, ...] per query block ] per layout head ],
//    "full":  [ same shape, optional ] }
// Loading validates everything and names the offending field; blocks listed
// in "heads" are partial (pattern-masked), those in "full" fully allowed.
BlockLayout load_block_layout(const std::string& path);
BlockLayout parse_block_layout(const std::string& json_text, const std::string& what);
void save_block_layout(const BlockLayout& layout, const std::string& path);
std::string block_layout_to_json(const BlockLayout& layout);

// ---------------------------------------------------------------- call

// Non-owning view of one CSR list of a call.
struct CsrView {
  const int32_t* counts = nullptr;   // [heads, q_blocks]
  const int32_t* indices = nullptr;  // [heads, q_blocks, max_blocks]
  int64_t max_blocks = 0;
  bool present() const { return counts != nullptr; }
  int32_t count(int64_t row) const { return counts[row]; }
  const int32_t* row(int64_t row) const { return indices + row * max_blocks; }
};

// Validated view of a sparse_attention call.
struct Args {
  int64_t batch = 0, tq = 0, tk = 0, hq = 0, hkv = 0, dk = 0, dv = 0;
  DType q_dtype = DType::f32, kv_dtype = DType::f32;
  double scale = 0, softcap = 0;
  int64_t q_offset = 0;
  Pattern pattern;
  bool want_lse = false;
  // Layout (has_layout == false: all blocks allowed by the layout).
  bool has_layout = false;
  int64_t block_q = 0, block_k = 0, layout_heads = 0, q_blocks = 0, k_blocks = 0;
  CsrView partial, full;

  int64_t group() const { return hq / hkv; }
  // Layout head serving query head h.
  int64_t layout_head(int64_t h) const {
    return layout_heads == 1 ? 0 : layout_heads == hq ? h : h / group();
  }

  // Validates shapes, dtypes, params, every layout index (range, duplicates,
  // counts <= max) and every full block against the pattern. Throws
  // InvalidArgument naming the argument.
  static Args parse(const OpCall& call);
};

// Allowed key ranges of the call for query rows [i0, i1) of layout row
// `layout_row` (head * q_blocks + query block; ignored without a layout):
// the union over those rows, as sorted disjoint ranges merged across
// adjacent blocks. Used by the reference (one row), the CPU driver (a query
// tile) and cost accounting.
void allowed_key_ranges(const Args& a, int64_t layout_row, int64_t i0, int64_t i1, std::vector<KeyRange>& out);

// Exact number of allowed (query, key) pairs summed over B and Hq, and the
// number of distinct keys any query of a KV head reads, summed over B and Hkv.
struct SparsityStats {
  double allowed_pairs = 0;
  double keys_read = 0;
};
SparsityStats sparsity_stats(const Args& a);

// ---------------------------------------------------------------- GPU tiling

// The work list of the GPU kernels (Vulkan and OpenCL share it): tiles of up
// to `rows` query rows (query heads of one KV group x consecutive queries in
// one layout query block), each with its list of key chunks of <= bk keys
// taken from the allowed ranges only. Tiles of long lists are split across
// workgroups when there are fewer than `min_tiles` tiles, and so that no
// workgroup gets more than `max_chunks` chunks; the partial states of split
// tiles are merged in a second pass.
struct GpuPlan {
  static constexpr int kTileInts = 9;   // b, kvh, h0, nh, i0, nq, chunk begin, chunk end, state (-1: write O/L)
  static constexpr int kMergeInts = 7;  // b, h0, nh, i0, nq, first state, splits
  int64_t rows = 0, bk = 0;
  std::vector<int32_t> tiles;
  std::vector<int32_t> chunks;  // per chunk: first key, n | (masked << 16)
  std::vector<int32_t> merges;
  int64_t n_tiles = 0, n_merges = 0, n_states = 0;
};
GpuPlan plan_gpu_tiles(const Args& a, int64_t rows, int64_t bk, int64_t min_tiles, int64_t max_chunks);

// Rows per GPU tile for a call: the KV group's query heads (or 1 with
// per-query-head layouts) times the queries, as a power of two <= 16.
int64_t gpu_tile_rows(const Args& a);
// Largest keys-per-chunk in {64, 32, 16, 8, 4} whose shared-memory tiles
// (Q rows, K and V chunk, scores) fit `shared_bytes`; 0 if none does.
int64_t gpu_chunk_keys(const Args& a, int64_t rows, int64_t shared_bytes);

}  // namespace sparse_attention
}  // namespace ek
