// Per-output-channel epilogue parameters padded to whole 8-channel blocks, so SIMD epilogues
// load full vectors; the padding lanes are never stored.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "isa.h"
#include "ops.h"

namespace bnnx {

struct ChannelParams {
    int64_t c_out = 0;
    std::vector<float> scale, bias, alpha, beta, gamma, slope, zeta, sign_shift;
    Act act = Act::none;
    float low = -1.0f, high = 1.0f;
    std::vector<int32_t> threshold;
    std::vector<uint8_t> dir_pos;  // bit l of entry b: direction of channel 8 b + l is +1

    // Dots out: no parameters.
    static ChannelParams none(int64_t c_out) {
        ChannelParams p;
        p.c_out = c_out;
        return p;
    }

    static ChannelParams affine(int64_t c_out, const float *scale, const float *bias) {
        ChannelParams p;
        p.c_out = c_out;
        p.scale.assign(scale, scale + c_out);
        p.bias.assign(bias, bias + c_out);
        p.scale.resize(static_cast<size_t>(blocks_for(c_out) * kBlock), 0.0f);
        p.bias.resize(p.scale.size(), 0.0f);
        return p;
    }

    // The affine output followed by a BatchNorm fma(y, alpha, beta) and the activation `act`;
    // sign_shift (may be null) for the packed signs of the result.
    static ChannelParams unit(int64_t c_out, const float *scale, const float *bias,
                              const float *alpha, const float *beta, const UnitAct &act,
                              const float *sign_shift) {
        ChannelParams p = affine(c_out, scale, bias);
        p.act = act.act;
        p.low = act.low;
        p.high = act.high;
        p.alpha = padded(alpha, c_out);
        p.beta = padded(beta, c_out);
        p.gamma = padded(act.gamma, c_out);
        p.slope = padded(act.slope, c_out);
        p.zeta = padded(act.zeta, c_out);
        if (sign_shift) p.sign_shift = padded(sign_shift, c_out);
        return p;
    }

    static ChannelParams thresholds(int64_t c_out, const int32_t *threshold,
                                    const int8_t *direction) {
        ChannelParams p;
        p.c_out = c_out;
        p.threshold.assign(threshold, threshold + c_out);
        p.threshold.resize(static_cast<size_t>(blocks_for(c_out) * kBlock), 0);
        p.dir_pos.assign(static_cast<size_t>(blocks_for(c_out)), 0);
        for (int64_t b = 0; b * kBlock < c_out; ++b) {  // a block's byte in a register
            unsigned byte = 0;
            for (int64_t j = 0; j < kBlock && b * kBlock + j < c_out; ++j)
                byte |= unsigned(direction[b * kBlock + j] > 0) << j;
            p.dir_pos[b] = uint8_t(byte);
        }
        return p;
    }

    // c_out values (zeros if v is null) padded with zeros to whole blocks.
    static std::vector<float> padded(const float *v, int64_t c_out) {
        std::vector<float> out(static_cast<size_t>(blocks_for(c_out) * kBlock), 0.0f);
        if (v) std::copy(v, v + c_out, out.begin());
        return out;
    }

    // A TileOut with these parameters; the caller sets base, corr, out and pixel_stride.
    TileOut out(OutKind kind) const {
        TileOut o{};
        o.kind = kind;
        o.c_out = c_out;
        o.scale = scale.data();
        o.bias = bias.data();
        o.alpha = alpha.data();
        o.beta = beta.data();
        o.act = act;
        o.low = low;
        o.high = high;
        o.gamma = gamma.data();
        o.slope = slope.data();
        o.zeta = zeta.data();
        o.sign_shift = sign_shift.empty() ? nullptr : sign_shift.data();
        o.threshold = threshold.data();
        o.dir_pos = dir_pos.data();
        return o;
    }
};

// The conv of ops.h with its output parameters built once (a prepared layer runs many inputs):
// out (dots, floats, unit: NHWC int32 / float32; bits: packed NHWC), with residual and signs as
// in conv2d_unit (null elsewhere); a residual of residual_channels = C_out / 2 (a multiple of
// 16) is added to both halves of the output (TileOut), 0 means C_out.
void conv2d_out(const ConvGeometry &g, const uint64_t *x, const uint64_t *wb,
                const ChannelParams &p, OutKind kind, void *out, const float *residual,
                uint64_t *signs, int threads, int64_t residual_channels = 0);

}  // namespace bnnx
