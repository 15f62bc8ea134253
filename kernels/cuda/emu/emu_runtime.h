// seqgrid CUDA emulator: the scheduler (blocks on OS threads, CUDA threads as fibers).
//
// Included by cuda_emu.h; everything lives in namespace seqgrid_emu. One emulated module
// is ONE translation unit: cuda_emu.h + the .cu source + generated entry stubs, built
// into a .so that Python loads with ctypes (see kernels/cuda/emu/__init__.py).
//
// Execution model
//   * A launch distributes blocks over `nthreads` OS threads (atomic block counter).
//   * A block runs on one OS thread; its CUDA threads are fibers that switch only at
//     __syncthreads / warp operations / grid sync. A fiber runs until it blocks or exits;
//     the scheduler then releases the barrier/warp-op whose participants have all
//     arrived. When nothing can be released but threads still wait, that's a deadlock:
//     the launch fails with a message naming the block and what each thread waits on.
//   * __shared__ is `static thread_local`: blocks on one OS thread run one at a time.
//   * Cooperative launches (kernels that call seqgrid_grid_sync / this_grid().sync())
//     run every block at once, each on its own OS thread; grid sync is then a block
//     barrier followed by an OS-level barrier across blocks.
//   * Fiber switch: a 16-instruction x86-64 switch (callee-saved registers only: fibers share
//     the block thread's FP control state, kernels never change rounding modes);
//     ucontext (swapcontext) elsewhere or with -DSEQGRID_EMU_UCONTEXT.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>
#include <sys/mman.h>
#include <unistd.h>

#if !defined(__x86_64__) && !defined(SEQGRID_EMU_UCONTEXT)
#define SEQGRID_EMU_UCONTEXT 1
#endif
#ifdef SEQGRID_EMU_UCONTEXT
#include <ucontext.h>
#endif
#if defined(__SANITIZE_ADDRESS__)
#define SEQGRID_EMU_ASAN 1
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

namespace seqgrid_emu {

struct dim3_t { unsigned int x, y, z; };

// ---------------------------------------------------------------- context switch
#ifndef SEQGRID_EMU_UCONTEXT
extern "C" void seqgrid_emu_switch(void** save_sp, void* new_sp);
asm(R"(
    .text
    .p2align 4
    .hidden seqgrid_emu_switch
    .globl seqgrid_emu_switch
    .type seqgrid_emu_switch,@function
seqgrid_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size seqgrid_emu_switch,.-seqgrid_emu_switch
)");
#endif

enum State : int { READY = 0, AT_BAR, AT_WARP, AT_GRID, DONE };
enum WarpOp : int { W_SYNC = 0, W_SHFL_IDX, W_SHFL_UP, W_SHFL_DOWN, W_SHFL_XOR, W_BALLOT,
                    W_ANY, W_ALL, W_RED_ADD, W_RED_MIN, W_RED_MAX, W_RED_UMIN, W_RED_UMAX,
                    W_MATCH_ANY };
enum BarOp : int { B_PLAIN = 0, B_COUNT, B_AND, B_OR };

struct Fiber {
    void* sp = nullptr;             // saved stack pointer (asm switch)
#ifdef SEQGRID_EMU_UCONTEXT
    ucontext_t uc;
#endif
    char* stack_lo = nullptr;       // usable stack [stack_lo, stack_lo + stack_size)
    size_t stack_size = 0;
    unsigned tid = 0;               // linear thread index in the block
    unsigned tx = 0, ty = 0, tz = 0;
    int state = READY;
    bool started = false;
    // warp / barrier operation in flight
    int op = 0;
    unsigned mask = 0;
    int iarg = 0, width = 32;
    uint64_t in = 0, out = 0;
    const char* where = "";
};

struct Launch;

// Per-OS-thread current block state.
struct BlockRun {
    Launch* L = nullptr;
    std::vector<Fiber>* fibers = nullptr;
    Fiber* cur = nullptr;
    void* sched_sp = nullptr;
#ifdef SEQGRID_EMU_UCONTEXT
    ucontext_t sched_uc;
#endif
#ifdef SEQGRID_EMU_ASAN
    const void* sched_stack_lo = nullptr;
    size_t sched_stack_size = 0;
    void* fake_stack = nullptr;
#endif
    unsigned nthr = 0;
    unsigned linear_block = 0;
};

static thread_local BlockRun* tl_run = nullptr;
static thread_local void* tl_dynamic_shared = nullptr;

typedef void (*Stub)(void**);

struct Launch {
    Stub stub = nullptr;
    const char* kernel = "";
    void** args = nullptr;
    dim3_t grid{1, 1, 1}, block{1, 1, 1};
    size_t shared_bytes = 0;
    bool reverse = false, cooperative = false;
    unsigned nblocks = 0;
    std::atomic<unsigned> next{0};
    std::atomic<bool> abort{false};
    std::mutex err_mu;
    std::string error;
    // grid barrier (cooperative launches)
    std::mutex gmu;
    std::condition_variable gcv;
    unsigned g_arrived = 0, g_finished = 0;
    unsigned long g_generation = 0;

