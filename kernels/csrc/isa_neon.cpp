// AArch64 Advanced SIMD (NEON, baseline on every AArch64 CPU): byte popcounts (cnt) of the XOR,
// pairwise-accumulated into 16-bit lanes (uadalp). One q register holds one weight word of two
// channels, so a block of 8 channels is 4 registers and a tile is MR pixels x 4 of them. The
// 16-bit lanes take at most 16 per word; they are widened into 64-bit sums before they could
// overflow. The epilogue is the portable one (microkernel_generic.h), so every output kind is
// the scalar table's arithmetic exactly.
#include "isa.h"
#include "microkernel_generic.h"

#if defined(__aarch64__)

#include <arm_neon.h>

namespace bnnx {
namespace {

constexpr int kMr = 4;                  // pixels per tile, one 8-channel block at a time
constexpr int64_t kMaxWordRun = 4095;   // 4095 * 16 < 2^16: 16-bit lanes cannot overflow

// Output pixels pixel .. pixel + MR - 1 of the call (input from a0 on), block `block`.
template <int MR>
void tile_block(const Tile &t, const TileOut &o, int64_t block, const uint64_t *a0,
                int64_t pixel) {
    const uint64_t *w0 = t.w + block * t.w_block_stride * kBlock;
    uint16x8_t part[MR][4];
    uint64x2_t acc[MR][4];
    for (int i = 0; i < MR; ++i)
        for (int q = 0; q < 4; ++q) part[i][q] = vdupq_n_u16(0), acc[i][q] = vdupq_n_u64(0);
    auto flush = [&] {
        for (int i = 0; i < MR; ++i)
            for (int q = 0; q < 4; ++q) {
                acc[i][q] = vpadalq_u32(acc[i][q], vpaddlq_u16(part[i][q]));
                part[i][q] = vdupq_n_u16(0);
            }
    };
    generic::for_each_word(t, a0, w0, kMaxWordRun, [&](const uint64_t *a, const uint64_t *w,
                                                           int64_t k) {
        uint64x2_t wv[4];
        for (int q = 0; q < 4; ++q) wv[q] = vld1q_u64(w + k * kBlock + 2 * q);
        for (int i = 0; i < MR; ++i) {
            const uint64x2_t b = vdupq_n_u64(a[i * t.a_pixel_stride + k]);
            for (int q = 0; q < 4; ++q)
                part[i][q] =
                    vpadalq_u8(part[i][q], vcntq_u8(vreinterpretq_u8_u64(veorq_u64(b, wv[q]))));
        }
    }, flush);
    for (int i = 0; i < MR; ++i) {
        int32_t pc[kBlock];
        for (int q = 0; q < 4; ++q) {
            pc[2 * q] = static_cast<int32_t>(vgetq_lane_u64(acc[i][q], 0));
            pc[2 * q + 1] = static_cast<int32_t>(vgetq_lane_u64(acc[i][q], 1));
        }
        generic::epilogue(o, pixel + i, block * kBlock, pc);
    }
}

void bconv_ukernel_4x8__neon(const Tile &t, const TileOut &o) {
    static void (*const kByMr[kMr])(const Tile &, const TileOut &, int64_t, const uint64_t *,
                                    int64_t) = {tile_block<1>, tile_block<2>, tile_block<3>,
                                                tile_block<4>};
    for (int j = 0; j < t.nr; ++j)
        for (int64_t q = 0; q < t.rows * t.tiles; ++q) {
            const int64_t row = q / t.tiles, first = q % t.tiles * t.mr;
            kByMr[t.mr - 1](t, o, t.block0 + j,
                            t.a + row * t.a_row_stride + first * t.a_pixel_stride,
                            row * t.out_row_stride + first);
        }
}

// The tile's recipe (eor, cnt, uadalp) on registers only: 4 broadcasts x 4 weight registers.
uint64_t peak_loop(int64_t iters, uint64_t *checksum) {
    uint64x2_t w[4];
    for (int q = 0; q < 4; ++q) w[q] = vdupq_n_u64(0x9e3779b97f4a7c15ull * (q + 1));
    uint16x8_t part[kMr][4];
    for (int i = 0; i < kMr; ++i)
        for (int q = 0; q < 4; ++q) part[i][q] = vdupq_n_u16(0);
    uint64x2_t a0 = vdupq_n_u64(1), a1 = vdupq_n_u64(2), a2 = vdupq_n_u64(3), a3 = vdupq_n_u64(4);
    for (int64_t it = 0; it < iters; ++it) {
        // Empty asm "changes" the broadcasts each iteration, so nothing is hoisted.
        asm volatile("" : "+w"(a0), "+w"(a1), "+w"(a2), "+w"(a3));
        const uint64x2_t a[kMr] = {a0, a1, a2, a3};
        for (int i = 0; i < kMr; ++i)
            for (int q = 0; q < 4; ++q)
                part[i][q] =
                    vpadalq_u8(part[i][q], vcntq_u8(vreinterpretq_u8_u64(veorq_u64(a[i], w[q]))));
    }
    uint64_t sum = 0;  // wrapped 16-bit lanes are fine: the sum only keeps the work observable
    for (int i = 0; i < kMr; ++i)
        for (int q = 0; q < 4; ++q) sum += vaddlvq_u16(part[i][q]);
    *checksum += sum;
    return static_cast<uint64_t>(iters) * kMr * 4 * 128;
}

// Twelve independent 4-lane FMA chains.
uint64_t float_peak_loop(int64_t iters, float *checksum) {
    constexpr int kChains = 12;
    float32x4_t acc[kChains];
    for (int i = 0; i < kChains; ++i) acc[i] = vdupq_n_f32(static_cast<float>(i));
    float32x4_t a = vdupq_n_f32(1.0f), b = vdupq_n_f32(0.0f);
    for (int64_t it = 0; it < iters; ++it) {
        asm volatile("" : "+w"(a), "+w"(b));  // "new" each iteration: nothing is hoisted
        for (int i = 0; i < kChains; ++i) acc[i] = vfmaq_f32(b, a, acc[i]);
    }
    for (int i = 0; i < kChains; ++i) *checksum += vaddvq_f32(acc[i]);
    return static_cast<uint64_t>(iters) * kChains * 4;
}

}  // namespace

namespace isa {
// The float helpers need no target of their own here: the portable ones, as they are.
const KernelTable neon = {"neon", kMr, 4, bconv_ukernel_4x8__neon, peak_loop, float_peak_loop,
                          generic::sign_masks, generic::max_pool_row,
                          generic::direct_conv_rows, generic::interleave_planes,
                          generic::transpose_bits};
}

}  // namespace bnnx

#endif
