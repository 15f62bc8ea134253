// Persistent recurrent kernels (version 3 of {cell}_sequence_forward / _backward), launched from
// kernels/recurrent_persistent.py.  N batch, Hd hidden, G gates (rnn 1, lstm 4, gru 3), T steps.
//
// ONE cooperative launch runs the whole time loop.  Block b owns hidden units
// [b*S, min((b+1)*S, Hd)) ("its slice", S = ceil(Hd / blocks)) and all G gates of those units,
// and keeps its part of W_hh in shared memory for the whole sequence (loaded once), so per step
// the only global traffic is h (forward) / dgh (backward), never the weights.
//
// forward, per step:  stage h_{t-1} (N x Hd) into shared memory; the block's G*S rows of
//   h_{t-1} W_hh^T (one warp per row, lanes over Hd, N <= 8 accumulators per lane, shuffle
//   reduction); the gates of its units (x W_ih^T + b_ih is precomputed for all steps by one
//   GEMM before the launch); write y, the cache and h_t into the OTHER half of a double buffer;
//   grid sync.  Double buffering makes one sync per step enough: step s reads hbuf[s&1] and
//   writes hbuf[(s+1)&1]; hbuf[s&1] is next written in step s+1, after every block has passed
//   the step-s sync, i.e. finished reading it.  c (lstm) never leaves its owner: no sync.
// backward, per step:  phase A (pointwise, own units): dh_t + dy_t -> pre-activation gradients
//   dgx/dgh[t] of the block's G*S gate rows (written to global), dc update, and the "direct"
//   part of dh_{t-1} (gru: dh*z); grid sync (every block needs all of dgh[t]); phase B: the
//   block's columns of dgh[t] @ W_hh (W_hh[:, slice] kept in shared memory transposed; dgh[t]
//   staged through shared memory in chunks; one warp per column, lanes over the chunk's rows)
//   -> dh_{t-1} of its own units.  Phase A of the next step only
//   needs the block's own dh, dc: again one grid sync per step.  dgx/dgh have a slot per step,
//   so no location is written twice.
//
// Arrays written during the launch and read by other blocks (hbuf, dgh) are plain pointers
// (not const __restrict__, so never loaded through the read-only/texture path, which is not
// coherent with writes made during the kernel).
//
// Dynamic shared memory (elements of T):
//   forward:  Ws[G*S][Hd] | hs[N][Hd] | hg[N][G*S]
//   backward: Wc[S][G*Hd] | ds[N][RC] | acc_s[P][N][S]  (Wc[j][r] = W_hh[r][u0 + j]; ds a chunk
//             of RC rows of dgh[t], RC a multiple of 32 chosen by the launcher to fill the
//             shared memory left, at most G*Hd)
//
// cell codes: 0 rnn_tanh, 1 rnn_relu, 2 lstm, 3 gru (as in kernels/recurrent.py).

#define RP_MAXN 8   // batch rows per launch: N accumulators live in registers

// seqgrid: instantiate rnn_persistent_fwd<float>
// seqgrid: instantiate rnn_persistent_fwd<double>
// seqgrid: instantiate rnn_persistent_bwd<float>
// seqgrid: instantiate rnn_persistent_bwd<double>

__device__ __forceinline__ float rp_exp(float a) { return expf(a); }
__device__ __forceinline__ double rp_exp(double a) { return exp(a); }
__device__ __forceinline__ float rp_tanh(float a) { return tanhf(a); }
__device__ __forceinline__ double rp_tanh(double a) { return tanh(a); }

template <typename T>
__device__ __forceinline__ T rp_sigmoid(T a) { return T(1) / (T(1) + rp_exp(-a)); }

