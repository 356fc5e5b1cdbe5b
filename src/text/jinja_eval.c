/* Jinja evaluator: expressions and statements over the AST, scopes, loops, macros, limits. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "text/jinja_rt.h"

static lm_status eval(jj_render *R, const jj_node *n, jv *out);
static lm_status exec_list(jj_render *R, const jj_node *s);

lm_status jj_step(jj_render *R, uint64_t n) {
    R->steps += n;
    if (R->steps > R->max_steps)
        return JJ_ERR(R, "template exceeded its step limit (%llu loop iterations/calls)",
                      (unsigned long long)R->max_steps);
    return LM_OK;
}

/* --- scopes ------------------------------------------------------------------------------- */

static lm_status frame_push(jj_render *R, jj_frame *parent) {
    jj_frame *f = jj_alloc(&R->ar, sizeof *f);
    if (!f)
        return jj_nomem(R);
    f->parent = parent;
    R->frame = f;
    return LM_OK;
}

static lm_status frame_set(jj_render *R, jj_frame *f, const char *name, jv v) {
    jv *slot = jj_dict_find(&f->vars, name, strlen(name));
    if (slot) {
        *slot = v;
        return LM_OK;
    }
    return jj_dict_set(R, &f->vars, jv_cstr(name), v);
}

static jv lookup(jj_render *R, const char *name) {
    size_t n = strlen(name);
    for (jj_frame *f = R->frame; f; f = f->parent) {
        jv *v = jj_dict_find(&f->vars, name, n);
        if (v)
            return *v;
    }
    int fn = jj_func_id(name);
    if (fn >= 0) {
        jv v = {.t = JV_FUNC};
        v.u.fn = fn;
        return v;
    }
    return jv_undef(name);
}

static lm_status undefined_error(jj_render *R, jv v) {
    if (v.u.undef)
        return JJ_ERR(R, "'%s' is undefined", v.u.undef);
    return JJ_ERR(R, "value is undefined");
}

/* --- arithmetic ----------------------------------------------------------------------------- */

static int is_intlike(jv v) { return v.t == JV_INT || v.t == JV_BOOL; }
static int64_t as_int(jv v) { return v.t == JV_INT ? v.u.i : v.u.b; }

static const char *op_str(int op) {
    static const char *const s[] = {[JOP_ADD] = "+", [JOP_SUB] = "-", [JOP_MUL] = "*", [JOP_DIV] = "/",
                                    [JOP_FLOORDIV] = "//", [JOP_MOD] = "%", [JOP_POW] = "**"};
    return op >= JOP_ADD && op <= JOP_POW ? s[op] : "?";
}

static lm_status repeat(jj_render *R, jv seq, int64_t times, jv *out) {
    if (times < 0)
        times = 0;
    if (seq.t == JV_STR) {
        if (seq.u.s.n && (uint64_t)times > R->max_output / seq.u.s.n)
            return JJ_ERR(R, "string repetition too large");
        size_t n = seq.u.s.n * (size_t)times;
        char *p = jj_alloc(&R->ar, n + 1);
        if (!p)
            return jj_nomem(R);
        for (int64_t i = 0; i < times; i++)
            memcpy(p + (size_t)i * seq.u.s.n, seq.u.s.p, seq.u.s.n);
        *out = jv_strn(p, n);
        return LM_OK;
    }
    size_t n = seq.u.l->n;
    if (n && (uint64_t)times > (R->max_steps + 1) / n)
        return JJ_ERR(R, "list repetition too large");
    LM_TRY(jv_new_list(R, n * (size_t)times, out));
    for (int64_t i = 0; i < times; i++)
        for (size_t k = 0; k < n; k++)
            LM_TRY(jj_list_push(R, out->u.l, seq.u.l->v[k]));
    return LM_OK;
}

