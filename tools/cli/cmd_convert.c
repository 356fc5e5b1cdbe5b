/* lmcore convert: quantize (MLX affine / MXFP4), dequantize or cast a checkpoint (lm_convert). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "lmcore.h"

static const char CONVERT_USAGE[] =
    "usage: lmcore convert -m SRC -o DST [-q] [--bits B] [--group-size G] [--mode affine|mxfp4]\n"
    "                      [--recipe mixed_2_6|mixed_3_4|mixed_3_6|mixed_4_6] [--dequantize]\n"
    "                      [--dtype bf16|f16|f32] [--max-shard-gb N] [--threads N]\n"
    "  Writes an MLX-compatible checkpoint directory DST (must not exist, or be empty) from SRC:\n"
    "  -q, --quantize     quantize every Linear/Embedding weight whose input size divides by the\n"
    "                     group size, with mlx's rule (defaults: affine 4 bits, group 64; mxfp4 32)\n"
    "  --bits B           2, 3, 4, 5, 6 or 8 (affine); 4 (mxfp4)        [alias --q-bits]\n"
    "  --group-size G     32, 64 or 128 (affine); 32 (mxfp4)             [alias --q-group-size]\n"
    "  --mode M           affine or mxfp4                                [alias --q-mode]\n"
    "  --recipe R         mlx-lm's mixed-bit recipes (affine; implies -q) [alias --quant-predicate]\n"
    "  -d, --dequantize   dequantize an MLX-quantized model\n"
    "  --dtype T          the float type written: bf16, f16 or f32 (default: as stored)\n"
    "  --max-shard-gb N   shard size limit in GiB (default 5)\n"
    "  Without -q or -d the weights are copied (cast with --dtype).\n";

static int parse_dtype(const char *s, lm_convert_dtype *out) {
    static const struct {
        const char *a, *b;
        lm_convert_dtype d;
    } T[] = {{"bf16", "bfloat16", LM_CONVERT_DTYPE_BF16},
             {"f16", "float16", LM_CONVERT_DTYPE_F16},
             {"f32", "float32", LM_CONVERT_DTYPE_F32}};
    for (size_t i = 0; i < sizeof T / sizeof T[0]; i++)
        if (cli_is(s, T[i].a, T[i].b)) {
            *out = T[i].d;
            return 1;
        }
    return 0;
}

int cmd_convert(int argc, char **argv) {
    const char *src = NULL, *dst = NULL;
    lm_convert_params p = lm_convert_default_params();
    char msg[256];
    long v;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is(a, "--help", "-h")) {
            fputs(CONVERT_USAGE, stdout);
            return 0;
        }
        if (cli_is(a, "-q", "--quantize")) {
            p.quantize = 1;
            continue;
        }
        if (cli_is(a, "-d", "--dequantize")) {
            p.dequantize = 1;
            continue;
        }
        if (i + 1 >= argc) {
            snprintf(msg, sizeof msg, "option '%s' needs a value (see --help)", a);
            return cli_fail("convert", msg);
        }
        const char *val = argv[++i];
        int ok = 1;
        if (cli_is(a, "-m", "--model") || cli_is(a, "--hf-path", NULL))
            src = val;
        else if (cli_is(a, "-o", "--output") || cli_is(a, "--mlx-path", NULL))
            dst = val;
        else if (cli_is(a, "--bits", "--q-bits") && (ok = cli_parse_long(val, 1, 64, &v)))
            p.bits = (int)v;
        else if (cli_is(a, "--group-size", "--q-group-size") && (ok = cli_parse_long(val, 1, 1 << 20, &v)))
            p.group_size = (int)v;
        else if (cli_is(a, "--mode", "--q-mode")) {
            ok = cli_is(val, "affine", "mxfp4");
            p.mode = strcmp(val, "mxfp4") == 0 ? LM_QUANT_MXFP4 : LM_QUANT_AFFINE;
        } else if (cli_is(a, "--recipe", "--quant-predicate")) {
            p.recipe = val;
            p.quantize = 1;
        } else if (cli_is(a, "--dtype", NULL))
            ok = parse_dtype(val, &p.dtype);
        else if (cli_is(a, "--max-shard-gb", NULL) && (ok = cli_parse_long(val, 1, 1 << 20, &v)))
            p.max_shard_bytes = (uint64_t)v << 30;
        else if (cli_is(a, "--threads", "-t") && (ok = cli_parse_long(val, 0, 1024, &v)))
            p.n_threads = (int)v;
        else if (ok) {
            snprintf(msg, sizeof msg, "unknown option '%s' (see --help)", a);
            return cli_fail("convert", msg);
        }
        if (!ok) {
            snprintf(msg, sizeof msg, "bad value '%s' for %s (see --help)", val, a);
            return cli_fail("convert", msg);
        }
    }
    if (!src || !dst)
        return cli_fail("convert", "-m SRC and -o DST are required (see --help)");
    lm_convert_stats s;
    if (lm_convert(src, dst, &p, &s) != LM_OK)
        return cli_fail("convert", NULL);
    printf("%s: %d tensors in %d shard%s, %.1f MB, %lld parameters, %.3f bits per weight", dst, s.n_tensors,
           s.n_shards, s.n_shards == 1 ? "" : "s", (double)s.bytes / 1e6, (long long)s.n_params, s.bits_per_weight);
    if (s.n_quantized)
        printf(", %d modules quantized", s.n_quantized);
    if (s.n_dequantized)
        printf(", %d modules dequantized", s.n_dequantized);
    printf("\n");
    return 0;
}
