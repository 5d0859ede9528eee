// Float maps between torch's NCHW and the kernels' NHWC. Both directions are one matrix
// transpose per image, (rows x cols) -> (cols x rows): 16 rows at a time through the table's
// register transpose (interleave_planes), where torch's strided copy moves one float at a time.
#include <algorithm>

#include "isa.h"
#include "ops.h"
#include "parallel.h"

namespace bnnx {

int map_threads(int64_t elements, int threads) {
    constexpr int64_t kMinPerThread = 1 << 15;
    return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(threads,
                                                                   elements / kMinPerThread)));
}

void transpose_float(const float *src, int64_t batch, int64_t rows, int64_t cols, float *dst,
                     int threads) {
    const KernelTable &kt = active_kernels();
    const int64_t blocks = (rows + 15) / 16;  // per image, 16 source rows each
    parallel_for(batch * blocks, map_threads(batch * rows * cols, threads),
                 [&](int64_t begin, int64_t end) {
                     for (int64_t i = begin; i < end; ++i) {
                         const int64_t b = i / blocks, r = i % blocks * 16;
                         kt.interleave_planes(src + (b * rows + r) * cols,
                                              std::min<int64_t>(16, rows - r), cols, cols,
                                              dst + b * rows * cols + r, rows);
                     }
                 });
}

}  // namespace bnnx
