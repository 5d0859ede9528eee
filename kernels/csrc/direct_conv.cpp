// bnnx's direct float conv (DirectConv in isa.h) as the fast path's float convs use it: a stem
// over few input channels (the padded input built once per call, taps outside the map reading
// their channel's pad value, the raw value a folded input normalisation maps to 0; threads take
// output rows; optionally the max-pool after it in the same pass) and a 1x1 conv on NHWC pixels
// (optionally after an average pool), GEMMs on runs of pixels that threads share.
#include <algorithm>
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
// value written once. Threads take padded rows (row r of every plane) in the proportions the
// conv's threads take output rows, so each finds most of its windows in its own cache. Up to
// 4 MiB (a few 224x224 images) the map lives in a buffer the calling thread keeps from call to
// call: freed, its memory came back as the next layer's output, whose lines the other thread
// had just written here (threads pad rows of every plane, then write runs of output rows), and
// the first unit ran a third slower on 2 threads, its writes fetching those lines from the
// other core. A larger map goes in `large`, the caller's.
const float *padded_input(const ConvGeometry &g, const float *x, const float *pad_value,
                          int threads, std::vector<float> &large) {
    constexpr size_t kKept = size_t{1} << 20;  // floats
    const int64_t hp = g.h + 2 * g.pad_h, wp = g.w + 2 * g.pad_w;
    const size_t size = static_cast<size_t>(g.n * g.c_in * hp * wp);
    thread_local std::vector<float> kept;
    std::vector<float> &buffer = size <= kKept ? kept : large;
    buffer.resize(std::max(buffer.size(), size));
    float *padded = buffer.data();
    parallel_for(g.n * hp, threads, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
            const int64_t b = i / hp, r = i % hp - g.pad_h;
            for (int64_t ci = 0; ci < g.c_in; ++ci) {
                const float v = pad_value[ci];
                float *row = padded + ((b * g.c_in + ci) * hp + r + g.pad_h) * wp;
                if (r < 0 || r >= g.h) {
                    std::fill(row, row + wp, v);
                    continue;
                }
                const float *src = x + ((b * g.c_in + ci) * g.h + r) * g.w;
                std::fill(row, row + g.pad_w, v);
                std::copy(src, src + g.w, row + g.pad_w);
                std::fill(row + g.pad_w + g.w, row + wp, v);
            }
        }
    });
    return padded;
}

// Threads for `rows` output rows of `row_macs` multiply-adds each: none below 2^20 apiece.
int conv_threads(int64_t rows, int64_t row_macs, int threads) {
    return static_cast<int>(
        std::max<int64_t>(1, std::min<int64_t>(threads, rows * row_macs / (1 << 20))));
}

// The direct kernel's multiply-adds per image, the measure of either algorithm's work when
// threads are chosen: Winograd's fewer ones take about as long (its transforms and its GEMMs'
// few taps), so counted by its own it kept one thread where two paid.
int64_t nominal_macs(const ConvGeometry &g) {
    return g.out_h() * g.out_w() * g.c_out * g.c_in * g.kh * g.kw;
}

// With signs, pack_nhwc of output rows [begin, end) (of `width` pixels of c floats each), on
// the calling thread.
void pack_rows(const float *out, int64_t width, int64_t c, int64_t begin, int64_t end,
               uint64_t *signs, const float *sign_shift) {
    if (signs != nullptr)
        pack_nhwc(out + begin * width * c, (end - begin) * width, c,
                  signs + begin * width * words_for(c), 1, sign_shift);
}

// Conv row r of image b alone (the kernel's rows [0, 1) of a conv shifted down r rows), into
// `out`.
DirectConv conv_row(const ConvGeometry &g, const float *padded, const float *wb,
                    const float *bias, int64_t b, int64_t r, float *out, bool channels_outer) {
    const int64_t hp = g.h + 2 * g.pad_h, wp = g.w + 2 * g.pad_w;
    return DirectConv{padded + (b * g.c_in * hp + r * g.stride_h) * wp, g.c_in, hp, wp, g.kh,
                      g.kw, g.stride_h, g.stride_w, wb, bias, g.c_out, g.out_w(), out,
                      channels_outer};
}

}  // namespace

