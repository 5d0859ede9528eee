// AVX2 and FMA (Haswell, Zen 1 and later) without a vector popcount: Mula's nibble lookup. Each
// byte's two nibbles index a 16-entry table with vpshufb; byte counts (at most 8 per word) pile up
// in byte lanes for up to 31 words, then vpsadbw folds them into 64-bit lanes. This file alone is
// compiled with -mavx2 -mfma (CMakeLists.txt) and only entered after cpuid reported both.
#include <cstdint>

#include "isa.h"
#include "microkernel_generic.h"

#if defined(__x86_64__) || defined(_M_X64)

#include <immintrin.h>

namespace bnnx {
namespace {

constexpr int kMr = 4;                // pixels per tile; one block of 8 channels = 2 ymm
constexpr int64_t kMaxByteRun = 31;   // 31 * 8 < 256: byte lanes cannot overflow

struct Popcount {
    __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                   0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    __m256i low = _mm256_set1_epi8(0x0f);

    // Per-byte popcounts of v.
    __m256i bytes(__m256i v) const {
        const __m256i lo = _mm256_shuffle_epi8(lut, _mm256_and_si256(v, low));
        const __m256i hi = _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(v, 4), low));
        return _mm256_add_epi8(lo, hi);
    }
};

// Act on 8 channels from c: the scalar recipe of Act, lane by lane (y > 0 false for NaN).
inline __m256 activate(const TileOut &o, int64_t c, __m256 y) {
    if (o.act == Act::hardtanh) {
        const __m256 low = _mm256_set1_ps(o.low), high = _mm256_set1_ps(o.high);
        y = _mm256_blendv_ps(y, low, _mm256_cmp_ps(y, low, _CMP_LT_OQ));
        return _mm256_blendv_ps(y, high, _mm256_cmp_ps(y, high, _CMP_GT_OQ));
    }
    const bool shifted = o.act == Act::rprelu;
    if (shifted) y = _mm256_sub_ps(y, _mm256_loadu_ps(o.gamma + c));
    const __m256 scaled = _mm256_mul_ps(_mm256_loadu_ps(o.slope + c), y);
    y = _mm256_blendv_ps(scaled, y, _mm256_cmp_ps(y, _mm256_setzero_ps(), _CMP_GT_OQ));
    return shifted ? _mm256_add_ps(y, _mm256_loadu_ps(o.zeta + c)) : y;
}

// The TileOut epilogue on the 8 channels of one block as int32 lanes, its per-block constants
// set up once per call. Bits: bit = (pc <= limit) XOR flip with limit as in isa_avx512.cpp, and
// INT32_MAX on channels >= C_out, so they read 0.
template <OutKind KIND>
struct BlockOut {
    int64_t c0;
    __m256i e;       // bits: the pc limit; other kinds: base + corr
    __m256i lanes;   // all ones on channels < C_out
    int unflip = 0;  // bits: channels < C_out with direction +1

    BlockOut(const TileOut &o, int64_t block) : c0(block * kBlock) {
        const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        lanes = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(o.c_out - c0)), lane);
        e = _mm256_set1_epi32(o.base);
        if (o.corr) e = _mm256_add_epi32(e, _mm256_loadu_si256((const __m256i *)(o.corr + c0)));
        if (KIND != OutKind::bits) return;
        const int valid = _mm256_movemask_ps(_mm256_castsi256_ps(lanes));
        unflip = o.dir_pos[block] & valid;
        // Lane l of `flip` is all ones when channel l has direction -1.
        const __m256i bit = _mm256_sllv_epi32(_mm256_set1_epi32(1), lane);
        const __m256i flip =
            _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32(~unflip), bit), bit);
        const __m256i d = _mm256_add_epi32(
            _mm256_sub_epi32(e, _mm256_loadu_si256((const __m256i *)(o.threshold + c0))), flip);
        e = _mm256_blendv_epi8(_mm256_set1_epi32(INT32_MAX), _mm256_srai_epi32(d, 1), lanes);
    }

    // Writes one pixel's outputs from its 8 popcount sums.
    void store(const TileOut &o, int64_t pixel, __m256i pc) const {
        const int64_t at = pixel * o.pixel_stride;
        if (KIND == OutKind::bits) {
            // (pc <= limit) ^ flip == (pc > limit) ^ unflip on channels < C_out, 0 past them.
            const int gt = _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(pc, e)));
            static_cast<uint8_t *>(o.out)[at + c0 / kBlock] = static_cast<uint8_t>(gt ^ unflip);
            return;
        }
        const __m256i dot = _mm256_sub_epi32(e, _mm256_slli_epi32(pc, 1));
        if (KIND == OutKind::dots) {
            _mm256_maskstore_epi32(static_cast<int32_t *>(o.out) + at + c0, lanes, dot);
            return;
        }
        const __m256 prod = _mm256_mul_ps(_mm256_loadu_ps(o.scale + c0), _mm256_cvtepi32_ps(dot));
        __m256 y = _mm256_add_ps(prod, _mm256_loadu_ps(o.bias + c0));
        if (KIND == OutKind::unit) {
            y = _mm256_fmadd_ps(y, _mm256_loadu_ps(o.alpha + c0), _mm256_loadu_ps(o.beta + c0));
            if (o.residual)
                y = _mm256_add_ps(y, _mm256_maskload_ps(o.residual + pixel * o.residual_stride +
                                                            c0 % o.residual_channels,
                                                        lanes));
            if (o.act != Act::none) y = activate(o, c0, y);
            if (o.signs) {
                const __m256 t =
                    o.sign_shift ? _mm256_sub_ps(y, _mm256_loadu_ps(o.sign_shift + c0)) : y;
                const int negative =
                    _mm256_movemask_ps(_mm256_cmp_ps(t, _mm256_setzero_ps(), _CMP_NGE_UQ)) &
                    _mm256_movemask_ps(_mm256_castsi256_ps(lanes));
                o.signs[pixel * o.signs_stride + c0 / kBlock] = static_cast<uint8_t>(negative);
            }
        }
        _mm256_maskstore_ps(static_cast<float *>(o.out) + at + c0, lanes, y);
    }
};

