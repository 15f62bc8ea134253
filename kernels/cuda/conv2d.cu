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
// Parameter gradients accumulate (+=) into the caller's arrays; dx and out are overwritten.
// Accumulation is in T (float for float32). Element offsets are 64-bit (a tensor may exceed
// 2^31 elements); per-tensor dimensions and C*R*S, K*R*S must fit an int.
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
