// AVX-512 with VPOPCNTDQ, VBMI and GFNI (Ice Lake, Zen 4 and later). This file alone is compiled
// with those flags (CMakeLists.txt); it is only entered after cpuid said the CPU has them.
//
// Tile MR pixels x NR blocks: per weight word, NR vector loads (8 channels each) and MR scalar
// broadcasts feed MR * NR independent vpxorq / vpopcntq / vpaddq chains held in registers.
#include <algorithm>
#include <array>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>

#include <unistd.h>

#include "isa.h"
#include "microkernel_generic.h"

#if defined(__x86_64__) || defined(_M_X64)

#include <immintrin.h>

namespace bnnx {
namespace {

// Blocks j and j + 1 (zeros past the tile's NR) as one vector of 16 int32 lanes, channel order:
// the low halves of their 64-bit lanes (sums and limits all fit in 32 bits).
template <int NR>
inline __m512i pair_of(const __m512i *v, int j, __m512i missing) {
    const __m512i low_halves =
        _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    return _mm512_permutex2var_epi32(v[j], low_halves, j + 1 < NR ? v[j + 1] : missing);
}

// The TileOut epilogue's per-block constants, the same for every tile of a call, held for block
// pairs: one 512-bit register covers 16 channels, so the float arithmetic runs full width. With
// e = base + corr - threshold, dot >= threshold <=> pc <= e >> 1 and
// dot <= threshold <=> !(pc <= (e - 1) >> 1), so an output bit is one compare, and the flips of
// a pixel's NR blocks are one XOR of their NR bytes, stored at once. The per-channel float
// parameters and the TileOut fields a pixel reads are copied in once per call: the pixel loop
// then loads no parameter through a pointer that its own stores could have changed.
template <OutKind KIND, int NR>
struct Epilogue {
    static constexpr int kPairs = (NR + 1) / 2;
    __m512i e[kPairs];        // bits: the pc limit, -1 on channels >= C_out; else base + corr
    __mmask16 lanes[kPairs];  // channels < C_out
    uint64_t flip;            // bits: byte j = block j's channels with direction -1 (< C_out)
    int64_t block0;           // the first block; its bits are byte block0 of a pixel
    // floats and unit: scale * dot + bias; unit: fma(., alpha, beta), then act's slope, gamma,
    // zeta (hardtanh: low, high in slope, gamma) and the consumer's sign shift.
    __m512 scale[kPairs], bias[kPairs], alpha[kPairs], beta[kPairs];
    __m512 slope[kPairs], gamma[kPairs], zeta[kPairs], shift[kPairs];
    void *out;
    const float *residual;
    int64_t residual_at[kPairs];  // pair p's first channel in a residual pixel
    uint8_t *signs;
    int64_t pixel_stride, residual_stride, signs_stride;
    Act act;
    bool shifted;

    // Set in place (not built and copied: the kilobyte of float parameters a bits epilogue
    // never reads was copied once per call, which showed on small maps' many short calls).
    void init(const TileOut &o, int64_t first) {
        block0 = first, out = o.out, residual = o.residual, signs = o.signs;
        pixel_stride = o.pixel_stride;
        residual_stride = residual ? o.residual_stride : 0;  // At steps null pointers by 0
        signs_stride = signs ? o.signs_stride : 0;
        act = o.act, shifted = o.sign_shift != nullptr, flip = 0;
        __m512i wide[NR];
        for (int j = 0; j < NR; ++j) {
            const int64_t c = (block0 + j) * kBlock;
            const __mmask8 valid =
                o.c_out - c < kBlock ? __mmask8((1u << (o.c_out - c)) - 1) : 0xff;
            if (j % 2 == 0) lanes[j / 2] = valid;
            else lanes[j / 2] = __mmask16(lanes[j / 2] | (unsigned(valid) << 8));
            wide[j] = _mm512_set1_epi64(o.base);
            if (o.corr)
                wide[j] = _mm512_add_epi64(wide[j], _mm512_cvtepi32_epi64(_mm256_loadu_si256(
                                                        (const __m256i *)(o.corr + c))));
            if (KIND != OutKind::bits) continue;
            const __mmask8 f = __mmask8(~o.dir_pos[block0 + j] & valid);
            flip |= uint64_t(f) << (8 * j);
            const __m512i d = _mm512_sub_epi64(wide[j], _mm512_cvtepi32_epi64(_mm256_loadu_si256(
                                                            (const __m256i *)(o.threshold + c))));
            const __m512i limit =
                _mm512_srai_epi64(_mm512_mask_sub_epi64(d, f, d, _mm512_set1_epi64(1)), 1);
            wide[j] = _mm512_mask_mov_epi64(_mm512_set1_epi64(-1), valid, limit);
        }
        for (int j = 0; j < NR; j += 2) e[j / 2] = pair_of<NR>(wide, j, _mm512_set1_epi64(-1));
        if (KIND != OutKind::floats && KIND != OutKind::unit) return;
        // Per-channel arrays hold whole blocks: lanes of a missing block j + 1 read past them,
        // so those loads are masked.
        const auto load = [&](const float *v, int p) {
            return v ? _mm512_maskz_loadu_ps(lanes[p], v + (block0 + 2 * p) * kBlock)
                     : _mm512_setzero_ps();
        };
        for (int p = 0; p < kPairs; ++p) {
            residual_at[p] = o.residual ? (block0 + 2 * p) * kBlock % o.residual_channels : 0;
            scale[p] = load(o.scale, p);
            bias[p] = load(o.bias, p);
            if (KIND != OutKind::unit) continue;
            alpha[p] = load(o.alpha, p);
            beta[p] = load(o.beta, p);
            shift[p] = load(o.sign_shift, p);
            if (o.act == Act::hardtanh) {
                slope[p] = _mm512_set1_ps(o.low);
                gamma[p] = _mm512_set1_ps(o.high);
            } else {
                slope[p] = load(o.slope, p);
                gamma[p] = load(o.gamma, p);
            }
            zeta[p] = load(o.zeta, p);
        }
    }

