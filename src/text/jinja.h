/* Jinja subset engine for chat templates: internal interface shared by the lexer, parser,
 * values, evaluator and builtins (jinja_*.c). The public surface is lm_chat_template_* in
 * include/lmcore.h (template.c).
 *
 * Memory: a template owns one arena holding its normalized source, tokens and AST. A render
 * owns another arena holding every value it creates; both are freed in one go, so values
 * are plain structs with no reference counts. Both arenas have a byte limit so a hostile
 * template fails with LM_ERR_TEMPLATE instead of exhausting memory.
 *
 * Semantics follow Python Jinja2 as configured by Hugging Face transformers
 * (ImmutableSandboxedEnvironment, trim_blocks=True, lstrip_blocks=True, loopcontrols). */
#ifndef LM_TEXT_JINJA_H
#define LM_TEXT_JINJA_H
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "core/status.h"

/* --- arena ------------------------------------------------------------------------------ */

typedef struct jj_chunk jj_chunk;
typedef struct jj_arena {
    jj_chunk *head;
    size_t used;  /* bytes handed out so far */
    size_t limit; /* 0: unlimited */
} jj_arena;

void *jj_alloc(jj_arena *a, size_t n); /* zeroed; NULL on exhaustion (limit or malloc) */
void jj_arena_free(jj_arena *a);
char *jj_strndup(jj_arena *a, const char *s, size_t n); /* NUL-terminated copy */

/* --- growable output buffer (malloc'd, with a size limit) -------------------------------- */

typedef struct jj_buf {
    char *p;
    size_t n, cap, limit; /* limit 0: unlimited */
    int oom;              /* set when an append failed (limit or malloc) */
} jj_buf;

void jj_buf_put(jj_buf *b, const char *s, size_t n);
void jj_buf_puts(jj_buf *b, const char *s);
void jj_buf_putc(jj_buf *b, char c);
void jj_buf_printf(jj_buf *b, const char *fmt, ...) LM_PRINTF(2, 3);
void jj_buf_free(jj_buf *b);

/* --- tokens ------------------------------------------------------------------------------ */

typedef enum {
    JT_EOF,
    JT_TEXT,      /* template data between tags; s/n */
    JT_VAR_BEGIN, /* {{ */
    JT_VAR_END,   /* }} */
    JT_BLOCK_BEGIN,
    JT_BLOCK_END,
    JT_NAME,   /* identifier or keyword; s/n */
    JT_STRING, /* decoded string literal; s/n */
    JT_INT,    /* ival */
    JT_FLOAT,  /* fval */
    JT_OP,     /* operator; s/n ("+", "//", "==", "(", ...) */
} jj_tok_type;

typedef struct jj_tok {
    jj_tok_type type;
    uint32_t pos; /* byte offset in the normalized source */
    const char *s;
    size_t n;
    int64_t ival;
    double fval;
} jj_tok;

/* --- values ----------------------------------------------------------------------------- */

typedef enum {
    JV_UNDEF,
    JV_NONE,
    JV_BOOL,
    JV_INT,
    JV_FLOAT,
    JV_STR,
    JV_LIST,   /* also tuples (list->tuple) */
    JV_DICT,
    JV_NS,     /* namespace(): a dict whose attributes may be assigned */
    JV_FUNC,   /* global function (range, namespace, ...): u.fn */
    JV_METHOD, /* bound method: u.m */
    JV_MACRO,  /* u.macro */
    JV_LOOP,   /* the `loop` variable: u.loop */
} jv_type;

typedef struct jj_list jj_list;
typedef struct jj_dict jj_dict;
typedef struct jj_method jj_method;
typedef struct jj_loop jj_loop;
typedef struct jj_node jj_node;

typedef struct jv {
    jv_type t;
    union {
        int b;
        int64_t i;
        double f;
        struct {
            const char *p;
            size_t n;
        } s;
        jj_list *l;
        jj_dict *d;
        jj_method *m;
        jj_loop *loop;
        const jj_node *macro;
        int fn;
        const char *undef; /* JV_UNDEF: what was missing (for messages), may be NULL */
    } u;
} jv;

struct jj_list {
    jv *v;
    size_t n, cap;
    int tuple;
};
struct jj_dict {
    jv *k, *v;
    size_t n, cap;
};
struct jj_method {
    jv self;
    const char *name;
};
struct jj_loop {
    const jj_list *items;
    size_t i; /* index0 */
};

/* --- AST -------------------------------------------------------------------------------- */

