// Python bindings: every argument is validated here (dtype, ndim, C-contiguity, shapes) so bad
// input raises TypeError/ValueError instead of reading out of bounds; the GIL is released while
// the kernels run.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "channel_params.h"
#include "isa.h"
#include "narrow_linear.h"
#include "ops.h"
#include "parallel.h"

namespace nb = nanobind;
using namespace bnnx;

namespace {

using Array = nb::ndarray<nb::ro>;
using Pair = std::pair<int64_t, int64_t>;

template <typename T>
const char *dtype_name() {
    if constexpr (std::is_same_v<T, float>) return "float32";
    if constexpr (std::is_same_v<T, uint64_t>) return "uint64";
    if constexpr (std::is_same_v<T, int32_t>) return "int32";
    if constexpr (std::is_same_v<T, int8_t>) return "int8";
    if constexpr (std::is_same_v<T, uint8_t>) return "uint8";
    return "?";
}

std::string describe(nb::dlpack::dtype dt) {
    const char *kind = "?";
    switch (static_cast<nb::dlpack::dtype_code>(dt.code)) {
        case nb::dlpack::dtype_code::Int: kind = "int"; break;
        case nb::dlpack::dtype_code::UInt: kind = "uint"; break;
        case nb::dlpack::dtype_code::Float: kind = "float"; break;
        case nb::dlpack::dtype_code::Bool: return "bool";
        default: break;
    }
    return std::string(kind) + std::to_string(dt.bits);
}

std::string shape_str(const Array &a) {
    std::string s = "(";
    for (size_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
    return s + (a.ndim() == 1 ? ",)" : ")");
}

[[noreturn]] void value_error(const std::string &msg) { throw nb::value_error(msg.c_str()); }
[[noreturn]] void type_error(const std::string &msg) { throw nb::type_error(msg.c_str()); }

// Checks device, dtype, rank and C-contiguity; returns the typed data pointer.
template <typename T>
const T *checked(const Array &a, const char *name, size_t ndim, const char *layout) {
    if (a.device_type() != nb::device::cpu::value)
        type_error(std::string(name) + " must be a CPU array");
    if (a.dtype() != nb::dtype<T>())
        type_error(std::string(name) + " must have dtype " + dtype_name<T>() + ", got " +
                   describe(a.dtype()));
    if (a.ndim() != ndim)
        value_error(std::string(name) + " must be " + std::to_string(ndim) + "-D " + layout +
                    ", got shape " + shape_str(a));
    int64_t expected = 1;
    for (size_t i = ndim; a.size() > 0 && i-- > 0;) {
        if (a.shape(i) != 1 && a.stride(i) != expected)
            value_error(std::string(name) + " must be C-contiguous (np.ascontiguousarray)");
        expected *= static_cast<int64_t>(a.shape(i));
    }
    return reinterpret_cast<const T *>(static_cast<const uint8_t *>(a.data_handle()) +
                                       a.byte_offset());
}

// Zeroed unless the caller's kernel writes every element (`zeroed` false skips a pass over it).
template <typename T>
nb::ndarray<nb::numpy, T> new_array(std::vector<size_t> shape, bool zeroed = true) {
    size_t count = 1;
    for (size_t s : shape) count *= s;
    T *data = zeroed ? new T[count > 0 ? count : 1]() : new T[count > 0 ? count : 1];
    nb::capsule owner(data, [](void *p) noexcept { delete[] static_cast<T *>(p); });
    return nb::ndarray<nb::numpy, T>(data, shape.size(), shape.data(), owner);
}

int64_t dim(const Array &a, size_t i) { return static_cast<int64_t>(a.shape(i)); }

void check_positive(const Pair &p, const char *name) {
    if (p.first < 1 || p.second < 1)
        value_error(std::string(name) + " must be >= 1, got (" + std::to_string(p.first) + ", " +
                    std::to_string(p.second) + ")");
}

void check_non_negative(const Pair &p, const char *name) {
    if (p.first < 0 || p.second < 0)
        value_error(std::string(name) + " must be >= 0, got (" + std::to_string(p.first) + ", " +
                    std::to_string(p.second) + ")");
}

void check_threads(int threads) {
    if (threads < 1) value_error("threads must be >= 1, got " + std::to_string(threads));
}

void check_channels(int64_t channels, int64_t words, const char *name) {
    if (channels < 1) value_error("channels must be >= 1, got " + std::to_string(channels));
    if (words != words_for(channels))
        value_error(std::string(name) + " has " + std::to_string(words) + " words per pixel but " +
                    std::to_string(channels) + " channels need " +
                    std::to_string(words_for(channels)));
}

using Optional = std::optional<Array>;

// Blocked weights (isa.h): the caller's `blocked` array after a shape check, else blocked here.
struct Blocked {
    std::vector<uint64_t> owned;
    const uint64_t *data;
};

Blocked blocked_weights(const Optional &blocked, const uint64_t *w, int64_t c_out, int64_t k) {
    Blocked b{};
    if (blocked) {
        b.data = checked<uint64_t>(*blocked, "blocked", 3, "(ceil(C_out / 8), K, 8)");
        if (dim(*blocked, 0) != blocks_for(c_out) || dim(*blocked, 1) != k ||
            dim(*blocked, 2) != kBlock)
            value_error("blocked has shape " + shape_str(*blocked) + ", expected (" +
                        std::to_string(blocks_for(c_out)) + ", " + std::to_string(k) + ", 8)");
        return b;
    }
    b.owned.resize(static_cast<size_t>(blocks_for(c_out) * k * kBlock));
    block_weights(w, c_out, k, b.owned.data());
    b.data = b.owned.data();
    return b;
}

// A binary conv prepared once for many inputs: its weights blocked (or the caller's blocked array,
// kept alive) and its output's per-channel parameters padded to whole blocks (ChannelParams). The
// engine's ops hold one each, so a call converts and checks only x (and a residual); the
// conv2d_* functions build one per call.
struct ConvLayer {
    int64_t c_in = 0, c_out = 0, kh = 0, kw = 0;
    Pair stride{1, 1}, padding{0, 0};
    int pad_value = 0;
    Blocked weights;
    std::optional<Array> held;  // the caller's blocked array, when weights point into it
    OutKind kind = OutKind::dots;
    ChannelParams params;
    // A +-1 padded layer's tap sums (tap_sum_prefix), made once: per call they cost more than
    // the conv of a small map (512 -> 512 @ 8x8: 67 us of 119).
    std::vector<int32_t> tap_prefix;

    const uint64_t *blocked() const {
        return weights.owned.empty() ? weights.data : weights.owned.data();
    }

    // The geometry of this layer on x (a checked packed NHWC array), checked.
    ConvGeometry geometry(const Array &x) const {
        check_channels(c_in, dim(x, 3), "x");
        ConvGeometry g{dim(x, 0), dim(x, 1), dim(x, 2), c_in, c_out, kh, kw,
                       stride.first, stride.second, padding.first, padding.second, pad_value,
                       tap_prefix.empty() ? nullptr : tap_prefix.data()};
        if (g.h + 2 * g.pad_h < g.kh || g.w + 2 * g.pad_w < g.kw)
            value_error("kernel " + std::to_string(g.kh) + "x" + std::to_string(g.kw) +
                        " is larger than the padded input " + std::to_string(g.h + 2 * g.pad_h) +
                        "x" + std::to_string(g.w + 2 * g.pad_w));
        return g;
    }
};

// A layer's weight side, checked; its kind and parameters are set by the caller.
ConvLayer conv_layer(const Array &w, int64_t channels, Pair stride, Pair padding, int pad_value,
                     const Optional &blocked) {
    ConvLayer layer;
    const uint64_t *pw = checked<uint64_t>(w, "weight", 4, "packed (C_out, KH, KW, C_words)");
    if (channels < 1) value_error("channels must be >= 1, got " + std::to_string(channels));
    if (dim(w, 3) != words_for(channels))
        value_error("weight has " + std::to_string(dim(w, 3)) + " words per tap but " +
                    std::to_string(channels) + " channels need " +
                    std::to_string(words_for(channels)));
    check_positive(stride, "stride");
    check_non_negative(padding, "padding");
    if (pad_value != -1 && pad_value != 0 && pad_value != 1)
        value_error("pad_value must be -1, 0 or 1, got " + std::to_string(pad_value));
    layer.c_in = channels;
    layer.c_out = dim(w, 0);
    layer.kh = dim(w, 1);
    layer.kw = dim(w, 2);
    layer.stride = stride;
    layer.padding = padding;
    layer.pad_value = pad_value;
    if (layer.c_out < 1 || layer.kh < 1 || layer.kw < 1)
        value_error("weight shape " + shape_str(w) + " has an empty dimension");
    if (channels * layer.kh * layer.kw > INT32_MAX / 2)
        value_error("layer too large for int32 dots");
    layer.weights = blocked_weights(blocked, pw, layer.c_out,
                                    layer.kh * layer.kw * words_for(channels));
    if (blocked) layer.held = *blocked;
    if (pad_value != 0) {
        const ConvGeometry g{1, 1, 1, channels, layer.c_out, layer.kh, layer.kw, 1, 1, 0, 0,
                             pad_value};
        layer.tap_prefix = tap_sum_prefix(g, layer.blocked());
    }
    return layer;
}

// A 1-D per-channel vector of `channels` entries (`what` names that count in the error).
template <typename T>
const T *per_channel(const Array &a, const char *name, int64_t channels,
                     const char *what = "C_out") {
    const T *p = checked<T>(a, name, 1, "per-channel vector");
    if (dim(a, 0) != channels)
        value_error(std::string(name) + " has " + std::to_string(dim(a, 0)) +
                    " entries, expected " + what + " = " + std::to_string(channels));
    return p;
}

ConvLayer dots_layer(const Array &w, int64_t channels, Pair stride, Pair padding, int pad_value,
                     const Optional &blocked) {
    ConvLayer layer = conv_layer(w, channels, stride, padding, pad_value, blocked);
    layer.params = ChannelParams::none(layer.c_out);
    return layer;
}

ConvLayer float_layer(const Array &w, int64_t channels, Pair stride, Pair padding, int pad_value,
                      const Array &scale, const Array &bias, const Optional &blocked) {
    ConvLayer layer = conv_layer(w, channels, stride, padding, pad_value, blocked);
    layer.kind = OutKind::floats;
    layer.params = ChannelParams::affine(layer.c_out, per_channel<float>(scale, "scale", layer.c_out),
                                         per_channel<float>(bias, "bias", layer.c_out));
    return layer;
}

ConvLayer bits_layer(const Array &w, int64_t channels, Pair stride, Pair padding, int pad_value,
                     const Array &threshold, const Array &direction, const Optional &blocked) {
    ConvLayer layer = conv_layer(w, channels, stride, padding, pad_value, blocked);
    const int32_t *t = per_channel<int32_t>(threshold, "threshold", layer.c_out);
    const int8_t *d = per_channel<int8_t>(direction, "direction", layer.c_out);
    for (int64_t c = 0; c < layer.c_out; ++c)
        if (d[c] != 1 && d[c] != -1)
            value_error("direction must hold only +1 or -1, got " + std::to_string(d[c]) +
                        " at channel " + std::to_string(c));
    layer.kind = OutKind::bits;
    layer.params = ChannelParams::thresholds(layer.c_out, t, d);
    return layer;
}

ConvLayer unit_layer(const Array &w, int64_t channels, Pair stride, Pair padding, int pad_value,
                     const Array &scale, const Array &bias, const Array &alpha, const Array &beta,
                     const std::string &activation, const Optional &gamma, const Optional &slope,
                     const Optional &zeta, std::pair<float, float> bounds,
                     const Optional &sign_shift, const Optional &blocked) {
    ConvLayer layer = conv_layer(w, channels, stride, padding, pad_value, blocked);
    const int64_t c = layer.c_out;
    const float *s = per_channel<float>(scale, "scale", c);
    const float *b = per_channel<float>(bias, "bias", c);
    const float *al = per_channel<float>(alpha, "alpha", c);
    const float *be = per_channel<float>(beta, "beta", c);
    UnitAct act;
    // The parameters `kind` needs: present and C_out long; the others must be absent.
    auto params = [&](Act kind, bool with_shift) {
        act.act = kind;
        const std::pair<const Optional *, const char *> all[] = {
            {&gamma, "gamma"}, {&slope, "slope"}, {&zeta, "zeta"}};
        const float **dst[] = {&act.gamma, &act.slope, &act.zeta};
        for (int i = 0; i < 3; ++i) {
            const bool wanted = i == 1 || with_shift;
            if (wanted != all[i].first->has_value())
                value_error(std::string("activation ") + activation +
                            (wanted ? " needs " : " takes no ") + all[i].second);
            if (wanted) *dst[i] = per_channel<float>(**all[i].first, all[i].second, c);
        }
    };
    if (activation == "none" || activation == "hardtanh") {
        if (gamma || slope || zeta)
            value_error("activation " + activation + " takes no gamma, slope or zeta");
        if (activation == "hardtanh") {
            act.act = Act::hardtanh;
            act.low = bounds.first;
            act.high = bounds.second;
            if (!(act.low <= act.high))
                value_error("hardtanh bounds must be ordered numbers, got (" +
                            std::to_string(act.low) + ", " + std::to_string(act.high) + ")");
        }
    } else if (activation == "prelu") {
        params(Act::prelu, false);
    } else if (activation == "rprelu") {
        params(Act::rprelu, true);
    } else {
        value_error("unknown activation '" + activation +
                    "'; allowed: none, prelu, rprelu, hardtanh");
    }
    const float *shift = sign_shift ? per_channel<float>(*sign_shift, "sign_shift", c) : nullptr;
    layer.kind = OutKind::unit;
    layer.params = ChannelParams::unit(c, s, b, al, be, act, shift);
    return layer;
}

// A max-pool on an (n, h, w, c) map (c: channels, or words of bits), checked.
PoolGeometry pool_geometry(int64_t n, int64_t h, int64_t w, int64_t c, Pair kernel, Pair stride,
                           Pair padding) {
    check_positive(kernel, "kernel_size");
    check_positive(stride, "stride");
    check_non_negative(padding, "padding");
    if (padding.first * 2 > kernel.first || padding.second * 2 > kernel.second)
        value_error("padding must be at most half the kernel size");
    PoolGeometry g{n, h, w, c, kernel.first, kernel.second, stride.first, stride.second,
                   padding.first, padding.second};
    if (g.h + 2 * g.pad_h < g.kh || g.w + 2 * g.pad_w < g.kw)
        value_error("pooling window is larger than the padded input");
    return g;
}

using PoolArgs = std::tuple<Pair, Pair, Pair>;  // kernel_size, stride, padding

// The layer on x: its output array; a unit layer's is (floats, packed signs or None), the signs
// when asked for (of the output minus the layer's sign_shift), the residual added when given.
// A bits or float layer's output max-pooled with `pool` in the same call (the map made in the
// calling thread's buffer), as maxpool2d_bits / maxpool2d_float would: a pool's own call from
// Python cost more than the pool (VGG-Small's: ~0.8 us each against 0.25).
nb::object run_layer(const ConvLayer &layer, const Array &x, int threads,
                     const Optional &residual, bool signs, const std::optional<PoolArgs> &pool) {
    const uint64_t *px = checked<uint64_t>(x, "x", 4, "packed NHWC (N, H, W, C_words)");
    const ConvGeometry g = layer.geometry(x);
    check_threads(threads);
    const bool unit = layer.kind == OutKind::unit;
    if (!unit && (residual || signs))
        value_error("residual and signs are only used by unit layers");
    if (unit && !signs && !layer.params.sign_shift.empty())
        value_error("this unit layer's sign_shift is only used with signs=True");
    const std::vector<size_t> shape = {size_t(g.n), size_t(g.out_h()), size_t(g.out_w()),
                                       size_t(g.c_out)};
    const float *r = nullptr;
    int64_t residual_channels = g.c_out;
    if (residual) {
        r = checked<float>(*residual, "residual", 4, "float NHWC");
        // C_out / 2 channels (a multiple of 16) are added to both halves: ReActNet's [y, y].
        residual_channels = dim(*residual, 3);
        const bool half = g.c_out % 32 == 0 && residual_channels * 2 == g.c_out;
        for (size_t i = 0; i < 4; ++i)
            if (residual->shape(i) != shape[i] && !(i == 3 && half))
                value_error("residual has shape " + shape_str(*residual) +
                            ", expected the output's (N, OH, OW, C_out) or, when C_out is a "
                            "multiple of 32, (N, OH, OW, C_out / 2)");
    }
    const std::vector<size_t> words = {shape[0], shape[1], shape[2], size_t(words_for(g.c_out))};
    // Packed outputs get a byte per 8-channel block of every pixel; only bytes past the last
    // block (C_out not a multiple of 64 and its blocks not filling the last word) need zeros.
    const bool partial = blocks_for(g.c_out) < words_for(g.c_out) * 8;
    std::optional<nb::ndarray<nb::numpy, uint64_t>> bits;
    if (signs) bits = new_array<uint64_t>(words, partial);
    const auto run = [&](void *out) {
        nb::gil_scoped_release release;
        conv2d_out(g, px, layer.blocked(), layer.params,
                   layer.kind, out, r, bits ? bits->data() : nullptr, threads, residual_channels);
    };
    if (pool) {
        if (layer.kind != OutKind::bits && layer.kind != OutKind::floats)
            value_error("pool is only for bits and float layers");
        const bool packed = layer.kind == OutKind::bits;
        const auto &[kernel, stride, padding] = *pool;
        const PoolGeometry pg =
            pool_geometry(g.n, g.out_h(), g.out_w(), packed ? words_for(g.c_out) : g.c_out,
                          kernel, stride, padding);
        const size_t count = shape[0] * shape[1] * shape[2] * (packed ? words[3] : shape[3]);
        const std::vector<size_t> pooled = {shape[0], size_t(pg.out_h()), size_t(pg.out_w()),
                                            packed ? words[3] : shape[3]};
        if (packed) {
            thread_local std::vector<uint64_t> map;
            map.resize(count);
            if (partial) std::fill(map.begin(), map.end(), 0);
            auto out = new_array<uint64_t>(pooled, false);
            run(map.data());
            {
                nb::gil_scoped_release release;
                maxpool2d_bits(pg, map.data(), out.data(), threads);
            }
            return nb::cast(out);
        }
        thread_local std::vector<float> map;
        map.resize(count);
        auto out = new_array<float>(pooled, false);
        run(map.data());
        {
            nb::gil_scoped_release release;
            maxpool2d_float(pg, map.data(), out.data(), nullptr, threads);
        }
        return nb::cast(out);
    }
    switch (layer.kind) {
        case OutKind::dots: {
            auto out = new_array<int32_t>(shape);
            run(out.data());
            return nb::cast(out);
        }
        case OutKind::bits: {
            auto out = new_array<uint64_t>(words, partial);
            run(out.data());
            return nb::cast(out);
        }
        default: {
            auto out = new_array<float>(shape, false);
            run(out.data());
            if (!unit) return nb::cast(out);
            return nb::cast(std::make_pair(out, bits));
        }
    }
}

// x is NHWC, or NCHW when `nchw`.
PoolGeometry pool_geometry(const Array &x, Pair kernel, Pair stride, Pair padding,
                           bool nchw = false) {
    const size_t h = nchw ? 2 : 1, c = nchw ? 1 : 3;
    return pool_geometry(dim(x, 0), dim(x, h), dim(x, h + 1), dim(x, c), kernel, stride,
                         padding);
}

// A direct float conv (direct_conv2d) prepared for many inputs: weights blocked, bias padded,
// and where it runs by Winograd's algorithm, its transformed weights (else empty).
struct DirectConvLayer {
    int64_t c_in = 0, c_out = 0, kh = 0, kw = 0;
    Pair stride{1, 1}, padding{0, 0};
    std::vector<float> weight, bias, pad_value;
    AlignedFloats winograd;
    bool channels_outer = false;  // DirectConv's tap order

    // The conv on an (n, c_in, h, w) input (pad_value unused).
    ConvGeometry geometry(int64_t n, int64_t h, int64_t w) const {
        return {n, h, w, c_in, c_out, kh, kw, stride.first, stride.second, padding.first,
                padding.second, 0};
    }
    const float *winograd_weights() const { return winograd.empty() ? nullptr : winograd.data(); }
};

// winograd: None where it pays (winograd_pays), True wherever it applies (winograd_takes; else
// an error), False never.
DirectConvLayer direct_conv_layer(const Array &w, const Array &bias, const Array &pad_value,
                                  Pair stride, Pair padding, std::optional<bool> winograd,
                                  bool channels_outer) {
    const float *pw = checked<float>(w, "weight", 4, "float (C_out, C_in, KH, KW)");
    DirectConvLayer layer{dim(w, 1), dim(w, 0), dim(w, 2), dim(w, 3), stride, padding, {}, {},
                          {}, {}, channels_outer};
    if (layer.c_out < 1 || layer.c_in < 1 || layer.kh < 1 || layer.kw < 1)
        value_error("weight has an empty dimension: shape " + shape_str(w));
    check_positive(stride, "stride");
    check_non_negative(padding, "padding");
    const float *pb = per_channel<float>(bias, "bias", layer.c_out);
    const float *pv = per_channel<float>(pad_value, "pad_value", layer.c_in, "C_in");
    const int64_t k = layer.c_in * layer.kh * layer.kw, blocks = (layer.c_out + 15) / 16;
    layer.weight.resize(static_cast<size_t>(blocks * k * 16));
    // Taps in the order the kernels sum them: (kernel row, kernel column, input channel), or
    // the weight's own (input channel, row, column) with channels_outer.
    std::vector<float> taps(pw, pw + layer.c_out * k);
    for (int64_t co = 0; co < layer.c_out && !channels_outer; ++co)
        for (int64_t ci = 0; ci < layer.c_in; ++ci)
            for (int64_t t = 0; t < layer.kh * layer.kw; ++t)
                taps[size_t((co * layer.kh * layer.kw + t) * layer.c_in + ci)] =
                    pw[(co * layer.c_in + ci) * layer.kh * layer.kw + t];
    block_float_weights(taps.data(), layer.c_out, k, layer.weight.data());
    layer.bias.assign(pb, pb + layer.c_out);
    layer.bias.resize(static_cast<size_t>(blocks * 16), 0.0f);
    layer.pad_value.assign(pv, pv + layer.c_in);
    const ConvGeometry g = layer.geometry(1, 1, 1);
    const bool takes = winograd_takes(g);
    if (winograd.value_or(false) && !takes)
        value_error("winograd=True needs a 7x7 kernel, stride 2 and 1-4 input channels or a "
                    "3x3 kernel, stride 1 and 1-4 input channels, got " +
                    std::to_string(layer.kh) + "x" + std::to_string(layer.kw) + ", stride " +
                    std::to_string(stride.first) + "x" + std::to_string(stride.second) + ", " +
                    std::to_string(layer.c_in) + " input channels");
    if (takes && winograd.value_or(winograd_pays(g)))
        layer.winograd = bnnx::winograd_weights(g, pw);
    return layer;
}

// With pool_kernel set, the conv's map max-pooled (maxpool2d_float's semantics) in the same
// pass, so only the pooled map is written. With signs, (the map, its packed signs minus
// sign_shift) from the same pass; with floats false as well, the signs alone (no map written).
nb::object run_direct_conv(const DirectConvLayer &layer, const Array &x, int threads,
                           std::optional<Pair> pool_kernel, std::optional<Pair> pool_stride,
                           Pair pool_padding, const Optional &lower, bool signs,
                           const Optional &sign_shift, bool floats) {
    const float *px = checked<float>(x, "x", 4, "float NCHW (N, C_in, H, W)");
    check_threads(threads);
    if (dim(x, 1) != layer.c_in)
        value_error("x has " + std::to_string(dim(x, 1)) + " channels, the layer takes " +
                    std::to_string(layer.c_in));
    const ConvGeometry g = layer.geometry(dim(x, 0), dim(x, 2), dim(x, 3));
    if (g.h + 2 * g.pad_h < g.kh || g.w + 2 * g.pad_w < g.kw)
        value_error("kernel " + std::to_string(g.kh) + "x" + std::to_string(g.kw) +
                    " is larger than the padded input " + std::to_string(g.h + 2 * g.pad_h) +
                    "x" + std::to_string(g.w + 2 * g.pad_w));
    if (sign_shift && !signs) value_error("sign_shift is only used with signs=True");
    if (!floats && (!signs || pool_kernel))
        value_error("floats=False needs signs=True and no pool_kernel");
    const float *shift = sign_shift ? per_channel<float>(*sign_shift, "sign_shift", g.c_out)
                                    : nullptr;
    // The map of (n, h, w) pixels and, with signs, its packed signs (every word written).
    const auto result = [&](size_t h, size_t w, const auto &run) -> nb::object {
        auto out = new_array<float>({size_t(g.n), h, w, size_t(g.c_out)}, false);
        std::optional<nb::ndarray<nb::numpy, uint64_t>> bits;
        if (signs)
            bits = new_array<uint64_t>({size_t(g.n), h, w, size_t(words_for(g.c_out))}, false);
        {
            nb::gil_scoped_release release;
            run(out.data(), bits ? bits->data() : nullptr);
        }
        if (!signs) return nb::cast(out);
        return nb::cast(std::make_pair(out, *bits));
    };
    if (!pool_kernel) {
        if (pool_stride || lower) value_error("pool_stride and lower need pool_kernel");
        if (!floats) {
            auto bits = new_array<uint64_t>({size_t(g.n), size_t(g.out_h()), size_t(g.out_w()),
                                             size_t(words_for(g.c_out))}, false);
            {
                nb::gil_scoped_release release;
                direct_conv2d(g, px, layer.weight.data(), layer.bias.data(),
                              layer.pad_value.data(), nullptr, threads, bits.data(), shift,
                              layer.winograd_weights(), layer.channels_outer);
            }
            return nb::cast(bits);
        }
        return result(size_t(g.out_h()), size_t(g.out_w()), [&](float *out, uint64_t *bits) {
            direct_conv2d(g, px, layer.weight.data(), layer.bias.data(), layer.pad_value.data(),
                          out, threads, bits, shift, layer.winograd_weights(),
                          layer.channels_outer);
        });
    }
    const Pair k = *pool_kernel, s = pool_stride.value_or(k);
    check_positive(k, "pool_kernel");
    check_positive(s, "pool_stride");
    check_non_negative(pool_padding, "pool_padding");
    if (pool_padding.first * 2 > k.first || pool_padding.second * 2 > k.second)
        value_error("pool_padding must be at most half the pool kernel");
    const PoolGeometry pool{g.n, g.out_h(), g.out_w(), g.c_out, k.first, k.second, s.first,
                            s.second, pool_padding.first, pool_padding.second};
    if (pool.h + 2 * pool.pad_h < pool.kh || pool.w + 2 * pool.pad_w < pool.kw)
        value_error("pooling window is larger than the padded conv output");
    const uint8_t *low = lower ? per_channel<uint8_t>(*lower, "lower", g.c_out) : nullptr;
    return result(size_t(pool.out_h()), size_t(pool.out_w()), [&](float *out, uint64_t *bits) {
        direct_conv2d_maxpool(g, px, layer.weight.data(), layer.bias.data(),
                              layer.pad_value.data(), pool, low, out, threads, bits, shift,
                              layer.winograd_weights(), layer.channels_outer);
    });
}

// With avg_pool set, an average pool of that size and stride, no padding (ceil_mode: torch's,
// the last windows clipped to the map), on x first (a downsampling shortcut).
nb::ndarray<nb::numpy, float> run_pointwise_conv(const DirectConvLayer &layer, const Array &x,
                                                 int threads, std::optional<Pair> avg_pool,
                                                 bool ceil_mode) {
    if (layer.kh != 1 || layer.kw != 1 || layer.stride != Pair{1, 1} ||
        layer.padding != Pair{0, 0})
        value_error("pointwise needs a 1x1 kernel, stride 1 and no padding");
    const float *px = checked<float>(x, "x", 4, "float NHWC (N, H, W, C_in)");
    check_threads(threads);
    if (dim(x, 3) != layer.c_in)
        value_error("x has " + std::to_string(dim(x, 3)) + " channels, the layer takes " +
                    std::to_string(layer.c_in));
    if (ceil_mode && !avg_pool) value_error("ceil_mode needs avg_pool");
    const Pair k = avg_pool.value_or(Pair{1, 1});
    check_positive(k, "avg_pool");
    const PoolGeometry pool{dim(x, 0), dim(x, 1), dim(x, 2), layer.c_in, k.first, k.second,
                            k.first, k.second, 0, 0};
    if (pool.h < pool.kh || pool.w < pool.kw)
        value_error("avg_pool window is larger than the input");
    // With stride = kernel and no padding every ceil_mode window starts inside the map.
    const auto size = [&](int64_t n, int64_t kk) {
        return (n - kk + (ceil_mode ? kk - 1 : 0)) / kk + 1;
    };
    const int64_t out_h = size(pool.h, pool.kh), out_w = size(pool.w, pool.kw);
    auto out = new_array<float>({size_t(pool.n), size_t(out_h), size_t(out_w),
                                 size_t(layer.c_out)}, false);
    nb::gil_scoped_release release;
    if (avg_pool)
        avgpool_pointwise_conv2d(pool, out_h, out_w, px, layer.weight.data(), layer.bias.data(),
                                 layer.c_out, out.data(), threads);
    else
        pointwise_conv2d(px, pool.n * pool.h * pool.w, layer.c_in, layer.weight.data(),
                         layer.bias.data(), layer.c_out, out.data(), threads);
    return out;
}

}  // namespace

NB_MODULE(_bnnx_kernels, m) {
    m.doc() = "bnnx packed-bit CPU kernels (XNOR + popcount)";

    m.def("active_isa", [] { return std::string(active_kernels().name); },
          "Name of the microkernel table in use.");
    m.def("available_isas", [] {
        size_t count = 0;
        const char *const *names = available_kernel_names(&count);
        return std::vector<std::string>(names, names + count);
    }, "Microkernel tables usable on this CPU, best first.");
    m.def("set_isa", [](const std::string &name) {
        std::string previous = active_kernels().name;
        if (!set_active_kernels(name.c_str()))
            value_error("unknown or unsupported ISA '" + name + "'");
        return previous;
    }, nb::arg("name"), "Switch the active microkernel table; returns the previous name.");

    m.def("peak_loop", [](int64_t iterations, const std::optional<std::string> &name,
                          bool float_macs) {
        const KernelTable *table = name ? find_kernels(name->c_str()) : &active_kernels();
        if (table == nullptr) value_error("unknown or unsupported ISA '" + *name + "'");
        if (iterations < 1) value_error("iterations must be >= 1, got " + std::to_string(iterations));
        nb::gil_scoped_release release;
        // The sinks keep each loop's result observable, so it is not optimised away.
        if (float_macs) {
            float checksum = 0.0f;
            const uint64_t macs = table->float_peak_loop(iterations, &checksum);
            static volatile float float_sink;
            float_sink = checksum;
            return macs;
        }
        uint64_t checksum = 0;
        const uint64_t macs = table->peak_loop(iterations, &checksum);
        static volatile uint64_t sink;
        sink = checksum;
        return macs;
    }, nb::arg("iterations"), nb::arg("isa") = nb::none(), nb::arg("float_macs") = false,
       "Runs the ISA's register-only XOR/popcount/add loop (the kernels' peak; with float_macs, "
       "its fp32 multiply-add loop); the MACs it did.");

    m.def("thread_round_trip_ns", [](int64_t trips) {
        if (trips < 2) value_error("trips must be >= 2, got " + std::to_string(trips));
        nb::gil_scoped_release release;
        return thread_round_trip_ns(trips);
    }, nb::arg("trips") = 20000,
       "ns a cache line takes to a new thread and back, averaged over `trips` round trips.");

    m.def("block_weight", [](const Array &w) {
        if (w.ndim() != 2 && w.ndim() != 4)
            value_error("weight must be packed (C_out, KH, KW, C_words) or (C_out, C_words), "
                        "got shape " + shape_str(w));
        const uint64_t *p = checked<uint64_t>(w, "weight", w.ndim(), "packed");
        const int64_t c_out = dim(w, 0), k = c_out > 0 ? int64_t(w.size()) / c_out : 0;
        if (c_out < 1 || k < 1) value_error("weight shape " + shape_str(w) + " is empty");
        auto out = new_array<uint64_t>({size_t(blocks_for(c_out)), size_t(k), size_t(kBlock)});
        block_weights(p, c_out, k, out.data());
        return out;
    }, nb::arg("weight"),
       "Packed weight -> blocked (ceil(C_out / 8), K, 8) layout the microkernels read.");

    // Both packs write NHWC bits of x - shift[c] (a consumer's RSign; a plain sign without it).
    m.def("pack_nhwc", [](const Array &x, int threads, const Optional &shift) {
        const float *p = checked<float>(x, "x", 4, "float NHWC");
        check_threads(threads);
        const int64_t n = dim(x, 0), h = dim(x, 1), w = dim(x, 2), c = dim(x, 3);
        if (c < 1) value_error("x must have at least one channel");
        const float *s = shift ? per_channel<float>(*shift, "shift", c, "C") : nullptr;
        // Every word is written: whole words from the floats, the last one's spare bits 0.
        auto out = new_array<uint64_t>({size_t(n), size_t(h), size_t(w), size_t(words_for(c))},
                                       false);
        {
            nb::gil_scoped_release release;
            pack_nhwc(p, n * h * w, c, out.data(), threads, s);
        }
        return out;
    }, nb::arg("x"), nb::arg("threads") = 1, nb::arg("shift") = nb::none(),
       "float32 NHWC -> packed uint64 NHWC (bit 1 where !(x - shift >= 0)); a large map on up "
       "to `threads` threads.");

    m.def("pack_nchw", [](const Array &x, const Optional &shift) {
        const float *p = checked<float>(x, "x", 4, "float NCHW");
        const int64_t n = dim(x, 0), c = dim(x, 1), h = dim(x, 2), w = dim(x, 3);
        if (c < 1) value_error("x must have at least one channel");
        const float *s = shift ? per_channel<float>(*shift, "shift", c, "C") : nullptr;
        auto out = new_array<uint64_t>({size_t(n), size_t(h), size_t(w), size_t(words_for(c))});
        {
            nb::gil_scoped_release release;
            pack_nchw(p, n, c, h * w, out.data(), s);
        }
        return out;
    }, nb::arg("x"), nb::arg("shift") = nb::none(),
       "float32 NCHW -> packed uint64 NHWC (bit 1 where !(x - shift >= 0)).");

    m.def("unpack_nhwc", [](const Array &bits, int64_t channels) {
        const uint64_t *p = checked<uint64_t>(bits, "bits", 4, "packed NHWC");
        check_channels(channels, dim(bits, 3), "bits");
        const int64_t n = dim(bits, 0), h = dim(bits, 1), w = dim(bits, 2);
        auto out = new_array<float>({size_t(n), size_t(h), size_t(w), size_t(channels)});
        unpack_nhwc(p, n * h * w, channels, out.data());
        return out;
    }, nb::arg("bits"), nb::arg("channels"), "packed NHWC -> float32 NHWC of +-1.");

    // Prepared layers: weights blocked and output parameters padded once (the engine's ops
    // hold one each; kernels.conv2d_* build one per call).
    nb::class_<ConvLayer>(m, "ConvLayer",
                          "A binary conv prepared for many inputs (dots_layer, float_layer, "
                          "bits_layer, unit_layer).")
        .def("__call__", &run_layer, nb::arg("x"), nb::arg("threads") = 1,
             nb::arg("residual") = nb::none(), nb::arg("signs") = false,
             nb::arg("pool") = nb::none(),
             "The layer on packed NHWC x; a unit layer returns (floats, signs or None). A bits "
             "or float layer's output max-pooled by pool = (kernel_size, stride, padding), "
             "given.")
        .def_prop_ro("c_in", [](const ConvLayer &l) { return l.c_in; })
        .def_prop_ro("c_out", [](const ConvLayer &l) { return l.c_out; });

    m.def("dots_layer", &dots_layer, nb::arg("weight"), nb::arg("channels"), nb::arg("stride"),
          nb::arg("padding"), nb::arg("pad_value"), nb::arg("blocked") = nb::none(),
          "A conv layer whose output is the exact int32 dots.");
    m.def("float_layer", &float_layer, nb::arg("weight"), nb::arg("channels"), nb::arg("stride"),
          nb::arg("padding"), nb::arg("pad_value"), nb::arg("scale"), nb::arg("bias"),
          nb::arg("blocked") = nb::none(),
          "A conv layer whose output is float32 scale * dot + bias.");
    m.def("bits_layer", &bits_layer, nb::arg("weight"), nb::arg("channels"), nb::arg("stride"),
          nb::arg("padding"), nb::arg("pad_value"), nb::arg("threshold"), nb::arg("direction"),
          nb::arg("blocked") = nb::none(),
          "A conv layer whose output is packed bits: dot >= threshold (direction +1) or "
          "dot <= threshold (direction -1).");
    m.def("unit_layer", &unit_layer, nb::arg("weight"), nb::arg("channels"), nb::arg("stride"),
          nb::arg("padding"), nb::arg("pad_value"), nb::arg("scale"), nb::arg("bias"),
          nb::arg("alpha"), nb::arg("beta"), nb::arg("activation") = "none",
          nb::arg("gamma") = nb::none(), nb::arg("slope") = nb::none(),
          nb::arg("zeta") = nb::none(), nb::arg("bounds") = std::make_pair(-1.0f, 1.0f),
          nb::arg("sign_shift") = nb::none(), nb::arg("blocked") = nb::none(),
          "A residual unit's conv: act(fma(scale * dot + bias, alpha, beta) [+ residual]), "
          "and with signs=True the packed signs of it minus sign_shift.");

    m.def("fma_channels", [](const Array &y, const Array &alpha, const Array &beta) {
        const float *p = checked<float>(y, "y", 2, "(N, C)");
        const int64_t n = dim(y, 0), c = dim(y, 1);
        const float *al = per_channel<float>(alpha, "alpha", c);
        const float *be = per_channel<float>(beta, "beta", c);
        auto out = new_array<float>({size_t(n), size_t(c)}, false);
        fma_channels(p, n, c, al, be, out.data());
        return out;
    }, nb::arg("y"), nb::arg("alpha"), nb::arg("beta"),
       "fma(y[i, c], alpha[c], beta[c]): conv2d_unit's BatchNorm step on given values.");

    m.def("maxpool2d_bits", [](const Array &x, Pair kernel, Pair stride, Pair padding,
                               int threads) {
        check_threads(threads);
        const uint64_t *p = checked<uint64_t>(x, "x", 4, "packed NHWC");
        PoolGeometry g = pool_geometry(x, kernel, stride, padding);
        auto out = new_array<uint64_t>({size_t(g.n), size_t(g.out_h()), size_t(g.out_w()),
                                        size_t(g.c)}, false);
        {
            nb::gil_scoped_release release;
            maxpool2d_bits(g, p, out.data(), threads);
        }
        return out;
    }, nb::arg("x"), nb::arg("kernel_size"), nb::arg("stride"), nb::arg("padding"),
       nb::arg("threads") = 1, "Max-pool on packed bits (AND of the window).");

    // Both float max-pools write NHWC; they differ in the input layout they read.
    auto float_maxpool = [](const Array &x, Pair kernel, Pair stride, Pair padding,
                            const Optional &lower, int threads, bool nchw) {
        check_threads(threads);
        const float *p = checked<float>(x, "x", 4, nchw ? "float NCHW" : "float NHWC");
        PoolGeometry g = pool_geometry(x, kernel, stride, padding, nchw);
        const uint8_t *low = lower ? per_channel<uint8_t>(*lower, "lower", g.c, "C") : nullptr;
        auto out = new_array<float>({size_t(g.n), size_t(g.out_h()), size_t(g.out_w()),
                                     size_t(g.c)}, false);
        {
            nb::gil_scoped_release release;
            (nchw ? maxpool2d_float_nchw : maxpool2d_float)(g, p, out.data(), low, threads);
        }
        return out;
    };
    m.def("maxpool2d_float", [=](const Array &x, Pair kernel, Pair stride, Pair padding,
                                 const Optional &lower, int threads) {
        return float_maxpool(x, kernel, stride, padding, lower, threads, false);
    }, nb::arg("x"), nb::arg("kernel_size"), nb::arg("stride"), nb::arg("padding"),
       nb::arg("lower") = nb::none(), nb::arg("threads") = 1,
       "Max-pool on float32 NHWC; channels with lower[c] != 0 (uint8) take the minimum.");
    m.def("maxpool2d_float_nchw", [=](const Array &x, Pair kernel, Pair stride, Pair padding,
                                      const Optional &lower, int threads) {
        return float_maxpool(x, kernel, stride, padding, lower, threads, true);
    }, nb::arg("x"), nb::arg("kernel_size"), nb::arg("stride"), nb::arg("padding"),
       nb::arg("lower") = nb::none(), nb::arg("threads") = 1,
       "Max-pool on float32 NCHW, written NHWC; channels with lower[c] != 0 take the minimum.");

    m.def("avgpool2d_float", [](const Array &x, Pair kernel, Pair stride, Pair padding,
                                bool ceil_mode, bool count_include_pad,
                                std::optional<int64_t> divisor_override, int threads,
                                bool nchw_out) {
        check_threads(threads);
        const float *p = checked<float>(x, "x", 4, "float NHWC");
        PoolGeometry g = pool_geometry(x, kernel, stride, padding);
        if (divisor_override && *divisor_override < 1)
            value_error("divisor_override must be a positive int or None");
        auto extent = [ceil_mode](int64_t size, int64_t k, int64_t pad, int64_t s) {
            int64_t n = (size + 2 * pad - k + (ceil_mode ? s - 1 : 0)) / s + 1;
            return ceil_mode && (n - 1) * s >= size + pad ? n - 1 : n;  // torch's pool size
        };
        const int64_t oh = extent(g.h, g.kh, g.pad_h, g.stride_h);
        const int64_t ow = extent(g.w, g.kw, g.pad_w, g.stride_w);
        const size_t n = size_t(g.n), c = size_t(g.c), h = size_t(oh), w = size_t(ow);
        auto out = new_array<float>(nchw_out ? std::vector<size_t>{n, c, h, w}
                                             : std::vector<size_t>{n, h, w, c}, false);
        {
            nb::gil_scoped_release release;
            avgpool2d_float(g, oh, ow, count_include_pad, divisor_override.value_or(0), p,
                            out.data(), nchw_out, threads);
        }
        return out;
    }, nb::arg("x"), nb::arg("kernel_size"), nb::arg("stride"), nb::arg("padding"),
       nb::arg("ceil_mode") = false, nb::arg("count_include_pad") = true,
       nb::arg("divisor_override") = nb::none(), nb::arg("threads") = 1,
       nb::arg("nchw_out") = true,
       "torch's average pool on float32 NHWC x, written NCHW (NHWC with nchw_out=False).");

    m.def("transpose_float", [](const Array &x, int threads) {
        check_threads(threads);
        const float *p = checked<float>(x, "x", 3, "float (N, rows, cols)");
        const int64_t n = dim(x, 0), rows = dim(x, 1), cols = dim(x, 2);
        auto out = new_array<float>({size_t(n), size_t(cols), size_t(rows)}, false);
        {
            nb::gil_scoped_release release;
            transpose_float(p, n, rows, cols, out.data(), threads);
        }
        return out;
    }, nb::arg("x"), nb::arg("threads") = 1,
       "Per image, the (cols, rows) transpose of float32 (N, rows, cols).");

    m.def("batchnorm_float", [](const Array &x, const Array &alpha, const Array &beta, bool nchw,
                                int threads) {
        check_threads(threads);
        const float *p = checked<float>(x, "x", 4, nchw ? "float NCHW" : "float NHWC");
        const int64_t n = dim(x, 0), c = dim(x, nchw ? 1 : 3);
        const int64_t h = dim(x, nchw ? 2 : 1), w = dim(x, nchw ? 3 : 2);
        const float *al = per_channel<float>(alpha, "alpha", c, "C");
        const float *be = per_channel<float>(beta, "beta", c, "C");
        auto out = new_array<float>({size_t(n), size_t(h), size_t(w), size_t(c)}, false);
        {
            nb::gil_scoped_release release;
            batchnorm_float(p, n, c, h * w, nchw, al, be, out.data(), threads);
        }
        return out;
    }, nb::arg("x"), nb::arg("alpha"), nb::arg("beta"), nb::arg("nchw") = false,
       nb::arg("threads") = 1,
       "fma(x, alpha[c], beta[c]) on float32 NHWC x (NCHW with nchw=True), written NHWC: "
       "torch's eval BatchNorm given its alpha and beta.");

    m.def("normalize_float", [](const Array &x, const Array &mean, const Array &std,
                                int threads) {
        check_threads(threads);
        const float *p = checked<float>(x, "x", 4, "float NCHW");
        const int64_t n = dim(x, 0), c = dim(x, 1), h = dim(x, 2), w = dim(x, 3);
        const float *m = per_channel<float>(mean, "mean", c, "C");
        const float *s = per_channel<float>(std, "std", c, "C");
        auto out = new_array<float>({size_t(n), size_t(c), size_t(h), size_t(w)}, false);
        {
            nb::gil_scoped_release release;
            normalize_float(p, n, c, h * w, m, s, out.data(), threads);
        }
        return out;
    }, nb::arg("x"), nb::arg("mean"), nb::arg("std"), nb::arg("threads") = 1,
       "(x - mean[c]) / std[c] on float32 NCHW x, NCHW out.");

    nb::class_<DirectConvLayer>(m, "DirectConvLayer",
                                "A float conv over few input channels, prepared for many "
                                "inputs (direct_conv_layer).")
        .def("__call__", &run_direct_conv, nb::arg("x"), nb::arg("threads") = 1,
             nb::arg("pool_kernel") = nb::none(), nb::arg("pool_stride") = nb::none(),
             nb::arg("pool_padding") = std::make_pair(int64_t{0}, int64_t{0}),
             nb::arg("lower") = nb::none(), nb::arg("signs") = false,
             nb::arg("sign_shift") = nb::none(), nb::arg("floats") = true,
             "The conv on float32 NCHW x, written NHWC (N, OH, OW, C_out); with pool_kernel, "
             "max-pooled in the same pass (channels with lower[c] != 0 take the minimum). With "
             "signs=True, (that map, its packed NHWC signs of map - sign_shift[c]); with "
             "floats=False too (no pool_kernel), those signs alone, the map never written.")
        .def("pointwise", &run_pointwise_conv, nb::arg("x"), nb::arg("threads") = 1,
             nb::arg("avg_pool") = nb::none(), nb::arg("ceil_mode") = false,
             "A 1x1 layer (stride 1, no padding) on float32 NHWC x, written NHWC; with "
             "avg_pool (kh, kw), on x average-pooled by that window and stride first.")
        .def_prop_ro("algorithm", [](const DirectConvLayer &layer) {
            return std::string(layer.winograd.empty() ? "direct" : "winograd");
        }, "How the conv runs: 'winograd' (7x7 stride 2: F(4x4, 4x4) on its polyphase form; 3x3 "
           "stride 1: F(4x4, 3x3)) or 'direct'.")
        .def_ro("channels_outer", &DirectConvLayer::channels_outer,
                "The direct kernel sums channel, row, column (else row, column, channel).")
        .def("macs", [](const DirectConvLayer &layer, int64_t n, int64_t h, int64_t w) {
            if (n < 1 || h < 1 || w < 1) value_error("n, h and w must be >= 1");
            const ConvGeometry g = layer.geometry(n, h, w);
            if (g.h + 2 * g.pad_h < g.kh || g.w + 2 * g.pad_w < g.kw)
                value_error("the kernel is larger than the padded input");
            if (!layer.winograd.empty()) return winograd_macs(g);
            return g.n * g.out_h() * g.out_w() * g.c_out * g.c_in * g.kh * g.kw;
        }, nb::arg("n"), nb::arg("h"), nb::arg("w"),
           "Multiply-adds the layer's algorithm does on an (n, C_in, h, w) input (Winograd's: "
           "its GEMMs').");
    m.def("direct_conv_layer", &direct_conv_layer, nb::arg("weight"), nb::arg("bias"),
          nb::arg("pad_value"), nb::arg("stride"), nb::arg("padding"),
          nb::arg("winograd") = nb::none(), nb::arg("channels_outer") = false,
          "A direct float conv: bias + conv of x padded with pad_value[c_in], NHWC out (taps "
          "summed row, column, channel, or with channels_outer channel, row, column); by "
          "Winograd's algorithm where it pays (winograd None: 7x7, stride 2 or 3x3, stride 1, "
          "2-4 input channels), wherever it applies (True: also 1 input channel) or never "
          "(False).");

    m.def("linear_float", [](const Array &x, const Array &w, int64_t channels, const Array &scale,
                             const Array &bias, int threads, const Optional &blocked) {
        const uint64_t *px = checked<uint64_t>(x, "x", 2, "packed (N, C_words)");
        const uint64_t *pw = checked<uint64_t>(w, "weight", 2, "packed (C_out, C_words)");
        check_channels(channels, dim(x, 1), "x");
        if (dim(w, 1) != dim(x, 1))
            value_error("weight has " + std::to_string(dim(w, 1)) + " words per row, x has " +
                        std::to_string(dim(x, 1)));
        check_threads(threads);
        const int64_t n = dim(x, 0), c_out = dim(w, 0);
        if (c_out < 1) value_error("weight has no output rows");
        const float *s = per_channel<float>(scale, "scale", c_out);
        const float *b = per_channel<float>(bias, "bias", c_out);
        const Blocked wb = blocked_weights(blocked, pw, c_out, dim(w, 1));
        auto out = new_array<float>({size_t(n), size_t(c_out)});
        {
            nb::gil_scoped_release release;
            linear_float(px, wb.data, n, channels, c_out, s, b, out.data(), threads);
        }
        return out;
    }, nb::arg("x"), nb::arg("weight"), nb::arg("channels"), nb::arg("scale"), nb::arg("bias"),
       nb::arg("threads") = 1, nb::arg("blocked") = nb::none(),
       "Binary linear -> float32 scale * dot + bias.");

    m.def("narrow_linear", [](const Array &x, const Array &weight, const Optional &bias,
                              float alpha, int threads) {
        const float *px = checked<float>(x, "x", 2, "(N, K)");
        const float *pw = checked<float>(weight, "weight", 3, "chunked (ceil(K / 16), out, 16)");
        const int64_t n = dim(x, 0), k = dim(x, 1), m = dim(weight, 1);
        if (dim(weight, 0) != (k + kNarrowChunk - 1) / kNarrowChunk ||
            dim(weight, 2) != kNarrowChunk)
            value_error("weight has shape " + shape_str(weight) + ", expected (" +
                        std::to_string((k + kNarrowChunk - 1) / kNarrowChunk) +
                        ", out, 16) for x's " + std::to_string(k) + " columns");
        check_threads(threads);
        const float *pb = bias ? per_channel<float>(*bias, "bias", m, "out") : nullptr;
        auto out = new_array<float>({size_t(n), size_t(m)}, false);
        {
            nb::gil_scoped_release release;
            narrow_linear(px, n, k, pw, m, pb, alpha, out.data(), threads);
        }
        return out;
    }, nb::arg("x"), nb::arg("weight"), nb::arg("bias") = nb::none(), nb::arg("alpha") = 1.0f,
       nb::arg("threads") = 1,
       "Float linear for few outputs: alpha * x @ W.T + bias, float32 (N, out), W (out, K) "
       "given in chunks of 16 columns (bitops.narrow_weight); summed in its own order (fused "
       "multiply-adds), not torch's rounding.");
}
