#pragma once

#include <algorithm>
#include <cstdint>
#include <thread>
#include <vector>

namespace bnnx {

// Splits [0, total) into contiguous chunks, one per thread; fn(begin, end) must not throw.
template <typename Fn>
void parallel_for(int64_t total, int threads, Fn &&fn) {
    const int64_t workers = std::max<int64_t>(1, std::min<int64_t>(threads, total));
    if (workers <= 1) {
        fn(int64_t{0}, total);
        return;
    }
    std::vector<std::thread> pool;
    pool.reserve(static_cast<size_t>(workers - 1));
    const int64_t chunk = (total + workers - 1) / workers;
    for (int64_t t = 1; t < workers; ++t) {
        const int64_t begin = t * chunk, end = std::min(total, begin + chunk);
        if (begin < end) pool.emplace_back([&fn, begin, end] { fn(begin, end); });
    }
    fn(int64_t{0}, std::min(total, chunk));
    for (auto &th : pool) th.join();
}

}  // namespace bnnx
