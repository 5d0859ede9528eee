// Direct binary convolution: no im2col buffer. Work is split into register tiles of the active
// microkernel: MR consecutive output pixels whose windows are inside the input horizontally share
// one tile over the row's in-bounds kernel rows, each of which is one contiguous run of
// KW * C_words words in NHWC activations and in the blocked weights. Pixels at the left and right
// edges take a one-pixel tile over their window's in-bounds rectangle. Padded taps are skipped
// and added back exactly as a per-channel correction (zero for pad_value 0).
#include <algorithm>
#include <vector>

#include "channel_params.h"
#include "isa.h"
#include "ops.h"
#include "parallel.h"

namespace bnnx {
namespace {

// Per-channel sums of padded-tap terms over window rectangles, for pad_value != 0. A padded tap
// is the constant vector pad_value (its bits all 0 for +1, all 1 for -1), so tap t contributes
// pad_value * (C_in - 2 * popcount(w_tap)). prefix[(kh * (KW + 1) + kw) * C + c] sums the taps
// above and left of (kh, kw), so any in-bounds rectangle costs four lookups per channel.
class PadTerms {
  public:
    PadTerms(const ConvGeometry &g, const uint64_t *wb) : g_(g), c_(blocks_for(g.c_out) * kBlock) {
        if (g.pad_value == 0) return;
        const int64_t cw = g.c_words(), k = g.kh * g.kw * cw;
        prefix_.assign(static_cast<size_t>((g.kh + 1) * (g.kw + 1) * c_), 0);
        for (int64_t kh = 0; kh < g.kh; ++kh)
            for (int64_t kw = 0; kw < g.kw; ++kw)
                for (int64_t c = 0; c < c_; ++c) {
                    const uint64_t *w = wb + (c / kBlock * k + (kh * g.kw + kw) * cw) * kBlock;
                    int64_t ones = 0;
                    for (int64_t i = 0; i < cw; ++i)
                        ones += __builtin_popcountll(w[i * kBlock + c % kBlock]);
                    const int32_t term = static_cast<int32_t>(g.pad_value * (g.c_in - 2 * ones));
                    at(kh + 1, kw + 1)[c] =
                        term + at(kh, kw + 1)[c] + at(kh + 1, kw)[c] - at(kh, kw)[c];
                }
    }

    // Correction for a window whose in-bounds taps are [kh0, kh1) x [kw0, kw1); null if none.
    const int32_t *correction(int64_t kh0, int64_t kh1, int64_t kw0, int64_t kw1,
                              std::vector<int32_t> &buf) const {
        if (prefix_.empty() || (kh1 - kh0 == g_.kh && kw1 - kw0 == g_.kw)) return nullptr;
        buf.resize(static_cast<size_t>(c_));
        const int32_t *all = at(g_.kh, g_.kw), *a = at(kh1, kw1), *b = at(kh0, kw1);
        const int32_t *c = at(kh1, kw0), *d = at(kh0, kw0);
        for (int64_t i = 0; i < c_; ++i) buf[i] = all[i] - (a[i] - b[i] - c[i] + d[i]);
        return buf.data();
    }

  private:
    int32_t *at(int64_t kh, int64_t kw) { return prefix_.data() + (kh * (g_.kw + 1) + kw) * c_; }
    const int32_t *at(int64_t kh, int64_t kw) const {
        return prefix_.data() + (kh * (g_.kw + 1) + kw) * c_;
    }

