// Direct binary convolution: no im2col buffer. For each output pixel the in-bounds part of the
// window is a rectangle, and in NHWC each of its rows is one contiguous run of
// (kw1 - kw0) * C_words words in both the activations and the (C_out, KH, KW, C_words) weights,
// so one microkernel call per pixel computes the XOR-popcounts for every output channel.
#include <algorithm>
#include <vector>

#include "isa.h"
#include "ops.h"
#include "parallel.h"

namespace bnnx {
namespace {

// pad[co * taps + t]: contribution of padded tap t, pad_value * (C_in - 2 * popcount(w_tap)),
// since a padded tap is the constant vector pad_value (its bits are all 0 for +1, all 1 for -1).
std::vector<int32_t> padded_tap_terms(const ConvGeometry &g, const uint64_t *w) {
    const int64_t taps = g.kh * g.kw, cw = g.c_words();
    std::vector<int32_t> pad(static_cast<size_t>(g.c_out * taps), 0);
    if (g.pad_value == 0) return pad;
    for (int64_t i = 0; i < g.c_out * taps; ++i) {
        int64_t ones = 0;
        for (int64_t k = 0; k < cw; ++k) ones += __builtin_popcountll(w[i * cw + k]);
        pad[static_cast<size_t>(i)] = static_cast<int32_t>(g.pad_value * (g.c_in - 2 * ones));
    }
    return pad;
}

// Calls emit(pixel_index, dots) for every output pixel, with dots[co] the exact integer dot.
template <typename Emit>
void conv2d_generic(const ConvGeometry &g, const uint64_t *x, const uint64_t *w, int threads,
                    Emit &&emit) {
    const KernelTable &kernels = active_kernels();
    const int64_t out_h = g.out_h(), out_w = g.out_w(), cw = g.c_words(), taps = g.kh * g.kw;
    const std::vector<int32_t> pad = padded_tap_terms(g, w);
    const int64_t co_stride = taps * cw;

    parallel_for(g.n * out_h, threads, [&](int64_t begin, int64_t end) {
        std::vector<int32_t> dots(static_cast<size_t>(g.c_out));
        std::vector<const uint64_t *> rows(static_cast<size_t>(g.kh));
        std::vector<int64_t> offsets(static_cast<size_t>(g.kh));
        for (int64_t row = begin; row < end; ++row) {
            const int64_t b = row / out_h, oh = row % out_h;
            const int64_t ih0 = oh * g.stride_h - g.pad_h;
            const int64_t kh0 = std::max<int64_t>(0, -ih0);
            const int64_t kh1 = std::max(kh0, std::min<int64_t>(g.kh, g.h - ih0));
            for (int64_t ow = 0; ow < out_w; ++ow) {
                const int64_t iw0 = ow * g.stride_w - g.pad_w;
                const int64_t kw0 = std::max<int64_t>(0, -iw0);
                const int64_t kw1 = std::max(kw0, std::min<int64_t>(g.kw, g.w - iw0));
                const int64_t nrows = (kw1 > kw0) ? kh1 - kh0 : 0;
                for (int64_t r = 0; r < nrows; ++r) {
                    const int64_t kh = kh0 + r;
                    rows[r] = x + ((b * g.h + ih0 + kh) * g.w + iw0 + kw0) * cw;
                    offsets[r] = (kh * g.kw + kw0) * cw;
                }
                const int64_t in_taps = nrows * (kw1 - kw0);
                if (nrows > 0) {
                    kernels.xor_popcount_rows(rows.data(), offsets.data(), nrows,
                                              (kw1 - kw0) * cw, w, co_stride, g.c_out,
                                              dots.data());
                } else {
                    std::fill(dots.begin(), dots.end(), 0);
                }
                const int32_t base = static_cast<int32_t>(g.c_in * in_taps);
                for (int64_t co = 0; co < g.c_out; ++co) dots[co] = base - 2 * dots[co];
                if (g.pad_value != 0 && in_taps != taps) {
                    for (int64_t kh = 0; kh < g.kh; ++kh)
                        for (int64_t kw = 0; kw < g.kw; ++kw) {
                            const bool inside = kh >= kh0 && kh < kh1 && kw >= kw0 && kw < kw1;
                            if (inside) continue;
                            const int32_t *p = pad.data() + kh * g.kw + kw;
                            for (int64_t co = 0; co < g.c_out; ++co) dots[co] += p[co * taps];
                        }
                }
                emit(row * out_w + ow, dots.data());
            }
        }
    });
}

}  // namespace

void conv2d_dots(const ConvGeometry &g, const uint64_t *x, const uint64_t *w, int32_t *out,
                 int threads) {
    conv2d_generic(g, x, w, threads, [&](int64_t pixel, const int32_t *dots) {
        std::copy(dots, dots + g.c_out, out + pixel * g.c_out);
    });
}

void conv2d_float(const ConvGeometry &g, const uint64_t *x, const uint64_t *w, const float *scale,
                  const float *bias, float *out, int threads) {
    conv2d_generic(g, x, w, threads, [&](int64_t pixel, const int32_t *dots) {
        float *dst = out + pixel * g.c_out;
        for (int64_t co = 0; co < g.c_out; ++co)
            dst[co] = scale[co] * static_cast<float>(dots[co]) + bias[co];
    });
}

void conv2d_bits(const ConvGeometry &g, const uint64_t *x, const uint64_t *w,
                 const int32_t *threshold, const int8_t *direction, uint64_t *out, int threads) {
    const int64_t out_words = words_for(g.c_out);
    conv2d_generic(g, x, w, threads, [&](int64_t pixel, const int32_t *dots) {
        uint64_t *dst = out + pixel * out_words;
        for (int64_t wd = 0; wd < out_words; ++wd) {
            const int64_t c0 = wd * 64, c1 = std::min<int64_t>(g.c_out, c0 + 64);
            uint64_t word = 0;
            for (int64_t co = c0; co < c1; ++co) {
                const bool negative = direction[co] > 0 ? dots[co] >= threshold[co]
                                                        : dots[co] <= threshold[co];
                word |= static_cast<uint64_t>(negative) << (co - c0);
            }
            dst[wd] = word;
        }
    });
}

}  // namespace bnnx
