// Recurrent cells batched across sentences (kernels/recurrent_cuda.py, "CUDA launchers"):
// rnn_tanh, rnn_relu, lstm, gru; forward and backward time steps. Equations, gate order, the
// cache layout and the lengths / reverse / bptt_steps semantics are kernels/recurrent.py's:
//   xg      (T, N, G*Hd) input projection x W_ih^T + b_ih (ONE GEMM by the launcher)
//   hprev   (T, N, Hd)   state entering each step          gates (T, N, G*Hd) post-activation
//   cprev   (T, N, Hd)   lstm cell state entering a step   aux   (T, N, Hd) lstm tanh(c_t) /
//                                                                gru hn = W_hn h + b_hn
//   for rnn_* the "gates" cache is y itself (post-activation h), never written separately.
// Padded steps (t >= lengths[n]) write y = 0, zero caches, carry h (and c); backward writes
// zero pre-activation gradients for them and carries dh (and dc).
//
// v1 (cuBLAS / host GEMM + fused elementwise), one thread per (sentence n, hidden unit u):
//   rnn_fwd_pointwise  gates + state update of step t from hg = h_{t-1} W_hh^T (bias added here)
//   rnn_bwd_pointwise  finishes step tp's dh_prev = direct + (dgh_tp @ W_hh) [mm, a GEMM by the
//                      launcher] and runs step t's elementwise backward (one launch per step).
// v2 (hand-tiled GEMM fused with the elementwise part; one launch per step):
//   rnn_fwd_fused<T, G>  block = 32 hidden units x 32 sentences, 256 threads (32 x 8); each thread
//                  owns unit u for 4 sentences and accumulates ALL G gates of u, so the gate
//                  epilogue runs in registers (no global round trip of hg). Per 32-deep stage the
//                  block stages W_hh rows {g*Hd + u} (G*32 x 32, padded) and h_{t-1} (32 x 32)
//                  in shared memory.
//   rnn_bwd_fused  the same block shape for dh_prev[n, u] = sum_m dgh_tp[n, m] W_hh[m, u]
//                  (reduction over G*Hd, 32-deep stages of dgh and W_hh in shared memory),
//                  whose epilogue completes dh for unit u and then runs step t's elementwise
//                  backward for unit u: the thread that owns dh[n, u] also owns every gate of u.
// Every kernel reads h / dgh of the previous step from global memory written by the previous
// launch: steps are ordered by the launches (stream order), never inside a kernel.
//
// Self-contained CUDA C (no #include). Offsets into (T, N, *) arrays are 64-bit.
//
// seqgrid: instantiate rnn_fwd_pointwise<float>
// seqgrid: instantiate rnn_fwd_pointwise<double>
// seqgrid: instantiate rnn_bwd_pointwise<float>
// seqgrid: instantiate rnn_bwd_pointwise<double>
// seqgrid: instantiate rnn_fwd_fused<float, 1>
// seqgrid: instantiate rnn_fwd_fused<float, 3>
// seqgrid: instantiate rnn_fwd_fused<float, 4>
// seqgrid: instantiate rnn_fwd_fused<double, 1>
// seqgrid: instantiate rnn_fwd_fused<double, 3>
// seqgrid: instantiate rnn_fwd_fused<double, 4>
// seqgrid: instantiate rnn_bwd_fused<float>
// seqgrid: instantiate rnn_bwd_fused<double>

// T steps, N batch, Hd hidden, G gates (rnn 1, lstm 4, gru 3), u hidden unit, n sentence

#define RNN_TANH 0
#define RNN_RELU 1
#define RNN_LSTM 2
#define RNN_GRU 3

#define RNN_BU 32                    // v2: hidden units per block (threadIdx.x)
#define RNN_BY 8                     // v2: threadIdx.y
#define RNN_RN 4                     // v2: sentences per thread (rows ty, ty+8, ty+16, ty+24)
#define RNN_BM (RNN_BY * RNN_RN)     // v2: sentences per block
#define RNN_BK 32                    // v2: reduction depth of one shared-memory stage
#define RNN_THREADS (RNN_BU * RNN_BY)

template <typename T> struct RnnMath;
template <> struct RnnMath<float> {
    static __device__ __forceinline__ float ex(float a) { return expf(a); }
    static __device__ __forceinline__ float th(float a) { return tanhf(a); }
};
template <> struct RnnMath<double> {
    static __device__ __forceinline__ double ex(double a) { return exp(a); }
    static __device__ __forceinline__ double th(double a) { return tanh(a); }
};