static lm_status concat_seq(jj_render *R, jv a, jv b, jv *out) {
    if (a.t == JV_STR) {
        char *p = jj_alloc(&R->ar, a.u.s.n + b.u.s.n + 1);
        if (!p)
            return jj_nomem(R);
        if (a.u.s.n) /* (an empty side may have no buffer: memcpy takes none) */
            memcpy(p, a.u.s.p, a.u.s.n);
        if (b.u.s.n)
            memcpy(p + a.u.s.n, b.u.s.p, b.u.s.n);
        *out = jv_strn(p, a.u.s.n + b.u.s.n);
        return LM_OK;
    }
    LM_TRY(jv_new_list(R, a.u.l->n + b.u.l->n, out));
    if (a.u.l->n)
        memcpy(out->u.l->v, a.u.l->v, a.u.l->n * sizeof(jv));
    if (b.u.l->n)
        memcpy(out->u.l->v + a.u.l->n, b.u.l->v, b.u.l->n * sizeof(jv));
    out->u.l->n = a.u.l->n + b.u.l->n;
    out->u.l->tuple = a.u.l->tuple;
    return LM_OK;
}

#include "text/jinja_strings.h"

static lm_status binary(jj_render *R, int op, jv a, jv b, jv *out) {
    if (op == JOP_CONCAT) {
        jj_buf buf = {.limit = R->max_output};
        jv_write_str(&buf, a);
        jv_write_str(&buf, b);
        lm_status st = jv_from_buf(R, &buf, out);
        jj_buf_free(&buf);
        return st;
    }
    if (a.t == JV_UNDEF)
        return undefined_error(R, a);
    if (b.t == JV_UNDEF)
        return undefined_error(R, b);
    if (is_intlike(a) && is_intlike(b)) {
        int64_t x = as_int(a), y = as_int(b), r = 0;
        int ovf = 0;
        switch (op) {
        case JOP_ADD: ovf = __builtin_add_overflow(x, y, &r); break;
        case JOP_SUB: ovf = __builtin_sub_overflow(x, y, &r); break;
        case JOP_MUL: ovf = __builtin_mul_overflow(x, y, &r); break;
        case JOP_DIV:
            if (y == 0)
                return JJ_ERR(R, "division by zero");
            *out = jv_float((double)x / (double)y);
            return LM_OK;
        case JOP_FLOORDIV:
        case JOP_MOD:
            if (y == 0)
                return JJ_ERR(R, "integer division or modulo by zero");
            if (x == INT64_MIN && y == -1) {
                ovf = 1;
                break;
            }
            r = op == JOP_FLOORDIV ? x / y : x % y;
            if (op == JOP_FLOORDIV && (x % y != 0) && ((x < 0) != (y < 0)))
                r--;
            if (op == JOP_MOD && r != 0 && ((r < 0) != (y < 0)))
                r += y;
            break;
        case JOP_POW:
            if (y < 0) {
                *out = jv_float(pow((double)x, (double)y));
                return LM_OK;
            }
            r = 1;
            for (int64_t i = 0; i < y && !ovf; i++) {
                ovf = __builtin_mul_overflow(r, x, &r);
                if (r == 0 || r == 1)
                    break;
                if (r == -1 && x == -1) {
                    r = (y % 2) ? -1 : 1;
                    break;
                }
            }
            break;
        }
        if (ovf)
            return JJ_ERR(R, "integer overflow in '%s'", op_str(op));
        *out = jv_int(r);
        return LM_OK;
    }
    if (jv_is_num(a) && jv_is_num(b)) {
        double x = jv_num(a), y = jv_num(b), r = 0;
        switch (op) {
        case JOP_ADD: r = x + y; break;
        case JOP_SUB: r = x - y; break;
        case JOP_MUL: r = x * y; break;
        case JOP_DIV:
        case JOP_FLOORDIV:
        case JOP_MOD:
            if (y == 0)
                return JJ_ERR(R, "float division by zero");
            if (op == JOP_DIV)
                r = x / y;
            else if (op == JOP_FLOORDIV)
                r = floor(x / y);
            else {
                r = fmod(x, y);
                if (r != 0 && ((r < 0) != (y < 0)))
                    r += y;
            }
            break;
        case JOP_POW: r = pow(x, y); break;
        }
        *out = jv_float(r);
        return LM_OK;
    }
    if (op == JOP_ADD && ((a.t == JV_STR && b.t == JV_STR) || (a.t == JV_LIST && b.t == JV_LIST)))
        return concat_seq(R, a, b, out);
    if (op == JOP_MUL && (a.t == JV_STR || a.t == JV_LIST) && is_intlike(b))
        return repeat(R, a, as_int(b), out);
    if (op == JOP_MUL && (b.t == JV_STR || b.t == JV_LIST) && is_intlike(a))
        return repeat(R, b, as_int(a), out);
    if (op == JOP_MOD && a.t == JV_STR)
        return jj_format_percent(R, a, b, out);
    return JJ_ERR(R, "unsupported operand type(s) for %s: '%s' and '%s'", op_str(op), jv_type_name(a),
                  jv_type_name(b));
}

