#include <algorithm>
#include <cstring>

#include "ops.h"

namespace bnnx {

void pack_nhwc(const float *x, int64_t pixels, int64_t channels, uint64_t *out) {
    const int64_t words = words_for(channels);
    for (int64_t p = 0; p < pixels; ++p) {
        const float *src = x + p * channels;
        uint64_t *dst = out + p * words;
        for (int64_t wd = 0; wd < words; ++wd) {
            const int64_t c0 = wd * 64, c1 = std::min<int64_t>(channels, c0 + 64);
            uint64_t word = 0;
            for (int64_t c = c0; c < c1; ++c)
                word |= static_cast<uint64_t>(!(src[c] >= 0.0f)) << (c - c0);
            dst[wd] = word;
        }
    }
}

void pack_nchw(const float *x, int64_t n, int64_t channels, int64_t hw, uint64_t *out) {
    const int64_t words = words_for(channels);
    std::memset(out, 0, static_cast<size_t>(n * hw * words) * sizeof(uint64_t));
    for (int64_t b = 0; b < n; ++b) {
        uint64_t *dst = out + b * hw * words;
        for (int64_t c = 0; c < channels; ++c) {
            // One channel plane at a time keeps the float reads sequential.
            const float *plane = x + (b * channels + c) * hw;
            const int64_t wd = c / 64;
            const uint64_t bit = uint64_t{1} << (c % 64);
            for (int64_t p = 0; p < hw; ++p)
                if (!(plane[p] >= 0.0f)) dst[p * words + wd] |= bit;
        }
    }
}

void unpack_nhwc(const uint64_t *bits, int64_t pixels, int64_t channels, float *out) {
    const int64_t words = words_for(channels);
    for (int64_t p = 0; p < pixels; ++p)
        for (int64_t c = 0; c < channels; ++c)
            out[p * channels + c] = ((bits[p * words + c / 64] >> (c % 64)) & 1u) ? -1.0f : 1.0f;
}

}  // namespace bnnx
