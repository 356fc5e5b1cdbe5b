/* Kernel timeline (bench/gpu_trace.c): start tracing, then write one CSV line per kernel run
 * since (start and end in ns, grid size, name). Both return 0 on success. */
#ifndef LM_BENCH_GPU_TRACE_H
#define LM_BENCH_GPU_TRACE_H
int gpu_trace_start(void);
int gpu_trace_stop(const char *path);
#endif
