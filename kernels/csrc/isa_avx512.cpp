// AVX-512 with VPOPCNTDQ (Ice Lake, Zen 4 and later). This file alone is compiled with the
// AVX-512 flags (CMakeLists.txt); it is only entered after cpuid said the CPU has them.
//
// Tile MR pixels x NR blocks: per weight word, NR vector loads (8 channels each) and MR scalar
// broadcasts feed MR * NR independent vpxorq / vpopcntq / vpaddq chains held in registers.
#include <immintrin.h>

#include <array>
#include <utility>

#include "isa.h"

#if defined(__x86_64__) || defined(_M_X64)

namespace bnnx {
namespace {

// The TileOut epilogue's per-block constants, the same for every tile of a call. With
// e = base + corr - threshold, dot >= threshold <=> pc <= e >> 1 and
// dot <= threshold <=> !(pc <= (e - 1) >> 1), so an output bit is one compare and one mask XOR.
struct BlockOut {
    int64_t c0;        // first channel of the block
    __mmask8 lanes;    // channels < C_out
    __mmask8 flip;     // bits: channels with direction -1
    __m512i e;         // bits: the pc limit; dots and floats: base + corr
};

inline BlockOut block_out(const TileOut &o, int64_t c0) {
    BlockOut b{c0, __mmask8(0xff), 0, _mm512_set1_epi64(o.base)};
    if (o.c_out - c0 < kBlock) b.lanes = __mmask8((1u << (o.c_out - c0)) - 1);
    if (o.corr)
        b.e = _mm512_add_epi64(b.e, _mm512_cvtepi32_epi64(
                                        _mm256_loadu_si256((const __m256i *)(o.corr + c0))));
    if (o.kind == OutKind::bits) {
        b.flip = __mmask8(~o.dir_pos[c0 / kBlock]);
        const __m512i e = _mm512_sub_epi64(b.e, _mm512_cvtepi32_epi64(_mm256_loadu_si256(
                                                    (const __m256i *)(o.threshold + c0))));
        b.e = _mm512_srai_epi64(_mm512_mask_sub_epi64(e, b.flip, e, _mm512_set1_epi64(1)), 1);
    }
    return b;
}

// Writes the block's outputs for pixels pixel0 .. pixel0 + MR - 1 from their popcount sums.
template <int MR>
inline void epilogue(const TileOut &o, const BlockOut &b, int64_t pixel0, const __m512i *pc) {
    for (int i = 0; i < MR; ++i) {
        const int64_t at = (pixel0 + i) * o.pixel_stride;
        if (o.kind == OutKind::bits) {
            static_cast<uint8_t *>(o.out)[at + b.c0 / kBlock] =
                (_mm512_cmple_epi64_mask(pc[i], b.e) ^ b.flip) & b.lanes;
            continue;
        }
        const __m512i dot = _mm512_sub_epi64(b.e, _mm512_slli_epi64(pc[i], 1));
        if (o.kind == OutKind::dots) {
            _mm256_mask_storeu_epi32(static_cast<int32_t *>(o.out) + at + b.c0, b.lanes,
                                     _mm512_cvtepi64_epi32(dot));
        } else {
            const __m256 prod = _mm256_mul_ps(_mm256_loadu_ps(o.scale + b.c0),
                                              _mm512_cvtepi64_ps(dot));
            _mm256_mask_storeu_ps(static_cast<float *>(o.out) + at + b.c0, b.lanes,
                                  _mm256_add_ps(prod, _mm256_loadu_ps(o.bias + b.c0)));
        }
    }
}

template <int MR, int NR>
void bconv_ukernel__avx512vpopcnt(const Tile &t, const TileOut &o) {
    BlockOut blocks[NR];
    for (int j = 0; j < NR; ++j) blocks[j] = block_out(o, (t.block0 + j) * kBlock);
    const int64_t wb = t.w_block_stride * kBlock;
    const uint64_t *w0 = t.w + t.block0 * wb;
    for (int64_t tile = 0; tile < t.tiles; ++tile) {
        __m512i acc[MR][NR];
        for (int i = 0; i < MR; ++i)
            for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_setzero_si512();
        const uint64_t *a0 = t.a + tile * MR * t.a_pixel_stride;
        for (int64_t r = 0; r < t.nrows; ++r) {
            const uint64_t *a = a0 + t.a_row_off[r];
            const uint64_t *w = w0 + t.w_row_off[r] * kBlock;
            for (int64_t k = 0; k < t.run; ++k) {
                __m512i wv[NR];
                for (int j = 0; j < NR; ++j) wv[j] = _mm512_loadu_si512(w + j * wb + k * kBlock);
                for (int i = 0; i < MR; ++i) {
                    const __m512i b = _mm512_set1_epi64(static_cast<long long>(
                        a[i * t.a_pixel_stride + k]));
                    for (int j = 0; j < NR; ++j)
                        acc[i][j] = _mm512_add_epi64(
                            acc[i][j], _mm512_popcnt_epi64(_mm512_xor_si512(b, wv[j])));
                }
            }
        }
        for (int j = 0; j < NR; ++j) {
            __m512i column[MR];
            for (int i = 0; i < MR; ++i) column[i] = acc[i][j];
            epilogue<MR>(o, blocks[j], tile * MR, column);
        }
    }
}

constexpr int kMr = 6, kNr = 4;

template <int MR, int... NR>
constexpr auto row_of(std::integer_sequence<int, NR...>) {
    return std::array<void (*)(const Tile &, const TileOut &), sizeof...(NR)>{
        &bconv_ukernel__avx512vpopcnt<MR, NR + 1>...};
}

template <int... MR>
constexpr auto table_of(std::integer_sequence<int, MR...>) {
    return std::array<decltype(row_of<1>(std::make_integer_sequence<int, kNr>{})),
                      sizeof...(MR)>{row_of<MR + 1>(std::make_integer_sequence<int, kNr>{})...};
}

// kUkernels[mr - 1][nr - 1] is the MRx(8*NR) microkernel.
constexpr auto kUkernels = table_of(std::make_integer_sequence<int, kMr>{});

void bconv_ukernel_6x32__avx512vpopcnt(const Tile &tile, const TileOut &out) {
    kUkernels[tile.mr - 1][tile.nr - 1](tile, out);
}

// The tile's register recipe (broadcasts x weight vectors -> independent chains) with no memory
// operands at all: 4 x 4 independent chains, more than enough to keep the vector units busy.
uint64_t peak_loop(int64_t iters, uint64_t *checksum) {
    constexpr int kRows = 4, kCols = 4;
    __m512i w[kCols], acc[kRows][kCols];
    for (int j = 0; j < kCols; ++j) w[j] = _mm512_set1_epi64(0x9e3779b97f4a7c15ll * (j + 1));
    for (int i = 0; i < kRows; ++i)
        for (int j = 0; j < kCols; ++j) acc[i][j] = _mm512_setzero_si512();
    __m512i a0 = _mm512_set1_epi64(1), a1 = _mm512_set1_epi64(2), a2 = _mm512_set1_epi64(3),
            a3 = _mm512_set1_epi64(4);
    for (int64_t it = 0; it < iters; ++it) {
        // Empty asm "changes" the broadcasts each iteration, so nothing is hoisted.
        asm volatile("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3));
        const __m512i a[kRows] = {a0, a1, a2, a3};
        for (int i = 0; i < kRows; ++i)
            for (int j = 0; j < kCols; ++j)
                acc[i][j] = _mm512_add_epi64(acc[i][j],
                                             _mm512_popcnt_epi64(_mm512_xor_si512(a[i], w[j])));
    }
    __m512i sum = _mm512_setzero_si512();
    for (int i = 0; i < kRows; ++i)
        for (int j = 0; j < kCols; ++j) sum = _mm512_add_epi64(sum, acc[i][j]);
    *checksum += static_cast<uint64_t>(_mm512_reduce_add_epi64(sum));
    return static_cast<uint64_t>(iters) * kRows * kCols * 512;
}

}  // namespace

namespace isa {
const KernelTable avx512vpopcnt = {"avx512vpopcnt", kMr, kNr, bconv_ukernel_6x32__avx512vpopcnt,
                                    peak_loop};
}

}  // namespace bnnx

#endif