// Output pixels pixel .. pixel + MR - 1 of the call (input from a0 on), one block of 8
// channels. Byte counts carry over kernel rows, so short runs (few channels) pay for one
// vpsadbw per pixel, not one per row.
template <OutKind KIND, int MR>
void tile_block(const Tile &t, const TileOut &o, const BlockOut<KIND> &out, const uint64_t *a0,
                int64_t pixel) {
    const Popcount pc;
    const uint64_t *w0 = t.w + out.c0 * t.w_block_stride;
    __m256i acc[MR][2], part[MR][2];
    for (int i = 0; i < MR; ++i)
        for (int h = 0; h < 2; ++h) acc[i][h] = part[i][h] = _mm256_setzero_si256();
    auto flush = [&] {
        for (int i = 0; i < MR; ++i)
            for (int h = 0; h < 2; ++h) {
                acc[i][h] = _mm256_add_epi64(acc[i][h],
                                             _mm256_sad_epu8(part[i][h], _mm256_setzero_si256()));
                part[i][h] = _mm256_setzero_si256();
            }
    };
    generic::for_each_word(t, a0, w0, kMaxByteRun, [&](const uint64_t *a, const uint64_t *w,
                                                           int64_t k) {
        const __m256i w_lo = _mm256_loadu_si256((const __m256i *)(w + k * kBlock));
        const __m256i w_hi = _mm256_loadu_si256((const __m256i *)(w + k * kBlock + 4));
        for (int i = 0; i < MR; ++i) {
            const __m256i b =
                _mm256_set1_epi64x(static_cast<long long>(a[i * t.a_pixel_stride + k]));
            part[i][0] = _mm256_add_epi8(part[i][0], pc.bytes(_mm256_xor_si256(b, w_lo)));
            part[i][1] = _mm256_add_epi8(part[i][1], pc.bytes(_mm256_xor_si256(b, w_hi)));
        }
    }, flush);
    // Channels 0-3 and 4-7 are 64-bit lanes of two registers (sums < 2^32): interleave their
    // low halves, then order them 0..7.
    const __m256i order = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    for (int i = 0; i < MR; ++i)
        out.store(o, pixel + i,
                  _mm256_permutevar8x32_epi32(
                      _mm256_or_si256(acc[i][0], _mm256_slli_epi64(acc[i][1], 32)), order));
}

template <OutKind KIND>
void tile_kind(const Tile &t, const TileOut &o) {
    static void (*const kByMr[kMr])(const Tile &, const TileOut &, const BlockOut<KIND> &,
                                    const uint64_t *, int64_t) = {
        tile_block<KIND, 1>, tile_block<KIND, 2>, tile_block<KIND, 3>, tile_block<KIND, 4>};
    for (int j = 0; j < t.nr; ++j) {
        const BlockOut<KIND> out(o, t.block0 + j);
        for (int64_t q = 0; q < t.rows * t.tiles; ++q) {
            const int64_t row = q / t.tiles, first = q % t.tiles * t.mr;
            kByMr[t.mr - 1](t, o, out, t.a + row * t.a_row_stride + first * t.a_pixel_stride,
                            row * t.out_row_stride + first);
        }
    }
}

