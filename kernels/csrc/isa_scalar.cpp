// Portable reference microkernels, compiled for the baseline target so they run everywhere.
#include "isa.h"
#include "microkernel_generic.h"

namespace bnnx {
namespace {

void xor_popcount_rows(const uint64_t *const *rows, const int64_t *offsets, int64_t nrows,
                       int64_t run, const uint64_t *w, int64_t co_stride, int64_t c_out,
                       int32_t *out) {
    generic::xor_popcount_rows(rows, offsets, nrows, run, w, co_stride, c_out, out);
}

}  // namespace

namespace isa {
const KernelTable scalar = {"scalar", xor_popcount_rows};
}

}  // namespace bnnx
