// seqgrid CUDA emulator: what a .cu kernel source sees when compiled with g++.
//
// Force-included (g++ -include cuda_emu.h) in front of every emulated .cu file. It maps the
// CUDA C dialect used by kernels/cuda/*.cu onto C++17: qualifiers, built-in variables,
// vector types, barriers, warp intrinsics, atomics, fast-math intrinsics, and the seqgrid
// prelude names (SEQGRID_DYNAMIC_SHARED, seqgrid_grid_sync, SEQGRID_INF_F, ...) that the
// NVRTC side gets from kernels/cuda/loader.py's NVRTC_PRELUDE. Keep the two in step.
#pragma once
#define SEQGRID_EMU 1

// every system header first: the qualifier macros below (__noinline__, ...) must not leak
// into libstdc++, which spells attributes with the same names
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>
#include <sys/mman.h>
#include <unistd.h>
#include <ucontext.h>
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#endif

// NVRTC has no host headers: names it lacks are removed here too, so a source that
// compiles in the emulator but not on NVRTC is caught by the emulator as well.
#undef INFINITY
#undef NAN
#undef HUGE_VAL
#undef HUGE_VALF

// ---------------------------------------------------------------- qualifiers
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __shared__ static thread_local
#define __constant__
#define __managed__
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)
#define __grid_constant__
// __restrict__ is a g++ keyword already

// ---------------------------------------------------------------- vector types
#define SEQGRID_VEC2(T, N) struct __attribute__((aligned(2 * sizeof(T)))) N##2 { T x, y; };
#define SEQGRID_VEC3(T, N) struct N##3 { T x, y, z; };
#define SEQGRID_VEC4(T, N) struct __attribute__((aligned(4 * sizeof(T) > 16 ? 16 : 4 * sizeof(T)))) N##4 { T x, y, z, w; };
#define SEQGRID_VEC(T, N) SEQGRID_VEC2(T, N) SEQGRID_VEC3(T, N) SEQGRID_VEC4(T, N) \
    inline N##2 make_##N##2(T x, T y) { return N##2{x, y}; } \
    inline N##3 make_##N##3(T x, T y, T z) { return N##3{x, y, z}; } \
    inline N##4 make_##N##4(T x, T y, T z, T w) { return N##4{x, y, z, w}; }
SEQGRID_VEC(float, float)
SEQGRID_VEC(double, double)
SEQGRID_VEC(int, int)
SEQGRID_VEC(unsigned int, uint)
SEQGRID_VEC(long long, longlong)
SEQGRID_VEC(unsigned long long, ulonglong)
SEQGRID_VEC(signed char, char)
SEQGRID_VEC(unsigned char, uchar)
SEQGRID_VEC(short, short)
SEQGRID_VEC(unsigned short, ushort)
#undef SEQGRID_VEC
#undef SEQGRID_VEC2
#undef SEQGRID_VEC3
#undef SEQGRID_VEC4

struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
    constexpr operator uint3() const { return uint3{x, y, z}; }
};

#include "emu_runtime.h"

constexpr int warpSize = 32;

// ---------------------------------------------------------------- barriers, sync
inline void __syncthreads() { seqgrid_emu::block_barrier(seqgrid_emu::B_PLAIN, 0, nullptr); }
inline int __syncthreads_count(int p) {
    uint64_t o; seqgrid_emu::block_barrier(seqgrid_emu::B_COUNT, p != 0, &o); return (int)o;
}
inline int __syncthreads_and(int p) {
    uint64_t o; seqgrid_emu::block_barrier(seqgrid_emu::B_AND, p != 0, &o); return (int)o;
}
inline int __syncthreads_or(int p) {
    uint64_t o; seqgrid_emu::block_barrier(seqgrid_emu::B_OR, p != 0, &o); return (int)o;
}
inline void __syncwarp(unsigned mask = 0xffffffffu) { seqgrid_emu::warp_op(seqgrid_emu::W_SYNC, mask, 0, 0, 32); }
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_system() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void seqgrid_grid_sync() { seqgrid_emu::grid_sync(); }
[[noreturn]] inline void __trap() { seqgrid_emu::device_trap("__trap() called"); }
inline unsigned __activemask() {
    seqgrid_emu::BlockRun* R = seqgrid_emu::tl_run;
    unsigned w0 = R->cur->tid & ~31u, m = 0;
    for (unsigned k = 0; k < 32 && w0 + k < R->nthr; ++k)
        if ((*R->fibers)[w0 + k].state != seqgrid_emu::DONE) m |= 1u << k;
    return m;
}
inline long long clock64() { return (long long)__builtin_ia32_rdtsc(); }

