// ek_bench: Google Benchmark over the shared case list of every registered
// op on every device, with the device profiles stamped into the JSON context.
#include <benchmark/benchmark.h>

#include "bench/bench_common.h"

int main(int argc, char** argv) {
  for (ek::Device* d : ek::bench::devices()) {
    const auto& p = d->profile();
    benchmark::AddCustomContext("device." + p.backend + "." + p.fingerprint(),
                                ek::profile_to_json(p).dump());
  }
  ek::bench::register_all_cases();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
