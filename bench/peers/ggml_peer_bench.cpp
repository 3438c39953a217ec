// The peer baseline: ggml's CPU kernels (llama.cpp's) on the shapes of
// edgekernels' scan, 2-bit matmul and attention benchmarks, timed the same way (median
// wall time of repeated calls, states rotated beyond the last-level cache
// where ek_bench rotates them). Built and run by tools/peer_bench.sh, which
// fetches ggml's sources from PyPI (llama-cpp-python's sdist); not part of
// the main build or CI.
//
// Each case is named by edgekernels' benchmark label of the same work. What
// ggml runs for it (its op alone, never more than edgekernels' op does):
//   selective_scan: ggml_ssm_scan with A [N, D] (softplus of dt inside; no
//     delta_bias, D skip or z gate, which edgekernels' op also applies), y
//     and the new state into one output tensor. ggml has no in-place step:
//     against edgekernels' in-place decode step it runs the scan plus the
//     copy of the new state back into the input state that llama.cpp's
//     graph adds; against the step into a separate state, the scan alone.
//   ssd_scan: ggml_ssm_scan with A [1, H] (sequential form at every T; ggml
//     has no chunked form), no D skip or z gate; decode paired as above.
//   matmul_q2: ggml_mul_mat of Q2_K or TQ2_0 weights (the same block formats
//     as edgekernels' q2_k and tq2_0) by f32 activations, which ggml
//     quantizes to Q8_K inside the op; decode_cold rotates copies of the
//     weights through 4x a 32 MiB LLC, as ek_bench does.
//   sparse_attention: ggml_flash_attn_ext, f32 Q, f16 K/V, scale 1/sqrt(Dk);
//     the causal and window cases pass the [Tk, Tq] f16 mask llama.cpp
//     builds (0 or -inf), decode passes none (every key allowed).
#include <ggml-cpu.h>
#include <ggml.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace {

// One ggml context holding the inputs and graph of one call, and the graph's
// work buffer for a thread count.
struct GraphSet {
  ggml_context* ctx = nullptr;
  ggml_cgraph* graph = nullptr;
  ggml_cplan plan{};
  std::vector<uint8_t> work;
  GraphSet() = default;
  GraphSet(const GraphSet&) = delete;
  GraphSet& operator=(const GraphSet&) = delete;
  GraphSet(GraphSet&& o) noexcept : ctx(o.ctx), graph(o.graph), plan(o.plan), work(std::move(o.work)) {
    o.ctx = nullptr;
  }
  ~GraphSet() {
    if (ctx) ggml_free(ctx);
  }
  void prepare(int threads) {
    plan = ggml_graph_plan(graph, threads, nullptr);
    work.resize(plan.work_size);
    plan.work_data = work.data();
  }
  void compute() {
    if (ggml_graph_compute(graph, &plan) != GGML_STATUS_SUCCESS) {
      std::fprintf(stderr, "ggml_graph_compute failed\n");
      std::exit(1);
    }
  }
};

ggml_context* new_context(size_t bytes) {
  ggml_init_params params{};
  // Tensor data plus object headers, alignment and the graph: a margin.
  params.mem_size = bytes + bytes / 64 + 16 * ggml_tensor_overhead() + ggml_graph_overhead() + (size_t(8) << 20);
  params.mem_buffer = nullptr;
  params.no_alloc = false;
  ggml_context* ctx = ggml_init(params);
  if (!ctx) {
    std::fprintf(stderr, "ggml_init failed for %zu bytes\n", bytes);
    std::exit(1);
  }
  return ctx;
}

void fill(ggml_tensor* t, std::mt19937& rng, float lo, float hi) {
  std::uniform_real_distribution<float> dist(lo, hi);
  const int64_t n = ggml_nelements(t);
  if (t->type == GGML_TYPE_F32) {
    auto* p = static_cast<float*>(t->data);
    for (int64_t i = 0; i < n; ++i) p[i] = dist(rng);
  } else if (t->type == GGML_TYPE_F16) {
    auto* p = static_cast<ggml_fp16_t*>(t->data);
    for (int64_t i = 0; i < n; ++i) p[i] = ggml_fp32_to_fp16(dist(rng));
  }
}

