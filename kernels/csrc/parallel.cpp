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
#include <condition_variable>
#include <cstdlib>
#include <cstring>
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

struct Job {
    const std::function<void(int64_t, int64_t)> *fn;
    int64_t total, chunk;
    std::atomic<int64_t> next{0};

    void work() {
        for (int64_t begin; (begin = next.fetch_add(chunk)) < total;)
            (*fn)(begin, std::min(total, begin + chunk));
    }

    static void work_on(void *job) { static_cast<Job *>(job)->work(); }
};

// libgomp's entry point for `#pragma omp parallel` (GCC >= 4.9 ABI): runs fn(data) on a team of
// num_threads, the caller included, and returns when all of them are done.
using GompParallel = void (*)(void (*fn)(void *), void *data, unsigned num_threads,
                              unsigned flags);

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

class Pool {
  public:
    // Runs the job on this thread and `helpers` workers; returns once no worker is inside it.
    void run(Job &job, int helpers) {
        std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
        if (!busy.owns_lock()) {  // another caller holds the pool: stay correct, go serial
            job.work();
            return;
        }
        grow(helpers);
        {
            std::lock_guard<std::mutex> lock(mutex_);
            job_.store(&job);
            generation_.fetch_add(1);
        }
        wake_.notify_all();
        job.work();
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
            std::thread(&Pool::work, this, generation_.load()).detach();
            ++workers_;
        }
    }

    void work(uint64_t seen) {
        for (;;) {
            for (int spin = 0; spin < kSpins && generation_.load() == seen; ++spin) relax();
            if (generation_.load() == seen) {
                std::unique_lock<std::mutex> lock(mutex_);
                wake_.wait(lock, [&] { return generation_.load() != seen; });
            }
            seen = generation_.load();
            inside_.fetch_add(1);
            if (Job *job = job_.load()) job->work();
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
    const int64_t workers = std::max<int64_t>(1, std::min<int64_t>(threads, total));
    if (workers <= 1) {
        fn(0, total);
        return;
    }
    // A few chunks per thread balance uneven rows (image borders) and late workers.
    Job job{&fn, total, std::max<int64_t>(1, total / (4 * workers))};
    Pool &own = instance();  // registers the fork handler before libgomp is first used
    if (GompParallel team = openmp_team())
        team(&Job::work_on, &job, static_cast<unsigned>(workers), 0);
    else
        own.run(job, static_cast<int>(workers - 1));
}

}  // namespace bnnx