void direct_conv2d(const ConvGeometry &g, const float *x, const float *wb, const float *bias,
                   const float *pad_value, float *out, int threads, uint64_t *signs,
                   const float *sign_shift, const float *winograd, bool channels_outer) {
    const int64_t out_h = g.out_h(), row = g.out_w() * g.c_out;
    const int64_t sign_row = g.out_w() * words_for(g.c_out);
    if (winograd != nullptr) {
        // Threads take tile rows, each writing (and packing) its 4 conv rows.
        const int64_t tiles_h = winograd_shape(g).tiles_h;
        const uint64_t call = MadeRows::new_call();
        parallel_for(g.n * tiles_h,
                     conv_threads(g.n * tiles_h, nominal_macs(g) / tiles_h, threads),
                     [&](int64_t begin, int64_t end) {
            for (int64_t i = begin; i < end; ++i) {
                const int64_t b = i / tiles_h, first = b * out_h + i % tiles_h * 4;
                winograd_tile_row(g, x, pad_value, winograd, bias, call, b, i % tiles_h,
                                  out ? out + first * row : nullptr,
                                  signs ? signs + first * sign_row : nullptr, sign_shift);
            }
        });
        return;
    }
    const int workers = conv_threads(g.n * out_h, nominal_macs(g) / out_h, threads);
    std::vector<float> large;
    const float *padded = padded_input(g, x, pad_value, workers, large);
    const KernelTable &kt = active_kernels();
    parallel_for(g.n * out_h, workers,
                 [&](int64_t begin, int64_t end) {
                     // Signs only: each row made in the thread's buffer and packed from there.
                     thread_local std::vector<float> scratch;
                     if (out == nullptr) scratch.resize(static_cast<size_t>(row));
                     for (int64_t i = begin; i < end; ++i) {
                         float *const dst = out ? out + i * row : scratch.data();
                         kt.direct_conv_rows(conv_row(g, padded, wb, bias, i / out_h,
                                                      i % out_h, dst, channels_outer), 0, 1);
                         if (out == nullptr)
                             pack_nhwc(dst, g.out_w(), g.c_out, signs + i * sign_row, 1,
                                       sign_shift);
                     }
                     if (out != nullptr)
                         pack_rows(out, g.out_w(), g.c_out, begin, end, signs, sign_shift);
                 });
}

// With Winograd, each tile row's 4 conv rows are made together into the pool's ring.
void direct_conv2d_maxpool(const ConvGeometry &g, const float *x, const float *wb,
                           const float *bias, const float *pad_value, const PoolGeometry &pool,
                           const uint8_t *lower, float *out, int threads, uint64_t *signs,
                           const float *sign_shift, const float *winograd,
                           bool channels_outer) {
    const int64_t out_h = pool.out_h();
    const int workers = conv_threads(g.n * out_h, nominal_macs(g) / out_h, threads);
    std::vector<float> large;
    const float *padded = winograd ? nullptr : padded_input(g, x, pad_value, workers, large);
    const std::vector<uint32_t> flips = sign_flips(g.c_out, lower);
    const KernelTable &kt = active_kernels();
    const uint64_t call = MadeRows::new_call();
    parallel_for(g.n * out_h, workers, [&](int64_t begin, int64_t end) {
        MadeRows &made = MadeRows::of_thread(call);
        const uint32_t *flip = lower ? flips.data() : nullptr;
        if (winograd)
            pool_made_rows(pool, flip, out, begin, end, made,
                           [&](int64_t b, int64_t r, float *dst) {
                               winograd_tile_row(g, x, pad_value, winograd, bias, call, b,
                                                 r / 4, dst);
                           }, 4);
        else
            pool_made_rows(pool, flip, out, begin, end, made,
                           [&](int64_t b, int64_t r, float *dst) {
                               kt.direct_conv_rows(
                                   conv_row(g, padded, wb, bias, b, r, dst, channels_outer), 0,
                                   1);
                           });
        pack_rows(out, pool.out_w(), g.c_out, begin, end, signs, sign_shift);
    });
}

