// Portable tile and epilogue shared by the scalar tables; each isa_*.cpp instantiates them under
// its own target attribute so __builtin_popcountll lowers to the best instruction available there.
// The SIMD tables keep this epilogue's arithmetic exactly (see TileOut in isa.h).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "isa.h"

namespace bnnx {
namespace generic {

// Act on channel c's value y (TileOut::act; no contraction: each step rounds as torch's does).
__attribute__((always_inline)) inline float activate(const TileOut &o, int64_t c, float y) {
    if (o.act == Act::hardtanh) {
        y = y < o.low ? o.low : y;
        return y > o.high ? o.high : y;
    }
    if (o.act == Act::rprelu) y -= o.gamma[c];
    y = y > 0.0f ? y : o.slope[c] * y;
    return o.act == Act::rprelu ? y + o.zeta[c] : y;
}

// Writes one pixel's outputs for the 8-channel block starting at channel c0 from its popcount
// sums pc[0..8).
__attribute__((always_inline)) inline void epilogue(const TileOut &o, int64_t pixel, int64_t c0,
                                                    const int32_t *pc) {
    unsigned byte = 0, signs = 0;
    for (int64_t l = 0; l < kBlock && c0 + l < o.c_out; ++l) {
        const int64_t c = c0 + l;
        const int32_t dot = o.base - 2 * pc[l] + (o.corr ? o.corr[c] : 0);
        if (o.kind == OutKind::dots) {
            static_cast<int32_t *>(o.out)[pixel * o.pixel_stride + c] = dot;
        } else if (o.kind == OutKind::floats || o.kind == OutKind::unit) {
            const float prod = o.scale[c] * static_cast<float>(dot);
            float y = prod + o.bias[c];
            const int64_t at = pixel * o.pixel_stride + c;
            if (o.kind == OutKind::unit) {
                y = std::fma(y, o.alpha[c], o.beta[c]);
                if (o.residual)
                    y += o.residual[pixel * o.residual_stride + c % o.residual_channels];
                if (o.act != Act::none) y = activate(o, c, y);
                if (o.signs) {
                    const float t = o.sign_shift ? y - o.sign_shift[c] : y;
                    signs |= unsigned(!(t >= 0.0f)) << l;
                }
            }
            static_cast<float *>(o.out)[at] = y;
        } else {
            const bool up = (o.dir_pos[c0 / kBlock] >> l) & 1u;
            byte |= unsigned(up ? dot >= o.threshold[c] : dot <= o.threshold[c]) << l;
        }
    }
    if (o.kind == OutKind::bits)
        static_cast<uint8_t *>(o.out)[pixel * o.pixel_stride + c0 / kBlock] =
            static_cast<uint8_t>(byte);
    if (o.kind == OutKind::unit && o.signs)
        o.signs[pixel * o.signs_stride + c0 / kBlock] = static_cast<uint8_t>(signs);
}

// The word loop of a tile whose counters are narrow (bytes, 16-bit lanes): word(a, w, k) for
// every weight word k of every kernel row (a: that row of the tile's first pixel, whose input
// starts at a0; w: the block's weight row), with flush() before the counters could take more
// than max_run words.
template <typename Word, typename Flush>
__attribute__((always_inline)) inline void for_each_word(const Tile &t, const uint64_t *a0,
                                                         const uint64_t *w0, int64_t max_run,
                                                         Word &&word, Flush &&flush) {
    int64_t pending = 0;  // words summed since the last flush
    for (int64_t r = 0; r < t.nrows; ++r) {
        const uint64_t *a = a0 + t.a_row_off[r];
        const uint64_t *w = w0 + t.w_row_off[r] * kBlock;
        for (int64_t k0 = 0; k0 < t.run; k0 += max_run) {
            const int64_t k1 = t.run < k0 + max_run ? t.run : k0 + max_run;
            if (pending + k1 - k0 > max_run) flush(), pending = 0;
            pending += k1 - k0;
            for (int64_t k = k0; k < k1; ++k) word(a, w, k);
        }
    }
    flush();
}

// One pixel and one 8-channel block at a time: the 8 lanes are 8 independent popcount chains.
__attribute__((always_inline)) inline void bconv_tile(const Tile &t, const TileOut &o) {
    for (int64_t q = 0, n = t.rows * t.tiles * t.mr; q < n; ++q) {
        const int64_t row = q / (t.tiles * t.mr), i = q % (t.tiles * t.mr);
        const uint64_t *a = t.a + row * t.a_row_stride + i * t.a_pixel_stride;
        for (int j = 0; j < t.nr; ++j) {
            const uint64_t *w = t.w + (t.block0 + j) * t.w_block_stride * kBlock;
            uint64_t acc[kBlock] = {};
            for (int64_t r = 0; r < t.nrows; ++r) {
                const uint64_t *ar = a + t.a_row_off[r];
                const uint64_t *wr = w + t.w_row_off[r] * kBlock;
                for (int64_t k = 0; k < t.run; ++k)
                    for (int64_t l = 0; l < kBlock; ++l)
                        acc[l] += static_cast<uint64_t>(
                            __builtin_popcountll(ar[k] ^ wr[k * kBlock + l]));
            }
            int32_t pc[kBlock];
            for (int64_t l = 0; l < kBlock; ++l) pc[l] = static_cast<int32_t>(acc[l]);
            epilogue(o, row * t.out_row_stride + i, (t.block0 + j) * kBlock, pc);
        }
    }
}

// Eight independent popcount chains, as in the tile.
__attribute__((always_inline)) inline uint64_t peak_loop(int64_t iters, uint64_t *checksum) {
    uint64_t v[kBlock], acc[kBlock] = {};
    for (int64_t l = 0; l < kBlock; ++l) v[l] = 0x9e3779b97f4a7c15ull * uint64_t(l + 1);
    uint64_t a = 0x0123456789abcdefull;
    for (int64_t i = 0; i < iters; ++i) {
        asm volatile("" : "+r"(a));  // a is "new" each iteration: nothing is hoisted
        for (int64_t l = 0; l < kBlock; ++l)
            acc[l] += static_cast<uint64_t>(__builtin_popcountll(a ^ v[l]));
    }
    for (int64_t l = 0; l < kBlock; ++l) *checksum += acc[l];
    return static_cast<uint64_t>(iters) * kBlock * 64;
}

// Sixteen independent multiply-add chains (a * acc + b: the portable tables assume no FMA);
// a = 1 and b = 0 come through a volatile, so the compiler can neither fold nor hoist them.
__attribute__((always_inline)) inline uint64_t float_peak_loop(int64_t iters, float *checksum) {
    constexpr int kChains = 16;
    static volatile float one = 1.0f, zero = 0.0f;
    const float a = one, b = zero;
    float acc[kChains];
    for (int i = 0; i < kChains; ++i) acc[i] = static_cast<float>(i);
    for (int64_t it = 0; it < iters; ++it)
        for (int i = 0; i < kChains; ++i) acc[i] = a * acc[i] + b;
    for (int i = 0; i < kChains; ++i) *checksum += acc[i];
    return static_cast<uint64_t>(iters) * kChains;
}

#if defined(__x86_64__) || defined(__i386__)
// kChains independent chains acc = fma(a, acc, b) on vectors V (a = 1, b = 0, "new" to the
// compiler each iteration, so nothing is folded or hoisted): as many chains as FMA latency x
// ports need, the most multiply-adds a core gives at V's width. fma: the ISA's intrinsic.
template <int kChains, class V, class Fma>
__attribute__((always_inline)) inline uint64_t fma_peak_chains(int64_t iters, float *checksum,
                                                              Fma fma) {
    constexpr int kLanes = sizeof(V) / sizeof(float);
    V acc[kChains], a, b;
    for (int l = 0; l < kLanes; ++l) {
        a[l] = 1.0f, b[l] = 0.0f;
        for (int i = 0; i < kChains; ++i) acc[i][l] = static_cast<float>(i);
    }
    for (int64_t it = 0; it < iters; ++it) {
        asm volatile("" : "+v"(a), "+v"(b));
        for (int i = 0; i < kChains; ++i) acc[i] = fma(a, acc[i], b);
    }
    for (int i = 0; i < kChains; ++i)
        for (int l = 0; l < kLanes; ++l) *checksum += acc[i][l];
    return static_cast<uint64_t>(iters) * kChains * kLanes;
}
#endif

// Four floats per compare where SSE2 is baseline (x86-64), else one at a time.
__attribute__((always_inline)) inline void sign_masks(const float *x, const float *shift,
                                                      int64_t n, uint64_t *out) {
    for (int64_t i = 0; i * 64 < n; ++i) {
        const int64_t end = n - i * 64 < 64 ? n - i * 64 : 64;
        const float *p = x + i * 64, *s = shift ? shift + i * 64 : nullptr;
        uint64_t mask = 0;
        int64_t j = 0;
#if defined(__SSE2__)
        const __m128 zero = _mm_setzero_ps();
        for (; j + 4 <= end; j += 4) {
            __m128 v = _mm_loadu_ps(p + j);
            if (s) v = _mm_sub_ps(v, _mm_loadu_ps(s + j));
            mask |= uint64_t(_mm_movemask_ps(_mm_cmpnge_ps(v, zero))) << j;
        }
#endif
        for (; j < end; ++j) mask |= uint64_t(!((s ? p[j] - s[j] : p[j]) >= 0.0f)) << j;
        out[i] = mask;
    }
}

// torch's max-pool update: a later tap wins only if greater or NaN, so ties and NaNs resolve alike.
__attribute__((always_inline)) inline float max_tap(float m, float v) {
    return (v > m || v != v) ? v : m;
}

// x with `flip` XORed into its bits: a sign flip where flip is the sign bit, exact for NaNs.
__attribute__((always_inline)) inline float flip_sign(float x, uint32_t flip) {
    uint32_t bits;
    std::memcpy(&bits, &x, sizeof bits);
    bits ^= flip;
    std::memcpy(&x, &bits, sizeof bits);
    return x;
}

__attribute__((always_inline)) inline void max_pool_row(const float *const *rows, int64_t nrows,
                                                        int64_t w, int64_t c, int64_t kw,
                                                        int64_t stride, int64_t pad,
                                                        int64_t out_w, const uint32_t *flip,
                                                        float *out) {
    for (int64_t o = 0; o < out_w; ++o) {
        const int64_t i0 = o * stride - pad;
        const int64_t k0 = i0 < 0 ? -i0 : 0, k1 = kw < w - i0 ? kw : w - i0;
        float *__restrict dst = out + o * c;
        for (int64_t ch = 0; ch < c; ++ch) dst[ch] = -std::numeric_limits<float>::infinity();
        for (int64_t r = 0; r < nrows; ++r)
            for (int64_t k = k0; k < k1; ++k) {
                const float *__restrict src = rows[r] + (i0 + k) * c;
                if (flip)
                    for (int64_t ch = 0; ch < c; ++ch)
                        dst[ch] = max_tap(dst[ch], flip_sign(src[ch], flip[ch]));
                else
                    for (int64_t ch = 0; ch < c; ++ch) dst[ch] = max_tap(dst[ch], src[ch]);
            }
        if (flip)
            for (int64_t ch = 0; ch < c; ++ch) dst[ch] = flip_sign(dst[ch], flip[ch]);
    }
}

__attribute__((always_inline)) inline void direct_conv_rows(const DirectConv &d, int64_t begin,
                                                            int64_t end) {
    const int64_t taps = d.c_in * d.kh * d.kw;
    for (int64_t r = begin; r < end; ++r)
        for (int64_t o = 0; o < d.out_w; ++o) {
            float *__restrict dst = d.out + (r * d.out_w + o) * d.c_out;
            for (int64_t co = 0; co < d.c_out; ++co) {
                const float *w = d.w + co / 16 * taps * 16 + co % 16;
                float sum = d.bias[co];
                const auto tap = [&](int64_t ci, int64_t i, int64_t j) {
                    sum += *w * d.x[(ci * d.hp + r * d.stride_h + i) * d.wp + o * d.stride_w + j];
                    w += 16;
                };
                for_each_tap(d, tap);
                dst[co] = sum;
            }
        }
}

// In-place 64x64 bit-matrix transpose (bit j of a[i] <-> bit i of a[j]) by swapping ever
// smaller off-diagonal blocks: 6 rounds of 32 word pairs instead of 4096 single bits.
__attribute__((always_inline)) inline void transpose_bits(uint64_t a[64]) {
    uint64_t m = 0x00000000ffffffffull;
    for (int j = 32; j != 0; j >>= 1, m ^= m << j)
        for (int k = 0; k < 64; k = ((k | j) + 1) & ~j) {
            const uint64_t t = ((a[k] >> j) ^ a[k | j]) & m;
            a[k] ^= t << j;
            a[k | j] ^= t;
        }
}

__attribute__((always_inline)) inline void interleave_planes(const float *src, int64_t planes,
                                                             int64_t src_stride, int64_t n,
                                                             float *dst, int64_t dst_stride) {
    for (int64_t p = 0; p < n; ++p)
        for (int64_t c = 0; c < planes; ++c) dst[p * dst_stride + c] = src[c * src_stride + p];
}

}  // namespace generic
}  // namespace bnnx