template <typename T>
__device__ __forceinline__ T rnn_sigmoid(T a) {
    return T(1) / (T(1) + RnnMath<T>::ex(-a));
}

__device__ __forceinline__ int rnn_gates(int cell) {
    return cell == RNN_LSTM ? 4 : (cell == RNN_GRU ? 3 : 1);
}

// truncated BPTT: the state entering step s (s counted per sentence in processing order) is a
// constant for s = k, 2k, ...; called for valid steps only
__device__ __forceinline__ bool rnn_bptt_cut(int t, long long len, int reverse, int k) {
    if (k <= 0) return false;
    const long long s = reverse ? len - 1 - t : (long long)t;
    return s > 0 && s % k == 0;
}

// Everything forward step t writes for unit u of sentence n: caches, y, the new state.
// p0..p3: hidden pre-activations (h_{t-1} W_hh^T + b_hh) of the unit's gates.
template <typename T>
__device__ __forceinline__ void rnn_fwd_unit(int cell, int t, int n, int u, int N, int Hd,
                                             bool valid, const T* __restrict__ xg, T p0, T p1,
                                             T p2, T p3, const T* hin, T* hout, T* c, T* y,
                                             T* hprev, T* gates, T* cprev, T* aux) {
    const int G = rnn_gates(cell);
    const long long row = (long long)t * N + n;          // (t, n) row of the (T, N, *) arrays
    const long long su = (long long)n * Hd + u;          // (n, u) of the (N, Hd) state
    const long long ru = row * Hd + u;                    // (t, n, u) of the (T, N, Hd) arrays
    const T* xr = xg + row * G * Hd + u;
    T* gr = gates + row * G * Hd + u;
    const T hp = hin[su];
    hprev[ru] = hp;
    T cp = T(0);
    if (cell == RNN_LSTM) {
        cp = c[su];
        cprev[ru] = cp;
    }
    if (!valid) {                                         // padded step: state carried
        y[ru] = T(0);
        hout[su] = hp;
        if (cell >= RNN_LSTM) {
            for (int g = 0; g < G; ++g) gr[(long long)g * Hd] = T(0);
            aux[ru] = T(0);
        }
        return;
    }
    T h;
    if (cell == RNN_TANH) {
        h = RnnMath<T>::th(xr[0] + p0);
    } else if (cell == RNN_RELU) {
        const T a = xr[0] + p0;
        h = a > T(0) ? a : T(0);
    } else if (cell == RNN_LSTM) {
        const T i = rnn_sigmoid(xr[0] + p0);
        const T f = rnn_sigmoid(xr[Hd] + p1);
        const T g = RnnMath<T>::th(xr[2 * Hd] + p2);
        const T o = rnn_sigmoid(xr[3 * Hd] + p3);
        const T cn = f * cp + i * g;
        const T tc = RnnMath<T>::th(cn);
        h = o * tc;
        gr[0] = i;
        gr[Hd] = f;
        gr[2 * Hd] = g;
        gr[3 * Hd] = o;
        aux[ru] = tc;
        c[su] = cn;
    } else {
        const T r = rnn_sigmoid(xr[0] + p0);
        const T z = rnn_sigmoid(xr[Hd] + p1);
        const T nn = RnnMath<T>::th(xr[2 * Hd] + r * p2);
        h = (T(1) - z) * nn + z * hp;
        gr[0] = r;
        gr[Hd] = z;
        gr[2 * Hd] = nn;
        aux[ru] = p2;
    }
    y[ru] = h;                                            // rnn_*: y is also the gates cache
    hout[su] = h;
}

