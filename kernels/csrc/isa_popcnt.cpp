// x86-64 with the POPCNT instruction. The baseline x86-64 target lacks it, so the scalar table
// gets a bit-twiddling popcount; this one is the same loop with the hardware instruction.
#include "isa.h"
#include "microkernel_generic.h"

#if defined(__x86_64__) || defined(_M_X64)

namespace bnnx {
namespace {

__attribute__((target("popcnt"))) void xor_popcount_rows(const uint64_t *const *rows,
                                                         const int64_t *offsets, int64_t nrows,
                                                         int64_t run, const uint64_t *w,
                                                         int64_t co_stride, int64_t c_out,
                                                         int32_t *out) {
    generic::xor_popcount_rows(rows, offsets, nrows, run, w, co_stride, c_out, out);
}

}  // namespace

namespace isa {
const KernelTable popcnt = {"popcnt", xor_popcount_rows};
}

}  // namespace bnnx

#endif