static lm_status contains(jj_render *R, jv item, jv seq, int *res) {
    *res = 0;
    switch (seq.t) {
    case JV_STR:
        if (item.t != JV_STR)
            return JJ_ERR(R, "'in <string>' requires string as left operand, not %s", jv_type_name(item));
        *res = item.u.s.n == 0 || memmem(seq.u.s.p, seq.u.s.n, item.u.s.p, item.u.s.n) != NULL;
        return LM_OK;
    case JV_LIST:
        for (size_t i = 0; i < seq.u.l->n && !*res; i++)
            *res = jv_eq(item, seq.u.l->v[i]);
        return LM_OK;
    case JV_DICT:
    case JV_NS:
        for (size_t i = 0; i < seq.u.d->n && !*res; i++)
            *res = jv_eq(item, seq.u.d->k[i]);
        return LM_OK;
    case JV_UNDEF: return LM_OK; /* iterating an Undefined yields nothing */
    default: return JJ_ERR(R, "argument of type '%s' is not iterable", jv_type_name(seq));
    }
}

static lm_status compare(jj_render *R, int op, jv a, jv b, jv *out) {
    int r = 0;
    switch (op) {
    case JOP_EQ: r = jv_eq(a, b); break;
    case JOP_NE: r = !jv_eq(a, b); break;
    case JOP_IN: LM_TRY(contains(R, a, b, &r)); break;
    case JOP_NOTIN:
        LM_TRY(contains(R, a, b, &r));
        r = !r;
        break;
    default: {
        int c;
        if (a.t == JV_UNDEF)
            return undefined_error(R, a);
        if (b.t == JV_UNDEF)
            return undefined_error(R, b);
        LM_TRY(jv_cmp(R, a, b, &c));
        r = op == JOP_LT ? c < 0 : op == JOP_LE ? c <= 0 : op == JOP_GT ? c > 0 : c >= 0;
    }
    }
    *out = jv_bool(r);
    return LM_OK;
}

/* --- slicing (Python semantics, code points for strings) --------------------------------- */

static lm_status slice_bound(jj_render *R, const jj_node *n, int64_t *v, int *given) {
    *given = 0;
    if (!n)
        return LM_OK;
    jv x;
    LM_TRY(eval(R, n, &x));
    if (x.t == JV_NONE || x.t == JV_UNDEF)
        return LM_OK;
    if (!is_intlike(x))
        return JJ_ERR(R, "slice indices must be integers or None, not %s", jv_type_name(x));
    *v = as_int(x);
    *given = 1;
    return LM_OK;
}

