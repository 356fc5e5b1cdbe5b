/* How fast bulk copies (cp.async.bulk into a shared-memory ring, one producer warp, 8 consumer
 * warps, an mbarrier per stage) stream a 2 GiB buffer, by copy size, copies per stage, stages and
 * blocks per multiprocessor, next to plain 16-byte loads. Measured for the decode matvecs'
 * weight-ring experiment (bench/GPU-NOTES.md, seventh milestone):
 *   build-gpu/bench/gpu_probe_copy */
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>

#define CHECK(x)                                                                                                     \
    do {                                                                                                             \
        cudaError_t e_ = (x);                                                                                        \
        if (e_ != cudaSuccess) {                                                                                     \
            fprintf(stderr, "gpu_probe_copy: %s: %s\n", #x, cudaGetErrorString(e_));                                 \
            return 1;                                                                                                \
        }                                                                                                            \
    } while (0)

static __device__ __forceinline__ uint32_t sa(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

static __device__ __forceinline__ void wait_phase(uint64_t *b, unsigned parity) {
    uint32_t done;
    do {
        asm volatile("{\n\t.reg .pred p;\n\tmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n\t"
                     "selp.u32 %0, 1, 0, p;\n\t}"
                     : "=r"(done)
                     : "r"(sa(b)), "r"(parity)
                     : "memory");
    } while (!done);
}

/* Stage st of the buffer (nc copies of cs bytes) goes to block st % gridDim.x; the consumers
 * read each stage once and hand the slot back. */
__global__ void __launch_bounds__(288, 1) ring(const uint8_t *src, size_t bytes, int cs, int nc, int S, float *out) {
    extern __shared__ __align__(128) uint8_t sm[];
    uint64_t *full = (uint64_t *)sm, *empty = full + 32;
    uint8_t *slots = sm + 512;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    if (threadIdx.x == 0) {
        for (int s = 0; s < S; s++) {
            asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(sa(&full[s])));
            asm volatile("mbarrier.init.shared::cta.b64 [%0], 8;" ::"r"(sa(&empty[s])));
        }
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    __syncthreads();
    size_t stage = (size_t)cs * nc, nst = bytes / stage;
    int k = 0;
    if (warp == 8) {
        for (size_t st = blockIdx.x; st < nst; st += gridDim.x, k++) {
            int slot = k % S;
            if (k >= S)
                wait_phase(&empty[slot], (unsigned)(k / S - 1) & 1);
            if (lane == 0)
                asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(sa(&full[slot])),
                             "r"((unsigned)stage)
                             : "memory");
            __syncwarp();
            for (int c = lane; c < nc; c += 32)
                asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
                                 sa(slots + slot * stage + (size_t)c * cs)),
                             "l"(src + st * stage + (size_t)c * cs), "r"(cs), "r"(sa(&full[slot]))
                             : "memory");
        }
        return;
    }
    float acc = 0;
    for (size_t st = blockIdx.x; st < nst; st += gridDim.x, k++) {
        int slot = k % S;
        wait_phase(&full[slot], (unsigned)(k / S) & 1);
        const uint4 *p = (const uint4 *)(slots + slot * stage);
        for (size_t i = threadIdx.x; i < stage / 16; i += 256) {
            uint4 v = p[i];
            acc += __uint_as_float(v.x ^ v.w);
        }
        __syncwarp();
        if (lane == 0)
            asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(sa(&empty[slot])) : "memory");
    }
    if (acc == 1.2345f) /* keeps the reads */
        out[0] = acc;
}

__global__ void loads(const uint4 *src, size_t n, float *out) {
    float acc = 0;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint4 v = __ldg(src + i);
        acc += __uint_as_float(v.x ^ v.w);
    }
    if (acc == 1.2345f)
        out[0] = acc;
}

int main(void) {
    size_t bytes = (size_t)2 << 30;
    uint8_t *src;
    float *out, ms;
    int sms;
    CHECK(cudaMalloc(&src, bytes));
    CHECK(cudaMalloc(&out, 4));
    CHECK(cudaMemset(src, 1, bytes));
    CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
    CHECK(cudaFuncSetAttribute(ring, cudaFuncAttributeMaxDynamicSharedMemorySize, 200 * 1024));
    cudaEvent_t a, b;
    CHECK(cudaEventCreate(&a));
    CHECK(cudaEventCreate(&b));
    for (int r = 0; r < 2; r++) { /* the second run counts */
        CHECK(cudaEventRecord(a));
        loads<<<sms * 4, 512>>>((const uint4 *)src, bytes / 16, out);
        CHECK(cudaEventRecord(b));
        CHECK(cudaEventSynchronize(b));
        CHECK(cudaEventElapsedTime(&ms, a, b));
    }
    printf("16-byte loads: %.0f GB/s\n", bytes / ms / 1e6);
    static const int cfg[][4] = {{512, 16, 10, 1},  {512, 16, 10, 2}, {512, 16, 20, 1}, {1024, 16, 6, 1},
                                 {4096, 2, 10, 1},  {4096, 2, 20, 1}, {4096, 4, 5, 1},  {4096, 8, 5, 1},
                                 {8192, 2, 5, 1},   {16384, 1, 5, 1}, {16384, 1, 10, 1}, {32768, 1, 5, 1}};
    for (size_t i = 0; i < sizeof cfg / sizeof cfg[0]; i++) {
        int cs = cfg[i][0], nc = cfg[i][1], S = cfg[i][2], bps = cfg[i][3];
        size_t smem = 512 + (size_t)cs * nc * S;
        for (int r = 0; r < 2; r++) {
            CHECK(cudaEventRecord(a));
            ring<<<sms * bps, 288, smem>>>(src, bytes, cs, nc, S, out);
            CHECK(cudaGetLastError());
            CHECK(cudaEventRecord(b));
            CHECK(cudaEventSynchronize(b));
            CHECK(cudaEventElapsedTime(&ms, a, b));
        }
        printf("copies of %5d B, %2d per stage, %2d stages (%3zu KB), %d block(s)/SM: %.0f GB/s\n", cs, nc, S,
               smem >> 10, bps, bytes / ms / 1e6);
    }
    return 0;
}
