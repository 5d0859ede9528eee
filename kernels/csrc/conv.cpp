// Direct binary convolution: no im2col buffer. Work is split into register tiles of the active
// microkernel: MR consecutive output pixels whose windows are inside the input horizontally share
// one tile over the row's in-bounds kernel rows, each of which is one contiguous run of
// KW * C_words words in NHWC activations and in the blocked weights. Pixels at the left and right
// edges share their window's in-bounds rectangle with the pixels above and below them, so they
// are tiled down the column; only the corners take one-pixel tiles. Rows whose windows are inside
// vertically too share one window, so one microkernel call covers a band of them. Padded taps are
// skipped and added back exactly as a per-channel correction (zero for pad_value 0).
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <utility>
#include <vector>

#include "channel_params.h"
#include "isa.h"
#include "ops.h"
#include "parallel.h"

namespace bnnx {
namespace {

// Per-channel sums of padded-tap terms over window rectangles, for pad_value != 0. A padded tap
// is the constant vector pad_value (its bits all 0 for +1, all 1 for -1), so tap t contributes
// pad_value * (C_in - 2 * popcount(w_tap)): pad_value times the tap sums of tap_prefix (the
// layer's, made once, or made here per call where the geometry has none).
class PadTerms {
  public:
    PadTerms(const ConvGeometry &g, const uint64_t *wb) : g_(g), c_(blocks_for(g.c_out) * kBlock) {
        if (g.pad_value == 0) return;
        prefix_ = g.tap_prefix;
        if (prefix_ == nullptr) {
            own_ = tap_sum_prefix(g, wb);
            prefix_ = own_.data();
        }
    }

    // Correction for a window whose in-bounds taps are [kh0, kh1) x [kw0, kw1); null if none.
    const int32_t *correction(int64_t kh0, int64_t kh1, int64_t kw0, int64_t kw1,
                              std::vector<int32_t> &buf) const {
        if (prefix_ == nullptr || (kh1 - kh0 == g_.kh && kw1 - kw0 == g_.kw)) return nullptr;
        buf.resize(static_cast<size_t>(c_));
        const int32_t *all = at(g_.kh, g_.kw), *a = at(kh1, kw1), *b = at(kh0, kw1);
        const int32_t *c = at(kh1, kw0), *d = at(kh0, kw0);
        for (int64_t i = 0; i < c_; ++i)
            buf[i] = g_.pad_value * (all[i] - (a[i] - b[i] - c[i] + d[i]));
        return buf.data();
    }

  private:
    const int32_t *at(int64_t kh, int64_t kw) const {
        return prefix_ + (kh * (g_.kw + 1) + kw) * c_;
    }

