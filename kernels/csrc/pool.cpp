// Max-pooling. On bits (1 = -1) the max of signs is +1 unless every tap is -1, so the pooled bit
// is the AND of the window's bits; padded taps are skipped like torch's -inf padding. The float
// pools can take some channels' minimum instead (see ops.h). Average pooling on float NHWC,
// written NCHW, summing and dividing as torch's CPU kernel does.
#include <algorithm>
#include <cstring>
#include <limits>
#include <type_traits>
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

// AND of both rows' pixels [w0, w1) (c words each) into dst: one output pixel of the bit pool.
BNNX_INLINE void and_window(const uint64_t *r0, const uint64_t *r1, int64_t c, int64_t w0,
                            int64_t w1, uint64_t *__restrict dst) {
    const uint64_t *a = r0 + w0 * c, *b = r1 + w0 * c;
    for (int64_t j = 0; j < c; ++j) {
        uint64_t v = a[j] & b[j];
        for (int64_t t = 1; t < w1 - w0; ++t) v &= a[t * c + j] & b[t * c + j];
        dst[j] = v;
    }
}

// A bit pool's geometry in locals (stores through its uint64_t output may alias PoolGeometry's
// int64_t fields, which would be reloaded after every one) and the output columns [lo, hi)
// whose windows lie inside the row (ow * stride_w - pad_w in [0, w - kw]), worked out once.
struct BitPool {
    int64_t h, w, c, kh, kw, stride_h, stride_w, pad_h, pad_w, out_h, out_w, lo, hi;

    explicit BitPool(const PoolGeometry &g)
        : h(g.h), w(g.w), c(g.c), kh(g.kh), kw(g.kw), stride_h(g.stride_h),
          stride_w(g.stride_w), pad_h(g.pad_h), pad_w(g.pad_w), out_h(g.out_h()),
          out_w(g.out_w()), lo(std::min(out_w, (pad_w + stride_w - 1) / stride_w)),
          hi(w - kw + pad_w < 0
                 ? lo
                 : std::max(lo, std::min(out_w, (w - kw + pad_w) / stride_w + 1))) {}
};

// One output row of the bit pool from two input rows `r0` and `r1` (the same row where the
// window has one: x & x is x): out[ow] = AND of both rows' pixels (C words each, 0 = p.c at
// run time) in ow's window. Windows inside the row run unrolled, KW columns (0 = p.kw) a
// stride apart, that stride KW where Tiled (windows side by side: the loads a fixed pattern
// the compiler vectorises across pixels); the padded edges' clipped ones by a loop.
template <int64_t C, int64_t KW, bool Tiled>
BNNX_INLINE void and_columns(const BitPool &p, const uint64_t *r0, const uint64_t *r1,
                             uint64_t *__restrict out) {
    const int64_t stride = p.stride_w, pad = p.pad_w, w = p.w;  // locals: see BitPool
    const int64_t c = C ? C : p.c, kw = KW ? KW : p.kw, step = (Tiled ? kw : stride) * c;
    const auto edge = [&](int64_t ow) {
        const int64_t iw0 = ow * stride - pad;
        and_window(r0, r1, c, std::max<int64_t>(0, iw0), std::min(w, iw0 + kw), out + ow * c);
    };
    const int64_t lo = p.lo, hi = p.hi, out_w = p.out_w;
    for (int64_t ow = 0; ow < lo; ++ow) edge(ow);
    const int64_t first = (lo * stride - pad) * c;
    const uint64_t *__restrict a = r0 + first, *__restrict b = r1 + first;
    uint64_t *__restrict dst = out + lo * c;
    for (int64_t o = 0; o < hi - lo; ++o)
        for (int64_t j = 0; j < c; ++j) {
            uint64_t v = a[o * step + j] & b[o * step + j];
            for (int64_t t = 1; t < kw; ++t)
                v &= a[o * step + t * c + j] & b[o * step + t * c + j];
            dst[o * c + j] = v;
        }
    for (int64_t ow = hi; ow < out_w; ++ow) edge(ow);
}