static lm_status eval_slice(jj_render *R, const jj_node *n, jv *out) {
    jv obj;
    int64_t start = 0, stop = 0, step = 1;
    int gs, ge, gp;
    LM_TRY(eval(R, n->a, &obj));
    LM_TRY(slice_bound(R, n->b, &start, &gs));
    LM_TRY(slice_bound(R, n->c, &stop, &ge));
    LM_TRY(slice_bound(R, n->d, &step, &gp));
    if (step == 0)
        return JJ_ERR(R, "slice step cannot be zero");
    if (obj.t == JV_UNDEF)
        return undefined_error(R, obj);
    if (obj.t != JV_STR && obj.t != JV_LIST)
        return JJ_ERR(R, "'%s' object is not subscriptable", jv_type_name(obj));
    int64_t len = obj.t == JV_STR ? (int64_t)jj_utf8_len(obj.u.s.p, obj.u.s.n) : (int64_t)obj.u.l->n;
    /* PySlice_AdjustIndices */
    if (!gs)
        start = step < 0 ? len - 1 : 0;
    else if (start < 0 && (start += len) < 0)
        start = step < 0 ? -1 : 0;
    else if (start >= len)
        start = step < 0 ? len - 1 : len;
    if (!ge)
        stop = step < 0 ? -1 : len;
    else if (stop < 0 && (stop += len) < 0)
        stop = step < 0 ? -1 : 0;
    else if (stop >= len)
        stop = step < 0 ? len - 1 : len;
    int64_t count = 0;
    if (step > 0 && start < stop)
        count = (stop - start - 1) / step + 1;
    else if (step < 0 && stop < start)
        count = (start - stop - 1) / (-step) + 1;
    if (obj.t == JV_LIST) {
        LM_TRY(jv_new_list(R, (size_t)count, out));
        for (int64_t i = 0; i < count; i++)
            out->u.l->v[i] = obj.u.l->v[start + i * step];
        out->u.l->n = (size_t)count;
        out->u.l->tuple = obj.u.l->tuple;
        return LM_OK;
    }
    const char *s = obj.u.s.p;
    size_t sn = obj.u.s.n;
    if (step == 1) {
        size_t a = jj_utf8_off(s, sn, (size_t)start), b = jj_utf8_off(s, sn, (size_t)(start + count));
        *out = jv_strn(s + a, b - a);
        return LM_OK;
    }
    /* general step: index the code points once */
    size_t *offs = jj_alloc(&R->ar, ((size_t)len + 1) * sizeof *offs);
    char *p = jj_alloc(&R->ar, sn + 1);
    if (!offs || !p)
        return jj_nomem(R);
    size_t k = 0;
    for (size_t i = jj_utf8_off(s, sn, 0); i < sn && k < (size_t)len; i = jj_utf8_next(s, sn, i))
        offs[k++] = i;
    offs[k] = sn;
    size_t o = 0;
    for (int64_t i = 0; i < count; i++) {
        size_t c = (size_t)(start + i * step);
        size_t e = c + 1 <= k ? offs[c + 1] : sn;
        memcpy(p + o, s + offs[c], e - offs[c]);
        o += e - offs[c];
    }
    *out = jv_strn(p, o);
    return LM_OK;
}

/* --- calls ----------------------------------------------------------------------------------- */

static lm_status eval_args(jj_render *R, const jj_node *n, jj_args *a) {
    memset(a, 0, sizeof *a);
    if (n->nargs) {
        a->pos = jj_alloc(&R->ar, (size_t)n->nargs * sizeof(jv));
        if (!a->pos)
            return jj_nomem(R);
        for (int i = 0; i < n->nargs; i++)
            LM_TRY(eval(R, n->args[i], &a->pos[i]));
        a->npos = n->nargs;
    }
    if (n->nkw) {
        a->kwv = jj_alloc(&R->ar, (size_t)n->nkw * sizeof(jv));
        if (!a->kwv)
            return jj_nomem(R);
        for (int i = 0; i < n->nkw; i++)
            LM_TRY(eval(R, n->kwv[i], &a->kwv[i]));
        a->kwn = n->kwn;
        a->nkw = n->nkw;
    }
    return LM_OK;
}

