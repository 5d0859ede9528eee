// An NHWC max-pool over rows that are made on the fly (transposed from NCHW planes, or a conv's
// output rows): each input row is made once into a ring of the window's kh rows, so the whole
// input map is never written.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <vector>

#include "isa.h"
#include "ops.h"

namespace bnnx {

// A thread's made rows: the ring of the last input rows made (kh, more where rows are made in
// groups: pool_made_rows' slots), the image they belong to and the first row not yet made,
// valid for output rows from `end` on. Kept from one chunk of a job to the next, a thread
// whose next chunk starts where its last ended (as a thread's own share does in parallel_for)
// does not make the rows its windows share again (a chunk of 7 output rows of a 3x3 / 2 pool
// made 15 input rows, 7% more than the 14 it needs).
struct MadeRows {
    std::vector<float> ring;
    int64_t image = -1, next = 0, end = -1;

    // The calling thread's made rows for the pool call `call` (from new_call()): carried over
    // between its chunks of that call only.
    static MadeRows &of_thread(uint64_t call) {
        thread_local MadeRows made;
        thread_local uint64_t made_in = 0;
        if (made_in != call) made.end = -1, made_in = call;
        return made;
    }

    static uint64_t new_call() {
        static std::atomic<uint64_t> calls{0};
        return ++calls;
    }
};

// Output rows [begin, end) of all g.n * g.out_h() rows of the pool (NHWC out, flip as
// KernelTable::max_pool_row's), continuing `made` where it ended at `begin`; make(b, r, dst)
// writes input rows r .. min(r + group, g.h) - 1 of image b (r a multiple of `group`: rows
// made together, as Winograd's 4-row tiles), g.w * g.c floats each, NHWC, one after another.
template <typename Make>
void pool_made_rows(const PoolGeometry &g, const uint32_t *flip, float *out, int64_t begin,
                    int64_t end, MadeRows &made, Make &&make, int64_t group = 1) {
    const KernelTable &kt = active_kernels();
    const int64_t out_h = g.out_h(), row = g.w * g.c, out_row = g.out_w() * g.c;
    // Row r in slot r % slots: a window's rows and a group made after them never share a slot.
    const int64_t slots = group * ((g.kh - 1 + group - 1) / group + 1);
    made.ring.resize(static_cast<size_t>(slots * row));
    if (begin != made.end) made.image = -1;
    std::vector<const float *> rows(static_cast<size_t>(g.kh));
    for (int64_t i = begin; i < end; ++i) {
        const int64_t b = i / out_h, top = i % out_h * g.stride_h - g.pad_h;
        const int64_t lo = std::max<int64_t>(0, top), hi = std::min(g.h, top + g.kh);
        if (b != made.image) made.image = b, made.next = 0;
        for (made.next = std::max(made.next, lo) / group * group; made.next < hi;
             made.next += group)
            make(b, made.next, made.ring.data() + made.next % slots * row);
        for (int64_t r = lo; r < hi; ++r) rows[r - lo] = made.ring.data() + r % slots * row;
        kt.max_pool_row(rows.data(), std::max<int64_t>(0, hi - lo), g.w, g.c, g.kw, g.stride_w,
                        g.pad_w, g.out_w(), flip, out + i * out_row);
    }
    made.end = end;
}

}  // namespace bnnx