// Elementwise backward of step t for unit u of sentence n, from dh = dL/dh_t (excluding dy):
// writes the pre-activation gradients dgx (and dgh, GRU only: dgh_n = dgx_n * r), the part of
// dh_{t-1} that does not go through W_hh (direct: GRU's dh*z, else 0) and dc_{t-1} (LSTM,
// zeroed at a truncation point). Padded steps write zeros and leave dc alone.
template <typename T>
__device__ __forceinline__ void rnn_bwd_unit(int cell, int t, int n, int u, int N, int Hd,
                                             bool valid, bool cut, T dh, T* dc, T* direct,
                                             T* dgx, T* dgh, const T* dy, int has_dy,
                                             const T* hprev, const T* gates, const T* cprev,
                                             const T* aux) {
    const int G = rnn_gates(cell);
    const long long row = (long long)t * N + n;
    const long long su = (long long)n * Hd + u;
    const long long ru = row * Hd + u;
    T* gx = dgx + row * G * Hd + u;
    T* gh = dgh + row * G * Hd + u;
    if (!valid) {                                         // no gradient from padded steps
        for (int g = 0; g < G; ++g) gx[(long long)g * Hd] = T(0);
        if (cell == RNN_GRU)
            for (int g = 0; g < G; ++g) gh[(long long)g * Hd] = T(0);
        direct[su] = T(0);
        return;
    }
    const T d = has_dy ? dh + dy[ru] : dh;
    const T* gr = gates + row * G * Hd + u;
    T dir = T(0);
    if (cell == RNN_TANH) {
        const T hv = gr[0];
        gx[0] = d * (T(1) - hv * hv);
    } else if (cell == RNN_RELU) {
        gx[0] = gr[0] > T(0) ? d : T(0);
    } else if (cell == RNN_LSTM) {
        const T i = gr[0], f = gr[Hd], g = gr[2 * Hd], o = gr[3 * Hd];
        const T tc = aux[ru];
        const T dct = dc[su] + d * o * (T(1) - tc * tc);
        gx[0] = dct * g * i * (T(1) - i);
        gx[Hd] = dct * cprev[ru] * f * (T(1) - f);
        gx[2 * Hd] = dct * i * (T(1) - g * g);
        gx[3 * Hd] = d * tc * o * (T(1) - o);
        dc[su] = cut ? T(0) : dct * f;
    } else {
        const T r = gr[0], z = gr[Hd], nn = gr[2 * Hd];
        const T dan = d * (T(1) - z) * (T(1) - nn * nn);
        const T dar = dan * aux[ru] * r * (T(1) - r);
        const T daz = d * (hprev[ru] - nn) * z * (T(1) - z);
        gx[0] = dar;
        gx[Hd] = daz;
        gx[2 * Hd] = dan;
        gh[0] = dar;
        gh[Hd] = daz;
        gh[2 * Hd] = dan * r;
        dir = d * z;
    }
    direct[su] = dir;
}

// dh_{tp-1} of unit u, sentence n from step tp's direct part and mm = (dgh_tp @ W_hh)[n, u];
// padded steps pass dh through, truncation points drop it.
template <typename T>
__device__ __forceinline__ T rnn_bwd_finish(int tp, int n, int u, int Hd, T mm, T* dh,
                                            const T* direct, const long long* lengths,
                                            int reverse, int bptt) {
    const long long su = (long long)n * Hd + u;
    const long long len = lengths[n];
    if (tp < len) {
        dh[su] = rnn_bptt_cut(tp, len, reverse, bptt) ? T(0) : direct[su] + mm;
    }
    return dh[su];
}

// ---------------------------------------------------------------------------------------------
// v1: elementwise kernels around a cuBLAS GEMM. hg (N, G*Hd) = h_{t-1} W_hh^T (no bias).
// ---------------------------------------------------------------------------------------------
template <typename T>
__global__ void rnn_fwd_pointwise(T* hout, T* c, T* y, T* hprev, T* gates, T* cprev, T* aux,
                                  const T* __restrict__ xg, const T* __restrict__ hg,
                                  const T* __restrict__ b_hh, int has_bhh, const T* hin,
                                  const long long* __restrict__ lengths, int cell, int t, int N,
                                  int Hd) {
    const int G = rnn_gates(cell);
    const long long total = (long long)N * Hd;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (long long)blockDim.x * gridDim.x) {
        const int n = (int)(i / Hd), u = (int)(i % Hd);
        const T* hr = hg + (long long)n * G * Hd + u;
        T p[4] = {T(0), T(0), T(0), T(0)};
        for (int g = 0; g < G; ++g)
            p[g] = hr[(long long)g * Hd] + (has_bhh ? b_hh[g * Hd + u] : T(0));
        rnn_fwd_unit(cell, t, n, u, N, Hd, t < lengths[n], xg, p[0], p[1], p[2], p[3], hin,
                     hout, c, y, hprev, gates, cprev, aux);
    }
}