    // Act on pair p's 16 channels: the scalar recipe of Act, lane by lane (y > 0 is false for
    // NaN).
    __m512 activate(int p, __m512 y) const {
        if (act == Act::hardtanh) {  // low in slope, high in gamma
            y = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(y, slope[p], _CMP_LT_OQ), y, slope[p]);
            return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(y, gamma[p], _CMP_GT_OQ), y, gamma[p]);
        }
        const bool rprelu = act == Act::rprelu;
        if (rprelu) y = _mm512_sub_ps(y, gamma[p]);
        const __m512 scaled = _mm512_mul_ps(slope[p], y);
        y = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(y, _mm512_setzero_ps(), _CMP_GT_OQ), scaled,
                                 y);
        return rprelu ? _mm512_add_ps(y, zeta[p]) : y;
    }

    // Where a pixel's outputs go, at this group's first channel: a cursor stepped pixel by
    // pixel (no multiplications per pixel).
    static constexpr int64_t kOutBytes = KIND == OutKind::bits ? 1 : 4;  // per output element
    struct At {
        char *out;
        const float *residual[kPairs];  // pair p's residual channels
        uint8_t *signs;
    };
    At at(int64_t pixel) const {
        At px{static_cast<char *>(out) +
                  (pixel * pixel_stride + (KIND == OutKind::bits ? block0 : block0 * kBlock)) *
                      kOutBytes,
              {}, signs ? signs + pixel * signs_stride + block0 : nullptr};
        for (int p = 0; p < kPairs; ++p)
            px.residual[p] = residual + pixel * residual_stride + residual_at[p];
        return px;
    }
    __attribute__((always_inline)) void next(At &px) const {
        px.out += pixel_stride * kOutBytes;
        for (int p = 0; p < kPairs; ++p) px.residual[p] += residual_stride;
        px.signs += signs_stride;
    }
    // A raster band's pixel: px moved by off, the steps from the tile's first pixel (the same
    // for every group of a call: set once per tile, then one add a pointer, as next's).
    struct Offset {
        int64_t out, residual, signs;
    };
    Offset step(int64_t pixels) const {
        return {pixels * pixel_stride * kOutBytes, pixels * residual_stride,
                pixels * signs_stride};
    }
    __attribute__((always_inline)) At moved(const At &px, const Offset &off) const {
        At to{px.out + off.out, {}, px.signs + off.signs};
        for (int p = 0; p < kPairs; ++p) to.residual[p] = px.residual[p] + off.residual;
        return to;
    }

    // Writes the outputs of the pixel at px from its NR popcount sums.
    __attribute__((always_inline)) void store(const At &px, const __m512i *pc) const {
        const __m512i none = _mm512_setzero_si512();
        if (KIND == OutKind::bits) {
            uint64_t bits = flip;
            for (int j = 0; j < NR; j += 2)
                bits ^= uint64_t(_mm512_cmple_epi32_mask(pair_of<NR>(pc, j, none), e[j / 2]))
                        << (8 * j);
            std::memcpy(px.out, &bits, NR);
            return;
        }
        __mmask16 sign_bits[kPairs] = {};  // unit: the packed signs of pair p's 16 channels
        for (int j = 0; j < NR; j += 2) {
            const int p = j / 2;
            const __mmask16 m = lanes[p];
            char *to = px.out + j * kBlock * kOutBytes;
            const __m512i dot =
                _mm512_sub_epi32(e[p], _mm512_slli_epi32(pair_of<NR>(pc, j, none), 1));
            if (KIND == OutKind::dots) {
                _mm512_mask_storeu_epi32(to, m, dot);
                continue;
            }
            __m512 y = _mm512_add_ps(_mm512_mul_ps(scale[p], _mm512_cvtepi32_ps(dot)), bias[p]);
            if (KIND == OutKind::unit) {
                y = _mm512_fmadd_ps(y, alpha[p], beta[p]);
                if (residual) y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(m, px.residual[p]));
                if (act != Act::none) y = activate(p, y);
                if (signs) {
                    const __m512 t = shifted ? _mm512_sub_ps(y, shift[p]) : y;
                    sign_bits[p] =
                        _mm512_mask_cmp_ps_mask(m, t, _mm512_setzero_ps(), _CMP_NGE_UQ);
                }
            }
            _mm512_mask_storeu_ps(to, m, y);
        }
        if (KIND != OutKind::unit || !signs) return;
        // The pairs' masks joined in a mask register (byte j = block j), stored from there.
        const __mmask32 bits = kPairs == 1 ? __mmask32(sign_bits[0])
                                           : _mm512_kunpackw(sign_bits[kPairs - 1], sign_bits[0]);
        if (NR == 4) {
            _store_mask32(reinterpret_cast<__mmask32 *>(px.signs), bits);
        } else {
            const uint32_t b = _cvtmask32_u32(bits);
            std::memcpy(px.signs, &b, NR);
        }
    }
};

