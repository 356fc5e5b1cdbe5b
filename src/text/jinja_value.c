/* Jinja values with Python semantics: construction, truthiness, equality, ordering,
 * str()/repr(), json.dumps and JSON import (see jinja_rt.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "text/jinja_rt.h"

lm_status jj_nomem(jj_render *R) { return JJ_ERR(R, "out of memory (template memory limit reached)"); }

jv jv_cstr(const char *s) { return jv_strn(s, strlen(s)); }

lm_status jv_from_buf(jj_render *R, jj_buf *b, jv *out) {
    if (b->oom)
        return JJ_ERR(R, "output too large");
    char *p = jj_strndup(&R->ar, b->p ? b->p : "", b->n);
    if (!p)
        return jj_nomem(R);
    *out = jv_strn(p, b->n);
    b->n = 0;
    return LM_OK;
}

lm_status jv_new_list(jj_render *R, size_t cap, jv *out) {
    jj_list *l = jj_alloc(&R->ar, sizeof *l);
    if (!l)
        return jj_nomem(R);
    if (cap) {
        size_t bytes;
        if (!lm_mul_ok(cap, sizeof(jv), &bytes) || !(l->v = jj_alloc(&R->ar, bytes)))
            return jj_nomem(R);
        l->cap = cap;
    }
    out->t = JV_LIST;
    out->u.l = l;
    return LM_OK;
}

lm_status jv_new_dict(jj_render *R, jv *out) {
    jj_dict *d = jj_alloc(&R->ar, sizeof *d);
    if (!d)
        return jj_nomem(R);
    out->t = JV_DICT;
    out->u.d = d;
    return LM_OK;
}

lm_status jj_list_push(jj_render *R, jj_list *l, jv v) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8, bytes;
        jv *nv;
        if (!lm_mul_ok(cap, sizeof(jv), &bytes) || !(nv = jj_alloc(&R->ar, bytes)))
            return jj_nomem(R);
        if (l->n)
            memcpy(nv, l->v, l->n * sizeof(jv));
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->n++] = v;
    return LM_OK;
}

jv *jj_dict_find(const jj_dict *d, const char *key, size_t n) {
    for (size_t i = 0; i < d->n; i++)
        if (d->k[i].t == JV_STR && d->k[i].u.s.n == n && memcmp(d->k[i].u.s.p, key, n) == 0)
            return &d->v[i];
    return NULL;
}

lm_status jj_dict_set(jj_render *R, jj_dict *d, jv key, jv val) {
    for (size_t i = 0; i < d->n; i++) {
        if (jv_eq(d->k[i], key)) {
            d->v[i] = val;
            return LM_OK;
        }
    }
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 8, bytes;
        jv *nk, *nv;
        if (!lm_mul_ok(cap, sizeof(jv), &bytes) || !(nk = jj_alloc(&R->ar, bytes)) ||
            !(nv = jj_alloc(&R->ar, bytes)))
            return jj_nomem(R);
        if (d->n) {
            memcpy(nk, d->k, d->n * sizeof(jv));
            memcpy(nv, d->v, d->n * sizeof(jv));
        }
        d->k = nk;
        d->v = nv;
        d->cap = cap;
    }
    d->k[d->n] = key;
    d->v[d->n++] = val;
    return LM_OK;
}

/* JSON numbers: cJSON keeps only a double, so integral values within 2^53 become ints
 * (Python's json.loads would keep "1.0" a float). */
lm_status jv_from_json(jj_render *R, const cJSON *j, jv *out) {
    if (cJSON_IsNull(j) || !j) {
        *out = jv_none();
    } else if (cJSON_IsBool(j)) {
        *out = jv_bool(cJSON_IsTrue(j));
    } else if (cJSON_IsNumber(j)) {
        double d = j->valuedouble;
        if (d == floor(d) && fabs(d) <= 9007199254740992.0)
            *out = jv_int((int64_t)d);
        else
            *out = jv_float(d);
    } else if (cJSON_IsString(j)) {
        const char *s = j->valuestring ? j->valuestring : "";
        size_t n = strlen(s);
        char *p = jj_strndup(&R->ar, s, n);
        if (!p)
            return jj_nomem(R);
        *out = jv_strn(p, n);
    } else if (cJSON_IsArray(j)) {
        LM_TRY(jv_new_list(R, (size_t)cJSON_GetArraySize(j), out));
        for (const cJSON *c = j->child; c; c = c->next) {
            jv v;
            LM_TRY(jv_from_json(R, c, &v));
            LM_TRY(jj_list_push(R, out->u.l, v));
        }
    } else if (cJSON_IsObject(j)) {
        LM_TRY(jv_new_dict(R, out));
        for (const cJSON *c = j->child; c; c = c->next) {
            jv v, k;
            LM_TRY(jv_from_json(R, c, &v));
            const char *ks = c->string ? c->string : "";
            char *kp = jj_strndup(&R->ar, ks, strlen(ks));
            if (!kp)
                return jj_nomem(R);
            k = jv_strn(kp, strlen(ks));
            LM_TRY(jj_dict_set(R, out->u.d, k, v));
        }
    } else {
        *out = jv_none();
    }
    return LM_OK;
}

