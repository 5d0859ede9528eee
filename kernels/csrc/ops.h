// Packed-bit operators on raw, C-contiguous buffers. Validation lives in bindings.cpp; these
// functions trust their arguments.
//
// Encoding: activations NHWC, channels packed into uint64 words, channel c -> bit (c % 64) of
// word (c / 64); bit = 1 means -1, i.e. !(x >= 0) like the quantizers (0 -> +1, NaN -> -1);
// bits past the channel count are 0.
// Weights: (C_out, KH, KW, C_words), packed the same way; the kernels take them blocked
// (block_weights, layout in isa.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>
#include <vector>

#include "isa.h"

namespace bnnx {

inline int64_t words_for(int64_t channels) { return (channels + 63) / 64; }

// Sign bits (bit 1 where !(x - shift[c] >= 0); no subtraction where shift is null), packed NHWC.
void pack_nhwc(const float *x, int64_t pixels, int64_t channels, uint64_t *out,
               int threads = 1, const float *shift = nullptr);
void pack_nchw(const float *x, int64_t n, int64_t channels, int64_t hw, uint64_t *out,
               const float *shift = nullptr);
void unpack_nhwc(const uint64_t *bits, int64_t pixels, int64_t channels, float *out);
// (C_out, K) words -> blocked (ceil(C_out / 8), K, 8), zero past C_out.
void block_weights(const uint64_t *w, int64_t c_out, int64_t k, uint64_t *out);

struct ConvGeometry {
    int64_t n, h, w, c_in;   // input
    int64_t c_out, kh, kw;   // weights
    int64_t stride_h, stride_w, pad_h, pad_w;
    int pad_value;           // value of the padded taps: -1, 0 or +1
    // The weights' tap sums (tap_sum_prefix), a layer's made once; null: made per call where
    // the padded taps need them.
    const int32_t *tap_prefix = nullptr;
    int64_t out_h() const { return (h + 2 * pad_h - kh) / stride_h + 1; }
    int64_t out_w() const { return (w + 2 * pad_w - kw) / stride_w + 1; }
    int64_t c_words() const { return words_for(c_in); }
};

// Per output channel c (blocks_for(c_out) * 8 of them), the sums over taps of C_in - 2 *
// popcount(w[c, tap]) (a tap's dot with an all +1 input), as prefix sums:
// prefix[(kh * (KW + 1) + kw) * C + c] sums the taps above and left of (kh, kw), so any
// rectangle of taps costs four lookups per channel.
std::vector<int32_t> tap_sum_prefix(const ConvGeometry &g, const uint64_t *wb);

// wb: blocked weights. dot[n, oh, ow, co] = sum over taps of sum_c a*w in {-1, 0, +1} arithmetic.
void conv2d_dots(const ConvGeometry &g, const uint64_t *x, const uint64_t *wb, int32_t *out,
                 int threads);
// out = scale[co] * dot + bias[co], NHWC float32.
void conv2d_float(const ConvGeometry &g, const uint64_t *x, const uint64_t *wb, const float *scale,
                  const float *bias, float *out, int threads);
// The activation closing a fused unit (Act in isa.h) and its parameters: C_out-long slope for
// prelu, gamma, slope and zeta for rprelu (unused ones may be null); low and high for hardtanh.
struct UnitAct {
    Act act = Act::none;
    const float *gamma = nullptr, *slope = nullptr, *zeta = nullptr;
    float low = -1.0f, high = 1.0f;
};

// A residual unit's tail in the conv's output pass, NHWC float32:
// out = act(fma(scale[co] * dot + bias[co], alpha[co], beta[co]) [+ residual]), the float output,
// an eval BatchNorm as torch computes it, a residual add when residual (NHWC like out) is not
// null, and the activation. With `signs` (packed NHWC over C_out, zeroed by the caller), the
// pass also writes the next binary layer's input bits: !(out - sign_shift >= 0), per channel,
// sign_shift may be null (a plain sign).
void conv2d_unit(const ConvGeometry &g, const uint64_t *x, const uint64_t *wb, const float *scale,
                 const float *bias, const float *alpha, const float *beta, const float *residual,
                 const UnitAct &act, float *out, const float *sign_shift, uint64_t *signs,
                 int threads);
// out[i, c] = fma(y[i, c], alpha[c], beta[c]) for n rows of c_out floats: the BatchNorm step of
// conv2d_unit, on given values.
void fma_channels(const float *y, int64_t n, int64_t c_out, const float *alpha, const float *beta,
                  float *out);
// Packed NHWC bits over C_out: bit = direction[co] > 0 ? dot >= threshold[co]
//                                                      : dot <= threshold[co].
void conv2d_bits(const ConvGeometry &g, const uint64_t *x, const uint64_t *wb,
                 const int32_t *threshold, const int8_t *direction, uint64_t *out, int threads);

struct PoolGeometry {
    int64_t n, h, w, c;      // c = channels (float) or words (bits)
    int64_t kh, kw, stride_h, stride_w, pad_h, pad_w;
    int64_t out_h() const { return (h + 2 * pad_h - kh) / stride_h + 1; }
    int64_t out_w() const { return (w + 2 * pad_w - kw) / stride_w + 1; }
};

// Padded taps are ignored, like torch's -inf padding. The pools split their work over up to
// `threads` threads where the map is large enough to repay it; the result is the same.
void maxpool2d_bits(const PoolGeometry &g, const uint64_t *x, uint64_t *out,
                    int threads = 1);
// Float pools: torch's max-pool on every channel, except those with lower[c] != 0 (lower may
// be null) which take the minimum the same way: the max-pool of -x, negated back, with the sign
// flipped by XOR so NaNs and +-0 keep their bits. (A BatchNorm with a negative gamma turns a
// max-pool after it into a min-pool before it.)
void maxpool2d_float(const PoolGeometry &g, const float *x, float *out, const uint8_t *lower,
                     int threads = 1);
// torch's average pool (window, divisor and summation order as its CPU kernel's; divisor
// override 0 = none) on float NHWC x (g.c = channels), written NHWC (n, out_h, out_w, c) or,
// with nchw, NCHW (n, c, out_h, out_w): out_h and out_w as torch's, with or without ceil_mode.
void avgpool2d_float(const PoolGeometry &g, int64_t out_h, int64_t out_w, bool count_include_pad,
                     int64_t divisor_override, const float *x, float *out, bool nchw,
                     int threads);
// Per channel, the sign bit a lower (min-pooled) channel flips, else 0 (all 0 without lower).
std::vector<uint32_t> sign_flips(int64_t channels, const uint8_t *lower);
// The same pool on float NCHW input (g.c = channels), written NHWC.
void maxpool2d_float_nchw(const PoolGeometry &g, const float *x, float *out,
                          const uint8_t *lower, int threads = 1);

// Float weights (C_out, K) -> blocked by 16 output channels (ceil(C_out / 16), K, 16), zero
// past C_out: DirectConv's layout.
void block_float_weights(const float *w, int64_t c_out, int64_t k, float *out);
// A float conv over few input channels, direct: x NCHW (g.n, g.c_in, g.h, g.w), wb blocked
// (block_float_weights of (C_out, KH * KW * C_in), or with channels_outer (C_out, C_in * KH *
// KW): DirectConv's tap orders), bias padded to a multiple of 16; out NHWC (n, out_h, out_w,
// c_out) = bias + the conv of x padded with pad_value[ci] (g.pad_value unused).
// With `signs`, also pack_nhwc of out (minus sign_shift, which may be null) into it, each row
// by the thread that wrote it, while it is in that thread's cache: a binary consumer's input.
// With `winograd` (winograd_weights of the same conv, where winograd_takes(g)), by Winograd's
// algorithm instead of the direct kernel (the same for direct_conv2d_maxpool). out may be null
// where signs is not: the signs alone, no map written (each thread makes its rows in a buffer
// of its own and packs them there).
void direct_conv2d(const ConvGeometry &g, const float *x, const float *wb, const float *bias,
                   const float *pad_value, float *out, int threads, uint64_t *signs = nullptr,
                   const float *sign_shift = nullptr, const float *winograd = nullptr,
                   bool channels_outer = false);

// Winograd's algorithm on 4x4 output tiles (winograd.cpp), float rounding of its own:
// F(4x4, 4x4) on the polyphase form of a 7x7 stride-2 conv over 1-4 input channels, F(4x4, 3x3)
// on a 3x3 stride-1 conv over 1-4 (its GEMMs fused into the output transform): a quarter of
// the direct kernel's multiply-adds. winograd_weights (C_out, C_in, KH, KW) -> for each
// transform point the blocked (block_float_weights) (C_out, taps) transformed weights,
// computed in double; a layer's `winograd` argument below. Where winograd_takes(g); the
// default where winograd_pays(g): from 2 input channels. Over 1 the few-tap GEMMs and the
// transforms took longer than the direct kernel (7x7: 1.05-1.9x its time, 3x3 on 32x32 maps
// to 128 channels: 1.0-1.3x); over 2-4, 7x7: 0.57-0.73x on 224x224 maps, 3x3 (32x32 to 128,
// with signs, on 1 / 2 threads): 2 channels 0.89-0.97x / 0.87-0.96x, 3 0.78-0.86x /
// 0.75-0.81x, 4 0.94-1.01x / 0.79-0.86x.
bool winograd_takes(const ConvGeometry &g);
bool winograd_pays(const ConvGeometry &g);
// Floats from 64-byte boundaries: a vector load or store of a row that starts a cache line
// stays in it (split ones made Winograd's GEMMs and transforms a few % slower).
template <class T>
struct CacheAligned {
    using value_type = T;
    CacheAligned() = default;
    template <class U>
    CacheAligned(const CacheAligned<U> &) {}
    T *allocate(size_t n) {
        return static_cast<T *>(::operator new(n * sizeof(T), std::align_val_t{64}));
    }
    void deallocate(T *p, size_t) { ::operator delete(p, std::align_val_t{64}); }
    template <class U>
    bool operator==(const CacheAligned<U> &) const { return true; }
    template <class U>
    bool operator!=(const CacheAligned<U> &) const { return false; }
};
using AlignedFloats = std::vector<float, CacheAligned<float>>;
AlignedFloats winograd_weights(const ConvGeometry &g, const float *w);
// The multiply-adds its GEMMs do on g (the transforms' additions aside).
int64_t winograd_macs(const ConvGeometry &g);
// Tiles of 4x4 outputs, and the width of the phase rows their windows (7x7, 6x6) read: pixels
// of 16 floats, lane (s pr + pc) C_in + ci of pixel (i, j) the padded input's channel ci at
// (s i + pr, s j + pc) for the stride s (2, 1), pad_value[ci] outside x.
struct WinogradShape {
    int64_t tiles_h, tiles_w, phase_w;
};
WinogradShape winograd_shape(const ConvGeometry &g);
// Conv rows 4 ty .. min(4 ty + 4, out_h) of image b (bias + the conv), NHWC rows at out. The
// calling thread makes the phase rows its tiles read, keeping those the next tile row shares
// for its next call in the same `call` (a new id for each conv call, MadeRows::new_call()).
// With `signs` (the rows' first pixel's words), also pack_nhwc of those rows minus sign_shift
// (may be null) into it, every word written: F(4x4, 3x3) compares each output vector while it
// is in registers, F(4x4, 4x4) packs the rows it wrote. out may be null where signs is not:
// signs only, the rows made in a buffer of the calling thread's (in its cache), no map.
void winograd_tile_row(const ConvGeometry &g, const float *x, const float *pad_value,
                       const float *winograd, const float *bias, uint64_t call, int64_t b,
                       int64_t ty, float *out, uint64_t *signs = nullptr,
                       const float *sign_shift = nullptr);

// direct_conv2d then maxpool2d_float (pool: its geometry on the conv's output; lower may be
// null) in one pass: each thread keeps only the conv rows of its current window, so the conv's
// map is never written whole. out: the pooled NHWC map; signs as in direct_conv2d.
void direct_conv2d_maxpool(const ConvGeometry &g, const float *x, const float *wb,
                           const float *bias, const float *pad_value, const PoolGeometry &pool,
                           const uint8_t *lower, float *out, int threads,
                           uint64_t *signs = nullptr, const float *sign_shift = nullptr,
                           const float *winograd = nullptr, bool channels_outer = false);
// The same kernel as a 1x1 conv, stride 1, on NHWC x (pixels x c_in): out (pixels x c_out).
void pointwise_conv2d(const float *x, int64_t pixels, int64_t c_in, const float *wb,
                      const float *bias, int64_t c_out, float *out, int threads);

// An average pool without padding (pool: its geometry on NHWC x, c = C_in; out_h x out_w
// windows, the last ones clipped to the map with ceil_mode, averaging the taps inside) then
// pointwise_conv2d on the pooled map: a downsampling shortcut. out (n, out_h, out_w, c_out).
void avgpool_pointwise_conv2d(const PoolGeometry &pool, int64_t out_h, int64_t out_w,
                              const float *x, const float *wb, const float *bias, int64_t c_out,
                              float *out, int threads);

// Threads for an elementwise pass or transpose over `elements` floats: none below a share
// worth waking a worker for.
int map_threads(int64_t elements, int threads);

// Per image, dst (cols x rows) = the transpose of src (rows x cols): NCHW <-> NHWC; 16-row
// blocks split over up to `threads` threads.
void transpose_float(const float *src, int64_t batch, int64_t rows, int64_t cols, float *dst,
                     int threads);

// Eval BatchNorm as torch's CPU kernel computes it: out = fma(x, alpha[c], beta[c]) (alpha and
// beta: torch's own, see BatchNormOp.linear_terms). x NHWC (pixels rows of c floats) or, with
// nchw, (n, c, hw) planes; out NHWC either way (may be x when both are NHWC).
void batchnorm_float(const float *x, int64_t n, int64_t c, int64_t hw, bool nchw,
                     const float *alpha, const float *beta, float *out, int threads);

// out = (x - mean[c]) / std[c] on NCHW x (n, c, hw): torch's normalisation, each operation
// rounded once.
void normalize_float(const float *x, int64_t n, int64_t c, int64_t hw, const float *mean,
                     const float *std, float *out, int threads);

// x: (n, words_for(c_in)), wb: blocked (c_out, words_for(c_in)); out = scale * dot + bias.
void linear_float(const uint64_t *x, const uint64_t *wb, int64_t n, int64_t c_in, int64_t c_out,
                  const float *scale, const float *bias, float *out, int threads);

}  // namespace bnnx
