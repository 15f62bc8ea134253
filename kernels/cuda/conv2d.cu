// 2-d convolution (cross-correlation) on NCHW input, KCRS weights (kernels/conv2d.py, "CUDA
// launchers"): forward, backward-data, backward-weight and the bias gradient. Semantics are the
// NumPy reference's:
//   out[n,k,p,q] = bias[k] + sum_{c,r,s} w[k,c,r,s] * x[n, c, p*sh - ph + r*dh, q*sw - pw + s*dw]
// with terms outside the input skipped (zero padding).
//
// v1 direct:  one thread per output element (forward: (n,k,p,q); backward-data: (n,c,h,w)
//             gathering over the taps (k,r,s) that reach it), grid-stride loops over 64-bit
//             indices; backward-weight: one block per (k,c,r,s) reducing over (n,p,q) in shared
//             memory. Deterministic, no atomics.
// v2 tiled:   implicit GEMM (the im2col matrix is gathered into shared memory, never stored),
//             64x64 output tile per block of 256 threads, 16-deep reduction steps, a 4x4
//             register tile per thread (rows ty + 16*i, columns tx + 16*j):
//   forward   out (K, N*P*Q)  = W (K, C*R*S) @ col (C*R*S, N*P*Q)
//   bwd-data  dx  (C, N*H*W)  = W^T (C, K*R*S) @ dout gathered (K*R*S, N*H*W), split into the
//             sh*sw stride phases (blockIdx.z): input rows h with (h+ph) % sh == a are reached
//             only by the taps r with r*dh % sh == a (an arithmetic progression), so each phase
//             is a dense GEMM over its valid taps only (no zeros from the stride's holes)
//   bwd-wt    dW  (K, C*R*S) += dout (K, N*P*Q) @ col^T (N*P*Q, C*R*S); the N*P*Q reduction is
//             split over blockIdx.z into a workspace summed in a fixed order afterwards
//             (deterministic), or accumulated straight into dW with one split.
// v3 forward: register-blocked implicit GEMM (classic SGEMM structure), same GEMM as v2 forward;
//             a BM x BN output tile per block of 256 threads, TM x TN per thread (rows
//             g*4*TY + ty*4 + {0..3}, columns g*4*TX + tx*4 + {0..3}), 8-deep reduction stages
//             double-buffered in shared memory (the global loads of stage t+1 are in flight in
//             registers while stage t is computed; one barrier per stage), A stored transposed
//             so both operands are read as 4-vectors, bias in the epilogue, 4-vector stores.
//             Tiles: <128,128,8,8>, <64,64,4,4>, <32,128,4,4> (chosen by the launcher). The
//             im2col gather computes each thread's column (n,p,q) -> input offset, h0, w0 once
//             and reads the stage's reduction rows (c,r,s) from a per-stage table in shared
//             memory (no division in the loop); 1x1 / stride 1 / unpadded convolutions with
//             P*Q % 4 == 0 and an aligned x load 4 contiguous columns as one 16-byte vector.
//             Backward: v2's kernels.
// Parameter gradients accumulate (+=) into the caller's arrays; dx and out are overwritten.
// Accumulation is in T (float for float32). Element offsets are 64-bit (a tensor may exceed
// 2^31 elements; v3 forward: 32-bit, the launcher uses v2 for such tensors); per-tensor
// dimensions and C*R*S, K*R*S must fit an int.
//
// Self-contained CUDA C (no #include).
//
// seqgrid: instantiate conv2d_fwd_direct<float>
// seqgrid: instantiate conv2d_fwd_direct<double>
// seqgrid: instantiate conv2d_bwd_data_direct<float>
// seqgrid: instantiate conv2d_bwd_data_direct<double>
// seqgrid: instantiate conv2d_bwd_weight_direct<float>
// seqgrid: instantiate conv2d_bwd_weight_direct<double>
// seqgrid: instantiate conv2d_bwd_bias<float>
// seqgrid: instantiate conv2d_bwd_bias<double>
// seqgrid: instantiate conv2d_fwd_tiled<float>
// seqgrid: instantiate conv2d_fwd_tiled<double>
// seqgrid: instantiate conv2d_bwd_data_tiled<float>
// seqgrid: instantiate conv2d_bwd_data_tiled<double>
// seqgrid: instantiate conv2d_bwd_weight_tiled<float>
// seqgrid: instantiate conv2d_bwd_weight_tiled<double>
// seqgrid: instantiate conv2d_add_splits<float>
// seqgrid: instantiate conv2d_add_splits<double>
// seqgrid: instantiate conv2d_fwd_gemm<float, 128, 128, 8, 8>
// seqgrid: instantiate conv2d_fwd_gemm<float, 64, 64, 4, 4>
// seqgrid: instantiate conv2d_fwd_gemm<float, 32, 128, 4, 4>
// seqgrid: instantiate conv2d_fwd_gemm<double, 128, 128, 8, 8>
// seqgrid: instantiate conv2d_fwd_gemm<double, 64, 64, 4, 4>
// seqgrid: instantiate conv2d_fwd_gemm<double, 32, 128, 4, 4>
// seqgrid: instantiate conv2d_wino_input<float>
// seqgrid: instantiate conv2d_wino_input<double>
// seqgrid: instantiate conv2d_wino_weight<float>
// seqgrid: instantiate conv2d_wino_weight<double>
// seqgrid: instantiate conv2d_wino_output<float>
// seqgrid: instantiate conv2d_wino_output<double>
// seqgrid: instantiate conv2d_wino_dout<float>
// seqgrid: instantiate conv2d_wino_dout<double>
// seqgrid: instantiate conv2d_wino_weight_grad<float>
// seqgrid: instantiate conv2d_wino_weight_grad<double>
// seqgrid: instantiate conv2d_add_splits_cols<float>
// seqgrid: instantiate conv2d_add_splits_cols<double>
// seqgrid: instantiate conv2d_bwd_gemm<float, 128, 128, 8, 8, 0>
// seqgrid: instantiate conv2d_bwd_gemm<float, 128, 128, 8, 8, 1>
// seqgrid: instantiate conv2d_bwd_gemm<float, 64, 64, 4, 4, 0>
// seqgrid: instantiate conv2d_bwd_gemm<float, 64, 64, 4, 4, 1>
// seqgrid: instantiate conv2d_bwd_gemm<float, 32, 128, 4, 4, 0>
// seqgrid: instantiate conv2d_bwd_gemm<float, 32, 128, 4, 4, 1>
// seqgrid: instantiate conv2d_bwd_gemm<double, 128, 128, 8, 8, 0>
// seqgrid: instantiate conv2d_bwd_gemm<double, 128, 128, 8, 8, 1>
// seqgrid: instantiate conv2d_bwd_gemm<double, 64, 64, 4, 4, 0>
// seqgrid: instantiate conv2d_bwd_gemm<double, 64, 64, 4, 4, 1>
// seqgrid: instantiate conv2d_bwd_gemm<double, 32, 128, 4, 4, 0>
// seqgrid: instantiate conv2d_bwd_gemm<double, 32, 128, 4, 4, 1>

// N batch, C in-ch, K out-ch, H W in, P Q out, R S filter, sh sw stride, ph pw pad, dh dw dilation

#define CONV_GRID_STRIDE(i, n)                                                             \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n);           \
         i += (long long)blockDim.x * gridDim.x)

// ---------------------------------------------------------------------------------------------
// block reduction (blockDim.x a power of two <= CONV_RED_THREADS); every thread gets the sum
// ---------------------------------------------------------------------------------------------
#define CONV_RED_THREADS 256

template <typename T>
__device__ __forceinline__ T conv_block_sum(T v, T* red) {
    const int tid = threadIdx.x;
    red[tid] = v;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half >>= 1) {
        if (tid < half) red[tid] += red[tid + half];
        __syncthreads();
    }
    return red[0];
}

// =============================================================================================
// v1 direct
// =============================================================================================

// out: (N, K, P, Q); x: (N, C, H, W); w: (K, C, R, S); bias: (K) read when has_bias != 0.
// total = N*K*P*Q.
template <typename T>
__global__ void conv2d_fwd_direct(T* __restrict__ out, const T* __restrict__ x,
                                  const T* __restrict__ w, const T* __restrict__ bias,
                                  int has_bias, long long total, int C, int H, int W, int K,
                                  int R, int S, int P, int Q, int sh, int sw, int ph, int pw,
                                  int dh, int dw) {
    CONV_GRID_STRIDE(i, total) {
        const int q = (int)(i % Q);
        const int p = (int)((i / Q) % P);
        const int k = (int)((i / ((long long)P * Q)) % K);
        const long long n = i / ((long long)P * Q * K);
        const int h0 = p * sh - ph, w0 = q * sw - pw;
        T acc = 0;
        for (int c = 0; c < C; ++c) {
            const T* xc = x + (n * C + c) * H * W;
            const T* wc = w + ((long long)k * C + c) * R * S;
            for (int r = 0; r < R; ++r) {
                const int h = h0 + r * dh;
                if (h < 0 || h >= H) continue;
                for (int s = 0; s < S; ++s) {
                    const int ww = w0 + s * dw;
                    if (ww < 0 || ww >= W) continue;
                    acc += wc[r * S + s] * xc[(long long)h * W + ww];
                }
            }
        }
        if (has_bias) acc += bias[k];
        out[i] = acc;
    }
}

