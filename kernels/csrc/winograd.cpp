// Float convs over few input channels (stems) by Winograd's minimal filtering, on 4x4 output
// tiles:
// - a 7x7 stride-2 conv over 1-4 input channels (an ImageNet stem), a quarter of the direct
//   kernel's multiply-adds: polyphase, the stride-2 conv with a 7x7 kernel over C_in channels
//   is a stride-1 conv with a 4x4 kernel over 4 C_in "phase" channels: phase (pr, pc) of
//   channel ci, lane (2 pr + pc) C_in + ci of a 16-float phase pixel, is the padded input at
//   (2 i + pr, 2 j + pc), its kernel w[co, ci, pr::2, pc::2] zero-padded to 4x4; then Winograd
//   F(4x4, 4x4) on that conv, 7x7 phase pixels per tile;
// - a 3x3 stride-1 conv over 1-4 input channels (a CIFAR stem) by F(4x4, 3x3), 6x6 pixels
//   per tile (the phase pixel: the padded input's C_in channels), 6.75 multiply-adds per
//   output where the direct kernel does 27 (over 3 channels).
// Per tile: the input transform V = BT d BT^T, for each transform point a GEMM (tiles x taps)
// @ (taps x C_out), then the output transform Y = AT M AT^T and the bias. F(4x4, 4x4)'s GEMMs
// (4-16 taps) run on the direct kernel (as pointwise convs); F(4x4, 3x3)'s (1-4 taps) in the
// output transform's pass, M never stored (fused_transform, winograd_tiles.h), which also
// writes the consumer's sign bits from the outputs in registers.
// The transforms are plain loops over 16-float vectors, cloned for the vector ISAs. A thread
// makes the phase rows its tile rows read (winograd_tile_row), keeping those the next one
// shares.
#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

#include "isa.h"
#include "ops.h"