    const ConvGeometry &g_;
    int64_t c_;
    const int32_t *prefix_ = nullptr;
    std::vector<int32_t> own_;
};

// Output positions [lo, hi) along one axis whose windows lie inside the input.
std::pair<int64_t, int64_t> inside(int64_t out, int64_t in, int64_t k, int64_t stride,
                                   int64_t pad) {
    const int64_t lo = std::min(out, (pad + stride - 1) / stride);
    const int64_t last = in + pad - k;  // largest in-bounds window start, times stride
    return {lo, last < 0 ? lo : std::max(lo, std::min(out, last / stride + 1))};
}

// Work items: output rows, each over every group of channel blocks (nr_max, or as many as keep
// their weights in L1: KernelTable::blocks_in_l1), in chunks of at least a tile's height of
// rows. A chunk's interior rows (whose windows are inside vertically)
// share one window, so they go as one band, one call per group; their pixels in the border
// columns (whose windows cross the left or right edge) share their column's window rectangle,
// so they are tiled down the column; only the corners are left to the edge rows' one-pixel
// tiles. Rows, not bands, are the items, so threads' shares hold equal rows and they seldom
// steal; whole rows stay on one thread, and the groups of a pixel too: they write neighbouring
// bytes of packed words (and floats of one cache line), which two threads would keep stealing
// from each other, and the next layer's thread, splitting its rows in the same proportions,
// finds them in its own cache.
void tile_conv(const ConvGeometry &g, const uint64_t *x, const uint64_t *wb, TileOut proto,
               int64_t out_pixel_elems, int threads) {
    const KernelTable &kt = active_kernels();
    const int64_t out_h = g.out_h(), out_w = g.out_w(), cw = g.c_words(), taps = g.kh * g.kw;
    const int64_t blocks = blocks_for(g.c_out);
    const int64_t per_group = kt.blocks_in_l1 ? kt.blocks_in_l1(taps * cw) : kt.nr_max;
    const int64_t groups = (blocks + per_group - 1) / per_group;
    const PadTerms pad(g, wb);
    const auto [ow_lo, ow_hi] = inside(out_w, g.w, g.kw, g.stride_w, g.pad_w);
    const auto [oh_lo, oh_hi] = inside(out_h, g.h, g.kh, g.stride_h, g.pad_h);
    const int64_t items = g.n * out_h, border_cols = ow_lo + out_w - ow_hi;
    // Too few rows to go round (a small pointwise map): groups are items too.
    const int64_t split = threads > 1 && items < 2 * threads ? groups : 1;

    parallel_for(items * split, threads, kt.mr_max, [&](int64_t begin, int64_t end) {
        std::vector<int64_t> a_off(static_cast<size_t>(g.kh)), w_off(static_cast<size_t>(g.kh));
        std::vector<int32_t> corr;
        Tile t{};
        t.w = wb;
        t.w_block_stride = taps * cw;
        t.a_row_off = a_off.data();
        t.w_row_off = w_off.data();
        TileOut o = proto;
        // Rows, base and correction of windows whose in-bounds taps are [kh0, kh1) x [kw0, kw1).
        auto window = [&](int64_t kh0, int64_t kh1, int64_t kw0, int64_t kw1) {
            if (kh1 <= kh0 || kw1 <= kw0) kh1 = kh0, kw1 = kw0;
            t.nrows = kh1 - kh0;
            t.run = (kw1 - kw0) * cw;
            for (int64_t r = 0; r < t.nrows; ++r) {
                a_off[r] = r * g.w * cw;
                w_off[r] = ((kh0 + r) * g.kw + kw0) * cw;
            }
            o.base = static_cast<int32_t>(g.c_in * t.nrows * (kw1 - kw0));
            o.corr = pad.correction(kh0, kh1, kw0, kw1, corr);
        };
        // Points o at output pixel `pixel`, its neighbours `step` apart.
        auto aim = [&](int64_t pixel, int64_t step) {
            o.pixel_stride = proto.pixel_stride * step;
            o.residual_stride = proto.residual_stride * step;
            o.out = static_cast<char *>(proto.out) + pixel * out_pixel_elems;
            if (proto.residual) o.residual = proto.residual + pixel * proto.residual_stride;
            if (proto.signs) {
                o.signs = proto.signs + pixel * words_for(g.c_out) * 8;
                o.signs_stride = proto.signs_stride * step;
            }
        };
        // `pixels` outputs from `first` on, `step` apart (in output pixels), in each of `rows`
        // output rows (out_w pixels and a_row_stride input words apart): one call for the full
        // tiles, one for the rest.
        auto span = [&](const uint64_t *a, int64_t first, int64_t pixels, int64_t step,
                        int64_t rows = 1, int64_t a_row_stride = 0) {
            t.rows = rows;
            t.a_row_stride = a_row_stride;
            t.out_row_stride = out_w;
            t.raster_width = 0;
            // Tiles of equal width (14 pixels as 5 + 5 + 4, not 6 + 6 + 2): a narrow tile
            // runs its few chains per weight load well below the wide tiles' rate.
            const int64_t tiles = std::max<int64_t>(1, (pixels + kt.mr_max - 1) / kt.mr_max);
            const int64_t widest = (pixels + tiles - 1) / tiles;
            for (int64_t done = 0; done < pixels;) {
                t.mr = static_cast<int>(std::min<int64_t>(widest, pixels - done));
                t.tiles = done == 0 ? pixels / t.mr : 1;
                t.a = a + done * t.a_pixel_stride;
                aim(first + done * step, step);
                kt.bconv_tile(t, o);
                done += t.tiles * t.mr;
            }
        };
        // An interior band of `rows` rows of `pixels` outputs: where the table takes them and
        // that needs fewer tiles, tiles of equal width in raster order across the rows (196
        // pixels of 14 rows as 32 x 6 + 4, not 14 x (5 + 5 + 4)); else row by row.
        auto band = [&](const uint64_t *a, int64_t first, int64_t pixels, int64_t rows,
                        int64_t a_row_stride) {
            const int64_t all = rows * pixels, tiles = (all + kt.mr_max - 1) / kt.mr_max;
            if (!kt.raster_bands || tiles >= rows * ((pixels + kt.mr_max - 1) / kt.mr_max))
                return span(a, first, pixels, 1, rows, a_row_stride);
            const int64_t widest = (all + tiles - 1) / tiles;
            t.a = a;
            t.a_row_stride = a_row_stride;
            t.out_row_stride = out_w;
            t.raster_width = pixels;
            aim(first, 1);
            for (int64_t done = 0; done < all;) {
                t.mr = static_cast<int>(std::min<int64_t>(widest, all - done));
                t.tiles = (all - done) / t.mr;
                t.raster_first = done;
                kt.bconv_tile(t, o);
                done += t.tiles * t.mr;
            }
        };
        // The window start of output column ow and its in-bounds taps [kw0, kw1).
        auto columns = [&](int64_t ow) {
            const int64_t iw0 = ow * g.stride_w - g.pad_w;
            const int64_t kw0 = std::max<int64_t>(0, -iw0);
            return std::array<int64_t, 3>{iw0, kw0,
                                          std::max(kw0, std::min<int64_t>(g.kw, g.w - iw0))};
        };
        // Rows [oh, oh + rows) of image b, an edge row or interior rows, on channel group
        // `group`.
        auto run = [&](int64_t b, int64_t oh, int64_t rows, int64_t group) {
            t.block0 = group * per_group;
            t.nr = static_cast<int>(std::min<int64_t>(per_group, blocks - t.block0));
            const int64_t ih0 = oh * g.stride_h - g.pad_h;
            if (oh >= oh_lo && oh < oh_hi) {
                window(0, g.kh, 0, g.kw);
                t.a_pixel_stride = g.stride_w * cw;
                band(x + ((b * g.h + ih0) * g.w + ow_lo * g.stride_w - g.pad_w) * cw,
                     (b * out_h + oh) * out_w + ow_lo, ow_hi - ow_lo, rows,
                     g.stride_h * g.w * cw);
                // The rows' pixels in the border columns, tiled down each column.
                for (int64_t c = 0; c < border_cols; ++c) {
                    const int64_t ow = c < ow_lo ? c : ow_hi + c - ow_lo;
                    const auto [iw0, kw0, kw1] = columns(ow);
                    window(0, g.kh, kw0, kw1);
                    t.a_pixel_stride = g.stride_h * g.w * cw;
                    span(x + ((b * g.h + ih0) * g.w + iw0 + kw0) * cw,
                         (b * out_h + oh) * out_w + ow, rows, out_w);
                }
                return;
            }
            const int64_t row = b * out_h + oh;
            const int64_t kh0 = std::max<int64_t>(0, -ih0);
            const int64_t kh1 = std::max(kh0, std::min<int64_t>(g.kh, g.h - ih0));
            const uint64_t *x_row = x + (b * g.h + ih0 + kh0) * g.w * cw;
            window(kh0, kh1, 0, g.kw);
            t.a_pixel_stride = g.stride_w * cw;
            span(x_row + (ow_lo * g.stride_w - g.pad_w) * cw, row * out_w + ow_lo, ow_hi - ow_lo,
                 1);
            // The corners after the row's span, whose weights they read again from L1: one
            // pixel's tile reads each weight word once, at L2's bandwidth when cold.
            for (int64_t c = 0; c < border_cols; ++c) {
                const int64_t ow = c < ow_lo ? c : ow_hi + c - ow_lo;
                const auto [iw0, kw0, kw1] = columns(ow);
                window(kh0, kh1, kw0, kw1);
                span(x_row + (iw0 + kw0) * cw, row * out_w + ow, 1, 1);
            }
        };
        if (split > 1) {
            for (int64_t task = begin; task < end; ++task)
                run(task / split / out_h, task / split % out_h, 1, task % split);
            return;
        }
        // The chunk's rows in runs within one image: one edge row, or interior rows.
        for (int64_t item = begin; item < end;) {
            const int64_t b = item / out_h, oh = item % out_h;
            const int64_t rows = oh >= oh_lo && oh < oh_hi
                                     ? std::min(end - item, oh_hi - oh)
                                     : 1;
            for (int64_t group = 0; group < groups; ++group) run(b, oh, rows, group);
            item += rows;
        }
    });
}

// A pointwise conv is a matrix product over all pixels: one long row fills the tiles. On more
// threads the pixels are cut into equal rows instead (a divisor of their count, near four per
// thread, each at least two tiles long), which become the work items.
void conv2d_tiles(const ConvGeometry &g, const uint64_t *x, const uint64_t *wb, TileOut proto,
                  int64_t out_pixel_elems, int threads) {
    if (g.kh != 1 || g.kw != 1 || g.stride_h != 1 || g.stride_w != 1 || g.pad_h != 0 ||
        g.pad_w != 0)
        return tile_conv(g, x, wb, proto, out_pixel_elems, threads);
    const int64_t pixels = g.n * g.h * g.w, wanted = 4 * static_cast<int64_t>(threads);
    const int64_t shortest = 2 * active_kernels().mr_max;
    int64_t rows = 1;
    for (int64_t d = 2; threads > 1 && d <= 2 * wanted && d * shortest <= pixels; ++d)
        if (pixels % d == 0 && std::abs(d - wanted) < std::abs(rows - wanted)) rows = d;
    ConvGeometry flat = g;
    flat.n = 1;
    flat.h = rows;
    flat.w = pixels / rows;
    tile_conv(flat, x, wb, proto, out_pixel_elems, threads);
}

}  // namespace

std::vector<int32_t> tap_sum_prefix(const ConvGeometry &g, const uint64_t *wb) {
    const int64_t c_pad = blocks_for(g.c_out) * kBlock, cw = g.c_words(), k = g.kh * g.kw * cw;
    std::vector<int32_t> prefix(static_cast<size_t>((g.kh + 1) * (g.kw + 1) * c_pad), 0);
    const auto at = [&](int64_t kh, int64_t kw) {
        return prefix.data() + (kh * (g.kw + 1) + kw) * c_pad;
    };
    for (int64_t kh = 0; kh < g.kh; ++kh)
        for (int64_t kw = 0; kw < g.kw; ++kw)
            for (int64_t c = 0; c < c_pad; ++c) {
                const uint64_t *w = wb + (c / kBlock * k + (kh * g.kw + kw) * cw) * kBlock;
                int64_t ones = 0;
                for (int64_t i = 0; i < cw; ++i)
                    ones += __builtin_popcountll(w[i * kBlock + c % kBlock]);
                at(kh + 1, kw + 1)[c] = static_cast<int32_t>(g.c_in - 2 * ones) +
                                        at(kh, kw + 1)[c] + at(kh + 1, kw)[c] - at(kh, kw)[c];
            }
    return prefix;
}

void conv2d_out(const ConvGeometry &g, const uint64_t *x, const uint64_t *wb,
                const ChannelParams &p, OutKind kind, void *out, const float *residual,
                uint64_t *signs, int threads, int64_t residual_channels) {
    TileOut o = p.out(kind);
    o.out = out;
    o.residual = residual;
    o.residual_channels = residual_channels > 0 ? residual_channels : g.c_out;
    o.residual_stride = o.residual_channels;
    o.signs = reinterpret_cast<uint8_t *>(signs);
    o.signs_stride = words_for(g.c_out) * 8;
    // Pixel strides: in elements (int32 / float) or bytes (bits).
    o.pixel_stride = kind == OutKind::bits ? words_for(g.c_out) * 8 : g.c_out;
    const int64_t pixel_bytes = kind == OutKind::bits ? words_for(g.c_out) * 8 : g.c_out * 4;
    conv2d_tiles(g, x, wb, o, pixel_bytes, threads);
}

void conv2d_dots(const ConvGeometry &g, const uint64_t *x, const uint64_t *wb, int32_t *out,
                 int threads) {
    conv2d_out(g, x, wb, ChannelParams::none(g.c_out), OutKind::dots, out, nullptr, nullptr,
               threads);
}

void conv2d_float(const ConvGeometry &g, const uint64_t *x, const uint64_t *wb,
                  const float *scale, const float *bias, float *out, int threads) {
    conv2d_out(g, x, wb, ChannelParams::affine(g.c_out, scale, bias), OutKind::floats, out,
               nullptr, nullptr, threads);
}

void conv2d_unit(const ConvGeometry &g, const uint64_t *x, const uint64_t *wb, const float *scale,
                 const float *bias, const float *alpha, const float *beta, const float *residual,
                 const UnitAct &act, float *out, const float *sign_shift, uint64_t *signs,
                 int threads) {
    conv2d_out(g, x, wb,
               ChannelParams::unit(g.c_out, scale, bias, alpha, beta, act, sign_shift),
               OutKind::unit, out, residual, signs, threads);
}

void conv2d_bits(const ConvGeometry &g, const uint64_t *x, const uint64_t *wb,
                 const int32_t *threshold, const int8_t *direction, uint64_t *out, int threads) {
    conv2d_out(g, x, wb, ChannelParams::thresholds(g.c_out, threshold, direction),
               OutKind::bits, out, nullptr, nullptr, threads);
}

// Checked on every reachable conv output at compile and load (millions of values for a wide
// layer): a hardware-FMA clone where the CPU has one, else libm's exact software fma.
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target_clones("fma", "default")))
#endif
void fma_channels(const float *y, int64_t n, int64_t c_out, const float *alpha, const float *beta,
                  float *out) {
    for (int64_t i = 0; i < n; ++i)
        for (int64_t c = 0; c < c_out; ++c)
            out[i * c_out + c] = std::fma(y[i * c_out + c], alpha[c], beta[c]);
}

}  // namespace bnnx
