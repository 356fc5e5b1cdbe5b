/* Jinja filters (jinja2/filters.py semantics; tojson as transformers defines it:
 * json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/jinja_rt.h"
#include "text/jinja_strings.h"

typedef lm_status (*filter_fn)(jj_render *R, jv in, jj_args *a, jv *out);

#define ARG(i, kw, def) jj_arg(a, i, kw, def)
#define UNDEF jv_undef(NULL)

static lm_status need_str(jj_render *R, jv in, jv *out) { return jv_to_str(R, in, out); }

static lm_status finish(jj_render *R, jj_buf *b, jv *out) {
    lm_status st = jv_from_buf(R, b, out);
    jj_buf_free(b);
    return st;
}

/* jinja2 make_attrgetter: "a.b.0" walks items (digits become integer indices) */
static lm_status attr_get(jj_render *R, jv v, jv attr, jv *out) {
    if (attr.t == JV_INT)
        return jj_getitem(R, v, attr, out);
    if (attr.t != JV_STR)
        return JJ_ERR(R, "attribute must be a string or an integer, not %s", jv_type_name(attr));
    const char *p = attr.u.s.p, *end = p + attr.u.s.n;
    while (p <= end) {
        const char *dot = memchr(p, '.', (size_t)(end - p));
        if (!dot)
            dot = end;
        size_t n = (size_t)(dot - p);
        int digits = n > 0 && n < 18;
        for (size_t i = 0; i < n && digits; i++)
            digits = p[i] >= '0' && p[i] <= '9';
        jv key = digits ? jv_int(strtoll(p, NULL, 10)) : jv_strn(p, n);
        if (v.t == JV_UNDEF)
            return JJ_ERR(R, "'%.*s' is undefined", (int)(n > 60 ? 60 : n), p);
        LM_TRY(jj_getitem(R, v, key, &v));
        p = dot + 1;
    }
    *out = v;
    return LM_OK;
}

static lm_status f_trim(jj_render *R, jv in, jj_args *a, jv *out) {
    LM_TRY(need_str(R, in, &in));
    return jj_str_strip(R, in, ARG(0, "chars", jv_none()), 1, 1, out);
}

static lm_status case_filter(jj_render *R, jv in, jv *out, int mode) {
    LM_TRY(need_str(R, in, &in));
    return jj_str_case(R, in, mode, out);
}
static lm_status f_upper(jj_render *R, jv in, jj_args *a, jv *out) { (void)a; return case_filter(R, in, out, JJ_CASE_UPPER); }
static lm_status f_lower(jj_render *R, jv in, jj_args *a, jv *out) { (void)a; return case_filter(R, in, out, JJ_CASE_LOWER); }
static lm_status f_capitalize(jj_render *R, jv in, jj_args *a, jv *out) { (void)a; return case_filter(R, in, out, JJ_CASE_CAPITALIZE); }
static lm_status f_title(jj_render *R, jv in, jj_args *a, jv *out) { (void)a; return case_filter(R, in, out, JJ_CASE_TITLE); }

static lm_status f_length(jj_render *R, jv in, jj_args *a, jv *out) {
    (void)a;
    switch (in.t) {
    case JV_STR: *out = jv_int((int64_t)jj_utf8_len(in.u.s.p, in.u.s.n)); return LM_OK;
    case JV_LIST: *out = jv_int((int64_t)in.u.l->n); return LM_OK;
    case JV_DICT:
    case JV_NS: *out = jv_int((int64_t)in.u.d->n); return LM_OK;
    case JV_UNDEF: *out = jv_int(0); return LM_OK;
    default: return JJ_ERR(R, "object of type '%s' has no len()", jv_type_name(in));
    }
}

static lm_status f_default(jj_render *R, jv in, jj_args *a, jv *out) {
    (void)R;
    jv def = ARG(0, "default_value", jv_strn("", 0));
    int boolean = jv_truthy(ARG(1, "boolean", jv_bool(0)));
    *out = (in.t == JV_UNDEF || (boolean && !jv_truthy(in))) ? def : in;
    return LM_OK;
}

