/* lm_convert's JSON and side files: the rewritten config.json (mlx-lm save_config), the
 * safetensors index, and the tokenizer files copied from the source. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/util.h"
#include "quant/convert_impl.h"

static cJSON *quant_params(int group, int bits, const char *mode) {
    cJSON *o = cJSON_CreateObject();
    if (o) {
        cJSON_AddNumberToObject(o, "group_size", group);
        cJSON_AddNumberToObject(o, "bits", bits);
        cJSON_AddStringToObject(o, "mode", mode);
    }
    return o;
}

/* The "quantization" block: defaults, then one entry per module whose parameters came from a
 * predicate (recipes, 8-bit routers), in module order, as mlx-lm's quantize_model writes it. */
static cJSON *quant_block(const cv_plan *plan, const cv_opts *o) {
    cJSON *q = quant_params(o->group, o->bits, o->mxfp4 ? "mxfp4" : "affine");
    for (int i = 0; q && i < plan->n_mods; i++) {
        const cv_module *m = &plan->mods[i];
        if (!m->override || (m->op != CV_AFFINE && m->op != CV_MXFP4))
            continue;
        cJSON *e = quant_params(m->group, m->bits, m->op == CV_MXFP4 ? "mxfp4" : "affine");
        if (!e || !cJSON_AddItemToObject(q, m->path, e)) {
            cJSON_Delete(e);
            cJSON_Delete(q);
            return NULL;
        }
    }
    return q;
}

static const char *dtype_config_name(lm_dtype d) {
    return d == LM_DT_BF16 ? "bfloat16" : d == LM_DT_F16 ? "float16" : "float32";
}

static void set_dtype_keys(cJSON *obj, lm_dtype d) {
    static const char *const KEYS[] = {"torch_dtype", "dtype"};
    for (int k = 0; k < 2; k++)
        if (cJSON_IsString(cJSON_GetObjectItemCaseSensitive(obj, KEYS[k])))
            cJSON_ReplaceItemInObjectCaseSensitive(obj, KEYS[k], cJSON_CreateString(dtype_config_name(d)));
}

static int cmp_item(const void *a, const void *b) {
    return strcmp((*(cJSON *const *)a)->string, (*(cJSON *const *)b)->string);
}

/* Sort an object's keys in place (mlx-lm's save_config sorts the top level). */
static lm_status sort_keys(cJSON *obj) {
    int n = cJSON_GetArraySize(obj);
    cJSON **items = malloc((size_t)(n ? n : 1) * sizeof *items);
    if (!items)
        return lm_err(LM_ERR_NOMEM, "out of memory");
    int k = 0;
    for (cJSON *it = obj->child; it; it = it->next)
        items[k++] = it;
    qsort(items, (size_t)k, sizeof *items, cmp_item);
    for (int i = 0; i < k; i++) {
        items[i]->prev = i > 0 ? items[i - 1] : items[k - 1]; /* cJSON: child->prev is the tail */
        items[i]->next = i + 1 < k ? items[i + 1] : NULL;
    }
    obj->child = k ? items[0] : NULL;
    free(items);
    return LM_OK;
}

lm_status cv_config_json(const lm_config *cfg, const cv_plan *plan, const cv_opts *o, const char *src_dir,
                         char **out) {
    *out = NULL;
    cJSON *root = cJSON_Duplicate(cfg->root, 1);
    if (!root)
        return lm_err(LM_ERR_NOMEM, "out of memory");
    lm_status st = LM_OK;
    cJSON_DeleteItemFromObjectCaseSensitive(root, "_name_or_path");
    if (o->quantize || o->dequantize) {
        cJSON_DeleteItemFromObjectCaseSensitive(root, "quantization");
        cJSON_DeleteItemFromObjectCaseSensitive(root, "quantization_config");
    }
    if (o->dtype != LM_DT_COUNT) {
        set_dtype_keys(root, o->dtype);
        cJSON *tc = cJSON_GetObjectItemCaseSensitive(root, "text_config");
        if (cJSON_IsObject(tc))
            set_dtype_keys(tc, o->dtype);
    }
    if (o->quantize) {
        cJSON *q = quant_block(plan, o), *q2 = q ? cJSON_Duplicate(q, 1) : NULL;
        if (!q2) {
            cJSON_Delete(q);
            st = lm_err(LM_ERR_NOMEM, "out of memory");
        } else {
            cJSON_AddItemToObject(root, "quantization", q);
            cJSON_AddItemToObject(root, "quantization_config", q2);
        }
    }
    if (st == LM_OK)
        st = sort_keys(root);
    if (st == LM_OK && !(*out = cJSON_Print(root)))
        st = lm_err(LM_ERR_NOMEM, "%s: cannot print config.json", src_dir);
    cJSON_Delete(root);
    return st;
}

lm_status cv_index_json(const lm_st_out *outs, const int *shard_of, int n, char *const *shard_names,
                        uint64_t total_size, int64_t n_params, char **out) {
    *out = NULL;
    cJSON *root = cJSON_CreateObject(), *meta = cJSON_AddObjectToObject(root, "metadata");
    cJSON *map = cJSON_AddObjectToObject(root, "weight_map");
    lm_status st = LM_OK;
    if (!root || !meta || !map) {
        st = lm_err(LM_ERR_NOMEM, "out of memory");
        goto done;
    }
    cJSON_AddNumberToObject(meta, "total_size", (double)total_size);
    cJSON_AddNumberToObject(meta, "total_parameters", (double)n_params);
    for (int i = 0; i < n; i++)
        if (!cJSON_AddStringToObject(map, outs[i].name, shard_names[shard_of[i]])) {
            st = lm_err(LM_ERR_NOMEM, "out of memory");
            goto done;
        }
    if ((st = sort_keys(map)) == LM_OK && !(*out = cJSON_Print(root)))
        st = lm_err(LM_ERR_NOMEM, "out of memory");
done:
    cJSON_Delete(root);
    return st;
}

/* The files mlx-lm's save() brings along (tokenizer.save_pretrained, generation_config.json). */
static const char *const SIDE_FILES[] = {
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json",
    "chat_template.jinja", "chat_template.json", "tokenizer.model", "vocab.json", "merges.txt",
    "added_tokens.json",
};

lm_status cv_copy_side_files(const char *src_dir, const char *dst_dir, int *copied, char written[][64], int cap) {
    *copied = 0;
    for (size_t i = 0; i < sizeof SIDE_FILES / sizeof SIDE_FILES[0]; i++) {
        char src[4096], dst[4096];
        LM_TRY(lm_path_join(src, sizeof src, src_dir, SIDE_FILES[i]));
        LM_TRY(lm_path_join(dst, sizeof dst, dst_dir, SIDE_FILES[i]));
        if (!lm_file_exists(src))
            continue;
        char *data;
        size_t len;
        LM_TRY(lm_read_file(src, &data, &len));
        FILE *f = fopen(dst, "wb");
        int ok = f && fwrite(data, 1, len, f) == len;
        if (f && fclose(f) != 0)
            ok = 0;
        free(data);
        if (f && *copied < cap)
            snprintf(written[(*copied)++], 64, "%s", SIDE_FILES[i]);
        if (!ok)
            return lm_err(LM_ERR_IO, "%s: cannot write: %s", dst, strerror(errno));
    }
    return LM_OK;
}
