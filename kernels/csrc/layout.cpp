// Float maps between torch's NCHW and the kernels' NHWC. Both directions are one matrix
// transpose per image, (rows x cols) -> (cols x rows): 16 rows at a time through the table's
// register transpose (interleave_planes), where torch's strided copy moves one float at a time.
#include <algorithm>

#include "isa.h"
#include "ops.h"

namespace bnnx {

void transpose_float(const float *src, int64_t batch, int64_t rows, int64_t cols, float *dst) {
    const KernelTable &kt = active_kernels();
    for (int64_t b = 0; b < batch; ++b) {
        const float *image = src + b * rows * cols;
        float *out = dst + b * rows * cols;
        for (int64_t r = 0; r < rows; r += 16)
            kt.interleave_planes(image + r * cols, std::min<int64_t>(16, rows - r), cols, cols,
                                 out + r, rows);
    }
}

}  // namespace bnnx
