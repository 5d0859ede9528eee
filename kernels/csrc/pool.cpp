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

namespace bnnx {
namespace {

// The float pools are plain loops left to the compiler's vectoriser; these clones give it the
// vector ISA (the library's baseline is SSE2), picked once by the loader from cpuid.
#if defined(__x86_64__) && defined(__GNUC__)
#define BNNX_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#define BNNX_INLINE __attribute__((always_inline)) inline
#else
#define BNNX_VECTOR_CLONES
#define BNNX_INLINE inline
#endif

// m[i] = max_tap(m[i], src[i]) for i < n: the column step of the separable NCHW pool. Always
// inlined, so each clone of its caller gets a copy built for that clone's ISA.
BNNX_INLINE void max_taps(float *__restrict m, const float *__restrict src, int64_t n) {
    for (int64_t i = 0; i < n; ++i) m[i] = generic::max_tap(m[i], src[i]);
}

// x with its sign bit flipped where flip has it set: exact negation, NaNs included.
BNNX_INLINE float flipped(float x, uint32_t flip) {
    uint32_t bits;
    std::memcpy(&bits, &x, sizeof bits);
    bits ^= flip;
    std::memcpy(&x, &bits, sizeof bits);
    return x;
}

// Per channel, the sign bit to flip for a lower (min) pool, else 0.
std::vector<uint32_t> sign_flips(int64_t channels, const uint8_t *lower) {
    std::vector<uint32_t> flips(static_cast<size_t>(channels), 0u);
    if (lower)
        for (int64_t c = 0; c < channels; ++c) flips[c] = lower[c] ? 0x80000000u : 0u;
    return flips;
}

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

constexpr int64_t kPoolGroup = 16;  // planes the NCHW pool stores per pixel at once

// Threads for a pool reading `elements` input values: none below kMinPerThread each, where
// waking a worker costs more than it saves.
int pool_threads(int64_t elements, int threads) {
    constexpr int64_t kMinPerThread = 1 << 16;
    return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(threads,
                                                                   elements / kMinPerThread)));
}

// Output rows [begin, end) of maxpool2d_float. The threaded entry points below hand row or item
// ranges to these workers, which carry the vector clones (a lambda would not inherit them).
BNNX_VECTOR_CLONES
void maxpool_nhwc_rows(const PoolGeometry &g, const float *x, float *out, const uint8_t *lower,
                       const uint32_t *flip, int64_t begin, int64_t end) {
    constexpr float kLowest = -std::numeric_limits<float>::infinity();
    if (!lower) {  // no flips to apply: the plain update, which vectorises best
        pool2d<float>(g, x, out, kLowest,
                      [](float m, float v, int64_t) { return generic::max_tap(m, v); },
                      begin, end);
        return;
    }
    pool2d<float>(g, x, out, kLowest,
                  [flip](float m, float v, int64_t c) {
                      return generic::max_tap(m, flipped(v, flip[c]));
                  }, begin, end);
    const int64_t out_w = g.out_w();
    for (int64_t p = begin * out_w; p < end * out_w; ++p)
        for (int64_t c = 0; c < g.c; ++c) out[p * g.c + c] = flipped(out[p * g.c + c], flip[c]);
}

// Separable, per channel plane: each input row's horizontal window maxima once, then each output
// row as the maximum of its window's rows. The result is still torch's: over (ih, iw) order the
// update keeps the first tap equal to the maximum (+-0 ties) or the last NaN, and both survive
// taking rows first. A group of planes is then stored a group of channels per pixel, so the
// NHWC output needs no separate transpose of the larger input.
BNNX_VECTOR_CLONES
void maxpool_nchw_items(const PoolGeometry &g, const float *x, float *out, const uint8_t *lower,
                        int64_t begin, int64_t end) {
    constexpr float kLowest = -std::numeric_limits<float>::infinity();
    const KernelTable &kt = active_kernels();
    const int64_t out_h = g.out_h(), out_w = g.out_w(), out_hw = out_h * out_w;
    const int64_t groups = (g.c + kPoolGroup - 1) / kPoolGroup;
    std::vector<float> rows(static_cast<size_t>(g.h * out_w));
    std::vector<float> pooled(static_cast<size_t>(kPoolGroup * out_hw));
    std::vector<float> negated(static_cast<size_t>(lower ? g.h * g.w : 0));  // a lower plane
    for (int64_t item = begin; item < end; ++item) {
        const int64_t b = item / groups, c0 = item % groups * kPoolGroup;
        const int64_t nc = std::min(kPoolGroup, g.c - c0);
        for (int64_t ci = 0; ci < nc; ++ci) {
            const float *plane = x + (b * g.c + c0 + ci) * g.h * g.w;
            const uint32_t flip = lower && lower[c0 + ci] ? 0x80000000u : 0u;
            if (flip) {
                for (int64_t i = 0; i < g.h * g.w; ++i) negated[i] = flipped(plane[i], flip);
                plane = negated.data();
            }
            kt.max_rows(plane, g.h, g.w, g.kw, g.stride_w, g.pad_w, out_w, rows.data());
            for (int64_t oh = 0; oh < out_h; ++oh) {
                const int64_t ih0 = oh * g.stride_h - g.pad_h;
                const int64_t h0 = std::max<int64_t>(0, ih0), h1 = std::min(g.h, ih0 + g.kh);
                float *m = pooled.data() + ci * out_hw + oh * out_w;
                // The first row is the start (max_tap of -inf and v is v, bit for bit).
                if (h0 < h1)
                    std::copy(rows.data() + h0 * out_w, rows.data() + (h0 + 1) * out_w, m);
                else
                    std::fill(m, m + out_w, kLowest);
                for (int64_t ih = h0 + 1; ih < h1; ++ih)
                    max_taps(m, rows.data() + ih * out_w, out_w);
                if (flip)
                    for (int64_t ow = 0; ow < out_w; ++ow) m[ow] = flipped(m[ow], flip);
            }
        }
        kt.interleave_planes(pooled.data(), nc, out_hw, out_hw, out + b * out_hw * g.c + c0, g.c);
    }
}

}  // namespace

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
                     maxpool_nhwc_rows(g, x, out, lower, flips.data(), begin, end);
                 });
}

// Threads take whole (image, channel group) items, each with its own buffers.
void maxpool2d_float_nchw(const PoolGeometry &g, const float *x, float *out, const uint8_t *lower,
                          int threads) {
    const int64_t groups = (g.c + kPoolGroup - 1) / kPoolGroup;
    parallel_for(g.n * groups, pool_threads(g.n * g.c * g.h * g.w, threads),
                 [&](int64_t begin, int64_t end) {
                     maxpool_nchw_items(g, x, out, lower, begin, end);
                 });
}

}  // namespace bnnx
