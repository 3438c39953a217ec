// The worker pool behind every Halide CPU kernel's parallel loops.
//
// Halide's own pool puts its workers to sleep a few microseconds after a
// parallel loop ends, so a decode step that calls one short kernel after
// another pays a futex wake-up (10-20 us) per call: as much as a whole
// 4096x14336 GEMV's weight unpacking costs from cache. This pool, installed
// with halide_set_custom_do_par_for, keeps its workers spinning for a bounded
// time after each loop (EK_CPU_SPIN_US, default 250 us; 0 = sleep at once),
// then sleeps on a condition variable.
//
// Each loop's iterations are split into one contiguous range per thread, in
// order, so a memory-bound loop streams one region per core (the hardware
// prefetchers' best case); a thread that finishes its range takes iterations
// from the others', so a slow or preempted core does not stall the call.
//
// Nested parallel loops (a task of this pool calling do_par_for) run inline;
// a second caller that arrives while the pool is busy uses Halide's default
// pool, so concurrent calls from several user threads stay correct.
#pragma once

#include <functional>

namespace ek::cpu {

// Installs the pool as Halide's do_par_for (idempotent, thread-safe).
void install_thread_pool();

// Threads a parallel loop uses, the calling thread included (>= 1).
void set_pool_threads(int threads);
int pool_threads();

// Runs task(i) for i in [0, count) as one parallel loop of the pool, for
// drivers that split work above a pipeline call (Halide loops inside a task
// run inline). The first exception a task throws is rethrown here once every
// task has finished: none unwinds through the Halide runtime.
void parallel_for(int count, const std::function<void(int)>& task);

}  // namespace ek::cpu
