/* Fused decode ops (backend slots linear_n, linear_glu, add_rmsnorm, kv_put with RoPE, matvec_add and
 * the norm_matvec ops): fewer launches
 * per layer. Each falls back to the separate ops for shapes or formats the fused kernels do
 * not serve, and when the backend was created with LMCORE_CUDA_FUSE=0. */
#include "backend/cuda/cuda_internal.cuh"

void lm_cuda_linear_n(lm_backend *be, int n, const lm_linear *const *w, const float *x, int T, float *const *y) {
    cuda_backend *c = cu_be(be);
    if (lm_cuda_skip(c))
        return;
    if (c->fuse && T == 1 && lm_cuda_matvec_n(c, n, w, x, y, lm_cuda_mv_plain))
        return;
    if (T >= LM_CUDA_GEMM_MIN_T && lm_cuda_gemm_n(c, n, w, x, T, y)) /* x converted once */
        return;
    for (int i = 0; i < n; i++)
        lm_cuda_linear(be, w[i], x, T, y[i]);
}

void lm_cuda_linear_glu(lm_backend *be, const lm_linear *gate, const lm_linear *up, const float *x, int T, lm_act act,
                        float limit, float *g_buf, float *u_buf, float *out) {
    cuda_backend *c = cu_be(be);
    if (lm_cuda_skip(c))
        return;
    if (c->fuse && T == 1 && lm_cuda_matvec_glu(c, gate, up, x, act, limit, out, lm_cuda_mv_plain))
        return;
    const lm_linear *w[2] = {gate, up};
    float *y[2] = {g_buf, u_buf};
    lm_cuda_linear_n(be, 2, w, x, T, y);
    lm_cuda_glu(be, g_buf, u_buf, up->out, T, up->out, act, limit, out);
}

int lm_cuda_matvec_add(lm_backend *be, const lm_linear *w, const float *x, float *y) {
    cuda_backend *c = cu_be(be);
    lm_cuda_mv_io io = {NULL, 0.0f, 1};
    return c->fuse && (lm_cuda_skip(c) || lm_cuda_matvec(c, w, x, y, io));
}

int lm_cuda_norm_matvec_n(lm_backend *be, const float *nw, float eps, int n, const lm_linear *const *w,
                          const float *x, float *const *y) {
    cuda_backend *c = cu_be(be);
    lm_cuda_mv_io io = {nw, eps, 0};
    return c->fuse && nw && (lm_cuda_skip(c) || lm_cuda_matvec_n(c, n, w, x, y, io));
}

int lm_cuda_norm_matvec_glu(lm_backend *be, const float *nw, float eps, const lm_linear *gate, const lm_linear *up,
                            const float *x, lm_act act, float limit, float *out) {
    cuda_backend *c = cu_be(be);
    lm_cuda_mv_io io = {nw, eps, 0};
    return c->fuse && nw && (lm_cuda_skip(c) || lm_cuda_matvec_glu(c, gate, up, x, act, limit, out, io));
}

void lm_cuda_add_rmsnorm(lm_backend *be, float *x, const float *y, const float *w, int rows, int n, float eps,
                         float *h) {
    cuda_backend *c = cu_be(be);
    if (rows <= 0 || n <= 0 || lm_cuda_skip(c))
        return;
    if (!c->fuse) {
        lm_cuda_add(be, x, y, (size_t)rows * n);
        lm_cuda_rmsnorm(be, x, w, rows, n, eps, h);
        return;
    }
    lm_cuda_rms_rows(c, x, y, w, rows, n, eps, h);
}

/* kd[i] = k[i], vd[i] = v[i] for T rows of dim floats (KT: f32 or f16 rows); pos_d[t] = p0 + t;
 * with rope (nh > 0): q pairs rotated in place and kd's keys rotated (rope.cu's arithmetic: pair
 * (d, d + half) of each head's first rot_dim values). Thread i does element i of k/v, pair i of q
 * and position i. */
template <typename KT>
__global__ void kv_put(KT *kd, KT *vd, const float *__restrict__ k, const float *__restrict__ v, int dim,
                       int32_t *pos_d, int T, int32_t p0, float *q, int nh, int hd, int rot_dim,
                       const float *__restrict__ cs) {
    lm_pdl_wait();
    lm_pdl_next();
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x, n = (size_t)T * dim;
    int half = rot_dim / 2;
    if (i < n) {
        float kv = k[i];
        int d = (int)(i % dim) % hd;
        if (nh > 0 && d < rot_dim) {
            const float *cosv = cs + (i / dim) * rot_dim, *sinv = cosv + half;
            if (d < half) {
                float a = kv, b = k[i + half];
                kv = a * cosv[d] - b * sinv[d];
            } else {
                float a = k[i - half], b = kv;
                kv = b * cosv[d - half] + a * sinv[d - half];
            }
        }
        kv_st(kd + i, kv);
        kv_st(vd + i, v[i]);
    }
    if (nh > 0 && i < (size_t)T * nh * half) {
        int j = (int)(i % half);
        size_t th = i / half; /* t * nh + h */
        const float *cosv = cs + (th / nh) * rot_dim, *sinv = cosv + half;
        float *x = q + th * hd;
        float a = x[j], b = x[j + half];
        x[j] = a * cosv[j] - b * sinv[j];
        x[j + half] = b * cosv[j] + a * sinv[j];
    }
    if (i < (size_t)T)
        pos_d[i] = p0 + (int32_t)i;
}

int lm_cuda_kv_put(lm_backend *be, void *kd, void *vd, const float *k, const float *v, int T, int dim,
                   int32_t *pos_d, int32_t p0, const lm_rope_args *rope, int f16) {
    cuda_backend *c = cu_be(be);
    if (!c->fuse || (rope && (rope->rot_dim < 2 || rope->n_kv * rope->head_dim != dim)))
        return 0;
    if (lm_cuda_skip(c))
        return 1;
    size_t work = (size_t)T * dim;
    if (rope && (size_t)T * rope->n_heads * (rope->rot_dim / 2) > work)
        work = (size_t)T * rope->n_heads * (rope->rot_dim / 2);
    if ((size_t)T > work)
        work = (size_t)T;
    float *q = rope ? rope->q : NULL;
    const float *cs = rope ? rope->cs : NULL;
    int nh = rope ? rope->n_heads : 0, hd = rope ? rope->head_dim : 1, rot = rope ? rope->rot_dim : 0;
    unsigned blocks = lm_cuda_blocks(work, 256);
    if (f16)
        lm_cuda_launch(c, "kv_put", kv_put<__half>, blocks, 256, 0, (__half *)kd, (__half *)vd, k, v, dim, pos_d, T, p0,
                       q, nh, hd, rot, cs);
    else
        lm_cuda_launch(c, "kv_put", kv_put<float>, blocks, 256, 0, (float *)kd, (float *)vd, k, v, dim, pos_d, T, p0,
                       q, nh, hd, rot, cs);
    return 1;
}