// dx: (N, C, H, W); dout: (N, K, P, Q); w: (K, C, R, S); total = N*C*H*W. Each input element
// gathers w[k,c,r,s] * dout[n,k,p,q] over the taps with p*sh - ph + r*dh == h (same for w).
template <typename T>
__global__ void conv2d_bwd_data_direct(T* __restrict__ dx, const T* __restrict__ dout,
                                       const T* __restrict__ w, long long total, int C, int H,
                                       int W, int K, int R, int S, int P, int Q, int sh, int sw,
                                       int ph, int pw, int dh, int dw) {
    CONV_GRID_STRIDE(i, total) {
        const int x_w = (int)(i % W);
        const int x_h = (int)((i / W) % H);
        const int c = (int)((i / ((long long)H * W)) % C);
        const long long n = i / ((long long)H * W * C);
        T acc = 0;
        for (int r = 0; r < R; ++r) {
            const int hp = x_h + ph - r * dh;          // = p * sh
            if (hp < 0 || hp % sh != 0) continue;
            const int p = hp / sh;
            if (p >= P) continue;
            for (int s = 0; s < S; ++s) {
                const int wq = x_w + pw - s * dw;      // = q * sw
                if (wq < 0 || wq % sw != 0) continue;
                const int q = wq / sw;
                if (q >= Q) continue;
                for (int k = 0; k < K; ++k)
                    acc += w[(((long long)k * C + c) * R + r) * S + s] *
                           dout[((n * K + k) * P + p) * Q + q];
            }
        }
        dx[i] = acc;
    }
}

// dweight (K, C, R, S) += sum_{n,p,q} dout[n,k,p,q] * x[n,c,h,w]: one block (a power of two
// <= 256 threads) per weight element, blockIdx.x = ((k*C + c)*R + r)*S + s.
template <typename T>
__global__ void conv2d_bwd_weight_direct(T* __restrict__ dweight, const T* __restrict__ dout,
                                         const T* __restrict__ x, int N, int C, int H, int W,
                                         int K, int R, int S, int P, int Q, int sh, int sw,
                                         int ph, int pw, int dh, int dw) {
    __shared__ T red[CONV_RED_THREADS];
    const long long e = blockIdx.x;
    const int s = (int)(e % S);
    const int r = (int)((e / S) % R);
    const int c = (int)((e / ((long long)S * R)) % C);
    const int k = (int)(e / ((long long)S * R * C));
    const int roff = r * dh - ph, soff = s * dw - pw;
    const long long PQ = (long long)P * Q, total = PQ * N;
    T acc = 0;
    for (long long j = threadIdx.x; j < total; j += blockDim.x) {
        const long long n = j / PQ;
        const int pq = (int)(j - n * PQ);
        const int p = pq / Q, q = pq - p * Q;
        const int h = p * sh + roff, ww = q * sw + soff;
        if (h < 0 || h >= H || ww < 0 || ww >= W) continue;
        acc += dout[(n * K + k) * PQ + pq] * x[((n * C + c) * H + h) * W + ww];
    }
    acc = conv_block_sum(acc, red);
    if (threadIdx.x == 0) dweight[e] += acc;
}

// dbias (K) += sum_{n,p,q} dout[n,k,p,q]: one block (a power of two <= 256 threads) per k.
template <typename T>
__global__ void conv2d_bwd_bias(T* __restrict__ dbias, const T* __restrict__ dout, int N,
                                int K, long long PQ) {
    __shared__ T red[CONV_RED_THREADS];
    const int k = blockIdx.x;
    T acc = 0;
    for (int n = 0; n < N; ++n) {
        const T* d = dout + ((long long)n * K + k) * PQ;
        for (long long j = threadIdx.x; j < PQ; j += blockDim.x) acc += d[j];
    }
    acc = conv_block_sum(acc, red);
    if (threadIdx.x == 0) dbias[k] += acc;
}

// =============================================================================================
// v2 shared-memory tiled implicit GEMM. C_tile (BM x BN) = A (BM x red) @ B (red x BN).
// Loads: A element e = tid + i*256 -> row e / BK, step column e % BK (this thread's step column
// is fixed: tid % BK); B element -> row tid / BN + i * (256 / BN), column tid % BN (fixed, so a
// thread decomposes its B column once). Launch with blockDim.x == CONV_THREADS.
// =============================================================================================
#define CONV_BM 64
#define CONV_BN 64
#define CONV_BK 16
#define CONV_THREADS 256
#define CONV_TM 4                    // rows per thread:    ty + 16*i
#define CONV_TN 4                    // columns per thread: tx + 16*j
#define CONV_TY (CONV_BM / CONV_TM)  // 16
#define CONV_TX (CONV_BN / CONV_TN)  // 16
#define CONV_A_LOADS (CONV_BM * CONV_BK / CONV_THREADS)   // 4
#define CONV_B_LOADS (CONV_BK * CONV_BN / CONV_THREADS)   // 4
#define CONV_B_ROWS (CONV_THREADS / CONV_BN)               // 4

// acc += As^T Bs over one reduction step (As: [BK][BM+1], Bs: [BK][BN])
template <typename T>
__device__ __forceinline__ void conv_tile_mma(T (*acc)[CONV_TN], const T (*As)[CONV_BM + 1],
                                              const T (*Bs)[CONV_BN], int ty, int tx) {
    for (int kk = 0; kk < CONV_BK; ++kk) {
        T a[CONV_TM], b[CONV_TN];
        for (int i = 0; i < CONV_TM; ++i) a[i] = As[kk][ty + CONV_TY * i];
        for (int j = 0; j < CONV_TN; ++j) b[j] = Bs[kk][tx + CONV_TX * j];
        for (int i = 0; i < CONV_TM; ++i)
            for (int j = 0; j < CONV_TN; ++j) acc[i][j] += a[i] * b[j];
    }
}

// Forward. out: (N, K, P, Q); grid (ceil(N*P*Q / BN), ceil(K / BM)).
// GEMM rows m = k, columns j = (n, p, q), reduction kk = (c, r, s).
template <typename T>
__global__ void __launch_bounds__(CONV_THREADS)
conv2d_fwd_tiled(T* __restrict__ out, const T* __restrict__ x, const T* __restrict__ w,
                 const T* __restrict__ bias, int has_bias, int N, int C, int H, int W, int K,
                 int R, int S, int P, int Q, int sh, int sw, int ph, int pw, int dh, int dw) {
    __shared__ T As[CONV_BK][CONV_BM + 1];
    __shared__ T Bs[CONV_BK][CONV_BN];
    const int tid = threadIdx.x, ty = tid / CONV_TX, tx = tid % CONV_TX;
    const int RS = R * S, CRS = C * RS;
    const long long PQ = (long long)P * Q, NPQ = PQ * N;
    const int m0 = blockIdx.y * CONV_BM;
    const long long j0 = (long long)blockIdx.x * CONV_BN;

    // this thread's B column: output pixel (n, p, q)
    const int bj = tid % CONV_BN, bk = tid / CONV_BN;
    const long long col = j0 + bj;
    const bool col_ok = col < NPQ;
    long long bn = 0;
    int h0 = 0, w0 = 0;
    if (col_ok) {
        bn = col / PQ;
        const int pq = (int)(col - bn * PQ);
        h0 = (pq / Q) * sh - ph;
        w0 = (pq % Q) * sw - pw;
    }
    const T* xn = x + bn * C * H * W;
    const int ak = tid % CONV_BK;

    T acc[CONV_TM][CONV_TN];
    for (int i = 0; i < CONV_TM; ++i)
        for (int j = 0; j < CONV_TN; ++j) acc[i][j] = 0;

    for (int k0 = 0; k0 < CRS; k0 += CONV_BK) {
        const int akg = k0 + ak;
        for (int i = 0; i < CONV_A_LOADS; ++i) {
            const int mm = (tid + i * CONV_THREADS) / CONV_BK;
            const int m = m0 + mm;
            As[ak][mm] = (m < K && akg < CRS) ? w[(long long)m * CRS + akg] : T(0);
        }
        for (int i = 0; i < CONV_B_LOADS; ++i) {
            const int kk = bk + i * CONV_B_ROWS;
            const int kg = k0 + kk;
            T v = 0;
            if (col_ok && kg < CRS) {
                const int c = kg / RS, rs = kg - c * RS;
                const int r = rs / S, s = rs - r * S;
                const int h = h0 + r * dh, ww = w0 + s * dw;
                if (h >= 0 && h < H && ww >= 0 && ww < W)
                    v = xn[((long long)c * H + h) * W + ww];
            }
            Bs[kk][bj] = v;
        }
        __syncthreads();
        conv_tile_mma<T>(acc, As, Bs, ty, tx);
        __syncthreads();
    }

    for (int j = 0; j < CONV_TN; ++j) {
        const long long cj = j0 + tx + CONV_TX * j;
        if (cj >= NPQ) continue;
        const long long n = cj / PQ;
        const long long pq = cj - n * PQ;
        for (int i = 0; i < CONV_TM; ++i) {
            const int m = m0 + ty + CONV_TY * i;
            if (m >= K) continue;
            out[(n * K + m) * PQ + pq] = has_bias ? acc[i][j] + bias[m] : acc[i][j];
        }
    }
}