/* --- Python semantics ---------------------------------------------------------------------- */

const char *jv_type_name(jv v) {
    switch (v.t) {
    case JV_UNDEF: return "Undefined";
    case JV_NONE: return "NoneType";
    case JV_BOOL: return "bool";
    case JV_INT: return "int";
    case JV_FLOAT: return "float";
    case JV_STR: return "str";
    case JV_LIST: return v.u.l->tuple ? "tuple" : "list";
    case JV_DICT: return "dict";
    case JV_NS: return "Namespace";
    case JV_FUNC: return "function";
    case JV_METHOD: return "method";
    case JV_MACRO: return "Macro";
    case JV_LOOP: return "LoopContext";
    }
    return "object";
}

int jv_truthy(jv v) {
    switch (v.t) {
    case JV_UNDEF:
    case JV_NONE: return 0;
    case JV_BOOL: return v.u.b;
    case JV_INT: return v.u.i != 0;
    case JV_FLOAT: return v.u.f != 0.0;
    case JV_STR: return v.u.s.n != 0;
    case JV_LIST: return v.u.l->n != 0;
    case JV_DICT: return v.u.d->n != 0;
    default: return 1;
    }
}

int jv_is_num(jv v) { return v.t == JV_BOOL || v.t == JV_INT || v.t == JV_FLOAT; }

double jv_num(jv v) {
    return v.t == JV_FLOAT ? v.u.f : v.t == JV_INT ? (double)v.u.i : v.t == JV_BOOL ? v.u.b : 0.0;
}

int jv_eq(jv a, jv b) {
    if (jv_is_num(a) && jv_is_num(b)) {
        if (a.t != JV_FLOAT && b.t != JV_FLOAT)
            return (a.t == JV_INT ? a.u.i : a.u.b) == (b.t == JV_INT ? b.u.i : b.u.b);
        return jv_num(a) == jv_num(b);
    }
    if (a.t != b.t)
        return 0;
    switch (a.t) {
    case JV_UNDEF:
    case JV_NONE: return 1;
    case JV_STR: return a.u.s.n == b.u.s.n && memcmp(a.u.s.p, b.u.s.p, a.u.s.n) == 0;
    case JV_LIST:
        if (a.u.l->n != b.u.l->n)
            return 0;
        for (size_t i = 0; i < a.u.l->n; i++)
            if (!jv_eq(a.u.l->v[i], b.u.l->v[i]))
                return 0;
        return 1;
    case JV_DICT:
        if (a.u.d->n != b.u.d->n)
            return 0;
        for (size_t i = 0; i < a.u.d->n; i++) {
            size_t j = 0;
            while (j < b.u.d->n && !jv_eq(a.u.d->k[i], b.u.d->k[j]))
                j++;
            if (j == b.u.d->n || !jv_eq(a.u.d->v[i], b.u.d->v[j]))
                return 0;
        }
        return 1;
    case JV_NS: return a.u.d == b.u.d;
    case JV_FUNC: return a.u.fn == b.u.fn;
    case JV_MACRO: return a.u.macro == b.u.macro;
    case JV_LOOP: return a.u.loop == b.u.loop;
    case JV_METHOD: return a.u.m == b.u.m;
    default: return 0;
    }
}

