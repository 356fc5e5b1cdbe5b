/* Jinja parser: tokens -> AST (jinja.h). Grammar and precedence follow jinja2/parser.py:
 * condexpr < or < and < not < compare (== != < <= > >= in, not in) < + - < ~ < * / // % < **
 * < unary - + < primary with postfix (.attr [item] [a:b:c] (call)) and filters/tests. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/jinja.h"

#define MAX_NESTING 128 /* expression and block nesting (keeps recursion bounded) */

typedef struct parser {
    jj_template *t;
    jj_tok *tk;
    size_t n, i;
    int depth;      /* recursion depth */
    int loop_depth; /* for loops around the current statement (break/continue) */
} parser;

typedef lm_status (*parse_fn)(parser *P, jj_node **out);

static jj_tok *cur(parser *P) { return &P->tk[P->i < P->n ? P->i : P->n - 1]; }
static jj_tok *peek(parser *P, size_t k) { return &P->tk[P->i + k < P->n ? P->i + k : P->n - 1]; }

static int tok_is(const jj_tok *k, jj_tok_type type, const char *s) {
    if (k->type != type)
        return 0;
    size_t l = strlen(s);
    return k->n == l && memcmp(k->s, s, l) == 0;
}
static int is_op(parser *P, const char *s) { return tok_is(cur(P), JT_OP, s); }
static int is_name(parser *P, const char *s) { return tok_is(cur(P), JT_NAME, s); }

static const char *tok_desc(const jj_tok *k, char *buf, size_t cap) {
    switch (k->type) {
    case JT_EOF: return "end of template";
    case JT_TEXT: return "template text";
    case JT_VAR_BEGIN: return "'{{'";
    case JT_VAR_END: return "'}}'";
    case JT_BLOCK_BEGIN: return "'{%'";
    case JT_BLOCK_END: return "'%}'";
    case JT_STRING: return "string literal";
    case JT_INT: return "integer";
    case JT_FLOAT: return "number";
    default: break;
    }
    snprintf(buf, cap, "'%.*s'", (int)(k->n > 40 ? 40 : k->n), k->s);
    return buf;
}

static lm_status unexpected(parser *P, const char *want) {
    char b[64];
    jj_tok *k = cur(P);
    if (want)
        return jj_error(P->t, k->pos, "expected %s, got %s", want, tok_desc(k, b, sizeof b));
    return jj_error(P->t, k->pos, "unexpected %s", tok_desc(k, b, sizeof b));
}

static lm_status expect_op(parser *P, const char *s) {
    if (!is_op(P, s)) {
        char w[16];
        snprintf(w, sizeof w, "'%s'", s);
        return unexpected(P, w);
    }
    P->i++;
    return LM_OK;
}

static lm_status expect_type(parser *P, jj_tok_type type, const char *want) {
    if (cur(P)->type != type)
        return unexpected(P, want);
    P->i++;
    return LM_OK;
}

static jj_node *mk(parser *P, jj_node_kind kind, uint32_t pos) {
    jj_node *nd = jj_alloc(&P->t->ar, sizeof *nd);
    if (nd) {
        nd->kind = kind;
        nd->pos = pos;
    }
    return nd;
}
#define NOMEM() lm_err(LM_ERR_NOMEM, "template: out of memory")

static const char *tok_name(parser *P, const jj_tok *k) { return jj_strndup(&P->t->ar, k->s, k->n); }

static int is_keyword(const jj_tok *k) {
    static const char *const kw[] = {"and", "or", "not", "in", "is", "if", "else"};
    for (size_t i = 0; i < sizeof kw / sizeof kw[0]; i++)
        if (tok_is(k, JT_NAME, kw[i]))
            return 1;
    return 0;
}

/* --- growable node arrays (built on the heap, copied into the arena) ---------------------- */

typedef struct nvec {
    jj_node **v;
    const char **names;
    int n, cap;
} nvec;

static int nvec_push(nvec *a, jj_node *nd, const char *name) {
    if (a->n == a->cap) {
        int cap = a->cap ? a->cap * 2 : 8;
        jj_node **nv = realloc(a->v, (size_t)cap * sizeof *nv);
        if (!nv)
            return 0;
        a->v = nv;
        const char **nn = realloc(a->names, (size_t)cap * sizeof *nn);
        if (!nn)
            return 0;
        a->names = nn;
        a->cap = cap;
    }
    a->v[a->n] = nd;
    a->names[a->n++] = name;
    return 1;
}

static void nvec_free(nvec *a) {
    free(a->v);
    free(a->names);
}

static jj_node **nvec_nodes(parser *P, const nvec *a) {
    if (!a->n)
        return NULL;
    jj_node **v = jj_alloc(&P->t->ar, (size_t)a->n * sizeof *v);
    if (v)
        memcpy(v, a->v, (size_t)a->n * sizeof *v);
    return v;
}

