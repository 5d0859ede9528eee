#include "isa.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace bnnx {
namespace {

bool supported(const KernelTable &table) {
#if defined(__x86_64__) || defined(_M_X64)
    if (&table == &isa::popcnt) return __builtin_cpu_supports("popcnt");
    if (&table == &isa::avx512vpopcnt)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("avx512vpopcntdq") &&
               __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("gfni");
    if (&table == &isa::avx2)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    (void)table;
    return true;
}

// Best first: the first supported table wins unless BNNX_ISA names another one.
const KernelTable *const kCandidates[] = {
#if defined(__x86_64__) || defined(_M_X64)
    &isa::avx512vpopcnt,
    &isa::avx2,
    &isa::popcnt,
#endif
#if defined(__aarch64__)
    &isa::neon,
#endif
    &isa::scalar,
};
constexpr size_t kNumCandidates = sizeof(kCandidates) / sizeof(kCandidates[0]);

const KernelTable *select() {
    const char *forced = std::getenv("BNNX_ISA");
    if (forced != nullptr && *forced != '\0') {
        if (const KernelTable *table = find_kernels(forced)) return table;
    }
    for (const KernelTable *table : kCandidates)
        if (supported(*table)) return table;
    return &isa::scalar;
}

std::atomic<const KernelTable *> &active_slot() {
    static std::atomic<const KernelTable *> slot{select()};
    return slot;
}

}  // namespace

const KernelTable *find_kernels(const char *name) {
    for (const KernelTable *table : kCandidates)
        if (std::strcmp(table->name, name) == 0 && supported(*table)) return table;
    return nullptr;
}

const char *const *available_kernel_names(size_t *count) {
    static const char *names[kNumCandidates];
    static const size_t n = [] {
        size_t k = 0;
        for (const KernelTable *table : kCandidates)
            if (supported(*table)) names[k++] = table->name;
        return k;
    }();
    *count = n;
    return names;
}

bool set_active_kernels(const char *name) {
    const KernelTable *table = find_kernels(name);
    if (table == nullptr) return false;
    active_slot().store(table);
    return true;
}

const KernelTable &active_kernels() { return *active_slot().load(); }

}  // namespace bnnx
