#!/usr/bin/env bash
# The peer baseline: ggml's CPU kernels (those llama.cpp runs) on the shapes
# of the scan, 2-bit matmul and attention benchmarks, and edgekernels'
# figures for the same cases, alternated round by round (the host is shared: compare within a
# round). ggml's sources come from PyPI (llama-cpp-python's sdist, pinned
# below), built natively; nothing here runs in CI.
# Usage: tools/peer_bench.sh [ROUNDS]   (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"
bash tools/setup.sh
bash tools/setup.sh curl ca-certificates python3

version=0.3.36   # llama-cpp-python; its vendor/llama.cpp/ggml is the peer
work=build/peers
src="$work/llama_cpp_python-$version/vendor/llama.cpp/ggml"
mkdir -p "$work"
if [ ! -f "$src/CMakeLists.txt" ]; then
  # PyPI's simple index (JSON form) names the sdist's URL and sha256.
  read -r url sha < <(curl -fsSL -H 'Accept: application/vnd.pypi.simple.v1+json' \
      https://pypi.org/simple/llama-cpp-python/ | python3 -c '
import json, sys
name = "llama_cpp_python-'"$version"'.tar.gz"
f = [f for f in json.load(sys.stdin)["files"] if f["filename"] == name][0]
print(f["url"], f["hashes"]["sha256"])')
  curl -fsSL "$url" -o "$work/llama-cpp-python-$version.tar.gz"
  echo "$sha  $work/llama-cpp-python-$version.tar.gz" | sha256sum -c --quiet
  tar xzf "$work/llama-cpp-python-$version.tar.gz" -C "$work" --wildcards "*/vendor/llama.cpp/ggml/*"
  touch "$src/ggml.pc.in"   # the sdist leaves out this pkg-config template, which ggml's CMake configures
fi
cmake -S bench/peers -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_SOURCE_DIR="$PWD/$src" >/dev/null
cmake --build "$work/build" --target ggml_peer_bench >/dev/null
cmake --preset release >/dev/null
cmake --build --preset release --target ek_bench >/dev/null

# edgekernels' widest CPU variant on this machine (what selection picks;
# matmul_q2 has an f32 and an int8 kernel per ISA, both run).
variant=halide_sse41
grep -q avx2 /proc/cpuinfo && variant=halide_avx2
grep -q avx512f /proc/cpuinfo && variant=halide_avx512
[ "$(uname -m)" = aarch64 ] && variant=halide_neon
cases='mamba-2.8b D=5120 N=16 (T=512/|T=2048/|decode T=1 \(states rotated|decode T=1 in place \(states)'
cases+='|mamba2-2.7b H=80 P=64 N=128 (T=512/|T=2048/|decode T=1 \(states rotated|decode T=1 in place \(states)'
cases+='|hybrid-edge-1b heads (dense causal prefill T=4096|sliding window 1024|decode Tk=)'
# matmul_q2: the f32 and the int8 kernels of that ISA (halide_avx512_f32,
# halide_avx512vnni_int8, ...), in the formats ggml shares.
matmul_cases="matmul_q2/cpu/$variant[^/]*/(q2_k|tq2_0)/(decode_cold/(mistral-7b ffn up|llama-3.2-1b ffn down|hybrid-edge-1b mamba2 in_proj)|decode_hot/mistral-7b ffn up|prefill/(mistral-7b ffn up|hybrid-edge-1b mamba2 in_proj))"
for r in $(seq "$rounds"); do
  echo "== round $r, $(date -u +%H:%M:%S) UTC: ggml"
  "$work/build/ggml_peer_bench" --threads "$(nproc)" --tsv "$work/ggml_round$r.tsv"
  echo "== round $r, $(date -u +%H:%M:%S) UTC: edgekernels ($variant), medians of 5"
  EK_BENCH_BACKENDS=cpu ./build/bench/ek_bench --benchmark_filter="cpu/$variant/($cases)|$matmul_cases" \
    --benchmark_repetitions=5 --benchmark_report_aggregates_only=true \
    --benchmark_out="$work/ek_round$r.json" --benchmark_out_format=json >/dev/null 2>&1
done

# Per case: each side's median over the rounds (each round's figure is itself
# a median), and the median of the per-round ratios.
python3 - "$work" "$rounds" <<'PY'
import json, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
ggml, ek = {}, {}
for r in range(1, rounds + 1):
    for line in open(f"{work}/ggml_round{r}.tsv"):
        name, sec = line.rstrip("\n").split("\t")
        ggml.setdefault(name, {})[r] = float(sec)
    for b in json.load(open(f"{work}/ek_round{r}.json"))["benchmarks"]:
        if b.get("aggregate_name") != "median":
            continue
        op, _, variant, rest = b["run_name"].split("/", 3)
        label = "/".join(p for p in rest.split("/") if not p.startswith(("process_time", "min_time", "manual_time")))
        # the median iteration
        ek.setdefault(f"{op} {label}", {}).setdefault(variant, {})[r] = b["seconds"]
print(f"\n{'case':<92} {'ggml':>11} {'edgekernels':>12} {'speed-up':>9}")
for name, g in ggml.items():
    variants = ek.get(name, {})
    if not variants:
        print(f"{name:<92} {statistics.median(g.values())*1e3:9.3f}ms {'(not run)':>12}")
    for variant, e in variants.items():
        common = sorted(set(g) & set(e))
        ratio = statistics.median(g[r] / e[r] for r in common)
        row = name if len(variants) == 1 else f"{name} [{variant}]"
        print(f"{row:<92} {statistics.median(g.values())*1e3:9.3f}ms {statistics.median(e.values())*1e3:10.3f}ms {ratio:8.1f}x")
PY