static const char **nvec_names(parser *P, const nvec *a) {
    if (!a->n)
        return NULL;
    const char **v = jj_alloc(&P->t->ar, (size_t)a->n * sizeof *v);
    if (v)
        memcpy(v, a->names, (size_t)a->n * sizeof *v);
    return v;
}

/* --- expressions -------------------------------------------------------------------------- */

static lm_status parse_expr(parser *P, int condexpr, jj_node **out);
static lm_status parse_unary(parser *P, int with_filter, jj_node **out);
static lm_status parse_primary(parser *P, jj_node **out);

/* (args) of a call, filter or test: positional and keyword arguments into nd. */
static lm_status parse_call_args(parser *P, jj_node *nd) {
    nvec pos = {0}, kw = {0};
    lm_status st = expect_op(P, "(");
    while (st == LM_OK && !is_op(P, ")")) {
        if (pos.n + kw.n && (st = expect_op(P, ",")) != LM_OK)
            break;
        if (is_op(P, ")"))
            break;
        if (is_op(P, "*") || is_op(P, "**")) {
            st = jj_error(P->t, cur(P)->pos, "*args and **kwargs in calls are not supported");
            break;
        }
        jj_node *v = NULL;
        if (cur(P)->type == JT_NAME && tok_is(peek(P, 1), JT_OP, "=")) {
            const char *nm = tok_name(P, cur(P));
            P->i += 2;
            if ((st = parse_expr(P, 1, &v)) != LM_OK)
                break;
            if (!nm || !nvec_push(&kw, v, nm))
                st = NOMEM();
        } else {
            if (kw.n) {
                st = jj_error(P->t, cur(P)->pos, "positional argument after keyword argument");
                break;
            }
            if ((st = parse_expr(P, 1, &v)) != LM_OK)
                break;
            if (!nvec_push(&pos, v, NULL))
                st = NOMEM();
        }
    }
    if (st == LM_OK)
        st = expect_op(P, ")");
    if (st == LM_OK) {
        nd->args = nvec_nodes(P, &pos);
        nd->nargs = pos.n;
        nd->kwv = nvec_nodes(P, &kw);
        nd->kwn = nvec_names(P, &kw);
        nd->nkw = kw.n;
        if ((pos.n && !nd->args) || (kw.n && (!nd->kwv || !nd->kwn)))
            st = NOMEM();
    }
    nvec_free(&pos);
    nvec_free(&kw);
    return st;
}

/* a filter name (possibly dotted) and optional args; input is `in` (NULL in filter blocks) */
static lm_status parse_filter(parser *P, jj_node *in, jj_node **out) {
    if (cur(P)->type != JT_NAME)
        return unexpected(P, "a filter name");
    jj_tok *nt = cur(P);
    jj_node *nd = mk(P, JN_FILTER, nt->pos);
    if (!nd || !(nd->name = tok_name(P, nt)))
        return NOMEM();
    P->i++;
    nd->fid = jj_filter_id(nd->name);
    if (nd->fid < 0)
        return jj_error(P->t, nt->pos, "no filter named '%s'", nd->name);
    nd->a = in;
    if (is_op(P, "("))
        LM_TRY(parse_call_args(P, nd));
    *out = nd;
    return LM_OK;
}

static lm_status parse_test(parser *P, jj_node *in, jj_node **out) {
    uint32_t pos = cur(P)->pos;
    P->i++; /* is */
    int neg = 0;
    if (is_name(P, "not")) {
        neg = 1;
        P->i++;
    }
    if (cur(P)->type != JT_NAME)
        return unexpected(P, "a test name");
    jj_tok *nt = cur(P);
    jj_node *nd = mk(P, JN_TEST, pos);
    if (!nd || !(nd->name = tok_name(P, nt)))
        return NOMEM();
    P->i++;
    nd->fid = jj_test_id(nd->name);
    if (nd->fid < 0)
        return jj_error(P->t, nt->pos, "no test named '%s'", nd->name);
    nd->a = in;
    nd->op = neg;
    jj_tok *k = cur(P);
    if (tok_is(k, JT_OP, "(")) {
        LM_TRY(parse_call_args(P, nd));
    } else if ((k->type == JT_NAME && !is_keyword(k)) || k->type == JT_STRING || k->type == JT_INT ||
               k->type == JT_FLOAT || tok_is(k, JT_OP, "[") || tok_is(k, JT_OP, "{")) {
        /* one argument without parentheses: `x is divisibleby 3`, `x is sameas false` */
        jj_node *arg;
        LM_TRY(parse_primary(P, &arg));
        nd->args = jj_alloc(&P->t->ar, sizeof *nd->args);
        if (!nd->args)
            return NOMEM();
        nd->args[0] = arg;
        nd->nargs = 1;
    }
    *out = nd;
    return LM_OK;
}