typedef enum {
    /* expressions */
    JN_LIT,     /* lit */
    JN_NAME,    /* name */
    JN_LIST,    /* args */
    JN_TUPLE,   /* args */
    JN_DICT,    /* args: k0, v0, k1, v1, ... */
    JN_ATTR,    /* a.name */
    JN_ITEM,    /* a[b] */
    JN_SLICE,   /* a[b:c:d], missing parts NULL */
    JN_CALL,    /* a(args, kw) */
    JN_FILTER,  /* a|name(args, kw); a NULL in a filter block */
    JN_TEST,    /* a is [not] name(args); op = 1 when negated */
    JN_UNARY,   /* op a: '-', '+' */
    JN_BINARY,  /* a op b: + - * / // % ** ~ */
    JN_AND,     /* a and b */
    JN_OR,      /* a or b */
    JN_NOT,     /* not a */
    JN_COMPARE, /* a op b: == != < <= > >= in notin (chains are nested JN_AND-like in eval) */
    JN_COND,    /* b if a else c */
    /* statements (linked by next) */
    JN_TEXT,     /* lit (string) */
    JN_OUTPUT,   /* {{ a }} */
    JN_IF,       /* if a: body else c (op=1: c is the IF node of an elif; else a statement list) */
    JN_FOR,      /* for a(target) in b [if c]: body else d */
    JN_SET,      /* set a(target) = b */
    JN_SETBLOCK, /* set a(target) %}body{% endset; filters in b (JN_FILTER chain, a=NULL) */
    JN_MACRO,    /* macro name(params=args, defaults=kwv): body */
    JN_FILTERBLOCK, /* filter b(chain) %}body{% endfilter */
    JN_BREAK,
    JN_CONTINUE,
    JN_BLOCK, /* a transparent block (`generation`): body */
} jj_node_kind;

/* comparison / arithmetic operator codes (node->op) */
enum { JOP_EQ = 1, JOP_NE, JOP_LT, JOP_LE, JOP_GT, JOP_GE, JOP_IN, JOP_NOTIN,
       JOP_ADD, JOP_SUB, JOP_MUL, JOP_DIV, JOP_FLOORDIV, JOP_MOD, JOP_POW, JOP_CONCAT,
       JOP_NEG, JOP_POS };

struct jj_node {
    jj_node_kind kind;
    int op;
    uint32_t pos;
    jj_node *a, *b, *c, *d;
    jj_node *body, *next;
    jj_node **args; /* positional args / list items / macro params (JN_NAME) */
    int nargs;
    const char **kwn; /* keyword argument names / macro defaults' names */
    jj_node **kwv;
    int nkw;
    const char *name; /* NUL-terminated */
    jv lit;
    int fid; /* resolved filter/test id */
};

/* --- template --------------------------------------------------------------------------- */

typedef struct jj_template {
    jj_arena ar;
    const char *name; /* for error messages, e.g. the file */
    const char *src;  /* normalized source */
    size_t src_n;
    jj_node *root;
} jj_template;

/* Limits for one render; zero fields take the defaults. */
typedef struct jj_limits {
    size_t max_memory;   /* render arena bytes (default 256 MiB) */
    size_t max_output;   /* output bytes (default 64 MiB) */
    uint64_t max_steps;  /* loop iterations + macro calls (default 10M) */
    int max_depth;       /* macro call nesting (default 64) */
} jj_limits;

/* Tokenize `src` (with trim_blocks/lstrip_blocks and whitespace control) into t->ar. */
lm_status jj_lex(jj_template *t, jj_tok **toks, size_t *ntoks);
/* Parse a template: fills t (free with jj_template_free even on failure). */
lm_status jj_parse(const char *name, const char *src, size_t n, jj_template *t);
void jj_template_free(jj_template *t);
/* line/column (1-based) of a byte offset */
void jj_linecol(const jj_template *t, uint32_t pos, int *line, int *col);
/* Record LM_ERR_TEMPLATE "name:line:col: msg" */
lm_status jj_error(const jj_template *t, uint32_t pos, const char *fmt, ...) LM_PRINTF(3, 4);

/* Render with a context object (JSON object: its keys become template variables).
 * now: unix time for strftime_now (< 0: the current time). *out is malloc'd. */
lm_status jj_render_template(const jj_template *t, const cJSON *ctx, const jj_limits *lim, int64_t now,
                             char **out, size_t *out_n);

/* --- builtin tables (jinja_builtins.c) --------------------------------------------------- */

int jj_filter_id(const char *name); /* -1 when unknown */
int jj_test_id(const char *name);

#endif
