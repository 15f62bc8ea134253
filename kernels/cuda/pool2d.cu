// 2-d pooling on NCHW arrays (kernels/pool2d.py, "CUDA launchers"): max, average and adaptive
// average, forward and backward. Semantics are PyTorch's, identical to the NumPy reference:
//   max:      padding never selected; argmax = flat index h*W + w into the input plane; the
//             first maximum in window order wins, a NaN wins (the last NaN); a window of -inf
//             keeps the first in-bounds cell.
//   avg:      window rows p*sh-ph .. +kh clipped to the padded input (ceil_mode's partial last
//             window); divisor = divisor_override, else cells in the padded window
//             (count_include_pad) or in the input.
//   adaptive: output row p averages input rows floor(p*H/P) .. ceil((p+1)*H/P) - 1.
// v1: one thread per output element (forward) or per input element (backward), grid-stride
// loops, 64-bit element indices (N*C*H*W may exceed 2^31; H*W, P*Q per plane must not).
// Backward kernels gather (deterministic, no atomics) except max backward: its op signature
// (dout, argmax, x_shape) carries no window geometry, so it scatter-adds dout at argmax with
// atomicAdd (float64 atomicAdd needs sm_60+). dx must be zeroed by the caller.
//
// v2 (maxpool2d_fwd_v2, avgpool2d_fwd_v2, avgpool2d_bwd_v2; bandwidth-oriented, same results
// as v1 bit for bit: same comparisons, same summation order, same divisions):
//   grid    2-d: blockIdx.y picks a group of G planes (n, c), looping by gridDim.y*G when N*C/G
//           exceeds the launcher's grid.y cap (65535); blockIdx.x/threadIdx.x cover the group's
//           G * ceil(rows/POOL2_ROWS) * cols items. G: the launcher's choice launching the
//           fewest threads (small planes share a block, no plane ends in a mostly idle block;
//           G = 8 for 56x56 outputs: 49 full blocks); a plane base offset is computed once
//           per plane in 64-bit, everything inside a plane is 32-bit (H*W and P*Q must fit an
//           int: the launcher falls back to v1 otherwise). Two 32-bit divisions per thread, none
//           per element.
//   thread  POOL2_ROWS (2) vertically adjacent outputs (p0, q), (p0+1, q): lanes of a warp take
//           consecutive q, so every store of out / argmax / dx is a coalesced run and the window
//           loads of a warp are contiguous row segments; 3x3/2 windows of the two rows share an
//           input row (5 rows loaded for 2 outputs).
//   fast    k x k windows (k = 2, 3), stride 2, no padding, no dilation, every window inside
//           the input (no ceil_mode partial window): template FAST = k (FAST = 0: generic; one
//           instantiation each, so the generic path's registers cost the fast ones nothing;
//           sm_90: 31-40 registers for 2x2, 44-61 for 3x3), unrolled, all window rows loaded into
//           registers first, columns 2q, 2q+1 as one float2 / double2 __ldg when the launcher
//           says rows are 2-element aligned (W even, x aligned), else scalar __ldg. Any other
//           geometry runs the v1 window loops per output (still 32-bit, 2 outputs per thread).
//   avg bwd one thread per POOL2_ROWS input cells (h0, w), (h0+1, w); the column window range
//           [q0, q1) is computed once per thread; the gather is v1's.
//
// Self-contained CUDA C (no #include): the seqgrid prelude gives SEQGRID_INF_F / SEQGRID_INF.
//
// seqgrid: instantiate maxpool2d_fwd<float>
// seqgrid: instantiate maxpool2d_fwd<double>
// seqgrid: instantiate maxpool2d_bwd_scatter<float>
// seqgrid: instantiate maxpool2d_bwd_scatter<double>
// seqgrid: instantiate avgpool2d_fwd<float>
// seqgrid: instantiate avgpool2d_fwd<double>
// seqgrid: instantiate avgpool2d_bwd<float>
// seqgrid: instantiate avgpool2d_bwd<double>
// seqgrid: instantiate adaptive_avgpool2d_fwd<float>
// seqgrid: instantiate adaptive_avgpool2d_fwd<double>
// seqgrid: instantiate adaptive_avgpool2d_bwd<float>
// seqgrid: instantiate adaptive_avgpool2d_bwd<double>
// seqgrid: instantiate maxpool2d_fwd_v2<float, 0>
// seqgrid: instantiate maxpool2d_fwd_v2<float, 2>
// seqgrid: instantiate maxpool2d_fwd_v2<float, 3>
// seqgrid: instantiate maxpool2d_fwd_v2<double, 0>
// seqgrid: instantiate maxpool2d_fwd_v2<double, 2>
// seqgrid: instantiate maxpool2d_fwd_v2<double, 3>
// seqgrid: instantiate avgpool2d_fwd_v2<float, 0>
// seqgrid: instantiate avgpool2d_fwd_v2<float, 2>
// seqgrid: instantiate avgpool2d_fwd_v2<float, 3>
// seqgrid: instantiate avgpool2d_fwd_v2<double, 0>
// seqgrid: instantiate avgpool2d_fwd_v2<double, 2>
// seqgrid: instantiate avgpool2d_fwd_v2<double, 3>
// seqgrid: instantiate avgpool2d_bwd_v2<float>
// seqgrid: instantiate avgpool2d_bwd_v2<double>