// and_columns for p's words per pixel (1, 2, 4 or 8 and a 2- or 3-wide window compiled in,
// side by side or not), for the widest vectors the CPU has.
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void and_row(const BitPool &p, const uint64_t *r0, const uint64_t *r1, uint64_t *out) {
    const auto width = [&](auto words) __attribute__((always_inline)) {
        constexpr int64_t C = decltype(words)::value;
        const bool tiled = p.stride_w == p.kw;
        if (p.kw == 2 && tiled) and_columns<C, 2, true>(p, r0, r1, out);
        else if (p.kw == 2) and_columns<C, 2, false>(p, r0, r1, out);
        else if (p.kw == 3 && tiled) and_columns<C, 3, true>(p, r0, r1, out);
        else if (p.kw == 3) and_columns<C, 3, false>(p, r0, r1, out);
        else and_columns<C, 0, false>(p, r0, r1, out);
    };
    switch (p.c) {
        case 1: width(std::integral_constant<int64_t, 1>{}); break;
        case 2: width(std::integral_constant<int64_t, 2>{}); break;
        case 4: width(std::integral_constant<int64_t, 4>{}); break;
        case 8: width(std::integral_constant<int64_t, 8>{}); break;
        default: width(std::integral_constant<int64_t, 0>{}); break;
    }
}

// acc = AND of the `count` rows (>= 2) of `len` words from `first`, `len` words apart.
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void and_rows(const uint64_t *first, int64_t count, int64_t len, uint64_t *__restrict acc) {
    for (int64_t k = 0; k < len; ++k) acc[k] = first[k] & first[len + k];
    for (int64_t r = 2; r < count; ++r)
        for (int64_t k = 0; k < len; ++k) acc[k] &= first[r * len + k];
}

