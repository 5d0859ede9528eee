// A 7x7 stride-2 float conv over 1-4 input channels (an ImageNet stem) by Winograd's minimal
// filtering, with a quarter of the direct kernel's multiply-adds:
// - polyphase: the stride-2 conv with a 7x7 kernel over C_in channels is a stride-1 conv with a
//   4x4 kernel over 4 C_in "phase" channels: phase (pr, pc) of channel ci, lane
//   (2 pr + pc) C_in + ci of a 16-float phase pixel, is the padded input at (2 i + pr, 2 j + pc),
//   its kernel w[co, ci, pr::2, pc::2] zero-padded to 4x4;
// - Winograd F(4x4, 4x4) on that conv: 7x7 phase pixels per tile of 4x4 outputs, the input
//   transform V = BT d BT^T, for each of the 49 transform points a GEMM (tiles x 4 C_in) @
//   (4 C_in x C_out) on the direct kernel (as a pointwise conv), then the output transform
//   Y = AT M AT^T and the bias.
// The transforms are plain loops over 16-float vectors, cloned for the vector ISAs. A thread
// makes the phase rows its tile rows read (winograd_tile_row), keeping the 3 the next one
// shares.
#include <algorithm>
#include <cstring>
#include <vector>

#include "isa.h"
#include "ops.h"