// The words of a tile's window in the order they are summed. Short rows (a few words per kernel
// row, e.g. 64 channels) are one flat list from offset tables: the row loop's exits cost more
// than its words there. Offsets are in words from the tile's first activation (a) and weight
// word (w, times kBlock).
struct WindowWords {
    static constexpr int64_t kFlatWords = 24;
    int64_t words;
    bool flat;
    int64_t a_word[kFlatWords], w_word[kFlatWords];

    explicit WindowWords(const Tile &t)
        : words(t.nrows * t.run), flat(t.run <= 6 && words <= kFlatWords) {
        for (int64_t r = 0, k = 0; flat && r < t.nrows; ++r)
            for (int64_t c = 0; c < t.run; ++c, ++k) {
                a_word[k] = t.a_row_off[r] + c;
                w_word[k] = (t.w_row_off[r] + c) * kBlock;
            }
    }
};

// A tile's pixels' activations: pixel i's window at a0 + i * stride (the tiles of one row).
struct StridedPixels {
    const uint64_t *a0;
    int64_t stride;
    __attribute__((always_inline)) uint64_t word(int i, int64_t k) const {
        return a0[k + i * stride];
    }
};

// Pixel i's window at a[i] (a raster band's tiles, which wrap from row to row): the pointers
// are set once per tile, outside the word loop.
template <int MR>
struct ListedPixels {
    const uint64_t *a[MR];
    __attribute__((always_inline)) uint64_t word(int i, int64_t k) const { return a[i][k]; }
};

// acc[i][j] = the popcount sums of pixel i (its words from px) against block j (w0 + j * wb)
// over the window: the first word starts the sums (no zeroing, no add), an empty window (a
// tile wholly in the padding) sums to 0.
template <int MR, int NR, class Pixels>
__attribute__((always_inline)) inline void tile_sums(const Tile &t, const WindowWords &ww,
                                                     const Pixels &px, const uint64_t *w0,
                                                     int64_t wb, __m512i (&acc)[MR][NR]) {
    // Inlined by force: left to the heuristics, a bigger caller (a raster band's) called it,
    // and the sums went to memory.
    const auto step = [&](int64_t k, const uint64_t *w, auto first)
                          __attribute__((always_inline)) {
        __m512i wv[NR];
        for (int j = 0; j < NR; ++j) wv[j] = _mm512_loadu_si512(w + j * wb);
        for (int i = 0; i < MR; ++i) {
            const __m512i b = _mm512_set1_epi64(static_cast<long long>(px.word(i, k)));
            for (int j = 0; j < NR; ++j) {
                const __m512i pc = _mm512_popcnt_epi64(_mm512_xor_si512(b, wv[j]));
                acc[i][j] = first ? pc : _mm512_add_epi64(acc[i][j], pc);
            }
        }
    };
    if (ww.words == 0) {
        for (int i = 0; i < MR; ++i)
            for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_setzero_si512();
    } else if (ww.flat) {
        step(ww.a_word[0], w0 + ww.w_word[0], std::true_type{});
        for (int64_t k = 1; k < ww.words; ++k)
            step(ww.a_word[k], w0 + ww.w_word[k], std::false_type{});
    } else {
        step(t.a_row_off[0], w0 + t.w_row_off[0] * kBlock, std::true_type{});
        for (int64_t r = 0; r < t.nrows; ++r) {
            const int64_t a = t.a_row_off[r];
            const uint64_t *w = w0 + t.w_row_off[r] * kBlock;
            for (int64_t k = r == 0; k < t.run; ++k)
                step(a + k, w + k * kBlock, std::false_type{});
        }
    }
}

