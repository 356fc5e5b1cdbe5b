/* CUDA backend: lifetime, device memory, host<->device copies, deferred errors, and the op
 * table. All work is queued on the backend's own stream; download waits for it. Kernels live
 * in one .cu per op family (linear.cu, norm.cu, rope.cu, attention.cu, elementwise.cu, moe.cu,
 * altup.cu, sample.cu). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_internal.cuh"

/* --- errors ------------------------------------------------------------------------------------- */

int lm_cuda_check(cuda_backend *c, cudaError_t e, const char *what) {
    if (e == cudaSuccess)
        return 1;
    (void)cudaGetLastError(); /* clear it, so that the next launch check does not see it again */
    if (c->err == LM_OK) {
        c->err = LM_ERR_DEVICE;
        snprintf(c->msg, sizeof c->msg, "CUDA device %d: %s failed: %s (%s)", c->device, what, cudaGetErrorString(e),
                 cudaGetErrorName(e));
    }
    return 0;
}

void lm_cuda_fail(cuda_backend *c, lm_status code, const char *what) {
    if (c->err == LM_OK) {
        c->err = code;
        snprintf(c->msg, sizeof c->msg, "CUDA device %d: %s", c->device, what);
    }
}

/* Wait for queued work; report and clear the first error since the last call. */
static lm_status cu_status(lm_backend *be) {
    cuda_backend *c = cu_be(be);
    lm_cuda_check(c, cudaStreamSynchronize(c->stream), "cudaStreamSynchronize");
    if (c->err == LM_OK)
        return LM_OK;
    lm_status st = c->err;
    c->err = LM_OK;
    return lm_err(st, "%s", c->msg);
}

/* --- memory -------------------------------------------------------------------------------------- */

static void *cu_alloc(lm_backend *be, size_t bytes) {
    cuda_backend *c = cu_be(be);
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        char what[96];
        snprintf(what, sizeof what, "cudaMalloc of %zu bytes (out of device memory?)", bytes);
        lm_cuda_check(c, e, what);
        return NULL;
    }
    return p;
}

static void cu_release(lm_backend *be, void *p) {
    if (p)
        lm_cuda_check(cu_be(be), cudaFree(p), "cudaFree");
}

static void cu_copy(lm_backend *be, void *dst, const void *src, size_t bytes) {
    cuda_backend *c = cu_be(be);
    if (bytes && !lm_cuda_skip(c)) /* default: either side may be host memory (prompt caches) */
        lm_cuda_check(c, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, c->stream), "cudaMemcpyAsync");
}

/* Small uploads go through the pinned staging ring, so they queue without waiting for the
 * stream (a copy from pageable memory waits for every queued kernel first); when the ring
 * wraps, the stream is drained once so its old contents are no longer read. Large uploads, or
 * any without a ring, copy from pageable memory: returns once src has been read. */
static void cu_upload(lm_backend *be, void *dst, const void *src, size_t bytes) {
    cuda_backend *c = cu_be(be);
    if (!bytes || lm_cuda_skip(c))
        return;
    size_t need = (bytes + 15) & ~(size_t)15;
    if (c->stage && need <= LM_CUDA_STAGE_BYTES / 4) {
        if (c->stage_off + need > LM_CUDA_STAGE_BYTES) {
            if (c->capturing) { /* record_begin leaves room for a step: a step this large is a bug */
                lm_cuda_fail(c, LM_ERR_INTERNAL, "upload: staging ring full while recording a graph");
                return;
            }
            if (!lm_cuda_check(c, cudaStreamSynchronize(c->stream), "upload (staging ring)"))
                return;
            c->stage_off = 0;
        }
        uint8_t *p = c->stage + c->stage_off;
        memcpy(p, src, bytes);
        c->stage_off += need;
        lm_cuda_check(c, cudaMemcpyAsync(dst, p, bytes, cudaMemcpyHostToDevice, c->stream), "upload");
        return;
    }
    lm_cuda_check(c, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, c->stream), "upload");
}

