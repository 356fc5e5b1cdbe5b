/* Jinja builtins: attribute/item access, iteration, global functions (range, namespace,
 * dict, raise_exception, strftime_now), dict/list/loop methods and the tests. Filters are in
 * jinja_filters.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "text/jinja_rt.h"
#include "text/jinja_strings.h"

jv jj_arg(const jj_args *a, int i, const char *kw, jv def) {
    if (i >= 0 && i < a->npos)
        return a->pos[i];
    if (kw)
        for (int k = 0; k < a->nkw; k++)
            if (strcmp(a->kwn[k], kw) == 0)
                return a->kwv[k];
    return def;
}

lm_status jj_arg_str(jj_render *R, const jj_args *a, int i, const char *kw, const char *fname, jv *out) {
    jv v = jj_arg(a, i, kw, jv_undef(NULL));
    if (v.t != JV_STR)
        return JJ_ERR(R, "%s: argument %s must be a string, not %s", fname, kw ? kw : "", jv_type_name(v));
    *out = v;
    return LM_OK;
}

lm_status jj_iterable(jj_render *R, jv v, jj_list **out) {
    jv l;
    switch (v.t) {
    case JV_LIST: *out = v.u.l; return LM_OK;
    case JV_UNDEF: LM_TRY(jv_new_list(R, 0, &l)); break;
    case JV_DICT:
    case JV_NS:
        LM_TRY(jv_new_list(R, v.u.d->n, &l));
        if (v.u.d->n) /* (an empty dict has no keys array) */
            memcpy(l.u.l->v, v.u.d->k, v.u.d->n * sizeof(jv));
        l.u.l->n = v.u.d->n;
        break;
    case JV_STR:
        LM_TRY(jv_new_list(R, jj_utf8_len(v.u.s.p, v.u.s.n), &l));
        for (size_t i = jj_utf8_off(v.u.s.p, v.u.s.n, 0), nx; i < v.u.s.n; i = nx) {
            nx = jj_utf8_next(v.u.s.p, v.u.s.n, i);
            LM_TRY(jj_list_push(R, l.u.l, jv_strn(v.u.s.p + i, nx - i)));
        }
        break;
    default: return JJ_ERR(R, "'%s' object is not iterable", jv_type_name(v));
    }
    *out = l.u.l;
    return LM_OK;
}

/* --- attributes and items ------------------------------------------------------------------ */

static const char *const DICT_METHODS[] = {"items", "keys", "values", "get", NULL};
static const char *const LIST_METHODS[] = {"index", "count", NULL};

static int in_table(const char *const *t, const char *name) {
    for (int i = 0; t[i]; i++)
        if (strcmp(t[i], name) == 0)
            return 1;
    return 0;
}

int jj_has_method(jv self, const char *name) {
    switch (self.t) {
    case JV_STR: return jj_str_has_method(name);
    case JV_DICT: return in_table(DICT_METHODS, name);
    case JV_LIST: return in_table(LIST_METHODS, name);
    case JV_LOOP: return strcmp(name, "cycle") == 0;
    default: return 0;
    }
}

static lm_status loop_attr(jj_render *R, const jj_loop *lp, const char *name, jv *out) {
    size_t i = lp->i, n = lp->items->n;
    if (!strcmp(name, "index"))
        *out = jv_int((int64_t)i + 1);
    else if (!strcmp(name, "index0"))
        *out = jv_int((int64_t)i);
    else if (!strcmp(name, "revindex"))
        *out = jv_int((int64_t)(n - i));
    else if (!strcmp(name, "revindex0"))
        *out = jv_int((int64_t)(n - i - 1));
    else if (!strcmp(name, "first"))
        *out = jv_bool(i == 0);
    else if (!strcmp(name, "last"))
        *out = jv_bool(i + 1 == n);
    else if (!strcmp(name, "length"))
        *out = jv_int((int64_t)n);
    else if (!strcmp(name, "previtem"))
        *out = i > 0 ? lp->items->v[i - 1] : jv_undef("previtem");
    else if (!strcmp(name, "nextitem"))
        *out = i + 1 < n ? lp->items->v[i + 1] : jv_undef("nextitem");
    else if (!strcmp(name, "depth"))
        *out = jv_int(1);
    else if (!strcmp(name, "depth0"))
        *out = jv_int(0);
    else
        *out = jv_undef(name);
    (void)R;
    return LM_OK;
}