constexpr int kMr = 6, kNr = 4;  // the register tile: 6 pixels x 4 blocks (32 channels)
constexpr int kNrCall = 16;      // blocks per call: 128 channels
// A call's weights up to this size stay in L1 while every group of a tile runs in turn: the
// L1 data cache less 8 KB for the tile's activations and outputs (40 KB of Zen 5's 48 KB,
// where 256 input channels' 36 KB then run grouped: 3-6% faster than one group at a time).
int64_t groups_per_tile_bytes() {
    static const int64_t bytes = [] {
        const long l1 = sysconf(_SC_LEVEL1_DCACHE_SIZE);
        return int64_t{l1 >= 16 * 1024 ? l1 : 32 * 1024} - 8 * 1024;
    }();
    return bytes;
}

// Blocks [block0, block0 + nr) in groups of NR, nr = NR or, with GROUPS > 1, a multiple of NR
// up to GROUPS * NR: per tile, each group in turn, so a pixel's channels (its residual and
// output lines, its packed signs) are read and written together, in pixel order, not in one
// strided pass per group.
//
// RASTER: the tiles of a raster band (Tile::raster_width), each pixel's window and output found
// from its own row and column once per tile; else the tiles of t.rows rows, pixel after pixel.
template <OutKind KIND, int MR, int NR, int GROUPS = 1, bool RASTER = false>
void bconv_ukernel__avx512vpopcnt(const Tile &t, const TileOut &o) {
    const int groups = GROUPS == 1 ? 1 : t.nr / NR;
    Epilogue<KIND, NR> epilogue[GROUPS];
    for (int g = 0; g < groups; ++g) epilogue[g].init(o, t.block0 + g * NR);
    const WindowWords ww(t);
    const int64_t wb = t.w_block_stride * kBlock;
    if constexpr (RASTER) {
        // Each pixel's window and output place from its row and column, once per tile (not
        // per group or word). A tile within one row still sums through the row's strided
        // word loop: the MR pointers of the one loop over listed pixels, held through it,
        // took registers from the sums (2% on 256 channels); only tiles that cross a row's
        // end take it.
        using Offset = typename Epilogue<KIND, NR>::Offset;
        const int64_t width = t.raster_width, out_gap = t.out_row_stride - width;
        const int64_t a_gap = t.a_row_stride - width * t.a_pixel_stride;
        const Offset one = epilogue[0].step(1), gap = epilogue[0].step(out_gap);
        int64_t col = t.raster_first % width;
        int64_t first = t.raster_first / width * t.out_row_stride + col;
        const uint64_t *a = t.a + t.raster_first / width * t.a_row_stride + col * t.a_pixel_stride;
        for (int64_t tile = 0; tile < t.tiles; ++tile) {
            const bool straight = col + MR <= width;  // the tile's pixels in one row
            const int64_t pixel0 = first;
            ListedPixels<MR> px;
            Offset off[MR], at{0, 0, 0};
            for (int i = 0; i < MR; ++i) {
                px.a[i] = a;
                off[i] = at;
                a += t.a_pixel_stride;
                at = {at.out + one.out, at.residual + one.residual, at.signs + one.signs};
                ++first;
                if (++col < width) continue;
                col = 0;  // the next pixel starts a row
                a += a_gap;
                at = {at.out + gap.out, at.residual + gap.residual, at.signs + gap.signs};
                first += out_gap;
            }
            for (int g = 0; g < groups; ++g) {
                __m512i acc[MR][NR];
                const uint64_t *w0 = t.w + (t.block0 + g * NR) * wb;
                if (straight)
                    tile_sums<MR, NR>(t, ww, StridedPixels{px.a[0], t.a_pixel_stride}, w0, wb,
                                      acc);
                else
                    tile_sums<MR, NR>(t, ww, px, w0, wb, acc);
                const auto at0 = epilogue[g].at(pixel0);
#pragma GCC unroll 8
                for (int i = 0; i < MR; ++i)
                    epilogue[g].store(epilogue[g].moved(at0, off[i]), acc[i]);
            }
        }
        return;
    }
    for (int64_t row = 0; row < t.rows; ++row)
        for (int64_t tile = 0; tile < t.tiles; ++tile) {
            const StridedPixels px{t.a + row * t.a_row_stride + tile * MR * t.a_pixel_stride,
                                   t.a_pixel_stride};
            const int64_t pixel = row * t.out_row_stride + tile * MR;
            for (int g = 0; g < groups; ++g) {
                __m512i acc[MR][NR];
                tile_sums<MR, NR>(t, ww, px, t.w + (t.block0 + g * NR) * wb, wb, acc);
                // Unrolled, so the sums stay in registers (a loop over pixels would index them).
                auto at = epilogue[g].at(pixel);
#pragma GCC unroll 8
                for (int i = 0; i < MR; ++i) {
                    epilogue[g].store(at, acc[i]);
                    epilogue[g].next(at);
                }
            }
        }
}

using Ukernel = void (*)(const Tile &, const TileOut &);

