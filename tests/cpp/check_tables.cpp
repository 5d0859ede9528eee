// Every kernel table this build has against the scalar table, byte for byte, on random layers:
// conv2d dots / bits / floats / unit (BatchNorm, residual, each activation, the packed signs of
// its output), binary linear, the sign packing (NHWC and NCHW) and both float max-pools. Built
// and run by tests/test_kernels_cross.py for a CPU the test machine lacks (AArch64 NEON under
// qemu); the Python suite covers the native tables.
// Prints one line per table and exits 1 on the first mismatch.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "isa.h"
#include "ops.h"

using namespace bnnx;

namespace {

std::mt19937_64 rng(12345);

int64_t uniform(int64_t lo, int64_t hi) {  // [lo, hi]
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
}

std::vector<float> normals(size_t n, float zero_share = 0.0f) {
    std::normal_distribution<float> d;
    std::vector<float> v(n);
    for (auto &x : v) x = std::uniform_real_distribution<float>()(rng) < zero_share ? 0.0f : d(rng);
    return v;
}

// Random packed NHWC activations over `channels`, bits past the channel count 0.
std::vector<uint64_t> random_bits(int64_t pixels, int64_t channels) {
    const int64_t cw = words_for(channels);
    std::vector<uint64_t> v(static_cast<size_t>(pixels * cw));
    for (int64_t p = 0; p < pixels; ++p)
        for (int64_t i = 0; i < cw; ++i) {
            const int64_t left = channels - 64 * i;
            v[p * cw + i] = rng() & (left >= 64 ? ~0ull : (1ull << left) - 1);
        }
    return v;
}

// The outputs of one layer on the active table, as raw bytes.
struct Outputs {
    std::vector<std::vector<uint8_t>> parts;
    template <typename T>
    void add(const std::vector<T> &v) {
        const auto *p = reinterpret_cast<const uint8_t *>(v.data());
        parts.emplace_back(p, p + v.size() * sizeof(T));
    }
};

struct ConvCase {
    ConvGeometry g;
    std::vector<uint64_t> x, wb;
    std::vector<int32_t> threshold;
    std::vector<int8_t> direction;
    std::vector<float> scale, bias, alpha, beta, residual, gamma, slope, zeta, sign_shift;
    UnitAct act;
    bool with_residual, shifted_signs;
    int threads;

    explicit ConvCase(int64_t seed) {
        rng.seed(static_cast<uint64_t>(seed));
        const int64_t k = std::vector<int64_t>{1, 3, 5}[uniform(0, 2)];
        const int64_t pad = uniform(0, k / 2 + 1), stride = uniform(1, 2);
        g = {uniform(1, 2), 0, 0, uniform(0, 1) ? uniform(1, 80) : uniform(60, 200),
             uniform(1, 90), k, k, stride, stride, pad, pad, static_cast<int>(uniform(-1, 1))};
        g.h = uniform(std::max<int64_t>(1, k - 2 * pad), 12);
        g.w = uniform(std::max<int64_t>(1, k - 2 * pad), 12);
        threads = static_cast<int>(uniform(1, 3));
        const int64_t kk = k * k * g.c_words(), c = g.c_out, fan_in = g.c_in * k * k;
        x = random_bits(g.n * g.h * g.w, g.c_in);
        const std::vector<uint64_t> w = random_bits(c * k * k, g.c_in);
        wb.resize(static_cast<size_t>(blocks_for(c) * kBlock * kk));
        block_weights(w.data(), c, kk, wb.data());
        for (int64_t i = 0; i < c; ++i) {
            threshold.push_back(static_cast<int32_t>(uniform(-fan_in - 1, fan_in + 1)));
            direction.push_back(uniform(0, 1) ? 1 : -1);
        }
        scale = normals(c), bias = normals(c), alpha = normals(c), beta = normals(c);
        gamma = normals(c), slope = normals(c, 0.2f), zeta = normals(c), sign_shift = normals(c);
        shifted_signs = uniform(0, 1);
        residual = normals(static_cast<size_t>(g.n * g.out_h() * g.out_w() * c));
        with_residual = uniform(0, 1);
        const Act kinds[] = {Act::none, Act::prelu, Act::rprelu, Act::hardtanh};
        act.act = kinds[uniform(0, 3)];
        act.gamma = gamma.data(), act.slope = slope.data(), act.zeta = zeta.data();
        act.low = uniform(0, 1) ? -1.0f : 0.0f, act.high = act.low < 0 ? 1.0f : 6.0f;
    }

