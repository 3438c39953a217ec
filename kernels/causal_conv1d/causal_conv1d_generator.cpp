// Halide generator of causal_conv1d (ops.md): depthwise causal convolution
// over time with carried state,
//   y[b,t,d]  = act(bias[d] + sum_{j<W} w[d,j] * xx[b,t+j,d]),  xx = s0 ++ x,
//   sT[b,r,d] = xx[b,T+r,d]   (the last W-1 rows of xx),
// act = SiLU when `silu` is set. W (2..4) and silu are run-time values;
// input_type (float32 | float16) picks the instantiation. bias and s0 are
// always arguments: the wrapper passes zeros when the call has none.
//
// Manual schedule: channels are innermost in memory, so every output row is a
// vector sweep over d with the taps unrolled (W and silu specialised, so the
// steady state has no selects and constant taps); the W rows of xx a vector
// reads stay in L1 between neighbouring t. Tasks are (batch, t-chunk,
// d-chunk) blocks, parallel. The first W-1 rows of the sequence read the state
// s0: the loop partitioner peels them off the steady state. The prefill build
// transposes the weights to [d-chunk, 4] once per task, so the inner loop
// loads them densely; the decode build (transpose_weights=false, used for
// T <= 4) lets each row shuffle dense loads of w instead.
//
// Measured (AMD EPYC Zen 5, AVX-512 build, 1 thread, median CPU time; full
// table in docs/halide-schedules.md): prefill B=1 T=512 D=5120 W=4 with SiLU
// in 881 us = 24 GB/s, 33% of the measured DRAM read peak (73.7 GB/s), bound
// by the SiLU exp (~0.9 cycles per output); decode T=1 D=5120 in 3.1 us (117%:
// cache-resident). Adams2019 on the same algorithm: 1043 us prefill, and its
// tiling cannot run decode shapes.
#include <Halide.h>

namespace {

using namespace Halide;

// silu(v) = v / (1 + exp(-v)); fast_exp vectorises and is accurate to ~2^-18
// relative (far inside the 1e-7 NMSE bound); the clamp keeps it in range
// without changing the float result, NaN still propagates through v.
Expr silu(const Expr& v) { return v / (1.0f + fast_exp(-clamp(v, -88.0f, 88.0f))); }

constexpr int kMaxWidth = 4;

class CausalConv1d : public Generator<CausalConv1d> {
 public:
  GeneratorParam<Type> input_type{"input_type", Float(32)};  // x and s0: float32 | float16
  // Schedule knobs (manual schedule only).
  GeneratorParam<int> vector_width{"vector_width", 0};  // floats per vector; 0 = natural width
  GeneratorParam<int> chunk_channels{"chunk_channels", 1024};  // d per task (multiple of vector_width)
  GeneratorParam<int> chunk_tokens{"chunk_tokens", 32};        // t per task
  // Materialise the transposed weights once per task (prefill). Off for the
  // decode build: with a few rows per task the transpose costs more than it
  // saves, and each row shuffles the dense loads of w itself.
  GeneratorParam<bool> transpose_weights{"transpose_weights", true};

  Output<Buffer<float, 3>> y{"y"};
  Output<Buffer<float, 3>> sT{"sT"};

  void configure() {
    // Argument order of the AOT function: x, w, bias, s0, silu, y, sT.
    x_ = add_input<Buffer<>>("x", input_type, 3);
    w_ = add_input<Buffer<float, 2>>("w");
    bias_ = add_input<Buffer<float, 1>>("bias");
    s0_ = add_input<Buffer<>>("s0", input_type, 3);
    silu_ = add_input<bool>("silu");
  }