static lm_status f_tojson(jj_render *R, jv in, jj_args *a, jv *out) {
    jj_json_opts o = {.indent = -1, .item_sep = ", ", .key_sep = ": "};
    jv ind = ARG(0, "indent", jv_none()), seps = ARG(-1, "separators", jv_none());
    o.ensure_ascii = jv_truthy(ARG(-1, "ensure_ascii", jv_bool(0)));
    o.sort_keys = jv_truthy(ARG(-1, "sort_keys", jv_bool(0)));
    if (ind.t == JV_INT) {
        o.indent = ind.u.i < 0 ? 0 : ind.u.i > 64 ? 64 : (int)ind.u.i;
        o.item_sep = ",";
    } else if (ind.t == JV_STR) {
        char *s = jj_strndup(&R->ar, ind.u.s.p, ind.u.s.n);
        if (!s)
            return jj_nomem(R);
        o.indent_str = s;
        o.item_sep = ",";
    } else if (ind.t != JV_NONE) {
        return JJ_ERR(R, "tojson: indent must be an integer or a string");
    }
    if (seps.t == JV_LIST && seps.u.l->n == 2 && seps.u.l->v[0].t == JV_STR && seps.u.l->v[1].t == JV_STR) {
        char *s0 = jj_strndup(&R->ar, seps.u.l->v[0].u.s.p, seps.u.l->v[0].u.s.n);
        char *s1 = jj_strndup(&R->ar, seps.u.l->v[1].u.s.p, seps.u.l->v[1].u.s.n);
        if (!s0 || !s1)
            return jj_nomem(R);
        o.item_sep = s0;
        o.key_sep = s1;
    } else if (seps.t != JV_NONE) {
        return JJ_ERR(R, "tojson: separators must be a pair of strings");
    }
    jj_buf b = {.limit = R->max_output};
    lm_status st = jv_write_json(R, &b, in, &o, 0);
    if (st != LM_OK) {
        jj_buf_free(&b);
        return st;
    }
    return finish(R, &b, out);
}

static lm_status f_join(jj_render *R, jv in, jj_args *a, jv *out) {
    jj_list *items;
    jv sep = ARG(0, "d", jv_strn("", 0)), attr = ARG(1, "attribute", jv_none());
    LM_TRY(jj_iterable(R, in, &items));
    LM_TRY(need_str(R, sep, &sep));
    jj_buf b = {.limit = R->max_output};
    for (size_t i = 0; i < items->n; i++) {
        jv v = items->v[i];
        lm_status st = attr.t != JV_NONE ? attr_get(R, v, attr, &v) : LM_OK;
        if (st != LM_OK) {
            jj_buf_free(&b);
            return st;
        }
        if (i)
            jj_buf_put(&b, sep.u.s.p, sep.u.s.n);
        jv_write_str(&b, v);
    }
    return finish(R, &b, out);
}

static lm_status f_items(jj_render *R, jv in, jj_args *a, jv *out) {
    if (in.t == JV_UNDEF)
        return jv_new_list(R, 0, out);
    if (in.t != JV_DICT && in.t != JV_NS)
        return JJ_ERR(R, "items: can only get item pairs from a mapping, not %s", jv_type_name(in));
    in.t = JV_DICT;
    return jj_call_method(R, in, "items", a, out);
}

static lm_status f_replace(jj_render *R, jv in, jj_args *a, jv *out) {
    jv old = ARG(0, "old", UNDEF), nw = ARG(1, "new", UNDEF), cnt = ARG(2, "count", jv_none());
    LM_TRY(need_str(R, in, &in));
    LM_TRY(need_str(R, old, &old));
    LM_TRY(need_str(R, nw, &nw));
    return jj_str_replace(R, in, old, nw, cnt.t == JV_INT ? cnt.u.i : -1, out);
}