// ---------------------------------------------------------------- warp intrinsics
namespace seqgrid_emu {
template <class T> inline uint64_t to_bits(T v) {
    static_assert(sizeof(T) <= 8, "warp shuffles move at most 8 bytes");
    uint64_t b = 0; memcpy(&b, &v, sizeof(T)); return b;
}
template <class T> inline T from_bits(uint64_t b) { T v; memcpy(&v, &b, sizeof(T)); return v; }
}  // namespace seqgrid_emu

template <class T> inline T __shfl_sync(unsigned mask, T var, int srcLane, int width = warpSize) {
    return seqgrid_emu::from_bits<T>(seqgrid_emu::warp_op(seqgrid_emu::W_SHFL_IDX, mask, seqgrid_emu::to_bits(var), srcLane, width));
}
template <class T> inline T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = warpSize) {
    return seqgrid_emu::from_bits<T>(seqgrid_emu::warp_op(seqgrid_emu::W_SHFL_UP, mask, seqgrid_emu::to_bits(var), (int)delta, width));
}
template <class T> inline T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = warpSize) {
    return seqgrid_emu::from_bits<T>(seqgrid_emu::warp_op(seqgrid_emu::W_SHFL_DOWN, mask, seqgrid_emu::to_bits(var), (int)delta, width));
}
template <class T> inline T __shfl_xor_sync(unsigned mask, T var, int laneMask, int width = warpSize) {
    return seqgrid_emu::from_bits<T>(seqgrid_emu::warp_op(seqgrid_emu::W_SHFL_XOR, mask, seqgrid_emu::to_bits(var), laneMask, width));
}
inline unsigned __ballot_sync(unsigned mask, int p) { return (unsigned)seqgrid_emu::warp_op(seqgrid_emu::W_BALLOT, mask, p != 0, 0, 32); }
inline int __any_sync(unsigned mask, int p) { return (int)seqgrid_emu::warp_op(seqgrid_emu::W_ANY, mask, p != 0, 0, 32); }
inline int __all_sync(unsigned mask, int p) { return (int)seqgrid_emu::warp_op(seqgrid_emu::W_ALL, mask, p != 0, 0, 32); }
inline unsigned __reduce_add_sync(unsigned mask, unsigned v) { return (unsigned)seqgrid_emu::warp_op(seqgrid_emu::W_RED_ADD, mask, v, 0, 32); }
inline unsigned __reduce_min_sync(unsigned mask, unsigned v) { return (unsigned)seqgrid_emu::warp_op(seqgrid_emu::W_RED_UMIN, mask, v, 0, 32); }
inline unsigned __reduce_max_sync(unsigned mask, unsigned v) { return (unsigned)seqgrid_emu::warp_op(seqgrid_emu::W_RED_UMAX, mask, v, 0, 32); }
inline int __reduce_add_sync(unsigned mask, int v) { return (int)seqgrid_emu::warp_op(seqgrid_emu::W_RED_ADD, mask, (uint32_t)v, 0, 32); }
inline int __reduce_min_sync(unsigned mask, int v) { return (int)seqgrid_emu::warp_op(seqgrid_emu::W_RED_MIN, mask, (uint32_t)v, 0, 32); }
inline int __reduce_max_sync(unsigned mask, int v) { return (int)seqgrid_emu::warp_op(seqgrid_emu::W_RED_MAX, mask, (uint32_t)v, 0, 32); }
template <class T> inline unsigned __match_any_sync(unsigned mask, T v) {
    return (unsigned)seqgrid_emu::warp_op(seqgrid_emu::W_MATCH_ANY, mask, seqgrid_emu::to_bits(v), 0, 32);
}