// N batch, C channels, H W in, P Q out, kh kw window, sh sw stride, ph pw padding, dh dw dilation

template <typename T> struct PoolLimits;
template <> struct PoolLimits<float> {
    static __device__ __forceinline__ float neg_inf() { return -SEQGRID_INF_F; }
};
template <> struct PoolLimits<double> {
    static __device__ __forceinline__ double neg_inf() { return -SEQGRID_INF; }
};

#define POOL_GRID_STRIDE(i, n)                                                         \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n);           \
         i += (long long)blockDim.x * gridDim.x)

// out, argmax: (N, C, P, Q); x: (N, C, H, W); total = N*C*P*Q
template <typename T>
__global__ void maxpool2d_fwd(T* __restrict__ out, long long* __restrict__ argmax,
                              const T* __restrict__ x, long long total, int H, int W, int P,
                              int Q, int kh, int kw, int sh, int sw, int ph, int pw, int dh,
                              int dw) {
    POOL_GRID_STRIDE(i, total) {
        const int q = (int)(i % Q);
        const int p = (int)((i / Q) % P);
        const long long nc = i / ((long long)P * Q);
        const T* plane = x + nc * H * W;
        const int h0 = p * sh - ph, w0 = q * sw - pw;
        int hs = h0, ws = w0;                 // first in-bounds cell (PyTorch's start index)
        while (hs < 0) hs += dh;
        while (ws < 0) ws += dw;
        T m = PoolLimits<T>::neg_inf();
        long long idx = (long long)hs * W + ws;
        for (int r = 0; r < kh; ++r) {
            const int h = h0 + r * dh;
            if (h < 0 || h >= H) continue;
            for (int s = 0; s < kw; ++s) {
                const int w = w0 + s * dw;
                if (w < 0 || w >= W) continue;
                const T v = plane[(long long)h * W + w];
                if (v > m || v != v) {        // first maximum wins; NaN always wins
                    m = v;
                    idx = (long long)h * W + w;
                }
            }
        }
        out[i] = m;
        argmax[i] = idx;
    }
}

// dx (N, C, H, W) zeroed by the caller; dout, argmax: (N, C, P, Q); total = N*C*P*Q.
// An index outside [0, HW) is skipped and sets *bad = 1 (the launcher raises).
template <typename T>
__global__ void maxpool2d_bwd_scatter(T* __restrict__ dx, int* __restrict__ bad,
                                      const T* __restrict__ dout,
                                      const long long* __restrict__ argmax, long long total,
                                      long long HW, long long PQ) {
    POOL_GRID_STRIDE(i, total) {
        const long long a = argmax[i];
        if (a < 0 || a >= HW) {
            *bad = 1;
            continue;
        }
        atomicAdd(dx + (i / PQ) * HW + a, dout[i]);
    }
}

// window rows [start, end) of output row p clipped to the padded input, and its divisor count
__device__ __forceinline__ void avg_window(int p, int s, int k, int pad, int n, int* start,
                                           int* end, int* padded) {
    int a = p * s - pad;
    int b = min(a + k, n + pad);              // never past the padded input
    *padded = b - a;
    *start = max(a, 0);
    *end = min(b, n);
}

__device__ __forceinline__ int avg_divisor(int divisor, int count_include_pad, int pool_h,
                                           int pool_w, int h0, int h1, int w0, int w1) {
    if (divisor != 0) return divisor;
    if (count_include_pad) return pool_h * pool_w;
    return (h1 - h0) * (w1 - w0);
}

