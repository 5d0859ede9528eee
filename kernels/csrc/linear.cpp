#include <vector>

#include "isa.h"
#include "ops.h"
#include "parallel.h"

namespace bnnx {

void linear_float(const uint64_t *x, const uint64_t *w, int64_t n, int64_t c_in, int64_t c_out,
                  const float *scale, const float *bias, float *out, int threads) {
    const KernelTable &kernels = active_kernels();
    const int64_t cw = words_for(c_in);
    parallel_for(n, threads, [&](int64_t begin, int64_t end) {
        std::vector<int32_t> pc(static_cast<size_t>(c_out));
        const int64_t offset = 0;
        for (int64_t b = begin; b < end; ++b) {
            const uint64_t *row = x + b * cw;
            kernels.xor_popcount_rows(&row, &offset, 1, cw, w, cw, c_out, pc.data());
            float *dst = out + b * c_out;
            for (int64_t co = 0; co < c_out; ++co)
                dst[co] = scale[co] * static_cast<float>(c_in - 2 * pc[co]) + bias[co];
        }
    });
}

}  // namespace bnnx