namespace bnnx {

namespace {

constexpr int kN = 7;  // transform points per side: 4 outputs + 4 taps - 1
constexpr int kM = 4;  // outputs per tile side
constexpr int kR = 4;  // phase kernel side
constexpr int kPoints = kN * kN;
constexpr int64_t kLanes = 16;  // floats per phase pixel
constexpr int64_t kChunk = 32;  // most tiles per GEMM
constexpr int64_t kGroup = 2048;  // most channels per GEMM (a chunk of 1 tile)
// Floats from one transform point's row of V (tiles x 16) and M (tiles x channels) to the
// next: constants, so the 49 loads of a tile's points take one base register, plus one cache
// line, so their lines fall in different L1 sets. A chunk's tiles x channels is at most kGroup.
constexpr int64_t kVPoint = kChunk * kLanes + kLanes, kMPoint = kGroup + kLanes;

// Cook-Toom matrices of F(4, 4) at the points 0, 1, -1, 2, -2, 1/2 and infinity (wincnn's
// construction: AT[i][j] = a_j^i; G[j][i] = a_j^i / prod_{k != j} (a_j - a_k); BT's row j the
// coefficients of M(x) / (x - a_j), M(x) = prod_j (x - a_j), its last row M's; the infinity
// point's row / column the unit vector). Exact: BT in float, G in double (the weights'
// transform is computed in double and rounded once).
// AT (output_points):
//   {1, 1, 1, 1, 1, 1, 0},
//   {0, 1, -1, 2, -2, 1/2, 0},
//   {0, 1, 1, 4, 4, 1/4, 0},
//   {0, 1, -1, 8, -8, 1/8, 1}.
constexpr double kG[kN][kR] = {
    {-1.0 / 2, 0, 0, 0},
    {-1.0 / 3, -1.0 / 3, -1.0 / 3, -1.0 / 3},
    {1.0 / 9, -1.0 / 9, 1.0 / 9, -1.0 / 9},
    {1.0 / 36, 1.0 / 18, 1.0 / 9, 2.0 / 9},
    {-1.0 / 60, 1.0 / 30, -1.0 / 15, 2.0 / 15},
    {32.0 / 45, 16.0 / 45, 8.0 / 45, 4.0 / 45},
    {0, 0, 0, 1},
};
constexpr float kBT[kN][kN] = {
    {-2, 4, 2.5f, -5, -0.5f, 1, 0},
    {0, 2, -2, -4.5f, 0.5f, 1, 0},
    {0, -2, 6, -3.5f, -1.5f, 1, 0},
    {0, 1, -1.5f, -2, 1.5f, 1, 0},
    {0, -1, 2.5f, 0, -2.5f, 1, 0},
    {0, 4, 0, -5, 0, 1, 0},
    {0, -2, 4, 2.5f, -5, -0.5f, 1},
};

using Vec = float __attribute__((vector_size(kLanes * sizeof(float))));

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

// V (kPoints rows of kVPoint floats: tile t's 16 at t * 16) of tiles [0, n) of a tile row:
// tile t's 7x7 phase pixels from pixel 4 t of the phase rows rows[0 .. 7).
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void input_transform(const float *const *phase, int64_t n, float *v) {
    for (int64_t t = 0; t < n; ++t) {
        Vec d[kN][kN], rows[kN][kN], out[kN][kN];
        for (int i = 0; i < kN; ++i)
            for (int j = 0; j < kN; ++j)
                std::memcpy(&d[i][j], phase[i] + (t * kM + j) * kLanes, sizeof(Vec));
        for (int i = 0; i < kN; ++i) transform(kBT, d[i], 1, rows[i], 1);
        for (int j = 0; j < kN; ++j) transform(kBT, &rows[0][j], kN, &out[0][j], kN);
        for (int i = 0; i < kN; ++i)
            for (int j = 0; j < kN; ++j)
                std::memcpy(v + (i * kN + j) * kVPoint + t * kLanes, &out[i][j], sizeof(Vec));
    }
}

// out = AT in (7 points -> 4 outputs): AT's rows share the sums and differences of the points
// +-1 and +-2 (14 operations where the matrix's terms take 18).
inline __attribute__((always_inline)) void output_points(const Vec *in, Vec *out) {
    const Vec s1 = in[1] + in[2], d1 = in[1] - in[2];
    const Vec s2 = in[3] + in[4], d2 = in[3] - in[4], m5 = in[5];
    out[0] = in[0] + s1 + s2 + m5;
    out[1] = d1 + 2 * d2 + 0.5f * m5;
    out[2] = s1 + 4 * s2 + 0.25f * m5;
    out[3] = d1 + 8 * d2 + 0.125f * m5 + in[6];
}

// Conv rows [0, rows) and columns [4 t, 4 t + 4) (those < cols) of tiles t < n, channels
// [0, channels) from M (kPoints rows of kMPoint floats: tile t's c_pad at t * c_pad; the bias
// in point (1, 1): AT's column 1 is all ones): AT M AT^T, each row of points through AT and
// the rows summed into the 4x4 outputs as they come, the same sums and differences shared, so
// a tile's values stay in registers. Pixels `pixel` floats apart, rows `stride`.
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void output_transform(const float *m, int64_t n, int64_t c_pad, int64_t channels,
                      int64_t pixel, int64_t rows, int64_t cols, int64_t stride, float *out) {
    for (int64_t t = 0; t < n; ++t)
        for (int64_t c0 = 0; c0 < channels; c0 += kLanes) {
            const float *src = m + t * c_pad + c0;
            // Row a of the tile's points through AT: h[j] for j < 4.
            const auto row = [src](int a, Vec *h) {
                Vec in[kN];
                for (int j = 0; j < kN; ++j)
                    std::memcpy(&in[j], src + (a * kN + j) * kMPoint, sizeof(Vec));
                output_points(in, h);
            };
            Vec y[kM][kM], h[kM], g[kM];
            row(0, h);
            for (int j = 0; j < kM; ++j) y[0][j] = h[j];
            row(1, h);
            row(2, g);
            for (int j = 0; j < kM; ++j) {
                const Vec s = h[j] + g[j], d = h[j] - g[j];
                y[0][j] += s, y[1][j] = d, y[2][j] = s, y[3][j] = d;
            }
            row(3, h);
            row(4, g);
            for (int j = 0; j < kM; ++j) {
                const Vec s = h[j] + g[j], d = h[j] - g[j];
                y[0][j] += s, y[1][j] += 2 * d, y[2][j] += 4 * s, y[3][j] += 8 * d;
            }
            row(5, h);
            for (int j = 0; j < kM; ++j)
                y[0][j] += h[j], y[1][j] += 0.5f * h[j], y[2][j] += 0.25f * h[j],
                    y[3][j] += 0.125f * h[j];
            row(6, h);
            for (int j = 0; j < kM; ++j) y[3][j] += h[j];
            const int64_t lanes = std::min(kLanes, channels - c0);
            for (int64_t i = 0; i < rows; ++i)
                for (int64_t j = 0; j < kM && t * kM + j < cols; ++j) {
                    float *dst = out + i * stride + (t * kM + j) * pixel + c0;
                    if (lanes == kLanes)  // a constant size: one vector store
                        std::memcpy(dst, &y[i][j], sizeof(Vec));
                    else
                        std::memcpy(dst, &y[i][j], static_cast<size_t>(lanes) * sizeof(float));
                }
        }
}

// One phase plane's row: out[j] = first[2 (j - j0)] for j in [j0, j1), pad elsewhere (j < n).
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void phase_plane(const float *first, int64_t j0, int64_t j1, int64_t n, float pad,
                 float *out) {
    std::fill(out, out + j0, pad);
    for (int64_t j = j0; j < j1; ++j) out[j] = first[2 * (j - j0)];
    std::fill(out + j1, out + n, pad);
}

}  // namespace

bool winograd_takes(const ConvGeometry &g) {
    return g.kh == 7 && g.kw == 7 && g.stride_h == 2 && g.stride_w == 2 &&
           g.c_in * 4 <= kLanes;
}

bool winograd_pays(const ConvGeometry &g) { return winograd_takes(g) && g.c_in >= 2; }

WinogradShape winograd_shape(const ConvGeometry &g) {
    const int64_t th = (g.out_h() + kM - 1) / kM, tw = (g.out_w() + kM - 1) / kM;
    return {th, tw, tw * kM + kR - 1};
}

int64_t winograd_macs(const ConvGeometry &g) {
    const WinogradShape s = winograd_shape(g);
    return g.n * s.tiles_h * s.tiles_w * kPoints * 4 * g.c_in * g.c_out;
}

AlignedFloats winograd_weights(const float *w, int64_t c_out, int64_t c_in) {
    const int64_t k = 4 * c_in, size = (c_out + 15) / 16 * k * 16;
    AlignedFloats out(static_cast<size_t>(kPoints * size));
    std::vector<float> point(size_t(c_out * k));
    for (int a = 0; a < kN; ++a)
        for (int b = 0; b < kN; ++b) {
            for (int64_t co = 0; co < c_out; ++co)
                for (int64_t phase = 0; phase < 4; ++phase)
                    for (int64_t ci = 0; ci < c_in; ++ci) {
                        const float *g = w + (co * c_in + ci) * 49;
                        double sum = 0;
                        for (int u = 0; u < kR; ++u)
                            for (int v = 0; v < kR; ++v) {
                                const int64_t r = 2 * u + phase / 2, c = 2 * v + phase % 2;
                                if (r < 7 && c < 7) sum += kG[a][u] * g[r * 7 + c] * kG[b][v];
                            }
                        point[size_t(co * k + phase * c_in + ci)] = static_cast<float>(sum);
                    }
            block_float_weights(point.data(), c_out, k, out.data() + (a * kN + b) * size);
        }
    return out;
}

namespace {

// Phase row q of image b (pixels of 16 floats, lanes past 4 C_in 0) into `row`; `planes`
// holds 16 planes of phase_w floats, those past 4 C_in 0.
void phase_row(const ConvGeometry &g, const WinogradShape &s, const float *x,
               const float *pad_value, int64_t b, int64_t q, float *planes, float *row) {
    for (int64_t pr = 0; pr < 2; ++pr)
        for (int64_t pc = 0; pc < 2; ++pc)
            for (int64_t ci = 0; ci < g.c_in; ++ci) {
                const int64_t r = 2 * q + pr - g.pad_h;
                // Columns 2 j + pc - pad_w inside [0, w) for j in [j0, j1).
                const int64_t j0 = r < 0 || r >= g.h
                                       ? s.phase_w
                                       : std::min(s.phase_w, (g.pad_w - pc + 1) / 2);
                const int64_t j1 = std::max(j0, std::min(s.phase_w, (g.w + g.pad_w - pc + 1) / 2));
                const float *first =
                    j0 < j1 ? x + ((b * g.c_in + ci) * g.h + r) * g.w + 2 * j0 + pc - g.pad_w : x;
                phase_plane(first, j0, j1, s.phase_w, pad_value[ci],
                            planes + ((2 * pr + pc) * g.c_in + ci) * s.phase_w);
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

    // Rows [first, first + 7) of image b: made where missing, their addresses in rows.
    void make(const ConvGeometry &g, const WinogradShape &s, const float *x,
              const float *pad_value, uint64_t in_call, int64_t b, int64_t first,
              const float **rows) {
        const int64_t row = s.phase_w * kLanes;
        if (in_call != call || b != image || first < next - kSlots || first > next) {
            call = in_call, image = b, next = first;
            ring.resize(static_cast<size_t>(kSlots * row));
            planes.assign(static_cast<size_t>(row), 0.0f);
        }
        for (; next < first + kN; ++next)
            phase_row(g, s, x, pad_value, b, next, planes.data(),
                      ring.data() + next % kSlots * row);
        for (int i = 0; i < kN; ++i) rows[i] = ring.data() + (first + i) % kSlots * row;
    }
};

}  // namespace

void winograd_tile_row(const ConvGeometry &g, const float *x, const float *pad_value,
                       const float *u, const float *bias, uint64_t call, int64_t b, int64_t ty,
                       float *out) {
    const WinogradShape s = winograd_shape(g);
    const int64_t k = 4 * g.c_in, c_pad = (g.c_out + 15) / 16 * 16, point = c_pad * k;
    const int64_t group = std::min(c_pad, kGroup), chunk = std::min(kChunk, kGroup / group);
    const int64_t out_w = g.out_w(), stride = out_w * g.c_out;
    const int64_t rows = std::min<int64_t>(kM, g.out_h() - ty * kM);
    constexpr int kBiased = 1 * kN + 1;  // the point whose GEMM adds the bias
    thread_local AlignedFloats v_(kPoints * kVPoint), m_(kPoints * kMPoint), zeros(kGroup);
    thread_local PhaseRows phase;
    float *const v = v_.data(), *const m = m_.data();
    const float *top[kN];
    phase.make(g, s, x, pad_value, call, b, ty * kM, top);
    const KernelTable &kt = active_kernels();
    for (int64_t t0 = 0; t0 < s.tiles_w; t0 += chunk) {
        const int64_t n = std::min(chunk, s.tiles_w - t0);
        const float *at[kN];
        for (int i = 0; i < kN; ++i) at[i] = top[i] + t0 * kM * kLanes;
        input_transform(at, n, v);
        for (int64_t c0 = 0; c0 < c_pad; c0 += group) {  // one group but past 2048 channels
            const int64_t c = std::min(group, c_pad - c0);
            for (int p = 0; p < kPoints; ++p) {
                const DirectConv d{v + p * kVPoint, 1, 1, n * kLanes, 1, k, 1, kLanes,
                                   u + p * point + c0 * k,
                                   p == kBiased ? bias + c0 : zeros.data(), c, n,
                                   m + p * kMPoint};
                kt.direct_conv_rows(d, 0, 1);
            }
            output_transform(m, n, c, std::min(c, g.c_out - c0), g.c_out, rows,
                             out_w - t0 * kM, stride, out + t0 * kM * g.c_out + c0);
        }
    }
}

}  // namespace bnnx