lm_status jj_getattr(jj_render *R, jv obj, const char *name, jv *out) {
    if (jj_has_method(obj, name)) {
        jj_method *m = jj_alloc(&R->ar, sizeof *m);
        if (!m)
            return jj_nomem(R);
        m->self = obj;
        m->name = name;
        out->t = JV_METHOD;
        out->u.m = m;
        return LM_OK;
    }
    if (obj.t == JV_DICT || obj.t == JV_NS) {
        jv *v = jj_dict_find(obj.u.d, name, strlen(name));
        *out = v ? *v : jv_undef(name);
        return LM_OK;
    }
    if (obj.t == JV_LOOP)
        return loop_attr(R, obj.u.loop, name, out);
    *out = jv_undef(name);
    return LM_OK;
}

lm_status jj_getitem(jj_render *R, jv obj, jv key, jv *out) {
    if ((obj.t == JV_LIST || obj.t == JV_STR) && (key.t == JV_INT || key.t == JV_BOOL)) {
        int64_t i = key.t == JV_INT ? key.u.i : key.u.b;
        int64_t n = obj.t == JV_LIST ? (int64_t)obj.u.l->n : (int64_t)jj_utf8_len(obj.u.s.p, obj.u.s.n);
        if (i < 0)
            i += n;
        if (i < 0 || i >= n) {
            *out = jv_undef("index out of range");
        } else if (obj.t == JV_LIST) {
            *out = obj.u.l->v[i];
        } else {
            size_t a = jj_utf8_off(obj.u.s.p, obj.u.s.n, (size_t)i);
            *out = jv_strn(obj.u.s.p + a, jj_utf8_next(obj.u.s.p, obj.u.s.n, a) - a);
        }
        return LM_OK;
    }
    if (obj.t == JV_DICT || obj.t == JV_NS) {
        for (size_t i = 0; i < obj.u.d->n; i++)
            if (jv_eq(obj.u.d->k[i], key)) {
                *out = obj.u.d->v[i];
                return LM_OK;
            }
    }
    if (key.t == JV_STR) { /* jinja2 falls back to getattr for string keys */
        char *nm = jj_strndup(&R->ar, key.u.s.p, key.u.s.n);
        if (!nm)
            return jj_nomem(R);
        if (strlen(nm) == key.u.s.n && obj.t != JV_DICT && obj.t != JV_NS)
            return jj_getattr(R, obj, nm, out);
        *out = jv_undef(nm);
        return LM_OK;
    }
    *out = jv_undef(NULL);
    return LM_OK;
}

/* --- methods ------------------------------------------------------------------------------- */

lm_status jj_call_method(jj_render *R, jv self, const char *name, jj_args *a, jv *out) {
    if (self.t == JV_STR)
        return jj_str_method(R, self, name, a, out);
    if (self.t == JV_DICT) {
        const jj_dict *d = self.u.d;
        if (!strcmp(name, "get")) {
            jv key = jj_arg(a, 0, NULL, jv_undef(NULL)), def = jj_arg(a, 1, NULL, jv_none());
            *out = def;
            for (size_t i = 0; i < d->n; i++)
                if (jv_eq(d->k[i], key)) {
                    *out = d->v[i];
                    break;
                }
            return LM_OK;
        }
        LM_TRY(jv_new_list(R, d->n, out));
        for (size_t i = 0; i < d->n; i++) {
            if (name[0] == 'k') {
                out->u.l->v[i] = d->k[i];
            } else if (name[0] == 'v') {
                out->u.l->v[i] = d->v[i];
            } else {
                jv pair;
                LM_TRY(jv_new_list(R, 2, &pair));
                pair.u.l->v[0] = d->k[i];
                pair.u.l->v[1] = d->v[i];
                pair.u.l->n = 2;
                pair.u.l->tuple = 1;
                out->u.l->v[i] = pair;
            }
        }
        out->u.l->n = d->n;
        return LM_OK;
    }
    if (self.t == JV_LIST) {
        jv x = jj_arg(a, 0, NULL, jv_undef(NULL));
        int64_t c = 0;
        for (size_t i = 0; i < self.u.l->n; i++) {
            if (jv_eq(self.u.l->v[i], x)) {
                if (name[0] == 'i') {
                    *out = jv_int((int64_t)i);
                    return LM_OK;
                }
                c++;
            }
        }
        if (name[0] == 'i')
            return JJ_ERR(R, "list.index(x): x not in list");
        *out = jv_int(c);
        return LM_OK;
    }
    if (self.t == JV_LOOP && a->npos > 0) { /* loop.cycle(a, b, ...) */
        *out = a->pos[self.u.loop->i % (size_t)a->npos];
        return LM_OK;
    }
    return JJ_ERR(R, "'%s' object has no method '%s'", jv_type_name(self), name);
}

