// 2-d pooling on NCHW arrays (kernels/pool2d.py, "CUDA launchers"): max, average and adaptive
// average, forward and backward. Semantics are PyTorch's, identical to the NumPy reference:
//   max:      padding never selected; argmax = flat index h*W + w into the input plane; the
//             first maximum in window order wins, a NaN wins (the last NaN); a window of -inf
//             keeps the first in-bounds cell.
//   avg:      window rows p*sh-ph .. +kh clipped to the padded input (ceil_mode's partial last
//             window); divisor = divisor_override, else cells in the padded window
//             (count_include_pad) or in the input.
//   adaptive: output row p averages input rows floor(p*H/P) .. ceil((p+1)*H/P) - 1.
// One thread per output element (forward) or per input element (backward), grid-stride
// loops, 64-bit element indices (N*C*H*W may exceed 2^31; H*W, P*Q per plane must not).
// Backward kernels gather (deterministic, no atomics) except max backward: its op signature
// (dout, argmax, x_shape) carries no window geometry, so it scatter-adds dout at argmax with
// atomicAdd (float64 atomicAdd needs sm_60+). dx must be zeroed by the caller.
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