__device__ __forceinline__ int conv_gcd(int a, int b) {
    while (b != 0) {
        const int t = a % b;
        a = b;
        b = t;
    }
    return a;
}

// Taps t in [0, n) with (t * d) % st == a: first, step (the solutions form one residue class
// modulo st / gcd(st, d), so the first one is below the step) and count (0 if none).
__device__ __forceinline__ void conv_phase_taps(int a, int st, int d, int n, int* first,
                                                int* step, int* count) {
    *step = st / conv_gcd(st, d);
    *first = n;
    *count = 0;
    const int lim = min(n, *step);
    for (int t = 0; t < lim; ++t) {
        if ((int)(((long long)t * d) % st) == a) {
            *first = t;
            *count = (n - t + *step - 1) / *step;
            break;
        }
    }
}

// Backward-data. dx: (N, C, H, W), every element written. grid (ceil(N*ceil(H/sh)*ceil(W/sw) /
// BN), ceil(C / BM), sh*sw): blockIdx.z = stride phase (ah, aw). In phase ah the input rows
// are h = hs + ih*sh with (h + ph) % sh == ah, reached by the taps r = r0 + jr*rstep
// (jr < Rg) at output row p = (h + ph - r*dh) / sh (an exact division; valid if 0 <= p < P).
// GEMM rows m = c, columns j = (n, ih, iw), reduction kk = (k, jr, js).
template <typename T>
__global__ void __launch_bounds__(CONV_THREADS)
conv2d_bwd_data_tiled(T* __restrict__ dx, const T* __restrict__ dout, const T* __restrict__ w,
                      int N, int C, int H, int W, int K, int R, int S, int P, int Q, int sh,
                      int sw, int ph, int pw, int dh, int dw) {
    __shared__ T As[CONV_BK][CONV_BM + 1];
    __shared__ T Bs[CONV_BK][CONV_BN];
    const int tid = threadIdx.x, ty = tid / CONV_TX, tx = tid % CONV_TX;
    const int ah = (int)blockIdx.z / sw, aw = (int)blockIdx.z % sw;
    const int hs = ((ah - ph) % sh + sh) % sh, ws = ((aw - pw) % sw + sw) % sw;
    const int Hg = hs < H ? (H - 1 - hs) / sh + 1 : 0;
    const int Wg = ws < W ? (W - 1 - ws) / sw + 1 : 0;
    const long long HWg = (long long)Hg * Wg, cols = HWg * N;
    const long long j0 = (long long)blockIdx.x * CONV_BN;
    if (j0 >= cols) return;                      // the whole block: no barrier is skipped
    int r0, rstep, Rg, s0, sstep, Sg;
    conv_phase_taps(ah, sh, dh, R, &r0, &rstep, &Rg);
    conv_phase_taps(aw, sw, dw, S, &s0, &sstep, &Sg);
    const int RSg = Rg * Sg, KRS = K * RSg;      // reduction length (0: dx is zero here)
    const int m0 = blockIdx.y * CONV_BM;
    const long long PQ = (long long)P * Q;

    // this thread's B column: input pixel (n, h, w) of this phase
    const int bj = tid % CONV_BN, bk = tid / CONV_BN;
    const long long col = j0 + bj;
    const bool col_ok = col < cols;
    long long bn = 0;
    int hph = 0, wpw = 0;                        // h + ph, w + pw
    if (col_ok) {
        bn = col / HWg;
        const int ihw = (int)(col - bn * HWg);
        hph = hs + (ihw / Wg) * sh + ph;
        wpw = ws + (ihw % Wg) * sw + pw;
    }
    const T* dn = dout + bn * K * PQ;
    const int ak = tid % CONV_BK;

    T acc[CONV_TM][CONV_TN];
    for (int i = 0; i < CONV_TM; ++i)
        for (int j = 0; j < CONV_TN; ++j) acc[i][j] = 0;

    for (int k0 = 0; k0 < KRS; k0 += CONV_BK) {
        const int akg = k0 + ak;
        long long wbase = 0;                     // w[k, 0, r, s] for this thread's A column
        if (akg < KRS) {
            const int k = akg / RSg, rs = akg - k * RSg;
            const int r = r0 + (rs / Sg) * rstep, s = s0 + (rs % Sg) * sstep;
            wbase = ((long long)k * C * R + r) * S + s;
        }
        for (int i = 0; i < CONV_A_LOADS; ++i) {
            const int mm = (tid + i * CONV_THREADS) / CONV_BK;
            const int c = m0 + mm;
            As[ak][mm] = (c < C && akg < KRS) ? w[wbase + (long long)c * R * S] : T(0);
        }
        for (int i = 0; i < CONV_B_LOADS; ++i) {
            const int kk = bk + i * CONV_B_ROWS;
            const int kg = k0 + kk;
            T v = 0;
            if (col_ok && kg < KRS) {
                const int k = kg / RSg, rs = kg - k * RSg;
                const int hp = hph - (r0 + (rs / Sg) * rstep) * dh;   // = p * sh
                const int wq = wpw - (s0 + (rs % Sg) * sstep) * dw;   // = q * sw
                if (hp >= 0 && wq >= 0) {
                    const int p = hp / sh, q = wq / sw;
                    if (p < P && q < Q) v = dn[((long long)k * P + p) * Q + q];
                }
            }
            Bs[kk][bj] = v;
        }
        __syncthreads();
        conv_tile_mma<T>(acc, As, Bs, ty, tx);
        __syncthreads();
    }

    for (int j = 0; j < CONV_TN; ++j) {
        const long long cj = j0 + tx + CONV_TX * j;
        if (cj >= cols) continue;
        const long long n = cj / HWg;
        const int ihw = (int)(cj - n * HWg);
        const int h = hs + (ihw / Wg) * sh, ww = ws + (ihw % Wg) * sw;
        for (int i = 0; i < CONV_TM; ++i) {
            const int c = m0 + ty + CONV_TY * i;
            if (c >= C) continue;
            dx[((n * C + c) * H + h) * W + ww] = acc[i][j];
        }
    }
}

// Backward-weight. grid (ceil(C*R*S / BN), ceil(K / BM), splits); split z reduces over
// (n, p, q) in [z*chunk, min((z+1)*chunk, N*P*Q)) (chunk a multiple of BK) and writes
// dst + z*K*C*R*S: "+=" when accumulate != 0 (one split straight into dW), else "=" (the
// workspace for conv2d_add_splits).
// GEMM rows m = k, columns j = (c, r, s), reduction kk = (n, p, q).
template <typename T>
__global__ void __launch_bounds__(CONV_THREADS)
conv2d_bwd_weight_tiled(T* __restrict__ dst, const T* __restrict__ dout,
                        const T* __restrict__ x, int accumulate, long long chunk, int N, int C,
                        int H, int W, int K, int R, int S, int P, int Q, int sh, int sw, int ph,
                        int pw, int dh, int dw) {
    __shared__ T As[CONV_BK][CONV_BM + 1];
    __shared__ T Bs[CONV_BK][CONV_BN];
    const int tid = threadIdx.x, ty = tid / CONV_TX, tx = tid % CONV_TX;
    const int RS = R * S, CRS = C * RS;
    const long long PQ = (long long)P * Q, NPQ = PQ * N;
    const long long kbeg = (long long)blockIdx.z * chunk;
    const long long kend = min(kbeg + chunk, NPQ);
    const int m0 = blockIdx.y * CONV_BM;
    const int j0 = blockIdx.x * CONV_BN;

    // this thread's B column: filter tap (c, r, s)
    const int bj = tid % CONV_BN, bk = tid / CONV_BN;
    const int col = j0 + bj;
    const bool col_ok = col < CRS;
    int bc = 0, roff = 0, soff = 0;
    if (col_ok) {
        bc = col / RS;
        const int rs = col - bc * RS;
        roff = (rs / S) * dh - ph;
        soff = (rs % S) * dw - pw;
    }
    const int ak = tid % CONV_BK;

    T acc[CONV_TM][CONV_TN];
    for (int i = 0; i < CONV_TM; ++i)
        for (int j = 0; j < CONV_TN; ++j) acc[i][j] = 0;

    for (long long k0 = kbeg; k0 < kend; k0 += CONV_BK) {
        const long long akg = k0 + ak;
        long long dbase = 0;                     // dout[n, 0, p, q] for this thread's A column
        if (akg < kend) {
            const long long n = akg / PQ;
            dbase = n * K * PQ + (akg - n * PQ);
        }
        for (int i = 0; i < CONV_A_LOADS; ++i) {
            const int mm = (tid + i * CONV_THREADS) / CONV_BK;
            const int k = m0 + mm;
            As[ak][mm] = (k < K && akg < kend) ? dout[dbase + (long long)k * PQ] : T(0);
        }
        for (int i = 0; i < CONV_B_LOADS; ++i) {
            const int kk = bk + i * CONV_B_ROWS;
            const long long kg = k0 + kk;
            T v = 0;
            if (col_ok && kg < kend) {
                const long long n = kg / PQ;
                const int pq = (int)(kg - n * PQ);
                const int h = (pq / Q) * sh + roff, ww = (pq % Q) * sw + soff;
                if (h >= 0 && h < H && ww >= 0 && ww < W)
                    v = x[((n * C + bc) * H + h) * W + ww];
            }
            Bs[kk][bj] = v;
        }
        __syncthreads();
        conv_tile_mma<T>(acc, As, Bs, ty, tx);
        __syncthreads();
    }

    T* d = dst + (long long)blockIdx.z * K * CRS;
    for (int i = 0; i < CONV_TM; ++i) {
        const int k = m0 + ty + CONV_TY * i;
        if (k >= K) continue;
        for (int j = 0; j < CONV_TN; ++j) {
            const int cj = j0 + tx + CONV_TX * j;
            if (cj >= CRS) continue;
            const long long idx = (long long)k * CRS + cj;
            if (accumulate) d[idx] += acc[i][j];
            else d[idx] = acc[i][j];
        }
    }
}

