// Winograd's tile pass (winograd.cpp's output transform, and F(4x4, 3x3)'s GEMMs fused into
// it with the sign bits of its outputs), included once per vector ISA: inside a namespace of
// that ISA's `#pragma GCC target` region, so every function here and every lambda handed to
// them is compiled for that ISA (target_clones' clones compile only the cloned function for
// it: an intrinsic, such as the compare to a mask register, in a lambda of theirs is refused),
// and once plainly, the baseline's copy the cloned transforms use. No include guard: each
// inclusion is a copy. Needs winograd.cpp's constants, F43 / F44, Vec and TileSigns.

// f(std::integral_constant<int, k>{}) for k in [1, kMaxFusedTaps].
template <class F>
inline __attribute__((always_inline)) void with_taps(int64_t k, F &&f) {
    if (k == 1) return f(std::integral_constant<int, 1>{});
    if (k == 2) return f(std::integral_constant<int, 2>{});
    if (k == 3) return f(std::integral_constant<int, 3>{});
    return f(std::integral_constant<int, kMaxFusedTaps>{});
}

// f(F44{}) or f(F43{}) by points per side (f always_inline, so it is compiled for the caller's
// ISA).
template <class F>
inline __attribute__((always_inline)) auto with_points(int points, F &&f) {
    return points == F44::kN ? f(F44{}) : f(F43{});
}

// out = AT in (kN points -> 4 outputs, W::kAT's rows written out): they share the sums and
// differences of the points +-1 and +-2 (14 operations where F44's matrix's terms take 18).
template <class W>
inline __attribute__((always_inline)) void output_points(const Vec *in, Vec *out) {
    const Vec s1 = in[1] + in[2], d1 = in[1] - in[2];
    const Vec s2 = in[3] + in[4], d2 = in[3] - in[4];
    out[0] = in[0] + s1 + s2;
    out[1] = d1 + 2 * d2;
    out[2] = s1 + 4 * s2;
    out[3] = d1 + 8 * d2;
    if constexpr (W::kHalf) {
        const Vec m5 = in[5];
        out[0] += m5, out[1] += 0.5f * m5, out[2] += 0.25f * m5, out[3] += 0.125f * m5;
    }
    out[3] += in[W::kN - 1];
}

// One tile's 16 channels of conv rows [0, rows) and columns [0, cols) (at most 4 each), each
// output vector handed to emit(i, j, y): AT M AT^T of the tile's points M (point(p) the 16
// channels of point p), each row of points through AT and the rows summed into the 4x4 outputs
// as they come, so a tile's values stay in registers.
template <class W, class Point, class Emit>
inline __attribute__((always_inline)) void tile_outputs(const Point &point, int64_t rows,
                                                        int64_t cols, const Emit &emit) {
    constexpr int kN = W::kN;
    // y[i][j] = sum_a AT[i][a] h_a[j], h_a row a of the tile's points through AT: only y and
    // one row's points are live (two rows at a time, sharing their sums and differences,
    // spilled registers in fused_transform).
    Vec y[kM][kM];
#pragma GCC unroll 8
    for (int a = 0; a < kN; ++a) {
        Vec in[kN], h[kM];
        for (int j = 0; j < kN; ++j) in[j] = point(a * kN + j);
        output_points<W>(in, h);
#pragma GCC unroll 4
        for (int i = 0; i < kM; ++i) {
            const float c = W::kAT[i][a];
            if (c == 0) continue;
            bool first = true;  // AT[i][a] the row's first non-zero coefficient
            for (int b = 0; b < a; ++b) first = first && W::kAT[i][b] == 0;
            for (int j = 0; j < kM; ++j) {
                const Vec t = c == 1 ? h[j] : c == -1 ? -h[j] : c * h[j];
                y[i][j] = first ? t : y[i][j] + t;
            }
        }
    }
    // Constant indices into y, so it stays in registers (runtime ones put it on the stack).
#pragma GCC unroll 4
    for (int i = 0; i < kM; ++i)
#pragma GCC unroll 4
        for (int j = 0; j < kM; ++j)
            if (i < rows && j < cols) emit(i, j, y[i][j]);
}

// Stores `lanes` of y at dst (16: one vector store of a constant size).
inline __attribute__((always_inline)) void store_lanes(const Vec &y, int64_t lanes, float *dst) {
    if (lanes == kLanes)
        std::memcpy(dst, &y, sizeof(Vec));
    else
        std::memcpy(dst, &y, static_cast<size_t>(lanes) * sizeof(float));
}

// f(std::true_type{}) or f(std::false_type{}): a flag made a constant.
template <class F>
inline __attribute__((always_inline)) void with_flag(bool flag, F &&f) {
    if (flag) return f(std::true_type{});
    return f(std::false_type{});
}