namespace bnnx {

namespace {

constexpr int kM = 4;  // outputs per tile side
constexpr int64_t kLanes = 16;  // floats per phase pixel
constexpr int64_t kChunk = 32;  // most tiles per GEMM
constexpr int64_t kGroup = 2048;  // most channels per GEMM (a chunk of 1 tile)
// Floats from one transform point's row of V (tiles x 16) and M (tiles x channels) to the
// next: constants, so the loads of a tile's points take one base register, plus one cache
// line, so their lines fall in different L1 sets. A chunk's tiles x channels is at most kGroup.
constexpr int64_t kVPoint = kChunk * kLanes + kLanes, kMPoint = kGroup + kLanes;

// The two algorithms, Cook-Toom matrices at the points 0, 1, -1, 2, -2, (1/2,) infinity, in
// that order (AT[i][j] = a_j^i, the infinity column (0, 0, 0, 1)): kN points per side, a
// kR x kR (phase) kernel, kStride phases per side. Exact: BT and AT in float, G in double (the
// weights' transform is computed in double and rounded once).
// F(4x4, 4x4) on the polyphase form of a 7x7 stride-2 conv (wincnn's construction:
// G[j][i] = a_j^i / prod_{k != j} (a_j - a_k); BT's row j the coefficients of M(x) / (x - a_j),
// M(x) = prod_j (x - a_j), its last row M's; the infinity point's row / column the unit vector).
struct F44 {
    static constexpr int kN = 7, kR = 4, kStride = 2, kKernel = 7;
    static constexpr bool kHalf = true;  // the point 1/2
    static constexpr bool kFused = false;  // GEMMs fused into the output transform
    static constexpr float kAT[kM][kN] = {
        {1, 1, 1, 1, 1, 1, 0},
        {0, 1, -1, 2, -2, 0.5f, 0},
        {0, 1, 1, 4, 4, 0.25f, 0},
        {0, 1, -1, 8, -8, 0.125f, 1},
    };
    static constexpr double kG[kN][kR] = {
        {-1.0 / 2, 0, 0, 0},
        {-1.0 / 3, -1.0 / 3, -1.0 / 3, -1.0 / 3},
        {1.0 / 9, -1.0 / 9, 1.0 / 9, -1.0 / 9},
        {1.0 / 36, 1.0 / 18, 1.0 / 9, 2.0 / 9},
        {-1.0 / 60, 1.0 / 30, -1.0 / 15, 2.0 / 15},
        {32.0 / 45, 16.0 / 45, 8.0 / 45, 4.0 / 45},
        {0, 0, 0, 1},
    };
    static constexpr float kBT[kN][kN] = {
        {-2, 4, 2.5f, -5, -0.5f, 1, 0},
        {0, 2, -2, -4.5f, 0.5f, 1, 0},
        {0, -2, 6, -3.5f, -1.5f, 1, 0},
        {0, 1, -1.5f, -2, 1.5f, 1, 0},
        {0, -1, 2.5f, 0, -2.5f, 1, 0},
        {0, 4, 0, -5, 0, 1, 0},
        {0, -2, 4, 2.5f, -5, -0.5f, 1},
    };
};
// F(4x4, 3x3) on a 3x3 stride-1 conv (Lavin and Gray's matrices): the padded input's C_in
// channels are the phase pixel.
struct F43 {
    static constexpr int kN = 6, kR = 3, kStride = 1, kKernel = 3;
    static constexpr bool kHalf = false;
    static constexpr bool kFused = true;
    static constexpr float kAT[kM][kN] = {
        {1, 1, 1, 1, 1, 0},
        {0, 1, -1, 2, -2, 0},
        {0, 1, 1, 4, 4, 0},
        {0, 1, -1, 8, -8, 1},
    };
    static constexpr double kG[kN][kR] = {
        {1.0 / 4, 0, 0},
        {-1.0 / 6, -1.0 / 6, -1.0 / 6},
        {-1.0 / 6, 1.0 / 6, -1.0 / 6},
        {1.0 / 24, 1.0 / 12, 1.0 / 6},
        {1.0 / 24, -1.0 / 12, 1.0 / 6},
        {0, 0, 1},
    };
    static constexpr float kBT[kN][kN] = {
        {4, 0, -5, 0, 1, 0},
        {0, -4, -4, 1, 1, 0},
        {0, 4, -4, -1, 1, 0},
        {0, -2, -1, 2, 1, 0},
        {0, 2, -1, -2, 1, 0},
        {0, 4, 0, -5, 0, 1},
    };
};
constexpr int kMaxPoints = F44::kN * F44::kN;
// The point whose GEMM adds the bias: (1, 1), AT's column 1 is all ones.
constexpr int biased_point(int points) { return points + 1; }
constexpr int64_t kMaxFusedTaps = 4;  // the most taps fused_transform takes

// f(F44{}) or f(F43{}): the algorithm for g (winograd_takes(g)).
template <class F>
auto with_algorithm(const ConvGeometry &g, F &&f) {
    return g.kh == F44::kKernel ? f(F44{}) : f(F43{});
}
using Vec = float __attribute__((vector_size(kLanes * sizeof(float))));

// Where fused_transform writes the sign bits of its outputs (bits null: none): pack_nhwc's
// words of the tile row's first pixel, `pixel` words from one pixel to the next, `row` from
// one conv row to the next; bit 1 where !(y - shift[c] >= 0) (no subtraction where shift is
// null; the shift of the channels fused_transform takes).
struct TileSigns {
    uint64_t *bits;
    const float *shift;
    int64_t pixel, row;
};

// The baseline's copy of the tile pass (the cloned transforms' and the default
// fused_transform's).
#include "winograd_tiles.h"

// out[i * os] = sum_j m[i][j] in[j * is] for a constant matrix: once the loops unroll, zero
// terms vanish and unit ones are added without a multiply.
template <int R, int C>
inline __attribute__((always_inline)) void transform(const float (&m)[R][C], const Vec *in,
                                                     int is, Vec *out, int os) {
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
        Vec acc{};
        bool started = false;
#pragma GCC unroll 8
        for (int j = 0; j < C; ++j) {
            const float c = m[i][j];
            if (c == 0) continue;
            const Vec t = c == 1 ? in[j * is] : c == -1 ? -in[j * is] : c * in[j * is];
            acc = started ? acc + t : t;
            started = true;
        }
        out[i * os] = acc;
    }
}

// V (points^2 rows of kVPoint floats: tile t's 16 at t * 16) of tiles [0, n) of a tile row:
// tile t's points x points phase pixels from pixel 4 t of the phase rows rows[0 .. points).
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void input_transform(int points, const float *const *phase, int64_t n, float *v) {
    with_points(points, [&](auto algorithm) __attribute__((always_inline)) {
        using W = decltype(algorithm);
        constexpr int kN = W::kN;
        for (int64_t t = 0; t < n; ++t) {
            Vec d[kN][kN], rows[kN][kN], out[kN][kN];
            for (int i = 0; i < kN; ++i)
                for (int j = 0; j < kN; ++j)
                    std::memcpy(&d[i][j], phase[i] + (t * kM + j) * kLanes, sizeof(Vec));
            for (int i = 0; i < kN; ++i) transform(W::kBT, d[i], 1, rows[i], 1);
            for (int j = 0; j < kN; ++j) transform(W::kBT, &rows[0][j], kN, &out[0][j], kN);
            for (int i = 0; i < kN; ++i)
                for (int j = 0; j < kN; ++j)
                    std::memcpy(v + (i * kN + j) * kVPoint + t * kLanes, &out[i][j],
                                sizeof(Vec));
        }
    });
}

// Conv rows [0, rows) and columns [4 t, 4 t + 4) (those < cols) of tiles t < n, channels
// [0, channels) from M (points^2 rows of kMPoint floats: tile t's c_pad at t * c_pad; the bias
// in point (1, 1): AT's column 1 is all ones). Pixels `pixel` floats apart, rows `stride`.
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void output_transform(int points, const float *m, int64_t n, int64_t c_pad, int64_t channels,
                      int64_t pixel, int64_t rows, int64_t cols, int64_t stride, float *out) {
    with_points(points, [&](auto algorithm) __attribute__((always_inline)) {
        for (int64_t t = 0; t < n; ++t)
            for (int64_t c0 = 0; c0 < channels; c0 += kLanes) {
                const float *src = m + t * c_pad + c0;
                const auto point = [src](int p) __attribute__((always_inline)) {
                    Vec in;
                    std::memcpy(&in, src + p * kMPoint, sizeof(Vec));
                    return in;
                };
                const int64_t lanes = std::min(kLanes, channels - c0);
                float *const first = out + t * kM * pixel + c0;
                tile_outputs<decltype(algorithm)>(
                    point, rows, cols - t * kM,
                    [&](int i, int j, const Vec &y) __attribute__((always_inline)) {
                        store_lanes(y, lanes, first + i * stride + j * pixel);
                    });
            }
    });
}

#if defined(__x86_64__) && defined(__GNUC__)
// The tile pass compiled for each vector ISA (winograd_tiles.h), with its compare to a mask.
#pragma GCC push_options
#pragma GCC target("avx512f")
namespace avx512 {
#include "winograd_tiles.h"
struct Mask {
    uint32_t operator()(const Vec &t) const {
        return _mm512_cmp_ps_mask(t, _mm512_setzero_ps(), _CMP_NGE_UQ);
    }
};
}  // namespace avx512
#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("avx2")
namespace avx2 {
#include "winograd_tiles.h"
struct Mask {
    uint32_t operator()(const Vec &t) const {
        __m256 half[2];
        std::memcpy(half, &t, sizeof(t));
        const __m256 zero = _mm256_setzero_ps();
        return uint32_t(_mm256_movemask_ps(_mm256_cmp_ps(half[0], zero, _CMP_NGE_UQ))) |
               uint32_t(_mm256_movemask_ps(_mm256_cmp_ps(half[1], zero, _CMP_NGE_UQ))) << 8;
    }
};
}  // namespace avx2
#pragma GCC pop_options
// SSE2, the x86-64 baseline.
struct Mask {
    uint32_t operator()(const Vec &t) const {
        __m128 quarter[4];
        std::memcpy(quarter, &t, sizeof(t));
        const __m128 zero = _mm_setzero_ps();
        uint32_t m = 0;
        for (int q = 0; q < 4; ++q)
            m |= uint32_t(_mm_movemask_ps(_mm_cmpnge_ps(quarter[q], zero))) << 4 * q;
        return m;
    }
};

// One version per vector ISA, the loader's pick by cpuid (as target_clones').
__attribute__((target("avx512f"))) void fused_transform(
        int points, const float *v, int64_t n, int64_t k, const float *u, int64_t point,
        const float *bias, int64_t channels, int64_t pixel, int64_t rows, int64_t cols,
        int64_t stride, float *out, TileSigns signs) {
    avx512::fused_pass(points, v, n, k, u, point, bias, channels, pixel, rows, cols, stride,
                       out, signs, avx512::Mask{});
}
__attribute__((target("avx2"))) void fused_transform(
        int points, const float *v, int64_t n, int64_t k, const float *u, int64_t point,
        const float *bias, int64_t channels, int64_t pixel, int64_t rows, int64_t cols,
        int64_t stride, float *out, TileSigns signs) {
    avx2::fused_pass(points, v, n, k, u, point, bias, channels, pixel, rows, cols, stride, out,
                     signs, avx2::Mask{});
}
__attribute__((target("default"))) void fused_transform(
        int points, const float *v, int64_t n, int64_t k, const float *u, int64_t point,
        const float *bias, int64_t channels, int64_t pixel, int64_t rows, int64_t cols,
        int64_t stride, float *out, TileSigns signs) {
    fused_pass(points, v, n, k, u, point, bias, channels, pixel, rows, cols, stride, out, signs,
               Mask{});
}
#else
// Elsewhere one lane at a time.
struct Mask {
    uint32_t operator()(const Vec &t) const {
        uint32_t m = 0;
        for (int l = 0; l < kLanes; ++l) m |= uint32_t(!(t[l] >= 0.0f)) << l;
        return m;
    }
};
void fused_transform(int points, const float *v, int64_t n, int64_t k, const float *u,
                     int64_t point, const float *bias, int64_t channels, int64_t pixel,
                     int64_t rows, int64_t cols, int64_t stride, float *out,
                     TileSigns signs) {
    fused_pass(points, v, n, k, u, point, bias, channels, pixel, rows, cols, stride, out, signs,
               Mask{});
}
#endif

// One phase plane's row: out[j] = first[step (j - j0)] for j in [j0, j1), pad elsewhere
// (j < n).
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void phase_plane(const float *first, int64_t step, int64_t j0, int64_t j1, int64_t n,
                 float pad, float *out) {
    std::fill(out, out + j0, pad);
    for (int64_t j = j0; j < j1; ++j) out[j] = first[step * (j - j0)];
    std::fill(out + j1, out + n, pad);
}

}  // namespace