template <OutKind KIND, bool RASTER, int MR, int... NR>
constexpr auto row_of(std::integer_sequence<int, NR...>) {
    return std::array<Ukernel, sizeof...(NR)>{
        &bconv_ukernel__avx512vpopcnt<KIND, MR, NR + 1, 1, RASTER>...};
}

template <OutKind KIND, bool RASTER, int... MR>
constexpr auto table_of(std::integer_sequence<int, MR...>) {
    return std::array<std::array<Ukernel, kNr>, sizeof...(MR)>{
        row_of<KIND, RASTER, MR + 1>(std::make_integer_sequence<int, kNr>{})...};
}

template <OutKind KIND, bool RASTER, int... MR>
constexpr auto grouped_of(std::integer_sequence<int, MR...>) {
    return std::array<Ukernel, sizeof...(MR)>{
        &bconv_ukernel__avx512vpopcnt<KIND, MR + 1, kNr, kNrCall / kNr, RASTER>...};
}

// kUkernels[raster][kind][mr - 1][nr - 1] is the MRx(8*NR) microkernel for that output kind
// and tile order; kGrouped[raster][kind][mr - 1] the same at NR = 4 over every group of 4
// blocks of a call per tile.
template <bool RASTER>
constexpr std::array<std::array<std::array<Ukernel, kNr>, kMr>, 4> ukernels_of() {
    constexpr auto mrs = std::make_integer_sequence<int, kMr>{};
    return {table_of<OutKind::dots, RASTER>(mrs), table_of<OutKind::floats, RASTER>(mrs),
            table_of<OutKind::bits, RASTER>(mrs), table_of<OutKind::unit, RASTER>(mrs)};
}
template <bool RASTER>
constexpr std::array<std::array<Ukernel, kMr>, 4> grouped_of_kinds() {
    constexpr auto mrs = std::make_integer_sequence<int, kMr>{};
    return {grouped_of<OutKind::dots, RASTER>(mrs), grouped_of<OutKind::floats, RASTER>(mrs),
            grouped_of<OutKind::bits, RASTER>(mrs), grouped_of<OutKind::unit, RASTER>(mrs)};
}
constexpr std::array<std::array<std::array<std::array<Ukernel, kNr>, kMr>, 4>, 2> kUkernels = {
    ukernels_of<false>(), ukernels_of<true>()};
constexpr std::array<std::array<std::array<Ukernel, kMr>, 4>, 2> kGrouped = {
    grouped_of_kinds<false>(), grouped_of_kinds<true>()};

// Whole groups of 4 blocks whose k-word weights fit the L1 budget, 4 to kNrCall.
int blocks_in_l1(int64_t k) {
    const int64_t fit = groups_per_tile_bytes() / (k * kBlock * 8) / kNr * kNr;
    return static_cast<int>(std::clamp<int64_t>(fit, kNr, kNrCall));
}

