// Elementwise activations (kernels/activation.py, "CUDA launchers"): ReLU, sigmoid, tanh,
// forward y = f(x) and backward dx = dy * f'(y) from the forward OUTPUT y, like the CPU
// versions. One thread per element, grid-stride loops, 64-bit indices. Semantics match the
// NumPy reference: ReLU keeps NaN (NaN < 0 is false); sigmoid evaluates exp of a non-positive
// number only (no overflow for large |x|).
//
// seqgrid: instantiate relu_fwd<float>
// seqgrid: instantiate relu_fwd<double>
// seqgrid: instantiate relu_bwd<float>
// seqgrid: instantiate relu_bwd<double>
// seqgrid: instantiate sigmoid_fwd<float>
// seqgrid: instantiate sigmoid_fwd<double>
// seqgrid: instantiate sigmoid_bwd<float>
// seqgrid: instantiate sigmoid_bwd<double>
// seqgrid: instantiate tanh_fwd<float>
// seqgrid: instantiate tanh_fwd<double>
// seqgrid: instantiate tanh_bwd<float>
// seqgrid: instantiate tanh_bwd<double>

#define ACT_GRID_STRIDE(i, n)                                                          \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n);           \
         i += (long long)blockDim.x * gridDim.x)

__device__ __forceinline__ float act_exp(float v) { return expf(v); }
__device__ __forceinline__ double act_exp(double v) { return exp(v); }
__device__ __forceinline__ float act_tanh(float v) { return tanhf(v); }
__device__ __forceinline__ double act_tanh(double v) { return tanh(v); }

template <typename T>
__global__ void relu_fwd(T* __restrict__ y, const T* __restrict__ x, long long n) {
    ACT_GRID_STRIDE(i, n) {
        const T v = x[i];
        y[i] = v < T(0) ? T(0) : v;
    }
}

template <typename T>
__global__ void relu_bwd(T* __restrict__ dx, const T* __restrict__ dy, const T* __restrict__ y,
                         long long n) {
    ACT_GRID_STRIDE(i, n) { dx[i] = y[i] > T(0) ? dy[i] : T(0); }
}

template <typename T>
__global__ void sigmoid_fwd(T* __restrict__ y, const T* __restrict__ x, long long n) {
    ACT_GRID_STRIDE(i, n) {
        const T v = x[i];
        if (v >= T(0)) {
            y[i] = T(1) / (T(1) + act_exp(-v));
        } else {
            const T e = act_exp(v);
            y[i] = e / (T(1) + e);
        }
    }
}

template <typename T>
__global__ void sigmoid_bwd(T* __restrict__ dx, const T* __restrict__ dy,
                            const T* __restrict__ y, long long n) {
    ACT_GRID_STRIDE(i, n) { dx[i] = dy[i] * y[i] * (T(1) - y[i]); }
}

template <typename T>
__global__ void tanh_fwd(T* __restrict__ y, const T* __restrict__ x, long long n) {
    ACT_GRID_STRIDE(i, n) { y[i] = act_tanh(x[i]); }
}

template <typename T>
__global__ void tanh_bwd(T* __restrict__ dx, const T* __restrict__ dy, const T* __restrict__ y,
                         long long n) {
    ACT_GRID_STRIDE(i, n) { dx[i] = dy[i] * (T(1) - y[i] * y[i]); }
}
