// Max-pooling. On bits (1 = -1) the max of signs is +1 unless every tap is -1, so the pooled bit
// is the AND of the window's bits; padded taps are skipped like torch's -inf padding.
#include <algorithm>
#include <limits>

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

}  // namespace

void maxpool2d_bits(const PoolGeometry &g, const uint64_t *x, uint64_t *out) {
    pool2d<uint64_t>(g, x, out, ~uint64_t{0}, [](uint64_t a, uint64_t b) { return a & b; });
}

void maxpool2d_float(const PoolGeometry &g, const float *x, float *out) {
    // NaN propagates, as in torch.
    pool2d<float>(g, x, out, -std::numeric_limits<float>::infinity(), [](float a, float b) {
        return (b > a || b != b) ? b : a;
    });
}

}  // namespace bnnx