// dst[i] += sum_{z < splits} part[z*total + i], z in order (deterministic); total = K*C*R*S
template <typename T>
__global__ void conv2d_add_splits(T* __restrict__ dst, const T* __restrict__ part, int splits,
                                  long long total) {
    CONV_GRID_STRIDE(i, total) {
        T acc = 0;
        for (int z = 0; z < splits; ++z) acc += part[(long long)z * total + i];
        dst[i] += acc;
    }
}

// =============================================================================================
// v3 forward: register-blocked implicit GEMM with shared-memory double buffering (the classic
// SGEMM structure). out (K, N*P*Q) = W (K, C*R*S) @ col (C*R*S, N*P*Q); GEMM rows m = k,
// columns j = (n, p, q), reduction kg = (c, r, s). One block of CONV3_THREADS computes a BM x BN
// tile of out, TM x TN per thread, in CONV3_BK-deep stages:
//   stage t: the global loads of stage t+1 go to registers (A: A_LOADS weights; B: B_RPT
//            gathered col elements, or one 4-vector on the 1x1 path), the BK outer products of
//            stage t run from shared buffer t%2, the registers are stored to buffer (t+1)%2,
//            then ONE barrier (buffer (t+1)%2 was last read in stage t-1, before the previous
//            barrier).
//   As [2][BK][BM+4]: A transposed (k-major) so a thread reads its TM rows as 4-vectors; the +4
//            pad keeps rows 16-byte aligned and makes the transposing stores conflict-free.
//   Bs [2][BK][BN]:   B as is; a thread reads its TN columns as 4-vectors.
//   Thread (ty, tx) owns rows g*4*TY + ty*4 + {0..3} (g < TM/4) and columns g*4*TX + tx*4 +
//            {0..3} (g < TN/4); a warp is 8 tx by 4 ty, so its B reads are 8 distinct
//            consecutive 4-vectors (conflict-free) and its A reads 4 broadcasts.
//   A loads: thread tid reads step column tid % BK of rows tid / BK + i * (THREADS / BK).
//   B gather (vec == 0): thread tid owns column tid % BN, whose (n, p, q) -> input offset,
//            h0, w0 it computes once, and the B_RPT consecutive reduction rows
//            (tid / BN) * B_RPT + i. The (c, r, s) of a stage's BK rows is the same for every
//            column: lane 0 of warp kk decomposes row kk once per stage into a shared table
//            rows[2][BK] = {r*dh, s*dw, c*H*W + r*dh*W + s*dw} (double-buffered with the tiles,
//            written for stage t+2 during stage t; rows past C*R*S get an r*dh that fails the
//            bounds check), so the gather itself does no division.
//   B 1x1 (vec != 0, a block-uniform branch): R = S = 1, stride 1, no padding, P*Q % 4 == 0,
//            x 16-byte aligned (the launcher checks): col (c, j) = x[n, c, pq] is contiguous in
//            j, so thread tid < BK*BN/4 loads one 4-vector (row tid / (BN/4), columns
//            (tid % (BN/4))*4 + {0..3}).
//   Epilogue: bias added, 4-vector stores of a thread's 4 consecutive columns when out_vec
//            (P*Q % 4 == 0 and out 16-byte aligned: the 4 are in one image), else scalar.
// Tile configurations (launcher, kernels/conv2d.py): <128,128,8,8> for large GEMMs,
// <64,64,4,4> for K <= 64 or fewer 128x128 tiles than SMs, <32,128,4,4> for K <= 32. Any
// K, N*P*Q, C*R*S is bounds-checked (zeros are loaded outside the GEMM). Offsets are int: the
// launcher sends tensors of 2^31 - 1025 or more elements to v2. float: at least 2 blocks per
// SM (<= 128 registers); double: 1 (the 8x8 double accumulators alone take 128).
// =============================================================================================
#define CONV3_BK 8
#define CONV3_THREADS 256
#define CONV3_ROW_NONE (-(1 << 30))   // h0 of a column past N*P*Q, r*dh of a row past C*R*S:
                                      // h0 + r*dh is never in [0, H)

template <typename T>
struct Conv3MinBlocks {
    static constexpr int value = sizeof(T) == 4 ? 2 : 1;
};

// 4 consecutive T through 16-byte accesses (p 16-byte aligned)
template <typename T>
struct Conv3Vec;

template <>
struct Conv3Vec<float> {
    static __device__ __forceinline__ void load(const float* p, float* d) {
        const float4 v = *reinterpret_cast<const float4*>(p);
        d[0] = v.x;
        d[1] = v.y;
        d[2] = v.z;
        d[3] = v.w;
    }
    static __device__ __forceinline__ void store(float* p, const float* s) {
        *reinterpret_cast<float4*>(p) = make_float4(s[0], s[1], s[2], s[3]);
    }
};

template <>
struct Conv3Vec<double> {
    static __device__ __forceinline__ void load(const double* p, double* d) {
        const double2 u = reinterpret_cast<const double2*>(p)[0];
        const double2 v = reinterpret_cast<const double2*>(p)[1];
        d[0] = u.x;
        d[1] = u.y;
        d[2] = v.x;
        d[3] = v.y;
    }
    static __device__ __forceinline__ void store(double* p, const double* s) {
        reinterpret_cast<double2*>(p)[0] = make_double2(s[0], s[1]);
        reinterpret_cast<double2*>(p)[1] = make_double2(s[2], s[3]);
    }
};

// one reduction row (c, r, s) of the im2col matrix: r*dh, s*dw, c*H*W + r*dh*W + s*dw
struct __align__(16) Conv3RowInfo {
    int rdh, sdw, off, pad;
};

__device__ __forceinline__ Conv3RowInfo conv3_row(int kg, int CRS, int RS, int S, int dh,
                                                  int dw, int W, int HW) {
    Conv3RowInfo ri;
    if (kg < CRS) {
        const int c = kg / RS, rs = kg - c * RS, r = rs / S, s = rs - r * S;
        ri.rdh = r * dh;
        ri.sdw = s * dw;
        ri.off = c * HW + ri.rdh * W + ri.sdw;
    } else {
        ri.rdh = CONV3_ROW_NONE;
        ri.sdw = 0;
        ri.off = 0;
    }
    ri.pad = 0;
    return ri;
}

// acc += the BK outer products of one stage from shared memory: this thread's TM rows of A^T
// (As[kk][g*4*TY + ty*4 + {0..3}]) and TN columns of B (Bs[kk][g*4*TX + tx*4 + {0..3}]) read
// as 4-vectors, the fragments double-buffered in registers (step kk+1's are read while kk's
// are used).
template <typename T, int BK, int TM, int TN, int TY, int TX, int APAD, int BPAD>
__device__ __forceinline__ void conv3_stage_mma(T (&acc)[TM][TN], const T (*As)[APAD],
                                                const T (*Bs)[BPAD], int ty, int tx) {
    T a[2][TM], b[2][TN];
    auto load_frags = [&](int kk, T* fa, T* fb) {
#pragma unroll
        for (int g = 0; g < TM / 4; ++g)
            Conv3Vec<T>::load(&As[kk][g * 4 * TY + ty * 4], fa + 4 * g);
#pragma unroll
        for (int g = 0; g < TN / 4; ++g)
            Conv3Vec<T>::load(&Bs[kk][g * 4 * TX + tx * 4], fb + 4 * g);
    };
    load_frags(0, a[0], b[0]);
#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
        if (kk + 1 < BK) load_frags(kk + 1, a[(kk + 1) & 1], b[(kk + 1) & 1]);
#pragma unroll
        for (int i = 0; i < TM; ++i)
#pragma unroll
            for (int j = 0; j < TN; ++j) acc[i][j] += a[kk & 1][i] * b[kk & 1][j];
    }
}

