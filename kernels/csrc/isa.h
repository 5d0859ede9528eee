// Runtime ISA dispatch point: every hot loop calls through the active KernelTable, so a new
// microkernel is one new isa_*.cpp plus one entry in isa.cpp.
//
// Weights reach the microkernels "blocked": (ceil(C_out / 8), K, 8) uint64, i.e. for every block
// of 8 output channels and every weight word k < K (K = KH * KW * C_words, or C_words for a
// linear layer) the 8 channels' words side by side. One 512-bit register then holds one word of
// 8 output channels, so a broadcast activation word is XORed with all of them at once (OpenVINO's
// JIT layout); scalar tables read the same layout lane by lane. Channels past C_out are 0 words.
#pragma once

#include <cstddef>
#include <cstdint>

namespace bnnx {

constexpr int64_t kBlock = 8;  // output channels per weight block

inline int64_t blocks_for(int64_t c_out) { return (c_out + kBlock - 1) / kBlock; }

// `rows` x `tiles` tiles of mr output pixels x nr blocks of 8 output channels; for
// row q < rows, pixel i < tiles * mr and channel l < 8 * nr of the call, output pixel
// q * out_row_stride + i of TileOut gets
// pc[q, i][l] = sum_{r < nrows} sum_{t < run} popcount(
//     a[q * a_row_stride + i * a_pixel_stride + a_row_off[r] + t] ^ w[b, w_row_off[r] + t, l % 8])
// with b = block0 + l / 8 and w[b, k, j] = w[(b * w_block_stride + k) * 8 + j]. Several tiles
// and rows per call amortise the call and the epilogue's per-channel set-up over a band of
// output rows that share one window.
// With raster_width > 0 (tables with raster_bands only) the call's tiles run in raster order
// across the band's rows instead, raster_width pixels a row: pixel i of tile k is band pixel
// p = raster_first + k * mr + i, at row q = p / raster_width and column p % raster_width of the
// formula above (so every tile of a band but its last can be full width); rows is unused.
struct Tile {
    const uint64_t *a;
    int64_t a_pixel_stride;
    const int64_t *a_row_off, *w_row_off;
    int64_t nrows, run;
    const uint64_t *w;
    int64_t w_block_stride;  // K
    int64_t block0;
    int mr, nr;
    int64_t tiles;
    int64_t rows = 1, a_row_stride = 0, out_row_stride = 0;
    int64_t raster_width = 0, raster_first = 0;
};

enum class OutKind : int { dots, floats, bits, unit };

// The activation closing a fused residual unit, as torch computes it per value:
//   prelu:  y > 0 ? y : slope[c] * y
//   rprelu: t = y - gamma[c]; (t > 0 ? t : slope[c] * t) + zeta[c]   (ReActNet's RPReLU)
//   hardtanh: t = y < low ? low : y; t > high ? high : t   (torch's clamp; NaN stays NaN)
enum class Act : int { none, prelu, rprelu, hardtanh };

// The fused epilogue: dot = base - 2 * pc + corr[c] (corr: padded taps, may be null), then
//   dots:   out[c] = dot (int32)
//   floats: out[c] = scale[c] * dot + bias[c] (multiply, then add: no FMA, identical everywhere)
//   bits:   bit c = dot >= threshold[c] if bit (c % 8) of dir_pos[c / 8] is set, else
//           dot <= threshold[c]; written as byte c / 8 of the packed output (bits >= C_out are 0).
//   unit:   out[c] = act(fma(scale[c] * dot + bias[c], alpha[c], beta[c]) [+ residual[c]]), the
//           floats output, then an eval BatchNorm as torch computes it (one fused multiply-add),
//           a residual add when `residual` is set (channel c read at c % residual_channels:
//           the output's own channel when residual_channels = C_out, or a half-width map added
//           to both halves, ReActNet's [y, y], when it is C_out / 2, a multiple of 16) and the
//           activation `act` (per-channel gamma, slope, zeta; see Act). With `signs` set, the
//           same pass also packs the next binary layer's input: bit c of that pixel's words is
//           !(out[c] - sign_shift[c] >= 0) (no subtraction where sign_shift is null), the
//           float subtraction and sign the consumer's pack would do; byte c / 8 at
//           signs + i * signs_stride for pixel i (bytes past C_out are left alone).
// Per-channel arrays are padded to a multiple of 8. `out` (and `residual`) point at the tile's
// first pixel; pixel i is at out + i * pixel_stride, in elements (int32 / float) or bytes (bits)
// (and at residual + i * residual_stride, in floats).
struct TileOut {
    OutKind kind;
    int64_t c_out;
    int32_t base;
    const int32_t *corr;
    const float *scale, *bias;
    const float *alpha, *beta, *residual;
    int64_t residual_stride, residual_channels;
    Act act;
    const float *gamma, *slope, *zeta;
    float low, high;  // hardtanh's bounds
    uint8_t *signs;
    int64_t signs_stride;
    const float *sign_shift;
    const int32_t *threshold;
    const uint8_t *dir_pos;
    void *out;
    int64_t pixel_stride;
};

// A direct float conv over few input channels (a network's stem), NHWC out: output pixel o of
// row r, channel co < c_out, is
//   bias[co] + the sum, in the order of i < kh, j < kw, ci < c_in (torch's oneDNN 7x7 stem
//   kernel's) or with channels_outer of ci, i, j (torch's 3x3 CIFAR stem's: a conv on this
//   kernel can give torch's bits), of w[(co / 16 * c_in * kh * kw + t) * 16 + co % 16] *
//   x[(ci * hp + r * stride_h + i) * wp + o * stride_w + j], t the tap's place in that order,
// x being the input already padded (c_in planes of hp x wp), w blocked by 16 output channels
// (zeros past c_out) and bias padded to a multiple of 16.
struct DirectConv {
    const float *x;
    int64_t c_in, hp, wp, kh, kw, stride_h, stride_w;
    const float *w, *bias;
    int64_t c_out, out_w;
    float *out;  // pixel o of row r at out + (r * out_w + o) * c_out
    bool channels_outer = false;  // the taps' order (above)
};

// tap(ci, i, j) for each of d's taps, in d's order (the weights' order too).
template <class Tap>
inline __attribute__((always_inline)) void for_each_tap(const DirectConv &d, Tap &&tap) {
    if (d.channels_outer)
        for (int64_t ci = 0; ci < d.c_in; ++ci)
            for (int64_t i = 0; i < d.kh; ++i)
                for (int64_t j = 0; j < d.kw; ++j) tap(ci, i, j);
    else
        for (int64_t i = 0; i < d.kh; ++i)
            for (int64_t j = 0; j < d.kw; ++j)
                for (int64_t ci = 0; ci < d.c_in; ++ci) tap(ci, i, j);
}

struct KernelTable {
    const char *name;
    int mr_max, nr_max;  // most pixels per tile and blocks per call that bconv_tile takes
    void (*bconv_tile)(const Tile &tile, const TileOut &out);
    // The same XOR / popcount / add recipe on registers only, `iters` times: the peak the tile
    // could reach without memory. Returns (iters x binary MACs per iteration, checksum).
    uint64_t (*peak_loop)(int64_t iters, uint64_t *checksum);
    // Independent fp32 multiply-adds at the ISA's full width on registers only, `iters` times:
    // the most a float conv or GEMM can get from this core. Returns the MACs; their sum is
    // added to checksum.
    uint64_t (*float_peak_loop)(int64_t iters, float *checksum);
    // Sign bits of n floats: bit j of out[i] = !(x[64 i + j] >= 0) (NaN -> 1, -0 -> 0) for
    // 64 i + j < n, 0 past n; ceil(n / 64) words. With shift non-null, of x[k] - shift[k]
    // instead (one float subtraction each, as torch's RSign computes it).
    void (*sign_masks)(const float *x, const float *shift, int64_t n, uint64_t *out);
    // One output row of an NHWC max-pool (c floats per pixel): out[o * c + ch] = the max of
    // channel ch over the window's input rows rows[0 .. nrows), in order, and in each the
    // columns o * stride - pad + k for k < kw inside [0, w), in order, updated as torch does (a
    // later tap wins only if greater or NaN); -inf where no tap is inside. With flip non-null,
    // channel ch is read and written with flip[ch] XORed into its bits (the sign bit: torch's
    // min-pool, NaNs and +-0 exact).
    void (*max_pool_row)(const float *const *rows, int64_t nrows, int64_t w, int64_t c,
                         int64_t kw, int64_t stride, int64_t pad, int64_t out_w,
                         const uint32_t *flip, float *out);
    // Output rows [begin, end) of a DirectConv.
    void (*direct_conv_rows)(const DirectConv &d, int64_t begin, int64_t end);
    // Planes to pixels (an NCHW -> NHWC step): dst[p * dst_stride + c] = src[c * src_stride + p]
    // for c < planes <= 16 and p < n.
    void (*interleave_planes)(const float *src, int64_t planes, int64_t src_stride, int64_t n,
                              float *dst, int64_t dst_stride);
    // In-place 64x64 bit-matrix transpose: bit j of a[i] <-> bit i of a[j] (packing NCHW maps:
    // 64 channel masks of 64 pixels become 64 pixel words of 64 channels).
    void (*transpose_bits)(uint64_t a[64]);
    // bconv_tile takes raster bands (Tile::raster_width); else a band is tiled row by row.
    bool raster_bands = false;
    // The most blocks (up to nr_max) whose weights, k words a block, stay in L1 while a call's
    // tiles run; null: nr_max. conv.cpp calls a row's spans in groups of that many blocks, so
    // an edge row's corners (one pixel a weight word) find their group's weights in L1 after
    // the row's span, not in L2.
    int (*blocks_in_l1)(int64_t k) = nullptr;
};

// The table in use: chosen at first use from cpuid, overridable with BNNX_ISA=<name>.
const KernelTable &active_kernels();

// A table compiled into this build and usable on this CPU, or nullptr.
const KernelTable *find_kernels(const char *name);

// Names of the tables usable on this CPU, best first.
const char *const *available_kernel_names(size_t *count);

// Switches the active table; false for an unknown or unsupported name.
bool set_active_kernels(const char *name);

namespace isa {
extern const KernelTable scalar;
#if defined(__x86_64__) || defined(_M_X64)
extern const KernelTable popcnt;
extern const KernelTable avx512vpopcnt;
extern const KernelTable avx2;
#endif
#if defined(__aarch64__)
extern const KernelTable neon;  // Advanced SIMD is baseline on AArch64: no runtime check
#endif
}  // namespace isa

}  // namespace bnnx
