// An NHWC max-pool over rows that are made on the fly (transposed from NCHW planes, or a conv's
// output rows): each input row is made once into a ring of the window's kh rows, so the whole
// input map is never written.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "isa.h"
#include "ops.h"

namespace bnnx {

// Output rows [begin, end) of all g.n * g.out_h() rows of the pool (NHWC out, flip as
// KernelTable::max_pool_row's); make(b, r, dst) writes input row r of image b, g.w * g.c
// floats, NHWC.
template <typename Make>
void pool_made_rows(const PoolGeometry &g, const uint32_t *flip, float *out, int64_t begin,
                    int64_t end, Make &&make) {
    const KernelTable &kt = active_kernels();
    const int64_t out_h = g.out_h(), row = g.w * g.c, out_row = g.out_w() * g.c;
    std::vector<float> ring(static_cast<size_t>(g.kh * row));  // input row r in slot r % kh
    std::vector<const float *> rows(static_cast<size_t>(g.kh));
    int64_t image = -1, next = 0;  // the first row of `image` not yet made
    for (int64_t i = begin; i < end; ++i) {
        const int64_t b = i / out_h, top = i % out_h * g.stride_h - g.pad_h;
        const int64_t lo = std::max<int64_t>(0, top), hi = std::min(g.h, top + g.kh);
        if (b != image) image = b, next = 0;
        for (next = std::max(next, lo); next < hi; ++next)
            make(b, next, ring.data() + next % g.kh * row);
        for (int64_t r = lo; r < hi; ++r) rows[r - lo] = ring.data() + r % g.kh * row;
        kt.max_pool_row(rows.data(), std::max<int64_t>(0, hi - lo), g.w, g.c, g.kw, g.stride_w,
                        g.pad_w, g.out_w(), flip, out + i * out_row);
    }
}

}  // namespace bnnx