// ---------------------------------------------------------------- cooperative groups (subset)
namespace cooperative_groups {
struct grid_group {
    void sync() const { seqgrid_grid_sync(); }
    unsigned long long thread_rank() const {
        unsigned long long b = blockIdx.x + (unsigned long long)gridDim.x * (blockIdx.y + (unsigned long long)gridDim.y * blockIdx.z);
        unsigned long long t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
        return b * blockDim.x * blockDim.y * blockDim.z + t;
    }
    unsigned long long size() const {
        return (unsigned long long)gridDim.x * gridDim.y * gridDim.z * blockDim.x * blockDim.y * blockDim.z;
    }
    unsigned long long num_threads() const { return size(); }
    bool is_valid() const { return seqgrid_emu::tl_run && seqgrid_emu::tl_run->L->cooperative; }
};
struct thread_block {
    void sync() const { __syncthreads(); }
    unsigned thread_rank() const { return threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z); }
    unsigned size() const { return blockDim.x * blockDim.y * blockDim.z; }
    unsigned num_threads() const { return size(); }
    dim3 group_index() const { return dim3(blockIdx); }
    dim3 thread_index() const { return dim3(threadIdx); }
};
inline grid_group this_grid() { return grid_group{}; }
inline thread_block this_thread_block() { return thread_block{}; }
inline void sync(const grid_group& g) { g.sync(); }
inline void sync(const thread_block& g) { g.sync(); }
}  // namespace cooperative_groups

// ---------------------------------------------------------------- atomics (GCC builtins)
namespace seqgrid_emu {
template <class T, class F> inline T atomic_update(T* p, F f) {
    T old;
    __atomic_load(p, &old, __ATOMIC_RELAXED);
    T desired;
    do { desired = f(old); } while (!__atomic_compare_exchange(p, &old, &desired, true, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED));
    return old;
}
}  // namespace seqgrid_emu

#define SEQGRID_INT_ATOMICS(T) \
    inline T atomicAdd(T* p, T v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); } \
    inline T atomicSub(T* p, T v) { return __atomic_fetch_sub(p, v, __ATOMIC_SEQ_CST); } \
    inline T atomicExch(T* p, T v) { return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST); } \
    inline T atomicAnd(T* p, T v) { return __atomic_fetch_and(p, v, __ATOMIC_SEQ_CST); } \
    inline T atomicOr(T* p, T v) { return __atomic_fetch_or(p, v, __ATOMIC_SEQ_CST); } \
    inline T atomicXor(T* p, T v) { return __atomic_fetch_xor(p, v, __ATOMIC_SEQ_CST); } \
    inline T atomicMax(T* p, T v) { return seqgrid_emu::atomic_update(p, [v](T o) { return o > v ? o : v; }); } \
    inline T atomicMin(T* p, T v) { return seqgrid_emu::atomic_update(p, [v](T o) { return o < v ? o : v; }); } \
    inline T atomicCAS(T* p, T cmp, T v) { \
        __atomic_compare_exchange_n(p, &cmp, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST); return cmp; }
SEQGRID_INT_ATOMICS(int)
SEQGRID_INT_ATOMICS(unsigned int)
SEQGRID_INT_ATOMICS(unsigned long long)
SEQGRID_INT_ATOMICS(long long)
#undef SEQGRID_INT_ATOMICS
inline unsigned short atomicCAS(unsigned short* p, unsigned short cmp, unsigned short v) {
    __atomic_compare_exchange_n(p, &cmp, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST); return cmp;
}
inline float atomicAdd(float* p, float v) { return seqgrid_emu::atomic_update(p, [v](float o) { return o + v; }); }
inline double atomicAdd(double* p, double v) { return seqgrid_emu::atomic_update(p, [v](double o) { return o + v; }); }
inline float atomicExch(float* p, float v) { float o; __atomic_exchange(p, &v, &o, __ATOMIC_SEQ_CST); return o; }
inline float atomicMax(float* p, float v) { return seqgrid_emu::atomic_update(p, [v](float o) { return std::fmax(o, v); }); }
inline float atomicMin(float* p, float v) { return seqgrid_emu::atomic_update(p, [v](float o) { return std::fmin(o, v); }); }
inline unsigned atomicInc(unsigned* p, unsigned lim) { return seqgrid_emu::atomic_update(p, [lim](unsigned o) { return o >= lim ? 0u : o + 1; }); }
inline unsigned atomicDec(unsigned* p, unsigned lim) { return seqgrid_emu::atomic_update(p, [lim](unsigned o) { return (o == 0 || o > lim) ? lim : o - 1; }); }
#define SEQGRID_SCOPED(name) template <class... A> inline auto name##_block(A... a) { return name(a...); } \
                             template <class... A> inline auto name##_system(A... a) { return name(a...); }