static lm_status f_round(jj_render *R, jv in, jj_args *a, jv *out) {
    jv prec = ARG(0, "precision", jv_int(0)), method = ARG(1, "method", jv_strn("common", 6));
    if (!jv_is_num(in))
        return JJ_ERR(R, "round: expected a number, got %s", jv_type_name(in));
    if (prec.t != JV_INT)
        return JJ_ERR(R, "round: precision must be an integer");
    int64_t p = prec.u.i < -300 ? -300 : prec.u.i > 300 ? 300 : prec.u.i;
    double x = jv_num(in), scale = pow(10.0, (double)p), r;
    if (method.t == JV_STR && method.u.s.n == 4 && !memcmp(method.u.s.p, "ceil", 4))
        r = ceil(x * scale) / scale;
    else if (method.t == JV_STR && method.u.s.n == 5 && !memcmp(method.u.s.p, "floor", 5))
        r = floor(x * scale) / scale;
    else if (method.t == JV_STR && method.u.s.n == 6 && !memcmp(method.u.s.p, "common", 6)) {
        if (in.t != JV_FLOAT && p >= 0) { /* Python round(int, n) stays an int */
            *out = jv_int(in.t == JV_INT ? in.u.i : in.u.b);
            return LM_OK;
        }
        if (p >= 0 && isfinite(x)) { /* Python's round(): correctly rounded decimal digits */
            char buf[400];
            snprintf(buf, sizeof buf, "%.*f", (int)p, x);
            r = strtod(buf, NULL);
        } else {
            r = nearbyint(x * scale) / scale;
        }
    } else {
        return JJ_ERR(R, "round: method must be 'common', 'ceil' or 'floor'");
    }
    *out = jv_float(r);
    return LM_OK;
}

static lm_status f_first(jj_render *R, jv in, jj_args *a, jv *out) {
    jj_list *items;
    (void)a;
    LM_TRY(jj_iterable(R, in, &items));
    *out = items->n ? items->v[0] : jv_undef("first");
    return LM_OK;
}

static lm_status f_last(jj_render *R, jv in, jj_args *a, jv *out) {
    jj_list *items;
    (void)a;
    LM_TRY(jj_iterable(R, in, &items));
    *out = items->n ? items->v[items->n - 1] : jv_undef("last");
    return LM_OK;
}

static lm_status f_list(jj_render *R, jv in, jj_args *a, jv *out) {
    jj_list *items;
    (void)a;
    LM_TRY(jj_iterable(R, in, &items));
    LM_TRY(jv_new_list(R, items->n, out));
    if (items->n)
        memcpy(out->u.l->v, items->v, items->n * sizeof(jv));
    out->u.l->n = items->n;
    return LM_OK;
}

static lm_status f_string(jj_render *R, jv in, jj_args *a, jv *out) {
    (void)a;
    return jv_to_str(R, in, out);
}

/* Python int(str): optional sign, digits with single underscores, surrounding whitespace */
static int parse_int(const char *s, size_t n, int base, int64_t *out) {
    size_t i = 0;
    while (i < n && (s[i] == ' ' || (s[i] >= 9 && s[i] <= 13)))
        i++;
    while (n > i && (s[n - 1] == ' ' || (s[n - 1] >= 9 && s[n - 1] <= 13)))
        n--;
    int neg = 0;
    if (i < n && (s[i] == '+' || s[i] == '-'))
        neg = s[i++] == '-';
    if (i >= n)
        return 0;
    uint64_t v = 0;
    int last_us = 1;
    for (; i < n; i++) {
        if (s[i] == '_' && !last_us) {
            last_us = 1;
            continue;
        }
        int d = s[i] >= '0' && s[i] <= '9' ? s[i] - '0' : s[i] >= 'a' && s[i] <= 'z' ? s[i] - 'a' + 10
              : s[i] >= 'A' && s[i] <= 'Z' ? s[i] - 'A' + 10 : 99;
        if (d >= base)
            return 0;
        if (v > (UINT64_C(9223372036854775807) - (uint64_t)d) / (uint64_t)base)
            return 0;
        v = v * (uint64_t)base + (uint64_t)d;
        last_us = 0;
    }
    if (last_us)
        return 0;
    *out = neg ? -(int64_t)v : (int64_t)v;
    return 1;
}

static int parse_float(jj_render *R, jv s, double *out) {
    char *tmp = jj_strndup(&R->ar, s.u.s.p, s.u.s.n), *end;
    if (!tmp || !s.u.s.n)
        return 0;
    *out = strtod(tmp, &end);
    while (*end == ' ' || (*end >= 9 && *end <= 13))
        end++;
    return end != tmp && *end == 0;
}