lm_status jv_cmp(jj_render *R, jv a, jv b, int *res) {
    if (jv_is_num(a) && jv_is_num(b)) {
        if (a.t != JV_FLOAT && b.t != JV_FLOAT) {
            int64_t x = a.t == JV_INT ? a.u.i : a.u.b, y = b.t == JV_INT ? b.u.i : b.u.b;
            *res = (x > y) - (x < y);
        } else {
            double x = jv_num(a), y = jv_num(b);
            *res = (x > y) - (x < y);
        }
        return LM_OK;
    }
    if (a.t == JV_STR && b.t == JV_STR) {
        size_t n = a.u.s.n < b.u.s.n ? a.u.s.n : b.u.s.n;
        int c = n ? memcmp(a.u.s.p, b.u.s.p, n) : 0;
        *res = c ? (c > 0 ? 1 : -1) : (a.u.s.n > b.u.s.n) - (a.u.s.n < b.u.s.n);
        return LM_OK;
    }
    if (a.t == JV_LIST && b.t == JV_LIST) {
        size_t n = a.u.l->n < b.u.l->n ? a.u.l->n : b.u.l->n;
        for (size_t i = 0; i < n; i++) {
            if (jv_eq(a.u.l->v[i], b.u.l->v[i]))
                continue;
            return jv_cmp(R, a.u.l->v[i], b.u.l->v[i], res);
        }
        *res = (a.u.l->n > b.u.l->n) - (a.u.l->n < b.u.l->n);
        return LM_OK;
    }
    return JJ_ERR(R, "'<' not supported between instances of '%s' and '%s'", jv_type_name(a), jv_type_name(b));
}

/* Python repr(float): the shortest digits that round-trip; exponent form outside
 * 1e-4 <= |x| < 1e16. */
void jj_float_repr(double f, char *buf, size_t cap) {
    if (isnan(f)) {
        snprintf(buf, cap, "nan");
        return;
    }
    if (isinf(f)) {
        snprintf(buf, cap, f < 0 ? "-inf" : "inf");
        return;
    }
    if (f == 0) {
        snprintf(buf, cap, signbit(f) ? "-0.0" : "0.0");
        return;
    }
    char tmp[40];
    int prec = 1;
    for (; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, f);
        if (strtod(tmp, NULL) == f)
            break;
    }
    /* tmp = [-]d[.ddd]e[+-]XX */
    char digits[24];
    int nd = 0, neg = tmp[0] == '-';
    const char *p = tmp + neg;
    for (; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9' && nd < 20)
            digits[nd++] = *p;
    int exp = atoi(p + 1);
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    digits[nd] = 0;
    char *o = buf;
    size_t left = cap;
#define EMIT(...)                                        \
    do {                                                 \
        int w_ = snprintf(o, left, __VA_ARGS__);         \
        if (w_ < 0 || (size_t)w_ >= left)                \
            return;                                      \
        o += w_;                                         \
        left -= (size_t)w_;                              \
    } while (0)
    if (neg)
        EMIT("-");
    if (exp < -4 || exp >= 16) {
        EMIT("%c", digits[0]);
        if (nd > 1)
            EMIT(".%s", digits + 1);
        EMIT("e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    } else if (exp < 0) {
        EMIT("0.");
        for (int i = 0; i < -exp - 1; i++)
            EMIT("0");
        EMIT("%s", digits);
    } else {
        for (int i = 0; i <= exp; i++)
            EMIT("%c", i < nd ? digits[i] : '0');
        EMIT(".");
        if (nd > exp + 1)
            EMIT("%s", digits + exp + 1);
        else
            EMIT("0");
    }
#undef EMIT
}

static void write_str_repr(jj_buf *b, const char *s, size_t n) {
    int has_sq = memchr(s, '\'', n) != NULL, has_dq = memchr(s, '"', n) != NULL;
    char q = has_sq && !has_dq ? '"' : '\'';
    jj_buf_putc(b, q);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\\')
            jj_buf_puts(b, "\\\\");
        else if (c == (unsigned char)q)
            jj_buf_printf(b, "\\%c", q);
        else if (c == '\n')
            jj_buf_puts(b, "\\n");
        else if (c == '\r')
            jj_buf_puts(b, "\\r");
        else if (c == '\t')
            jj_buf_puts(b, "\\t");
        else if (c < 0x20 || c == 0x7f)
            jj_buf_printf(b, "\\x%02x", c);
        else
            jj_buf_putc(b, (char)c);
    }
    jj_buf_putc(b, q);
}

