// A float linear layer with few outputs over long rows (a classifier head: 8192 -> 10), where a
// GEMM library's GEMV or the direct kernel's one multiply-add chain per output runs far below
// the memory's pace.
#pragma once

#include <cstdint>

namespace bnnx {

// Floats of a chunk of the weight's columns (narrow_linear's layout).
constexpr int64_t kNarrowChunk = 16;

// out[r, o] = alpha * dot(x[r, :], weight[o, :]) + bias[o] (bias may be null: 0) for x (n, k)
// row-major, out (n, m), the (m, k) weight in chunks of 16 columns: w (ceil(k / 16), m, 16),
// w[i, o, j] = weight[o, 16 i + j], 0 past k (a pass over a row reads the weights as one
// stream: m rows 4 KiB-multiples apart would share a cache set). Each row's dots are summed
// in 16 lanes and several independent sums, in no fixed order (multiply-adds fused): not
// torch's rounding. On up to `threads` threads where the work repays them.
void narrow_linear(const float *x, int64_t n, int64_t k, const float *w, int64_t m,
                   const float *bias, float alpha, float *out, int threads = 1);

}  // namespace bnnx
