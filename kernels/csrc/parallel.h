// Data parallelism over a persistent thread pool: spawning std::threads per call costs tens of
// microseconds, as much as a whole small layer, so workers are started once and kept.
#pragma once

#include <cstdint>
#include <functional>

namespace bnnx {

// Calls fn(begin, end) on disjoint chunks covering [0, total), on the calling thread and up to
// threads - 1 pool workers. Thread k works through the k-th contiguous share first (so layer
// after layer a thread reads mostly what it wrote itself), then steals chunks from the others'
// ends, so a worker the OS has not scheduled yet delays nothing. fn must not throw.
void parallel_for(int64_t total, int threads, const std::function<void(int64_t, int64_t)> &fn);

// The same in chunks of at least `grain` items (a share's last chunk may be shorter): items
// that work better together (rows a tile spans) stay together.
void parallel_for(int64_t total, int threads, int64_t grain,
                  const std::function<void(int64_t, int64_t)> &fn);

// Nanoseconds a cache line takes from the calling thread to a new one and back, averaged over
// `trips` round trips (fewer where they take over 50 ms): how far apart the two cores are. A VM's two vCPUs sit near or far from
// each other (about 100 ns or 350 ns here), it changes over time, and 2-thread timings with it.
double thread_round_trip_ns(int64_t trips);

}  // namespace bnnx