static lm_status f_int(jj_render *R, jv in, jj_args *a, jv *out) {
    jv def = ARG(0, "default", jv_int(0)), base = ARG(1, "base", jv_int(10));
    int64_t i;
    double d;
    *out = def;
    if (in.t == JV_INT || in.t == JV_BOOL)
        *out = jv_int(in.t == JV_INT ? in.u.i : in.u.b);
    else if (in.t == JV_FLOAT && isfinite(in.u.f) && fabs(in.u.f) < 9.2e18)
        *out = jv_int((int64_t)in.u.f);
    else if (in.t == JV_STR && parse_int(in.u.s.p, in.u.s.n, base.t == JV_INT && base.u.i >= 2 && base.u.i <= 36 ? (int)base.u.i : 10, &i))
        *out = jv_int(i);
    else if (in.t == JV_STR && parse_float(R, in, &d) && isfinite(d) && fabs(d) < 9.2e18)
        *out = jv_int((int64_t)d);
    return LM_OK;
}

static lm_status f_float(jj_render *R, jv in, jj_args *a, jv *out) {
    double d;
    *out = ARG(0, "default", jv_float(0.0));
    if (jv_is_num(in))
        *out = jv_float(jv_num(in));
    else if (in.t == JV_STR && parse_float(R, in, &d))
        *out = jv_float(d);
    return LM_OK;
}

/* jinja2 indent: lines after the first get `width` (spaces or a string); blank lines only
 * with blank=True; first=True indents the first line too */
static lm_status f_indent(jj_render *R, jv in, jj_args *a, jv *out) {
    jv width = ARG(0, "width", jv_int(4));
    int first = jv_truthy(ARG(1, "first", jv_bool(0))), blank = jv_truthy(ARG(2, "blank", jv_bool(0)));
    LM_TRY(need_str(R, in, &in));
    jv ind;
    if (width.t == JV_STR) {
        ind = width;
    } else if (width.t == JV_INT) {
        jj_buf sp = {.limit = 4096};
        for (int64_t i = 0; i < width.u.i && i < 4096; i++)
            jj_buf_putc(&sp, ' ');
        LM_TRY(finish(R, &sp, &ind));
    } else {
        return JJ_ERR(R, "indent: width must be an integer or a string");
    }
    /* lines = (s + "\n").splitlines(): every line of s, including a trailing empty one */
    jj_buf b = {.limit = R->max_output};
    if (first)
        jj_buf_put(&b, ind.u.s.p, ind.u.s.n);
    const char *p = in.u.s.p;
    size_t n = in.u.s.n, st = 0;
    for (size_t line = 0;; line++) {
        size_t e = st;
        while (e < n && p[e] != '\n' && p[e] != '\r')
            e++;
        if (line > 0) {
            jj_buf_putc(&b, '\n');
            if (blank || e > st)
                jj_buf_put(&b, ind.u.s.p, ind.u.s.n);
        }
        jj_buf_put(&b, p + st, e - st);
        if (e >= n)
            break;
        if (p[e] == '\r' && e + 1 < n && p[e + 1] == '\n')
            e++;
        st = e + 1;
    }
    return finish(R, &b, out);
}

/* map(attribute=...) or map('filter', args...) */
lm_status jj_apply_filter_name(jj_render *R, const char *name, jv in, jv *extra, int nextra, jv *out);

static lm_status f_map(jj_render *R, jv in, jj_args *a, jv *out) {
    jj_list *items;
    if (!jv_truthy(in)) /* jinja2 guards with `if value:` (so None maps to nothing) */
        return jv_new_list(R, 0, out);
    LM_TRY(jj_iterable(R, in, &items));
    LM_TRY(jv_new_list(R, items->n, out));
    jv attr = ARG(-1, "attribute", UNDEF), def = ARG(-1, "default", UNDEF);
    char *fname = NULL;
    if (attr.t == JV_UNDEF) {
        jv f = ARG(0, NULL, UNDEF);
        if (f.t != JV_STR)
            return JJ_ERR(R, "map: expected a filter name or attribute=");
        if (!(fname = jj_strndup(&R->ar, f.u.s.p, f.u.s.n)))
            return jj_nomem(R);
    }
    for (size_t i = 0; i < items->n; i++) {
        jv v;
        if (fname) {
            LM_TRY(jj_apply_filter_name(R, fname, items->v[i], a->pos + 1, a->npos - 1, &v));
        } else {
            LM_TRY(attr_get(R, items->v[i], attr, &v));
            if (v.t == JV_UNDEF && def.t != JV_UNDEF)
                v = def;
        }
        out->u.l->v[i] = v;
    }
    out->u.l->n = items->n;
    return LM_OK;
}