namespace {

constexpr int64_t kTile = 6;  // pixels the native kernel's widest tile takes

// Pixels per work item of a pointwise conv: whole tiles, at most 48, and few enough that each
// thread gets four items or more, so shares come out even (a 7x7 map's 49 pixels were one
// item of 48 and one of 1: the second thread had nothing to do).
int64_t pointwise_run(int64_t pixels, int threads) {
    constexpr int64_t kMax = 48;
    const int64_t wanted = (pixels + 4 * threads - 1) / (4 * threads);
    return std::min(kMax, std::max(kTile, wanted / kTile * kTile));
}

// The pointwise conv of `pixels` NHWC pixels, each output value bias + its taps in order
// whatever the split: the pixels as one row of a conv whose kernel row spans the channels (tap
// j of output pixel o reads x[o * c_in + j], kw = stride_w = c_in). Threads take runs of
// pixels, which share one pass over each block's weights; with fewer pixels than threads have
// tiles (a head's GEMV over a batch), single pixels' groups of 64 output channels instead, so
// each thread reads only its part of the weights, its share in one chunk, making each pixel's
// input once. A run's input is input(p0, n, scratch): its n * c_in floats, in the caller's
// map or made in scratch.
template <class Input>
void pointwise_runs(int64_t pixels, int64_t c_in, const float *wb, const float *bias,
                    int64_t c_out, float *out, int threads, const Input &input) {
    const KernelTable &kt = active_kernels();
    if (pixels < kTile * threads) {
        // A GEMV reads each weight once for one multiply-add per pixel: a thread per 2^17
        // weights (half a MiB) at least, not conv_threads' 2^20 multiply-adds.
        constexpr int64_t kGroup = 64;
        const int64_t groups = (c_out + kGroup - 1) / kGroup;
        const int workers = static_cast<int>(std::max<int64_t>(
            1, std::min<int64_t>(threads, pixels * c_in * c_out / (1 << 17))));
        parallel_for(pixels * groups, workers, groups, [&](int64_t begin, int64_t end) {
            std::vector<float> scratch;
            const float *in = nullptr;
            for (int64_t i = begin; i < end; ++i) {
                const int64_t p = i / groups, c0 = i % groups * kGroup;
                if (i == begin || c0 == 0) in = input(p, 1, scratch);
                const DirectConv d{in, 1, 1, c_in, 1, c_in, 1, c_in, wb + c0 * c_in, bias + c0,
                                   std::min(kGroup, c_out - c0), 1, out + p * c_out + c0};
                kt.direct_conv_rows(d, 0, 1);
            }
        });
        return;
    }
    const int64_t run = pointwise_run(pixels, threads);
    parallel_for((pixels + run - 1) / run, conv_threads(pixels, c_in * c_out, threads),
                 [&](int64_t begin, int64_t end) {
        std::vector<float> scratch;
        for (int64_t i = begin; i < end; ++i) {
            const int64_t p0 = i * run, n = std::min(pixels, p0 + run) - p0;
            const DirectConv d{input(p0, n, scratch), 1, 1, n * c_in, 1, c_in, 1, c_in, wb,
                               bias, c_out, n, out + p0 * c_out};
            kt.direct_conv_rows(d, 0, 1);
        }
    });
}

// The average pool of avgpool_pointwise_conv2d, output pixels [p0, p0 + n) into out: each
// value its window's sum in torch's tap order divided by the number of taps inside the map; a
// plain loop over channels, cloned for the vector ISAs (the library's baseline is SSE2) and
// picked by the loader from cpuid.
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void avgpool_nhwc(const PoolGeometry &pool, int64_t out_h, int64_t out_w, const float *x,
                  int64_t p0, int64_t n, float *out) {
    const int64_t c = pool.c;
    float *__restrict dst = out;
    for (int64_t p = p0; p < p0 + n; ++p, dst += c) {
        const int64_t b = p / (out_h * out_w), oh = p / out_w % out_h, ow = p % out_w;
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

void pointwise_conv2d(const float *x, int64_t pixels, int64_t c_in, const float *wb,
                      const float *bias, int64_t c_out, float *out, int threads) {
    pointwise_runs(pixels, c_in, wb, bias, c_out, out, threads,
                   [&](int64_t p0, int64_t, std::vector<float> &) { return x + p0 * c_in; });
}

// Each run pools its own pixels just before its GEMM, on the same thread: no pooled map, no
// second pass over the input on one thread, and a thread pools the rows its share of the
// previous layer wrote.
void avgpool_pointwise_conv2d(const PoolGeometry &pool, int64_t out_h, int64_t out_w,
                              const float *x, const float *wb, const float *bias, int64_t c_out,
                              float *out, int threads) {
    pointwise_runs(pool.n * out_h * out_w, pool.c, wb, bias, c_out, out, threads,
                   [&](int64_t p0, int64_t n, std::vector<float> &scratch) {
                       scratch.resize(static_cast<size_t>(n * pool.c));
                       avgpool_nhwc(pool, out_h, out_w, x, p0, n, scratch.data());
                       return static_cast<const float *>(scratch.data());
                   });
}

}  // namespace bnnx