/* --- global functions ------------------------------------------------------------------------ */

enum { FN_RANGE, FN_NAMESPACE, FN_DICT, FN_RAISE, FN_STRFTIME, FN_COUNT };
static const char *const FUNCS[FN_COUNT] = {"range", "namespace", "dict", "raise_exception", "strftime_now"};

int jj_func_id(const char *name) {
    for (int i = 0; i < FN_COUNT; i++)
        if (strcmp(FUNCS[i], name) == 0)
            return i;
    return -1;
}

static lm_status fn_range(jj_render *R, jj_args *a, jv *out) {
    int64_t v[3] = {0, 0, 1};
    if (a->npos < 1 || a->npos > 3)
        return JJ_ERR(R, "range expected 1 to 3 arguments, got %d", a->npos);
    for (int i = 0; i < a->npos; i++) {
        if (a->pos[i].t != JV_INT && a->pos[i].t != JV_BOOL)
            return JJ_ERR(R, "range: '%s' object cannot be interpreted as an integer", jv_type_name(a->pos[i]));
        v[a->npos == 1 ? 1 : i] = a->pos[i].t == JV_INT ? a->pos[i].u.i : a->pos[i].u.b;
    }
    int64_t start = v[0], stop = v[1], step = v[2];
    if (step == 0)
        return JJ_ERR(R, "range() arg 3 must not be zero");
    uint64_t count = 0;
    if (step > 0 && start < stop)
        count = ((uint64_t)stop - (uint64_t)start - 1) / (uint64_t)step + 1;
    else if (step < 0 && stop < start)
        count = ((uint64_t)start - (uint64_t)stop - 1) / ((uint64_t)0 - (uint64_t)step) + 1;
    if (count > R->max_steps)
        return JJ_ERR(R, "range too large (%llu items)", (unsigned long long)count);
    LM_TRY(jj_step(R, count / 16));
    LM_TRY(jv_new_list(R, (size_t)count, out));
    for (uint64_t i = 0; i < count; i++)
        out->u.l->v[i] = jv_int((int64_t)((uint64_t)start + i * (uint64_t)step));
    out->u.l->n = (size_t)count;
    return LM_OK;
}

static lm_status fn_dict(jj_render *R, jj_args *a, jv *out, jv_type t) {
    LM_TRY(jv_new_dict(R, out));
    out->t = t;
    for (int i = 0; i < a->npos; i++) {
        jv p = a->pos[i];
        if (p.t != JV_DICT && p.t != JV_NS)
            return JJ_ERR(R, "%s: positional argument must be a mapping", t == JV_NS ? "namespace" : "dict");
        for (size_t k = 0; k < p.u.d->n; k++)
            LM_TRY(jj_dict_set(R, out->u.d, p.u.d->k[k], p.u.d->v[k]));
    }
    for (int k = 0; k < a->nkw; k++)
        LM_TRY(jj_dict_set(R, out->u.d, jv_cstr(a->kwn[k]), a->kwv[k]));
    return LM_OK;
}

static lm_status fn_strftime(jj_render *R, jj_args *a, jv *out) {
    jv fmt;
    LM_TRY(jj_arg_str(R, a, 0, "format", "strftime_now", &fmt));
    struct tm tm;
    time_t t = R->now >= 0 ? (time_t)R->now : time(NULL);
    if (R->now >= 0 ? !gmtime_r(&t, &tm) : !localtime_r(&t, &tm))
        return JJ_ERR(R, "strftime_now: cannot convert the time");
    char *f = jj_strndup(&R->ar, fmt.u.s.p, fmt.u.s.n);
    if (!f)
        return jj_nomem(R);
    if (!*f) {
        *out = jv_strn("", 0);
        return LM_OK;
    }
    for (size_t cap = 256; cap <= ((size_t)1 << 16); cap *= 4) {
        char *buf = jj_alloc(&R->ar, cap);
        if (!buf)
            return jj_nomem(R);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
        size_t n = strftime(buf, cap, f, &tm); /* the template's format, as Python's strftime */
#pragma GCC diagnostic pop
        if (n > 0) {
            *out = jv_strn(buf, n);
            return LM_OK;
        }
    }
    *out = jv_strn("", 0); /* a format that expands to nothing */
    return LM_OK;
}