/* select/reject (attr=0) and selectattr/rejectattr (attr=1) */
static lm_status select_impl(jj_render *R, jv in, jj_args *a, jv *out, int attr, int keep) {
    jj_list *items;
    LM_TRY(jv_new_list(R, 0, out));
    if (!jv_truthy(in)) /* jinja2 guards with `if value:` (so None selects nothing) */
        return LM_OK;
    LM_TRY(jj_iterable(R, in, &items));
    int ti = attr ? 1 : 0;
    jv attrname = attr ? ARG(0, NULL, UNDEF) : UNDEF, test = ARG(ti, NULL, UNDEF);
    char *tname = NULL;
    if (test.t == JV_STR && !(tname = jj_strndup(&R->ar, test.u.s.p, test.u.s.n)))
        return jj_nomem(R);
    if (tname && jj_test_id(tname) < 0)
        return JJ_ERR(R, "no test named '%s'", tname);
    int nextra = a->npos > ti + 1 ? a->npos - ti - 1 : 0;
    for (size_t i = 0; i < items->n; i++) {
        jv v = items->v[i];
        int r;
        if (attr)
            LM_TRY(attr_get(R, v, attrname, &v));
        if (tname)
            LM_TRY(jj_apply_test_name(R, tname, v, a->pos + ti + 1, nextra, &r));
        else
            r = jv_truthy(v);
        if (r == keep)
            LM_TRY(jj_list_push(R, out->u.l, items->v[i]));
    }
    return LM_OK;
}
static lm_status f_select(jj_render *R, jv in, jj_args *a, jv *out) { return select_impl(R, in, a, out, 0, 1); }
static lm_status f_reject(jj_render *R, jv in, jj_args *a, jv *out) { return select_impl(R, in, a, out, 0, 0); }
static lm_status f_selectattr(jj_render *R, jv in, jj_args *a, jv *out) { return select_impl(R, in, a, out, 1, 1); }
static lm_status f_rejectattr(jj_render *R, jv in, jj_args *a, jv *out) { return select_impl(R, in, a, out, 1, 0); }

/* sort key: attribute and case folding */
static lm_status sort_key(jj_render *R, jv v, jv attr, int case_sensitive, jv *out) {
    if (attr.t != JV_NONE && attr.t != JV_UNDEF)
        LM_TRY(attr_get(R, v, attr, &v));
    if (!case_sensitive && v.t == JV_STR)
        LM_TRY(jj_str_case(R, v, JJ_CASE_LOWER, &v));
    *out = v;
    return LM_OK;
}

/* stable merge sort of items by keys */
static lm_status merge_sort(jj_render *R, jv *items, jv *keys, size_t n, int reverse) {
    if (n < 2)
        return LM_OK;
    jv *ti = jj_alloc(&R->ar, n * sizeof(jv)), *tk = jj_alloc(&R->ar, n * sizeof(jv));
    if (!ti || !tk)
        return jj_nomem(R);
    for (size_t w = 1; w < n; w *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * w) {
            size_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n, i = lo, j = mid, o = lo;
            while (i < mid && j < hi) {
                int c;
                LM_TRY(jv_cmp(R, keys[j], keys[i], &c));
                int take_right = reverse ? c > 0 : c < 0;
                if (take_right) {
                    ti[o] = items[j];
                    tk[o++] = keys[j++];
                } else {
                    ti[o] = items[i];
                    tk[o++] = keys[i++];
                }
            }
            while (i < mid) {
                ti[o] = items[i];
                tk[o++] = keys[i++];
            }
            while (j < hi) {
                ti[o] = items[j];
                tk[o++] = keys[j++];
            }
        }
        memcpy(items, ti, n * sizeof(jv));
        memcpy(keys, tk, n * sizeof(jv));
    }
    return LM_OK;
}

