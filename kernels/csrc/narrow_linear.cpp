// narrow_linear: each pass over a row loads it once, 16 floats at a time, and feeds up to 16
// outputs' weights into their own 16-lane sums, with enough sums side by side (an output's
// split over several where the outputs are few) that the multiply-adds never wait on each
// other; the lanes are added up at the end. Plain loops over 16-float vectors, cloned for the
// vector ISAs (compiled with fused multiply-adds: see CMakeLists.txt).
#include "narrow_linear.h"

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "parallel.h"

namespace bnnx {
namespace {

constexpr int64_t kLanes = kNarrowChunk;  // floats a vector, and a chunk of the weight
constexpr int kMaxGroup = 16;  // outputs a pass over a row feeds: their sums fill 16 registers
// Multiply-adds per thread under which another thread costs more than it saves (waking it,
// the weights it reads coming from the other core's cache): 8192 -> 16 ran 3.5 us on one
// thread, 5.8 on two; 4096 -> 100 17.5 and 11.1.
constexpr int64_t kMinPerThread = int64_t{1} << 18;

using Vec = float __attribute__((vector_size(kLanes * sizeof(float))));

// Sums side by side per output for a group of G: at least 8 chains of multiply-adds in all
// (a multiply-add's latency times the two a cycle), at most 8 row vectors held.
template <int G>
constexpr int kSplit = G >= 8 ? 1 : G >= 4 ? 2 : G >= 3 ? 3 : G >= 2 ? 4 : 8;

// sums[g] = dot(x, output g's weights) over k floats for the G outputs of a group, their 16
// floats of each chunk `stride` floats apart (see narrow_linear's layout).
template <int G>
__attribute__((always_inline)) inline void group_dots(const float *x, int64_t k, const float *w,
                                                      int64_t stride, float *sums) {
    constexpr int U = kSplit<G>;
    Vec acc[G][U] = {};
    const int64_t whole = k / kLanes;
    int64_t i = 0;
    for (; i + U <= whole; i += U)
        for (int u = 0; u < U; ++u) {
            Vec xv;
            std::memcpy(&xv, x + (i + u) * kLanes, sizeof(Vec));
            for (int g = 0; g < G; ++g) {
                Vec wv;
                std::memcpy(&wv, w + (i + u) * stride + g * kLanes, sizeof(Vec));
                acc[g][u] += xv * wv;
            }
        }
    for (; i * kLanes < k; ++i) {  // whole chunks left, then the last floats zero-padded
        Vec xv{};
        std::memcpy(&xv, x + i * kLanes,
                    static_cast<size_t>(std::min(kLanes, k - i * kLanes)) * sizeof(float));
        for (int g = 0; g < G; ++g) {
            Vec wv;
            std::memcpy(&wv, w + i * stride + g * kLanes, sizeof(Vec));
            acc[g][0] += xv * wv;
        }
    }
    for (int g = 0; g < G; ++g) {
        Vec s = acc[g][0];
        for (int u = 1; u < U; ++u) s += acc[g][u];
        float total = 0.0f;
        for (int64_t l = 0; l < kLanes; ++l) total += s[l];
        sums[g] = total;
    }
}

// Calls fn(std::integral_constant<int, G>) for the group size g in [1, kMaxGroup].
template <typename Fn>
__attribute__((always_inline)) inline void with_group(int64_t g, Fn &&fn) {
    switch (g) {
#define BNNX_GROUP(G) \
    case G: fn(std::integral_constant<int, G>{}); break;
        BNNX_GROUP(1) BNNX_GROUP(2) BNNX_GROUP(3) BNNX_GROUP(4) BNNX_GROUP(5) BNNX_GROUP(6)
        BNNX_GROUP(7) BNNX_GROUP(8) BNNX_GROUP(9) BNNX_GROUP(10) BNNX_GROUP(11) BNNX_GROUP(12)
        BNNX_GROUP(13) BNNX_GROUP(14) BNNX_GROUP(15) BNNX_GROUP(16)
#undef BNNX_GROUP
        default: break;
    }
}

// Outputs [o0, o1) (at most kMaxGroup) of row x.
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void row_outputs(const float *x, int64_t k, const float *w, int64_t m, int64_t o0, int64_t o1,
                 const float *bias, float alpha, float *out) {
    float sums[kMaxGroup];
    with_group(o1 - o0, [&](auto group) __attribute__((always_inline)) {
        group_dots<decltype(group)::value>(x, k, w + o0 * kLanes, m * kLanes, sums);
    });
    for (int64_t o = o0; o < o1; ++o) out[o] = alpha * sums[o - o0] + (bias ? bias[o] : 0.0f);
}

}  // namespace

void narrow_linear(const float *x, int64_t n, int64_t k, const float *w, int64_t m,
                   const float *bias, float alpha, float *out, int threads) {
    if (n < 1 || m < 1) return;
    const int64_t used = std::max<int64_t>(1, std::min<int64_t>(threads, n * m * k /
                                                                              kMinPerThread));
    // Output groups a row is cut into: as few as kMaxGroup allows, more where the rows are
    // fewer than the threads (a row's groups can run on different threads).
    int64_t groups = (m + kMaxGroup - 1) / kMaxGroup;
    if (n < used) groups = std::min(m, std::max(groups, (used + n - 1) / n));
    const int64_t size = (m + groups - 1) / groups;
    groups = (m + size - 1) / size;
    parallel_for(n * groups, static_cast<int>(used), [&](int64_t begin, int64_t end) {
        for (int64_t item = begin; item < end; ++item) {
            const int64_t r = item / groups, o0 = item % groups * size;
            row_outputs(x + r * k, k, w, m, o0, std::min(m, o0 + size), bias, alpha,
                        out + r * m);
        }
    });
}

}  // namespace bnnx
