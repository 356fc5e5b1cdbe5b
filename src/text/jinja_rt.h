/* Jinja runtime: render state, value helpers and builtin dispatch shared by
 * jinja_value.c, jinja_eval.c, jinja_builtins.c and jinja_strings.c. */
#ifndef LM_TEXT_JINJA_RT_H
#define LM_TEXT_JINJA_RT_H
#include "text/jinja.h"

typedef struct jj_frame {
    jj_dict vars;
    struct jj_frame *parent;
} jj_frame;

typedef struct jj_render {
    const jj_template *t;
    jj_arena ar;
    jj_buf *out;      /* where output goes now (block set / filter blocks swap it) */
    size_t max_output;
    jj_frame *root;   /* template-level variables (the context) */
    jj_frame *frame;  /* innermost scope */
    uint64_t steps, max_steps;
    int depth, max_depth;
    int64_t now; /* strftime_now time; < 0: the clock */
    int ctl;     /* JJ_CTL_* after break/continue */
    uint32_t pos; /* source position of the node being evaluated (for errors) */
} jj_render;

enum { JJ_CTL_NONE = 0, JJ_CTL_BREAK, JJ_CTL_CONTINUE };

/* evaluated call arguments */
typedef struct jj_args {
    jv *pos;
    int npos;
    const char **kwn;
    jv *kwv;
    int nkw;
} jj_args;

#define JJ_ERR(R, ...) jj_error((R)->t, (R)->pos, __VA_ARGS__)
lm_status jj_nomem(jj_render *R);

/* --- constructors ---------------------------------------------------------------------- */
static inline jv jv_undef(const char *what) { jv v = {.t = JV_UNDEF}; v.u.undef = what; return v; }
static inline jv jv_none(void) { jv v = {.t = JV_NONE}; return v; }
static inline jv jv_bool(int b) { jv v = {.t = JV_BOOL}; v.u.b = !!b; return v; }
static inline jv jv_int(int64_t i) { jv v = {.t = JV_INT}; v.u.i = i; return v; }
static inline jv jv_float(double f) { jv v = {.t = JV_FLOAT}; v.u.f = f; return v; }
static inline jv jv_strn(const char *p, size_t n) { jv v = {.t = JV_STR}; v.u.s.p = p; v.u.s.n = n; return v; }
jv jv_cstr(const char *s);
/* Copy a buffer's contents into the render arena (and reset the buffer). */
lm_status jv_from_buf(jj_render *R, jj_buf *b, jv *out);
lm_status jv_new_list(jj_render *R, size_t cap, jv *out);
lm_status jv_new_dict(jj_render *R, jv *out);
lm_status jj_list_push(jj_render *R, jj_list *l, jv v);
jv *jj_dict_find(const jj_dict *d, const char *key, size_t n);
lm_status jj_dict_set(jj_render *R, jj_dict *d, jv key, jv val);
lm_status jv_from_json(jj_render *R, const cJSON *j, jv *out);

/* --- Python semantics -------------------------------------------------------------------- */
const char *jv_type_name(jv v); /* Python type name for messages: 'str', 'int', 'dict', ... */
int jv_truthy(jv v);
int jv_is_num(jv v); /* bool, int or float */
double jv_num(jv v);
int jv_eq(jv a, jv b);
/* Python ordering; fails for values that do not order */
lm_status jv_cmp(jj_render *R, jv a, jv b, int *res);
/* str(v) / repr(v) appended to b */
void jv_write_str(jj_buf *b, jv v);
void jv_write_repr(jj_buf *b, jv v);
lm_status jv_to_str(jj_render *R, jv v, jv *out); /* str(v) as a JV_STR */
void jj_float_repr(double f, char *buf, size_t cap); /* Python repr(float) */

typedef struct jj_json_opts {
    int indent;    /* < 0: none */
    const char *indent_str; /* when indent was given as a string */
    int sort_keys, ensure_ascii;
    const char *item_sep, *key_sep;
} jj_json_opts;
lm_status jv_write_json(jj_render *R, jj_buf *b, jv v, const jj_json_opts *o, int level);

/* --- UTF-8 (Python strings index by code point) ----------------------------------------- */
size_t jj_utf8_len(const char *s, size_t n);
/* byte offset of code point index `cp` (clamped to n) */
size_t jj_utf8_off(const char *s, size_t n, size_t cp);
size_t jj_utf8_next(const char *s, size_t n, size_t i); /* offset after the code point at i */

/* --- builtins ---------------------------------------------------------------------------- */
lm_status jj_call_filter(jj_render *R, int fid, jv in, jj_args *a, jv *out);
lm_status jj_call_test(jj_render *R, int tid, jv in, jj_args *a, int *out);
/* Attribute `name` of v as Jinja's getattr does (methods become JV_METHOD). */
lm_status jj_getattr(jj_render *R, jv obj, const char *name, jv *out);
/* obj[key] (missing -> undefined) */
lm_status jj_getitem(jj_render *R, jv obj, jv key, jv *out);
lm_status jj_call_method(jj_render *R, jv self, const char *name, jj_args *a, jv *out);
lm_status jj_call_func(jj_render *R, int fn, jj_args *a, jv *out);
int jj_func_id(const char *name); /* global function id, -1 if none */
int jj_has_method(jv self, const char *name);

/* argument i (or keyword kw) or def */
jv jj_arg(const jj_args *a, int i, const char *kw, jv def);
lm_status jj_arg_str(jj_render *R, const jj_args *a, int i, const char *kw, const char *fname, jv *out);
/* iterate: list of items (dict -> keys, str -> chars, undefined -> empty) */
lm_status jj_iterable(jj_render *R, jv v, jj_list **out);
/* call a filter by name with a value and extra positional args (map/select) */
lm_status jj_apply_filter_name(jj_render *R, const char *name, jv in, jv *extra, int nextra, jv *out);
lm_status jj_apply_test_name(jj_render *R, const char *name, jv in, jv *extra, int nextra, int *out);
/* steps budget (loop iterations etc.) */
lm_status jj_step(jj_render *R, uint64_t n);

/* evaluator entry for macros called from builtins */
lm_status jj_call_macro(jj_render *R, const jj_node *m, jj_args *a, jv *out);

#endif