bool winograd_takes(const ConvGeometry &g) {
    const auto is = [&g](auto algorithm, int64_t max_c_in) {
        using W = decltype(algorithm);
        return g.kh == W::kKernel && g.kw == W::kKernel && g.stride_h == W::kStride &&
               g.stride_w == W::kStride && g.c_in <= max_c_in;
    };
    return is(F44{}, kLanes / 4) || is(F43{}, kMaxFusedTaps);
}

bool winograd_pays(const ConvGeometry &g) { return winograd_takes(g) && g.c_in >= 2; }

WinogradShape winograd_shape(const ConvGeometry &g) {
    const int64_t th = (g.out_h() + kM - 1) / kM, tw = (g.out_w() + kM - 1) / kM;
    return {th, tw, tw * kM + with_algorithm(g, [](auto w) { return decltype(w)::kR; }) - 1};
}

int64_t winograd_macs(const ConvGeometry &g) {
    const WinogradShape s = winograd_shape(g);
    return with_algorithm(g, [&](auto algorithm) {
        using W = decltype(algorithm);
        return g.n * s.tiles_h * s.tiles_w * W::kN * W::kN * W::kStride * W::kStride * g.c_in *
               g.c_out;
    });
}

AlignedFloats winograd_weights(const ConvGeometry &g, const float *w) {
    return with_algorithm(g, [&](auto algorithm) {
        using W = decltype(algorithm);
        constexpr int kN = W::kN, kP = W::kStride, kK = W::kKernel;
        const int64_t c_in = g.c_in, k = kP * kP * c_in, size = (g.c_out + 15) / 16 * k * 16;
        AlignedFloats out(static_cast<size_t>(kN * kN * size));
        std::vector<float> point(size_t(g.c_out * k));
        for (int a = 0; a < kN; ++a)
            for (int b = 0; b < kN; ++b) {
                for (int64_t co = 0; co < g.c_out; ++co)
                    for (int64_t phase = 0; phase < kP * kP; ++phase)
                        for (int64_t ci = 0; ci < c_in; ++ci) {
                            const float *f = w + (co * c_in + ci) * kK * kK;
                            double sum = 0;
                            for (int u = 0; u < W::kR; ++u)
                                for (int v = 0; v < W::kR; ++v) {
                                    const int64_t r = kP * u + phase / kP, c = kP * v + phase % kP;
                                    if (r < kK && c < kK)
                                        sum += W::kG[a][u] * f[r * kK + c] * W::kG[b][v];
                                }
                            point[size_t(co * k + phase * c_in + ci)] = static_cast<float>(sum);
                        }
                block_float_weights(point.data(), g.c_out, k, out.data() + (a * kN + b) * size);
            }
        return out;
    });
}