void *lm_cuda_scratch(cuda_backend *c, int slot, size_t bytes) {
    if (lm_cuda_skip(c))
        return NULL;
    if (bytes <= c->scratch_bytes[slot])
        return c->scratch[slot];
    if (c->capturing) { /* record_begin sizes scratch for one token */
        lm_cuda_fail(c, LM_ERR_INTERNAL, "scratch growth while recording a graph");
        return NULL;
    }
    if (c->scratch[slot]) /* cudaFree waits for the work that may still read it */
        lm_cuda_check(c, cudaFree(c->scratch[slot]), "cudaFree");
    c->scratch[slot] = NULL;
    c->scratch_bytes[slot] = 0;
    size_t want = bytes + bytes / 4; /* some headroom: sizes grow with the context */
    void *p = NULL;
    if (!lm_cuda_check(c, cudaMalloc(&p, want), "cudaMalloc of scratch (out of device memory?)"))
        return NULL;
    c->scratch[slot] = p;
    c->scratch_bytes[slot] = want;
    return p;
}

static void cu_download(lm_backend *be, void *dst, const void *src, size_t bytes) {
    cuda_backend *c = cu_be(be);
    if (!bytes || lm_cuda_skip(c))
        return;
    if (lm_cuda_check(c, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, c->stream), "download"))
        lm_cuda_check(c, cudaStreamSynchronize(c->stream), "kernels before a download");
}

static void *cu_upload_weights(lm_backend *be, const void *src, size_t bytes) {
    cuda_backend *c = cu_be(be);
    void *p = cu_alloc(be, bytes);
    if (!p)
        return NULL;
    if (!lm_cuda_check(c, cudaMemcpy(p, src, bytes, cudaMemcpyHostToDevice), "uploading weights")) {
        cudaFree(p);
        return NULL;
    }
    return p;
}

static void cu_zero(lm_backend *be, void *p, size_t bytes) {
    cuda_backend *c = cu_be(be);
    if (bytes && !lm_cuda_skip(c))
        lm_cuda_check(c, cudaMemsetAsync(p, 0, bytes, c->stream), "cudaMemsetAsync");
}

static void cu_copy_rows(lm_backend *be, float *dst, size_t dst_ld, const float *src, size_t src_ld, int rows, int n) {
    cuda_backend *c = cu_be(be);
    if (rows <= 0 || n <= 0 || lm_cuda_skip(c))
        return;
    lm_cuda_check(c, cudaMemcpy2DAsync(dst, dst_ld * sizeof(float), src, src_ld * sizeof(float), (size_t)n * sizeof(float),
                                       (size_t)rows, cudaMemcpyDeviceToDevice, c->stream), "cudaMemcpy2DAsync");
}

/* --- graphs: a decode step captured and replayed ----------------------------------------------------
 * Each step is captured anew (kernel arguments such as the number of cached rows change) and the
 * executable graph is updated in place; when the shape changed (another kernel count), it is
 * instantiated again. What the ops need is prepared first: room in the staging ring, scratch. */

#define GRAPH_STAGE_ROOM (64u << 10)  /* uploads of one step stay far below this */
#define GRAPH_ATTN_SCRATCH (64u << 20) /* split attention of one token: heads * 64 * (hd + 4) floats */

