// bnnx's direct float conv (DirectConv in isa.h) as the fast path's float convs use it: a stem
// over few input channels (the padded input built once per call, taps outside the map reading
// their channel's pad value, the raw value a folded input normalisation maps to 0; threads take
// output rows; optionally the max-pool after it in the same pass) and a 1x1 conv on NHWC pixels
// (optionally after an average pool), one GEMM.
#include <algorithm>
#include <memory>
#include <vector>

#include "isa.h"
#include "ops.h"
#include "parallel.h"
#include "pool_rows.h"

namespace bnnx {

void block_float_weights(const float *w, int64_t c_out, int64_t k, float *out) {
    std::fill(out, out + (c_out + 15) / 16 * k * 16, 0.0f);
    for (int64_t co = 0; co < c_out; ++co)
        for (int64_t t = 0; t < k; ++t) out[(co / 16 * k + t) * 16 + co % 16] = w[co * k + t];
}

namespace {

// x's images with every plane padded by its channel's pad value: (n, c_in, hp, wp), each
// value written once.
std::unique_ptr<float[]> padded_input(const ConvGeometry &g, const float *x,
                                      const float *pad_value) {
    const int64_t wp = g.w + 2 * g.pad_w, plane = (g.h + 2 * g.pad_h) * wp;
    std::unique_ptr<float[]> padded(new float[static_cast<size_t>(g.n * g.c_in * plane)]);
    for (int64_t p = 0; p < g.n * g.c_in; ++p) {
        const float v = pad_value[p % g.c_in];
        float *dst = padded.get() + p * plane;
        std::fill(dst, dst + g.pad_h * wp, v);  // top rows
        for (int64_t r = 0; r < g.h; ++r) {
            float *row = dst + (r + g.pad_h) * wp;
            std::fill(row, row + g.pad_w, v);
            std::copy(x + (p * g.h + r) * g.w, x + (p * g.h + r + 1) * g.w, row + g.pad_w);
            std::fill(row + g.pad_w + g.w, row + wp, v);
        }
        std::fill(dst + (g.h + g.pad_h) * wp, dst + plane, v);  // bottom rows
    }
    return padded;
}

// Threads for `rows` output rows of `row_macs` multiply-adds each: none below 2^20 apiece.
int conv_threads(int64_t rows, int64_t row_macs, int threads) {
    return static_cast<int>(
        std::max<int64_t>(1, std::min<int64_t>(threads, rows * row_macs / (1 << 20))));
}

// Conv row r of image b alone (the kernel's rows [0, 1) of a conv shifted down r rows), into
// `out`.
DirectConv conv_row(const ConvGeometry &g, const float *padded, const float *wb,
                    const float *bias, int64_t b, int64_t r, float *out) {
    const int64_t hp = g.h + 2 * g.pad_h, wp = g.w + 2 * g.pad_w;
    return DirectConv{padded + (b * g.c_in * hp + r * g.stride_h) * wp, g.c_in, hp, wp, g.kh,
                      g.kw, g.stride_h, g.stride_w, wb, bias, g.c_out, g.out_w(), out};
}

}  // namespace

void direct_conv2d(const ConvGeometry &g, const float *x, const float *wb, const float *bias,
                   const float *pad_value, float *out, int threads) {
    const std::unique_ptr<float[]> padded = padded_input(g, x, pad_value);
    const KernelTable &kt = active_kernels();
    const int64_t out_h = g.out_h(), row = g.out_w() * g.c_out;
    parallel_for(g.n * out_h, conv_threads(g.n * out_h, row * g.c_in * g.kh * g.kw, threads),
                 [&](int64_t begin, int64_t end) {
                     for (int64_t i = begin; i < end; ++i)
                         kt.direct_conv_rows(conv_row(g, padded.get(), wb, bias, i / out_h,
                                                      i % out_h, out + i * row), 0, 1);
                 });
}

void direct_conv2d_maxpool(const ConvGeometry &g, const float *x, const float *wb,
                           const float *bias, const float *pad_value, const PoolGeometry &pool,
                           const uint8_t *lower, float *out, int threads) {
    const std::unique_ptr<float[]> padded = padded_input(g, x, pad_value);
    const std::vector<uint32_t> flips = sign_flips(g.c_out, lower);
    const KernelTable &kt = active_kernels();
    const int64_t out_h = pool.out_h();
    const int64_t work = g.out_h() * g.out_w() * g.c_out * g.c_in * g.kh * g.kw / out_h;
    parallel_for(g.n * out_h, conv_threads(g.n * out_h, work, threads),
                 [&](int64_t begin, int64_t end) {
                     pool_made_rows(pool, lower ? flips.data() : nullptr, out, begin, end,
                                    [&](int64_t b, int64_t r, float *dst) {
                                        kt.direct_conv_rows(conv_row(g, padded.get(), wb, bias,
                                                                     b, r, dst), 0, 1);
                                    });
                 });
}

void pointwise_conv2d(const float *x, int64_t pixels, int64_t c_in, const float *wb,
                      const float *bias, int64_t c_out, float *out, int threads) {
    // The pixels as one row of a conv whose kernel row spans the channels: tap j of output
    // pixel o reads x[o * c_in + j] (kw = stride_w = c_in), so all pixels share one pass over
    // each block's weights. Threads take runs of whole 6-pixel tiles.
    constexpr int64_t kRun = 48;
    const KernelTable &kt = active_kernels();
    parallel_for((pixels + kRun - 1) / kRun, conv_threads(pixels, c_in * c_out, threads),
                 [&](int64_t begin, int64_t end) {
        const int64_t p0 = begin * kRun, n = std::min(pixels, end * kRun) - p0;
        const DirectConv d{x + p0 * c_in, 1, 1, n * c_in, 1, c_in, 1, c_in, wb, bias, c_out, n,
                           out + p0 * c_out};
        kt.direct_conv_rows(d, 0, 1);
    });
}

namespace {

// The average pool of avgpool_pointwise_conv2d: each value its window's sum in torch's tap
// order divided by the number of taps inside the map; a plain loop over channels, cloned for the
// vector ISAs (the library's baseline is SSE2) and picked by the loader from cpuid.
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void avgpool_nhwc(const PoolGeometry &pool, int64_t out_h, int64_t out_w, const float *x,
                  float *out) {
    const int64_t c = pool.c;
    float *__restrict dst = out;
    for (int64_t b = 0; b < pool.n; ++b)
        for (int64_t oh = 0; oh < out_h; ++oh)
            for (int64_t ow = 0; ow < out_w; ++ow, dst += c) {
                const int64_t h0 = oh * pool.stride_h, h1 = std::min(pool.h, h0 + pool.kh);
                const int64_t w0 = ow * pool.stride_w, w1 = std::min(pool.w, w0 + pool.kw);
                std::fill(dst, dst + c, 0.0f);
                for (int64_t r = h0; r < h1; ++r)
                    for (int64_t k = w0; k < w1; ++k) {
                        const float *__restrict src = x + ((b * pool.h + r) * pool.w + k) * c;
                        for (int64_t ch = 0; ch < c; ++ch) dst[ch] += src[ch];
                    }
                const float taps = static_cast<float>((h1 - h0) * (w1 - w0));
                for (int64_t ch = 0; ch < c; ++ch) dst[ch] /= taps;
            }
}

}  // namespace

void avgpool_pointwise_conv2d(const PoolGeometry &pool, int64_t out_h, int64_t out_w,
                              const float *x, const float *wb, const float *bias, int64_t c_out,
                              float *out, int threads) {
    const int64_t pixels = pool.n * out_h * out_w;
    const std::unique_ptr<float[]> pooled(new float[static_cast<size_t>(pixels * pool.c)]);
    avgpool_nhwc(pool, out_h, out_w, x, pooled.get());
    pointwise_conv2d(pooled.get(), pixels, pool.c, wb, bias, c_out, out, threads);
}

}  // namespace bnnx