namespace {

// Phase row q of image b (pixels of 16 floats, lanes past stride^2 C_in 0) into `row`;
// `planes` holds 16 planes of phase_w floats, those past stride^2 C_in 0. Lane
// (stride pr + pc) C_in + ci of pixel j: the padded input at (stride q + pr, stride j + pc).
void phase_row(const ConvGeometry &g, const WinogradShape &s, const float *x,
               const float *pad_value, int64_t b, int64_t q, float *planes, float *row) {
    const int64_t p = g.stride_w;
    for (int64_t pr = 0; pr < p; ++pr)
        for (int64_t pc = 0; pc < p; ++pc)
            for (int64_t ci = 0; ci < g.c_in; ++ci) {
                const int64_t r = p * q + pr - g.pad_h;
                // Columns p j + pc - pad_w inside [0, w) for j in [j0, j1).
                const int64_t j0 = r < 0 || r >= g.h
                                       ? s.phase_w
                                       : std::min(s.phase_w, (g.pad_w - pc + p - 1) / p);
                const int64_t j1 =
                    std::max(j0, std::min(s.phase_w, (g.w + g.pad_w - pc + p - 1) / p));
                const float *first =
                    j0 < j1 ? x + ((b * g.c_in + ci) * g.h + r) * g.w + p * j0 + pc - g.pad_w : x;
                phase_plane(first, p, j0, j1, s.phase_w, pad_value[ci],
                            planes + ((p * pr + pc) * g.c_in + ci) * s.phase_w);
            }
    active_kernels().interleave_planes(planes, kLanes, s.phase_w, s.phase_w, row, kLanes);
}

// A thread's phase rows in one call (`call`): the last 8 made of image `image` (row q in
// slot q % 8), those below `next`. Made by the thread that reads them, next to its tiles: a
// map made by all threads had a tile row's first rows in the other core's cache.
struct PhaseRows {
    static constexpr int64_t kSlots = 8;
    AlignedFloats ring, planes;
    uint64_t call = 0;
    int64_t image = -1, next = 0;