static lm_status f_sort(jj_render *R, jv in, jj_args *a, jv *out) {
    int reverse = jv_truthy(ARG(0, "reverse", jv_bool(0))), cs = jv_truthy(ARG(1, "case_sensitive", jv_bool(0)));
    jv attr = ARG(2, "attribute", jv_none());
    LM_TRY(f_list(R, in, a, out));
    jj_list *l = out->u.l;
    jv *keys = jj_alloc(&R->ar, (l->n + 1) * sizeof(jv));
    if (!keys)
        return jj_nomem(R);
    for (size_t i = 0; i < l->n; i++)
        LM_TRY(sort_key(R, l->v[i], attr, cs, &keys[i]));
    return merge_sort(R, l->v, keys, l->n, reverse);
}

static lm_status f_dictsort(jj_render *R, jv in, jj_args *a, jv *out) {
    int cs = jv_truthy(ARG(0, "case_sensitive", jv_bool(0))), reverse = jv_truthy(ARG(2, "reverse", jv_bool(0)));
    jv by = ARG(1, "by", jv_strn("key", 3));
    int by_value = by.t == JV_STR && by.u.s.n == 5 && !memcmp(by.u.s.p, "value", 5);
    LM_TRY(f_items(R, in, a, out));
    jj_list *l = out->u.l;
    jv *keys = jj_alloc(&R->ar, (l->n + 1) * sizeof(jv));
    if (!keys)
        return jj_nomem(R);
    for (size_t i = 0; i < l->n; i++)
        LM_TRY(sort_key(R, l->v[i].u.l->v[by_value], jv_none(), cs, &keys[i]));
    return merge_sort(R, l->v, keys, l->n, reverse);
}

static lm_status f_unique(jj_render *R, jv in, jj_args *a, jv *out) {
    int cs = jv_truthy(ARG(0, "case_sensitive", jv_bool(0)));
    jv attr = ARG(1, "attribute", jv_none());
    jj_list *items;
    LM_TRY(jj_iterable(R, in, &items));
    LM_TRY(jv_new_list(R, 0, out));
    jv seen;
    LM_TRY(jv_new_list(R, 0, &seen));
    for (size_t i = 0; i < items->n; i++) {
        jv k;
        int dup = 0;
        LM_TRY(sort_key(R, items->v[i], attr, cs, &k));
        for (size_t j = 0; j < seen.u.l->n && !dup; j++)
            dup = jv_eq(seen.u.l->v[j], k);
        if (!dup) {
            LM_TRY(jj_list_push(R, seen.u.l, k));
            LM_TRY(jj_list_push(R, out->u.l, items->v[i]));
        }
    }
    return LM_OK;
}

static lm_status f_reverse(jj_render *R, jv in, jj_args *a, jv *out) {
    if (in.t == JV_STR) {
        jj_buf b = {.limit = R->max_output};
        size_t e = in.u.s.n;
        while (e > 0) {
            size_t s = e - 1;
            while (s > 0 && ((unsigned char)in.u.s.p[s] & 0xC0) == 0x80)
                s--;
            jj_buf_put(&b, in.u.s.p + s, e - s);
            e = s;
        }
        return finish(R, &b, out);
    }
    LM_TRY(f_list(R, in, a, out));
    jj_list *l = out->u.l;
    for (size_t i = 0; i < l->n / 2; i++) {
        jv t = l->v[i];
        l->v[i] = l->v[l->n - 1 - i];
        l->v[l->n - 1 - i] = t;
    }
    return LM_OK;
}

static lm_status f_sum(jj_render *R, jv in, jj_args *a, jv *out) {
    jv attr = ARG(0, "attribute", jv_none()), acc = ARG(1, "start", jv_int(0));
    jj_list *items;
    LM_TRY(jj_iterable(R, in, &items));
    for (size_t i = 0; i < items->n; i++) {
        jv v = items->v[i];
        if (attr.t != JV_NONE)
            LM_TRY(attr_get(R, v, attr, &v));
        if (!jv_is_num(acc) || !jv_is_num(v))
            return JJ_ERR(R, "sum: unsupported operand types '%s' and '%s'", jv_type_name(acc), jv_type_name(v));
        if (acc.t != JV_FLOAT && v.t != JV_FLOAT) {
            int64_t r;
            if (__builtin_add_overflow(acc.t == JV_INT ? acc.u.i : acc.u.b, v.t == JV_INT ? v.u.i : v.u.b, &r))
                return JJ_ERR(R, "sum: integer overflow");
            acc = jv_int(r);
        } else {
            acc = jv_float(jv_num(acc) + jv_num(v));
        }
    }
    *out = acc;
    return LM_OK;
}