// Copy a rows x cols tile of global memory written by OTHER blocks during this launch into
// shared memory. __ldcg loads at L2 (the point of coherence; never a stale L1 line), and
// BATCH independent loads are issued before their stores: a plain load/store loop is
// serialised on the L2 latency (the compiler cannot prove the shared stores don't alias the
// global loads), which measured ~30 us per step at N=8, G*Hd=4096 on an H200. The forward
// stages N*Hd elements per step (16 per thread at N=8, Hd=1000: RP_BATCH = 8, two round
// trips); the backward N*G*Hd (63 per thread for the lstm: RP_BATCH_BWD = 16, 4 round trips
// instead of 8: 68 registers, of the 128 a 512-thread block allows). Element i =
// tid + k*nthr is (row, col) = divmod(i, cols), advanced by nthr without dividing: one
// division per thread and call instead of one per element (63 per thread and step in the
// lstm backward at N=8, Hd=1000).
#define RP_BATCH 8
#define RP_BATCH_BWD 16
template <int BATCH, typename T>
__device__ __forceinline__ void rp_stage(T* dst, int dstride, const T* src, long long sstride,
                                         int rows, int cols, int tid, int nthr) {
    const int total = rows * cols;
    int row = tid / cols, col = tid - row * cols;
    for (int base = tid; base < total; base += BATCH * nthr) {
        T v[BATCH];
        int off[BATCH];
#pragma unroll
        for (int b = 0; b < BATCH; ++b) {
            off[b] = row * dstride + col;
            v[b] = base + b * nthr < total ? __ldcg(src + (long long)row * sstride + col) : T(0);
            col += nthr;
            while (col >= cols) {
                col -= cols;
                ++row;
            }
        }
#pragma unroll
        for (int b = 0; b < BATCH; ++b)
            if (base + b * nthr < total) dst[off[b]] = v[b];
    }
}

// The input projection and b_hh of the first unit a thread handles in the gate phase
// (thread tid -> n = tid / S, unit u0 + tid % S; on a GPU launch N*S <= blockDim, so that is
// every unit), loaded one step ahead, before the grid sync, so their latency hides behind it.
template <typename T>
__device__ __forceinline__ void rp_prefetch(T* px, T* pb, const T* xg, const T* b_hh, int t,
                                            int N, int Hd, int G, int S, int u0, int tid) {
    const int u = u0 + tid % S;
    if (tid < N * S && u < Hd) {
        const long long gb = ((long long)t * N + tid / S) * G * Hd + u;
#pragma unroll
        for (int q = 0; q < 4; ++q) {
            if (q < G) {
                px[q] = xg[gb + (long long)q * Hd];
                pb[q] = b_hh[q * Hd + u];
            }
        }
    }
}