// Output rows [begin, end) of maxpool2d_bits: a window's rows but its last ANDed word by word
// into `acc` where it has over two, then the columns of the two rows left. (Tap by tap with a
// run-time word loop, a 2x2 pool of 2-word pixels took ~45 cycles an output pixel.)
void maxpool_bits_rows(const BitPool &p, const uint64_t *x, uint64_t *out, int64_t begin,
                       int64_t end, std::vector<uint64_t> &acc) {
    const int64_t row = p.w * p.c, out_row = p.out_w * p.c;
    if (p.kh > 2) acc.resize(static_cast<size_t>(row));
    for (int64_t i = begin, b = begin / p.out_h, oh = begin % p.out_h; i < end; ++i) {
        const int64_t ih0 = oh * p.stride_h - p.pad_h;
        const int64_t h0 = std::max<int64_t>(0, ih0), h1 = std::min(p.h, ih0 + p.kh);
        const uint64_t *first = x + (b * p.h + h0) * row, *last = x + (b * p.h + h1 - 1) * row;
        if (h1 - h0 > 2) {
            and_rows(first, h1 - h0 - 1, row, acc.data());
            first = acc.data();
        }
        and_row(p, first, last, out + i * out_row);
        if (++oh == p.out_h) oh = 0, ++b;
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

// Sums of one window's taps in channels [c0, c0 + n), n <= kPoolGroup (a compile-time n keeps
// the sums in registers), in torch's order: 0, then row by row, tap by tap; then divided.
template <int64_t N>
BNNX_INLINE void average_channels(const PoolGeometry &g, const float *x, int64_t b, int64_t ih0,
                                  int64_t ih1, int64_t iw0, int64_t iw1, int64_t c0, int64_t n,
                                  int64_t divide, float *__restrict dst) {
    const int64_t count = N ? N : n;
    float sum[kPoolGroup] = {};
    for (int64_t ih = ih0; ih < ih1; ++ih)
        for (int64_t iw = iw0; iw < iw1; ++iw) {
            const float *__restrict src = x + ((b * g.h + ih) * g.w + iw) * g.c + c0;
            for (int64_t j = 0; j < count; ++j) sum[j] += src[j];
        }
    if ((divide & (divide - 1)) == 0) {  // x / 2^k = x * 2^-k exactly: a multiply
        const float inverse = 1.0f / static_cast<float>(divide);
        for (int64_t j = 0; j < count; ++j) dst[j] = sum[j] * inverse;
    } else {
        const float d = static_cast<float>(divide);
        for (int64_t j = 0; j < count; ++j) dst[j] = sum[j] / d;
    }
}

// Output rows [begin, end) of avgpool2d_float: each row pooled NHWC, straight into out, or with
// nchw into `row` (out_w * c), then moved to the NCHW planes 16 pixels at a time by the
// register transpose.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("avx2", "default")))
#endif
void avgpool_rows(const PoolGeometry &g, int64_t out_h, int64_t out_w, bool count_include_pad,
                  int64_t divisor_override, const float *x, float *out, bool nchw,
                  int64_t begin, int64_t end, std::vector<float> &row) {
    const KernelTable &kt = active_kernels();
    if (nchw) row.resize(static_cast<size_t>(out_w * g.c));
    const int64_t plane = out_h * out_w;
    for (int64_t i = begin; i < end; ++i) {
        const int64_t b = i / out_h, oh = i % out_h;
        float *pooled = nchw ? row.data() : out + i * out_w * g.c;
        for (int64_t ow = 0; ow < out_w; ++ow) {  // torch's window and divisor
            int64_t ih0 = oh * g.stride_h - g.pad_h, iw0 = ow * g.stride_w - g.pad_w;
            int64_t ih1 = std::min(ih0 + g.kh, g.h + g.pad_h);
            int64_t iw1 = std::min(iw0 + g.kw, g.w + g.pad_w);
            const int64_t pool_size = (ih1 - ih0) * (iw1 - iw0);
            ih0 = std::max<int64_t>(ih0, 0), iw0 = std::max<int64_t>(iw0, 0);
            ih1 = std::min(ih1, g.h), iw1 = std::min(iw1, g.w);
            float *dst = pooled + ow * g.c;
            if (ih0 >= ih1 || iw0 >= iw1) {
                std::fill(dst, dst + g.c, 0.0f);
                continue;
            }
            const int64_t divide = divisor_override ? divisor_override
                                   : count_include_pad ? pool_size : (ih1 - ih0) * (iw1 - iw0);
            int64_t c0 = 0;
            for (; c0 + kPoolGroup <= g.c; c0 += kPoolGroup)
                average_channels<kPoolGroup>(g, x, b, ih0, ih1, iw0, iw1, c0, kPoolGroup, divide,
                                             dst + c0);
            if (c0 < g.c)
                average_channels<0>(g, x, b, ih0, ih1, iw0, iw1, c0, g.c - c0, divide, dst + c0);
        }
        for (int64_t p0 = 0; nchw && p0 < out_w; p0 += kPoolGroup)
            kt.interleave_planes(row.data() + p0 * g.c, std::min(kPoolGroup, out_w - p0), g.c,
                                 g.c, out + b * g.c * plane + oh * out_w + p0, plane);
    }
}

}  // namespace

void avgpool2d_float(const PoolGeometry &g, int64_t out_h, int64_t out_w, bool count_include_pad,
                     int64_t divisor_override, const float *x, float *out, bool nchw,
                     int threads) {
    parallel_for(g.n * out_h, pool_threads(g.n * g.h * g.w * g.c, threads),
                 [&](int64_t begin, int64_t end) {
                     thread_local std::vector<float> row;
                     avgpool_rows(g, out_h, out_w, count_include_pad, divisor_override, x, out,
                                  nchw, begin, end, row);
                 });
}

std::vector<uint32_t> sign_flips(int64_t channels, const uint8_t *lower) {
    std::vector<uint32_t> flips(static_cast<size_t>(channels), 0u);
    if (lower)
        for (int64_t c = 0; c < channels; ++c) flips[c] = lower[c] ? 0x80000000u : 0u;
    return flips;
}

void maxpool2d_bits(const PoolGeometry &g, const uint64_t *x, uint64_t *out, int threads) {
    const BitPool p(g);
    // Words, not bits, per thread: a second thread repays waking it from a 512 KiB map on (2x2
    // pools of 2-word pixels: 256 KiB 4.1 us on one, 5.2 on two; 1 MiB 15.2 and 9.8).
    parallel_for(g.n * g.out_h(), pool_threads(g.n * g.h * g.w * g.c, threads),
                 [&](int64_t begin, int64_t end) {
                     thread_local std::vector<uint64_t> acc;
                     maxpool_bits_rows(p, x, out, begin, end, acc);
                 });
}

void maxpool2d_float(const PoolGeometry &g, const float *x, float *out, const uint8_t *lower,
                     int threads) {
    const std::vector<uint32_t> flips = lower ? sign_flips(g.c, lower) : std::vector<uint32_t>{};
    parallel_for(g.n * g.out_h(), pool_threads(g.n * g.h * g.w * g.c, threads),
                 [&](int64_t begin, int64_t end) {
                     maxpool_nhwc_rows(g, x, out, lower ? flips.data() : nullptr, begin, end);
                 });
}

// Threads take output rows, each with its own ring, carried over between its chunks.
void maxpool2d_float_nchw(const PoolGeometry &g, const float *x, float *out, const uint8_t *lower,
                          int threads) {
    const std::vector<uint32_t> flips = lower ? sign_flips(g.c, lower) : std::vector<uint32_t>{};
    const uint64_t call = MadeRows::new_call();
    parallel_for(g.n * g.out_h(), pool_threads(g.n * g.c * g.h * g.w, threads),
                 [&](int64_t begin, int64_t end) {
                     maxpool_nchw_rows(g, x, out, lower ? flips.data() : nullptr, begin, end,
                                       MadeRows::of_thread(call));
                 });
}

}  // namespace bnnx