static lm_status minmax(jj_render *R, jv in, jj_args *a, jv *out, int want) {
    int cs = jv_truthy(ARG(0, "case_sensitive", jv_bool(0)));
    jv attr = ARG(1, "attribute", jv_none()), best_key = UNDEF;
    jj_list *items;
    LM_TRY(jj_iterable(R, in, &items));
    *out = jv_undef("min/max of an empty sequence");
    for (size_t i = 0; i < items->n; i++) {
        jv k;
        int c = 0;
        LM_TRY(sort_key(R, items->v[i], attr, cs, &k));
        if (i)
            LM_TRY(jv_cmp(R, k, best_key, &c));
        if (!i || c == want) {
            best_key = k;
            *out = items->v[i];
        }
    }
    return LM_OK;
}
static lm_status f_min(jj_render *R, jv in, jj_args *a, jv *out) { return minmax(R, in, a, out, -1); }
static lm_status f_max(jj_render *R, jv in, jj_args *a, jv *out) { return minmax(R, in, a, out, 1); }

static lm_status f_abs(jj_render *R, jv in, jj_args *a, jv *out) {
    (void)a;
    if (in.t == JV_FLOAT)
        *out = jv_float(fabs(in.u.f));
    else if ((in.t == JV_INT || in.t == JV_BOOL) && !(in.t == JV_INT && in.u.i == INT64_MIN))
        *out = jv_int(in.t == JV_INT ? (in.u.i < 0 ? -in.u.i : in.u.i) : in.u.b);
    else
        return JJ_ERR(R, "bad operand type for abs(): '%s'", jv_type_name(in));
    return LM_OK;
}

static lm_status f_attr(jj_render *R, jv in, jj_args *a, jv *out) {
    jv name;
    LM_TRY(jj_arg_str(R, a, 0, "name", "attr", &name));
    char *nm = jj_strndup(&R->ar, name.u.s.p, name.u.s.n);
    if (!nm)
        return jj_nomem(R);
    if (in.t == JV_UNDEF)
        return JJ_ERR(R, "'%s' is undefined", in.u.undef ? in.u.undef : "value");
    return jj_getattr(R, in, nm, out);
}

static lm_status f_safe(jj_render *R, jv in, jj_args *a, jv *out) {
    (void)R, (void)a;
    *out = in;
    return LM_OK;
}

static lm_status f_escape(jj_render *R, jv in, jj_args *a, jv *out) {
    (void)a;
    LM_TRY(need_str(R, in, &in));
    jj_buf b = {.limit = R->max_output};
    for (size_t i = 0; i < in.u.s.n; i++) {
        char c = in.u.s.p[i];
        switch (c) {
        case '&': jj_buf_puts(&b, "&amp;"); break;
        case '<': jj_buf_puts(&b, "&lt;"); break;
        case '>': jj_buf_puts(&b, "&gt;"); break;
        case '"': jj_buf_puts(&b, "&#34;"); break;
        case '\'': jj_buf_puts(&b, "&#39;"); break;
        default: jj_buf_putc(&b, c);
        }
    }
    return finish(R, &b, out);
}

static lm_status f_wordcount(jj_render *R, jv in, jj_args *a, jv *out) {
    jv words;
    (void)a;
    LM_TRY(need_str(R, in, &in));
    LM_TRY(jj_str_split(R, in, jv_none(), -1, 0, &words));
    *out = jv_int((int64_t)words.u.l->n);
    return LM_OK;
}

static lm_status f_center(jj_render *R, jv in, jj_args *a, jv *out) {
    jv w = ARG(0, "width", jv_int(80));
    LM_TRY(need_str(R, in, &in));
    int64_t len = (int64_t)jj_utf8_len(in.u.s.p, in.u.s.n), width = w.t == JV_INT ? w.u.i : 80;
    if (width > 100000)
        width = 100000;
    if (width <= len) {
        *out = in;
        return LM_OK;
    }
    int64_t pad = width - len, left = pad / 2 + (pad & width & 1); /* Python's str.center */
    jj_buf b = {.limit = R->max_output};
    for (int64_t i = 0; i < left; i++)
        jj_buf_putc(&b, ' ');
    jj_buf_put(&b, in.u.s.p, in.u.s.n);
    for (int64_t i = 0; i < pad - left; i++)
        jj_buf_putc(&b, ' ');
    return finish(R, &b, out);
}