// Median seconds over `reps` calls, cycling through the sets (after one warm-up
// call of each).
double time_sets(std::vector<GraphSet>& sets, int threads, int reps) {
  for (auto& s : sets) {
    s.prepare(threads);
    s.compute();
  }
  std::vector<double> t;
  t.reserve(static_cast<size_t>(reps));
  for (int i = 0; i < reps; ++i) {
    GraphSet& s = sets[static_cast<size_t>(i) % sets.size()];
    const auto t0 = std::chrono::steady_clock::now();
    s.compute();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::nth_element(t.begin(), t.begin() + t.size() / 2, t.end());
  return t[t.size() / 2];
}

// Enough sets that their bytes exceed twice a 32 MiB last-level cache (as
// ek_bench's rotation), at least 1.
int sets_for(double set_bytes, bool rotate) {
  if (!rotate) return 1;
  return std::max(2, static_cast<int>(std::ceil(2.0 * 64.0 * 1024 * 1024 / set_bytes)));
}

// Mamba-1 (A [N, D]) or Mamba-2 (A [1, H]) scan: heads x head_dim channels.
// copy_back: the new state is copied into the input state afterwards, as
// llama.cpp's graph does to keep it in its cache (ggml_ssm_scan writes it
// into its output, never in place).
GraphSet make_scan(int64_t heads, int64_t head_dim, int64_t n, int64_t t, bool mamba2, uint32_t seed,
                   bool copy_back = false) {
  const size_t bytes = sizeof(float) * static_cast<size_t>(2 * n * head_dim * heads + 2 * head_dim * heads * t +
                                                           heads * t + (mamba2 ? heads : n * heads) + 2 * n * t + 16);
  GraphSet g;
  g.ctx = new_context(bytes);
  std::mt19937 rng(seed);
  ggml_tensor* s = ggml_new_tensor_4d(g.ctx, GGML_TYPE_F32, n, head_dim, heads, 1);
  ggml_tensor* x = ggml_new_tensor_4d(g.ctx, GGML_TYPE_F32, head_dim, heads, t, 1);
  ggml_tensor* dt = ggml_new_tensor_3d(g.ctx, GGML_TYPE_F32, heads, t, 1);
  ggml_tensor* A = ggml_new_tensor_2d(g.ctx, GGML_TYPE_F32, mamba2 ? 1 : n, heads);
  ggml_tensor* B = ggml_new_tensor_4d(g.ctx, GGML_TYPE_F32, n, 1, t, 1);
  ggml_tensor* C = ggml_new_tensor_4d(g.ctx, GGML_TYPE_F32, n, 1, t, 1);
  ggml_tensor* ids = ggml_new_tensor_1d(g.ctx, GGML_TYPE_I32, 1);
  fill(s, rng, -1, 1);
  fill(x, rng, -1, 1);
  fill(dt, rng, -4, 1);
  fill(A, rng, -4, -0.1f);
  fill(B, rng, -1, 1);
  fill(C, rng, -1, 1);
  static_cast<int32_t*>(ids->data)[0] = 0;
  ggml_tensor* out = ggml_ssm_scan(g.ctx, s, x, dt, A, B, C, ids, 1);
  g.graph = ggml_new_graph(g.ctx);
  ggml_build_forward_expand(g.graph, out);
  if (copy_back) {
    ggml_tensor* new_state = ggml_view_1d(g.ctx, out, ggml_nelements(s), ggml_nbytes(x));
    ggml_build_forward_expand(g.graph, ggml_cpy(g.ctx, new_state, ggml_view_1d(g.ctx, s, ggml_nelements(s), 0)));
  }
  return g;
}

// Flash attention, B = 1: Q [Dk, Tq, Hq] f32, K/V [D, Tk, Hkv] f16; mask
// [Tk, Tq] f16 for causal (window > 0: keys within `window` of the query,
// plus `sinks` first keys), none when !causal.
GraphSet make_attention(int64_t hq, int64_t hkv, int64_t d, int64_t tq, int64_t tk, bool causal, int64_t window,
                        int64_t sinks) {
  const size_t bytes = sizeof(float) * static_cast<size_t>(2 * d * tq * hq) +
                       sizeof(ggml_fp16_t) * static_cast<size_t>(2 * d * tk * hkv + (causal ? tk * tq : 0));
  GraphSet g;
  g.ctx = new_context(bytes);
  std::mt19937 rng(7);
  ggml_tensor* q = ggml_new_tensor_3d(g.ctx, GGML_TYPE_F32, d, tq, hq);
  ggml_tensor* k = ggml_new_tensor_3d(g.ctx, GGML_TYPE_F16, d, tk, hkv);
  ggml_tensor* v = ggml_new_tensor_3d(g.ctx, GGML_TYPE_F16, d, tk, hkv);
  fill(q, rng, -1, 1);
  fill(k, rng, -1, 1);
  fill(v, rng, -1, 1);
  ggml_tensor* mask = nullptr;
  if (causal) {
    mask = ggml_new_tensor_2d(g.ctx, GGML_TYPE_F16, tk, tq);
    auto* m = static_cast<ggml_fp16_t*>(mask->data);
    const ggml_fp16_t zero = ggml_fp32_to_fp16(0.0f), ninf = ggml_fp32_to_fp16(-INFINITY);
    for (int64_t i = 0; i < tq; ++i) {
      const int64_t qpos = tk - tq + i;
      for (int64_t j = 0; j < tk; ++j) {
        const bool allowed = j <= qpos && (window <= 0 || qpos - j < window || j < sinks);
        m[i * tk + j] = allowed ? zero : ninf;
      }
    }
  }
  ggml_tensor* out = ggml_flash_attn_ext(g.ctx, q, k, v, mask, 1.0f / std::sqrt(static_cast<float>(d)), 0.0f, 0.0f);
  g.graph = ggml_new_graph(g.ctx);
  ggml_build_forward_expand(g.graph, out);
  return g;
}

// `name` is edgekernels' benchmark label of the same case (the comparison
// in tools/peer_bench.sh joins on it); `tsv`, when open, gets "name\tseconds".
FILE* tsv = nullptr;
// y [N, T] = W [N, K] x [K, T]; W in `type`, quantized from random floats
// once and copied into `copies` contexts (distinct addresses are what the
// rotation needs).
std::vector<GraphSet> make_matmul(ggml_type type, int64_t n, int64_t k, int64_t t, int copies) {
  std::vector<float> w(static_cast<size_t>(n * k));
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> dist(-1, 1);
  for (float& v : w) v = dist(rng);
  const size_t w_bytes = ggml_row_size(type, k) * static_cast<size_t>(n);
  std::vector<uint8_t> packed(w_bytes);
  ggml_quantize_chunk(type, w.data(), packed.data(), 0, n, k, nullptr);
  std::vector<GraphSet> sets;
  for (int c = 0; c < copies; ++c) {
    GraphSet g;
    g.ctx = new_context(w_bytes + sizeof(float) * static_cast<size_t>(k * t + n * t));
    ggml_tensor* W = ggml_new_tensor_2d(g.ctx, type, k, n);
    std::memcpy(W->data, packed.data(), w_bytes);
    ggml_tensor* x = ggml_new_tensor_2d(g.ctx, GGML_TYPE_F32, k, t);
    fill(x, rng, -1, 1);
    g.graph = ggml_new_graph(g.ctx);
    ggml_build_forward_expand(g.graph, ggml_mul_mat(g.ctx, W, x));
    sets.push_back(std::move(g));
  }
  return sets;
}

void report(const std::string& name, double seconds, const std::string& metric, double value) {
  std::printf("%-80s %12.1f us  %9.2f %s\n", name.c_str(), seconds * 1e6, value, metric.c_str());
  std::fflush(stdout);
  if (tsv) std::fprintf(tsv, "%s\t%.9g\n", name.c_str(), seconds);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ggml CPU baseline on edgekernels' benchmark shapes"};
  int threads = 2;
  int reps = 50;
  std::string filter, tsv_path;
  app.add_option("--threads", threads, "Worker threads")->check(CLI::PositiveNumber);
  app.add_option("--reps", reps, "Timed calls per case (the median is reported)")->check(CLI::PositiveNumber);
  app.add_option("--filter", filter, "Run only cases whose name contains this");
  app.add_option("--tsv", tsv_path, "Also write 'case<TAB>median seconds' lines to this file");
  CLI11_PARSE(app, argc, argv);
  if (!tsv_path.empty() && !(tsv = std::fopen(tsv_path.c_str(), "w"))) {
    std::fprintf(stderr, "--tsv: cannot write %s\n", tsv_path.c_str());
    return 1;
  }

  auto want = [&](const std::string& name) { return filter.empty() || name.find(filter) != std::string::npos; };
  const double kGiga = 1e9;

  // The scans. Mamba-1 mamba-2.8b: D = 5120 channels as heads of head_dim 1,
  // N = 16; Mamba-2 mamba2-2.7b: H = 80, P = 64, N = 128, G = 1. tc = token
  // count, except 0: the decode step with llama.cpp's copy back, paired with
  // edgekernels' in-place step (what a decoder runs); tc = 1 is the step
  // alone, paired with edgekernels' step into a separate state.
  struct ScanModel {
    const char* label;
    int64_t heads, head_dim, n;
    bool mamba2;
    int decode_reps;  // x reps: a Mamba-1 step is short
  };
  for (const ScanModel& m : {ScanModel{"selective_scan mamba-2.8b D=5120 N=16", 5120, 1, 16, false, 20},
                             ScanModel{"ssd_scan mamba2-2.7b H=80 P=64 N=128", 80, 64, 128, true, 4}}) {
    for (int64_t tc : {1, 0, 512, 2048}) {
      const int64_t t = std::max<int64_t>(tc, 1);
      const std::string name = std::string(m.label) + (tc == 0   ? " decode T=1 in place (states rotated beyond LLC)"
                                                       : tc == 1 ? " decode T=1 (states rotated beyond LLC)"
                                                                 : " T=" + std::to_string(t));
      if (!want(name)) continue;
      const double updates = static_cast<double>(m.heads * m.head_dim * m.n);  // per token
      const double state_bytes = 4.0 * updates;
      // Per set: state in, state out, and Mamba-1's A (as large as a state).
      const int n_sets = sets_for(state_bytes * (m.mamba2 ? 2 : 3), t == 1);
      std::vector<GraphSet> sets;
      for (int i = 0; i < n_sets; ++i)
        sets.push_back(make_scan(m.heads, m.head_dim, m.n, t, m.mamba2, 1234 + i, tc == 0));
      const double sec = time_sets(sets, threads, t == 1 ? reps * m.decode_reps : std::max(5, reps / 5));
      if (t == 1)
        report(name, sec, "state GB/s (read + written)", 2 * state_bytes / sec / kGiga);
      else if (m.mamba2)  // edgekernels' flop count (ops.md): 4 T H P N
        report(name, sec, "GFLOP/s (4 T H P N)", 4 * updates * t / sec / kGiga);
      else
        report(name, sec, "G state-updates/s", updates * t / sec / kGiga);
    }
  }
  // 2-bit matmul, in both of ggml's 2-bit formats that edgekernels shares.
  struct MatmulShape {
    const char* name;
    int64_t n, k;
  };
  const MatmulShape mistral_up{"mistral-7b ffn up", 14336, 4096}, llama_down{"llama-3.2-1b ffn down", 2048, 8192},
      edge_in{"hybrid-edge-1b mamba2 in_proj", 10304, 2048};
  const std::vector<std::pair<std::string, MatmulShape>> matmuls = {
      {"decode_cold", mistral_up}, {"decode_cold", llama_down}, {"decode_cold", edge_in},
      {"decode_hot", mistral_up},  {"prefill", mistral_up},     {"prefill", edge_in},
  };
  for (const auto& [fmt, type] :
       {std::pair<std::string, ggml_type>{"q2_k", GGML_TYPE_Q2_K}, {"tq2_0", GGML_TYPE_TQ2_0}}) {
    for (const auto& [mode, shape] : matmuls) {
      const std::string name = "matmul_q2 " + fmt + "/" + mode + "/" + shape.name + " N=" + std::to_string(shape.n) +
                               " K=" + std::to_string(shape.k);
      if (!want(name)) continue;
      const int64_t t = mode == "prefill" ? 512 : 1;
      const double w_bytes = static_cast<double>(ggml_row_size(type, shape.k)) * shape.n;
      const int copies =
          mode == "decode_cold" ? std::max(2, static_cast<int>(std::ceil(4 * 32.0 * (1 << 20) / w_bytes))) : 1;
      std::vector<GraphSet> sets = make_matmul(type, shape.n, shape.k, t, copies);
      const double sec = time_sets(sets, threads, t == 1 ? reps * 4 : std::max(5, reps / 5));
      if (t == 1)
        report(name, sec, "weight GB/s", w_bytes / sec / kGiga);
      else
        report(name, sec, "GOP/s (2 T N K)", 2.0 * t * shape.n * shape.k / sec / kGiga);
    }
  }
  // Attention, hybrid-edge-1b heads: Hq = 16, Hkv = 4, D = 128, f16 K/V.
  struct AttCase {
    std::string name;
    int64_t tq, tk, window, sinks;
    bool causal;
  };
  const std::vector<AttCase> att = {
      {"sparse_attention hybrid-edge-1b heads dense causal prefill T=4096", 4096, 4096, 0, 0, true},
      {"sparse_attention hybrid-edge-1b heads sliding window 1024 + 4 sinks "
       "prefill T=8192",
       8192, 8192, 1024, 4, true},
      {"sparse_attention hybrid-edge-1b heads decode Tk=32768 full cache", 1, 32768, 0, 0, false},
      {"sparse_attention hybrid-edge-1b heads decode Tk=4096 (KV in LLC)", 1, 4096, 0, 0, false},
  };
  for (const AttCase& c : att) {
    if (!want(c.name)) continue;
    std::vector<GraphSet> sets;
    sets.push_back(make_attention(16, 4, 128, c.tq, c.tk, c.causal, c.window, c.sinks));
    const bool decode = c.tq == 1;
    const double sec = time_sets(sets, threads, decode ? reps * 4 : std::max(3, reps / 10));
    if (decode) {
      const double kv_bytes = 2.0 * 2 * 128 * 4 * c.tk;
      report(c.name, sec, "KV GB/s", kv_bytes / sec / kGiga);
    } else {
      double pairs = 0;  // allowed (query, key) pairs per head
      for (int64_t i = 0; i < c.tq; ++i) {
        const int64_t qpos = c.tk - c.tq + i;
        const int64_t causal_keys = qpos + 1;
        pairs += c.window > 0 ? std::min<int64_t>(
                                    causal_keys,
                                    c.window + std::min<int64_t>(c.sinks, std::max<int64_t>(0, qpos + 1 - c.window)))
                              : causal_keys;
      }
      report(c.name, sec, "GFLOP/s (allowed pairs x 2(Dk+Dv))", 16 * pairs * 2 * 256 / sec / kGiga);
    }
  }
  return 0;
}