// tp >= 0: first finish step tp with mm (N, Hd) = dgh[tp] @ W_hh; t >= 0: then run step t.
template <typename T>
__global__ void rnn_bwd_pointwise(T* dh, T* dc, T* direct, T* dgx, T* dgh,
                                  const T* __restrict__ mm, const T* dy, int has_dy,
                                  const T* hprev, const T* gates, const T* cprev, const T* aux,
                                  const long long* __restrict__ lengths, int cell, int tp, int t,
                                  int reverse, int bptt, int N, int Hd) {
    const long long total = (long long)N * Hd;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (long long)blockDim.x * gridDim.x) {
        const int n = (int)(i / Hd), u = (int)(i % Hd);
        T d = dh[i];
        if (tp >= 0) d = rnn_bwd_finish(tp, n, u, Hd, mm[i], dh, direct, lengths, reverse, bptt);
        if (t >= 0) {
            const long long len = lengths[n];
            const bool valid = t < len;
            rnn_bwd_unit(cell, t, n, u, N, Hd, valid,
                         valid && rnn_bptt_cut(t, len, reverse, bptt), d, dc, direct, dgx, dgh,
                         dy, has_dy, hprev, gates, cprev, aux);
        }
    }
}

// v2's epilogues call the unit bodies through these out-of-line copies: inlined into the
// unrolled RNN_RN loop of every <T, G> instantiation they made NVRTC take ~80 s for this file
// (3.6 s out of line); v1's one-unit-per-thread kernels keep the inlined bodies.
template <typename T>
__device__ __noinline__ void rnn_fwd_unit_call(int cell, int t, int n, int u, int N, int Hd,
                                               bool valid, const T* __restrict__ xg, T p0, T p1,
                                               T p2, T p3, const T* hin, T* hout, T* c, T* y,
                                               T* hprev, T* gates, T* cprev, T* aux) {
    rnn_fwd_unit(cell, t, n, u, N, Hd, valid, xg, p0, p1, p2, p3, hin, hout, c, y, hprev, gates,
                 cprev, aux);
}

template <typename T>
__device__ __noinline__ void rnn_bwd_unit_call(int cell, int t, int n, int u, int N, int Hd,
                                               bool valid, bool cut, T dh, T* dc, T* direct,
                                               T* dgx, T* dgh, const T* dy, int has_dy,
                                               const T* hprev, const T* gates, const T* cprev,
                                               const T* aux) {
    rnn_bwd_unit(cell, t, n, u, N, Hd, valid, cut, dh, dc, direct, dgx, dgh, dy, has_dy, hprev,
                 gates, cprev, aux);
}

// ---------------------------------------------------------------------------------------------
// v2: one launch per step, tiled GEMM fused with the elementwise part.
// grid (ceil(Hd / 32), ceil(N / 32)), block (32, 8).
// ---------------------------------------------------------------------------------------------
// G (gates per unit, = rnn_gates(cell)) is a template argument so the accumulators of the
// gates stay in registers and rnn cells do not pay for four.
template <typename T, int G>
__global__ void __launch_bounds__(RNN_THREADS)
rnn_fwd_fused(T* hout, T* c, T* y, T* hprev, T* gates, T* cprev, T* aux,
              const T* __restrict__ xg, const T* __restrict__ w_hh, const T* __restrict__ b_hh,
              int has_bhh, const T* hin, const long long* __restrict__ lengths, int cell, int t,
              int N, int Hd) {
    // +1 column: lanes read ws[g*32 + tx][k] (stride 33 words: distinct banks)
    __shared__ T ws[G * RNN_BU][RNN_BK + 1];
    __shared__ T hs[RNN_BM][RNN_BK + 1];
    const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * RNN_BU + tx;
    const int u0 = blockIdx.x * RNN_BU, n0 = blockIdx.y * RNN_BM;
    T acc[RNN_RN][G];
#pragma unroll
    for (int r = 0; r < RNN_RN; ++r)
#pragma unroll
        for (int g = 0; g < G; ++g) acc[r][g] = T(0);

    for (int k0 = 0; k0 < Hd; k0 += RNN_BK) {
        // W_hh rows g*Hd + u0 + jl, columns k0..k0+31: consecutive threads, consecutive k
        for (int idx = tid; idx < G * RNN_BU * RNN_BK; idx += RNN_THREADS) {
            const int kk = idx % RNN_BK, r = idx / RNN_BK;
            const int g = r / RNN_BU, u = u0 + r % RNN_BU, k = k0 + kk;
            ws[r][kk] = (u < Hd && k < Hd) ? w_hh[((long long)g * Hd + u) * Hd + k] : T(0);
        }
        for (int idx = tid; idx < RNN_BM * RNN_BK; idx += RNN_THREADS) {
            const int kk = idx % RNN_BK, r = idx / RNN_BK;
            const int n = n0 + r, k = k0 + kk;
            hs[r][kk] = (n < N && k < Hd) ? hin[(long long)n * Hd + k] : T(0);
        }
        __syncthreads();
#pragma unroll 4
        for (int kk = 0; kk < RNN_BK; ++kk) {
            T w[G];
#pragma unroll
            for (int g = 0; g < G; ++g) w[g] = ws[g * RNN_BU + tx][kk];
#pragma unroll
            for (int r = 0; r < RNN_RN; ++r) {
                const T hv = hs[ty + r * RNN_BY][kk];     // broadcast: one ty per warp
#pragma unroll
                for (int g = 0; g < G; ++g) acc[r][g] += hv * w[g];
            }
        }
        __syncthreads();                                   // before the next stage overwrites
    }

    const int u = u0 + tx;
    if (u >= Hd) return;
    T p[4] = {T(0), T(0), T(0), T(0)};
#pragma unroll
    for (int r = 0; r < RNN_RN; ++r) {
        const int n = n0 + ty + r * RNN_BY;
        if (n >= N) break;
#pragma unroll
        for (int g = 0; g < G; ++g) p[g] = acc[r][g] + (has_bhh ? b_hh[g * Hd + u] : T(0));
        rnn_fwd_unit_call(cell, t, n, u, N, Hd, t < lengths[n], xg, p[0], p[1], p[2], p[3], hin,
                          hout, c, y, hprev, gates, cprev, aux);
    }
}