static lm_status f_format(jj_render *R, jv in, jj_args *a, jv *out) {
    jv args;
    LM_TRY(need_str(R, in, &in));
    LM_TRY(jv_new_list(R, (size_t)a->npos, &args));
    for (int i = 0; i < a->npos; i++)
        args.u.l->v[i] = a->pos[i];
    args.u.l->n = (size_t)a->npos;
    args.u.l->tuple = 1;
    return jj_format_percent(R, in, args, out);
}

static lm_status f_batch(jj_render *R, jv in, jj_args *a, jv *out) {
    jv size = ARG(0, "linecount", UNDEF), fill = ARG(1, "fill_with", jv_none());
    jj_list *items;
    if (size.t != JV_INT || size.u.i <= 0)
        return JJ_ERR(R, "batch: linecount must be a positive integer");
    LM_TRY(jj_iterable(R, in, &items));
    LM_TRY(jv_new_list(R, 0, out));
    jv cur = UNDEF;
    for (size_t i = 0; i < items->n; i++) {
        if (cur.t == JV_UNDEF || cur.u.l->n == (size_t)size.u.i) {
            LM_TRY(jv_new_list(R, 0, &cur));
            LM_TRY(jj_list_push(R, out->u.l, cur));
        }
        LM_TRY(jj_list_push(R, cur.u.l, items->v[i]));
    }
    if (cur.t == JV_LIST && a->npos + a->nkw > 1)
        while (cur.u.l->n < (size_t)size.u.i)
            LM_TRY(jj_list_push(R, cur.u.l, fill));
    return LM_OK;
}

static const struct {
    const char *name;
    filter_fn fn;
} FILTERS[] = {
    {"abs", f_abs},           {"attr", f_attr},         {"batch", f_batch},
    {"capitalize", f_capitalize}, {"center", f_center}, {"count", f_length},
    {"d", f_default},         {"default", f_default},   {"dictsort", f_dictsort},
    {"e", f_escape},          {"escape", f_escape},     {"first", f_first},
    {"float", f_float},       {"format", f_format},     {"indent", f_indent},
    {"int", f_int},           {"items", f_items},       {"join", f_join},
    {"last", f_last},         {"length", f_length},     {"list", f_list},
    {"lower", f_lower},       {"map", f_map},           {"max", f_max},
    {"min", f_min},           {"reject", f_reject},     {"rejectattr", f_rejectattr},
    {"replace", f_replace},   {"reverse", f_reverse},   {"round", f_round},
    {"safe", f_safe},         {"select", f_select},     {"selectattr", f_selectattr},
    {"sort", f_sort},         {"string", f_string},     {"sum", f_sum},
    {"title", f_title},       {"tojson", f_tojson},     {"trim", f_trim},
    {"unique", f_unique},     {"upper", f_upper},       {"wordcount", f_wordcount},
};
#define N_FILTERS ((int)(sizeof FILTERS / sizeof FILTERS[0]))

int jj_filter_id(const char *name) {
    for (int i = 0; i < N_FILTERS; i++)
        if (strcmp(FILTERS[i].name, name) == 0)
            return i;
    return -1;
}

lm_status jj_call_filter(jj_render *R, int fid, jv in, jj_args *a, jv *out) {
    if (fid < 0 || fid >= N_FILTERS)
        return JJ_ERR(R, "internal error: bad filter id");
    return FILTERS[fid].fn(R, in, a, out);
}

lm_status jj_apply_filter_name(jj_render *R, const char *name, jv in, jv *extra, int nextra, jv *out) {
    int id = jj_filter_id(name);
    if (id < 0)
        return JJ_ERR(R, "no filter named '%s'", name);
    jj_args a = {.pos = extra, .npos = nextra > 0 ? nextra : 0};
    return FILTERS[id].fn(R, in, &a, out);
}
