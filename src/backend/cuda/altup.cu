/* Gemma 3n AltUp stream mixing: predict every stream from all of them, and correct them with
 * the innovation of the active stream. */
#include "backend/cuda/cuda_internal.cuh"

__global__ void altup_predict_f32(const float *streams, const float *coef, int ns, int T, int H, float *pred) {
    size_t TH = (size_t)T * H, k = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= (size_t)ns * TH)
        return;
    int b = (int)(k / TH);
    size_t ti = k % TH, t = ti / H;
    const float *cb = coef + t * ns * ns + (size_t)b * ns;
    float s = streams[k];
    for (int a = 0; a < ns; a++)
        s += cb[a] * streams[(size_t)a * TH + ti];
    pred[k] = s;
}

void lm_cuda_altup_predict(lm_backend *be, const float *streams, const float *coef, int ns, int T, int H, float *pred) {
    cuda_backend *c = cu_be(be);
    size_t n = (size_t)ns * T * H;
    if (!n || lm_cuda_skip(c))
        return;
    altup_predict_f32<<<lm_cuda_blocks(n, 256), 256, 0, c->stream>>>(streams, coef, ns, T, H, pred);
    lm_cuda_launched(c, "altup_predict_f32");
}

__global__ void altup_correct_f32(float *streams, const float *pred, const float *x, const float *active,
                                  const float *w, int ns, int T, int H) {
    size_t TH = (size_t)T * H, k = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= (size_t)ns * TH)
        return;
    int i = (int)(k / TH);
    size_t ti = k % TH, t = ti / H;
    float wi = w[t * ns + i] + 1.0f;
    streams[k] = pred[k] + (x[ti] - active[ti]) * wi;
}

void lm_cuda_altup_correct(lm_backend *be, float *streams, const float *pred, const float *x, const float *active,
                           const float *w, int ns, int T, int H) {
    cuda_backend *c = cu_be(be);
    size_t n = (size_t)ns * T * H;
    if (!n || lm_cuda_skip(c))
        return;
    altup_correct_f32<<<lm_cuda_blocks(n, 256), 256, 0, c->stream>>>(streams, pred, x, active, w, ns, T, H);
    lm_cuda_launched(c, "altup_correct_f32");
}