// Up to kNrCall blocks (conv.cpp sends as many as blocks_in_l1 keeps in L1): all groups of 4
// per tile where they are whole groups, else one group after another over the whole call.
void bconv_tile__avx512vpopcnt(const Tile &t, const TileOut &o) {
    const int kind = static_cast<int>(o.kind), raster = t.raster_width > 0;
    if (t.nr > kNr && t.nr % kNr == 0) return kGrouped[raster][kind][t.mr - 1](t, o);
    for (int b = 0; b < t.nr; b += kNr) {
        Tile group = t;
        group.block0 = t.block0 + b;
        group.nr = std::min(kNr, t.nr - b);
        kUkernels[raster][kind][t.mr - 1][group.nr - 1](group, o);
    }
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

// Sixteen independent 16-lane FMA chains: more than FMA latency x ports on AVX-512 cores.
uint64_t float_peak_loop(int64_t iters, float *checksum) {
    return generic::fma_peak_chains<16, __m512>(iters, checksum, _mm512_fmadd_ps);
}

// Sixteen floats per compare straight into a mask register; masked loads for the tail.
void sign_masks(const float *x, const float *shift, int64_t n, uint64_t *out) {
    const __m512 zero = _mm512_setzero_ps();
    for (int64_t i = 0; i * 64 < n; ++i) {
        uint64_t mask = 0;
        for (int q = 0; q < 4; ++q) {
            const int64_t j = i * 64 + q * 16, left = n - j;
            if (left <= 0) break;
            const __mmask16 valid = left >= 16 ? __mmask16(0xffff) : __mmask16((1u << left) - 1);
            __m512 v = _mm512_maskz_loadu_ps(valid, x + j);
            if (shift) v = _mm512_sub_ps(v, _mm512_maskz_loadu_ps(valid, shift + j));
            mask |= uint64_t(_mm512_mask_cmp_ps_mask(valid, v, zero, _CMP_NGE_UQ)) << (16 * q);
        }
        out[i] = mask;
    }
}

// torch's max-pool update on 16 lanes: v wins where it is greater or NaN. vmaxps(v, m) is
// "v > m ? v : m" (m on ties and where either is NaN), so only NaN lanes of v need the mask; the
// chain through m is then one vmaxps.
inline __m512 max_tap16(__m512 m, __m512 v) {
    return _mm512_mask_max_ps(v, _mm512_cmp_ps_mask(v, v, _CMP_ORD_Q), v, m);
}

// V vectors of 16 channels from ch (the last masked by `tail`) of one output pixel: every tap
// of the window in order, rows then their columns [col0, col1), folded in by max_tap16 from the
// first tap (-inf for an empty window); with Flip, the channels' sign flips XORed into every
// tap and into the result.
template <int V, bool Flip>
__attribute__((always_inline)) inline void pool_pixel(const float *const *rows, int64_t nrows,
                                                      int64_t c, int64_t col0, int64_t col1,
                                                      int64_t ch, __mmask16 tail,
                                                      const uint32_t *flip, float *dst) {
    const __m512 lowest = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
    __m512 m[V], f[V];
    for (int v = 0; v < V; ++v) {
        m[v] = lowest;
        if (Flip) f[v] = _mm512_castsi512_ps(_mm512_maskz_loadu_epi32(tail, flip + ch + 16 * v));
    }
    const auto tap = [&](const float *p, int v) {
        const __m512 t = _mm512_mask_loadu_ps(lowest, v == V - 1 ? tail : 0xffff, p + 16 * v);
        return Flip ? _mm512_xor_ps(t, f[v]) : t;
    };
    if (nrows > 0 && col0 < col1)  // the first tap is the start: max_tap16(-inf, t) is t
        for (int v = 0; v < V; ++v) m[v] = tap(rows[0] + col0 * c + ch, v);
    for (int64_t r = 0; r < nrows; ++r)
        for (int64_t col = r == 0 ? col0 + 1 : col0; col < col1; ++col)
            for (int v = 0; v < V; ++v) m[v] = max_tap16(m[v], tap(rows[r] + col * c + ch, v));
    for (int v = 0; v < V; ++v)
        _mm512_mask_storeu_ps(dst + ch + 16 * v, v == V - 1 ? tail : 0xffff,
                              Flip ? _mm512_xor_ps(m[v], f[v]) : m[v]);
}

template <bool Flip>
void pool_row(const float *const *rows, int64_t nrows, int64_t w, int64_t c, int64_t kw,
              int64_t stride, int64_t pad, int64_t out_w, const uint32_t *flip, float *out) {
    for (int64_t o = 0; o < out_w; ++o) {
        const int64_t i0 = o * stride - pad;
        const int64_t col0 = std::max<int64_t>(0, i0), col1 = std::min(w, i0 + kw);
        float *dst = out + o * c;
        int64_t ch = 0;
        for (; ch + 64 <= c; ch += 64)
            pool_pixel<4, Flip>(rows, nrows, c, col0, col1, ch, 0xffff, flip, dst);
        for (; ch < c; ch += 16) {
            const __mmask16 tail = c - ch >= 16 ? 0xffff : __mmask16((1u << (c - ch)) - 1);
            pool_pixel<1, Flip>(rows, nrows, c, col0, col1, ch, tail, flip, dst);
        }
    }
}

// Channels in registers, up to 64 per pass over the window: one load, compare and masked max
// per tap and 16 channels.
void max_pool_row(const float *const *rows, int64_t nrows, int64_t w, int64_t c, int64_t kw,
                  int64_t stride, int64_t pad, int64_t out_w, const uint32_t *flip, float *out) {
    (flip ? pool_row<true> : pool_row<false>)(rows, nrows, w, c, kw, stride, pad, out_w, flip,
                                              out);
}

// MR output pixels of a row (x at the window of the first, in plane 0) x NR blocks of 16 output
// channels from block cb: MR * NR accumulators held in registers, started at the bias; per tap
// NR weight loads and MR broadcast inputs feed MR * NR fused multiply-adds. The last block is
// stored through `last` (channels past c_out).
template <int MR, int NR>
__attribute__((always_inline)) inline void direct_conv_tile(const DirectConv &d, const float *x,
                                                            int64_t cb, __mmask16 last,
                                                            float *out) {
    const int64_t taps = d.c_in * d.kh * d.kw;
    __m512 acc[MR][NR];
    for (int j = 0; j < NR; ++j) {
        const __m512 b = _mm512_loadu_ps(d.bias + (cb + j) * 16);
        for (int i = 0; i < MR; ++i) acc[i][j] = b;
    }
    const float *w = d.w + cb * taps * 16;
    // One tap (ci, kr, kc) of every pixel, the next weight vector.
    const auto tap = [&](int64_t ci, int64_t kr, int64_t kc) __attribute__((always_inline)) {
        const float *xr = x + (ci * d.hp + kr) * d.wp + kc;
        __m512 wv[NR];
        for (int j = 0; j < NR; ++j) wv[j] = _mm512_loadu_ps(w + j * taps * 16);
        for (int i = 0; i < MR; ++i) {
            const __m512 a = _mm512_set1_ps(xr[i * d.stride_w]);
            for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_fmadd_ps(a, wv[j], acc[i][j]);
        }
        w += 16;
    };
    for_each_tap(d, tap);
    for (int i = 0; i < MR; ++i)
        for (int j = 0; j < NR; ++j)
            _mm512_mask_storeu_ps(out + i * d.c_out + (cb + j) * 16, j == NR - 1 ? last : 0xffff,
                                  acc[i][j]);
}

// Pixels [o, o + n) of a row, n < 6, as one narrower tile.
template <int NR>
void direct_conv_rest(const DirectConv &d, const float *x, int64_t cb, __mmask16 last,
                      float *out, int64_t o, int64_t n) {
    const float *xt = x + o * d.stride_w;
    float *ot = out + o * d.c_out;
    switch (n) {
        case 5: direct_conv_tile<5, NR>(d, xt, cb, last, ot); break;
        case 4: direct_conv_tile<4, NR>(d, xt, cb, last, ot); break;
        case 3: direct_conv_tile<3, NR>(d, xt, cb, last, ot); break;
        case 2: direct_conv_tile<2, NR>(d, xt, cb, last, ot); break;
        case 1: direct_conv_tile<1, NR>(d, xt, cb, last, ot); break;
        default: break;
    }
}

// One output row for NR channel blocks from cb: tiles of 6 pixels; 1 or 2 left over share the
// last 6 as two tiles of 3-4 (a 1-pixel tile does more loads than multiply-adds).
template <int NR>
void direct_conv_blocks(const DirectConv &d, int64_t r, int64_t cb, __mmask16 last) {
    constexpr int kTile = 6;
    const float *x = d.x + r * d.stride_h * d.wp;
    float *out = d.out + r * d.out_w * d.c_out;
    const int64_t rest = d.out_w % kTile, split =
        d.out_w >= kTile && rest > 0 && rest < 3 ? rest + kTile : 0;
    int64_t o = 0;
    for (; o + kTile <= d.out_w - split; o += kTile)
        direct_conv_tile<kTile, NR>(d, x + o * d.stride_w, cb, last, out + o * d.c_out);
    if (split) {
        direct_conv_rest<NR>(d, x, cb, last, out, o, split - split / 2);
        o += split - split / 2;
    }
    direct_conv_rest<NR>(d, x, cb, last, out, o, d.out_w - o);
}

// Rows by 64-channel groups (a group's weights stay in L1 across the row), then the 1-3 blocks
// left.
void direct_conv_rows(const DirectConv &d, int64_t begin, int64_t end) {
    const int64_t blocks = (d.c_out + 15) / 16;
    const __mmask16 last = d.c_out % 16 ? __mmask16((1u << (d.c_out % 16)) - 1) : 0xffff;
    for (int64_t r = begin; r < end; ++r) {
        int64_t cb = 0;
        for (; cb + 4 <= blocks; cb += 4)
            direct_conv_blocks<4>(d, r, cb, cb + 4 == blocks ? last : 0xffff);
        switch (blocks - cb) {
            case 3: direct_conv_blocks<3>(d, r, cb, last); break;
            case 2: direct_conv_blocks<2>(d, r, cb, last); break;
            case 1: direct_conv_blocks<1>(d, r, cb, last); break;
            default: break;
        }
    }
}

// Sixteen pixels at a time: 16 plane rows (missing planes read 0, their lanes are not stored)
// turned into 16 pixel vectors by the usual unpack / shuffle / 128-bit-lane transpose.
void interleave_planes(const float *src, int64_t planes, int64_t src_stride, int64_t n,
                       float *dst, int64_t dst_stride) {
    const __mmask16 lanes = __mmask16((1u << planes) - 1);
    int64_t p = 0;
    for (; p + 16 <= n; p += 16) {
        __m512 r[16], t[16];
        for (int c = 0; c < 16; ++c)
            r[c] = c < planes ? _mm512_loadu_ps(src + c * src_stride + p) : _mm512_setzero_ps();
        for (int c = 0; c < 16; c += 2) {
            t[c] = _mm512_unpacklo_ps(r[c], r[c + 1]);
            t[c + 1] = _mm512_unpackhi_ps(r[c], r[c + 1]);
        }
        for (int c = 0; c < 16; c += 4)
            for (int h = 0; h < 2; ++h) {
                r[c + 2 * h] = _mm512_shuffle_ps(t[c + h], t[c + h + 2], _MM_SHUFFLE(1, 0, 1, 0));
                r[c + 2 * h + 1] =
                    _mm512_shuffle_ps(t[c + h], t[c + h + 2], _MM_SHUFFLE(3, 2, 3, 2));
            }
        // r[4q + j] now holds, in 128-bit lane L, pixel 4L + j of planes 4q .. 4q + 3.
        for (int j = 0; j < 4; ++j) {
            const __m512 a = _mm512_shuffle_f32x4(r[j], r[4 + j], _MM_SHUFFLE(2, 0, 2, 0));
            const __m512 b = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], _MM_SHUFFLE(2, 0, 2, 0));
            const __m512 c = _mm512_shuffle_f32x4(r[j], r[4 + j], _MM_SHUFFLE(3, 1, 3, 1));
            const __m512 d = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], _MM_SHUFFLE(3, 1, 3, 1));
            const __m512 px[4] = {_mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(2, 0, 2, 0)),
                                  _mm512_shuffle_f32x4(c, d, _MM_SHUFFLE(2, 0, 2, 0)),
                                  _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(3, 1, 3, 1)),
                                  _mm512_shuffle_f32x4(c, d, _MM_SHUFFLE(3, 1, 3, 1))};
            for (int l = 0; l < 4; ++l)
                _mm512_mask_storeu_ps(dst + (p + 4 * l + j) * dst_stride, lanes, px[l]);
        }
    }
    generic::interleave_planes(src + p, planes, src_stride, n - p, dst + p * dst_stride,
                               dst_stride);
}

