// Packing floats into sign bits and back, and weights into the microkernels' blocked layout.
#include <algorithm>
#include <cstring>
#include <vector>

#include "isa.h"
#include "ops.h"
#include "parallel.h"

namespace bnnx {

// Pixels in chunks of at least kPackChunk floats per thread (a few microseconds each: smaller
// maps stay on one thread). Whole-word pixels (C a multiple of 64) are the sign bits of the
// flat array, so a chunk is one sign_masks call, or with a shift one per kShiftRun pixels
// against the shift repeated that many times (a call per pixel was a sixth of a stem's time).
void pack_nhwc(const float *x, int64_t pixels, int64_t channels, uint64_t *out, int threads,
               const float *shift) {
    constexpr int64_t kPackChunk = 32768, kShiftRun = 32;
    const KernelTable &kt = active_kernels();
    const int64_t words = words_for(channels);
    const int64_t chunks = std::max<int64_t>(1, std::min(pixels, pixels * channels / kPackChunk));
    const bool whole_words = channels % 64 == 0;
    std::vector<float> shifts;
    if (shift != nullptr && whole_words)
        for (int64_t p = 0; p < std::min(pixels, kShiftRun); ++p)
            shifts.insert(shifts.end(), shift, shift + channels);
    parallel_for(chunks, threads, [&](int64_t begin, int64_t end) {
        const int64_t p0 = begin * pixels / chunks, p1 = end * pixels / chunks;
        if (whole_words && shift == nullptr) {
            kt.sign_masks(x + p0 * channels, nullptr, (p1 - p0) * channels, out + p0 * words);
            return;
        }
        if (whole_words) {
            for (int64_t p = p0; p < p1; p += kShiftRun)
                kt.sign_masks(x + p * channels, shifts.data(),
                              std::min(kShiftRun, p1 - p) * channels, out + p * words);
            return;
        }
        for (int64_t p = p0; p < p1; ++p)
            kt.sign_masks(x + p * channels, shift, channels, out + p * words);
    });
}

// 64 channels at a time: each channel plane is read sequentially into sign masks of 64 pixels
// (of the plane minus its shift, formed in a buffer, when there is one), then a bit transpose
// per 64-pixel column turns 64 masks into one word per pixel.
void pack_nchw(const float *x, int64_t n, int64_t channels, int64_t hw, uint64_t *out,
               const float *shift) {
    const KernelTable &kt = active_kernels();
    const int64_t words = words_for(channels), columns = (hw + 63) / 64;
    std::vector<uint64_t> masks(static_cast<size_t>(64 * columns));
    std::vector<float> shifts(shift ? static_cast<size_t>(hw) : 0);
    uint64_t tile[64];
    for (int64_t b = 0; b < n; ++b)
        for (int64_t wd = 0; wd < words; ++wd) {
            const int64_t nc = std::min<int64_t>(64, channels - wd * 64);
            for (int64_t c = 0; c < nc; ++c) {
                if (shift) std::fill(shifts.begin(), shifts.end(), shift[wd * 64 + c]);
                kt.sign_masks(x + (b * channels + wd * 64 + c) * hw,
                              shift ? shifts.data() : nullptr, hw, &masks[c * columns]);
            }
            for (int64_t col = 0; col < columns; ++col) {
                for (int64_t c = 0; c < 64; ++c) tile[c] = c < nc ? masks[c * columns + col] : 0;
                kt.transpose_bits(tile);
                const int64_t p0 = col * 64, np = std::min<int64_t>(64, hw - p0);
                for (int64_t j = 0; j < np; ++j) out[(b * hw + p0 + j) * words + wd] = tile[j];
            }
        }
}

void unpack_nhwc(const uint64_t *bits, int64_t pixels, int64_t channels, float *out) {
    const int64_t words = words_for(channels);
    for (int64_t p = 0; p < pixels; ++p)
        for (int64_t c = 0; c < channels; ++c)
            out[p * channels + c] = ((bits[p * words + c / 64] >> (c % 64)) & 1u) ? -1.0f : 1.0f;
}

void block_weights(const uint64_t *w, int64_t c_out, int64_t k, uint64_t *out) {
    const int64_t blocks = blocks_for(c_out);
    std::memset(out, 0, static_cast<size_t>(blocks * k * kBlock) * sizeof(uint64_t));
    for (int64_t c = 0; c < c_out; ++c)
        for (int64_t i = 0; i < k; ++i)
            out[(c / kBlock * k + i) * kBlock + c % kBlock] = w[c * k + i];
}

}  // namespace bnnx