// out: (N, C, P, Q); x: (N, C, H, W); total = N*C*P*Q; divisor = 0 means none
template <typename T>
__global__ void avgpool2d_fwd(T* __restrict__ out, const T* __restrict__ x, long long total,
                              int H, int W, int P, int Q, int kh, int kw, int sh, int sw, int ph,
                              int pw, int count_include_pad, int divisor) {
    POOL_GRID_STRIDE(i, total) {
        const int q = (int)(i % Q);
        const int p = (int)((i / Q) % P);
        const long long nc = i / ((long long)P * Q);
        const T* plane = x + nc * H * W;
        int h0, h1, pool_h, w0, w1, pool_w;
        avg_window(p, sh, kh, ph, H, &h0, &h1, &pool_h);
        avg_window(q, sw, kw, pw, W, &w0, &w1, &pool_w);
        T acc = 0;
        for (int h = h0; h < h1; ++h)
            for (int w = w0; w < w1; ++w) acc += plane[(long long)h * W + w];
        const int div = avg_divisor(divisor, count_include_pad, pool_h, pool_w, h0, h1, w0, w1);
        out[i] = div != 0 ? acc / (T)div : (T)0;
    }
}

// dx: (N, C, H, W); dout: (N, C, P, Q); total = N*C*H*W. Each input cell gathers
// dout / divisor from the windows that cover it (PyTorch's avg_pool2d_backward_out_cuda).
template <typename T>
__global__ void avgpool2d_bwd(T* __restrict__ dx, const T* __restrict__ dout, long long total,
                              int H, int W, int P, int Q, int kh, int kw, int sh, int sw, int ph,
                              int pw, int count_include_pad, int divisor) {
    POOL_GRID_STRIDE(i, total) {
        const int w = (int)(i % W);
        const int h = (int)((i / W) % H);
        const long long nc = i / ((long long)H * W);
        const T* g = dout + nc * P * Q;
        // windows p with p*sh - ph <= h < p*sh - ph + kh
        const int hp = h + ph, wp = w + pw;
        const int p0 = hp < kh ? 0 : (hp - kh) / sh + 1, p1 = min(hp / sh + 1, P);
        const int q0 = wp < kw ? 0 : (wp - kw) / sw + 1, q1 = min(wp / sw + 1, Q);
        T acc = 0;
        for (int p = p0; p < p1; ++p) {
            int h0, h1, pool_h;
            avg_window(p, sh, kh, ph, H, &h0, &h1, &pool_h);
            for (int q = q0; q < q1; ++q) {
                int w0, w1, pool_w;
                avg_window(q, sw, kw, pw, W, &w0, &w1, &pool_w);
                const int div =
                    avg_divisor(divisor, count_include_pad, pool_h, pool_w, h0, h1, w0, w1);
                if (div != 0) acc += g[(long long)p * Q + q] / (T)div;
            }
        }
        dx[i] = acc;
    }
}

// PyTorch's adaptive windows: [floor(i*n_in/n_out), ceil((i+1)*n_in/n_out))
__device__ __forceinline__ int adaptive_start(int i, int n_in, int n_out) {
    return (int)(((long long)i * n_in) / n_out);
}
__device__ __forceinline__ int adaptive_end(int i, int n_in, int n_out) {
    return (int)(((long long)(i + 1) * n_in + n_out - 1) / n_out);
}

// out: (N, C, P, Q); x: (N, C, H, W); total = N*C*P*Q
template <typename T>
__global__ void adaptive_avgpool2d_fwd(T* __restrict__ out, const T* __restrict__ x,
                                       long long total, int H, int W, int P, int Q) {
    POOL_GRID_STRIDE(i, total) {
        const int q = (int)(i % Q);
        const int p = (int)((i / Q) % P);
        const long long nc = i / ((long long)P * Q);
        const T* plane = x + nc * H * W;
        const int h0 = adaptive_start(p, H, P), h1 = adaptive_end(p, H, P);
        const int w0 = adaptive_start(q, W, Q), w1 = adaptive_end(q, W, Q);
        T acc = 0;
        for (int h = h0; h < h1; ++h)
            for (int w = w0; w < w1; ++w) acc += plane[(long long)h * W + w];
        out[i] = acc / (T)((h1 - h0) * (w1 - w0));
    }
}