// 64x64 bits as an 8x8 grid of 8x8 blocks: each register holds 8 rows; a byte transpose
// (vpermb) gathers each block into a qword, rows reversed; gf2p8affineqb against the identity
// bytes transposes every block; a qword transpose across the 8 registers and a byte transpose
// within each put block (r, c) at (c, r). About 60 instructions instead of ~1,200.
void transpose_bits(uint64_t a[64]) {
    // Byte 8c + k of the result = byte 8k + c of the source (an 8x8 byte transpose), rows k
    // reversed (7 - k) for the first pass: gf2p8affine reads a qword's bytes from the top.
    alignas(64) uint8_t gather[64], scatter[64];
    for (int c = 0; c < 8; ++c)
        for (int k = 0; k < 8; ++k) {
            gather[8 * c + (7 - k)] = static_cast<uint8_t>(8 * k + c);
            scatter[8 * c + k] = static_cast<uint8_t>(8 * k + c);
        }
    const __m512i by_block = _mm512_load_si512(gather), by_word = _mm512_load_si512(scatter);
    const __m512i identity = _mm512_set1_epi64(static_cast<long long>(0x8040201008040201ull));
    __m512i y[8];
    for (int r = 0; r < 8; ++r)
        y[r] = _mm512_gf2p8affine_epi64_epi8(
            identity, _mm512_permutexvar_epi8(by_block, _mm512_loadu_si512(a + 8 * r)), 0);
    // Qword transpose across registers: t[c] qword r = y[r] qword c.
    const __m512i even = _mm512_setr_epi64(0, 8, 2, 10, 4, 12, 6, 14);
    const __m512i odd = _mm512_setr_epi64(1, 9, 3, 11, 5, 13, 7, 15);
    const __m512i low2 = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13);
    const __m512i high2 = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
    const __m512i low4 = _mm512_setr_epi64(0, 1, 2, 3, 8, 9, 10, 11);
    const __m512i high4 = _mm512_setr_epi64(4, 5, 6, 7, 12, 13, 14, 15);
    __m512i p[8], q[8];
    for (int r = 0; r < 8; r += 2) {
        p[r] = _mm512_permutex2var_epi64(y[r], even, y[r + 1]);
        p[r + 1] = _mm512_permutex2var_epi64(y[r], odd, y[r + 1]);
    }
    // p[2i] holds columns 0, 2, 4, 6 of rows 2i, 2i + 1; p[2i + 1] columns 1, 3, 5, 7.
    for (int i = 0; i < 8; i += 4)
        for (int h = 0; h < 2; ++h) {
            q[i + h] = _mm512_permutex2var_epi64(p[i + h], low2, p[i + 2 + h]);
            q[i + 2 + h] = _mm512_permutex2var_epi64(p[i + h], high2, p[i + 2 + h]);
        }
    // q[g] holds columns g and g + 4 of rows 0-3, q[4 + g] the same of rows 4-7 (g < 4).
    for (int g = 0; g < 4; ++g) {
        const __m512i low = _mm512_permutex2var_epi64(q[g], low4, q[4 + g]);    // column g
        const __m512i high = _mm512_permutex2var_epi64(q[g], high4, q[4 + g]);  // column g + 4
        _mm512_storeu_si512(a + 8 * g, _mm512_permutexvar_epi8(by_word, low));
        _mm512_storeu_si512(a + 8 * (g + 4), _mm512_permutexvar_epi8(by_word, high));
    }
}

}  // namespace

namespace isa {
const KernelTable avx512vpopcnt = {"avx512vpopcnt", kMr, kNrCall, bconv_tile__avx512vpopcnt,
                                    peak_loop, float_peak_loop, sign_masks, max_pool_row,
                                    direct_conv_rows, interleave_planes, transpose_bits, true,
                                    blocks_in_l1};
}

}  // namespace bnnx

#endif