    // Rows [first, first + points) of image b: made where missing, their addresses in rows.
    void make(const ConvGeometry &g, const WinogradShape &s, const float *x,
              const float *pad_value, uint64_t in_call, int64_t b, int64_t first, int points,
              const float **rows) {
        const int64_t row = s.phase_w * kLanes;
        if (in_call != call || b != image || first < next - kSlots || first > next) {
            call = in_call, image = b, next = first;
            ring.resize(static_cast<size_t>(kSlots * row));
            planes.assign(static_cast<size_t>(row), 0.0f);
        }
        for (; next < first + points; ++next)
            phase_row(g, s, x, pad_value, b, next, planes.data(),
                      ring.data() + next % kSlots * row);
        for (int i = 0; i < points; ++i) rows[i] = ring.data() + (first + i) % kSlots * row;
    }
};

}  // namespace

void winograd_tile_row(const ConvGeometry &g, const float *x, const float *pad_value,
                       const float *u, const float *bias, uint64_t call, int64_t b, int64_t ty,
                       float *out, uint64_t *signs, const float *sign_shift) {
    const WinogradShape s = winograd_shape(g);
    const int points = with_algorithm(g, [](auto w) { return decltype(w)::kN; });
    const int64_t k = g.c_in * g.stride_w * g.stride_w, c_pad = (g.c_out + 15) / 16 * 16;
    const int64_t point = c_pad * k;
    const int64_t group = std::min(c_pad, kGroup), chunk = std::min(kChunk, kGroup / group);
    const int64_t out_w = g.out_w(), stride = out_w * g.c_out, words = words_for(g.c_out);
    const int64_t rows = std::min<int64_t>(kM, g.out_h() - ty * kM);
    const bool fused = with_algorithm(g, [](auto w) { return decltype(w)::kFused; });
    thread_local AlignedFloats v_(kMaxPoints * kVPoint), m_(kMaxPoints * kMPoint),
        zeros(kGroup), scratch;
    thread_local PhaseRows phase;
    float *const v = v_.data(), *const m = m_.data();
    if (out == nullptr) {  // signs only: the rows made in a buffer of the thread's
        scratch.resize(static_cast<size_t>(rows * stride));
        out = scratch.data();
    }
    if (signs != nullptr && fused && c_pad % 64 != 0)  // the slots past the last block
        std::fill(signs, signs + rows * out_w * words, uint64_t{0});
    const float *top[F44::kN];
    phase.make(g, s, x, pad_value, call, b, ty * kM, points, top);
    const KernelTable &kt = active_kernels();
    for (int64_t t0 = 0; t0 < s.tiles_w; t0 += chunk) {
        const int64_t n = std::min(chunk, s.tiles_w - t0);
        const float *at[F44::kN];
        for (int i = 0; i < points; ++i) at[i] = top[i] + t0 * kM * kLanes;
        input_transform(points, at, n, v);
        for (int64_t c0 = 0; c0 < c_pad; c0 += group) {  // one group but past 2048 channels
            const int64_t c = std::min(group, c_pad - c0);
            const int64_t channels = std::min(c, g.c_out - c0);
            float *const first = out + t0 * kM * g.c_out + c0;
            if (fused) {
                const TileSigns ts{signs ? signs + t0 * kM * words + c0 / 64 : nullptr,
                                   sign_shift ? sign_shift + c0 : nullptr, words,
                                   out_w * words};
                fused_transform(points, v, n, k, u + c0 * k, point, bias + c0, channels,
                                g.c_out, rows, out_w - t0 * kM, stride, first, ts);
                continue;
            }
            for (int p = 0; p < points * points; ++p) {
                const DirectConv d{v + p * kVPoint, 1, 1, n * kLanes, 1, k, 1, kLanes,
                                   u + p * point + c0 * k,
                                   p == biased_point(points) ? bias + c0 : zeros.data(), c, n,
                                   m + p * kMPoint};
                kt.direct_conv_rows(d, 0, 1);
            }
            output_transform(points, m, n, c, channels, g.c_out, rows, out_w - t0 * kM, stride,
                             first);
        }
    }
    if (signs != nullptr && !fused) pack_nhwc(out, rows * out_w, g.c_out, signs, 1, sign_shift);
}

}  // namespace bnnx
