// The sparsity description of sparse_attention: interval arithmetic of the
// analytic pattern, block classification, layout builders (sliding window,
// BigBird, file) and the allowed-key enumeration every consumer shares.
#include <algorithm>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>

#include <nlohmann/json.hpp>

#include "kernels/sparse_attention/sparse_attention.h"

namespace ek {
namespace sparse_attention {

// ---------------------------------------------------------------- pattern

int Pattern::union_keys(int64_t p0, int64_t p1, int64_t tk, KeyRange out[2]) const {
  // Keys allowed for some p in [p0, p1]: causal caps them at p1, the window
  // (for keys >= sinks) starts at p0 - W + 1.
  const int64_t hi = causal ? std::min(tk, p1 + 1) : tk;
  if (hi <= 0 || p1 < p0) return 0;
  if (window <= 0) {
    out[0] = {0, hi};
    return 1;
  }
  const int64_t sink_hi = std::min(sinks, hi);
  const int64_t win_lo = std::max<int64_t>(0, p0 - window + 1);
  if (sink_hi >= win_lo) {
    out[0] = {0, hi};
    return 1;
  }
  int n = 0;
  if (sink_hi > 0) out[n++] = {0, sink_hi};
  if (win_lo < hi) out[n++] = {win_lo, hi};
  return n;
}

int Pattern::keys_for_position(int64_t qpos, int64_t tk, KeyRange out[2]) const {
  return union_keys(qpos, qpos, tk, out);
}

bool Pattern::all_allowed(int64_t p0, int64_t p1, int64_t k0, int64_t k1) const {
  if (k1 <= k0 || p1 < p0) return true;
  if (causal && k1 - 1 > p0) return false;
  if (window > 0) {
    const int64_t first_windowed = std::max(k0, sinks);
    if (first_windowed < k1 && p1 - first_windowed >= window) return false;
  }
  return true;
}

bool Pattern::any_allowed(int64_t p0, int64_t p1, int64_t k0, int64_t k1) const {
  if (k1 <= k0 || p1 < p0) return false;
  KeyRange r[2];
  const int n = union_keys(p0, p1, k1, r);
  for (int i = 0; i < n; ++i)
    if (std::max(r[i].lo, k0) < r[i].hi) return true;
  return false;
}

// ---------------------------------------------------------------- layouts

int64_t BlockLayout::listed_blocks() const {
  int64_t n = 0;
  for (const auto& r : partial) n += static_cast<int64_t>(r.size());
  for (const auto& r : full) n += static_cast<int64_t>(r.size());
  return n;
}

namespace {

void add_csr(OwnedCall& oc, const std::string& counts_name, const std::string& indices_name, int64_t heads,
             int64_t q_blocks, const std::vector<std::vector<int32_t>>& rows) {
  size_t max_blocks = 1;
  for (const auto& r : rows) max_blocks = std::max(max_blocks, r.size());
  oc.allocate(counts_name, DType::i32, {heads, q_blocks});
  oc.allocate(indices_name, DType::i32, {heads, q_blocks, static_cast<int64_t>(max_blocks)});
  int32_t* counts = oc.storage[counts_name].as<int32_t>();
  int32_t* indices = oc.storage[indices_name].as<int32_t>();
  for (size_t row = 0; row < rows.size(); ++row) {
    counts[row] = static_cast<int32_t>(rows[row].size());
    for (size_t i = 0; i < max_blocks; ++i)
      indices[row * max_blocks + i] = i < rows[row].size() ? rows[row][i] : -1;  // padding is never read
  }
}

}  // namespace

void BlockLayout::add_to(OwnedCall& oc) const {
  add_csr(oc, "block_counts", "block_indices", heads, q_blocks, partial);
  bool any_full = false;
  for (const auto& r : full) any_full |= !r.empty();
  if (any_full) add_csr(oc, "full_counts", "full_indices", heads, q_blocks, full);
  oc.call.params.set("block_q", block_q);
  oc.call.params.set("block_k", block_k);
}

namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

void check_shape(const LayoutShape& s, const char* what) {
  EK_CHECK_ARG(s.tq >= 1 && s.tk >= 1, kOp, ": ", what, ": tq=", s.tq, " tk=", s.tk, " must be >= 1");
  EK_CHECK_ARG(s.block_q >= 1 && s.block_k >= 1, kOp, ": ", what, ": block sizes ", s.block_q, "x", s.block_k,
               " must be >= 1");
  EK_CHECK_ARG(s.heads >= 1, kOp, ": ", what, ": heads=", s.heads, " must be >= 1");
}

BlockLayout empty_layout(const LayoutShape& s) {
  BlockLayout l;
  l.heads = s.heads;
  l.block_q = s.block_q;
  l.block_k = s.block_k;
  l.q_blocks = ceil_div(s.tq, s.block_q);
  l.k_blocks = ceil_div(s.tk, s.block_k);
  l.partial.assign(static_cast<size_t>(l.heads * l.q_blocks), {});
  l.full.assign(static_cast<size_t>(l.heads * l.q_blocks), {});
  return l;
}

// Files each chosen block of a row into the partial or full list.
void place_blocks(BlockLayout& l, const LayoutShape& s, const Pattern& p, int64_t h, int64_t qb,
                  std::vector<int32_t> blocks) {
  std::sort(blocks.begin(), blocks.end());
  blocks.erase(std::unique(blocks.begin(), blocks.end()), blocks.end());
  for (int32_t kb : blocks) {
    switch (classify_block(p, s, qb, kb)) {
      case BlockClass::empty: break;
      case BlockClass::partial: l.partial_row(h, qb).push_back(kb); break;
      case BlockClass::full: l.full_row(h, qb).push_back(kb); break;
    }
  }
}

}  // namespace

BlockClass classify_block(const Pattern& p, const LayoutShape& s, int64_t qb, int64_t kb) {
  const int64_t i0 = qb * s.block_q, i1 = std::min(s.tq, i0 + s.block_q);
  const int64_t k0 = kb * s.block_k, k1 = std::min(s.tk, k0 + s.block_k);
  const int64_t p0 = s.q_offset + i0, p1 = s.q_offset + i1 - 1;
  if (!p.any_allowed(p0, p1, k0, k1)) return BlockClass::empty;
  return p.all_allowed(p0, p1, k0, k1) ? BlockClass::full : BlockClass::partial;
}

BlockLayout sliding_window_layout(const LayoutShape& s, const Pattern& p) {
  check_shape(s, "sliding_window_layout");
  BlockLayout l = empty_layout(s);
  for (int64_t qb = 0; qb < l.q_blocks; ++qb) {
    const int64_t i0 = qb * s.block_q, i1 = std::min(s.tq, i0 + s.block_q);
    KeyRange r[2];
    const int n = p.union_keys(s.q_offset + i0, s.q_offset + i1 - 1, s.tk, r);
    std::vector<int32_t> blocks;
    for (int i = 0; i < n; ++i)
      for (int64_t kb = r[i].lo / s.block_k; kb < ceil_div(r[i].hi, s.block_k); ++kb)
        blocks.push_back(static_cast<int32_t>(kb));
    for (int64_t h = 0; h < s.heads; ++h) place_blocks(l, s, p, h, qb, blocks);
  }
  return l;
}

BlockLayout bigbird_layout(const LayoutShape& s, const BigBirdOptions& o, const Pattern& p) {
  check_shape(s, "bigbird_layout");
  EK_CHECK_ARG(o.local_blocks >= 0 && o.global_blocks >= 0 && o.random_blocks >= 0, kOp,
               ": bigbird_layout: block counts must be >= 0 (local ", o.local_blocks, ", global ", o.global_blocks,
               ", random ", o.random_blocks, ")");
  BlockLayout l = empty_layout(s);
  const int64_t nkb = l.k_blocks;
  for (int64_t h = 0; h < s.heads; ++h) {
    // Independent, reproducible stream per layout head (no std:: distribution,
    // whose output differs between standard libraries).
    std::mt19937_64 rng(o.seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(h) + 1);
    for (int64_t qb = 0; qb < l.q_blocks; ++qb) {
      const int64_t first_pos = s.q_offset + qb * s.block_q;
      std::vector<int32_t> chosen;
      if (first_pos < o.global_blocks * s.block_k) {
        // Global query rows see everything.
        for (int64_t kb = 0; kb < nkb; ++kb) chosen.push_back(static_cast<int32_t>(kb));
      } else {
        const int64_t centre = std::clamp<int64_t>(first_pos / s.block_k, 0, nkb - 1);
        for (int64_t kb = centre - (o.local_blocks - 1) / 2; kb <= centre + o.local_blocks / 2; ++kb)
          if (kb >= 0 && kb < nkb && o.local_blocks > 0) chosen.push_back(static_cast<int32_t>(kb));
        for (int64_t kb = 0; kb < std::min(o.global_blocks, nkb); ++kb) chosen.push_back(static_cast<int32_t>(kb));
        std::vector<int32_t> rest;
        for (int64_t kb = 0; kb < nkb; ++kb)
          if (std::find(chosen.begin(), chosen.end(), kb) == chosen.end()) rest.push_back(static_cast<int32_t>(kb));
        for (int64_t i = 0; i < o.random_blocks && !rest.empty(); ++i) {
          const size_t pick = static_cast<size_t>(rng() % rest.size());
          chosen.push_back(rest[pick]);
          rest.erase(rest.begin() + static_cast<std::ptrdiff_t>(pick));
        }
      }
      place_blocks(l, s, p, h, qb, std::move(chosen));
    }
  }
  return l;
}

// ---------------------------------------------------------------- files

std::string block_layout_to_json(const BlockLayout& l) {
  nlohmann::json j;
  j["format"] = "edgekernels.block_layout";
  j["version"] = 1;
  j["block_q"] = l.block_q;
  j["block_k"] = l.block_k;
  j["q_blocks"] = l.q_blocks;
  j["k_blocks"] = l.k_blocks;
  nlohmann::json heads = nlohmann::json::array(), full = nlohmann::json::array();
  bool any_full = false;
  for (int64_t h = 0; h < l.heads; ++h) {
    nlohmann::json hp = nlohmann::json::array(), hf = nlohmann::json::array();
    for (int64_t qb = 0; qb < l.q_blocks; ++qb) {
      hp.push_back(l.partial_row(h, qb));
      hf.push_back(l.full_row(h, qb));
      any_full |= !l.full_row(h, qb).empty();
    }
    heads.push_back(std::move(hp));
    full.push_back(std::move(hf));
  }
  j["heads"] = std::move(heads);
  if (any_full) j["full"] = std::move(full);
  return j.dump();
}

void save_block_layout(const BlockLayout& layout, const std::string& path) {
  std::ofstream f(path);
  EK_CHECK_ARG(f.good(), kOp, ": cannot write layout file '", path, "'");
  f << block_layout_to_json(layout) << "\n";
  EK_CHECK_ARG(f.good(), kOp, ": failed writing layout file '", path, "'");
}

namespace {

int64_t json_int(const nlohmann::json& j, const char* key, const std::string& what) {
  EK_CHECK_ARG(j.contains(key), kOp, ": ", what, ": missing field '", key, "'");
  const auto& v = j.at(key);
  EK_CHECK_ARG(v.is_number_integer(), kOp, ": ", what, ": field '", key, "' is not an integer");
  return v.get<int64_t>();
}

void read_rows(const nlohmann::json& lists, const char* key, BlockLayout& l, bool is_full, const std::string& what) {
  EK_CHECK_ARG(lists.is_array() && static_cast<int64_t>(lists.size()) == l.heads, kOp, ": ", what, ": field '", key,
               "' must be an array of ", l.heads, " heads");
  for (int64_t h = 0; h < l.heads; ++h) {
    const auto& hl = lists[static_cast<size_t>(h)];
    EK_CHECK_ARG(hl.is_array() && static_cast<int64_t>(hl.size()) == l.q_blocks, kOp, ": ", what, ": ", key, "[", h,
                 "] must be an array of q_blocks=", l.q_blocks, " lists");
    for (int64_t qb = 0; qb < l.q_blocks; ++qb) {
      const auto& row = hl[static_cast<size_t>(qb)];
      EK_CHECK_ARG(row.is_array(), kOp, ": ", what, ": ", key, "[", h, "][", qb, "] is not an array");
      auto& dst = is_full ? l.full_row(h, qb) : l.partial_row(h, qb);
      for (const auto& e : row) {
        EK_CHECK_ARG(e.is_number_integer(), kOp, ": ", what, ": ", key, "[", h, "][", qb, "] holds a non-integer");
        const int64_t kb = e.get<int64_t>();
        EK_CHECK_ARG(kb >= 0 && kb < l.k_blocks, kOp, ": ", what, ": ", key, "[", h, "][", qb, "] block ", kb,
                     " is out of range [0, ", l.k_blocks, ")");
        dst.push_back(static_cast<int32_t>(kb));
      }
    }
  }
}

}  // namespace

BlockLayout parse_block_layout(const std::string& text, const std::string& what) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    throw InvalidArgument(cat(kOp, ": ", what, ": not valid JSON (", e.what(), ")"));
  }
  EK_CHECK_ARG(j.is_object(), kOp, ": ", what, ": expected a JSON object");
  EK_CHECK_ARG(j.value("format", std::string()) == "edgekernels.block_layout", kOp, ": ", what,
               ": field 'format' must be \"edgekernels.block_layout\"");
  EK_CHECK_ARG(json_int(j, "version", what) == 1, kOp, ": ", what, ": unsupported version (expected 1)");
  BlockLayout l;
  l.block_q = json_int(j, "block_q", what);
  l.block_k = json_int(j, "block_k", what);
  l.q_blocks = json_int(j, "q_blocks", what);
  l.k_blocks = json_int(j, "k_blocks", what);
  EK_CHECK_ARG(l.block_q >= 1 && l.block_k >= 1, kOp, ": ", what, ": block_q/block_k must be >= 1");
  EK_CHECK_ARG(l.q_blocks >= 1 && l.k_blocks >= 1 && l.q_blocks <= (1 << 24) && l.k_blocks <= (1 << 24), kOp, ": ",
               what, ": q_blocks/k_blocks must be in 1..2^24");
  EK_CHECK_ARG(j.contains("heads") && j["heads"].is_array() && !j["heads"].empty(), kOp, ": ", what,
               ": field 'heads' must be a non-empty array");
  l.heads = static_cast<int64_t>(j["heads"].size());
  l.partial.assign(static_cast<size_t>(l.heads * l.q_blocks), {});
  l.full.assign(static_cast<size_t>(l.heads * l.q_blocks), {});
  read_rows(j["heads"], "heads", l, false, what);
  if (j.contains("full")) read_rows(j["full"], "full", l, true, what);
  for (int64_t row = 0; row < l.heads * l.q_blocks; ++row) {
    std::vector<int32_t> all = l.partial[row];
    all.insert(all.end(), l.full[row].begin(), l.full[row].end());
    std::sort(all.begin(), all.end());
    EK_CHECK_ARG(std::adjacent_find(all.begin(), all.end()) == all.end(), kOp, ": ", what, ": head ",
                 row / l.q_blocks, " query block ", row % l.q_blocks, " lists a key block twice");
    std::sort(l.partial[row].begin(), l.partial[row].end());
    std::sort(l.full[row].begin(), l.full[row].end());
  }
  return l;
}