void jv_write_repr(jj_buf *b, jv v) {
    switch (v.t) {
    case JV_STR: write_str_repr(b, v.u.s.p, v.u.s.n); return;
    case JV_LIST: {
        jj_buf_putc(b, v.u.l->tuple ? '(' : '[');
        for (size_t i = 0; i < v.u.l->n && !b->oom; i++) {
            if (i)
                jj_buf_puts(b, ", ");
            jv_write_repr(b, v.u.l->v[i]);
        }
        if (v.u.l->tuple && v.u.l->n == 1)
            jj_buf_putc(b, ',');
        jj_buf_putc(b, v.u.l->tuple ? ')' : ']');
        return;
    }
    case JV_DICT:
        jj_buf_putc(b, '{');
        for (size_t i = 0; i < v.u.d->n && !b->oom; i++) {
            if (i)
                jj_buf_puts(b, ", ");
            jv_write_repr(b, v.u.d->k[i]);
            jj_buf_puts(b, ": ");
            jv_write_repr(b, v.u.d->v[i]);
        }
        jj_buf_putc(b, '}');
        return;
    default: jv_write_str(b, v);
    }
}

void jv_write_str(jj_buf *b, jv v) {
    char tmp[48];
    switch (v.t) {
    case JV_UNDEF: return;
    case JV_NONE: jj_buf_puts(b, "None"); return;
    case JV_BOOL: jj_buf_puts(b, v.u.b ? "True" : "False"); return;
    case JV_INT: jj_buf_printf(b, "%lld", (long long)v.u.i); return;
    case JV_FLOAT:
        jj_float_repr(v.u.f, tmp, sizeof tmp);
        jj_buf_puts(b, tmp);
        return;
    case JV_STR: jj_buf_put(b, v.u.s.p, v.u.s.n); return;
    case JV_LIST:
    case JV_DICT: jv_write_repr(b, v); return;
    case JV_NS:
        jj_buf_puts(b, "<Namespace ");
        jv d = {.t = JV_DICT};
        d.u.d = v.u.d;
        jv_write_repr(b, d);
        jj_buf_putc(b, '>');
        return;
    case JV_FUNC: jj_buf_puts(b, "<built-in function>"); return;
    case JV_METHOD: jj_buf_printf(b, "<built-in method %s>", v.u.m->name); return;
    case JV_MACRO: jj_buf_printf(b, "<Macro '%s'>", v.u.macro->name); return;
    case JV_LOOP: jj_buf_puts(b, "<LoopContext>"); return;
    }
}

lm_status jv_to_str(jj_render *R, jv v, jv *out) {
    if (v.t == JV_STR) {
        *out = v;
        return LM_OK;
    }
    jj_buf b = {.limit = R->max_output};
    jv_write_str(&b, v);
    lm_status st = jv_from_buf(R, &b, out);
    jj_buf_free(&b);
    return st;
}

/* --- json.dumps ---------------------------------------------------------------------------- */

static void json_string(jj_buf *b, const char *s, size_t n, int ensure_ascii) {
    jj_buf_putc(b, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': jj_buf_puts(b, "\\\""); continue;
        case '\\': jj_buf_puts(b, "\\\\"); continue;
        case '\n': jj_buf_puts(b, "\\n"); continue;
        case '\r': jj_buf_puts(b, "\\r"); continue;
        case '\t': jj_buf_puts(b, "\\t"); continue;
        case '\b': jj_buf_puts(b, "\\b"); continue;
        case '\f': jj_buf_puts(b, "\\f"); continue;
        default: break;
        }
        if (c < 0x20) {
            jj_buf_printf(b, "\\u%04x", c);
        } else if (c >= 0x80 && ensure_ascii) {
            size_t e = jj_utf8_next(s, n, i);
            uint32_t cp = 0;
            int len = (int)(e - i);
            if (len == 2)
                cp = c & 0x1F;
            else if (len == 3)
                cp = c & 0x0F;
            else if (len == 4)
                cp = c & 0x07;
            else
                cp = 0xFFFD;
            for (size_t k = i + 1; k < e && len > 1; k++)
                cp = (cp << 6) | ((unsigned char)s[k] & 0x3F);
            if (cp >= 0x10000) {
                cp -= 0x10000;
                jj_buf_printf(b, "\\u%04x\\u%04x", 0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF));
            } else {
                jj_buf_printf(b, "\\u%04x", cp);
            }
            i = e - 1;
        } else {
            jj_buf_putc(b, (char)c);
        }
    }
    jj_buf_putc(b, '"');
}

static void json_newline(jj_buf *b, const jj_json_opts *o, int level) {
    jj_buf_putc(b, '\n');
    for (int i = 0; i < level; i++) {
        if (o->indent_str)
            jj_buf_puts(b, o->indent_str);
        else
            for (int k = 0; k < o->indent; k++)
                jj_buf_putc(b, ' ');
    }
}

static int indented(const jj_json_opts *o) { return o->indent >= 0 || o->indent_str; }