// dx: (N, C, H, W); dout: (N, C, P, Q); total = N*C*H*W. Input row h lies in the windows of
// output rows [floor(h*P/H), ceil((h+1)*P/H)) (the same formula with the roles swapped).
template <typename T>
__global__ void adaptive_avgpool2d_bwd(T* __restrict__ dx, const T* __restrict__ dout,
                                       long long total, int H, int W, int P, int Q) {
    POOL_GRID_STRIDE(i, total) {
        const int w = (int)(i % W);
        const int h = (int)((i / W) % H);
        const long long nc = i / ((long long)H * W);
        const T* g = dout + nc * P * Q;
        const int p0 = adaptive_start(h, P, H), p1 = adaptive_end(h, P, H);
        const int q0 = adaptive_start(w, Q, W), q1 = adaptive_end(w, Q, W);
        T acc = 0;
        for (int p = p0; p < p1; ++p) {
            const int rows = adaptive_end(p, H, P) - adaptive_start(p, H, P);
            for (int q = q0; q < q1; ++q) {
                const int cols = adaptive_end(q, W, Q) - adaptive_start(q, W, Q);
                acc += g[(long long)p * Q + q] / (T)(rows * cols);
            }
        }
        dx[i] = acc;
    }
}

// ---------------------------------------------------------------------------------------------
// v2: plane groups on blockIdx.y, POOL2_ROWS vertically adjacent outputs per thread, 32-bit
// in-plane index math, unrolled 2x2/2 and 3x3/2 fast paths (see the header)
// ---------------------------------------------------------------------------------------------
#define POOL2_ROWS 2          // rows per thread; kernels/pool2d.py _CU_V2_ROWS must match

// This thread's item of a group of G planes, each split into ceil(rows/POOL2_ROWS) row chunks
// x cols columns: plane-in-group g, first row r0 of its chunk, column c. False past the group.
// G * chunks * cols fits an int (the launcher).
__device__ __forceinline__ bool pool2_item(int rows, int cols, int G, int* g, int* r0, int* c) {
    const int work = (rows + POOL2_ROWS - 1) / POOL2_ROWS * cols;
    const int t = (int)(blockIdx.x * blockDim.x + threadIdx.x);
    if (t >= G * work) return false;
    *g = t / work;
    const int u = t - *g * work;
    const int chunk = u / cols;
    *c = u - chunk * cols;
    *r0 = chunk * POOL2_ROWS;
    return true;
}

// planes g, g + G*gridDim.y, ... of this block's group offset
#define POOL2_PLANES(nc, NC, G, g)                                                          \
    for (long long nc = (long long)blockIdx.y * (G) + (g); nc < (NC);                       \
         nc += (long long)gridDim.y * (G))

template <typename T> struct Pool2Pair;
template <> struct Pool2Pair<float> { typedef float2 type; };
template <> struct Pool2Pair<double> { typedef double2 type; };

// p[0], p[1]: one 2-element load when pairs (p is then 2-element aligned), else two scalar loads
template <typename T>
__device__ __forceinline__ void pool2_load2(const T* __restrict__ p, int pairs, T& a, T& b) {
    if (pairs) {
        const typename Pool2Pair<T>::type v =
            __ldg(reinterpret_cast<const typename Pool2Pair<T>::type*>(p));
        a = v.x;
        b = v.y;
    } else {
        a = __ldg(p);
        b = __ldg(p + 1);
    }
}

// The input rows under the K x K / stride-2 windows of output rows p0 .. p0+nv-1, column q:
// rows 2*p0 .. 2*p0 + 2*(nv-1) + K - 1, columns 2q .. 2q + K - 1 (all inside the input).
template <typename T, int K>
__device__ __forceinline__ void pool2_load_windows(T (&a)[2 * (POOL2_ROWS - 1) + K][K],
                                                   const T* __restrict__ plane, int W, int p0,
                                                   int q, int nv, int pairs) {
    const int nr = 2 * (nv - 1) + K;
    const T* base = plane + (2 * p0) * W + 2 * q;
#pragma unroll
    for (int r = 0; r < 2 * (POOL2_ROWS - 1) + K; ++r) {
        if (r < nr) {
            const T* row = base + r * W;
#pragma unroll
            for (int s = 0; s + 1 < K; s += 2) pool2_load2(row + s, pairs, a[r][s], a[r][s + 1]);
            if (K % 2) a[r][K - 1] = __ldg(row + K - 1);
        } else {
#pragma unroll
            for (int s = 0; s < K; ++s) a[r][s] = (T)0;
        }
    }
}

