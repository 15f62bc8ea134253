// Self-test kernels for the CUDA loader and the CPU emulator (tests/test_cuda_emu.py).
// Self-contained CUDA C: no #include; the seqgrid prelude (see kernels/cuda/__init__.py)
// provides SEQGRID_DYNAMIC_SHARED, seqgrid_grid_sync, SEQGRID_INF_F, ...
//
// seqgrid: instantiate scale_add<float>
// seqgrid: instantiate scale_add<double>
// seqgrid: instantiate block_sum<float, 128>

// out = a + b
extern "C" __global__ void vec_add(float* __restrict__ out, const float* __restrict__ a,
                                   const float* __restrict__ b, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = a[i] + b[i];
}

// C (M x N) = A (M x K) @ B (K x N), row-major, TILE x TILE blocks, shared-memory tiles
#define TILE 16
extern "C" __global__ void matmul_tiled(float* __restrict__ C, const float* __restrict__ A,
                                        const float* __restrict__ B, int M, int N, int K) {
    __shared__ float As[TILE][TILE];
    __shared__ float Bs[TILE][TILE + 1];
    int row = blockIdx.y * TILE + threadIdx.y;
    int col = blockIdx.x * TILE + threadIdx.x;
    float acc = 0.0f;
    for (int k0 = 0; k0 < K; k0 += TILE) {
        int ak = k0 + threadIdx.x, bk = k0 + threadIdx.y;
        As[threadIdx.y][threadIdx.x] = (row < M && ak < K) ? A[(long long)row * K + ak] : 0.0f;
        Bs[threadIdx.y][threadIdx.x] = (bk < K && col < N) ? B[(long long)bk * N + col] : 0.0f;
        __syncthreads();
#pragma unroll
        for (int k = 0; k < TILE; ++k) acc = fmaf(As[threadIdx.y][k], Bs[k][threadIdx.x], acc);
        __syncthreads();
    }
    if (row < M && col < N) C[(long long)row * N + col] = acc;
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
    return v;
}

// out[blockIdx.x] = sum of x over the block's range; blockDim.x a multiple of 32 (<= 1024).
// Warp shuffles, then one value per warp through shared memory.
extern "C" __global__ void reduce_sum(float* __restrict__ out, const float* __restrict__ x, int n) {
    __shared__ float partial[32];
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    float v = i < n ? x[i] : 0.0f;
    v = warp_sum(v);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < (int)(blockDim.x >> 5) ? partial[lane] : 0.0f;
        v = warp_sum(v);
        if (lane == 0) out[blockIdx.x] = v;
    }
}

// every lane gets the max of its warp (xor butterfly) and lane 0's value (broadcast);
// out_up[i] = inclusive prefix sum inside the warp (shfl_up)
extern "C" __global__ void warp_ops(float* __restrict__ out_max, float* __restrict__ out_bcast,
                                    int* __restrict__ out_scan, unsigned int* __restrict__ out_ballot,
                                    const float* __restrict__ x, const int* __restrict__ v) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    float m = x[i];
    for (int off = 16; off > 0; off >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
    out_max[i] = m;
    out_bcast[i] = __shfl_sync(0xffffffffu, x[i], 0);
    int s = v[i];
    int lane = threadIdx.x & 31;
    for (int off = 1; off < 32; off <<= 1) {
        int t = __shfl_up_sync(0xffffffffu, s, off);
        if (lane >= off) s += t;
    }
    out_scan[i] = s;
    out_ballot[i] = __ballot_sync(0xffffffffu, x[i] > 0.0f);
}

// hist[bins] += counts of values (0 <= values[i] < nbins), global atomics
extern "C" __global__ void histogram(unsigned int* __restrict__ hist, const int* __restrict__ values,
                                     int n, int nbins) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        int b = values[i];
        if (b >= 0 && b < nbins) atomicAdd(&hist[b], 1u);
    }
}

// float atomics, atomicMax, atomicCAS, atomicExch in one kernel
extern "C" __global__ void atomics(float* __restrict__ fsum, int* __restrict__ imax,
                                   int* __restrict__ cas_winner, int* __restrict__ exch,
                                   const float* __restrict__ x, const int* __restrict__ v, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    atomicAdd(fsum, x[i]);
    atomicMax(imax, v[i]);
    atomicCAS(cas_winner, -1, i);   // exactly one thread wins
    atomicExch(exch, 7);
}

// y[i] = x[i] reversed within each block, through dynamic shared memory (blockDim.x floats)
extern "C" __global__ void block_reverse(float* __restrict__ y, const float* __restrict__ x, int n) {
    SEQGRID_DYNAMIC_SHARED(float, buf);
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    buf[threadIdx.x] = i < n ? x[i] : 0.0f;
    __syncthreads();
    int j = blockIdx.x * blockDim.x + (blockDim.x - 1 - threadIdx.x);
    if (j < n) y[j] = buf[threadIdx.x];
}

// BUG on purpose: threads with threadIdx.x >= half exit before the barrier the others wait at
extern "C" __global__ void divergent_sync(float* __restrict__ y, int half) {
    if (threadIdx.x >= (unsigned)half) return;
    y[threadIdx.x] = 1.0f;
    __syncthreads();
    y[threadIdx.x] += 1.0f;
}

// grid-wide sync: phase 1 writes x[i] = i+1; after the grid barrier every thread reads an
// element another block wrote. Needs all blocks resident (cooperative launch).
extern "C" __global__ void grid_sync_shift(float* __restrict__ y, float* __restrict__ x, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    int total = gridDim.x * blockDim.x;
    for (int rep = 0; rep < 3; ++rep) {
        if (i < n) x[i] = (float)(i + 1 + rep);
        seqgrid_grid_sync();
        if (i < n) y[i] += x[(i + blockDim.x) % (total < n ? total : n)];
        seqgrid_grid_sync();
    }
}

// template kernels instantiated through name expressions
template <typename T>
__global__ void scale_add(T* __restrict__ y, const T* __restrict__ x, T alpha, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = alpha * x[i] + y[i];
}

template <typename T, int BLOCK>
__global__ void block_sum(T* __restrict__ out, const T* __restrict__ x, int n) {
    __shared__ T s[BLOCK];
    int i = blockIdx.x * BLOCK + threadIdx.x;
    s[threadIdx.x] = i < n ? x[i] : T(0);
    __syncthreads();
    for (int h = BLOCK / 2; h > 0; h >>= 1) {
        if ((int)threadIdx.x < h) s[threadIdx.x] += s[threadIdx.x + h];
        __syncthreads();
    }
    if (threadIdx.x == 0) out[blockIdx.x] = s[0];
}

// out-of-bounds write on purpose (one past the end) for the ASan test: never launch it
// outside tests/test_cuda_emu.py's ASan subprocess
extern "C" __global__ void oob_write(float* __restrict__ y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i <= n) y[i] = 1.0f;  // BUG on purpose: i == n is out of bounds
}

// the order-dependence detector: thread 0 of each block writes the value that thread
// blockDim.x-1 read without a barrier; forward order and reverse order disagree
extern "C" __global__ void racy_neighbor(float* __restrict__ y) {
    __shared__ float s;
    if (threadIdx.x == 0) s = (float)blockIdx.x;
    if (threadIdx.x == blockDim.x - 1) y[blockIdx.x] = s;   // BUG on purpose: no __syncthreads
}