lm_status jv_write_json(jj_render *R, jj_buf *b, jv v, const jj_json_opts *o, int level) {
    char tmp[48];
    if (level > 512)
        return JJ_ERR(R, "tojson: value nested too deeply");
    if (b->oom)
        return JJ_ERR(R, "output too large");
    switch (v.t) {
    case JV_NONE: jj_buf_puts(b, "null"); return LM_OK;
    case JV_BOOL: jj_buf_puts(b, v.u.b ? "true" : "false"); return LM_OK;
    case JV_INT: jj_buf_printf(b, "%lld", (long long)v.u.i); return LM_OK;
    case JV_FLOAT:
        if (isnan(v.u.f))
            jj_buf_puts(b, "NaN");
        else if (isinf(v.u.f))
            jj_buf_puts(b, v.u.f < 0 ? "-Infinity" : "Infinity");
        else {
            jj_float_repr(v.u.f, tmp, sizeof tmp);
            jj_buf_puts(b, tmp);
        }
        return LM_OK;
    case JV_STR: json_string(b, v.u.s.p, v.u.s.n, o->ensure_ascii); return LM_OK;
    case JV_LIST:
        if (!v.u.l->n) {
            jj_buf_puts(b, "[]");
            return LM_OK;
        }
        jj_buf_putc(b, '[');
        for (size_t i = 0; i < v.u.l->n; i++) {
            if (i)
                jj_buf_puts(b, o->item_sep);
            if (indented(o))
                json_newline(b, o, level + 1);
            LM_TRY(jv_write_json(R, b, v.u.l->v[i], o, level + 1));
        }
        if (indented(o))
            json_newline(b, o, level);
        jj_buf_putc(b, ']');
        return LM_OK;
    case JV_DICT:
    case JV_NS: {
        const jj_dict *d = v.u.d;
        if (!d->n) {
            jj_buf_puts(b, "{}");
            return LM_OK;
        }
        size_t *order = jj_alloc(&R->ar, d->n * sizeof *order);
        if (!order)
            return jj_nomem(R);
        for (size_t i = 0; i < d->n; i++)
            order[i] = i;
        if (o->sort_keys) { /* insertion sort: keys are few */
            for (size_t i = 1; i < d->n; i++) {
                size_t x = order[i], j = i;
                while (j > 0) {
                    int c;
                    LM_TRY(jv_cmp(R, d->k[order[j - 1]], d->k[x], &c));
                    if (c <= 0)
                        break;
                    order[j] = order[j - 1];
                    j--;
                }
                order[j] = x;
            }
        }
        jj_buf_putc(b, '{');
        for (size_t i = 0; i < d->n; i++) {
            jv k = d->k[order[i]];
            if (i)
                jj_buf_puts(b, o->item_sep);
            if (indented(o))
                json_newline(b, o, level + 1);
            if (k.t == JV_STR) {
                json_string(b, k.u.s.p, k.u.s.n, o->ensure_ascii);
            } else if (k.t == JV_INT || k.t == JV_FLOAT || k.t == JV_BOOL || k.t == JV_NONE) {
                jj_buf_putc(b, '"');
                LM_TRY(jv_write_json(R, b, k, o, level + 1));
                jj_buf_putc(b, '"');
            } else {
                return JJ_ERR(R, "tojson: keys must be str, int, float, bool or None, not %s", jv_type_name(k));
            }
            jj_buf_puts(b, o->key_sep);
            LM_TRY(jv_write_json(R, b, d->v[order[i]], o, level + 1));
        }
        if (indented(o))
            json_newline(b, o, level);
        jj_buf_putc(b, '}');
        return LM_OK;
    }
    default:
        return JJ_ERR(R, "tojson: object of type %s is not JSON serializable", jv_type_name(v));
    }
}

/* --- UTF-8 ----------------------------------------------------------------------------------- */

size_t jj_utf8_next(const char *s, size_t n, size_t i) {
    i++;
    while (i < n && ((unsigned char)s[i] & 0xC0) == 0x80)
        i++;
    return i;
}

size_t jj_utf8_len(const char *s, size_t n) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            c++;
    return c;
}

size_t jj_utf8_off(const char *s, size_t n, size_t cp) {
    size_t i = 0;
    while (i < n && ((unsigned char)s[i] & 0xC0) == 0x80)
        i++; /* stray continuation bytes at the start belong to code point 0 */
    for (size_t k = 0; k < cp && i < n; k++)
        i = jj_utf8_next(s, n, i);
    return i;
}
