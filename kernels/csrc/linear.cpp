// Binary linear layer: the conv microkernel with one "row" of C_words per sample and samples as
// the tile's pixels.
#include <algorithm>

#include "channel_params.h"
#include "isa.h"
#include "ops.h"
#include "parallel.h"

namespace bnnx {

void linear_float(const uint64_t *x, const uint64_t *wb, int64_t n, int64_t c_in, int64_t c_out,
                  const float *scale, const float *bias, float *out, int threads) {
    const KernelTable &kt = active_kernels();
    const int64_t cw = words_for(c_in), blocks = blocks_for(c_out);
    const int64_t groups = (blocks + kt.nr_max - 1) / kt.nr_max;
    const int64_t sample_tiles = (n + kt.mr_max - 1) / kt.mr_max;
    const ChannelParams p = ChannelParams::affine(c_out, scale, bias);
    const int64_t zero = 0;
    parallel_for(sample_tiles * groups, threads, [&](int64_t begin, int64_t end) {
        for (int64_t item = begin; item < end; ++item) {
            const int64_t s0 = item / groups * kt.mr_max, group = item % groups;
            Tile t{x + s0 * cw, cw, &zero, &zero, 1, cw, wb, cw, group * kt.nr_max,
                   static_cast<int>(std::min<int64_t>(kt.mr_max, n - s0)),
                   static_cast<int>(std::min<int64_t>(kt.nr_max, blocks - group * kt.nr_max)),
                   1};
            TileOut o = p.out(OutKind::floats);
            o.base = static_cast<int32_t>(c_in);
            o.out = out + s0 * c_out;
            o.pixel_stride = c_out;
            kt.bconv_tile(t, o);
        }
    });
}

}  // namespace bnnx
