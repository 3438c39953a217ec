// Contract, reference and case list of sparse_attention.
#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/sparse_attention/sparse_attention.h"

namespace ek {
namespace sparse_attention {
namespace {

constexpr int64_t kMaxElements = (int64_t(1) << 31) - 1;
constexpr int64_t kMaxHeadDim = 1024;
constexpr int64_t kMaxPosition = int64_t(1) << 30;

// ---------------------------------------------------------------- validation

CsrView parse_csr(const OpCall& call, const char* counts_name, const char* indices_name, int64_t& heads,
                  int64_t q_blocks) {
  const TensorRef* counts = call.find(counts_name);
  const TensorRef* indices = call.find(indices_name);
  if (!counts && !indices) return {};
  EK_CHECK_ARG(counts && indices, kOp, ": ", counts ? indices_name : counts_name, " is missing (", counts_name,
               " and ", indices_name, " come together)");
  check_rank(kOp, counts_name, *counts, 2);
  check_rank(kOp, indices_name, *indices, 3);
  check_dtype(kOp, counts_name, *counts, {DType::i32});
  check_dtype(kOp, indices_name, *indices, {DType::i32});
  if (heads == 0) heads = counts->shape[0];
  check_dim(kOp, counts_name, *counts, 0, heads, "layout heads Hl");
  check_dim(kOp, counts_name, *counts, 1, q_blocks, "nQb");
  check_dim(kOp, indices_name, *indices, 0, heads, "layout heads Hl");
  check_dim(kOp, indices_name, *indices, 1, q_blocks, "nQb");
  CsrView v;
  v.counts = counts->as<int32_t>();
  v.indices = indices->as<int32_t>();
  v.max_blocks = indices->shape[2];
  return v;
}

void validate_layout(Args& a) {
  std::vector<int64_t> seen(static_cast<size_t>(a.k_blocks), -1);
  for (int64_t row = 0; row < a.layout_heads * a.q_blocks; ++row) {
    const int64_t h = row / a.q_blocks, qb = row % a.q_blocks;
    const int64_t i0 = qb * a.block_q, i1 = std::min(a.tq, i0 + a.block_q);
    for (int list = 0; list < 2; ++list) {
      const CsrView& csr = list == 0 ? a.partial : a.full;
      if (!csr.present()) continue;
      const char* cn = list == 0 ? "block_counts" : "full_counts";
      const char* in = list == 0 ? "block_indices" : "full_indices";
      const int32_t n = csr.count(row);
      EK_CHECK_ARG(n >= 0 && n <= csr.max_blocks, kOp, ": ", cn, "[", h, ", ", qb, "]=", n, " is not in [0, ",
                   csr.max_blocks, "] (the last dim of ", in, ")");
      const int32_t* idx = csr.row(row);
      for (int32_t e = 0; e < n; ++e) {
        const int64_t kb = idx[e];
        EK_CHECK_ARG(kb >= 0 && kb < a.k_blocks, kOp, ": ", in, "[", h, ", ", qb, ", ", e, "]=", kb,
                     " is out of range [0, nKb=", a.k_blocks, ")");
        EK_CHECK_ARG(seen[static_cast<size_t>(kb)] != row, kOp, ": key block ", kb, " is listed twice for layout head ",
                     h, " query block ", qb, " (", in, "[", h, ", ", qb, ", ", e, "])");
        seen[static_cast<size_t>(kb)] = row;
        if (list == 1) {
          const int64_t k0 = kb * a.block_k, k1 = std::min(a.tk, k0 + a.block_k);
          EK_CHECK_ARG(a.pattern.all_allowed(a.q_offset + i0, a.q_offset + i1 - 1, k0, k1), kOp, ": ", in, "[", h,
                       ", ", qb, ", ", e, "]=", kb, " is not fully allowed by the causal/window/sinks pattern (queries ",
                       i0, "..", i1 - 1, " at positions ", a.q_offset + i0, "..", a.q_offset + i1 - 1, ", keys ", k0,
                       "..", k1 - 1, "); list it in block_indices instead");
        }
      }
    }
  }
}

}  // namespace

Args Args::parse(const OpCall& call) {
  const TensorRef& q = call.get("Q");
  const TensorRef& k = call.get("K");
  const TensorRef& v = call.get("V");
  Args a;
  check_rank(kOp, "Q", q, 4);
  check_rank(kOp, "K", k, 4);
  check_rank(kOp, "V", v, 4);
  check_dtype(kOp, "Q", q, {DType::f32, DType::f16});
  check_dtype(kOp, "K", k, {DType::f32, DType::f16});
  EK_CHECK_ARG(v.dtype == k.dtype, kOp, ": V has dtype ", dtype_name(v.dtype), ", expected K's dtype ",
               dtype_name(k.dtype));
  a.q_dtype = q.dtype;
  a.kv_dtype = k.dtype;
  a.batch = q.shape[0];
  a.tq = q.shape[1];
  a.hq = q.shape[2];
  a.dk = q.shape[3];
  a.tk = k.shape[1];
  a.hkv = k.shape[2];
  a.dv = v.shape[3];
  EK_CHECK_ARG(a.batch >= 1, kOp, ": Q batch B=", a.batch, ", expected >= 1");
  EK_CHECK_ARG(a.tq >= 1, kOp, ": Q tokens Tq=", a.tq, ", expected >= 1");
  EK_CHECK_ARG(a.hq >= 1, kOp, ": Q heads Hq=", a.hq, ", expected >= 1");
  EK_CHECK_ARG(a.tk >= 1, kOp, ": K tokens Tk=", a.tk, ", expected >= 1");
  EK_CHECK_ARG(a.hkv >= 1, kOp, ": K heads Hkv=", a.hkv, ", expected >= 1");
  EK_CHECK_ARG(a.dk >= 1 && a.dk <= kMaxHeadDim, kOp, ": head dim Dk=", a.dk, " is not in 1..", kMaxHeadDim);
  EK_CHECK_ARG(a.dv >= 1 && a.dv <= kMaxHeadDim, kOp, ": head dim Dv=", a.dv, " is not in 1..", kMaxHeadDim);
  check_dim(kOp, "K", k, 0, a.batch, "B");
  check_dim(kOp, "V", v, 0, a.batch, "B");
  check_dim(kOp, "V", v, 1, a.tk, "Tk");
  check_dim(kOp, "V", v, 2, a.hkv, "Hkv");
  check_dim(kOp, "K", k, 3, a.dk, "Dk");
  EK_CHECK_ARG(a.hq % a.hkv == 0, kOp, ": Hq=", a.hq, " is not a multiple of Hkv=", a.hkv);
  for (const auto& t : {std::make_pair("Q", &q), std::make_pair("K", &k), std::make_pair("V", &v)})
    EK_CHECK_ARG(shape_numel(t.second->shape, cat(kOp, ": ", t.first)) <= kMaxElements, kOp, ": ", t.first, " has ",
                 shape_numel(t.second->shape, t.first), " elements, more than 2^31-1");
  EK_CHECK_ARG(shape_numel({a.batch, a.tq, a.hq, a.dv}, cat(kOp, ": O")) <= kMaxElements, kOp,
               ": O would have more than 2^31-1 elements");
  EK_CHECK_ARG(a.tq <= kMaxPosition && a.tk <= kMaxPosition, kOp, ": Tq=", a.tq, " / Tk=", a.tk, " exceed 2^30");

  const Params& p = call.params;
  a.scale = p.get_float(kOp, "scale", 1.0 / std::sqrt(static_cast<double>(a.dk)));
  EK_CHECK_ARG(std::isfinite(a.scale), kOp, ": scale=", a.scale, " must be finite");
  a.softcap = p.get_float(kOp, "softcap", 0.0);
  EK_CHECK_ARG(std::isfinite(a.softcap) && a.softcap >= 0, kOp, ": softcap=", a.softcap,
               " must be finite and >= 0 (0 = off)");
  a.q_offset = p.get_int(kOp, "q_offset", a.tk - a.tq);
  EK_CHECK_ARG(a.q_offset >= -kMaxPosition && a.q_offset <= kMaxPosition, kOp, ": q_offset=", a.q_offset,
               " is not in [-2^30, 2^30]");
  a.pattern.causal = p.get_bool(kOp, "causal", false);
  a.pattern.window = p.get_int(kOp, "window", 0);
  a.pattern.sinks = p.get_int(kOp, "sinks", 0);
  EK_CHECK_ARG(a.pattern.window >= 0 && a.pattern.window <= std::numeric_limits<int32_t>::max(), kOp, ": window=",
               a.pattern.window, " is not in [0, 2^31-1] (0 = no window)");
  EK_CHECK_ARG(a.pattern.sinks >= 0 && a.pattern.sinks <= std::numeric_limits<int32_t>::max(), kOp, ": sinks=",
               a.pattern.sinks, " is not in [0, 2^31-1]");

  if (const TensorRef* l = call.find("L")) (void)l, a.want_lse = true;

  const bool any_layout = call.find("block_counts") || call.find("block_indices") || call.find("full_counts") ||
                          call.find("full_indices");
  if (!any_layout) {
    EK_CHECK_ARG(!p.has("block_q") && !p.has("block_k"), kOp,
                 ": params block_q/block_k are set but no block layout (block_counts/block_indices or "
                 "full_counts/full_indices) is given");
    return a;
  }
  a.has_layout = true;
  EK_CHECK_ARG(p.has("block_q") && p.has("block_k"), kOp,
               ": a block layout needs params block_q and block_k (the layout's block sizes)");
  a.block_q = p.get_int(kOp, "block_q", 0);
  a.block_k = p.get_int(kOp, "block_k", 0);
  EK_CHECK_ARG(a.block_q >= 1 && a.block_q <= a.tq + kMaxPosition, kOp, ": block_q=", a.block_q, " must be >= 1");
  EK_CHECK_ARG(a.block_k >= 1 && a.block_k <= a.tk + kMaxPosition, kOp, ": block_k=", a.block_k, " must be >= 1");
  a.q_blocks = (a.tq + a.block_q - 1) / a.block_q;
  a.k_blocks = (a.tk + a.block_k - 1) / a.block_k;
  int64_t heads = 0;
  a.partial = parse_csr(call, "block_counts", "block_indices", heads, a.q_blocks);
  a.full = parse_csr(call, "full_counts", "full_indices", heads, a.q_blocks);
  EK_CHECK_ARG(heads == 1 || heads == a.hkv || heads == a.hq, kOp, ": layout heads Hl=", heads,
               " must be 1, Hkv=", a.hkv, " or Hq=", a.hq);
  a.layout_heads = heads;
  validate_layout(a);
  return a;
}

namespace {

// ---------------------------------------------------------------- reference

// Double-precision oracle that visits only allowed pairs, one (b, KV head)
// at a time with that head's K/V rows converted to double once.
void reference(const OpCall& call) {
  const Args a = Args::parse(call);
  const TensorRef& q = call.get("Q");
  const TensorRef& k = call.get("K");
  const TensorRef& v = call.get("V");
  float* o = call.get("O").as<float>();
  float* lse = a.want_lse ? call.get("L").as<float>() : nullptr;
  const int64_t G = a.group();
  std::vector<double> kd(static_cast<size_t>(a.tk * a.dk)), vd(static_cast<size_t>(a.tk * a.dv));
  std::vector<double> qrow(static_cast<size_t>(a.dk)), scores, acc(static_cast<size_t>(a.dv));
  std::vector<int64_t> keys;
  std::vector<KeyRange> ranges;
  for (int64_t b = 0; b < a.batch; ++b) {
    for (int64_t kvh = 0; kvh < a.hkv; ++kvh) {
      for (int64_t t = 0; t < a.tk; ++t) {
        for (int64_t d = 0; d < a.dk; ++d)
          kd[static_cast<size_t>(t * a.dk + d)] = load_as_double(k, ((b * a.tk + t) * a.hkv + kvh) * a.dk + d);
        for (int64_t d = 0; d < a.dv; ++d)
          vd[static_cast<size_t>(t * a.dv + d)] = load_as_double(v, ((b * a.tk + t) * a.hkv + kvh) * a.dv + d);
      }
      for (int64_t h = kvh * G; h < (kvh + 1) * G; ++h) {
        for (int64_t i = 0; i < a.tq; ++i) {
          const int64_t row = a.has_layout ? a.layout_head(h) * a.q_blocks + i / a.block_q : 0;
          allowed_key_ranges(a, row, i, i + 1, ranges);
          for (int64_t d = 0; d < a.dk; ++d)
            qrow[static_cast<size_t>(d)] = load_as_double(q, ((b * a.tq + i) * a.hq + h) * a.dk + d);
          scores.clear();
          keys.clear();
          double m = -INFINITY;
          for (const KeyRange& r : ranges) {
            for (int64_t j = r.lo; j < r.hi; ++j) {
              const double* kr = &kd[static_cast<size_t>(j * a.dk)];
              double s = 0;
              for (int64_t d = 0; d < a.dk; ++d) s += qrow[static_cast<size_t>(d)] * kr[d];
              s *= a.scale;
              if (a.softcap > 0) s = a.softcap * std::tanh(s / a.softcap);
              scores.push_back(s);
              keys.push_back(j);
              m = std::max(m, s);
            }
          }
          std::fill(acc.begin(), acc.end(), 0.0);
          double den = 0;
          const double m_safe = std::isinf(m) && m < 0 ? 0.0 : m;
          for (size_t e = 0; e < scores.size(); ++e) {
            const double p = std::exp(scores[e] - m_safe);
            den += p;
            const double* vr = &vd[static_cast<size_t>(keys[e] * a.dv)];
            for (int64_t d = 0; d < a.dv; ++d) acc[static_cast<size_t>(d)] += p * vr[d];
          }
          float* orow = o + ((b * a.tq + i) * a.hq + h) * a.dv;
          for (int64_t d = 0; d < a.dv; ++d)
            orow[d] = scores.empty() ? 0.0f : static_cast<float>(acc[static_cast<size_t>(d)] / den);
          if (lse) lse[(b * a.hq + h) * a.tq + i] = scores.empty() ? -INFINITY : static_cast<float>(m_safe + std::log(den));
        }
      }
    }
  }
}

Cost cost(const OpCall& call) {
  const Args a = Args::parse(call);
  const SparsityStats st = sparsity_stats(a);
  Cost c;
  c.flops = st.allowed_pairs * 2.0 * static_cast<double>(a.dk + a.dv);
  const double qo = static_cast<double>(a.batch * a.tq * a.hq);
  c.bytes = qo * (a.dk * dtype_size(a.q_dtype) + a.dv * 4.0) + (a.want_lse ? qo * 4.0 : 0.0) +
            st.keys_read * static_cast<double>(a.dk + a.dv) * dtype_size(a.kv_dtype);
  return c;
}

// ---------------------------------------------------------------- cases

// Layout kinds a case can ask for (dims "layout").
enum LayoutKind : int64_t {
  kNoLayout = 0,
  kWindowLayout = 1,   // sliding_window_layout of the case's own pattern
  kBigBird = 2,        // bigbird_layout(local, global, random, seed)
  kRandomLayout = 3,   // random blocks with some empty rows
};

struct CaseSpec {
  std::string name;
  int64_t B = 1, Tq = 1, Tk = 1, Hq = 1, Hkv = 1, Dk = 64, Dv = 64;
  bool q16 = false, kv16 = false, lse = false;
  bool causal = false;
  int64_t window = 0, sinks = 0;
  double softcap = 0, scale = 0;  // 0 = default
  bool has_q_offset = false;
  int64_t q_offset = 0;
  int64_t layout = kNoLayout, layout_heads = 1, block_q = 64, block_k = 64;
  int64_t bb_local = 3, bb_global = 2, bb_random = 3;
  std::set<std::string> tags;
};

OpCase make_case(const CaseSpec& s) {
  OpCase c;
  c.op = kOp;
  c.name = s.name;
  c.dims = {{"B", s.B},           {"Tq", s.Tq},         {"Tk", s.Tk},           {"Hq", s.Hq},
            {"Hkv", s.Hkv},       {"Dk", s.Dk},         {"Dv", s.Dv},           {"q_f16", s.q16},
            {"kv_f16", s.kv16},   {"lse", s.lse},       {"layout", s.layout},   {"layout_heads", s.layout_heads},
            {"block_q", s.block_q}, {"block_k", s.block_k}, {"bb_local", s.bb_local}, {"bb_global", s.bb_global},
            {"bb_random", s.bb_random}};
  if (s.causal) c.params.set("causal", true);
  if (s.window) c.params.set("window", s.window);
  if (s.sinks) c.params.set("sinks", s.sinks);
  if (s.softcap > 0) c.params.set("softcap", s.softcap);
  if (s.scale != 0) c.params.set("scale", s.scale);
  if (s.has_q_offset) c.params.set("q_offset", s.q_offset);
  c.tags = s.tags;
  return c;
}

std::vector<OpCase> cases() {
  std::vector<CaseSpec> v;
  auto add = [&](CaseSpec s) { v.push_back(std::move(s)); };

  // ---- Realistic: shapes.json attention layers, scaled down in T (and the
  // window with it) so the allowed-pairs reference stays cheap; heads, GQA
  // ratio, head dims and pattern are the models' own.
  {
    CaseSpec s;
    s.name = "mistral-7b swa prefill (scaled: T=256 W=64) f16 KV";
    s.Tq = s.Tk = 256; s.Hq = 32; s.Hkv = 8; s.Dk = s.Dv = 128; s.kv16 = true; s.causal = true; s.window = 64;
    s.tags = {"realistic"};
    add(s);
    s.name = "mistral-7b swa decode (Tk=8192 W=4096) f16 KV";
    s.Tq = 1; s.Tk = 8192; s.window = 4096; s.tags = {"realistic", "smoke"};
    add(s);
  }
  {
    CaseSpec s;
    s.name = "hybrid-edge-1b prefill (scaled: T=384 W=96 S=4) f16 KV";
    s.Tq = s.Tk = 384; s.Hq = 16; s.Hkv = 4; s.Dk = s.Dv = 128; s.kv16 = true; s.causal = true; s.window = 96;
    s.sinks = 4; s.lse = true; s.tags = {"realistic"};
    add(s);
    s.name = "hybrid-edge-1b decode (scaled: Tk=16384 W=2048 S=4) f16 KV";
    s.Tq = 1; s.Tk = 16384; s.window = 2048; s.tags = {"realistic"};
    add(s);
    s.name = "hybrid-edge-1b verify Tq=8 (Tk=3000 W=2048 S=4) f32";
    s.Tq = 8; s.Tk = 3000; s.kv16 = false; s.tags = {"realistic"};
    add(s);
  }
  {
    CaseSpec s;
    s.name = "llama-3.2-1b bigbird (scaled: T=512, 32x32 blocks, local 3 + global 1 + random 2)";
    s.Tq = s.Tk = 512; s.Hq = 32; s.Hkv = 8; s.Dk = s.Dv = 64; s.layout = kBigBird; s.block_q = s.block_k = 32;
    s.bb_local = 3; s.bb_global = 1; s.bb_random = 2; s.layout_heads = 8; s.lse = true; s.tags = {"realistic"};
    add(s);
  }
  {
    CaseSpec s;
    s.name = "llama-3.2-3b dense causal (scaled: T=192) GQA 3";
    s.Tq = s.Tk = 192; s.Hq = 24; s.Hkv = 8; s.Dk = s.Dv = 128; s.causal = true; s.tags = {"realistic"};
    add(s);
  }

  // ---- Edge: every pattern combination, odd sizes (tiles never divide them).
  struct Pat { const char* name; bool causal; int64_t window, sinks; };
  const Pat pats[] = {{"dense", false, 0, 0},          {"causal", true, 0, 0},
                      {"window 17", false, 17, 0},     {"window 17 + sinks 3", false, 17, 3},
                      {"causal + window 17", true, 17, 0}, {"causal + window 17 + sinks 3", true, 17, 3},
                      {"sinks only (no-op)", false, 0, 5}, {"causal + sinks only", true, 0, 5}};
  int idx = 0;
  for (const Pat& p : pats) {
    CaseSpec s;
    s.name = cat("edge: ", p.name, " B=2 T=77 GQA 2 D=48");
    s.B = 2; s.Tq = s.Tk = 77; s.Hq = 4; s.Hkv = 2; s.Dk = s.Dv = 48;
    s.causal = p.causal; s.window = p.window; s.sinks = p.sinks; s.lse = (idx % 2) == 0;
    s.kv16 = (idx % 3) == 1;
    s.tags = {"edge"};
    if (idx == 5) s.tags.insert("smoke");
    add(s);
    ++idx;
  }
  {
    CaseSpec s;
    s.tags = {"edge"};
    s.Hq = 4; s.Hkv = 1; s.Dk = s.Dv = 64;
    s.name = "edge: Tq=37 < Tk=150 causal (default q_offset = Tk - Tq)";
    s.Tq = 37; s.Tk = 150; s.causal = true; s.lse = true;
    add(s);
    s.name = "edge: q_offset=20 causal window 30 (Tq=50 Tk=90)";
    s.Tq = 50; s.Tk = 90; s.has_q_offset = true; s.q_offset = 20; s.window = 30;
    add(s);
    s.name = "edge: negative q_offset=-10 causal: early rows empty (O=0, L=-inf)";
    s.Tq = 40; s.Tk = 40; s.q_offset = -10; s.window = 0;
    add(s);
    s.name = "edge: q_offset past the cache (Tq=8 at 200.., Tk=100) window 120";
    s.Tq = 8; s.Tk = 100; s.q_offset = 200; s.causal = true; s.window = 120; s.sinks = 2;
    add(s);
  }
  // GQA ratios 1, 4, 8 and head dims 64 / 80 / 128 / 256, Dk != Dv.
  for (int64_t g : {1, 4, 8}) {
    CaseSpec s;
    s.name = cat("edge: GQA ", g, " causal T=100 D=64 f16 Q");
    s.Tq = s.Tk = 100; s.Hkv = 2; s.Hq = 2 * g; s.Dk = s.Dv = 64; s.causal = true; s.q16 = true;
    s.tags = {"edge"};
    add(s);
  }
  for (auto dd : std::vector<std::pair<int64_t, int64_t>>{{64, 64}, {80, 80}, {128, 128}, {256, 256},
                                                          {128, 64}, {64, 128}, {80, 48}, {40, 24}, {7, 5}}) {
    CaseSpec s;
    s.name = cat("edge: Dk=", dd.first, " Dv=", dd.second, " causal window 48 T=90 GQA 2");
    s.Tq = s.Tk = 90; s.Hq = 4; s.Hkv = 2; s.Dk = dd.first; s.Dv = dd.second; s.causal = true; s.window = 48;
    s.kv16 = dd.first % 2 == 0; s.lse = true; s.tags = {"edge"};
    add(s);
  }
  {
    CaseSpec s;
    s.tags = {"edge"};
    s.name = "edge: softcap 30 + custom scale 0.3, causal, f16 KV";
    s.Tq = s.Tk = 70; s.Hq = 4; s.Hkv = 2; s.Dk = s.Dv = 64; s.causal = true; s.softcap = 30; s.scale = 0.3;
    s.kv16 = true; s.lse = true;
    add(s);
    s.name = "edge: softcap 5 with large scores, window 20 + sinks 2";
    s.softcap = 5; s.scale = 1.0; s.window = 20; s.sinks = 2;
    add(s);
  }
  // Block layouts: the window as a layout, BigBird, random with empty rows,
  // per-head and per-KV-head layouts, block sizes that divide nothing.
  {
    CaseSpec s;
    s.tags = {"edge"};
    s.Tq = s.Tk = 130; s.Hq = 8; s.Hkv = 2; s.Dk = s.Dv = 64;
    s.name = "edge: window 40 + sinks 4 given as a layout (block 16x24) + the same pattern";
    s.causal = true; s.window = 40; s.sinks = 4; s.layout = kWindowLayout; s.block_q = 16; s.block_k = 24;
    s.lse = true;
    add(s);
    s.name = "edge: bigbird 20x20 blocks, layout per KV head, no pattern";
    s.causal = false; s.window = 0; s.sinks = 0; s.layout = kBigBird; s.block_q = s.block_k = 20;
    s.layout_heads = 2; s.bb_local = 3; s.bb_global = 1; s.bb_random = 2;
    add(s);
    s.name = "edge: bigbird + causal, per query head layout (Hl=Hq), f16 KV";
    s.causal = true; s.layout_heads = 8; s.kv16 = true;
    add(s);
    s.name = "edge: random layout with empty rows (O=0, L=-inf), block 32x16";
    s.causal = false; s.layout = kRandomLayout; s.block_q = 32; s.block_k = 16; s.layout_heads = 1; s.kv16 = false;
    add(s);
    s.name = "edge: random layout per head + causal + window 50, Tq=60 < Tk=130";
    s.Tq = 60; s.causal = true; s.window = 50; s.layout_heads = 8; s.block_q = 8; s.block_k = 40;
    add(s);
  }
  // Decode and verify: Tq = 1..8 against long caches, splits across workers.
  for (int64_t tq : {1, 3, 8}) {
    CaseSpec s;
    s.name = cat("edge: decode Tq=", tq, " Tk=5000 GQA 4 causal", tq == 3 ? " window 1000 sinks 4" : "");
    s.Tq = tq; s.Tk = 5000; s.Hq = 8; s.Hkv = 2; s.Dk = s.Dv = 64; s.causal = true; s.kv16 = tq != 3; s.lse = true;
    if (tq == 3) { s.window = 1000; s.sinks = 4; }
    s.tags = {"edge"};
    add(s);
  }
  {
    // Head dim 128 decode (the tiles' constant-dim specialisation) with a
    // cache that is not a whole number of key chunks; rows 4 and 8.
    CaseSpec s;
    s.tags = {"edge"};
    s.name = "edge: decode Tq=1 Tk=777 GQA 4 D=128 f16 causal";
    s.Tk = 777; s.Hq = 8; s.Hkv = 2; s.Dk = s.Dv = 128; s.causal = true; s.kv16 = true;
    add(s);
    s.name = "edge: decode Tq=2 Tk=1300 GQA 8 D=128 f32 softcap 30";
    s.Tq = 2; s.Tk = 1300; s.Hq = 16; s.Hkv = 2; s.kv16 = false; s.softcap = 30; s.lse = true;
    add(s);
  }
  {
    CaseSpec s;
    s.tags = {"edge"};
    s.name = "edge: Tq=1 Tk=1 Hq=Hkv=1 D=1";
    s.Dk = s.Dv = 1; s.lse = true;
    add(s);
    s.name = "edge: B=3 Tq=5 Tk=9 GQA 5 (Hq=10 Hkv=2) D=16 non-causal";
    s.B = 3; s.Tq = 5; s.Tk = 9; s.Hq = 10; s.Hkv = 2; s.Dk = s.Dv = 16;
    add(s);
    s.name = "edge: GQA 16 (Hq=32 Hkv=2) Tq=9 Tk=300 causal window 100";
    s.B = 1; s.Tq = 9; s.Tk = 300; s.Hq = 32; s.Hkv = 2; s.Dk = s.Dv = 32; s.causal = true; s.window = 100;
    add(s);
  }

  // ---- Benchmarks only (full shapes.json sizes; too big for a dense-cost
  // reference in CI, so tagged "bench" and nothing else).
  {
    CaseSpec s;
    s.tags = {"bench"};
    s.Dk = s.Dv = 128; s.kv16 = true; s.causal = true;
    s.Hq = 32; s.Hkv = 8;
    s.name = "mistral-7b swa prefill T=8192 W=4096";
    s.Tq = s.Tk = 8192; s.window = 4096;
    add(s);
    s.name = "mistral-7b swa decode Tk=32768 W=4096";
    s.Tq = 1; s.Tk = 32768;
    add(s);
    s.Hq = 16; s.Hkv = 4;
    s.name = "hybrid-edge-1b prefill T=8192 W=2048 S=4";
    s.Tq = s.Tk = 8192; s.window = 2048; s.sinks = 4;
    add(s);
    s.name = "hybrid-edge-1b decode Tk=65536 W=2048 S=4";
    s.Tq = 1; s.Tk = 65536;
    add(s);
    s.name = "hybrid-edge-1b heads dense causal prefill T=4096";
    s.Tq = s.Tk = 4096; s.window = 0; s.sinks = 0;
    add(s);
    s.name = "hybrid-edge-1b heads dense causal prefill T=8192";
    s.Tq = s.Tk = 8192;
    add(s);
    s.name = "hybrid-edge-1b heads sliding window 1024 + 4 sinks prefill T=8192";
    s.window = 1024; s.sinks = 4;
    add(s);
    s.name = "hybrid-edge-1b heads decode Tk=32768 full cache";
    s.Tq = 1; s.Tk = 32768; s.window = 0; s.sinks = 0;
    add(s);
    // The same decode with the cache in the last-level cache (8 MiB): the
    // kernel's compute ceiling, without DRAM.
    s.name = "hybrid-edge-1b heads decode Tk=4096 (KV in LLC)";
    s.Tk = 4096;
    add(s);
    // ... and in L2 (1 MiB, half per core): the compute ceiling of the tile.
    s.name = "hybrid-edge-1b heads decode Tk=1024 (KV in L2)";
    s.Tk = 1024;
    add(s);
    s.Hq = 24; s.Hkv = 8;
    s.name = "llama-3.2-3b dense causal prefill T=2048";
    s.Tq = s.Tk = 2048;
    add(s);
    s.Hq = 32; s.Hkv = 8; s.Dk = s.Dv = 64; s.causal = false;
    s.name = "llama-3.2-1b bigbird T=4096 64x64 (local 3 + global 2 + random 3)";
    s.Tq = s.Tk = 4096; s.layout = kBigBird; s.block_q = s.block_k = 64; s.layout_heads = 8;
    add(s);
  }
  std::vector<OpCase> out;
  for (const CaseSpec& s : v) out.push_back(make_case(s));
  return out;
}

void make_inputs(const OpCase& c, std::mt19937_64& rng, OwnedCall& oc) {
  auto dim = [&](const char* k) { return c.dims.at(k); };
  const int64_t B = dim("B"), Tq = dim("Tq"), Tk = dim("Tk"), Hq = dim("Hq"), Hkv = dim("Hkv");
  const int64_t Dk = dim("Dk"), Dv = dim("Dv");
  const DType qt = dim("q_f16") ? DType::f16 : DType::f32;
  const DType kvt = dim("kv_f16") ? DType::f16 : DType::f32;
  oc.allocate("Q", qt, {B, Tq, Hq, Dk});
  oc.allocate("K", kvt, {B, Tk, Hkv, Dk});
  oc.allocate("V", kvt, {B, Tk, Hkv, Dv});
  // Scores of order one after scaling: q, k ~ U(-1, 1) * D^{1/4}.
  const double qk_amp = std::pow(static_cast<double>(Dk), 0.25) * 1.2;
  fill_uniform(oc.storage["Q"], rng, -qk_amp, qk_amp);
  fill_uniform(oc.storage["K"], rng, -qk_amp, qk_amp);
  fill_uniform(oc.storage["V"], rng, -1.0, 1.0);
  if (dim("lse")) oc.allocate("L", DType::f32, {B, Hq, Tq});

  const int64_t kind = dim("layout");
  if (kind == kNoLayout) return;
  Pattern p;
  p.causal = c.params.get_bool(kOp, "causal", false);
  p.window = c.params.get_int(kOp, "window", 0);
  p.sinks = c.params.get_int(kOp, "sinks", 0);
  LayoutShape s;
  s.tq = Tq;
  s.tk = Tk;
  s.q_offset = c.params.get_int(kOp, "q_offset", Tk - Tq);
  s.block_q = dim("block_q");
  s.block_k = dim("block_k");
  s.heads = dim("layout_heads");
  BlockLayout layout;
  if (kind == kWindowLayout) {
    layout = sliding_window_layout(s, p);
  } else if (kind == kBigBird) {
    BigBirdOptions o;
    o.local_blocks = dim("bb_local");
    o.global_blocks = dim("bb_global");
    o.random_blocks = dim("bb_random");
    o.seed = rng();
    layout = bigbird_layout(s, o, p);
  } else {
    // Random blocks per row, every third row empty, classified against the
    // pattern so full blocks land in the full list.
    BigBirdOptions none;
    none.local_blocks = none.global_blocks = none.random_blocks = 0;
    layout = bigbird_layout(s, none, p);
    for (int64_t h = 0; h < layout.heads; ++h)
      for (int64_t qb = 0; qb < layout.q_blocks; ++qb) {
        if ((qb + h) % 3 == 0) continue;
        std::vector<int32_t> blocks;
        for (int64_t kb = 0; kb < layout.k_blocks; ++kb)
          if (rng() % 3 == 0) blocks.push_back(static_cast<int32_t>(kb));
        for (int32_t kb : blocks) {
          switch (classify_block(p, s, qb, kb)) {
            case BlockClass::empty: break;
            case BlockClass::partial: layout.partial_row(h, qb).push_back(kb); break;
            case BlockClass::full: layout.full_row(h, qb).push_back(kb); break;
          }
        }
      }
  }
  layout.add_to(oc);
  // OpCase params are copied into the call by make_call before make_inputs
  // runs; the layout's block sizes were just added to it.
}

const RegisterOp reg(OpDef{
    kOp,
    "block-sparse flash attention: O = softmax(cap(scale Q K^T) over allowed pairs) V; allowed = causal/window/"
    "sinks pattern AND optional CSR block layout; optional log-sum-exp L",
    {{"Q", true, false, "Q [B, Tq, Hq, Dk] f32|f16"},
     {"K", true, false, "K [B, Tk, Hkv, Dk] f32|f16"},
     {"V", true, false, "V [B, Tk, Hkv, Dv], dtype of K"},
     {"block_counts", false, false, "block_counts [Hl, nQb] i32 (partial key blocks per query block)"},
     {"block_indices", false, false, "block_indices [Hl, nQb, maxKb] i32"},
     {"full_counts", false, false, "full_counts [Hl, nQb] i32 (fully allowed key blocks)"},
     {"full_indices", false, false, "full_indices [Hl, nQb, maxKf] i32"},
     {"O", true, true, "O [B, Tq, Hq, Dv] f32"},
     {"L", false, true, "L [B, Hq, Tq] f32 log-sum-exp (optional)"}},
    {"scale", "softcap", "q_offset", "causal", "window", "sinks", "block_q", "block_k"},
    [](const OpCall& call) {
      const Args a = Args::parse(call);
      std::map<std::string, TensorDesc> out{{"O", {DType::f32, {a.batch, a.tq, a.hq, a.dv}}}};
      if (a.want_lse) out["L"] = {DType::f32, {a.batch, a.hq, a.tq}};
      return out;
    },
    reference,
    cost,
    cases,
    make_inputs,
});

}  // namespace
}  // namespace sparse_attention
}  // namespace ek
