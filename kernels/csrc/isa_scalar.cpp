// Portable reference microkernel, compiled for the baseline target so it runs everywhere.
#include "isa.h"
#include "microkernel_generic.h"

namespace bnnx {
namespace {

void bconv_ukernel_4x32__scalar(const Tile &tile, const TileOut &out) {
    generic::bconv_tile(tile, out);
}

uint64_t peak_loop(int64_t iters, uint64_t *checksum) {
    return generic::peak_loop(iters, checksum);
}

void sign_masks(const float *x, int64_t n, uint64_t *out) {
    generic::sign_masks(x, n, out);
}

}  // namespace

namespace isa {
const KernelTable scalar = {"scalar", 4, 4, bconv_ukernel_4x32__scalar, peak_loop, sign_masks};
}

}  // namespace bnnx
