// Portable loop bodies shared by the scalar tables; each isa_*.cpp instantiates them under its
// own target attribute so __builtin_popcountll lowers to the best instruction available there.
#pragma once

#include <cstdint>

namespace bnnx {
namespace generic {

// Four output channels at a time: each activation word is loaded once for four XORs, and the
// four independent popcount chains keep the pipeline busy.
__attribute__((always_inline)) inline void xor_popcount_rows(
    const uint64_t *const *rows, const int64_t *offsets, int64_t nrows, int64_t run,
    const uint64_t *w, int64_t co_stride, int64_t c_out, int32_t *out) {
    int64_t co = 0;
    for (; co + 4 <= c_out; co += 4) {
        const uint64_t *w0 = w + co * co_stride, *w1 = w0 + co_stride;
        const uint64_t *w2 = w1 + co_stride, *w3 = w2 + co_stride;
        uint64_t t0 = 0, t1 = 0, t2 = 0, t3 = 0;
        for (int64_t r = 0; r < nrows; ++r) {
            const uint64_t *a = rows[r];
            const int64_t off = offsets[r];
            for (int64_t i = 0; i < run; ++i) {
                const uint64_t v = a[i];
                t0 += static_cast<uint64_t>(__builtin_popcountll(v ^ w0[off + i]));
                t1 += static_cast<uint64_t>(__builtin_popcountll(v ^ w1[off + i]));
                t2 += static_cast<uint64_t>(__builtin_popcountll(v ^ w2[off + i]));
                t3 += static_cast<uint64_t>(__builtin_popcountll(v ^ w3[off + i]));
            }
        }
        out[co] = static_cast<int32_t>(t0);
        out[co + 1] = static_cast<int32_t>(t1);
        out[co + 2] = static_cast<int32_t>(t2);
        out[co + 3] = static_cast<int32_t>(t3);
    }
    for (; co < c_out; ++co) {
        const uint64_t *wc = w + co * co_stride;
        uint64_t t = 0;
        for (int64_t r = 0; r < nrows; ++r)
            for (int64_t i = 0; i < run; ++i)
                t += static_cast<uint64_t>(__builtin_popcountll(rows[r][i] ^ wc[offsets[r] + i]));
        out[co] = static_cast<int32_t>(t);
    }
}

}  // namespace generic
}  // namespace bnnx
