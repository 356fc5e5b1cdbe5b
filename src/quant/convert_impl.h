/* lm_convert internals: a plan (one module per output weight or copied tensor, built from the
 * source tensors and the config), then its execution into streamed safetensors shards. */
#ifndef LM_QUANT_CONVERT_IMPL_H
#define LM_QUANT_CONVERT_IMPL_H
#include <stdint.h>

#include "io/config.h"
#include "io/safetensors.h"
#include "layers/linear.h"
#include "lmcore.h"

typedef enum {
    CV_CAST,    /* float tensor, written in out_dt */
    CV_RAW,     /* non-float tensor, bytes copied */
    CV_AFFINE,  /* quantized: weight u32, scales, biases (out_dt) */
    CV_MXFP4,   /* quantized: weight u32, scales u8 */
    CV_DEQUANT  /* packed source, written dense in out_dt */
} cv_op;

typedef struct cv_module {
    char *name;           /* output name: "<path>.weight" or the copied tensor's name */
    char *path;           /* module path, for quantized outputs (config overrides) */
    cv_op op;
    int ndim;
    int64_t shape[LM_ST_MAX_DIMS]; /* logical (unpacked) output shape */
    int64_t rows, cols;   /* rows = product of shape[:-1], cols = shape[-1] */
    lm_dtype src_dt, out_dt;
    int bits, group;      /* quantized outputs */
    int override;         /* write a per-module "quantization" entry */
    /* source rows: row r is part r / part_rows, element c of its row rr at
       parts[p] + (rr * row_step + c * col_step) * sizeof(src_dt) */
    const uint8_t **parts;
    int n_parts;
    int64_t part_rows;
    size_t row_step, col_step;
    const lm_st_tensor *src; /* the single source tensor (CV_RAW, and for messages) */
    lm_linear qsrc;       /* CV_DEQUANT: the packed source, rows = `rows` */
    int first_out;        /* index of its first output tensor */
} cv_module;

typedef struct cv_plan {
    cv_module *mods;
    int n_mods, cap_mods;
    int64_t n_params;
} cv_plan;

/* Resolved options (defaults applied, validated). */
typedef struct cv_opts {
    int quantize, dequantize;
    int mxfp4, bits, group;
    int recipe_low, recipe_high; /* 0: no recipe */
    lm_dtype dtype;              /* LM_DT_COUNT: keep */
} cv_opts;

lm_status cv_plan_build(const lm_st_set *set, const lm_config *cfg, const cv_opts *o, const char *src_dir,
                        cv_plan *plan);
void cv_plan_free(cv_plan *plan);
/* The new config.json text (malloc'd). */
lm_status cv_config_json(const lm_config *cfg, const cv_plan *plan, const cv_opts *o, const char *src_dir,
                         char **out);

/* model.safetensors.index.json: metadata and the sorted weight map. */
lm_status cv_index_json(const lm_st_out *outs, const int *shard_of, int n, char *const *shard_names,
                        uint64_t total_size, int64_t n_params, char **out);
/* Copy the tokenizer and generation files present in src_dir; written[] receives the names of
 * the files created (also after a failure, for cleaning up). */
lm_status cv_copy_side_files(const char *src_dir, const char *dst_dir, int *copied, char written[][64], int cap);

#endif