SEQGRID_SCOPED(atomicAdd) SEQGRID_SCOPED(atomicExch) SEQGRID_SCOPED(atomicCAS) SEQGRID_SCOPED(atomicMax) SEQGRID_SCOPED(atomicMin)
#undef SEQGRID_SCOPED

// ---------------------------------------------------------------- math
// <cmath> provides expf, logf, tanhf, sqrtf, fmaxf, fminf, fabsf, powf, erff, ... in ::
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float rcbrtf(float x) { return 1.0f / cbrtf(x); }
inline float __expf(float x) { return expf(x); }
inline float __exp10f(float x) { return powf(10.0f, x); }
inline float __logf(float x) { return logf(x); }
inline float __log2f(float x) { return log2f(x); }
inline float __log10f(float x) { return log10f(x); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __tanf(float x) { return tanf(x); }
inline float __tanhf(float x) { return tanhf(x); }
inline float __powf(float x, float y) { return powf(x, y); }
inline void __sincosf(float x, float* s, float* c) { *s = sinf(x); *c = cosf(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float fdividef(float a, float b) { return a / b; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return sqrtf(x); }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __fma_rn(double a, double b, double c) { return fma(a, b, c); }
inline float __int_as_float(int x) { float f; memcpy(&f, &x, 4); return f; }
inline int __float_as_int(float x) { int i; memcpy(&i, &x, 4); return i; }
inline float __uint_as_float(unsigned x) { float f; memcpy(&f, &x, 4); return f; }
inline unsigned __float_as_uint(float x) { unsigned i; memcpy(&i, &x, 4); return i; }
inline double __longlong_as_double(long long x) { double d; memcpy(&d, &x, 8); return d; }
inline long long __double_as_longlong(double x) { long long i; memcpy(&i, &x, 8); return i; }
inline int __float2int_rn(float x) { return (int)nearbyintf(x); }
inline int __float2int_rz(float x) { return (int)x; }
inline int __float2int_rd(float x) { return (int)floorf(x); }
inline int __float2int_ru(float x) { return (int)ceilf(x); }
inline float __int2float_rn(int x) { return (float)x; }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x ? __builtin_clz((unsigned)x) : 32; }
inline int __clzll(long long x) { return x ? __builtin_clzll((unsigned long long)x) : 64; }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline unsigned __brev(unsigned x) {
    x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
    x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
    x = ((x >> 4) & 0x0f0f0f0fu) | ((x & 0x0f0f0f0fu) << 4);
    x = ((x >> 8) & 0x00ff00ffu) | ((x & 0x00ff00ffu) << 8);
    return (x >> 16) | (x << 16);
}
inline int __mul24(int a, int b) { return a * b; }
inline unsigned __umul24(unsigned a, unsigned b) { return a * b; }
inline int __mulhi(int a, int b) { return (int)(((long long)a * b) >> 32); }
inline unsigned __umulhi(unsigned a, unsigned b) { return (unsigned)(((unsigned long long)a * b) >> 32); }

// CUDA's overloaded min/max (integer and floating point)
#define SEQGRID_MINMAX(T) inline T min(T a, T b) { return a < b ? a : b; } \
                          inline T max(T a, T b) { return a > b ? a : b; }
SEQGRID_MINMAX(int) SEQGRID_MINMAX(unsigned int) SEQGRID_MINMAX(long) SEQGRID_MINMAX(unsigned long)
SEQGRID_MINMAX(long long) SEQGRID_MINMAX(unsigned long long)
#undef SEQGRID_MINMAX
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(double a, double b) { return fmax(a, b); }
inline double min(float a, double b) { return fmin(a, b); }
inline double min(double a, float b) { return fmin(a, b); }
inline double max(float a, double b) { return fmax(a, b); }
inline double max(double a, float b) { return fmax(a, b); }
inline unsigned int min(int a, unsigned int b) { return min((unsigned)a, b); }
inline unsigned int min(unsigned int a, int b) { return min(a, (unsigned)b); }
inline unsigned int max(int a, unsigned int b) { return max((unsigned)a, b); }
inline unsigned int max(unsigned int a, int b) { return max(a, (unsigned)b); }
inline long long min(long long a, int b) { return min(a, (long long)b); }
inline long long min(int a, long long b) { return min((long long)a, b); }
inline long long max(long long a, int b) { return max(a, (long long)b); }
inline long long max(int a, long long b) { return max((long long)a, b); }

// read-only cache loads
template <class T> inline T __ldg(const T* p) { return *p; }
template <class T> inline T __ldcg(const T* p) { return *p; }
template <class T> inline T __ldcs(const T* p) { return *p; }
template <class T> inline T __ldlu(const T* p) { return *p; }
template <class T> inline void __stcg(T* p, T v) { *p = v; }
template <class T> inline void __stcs(T* p, T v) { *p = v; }

// ---------------------------------------------------------------- seqgrid prelude names
// (the NVRTC definitions are in kernels/cuda/loader.py: NVRTC_PRELUDE)
#define SEQGRID_DYNAMIC_SHARED(type, name) type* name = static_cast<type*>(seqgrid_emu::tl_dynamic_shared)
#define SEQGRID_INF_F __builtin_huge_valf()
#define SEQGRID_INF __builtin_huge_val()
#define SEQGRID_NAN_F __builtin_nanf("")
#define SEQGRID_FLT_MAX 3.402823466e+38f
#define SEQGRID_DBL_MAX 1.7976931348623158e+308
#define SEQGRID_ASSERT(cond) \
    do { if (!(cond)) seqgrid_emu::device_trap("SEQGRID_ASSERT(" #cond ") failed at " __FILE__ ":" SEQGRID_STR(__LINE__)); } while (0)
#define SEQGRID_STR(x) SEQGRID_STR2(x)
#define SEQGRID_STR2(x) #x

// ---------------------------------------------------------------- entry stubs support
namespace seqgrid_emu {
template <class T> inline const char* type_name_raw() { return __PRETTY_FUNCTION__; }
template <class T> inline std::string base_code() {
    using U = std::remove_cv_t<T>;
    if constexpr (std::is_void_v<U>) return "v";
    else if constexpr (std::is_same_v<U, bool>) return "b1";
    else if constexpr (std::is_same_v<U, char>) return "c1";
    else if constexpr (std::is_integral_v<U>) return std::string(std::is_signed_v<U> ? "i" : "u") + std::to_string(sizeof(U));
    else if constexpr (std::is_floating_point_v<U>) return "f" + std::to_string(sizeof(U));
    else if constexpr (std::is_pointer_v<U>) return "p8";
    else if constexpr (std::is_enum_v<U>) return std::string("i") + std::to_string(sizeof(U));
    else return "s" + std::to_string(sizeof(U));
}
template <class T> inline std::string param_code() {
    std::string name = type_name_raw<T>();
    size_t a = name.find("T = ");
    if (a != std::string::npos) {
        name = name.substr(a + 4);
        size_t e = name.find_first_of(";]");
        name = name.substr(0, e);
    }
    if constexpr (std::is_pointer_v<T>) {
        using P = std::remove_pointer_t<T>;
        return std::string("P") + (std::is_const_v<P> ? "c" : "") + base_code<P>() + "|" + name;
    } else {
        return base_code<T>() + "|" + name;
    }
}
template <class... A> inline std::string signature(void (*)(A...)) {
    std::string s;
    ((s += param_code<A>() + ";"), ...);
    return s;
}
template <class... A, std::size_t... I>
inline void invoke_impl(void (*f)(A...), void** args, std::index_sequence<I...>) {
    f(*static_cast<std::remove_reference_t<A>*>(args[I])...);
}
template <class... A> inline void invoke(void (*f)(A...), void** args) {
    invoke_impl(f, args, std::index_sequence_for<A...>{});
}
struct KernelEntry { const char* name; Stub stub; std::string (*sig)(); };
}  // namespace seqgrid_emu