    void fail(const std::string& msg) {
        std::lock_guard<std::mutex> lk(err_mu);
        if (error.empty()) error = msg;
        abort.store(true);
        std::lock_guard<std::mutex> lk2(gmu);
        gcv.notify_all();
    }
};

// ------------------------------------------------------------------ fiber stacks
inline size_t stack_bytes() {
    static size_t s = [] {
        const char* e = getenv("SEQGRID_EMU_STACK_KB");
        size_t kb = e ? strtoul(e, nullptr, 10) : 0;
#ifdef SEQGRID_EMU_ASAN
        if (!kb) kb = 512;
#else
        if (!kb) kb = 64;
#endif
        return kb * 1024;
    }();
    return s;
}

// One arena (a single mmap) per worker holds the stacks of a whole block, so a launch maps
// a handful of regions (vm.max_map_count is ~65k; a cooperative launch of 132 blocks x 256
// threads with one mapping per stack would exceed it). Each stack sits above a PROT_NONE
// guard page, so a fiber stack overflow faults instead of corrupting its neighbour; arenas
// too large for one guard per stack (more than 8192 of them in the process) go unguarded.
struct Arena { char* base; size_t count; bool guarded; };
struct StackPool {
    std::mutex mu;
    std::vector<Arena> free_list;
    size_t guarded_stacks = 0;
};
inline StackPool& stack_pool() { static StackPool* p = new StackPool; return *p; }

inline bool get_arena(size_t count, Arena& out) {
    StackPool& p = stack_pool();
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t slot = stack_bytes() + page;
    bool guard;
    {
        std::lock_guard<std::mutex> lk(p.mu);
        // newest first: the arena a worker just gave back is the one most likely in cache
        for (size_t i = p.free_list.size(); i-- > 0;)
            if (p.free_list[i].count >= count) {
                out = p.free_list[i];
                p.free_list.erase(p.free_list.begin() + (long)i);
                return true;
            }
        guard = p.guarded_stacks + count <= 8192;
        if (guard) p.guarded_stacks += count;
    }
    void* m = mmap(nullptr, slot * count, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) return false;
    if (guard)
        for (size_t i = 0; i < count; ++i) mprotect((char*)m + i * slot, page, PROT_NONE);
    out = Arena{(char*)m, count, guard};
    return true;
}
inline char* arena_stack(const Arena& a, size_t i) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    return a.base + i * (stack_bytes() + page) + page;
}
inline void put_arena(const Arena& a) {
    StackPool& p = stack_pool();
    std::lock_guard<std::mutex> lk(p.mu);
    p.free_list.push_back(a);
}

// ------------------------------------------------------------------ switching
inline void fiber_main();

#ifndef SEQGRID_EMU_UCONTEXT
extern "C" inline void seqgrid_emu_fiber_entry() { fiber_main(); abort(); }
#else
inline void seqgrid_emu_fiber_entry_uc() { fiber_main(); abort(); }
#endif