static lm_status capture(jj_render *R, const jj_node *body, jv *out) {
    jj_buf buf = {.limit = R->max_output}, *saved = R->out;
    R->out = &buf;
    lm_status st = exec_list(R, body);
    R->out = saved;
    if (st == LM_OK)
        st = jv_from_buf(R, &buf, out);
    jj_buf_free(&buf);
    return st;
}

lm_status jj_call_macro(jj_render *R, const jj_node *m, jj_args *a, jv *out) {
    if (R->depth >= R->max_depth)
        return JJ_ERR(R, "macro calls nested too deeply (limit %d)", R->max_depth);
    LM_TRY(jj_step(R, 1));
    if (a->npos > m->nargs)
        return JJ_ERR(R, "macro '%s' takes not more than %d argument(s)", m->name, m->nargs);
    jj_frame *saved = R->frame;
    LM_TRY(frame_push(R, R->root));
    lm_status st = LM_OK;
    for (int k = 0; k < a->nkw && st == LM_OK; k++) {
        int found = 0;
        for (int i = 0; i < m->nargs; i++)
            found |= strcmp(m->args[i]->name, a->kwn[k]) == 0;
        if (!found)
            st = JJ_ERR(R, "macro '%s' has no parameter '%s'", m->name, a->kwn[k]);
    }
    for (int i = 0; i < m->nargs && st == LM_OK; i++) {
        jv v = jv_undef(m->args[i]->name);
        if (i < a->npos) {
            v = a->pos[i];
        } else {
            int k = 0;
            while (k < a->nkw && strcmp(m->args[i]->name, a->kwn[k]) != 0)
                k++;
            if (k < a->nkw)
                v = a->kwv[k];
            else if (m->kwv[i])
                st = eval(R, m->kwv[i], &v);
        }
        if (st == LM_OK)
            st = frame_set(R, R->frame, m->args[i]->name, v);
    }
    R->depth++;
    if (st == LM_OK)
        st = capture(R, m->body, out);
    R->depth--;
    R->frame = saved;
    return st;
}

static lm_status call_value(jj_render *R, jv callee, jj_args *a, jv *out) {
    switch (callee.t) {
    case JV_FUNC: return jj_call_func(R, callee.u.fn, a, out);
    case JV_MACRO: return jj_call_macro(R, callee.u.macro, a, out);
    case JV_METHOD: return jj_call_method(R, callee.u.m->self, callee.u.m->name, a, out);
    case JV_UNDEF: return undefined_error(R, callee);
    default: return JJ_ERR(R, "'%s' object is not callable", jv_type_name(callee));
    }
}

static lm_status eval_call(jj_render *R, const jj_node *n, jv *out) {
    jj_args a;
    if (n->a->kind == JN_ATTR) { /* obj.method(...): skip building a bound method */
        jv obj;
        LM_TRY(eval(R, n->a->a, &obj));
        if (obj.t == JV_UNDEF)
            return undefined_error(R, obj);
        if (jj_has_method(obj, n->a->name)) {
            LM_TRY(eval_args(R, n, &a));
            R->pos = n->pos;
            return jj_call_method(R, obj, n->a->name, &a, out);
        }
        jv callee;
        R->pos = n->a->pos;
        LM_TRY(jj_getattr(R, obj, n->a->name, &callee));
        LM_TRY(eval_args(R, n, &a));
        R->pos = n->pos;
        return call_value(R, callee, &a, out);
    }
    jv callee;
    LM_TRY(eval(R, n->a, &callee));
    LM_TRY(eval_args(R, n, &a));
    R->pos = n->pos;
    return call_value(R, callee, &a, out);
}

