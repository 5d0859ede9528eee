// AVX2 (Haswell, Zen 1 and later) without a vector popcount: Mula's nibble lookup. Each byte's
// two nibbles index a 16-entry table with vpshufb; byte counts (at most 8 per word) pile up in
// byte lanes for up to 31 words, then vpsadbw folds them into 64-bit lanes. This file alone is
// compiled with -mavx2 (CMakeLists.txt) and only entered after cpuid reported AVX2.
#include <immintrin.h>

#include <algorithm>

#include "isa.h"
#include "microkernel_generic.h"

#if defined(__x86_64__) || defined(_M_X64)

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

// Pixels pixel0 .. pixel0 + MR - 1 of the call, one block of 8 channels.
template <int MR>
void tile_block(const Tile &t, const TileOut &o, int64_t block, int64_t pixel0) {
    const Popcount pc;
    const uint64_t *w0 = t.w + block * t.w_block_stride * kBlock;
    __m256i acc[MR][2];
    for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_si256();
    for (int64_t r = 0; r < t.nrows; ++r) {
        const uint64_t *a = t.a + pixel0 * t.a_pixel_stride + t.a_row_off[r];
        const uint64_t *w = w0 + t.w_row_off[r] * kBlock;
        for (int64_t k0 = 0; k0 < t.run; k0 += kMaxByteRun) {
            const int64_t k1 = std::min(t.run, k0 + kMaxByteRun);
            __m256i part[MR][2];
            for (int i = 0; i < MR; ++i) part[i][0] = part[i][1] = _mm256_setzero_si256();
            for (int64_t k = k0; k < k1; ++k) {
                const __m256i w_lo = _mm256_loadu_si256((const __m256i *)(w + k * kBlock));
                const __m256i w_hi = _mm256_loadu_si256((const __m256i *)(w + k * kBlock + 4));
                for (int i = 0; i < MR; ++i) {
                    const __m256i b = _mm256_set1_epi64x(
                        static_cast<long long>(a[i * t.a_pixel_stride + k]));
                    part[i][0] = _mm256_add_epi8(part[i][0], pc.bytes(_mm256_xor_si256(b, w_lo)));
                    part[i][1] = _mm256_add_epi8(part[i][1], pc.bytes(_mm256_xor_si256(b, w_hi)));
                }
            }
            for (int i = 0; i < MR; ++i)
                for (int h = 0; h < 2; ++h)
                    acc[i][h] = _mm256_add_epi64(
                        acc[i][h], _mm256_sad_epu8(part[i][h], _mm256_setzero_si256()));
        }
    }
    for (int i = 0; i < MR; ++i) {
        alignas(32) int64_t sums[kBlock];
        _mm256_store_si256((__m256i *)sums, acc[i][0]);
        _mm256_store_si256((__m256i *)(sums + 4), acc[i][1]);
        int32_t pcs[kBlock];
        for (int64_t l = 0; l < kBlock; ++l) pcs[l] = static_cast<int32_t>(sums[l]);
        generic::epilogue(o, pixel0 + i, block * kBlock, pcs);
    }
}

void bconv_ukernel_4x8__avx2(const Tile &tile, const TileOut &out) {
    static void (*const kByMr[kMr])(const Tile &, const TileOut &, int64_t, int64_t) = {
        tile_block<1>, tile_block<2>, tile_block<3>, tile_block<4>};
    for (int j = 0; j < tile.nr; ++j)
        for (int64_t tt = 0; tt < tile.tiles; ++tt)
            kByMr[tile.mr - 1](tile, out, tile.block0 + j, tt * tile.mr);
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

}  // namespace

namespace isa {
const KernelTable avx2 = {"avx2", kMr, 4, bconv_ukernel_4x8__avx2, peak_loop};
}

}  // namespace bnnx

#endif
