// Host-side tiling shared by the Vulkan and OpenCL kernels of sparse_attention.
#include <algorithm>

#include "kernels/sparse_attention/sparse_attention.h"

namespace ek {
namespace sparse_attention {

int64_t gpu_tile_rows(const Args& a) {
  const bool per_query_head = a.has_layout && a.layout_heads == a.hq;
  const int64_t want = (per_query_head ? 1 : a.group()) * a.tq;
  int64_t rows = 1;
  while (rows < std::min<int64_t>(want, 16)) rows *= 2;
  return rows;
}

int64_t gpu_chunk_keys(const Args& a, int64_t rows, int64_t shared_bytes) {
  for (int64_t bk : {64, 32, 16, 8, 4}) {
    const int64_t bytes = 4 * (rows * a.dk + bk * (a.dk + a.dv) + rows * bk);
    if (bytes <= shared_bytes) return bk;
  }
  return 0;
}

GpuPlan plan_gpu_tiles(const Args& a, int64_t rows, int64_t bk, int64_t min_tiles, int64_t max_chunks) {
  struct Item {
    int64_t b, kvh, h0, nh, i0, nq, layout_row;
    std::vector<int32_t> chunks;
  };
  std::vector<Item> items;
  const int64_t G = a.group();
  const bool per_query_head = a.has_layout && a.layout_heads == a.hq && G > 1;
  const int64_t max_heads = per_query_head ? 1 : std::min(G, rows);
  const int64_t q_block = a.has_layout ? a.block_q : a.tq;
  std::vector<KeyRange> ranges;
  for (int64_t b = 0; b < a.batch; ++b)
    for (int64_t qb0 = 0; qb0 < a.tq; qb0 += q_block) {
      const int64_t qb_end = std::min(a.tq, qb0 + q_block);
      for (int64_t kvh = 0; kvh < a.hkv; ++kvh)
        for (int64_t h0 = kvh * G; h0 < (kvh + 1) * G; h0 += max_heads) {
          const int64_t nh = std::min(max_heads, (kvh + 1) * G - h0);
          const int64_t tile_q = std::max<int64_t>(1, rows / nh);
          for (int64_t i0 = qb0; i0 < qb_end; i0 += tile_q) {
            Item it{b, kvh, h0, nh, i0, std::min(tile_q, qb_end - i0), 0, {}};
            it.layout_row = a.has_layout ? a.layout_head(h0) * a.q_blocks + qb0 / a.block_q : 0;
            allowed_key_ranges(a, it.layout_row, it.i0, it.i0 + it.nq, ranges);
            const int64_t p0 = a.q_offset + it.i0, p1 = p0 + it.nq - 1;
            for (const KeyRange& r : ranges)
              for (int64_t k0 = r.lo; k0 < r.hi; k0 += bk) {
                const int64_t n = std::min(bk, r.hi - k0);
                const bool masked = !a.pattern.all_allowed(p0, p1, k0, k0 + n);
                it.chunks.push_back(static_cast<int32_t>(k0));
                it.chunks.push_back(static_cast<int32_t>(n | (masked ? 1 << 16 : 0)));
              }
            items.push_back(std::move(it));
          }
        }
    }
  GpuPlan plan;
  plan.rows = rows;
  plan.bk = bk;
  const int64_t n_items = static_cast<int64_t>(items.size());
  const int64_t per_item = n_items < min_tiles ? (min_tiles + n_items - 1) / std::max<int64_t>(1, n_items) : 1;
  for (const Item& it : items) {
    const int64_t n_chunks = static_cast<int64_t>(it.chunks.size() / 2);
    const int64_t first = static_cast<int64_t>(plan.chunks.size() / 2);
    plan.chunks.insert(plan.chunks.end(), it.chunks.begin(), it.chunks.end());
    const int64_t splits = std::max({int64_t(1), std::min(per_item, n_chunks / 2), (n_chunks + max_chunks - 1) / max_chunks});
    const int64_t first_state = plan.n_states;
    for (int64_t s = 0; s < splits; ++s) {
      const int64_t cb = first + n_chunks * s / splits, ce = first + n_chunks * (s + 1) / splits;
      const int32_t state = splits > 1 ? static_cast<int32_t>(first_state + s) : -1;
      const int32_t rec[GpuPlan::kTileInts] = {
          static_cast<int32_t>(it.b),  static_cast<int32_t>(it.kvh), static_cast<int32_t>(it.h0),
          static_cast<int32_t>(it.nh), static_cast<int32_t>(it.i0),  static_cast<int32_t>(it.nq),
          static_cast<int32_t>(cb),    static_cast<int32_t>(ce),     state};
      plan.tiles.insert(plan.tiles.end(), rec, rec + GpuPlan::kTileInts);
      ++plan.n_tiles;
    }
    if (splits > 1) {
      plan.n_states += splits;
      const int32_t rec[GpuPlan::kMergeInts] = {
          static_cast<int32_t>(it.b),  static_cast<int32_t>(it.h0), static_cast<int32_t>(it.nh),
          static_cast<int32_t>(it.i0), static_cast<int32_t>(it.nq), static_cast<int32_t>(first_state),
          static_cast<int32_t>(splits)};
      plan.merges.insert(plan.merges.end(), rec, rec + GpuPlan::kMergeInts);
      ++plan.n_merges;
    }
  }
  return plan;
}

}  // namespace sparse_attention
}  // namespace ek
