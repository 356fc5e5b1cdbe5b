/* Attention over the cached rows: one warp per (query token, head) with an online softmax over
 * chunks of 32 keys (each lane scores one key, then the warp accumulates the chunk's values,
 * lane j holding output dims j, j+32, ...). Masks: empty rows (kpos < 0), causality by absolute
 * position, the sliding window; scores may be soft-capped; sinks add one logit per head. */
#include <math.h>

#include "backend/cuda/cuda_internal.cuh"

#define ATT_WARPS 4
#define ATT_MAX_HD 512
#define ATT_PER_LANE (ATT_MAX_HD / 32)

__global__ void attention_f32(lm_attn_args a) {
    __shared__ float qs[ATT_WARPS][ATT_MAX_HD];
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int task = blockIdx.x * ATT_WARPS + warp;
    if (task >= a.T * a.n_heads)
        return;
    int t = task / a.n_heads, h = task % a.n_heads, hd = a.head_dim;
    int g = h / (a.n_heads / a.n_kv);
    size_t kstride = (size_t)a.n_kv * hd;
    const float *q = a.q + ((size_t)t * a.n_heads + h) * hd;
    for (int i = lane; i < hd; i += 32)
        qs[warp][i] = q[i];
    __syncwarp();
    int32_t qp = a.qpos[t];
    float m = a.sinks ? a.sinks[h] : -INFINITY; /* running max */
    float l = a.sinks ? 1.0f : 0.0f;            /* running sum of exp(s - m) */
    float acc[ATT_PER_LANE];
#pragma unroll
    for (int j = 0; j < ATT_PER_LANE; j++)
        acc[j] = 0.0f;
    for (int r0 = 0; r0 < a.n_rows; r0 += 32) {
        int r = r0 + lane;
        float s = -INFINITY;
        if (r < a.n_rows) {
            int32_t kp = a.kpos ? a.kpos[r] : r;
            if (kp >= 0 && kp <= qp && !(a.window > 0 && qp - kp >= a.window)) {
                const float *k = a.k + (size_t)r * kstride + (size_t)g * hd;
                float d = 0.0f;
                for (int i = 0; i < hd; i++)
                    d += qs[warp][i] * k[i];
                s = d * a.scale;
                if (a.softcap > 0)
                    s = a.softcap * tanhf(s / a.softcap);
            }
        }
        float cm = warp_max(s), nm = fmaxf(m, cm);
        if (nm == -INFINITY)
            continue; /* nothing visible yet */
        float corr = m == -INFINITY ? 0.0f : expf(m - nm);
        float p = s == -INFINITY ? 0.0f : expf(s - nm);
        l = l * corr + warp_sum(p);
        m = nm;
#pragma unroll
        for (int j = 0; j < ATT_PER_LANE; j++)
            acc[j] *= corr;
        int nr = a.n_rows - r0 < 32 ? a.n_rows - r0 : 32;
        for (int jr = 0; jr < nr; jr++) {
            float pj = __shfl_sync(0xffffffffu, p, jr);
            if (pj == 0.0f)
                continue;
            const float *v = a.v + (size_t)(r0 + jr) * kstride + (size_t)g * hd;
#pragma unroll
            for (int j = 0; j < ATT_PER_LANE; j++) {
                int i = lane + 32 * j;
                if (i < hd)
                    acc[j] += pj * v[i];
            }
        }
    }
    float inv = l > 0 ? 1.0f / l : 0.0f;
    float *out = a.out + ((size_t)t * a.n_heads + h) * hd;
#pragma unroll
    for (int j = 0; j < ATT_PER_LANE; j++) {
        int i = lane + 32 * j;
        if (i < hd)
            out[i] = acc[j] * inv;
    }
}

static void attention_f32_launch(cuda_backend *c, const lm_attn_args *a) {
    size_t tasks = (size_t)a->T * a->n_heads;
    attention_f32<<<lm_cuda_blocks(tasks, ATT_WARPS), ATT_WARPS * 32, 0, c->stream>>>(*a);
    lm_cuda_launched(c, "attention_f32");
}

void lm_cuda_attention(lm_backend *be, const lm_attn_args *a) {
    cuda_backend *c = cu_be(be);
    if (a->T <= 0 || a->n_heads <= 0 || lm_cuda_skip(c))
        return;
    if (a->head_dim > ATT_MAX_HD || a->n_kv <= 0 || a->n_heads % a->n_kv) {
        lm_cuda_fail(c, LM_ERR_UNSUPPORTED, "attention: head_dim above 512 or heads not a multiple of kv heads");
        return;
    }
    attention_f32_launch(c, a);
}
