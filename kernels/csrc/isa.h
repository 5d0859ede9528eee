// Runtime ISA dispatch point: every hot loop calls through the active KernelTable, so a new
// microkernel (AVX2, AVX-512 VPOPCNTDQ, NEON) is one new isa_*.cpp plus one entry in isa.cpp.
#pragma once

#include <cstddef>
#include <cstdint>

namespace bnnx {

struct KernelTable {
    const char *name;
    // For every output channel co < c_out:
    //   out[co] = sum_{r < nrows} sum_{i < run} popcount(rows[r][i] ^ w[co * co_stride + offsets[r] + i])
    // One call covers one output pixel (rows = in-bounds input rows of its window) or one
    // linear-layer sample (nrows = 1), so SIMD versions can vectorise across words or channels.
    void (*xor_popcount_rows)(const uint64_t *const *rows, const int64_t *offsets, int64_t nrows,
                              int64_t run, const uint64_t *w, int64_t co_stride, int64_t c_out,
                              int32_t *out);
};

// The table in use: chosen at first use from cpuid, overridable with BNNX_ISA=<name>.
const KernelTable &active_kernels();

// A table compiled into this build and usable on this CPU, or nullptr.
const KernelTable *find_kernels(const char *name);

// Names of the tables usable on this CPU, best first.
const char *const *available_kernel_names(size_t *count);

// Switches the active table; false for an unknown or unsupported name.
bool set_active_kernels(const char *name);

namespace isa {
extern const KernelTable scalar;
#if defined(__x86_64__) || defined(_M_X64)
extern const KernelTable popcnt;
#endif
}  // namespace isa

}  // namespace bnnx