    const ConvGeometry &g_;
    int64_t c_;
    std::vector<int32_t> prefix_;
};

// One work item = one output row x one group of nr_max channel blocks.
void conv2d_tiles(const ConvGeometry &g, const uint64_t *x, const uint64_t *wb, TileOut proto,
                  int64_t out_pixel_elems, int threads) {
    if (g.kh == 1 && g.kw == 1 && g.stride_h == 1 && g.stride_w == 1 && g.pad_h == 0 &&
        g.pad_w == 0 && (g.n > 1 || g.h > 1)) {
        // A pointwise conv is a matrix product over all pixels: one long row fills the tiles.
        ConvGeometry flat = g;
        flat.w = g.n * g.h * g.w;
        flat.n = flat.h = 1;
        return conv2d_tiles(flat, x, wb, proto, out_pixel_elems, threads);
    }
    const KernelTable &kt = active_kernels();
    const int64_t out_h = g.out_h(), out_w = g.out_w(), cw = g.c_words(), taps = g.kh * g.kw;
    const int64_t blocks = blocks_for(g.c_out), groups = (blocks + kt.nr_max - 1) / kt.nr_max;
    const PadTerms pad(g, wb);
    // Output columns whose windows lie inside the input horizontally.
    const int64_t ow_lo = std::min(out_w, (g.pad_w + g.stride_w - 1) / g.stride_w);
    const int64_t last = g.w + g.pad_w - g.kw;  // largest in-bounds window start, times stride
    const int64_t ow_hi =
        last < 0 ? ow_lo : std::max(ow_lo, std::min(out_w, last / g.stride_w + 1));

    parallel_for(g.n * out_h * groups, threads, [&](int64_t begin, int64_t end) {
        std::vector<int64_t> a_off(static_cast<size_t>(g.kh)), w_off(static_cast<size_t>(g.kh));
        std::vector<int32_t> corr;
        for (int64_t item = begin; item < end; ++item) {
            const int64_t row = item / groups, group = item % groups;
            const int64_t b = row / out_h, oh = row % out_h;
            const int64_t ih0 = oh * g.stride_h - g.pad_h;
            const int64_t kh0 = std::max<int64_t>(0, -ih0);
            const int64_t kh1 = std::max(kh0, std::min<int64_t>(g.kh, g.h - ih0));
            Tile t{};
            t.w = wb;
            t.w_block_stride = taps * cw;
            t.block0 = group * kt.nr_max;
            t.nr = static_cast<int>(std::min<int64_t>(kt.nr_max, blocks - t.block0));
            t.a_row_off = a_off.data();
            t.w_row_off = w_off.data();
            TileOut o = proto;
            auto run = [&](int64_t ow, int mr, int64_t tiles) {
                t.mr = mr;
                t.tiles = tiles;
                o.out = static_cast<char *>(proto.out) + (row * out_w + ow) * out_pixel_elems;
                kt.bconv_tile(t, o);
            };
            auto border_pixel = [&](int64_t ow) {
                const int64_t iw0 = ow * g.stride_w - g.pad_w;
                const int64_t kw0 = std::max<int64_t>(0, -iw0);
                const int64_t kw1 = std::max(kw0, std::min<int64_t>(g.kw, g.w - iw0));
                t.nrows = kw1 > kw0 ? kh1 - kh0 : 0;
                t.run = (kw1 - kw0) * cw;
                t.a = x + ((b * g.h + ih0 + kh0) * g.w + iw0 + kw0) * cw;
                for (int64_t r = 0; r < t.nrows; ++r) {
                    a_off[r] = r * g.w * cw;
                    w_off[r] = ((kh0 + r) * g.kw + kw0) * cw;
                }
                o.base = static_cast<int32_t>(g.c_in * t.nrows * (kw1 - kw0));
                o.corr = pad.correction(kh0, kh0 + t.nrows, kw0, kw0 + (t.nrows ? kw1 - kw0 : 0),
                                        corr);
                run(ow, 1, 1);
            };
            for (int64_t ow = 0; ow < ow_lo; ++ow) border_pixel(ow);
            // Columns whose windows are inside horizontally share the row's kernel rows.
            t.nrows = kh1 - kh0;
            t.run = g.kw * cw;
            t.a_pixel_stride = g.stride_w * cw;
            for (int64_t r = 0; r < t.nrows; ++r) {
                a_off[r] = r * g.w * cw;
                w_off[r] = (kh0 + r) * g.kw * cw;
            }
            o.base = static_cast<int32_t>(g.c_in * t.nrows * g.kw);
            o.corr = pad.correction(kh0, kh1, 0, g.kw, corr);
            // One call for the row's full tiles, one for the rest.
            const int64_t full = (ow_hi - ow_lo) / kt.mr_max, done = ow_lo + full * kt.mr_max;
            auto interior = [&](int64_t ow, int64_t mr, int64_t tiles) {
                if (tiles == 0 || mr == 0) return;
                t.a = x + ((b * g.h + ih0 + kh0) * g.w + ow * g.stride_w - g.pad_w) * cw;
                run(ow, static_cast<int>(mr), tiles);
            };
            interior(ow_lo, kt.mr_max, full);
            interior(done, ow_hi - done, 1);
            for (int64_t ow = ow_hi; ow < out_w; ++ow) border_pixel(ow);
        }
    });
}

}  // namespace

void conv2d_dots(const ConvGeometry &g, const uint64_t *x, const uint64_t *wb, int32_t *out,
                 int threads) {
    TileOut o{};
    o.kind = OutKind::dots;
    o.c_out = g.c_out;
    o.out = out;
    o.pixel_stride = g.c_out;
    conv2d_tiles(g, x, wb, o, g.c_out * sizeof(int32_t), threads);
}

void conv2d_float(const ConvGeometry &g, const uint64_t *x, const uint64_t *wb,
                  const float *scale, const float *bias, float *out, int threads) {
    const ChannelParams p = ChannelParams::affine(g.c_out, scale, bias);
    TileOut o = p.out(OutKind::floats);
    o.out = out;
    o.pixel_stride = g.c_out;
    conv2d_tiles(g, x, wb, o, g.c_out * sizeof(float), threads);
}

void conv2d_bits(const ConvGeometry &g, const uint64_t *x, const uint64_t *wb,
                 const int32_t *threshold, const int8_t *direction, uint64_t *out, int threads) {
    const ChannelParams p = ChannelParams::thresholds(g.c_out, threshold, direction);
    TileOut o = p.out(OutKind::bits);
    o.out = out;
    o.pixel_stride = words_for(g.c_out) * 8;
    conv2d_tiles(g, x, wb, o, words_for(g.c_out) * sizeof(uint64_t), threads);
}

}  // namespace bnnx
