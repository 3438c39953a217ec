// Halide generator of rms_norm (ops.md, "Supporting ops"):
//   y[r, i] = v[r, i] / sqrt(mean_i(v[r, :]^2) + eps) * w[i],
//   v = x (plain) or x * silu(z) (gated, Mamba-2's norm before out_proj).
// One generator; GeneratorParams pick the instantiation (input_type = float32 |
// float16, gated) and the schedule knobs. Every shipped variant is one AOT
// library built from it (kernels/rms_norm/CMakeLists.txt); the manual schedule
// is below, auto_schedule=true hands the same algorithm to Adams2019.
//
// Manual schedule: rows are grouped into parallel tasks of ~task_elements
// elements; per row the sum of squares is rfactored into `accumulators`
// independent vector partial sums (f32) so the reduction runs at load
// bandwidth, then the output is a second vectorised sweep over the row (from
// L1/L2). Tails of odd dims: the loop partitioner peels the reduction's tail
// off the steady state (masked loads there), the output's last vector shifts
// inwards; dims shorter than one vector take a scalar path. In the gated form
// v is computed once per row into a row buffer (it holds an exp per element).
//
// Measured (AMD EPYC Zen 5, AVX-512 build, 1 thread, median CPU time; full
// table in docs/halide-schedules.md): 512 x 4096 f32 in 205 us = 82 GB/s,
// 111% of the measured DRAM read peak (73.7 GB/s; the benchmark's buffers are
// cache-resident); decode 1 x 4096 in 0.50 us; gated 512 x 4096 in 859 us =
// 40% (bound by the exp of silu). Adams2019 on the same algorithm: 4792 us
// (it vectorises the reduction across rows).
#include <Halide.h>

namespace {

using namespace Halide;

// silu(v) = v / (1 + exp(-v)). fast_exp vectorises (Halide's exp on floats
// becomes scalar libm calls) and is accurate to ~2^-18 relative, far inside
// the 1e-7 NMSE bound; the clamp keeps it in its valid range (for |v| > 88
// the clamped value gives the same float result), NaN still propagates via v.
Expr silu(const Expr& v) { return v / (1.0f + fast_exp(-clamp(v, -88.0f, 88.0f))); }

class RmsNorm : public Generator<RmsNorm> {
 public:
  // Instantiation.
  GeneratorParam<Type> input_type{"input_type", Float(32)};  // x (and z): float32 | float16
  GeneratorParam<bool> gated{"gated", false};                // adds input z: y = rms_norm(x * silu(z)) * w
  // Schedule knobs (manual schedule only).
  GeneratorParam<int> vector_width{"vector_width", 0};       // floats per vector; 0 = the target's natural width
  GeneratorParam<int> accumulators{"accumulators", 4};       // independent vector partial sums per row
  GeneratorParam<int> task_elements{"task_elements", 32768}; // elements per parallel task (whole rows)

  Output<Buffer<float, 2>> y{"y"};

  void configure() {
    // Argument order of the AOT function: x, [z], w, eps, y.
    x_ = add_input<Buffer<>>("x", input_type, 2);
    if (gated) z_ = add_input<Buffer<>>("z", input_type, 2);
    w_ = add_input<Buffer<float, 1>>("w");
    eps_ = add_input<float>("eps");
  }

  void generate() {
    auto& x = *x_;
    auto& w = *w_;
    dim_ = x.dim(0).extent();

    Expr v = cast<float>(x(i_, r_));
    if (gated) v = v * silu(cast<float>((*z_)(i_, r_)));
    v_(i_, r_) = v;

    k_ = RDom(0, dim_, "k");
    sum_sq_(r_) = 0.0f;
    sum_sq_(r_) += v_(k_, r_) * v_(k_, r_);
    inv_rms_(r_) = 1.0f / sqrt(sum_sq_(r_) / cast<float>(dim_) + (*eps_));
    y(i_, r_) = v_(i_, r_) * inv_rms_(r_) * w(i_);

    // Dense, zero-based tensors as the framework passes them; this lets the
    // compiler drop min offsets and use unit strides.
    for (auto* b : {&x, z_}) {
      if (!b) continue;
      b->dim(0).set_min(0).dim(1).set_min(0).set_stride(b->dim(0).extent());
    }
    w.dim(0).set_min(0);
    y.dim(0).set_min(0).dim(1).set_min(0).set_stride(y.dim(0).extent());

    // Estimates for the autoscheduler: a prefill of 512 tokens at d_model 4096.
    x.set_estimates({{0, 4096}, {0, 512}});
    if (z_) z_->set_estimates({{0, 4096}, {0, 512}});
    w.set_estimates({{0, 4096}});
    eps_->set_estimate(1e-5f);
    y.set_estimates({{0, 4096}, {0, 512}});
  }

  void schedule() {
    if (auto_schedule) return;
    const int vec = vector_width > 0 ? int(vector_width) : natural_vector_size<float>();
    const int acc = std::max(1, int(accumulators));

    // Whole rows per task, ~task_elements elements each.
    Var ro("ro"), ri("ri");
    Expr rows_per_task = max(1, int(task_elements) / dim_);
    y.split(r_, ro, ri, rows_per_task, TailStrategy::GuardWithIf).parallel(ro);
    // Rows of at least one vector: vector sweep, the last vector shifted
    // inwards over the tail (recomputing a few outputs is harmless).
    y.specialize(dim_ >= vec).vectorize(i_, vec, TailStrategy::ShiftInwards);

    sum_sq_.compute_at(y, ri);
    inv_rms_.compute_at(y, ri);
    // Sum of squares: `acc` vectors of partial sums, reduced horizontally at
    // the end of the row. The split's tail (dim % (vec*acc)) is guarded; the
    // loop partitioner peels it so the steady state is unpredicated.
    RVar ko("ko"), ki("ki");
    Var u("u");
    Func partial = sum_sq_.update().split(k_.x, ko, ki, vec * acc, TailStrategy::GuardWithIf).rfactor(ki, u);
    partial.compute_at(y, ri).vectorize(u, vec).unroll(u);
    partial.update().vectorize(u, vec).unroll(u);

    if (gated) {
      // v holds exp: compute it once per row, keep the row buffer per task.
      v_.store_at(y, ro).compute_at(y, ri);
      v_.specialize(dim_ >= vec).vectorize(i_, vec, TailStrategy::ShiftInwards);
    }
  }

 private:
  GeneratorInput<Buffer<>>* x_ = nullptr;
  GeneratorInput<Buffer<>>* z_ = nullptr;
  GeneratorInput<Buffer<float, 1>>* w_ = nullptr;
  GeneratorInput<float>* eps_ = nullptr;
  Var i_{"i"}, r_{"r"};
  Expr dim_;
  RDom k_;
  Func v_{"v"}, sum_sq_{"sum_sq"}, inv_rms_{"inv_rms"};
};

}  // namespace

HALIDE_REGISTER_GENERATOR(RmsNorm, rms_norm)
