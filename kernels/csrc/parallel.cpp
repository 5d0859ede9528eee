// The thread team behind parallel_for. Where the process has libgomp loaded (torch's CPU wheels
// bring it), jobs run on its OpenMP team: torch's float layers run there too, and after each of
// them its idle workers spin for milliseconds, so a second pool would fight them for the same
// cores (on 2 cores a 2-thread binary conv right after a torch op measured as slow as 1 thread).
// Otherwise, and in a forked child (libgomp's team does not survive fork), bnnx's own persistent
// pool runs them: workers spin briefly after each job (layers come back to back within
// microseconds) and then sleep on a condition variable, so an idle pool costs nothing. It is
// created on first use and deliberately leaked: joining threads during interpreter shutdown is
// not worth the risk. BNNX_THREAD_POOL=bnnx forces the own pool (tests, benchmarks).
#include "parallel.h"

#include <dlfcn.h>
#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>

namespace bnnx {
namespace {

constexpr int kSpins = 4000;  // ~50-100 us of polling before a thread sleeps or yields

inline void relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

// A parallel_for's items: participant k owns the k-th contiguous share of them, takes chunks from
// its front and, once it is empty, steals chunks from the back of the others'. Successive layers
// split their rows in the same proportions, so a thread mostly reads the rows it wrote itself:
// on a VM whose two vCPUs sit far apart (a cache-line round trip measured 350-400 ns here), a
// chunk handed to whichever thread asked next made every layer pull about half its input map
// from the other core's cache, and 2 threads ran slower than 1. Stealing keeps the balance of
// dynamic chunks: a late or descheduled participant delays nothing.
struct Job {
    // One share's remaining items [front, back), packed front << 32 | back so owner and thieves
    // move its ends with one compare-and-swap; on its own cache line.
    struct alignas(64) Share {
        std::atomic<uint64_t> ends{0};
    };

    const std::function<void(int64_t, int64_t)> *fn;
    int64_t chunk;
    int parts;
    std::unique_ptr<Share[]> shares;

    Job(const std::function<void(int64_t, int64_t)> &f, int64_t total, int workers,
        int64_t grain)
        : fn(&f), chunk(std::max<int64_t>(std::max<int64_t>(1, grain), total / (4 * workers))),
          parts(workers),
          shares(new Share[static_cast<size_t>(workers)]) {
        for (int k = 0; k < parts; ++k)
            shares[k].ends.store(pack(k * total / parts, (k + 1) * total / parts),
                                 std::memory_order_relaxed);
    }

    static uint64_t pack(int64_t front, int64_t back) {
        return static_cast<uint64_t>(front) << 32 | static_cast<uint64_t>(back);
    }

    // Takes up to `chunk` items from share k's front (its owner) or back (a thief); false once
    // the share is empty.
    bool take(int k, bool own, int64_t &begin, int64_t &end) {
        std::atomic<uint64_t> &ends = shares[k].ends;
        uint64_t seen = ends.load();
        for (;;) {
            const int64_t front = static_cast<int64_t>(seen >> 32);
            const int64_t back = static_cast<int64_t>(seen & 0xffffffffu);
            if (front >= back) return false;
            const int64_t n = std::min(chunk, back - front);
            begin = own ? front : back - n;
            end = begin + n;
            const uint64_t next = own ? pack(end, back) : pack(front, begin);
            if (ends.compare_exchange_weak(seen, next)) return true;
        }
    }

    // Participant `index` (0 = the caller): its own share first, then the others' in turn.
    void work(int index) {
        const int home = index % parts;
        int64_t begin, end;
        for (int i = 0; i < parts; ++i) {
            const int k = (home + i) % parts;
            while (take(k, i == 0, begin, end)) (*fn)(begin, end);
        }
    }
};

// libgomp's entry point for `#pragma omp parallel` (GCC >= 4.9 ABI): runs fn(data) on a team of
// num_threads, the caller included, and returns when all of them are done.
using GompParallel = void (*)(void (*fn)(void *), void *data, unsigned num_threads,
                              unsigned flags);
using OmpThreadNum = int (*)();

std::atomic<bool> forked{false};

// The loaded libgomp's GOMP_parallel, or null: none loaded, forced off, or a forked child.
GompParallel openmp_team() {
    static const GompParallel found = [] {
        const char *forced = std::getenv("BNNX_THREAD_POOL");
        if (forced && std::strcmp(forced, "bnnx") == 0) return GompParallel{nullptr};
        return reinterpret_cast<GompParallel>(dlsym(RTLD_DEFAULT, "GOMP_parallel"));
    }();
    return forked.load() ? nullptr : found;
}

// A member of libgomp's team runs its share of the job: its index in the team picks the share.
void work_on_team(void *job) {
    static const auto thread_num =
        reinterpret_cast<OmpThreadNum>(dlsym(RTLD_DEFAULT, "omp_get_thread_num"));
    static_cast<Job *>(job)->work(thread_num ? thread_num() : 0);
}

class Pool {
  public:
    // Runs the job on this thread and `helpers` workers; returns once no worker is inside it.
    void run(Job &job, int helpers) {
        std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
        if (!busy.owns_lock()) {  // another caller holds the pool: stay correct, go serial
            job.work(0);
            return;
        }
        grow(helpers);
        {
            std::lock_guard<std::mutex> lock(mutex_);
            job_.store(&job);
            generation_.fetch_add(1);
        }
        wake_.notify_all();
        job.work(0);
        // Workers register in inside_ before they look at job_, so after clearing job_ only
        // those already inside can still touch the job (sequentially consistent atomics).
        job_.store(nullptr);
        for (int spin = 0; inside_.load() != 0; ++spin)
            spin > kSpins ? std::this_thread::yield() : relax();
    }