// The double-buffered main loop of v3's forward and v4's backward: acc = the sum over the nst
// stages. fill_rows(stage, buf) writes a stage's row table, load_stage(stage) loads its tiles
// into registers, store_stage(buf) stores them to shared buffer buf. Stage t: the loads of t+1
// are in flight while t's outer products run from buffer t%2; then they are stored to buffer
// (t+1)%2 and the table of t+2 is written to rows[t%2] (last read by load_stage(t)); one
// barrier per stage.
template <typename T, int BK, int TM, int TN, int TY, int TX, int APAD, int BPAD,
          typename Fill, typename Load, typename Store>
__device__ __forceinline__ void conv3_main_loop(T (&acc)[TM][TN], T (*As)[BK][APAD],
                                                T (*Bs)[BK][BPAD], int nst, int ty, int tx,
                                                Fill fill_rows, Load load_stage,
                                                Store store_stage) {
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = T(0);
    fill_rows(0, 0);
    __syncthreads();
    if (nst > 0) {
        load_stage(0);
        store_stage(0);
    }
    if (nst > 1) fill_rows(1, 1);
    __syncthreads();
    for (int t = 0; t < nst; ++t) {
        const int cur = t & 1;
        const bool more = t + 1 < nst;         // uniform over the block
        if (more) load_stage(t + 1);
        conv3_stage_mma<T, BK, TM, TN, TY, TX>(acc, As[cur], Bs[cur], ty, tx);
        if (more) store_stage(cur ^ 1);
        if (t + 2 < nst) fill_rows(t + 2, cur);
        __syncthreads();
    }
}

// out: (N, K, P, Q) written; grid (ceil(N*P*Q / BN), ceil(K / BM)), block CONV3_THREADS.
template <typename T, int BM, int BN, int TM, int TN>
__global__ void __launch_bounds__(CONV3_THREADS, Conv3MinBlocks<T>::value)
conv2d_fwd_gemm(T* __restrict__ out, const T* __restrict__ x, const T* __restrict__ w,
                const T* __restrict__ bias, int has_bias, int vec, int out_vec, int N, int C, int H,
                int W, int K, int R, int S, int P, int Q, int sh, int sw, int ph, int pw, int dh,
                int dw) {
    constexpr int BK = CONV3_BK, NT = CONV3_THREADS;
    constexpr int TY = BM / TM, TX = BN / TN;
    constexpr int A_LOADS = BM * BK / NT, A_ROWSTEP = NT / BK;
    constexpr int B_RPT = BK * BN / NT;        // gather: rows per thread per stage
    constexpr int BV = BK * BN / 4;            // 1x1: 4-vectors per stage
    static_assert(TY * TX == NT, "one thread per TM x TN sub-tile");
    static_assert(TM % 4 == 0 && TN % 4 == 0 && TX % 8 == 0 && TY % 4 == 0, "4-vector layout");
    static_assert(A_LOADS * NT == BM * BK && NT % BK == 0, "A loads");
    static_assert(B_RPT * NT == BK * BN && NT % BN == 0 && BV <= NT, "B loads");
    constexpr int APAD = BM + 4;

    __shared__ __align__(16) T As[2][BK][APAD];
    __shared__ __align__(16) T Bs[2][BK][BN];
    __shared__ Conv3RowInfo rows[2][BK];       // gather only

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int tx = (warp % (TX / 8)) * 8 + (lane & 7);
    const int ty = (warp / (TX / 8)) * 4 + (lane >> 3);
    const int RS = R * S, CRS = C * RS;
    const int HW = H * W, PQ = P * Q, NPQ = PQ * N;
    const int m0 = blockIdx.y * BM;
    const int j0 = blockIdx.x * BN;
    const int nst = (CRS + BK - 1) / BK;

    // A: this thread's step column a_kk and rows a_row + i * A_ROWSTEP
    const int a_kk = tid % BK, a_row = tid / BK;
    const int a_rows = min(K - m0 - a_row, BM);      // rows a_row + i*A_ROWSTEP < K: i*.. < this
    const int a_step = min(A_ROWSTEP, K) * CRS;      // (K < A_ROWSTEP: only i = 0 is read)
    const int wa = min(m0 + a_row, K - 1) * CRS + a_kk;   // (row clamped: in bounds)
    T ra[A_LOADS];

    // B gather: this thread's column (n, p, q) and first reduction row
    const int b_col = tid % BN, b_k = (tid / BN) * B_RPT;
    int h0 = CONV3_ROW_NONE, w0 = 0;           // (h0 fails every bounds check past N*P*Q)
    int xbase = 0;                             // n*C*H*W + h0*W + w0 (may be negative)
    // B 1x1: this thread's 4-vector (row v_kk, columns vj..vj+3)
    const int v_kk = tid / (BN / 4);
    bool v_ok = false;
    int vbase = 0;                             // n*C*P*Q + pq
    T rb[B_RPT > 4 ? B_RPT : 4];

    if (vec) {
        const int vj = j0 + (tid % (BN / 4)) * 4;
        if (tid < BV && vj < NPQ) {
            v_ok = true;
            const int n = vj / PQ;
            vbase = n * C * PQ + (vj - n * PQ);
        }
    } else {
        const int bj = j0 + b_col;
        if (bj < NPQ) {
            const int n = bj / PQ, pq = bj - n * PQ;
            const int p = pq / Q, q = pq - p * Q;
            h0 = p * sh - ph;
            w0 = q * sw - pw;
            xbase = n * C * HW + h0 * W + w0;
        }
    }

    // the row table of stage st into rows[buf] (lane 0 of warps kk, kk + NT/32, ...)
    auto fill_rows = [&](int stage, int buf) {
        if (!vec) {
            if (lane == 0)
                for (int kk = warp; kk < BK; kk += NT / 32)
                    rows[buf][kk] = conv3_row(stage * BK + kk, CRS, RS, S, dh, dw, W, HW);
        }
    };
    // global -> registers for stage `stage` (its row table in rows[stage & 1])
    auto load_stage = [&](int stage) {
        const int k0 = stage * BK;
        const bool ak_ok = k0 + a_kk < CRS;
#pragma unroll
        for (int i = 0; i < A_LOADS; ++i)
            ra[i] = (ak_ok && i * A_ROWSTEP < a_rows) ? w[wa + k0 + i * a_step] : T(0);
        if (vec) {
            if (v_ok && k0 + v_kk < CRS) {
                Conv3Vec<T>::load(x + vbase + (k0 + v_kk) * PQ, rb);
            } else {
#pragma unroll
                for (int i = 0; i < 4; ++i) rb[i] = T(0);
            }
        } else {
#pragma unroll
            for (int i = 0; i < B_RPT; ++i) {
                const Conv3RowInfo ri = rows[stage & 1][b_k + i];
                const int h = h0 + ri.rdh, ww = w0 + ri.sdw;
                rb[i] = ((unsigned)h < (unsigned)H && (unsigned)ww < (unsigned)W)
                            ? x[xbase + ri.off] : T(0);
            }
        }
    };
    // registers -> shared buffer buf
    auto store_stage = [&](int buf) {
#pragma unroll
        for (int i = 0; i < A_LOADS; ++i) As[buf][a_kk][a_row + i * A_ROWSTEP] = ra[i];
        if (vec) {
            if (tid < BV) Conv3Vec<T>::store(&Bs[buf][v_kk][(tid % (BN / 4)) * 4], rb);
        } else {
#pragma unroll
            for (int i = 0; i < B_RPT; ++i) Bs[buf][b_k + i][b_col] = rb[i];
        }
    };

    T acc[TM][TN];
    conv3_main_loop<T, BK, TM, TN, TY, TX>(acc, As, Bs, nst, ty, tx, fill_rows, load_stage,
                                           store_stage);

    // epilogue
    T bv[TM];
#pragma unroll
    for (int i = 0; i < TM; ++i) {
        const int m = m0 + (i / 4) * 4 * TY + ty * 4 + (i % 4);
        bv[i] = (has_bias && m < K) ? bias[m] : T(0);
    }
#pragma unroll
    for (int g = 0; g < TN / 4; ++g) {
        const int jb = j0 + g * 4 * TX + tx * 4;
        if (jb >= NPQ) continue;
        int n = jb / PQ, pq = jb - n * PQ;
        if (out_vec) {                          // jb..jb+3 valid, in image n, 16-byte aligned
#pragma unroll
            for (int i = 0; i < TM; ++i) {
                const int m = m0 + (i / 4) * 4 * TY + ty * 4 + (i % 4);
                if (m >= K) continue;
                T v[4];
#pragma unroll
                for (int jj = 0; jj < 4; ++jj)
                    v[jj] = has_bias ? acc[i][4 * g + jj] + bv[i] : acc[i][4 * g + jj];
                Conv3Vec<T>::store(out + (n * K + m) * PQ + pq, v);
            }
        } else {
#pragma unroll
            for (int jj = 0; jj < 4; ++jj) {
                if (jb + jj >= NPQ) break;
#pragma unroll
                for (int i = 0; i < TM; ++i) {
                    const int m = m0 + (i / 4) * 4 * TY + ty * 4 + (i % 4);
                    if (m >= K) continue;
                    out[(n * K + m) * PQ + pq] =
                        has_bias ? acc[i][4 * g + jj] + bv[i] : acc[i][4 * g + jj];
                }
                if (++pq == PQ) {
                    pq = 0;
                    ++n;
                }
            }
        }
    }
}

