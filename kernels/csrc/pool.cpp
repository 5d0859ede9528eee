// Max-pooling. On bits (1 = -1) the max of signs is +1 unless every tap is -1, so the pooled bit
// is the AND of the window's bits; padded taps are skipped like torch's -inf padding. The float
// pools can take some channels' minimum instead (see ops.h).
#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

#include "isa.h"
#include "microkernel_generic.h"
#include "ops.h"
#include "parallel.h"
#include "pool_rows.h"

namespace bnnx {
namespace {

#if defined(__GNUC__)
#define BNNX_INLINE __attribute__((always_inline)) inline
#else
#define BNNX_INLINE inline
#endif

// Pools output rows [begin, end) of the n * out_h rows of all images: threads take row ranges.
template <typename T, typename Reduce>
BNNX_INLINE void pool2d(const PoolGeometry &g, const T *x, T *out, T init, Reduce &&reduce,
                        int64_t begin, int64_t end) {
    const int64_t out_h = g.out_h(), out_w = g.out_w();
    for (int64_t row = begin; row < end; ++row) {
        const int64_t b = row / out_h, oh = row % out_h;
        const int64_t ih0 = oh * g.stride_h - g.pad_h;
        const int64_t h0 = std::max<int64_t>(0, ih0), h1 = std::min(g.h, ih0 + g.kh);
        for (int64_t ow = 0; ow < out_w; ++ow) {
            const int64_t iw0 = ow * g.stride_w - g.pad_w;
            const int64_t w0 = std::max<int64_t>(0, iw0), w1 = std::min(g.w, iw0 + g.kw);
            T *__restrict dst = out + (row * out_w + ow) * g.c;  // never the input: vectorises
            std::fill(dst, dst + g.c, init);
            for (int64_t ih = h0; ih < h1; ++ih)
                for (int64_t iw = w0; iw < w1; ++iw) {
                    const T *__restrict src = x + ((b * g.h + ih) * g.w + iw) * g.c;
                    for (int64_t c = 0; c < g.c; ++c) dst[c] = reduce(dst[c], src[c], c);
                }
        }
    }
}

constexpr int64_t kPoolGroup = 16;  // planes the NCHW pool moves to pixels at once

// Threads for a pool reading `elements` input values: none below kMinPerThread each, where
// waking a worker costs more than it saves.
int pool_threads(int64_t elements, int threads) {
    constexpr int64_t kMinPerThread = 1 << 16;
    return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(threads,
                                                                   elements / kMinPerThread)));
}

// Output rows [begin, end) of maxpool2d_float, each by the table's row step.
void maxpool_nhwc_rows(const PoolGeometry &g, const float *x, float *out, const uint32_t *flip,
                       int64_t begin, int64_t end) {
    const KernelTable &kt = active_kernels();
    const int64_t out_h = g.out_h(), out_w = g.out_w();
    std::vector<const float *> rows(static_cast<size_t>(g.kh));
    for (int64_t row = begin; row < end; ++row) {
        const int64_t b = row / out_h, ih0 = row % out_h * g.stride_h - g.pad_h;
        const int64_t h0 = std::max<int64_t>(0, ih0), h1 = std::min(g.h, ih0 + g.kh);
        for (int64_t ih = h0; ih < h1; ++ih) rows[ih - h0] = x + (b * g.h + ih) * g.w * g.c;
        kt.max_pool_row(rows.data(), std::max<int64_t>(0, h1 - h0), g.w, g.c, g.kw, g.stride_w,
                        g.pad_w, out_w, flip, out + row * out_w * g.c);
    }
}

// Output rows [begin, end) of maxpool2d_float_nchw: each input row moved from its planes to
// pixels once (16 planes at a time by the register transpose) into the ring of the NHWC pool.
void maxpool_nchw_rows(const PoolGeometry &g, const float *x, float *out, const uint32_t *flip,
                       int64_t begin, int64_t end, MadeRows &made) {
    const KernelTable &kt = active_kernels();
    const int64_t plane = g.h * g.w;
    pool_made_rows(g, flip, out, begin, end, made, [&](int64_t b, int64_t r, float *dst) {
        for (int64_t c0 = 0; c0 < g.c; c0 += kPoolGroup)
            kt.interleave_planes(x + (b * g.c + c0) * plane + r * g.w,
                                 std::min(kPoolGroup, g.c - c0), plane, g.w, dst + c0, g.c);
    });
}

}  // namespace

std::vector<uint32_t> sign_flips(int64_t channels, const uint8_t *lower) {
    std::vector<uint32_t> flips(static_cast<size_t>(channels), 0u);
    if (lower)
        for (int64_t c = 0; c < channels; ++c) flips[c] = lower[c] ? 0x80000000u : 0u;
    return flips;
}

void maxpool2d_bits(const PoolGeometry &g, const uint64_t *x, uint64_t *out, int threads) {
    parallel_for(g.n * g.out_h(), pool_threads(g.n * g.h * g.w * g.c * 64, threads),
                 [&](int64_t begin, int64_t end) {
                     pool2d<uint64_t>(g, x, out, ~uint64_t{0},
                                      [](uint64_t a, uint64_t b, int64_t) { return a & b; },
                                      begin, end);
                 });
}

void maxpool2d_float(const PoolGeometry &g, const float *x, float *out, const uint8_t *lower,
                     int threads) {
    const std::vector<uint32_t> flips = sign_flips(g.c, lower);
    parallel_for(g.n * g.out_h(), pool_threads(g.n * g.h * g.w * g.c, threads),
                 [&](int64_t begin, int64_t end) {
                     maxpool_nhwc_rows(g, x, out, lower ? flips.data() : nullptr, begin, end);
                 });
}

// Threads take output rows, each with its own ring, carried over between its chunks.
void maxpool2d_float_nchw(const PoolGeometry &g, const float *x, float *out, const uint8_t *lower,
                          int threads) {
    const std::vector<uint32_t> flips = sign_flips(g.c, lower);
    const uint64_t call = MadeRows::new_call();
    parallel_for(g.n * g.out_h(), pool_threads(g.n * g.c * g.h * g.w, threads),
                 [&](int64_t begin, int64_t end) {
                     maxpool_nchw_rows(g, x, out, lower ? flips.data() : nullptr, begin, end,
                                       MadeRows::of_thread(call));
                 });
}

}  // namespace bnnx
