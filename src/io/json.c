#include "io/json.h"

#include <math.h>
#include <stdlib.h>

#include "core/util.h"

lm_status lm_json_parse(const char *text, size_t len, const char *what, cJSON **out) {
    const char *end = NULL;
    *out = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (*out)
        return LM_OK;
    if (!end || end < text || end > text + len)
        return lm_err(LM_ERR_FORMAT, "%s: malformed JSON", what);
    int line = 1, col = 1;
    for (const char *p = text; p < end; p++) {
        if (*p == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    return lm_err(LM_ERR_FORMAT, "%s: malformed JSON at line %d, column %d", what, line, col);
}

lm_status lm_json_load_file(const char *path, cJSON **out) {
    char *text;
    size_t len;
    *out = NULL;
    LM_TRY(lm_read_file(path, &text, &len));
    lm_status s = lm_json_parse(text, len, path, out);
    free(text);
    return s;
}

const cJSON *lm_json_get(const cJSON *obj, const char *key) {
    if (!obj || !cJSON_IsObject(obj))
        return NULL;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v))
        return NULL;
    return v;
}

lm_status lm_json_num(const cJSON *obj, const char *key, double def, double *out, const char *what) {
    const cJSON *v = lm_json_get(obj, key);
    *out = def;
    if (!v)
        return LM_OK;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return lm_err(LM_ERR_FORMAT, "%s: \"%s\" must be a number", what, key);
    *out = v->valuedouble;
    return LM_OK;
}

lm_status lm_json_int(const cJSON *obj, const char *key, long long def, long long *out, const char *what) {
    const cJSON *v = lm_json_get(obj, key);
    *out = def;
    if (!v)
        return LM_OK;
    double d = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    if (!isfinite(d) || d != floor(d) || fabs(d) > 9.0e15)
        return lm_err(LM_ERR_FORMAT, "%s: \"%s\" must be an integer", what, key);
    *out = (long long)d;
    return LM_OK;
}

lm_status lm_json_bool(const cJSON *obj, const char *key, int def, int *out, const char *what) {
    const cJSON *v = lm_json_get(obj, key);
    *out = def;
    if (!v)
        return LM_OK;
    if (!cJSON_IsBool(v))
        return lm_err(LM_ERR_FORMAT, "%s: \"%s\" must be true or false", what, key);
    *out = cJSON_IsTrue(v);
    return LM_OK;
}

lm_status lm_json_str(const cJSON *obj, const char *key, const char **out, const char *what) {
    const cJSON *v = lm_json_get(obj, key);
    *out = NULL;
    if (!v)
        return LM_OK;
    if (!cJSON_IsString(v))
        return lm_err(LM_ERR_FORMAT, "%s: \"%s\" must be a string", what, key);
    *out = v->valuestring;
    return LM_OK;
}