static lm_status parse_subscript(parser *P, jj_node *obj, jj_node **out) {
    uint32_t pos = cur(P)->pos;
    P->i++; /* [ */
    jj_node *parts[3] = {0};
    int nparts = 1;
    if (!is_op(P, ":"))
        LM_TRY(parse_expr(P, 1, &parts[0]));
    while (is_op(P, ":") && nparts < 3) {
        P->i++;
        if (!is_op(P, "]") && !is_op(P, ":"))
            LM_TRY(parse_expr(P, 1, &parts[nparts]));
        nparts++;
    }
    LM_TRY(expect_op(P, "]"));
    jj_node *nd = mk(P, nparts == 1 ? JN_ITEM : JN_SLICE, pos);
    if (!nd)
        return NOMEM();
    nd->a = obj;
    nd->b = parts[0];
    nd->c = parts[1];
    nd->d = parts[2];
    *out = nd;
    return LM_OK;
}

static lm_status parse_postfix(parser *P, jj_node *nd, jj_node **out) {
    for (;;) {
        if (is_op(P, ".")) {
            uint32_t pos = cur(P)->pos;
            P->i++;
            jj_tok *k = cur(P);
            jj_node *x;
            if (k->type == JT_NAME) {
                if (!(x = mk(P, JN_ATTR, pos)) || !(x->name = tok_name(P, k)))
                    return NOMEM();
            } else if (k->type == JT_INT) {
                jj_node *lit = mk(P, JN_LIT, k->pos);
                if (!(x = mk(P, JN_ITEM, pos)) || !lit)
                    return NOMEM();
                lit->lit.t = JV_INT;
                lit->lit.u.i = k->ival;
                x->b = lit;
            } else {
                return unexpected(P, "an attribute name");
            }
            P->i++;
            x->a = nd;
            nd = x;
        } else if (is_op(P, "[")) {
            LM_TRY(parse_subscript(P, nd, &nd));
        } else if (is_op(P, "(")) {
            jj_node *x = mk(P, JN_CALL, nd->pos);
            if (!x)
                return NOMEM();
            x->a = nd;
            LM_TRY(parse_call_args(P, x));
            nd = x;
        } else {
            break;
        }
    }
    *out = nd;
    return LM_OK;
}

static lm_status parse_seq(parser *P, jj_node_kind kind, const char *close, jj_node **out) {
    jj_node *nd = mk(P, kind, cur(P)->pos);
    if (!nd)
        return NOMEM();
    P->i++;
    nvec items = {0};
    lm_status st = LM_OK;
    while (st == LM_OK && !is_op(P, close)) {
        if (items.n && (st = expect_op(P, ",")) != LM_OK)
            break;
        if (is_op(P, close))
            break;
        jj_node *v = NULL;
        if ((st = parse_expr(P, 1, &v)) != LM_OK)
            break;
        if (!nvec_push(&items, v, NULL)) {
            st = NOMEM();
            break;
        }
        if (kind == JN_DICT) {
            if ((st = expect_op(P, ":")) != LM_OK || (st = parse_expr(P, 1, &v)) != LM_OK)
                break;
            if (!nvec_push(&items, v, NULL))
                st = NOMEM();
        }
    }
    if (st == LM_OK)
        st = expect_op(P, close);
    if (st == LM_OK) {
        nd->args = nvec_nodes(P, &items);
        nd->nargs = items.n;
        if (items.n && !nd->args)
            st = NOMEM();
    }
    nvec_free(&items);
    *out = nd;
    return st;
}