lm_status jj_call_func(jj_render *R, int fn, jj_args *a, jv *out) {
    switch (fn) {
    case FN_RANGE: return fn_range(R, a, out);
    case FN_NAMESPACE: return fn_dict(R, a, out, JV_NS);
    case FN_DICT: return fn_dict(R, a, out, JV_DICT);
    case FN_RAISE: {
        jj_buf b = {.limit = 4096};
        if (a->npos)
            jv_write_str(&b, a->pos[0]);
        lm_status st = JJ_ERR(R, "raise_exception: %s", b.p ? b.p : "");
        jj_buf_free(&b);
        return st;
    }
    case FN_STRFTIME: return fn_strftime(R, a, out);
    default: return JJ_ERR(R, "internal error: bad function id");
    }
}

/* --- tests ------------------------------------------------------------------------------------- */

typedef lm_status (*test_fn)(jj_render *R, jv v, jj_args *a, int *res);

#define TEST1(fname, expr)                                             \
    static lm_status fname(jj_render *R, jv v, jj_args *a, int *res) { \
        (void)R;                                                       \
        (void)a;                                                       \
        *res = (expr);                                                 \
        return LM_OK;                                                  \
    }

TEST1(t_defined, v.t != JV_UNDEF)
TEST1(t_undefined, v.t == JV_UNDEF)
TEST1(t_none, v.t == JV_NONE)
TEST1(t_boolean, v.t == JV_BOOL)
TEST1(t_true, v.t == JV_BOOL && v.u.b)
TEST1(t_false, v.t == JV_BOOL && !v.u.b)
TEST1(t_integer, v.t == JV_INT)
TEST1(t_float, v.t == JV_FLOAT)
TEST1(t_number, jv_is_num(v))
TEST1(t_string, v.t == JV_STR)
TEST1(t_mapping, v.t == JV_DICT)
TEST1(t_iterable, v.t == JV_STR || v.t == JV_LIST || v.t == JV_DICT || v.t == JV_UNDEF)
TEST1(t_sequence, v.t == JV_STR || v.t == JV_LIST || v.t == JV_DICT || v.t == JV_UNDEF)
TEST1(t_callable, v.t == JV_FUNC || v.t == JV_MACRO || v.t == JV_METHOD)
TEST1(t_lower, v.t == JV_STR && jj_is_lower(v))
TEST1(t_upper, v.t == JV_STR && jj_is_upper(v))
TEST1(t_escaped, 0)

static lm_status t_filter(jj_render *R, jv v, jj_args *a, int *res) {
    (void)R, (void)a;
    char name[64];
    *res = 0;
    if (v.t == JV_STR && v.u.s.n < sizeof name) {
        memcpy(name, v.u.s.p, v.u.s.n);
        name[v.u.s.n] = 0;
        *res = jj_filter_id(name) >= 0;
    }
    return LM_OK;
}

static lm_status t_test(jj_render *R, jv v, jj_args *a, int *res) {
    (void)R, (void)a;
    char name[64];
    *res = 0;
    if (v.t == JV_STR && v.u.s.n < sizeof name) {
        memcpy(name, v.u.s.p, v.u.s.n);
        name[v.u.s.n] = 0;
        *res = jj_test_id(name) >= 0;
    }
    return LM_OK;
}

static lm_status int_of(jj_render *R, jv v, const char *test, int64_t *out) {
    if (v.t == JV_INT || v.t == JV_BOOL) {
        *out = v.t == JV_INT ? v.u.i : v.u.b;
        return LM_OK;
    }
    if (v.t == JV_FLOAT && v.u.f == floor(v.u.f) && fabs(v.u.f) < 9e18) {
        *out = (int64_t)v.u.f;
        return LM_OK;
    }
    return JJ_ERR(R, "test '%s' needs an integer, got %s", test, jv_type_name(v));
}

static lm_status t_odd(jj_render *R, jv v, jj_args *a, int *res) {
    int64_t i = 0;
    (void)a;
    LM_TRY(int_of(R, v, "odd", &i));
    *res = i % 2 != 0;
    return LM_OK;
}
static lm_status t_even(jj_render *R, jv v, jj_args *a, int *res) {
    int64_t i = 0;
    (void)a;
    LM_TRY(int_of(R, v, "even", &i));
    *res = i % 2 == 0;
    return LM_OK;
}
static lm_status t_divisibleby(jj_render *R, jv v, jj_args *a, int *res) {
    int64_t i = 0, d = 1;
    LM_TRY(int_of(R, v, "divisibleby", &i));
    LM_TRY(int_of(R, jj_arg(a, 0, "num", jv_undef(NULL)), "divisibleby", &d));
    if (d == 0)
        return JJ_ERR(R, "divisibleby: division by zero");
    *res = d == -1 || i % d == 0;
    return LM_OK;
}

