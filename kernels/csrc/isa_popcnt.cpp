// x86-64 with the POPCNT instruction. The baseline x86-64 target lacks it, so the scalar table
// gets a bit-twiddling popcount; this one is the same loop with the hardware instruction.
#include "isa.h"
#include "microkernel_generic.h"

#if defined(__x86_64__) || defined(_M_X64)

namespace bnnx {
namespace {

__attribute__((target("popcnt"))) void bconv_ukernel_4x32__popcnt(const Tile &tile,
                                                                const TileOut &out) {
    generic::bconv_tile(tile, out);
}

__attribute__((target("popcnt"))) uint64_t peak_loop(int64_t iters, uint64_t *checksum) {
    return generic::peak_loop(iters, checksum);
}

__attribute__((target("popcnt"))) uint64_t float_peak_loop(int64_t iters, float *checksum) {
    return generic::float_peak_loop(iters, checksum);
}

__attribute__((target("popcnt"))) void sign_masks(const float *x, const float *shift, int64_t n,
                                                  uint64_t *out) {
    generic::sign_masks(x, shift, n, out);
}

__attribute__((target("popcnt"))) void max_pool_row(const float *const *rows, int64_t nrows, int64_t w, int64_t c, int64_t kw,
                  int64_t stride, int64_t pad, int64_t out_w, const uint32_t *flip, float *out) {
    generic::max_pool_row(rows, nrows, w, c, kw, stride, pad, out_w, flip, out);
}

__attribute__((target("popcnt"))) void direct_conv_rows(const DirectConv &d, int64_t begin, int64_t end) {
    generic::direct_conv_rows(d, begin, end);
}

__attribute__((target("popcnt"))) void interleave_planes(const float *src, int64_t planes,
                                                          int64_t src_stride, int64_t n,
                                                          float *dst, int64_t dst_stride) {
    generic::interleave_planes(src, planes, src_stride, n, dst, dst_stride);
}

__attribute__((target("popcnt"))) void transpose_bits(uint64_t a[64]) {
    generic::transpose_bits(a);
}

}  // namespace

namespace isa {
const KernelTable popcnt = {"popcnt", 4, 4, bconv_ukernel_4x32__popcnt, peak_loop,
                            float_peak_loop, sign_masks,
                            max_pool_row, direct_conv_rows, interleave_planes,
                            transpose_bits};
}

}  // namespace bnnx

#endif