static lm_status parse_primary(parser *P, jj_node **out) {
    jj_tok *k = cur(P);
    jj_node *nd = NULL;
    if (++P->depth > MAX_NESTING)
        return jj_error(P->t, k->pos, "expression nested too deeply");
    lm_status st = LM_OK;
    switch (k->type) {
    case JT_NAME:
        if (is_keyword(k))
            return unexpected(P, NULL);
        if (!(nd = mk(P, JN_LIT, k->pos)))
            return NOMEM();
        if (tok_is(k, JT_NAME, "true") || tok_is(k, JT_NAME, "True") || tok_is(k, JT_NAME, "false") ||
            tok_is(k, JT_NAME, "False")) {
            nd->lit.t = JV_BOOL;
            nd->lit.u.b = k->s[0] == 't' || k->s[0] == 'T';
        } else if (tok_is(k, JT_NAME, "none") || tok_is(k, JT_NAME, "None")) {
            nd->lit.t = JV_NONE;
        } else {
            nd->kind = JN_NAME;
            if (!(nd->name = tok_name(P, k)))
                return NOMEM();
        }
        P->i++;
        break;
    case JT_STRING: {
        /* adjacent literals concatenate: "a" "b" */
        size_t total = 0, j = P->i;
        for (; j < P->n && P->tk[j].type == JT_STRING; j++)
            total += P->tk[j].n;
        char *s = jj_alloc(&P->t->ar, total + 1);
        if (!(nd = mk(P, JN_LIT, k->pos)) || !s)
            return NOMEM();
        size_t o = 0;
        for (; P->i < j; P->i++) {
            memcpy(s + o, P->tk[P->i].s, P->tk[P->i].n);
            o += P->tk[P->i].n;
        }
        nd->lit.t = JV_STR;
        nd->lit.u.s.p = s;
        nd->lit.u.s.n = total;
        break;
    }
    case JT_INT:
    case JT_FLOAT:
        if (!(nd = mk(P, JN_LIT, k->pos)))
            return NOMEM();
        if (k->type == JT_INT) {
            nd->lit.t = JV_INT;
            nd->lit.u.i = k->ival;
        } else {
            nd->lit.t = JV_FLOAT;
            nd->lit.u.f = k->fval;
        }
        P->i++;
        break;
    case JT_OP:
        if (tok_is(k, JT_OP, "(")) {
            P->i++;
            if (is_op(P, ")")) { /* () empty tuple */
                if (!(nd = mk(P, JN_TUPLE, k->pos)))
                    return NOMEM();
            } else {
                LM_TRY(parse_expr(P, 1, &nd));
                if (is_op(P, ",")) { /* (a, b, ...) */
                    nvec items = {0};
                    if (!nvec_push(&items, nd, NULL))
                        return NOMEM();
                    while (st == LM_OK && is_op(P, ",")) {
                        P->i++;
                        if (is_op(P, ")"))
                            break;
                        jj_node *v = NULL;
                        if ((st = parse_expr(P, 1, &v)) == LM_OK && !nvec_push(&items, v, NULL))
                            st = NOMEM();
                    }
                    jj_node *tu = mk(P, JN_TUPLE, k->pos);
                    if (st == LM_OK && (!tu || !(tu->args = nvec_nodes(P, &items))))
                        st = NOMEM();
                    if (tu)
                        tu->nargs = items.n;
                    nvec_free(&items);
                    LM_TRY(st);
                    nd = tu;
                }
            }
            LM_TRY(expect_op(P, ")"));
        } else if (tok_is(k, JT_OP, "[")) {
            LM_TRY(parse_seq(P, JN_LIST, "]", &nd));
        } else if (tok_is(k, JT_OP, "{")) {
            LM_TRY(parse_seq(P, JN_DICT, "}", &nd));
        } else {
            return unexpected(P, NULL);
        }
        break;
    default:
        return unexpected(P, "an expression");
    }
    P->depth--;
    *out = nd;
    return st;
}

static lm_status parse_filters_tests(parser *P, jj_node *nd, jj_node **out) {
    for (;;) {
        if (is_op(P, "|")) {
            P->i++;
            LM_TRY(parse_filter(P, nd, &nd));
        } else if (is_name(P, "is")) {
            LM_TRY(parse_test(P, nd, &nd));
        } else {
            break;
        }
    }
    *out = nd;
    return LM_OK;
}

static lm_status parse_unary(parser *P, int with_filter, jj_node **out) {
    jj_node *nd;
    if (++P->depth > MAX_NESTING)
        return jj_error(P->t, cur(P)->pos, "expression nested too deeply");
    if (is_op(P, "-") || is_op(P, "+")) {
        if (!(nd = mk(P, JN_UNARY, cur(P)->pos)))
            return NOMEM();
        nd->op = is_op(P, "-") ? JOP_NEG : JOP_POS;
        P->i++;
        LM_TRY(parse_unary(P, 0, &nd->a));
    } else {
        LM_TRY(parse_primary(P, &nd));
    }
    LM_TRY(parse_postfix(P, nd, &nd));
    if (with_filter)
        LM_TRY(parse_filters_tests(P, nd, &nd));
    P->depth--;
    *out = nd;
    return LM_OK;
}

static lm_status unary_f(parser *P, jj_node **out) { return parse_unary(P, 1, out); }

typedef struct binop {
    const char *tok;
    int op;
} binop;

/* left-associative binary level: operand (op operand)* */
static lm_status parse_binary(parser *P, parse_fn operand, const binop *ops, int nops, jj_node **out) {
    jj_node *left;
    LM_TRY(operand(P, &left));
    for (;;) {
        int op = 0;
        for (int i = 0; i < nops; i++)
            if (is_op(P, ops[i].tok))
                op = ops[i].op;
        if (!op)
            break;
        jj_node *nd = mk(P, JN_BINARY, cur(P)->pos);
        if (!nd)
            return NOMEM();
        P->i++;
        nd->op = op;
        nd->a = left;
        LM_TRY(operand(P, &nd->b));
        left = nd;
    }
    *out = left;
    return LM_OK;
}