/* filter node; `in` replaces the innermost input for filter blocks (n->a == NULL) */
static lm_status eval_filter(jj_render *R, const jj_node *n, const jv *in, jv *out) {
    jv x;
    if (n->a && n->a->kind == JN_FILTER && in)
        LM_TRY(eval_filter(R, n->a, in, &x));
    else if (n->a)
        LM_TRY(eval(R, n->a, &x));
    else
        x = in ? *in : jv_undef(NULL);
    jj_args a;
    LM_TRY(eval_args(R, n, &a));
    R->pos = n->pos;
    return jj_call_filter(R, n->fid, x, &a, out);
}

/* --- expressions ------------------------------------------------------------------------------ */

static lm_status eval(jj_render *R, const jj_node *n, jv *out) {
    jv a, b;
    R->pos = n->pos;
    switch (n->kind) {
    case JN_LIT: *out = n->lit; return LM_OK;
    case JN_NAME: *out = lookup(R, n->name); return LM_OK;
    case JN_LIST:
    case JN_TUPLE:
        LM_TRY(jv_new_list(R, (size_t)n->nargs, out));
        for (int i = 0; i < n->nargs; i++)
            LM_TRY(eval(R, n->args[i], &out->u.l->v[i]));
        out->u.l->n = (size_t)n->nargs;
        out->u.l->tuple = n->kind == JN_TUPLE;
        return LM_OK;
    case JN_DICT:
        LM_TRY(jv_new_dict(R, out));
        for (int i = 0; i + 1 < n->nargs; i += 2) {
            LM_TRY(eval(R, n->args[i], &a));
            LM_TRY(eval(R, n->args[i + 1], &b));
            LM_TRY(jj_dict_set(R, out->u.d, a, b));
        }
        return LM_OK;
    case JN_ATTR:
        LM_TRY(eval(R, n->a, &a));
        R->pos = n->pos;
        if (a.t == JV_UNDEF)
            return undefined_error(R, a);
        return jj_getattr(R, a, n->name, out);
    case JN_ITEM:
        LM_TRY(eval(R, n->a, &a));
        LM_TRY(eval(R, n->b, &b));
        R->pos = n->pos;
        if (a.t == JV_UNDEF)
            return undefined_error(R, a);
        return jj_getitem(R, a, b, out);
    case JN_SLICE: return eval_slice(R, n, out);
    case JN_CALL: return eval_call(R, n, out);
    case JN_FILTER: return eval_filter(R, n, NULL, out);
    case JN_TEST: {
        jj_args args;
        int r;
        LM_TRY(eval(R, n->a, &a));
        LM_TRY(eval_args(R, n, &args));
        R->pos = n->pos;
        LM_TRY(jj_call_test(R, n->fid, a, &args, &r));
        *out = jv_bool(n->op ? !r : r);
        return LM_OK;
    }
    case JN_UNARY:
        LM_TRY(eval(R, n->a, &a));
        R->pos = n->pos;
        if (!jv_is_num(a))
            return JJ_ERR(R, "bad operand type for unary %s: '%s'", n->op == JOP_NEG ? "-" : "+",
                          jv_type_name(a));
        if (n->op == JOP_POS)
            *out = a.t == JV_BOOL ? jv_int(a.u.b) : a;
        else if (a.t == JV_FLOAT)
            *out = jv_float(-a.u.f);
        else if (as_int(a) == INT64_MIN)
            return JJ_ERR(R, "integer overflow in unary -");
        else
            *out = jv_int(-as_int(a));
        return LM_OK;
    case JN_BINARY:
        LM_TRY(eval(R, n->a, &a));
        LM_TRY(eval(R, n->b, &b));
        R->pos = n->pos;
        return binary(R, n->op, a, b, out);
    case JN_AND:
    case JN_OR:
        LM_TRY(eval(R, n->a, &a));
        if (jv_truthy(a) == (n->kind == JN_OR)) {
            *out = a;
            return LM_OK;
        }
        return eval(R, n->b, out);
    case JN_NOT:
        LM_TRY(eval(R, n->a, &a));
        *out = jv_bool(!jv_truthy(a));
        return LM_OK;
    case JN_COMPARE:
        LM_TRY(eval(R, n->a, &a));
        LM_TRY(eval(R, n->b, &b));
        R->pos = n->pos;
        return compare(R, n->op, a, b, out);
    case JN_COND:
        LM_TRY(eval(R, n->a, &a));
        if (jv_truthy(a))
            return eval(R, n->b, out);
        if (n->c)
            return eval(R, n->c, out);
        *out = jv_undef(NULL);
        return LM_OK;
    default: return JJ_ERR(R, "internal error: not an expression");
    }
}