BlockLayout load_block_layout(const std::string& path) {
  std::ifstream f(path);
  EK_CHECK_ARG(f.good(), kOp, ": cannot read layout file '", path, "'");
  std::stringstream ss;
  ss << f.rdbuf();
  return parse_block_layout(ss.str(), cat("layout file '", path, "'"));
}

// ---------------------------------------------------------------- enumeration

void allowed_key_ranges(const Args& a, int64_t layout_row, int64_t i0, int64_t i1, std::vector<KeyRange>& out) {
  out.clear();
  KeyRange u[2];
  const int nu = a.pattern.union_keys(a.q_offset + i0, a.q_offset + i1 - 1, a.tk, u);
  if (!a.has_layout) {
    out.assign(u, u + nu);
    return;
  }
  // Listed blocks of the row, sorted, intersected with the pattern's union.
  thread_local std::vector<int32_t> blocks;
  blocks.clear();
  for (const CsrView* csr : {&a.partial, &a.full}) {
    if (!csr->present()) continue;
    const int32_t n = csr->count(layout_row);
    const int32_t* idx = csr->row(layout_row);
    blocks.insert(blocks.end(), idx, idx + n);
  }
  std::sort(blocks.begin(), blocks.end());
  for (int32_t kb : blocks) {
    const int64_t k0 = kb * a.block_k, k1 = std::min(a.tk, k0 + a.block_k);
    for (int i = 0; i < nu; ++i) {
      const int64_t lo = std::max(k0, u[i].lo), hi = std::min(k1, u[i].hi);
      if (lo >= hi) continue;
      if (!out.empty() && out.back().hi >= lo)
        out.back().hi = std::max(out.back().hi, hi);
      else
        out.push_back({lo, hi});
    }
  }
}