static lm_status cu_record_begin(lm_backend *be) {
    cuda_backend *c = cu_be(be);
    if (!c->graphs || !c->stage || c->capturing || lm_cuda_skip(c))
        return LM_ERR_UNSUPPORTED;
    if (c->stage_off + GRAPH_STAGE_ROOM > LM_CUDA_STAGE_BYTES) {
        if (!lm_cuda_check(c, cudaStreamSynchronize(c->stream), "staging ring"))
            return LM_ERR_DEVICE;
        c->stage_off = 0;
    }
    if (!lm_cuda_scratch(c, LM_CUDA_SCR_ATTN, GRAPH_ATTN_SCRATCH))
        return LM_ERR_DEVICE;
    if (!lm_cuda_check(c, cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture"))
        return LM_ERR_DEVICE;
    c->capturing = 1;
    return LM_OK;
}

static void cu_record_end(lm_backend *be, int run) {
    cuda_backend *c = cu_be(be);
    if (!c->capturing)
        return;
    c->capturing = 0;
    cudaGraph_t g = NULL;
    cudaError_t e = cudaStreamEndCapture(c->stream, &g);
    if (!lm_cuda_check(c, e, "cudaStreamEndCapture") || !run || lm_cuda_skip(c)) {
        if (g)
            cudaGraphDestroy(g);
        return;
    }
    if (c->exec) {
        cudaGraphExecUpdateResultInfo info;
        if (cudaGraphExecUpdate(c->exec, g, &info) != cudaSuccess) { /* another shape: instantiate again */
            (void)cudaGetLastError();
            cudaGraphExecDestroy(c->exec);
            c->exec = NULL;
        }
    }
    if (!c->exec && !lm_cuda_check(c, cudaGraphInstantiate(&c->exec, g, 0), "cudaGraphInstantiate")) {
        c->exec = NULL;
        cudaGraphDestroy(g);
        return;
    }
    lm_cuda_check(c, cudaGraphLaunch(c->exec, c->stream), "cudaGraphLaunch");
    cudaGraphDestroy(g);
}

/* Scratch grows on demand (lm_cuda_scratch): nothing to reserve. */
static lm_status cu_reserve(lm_backend *be, int max_in, int max_rows) { return cu_status(be); }

static void cu_destroy(lm_backend *be) {
    cuda_backend *c = cu_be(be);
    if (!c)
        return;
    if (c->stream)
        cudaStreamSynchronize(c->stream);
    if (c->exec)
        cudaGraphExecDestroy(c->exec);
    if (c->argmax)
        cudaFree(c->argmax);
    if (c->attn_tickets)
        cudaFree(c->attn_tickets);
    lm_cuda_gemm_free(c);
    for (int i = 0; i < LM_CUDA_SCR_COUNT; i++)
        if (c->scratch[i])
            cudaFree(c->scratch[i]);
    if (c->stage)
        cudaFreeHost(c->stage);
    if (c->stream)
        cudaStreamDestroy(c->stream);
    free(c);
}

/* --- the table ------------------------------------------------------------------------------------- */

static const lm_backend_ops CUDA_OPS = {
    .version = LM_BACKEND_OPS_VERSION,
    .name = "cuda",
    .destroy = cu_destroy,
    .alloc = cu_alloc,
    .release = cu_release,
    .copy = cu_copy,
    .reserve = cu_reserve,
    .linear = lm_cuda_linear,
    .embed = lm_cuda_embed,
    .rmsnorm = lm_cuda_rmsnorm,
    .rope = lm_cuda_rope,
    .attention = lm_cuda_attention,
    .glu = lm_cuda_glu,
    .add = lm_cuda_add,
    .scale = lm_cuda_scale,
    .upload = cu_upload,
    .download = cu_download,
    .upload_weights = cu_upload_weights,
    .status = cu_status,
    .zero = cu_zero,
    .softcap = lm_cuda_softcap,
    .mul_rows = lm_cuda_mul_rows,
    .copy_rows = cu_copy_rows,
    .moe_route = lm_cuda_moe_route,
    .gather_rows = lm_cuda_gather_rows,
    .scatter_add_rows = lm_cuda_scatter_add_rows,
    .sparsify = lm_cuda_sparsify,
    .rms_match = lm_cuda_rms_match,
    .altup_predict = lm_cuda_altup_predict,
    .altup_correct = lm_cuda_altup_correct,
    .record_begin = cu_record_begin,
    .record_end = cu_record_end,
    .linear_n = lm_cuda_linear_n,
    .linear_glu = lm_cuda_linear_glu,
    .add_rmsnorm = lm_cuda_add_rmsnorm,
    .kv_put = lm_cuda_kv_put,
    .weights_to_f16 = lm_cuda_weights_to_f16,
    .argmax = lm_cuda_argmax,
    .sample = lm_cuda_sample,
    .kv_quantize = lm_cuda_kv_quantize,
    .kv_dequant = lm_cuda_kv_dequant,
    .matvec_add = lm_cuda_matvec_add,
    .norm_matvec_n = lm_cuda_norm_matvec_n,
    .norm_matvec_glu = lm_cuda_norm_matvec_glu,
    .edit_logits = lm_cuda_edit_logits,
    .attn_f16 = 1,
};

extern "C" int lm_backend_cuda_available(void) {
    int n = 0;
    return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

extern "C" lm_status lm_backend_cuda_new(int device, lm_backend **out) {
    *out = NULL;
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0)
        return lm_err(LM_ERR_DEVICE, "no CUDA device: %s", e != cudaSuccess ? cudaGetErrorString(e) : "none found");
    if (device < 0 || device >= n)
        return lm_err(LM_ERR_DEVICE, "CUDA device %d does not exist (%d found)", device, n);
    cuda_backend *c = (cuda_backend *)calloc(1, sizeof *c);
    if (!c)
        return lm_err(LM_ERR_NOMEM, "out of memory");
    c->base.ops = &CUDA_OPS;
    c->device = device;
    c->err = LM_OK;
    /* read once, into this backend: LMCORE_CUDA_GRAPHS=1 records one-token steps as graphs (off by
     * default: re-capturing each step cost as much as launching on the H200 machine, 2026-11-28);
     * LMCORE_CUDA_FUSE=0 runs the fused decode ops as separate kernels, LMCORE_CUDA_PDL=0 turns
     * off early starts (lm_cuda_launch), LMCORE_CUDA_QX=0 the integer dot products of the 4/8-bit
     * matvecs (all for comparisons) */
    const char *g = getenv("LMCORE_CUDA_GRAPHS"), *f = getenv("LMCORE_CUDA_FUSE"), *p = getenv("LMCORE_CUDA_PDL"),
               *q = getenv("LMCORE_CUDA_QX");
    c->graphs = g && g[0] == '1';
    c->fuse = !(f && f[0] == '0');
    c->pdl = !(p && p[0] == '0');
    c->qx = !(q && q[0] == '0');
    if ((e = cudaSetDevice(device)) != cudaSuccess ||
        (e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking)) != cudaSuccess ||
        (e = cudaMalloc((void **)&c->argmax, sizeof *c->argmax)) != cudaSuccess ||
        (e = cudaMemset(c->argmax, 0, sizeof *c->argmax)) != cudaSuccess ||
        (e = cudaMalloc((void **)&c->attn_tickets, LM_CUDA_ATTN_TICKETS * sizeof(unsigned))) != cudaSuccess ||
        (e = cudaMemset(c->attn_tickets, 0, LM_CUDA_ATTN_TICKETS * sizeof(unsigned))) != cudaSuccess ||
        (e = cudaDeviceGetAttribute(&c->sms, cudaDevAttrMultiProcessorCount, device)) != cudaSuccess) {
        (void)cudaGetLastError();
        cu_destroy(&c->base);
        return lm_err(LM_ERR_DEVICE, "CUDA device %d: cannot start: %s", device, cudaGetErrorString(e));
    }
    void *stage = NULL; /* without pinned memory, uploads still work (blocking) */
    if (cudaMallocHost(&stage, LM_CUDA_STAGE_BYTES) == cudaSuccess)
        c->stage = (uint8_t *)stage;
    else
        (void)cudaGetLastError();
    *out = &c->base;
    return LM_OK;
}