static lm_status pow_f(parser *P, jj_node **out) {
    static const binop ops[] = {{"**", JOP_POW}};
    return parse_binary(P, unary_f, ops, 1, out);
}
static lm_status math2_f(parser *P, jj_node **out) {
    static const binop ops[] = {{"*", JOP_MUL}, {"/", JOP_DIV}, {"//", JOP_FLOORDIV}, {"%", JOP_MOD}};
    return parse_binary(P, pow_f, ops, 4, out);
}
static lm_status concat_f(parser *P, jj_node **out) {
    static const binop ops[] = {{"~", JOP_CONCAT}};
    return parse_binary(P, math2_f, ops, 1, out);
}
static lm_status math1_f(parser *P, jj_node **out) {
    static const binop ops[] = {{"+", JOP_ADD}, {"-", JOP_SUB}};
    return parse_binary(P, concat_f, ops, 2, out);
}

static lm_status compare_f(parser *P, jj_node **out) {
    static const binop ops[] = {{"==", JOP_EQ}, {"!=", JOP_NE}, {"<", JOP_LT},
                                {"<=", JOP_LE}, {">", JOP_GT},  {">=", JOP_GE}};
    jj_node *left, *result = NULL;
    LM_TRY(math1_f(P, &left));
    for (;;) {
        int op = 0;
        uint32_t pos = cur(P)->pos;
        for (int i = 0; i < 6; i++)
            if (is_op(P, ops[i].tok))
                op = ops[i].op;
        if (op) {
            P->i++;
        } else if (is_name(P, "in")) {
            op = JOP_IN;
            P->i++;
        } else if (is_name(P, "not") && tok_is(peek(P, 1), JT_NAME, "in")) {
            op = JOP_NOTIN;
            P->i += 2;
        } else {
            break;
        }
        jj_node *nd = mk(P, JN_COMPARE, pos);
        if (!nd)
            return NOMEM();
        nd->op = op;
        nd->a = left;
        LM_TRY(math1_f(P, &nd->b));
        left = nd->b;
        if (!result) {
            result = nd;
        } else { /* a < b < c  ->  (a < b) and (b < c) */
            jj_node *and = mk(P, JN_AND, pos);
            if (!and)
                return NOMEM();
            and->a = result;
            and->b = nd;
            result = and;
        }
    }
    *out = result ? result : left;
    return LM_OK;
}

static lm_status not_f(parser *P, jj_node **out) {
    if (is_name(P, "not")) {
        if (++P->depth > MAX_NESTING)
            return jj_error(P->t, cur(P)->pos, "expression nested too deeply");
        jj_node *nd = mk(P, JN_NOT, cur(P)->pos);
        if (!nd)
            return NOMEM();
        P->i++;
        LM_TRY(not_f(P, &nd->a));
        P->depth--;
        *out = nd;
        return LM_OK;
    }
    return compare_f(P, out);
}

static lm_status logic(parser *P, parse_fn operand, const char *kw, jj_node_kind kind, jj_node **out) {
    jj_node *left;
    LM_TRY(operand(P, &left));
    while (is_name(P, kw)) {
        jj_node *nd = mk(P, kind, cur(P)->pos);
        if (!nd)
            return NOMEM();
        P->i++;
        nd->a = left;
        LM_TRY(operand(P, &nd->b));
        left = nd;
    }
    *out = left;
    return LM_OK;
}
static lm_status and_f(parser *P, jj_node **out) { return logic(P, not_f, "and", JN_AND, out); }
static lm_status or_f(parser *P, jj_node **out) { return logic(P, and_f, "or", JN_OR, out); }

static lm_status parse_expr(parser *P, int condexpr, jj_node **out) {
    if (++P->depth > MAX_NESTING)
        return jj_error(P->t, cur(P)->pos, "expression nested too deeply");
    jj_node *nd;
    LM_TRY(or_f(P, &nd));
    while (condexpr && is_name(P, "if")) {
        jj_node *c = mk(P, JN_COND, cur(P)->pos);
        if (!c)
            return NOMEM();
        P->i++;
        c->b = nd;
        LM_TRY(or_f(P, &c->a));
        if (is_name(P, "else")) {
            P->i++;
            LM_TRY(parse_expr(P, 1, &c->c));
        }
        nd = c;
    }
    P->depth--;
    *out = nd;
    return LM_OK;
}

/* expr [, expr ...] -> a tuple when there is a comma */
static lm_status parse_tuple(parser *P, int condexpr, jj_node **out) {
    uint32_t pos = cur(P)->pos;
    jj_node *first;
    LM_TRY(parse_expr(P, condexpr, &first));
    if (!is_op(P, ",")) {
        *out = first;
        return LM_OK;
    }
    nvec items = {0};
    lm_status st = LM_OK;
    if (!nvec_push(&items, first, NULL))
        st = NOMEM();
    while (st == LM_OK && is_op(P, ",")) {
        P->i++;
        jj_tok *k = cur(P);
        if (k->type == JT_BLOCK_END || k->type == JT_VAR_END || tok_is(k, JT_NAME, "if"))
            break;
        jj_node *v = NULL;
        if ((st = parse_expr(P, condexpr, &v)) == LM_OK && !nvec_push(&items, v, NULL))
            st = NOMEM();
    }
    jj_node *tu = st == LM_OK ? mk(P, JN_TUPLE, pos) : NULL;
    if (st == LM_OK && (!tu || !(tu->args = nvec_nodes(P, &items))))
        st = NOMEM();
    if (tu)
        tu->nargs = items.n;
    nvec_free(&items);
    *out = tu;
    return st;
}