// scheduler -> fiber
inline void switch_to_fiber(BlockRun& R, Fiber& f) {
    R.cur = &f;
#ifdef SEQGRID_EMU_ASAN
    __sanitizer_start_switch_fiber(&R.fake_stack, f.stack_lo, f.stack_size);
#endif
#ifndef SEQGRID_EMU_UCONTEXT
    seqgrid_emu_switch(&R.sched_sp, f.sp);
#else
    swapcontext(&R.sched_uc, &f.uc);
#endif
#ifdef SEQGRID_EMU_ASAN
    __sanitizer_finish_switch_fiber(R.fake_stack, nullptr, nullptr);
#endif
}

// fiber -> scheduler (the fiber is resumed later by switch_to_fiber)
inline void yield_to_scheduler(bool exiting = false) {
    BlockRun& R = *tl_run;
    Fiber& f = *R.cur;
#ifdef SEQGRID_EMU_ASAN
    void* fs = nullptr;
    __sanitizer_start_switch_fiber(exiting ? nullptr : &fs, R.sched_stack_lo, R.sched_stack_size);
#else
    (void)exiting;
#endif
#ifndef SEQGRID_EMU_UCONTEXT
    seqgrid_emu_switch(&f.sp, R.sched_sp);
#else
    swapcontext(&f.uc, &R.sched_uc);
#endif
#ifdef SEQGRID_EMU_ASAN
    __sanitizer_finish_switch_fiber(fs, nullptr, nullptr);
#endif
}

inline void init_fiber(BlockRun& R, Fiber& f) {
    (void)R;
    f.started = true;
#ifdef SEQGRID_EMU_ASAN
    // a stack reused from a launch that failed (deadlock, trap) still has the redzones of the
    // frames its parked fiber never returned from: clear them, or ASan reports this thread's
    // first writes as a stack-buffer-underflow
    __asan_unpoison_memory_region(f.stack_lo, f.stack_size);
#endif
#ifndef SEQGRID_EMU_UCONTEXT
    // stagger stack tops by the thread index: equal offsets modulo 64 KiB would put every
    // live fiber's hot frames into the same cache sets
    uintptr_t top = ((uintptr_t)(f.stack_lo + f.stack_size - 64 * (f.tid % 31))) & ~(uintptr_t)15;
    // what seqgrid_emu_switch pops: r15 r14 r13 r12 rbx rbp, then `ret` into the entry with
    // rsp = top - 8 (== 8 mod 16, as after a call); the entry never returns
    uint64_t* sp = (uint64_t*)(top - 64);
    memset(sp, 0, 64);
    sp[6] = (uint64_t)(uintptr_t)&seqgrid_emu_fiber_entry;
    sp[7] = 0;
    f.sp = sp;
#else
    getcontext(&f.uc);
    f.uc.uc_stack.ss_sp = f.stack_lo;
    f.uc.uc_stack.ss_size = f.stack_size;
    f.uc.uc_link = nullptr;
    makecontext(&f.uc, (void (*)())seqgrid_emu_fiber_entry_uc, 0);
#endif
}

}  // namespace seqgrid_emu

// the CUDA built-in variables: thread-local, set by the scheduler before a fiber runs
static thread_local uint3 threadIdx;
static thread_local uint3 blockIdx;
static thread_local dim3 blockDim;
static thread_local dim3 gridDim;