// =============================================================================================
// v4 backward: v3's register-blocked, double-buffered implicit GEMM (same stages, tiles, thread
// layout and conv3_stage_mma) for the two backward passes; v4's forward is v3's kernel. Both
// passes read their operands through one per-stage row table rows[2][BK] (Conv4Row, filled by
// lane 0 of warp kk for reduction row kg = stage*BK + kk, double-buffered like v3's) and
// per-thread column registers, so no division is left in the loads:
//   A(m, kg) = a[m * a_ld + rows[kg].a]                             (rows m < M)
//   B(kg, j) = b[col.base + rows[kg].b]
//              if (unsigned)(col.h + rows[kg].h) < BH and (unsigned)(col.w + rows[kg].w) < BW
// MODE CONV4_DATA: dx (C, cols) = W^T (C, K*Rg*Sg) @ dout gathered (K*Rg*Sg, cols), per
//   stride phase (blockIdx.z, as v2): rows m = c, columns j = (n, ih, iw) (input pixel
//   h = hs + ih*sh, w = ws + iw*sw), reduction kg = (k, jr, js) (taps r = r0 + jr*rstep,
//   s = s0 + js*sstep). In this phase p = (h + ph - r*dh) / sh = ih + poff(r) with
//   poff(r) = (hs + ph - r*dh) / sh an exact division, so
//     a = w, a_ld = R*S, rows.a = k*C*R*S + r*S + s;
//     b = dout, BH x BW = P x Q, col = {n*K*P*Q + ih*Q + iw, ih, iw},
//     rows = {k*P*Q + poff*Q + qoff, poff, qoff}.
//   B is loaded like v3's forward: one column per thread (consecutive threads: consecutive iw,
//   coalesced in dout), B_RPT consecutive rows. Every dx element is written (phases without
//   taps write zeros).
// MODE CONV4_WEIGHT: dW (K, C*R*S) (+)= dout (K, N*P*Q) @ col^T (N*P*Q, C*R*S), the reduction
//   split over blockIdx.z (v2's split-K: [z*chunk, min((z+1)*chunk, N*P*Q)), written to
//   dst + z*K*C*R*S, "+=" when accumulate, else "=" into the workspace summed by
//   conv2d_add_splits_cols):
//   rows m = k, columns j = (c, r, s), reduction kg = (n, p, q):
//     a = dout, a_ld = P*Q, rows.a = n*K*P*Q + p*Q + q;
//     b = x, BH x BW = H x W, col = {c*H*W + r*dh*W + s*dw, r*dh, s*dw},
//     rows = {n*C*H*W + hp*W + wq, hp, wq} with hp = p*sh - ph, wq = q*sw - pw.
//   B is loaded transposed: thread tid reads reduction row tid % BK of columns tid / BK +
//   i * (NT / BK) (consecutive threads: consecutive pixels q, coalesced in x); Bs rows are
//   padded to BN + 4 so these stores are conflict-free.
// Epilogue: 4-vector stores when out_vec (DATA: stride 1 and H*W % 4 == 0; WEIGHT:
// C*R*S % 4 == 0; and 16-byte aligned), else scalar. Offsets are int (the launcher checks,
// else v2's kernels run).
// =============================================================================================
#define CONV4_DATA 0
#define CONV4_WEIGHT 1

struct __align__(16) Conv4Row {
    int a, b, h, w;
};

// The phase's valid taps along one axis: first, step, count (conv_phase_taps) and the offset
// the output index moves by, for the phase start hs (h = hs + ih*st): poff(t) = (hs + pad -
// t*d) / st.
struct Conv4Taps {
    int first, step, count, hs_pad;
};