/* --- statements ------------------------------------------------------------------------------- */

static lm_status assign(jj_render *R, const jj_node *target, jv v) {
    R->pos = target->pos;
    if (target->kind == JN_NAME)
        return frame_set(R, R->frame, target->name, v);
    if (target->kind == JN_ATTR) {
        jv ns = lookup(R, target->a->name);
        if (ns.t != JV_NS)
            return JJ_ERR(R, "cannot assign attribute on non-namespace object '%s'", target->a->name);
        char *k = jj_strndup(&R->ar, target->name, strlen(target->name));
        if (!k)
            return jj_nomem(R);
        return jj_dict_set(R, ns.u.d, jv_cstr(k), v);
    }
    /* tuple unpacking */
    jj_list *items;
    LM_TRY(jj_iterable(R, v, &items));
    R->pos = target->pos;
    if (items->n != (size_t)target->nargs)
        return JJ_ERR(R, "cannot unpack %zu value(s) into %d target(s)", items->n, target->nargs);
    for (int i = 0; i < target->nargs; i++)
        LM_TRY(assign(R, target->args[i], items->v[i]));
    return LM_OK;
}

static lm_status exec_for(jj_render *R, const jj_node *n) {
    jv seq;
    jj_list *items;
    LM_TRY(eval(R, n->b, &seq));
    R->pos = n->b->pos;
    LM_TRY(jj_iterable(R, seq, &items));
    jj_frame *saved = R->frame;
    LM_TRY(frame_push(R, saved));
    lm_status st = LM_OK;
    if (n->c) { /* {% for x in xs if cond %}: filter first, so loop.length counts the kept items */
        jv kept;
        if ((st = jv_new_list(R, 0, &kept)) != LM_OK)
            goto done;
        for (size_t i = 0; i < items->n && st == LM_OK; i++) {
            jv c;
            if ((st = jj_step(R, 1)) != LM_OK || (st = assign(R, n->a, items->v[i])) != LM_OK ||
                (st = eval(R, n->c, &c)) != LM_OK)
                break;
            if (jv_truthy(c))
                st = jj_list_push(R, kept.u.l, items->v[i]);
        }
        items = kept.u.l;
    }
    jj_loop *loop = jj_alloc(&R->ar, sizeof *loop);
    if (!loop && st == LM_OK)
        st = jj_nomem(R);
    if (st != LM_OK)
        goto done;
    loop->items = items;
    jv lv = {.t = JV_LOOP};
    lv.u.loop = loop;
    for (size_t i = 0; i < items->n; i++) {
        loop->i = i;
        R->pos = n->pos;
        R->frame->vars.n = 0; /* each iteration starts with fresh locals (as jinja2) */
        if ((st = jj_step(R, 1)) != LM_OK || (st = assign(R, n->a, items->v[i])) != LM_OK ||
            (st = frame_set(R, R->frame, "loop", lv)) != LM_OK || (st = exec_list(R, n->body)) != LM_OK)
            break;
        if (R->ctl == JJ_CTL_BREAK) {
            R->ctl = JJ_CTL_NONE;
            break;
        }
        R->ctl = JJ_CTL_NONE;
    }
    if (st == LM_OK && items->n == 0 && n->d) {
        R->frame = saved;
        st = exec_list(R, n->d);
    }
done:
    R->frame = saved;
    return st;
}

