/* lmcore Node.js addon: module registration, errors and argument helpers. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addon.h"

/* --- errors ----------------------------------------------------------------------------------- */

static const char *const STATUS_CODES[] = {
    "LM_OK",          "LM_ERR_INVALID_ARG", "LM_ERR_IO",       "LM_ERR_FORMAT", "LM_ERR_UNSUPPORTED",
    "LM_ERR_MISSING", "LM_ERR_SHAPE",       "LM_ERR_NOMEM",    "LM_ERR_CANCELLED", "LM_ERR_CONTEXT",
    "LM_ERR_DEVICE",  "LM_ERR_TEMPLATE",    "LM_ERR_INTERNAL"};

const char *nm_status_code(lm_status st) {
    int i = -st;
    return i >= 0 && i < (int)(sizeof STATUS_CODES / sizeof STATUS_CODES[0]) ? STATUS_CODES[i] : "LM_ERR_UNKNOWN";
}

/* Throw `Error(message)` with .code; `kind` 1 makes it a TypeError, 2 a RangeError. Does
 * nothing when even that fails (the env is going away). */
static void throw_with_code(napi_env env, int kind, const char *code, const char *msg) {
    napi_value jcode, jmsg, err;
    if (napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &jcode) != napi_ok ||
        napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &jmsg) != napi_ok)
        return;
    napi_status s = kind == 1   ? napi_create_type_error(env, jcode, jmsg, &err)
                    : kind == 2 ? napi_create_range_error(env, jcode, jmsg, &err)
                                : napi_create_error(env, jcode, jmsg, &err);
    if (s == napi_ok)
        napi_throw(env, err);
}

bool nm_ok(napi_env env, napi_status status) {
    if (status == napi_ok)
        return true;
    const napi_extended_error_info *info = NULL;
    char msg[256];
    snprintf(msg, sizeof msg, "N-API call failed (status %d)", (int)status);
    if (napi_get_last_error_info(env, &info) == napi_ok && info && info->error_message)
        snprintf(msg, sizeof msg, "N-API call failed: %s", info->error_message);
    bool pending = false;
    if (napi_is_exception_pending(env, &pending) == napi_ok && !pending)
        throw_with_code(env, 0, "ERR_LMCORE_NAPI", msg);
    return false;
}

static napi_value vthrow(napi_env env, int kind, const char *code, const char *fmt, va_list ap) {
    char msg[1200];
    vsnprintf(msg, sizeof msg, fmt, ap);
    bool pending = false;
    if (napi_is_exception_pending(env, &pending) == napi_ok && !pending)
        throw_with_code(env, kind, code, msg);
    return NULL;
}

napi_value nm_throw(napi_env env, const char *code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vthrow(env, strcmp(code, "ERR_OUT_OF_RANGE") == 0 ? 2 : 0, code, fmt, ap);
    va_end(ap);
    return NULL;
}

napi_value nm_throw_type(napi_env env, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vthrow(env, 1, "ERR_INVALID_ARG_TYPE", fmt, ap);
    va_end(ap);
    return NULL;
}

napi_value nm_status_error(napi_env env, lm_status st, const char *msg) {
    napi_value jcode, jmsg, err, jst;
    char full[1300];
    snprintf(full, sizeof full, "%s", msg && *msg ? msg : lm_status_str(st));
    if (napi_create_string_utf8(env, nm_status_code(st), NAPI_AUTO_LENGTH, &jcode) != napi_ok ||
        napi_create_string_utf8(env, full, NAPI_AUTO_LENGTH, &jmsg) != napi_ok ||
        napi_create_error(env, jcode, jmsg, &err) != napi_ok)
        return NULL;
    if (napi_create_int32(env, st, &jst) == napi_ok)
        napi_set_named_property(env, err, "status", jst);
    return err;
}

/* --- argument helpers ------------------------------------------------------------------------- */

char *nm_get_string(napi_env env, napi_value v, const char *what, size_t *len) {
    napi_valuetype t;
    if (!nm_ok(env, napi_typeof(env, v, &t)))
        return NULL;
    if (t != napi_string) {
        nm_throw_type(env, "%s must be a string", what);
        return NULL;
    }
    size_t n = 0;
    if (!nm_ok(env, napi_get_value_string_utf8(env, v, NULL, 0, &n)))
        return NULL;
    char *s = malloc(n + 1);
    if (!s) {
        nm_throw(env, "LM_ERR_NOMEM", "%s: out of memory (%zu bytes)", what, n + 1);
        return NULL;
    }
    if (!nm_ok(env, napi_get_value_string_utf8(env, v, s, n + 1, &n))) {
        free(s);
        return NULL;
    }
    if (len)
        *len = n;
    return s;
}

/* The property `key` of obj; *present false when absent or undefined. */
static bool get_prop(napi_env env, napi_value obj, const char *key, napi_value *v, napi_valuetype *t,
                     bool *present) {
    *present = false;
    if (!obj)
        return true;
    napi_valuetype ot;
    if (!nm_ok(env, napi_typeof(env, obj, &ot)))
        return false;
    if (ot == napi_undefined || ot == napi_null)
        return true;
    if (ot != napi_object) {
        nm_throw_type(env, "options must be an object");
        return false;
    }
    if (!nm_ok(env, napi_get_named_property(env, obj, key, v)) || !nm_ok(env, napi_typeof(env, *v, t)))
        return false;
    *present = *t != napi_undefined;
    return true;
}

/* options[key] as a number in [lo, hi] (a whole one when `whole`; `what` names the range in
 * the error); *present is false when the option is absent. */