// K x K / stride 2, no padding or dilation, windows inside the input
template <typename T, int K>
__device__ __forceinline__ void maxpool2_fast(T* __restrict__ out, long long* __restrict__ am,
                                              const T* __restrict__ plane, int W, int P, int Q,
                                              int p0, int q, int pairs) {
    const int nv = min(POOL2_ROWS, P - p0);
    T a[2 * (POOL2_ROWS - 1) + K][K];
    pool2_load_windows<T, K>(a, plane, W, p0, q, nv, pairs);
#pragma unroll
    for (int v = 0; v < POOL2_ROWS; ++v) {
        if (v >= nv) break;
        T m = a[2 * v][0];                    // = v1's -inf start, then the first cell
        int br = 0, bs = 0;
#pragma unroll
        for (int r = 0; r < K; ++r)
#pragma unroll
            for (int s = 0; s < K; ++s) {
                if (r == 0 && s == 0) continue;
                const T val = a[2 * v + r][s];
                if (val > m || val != val) {  // first maximum wins; NaN always wins
                    m = val;
                    br = r;
                    bs = s;
                }
            }
        const int o = (p0 + v) * Q + q;
        out[o] = m;
        am[o] = (long long)((2 * (p0 + v) + br) * W + 2 * q + bs);
    }
}

// any geometry: v1's window loop for outputs (p0, q) .. (p0+nv-1, q)
template <typename T>
__device__ __forceinline__ void maxpool2_generic(T* __restrict__ out, long long* __restrict__ am,
                                                 const T* __restrict__ plane, int H, int W,
                                                 int P, int Q, int p0, int q, int kh, int kw,
                                                 int sh, int sw, int ph, int pw, int dh,
                                                 int dw) {
    const int nv = min(POOL2_ROWS, P - p0);
    const int w0 = q * sw - pw;
    int ws = w0;
    while (ws < 0) ws += dw;
    for (int v = 0; v < nv; ++v) {
        const int h0 = (p0 + v) * sh - ph;
        int hs = h0;                          // first in-bounds cell (PyTorch's start index)
        while (hs < 0) hs += dh;
        T m = PoolLimits<T>::neg_inf();
        int idx = hs * W + ws;
        for (int r = 0; r < kh; ++r) {
            const int h = h0 + r * dh;
            if (h < 0 || h >= H) continue;
            const T* row = plane + h * W;
            for (int s = 0; s < kw; ++s) {
                const int w = w0 + s * dw;
                if (w < 0 || w >= W) continue;
                const T val = __ldg(row + w);
                if (val > m || val != val) {
                    m = val;
                    idx = h * W + w;
                }
            }
        }
        const int o = (p0 + v) * Q + q;
        out[o] = m;
        am[o] = (long long)idx;
    }
}

// out, argmax: (N, C, P, Q); x: (N, C, H, W); NC = N*C planes in groups of G.
// FAST: 2 or 3 = the K x K / stride-2 fast path (the launcher checked that it applies), 0 =
// generic; one instantiation each, so a path's registers do not limit another's occupancy.
// pairs: rows of x are 2-element aligned (W even and x aligned to 2 elements).
template <typename T, int FAST>
__global__ void maxpool2d_fwd_v2(T* __restrict__ out, long long* __restrict__ argmax,
                                 const T* __restrict__ x, long long NC, int G, int H, int W,
                                 int P, int Q, int kh, int kw, int sh, int sw, int ph, int pw,
                                 int dh, int dw, int pairs) {
    int g, p0, q;
    if (!pool2_item(P, Q, G, &g, &p0, &q)) return;
    const long long HW = (long long)H * W, PQ = (long long)P * Q;
    POOL2_PLANES(nc, NC, G, g) {
        const T* plane = x + nc * HW;
        T* o = out + nc * PQ;
        long long* a = argmax + nc * PQ;
        if constexpr (FAST != 0)
            maxpool2_fast<T, FAST>(o, a, plane, W, P, Q, p0, q, pairs);
        else
            maxpool2_generic<T>(o, a, plane, H, W, P, Q, p0, q, kh, kw, sh, sw, ph, pw, dh, dw);
    }
}

// K x K / stride 2, no padding, windows inside the input: the divisor is divisor_override or
// K*K whatever count_include_pad says (v1's count of a full window)
template <typename T, int K>
__device__ __forceinline__ void avgpool2_fast(T* __restrict__ out, const T* __restrict__ plane,
                                              int W, int P, int Q, int p0, int q, int pairs,
                                              int divisor) {
    const int nv = min(POOL2_ROWS, P - p0);
    T a[2 * (POOL2_ROWS - 1) + K][K];
    pool2_load_windows<T, K>(a, plane, W, p0, q, nv, pairs);
    const T div = (T)(divisor != 0 ? divisor : K * K);
#pragma unroll
    for (int v = 0; v < POOL2_ROWS; ++v) {
        if (v >= nv) break;
        T acc = 0;                            // v1's order: row by row, left to right
#pragma unroll
        for (int r = 0; r < K; ++r)
#pragma unroll
            for (int s = 0; s < K; ++s) acc += a[2 * v + r][s];
        out[(p0 + v) * Q + q] = acc / div;
    }
}