// tp >= 0: finish step tp (dh_prev = direct + dgh[tp] @ W_hh for this block's units, tiled);
// t >= 0: then run step t's elementwise backward for the same units. dh is only touched by the
// thread that owns (n, u), so no barrier separates the two parts.
template <typename T>
__global__ void __launch_bounds__(RNN_THREADS)
rnn_bwd_fused(T* dh, T* dc, T* direct, T* dgx, T* dgh, const T* __restrict__ w_hh,
              const T* dy, int has_dy, const T* hprev, const T* gates, const T* cprev,
              const T* aux, const long long* __restrict__ lengths, int cell, int tp, int t,
              int reverse, int bptt, int N, int Hd) {
    __shared__ T as[RNN_BM][RNN_BK + 1];                // dgh[tp] rows n0.., columns m0..
    __shared__ T bs[RNN_BK][RNN_BU];                    // W_hh rows m0.., columns u0..
    const int G = rnn_gates(cell);
    const int GHd = G * Hd;
    const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * RNN_BU + tx;
    const int u0 = blockIdx.x * RNN_BU, n0 = blockIdx.y * RNN_BM;
    const int u = u0 + tx;
    T acc[RNN_RN];
#pragma unroll
    for (int r = 0; r < RNN_RN; ++r) acc[r] = T(0);

    if (tp >= 0) {                                      // uniform over the grid
        const T* dg = dgh + (long long)tp * N * GHd;
        for (int m0 = 0; m0 < GHd; m0 += RNN_BK) {
            for (int idx = tid; idx < RNN_BM * RNN_BK; idx += RNN_THREADS) {
                const int kk = idx % RNN_BK, r = idx / RNN_BK;
                const int n = n0 + r, m = m0 + kk;
                as[r][kk] = (n < N && m < GHd) ? dg[(long long)n * GHd + m] : T(0);
            }
            for (int idx = tid; idx < RNN_BK * RNN_BU; idx += RNN_THREADS) {
                const int jl = idx % RNN_BU, kk = idx / RNN_BU;
                const int m = m0 + kk, uu = u0 + jl;
                bs[kk][jl] = (m < GHd && uu < Hd) ? w_hh[(long long)m * Hd + uu] : T(0);
            }
            __syncthreads();
#pragma unroll 4
            for (int kk = 0; kk < RNN_BK; ++kk) {
                const T wv = bs[kk][tx];
#pragma unroll
                for (int r = 0; r < RNN_RN; ++r) acc[r] += as[ty + r * RNN_BY][kk] * wv;
            }
            __syncthreads();
        }
    }

    if (u >= Hd) return;
#pragma unroll
    for (int r = 0; r < RNN_RN; ++r) {
        const int n = n0 + ty + r * RNN_BY;
        if (n >= N) break;
        T d = dh[(long long)n * Hd + u];
        if (tp >= 0) d = rnn_bwd_finish(tp, n, u, Hd, acc[r], dh, direct, lengths, reverse, bptt);
        if (t >= 0) {
            const long long len = lengths[n];
            const bool valid = t < len;
            rnn_bwd_unit_call(cell, t, n, u, N, Hd, valid,
                              valid && rnn_bptt_cut(t, len, reverse, bptt), d, dc, direct, dgx,
                              dgh, dy, has_dy, hprev, gates, cprev, aux);
        }
    }
}
