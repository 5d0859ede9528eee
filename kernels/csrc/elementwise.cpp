// Elementwise float ops with torch's bits, on bnnx's threads (torch's run on one for maps this
// small, and some slow down on two). Eval BatchNorm: one fused multiply-add per value as torch's
// CPU kernel does it (its `x * alpha + beta` is contracted to an FMA where torch's kernels are
// built with FMA; BatchNormOp checks this kernel against torch before using it); an NCHW input
// is moved to NHWC in the same pass, block by block through the register transpose, so a
// downsampling shortcut's map is read and written once instead of three times. Normalize:
// (x - mean) / std, the subtraction and the division each rounded as torch's are.
#include <algorithm>
#include <cmath>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif

#include "isa.h"
#include "ops.h"
#include "parallel.h"

namespace bnnx {
namespace {

void fma_pixels_scalar(const float *x, int64_t pixels, int64_t c, const float *alpha,
                       const float *beta, float *out) {
    for (int64_t p = 0; p < pixels; ++p)
        for (int64_t ch = 0; ch < c; ++ch)
            out[p * c + ch] = std::fma(x[p * c + ch], alpha[ch], beta[ch]);
}

#if defined(__x86_64__) || defined(_M_X64)
// Only called after the cpuid check (fma_pixels), so no FMA instruction runs before it.
__attribute__((target("avx2,fma"))) void fma_pixels_avx2(const float *x, int64_t pixels,
                                                         int64_t c, const float *alpha,
                                                         const float *beta, float *out) {
    const int64_t vec = c - c % 8;
    for (int64_t p = 0; p < pixels; ++p) {
        const float *src = x + p * c;
        float *dst = out + p * c;
        for (int64_t ch = 0; ch < vec; ch += 8)
            _mm256_storeu_ps(dst + ch, _mm256_fmadd_ps(_mm256_loadu_ps(src + ch),
                                                       _mm256_loadu_ps(alpha + ch),
                                                       _mm256_loadu_ps(beta + ch)));
        for (int64_t ch = vec; ch < c; ++ch)
            dst[ch] = __builtin_fmaf(src[ch], alpha[ch], beta[ch]);
    }
}

bool has_fma() {
    static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return yes;
}
#endif

// out[p, ch] = fma(x[p, ch], alpha[ch], beta[ch]) over `pixels` NHWC pixels of c channels.
void fma_pixels(const float *x, int64_t pixels, int64_t c, const float *alpha,
                const float *beta, float *out) {
#if defined(__x86_64__) || defined(_M_X64)
    if (has_fma()) return fma_pixels_avx2(x, pixels, c, alpha, beta, out);
#endif
    fma_pixels_scalar(x, pixels, c, alpha, beta, out);
}

// dst[p] = (src[p] - mean) / std for p < n: division-bound, so built for the widest vectors
// the CPU has (a clone per ISA, picked at load time by cpuid).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void normalize_span(const float *__restrict src, int64_t n, float mean, float std,
                    float *__restrict dst) {
    for (int64_t p = 0; p < n; ++p) dst[p] = (src[p] - mean) / std;
}

constexpr int64_t kPixelBlock = 64;  // pixels an NCHW block moves to NHWC, then normalises

}  // namespace

void batchnorm_float(const float *x, int64_t n, int64_t c, int64_t hw, bool nchw,
                     const float *alpha, const float *beta, float *out, int threads) {
    const KernelTable &kt = active_kernels();
    const int64_t blocks = (hw + kPixelBlock - 1) / kPixelBlock;  // per image
    parallel_for(n * blocks, map_threads(n * c * hw, threads), [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
            const int64_t b = i / blocks, p0 = i % blocks * kPixelBlock;
            const int64_t pixels = std::min(kPixelBlock, hw - p0);
            float *dst = out + (b * hw + p0) * c;
            const float *src = x + (b * hw + p0) * c;
            if (nchw) {  // the block's pixels to NHWC in dst, 16 planes at a time, then in place
                for (int64_t c0 = 0; c0 < c; c0 += 16)
                    kt.interleave_planes(x + (b * c + c0) * hw + p0, std::min<int64_t>(16, c - c0),
                                         hw, pixels, dst + c0, c);
                src = dst;
            }
            fma_pixels(src, pixels, c, alpha, beta, dst);
        }
    });
}

void normalize_float(const float *x, int64_t n, int64_t c, int64_t hw, const float *mean,
                     const float *std, float *out, int threads) {
    constexpr int64_t kBlock = 4096;  // values a thread takes at a time (within one plane)
    const int64_t blocks = (hw + kBlock - 1) / kBlock;  // per plane
    parallel_for(n * c * blocks, map_threads(n * c * hw, threads),
                 [&](int64_t begin, int64_t end) {
                     for (int64_t i = begin; i < end; ++i) {
                         const int64_t plane = i / blocks, p0 = i % blocks * kBlock;
                         const int64_t p1 = std::min(hw, p0 + kBlock);
                         normalize_span(x + plane * hw + p0, p1 - p0, mean[plane % c],
                                        std[plane % c], out + plane * hw + p0);
                     }
                 });
}

}  // namespace bnnx