template <typename T>
__device__ __forceinline__ void avgpool2_generic(T* __restrict__ out,
                                                 const T* __restrict__ plane, int H, int W,
                                                 int P, int Q, int p0, int q, int kh, int kw,
                                                 int sh, int sw, int ph, int pw,
                                                 int count_include_pad, int divisor) {
    const int nv = min(POOL2_ROWS, P - p0);
    int w0, w1, pool_w;
    avg_window(q, sw, kw, pw, W, &w0, &w1, &pool_w);
    for (int v = 0; v < nv; ++v) {
        int h0, h1, pool_h;
        avg_window(p0 + v, sh, kh, ph, H, &h0, &h1, &pool_h);
        T acc = 0;
        for (int h = h0; h < h1; ++h) {
            const T* row = plane + h * W;
            for (int w = w0; w < w1; ++w) acc += __ldg(row + w);
        }
        const int div = avg_divisor(divisor, count_include_pad, pool_h, pool_w, h0, h1, w0, w1);
        out[(p0 + v) * Q + q] = div != 0 ? acc / (T)div : (T)0;
    }
}

// out: (N, C, P, Q); x: (N, C, H, W); NC, G, FAST, pairs as maxpool2d_fwd_v2; divisor 0 = none
template <typename T, int FAST>
__global__ void avgpool2d_fwd_v2(T* __restrict__ out, const T* __restrict__ x, long long NC,
                                 int G, int H, int W, int P, int Q, int kh, int kw, int sh,
                                 int sw, int ph, int pw, int count_include_pad, int divisor,
                                 int pairs) {
    int g, p0, q;
    if (!pool2_item(P, Q, G, &g, &p0, &q)) return;
    const long long HW = (long long)H * W, PQ = (long long)P * Q;
    POOL2_PLANES(nc, NC, G, g) {
        const T* plane = x + nc * HW;
        T* o = out + nc * PQ;
        if constexpr (FAST != 0)
            avgpool2_fast<T, FAST>(o, plane, W, P, Q, p0, q, pairs, divisor);
        else
            avgpool2_generic<T>(o, plane, H, W, P, Q, p0, q, kh, kw, sh, sw, ph, pw,
                                count_include_pad, divisor);
    }
}

// dx: (N, C, H, W); dout: (N, C, P, Q); NC planes in groups of G, items = input cells
// (h0, w), (h0+1, w). v1's gather; the column window range is computed once per thread.
template <typename T>
__global__ void avgpool2d_bwd_v2(T* __restrict__ dx, const T* __restrict__ dout, long long NC,
                                 int G, int H, int W, int P, int Q, int kh, int kw, int sh,
                                 int sw, int ph, int pw, int count_include_pad, int divisor) {
    int g, h0, w;
    if (!pool2_item(H, W, G, &g, &h0, &w)) return;
    const int wp = w + pw;
    const int q0 = wp < kw ? 0 : (wp - kw) / sw + 1, q1 = min(wp / sw + 1, Q);
    const int nv = min(POOL2_ROWS, H - h0);
    const long long HW = (long long)H * W, PQ = (long long)P * Q;
    POOL2_PLANES(nc, NC, G, g) {
        const T* gp = dout + nc * PQ;
        T* d = dx + nc * HW;
        for (int v = 0; v < nv; ++v) {
            const int hp = h0 + v + ph;
            const int p0 = hp < kh ? 0 : (hp - kh) / sh + 1, p1 = min(hp / sh + 1, P);
            T acc = 0;
            for (int p = p0; p < p1; ++p) {
                int a0, a1, pool_h;
                avg_window(p, sh, kh, ph, H, &a0, &a1, &pool_h);
                const T* grow = gp + p * Q;
                for (int q = q0; q < q1; ++q) {
                    int b0, b1, pool_w;
                    avg_window(q, sw, kw, pw, W, &b0, &b1, &pool_w);
                    const int div =
                        avg_divisor(divisor, count_include_pad, pool_h, pool_w, a0, a1, b0, b1);
                    if (div != 0) acc += __ldg(grow + q) / (T)div;
                }
            }
            d[(h0 + v) * W + w] = acc;
        }
    }
}