static bool prop_number(napi_env env, napi_value obj, const char *key, double lo, double hi, bool whole,
                        const char *what, double *out, bool *present) {
    napi_value v;
    napi_valuetype t;
    if (!get_prop(env, obj, key, &v, &t, present))
        return false;
    if (!*present)
        return true;
    if (t != napi_number) {
        nm_throw_type(env, "options.%s must be a number", key);
        return false;
    }
    if (!nm_ok(env, napi_get_value_double(env, v, out)))
        return false;
    if (!(*out >= lo && *out <= hi) || (whole && *out != floor(*out))) {
        nm_throw(env, "ERR_OUT_OF_RANGE", "options.%s must be %s (got %g)", key, what, *out);
        return false;
    }
    return true;
}

bool nm_prop_int(napi_env env, napi_value obj, const char *key, int *out) {
    double d;
    bool present;
    if (!prop_number(env, obj, key, -2147483648.0, 2147483647.0, true, "a 32-bit integer", &d, &present))
        return false;
    if (present)
        *out = (int)d;
    return true;
}

bool nm_prop_int64(napi_env env, napi_value obj, const char *key, int64_t *out) {
    double d;
    bool present;
    if (!prop_number(env, obj, key, -9007199254740991.0, 9007199254740991.0, true, "a safe integer", &d, &present))
        return false;
    if (present)
        *out = (int64_t)d;
    return true;
}

bool nm_prop_float(napi_env env, napi_value obj, const char *key, float *out) {
    double d;
    bool present;
    if (!prop_number(env, obj, key, -3.0e38, 3.0e38, false, "a finite number", &d, &present))
        return false;
    if (present)
        *out = (float)d;
    return true;
}

bool nm_prop_bool(napi_env env, napi_value obj, const char *key, int *out) {
    napi_value v;
    napi_valuetype t;
    bool present, b;
    if (!get_prop(env, obj, key, &v, &t, &present))
        return false;
    if (!present)
        return true;
    if (t != napi_boolean) {
        nm_throw_type(env, "options.%s must be a boolean", key);
        return false;
    }
    if (!nm_ok(env, napi_get_value_bool(env, v, &b)))
        return false;
    *out = b;
    return true;
}

bool nm_prop_string(napi_env env, napi_value obj, const char *key, char **out) {
    napi_value v;
    napi_valuetype t;
    bool present;
    if (!get_prop(env, obj, key, &v, &t, &present))
        return false;
    if (!present || t == napi_null)
        return true;
    char what[96];
    snprintf(what, sizeof what, "options.%s", key);
    *out = nm_get_string(env, v, what, NULL);
    return *out != NULL;
}

bool nm_set_value(napi_env env, napi_value obj, const char *key, napi_value v) {
    return nm_ok(env, napi_set_named_property(env, obj, key, v));
}

bool nm_set_int(napi_env env, napi_value obj, const char *key, int64_t v) {
    napi_value j;
    return nm_ok(env, napi_create_int64(env, v, &j)) && nm_set_value(env, obj, key, j);
}

bool nm_set_double(napi_env env, napi_value obj, const char *key, double v) {
    napi_value j;
    return nm_ok(env, napi_create_double(env, v, &j)) && nm_set_value(env, obj, key, j);
}

bool nm_set_string(napi_env env, napi_value obj, const char *key, const char *s) {
    napi_value j;
    if (!s)
        return nm_ok(env, napi_get_null(env, &j)) && nm_set_value(env, obj, key, j);
    return nm_ok(env, napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &j)) && nm_set_value(env, obj, key, j);
}

bool nm_get_int32_array(napi_env env, napi_value v, const char *what, const int32_t **data, size_t *n) {
    bool is_ta = false;
    if (!nm_ok(env, napi_is_typedarray(env, v, &is_ta)))
        return false;
    if (!is_ta) {
        nm_throw_type(env, "%s must be an Int32Array", what);
        return false;
    }
    napi_typedarray_type type;
    size_t len = 0, off = 0;
    void *p = NULL;
    napi_value ab;
    if (!nm_ok(env, napi_get_typedarray_info(env, v, &type, &len, &p, &ab, &off)))
        return false;
    if (type != napi_int32_array) {
        nm_throw_type(env, "%s must be an Int32Array", what);
        return false;
    }
    *data = p;
    *n = len;
    return true;
}

/* --- module ------------------------------------------------------------------------------------ */

static napi_value status_string(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1], out;
    int32_t st = 0;
    if (!nm_ok(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL)))
        return NULL;
    if (argc < 1 || napi_get_value_int32(env, argv[0], &st) != napi_ok)
        return nm_throw_type(env, "status must be a number");
    if (!nm_ok(env, napi_create_string_utf8(env, lm_status_str(st), NAPI_AUTO_LENGTH, &out)))
        return NULL;
    return out;
}

NAPI_MODULE_INIT(/* napi_env env, napi_value exports */) {
    static const struct {
        const char *name;
        napi_callback fn;
    } fns[] = {
        {"load", nm_load},
        {"dispose", nm_dispose},
        {"info", nm_info},
        {"tokenize", nm_tokenize},
        {"detokenize", nm_detokenize},
        {"applyChatTemplate", nm_apply_chat_template},
        {"generate", nm_generate},
        {"createCancelToken", nm_cancel_token},
        {"cancel", nm_cancel},
        {"evaluate", nm_evaluate},
        {"statusString", status_string},
    };
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
        napi_value f;
        if (!nm_ok(env, napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].fn, NULL, &f)) ||
            !nm_set_value(env, exports, fns[i].name, f))
            return NULL;
    }
    return exports;
}