/* --- statements ----------------------------------------------------------------------------- */

/* assignment target: name | name.attr (allow_attr) | name, name, ... | (name, name) */
static lm_status parse_target(parser *P, int allow_attr, jj_node **out) {
    nvec items = {0};
    uint32_t pos = cur(P)->pos;
    int paren = is_op(P, "(");
    lm_status st = LM_OK;
    if (paren)
        P->i++;
    for (;;) {
        jj_tok *k = cur(P);
        if (k->type != JT_NAME || is_keyword(k)) {
            st = unexpected(P, "a variable name");
            break;
        }
        jj_node *nd = mk(P, JN_NAME, k->pos);
        if (!nd || !(nd->name = tok_name(P, k))) {
            st = NOMEM();
            break;
        }
        P->i++;
        if (allow_attr && !paren && is_op(P, ".")) {
            P->i++;
            if (cur(P)->type != JT_NAME) {
                st = unexpected(P, "an attribute name");
                break;
            }
            jj_node *at = mk(P, JN_ATTR, k->pos);
            if (!at || !(at->name = tok_name(P, cur(P)))) {
                st = NOMEM();
                break;
            }
            P->i++;
            at->a = nd;
            nd = at;
        }
        if (!nvec_push(&items, nd, NULL)) {
            st = NOMEM();
            break;
        }
        if (!is_op(P, ","))
            break;
        P->i++;
    }
    if (st == LM_OK && paren)
        st = expect_op(P, ")");
    if (st == LM_OK) {
        if (items.n == 1 && !paren) {
            *out = items.v[0];
        } else {
            jj_node *tu = mk(P, JN_TUPLE, pos);
            if (!tu || !(tu->args = nvec_nodes(P, &items)))
                st = NOMEM();
            else
                tu->nargs = items.n;
            *out = tu;
        }
    }
    nvec_free(&items);
    return st;
}

static lm_status parse_body(parser *P, const char *const *ends, int nends, int *which, jj_node **out);

static lm_status block_end(parser *P) { return expect_type(P, JT_BLOCK_END, "'%}'"); }

static lm_status parse_if(parser *P, uint32_t pos, jj_node **out) {
    static const char *const ends[] = {"elif", "else", "endif"};
    static const char *const endif[] = {"endif"};
    jj_node *nd = mk(P, JN_IF, pos);
    if (!nd)
        return NOMEM();
    if (++P->depth > MAX_NESTING)
        return jj_error(P->t, pos, "too many elif branches or nested blocks");
    LM_TRY(parse_tuple(P, 1, &nd->a));
    LM_TRY(block_end(P));
    int which;
    LM_TRY(parse_body(P, ends, 3, &which, &nd->body));
    if (which == 0) {
        nd->op = 1; /* c is an elif */
        LM_TRY(parse_if(P, cur(P)->pos, &nd->c));
    } else if (which == 1) {
        LM_TRY(block_end(P));
        LM_TRY(parse_body(P, endif, 1, &which, &nd->c));
        LM_TRY(block_end(P));
    } else {
        LM_TRY(block_end(P));
    }
    P->depth--;
    *out = nd;
    return LM_OK;
}

static lm_status parse_for(parser *P, uint32_t pos, jj_node **out) {
    static const char *const ends[] = {"else", "endfor"};
    static const char *const endfor[] = {"endfor"};
    jj_node *nd = mk(P, JN_FOR, pos);
    if (!nd)
        return NOMEM();
    LM_TRY(parse_target(P, 0, &nd->a));
    if (!is_name(P, "in"))
        return unexpected(P, "'in'");
    P->i++;
    LM_TRY(parse_tuple(P, 0, &nd->b));
    if (is_name(P, "if")) {
        P->i++;
        LM_TRY(parse_expr(P, 1, &nd->c));
    }
    if (is_name(P, "recursive"))
        return jj_error(P->t, cur(P)->pos, "recursive for loops are not supported");
    LM_TRY(block_end(P));
    int which;
    P->loop_depth++;
    LM_TRY(parse_body(P, ends, 2, &which, &nd->body));
    P->loop_depth--;
    LM_TRY(block_end(P));
    if (which == 0) {
        LM_TRY(parse_body(P, endfor, 1, &which, &nd->d));
        LM_TRY(block_end(P));
    }
    *out = nd;
    return LM_OK;
}