  void generate() {
    auto& x = *x_;
    auto& w = *w_;
    auto& bias = *bias_;
    auto& s0 = *s0_;
    width_ = w.dim(0).extent();
    channels_ = x.dim(0).extent();
    tokens_ = x.dim(1).extent();
    const Expr S = width_ - 1;

    // xx row r: s0 row r for r < S, x row r - S after. The x side is the
    // steady state (likely); the clamps keep both sides' bounds inside their
    // tensors.
    xx_(d_, r_, b_) = select(r_ >= S, likely(cast<float>(x(d_, max(r_ - S, 0), b_))),
                             cast<float>(s0(d_, clamp(r_, 0, S - 1), b_)));

    // Weights transposed to [d, tap] so a vector over d loads them densely.
    // Taps j >= W do not exist; the index clamp keeps them in bounds and the
    // select below drops them (never multiplied: 0 * inf would be NaN).
    wt_(d_, j_) = w(min(j_, width_ - 1), d_);

    Expr acc = bias(d_);
    for (int j = 0; j < kMaxWidth; ++j) {
      Expr tap = wt_(d_, j) * xx_(d_, t_ + min(j, width_ - 1), b_);
      acc = j < 2 ? acc + tap : select(j < width_, acc + tap, acc);
    }
    conv_(d_, t_, b_) = acc;
    y(d_, t_, b_) = select(silu_->operator Expr(), silu(conv_(d_, t_, b_)), conv_(d_, t_, b_));
    sT(d_, r_, b_) = xx_(d_, tokens_ + r_, b_);

    for (auto* b : {&x, &s0}) {
      b->dim(0).set_min(0).dim(1).set_min(0).dim(2).set_min(0);
      b->dim(1).set_stride(b->dim(0).extent());
      b->dim(2).set_stride(b->dim(0).extent() * b->dim(1).extent());
    }
    w.dim(0).set_min(0).dim(1).set_min(0).set_stride(w.dim(0).extent());
    bias.dim(0).set_min(0);
    for (auto* o : {&y, &sT}) {
      o->dim(0).set_min(0).dim(1).set_min(0).dim(2).set_min(0);
      o->dim(1).set_stride(o->dim(0).extent());
      o->dim(2).set_stride(o->dim(0).extent() * o->dim(1).extent());
    }

    // Estimates for the autoscheduler: a prefill of 512 tokens, d_inner 5120, W 4.
    x.set_estimates({{0, 5120}, {0, 512}, {0, 1}});
    w.set_estimates({{0, 4}, {0, 5120}});
    bias.set_estimates({{0, 5120}});
    s0.set_estimates({{0, 5120}, {0, 3}, {0, 1}});
    silu_->set_estimate(true);
    y.set_estimates({{0, 5120}, {0, 512}, {0, 1}});
    sT.set_estimates({{0, 5120}, {0, 3}, {0, 1}});
  }

  void schedule() {
    if (auto_schedule) return;
    const int vec = vector_width > 0 ? int(vector_width) : natural_vector_size<float>();
    const int vecs_per_chunk = std::max(1, int(chunk_channels) / vec);

    // y: tasks of (b, t-chunk, d-chunk); inside, rows of vectors over d.
    // Specialise W and silu so the steady state has constant taps and no
    // selects. Channels narrower than a vector take a scalar path (tasks of
    // (b, t-chunk)).
    Var dv("dv"), dvo("dvo"), dco("dco"), dci("dci"), to("to"), ti("ti"), tb("tb"), task("task");
    y.split(t_, to, ti, int(chunk_tokens), TailStrategy::GuardWithIf);
    const Expr wide = channels_ >= vec;
    const Expr act = *silu_;
    for (bool with_silu : {true, false}) {
      for (int W = kMaxWidth; W >= 2; --W) {
        y.specialize(wide && width_ == W && (with_silu ? act : !act))
            .split(d_, dvo, dv, vec, TailStrategy::ShiftInwards)
            .split(dvo, dco, dci, vecs_per_chunk, TailStrategy::GuardWithIf)
            .reorder(dv, dci, ti, dco, to, b_)
            .fuse(dco, to, tb)
            .fuse(tb, b_, task)
            .parallel(task)
            .vectorize(dv);
      }
    }
    y.specialize(!wide).reorder(d_, ti, to, b_).fuse(to, b_, task).parallel(task);
    // W outside 2..4 is rejected before the call.
    y.specialize_fail("causal_conv1d: W must be in 2..4");
    // Transposed weights once per task: dense loads of w shuffled (W is a
    // constant in each specialisation) instead of shuffles in every row.
    if (transpose_weights) {
      wt_.compute_at(y, task).reorder(j_, d_).unroll(j_);
      wt_.specialize(wide).vectorize(d_, vec, TailStrategy::ShiftInwards);
    }

    sT.specialize(channels_ >= vec).vectorize(d_, vec, TailStrategy::ShiftInwards);
  }

 private:
  GeneratorInput<Buffer<>>* x_ = nullptr;
  GeneratorInput<Buffer<float, 2>>* w_ = nullptr;
  GeneratorInput<Buffer<float, 1>>* bias_ = nullptr;
  GeneratorInput<Buffer<>>* s0_ = nullptr;
  GeneratorInput<bool>* silu_ = nullptr;
  Var d_{"d"}, t_{"t"}, b_{"b"}, r_{"r"}, j_{"j"};
  Expr width_, channels_, tokens_;
  Func xx_{"xx"}, wt_{"wt"}, conv_{"conv"};
};

}  // namespace

HALIDE_REGISTER_GENERATOR(CausalConv1d, causal_conv1d)