template <typename T, int BM, int BN, int TM, int TN, int MODE>
__global__ void __launch_bounds__(CONV3_THREADS, Conv3MinBlocks<T>::value)
conv2d_bwd_gemm(T* __restrict__ dst, const T* __restrict__ dout, const T* __restrict__ src,
                int accumulate, int chunk, int out_vec, int N, int C, int H, int W, int K,
                int R, int S, int P, int Q, int sh, int sw, int ph, int pw, int dh, int dw) {
    // src: w (DATA) or x (WEIGHT); dst: dx (DATA) or dW / the split workspace (WEIGHT)
    constexpr int BK = CONV3_BK, NT = CONV3_THREADS;
    constexpr int TY = BM / TM, TX = BN / TN;
    constexpr int A_LOADS = BM * BK / NT, A_ROWSTEP = NT / BK;
    constexpr int B_RPT = BK * BN / NT;        // B elements per thread per stage
    constexpr int NCOL = MODE == CONV4_DATA ? 1 : B_RPT;   // B columns per thread
    static_assert(TY * TX == NT, "one thread per TM x TN sub-tile");
    static_assert(TM % 4 == 0 && TN % 4 == 0 && TX % 8 == 0 && TY % 4 == 0, "4-vector layout");
    static_assert(A_LOADS * NT == BM * BK && NT % BK == 0, "A loads");
    static_assert(B_RPT * NT == BK * BN && NT % BN == 0, "B loads");
    constexpr int APAD = BM + 4, BPAD = BN + 4;

    __shared__ __align__(16) T As[2][BK][APAD];
    __shared__ __align__(16) T Bs[2][BK][BPAD];
    __shared__ Conv4Row rows[2][BK];

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int tx = (warp % (TX / 8)) * 8 + (lane & 7);
    const int ty = (warp / (TX / 8)) * 4 + (lane >> 3);
    const int RS = R * S, HW = H * W, PQ = P * Q;

    // GEMM sizes, the reduction range [kbeg, kend) and the phase (DATA)
    int M, ncols, kbeg, kend, a_ld, BH, BW;
    const T* a_src;
    const T* b_src;
    int hs = 0, ws = 0, Hg = 0, Wg = 0;
    Conv4Taps th = {0, 1, 0, 0}, tw = {0, 1, 0, 0};
    if (MODE == CONV4_DATA) {
        const int ah = (int)blockIdx.z / sw, aw = (int)blockIdx.z % sw;
        hs = ((ah - ph) % sh + sh) % sh;
        ws = ((aw - pw) % sw + sw) % sw;
        Hg = hs < H ? (H - 1 - hs) / sh + 1 : 0;
        Wg = ws < W ? (W - 1 - ws) / sw + 1 : 0;
        conv_phase_taps(ah, sh, dh, R, &th.first, &th.step, &th.count);
        conv_phase_taps(aw, sw, dw, S, &tw.first, &tw.step, &tw.count);
        th.hs_pad = hs + ph;
        tw.hs_pad = ws + pw;
        M = C;
        ncols = Hg * Wg * N;
        kbeg = 0;
        kend = K * th.count * tw.count;
        a_ld = RS;
        a_src = src;
        b_src = dout;
        BH = P;
        BW = Q;
    } else {
        M = K;
        ncols = C * RS;
        kbeg = (int)blockIdx.z * chunk;
        kend = min(kbeg + chunk, N * PQ);
        a_ld = PQ;
        a_src = dout;
        b_src = src;
        BH = H;
        BW = W;
    }
    const int m0 = blockIdx.y * BM;
    const int j0 = blockIdx.x * BN;
    if (j0 >= ncols) return;                   // the whole block (DATA: a smaller phase)
    const int nst = (kend - kbeg + BK - 1) / BK;

    // reduction row kg's table entry
    auto row_info = [&](int kg) {
        Conv4Row ri;
        if (kg >= kend) {
            ri.a = 0;
            ri.b = 0;
            ri.h = CONV3_ROW_NONE;
            ri.w = 0;
        } else if (MODE == CONV4_DATA) {
            const int RSg = th.count * tw.count;
            const int k = kg / RSg, rs = kg - k * RSg, jr = rs / tw.count;
            const int r = th.first + jr * th.step, s = tw.first + (rs - jr * tw.count) * tw.step;
            ri.a = k * C * RS + r * S + s;
            ri.h = (th.hs_pad - r * dh) / sh;
            ri.w = (tw.hs_pad - s * dw) / sw;
            ri.b = k * PQ + ri.h * Q + ri.w;
        } else {
            const int n = kg / PQ, pq = kg - n * PQ, p = pq / Q, q = pq - p * Q;
            ri.a = n * K * PQ + pq;
            ri.h = p * sh - ph;
            ri.w = q * sw - pw;
            ri.b = n * C * HW + ri.h * W + ri.w;
        }
        return ri;
    };
    auto fill_rows = [&](int stage, int buf) {
        if (lane == 0)
            for (int kk = warp; kk < BK; kk += NT / 32)
                rows[buf][kk] = row_info(kbeg + stage * BK + kk);
    };

    // A: this thread's step column a_kk and rows a_row + i * A_ROWSTEP
    const int a_kk = tid % BK, a_row = tid / BK;
    T ra[A_LOADS];

    // B: this thread's NCOL columns (base, h, w) and first reduction row
    const int b_k = MODE == CONV4_DATA ? (tid / BN) * B_RPT : tid % BK;
    int cbase[NCOL], ch[NCOL], cw[NCOL];
#pragma unroll
    for (int i = 0; i < NCOL; ++i) {
        const int bj = j0 + (MODE == CONV4_DATA ? tid % BN : tid / BK + i * (NT / BK));
        cbase[i] = 0;
        ch[i] = CONV3_ROW_NONE;                // fails every bounds check past the columns
        cw[i] = 0;
        if (bj < ncols) {
            if (MODE == CONV4_DATA) {
                const int HWg = Hg * Wg, n = bj / HWg, ihw = bj - n * HWg;
                ch[i] = ihw / Wg;
                cw[i] = ihw - ch[i] * Wg;
                cbase[i] = n * K * PQ + ch[i] * Q + cw[i];
            } else {
                const int c = bj / RS, rs = bj - c * RS, r = rs / S;
                ch[i] = r * dh;
                cw[i] = (rs - r * S) * dw;
                cbase[i] = c * HW + ch[i] * W + cw[i];
            }
        }
    }
    T rb[B_RPT];

    // global -> registers for stage `stage` (its row table in rows[stage & 1])
    auto load_stage = [&](int stage) {
        const Conv4Row (&rt)[BK] = rows[stage & 1];
        const bool ak_ok = kbeg + stage * BK + a_kk < kend;
        const int aoff = rt[a_kk].a;
#pragma unroll
        for (int i = 0; i < A_LOADS; ++i) {
            const int m = m0 + a_row + i * A_ROWSTEP;
            ra[i] = (ak_ok && m < M) ? a_src[m * a_ld + aoff] : T(0);
        }
#pragma unroll
        for (int i = 0; i < B_RPT; ++i) {
            const int c = MODE == CONV4_DATA ? 0 : i;
            const Conv4Row ri = rt[MODE == CONV4_DATA ? b_k + i : b_k];
            const int h = ch[c] + ri.h, ww = cw[c] + ri.w;
            rb[i] = ((unsigned)h < (unsigned)BH && (unsigned)ww < (unsigned)BW)
                        ? b_src[cbase[c] + ri.b] : T(0);
        }
    };
    // registers -> shared buffer buf
    auto store_stage = [&](int buf) {
#pragma unroll
        for (int i = 0; i < A_LOADS; ++i) As[buf][a_kk][a_row + i * A_ROWSTEP] = ra[i];
#pragma unroll
        for (int i = 0; i < B_RPT; ++i) {
            if (MODE == CONV4_DATA) Bs[buf][b_k + i][tid % BN] = rb[i];
            else Bs[buf][b_k][tid / BK + i * (NT / BK)] = rb[i];
        }
    };

    T acc[TM][TN];
    conv3_main_loop<T, BK, TM, TN, TY, TX>(acc, As, Bs, nst, ty, tx, fill_rows, load_stage,
                                           store_stage);

    // epilogue: element (m, j) of the GEMM goes to dst[m * m_ld + out_off(j)]
    const int m_ld = MODE == CONV4_DATA ? HW : C * RS;
    T* d = MODE == CONV4_DATA ? dst : dst + (long long)blockIdx.z * K * C * RS;
    auto out_off = [&](int j) {
        if (MODE == CONV4_DATA) {
            const int HWg = Hg * Wg, n = j / HWg, ihw = j - n * HWg, ih = ihw / Wg;
            return n * C * HW + (hs + ih * sh) * W + ws + (ihw - ih * Wg) * sw;
        }
        return j;
    };
    auto put = [&](T* p, T v) {
        if (MODE == CONV4_WEIGHT && accumulate) *p += v;
        else *p = v;
    };
#pragma unroll
    for (int g = 0; g < TN / 4; ++g) {
        const int jb = j0 + g * 4 * TX + tx * 4;
        if (jb >= ncols) continue;
        if (out_vec) {       // jb..jb+3 valid and contiguous in dst (the launcher's condition)
            const int o = out_off(jb);
#pragma unroll
            for (int i = 0; i < TM; ++i) {
                const int m = m0 + (i / 4) * 4 * TY + ty * 4 + (i % 4);
                if (m >= M) continue;
                T v[4];
                T* p = d + m * m_ld + o;
                if (MODE == CONV4_WEIGHT && accumulate) Conv3Vec<T>::load(p, v);
#pragma unroll
                for (int jj = 0; jj < 4; ++jj)
                    v[jj] = (MODE == CONV4_WEIGHT && accumulate) ? v[jj] + acc[i][4 * g + jj]
                                                                 : acc[i][4 * g + jj];
                Conv3Vec<T>::store(p, v);
            }
        } else {
#pragma unroll
            for (int jj = 0; jj < 4; ++jj) {
                if (jb + jj >= ncols) break;
                const int o = out_off(jb + jj);
#pragma unroll
                for (int i = 0; i < TM; ++i) {
                    const int m = m0 + (i / 4) * 4 * TY + ty * 4 + (i % 4);
                    if (m < M) put(d + m * m_ld + o, acc[i][4 * g + jj]);
                }
            }
        }
    }
}

// dst[i] += sum_{z < splits} part[z*total + i] for v4's split-K workspace, which can hold
// hundreds of splits of a small dW (DeepSpeech conv1: ~520 x 3200): conv2d_add_splits' one
// thread per output would run a 520-long chain in each of only 3200 threads. Here block
// (32, CONV4_ADD_ROWS) owns 32 consecutive outputs; thread (tx, ty) sums splits ty, ty + ROWS,
// ... (coalesced along tx), then the ROWS partial sums are added in a fixed order
// (deterministic). grid (ceil(total / 32)).
#define CONV4_ADD_ROWS 8
template <typename T>
__global__ void conv2d_add_splits_cols(T* __restrict__ dst, const T* __restrict__ part,
                                       int splits, long long total) {
    __shared__ T red[CONV4_ADD_ROWS][32];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const long long i = (long long)blockIdx.x * 32 + tx;
    T acc = T(0);
    if (i < total)
        for (int z = ty; z < splits; z += CONV4_ADD_ROWS) acc += part[(long long)z * total + i];
    red[ty][tx] = acc;
    __syncthreads();
    if (ty == 0 && i < total) {
        T sum = red[0][tx];
#pragma unroll
        for (int r = 1; r < CONV4_ADD_ROWS; ++r) sum += red[r][tx];
        dst[i] += sum;
    }
}

// =============================================================================================
// v5 Winograd F(2x2, 3x3) for 3x3 stride-1 undilated convolutions (any padding); the batched
// GEMMs between the transforms are cuBLAS's (cupy.matmul; not the studied kernel), the
// transforms are these kernels. Tile t = (n, th, tw) of a TH x TW grid over the output: its 2x2
// outputs (2th + i, 2tw + j) read the 4x4 input patch at (2th - pad_h, 2tw - pad_w) (zeros
// outside the input). Transformed tensors are [16][rows][tiles] (element e = 4*i + j major), so
// the GEMM for element e is a plain (rows x red) @ (red x tiles) matrix product:
//   forward        M[e] (K x T) = U[e] (K x C) @ V[e] (C x T), out = A^T M A (+ bias)
//   backward-data  the forward of dout (pad 2 - pad) with W flipped and transposed
//                  (W'[c][k][r][s] = W[k][c][2-r][2-s]): dx = A^T (U' @ V(dout)) A
//   backward-wt    dU[e] (K x C) = DY[e] (K x T) @ V[e]^T, DY = A dY A^T (dY: the tile's 2x2
//                  output gradient, zeros past P, Q), dW += G^T dU G: the F(3x3, 2x2)
//                  algorithm, the transpose of F(2x2, 3x3), dW_rs = sum dY_pq x_{p+r, q+s}.
// B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1],
// A^T = [1 1 1 0; 0 1 -1 -1]. One thread per (row, tile) or (k, c); offsets 64-bit.
// =============================================================================================

// Element i of a [rows][tiles] grid-stride loop: tile t = i % tiles, row i / tiles, and the
// tile's image n and position (th, tw) in its TH x TW grid.
struct ConvWinoTile {
    long long t, n;
    int row, th, tw;
};

__device__ __forceinline__ ConvWinoTile conv_wino_tile(long long i, long long tiles, int TH,
                                                       int TW) {
    ConvWinoTile w;
    w.t = i % tiles;
    w.row = (int)(i / tiles);
    w.n = w.t / ((long long)TH * TW);
    const int thw = (int)(w.t - w.n * TH * TW);
    w.th = thw / TW;
    w.tw = thw - w.th * TW;
    return w;
}