// The GEMMs and the output transform in one pass, M never stored, for the algorithms with
// few taps (kFused; k = 1-4, made a constant), where the GEMMs on the direct kernel stored
// and reloaded a float of M per 1-4 multiply-adds (the whole conv took 1.26x the direct
// kernel's time over 3 channels; fused, 0.8x). Channel blocks outer, so a block's transformed
// weights (points^2 x k x 16 floats of u, point p's at u + p * point, blocked as
// block_float_weights) stay in L1 over the tiles; each point of a tile is its k taps of V in
// order, after the bias at point (1, 1). Conv rows and columns as output_transform's. With
// signs.bits, each output vector's signs are compared while it is in registers, from the value
// stored: mask(t) is the 16-bit mask of !(t >= 0) (NaN lanes set), the vector ISA's compare;
// a block's 16 bits are the 16-bit slot c0 / 16 of its pixel's words (bits past `channels` 0;
// slots past the last block the caller's). The floats are always written (signs only: into
// the caller's buffer): an instance with no float store held the tile's loads in spilled
// registers (the conv took 1.7x as long) and rounded its outputs otherwise (fused
// multiply-adds placed differently), so its bits were not the signs of the floats the others
// write. `signs` by value and the sign words' byte offsets made once per block and tile keep
// them in registers: the 16-bit stores may alias anything, and through a reference every one
// reloaded them (the signs cost 2x as much).
template <class Mask>
inline __attribute__((always_inline)) void fused_pass(
        int points, const float *v, int64_t n, int64_t k, const float *u, int64_t point,
        const float *bias, int64_t channels, int64_t pixel, int64_t rows, int64_t cols,
        int64_t stride, float *out, TileSigns signs, const Mask &mask) {
    with_points(points, [&](auto algorithm) __attribute__((always_inline)) {
        using W = decltype(algorithm);
        if constexpr (W::kFused)
            with_taps(k, [&](auto taps) __attribute__((always_inline)) {
              with_flag(signs.bits != nullptr, [&](auto bits) __attribute__((always_inline)) {
                with_flag(signs.shift != nullptr,
                          [&](auto shifted) __attribute__((always_inline)) {
                    constexpr int kTaps = decltype(taps)::value;
                    constexpr bool kBits = decltype(bits)::value;
                    constexpr bool kShifted = decltype(shifted)::value;
                    // Bytes from one pixel's words to the next, and from one conv row's.
                    const int64_t sign_pixel = signs.pixel * int64_t{sizeof(uint64_t)};
                    const int64_t sign_row = signs.row * int64_t{sizeof(uint64_t)};
                    if constexpr (kBits || !kShifted)
                    for (int64_t c0 = 0; c0 < channels; c0 += kLanes) {
                        const float *ub = u + c0 * kTaps;
                        const int64_t lanes = std::min(kLanes, channels - c0);
                        Vec b, shift{};
                        std::memcpy(&b, bias + c0, sizeof(Vec));
                        if constexpr (kShifted)
                            std::memcpy(&shift, signs.shift + c0,
                                        static_cast<size_t>(lanes) * sizeof(float));
                        const uint32_t valid = (uint32_t{1} << lanes) - 1;
                        // The block's 16-bit slot in the first pixel's words.
                        char *const slot = kBits ? reinterpret_cast<char *>(signs.bits) +
                                                       c0 / kLanes * sizeof(uint16_t)
                                                 : nullptr;
                        for (int64_t t = 0; t < n; ++t) {
                            const float *vt = v + t * kLanes;
                            char *const tile_bits = kBits ? slot + t * kM * sign_pixel : nullptr;
                            const auto point_of = [&](int p) __attribute__((always_inline)) {
                                const float *w = ub + p * point, *d = vt + p * kVPoint;
                                Vec acc;
                                for (int q = 0; q < kTaps; ++q) {
                                    Vec wq;
                                    std::memcpy(&wq, w + q * kLanes, sizeof(Vec));
                                    acc = q > 0 ? acc + d[q] * wq
                                                : p == biased_point(W::kN) ? b + d[q] * wq
                                                                           : d[q] * wq;
                                }
                                return acc;
                            };
                            const auto emit = [&](int i, int j, const Vec &y)
                                                  __attribute__((always_inline)) {
                                store_lanes(y, lanes, out + (t * kM + j) * pixel + c0 +
                                                          i * stride);
                                if constexpr (kBits) {
                                    const uint16_t m = static_cast<uint16_t>(
                                        mask(kShifted ? y - shift : y) & valid);
                                    std::memcpy(tile_bits + i * sign_row + j * sign_pixel, &m,
                                                sizeof(m));
                                }
                            };
                            tile_outputs<W>(point_of, rows, cols - t * kM, emit);
                        }
                    }
                });
              });
            });
    });
}