template <typename T>
__device__ __forceinline__ T rp_warp_sum(T v) {
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

// y (T,N,Hd) output (for rnn cells also the cache's "gates"); hprev (T,N,Hd); gates (T,N,G*Hd)
// (lstm/gru; unused for rnn); aux1 (T,N,Hd) lstm cprev / gru hn; aux2 (T,N,Hd) lstm tanh_c;
// h0 (N,Hd) read by step 0; hbuf (2,N,Hd) scratch, h_n in hbuf[Tn & 1] on exit (step s >= 1
// reads hbuf[s&1]); c0 (N,Hd) read by step 0, c (N,Hd) -> c_n (lstm; c0 is never written, so
// the launcher copies neither h0 nor c0); xg (T,N,G*Hd) = x W_ih^T + b_ih; w_hh (G*Hd,Hd);
// b_hh (G*Hd) (zeros when absent); lens (N) int32 in [1, Tn].  S = units per block.
template <typename T>
__global__ void rnn_persistent_fwd(T* __restrict__ y, T* __restrict__ hprev, T* __restrict__ gates,
                                   T* __restrict__ aux1, T* __restrict__ aux2,
                                   const T* __restrict__ h0, T* hbuf,
                                   const T* __restrict__ c0, T* __restrict__ c,
                                   const T* __restrict__ xg, const T* __restrict__ w_hh,
                                   const T* __restrict__ b_hh, const int* __restrict__ lens,
                                   int cell, int Tn, int N, int Hd, int S, int reverse) {
    // one element type for the module's dynamic shared array (NVRTC rejects a templated
    // extern __shared__ T[] whose type differs between instantiations); 16-byte aligned
    SEQGRID_DYNAMIC_SHARED(double, rp_smem);
    T* smem = reinterpret_cast<T*>(rp_smem);
    const int G = cell == 2 ? 4 : (cell == 3 ? 3 : 1);
    const int GS = G * S;
    const long long GHd = (long long)G * Hd;
    T* Ws = smem;                                // [GS][Hd]
    T* hs = Ws + (long long)GS * Hd;             // [N][Hd]
    T* hg = hs + (long long)N * Hd;              // [N][GS]
    const int u0 = blockIdx.x * S;
    const int tid = threadIdx.x, nthr = blockDim.x;
    const int lane = tid & 31, warp = tid >> 5, nwarps = nthr >> 5;

    // this block's rows of W_hh, once: local row g*S + j is global row g*Hd + u0 + j
    for (long long idx = tid; idx < (long long)GS * Hd; idx += nthr) {
        const int row = (int)(idx / Hd), k = (int)(idx % Hd);
        const int g = row / S, u = u0 + row % S;
        Ws[idx] = u < Hd ? w_hh[((long long)g * Hd + u) * Hd + k] : T(0);
    }

    T px[4], pb[4];                              // prefetched xg / b_hh (rp_prefetch)
    rp_prefetch(px, pb, xg, b_hh, reverse ? Tn - 1 : 0, N, Hd, G, S, u0, tid);
    for (int s = 0; s < Tn; ++s) {
        const int t = reverse ? Tn - 1 - s : s;
        const T* hin = s == 0 ? h0 : hbuf + (long long)(s & 1) * N * Hd;
        T* hout = hbuf + (long long)((s + 1) & 1) * N * Hd;
        rp_stage<RP_BATCH>(hs, Hd, hin, Hd, N, Hd, tid, nthr);
        __syncthreads();

        // recurrent GEMM of the slice: hg[n][row] = sum_k Ws[row][k] * h[n][k]
        for (int row = warp; row < GS; row += nwarps) {
            if (u0 + row % S >= Hd) continue;        // uniform per warp
            T acc[RP_MAXN];
#pragma unroll
            for (int n = 0; n < RP_MAXN; ++n) acc[n] = T(0);
            const T* wr = Ws + (long long)row * Hd;
            for (int k = lane; k < Hd; k += 32) {
                const T w = wr[k];
#pragma unroll
                for (int n = 0; n < RP_MAXN; ++n)
                    if (n < N) acc[n] += w * hs[n * Hd + k];
            }
#pragma unroll
            for (int n = 0; n < RP_MAXN; ++n) {
                if (n < N) {
                    const T v = rp_warp_sum(acc[n]);
                    if (lane == 0) hg[n * GS + row] = v;
                }
            }
        }
        __syncthreads();

        // gates of the block's units
        for (int idx = tid; idx < N * S; idx += nthr) {
            const int n = idx / S, j = idx % S, u = u0 + j;
            if (u >= Hd) continue;
            const bool valid = t < lens[n];
            const T hp = hs[n * Hd + u];
            const long long o = ((long long)t * N + n) * Hd + u;      // (t, n, u)
            const long long gb = ((long long)t * N + n) * GHd + u;    // (t, n, gate 0, u)
            const T* hgn = hg + n * GS + j;
            T xq[4], bq[4];                          // x W_ih^T + b_ih and b_hh, gates 0..G-1
#pragma unroll
            for (int q = 0; q < 4; ++q) {
                if (q < G) {
                    xq[q] = idx == tid ? px[q] : xg[gb + (long long)q * Hd];
                    bq[q] = idx == tid ? pb[q] : b_hh[q * Hd + u];
                }
            }
            hprev[o] = hp;
            T h;
            if (cell == 0 || cell == 1) {
                const T a = xq[0] + hgn[0] + bq[0];
                h = cell == 0 ? rp_tanh(a) : (a > T(0) ? a : T(0));
            } else if (cell == 2) {
                const T cp = s == 0 ? c0[n * Hd + u] : c[n * Hd + u];
                aux1[o] = cp;
                const T ig = rp_sigmoid(xq[0] + hgn[0] + bq[0]);
                const T fg = rp_sigmoid(xq[1] + hgn[S] + bq[1]);
                const T gg = rp_tanh(xq[2] + hgn[2 * S] + bq[2]);
                const T og = rp_sigmoid(xq[3] + hgn[3 * S] + bq[3]);
                const T cn = fg * cp + ig * gg;
                const T tc = rp_tanh(cn);
                h = og * tc;
                gates[gb] = valid ? ig : T(0);
                gates[gb + Hd] = valid ? fg : T(0);
                gates[gb + 2 * Hd] = valid ? gg : T(0);
                gates[gb + 3 * Hd] = valid ? og : T(0);
                aux2[o] = valid ? tc : T(0);
                c[n * Hd + u] = valid ? cn : cp;        // padded steps carry c
            } else {
                const T r = rp_sigmoid(xq[0] + hgn[0] + bq[0]);
                const T z = rp_sigmoid(xq[1] + hgn[S] + bq[1]);
                const T hn = hgn[2 * S] + bq[2];
                const T nn = rp_tanh(xq[2] + r * hn);
                h = (T(1) - z) * nn + z * hp;
                gates[gb] = valid ? r : T(0);
                gates[gb + Hd] = valid ? z : T(0);
                gates[gb + 2 * Hd] = valid ? nn : T(0);
                aux1[o] = valid ? hn : T(0);
            }
            y[o] = valid ? h : T(0);
            hout[n * Hd + u] = valid ? h : hp;            // padded steps carry h
        }
        if (s + 1 < Tn)
            rp_prefetch(px, pb, xg, b_hh, reverse ? Tn - 2 - s : s + 1, N, Hd, G, S, u0, tid);
        // every block's h_t must be in hout before anyone stages it; also orders this
        // step's reads of hs/hg before the next step overwrites them
        seqgrid_grid_sync();
    }
}

// dgx (T,N,G*Hd) out; dgh (T,N,G*Hd) out, only written when sep_dgh (gru), else the same
// array as dgx; dh (N,Hd) dh_n -> dh0; dc (N,Hd) dc_n -> dc0 (lstm); dtmp (N,Hd) scratch
// (gru's direct term dh*z); dy (T,N,Hd) read only when has_dy; hprev, gates, aux1, aux2 the
// forward cache (aux1 lstm cprev / gru hn, aux2 lstm tanh_c); w_hh (G*Hd,Hd); lens (N) int32;
// bptt: truncation length (0 = full BPTT); RC rows of dgh[t] per shared-memory chunk;
// P warps per column in phase B (max(1, warps / S)).
template <typename T>
__global__ void rnn_persistent_bwd(T* dgx, T* dgh, T* __restrict__ dh, T* __restrict__ dc,
                                   T* __restrict__ dtmp, const T* __restrict__ dy,
                                   const T* __restrict__ hprev, const T* __restrict__ gates,
                                   const T* __restrict__ aux1, const T* __restrict__ aux2,
                                   const T* __restrict__ w_hh, const int* __restrict__ lens,
                                   int cell, int Tn, int N, int Hd, int S, int RC, int P,
                                   int reverse, int bptt, int has_dy, int sep_dgh) {
    SEQGRID_DYNAMIC_SHARED(double, rp_smem);
    T* smem = reinterpret_cast<T*>(rp_smem);
    const int G = cell == 2 ? 4 : (cell == 3 ? 3 : 1);
    const int GHd = G * Hd;
    T* Wc = smem;                                 // [S][G*Hd]
    T* ds = Wc + (long long)S * GHd;              // [N][RC] a chunk of dgh[t]
    T* acc_s = ds + (long long)N * RC;            // [P][N][S] partial dgh[t] @ W_hh[:, slice]
    const int u0 = blockIdx.x * S;
    const int tid = threadIdx.x, nthr = blockDim.x;
    const int lane = tid & 31, warp = tid >> 5, nwarps = nthr >> 5;

    // the block's columns of W_hh, transposed so phase B's dot products run along r;
    // j fastest so the global reads are contiguous (the shared stores are strided)
    for (long long idx = tid; idx < (long long)S * GHd; idx += nthr) {
        const int j = (int)(idx % S), r = (int)(idx / S);
        const int u = u0 + j;
        Wc[(long long)j * GHd + r] = u < Hd ? w_hh[(long long)r * Hd + u] : T(0);
    }
    __syncthreads();

    for (int s = 0; s < Tn; ++s) {
        const int t = reverse ? s : Tn - 1 - s;   // processing order, backwards in time

        // phase A: pointwise backward of the block's units
        for (int idx = tid; idx < N * S; idx += nthr) {
            const int n = idx / S, j = idx % S, u = u0 + j;
            if (u >= Hd) continue;
            const bool valid = t < lens[n];
            const long long o = ((long long)t * N + n) * Hd + u;
            const long long gb = ((long long)t * N + n) * GHd + u;
            const T dht = dh[n * Hd + u] + ((valid && has_dy) ? dy[o] : T(0));
            T direct = T(0);
            if (cell == 0 || cell == 1) {
                const T hy = gates[o];             // rnn: the cache's gates are y = h_t
                const T da = cell == 0 ? dht * (T(1) - hy * hy) : (hy > T(0) ? dht : T(0));
                dgx[gb] = valid ? da : T(0);
            } else if (cell == 2) {
                const T ig = gates[gb], fg = gates[gb + Hd], gg = gates[gb + 2 * Hd],
                        og = gates[gb + 3 * Hd];
                const T tc = aux2[o], cp = aux1[o];
                const T dcv = dc[n * Hd + u];
                const T dct = dcv + dht * og * (T(1) - tc * tc);
                dgx[gb] = valid ? dct * gg * ig * (T(1) - ig) : T(0);
                dgx[gb + Hd] = valid ? dct * cp * fg * (T(1) - fg) : T(0);
                dgx[gb + 2 * Hd] = valid ? dct * ig * (T(1) - gg * gg) : T(0);
                dgx[gb + 3 * Hd] = valid ? dht * tc * og * (T(1) - og) : T(0);
                T dcn = valid ? dct * fg : dcv;
                if (bptt > 0 && valid) {
                    const int sn = reverse ? lens[n] - 1 - t : t;
                    if (sn > 0 && sn % bptt == 0) dcn = T(0);
                }
                dc[n * Hd + u] = dcn;
            } else {
                const T r = gates[gb], z = gates[gb + Hd], nn = gates[gb + 2 * Hd];
                const T hp = hprev[o], hn = aux1[o];
                const T dn = dht * (T(1) - z);
                const T dz = dht * (hp - nn);
                const T dan = dn * (T(1) - nn * nn);
                const T dar = dan * hn * r * (T(1) - r);
                const T daz = dz * z * (T(1) - z);
                dgx[gb] = valid ? dar : T(0);
                dgx[gb + Hd] = valid ? daz : T(0);
                dgx[gb + 2 * Hd] = valid ? dan : T(0);
                if (sep_dgh) {
                    dgh[gb] = valid ? dar : T(0);
                    dgh[gb + Hd] = valid ? daz : T(0);
                    dgh[gb + 2 * Hd] = valid ? dan * r : T(0);
                }
                direct = dht * z;
            }
            dtmp[n * Hd + u] = direct;
        }
        // all of dgh[t] (every block's gate rows) must be written before phase B reads it
        seqgrid_grid_sync();

        // phase B: dh_{t-1}[n][u] = direct + sum_r dgh[t][n][r] * W_hh[r][u], own units.
        // dgh[t] is staged through shared memory in chunks of RC rows so the block reads it
        // from L2 once (one warp per column reading it directly would read it S times).
        const T* dgt = dgh + (long long)t * N * GHd;
        // work item w = (column j = w % S, part p = w / S): P warps share a column, each
        // taking every P-th group of 32 rows, so all warps are busy when S < warps; item w
        // is always run by warp w % nwarps, so its partial-sum slot has one writer.
        for (int idx = tid; idx < P * N * S; idx += nthr) acc_s[idx] = T(0);
        for (int r0 = 0; r0 < GHd; r0 += RC) {
            const int rc = min(RC, GHd - r0);
            __syncthreads();                       // previous chunk consumed (and acc_s zeroed)
            rp_stage<RP_BATCH_BWD>(ds, RC, dgt + r0, (long long)GHd, N, rc, tid, nthr);
            __syncthreads();
            for (int w = warp; w < S * P; w += nwarps) {
                const int j = w % S, p = w / S;
                if (u0 + j >= Hd) continue;        // uniform per warp
                T acc[RP_MAXN];
#pragma unroll
                for (int n = 0; n < RP_MAXN; ++n) acc[n] = T(0);
                const T* wc = Wc + (long long)j * GHd + r0;
                for (int r = p * 32 + lane; r < rc; r += 32 * P) {
                    const T wv = wc[r];
#pragma unroll
                    for (int n = 0; n < RP_MAXN; ++n)
                        if (n < N) acc[n] += wv * ds[n * RC + r];
                }
#pragma unroll
                for (int n = 0; n < RP_MAXN; ++n) {
                    if (n < N) {
                        const T v = rp_warp_sum(acc[n]);
                        if (lane == 0) acc_s[(p * N + n) * S + j] += v;
                    }
                }
            }
        }
        __syncthreads();
        for (int idx = tid; idx < N * S; idx += nthr) {
            const int n = idx / S, j = idx % S, u = u0 + j;
            if (u >= Hd) continue;
            const bool valid = t < lens[n];
            T sum = T(0);
            for (int p = 0; p < P; ++p) sum += acc_s[p * N * S + idx];   // fixed order
            T d = valid ? dtmp[n * Hd + u] + sum : dh[n * Hd + u];   // padded: pass dh
            if (bptt > 0 && valid) {
                const int sn = reverse ? lens[n] - 1 - t : t;
                if (sn > 0 && sn % bptt == 0) d = T(0);             // truncated BPTT: detach
            }
            dh[n * Hd + u] = d;
        }
        // phase A of the next step reads dh / dtmp written above by other threads of the block
        __syncthreads();
    }
}