SparsityStats sparsity_stats(const Args& a) {
  SparsityStats st;
  std::vector<KeyRange> ranges;
  // Query heads served by one layout head.
  const int64_t nl = a.has_layout ? a.layout_heads : 1;
  const int64_t heads_per_layout = a.hq / nl;
  const int64_t q_blocks = a.has_layout ? a.q_blocks : 1;
  const int64_t block_q = a.has_layout ? a.block_q : a.tq;
  double pairs = 0;
  std::vector<double> keys_per_layout(static_cast<size_t>(nl), 0.0);
  for (int64_t lh = 0; lh < nl; ++lh) {
    std::vector<KeyRange> keys;
    for (int64_t qb = 0; qb < q_blocks; ++qb) {
      const int64_t row = lh * q_blocks + qb;
      const int64_t i0 = qb * block_q, i1 = std::min(a.tq, i0 + block_q);
      for (int64_t i = i0; i < i1; ++i) {
        allowed_key_ranges(a, row, i, i + 1, ranges);
        for (const KeyRange& r : ranges) pairs += static_cast<double>(r.size()) * heads_per_layout;
      }
      allowed_key_ranges(a, row, i0, i1, ranges);
      keys.insert(keys.end(), ranges.begin(), ranges.end());
    }
    std::sort(keys.begin(), keys.end(), [](const KeyRange& x, const KeyRange& y) { return x.lo < y.lo; });
    int64_t covered = 0, end = std::numeric_limits<int64_t>::min();
    for (const KeyRange& r : keys) {
      const int64_t lo = std::max(r.lo, end);
      if (r.hi > lo) covered += r.hi - lo;
      end = std::max(end, r.hi);
    }
    keys_per_layout[static_cast<size_t>(lh)] = static_cast<double>(covered);
  }
  st.allowed_pairs = pairs * a.batch;
  // Keys read: per KV head, the keys of its layout head (Hl = 1 or Hkv); with
  // per-query-head layouts (Hl = Hq) each head's keys are read separately.
  double keys = 0;
  if (nl == 1) {
    keys = keys_per_layout[0] * a.hkv;
  } else {
    for (double k : keys_per_layout) keys += k;
  }
  st.keys_read = keys * a.batch;
  return st;
}

}  // namespace sparse_attention
}  // namespace ek