/* `| f(args) | g` chain for filter blocks and block sets: JN_FILTER nodes, innermost a=NULL */
static lm_status parse_filter_chain(parser *P, int need_first, jj_node **out) {
    jj_node *nd = NULL;
    if (need_first)
        LM_TRY(parse_filter(P, NULL, &nd));
    while (is_op(P, "|")) {
        P->i++;
        LM_TRY(parse_filter(P, nd, &nd));
    }
    *out = nd;
    return LM_OK;
}

static lm_status parse_set(parser *P, uint32_t pos, jj_node **out) {
    static const char *const ends[] = {"endset"};
    jj_node *nd = mk(P, JN_SET, pos);
    if (!nd)
        return NOMEM();
    LM_TRY(parse_target(P, 1, &nd->a));
    if (is_op(P, "=")) {
        P->i++;
        LM_TRY(parse_tuple(P, 1, &nd->b));
        LM_TRY(block_end(P));
    } else {
        nd->kind = JN_SETBLOCK;
        if (nd->a->kind != JN_NAME && nd->a->kind != JN_ATTR)
            return jj_error(P->t, pos, "a block set needs a single target");
        LM_TRY(parse_filter_chain(P, 0, &nd->b));
        LM_TRY(block_end(P));
        int which;
        LM_TRY(parse_body(P, ends, 1, &which, &nd->body));
        LM_TRY(block_end(P));
    }
    *out = nd;
    return LM_OK;
}

static lm_status parse_macro(parser *P, uint32_t pos, jj_node **out) {
    static const char *const ends[] = {"endmacro"};
    jj_node *nd = mk(P, JN_MACRO, pos);
    if (!nd)
        return NOMEM();
    if (cur(P)->type != JT_NAME || is_keyword(cur(P)))
        return unexpected(P, "a macro name");
    if (!(nd->name = tok_name(P, cur(P))))
        return NOMEM();
    P->i++;
    LM_TRY(expect_op(P, "("));
    nvec params = {0}, defs = {0};
    lm_status st = LM_OK;
    while (st == LM_OK && !is_op(P, ")")) {
        if (params.n && (st = expect_op(P, ",")) != LM_OK)
            break;
        if (is_op(P, ")"))
            break;
        jj_tok *k = cur(P);
        if (k->type != JT_NAME || is_keyword(k)) {
            st = unexpected(P, "a parameter name");
            break;
        }
        jj_node *pn = mk(P, JN_NAME, k->pos);
        if (!pn || !(pn->name = tok_name(P, k))) {
            st = NOMEM();
            break;
        }
        P->i++;
        jj_node *def = NULL;
        if (is_op(P, "=")) {
            P->i++;
            if ((st = parse_expr(P, 1, &def)) != LM_OK)
                break;
        } else if (defs.n && defs.v[defs.n - 1]) {
            st = jj_error(P->t, k->pos, "parameter without a default after one with a default");
            break;
        }
        if (!nvec_push(&params, pn, NULL) || !nvec_push(&defs, def, NULL))
            st = NOMEM();
    }
    if (st == LM_OK && (st = expect_op(P, ")")) == LM_OK) {
        nd->args = nvec_nodes(P, &params);
        nd->kwv = nvec_nodes(P, &defs);
        nd->nargs = nd->nkw = params.n;
        if (params.n && (!nd->args || !nd->kwv))
            st = NOMEM();
    }
    nvec_free(&params);
    nvec_free(&defs);
    LM_TRY(st);
    LM_TRY(block_end(P));
    int which, saved = P->loop_depth;
    P->loop_depth = 0;
    LM_TRY(parse_body(P, ends, 1, &which, &nd->body));
    P->loop_depth = saved;
    LM_TRY(block_end(P));
    *out = nd;
    return LM_OK;
}

static lm_status parse_wrapper(parser *P, uint32_t pos, jj_node_kind kind, const char *end, jj_node **out) {
    const char *ends[] = {end};
    jj_node *nd = mk(P, kind, pos);
    if (!nd)
        return NOMEM();
    if (kind == JN_FILTERBLOCK)
        LM_TRY(parse_filter_chain(P, 1, &nd->b));
    LM_TRY(block_end(P));
    int which;
    LM_TRY(parse_body(P, ends, 1, &which, &nd->body));
    LM_TRY(block_end(P));
    *out = nd;
    return LM_OK;
}

static int is_end_word(const jj_tok *k) {
    static const char *const w[] = {"elif", "else"};
    if (k->type != JT_NAME)
        return 0;
    if (k->n >= 3 && memcmp(k->s, "end", 3) == 0)
        return 1;
    return tok_is(k, JT_NAME, w[0]) || tok_is(k, JT_NAME, w[1]);
}

