// Max-pooling. On bits (1 = -1) the max of signs is +1 unless every tap is -1, so the pooled bit
// is the AND of the window's bits; padded taps are skipped like torch's -inf padding.
#include <algorithm>
#include <limits>
#include <vector>

#include "ops.h"

namespace bnnx {
namespace {

template <typename T, typename Reduce>
void pool2d(const PoolGeometry &g, const T *x, T *out, T init, Reduce &&reduce) {
    const int64_t out_h = g.out_h(), out_w = g.out_w();
    for (int64_t b = 0; b < g.n; ++b)
        for (int64_t oh = 0; oh < out_h; ++oh) {
            const int64_t ih0 = oh * g.stride_h - g.pad_h;
            const int64_t h0 = std::max<int64_t>(0, ih0), h1 = std::min(g.h, ih0 + g.kh);
            for (int64_t ow = 0; ow < out_w; ++ow) {
                const int64_t iw0 = ow * g.stride_w - g.pad_w;
                const int64_t w0 = std::max<int64_t>(0, iw0), w1 = std::min(g.w, iw0 + g.kw);
                T *dst = out + ((b * out_h + oh) * out_w + ow) * g.c;
                std::fill(dst, dst + g.c, init);
                for (int64_t ih = h0; ih < h1; ++ih)
                    for (int64_t iw = w0; iw < w1; ++iw) {
                        const T *src = x + ((b * g.h + ih) * g.w + iw) * g.c;
                        for (int64_t c = 0; c < g.c; ++c) dst[c] = reduce(dst[c], src[c]);
                    }
            }
        }
}

// torch's update: a later tap wins only if greater or NaN, so ties and NaNs resolve alike.
inline float max_tap(float m, float v) { return (v > m || v != v) ? v : m; }

// m[i] = max_tap(m[i], src[i * stride]) for i in [lo, hi); a compile-time STRIDE (1, 2: nearly
// every pool) lets the compiler vectorise the strided loads, 0 takes `stride` at run time.
template <int STRIDE>
void max_taps(float *__restrict m, const float *__restrict src, int64_t lo, int64_t hi,
              int64_t stride) {
    const int64_t s = STRIDE > 0 ? STRIDE : stride;
    for (int64_t i = lo; i < hi; ++i) m[i] = max_tap(m[i], src[i * s]);
}

}  // namespace

void maxpool2d_bits(const PoolGeometry &g, const uint64_t *x, uint64_t *out) {
    pool2d<uint64_t>(g, x, out, ~uint64_t{0}, [](uint64_t a, uint64_t b) { return a & b; });
}

void maxpool2d_float(const PoolGeometry &g, const float *x, float *out) {
    pool2d<float>(g, x, out, -std::numeric_limits<float>::infinity(), max_tap);
}

// Separable, per channel plane: each input row's horizontal window maxima once, then each output
// row as the maximum of its window's rows. The result is still torch's: over (ih, iw) order the
// update keeps the first tap equal to the maximum (+-0 ties) or the last NaN, and both survive
// taking rows first. A group of planes is then stored a group of channels per pixel, so the
// NHWC output needs no separate transpose of the larger input.
void maxpool2d_float_nchw(const PoolGeometry &g, const float *x, float *out) {
    constexpr int64_t kGroup = 16;
    constexpr float kLowest = -std::numeric_limits<float>::infinity();
    const int64_t out_h = g.out_h(), out_w = g.out_w(), out_hw = out_h * out_w;
    std::vector<float> rows(static_cast<size_t>(g.h * out_w));
    std::vector<float> pooled(static_cast<size_t>(kGroup * out_hw));
    for (int64_t b = 0; b < g.n; ++b)
        for (int64_t c0 = 0; c0 < g.c; c0 += kGroup) {
            const int64_t nc = std::min(kGroup, g.c - c0);
            for (int64_t ci = 0; ci < nc; ++ci) {
                const float *plane = x + (b * g.c + c0 + ci) * g.h * g.w;
                std::fill(rows.begin(), rows.end(), kLowest);
                for (int64_t kw = 0; kw < g.kw; ++kw) {
                    // Outputs whose tap kw is inside the row: 0 <= ow * s - pad + kw < W.
                    const int64_t off = kw - g.pad_w, last = g.w - 1 - off;
                    const int64_t lo = off >= 0 ? 0 : (-off + g.stride_w - 1) / g.stride_w;
                    const int64_t hi = last < 0 ? 0 : std::min(out_w, last / g.stride_w + 1);
                    const auto taps = g.stride_w == 1   ? max_taps<1>
                                      : g.stride_w == 2 ? max_taps<2>
                                                        : max_taps<0>;
                    for (int64_t ih = 0; ih < g.h; ++ih)
                        taps(rows.data() + ih * out_w, plane + ih * g.w + off, lo, hi, g.stride_w);
                }
                for (int64_t oh = 0; oh < out_h; ++oh) {
                    const int64_t ih0 = oh * g.stride_h - g.pad_h;
                    const int64_t h0 = std::max<int64_t>(0, ih0), h1 = std::min(g.h, ih0 + g.kh);
                    float *m = pooled.data() + ci * out_hw + oh * out_w;
                    std::fill(m, m + out_w, kLowest);
                    for (int64_t ih = h0; ih < h1; ++ih)
                        max_taps<1>(m, rows.data() + ih * out_w, 0, out_w, 1);
                }
            }
            float *dst = out + b * out_hw * g.c + c0;
            for (int64_t p = 0; p < out_hw; ++p)
                for (int64_t ci = 0; ci < nc; ++ci) dst[p * g.c + ci] = pooled[ci * out_hw + p];
        }
}

}  // namespace bnnx