  private:
    void grow(int count) {
        while (workers_ < count) {
            // The worker counts jobs from now, not from whenever it happens to start.
            ++workers_;
            std::thread(&Pool::work, this, workers_, generation_.load()).detach();
        }
    }

    void work(int index, uint64_t seen) {
        for (;;) {
            for (int spin = 0; spin < kSpins && generation_.load() == seen; ++spin) relax();
            if (generation_.load() == seen) {
                std::unique_lock<std::mutex> lock(mutex_);
                wake_.wait(lock, [&] { return generation_.load() != seen; });
            }
            seen = generation_.load();
            inside_.fetch_add(1);
            if (Job *job = job_.load()) job->work(index);
            inside_.fetch_sub(1);
        }
    }

    std::mutex busy_, mutex_;
    std::condition_variable wake_;
    std::atomic<uint64_t> generation_{0};
    std::atomic<Job *> job_{nullptr};
    std::atomic<int> inside_{0};
    int workers_ = 0;
};

std::atomic<Pool *> pool{nullptr};
std::once_flag atfork_once;

Pool &instance() {
    std::call_once(atfork_once, [] {
        pthread_atfork(nullptr, nullptr, [] {  // the child has no workers, its own or libgomp's
            pool.store(nullptr);
            forked.store(true);
        });
    });
    Pool *p = pool.load(std::memory_order_acquire);
    if (p == nullptr) {
        static std::mutex create;
        std::lock_guard<std::mutex> lock(create);
        p = pool.load();
        if (p == nullptr) pool.store(p = new Pool());
    }
    return *p;
}

}  // namespace

void parallel_for(int64_t total, int threads, const std::function<void(int64_t, int64_t)> &fn) {
    parallel_for(total, threads, 1, fn);
}

void parallel_for(int64_t total, int threads, int64_t grain,
                  const std::function<void(int64_t, int64_t)> &fn) {
    const int64_t workers = std::max<int64_t>(1, std::min<int64_t>(threads, total));
    if (workers <= 1) {
        fn(0, total);
        return;
    }
    // A share's ends are 32-bit: larger ranges go in slices (no kernel comes near this).
    constexpr int64_t kSlice = int64_t{1} << 31;
    if (total > kSlice) {
        for (int64_t base = 0; base < total; base += kSlice)
            parallel_for(std::min(kSlice, total - base), threads, grain,
                         [&](int64_t begin, int64_t end) { fn(base + begin, base + end); });
        return;
    }
    Job job(fn, total, static_cast<int>(workers), grain);
    Pool &own = instance();  // registers the fork handler before libgomp is first used
    if (GompParallel team = openmp_team())
        team(&work_on_team, &job, static_cast<unsigned>(workers), 0);
    else
        own.run(job, static_cast<int>(workers - 1));
}

// A counter on its own cache line, bumped in turn: odd values by this thread, even ones by the
// other, each waiting for the other's; -1 sends the other home. At most ~50 ms: where the two
// threads share one core, each trip waits for a time slice.
double thread_round_trip_ns(int64_t trips) {
    using Clock = std::chrono::steady_clock;
    constexpr auto kBudget = std::chrono::milliseconds(50);
    struct alignas(64) Ball {
        std::atomic<int64_t> value{0};
    } ball;
    std::thread other([&ball] {
        for (int64_t i = 1;; i += 2) {
            int64_t v;
            while ((v = ball.value.load(std::memory_order_acquire)) != i) {
                if (v < 0) return;
                relax();
            }
            ball.value.store(i + 1, std::memory_order_release);
        }
    });
    // The first trip waits for the thread to start: timed from the second on.
    ball.value.store(1, std::memory_order_release);
    while (ball.value.load(std::memory_order_acquire) != 2) relax();
    const auto start = Clock::now();
    int64_t done = 0;
    for (int64_t i = 2; done < trips - 1; i += 2) {
        ball.value.store(i + 1, std::memory_order_release);
        while (ball.value.load(std::memory_order_acquire) != i + 2) relax();
        if (++done % 8 == 0 && Clock::now() - start > kBudget) break;
    }
    const auto end = Clock::now();
    ball.value.store(-1, std::memory_order_release);
    other.join();
    return std::chrono::duration<double, std::nano>(end - start).count() /
           static_cast<double>(done);
}

}  // namespace bnnx
