// Losses (kernels/loss.py, "CUDA launchers"): softmax cross-entropy with integer targets and
// the mean-squared-error gradient. The batch mean of the per-row losses is a library
// reduction on the host side (xp.mean), not a kernel.
//   softmax_ce_fwd: one thread per row (C, the number of classes, is small in the models this
//                   serves): row max (NaN-propagating, like the CPU version), exp-sum,
//                   probabilities, and the row loss log(sum) - (logit[target] - max),
//                   accumulated in double.
//   softmax_ce_bwd: one thread per element: d = probs * scale - scale * [j == target].
//   mse_bwd:        one thread per element: d = scale * (pred - target).
//
// seqgrid: instantiate softmax_ce_fwd<float>
// seqgrid: instantiate softmax_ce_fwd<double>
// seqgrid: instantiate softmax_ce_bwd<float>
// seqgrid: instantiate softmax_ce_bwd<double>
// seqgrid: instantiate mse_bwd<float>
// seqgrid: instantiate mse_bwd<double>

#define LOSS_GRID_STRIDE(i, n)                                                         \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n);           \
         i += (long long)blockDim.x * gridDim.x)

// probs: (N, C); row_loss: (N,) double; logits: (N, C); targets: (N,) int64 in [0, C)
template <typename T>
__global__ void softmax_ce_fwd(T* __restrict__ probs, double* __restrict__ row_loss,
                               const T* __restrict__ logits,
                               const long long* __restrict__ targets, long long N, int C) {
    LOSS_GRID_STRIDE(i, N) {
        const T* row = logits + i * C;
        T* p = probs + i * C;
        T m = row[0];
        for (int j = 1; j < C; ++j) {
            if (row[j] > m || row[j] != row[j]) m = row[j];   // a NaN anywhere wins
        }
        double s = 0.0;
        for (int j = 0; j < C; ++j) {
            const double e = exp((double)row[j] - (double)m);
            p[j] = (T)e;
            s += e;
        }
        for (int j = 0; j < C; ++j) p[j] = (T)((double)p[j] / s);
        row_loss[i] = log(s) - ((double)row[targets[i]] - (double)m);
    }
}

template <typename T>
__global__ void softmax_ce_bwd(T* __restrict__ d, const T* __restrict__ probs,
                               const long long* __restrict__ targets, double scale, long long N,
                               int C) {
    LOSS_GRID_STRIDE(k, N * C) {
        const long long i = k / C;
        const int j = (int)(k % C);
        double v = (double)probs[k] * scale;
        if (j == targets[i]) v -= scale;
        d[k] = (T)v;
    }
}

template <typename T>
__global__ void mse_bwd(T* __restrict__ d, const T* __restrict__ pred, const T* __restrict__ target,
                        double scale, long long n) {
    LOSS_GRID_STRIDE(i, n) { d[i] = (T)(scale * ((double)pred[i] - (double)target[i])); }
}