/* One {% tag %} statement; P->i is at the tag name. */
static lm_status parse_stmt(parser *P, jj_node **out) {
    jj_tok *k = cur(P);
    uint32_t pos = k->pos;
    *out = NULL;
    if (k->type != JT_NAME)
        return unexpected(P, "a tag name");
    P->i++;
    if (tok_is(k, JT_NAME, "if"))
        return parse_if(P, pos, out);
    if (tok_is(k, JT_NAME, "for"))
        return parse_for(P, pos, out);
    if (tok_is(k, JT_NAME, "set"))
        return parse_set(P, pos, out);
    if (tok_is(k, JT_NAME, "macro"))
        return parse_macro(P, pos, out);
    if (tok_is(k, JT_NAME, "filter"))
        return parse_wrapper(P, pos, JN_FILTERBLOCK, "endfilter", out);
    if (tok_is(k, JT_NAME, "generation")) /* transformers' AssistantTracker: renders its body */
        return parse_wrapper(P, pos, JN_BLOCK, "endgeneration", out);
    if (tok_is(k, JT_NAME, "break") || tok_is(k, JT_NAME, "continue")) {
        if (!P->loop_depth)
            return jj_error(P->t, pos, "'%.*s' outside of a for loop", (int)k->n, k->s);
        jj_node *nd = mk(P, k->s[0] == 'b' ? JN_BREAK : JN_CONTINUE, pos);
        if (!nd)
            return NOMEM();
        *out = nd;
        return block_end(P);
    }
    P->i--;
    if (is_end_word(k))
        return jj_error(P->t, pos, "unexpected '%.*s'", (int)k->n, k->s);
    return jj_error(P->t, pos, "unknown or unsupported tag '%.*s'", (int)(k->n > 40 ? 40 : k->n), k->s);
}

/* Statements until a {% tag %} named in ends (its name is consumed, its %} is not) or EOF
 * (an error when ends is non-empty). */
static lm_status parse_body(parser *P, const char *const *ends, int nends, int *which, jj_node **out) {
    jj_node *head = NULL, **tail = &head;
    *which = -1;
    if (++P->depth > MAX_NESTING)
        return jj_error(P->t, cur(P)->pos, "blocks nested too deeply");
    for (;;) {
        jj_tok *k = cur(P);
        jj_node *nd = NULL;
        if (k->type == JT_EOF) {
            if (nends)
                return jj_error(P->t, k->pos, "unexpected end of template, expected '%s'", ends[nends - 1]);
            break;
        } else if (k->type == JT_TEXT) {
            if (!(nd = mk(P, JN_TEXT, k->pos)))
                return NOMEM();
            nd->lit.t = JV_STR;
            nd->lit.u.s.p = k->s;
            nd->lit.u.s.n = k->n;
            P->i++;
        } else if (k->type == JT_VAR_BEGIN) {
            P->i++;
            if (!(nd = mk(P, JN_OUTPUT, k->pos)))
                return NOMEM();
            LM_TRY(parse_tuple(P, 1, &nd->a));
            LM_TRY(expect_type(P, JT_VAR_END, "'}}'"));
        } else if (k->type == JT_BLOCK_BEGIN) {
            jj_tok *name = peek(P, 1);
            for (int e = 0; e < nends; e++) {
                if (tok_is(name, JT_NAME, ends[e])) {
                    P->i += 2;
                    *which = e;
                    P->depth--;
                    *out = head;
                    return LM_OK;
                }
            }
            P->i++;
            LM_TRY(parse_stmt(P, &nd));
        } else {
            return unexpected(P, NULL);
        }
        if (nd) {
            *tail = nd;
            tail = &nd->next;
        }
    }
    P->depth--;
    *out = head;
    return LM_OK;
}

void jj_template_free(jj_template *t) {
    jj_arena_free(&t->ar);
    memset(t, 0, sizeof *t);
}

lm_status jj_parse(const char *name, const char *src, size_t n, jj_template *t) {
    memset(t, 0, sizeof *t);
    if (n > ((size_t)1 << 30))
        return lm_err(LM_ERR_TEMPLATE, "%s: template too large", name ? name : "<template>");
    t->ar.limit = 64 * n + ((size_t)1 << 20); /* tokens + AST stay proportional to the source */
    char *s = jj_alloc(&t->ar, n + 1);
    t->name = jj_strndup(&t->ar, name ? name : "<template>", strlen(name ? name : "<template>"));
    if (!s || !t->name)
        return lm_err(LM_ERR_NOMEM, "template: out of memory");
    /* newlines: \r\n and \r become \n; one trailing newline is dropped (keep_trailing_newline
     * is False in jinja2) */
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (src[i] == '\r') {
            s[o++] = '\n';
            if (i + 1 < n && src[i + 1] == '\n')
                i++;
        } else {
            s[o++] = src[i];
        }
    }
    if (o && s[o - 1] == '\n')
        o--;
    s[o] = 0;
    t->src = s;
    t->src_n = o;
    jj_tok *toks;
    size_t ntoks;
    LM_TRY(jj_lex(t, &toks, &ntoks));
    parser P = {.t = t, .tk = toks, .n = ntoks};
    int which;
    lm_status st = parse_body(&P, NULL, 0, &which, &t->root);
    free(toks);
    return st;
}
