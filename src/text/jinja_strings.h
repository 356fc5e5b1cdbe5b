/* Python str helpers for the Jinja engine (jinja_strings.c). */
#ifndef LM_TEXT_JINJA_STRINGS_H
#define LM_TEXT_JINJA_STRINGS_H
#include "text/jinja_rt.h"

enum { JJ_CASE_LOWER, JJ_CASE_UPPER, JJ_CASE_CAPITALIZE, JJ_CASE_TITLE };

lm_status jj_str_case(jj_render *R, jv s, int mode, jv *out);
/* chars: a string, or None/undefined for whitespace */
lm_status jj_str_strip(jj_render *R, jv s, jv chars, int left, int right, jv *out);
lm_status jj_str_split(jj_render *R, jv s, jv sep, int64_t maxsplit, int from_right, jv *out);
lm_status jj_str_replace(jj_render *R, jv s, jv old, jv new_, int64_t count, jv *out);
lm_status jj_format_percent(jj_render *R, jv fmt, jv args, jv *out);
int jj_str_has_method(const char *name);
lm_status jj_str_method(jj_render *R, jv s, const char *name, jj_args *a, jv *out);
int jj_is_lower(jv s);
int jj_is_upper(jv s);

#endif