static lm_status cmp_test(jj_render *R, jv v, jj_args *a, int *res, int op) {
    jv o = jj_arg(a, 0, NULL, jv_undef(NULL));
    if (op == 0) {
        *res = jv_eq(v, o);
        return LM_OK;
    }
    if (op == 1) {
        *res = !jv_eq(v, o);
        return LM_OK;
    }
    int c;
    LM_TRY(jv_cmp(R, v, o, &c));
    *res = op == 2 ? c < 0 : op == 3 ? c <= 0 : op == 4 ? c > 0 : c >= 0;
    return LM_OK;
}
static lm_status t_eq(jj_render *R, jv v, jj_args *a, int *res) { return cmp_test(R, v, a, res, 0); }
static lm_status t_ne(jj_render *R, jv v, jj_args *a, int *res) { return cmp_test(R, v, a, res, 1); }
static lm_status t_lt(jj_render *R, jv v, jj_args *a, int *res) { return cmp_test(R, v, a, res, 2); }
static lm_status t_le(jj_render *R, jv v, jj_args *a, int *res) { return cmp_test(R, v, a, res, 3); }
static lm_status t_gt(jj_render *R, jv v, jj_args *a, int *res) { return cmp_test(R, v, a, res, 4); }
static lm_status t_ge(jj_render *R, jv v, jj_args *a, int *res) { return cmp_test(R, v, a, res, 5); }

static lm_status t_sameas(jj_render *R, jv v, jj_args *a, int *res) {
    (void)R;
    jv o = jj_arg(a, 0, NULL, jv_undef(NULL));
    if (v.t != o.t)
        *res = 0;
    else if (v.t == JV_STR)
        *res = v.u.s.p == o.u.s.p && v.u.s.n == o.u.s.n;
    else
        *res = jv_eq(v, o);
    return LM_OK;
}

static lm_status t_in(jj_render *R, jv v, jj_args *a, int *res) {
    jv seq = jj_arg(a, 0, "seq", jv_undef(NULL));
    jj_list *items;
    if (seq.t == JV_STR) {
        if (v.t != JV_STR)
            return JJ_ERR(R, "'in <string>' requires string as left operand, not %s", jv_type_name(v));
        *res = v.u.s.n == 0 || memmem(seq.u.s.p, seq.u.s.n, v.u.s.p, v.u.s.n) != NULL;
        return LM_OK;
    }
    LM_TRY(jj_iterable(R, seq, &items));
    *res = 0;
    for (size_t i = 0; i < items->n && !*res; i++)
        *res = jv_eq(v, items->v[i]);
    return LM_OK;
}

static const struct {
    const char *name;
    test_fn fn;
} TESTS[] = {
    {"defined", t_defined},   {"undefined", t_undefined}, {"none", t_none},
    {"boolean", t_boolean},   {"true", t_true},           {"false", t_false},
    {"integer", t_integer},   {"float", t_float},         {"number", t_number},
    {"string", t_string},     {"mapping", t_mapping},     {"iterable", t_iterable},
    {"sequence", t_sequence}, {"callable", t_callable},   {"lower", t_lower},
    {"upper", t_upper},       {"escaped", t_escaped},     {"filter", t_filter},
    {"test", t_test},         {"odd", t_odd},             {"even", t_even},
    {"divisibleby", t_divisibleby},
    {"eq", t_eq},             {"equalto", t_eq},          {"==", t_eq},
    {"ne", t_ne},             {"!=", t_ne},
    {"lt", t_lt},             {"lessthan", t_lt},         {"<", t_lt},
    {"le", t_le},             {"<=", t_le},
    {"gt", t_gt},             {"greaterthan", t_gt},      {">", t_gt},
    {"ge", t_ge},             {">=", t_ge},
    {"sameas", t_sameas},     {"in", t_in},
};
#define N_TESTS ((int)(sizeof TESTS / sizeof TESTS[0]))

int jj_test_id(const char *name) {
    for (int i = 0; i < N_TESTS; i++)
        if (strcmp(TESTS[i].name, name) == 0)
            return i;
    return -1;
}

lm_status jj_call_test(jj_render *R, int tid, jv in, jj_args *a, int *out) {
    if (tid < 0 || tid >= N_TESTS)
        return JJ_ERR(R, "internal error: bad test id");
    return TESTS[tid].fn(R, in, a, out);
}

lm_status jj_apply_test_name(jj_render *R, const char *name, jv in, jv *extra, int nextra, int *out) {
    int id = jj_test_id(name);
    if (id < 0)
        return JJ_ERR(R, "no test named '%s'", name);
    jj_args a = {.pos = extra, .npos = nextra};
    return TESTS[id].fn(R, in, &a, out);
}