    Outputs run() const {
        const int64_t out_pixels = g.n * g.out_h() * g.out_w(), c = g.c_out;
        std::vector<int32_t> dots(static_cast<size_t>(out_pixels * c));
        std::vector<uint64_t> bits(static_cast<size_t>(out_pixels * words_for(c)));
        std::vector<float> floats(dots.size()), unit(dots.size());
        std::vector<uint64_t> signs(bits.size());
        conv2d_dots(g, x.data(), wb.data(), dots.data(), threads);
        conv2d_bits(g, x.data(), wb.data(), threshold.data(), direction.data(), bits.data(),
                    threads);
        conv2d_float(g, x.data(), wb.data(), scale.data(), bias.data(), floats.data(), threads);
        conv2d_unit(g, x.data(), wb.data(), scale.data(), bias.data(), alpha.data(), beta.data(),
                    with_residual ? residual.data() : nullptr, act, unit.data(),
                    shifted_signs ? sign_shift.data() : nullptr, signs.data(), threads);
        Outputs o;
        o.add(dots), o.add(bits), o.add(floats), o.add(unit), o.add(signs);
        return o;
    }
};

// Binary linear, sign packing (with NaN, -0 and tails) and both float max-pools.
Outputs run_misc(int64_t seed) {
    rng.seed(static_cast<uint64_t>(seed) + 1000003);
    Outputs o;
    const int64_t n = uniform(1, 10), c_in = uniform(1, 300), c_out = uniform(1, 70);
    const std::vector<uint64_t> x = random_bits(n, c_in), w = random_bits(c_out, c_in);
    std::vector<uint64_t> wb(static_cast<size_t>(blocks_for(c_out) * kBlock * words_for(c_in)));
    block_weights(w.data(), c_out, words_for(c_in), wb.data());
    const std::vector<float> scale = normals(c_out), bias = normals(c_out);
    std::vector<float> lin(static_cast<size_t>(n * c_out));
    linear_float(x.data(), wb.data(), n, c_in, c_out, scale.data(), bias.data(), lin.data(), 1);
    o.add(lin);

    const int64_t pixels = uniform(1, 40), channels = uniform(1, 150);
    std::vector<float> f = normals(static_cast<size_t>(pixels * channels), 0.1f);
    for (size_t i = 0; i < f.size(); i += 17) f[i] = std::nanf("");
    for (size_t i = 5; i < f.size(); i += 23) f[i] = -0.0f;
    std::vector<uint64_t> packed(static_cast<size_t>(pixels * words_for(channels)));
    pack_nhwc(f.data(), pixels, channels, packed.data());
    o.add(packed);
    pack_nchw(f.data(), 1, channels, pixels, packed.data());  // the same floats as one NCHW map
    o.add(packed);

    PoolGeometry pg{uniform(1, 2), uniform(3, 20), uniform(3, 40), uniform(1, 20), 3, 3,
                    uniform(1, 3), uniform(1, 3), 1, 1};
    const std::vector<float> map = normals(static_cast<size_t>(pg.n * pg.h * pg.w * pg.c), 0.1f);
    std::vector<float> pooled(static_cast<size_t>(pg.n * pg.out_h() * pg.out_w() * pg.c));
    std::vector<uint8_t> lower(static_cast<size_t>(pg.c));
    for (auto &l : lower) l = static_cast<uint8_t>(uniform(0, 1));
    maxpool2d_float(pg, map.data(), pooled.data(), lower.data());
    o.add(pooled);
    maxpool2d_float_nchw(pg, map.data(), pooled.data(), lower.data());
    o.add(pooled);
    return o;
}

bool same(const Outputs &a, const Outputs &b, const char *table, int64_t seed, const char *what) {
    for (size_t i = 0; i < a.parts.size(); ++i)
        if (a.parts[i] != b.parts[i]) {
            std::printf("MISMATCH: table %s, %s case %lld, output %zu\n", table, what,
                        static_cast<long long>(seed), i);
            return false;
        }
    return true;
}

}  // namespace

int main(int argc, char **argv) {
    const int64_t cases = argc > 1 ? std::atoll(argv[1]) : 200;
    size_t count = 0;
    const char *const *names = available_kernel_names(&count);
    for (size_t t = 0; t < count; ++t) {
        const char *name = names[t];
        if (std::strcmp(name, "scalar") == 0) continue;
        for (int64_t seed = 0; seed < cases; ++seed) {
            const ConvCase layer(seed);
            set_active_kernels("scalar");
            const Outputs want = layer.run(), want_misc = run_misc(seed);
            set_active_kernels(name);
            if (!same(layer.run(), want, name, seed, "conv") ||
                !same(run_misc(seed), want_misc, name, seed, "linear/pack/pool"))
                return 1;
        }
        std::printf("ok %s: %lld cases equal to scalar\n", name, static_cast<long long>(cases));
    }
    return 0;
}