namespace seqgrid_emu {

inline void fiber_main() {
    BlockRun& R = *tl_run;
#ifdef SEQGRID_EMU_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &R.sched_stack_lo, &R.sched_stack_size);
#endif
    R.L->stub(R.L->args);
    R.cur->state = DONE;
    yield_to_scheduler(true);
}

inline const char* warp_op_name(int op) {
    static const char* names[] = {"__syncwarp", "__shfl_sync", "__shfl_up_sync", "__shfl_down_sync",
                                  "__shfl_xor_sync", "__ballot_sync", "__any_sync", "__all_sync",
                                  "__reduce_add_sync", "__reduce_min_sync", "__reduce_max_sync",
                                  "__reduce_min_sync", "__reduce_max_sync", "__match_any_sync"};
    return (op >= 0 && op <= W_MATCH_ANY) ? names[op] : "?";
}

inline std::string thread_str(const Fiber& f) {
    char b[64];
    snprintf(b, sizeof b, "(%u,%u,%u)", f.tx, f.ty, f.tz);
    return b;
}

inline std::string describe_states(std::vector<Fiber>& F) {
    // group consecutive threads with the same state for a compact message
    std::string s;
    size_t i = 0, shown = 0;
    while (i < F.size() && shown < 8) {
        size_t j = i;
        auto key = [&](const Fiber& f) {
            std::string k;
            switch (f.state) {
                case DONE: k = "exited"; break;
                case AT_BAR: k = std::string("wait at __syncthreads"); break;
                case AT_GRID: k = "wait at grid sync"; break;
                case AT_WARP: {
                    char b[96];
                    snprintf(b, sizeof b, "wait at %s(mask=0x%08x)", warp_op_name(f.op), f.mask);
                    k = b; break;
                }
                default: k = "ready";
            }
            return k;
        };
        std::string k = key(F[i]);
        while (j + 1 < F.size() && key(F[j + 1]) == k) ++j;
        if (!s.empty()) s += "; ";
        s += "threads " + thread_str(F[i]);
        if (j > i) s += ".." + thread_str(F[j]);
        s += ": " + k;
        i = j + 1; ++shown;
    }
    if (i < F.size()) s += "; ...";
    return s;
}

// Try to complete warp operations. Returns number of lanes released; sets err on mismatch.
inline int release_warps(BlockRun& R) {
    std::vector<Fiber>& F = *R.fibers;
    int released = 0;
    unsigned n = R.nthr;
    for (unsigned w0 = 0; w0 < n; w0 += 32) {
        unsigned nl = n - w0 < 32 ? n - w0 : 32;
        unsigned exist = nl == 32 ? 0xffffffffu : ((1u << nl) - 1u);
        unsigned handled = 0;
        for (unsigned l = 0; l < nl; ++l) {
            Fiber& f = F[w0 + l];
            if (f.state != AT_WARP || (handled >> l & 1u)) continue;
            unsigned m = (f.mask & exist) | (1u << l);
            bool ok = true;
            for (unsigned k = 0; k < nl && ok; ++k) {
                if (!(m >> k & 1u)) continue;
                Fiber& g = F[w0 + k];
                if (g.state != AT_WARP || g.op != f.op) ok = false;
            }
            if (!ok) continue;
            handled |= m;
            // compute results for every lane of the group
            uint64_t agg = 0;
            int op = f.op;
            if (op == W_BALLOT || op == W_ANY || op == W_ALL) {
                uint32_t bal = 0;
                for (unsigned k = 0; k < nl; ++k)
                    if ((m >> k & 1u) && F[w0 + k].in) bal |= 1u << k;
                if (op == W_BALLOT) agg = bal;
                else if (op == W_ANY) agg = bal != 0;
                else agg = bal == m;
            } else if (op >= W_RED_ADD && op <= W_RED_UMAX) {
                bool first = true;
                int64_t sa = 0; uint64_t ua = 0;
                for (unsigned k = 0; k < nl; ++k) {
                    if (!(m >> k & 1u)) continue;
                    uint32_t u = (uint32_t)F[w0 + k].in; int32_t s = (int32_t)u;
                    if (first) { sa = s; ua = u; first = false; continue; }
                    switch (op) {
                        case W_RED_ADD: ua += u; break;
                        case W_RED_MIN: sa = s < sa ? s : sa; break;
                        case W_RED_MAX: sa = s > sa ? s : sa; break;
                        case W_RED_UMIN: ua = u < ua ? u : ua; break;
                        case W_RED_UMAX: ua = u > ua ? u : ua; break;
                    }
                }
                agg = (op == W_RED_MIN || op == W_RED_MAX) ? (uint64_t)(uint32_t)(int32_t)sa : (uint32_t)ua;
            }
            for (unsigned k = 0; k < nl; ++k) {
                if (!(m >> k & 1u)) continue;
                Fiber& g = F[w0 + k];
                int width = g.width;
                if (width <= 0 || width > 32 || (width & (width - 1))) width = 32;
                unsigned seg = k & ~(unsigned)(width - 1);
                long src = k;
                switch (op) {
                    case W_SHFL_IDX: src = seg + ((unsigned)g.iarg & (unsigned)(width - 1)); break;
                    case W_SHFL_UP: src = ((long)(k - seg) >= g.iarg) ? (long)k - g.iarg : (long)k; break;
                    case W_SHFL_DOWN: src = ((long)(k - seg) + g.iarg < width) ? (long)k + g.iarg : (long)k; break;
                    case W_SHFL_XOR: {
                        long t = (long)(k ^ (unsigned)g.iarg);
                        src = (t < (long)(seg + width)) ? t : (long)k;
                        break;
                    }
                    default: break;
                }
                if (op >= W_SHFL_IDX && op <= W_SHFL_XOR) {
                    // a source lane that is not part of the group gives an undefined value in CUDA;
                    // here: the lane's own value
                    if (src < 0 || src >= (long)nl || !(m >> src & 1u)) src = k;
                    g.out = F[w0 + src].in;
                } else if (op == W_MATCH_ANY) {
                    uint32_t mm = 0;
                    for (unsigned q = 0; q < nl; ++q)
                        if ((m >> q & 1u) && F[w0 + q].in == g.in) mm |= 1u << q;
                    g.out = mm;
                } else {
                    g.out = agg;
                }
            }
            for (unsigned k = 0; k < nl; ++k)
                if (m >> k & 1u) { F[w0 + k].state = READY; ++released; }
        }
    }
    return released;
}

inline void grid_barrier_wait(Launch& L) {
    std::unique_lock<std::mutex> lk(L.gmu);
    unsigned long gen = L.g_generation;
    ++L.g_arrived;
    if (L.g_finished > 0) {
        lk.unlock();
        L.fail("deadlock in kernel '" + std::string(L.kernel) +
               "': a block waits at grid sync but another block has already exited");
        return;
    }
    if (L.g_arrived == L.nblocks) {
        L.g_arrived = 0;
        ++L.g_generation;
        L.gcv.notify_all();
        return;
    }
    L.gcv.wait(lk, [&] { return L.g_generation != gen || L.abort.load(); });
}

inline void grid_block_finished(Launch& L) {
    std::lock_guard<std::mutex> lk(L.gmu);
    ++L.g_finished;
    if (L.g_arrived > 0) {
        L.abort.store(true);
        L.gcv.notify_all();
        std::lock_guard<std::mutex> lk2(L.err_mu);
        if (L.error.empty())
            L.error = "deadlock in kernel '" + std::string(L.kernel) +
                      "': a block exited while other blocks wait at grid sync";
    }
}

inline std::string block_str(const Launch& L, unsigned lb) {
    unsigned bx = lb % L.grid.x, by = (lb / L.grid.x) % L.grid.y, bz = lb / (L.grid.x * L.grid.y);
    char b[64];
    snprintf(b, sizeof b, "(%u,%u,%u)", bx, by, bz);
    return b;
}

// Run one block to completion on this OS thread. Returns false on error (L.fail called).
inline bool run_block(Launch& L, unsigned lb, std::vector<Fiber>& F, std::vector<char*>& stacks,
                      char* dyn_shared) {
    BlockRun R;
    R.L = &L;
    R.fibers = &F;
    R.nthr = L.block.x * L.block.y * L.block.z;
    R.linear_block = lb;
    tl_run = &R;
    blockIdx.x = lb % L.grid.x;
    blockIdx.y = (lb / L.grid.x) % L.grid.y;
    blockIdx.z = lb / (L.grid.x * L.grid.y);
    blockDim.x = L.block.x; blockDim.y = L.block.y; blockDim.z = L.block.z;
    gridDim.x = L.grid.x; gridDim.y = L.grid.y; gridDim.z = L.grid.z;
    if (dyn_shared) memset(dyn_shared, 0xff, L.shared_bytes);  // garbage (NaN for floats), like a GPU
    tl_dynamic_shared = dyn_shared;

    std::vector<char*> free_stacks(stacks.rbegin(), stacks.rend());
    for (unsigned t = 0; t < R.nthr; ++t) {
        Fiber& f = F[t];
        f.tid = t;
        f.tx = t % L.block.x; f.ty = (t / L.block.x) % L.block.y; f.tz = t / (L.block.x * L.block.y);
        f.state = READY;
        f.started = false;
        f.stack_lo = nullptr;
        f.stack_size = stack_bytes();
    }
    for (;;) {
        if (L.abort.load(std::memory_order_relaxed)) return false;
        unsigned ndone = 0, nbar = 0, nwarp = 0, ngrid = 0;
        for (unsigned i = 0; i < R.nthr; ++i) {
            Fiber& f = F[L.reverse ? R.nthr - 1 - i : i];
            if (f.state != READY) {
                int s = f.state;
                ndone += s == DONE; nbar += s == AT_BAR; nwarp += s == AT_WARP; ngrid += s == AT_GRID;
                continue;
            }
            threadIdx.x = f.tx; threadIdx.y = f.ty; threadIdx.z = f.tz;
            if (!f.started) {
                // stacks are handed out when a thread starts and taken back when it exits, so a
                // kernel without barriers runs every thread of the block on one (cache-hot) stack
                f.stack_lo = free_stacks.back();
                free_stacks.pop_back();
                init_fiber(R, f);
            }
            switch_to_fiber(R, f);
            int s = f.state;
            if (s == DONE) free_stacks.push_back(f.stack_lo);
            ndone += s == DONE; nbar += s == AT_BAR; nwarp += s == AT_WARP; ngrid += s == AT_GRID;
        }
        if (L.abort.load(std::memory_order_relaxed)) return false;
        if (ndone == R.nthr) break;
        if (nwarp && release_warps(R) > 0) continue;
        if (nbar == R.nthr) {
            // reduce predicates for __syncthreads_count/and/or
            uint64_t cnt = 0;
            for (unsigned i = 0; i < R.nthr; ++i) cnt += F[i].in != 0;
            for (unsigned i = 0; i < R.nthr; ++i) {
                Fiber& f = F[i];
                f.out = f.op == B_COUNT ? cnt : f.op == B_AND ? (cnt == R.nthr) : f.op == B_OR ? (cnt != 0) : 0;
                f.state = READY;
            }
            continue;
        }
        if (ngrid == R.nthr && L.cooperative) {
            grid_barrier_wait(L);
            if (L.abort.load()) return false;
            for (unsigned i = 0; i < R.nthr; ++i) F[i].state = READY;
            continue;
        }
        std::string what = ndone && (nbar || ngrid)
            ? "some threads exited while others wait at a barrier"
            : "threads wait at barriers that can never complete";
        L.fail("deadlock in kernel '" + std::string(L.kernel) + "', block " + block_str(L, lb) +
               ": " + what + " (" + describe_states(F) + ")");
        return false;
    }
    tl_run = nullptr;
    return true;
}

inline void worker(Launch& L, unsigned only_block) {
    unsigned nthr = L.block.x * L.block.y * L.block.z;
    std::vector<Fiber> F(nthr);
    Arena arena;
    if (!get_arena(nthr, arena)) { L.fail("out of memory mapping fiber stacks"); return; }
    std::vector<char*> stacks(nthr);
    for (unsigned i = 0; i < nthr; ++i) stacks[i] = arena_stack(arena, i);
    std::vector<char> dyn_buf;
    char* dyn = nullptr;
    if (L.shared_bytes) {
#ifdef SEQGRID_EMU_ASAN
        dyn = (char*)malloc(L.shared_bytes);   // exact size so ASan sees overruns
#else
        dyn_buf.resize(L.shared_bytes + 64);
        dyn = (char*)(((uintptr_t)dyn_buf.data() + 63) & ~(uintptr_t)63);
#endif
    }
    if (L.cooperative) {
        unsigned b = L.reverse ? L.nblocks - 1 - only_block : only_block;
        bool ok = run_block(L, b, F, stacks, dyn);
        if (ok) grid_block_finished(L);
    } else {
        while (!L.abort.load(std::memory_order_relaxed)) {
            unsigned i = L.next.fetch_add(1);
            if (i >= L.nblocks) break;
            unsigned b = L.reverse ? L.nblocks - 1 - i : i;
            if (!run_block(L, b, F, stacks, dyn)) break;
        }
    }
#ifdef SEQGRID_EMU_ASAN
    free(dyn);
#endif
    tl_dynamic_shared = nullptr;
    put_arena(arena);
}

inline int launch(Stub stub, const char* kernel, const unsigned* grid, const unsigned* block,
                  size_t shared_bytes, void** args, int nthreads, int flags, char* err, size_t errlen) {
    Launch L;
    L.stub = stub; L.kernel = kernel; L.args = args;
    L.grid = {grid[0], grid[1], grid[2]};
    L.block = {block[0], block[1], block[2]};
    L.shared_bytes = shared_bytes;
    L.reverse = flags & 1;
    L.cooperative = flags & 2;
    L.nblocks = grid[0] * grid[1] * grid[2];
    unsigned nthr = block[0] * block[1] * block[2];
    if (nthr == 0 || L.nblocks == 0) return 0;
    if (nthr > 1024) {
        snprintf(err, errlen, "kernel '%s': block of %u threads exceeds CUDA's 1024", kernel, nthr);
        return 1;
    }
    unsigned nw;
    if (L.cooperative) {
        if (L.nblocks > 1024) {
            snprintf(err, errlen, "kernel '%s': cooperative (grid-sync) launch of %u blocks; the emulator "
                     "runs every block on its own OS thread and allows at most 1024", kernel, L.nblocks);
            return 1;
        }
        nw = L.nblocks;
    } else {
        nw = nthreads < 1 ? 1 : (unsigned)nthreads;
        if (nw > L.nblocks) nw = L.nblocks;
    }
    if (nw == 1) {
        worker(L, 0);
    } else {
        std::vector<std::thread> ts;
        ts.reserve(nw);
        for (unsigned i = 0; i < nw; ++i) ts.emplace_back([&L, i] { worker(L, i); });
        for (auto& t : ts) t.join();
    }
    if (!L.error.empty()) {
        snprintf(err, errlen, "%s", L.error.c_str());
        return 2;
    }
    return 0;
}

// Called by device code: blocks the current fiber until the scheduler releases it.
inline void block_barrier(int op, uint64_t pred, uint64_t* out) {
    BlockRun* R = tl_run;
    Fiber& f = *R->cur;
    f.state = AT_BAR; f.op = op; f.in = pred;
    yield_to_scheduler();
    if (out) *out = f.out;
}

inline uint64_t warp_op(int op, unsigned mask, uint64_t in, int iarg, int width) {
    BlockRun* R = tl_run;
    Fiber& f = *R->cur;
    f.state = AT_WARP; f.op = op; f.mask = mask; f.in = in; f.iarg = iarg; f.width = width;
    yield_to_scheduler();
    return f.out;
}

inline void grid_sync() {
    BlockRun* R = tl_run;
    if (!R->L->cooperative) {
        R->L->fail(std::string("kernel '") + R->L->kernel + "' called grid sync but was not launched "
                   "cooperatively: the emulator launches a kernel cooperatively when its body (the "
                   "text of the __global__ function) contains seqgrid_grid_sync() or this_grid(); "
                   "call it there, or pass cooperative=True to the launch");
        // park this fiber forever: the scheduler sees abort and stops the block
        R->cur->state = AT_GRID;
        for (;;) yield_to_scheduler();
    }
    R->cur->state = AT_GRID;
    yield_to_scheduler();
}

// Device-side fatal error (__trap, failed assert): fail the launch and park the fiber.
[[noreturn]] inline void device_trap(const char* what) {
    BlockRun* R = tl_run;
    Fiber& f = *R->cur;
    R->L->fail(std::string("kernel '") + R->L->kernel + "', block " + block_str(*R->L, R->linear_block) +
               ", thread " + thread_str(f) + ": " + what);
    f.state = AT_GRID;
    for (;;) yield_to_scheduler();
}

}  // namespace seqgrid_emu
