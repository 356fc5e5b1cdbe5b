/* What one step of a dependent chain costs on the GPU, with no work in it: a chain of kernels of
 * one block per multiprocessor (plain launches, and with programmatic dependent launch, each
 * kernel waiting for the one before and letting the next start), against a grid-wide barrier
 * inside one persistent kernel (an arrival counter and a generation word in global memory).
 * Measured for the decode step's design (bench/GPU-NOTES.md, seventh milestone):
 *   build-gpu/bench/gpu_probe_sync */
#include <cuda_runtime.h>
#include <stdio.h>

#define CHECK(x)                                                                                                     \
    do {                                                                                                             \
        cudaError_t e_ = (x);                                                                                        \
        if (e_ != cudaSuccess) {                                                                                     \
            fprintf(stderr, "gpu_probe_sync: %s: %s\n", #x, cudaGetErrorString(e_));                                 \
            return 1;                                                                                                \
        }                                                                                                            \
    } while (0)

/* each block reads its neighbour's word and writes its own: every step depends on the last */
static __device__ __forceinline__ void touch(float *buf, int i) {
    if (threadIdx.x == 0)
        buf[blockIdx.x] += buf[(blockIdx.x + 1) % gridDim.x] * 0.5f + (float)i;
}

__global__ void step(float *buf, int i) {
    asm volatile("griddepcontrol.wait;" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
    touch(buf, i);
}

__device__ unsigned arrived, generation;

__global__ void persistent(float *buf, int n) {
    for (int i = 0; i < n; i++) {
        touch(buf, i);
        __syncthreads();
        if (threadIdx.x == 0) {
            unsigned gen = *(volatile unsigned *)&generation;
            __threadfence();
            if (atomicAdd(&arrived, 1u) == gridDim.x - 1) { /* the last block opens the next round */
                arrived = 0;
                __threadfence();
                atomicAdd(&generation, 1u);
            } else {
                while (*(volatile unsigned *)&generation == gen) {
                }
            }
            __threadfence();
        }
        __syncthreads();
    }
}

int main(void) {
    const int n = 2000;
    int sms;
    float *buf, ms;
    CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
    CHECK(cudaMalloc(&buf, 4096));
    CHECK(cudaMemset(buf, 0, 4096));
    cudaStream_t s;
    cudaEvent_t a, b;
    CHECK(cudaStreamCreate(&s));
    CHECK(cudaEventCreate(&a));
    CHECK(cudaEventCreate(&b));
    static const int THREADS[] = {288, 512};
    for (int pdl = 0; pdl < 2; pdl++)
        for (int t = 0; t < 2; t++)
            for (int r = 0; r < 2; r++) { /* the second run counts */
                cudaLaunchAttribute at;
                at.id = cudaLaunchAttributeProgrammaticStreamSerialization;
                at.val.programmaticStreamSerializationAllowed = 1;
                cudaLaunchConfig_t cfg = {};
                cfg.gridDim = dim3((unsigned)sms);
                cfg.blockDim = dim3((unsigned)THREADS[t]);
                cfg.stream = s;
                cfg.attrs = &at;
                cfg.numAttrs = (unsigned)pdl;
                CHECK(cudaEventRecord(a, s));
                for (int i = 0; i < n; i++)
                    CHECK(cudaLaunchKernelEx(&cfg, step, buf, i));
                CHECK(cudaEventRecord(b, s));
                CHECK(cudaEventSynchronize(b));
                CHECK(cudaEventElapsedTime(&ms, a, b));
                if (r)
                    printf("chain of %d kernels, %d blocks of %d threads, early start %s: %.2f us per kernel\n", n,
                           sms, THREADS[t], pdl ? "on" : "off", ms * 1e3 / n);
            }
    for (int t = 0; t < 2; t++)
        for (int r = 0; r < 2; r++) {
            CHECK(cudaEventRecord(a, s));
            persistent<<<sms, THREADS[t], 0, s>>>(buf, n);
            CHECK(cudaGetLastError());
            CHECK(cudaEventRecord(b, s));
            CHECK(cudaEventSynchronize(b));
            CHECK(cudaEventElapsedTime(&ms, a, b));
            if (r)
                printf("one persistent kernel, %d blocks of %d threads, %d grid barriers: %.2f us per barrier\n", sms,
                       THREADS[t], n, ms * 1e3 / n);
        }
    return 0;
}