static lm_status write_value(jj_render *R, jv v) {
    jv_write_str(R->out, v);
    if (R->out->oom)
        return JJ_ERR(R, "output too large (limit %zu bytes)", R->max_output);
    return LM_OK;
}

static lm_status exec_stmt(jj_render *R, const jj_node *n) {
    jv v;
    R->pos = n->pos;
    switch (n->kind) {
    case JN_TEXT: return write_value(R, n->lit);
    case JN_OUTPUT:
        LM_TRY(eval(R, n->a, &v));
        return write_value(R, v);
    case JN_IF:
        for (;;) {
            LM_TRY(eval(R, n->a, &v));
            if (jv_truthy(v))
                return exec_list(R, n->body);
            if (!n->op)
                return exec_list(R, n->c);
            n = n->c;
        }
    case JN_FOR: return exec_for(R, n);
    case JN_SET:
        LM_TRY(eval(R, n->b, &v));
        return assign(R, n->a, v);
    case JN_SETBLOCK:
        LM_TRY(capture(R, n->body, &v));
        if (n->b)
            LM_TRY(eval_filter(R, n->b, &v, &v));
        return assign(R, n->a, v);
    case JN_FILTERBLOCK:
        LM_TRY(capture(R, n->body, &v));
        LM_TRY(eval_filter(R, n->b, &v, &v));
        return write_value(R, v);
    case JN_MACRO:
        v.t = JV_MACRO;
        v.u.macro = n;
        return frame_set(R, R->frame, n->name, v);
    case JN_BREAK: R->ctl = JJ_CTL_BREAK; return LM_OK;
    case JN_CONTINUE: R->ctl = JJ_CTL_CONTINUE; return LM_OK;
    case JN_BLOCK: return exec_list(R, n->body);
    default: return JJ_ERR(R, "internal error: not a statement");
    }
}

static lm_status exec_list(jj_render *R, const jj_node *s) {
    for (; s; s = s->next) {
        LM_TRY(exec_stmt(R, s));
        if (R->ctl)
            return LM_OK;
    }
    return LM_OK;
}

lm_status jj_render_template(const jj_template *t, const cJSON *ctx, const jj_limits *lim, int64_t now, char **out,
                    size_t *out_n) {
    jj_render R = {.t = t, .now = now};
    jj_buf buf = {0};
    *out = NULL;
    R.ar.limit = lim && lim->max_memory ? lim->max_memory : (size_t)256 << 20;
    R.max_output = lim && lim->max_output ? lim->max_output : (size_t)64 << 20;
    R.max_steps = lim && lim->max_steps ? lim->max_steps : 10000000;
    R.max_depth = lim && lim->max_depth ? lim->max_depth : 64;
    buf.limit = R.max_output;
    R.out = &buf;
    lm_status st = frame_push(&R, NULL);
    R.root = R.frame;
    for (const cJSON *c = ctx ? ctx->child : NULL; c && st == LM_OK; c = c->next) {
        jv v;
        char *k = c->string ? jj_strndup(&R.ar, c->string, strlen(c->string)) : NULL;
        if (!k)
            continue;
        if ((st = jv_from_json(&R, c, &v)) == LM_OK)
            st = frame_set(&R, R.root, k, v);
    }
    if (st == LM_OK)
        st = exec_list(&R, t->root);
    jj_arena_free(&R.ar);
    if (st != LM_OK) {
        jj_buf_free(&buf);
        return st;
    }
    if (!buf.p) {
        buf.p = malloc(1);
        if (!buf.p)
            return lm_err(LM_ERR_NOMEM, "template: out of memory");
        buf.p[0] = 0;
    }
    *out = buf.p;
    if (out_n)
        *out_n = buf.n;
    return LM_OK;
}
