// Contract, reference and case list of rms_norm.
#include <cmath>

#include "kernels/rms_norm/rms_norm.h"

namespace ek {
namespace {

constexpr const char* kOp = "rms_norm";

void reference(const OpCall& call) {
  const RmsNormArgs a = RmsNormArgs::parse(call);
  const TensorRef& x = call.get("x");
  const TensorRef& w = call.get("w");
  const TensorRef* z = call.find("z");
  float* y = call.get("y").as<float>();
  std::vector<double> v(static_cast<size_t>(a.dim));
  for (int64_t r = 0; r < a.rows; ++r) {
    double ss = 0;
    for (int64_t i = 0; i < a.dim; ++i) {
      double xi = load_as_double(x, r * a.dim + i);
      if (z) {
        double zi = load_as_double(*z, r * a.dim + i);
        xi *= zi / (1.0 + std::exp(-zi));
      }
      v[i] = xi;
      ss += xi * xi;
    }
    const double inv = 1.0 / std::sqrt(ss / static_cast<double>(a.dim) + a.eps);
    for (int64_t i = 0; i < a.dim; ++i) y[r * a.dim + i] = static_cast<float>(v[i] * inv * load_as_double(w, i));
  }
}

std::vector<OpCase> cases() {
  std::vector<OpCase> out;
  auto add = [&](std::string name, int64_t rows, int64_t dim, bool gated, std::set<std::string> tags,
                 DType dt = DType::f32) {
    OpCase c;
    c.op = kOp;
    c.name = std::move(name);
    c.dims = {{"rows", rows}, {"dim", dim}, {"gated", gated ? 1 : 0}, {"f16", dt == DType::f16 ? 1 : 0}};
    c.params.set("eps", 1e-5);
    c.tags = std::move(tags);
    out.push_back(std::move(c));
  };
  // Realistic: d_model of the shapes.json models at decode (T=1) and prefill.
  for (int64_t rows : {1, 512}) {
    add(cat("llama-3.2-1b d_model=2048 T=", rows), rows, 2048, false, {"realistic", "bench"});
    add(cat("mistral-7b d_model=4096 T=", rows), rows, 4096, false, {"realistic", "bench"});
    add(cat("hybrid-edge-1b mamba2 gated d_inner=4096 T=", rows), rows, 4096, true, {"realistic", "bench"});
  }
  add("mamba-2.8b d_model=2560 T=64", 64, 2560, false, {"realistic", "smoke"});
  add("llama-3.2-3b d_model=3072 T=8 f16", 8, 3072, false, {"realistic"}, DType::f16);
  add("mamba2-2.7b gated d_inner=5120 T=8 f16", 8, 5120, true, {"realistic"}, DType::f16);
  // Edge shapes: tails, tiny and huge rows.
  add("edge: dim=1", 3, 1, false, {"edge"});
  add("edge: dim=3 gated", 5, 3, true, {"edge"});
  add("edge: odd dim=1023 T=7", 7, 1023, false, {"edge", "smoke"});
  add("edge: dim=33 gated T=1", 1, 33, true, {"edge"});
  add("edge: large dim=65537", 2, 65537, false, {"edge"});
  add("edge: many rows=4099 dim=16", 4099, 16, true, {"edge"});
  return out;
}

void make_inputs(const OpCase& c, std::mt19937_64& rng, OwnedCall& oc) {
  const int64_t rows = c.dims.at("rows"), dim = c.dims.at("dim");
  const DType dt = c.dims.at("f16") ? DType::f16 : DType::f32;
  oc.allocate("x", dt, {rows, dim});
  fill_uniform(oc.storage["x"], rng, -2.0, 2.0);
  oc.allocate("w", DType::f32, {dim});
  fill_uniform(oc.storage["w"], rng, 0.5, 1.5);
  if (c.dims.at("gated")) {
    oc.allocate("z", dt, {rows, dim});
    fill_uniform(oc.storage["z"], rng, -4.0, 4.0);
  }
}

Cost cost(const OpCall& call) {
  const RmsNormArgs a = RmsNormArgs::parse(call);
  const double n = static_cast<double>(a.rows) * a.dim;
  Cost c;
  c.bytes = n * dtype_size(a.x_dtype) * (a.gated ? 2 : 1) + n * 4 + a.dim * 4.0;
  c.flops = n * (a.gated ? 8 : 4);
  return c;
}

const RegisterOp reg(OpDef{
    kOp,
    "y = x / sqrt(mean(x^2) + eps) * w over the last dim; with z: rms_norm(x * silu(z)) * w",
    {{"x", true, false, "x [..., dim] f32|f16"},
     {"w", true, false, "w [dim] f32"},
     {"z", false, false, "z, shape and dtype of x (gated form)"},
     {"y", true, true, "y, shape of x, f32"}},
    {"eps"},
    [](const OpCall& call) {
      RmsNormArgs::parse(call);
      return std::map<std::string, TensorDesc>{{"y", {DType::f32, call.get("x").shape}}};
    },
    reference,
    cost,
    cases,
    make_inputs,
});

}  // namespace

RmsNormArgs RmsNormArgs::parse(const OpCall& call) {
  const TensorRef& x = call.get("x");
  const TensorRef& w = call.get("w");
  RmsNormArgs a;
  EK_CHECK_ARG(x.rank() >= 1, kOp, ": x must have at least 1 dim");
  check_dtype(kOp, "x", x, {DType::f32, DType::f16});
  a.x_dtype = x.dtype;
  a.dim = x.shape.back();
  a.rows = shape_numel(x.shape, cat(kOp, ": x")) / std::max<int64_t>(a.dim, 1);
  EK_CHECK_ARG(a.dim >= 1, kOp, ": x last dim (dim) is 0, expected >= 1");
  EK_CHECK_ARG(a.rows * a.dim <= (int64_t(1) << 31) - 1, kOp, ": x has ", a.rows * a.dim,
               " elements, more than 2^31-1");
  check_rank(kOp, "w", w, 1);
  check_dtype(kOp, "w", w, {DType::f32});
  check_dim(kOp, "w", w, 0, a.dim, "dim");
  if (const TensorRef* z = call.find("z")) {
    EK_CHECK_ARG(z->shape == x.shape, kOp, ": z has shape ", shape_str(z->shape), ", expected x's shape ",
                 shape_str(x.shape));
    EK_CHECK_ARG(z->dtype == x.dtype, kOp, ": z has dtype ", dtype_name(z->dtype), ", expected x's dtype ",
                 dtype_name(x.dtype));
    a.gated = true;
  }
  const double eps = call.params.get_float(kOp, "eps", 1e-5);
  EK_CHECK_ARG(eps > 0 && std::isfinite(eps), kOp, ": eps=", eps, " must be finite and > 0");
  a.eps = static_cast<float>(eps);
  return a;
}

}  // namespace ek