// V[e][c][t] = (B^T d B)[e] of channel c's 4x4 patch of tile t; src (N, C, H, W); grid-stride
// over C*T, t fastest (coalesced V stores; the patch loads of neighbouring tiles overlap).
template <typename T>
__global__ void conv2d_wino_input(T* __restrict__ V, const T* __restrict__ src, int N, int C,
                                  int H, int W, int TH, int TW, int pad_h, int pad_w) {
    const long long tiles = (long long)N * TH * TW, total = tiles * C;
    CONV_GRID_STRIDE(i, total) {
        const ConvWinoTile tl = conv_wino_tile(i, tiles, TH, TW);
        const long long t = tl.t;
        const int c = tl.row, h0 = 2 * tl.th - pad_h, w0 = 2 * tl.tw - pad_w;
        const T* s = src + (tl.n * C + c) * H * W;
        T d[4][4];
#pragma unroll
        for (int a = 0; a < 4; ++a)
#pragma unroll
            for (int b = 0; b < 4; ++b) {
                const int h = h0 + a, w = w0 + b;
                d[a][b] = ((unsigned)h < (unsigned)H && (unsigned)w < (unsigned)W)
                              ? s[(long long)h * W + w] : T(0);
            }
        T u[4][4];                                   // B^T d
#pragma unroll
        for (int b = 0; b < 4; ++b) {
            u[0][b] = d[0][b] - d[2][b];
            u[1][b] = d[1][b] + d[2][b];
            u[2][b] = d[2][b] - d[1][b];
            u[3][b] = d[1][b] - d[3][b];
        }
        T* v = V + (long long)c * tiles + t;
        const long long es = (long long)C * tiles;
#pragma unroll
        for (int a = 0; a < 4; ++a) {                // (B^T d) B
            v[(4 * a + 0) * es] = u[a][0] - u[a][2];
            v[(4 * a + 1) * es] = u[a][1] + u[a][2];
            v[(4 * a + 2) * es] = u[a][2] - u[a][1];
            v[(4 * a + 3) * es] = u[a][1] - u[a][3];
        }
    }
}

// U[e][m][j] = (G g G^T)[e]: g = w[m][j] (flip == 0: rows m = k, columns j = c) or the
// flipped transpose w[j][m][2-r][2-s] (flip != 0: rows m = c, columns j = k, for dx).
// w (K, C, 3, 3); M x J = K x C or C x K; grid-stride over M*J, j fastest.
template <typename T>
__global__ void conv2d_wino_weight(T* __restrict__ U, const T* __restrict__ w, int K, int C,
                                   int flip) {
    const int M = flip ? C : K, J = flip ? K : C;
    const long long total = (long long)M * J;
    CONV_GRID_STRIDE(i, total) {
        const int m = (int)(i / J), j = (int)(i - (long long)m * J);
        const T* src = flip ? w + ((long long)j * C + m) * 9 : w + ((long long)m * C + j) * 9;
        T g[3][3];
#pragma unroll
        for (int r = 0; r < 3; ++r)
#pragma unroll
            for (int s = 0; s < 3; ++s) g[r][s] = flip ? src[(2 - r) * 3 + 2 - s] : src[r * 3 + s];
        T u[4][3];                                   // G g
#pragma unroll
        for (int s = 0; s < 3; ++s) {
            u[0][s] = g[0][s];
            u[1][s] = T(0.5) * (g[0][s] + g[1][s] + g[2][s]);
            u[2][s] = T(0.5) * (g[0][s] - g[1][s] + g[2][s]);
            u[3][s] = g[2][s];
        }
        T* o = U + i;
#pragma unroll
        for (int a = 0; a < 4; ++a) {                // (G g) G^T
            o[(4 * a + 0) * total] = u[a][0];
            o[(4 * a + 1) * total] = T(0.5) * (u[a][0] + u[a][1] + u[a][2]);
            o[(4 * a + 2) * total] = T(0.5) * (u[a][0] - u[a][1] + u[a][2]);
            o[(4 * a + 3) * total] = u[a][2];
        }
    }
}

// out[n][m][2th+i][2tw+j] = (A^T M A)[i][j] (+ bias[m]) for the outputs inside P x Q;
// M [16][Mr][T]; out (N, Mr, P, Q); grid-stride over Mr*T, t fastest.
template <typename T>
__global__ void conv2d_wino_output(T* __restrict__ out, const T* __restrict__ Mt,
                                   const T* __restrict__ bias, int has_bias, int N, int Mr,
                                   int P, int Q, int TH, int TW) {
    const long long tiles = (long long)N * TH * TW, total = tiles * Mr;
    CONV_GRID_STRIDE(i, total) {
        const ConvWinoTile tl = conv_wino_tile(i, tiles, TH, TW);
        const int m = tl.row, th = tl.th, tw = tl.tw;
        const T* src = Mt + (long long)m * tiles + tl.t;
        T v[4][4];
#pragma unroll
        for (int e = 0; e < 16; ++e) v[e / 4][e % 4] = src[e * total];
        T u[2][4];                                   // A^T v
#pragma unroll
        for (int b = 0; b < 4; ++b) {
            u[0][b] = v[0][b] + v[1][b] + v[2][b];
            u[1][b] = v[1][b] - v[2][b] - v[3][b];
        }
        const T bv = has_bias ? bias[m] : T(0);
        T* o = out + (tl.n * Mr + m) * P * Q;
#pragma unroll
        for (int a = 0; a < 2; ++a) {                // (A^T v) A
            const int p = 2 * th + a;
            if (p >= P) continue;
            const T y0 = u[a][0] + u[a][1] + u[a][2], y1 = u[a][1] - u[a][2] - u[a][3];
            o[(long long)p * Q + 2 * tw] = y0 + bv;
            if (2 * tw + 1 < Q) o[(long long)p * Q + 2 * tw + 1] = y1 + bv;
        }
    }
}

// DY[e][k][t] = (A dY A^T)[e], dY the 2x2 block of dout (N, K, P, Q) at (2th, 2tw) (zeros past
// P, Q); grid-stride over K*T, t fastest.
template <typename T>
__global__ void conv2d_wino_dout(T* __restrict__ DY, const T* __restrict__ dout, int N, int K,
                                 int P, int Q, int TH, int TW) {
    const long long tiles = (long long)N * TH * TW, total = tiles * K;
    CONV_GRID_STRIDE(i, total) {
        const ConvWinoTile tl = conv_wino_tile(i, tiles, TH, TW);
        const int k = tl.row, th = tl.th, tw = tl.tw;
        const long long t = tl.t;
        const T* s = dout + (tl.n * K + k) * P * Q;
        T y[2][2];
#pragma unroll
        for (int a = 0; a < 2; ++a)
#pragma unroll
            for (int b = 0; b < 2; ++b) {
                const int p = 2 * th + a, q = 2 * tw + b;
                y[a][b] = (p < P && q < Q) ? s[(long long)p * Q + q] : T(0);
            }
        T u[4][2];                                   // A y, A = [1 0; 1 1; 1 -1; 0 -1]
#pragma unroll
        for (int b = 0; b < 2; ++b) {
            u[0][b] = y[0][b];
            u[1][b] = y[0][b] + y[1][b];
            u[2][b] = y[0][b] - y[1][b];
            u[3][b] = -y[1][b];
        }
        T* o = DY + (long long)k * tiles + t;
#pragma unroll
        for (int a = 0; a < 4; ++a) {                // (A y) A^T
            o[(4 * a + 0) * total] = u[a][0];
            o[(4 * a + 1) * total] = u[a][0] + u[a][1];
            o[(4 * a + 2) * total] = u[a][0] - u[a][1];
            o[(4 * a + 3) * total] = -u[a][1];
        }
    }
}

// dW[k][c] += G^T dU[k][c] G (3x3 from 4x4); dU [16][K][C]; grid-stride over K*C.
template <typename T>
__global__ void conv2d_wino_weight_grad(T* __restrict__ dW, const T* __restrict__ dU, int K,
                                        int C) {
    const long long total = (long long)K * C;
    CONV_GRID_STRIDE(i, total) {
        T v[4][4];
#pragma unroll
        for (int e = 0; e < 16; ++e) v[e / 4][e % 4] = dU[e * total + i];
        T u[3][4];                                   // G^T v, G^T = [1 .5 .5 0; 0 .5 -.5 0;
#pragma unroll                                       //               0 .5 .5 1]
        for (int b = 0; b < 4; ++b) {
            u[0][b] = v[0][b] + T(0.5) * (v[1][b] + v[2][b]);
            u[1][b] = T(0.5) * (v[1][b] - v[2][b]);
            u[2][b] = T(0.5) * (v[1][b] + v[2][b]) + v[3][b];
        }
        T* o = dW + i * 9;
#pragma unroll
        for (int r = 0; r < 3; ++r) {                // (G^T v) G
            o[r * 3 + 0] += u[r][0] + T(0.5) * (u[r][1] + u[r][2]);
            o[r * 3 + 1] += T(0.5) * (u[r][1] - u[r][2]);
            o[r * 3 + 2] += T(0.5) * (u[r][1] + u[r][2]) + u[r][3];
        }
    }
}
