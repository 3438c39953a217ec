// sparse_attention: the reference against hand-computed values, the pattern
// and layout machinery against brute force, layout builders and files, every
// validation error with its message, and properties of the CPU kernels that
// a reference comparison cannot show: disallowed keys are never read (pages
// outside the window are unmapped), NaN in disallowed keys never leaks, LSE
// outputs compose, results do not depend on the thread count. Backends are
// compared with the reference over the case list by conformance_test.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <fstream>
#include <random>
#include <set>

#include "backends/cpu/cpu_device.h"
#include "kernels/sparse_attention/sparse_attention.h"
#include "runtime/runtime.h"

namespace ek {
namespace {

namespace sa = ek::sparse_attention;

// ------------------------------------------------------------------ helpers

HostTensor clone(const HostTensor& t) {
  HostTensor c(t.dtype(), t.shape());
  if (t.nbytes()) std::memcpy(c.data(), t.data(), t.nbytes());
  return c;
}

struct Call {
  std::map<std::string, HostTensor> keep;
  Params params;
  Call() = default;
  Call(Call&&) = default;
  Call& operator=(Call&&) = default;
  // Deep copy: tensors are duplicated.
  Call(const Call& o) : params(o.params) {
    for (const auto& kv : o.keep) keep[kv.first] = clone(kv.second);
  }
  OpCall call() const {
    OpCall c;
    c.op = sa::kOp;
    c.params = params;
    for (const auto& kv : keep) c.tensors[kv.first] = kv.second.ref();
    return c;
  }
};

Call make_call_with(int64_t B, int64_t Tq, int64_t Tk, int64_t Hq, int64_t Hkv, int64_t Dk, int64_t Dv,
                    DType kv = DType::f32, uint64_t seed = 1) {
  Call c;
  c.keep["Q"] = HostTensor(DType::f32, {B, Tq, Hq, Dk});
  c.keep["K"] = HostTensor(kv, {B, Tk, Hkv, Dk});
  c.keep["V"] = HostTensor(kv, {B, Tk, Hkv, Dv});
  c.keep["O"] = HostTensor(DType::f32, {B, Tq, Hq, Dv});
  std::mt19937_64 rng(seed);
  fill_uniform(c.keep["Q"], rng, -1.5, 1.5);
  fill_uniform(c.keep["K"], rng, -1.5, 1.5);
  fill_uniform(c.keep["V"], rng, -1.0, 1.0);
  return c;
}

std::string error_of(const Call& c) {
  try {
    validate_call(Registry::instance().op(sa::kOp), c.call());
  } catch (const InvalidArgument& e) {
    return e.what();
  }
  return "";
}

void set_csr(Call& c, const std::string& counts, const std::string& indices, int64_t heads, int64_t qb,
             int64_t maxkb, const std::vector<std::vector<int32_t>>& rows) {
  c.keep[counts] = HostTensor(DType::i32, {heads, qb});
  c.keep[indices] = HostTensor(DType::i32, {heads, qb, maxkb});
  for (size_t r = 0; r < rows.size(); ++r) {
    c.keep[counts].as<int32_t>()[r] = static_cast<int32_t>(rows[r].size());
    for (size_t e = 0; e < rows[r].size(); ++e) c.keep[indices].as<int32_t>()[r * maxkb + e] = rows[r][e];
  }
}

DeviceSet& all_devices() {
  static DeviceSet set = open_devices("");
  return set;
}
Device& cpu() {
  for (auto& d : all_devices().devices)
    if (d->backend() == "cpu") return *d;
  throw NotFound("no CPU device");
}

// A kernel on a device it can run on.
struct Target {
  Device* dev;
  const KernelImpl* k;
  std::string id() const { return k->id() + " on " + dev->profile().label(); }
};

// Every (device, kernel) of the op that can run `call`: all backends, or the
// CPU only (properties that depend on what the CPU driver reads in place).
std::vector<Target> targets(const OpCall& call, bool cpu_only = false) {
  std::vector<Target> out;
  for (auto& d : all_devices().devices) {
    if (cpu_only && d->backend() != "cpu") continue;
    for (const KernelImpl* k : Registry::instance().kernels(sa::kOp, d->backend()))
      if (!k->ineligible_reason || k->ineligible_reason(d->profile(), call).empty()) out.push_back({d.get(), k});
  }
  return out;
}
std::vector<Target> cpu_kernels(const OpCall& call) { return targets(call, true); }

void run_kernel(const Target& t, const OpCall& call) {
  validate_call(Registry::instance().op(sa::kOp), call);
  auto inv = t.k->bind(*t.dev, call, t.k->default_tuning());
  inv->execute();
  inv->read_outputs();
}

HostTensor reference_of(const Call& c, const std::string& out = "O") {
  Call r = c;  // deep copy: the reference writes its own outputs
  Registry::instance().op(sa::kOp).reference(r.call());
  return std::move(r.keep[out]);
}

// ------------------------------------------------------------------ reference

TEST(SparseAttentionReference, HandComputed) {
  // One query, two keys, D = 1: s = scale * q k = {0.5, 1.0} (scale 1/sqrt(1)).
  Call c = make_call_with(1, 1, 2, 1, 1, 1, 2);
  c.keep["Q"].as<float>()[0] = 1.0f;
  c.keep["K"].as<float>()[0] = 0.5f;
  c.keep["K"].as<float>()[1] = 1.0f;
  const float v[4] = {1, 2, 3, 4};
  std::copy(v, v + 4, c.keep["V"].as<float>());
  c.keep["L"] = HostTensor(DType::f32, {1, 1, 1});
  Registry::instance().op(sa::kOp).reference(c.call());
  const double e0 = std::exp(0.5), e1 = std::exp(1.0);
  EXPECT_NEAR(c.keep["O"].as<float>()[0], (1 * e0 + 3 * e1) / (e0 + e1), 1e-6);
  EXPECT_NEAR(c.keep["O"].as<float>()[1], (2 * e0 + 4 * e1) / (e0 + e1), 1e-6);
  EXPECT_NEAR(c.keep["L"].as<float>()[0], std::log(e0 + e1), 1e-6);
  // Causal with q_offset 0: the query at position 0 sees key 0 only.
  c.params.set("causal", true);
  c.params.set("q_offset", int64_t(0));
  Registry::instance().op(sa::kOp).reference(c.call());
  EXPECT_NEAR(c.keep["O"].as<float>()[0], 1.0, 1e-6);
  EXPECT_NEAR(c.keep["L"].as<float>()[0], 0.5, 1e-6);
  // Softcap 0.25: s = 0.25 tanh(s / 0.25).
  c.params.set("softcap", 0.25);
  Registry::instance().op(sa::kOp).reference(c.call());
  EXPECT_NEAR(c.keep["L"].as<float>()[0], 0.25 * std::tanh(2.0), 1e-6);
  // q_offset -1: no key is causally visible, O = 0 and L = -inf.
  c.params.set("q_offset", int64_t(-1));
  Registry::instance().op(sa::kOp).reference(c.call());
  EXPECT_EQ(c.keep["O"].as<float>()[0], 0.0f);
  EXPECT_TRUE(std::isinf(c.keep["L"].as<float>()[0]) && c.keep["L"].as<float>()[0] < 0);
}

// ------------------------------------------------------------------ pattern

TEST(SparseAttentionPattern, IntervalsMatchBruteForce) {
  std::mt19937_64 rng(7);
  for (int trial = 0; trial < 3000; ++trial) {
    sa::Pattern p;
    p.causal = rng() % 2;
    p.window = rng() % 3 == 0 ? 0 : static_cast<int64_t>(rng() % 12 + 1);
    p.sinks = rng() % 2 ? 0 : static_cast<int64_t>(rng() % 5);
    const int64_t tk = static_cast<int64_t>(rng() % 30 + 1);
    const int64_t p0 = static_cast<int64_t>(rng() % 40) - 5, p1 = p0 + static_cast<int64_t>(rng() % 6);
    const int64_t k0 = static_cast<int64_t>(rng() % tk), k1 = k0 + 1 + static_cast<int64_t>(rng() % (tk - k0));
    sa::KeyRange r[2];
    const int n = p.union_keys(p0, p1, tk, r);
    for (int64_t key = 0; key < tk; ++key) {
      bool any = false;
      for (int64_t q = p0; q <= p1; ++q) any |= p.allowed(q, key);
      bool in = false;
      for (int i = 0; i < n; ++i) in |= key >= r[i].lo && key < r[i].hi;
      ASSERT_EQ(in, any) << "trial " << trial << " key " << key;
    }
    bool all = true, any = false;
    for (int64_t q = p0; q <= p1; ++q)
      for (int64_t key = k0; key < k1; ++key) {
        all &= p.allowed(q, key);
        any |= p.allowed(q, key);
      }
    ASSERT_EQ(p.all_allowed(p0, p1, k0, k1), all) << "trial " << trial;
    ASSERT_EQ(p.any_allowed(p0, p1, k0, k1), any) << "trial " << trial;
  }
}

TEST(SparseAttentionPattern, AllowedKeyRangesMatchBruteForceWithLayouts) {
  std::mt19937_64 rng(11);
  for (int trial = 0; trial < 200; ++trial) {
    const int64_t tq = rng() % 40 + 1, tk = rng() % 60 + 1;
    Call c = make_call_with(1, tq, tk, 2, 1, 4, 4);
    c.params.set("causal", static_cast<bool>(rng() % 2));
    if (rng() % 2) c.params.set("window", static_cast<int64_t>(rng() % 20 + 1));
    if (rng() % 2) c.params.set("sinks", static_cast<int64_t>(rng() % 4));
    const int64_t q_offset = static_cast<int64_t>(rng() % 30) - 10;
    c.params.set("q_offset", q_offset);
    const bool layout = rng() % 3 != 0;
    const int64_t bq = rng() % 9 + 1, bk = rng() % 9 + 1;
    const int64_t nqb = (tq + bq - 1) / bq, nkb = (tk + bk - 1) / bk;
    std::vector<std::vector<int32_t>> rows(static_cast<size_t>(2 * nqb));
    if (layout) {
      for (auto& r : rows)
        for (int64_t kb = 0; kb < nkb; ++kb)
          if (rng() % 2) r.push_back(static_cast<int32_t>(kb));
      for (auto& r : rows) std::shuffle(r.begin(), r.end(), rng);  // CSR lists need not be sorted
      set_csr(c, "block_counts", "block_indices", 2, nqb, std::max<int64_t>(1, nkb), rows);
      c.params.set("block_q", bq);
      c.params.set("block_k", bk);
    }
    const sa::Args a = sa::Args::parse(c.call());
    std::vector<sa::KeyRange> ranges;
    for (int64_t h = 0; h < (layout ? 2 : 1); ++h)
      for (int64_t i = 0; i < tq; ++i) {
        const int64_t row = layout ? h * nqb + i / bq : 0;
        sa::allowed_key_ranges(a, row, i, i + 1, ranges);
        for (int64_t key = 0; key < tk; ++key) {
          bool want = a.pattern.allowed(q_offset + i, key);
          if (layout) {
            const auto& r = rows[static_cast<size_t>(row)];
            want = want && std::find(r.begin(), r.end(), key / bk) != r.end();
          }
          bool got = false;
          for (const auto& rg : ranges) got |= key >= rg.lo && key < rg.hi;
          ASSERT_EQ(got, want) << "trial " << trial << " head " << h << " query " << i << " key " << key;
        }
        for (size_t e = 1; e < ranges.size(); ++e) ASSERT_LT(ranges[e - 1].hi, ranges[e].lo) << "unmerged ranges";
      }
  }
}

TEST(SparseAttentionPattern, SparsityStatsCountAllowedPairs) {
  Call c = make_call_with(2, 50, 80, 4, 2, 8, 8);
  c.params.set("causal", true);
  c.params.set("window", int64_t(20));
  c.params.set("sinks", int64_t(3));
  const sa::Args a = sa::Args::parse(c.call());
  double pairs = 0;
  for (int64_t i = 0; i < 50; ++i)
    for (int64_t k = 0; k < 80; ++k) pairs += a.pattern.allowed(a.q_offset + i, k);
  const sa::SparsityStats st = sa::sparsity_stats(a);
  EXPECT_EQ(st.allowed_pairs, pairs * 2 * 4);
  // Keys any query reads: sinks 0..2 and the window of positions 30..79.
  EXPECT_EQ(st.keys_read, (3 + (80 - 11)) * 2 * 2);
}

// ------------------------------------------------------------------ layouts

TEST(SparseAttentionLayout, SlidingWindowLayoutClassifiesExactly) {
  sa::LayoutShape s;
  s.tq = 100;
  s.tk = 130;
  s.q_offset = 30;
  s.block_q = 16;
  s.block_k = 24;
  sa::Pattern p;
  p.causal = true;
  p.window = 40;
  p.sinks = 4;
  const sa::BlockLayout l = sa::sliding_window_layout(s, p);
  ASSERT_EQ(l.q_blocks, 7);
  ASSERT_EQ(l.k_blocks, 6);
  for (int64_t qb = 0; qb < l.q_blocks; ++qb)
    for (int64_t kb = 0; kb < l.k_blocks; ++kb) {
      bool any = false, all = true;
      for (int64_t i = qb * 16; i < std::min<int64_t>(100, qb * 16 + 16); ++i)
        for (int64_t k = kb * 24; k < std::min<int64_t>(130, kb * 24 + 24); ++k) {
          any |= p.allowed(30 + i, k);
          all &= p.allowed(30 + i, k);
        }
      const auto& part = l.partial_row(0, qb);
      const auto& full = l.full_row(0, qb);
      const bool in_part = std::count(part.begin(), part.end(), kb) == 1;
      const bool in_full = std::count(full.begin(), full.end(), kb) == 1;
      EXPECT_EQ(in_part || in_full, any) << qb << "," << kb;
      EXPECT_EQ(in_full, any && all) << qb << "," << kb;
    }
}

TEST(SparseAttentionLayout, BigBirdStructureAndSeed) {
  sa::LayoutShape s;
  s.tq = s.tk = 1024;
  s.block_q = s.block_k = 64;
  s.heads = 4;
  sa::BigBirdOptions o;  // local 3, global 2, random 3
  o.seed = 99;
  const sa::BlockLayout a = sa::bigbird_layout(s, o);
  const sa::BlockLayout b = sa::bigbird_layout(s, o);
  EXPECT_EQ(sa::block_layout_to_json(a), sa::block_layout_to_json(b)) << "same seed, same layout";
  o.seed = 100;
  EXPECT_NE(sa::block_layout_to_json(a), sa::block_layout_to_json(sa::bigbird_layout(s, o)));
  for (int64_t h = 0; h < 4; ++h)
    for (int64_t qb = 0; qb < 16; ++qb) {
      const auto& full = a.full_row(h, qb);
      EXPECT_TRUE(a.partial_row(h, qb).empty()) << "no pattern: every listed block is full";
      if (qb < 2) {
        EXPECT_EQ(full.size(), 16u) << "global rows attend to every block";
        continue;
      }
      std::set<int64_t> fixed = {0, 1};  // global blocks, then the local band (clipped at the edges)
      for (int64_t kb = qb - 1; kb <= std::min<int64_t>(qb + 1, 15); ++kb) fixed.insert(kb);
      EXPECT_EQ(full.size(), fixed.size() + 3) << "local + global + 3 random distinct blocks";
      for (int32_t kb : {0, 1, static_cast<int32_t>(qb) - 1, static_cast<int32_t>(qb)})
        EXPECT_EQ(std::count(full.begin(), full.end(), kb), 1) << "h " << h << " qb " << qb << " kb " << kb;
    }
  EXPECT_NE(sa::block_layout_to_json(a).find("\"heads\""), std::string::npos);
}

TEST(SparseAttentionLayout, FileRoundTripAndErrors) {
  sa::LayoutShape s;
  s.tq = 200;
  s.tk = 300;
  s.block_q = 32;
  s.block_k = 48;
  s.heads = 2;
  s.q_offset = 100;
  sa::Pattern p;
  p.causal = true;
  const sa::BlockLayout l = sa::bigbird_layout(s, sa::BigBirdOptions{}, p);
  const std::string path = testing::TempDir() + "/ek_layout_test.json";
  sa::save_block_layout(l, path);
  const sa::BlockLayout r = sa::load_block_layout(path);
  EXPECT_EQ(sa::block_layout_to_json(r), sa::block_layout_to_json(l));
  std::remove(path.c_str());

  auto err = [](const std::string& text) {
    try {
      sa::parse_block_layout(text, "test");
    } catch (const InvalidArgument& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  const std::string head = R"({"format":"edgekernels.block_layout","version":1,"block_q":4,"block_k":4,)";
  EXPECT_NE(err("{").find("not valid JSON"), std::string::npos);
  EXPECT_NE(err(R"({"format":"x","version":1})").find("field 'format'"), std::string::npos);
  EXPECT_NE(err(head + R"("q_blocks":1,"k_blocks":2,"heads":[[[0,2]]]})").find("block 2 is out of range [0, 2)"),
            std::string::npos);
  EXPECT_NE(err(head + R"("q_blocks":2,"k_blocks":2,"heads":[[[0]]]})").find("q_blocks=2"), std::string::npos);
  EXPECT_NE(err(head + R"("q_blocks":1,"k_blocks":2,"heads":[[[1]]],"full":[[[1]]]})").find("twice"),
            std::string::npos);
  EXPECT_NE(err(head + R"("k_blocks":2,"heads":[[[1]]]})").find("missing field 'q_blocks'"), std::string::npos);
  EXPECT_THROW(sa::load_block_layout("/nonexistent/x.json"), InvalidArgument);
}

// ------------------------------------------------------------------ bad input

TEST(SparseAttentionValidation, ErrorsNameTheArgument) {
  auto base = [] { return make_call_with(1, 8, 16, 4, 2, 8, 8); };
  struct Bad {
    std::function<void(Call&)> edit;
    std::string message;
  };
  const std::vector<Bad> bad = {
      {[](Call& c) { c = make_call_with(1, 4, 4, 30, 8, 8, 8); }, "sparse_attention: Hq=30 is not a multiple of Hkv=8"},
      {[](Call& c) { c.keep["Q"] = HostTensor(DType::f32, {8, 4, 8}); }, "sparse_attention: Q has 3 dims"},
      {[](Call& c) { c.keep["Q"] = HostTensor(DType::i32, {1, 8, 4, 8}); }, "sparse_attention: Q has dtype i32, expected f32|f16"},
      {[](Call& c) { c.keep["V"] = HostTensor(DType::f16, {1, 16, 2, 8}); }, "V has dtype f16, expected K's dtype f32"},
      {[](Call& c) { c.keep["K"] = HostTensor(DType::f32, {1, 16, 2, 9}); }, "K dim 3 is 9, expected Dk=8"},
      {[](Call& c) { c.keep["V"] = HostTensor(DType::f32, {1, 15, 2, 8}); }, "V dim 1 is 15, expected Tk=16"},
      {[](Call& c) { c.keep["K"] = HostTensor(DType::f32, {2, 16, 2, 8}); }, "K dim 0 is 2, expected B=1"},
      {[](Call& c) { c.keep["V"] = HostTensor(DType::f32, {1, 16, 2, 2000}); }, "head dim Dv=2000 is not in 1..1024"},
      {[](Call& c) { c.keep["O"] = HostTensor(DType::f32, {1, 8, 4, 9}); }, "output O has shape [1, 8, 4, 9], expected [1, 8, 4, 8]"},
      {[](Call& c) { c.keep["L"] = HostTensor(DType::f32, {1, 8, 4}); }, "output L has shape [1, 8, 4], expected [1, 4, 8]"},
      {[](Call& c) { c.params.set("scale", std::nan("")); }, "scale=nan must be finite"},
      {[](Call& c) { c.params.set("softcap", -1.0); }, "softcap=-1 must be finite and >= 0"},
      {[](Call& c) { c.params.set("window", int64_t(-3)); }, "window=-3 is not in [0, 2^31-1]"},
      {[](Call& c) { c.params.set("sinks", int64_t(-1)); }, "sinks=-1 is not in [0, 2^31-1]"},
      {[](Call& c) { c.params.set("q_offset", int64_t(1) << 40); }, "q_offset=1099511627776 is not in [-2^30, 2^30]"},
      {[](Call& c) { c.params.set("causal", std::string("maybe")); }, "param causal='maybe' is not a boolean"},
      {[](Call& c) { c.params.set("block_q", int64_t(4)); }, "params block_q/block_k are set but no block layout"},
      {[](Call& c) { c.params.set("dropout", 0.1); }, "unknown param 'dropout'"},
      // Layouts: block 4x4 -> nQb = 2, nKb = 4.
      {[](Call& c) {
         set_csr(c, "block_counts", "block_indices", 1, 2, 2, {{0}, {1}});
       },
       "a block layout needs params block_q and block_k"},
      {[](Call& c) {
         set_csr(c, "block_counts", "block_indices", 1, 2, 2, {{0}, {1}});
         c.keep.erase("block_indices");
         c.params.set("block_q", int64_t(4));
         c.params.set("block_k", int64_t(4));
       },
       "block_indices is missing (block_counts and block_indices come together)"},
      {[](Call& c) {
         set_csr(c, "block_counts", "block_indices", 1, 3, 2, {{0}, {1}, {2}});
         c.params.set("block_q", int64_t(4));
         c.params.set("block_k", int64_t(4));
       },
       "block_counts dim 1 is 3, expected nQb=2"},
      {[](Call& c) {
         set_csr(c, "block_counts", "block_indices", 3, 2, 2, {{0}, {1}, {0}, {1}, {0}, {1}});
         c.params.set("block_q", int64_t(4));
         c.params.set("block_k", int64_t(4));
       },
       "layout heads Hl=3 must be 1, Hkv=2 or Hq=4"},
      {[](Call& c) {
         set_csr(c, "block_counts", "block_indices", 1, 2, 2, {{0}, {1}});
         c.keep["block_counts"].as<int32_t>()[1] = 3;
         c.params.set("block_q", int64_t(4));
         c.params.set("block_k", int64_t(4));
       },
       "block_counts[0, 1]=3 is not in [0, 2] (the last dim of block_indices)"},
      {[](Call& c) {
         set_csr(c, "block_counts", "block_indices", 1, 2, 2, {{0}, {1, 4}});
         c.params.set("block_q", int64_t(4));
         c.params.set("block_k", int64_t(4));
       },
       "block_indices[0, 1, 1]=4 is out of range [0, nKb=4)"},
      {[](Call& c) {
         set_csr(c, "block_counts", "block_indices", 1, 2, 2, {{0}, {3, 3}});
         c.params.set("block_q", int64_t(4));
         c.params.set("block_k", int64_t(4));
       },
       "key block 3 is listed twice for layout head 0 query block 1"},
      {[](Call& c) {
         set_csr(c, "block_counts", "block_indices", 1, 2, 2, {{0}, {1}});
         set_csr(c, "full_counts", "full_indices", 1, 2, 1, {{}, {1}});
         c.params.set("block_q", int64_t(4));
         c.params.set("block_k", int64_t(4));
       },
       "key block 1 is listed twice for layout head 0 query block 1 (full_indices[0, 1, 0])"},
      {[](Call& c) {
         set_csr(c, "full_counts", "full_indices", 1, 2, 1, {{3}, {}});
         c.params.set("block_q", int64_t(4));
         c.params.set("block_k", int64_t(4));
         c.params.set("causal", true);
       },
       "full_indices[0, 0, 0]=3 is not fully allowed by the causal/window/sinks pattern"},
      {[](Call& c) {
         set_csr(c, "block_counts", "block_indices", 1, 2, 2, {{0}, {1}});
         c.keep["block_indices"] = HostTensor(DType::i64, {1, 2, 2});
         c.params.set("block_q", int64_t(4));
         c.params.set("block_k", int64_t(4));
       },
       "block_indices has dtype i64, expected i32"},
      {[](Call& c) {
         set_csr(c, "block_counts", "block_indices", 1, 2, 2, {{0}, {1}});
         c.params.set("block_q", int64_t(0));
         c.params.set("block_k", int64_t(4));
       },
       "block_q=0 must be >= 1"},
  };
  EXPECT_EQ(error_of(base()), "");
  for (const Bad& b : bad) {
    Call c = base();
    b.edit(c);
    const std::string e = error_of(c);
    EXPECT_NE(e.find(b.message), std::string::npos) << "expected \"" << b.message << "\", got \"" << e << "\"";
    EXPECT_EQ(e.rfind("sparse_attention", 0), 0u) << e;
  }
}

TEST(SparseAttentionValidation, RejectedCallWritesNothing) {
  Call c = make_call_with(1, 8, 16, 4, 2, 8, 8);
  c.params.set("window", int64_t(-1));
  float* o = c.keep["O"].as<float>();
  for (int64_t i = 0; i < c.keep["O"].numel(); ++i) o[i] = 7.0f;
  EXPECT_THROW(run_op(cpu(), c.call()), InvalidArgument);
  for (int64_t i = 0; i < c.keep["O"].numel(); ++i) ASSERT_EQ(o[i], 7.0f);
}

// ------------------------------------------------------------------ kernel properties

double max_abs_diff(const HostTensor& a, const HostTensor& b) {
  double m = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    const double x = load_as_double(a.ref(), i), y = load_as_double(b.ref(), i);
    if (std::isnan(x) != std::isnan(y)) return INFINITY;
    if (!std::isnan(x) && x != y) m = std::max(m, std::fabs(x - y));
  }
  return m;
}

TEST(SparseAttentionKernels, LayoutPathEqualsAnalyticPath) {
  // The same sliding window (+ sinks, causal) once as the analytic pattern
  // alone and once additionally as a block layout: identical allowed pairs.
  Call c = make_call_with(1, 150, 200, 8, 2, 64, 64, DType::f16);
  c.params.set("causal", true);
  c.params.set("window", int64_t(60));
  c.params.set("sinks", int64_t(4));
  Call l = c;
  OwnedCall oc;
  sa::LayoutShape s;
  s.tq = 150;
  s.tk = 200;
  s.q_offset = 50;
  s.block_q = 20;
  s.block_k = 30;
  sa::Pattern p;
  p.causal = true;
  p.window = 60;
  p.sinks = 4;
  sa::sliding_window_layout(s, p).add_to(oc);
  for (auto& kv : oc.storage) l.keep[kv.first] = std::move(kv.second);
  l.params.set("block_q", int64_t(20));
  l.params.set("block_k", int64_t(30));
  for (const Target& k : targets(c.call())) {
    run_kernel(k, c.call());
    run_kernel(k, l.call());
    EXPECT_LT(max_abs_diff(c.keep["O"], l.keep["O"]), 1e-5) << k.id();
  }
}

TEST(SparseAttentionKernels, NonFiniteValuesInDisallowedKeysNeverLeak) {
  for (DType kv : {DType::f32, DType::f16}) {
    Call c = make_call_with(1, 70, 300, 4, 2, 32, 48, kv, 3);
    c.params.set("causal", true);
    c.params.set("window", int64_t(50));
    c.params.set("sinks", int64_t(2));
    c.params.set("q_offset", int64_t(150));  // queries at 150..219; keys 220.. are future
    const HostTensor clean_ref = reference_of(c);
    // Poison every key no query may see: 2..100 (outside window, past sinks)
    // and 220..299 (future).
    auto poison = [&](const std::string& name, int64_t key, float value) {
      HostTensor& t = c.keep[name];
      const int64_t row = t.shape()[2] * t.shape()[3];
      for (int64_t e = 0; e < row; ++e) {
        if (kv == DType::f32) t.as<float>()[key * row + e] = value;
        else t.as<uint16_t>()[key * row + e] = f32_to_f16(value);
      }
    };
    for (int64_t key = 2; key <= 100; ++key) {
      poison("K", key, NAN);
      poison("V", key, INFINITY);
    }
    for (int64_t key = 220; key < 300; ++key) {
      poison("K", key, INFINITY);
      poison("V", key, NAN);
    }
    for (const Target& k : targets(c.call())) {
      run_kernel(k, c.call());
      EXPECT_EQ(count_nonfinite_where_ref_finite(c.keep["O"].ref(), clean_ref.ref()), 0) << k.id();
      EXPECT_LE(nmse(c.keep["O"].ref(), clean_ref.ref()), 1e-7) << k.id();
    }
    // NaN in an allowed key does reach the rows that attend to it.
    poison("V", 200, NAN);
    for (const Target& k : targets(c.call())) {
      run_kernel(k, c.call());
      const float* o = c.keep["O"].as<float>();
      // Query 50 (position 200) sees key 200; query 0 (position 150) does not.
      EXPECT_TRUE(std::isnan(o[(50 * 4 + 0) * 48])) << k.id();
      EXPECT_FALSE(std::isnan(o[(0 * 4 + 0) * 48])) << k.id();
    }
  }
}

// The f16 decode kernels read K/V as f16 * 2^-112 and fold 2^112 into Q and
// P (see f16_bits_to_f32_raw): exact for subnormal f16, for |Q| large enough
// that Q * 2^112 would overflow (a smaller power of two is used), and Inf/NaN
// keep their meaning. Tq = 1 and 4 (decode rows of 4 and 8) and 20 (prefill,
// for the Inf/NaN part), every backend.
TEST(SparseAttentionKernels, DecodeF16SubnormalsLargeQueriesAndNonFinite) {
  for (int64_t tq : {1, 4, 20}) {
    auto fill_f16 = [](HostTensor& t, std::mt19937_64& rng, double amp) {
      std::uniform_real_distribution<double> u(-amp, amp);
      for (int64_t i = 0; i < t.numel(); ++i) t.as<uint16_t>()[i] = f32_to_f16(static_cast<float>(u(rng)));
    };
    std::mt19937_64 rng(11);
    // All of K and V subnormal (|x| < 2^-14), |Q| ~ 3e4 >= 2^13.
    Call c = make_call_with(1, tq, 300, 8, 2, 64, 64, DType::f16, 12);
    fill_f16(c.keep["K"], rng, 6e-5);
    fill_f16(c.keep["V"], rng, 6e-5);
    fill_uniform(c.keep["Q"], rng, -3e4, 3e4);
    c.params.set("scale", 1.0);
    const HostTensor ref_sub = reference_of(c);
    for (const Target& k : targets(c.call())) {
      run_kernel(k, c.call());
      EXPECT_LE(nmse(c.keep["O"].ref(), ref_sub.ref()), 1e-7) << "subnormal K/V, tq " << tq << " " << k.id();
    }
    // |Q| ~ 1e30, tiny scale.
    fill_f16(c.keep["K"], rng, 2.0);
    fill_f16(c.keep["V"], rng, 1.0);
    fill_uniform(c.keep["Q"], rng, -1e30, 1e30);
    c.params.set("scale", 1e-30);
    const HostTensor ref_big = reference_of(c);
    for (const Target& k : targets(c.call())) {
      run_kernel(k, c.call());
      EXPECT_LE(nmse(c.keep["O"].ref(), ref_big.ref()), 1e-7) << "|Q| 1e30, tq " << tq << " " << k.id();
    }
    // Inf in K of an allowed key: rows whose q.k is +Inf become NaN, rows
    // with -Inf ignore the key; NaN in V of another key reaches every row of
    // that KV head (rows of KV head 0: NaN; of head 1: finite).
    fill_uniform(c.keep["Q"], rng, -1.5, 1.5);
    c.params.set("scale", 0.125);
    const int64_t hkv = 2, d = 64;
    c.keep["K"].as<uint16_t>()[(10 * hkv + 1) * d + 3] = f32_to_f16(INFINITY);
    c.keep["V"].as<uint16_t>()[(20 * hkv + 0) * d + 5] = f32_to_f16(NAN);
    const HostTensor ref_inf = reference_of(c);
    int64_t ref_nan = 0;
    for (int64_t i = 0; i < ref_inf.numel(); ++i) ref_nan += std::isnan(ref_inf.as<float>()[i]);
    ASSERT_GT(ref_nan, 0);
    ASSERT_LT(ref_nan, ref_inf.numel());
    for (const Target& k : targets(c.call())) {
      run_kernel(k, c.call());
      const float* o = c.keep["O"].as<float>();
      int64_t mismatched = 0;
      double worst = 0;
      for (int64_t i = 0; i < ref_inf.numel(); ++i) {
        const float r = ref_inf.as<float>()[i];
        if (std::isnan(r) != std::isnan(o[i])) ++mismatched;
        else if (!std::isnan(r)) worst = std::max(worst, std::fabs(static_cast<double>(o[i]) - r));
      }
      EXPECT_EQ(mismatched, 0) << "Inf/NaN, tq " << tq << " " << k.id();
      EXPECT_LT(worst, 1e-5) << "Inf/NaN, tq " << tq << " " << k.id();
    }
  }
}

// K/V in anonymous mappings whose pages outside [0, sinks) and the window are
// PROT_NONE: a kernel that touches a disallowed key row faults the test. CPU
// kernels only: GPU backends upload whole tensors at bind time.
struct GuardedKv {
  size_t bytes = 0;
  void* k = nullptr;
  void* v = nullptr;
  GuardedKv(size_t n) : bytes(n) {
    k = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    v = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  }
  ~GuardedKv() {
    munmap(k, bytes);
    munmap(v, bytes);
  }
  // Protects whole pages inside byte range [lo, hi) of both.
  void protect(size_t lo, size_t hi) {
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    lo = (lo + page - 1) / page * page;
    hi = hi / page * page;
    if (hi <= lo) return;
    ASSERT_EQ(mprotect(static_cast<char*>(k) + lo, hi - lo, PROT_NONE), 0);
    ASSERT_EQ(mprotect(static_cast<char*>(v) + lo, hi - lo, PROT_NONE), 0);
  }
};

void check_reads_only_window(DType kv, int64_t tq) {
  const int64_t tk = 40000, hq = 16, hkv = 4, d = 128, window = 2048, sinks = 4;
  const size_t row = static_cast<size_t>(hkv * d) * dtype_size(kv);
  GuardedKv mem(row * tk);
  std::mt19937_64 rng(5);
  OpCall call;
  call.op = sa::kOp;
  HostTensor q(DType::f32, {1, tq, hq, d}), o(DType::f32, {1, tq, hq, d}), l(DType::f32, {1, hq, tq});
  fill_uniform(q, rng, -1, 1);
  TensorRef kref{kv, {1, tk, hkv, d}, mem.k}, vref{kv, {1, tk, hkv, d}, mem.v};
  {
    std::uniform_real_distribution<float> u(-1, 1);
    for (int64_t i = 0; i < tk * hkv * d; ++i) {
      if (kv == DType::f32) {
        static_cast<float*>(mem.k)[i] = u(rng);
        static_cast<float*>(mem.v)[i] = u(rng);
      } else {
        static_cast<uint16_t*>(mem.k)[i] = f32_to_f16(u(rng));
        static_cast<uint16_t*>(mem.v)[i] = f32_to_f16(u(rng));
      }
    }
  }
  call.tensors = {{"Q", q.ref()}, {"K", kref}, {"V", vref}, {"O", o.ref()}, {"L", l.ref()}};
  call.params.set("causal", true);
  call.params.set("window", window);
  call.params.set("sinks", sinks);
  // Keys read: [0, sinks) and [tk - tq - window + 1, tk).
  const int64_t first_window_key = tk - tq - window + 1;
  mem.protect(static_cast<size_t>(sinks) * row, static_cast<size_t>(first_window_key) * row);
  for (const Target& k : cpu_kernels(call)) {
    run_kernel(k, call);  // faults if a protected row is read
    int64_t finite = 0;
    for (int64_t i = 0; i < o.numel(); ++i) finite += std::isfinite(o.as<float>()[i]);
    EXPECT_EQ(finite, o.numel()) << k.id();
  }
  mprotect(mem.k, mem.bytes, PROT_READ | PROT_WRITE);
  mprotect(mem.v, mem.bytes, PROT_READ | PROT_WRITE);
  // And the result is right.
  HostTensor ref_o(DType::f32, o.shape()), ref_l(DType::f32, l.shape());
  OpCall rc = call;
  rc.tensors["O"] = ref_o.ref();
  rc.tensors["L"] = ref_l.ref();
  Registry::instance().op(sa::kOp).reference(rc);
  EXPECT_LE(nmse(o.ref(), ref_o.ref()), 1e-7);
  EXPECT_LE(nmse(l.ref(), ref_l.ref()), 1e-7);
}

TEST(SparseAttentionCpu, DecodeReadsOnlyTheWindowAndSinksF16) { check_reads_only_window(DType::f16, 1); }
TEST(SparseAttentionCpu, DecodeReadsOnlyTheWindowAndSinksF32) { check_reads_only_window(DType::f32, 1); }
TEST(SparseAttentionCpu, VerifyTq8ReadsOnlyTheWindowAndSinks) { check_reads_only_window(DType::f16, 8); }
TEST(SparseAttentionCpu, PrefillTileReadsOnlyTheWindowAndSinks) { check_reads_only_window(DType::f32, 100); }

TEST(SparseAttentionKernels, LseOutputsComposeAcrossDisjointLayouts) {
  // Attention over keys A u B equals the LSE-weighted mix of attention over A
  // and over B: checks L is the exact log-sum-exp the kernels used.
  const int64_t tq = 64, tk = 256, bk = 32;
  Call all = make_call_with(1, tq, tk, 4, 1, 64, 64, DType::f16, 9);
  all.keep["L"] = HostTensor(DType::f32, {1, 4, tq});
  Call a = all, b = all;
  std::vector<std::vector<int32_t>> ra(2), rb(2);
  for (int32_t kb = 0; kb < tk / bk; ++kb) (kb % 3 == 0 ? ra : rb)[kb % 2].push_back(kb);
  // Two query blocks of 32 rows; row qb gets the blocks of parity qb.
  set_csr(a, "full_counts", "full_indices", 1, 2, 8, ra);
  set_csr(b, "full_counts", "full_indices", 1, 2, 8, rb);
  std::vector<std::vector<int32_t>> rall(2);
  for (int r = 0; r < 2; ++r) {
    rall[r] = ra[r];
    rall[r].insert(rall[r].end(), rb[r].begin(), rb[r].end());
  }
  set_csr(all, "full_counts", "full_indices", 1, 2, 8, rall);
  for (Call* c : {&all, &a, &b}) {
    c->params.set("block_q", int64_t(32));
    c->params.set("block_k", bk);
  }
  for (const Target& k : targets(all.call())) {
    for (Call* c : {&all, &a, &b}) run_kernel(k, c->call());
    double worst = 0;
    for (int64_t i = 0; i < tq; ++i)
      for (int64_t h = 0; h < 4; ++h) {
        const float la = a.keep["L"].as<float>()[h * tq + i], lb = b.keep["L"].as<float>()[h * tq + i];
        const float lall = all.keep["L"].as<float>()[h * tq + i];
        const double m = std::max(la, lb);
        const double wa = std::isinf(la) ? 0 : std::exp(la - m), wb = std::isinf(lb) ? 0 : std::exp(lb - m);
        worst = std::max(worst, std::fabs(m + std::log(wa + wb) - lall));
        for (int64_t d = 0; d < 64; ++d) {
          const int64_t idx = (i * 4 + h) * 64 + d;
          const double mix = (wa * a.keep["O"].as<float>()[idx] + wb * b.keep["O"].as<float>()[idx]) / (wa + wb);
          worst = std::max(worst, std::fabs(mix - all.keep["O"].as<float>()[idx]));
        }
      }
    EXPECT_LT(worst, 2e-5) << k.id();
  }
}

TEST(SparseAttentionKernels, EmptyRowsGiveZeroAndMinusInfinity) {
  Call c = make_call_with(2, 40, 64, 4, 2, 16, 16);
  c.keep["L"] = HostTensor(DType::f32, {2, 4, 40});
  // Per KV head layout, query block 1 (rows 16..31) of head 1 lists nothing.
  set_csr(c, "block_counts", "block_indices", 2, 3, 2, {{0, 1}, {2}, {3}, {1}, {}, {0, 3}});
  c.params.set("block_q", int64_t(16));
  c.params.set("block_k", int64_t(16));
  for (const Target& k : targets(c.call())) {
    run_kernel(k, c.call());
    for (int64_t b = 0; b < 2; ++b)
      for (int64_t i = 0; i < 40; ++i)
        for (int64_t h = 0; h < 4; ++h) {
          const bool empty = h / 2 == 1 && i >= 16 && i < 32;
          const float lse = c.keep["L"].as<float>()[(b * 4 + h) * 40 + i];
          const float o0 = c.keep["O"].as<float>()[((b * 40 + i) * 4 + h) * 16];
          if (empty) {
            EXPECT_TRUE(std::isinf(lse) && lse < 0) << k.id();
            EXPECT_EQ(o0, 0.0f) << k.id();
          } else {
            EXPECT_TRUE(std::isfinite(lse)) << k.id();
          }
        }
  }
}

TEST(SparseAttentionCpu, ResultDoesNotDependOnThreadCount) {
  // One worker: no key splits. Several: decode tiles split and merge by LSE.
  auto* dev = dynamic_cast<CpuDevice*>(&cpu());
  ASSERT_NE(dev, nullptr);
  const int threads = dev->threads();
  Call c = make_call_with(1, 1, 20000, 8, 2, 128, 128, DType::f16, 4);
  c.params.set("causal", true);
  for (const Target& k : cpu_kernels(c.call())) {
    dev->set_threads(1);
    run_kernel(k, c.call());
    HostTensor one = clone(c.keep["O"]);
    dev->set_threads(8);
    run_kernel(k, c.call());
    // Only the fp32 summation order differs.
    EXPECT_LE(nmse(c.keep["O"].ref(), one.ref()), 1e-10) << k.id();
  }
  dev->set_threads(threads);
}

TEST(SparseAttentionKernels, ForcedVariantsThroughRunOpMatchTheReference) {
  Call c = make_call_with(2, 33, 97, 6, 2, 80, 48, DType::f16, 8);
  c.params.set("causal", true);
  c.params.set("window", int64_t(40));
  c.params.set("softcap", 20.0);
  const HostTensor ref = reference_of(c);
  for (const Target& k : targets(c.call())) {
    SelectOptions opt;
    opt.variant = k.k->variant;
    run_op(*k.dev, c.call(), opt);
    EXPECT_LE(nmse(c.keep["O"].ref(), ref.ref()), 1e-7) << k.id();
  }
}

}  // namespace
}  // namespace ek