void bconv_ukernel_4x8__avx2(const Tile &tile, const TileOut &out) {
    switch (out.kind) {
        case OutKind::dots: return tile_kind<OutKind::dots>(tile, out);
        case OutKind::floats: return tile_kind<OutKind::floats>(tile, out);
        case OutKind::bits: return tile_kind<OutKind::bits>(tile, out);
        case OutKind::unit: return tile_kind<OutKind::unit>(tile, out);
    }
}

// The tile's recipe (xor, nibble lookups, byte adds) on registers only, kMr chains of 2 ymm.
uint64_t peak_loop(int64_t iters, uint64_t *checksum) {
    static_assert(kMr == 4, "one named register per broadcast");
    const Popcount pc;
    const __m256i w_lo = _mm256_set1_epi64x(0x9e3779b97f4a7c15ll), w_hi = _mm256_set1_epi64x(7);
    __m256i acc[kMr][2];
    for (int i = 0; i < kMr; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_si256();
    __m256i a0 = _mm256_set1_epi64x(1), a1 = _mm256_set1_epi64x(2), a2 = _mm256_set1_epi64x(3),
            a3 = _mm256_set1_epi64x(4);
    for (int64_t it = 0; it < iters; ++it) {
        // Empty asm "changes" the broadcasts each iteration, so nothing is hoisted.
        asm volatile("" : "+x"(a0), "+x"(a1), "+x"(a2), "+x"(a3));
        const __m256i a[kMr] = {a0, a1, a2, a3};
        for (int i = 0; i < kMr; ++i) {
            acc[i][0] = _mm256_add_epi8(acc[i][0], pc.bytes(_mm256_xor_si256(a[i], w_lo)));
            acc[i][1] = _mm256_add_epi8(acc[i][1], pc.bytes(_mm256_xor_si256(a[i], w_hi)));
        }
    }
    __m256i sum = _mm256_setzero_si256();
    for (int i = 0; i < kMr; ++i)
        for (int h = 0; h < 2; ++h) sum = _mm256_xor_si256(sum, acc[i][h]);
    alignas(32) uint64_t lanes[4];
    _mm256_store_si256((__m256i *)lanes, sum);
    *checksum += lanes[0] ^ lanes[1] ^ lanes[2] ^ lanes[3];
    return static_cast<uint64_t>(iters) * kMr * kBlock * 64;
}

// Twelve independent 8-lane FMA chains: more than FMA latency x ports on AVX2 cores.
uint64_t float_peak_loop(int64_t iters, float *checksum) {
    return generic::fma_peak_chains<12, __m256>(iters, checksum, _mm256_fmadd_ps);
}

// Eight floats per compare; the tail word in the generic loop.
void sign_masks(const float *x, const float *shift, int64_t n, uint64_t *out) {
    const __m256 zero = _mm256_setzero_ps();
    int64_t i = 0;
    for (; (i + 1) * 64 <= n; ++i) {
        uint64_t mask = 0;
        for (int q = 0; q < 8; ++q) {
            const int64_t j = i * 64 + q * 8;
            __m256 v = _mm256_loadu_ps(x + j);
            if (shift) v = _mm256_sub_ps(v, _mm256_loadu_ps(shift + j));
            mask |= uint64_t(_mm256_movemask_ps(_mm256_cmp_ps(v, zero, _CMP_NGE_UQ))) << (8 * q);
        }
        out[i] = mask;
    }
    generic::sign_masks(x + i * 64, shift ? shift + i * 64 : nullptr, n - i * 64, out + i);
}

// The portable row loop; this file's AVX2 flags let the compiler vectorise what it can.
void max_pool_row(const float *const *rows, int64_t nrows, int64_t w, int64_t c, int64_t kw,
                  int64_t stride, int64_t pad, int64_t out_w, const uint32_t *flip, float *out) {
    generic::max_pool_row(rows, nrows, w, c, kw, stride, pad, out_w, flip, out);
}

void direct_conv_rows(const DirectConv &d, int64_t begin, int64_t end) {
    generic::direct_conv_rows(d, begin, end);
}

void interleave_planes(const float *src, int64_t planes, int64_t src_stride, int64_t n,
                       float *dst, int64_t dst_stride) {
    generic::interleave_planes(src, planes, src_stride, n, dst, dst_stride);
}

void transpose_bits(uint64_t a[64]) { generic::transpose_bits(a); }

}  // namespace

namespace isa {
const KernelTable avx2 = {"avx2", kMr, 4, bconv_ukernel_4x8__avx2, peak_loop,
                          float_peak_loop, sign_masks,
                          max_pool_row, direct_conv_rows, interleave_planes,
                          transpose_bits};
}

}  // namespace bnnx

#endif
