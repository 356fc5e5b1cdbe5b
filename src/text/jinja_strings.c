/* Python str methods and string helpers for the Jinja engine: case mapping (utf8proc),
 * strip/split/replace/find, str.format and printf-style % formatting. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "text/jinja_rt.h"
#include "text/jinja_strings.h"

static int is_space_cp(int32_t c) {
    return c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f) || c == 0x85 || c == 0xa0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f ||
           c == 0x205f || c == 0x3000;
}

/* decode one code point at s[i]; invalid bytes decode as themselves (never stalls) */
static int32_t cp_at(const char *s, size_t n, size_t i, size_t *next) {
    int32_t c;
    utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &c);
    if (k <= 0) {
        *next = i + 1;
        return (unsigned char)s[i];
    }
    *next = i + (size_t)k;
    return c;
}

static void put_cp(jj_buf *b, int32_t c) {
    utf8proc_uint8_t tmp[4];
    utf8proc_ssize_t k = utf8proc_encode_char(c, tmp);
    if (k > 0)
        jj_buf_put(b, (const char *)tmp, (size_t)k);
}

static lm_status finish(jj_render *R, jj_buf *b, jv *out) {
    lm_status st = jv_from_buf(R, b, out);
    jj_buf_free(b);
    return st;
}

lm_status jj_str_case(jj_render *R, jv s, int mode, jv *out) {
    jj_buf b = {.limit = R->max_output};
    int start = 1; /* at a word start (title) / string start (capitalize) */
    for (size_t i = 0, nx; i < s.u.s.n; i = nx) {
        int32_t c = cp_at(s.u.s.p, s.u.s.n, i, &nx);
        if (c > 0x10FFFF || (nx - i == 1 && (unsigned char)s.u.s.p[i] >= 0x80)) { /* raw byte */
            jj_buf_putc(&b, s.u.s.p[i]);
            continue;
        }
        int32_t m = c;
        switch (mode) {
        case JJ_CASE_LOWER: m = utf8proc_tolower(c); break;
        case JJ_CASE_UPPER: m = utf8proc_toupper(c); break;
        case JJ_CASE_CAPITALIZE: m = start ? utf8proc_toupper(c) : utf8proc_tolower(c); break;
        case JJ_CASE_TITLE: /* jinja2 do_title: words start after whitespace and -({[< */
            m = start ? utf8proc_toupper(c) : utf8proc_tolower(c);
            break;
        }
        if (mode == JJ_CASE_CAPITALIZE)
            start = 0;
        else if (mode == JJ_CASE_TITLE)
            start = is_space_cp(c) || c == '-' || c == '(' || c == '{' || c == '[' || c == '<';
        put_cp(&b, m);
    }
    return finish(R, &b, out);
}

static int in_chars(const char *chars, size_t cn, int32_t c) {
    for (size_t i = 0, nx; i < cn; i = nx)
        if (cp_at(chars, cn, i, &nx) == c)
            return 1;
    return 0;
}

lm_status jj_str_strip(jj_render *R, jv s, jv chars, int left, int right, jv *out) {
    if (chars.t != JV_STR && chars.t != JV_NONE && chars.t != JV_UNDEF)
        return JJ_ERR(R, "strip arg must be None or str, not %s", jv_type_name(chars));
    const char *p = s.u.s.p, *cs = chars.t == JV_STR ? chars.u.s.p : NULL;
    size_t n = s.u.s.n, cn = chars.t == JV_STR ? chars.u.s.n : 0, a = 0, e = n;
    if (left) {
        while (a < n) {
            size_t nx;
            int32_t c = cp_at(p, n, a, &nx);
            if (cs ? !in_chars(cs, cn, c) : !is_space_cp(c))
                break;
            a = nx;
        }
    }
    if (right) {
        while (e > a) {
            size_t st = e - 1, nx;
            while (st > a && ((unsigned char)p[st] & 0xC0) == 0x80)
                st--;
            int32_t c = cp_at(p, n, st, &nx);
            if (nx != e)
                c = (unsigned char)p[e - 1], st = e - 1;
            if (cs ? !in_chars(cs, cn, c) : !is_space_cp(c))
                break;
            e = st;
        }
    }
    *out = jv_strn(p + a, e - a);
    return LM_OK;
}

lm_status jj_str_split(jj_render *R, jv s, jv sep, int64_t maxsplit, int from_right, jv *out) {
    LM_TRY(jv_new_list(R, 0, out));
    const char *p = s.u.s.p;
    size_t n = s.u.s.n;
    if (sep.t == JV_NONE || sep.t == JV_UNDEF) { /* runs of whitespace; no empty strings */
        size_t i = 0;
        int64_t splits = 0;
        while (i < n) {
            size_t nx;
            while (i < n && is_space_cp(cp_at(p, n, i, &nx)))
                i = nx;
            if (i >= n)
                break;
            size_t w = i;
            if (maxsplit >= 0 && splits >= maxsplit) {
                size_t e = n; /* rest, right-stripped */
                while (e > w && (p[e - 1] == ' ' || (p[e - 1] >= 0x09 && p[e - 1] <= 0x0d)))
                    e--;
                LM_TRY(jj_list_push(R, out->u.l, jv_strn(p + w, e - w)));
                break;
            }
            while (i < n && !is_space_cp(cp_at(p, n, i, &nx)))
                i = nx;
            LM_TRY(jj_list_push(R, out->u.l, jv_strn(p + w, i - w)));
            splits++;
        }
        return LM_OK;
    }
    if (sep.t != JV_STR)
        return JJ_ERR(R, "must be str or None, not %s", jv_type_name(sep));
    if (sep.u.s.n == 0)
        return JJ_ERR(R, "empty separator");
    const char *q = sep.u.s.p;
    size_t qn = sep.u.s.n;
    if (!from_right) {
        size_t start = 0;
        int64_t splits = 0;
        for (;;) {
            const char *hit = (maxsplit < 0 || splits < maxsplit) ? memmem(p + start, n - start, q, qn) : NULL;
            if (!hit) {
                LM_TRY(jj_list_push(R, out->u.l, jv_strn(p + start, n - start)));
                return LM_OK;
            }
            LM_TRY(jj_list_push(R, out->u.l, jv_strn(p + start, (size_t)(hit - (p + start)))));
            start = (size_t)(hit - p) + qn;
            splits++;
        }
    }
    /* rsplit: collect from the right, then reverse */
    size_t end = n;
    int64_t splits = 0;
    for (;;) {
        size_t found = SIZE_MAX;
        if ((maxsplit < 0 || splits < maxsplit) && end >= qn)
            for (size_t i = end - qn + 1; i-- > 0;)
                if (memcmp(p + i, q, qn) == 0) {
                    found = i;
                    break;
                }
        if (found == SIZE_MAX) {
            LM_TRY(jj_list_push(R, out->u.l, jv_strn(p, end)));
            break;
        }
        LM_TRY(jj_list_push(R, out->u.l, jv_strn(p + found + qn, end - found - qn)));
        end = found;
        splits++;
    }
    jj_list *l = out->u.l;
    for (size_t i = 0; i < l->n / 2; i++) {
        jv t = l->v[i];
        l->v[i] = l->v[l->n - 1 - i];
        l->v[l->n - 1 - i] = t;
    }
    return LM_OK;
}

lm_status jj_str_replace(jj_render *R, jv s, jv old, jv new_, int64_t count, jv *out) {
    if (old.t != JV_STR || new_.t != JV_STR)
        return JJ_ERR(R, "replace() arguments must be str");
    jj_buf b = {.limit = R->max_output};
    const char *p = s.u.s.p;
    size_t n = s.u.s.n, i = 0;
    int64_t done = 0;
    if (old.u.s.n == 0) { /* Python inserts `new` between every code point */
        while (count < 0 || done < count) {
            jj_buf_put(&b, new_.u.s.p, new_.u.s.n);
            done++;
            if (i >= n)
                break;
            size_t nx = jj_utf8_next(p, n, i);
            jj_buf_put(&b, p + i, nx - i);
            i = nx;
        }
        jj_buf_put(&b, p + i, n - i);
        return finish(R, &b, out);
    }
    while (i <= n && (count < 0 || done < count)) {
        const char *hit = memmem(p + i, n - i, old.u.s.p, old.u.s.n);
        if (!hit)
            break;
        jj_buf_put(&b, p + i, (size_t)(hit - (p + i)));
        jj_buf_put(&b, new_.u.s.p, new_.u.s.n);
        i = (size_t)(hit - p) + old.u.s.n;
        done++;
    }
    jj_buf_put(&b, p + i, n - i);
    return finish(R, &b, out);
}

/* "{} {0} {name}" with {{ and }} escapes; format specs are not supported */
static lm_status str_format(jj_render *R, jv fmt, jj_args *a, jv *out) {
    jj_buf b = {.limit = R->max_output};
    const char *p = fmt.u.s.p;
    size_t n = fmt.u.s.n;
    int auto_idx = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '{' && i + 1 < n && p[i + 1] == '{') {
            jj_buf_putc(&b, '{');
            i++;
        } else if (p[i] == '}' && i + 1 < n && p[i + 1] == '}') {
            jj_buf_putc(&b, '}');
            i++;
        } else if (p[i] == '{') {
            const char *e = memchr(p + i, '}', n - i);
            if (!e) {
                jj_buf_free(&b);
                return JJ_ERR(R, "format: single '{' encountered in format string");
            }
            size_t fl = (size_t)(e - (p + i + 1));
            const char *f = p + i + 1;
            if (memchr(f, ':', fl) || memchr(f, '!', fl)) {
                jj_buf_free(&b);
                return JJ_ERR(R, "format: format specs and conversions are not supported");
            }
            jv v = jv_undef(NULL);
            if (fl == 0 || (f[0] >= '0' && f[0] <= '9')) {
                int idx = fl == 0 ? auto_idx++ : atoi(f);
                if (idx >= a->npos) {
                    jj_buf_free(&b);
                    return JJ_ERR(R, "format: replacement index %d out of range", idx);
                }
                v = a->pos[idx];
            } else {
                int k = 0;
                while (k < a->nkw && !(strlen(a->kwn[k]) == fl && memcmp(a->kwn[k], f, fl) == 0))
                    k++;
                if (k == a->nkw) {
                    jj_buf_free(&b);
                    return JJ_ERR(R, "format: missing keyword argument '%.*s'", (int)(fl > 40 ? 40 : fl), f);
                }
                v = a->kwv[k];
            }
            jv_write_str(&b, v);
            i = (size_t)(e - p);
        } else if (p[i] == '}') {
            jj_buf_free(&b);
            return JJ_ERR(R, "format: single '}' encountered in format string");
        } else {
            jj_buf_putc(&b, p[i]);
        }
    }
    return finish(R, &b, out);
}

/* printf-style "fmt % args": %s %r %d %i %f %x %% with optional flags/width/precision */
lm_status jj_format_percent(jj_render *R, jv fmt, jv args, jv *out) {
    jj_buf b = {.limit = R->max_output};
    const jv *av = &args;
    size_t an = 1, ai = 0;
    if (args.t == JV_LIST && args.u.l->tuple) {
        av = args.u.l->v;
        an = args.u.l->n;
    }
    const char *p = fmt.u.s.p;
    size_t n = fmt.u.s.n;
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '%') {
            jj_buf_putc(&b, p[i]);
            continue;
        }
        char spec[32];
        size_t sl = 0;
        spec[sl++] = '%';
        i++;
        int run = 0; /* width/precision digits: at most 3 (keeps output and work bounded) */
        while (i < n && p[i] && strchr("-+ 0#.0123456789", p[i]) && sl < sizeof spec - 4) {
            run = p[i] >= '0' && p[i] <= '9' ? run + 1 : 0;
            if (run > 3) {
                jj_buf_free(&b);
                return JJ_ERR(R, "format: width or precision too large");
            }
            spec[sl++] = p[i++];
        }
        if (i >= n) {
            jj_buf_free(&b);
            return JJ_ERR(R, "incomplete format");
        }
        char conv = p[i];
        if (conv == '%') {
            jj_buf_putc(&b, '%');
            continue;
        }
        if (ai >= an) {
            jj_buf_free(&b);
            return JJ_ERR(R, "not enough arguments for format string");
        }
        jv v = av[ai++];
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
        /* spec is built here from validated flags, width, precision and our conversion */
        if (conv == 's' || conv == 'r') {
            jj_buf tmp = {.limit = R->max_output};
            if (conv == 'r')
                jv_write_repr(&tmp, v);
            else
                jv_write_str(&tmp, v);
            spec[sl++] = 's';
            spec[sl] = 0;
            jj_buf_printf(&b, spec, tmp.p ? tmp.p : "");
            jj_buf_free(&tmp);
        } else if (strchr("dixXo", conv) && jv_is_num(v)) {
            spec[sl++] = 'l';
            spec[sl++] = 'l';
            spec[sl++] = conv == 'i' ? 'd' : conv;
            spec[sl] = 0;
            jj_buf_printf(&b, spec, (long long)(v.t == JV_FLOAT ? (int64_t)v.u.f : v.t == JV_INT ? v.u.i : v.u.b));
        } else if (strchr("feEgG", conv) && jv_is_num(v)) {
            spec[sl++] = conv;
            spec[sl] = 0;
            jj_buf_printf(&b, spec, jv_num(v));
        } else {
            jj_buf_free(&b);
            return JJ_ERR(R, "unsupported format character '%c' or argument type %s", conv, jv_type_name(v));
        }
#pragma GCC diagnostic pop
    }
    if (ai < an) {
        jj_buf_free(&b);
        return JJ_ERR(R, "not all arguments converted during string formatting");
    }
    return finish(R, &b, out);
}

static int64_t cp_index(const char *s, size_t byte_off) { return (int64_t)jj_utf8_len(s, byte_off); }

static int str_pred(jv s, int kind) {
    if (!s.u.s.n)
        return 0;
    int cased = 0, upper = 0, lower = 0;
    for (size_t i = 0, nx; i < s.u.s.n; i = nx) {
        int32_t c = cp_at(s.u.s.p, s.u.s.n, i, &nx);
        utf8proc_category_t cat = utf8proc_category(c);
        int is_alpha = cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO;
        int is_digit = cat == UTF8PROC_CATEGORY_ND;
        switch (kind) {
        case 0: if (!is_digit) return 0; break;            /* isdigit */
        case 1: if (!is_alpha) return 0; break;            /* isalpha */
        case 2: if (!is_alpha && !is_digit) return 0; break; /* isalnum */
        case 3: if (!is_space_cp(c)) return 0; break;      /* isspace */
        default:
            if (utf8proc_tolower(c) != c)
                upper = cased = 1;
            else if (utf8proc_toupper(c) != c)
                lower = cased = 1;
        }
    }
    if (kind == 4)
        return cased && !upper; /* islower */
    if (kind == 5)
        return cased && !lower; /* isupper */
    return 1;
}

int jj_is_lower(jv s) { return str_pred(s, 4); }
int jj_is_upper(jv s) { return str_pred(s, 5); }

static const char *const STR_METHODS[] = {
    "startswith", "endswith", "strip", "lstrip", "rstrip", "split", "rsplit", "upper", "lower", "title",
    "capitalize", "replace", "find", "rfind", "index", "count", "format", "join", "isdigit", "isalpha",
    "isalnum", "isspace", "islower", "isupper", "splitlines", "removeprefix", "removesuffix", NULL};

int jj_str_has_method(const char *name) {
    for (int i = 0; STR_METHODS[i]; i++)
        if (strcmp(STR_METHODS[i], name) == 0)
            return 1;
    return 0;
}

static lm_status affix(jj_render *R, jv s, jv x, int end, int *res) {
    *res = 0;
    if (x.t == JV_LIST && x.u.l->tuple) {
        for (size_t i = 0; i < x.u.l->n && !*res; i++)
            LM_TRY(affix(R, s, x.u.l->v[i], end, res));
        return LM_OK;
    }
    if (x.t != JV_STR)
        return JJ_ERR(R, "%s first arg must be str or a tuple of str, not %s", end ? "endswith" : "startswith",
                      jv_type_name(x));
    *res = x.u.s.n <= s.u.s.n &&
           memcmp(s.u.s.p + (end ? s.u.s.n - x.u.s.n : 0), x.u.s.p, x.u.s.n) == 0;
    return LM_OK;
}

static lm_status int_arg(jj_render *R, jv v, int64_t def, int64_t *out) {
    if (v.t == JV_UNDEF || v.t == JV_NONE)
        *out = def;
    else if (v.t == JV_INT || v.t == JV_BOOL)
        *out = v.t == JV_INT ? v.u.i : v.u.b;
    else
        return JJ_ERR(R, "expected an integer argument, got %s", jv_type_name(v));
    return LM_OK;
}

lm_status jj_str_method(jj_render *R, jv s, const char *m, jj_args *a, jv *out) {
    jv a0 = jj_arg(a, 0, NULL, jv_undef(NULL)), a1 = jj_arg(a, 1, NULL, jv_undef(NULL));
    int r;
    int64_t k = -1;
    if (!strcmp(m, "startswith") || !strcmp(m, "endswith")) {
        LM_TRY(affix(R, s, a0, m[0] == 'e', &r));
        *out = jv_bool(r);
        return LM_OK;
    }
    if (!strcmp(m, "strip") || !strcmp(m, "lstrip") || !strcmp(m, "rstrip"))
        return jj_str_strip(R, s, a0, m[0] != 'r', m[0] != 'l', out);
    if (!strcmp(m, "split") || !strcmp(m, "rsplit")) {
        jv sep = jj_arg(a, 0, "sep", jv_none());
        LM_TRY(int_arg(R, jj_arg(a, 1, "maxsplit", jv_int(-1)), -1, &k));
        return jj_str_split(R, s, sep, k, m[0] == 'r', out);
    }
    if (!strcmp(m, "upper"))
        return jj_str_case(R, s, JJ_CASE_UPPER, out);
    if (!strcmp(m, "lower"))
        return jj_str_case(R, s, JJ_CASE_LOWER, out);
    if (!strcmp(m, "title"))
        return jj_str_case(R, s, JJ_CASE_TITLE, out);
    if (!strcmp(m, "capitalize"))
        return jj_str_case(R, s, JJ_CASE_CAPITALIZE, out);
    if (!strcmp(m, "replace")) {
        LM_TRY(int_arg(R, jj_arg(a, 2, "count", jv_int(-1)), -1, &k));
        return jj_str_replace(R, s, a0, a1, k, out);
    }
    if (!strcmp(m, "find") || !strcmp(m, "rfind") || !strcmp(m, "index") || !strcmp(m, "count")) {
        if (a0.t != JV_STR)
            return JJ_ERR(R, "%s() argument must be str, not %s", m, jv_type_name(a0));
        if (m[0] == 'c') {
            int64_t c = 0;
            if (!a0.u.s.n) {
                c = (int64_t)jj_utf8_len(s.u.s.p, s.u.s.n) + 1;
            } else {
                for (size_t i = 0; i + a0.u.s.n <= s.u.s.n;) {
                    const char *h = memmem(s.u.s.p + i, s.u.s.n - i, a0.u.s.p, a0.u.s.n);
                    if (!h)
                        break;
                    c++;
                    i = (size_t)(h - s.u.s.p) + a0.u.s.n;
                }
            }
            *out = jv_int(c);
            return LM_OK;
        }
        int64_t idx = -1;
        if (m[0] == 'r') {
            for (size_t i = s.u.s.n + 1; i-- > 0;)
                if (i + a0.u.s.n <= s.u.s.n && memcmp(s.u.s.p + i, a0.u.s.p, a0.u.s.n) == 0) {
                    idx = cp_index(s.u.s.p, i);
                    break;
                }
        } else {
            const char *h = a0.u.s.n ? memmem(s.u.s.p, s.u.s.n, a0.u.s.p, a0.u.s.n) : s.u.s.p;
            if (h)
                idx = cp_index(s.u.s.p, (size_t)(h - s.u.s.p));
        }
        if (idx < 0 && m[0] == 'i')
            return JJ_ERR(R, "substring not found");
        *out = jv_int(idx);
        return LM_OK;
    }
    if (!strcmp(m, "format"))
        return str_format(R, s, a, out);
    if (!strcmp(m, "join")) {
        jj_list *items;
        LM_TRY(jj_iterable(R, a0, &items));
        jj_buf b = {.limit = R->max_output};
        for (size_t i = 0; i < items->n; i++) {
            if (items->v[i].t != JV_STR) {
                jj_buf_free(&b);
                return JJ_ERR(R, "sequence item %zu: expected str instance, %s found", i, jv_type_name(items->v[i]));
            }
            if (i)
                jj_buf_put(&b, s.u.s.p, s.u.s.n);
            jj_buf_put(&b, items->v[i].u.s.p, items->v[i].u.s.n);
        }
        return finish(R, &b, out);
    }
    static const char *const preds[] = {"isdigit", "isalpha", "isalnum", "isspace", "islower", "isupper"};
    for (int i = 0; i < 6; i++)
        if (!strcmp(m, preds[i])) {
            *out = jv_bool(str_pred(s, i));
            return LM_OK;
        }
    if (!strcmp(m, "splitlines")) {
        LM_TRY(jv_new_list(R, 0, out));
        size_t st = 0, i = 0, n = s.u.s.n;
        const char *p = s.u.s.p;
        while (i < n) {
            if (p[i] == '\n' || p[i] == '\r') {
                LM_TRY(jj_list_push(R, out->u.l, jv_strn(p + st, i - st)));
                if (p[i] == '\r' && i + 1 < n && p[i + 1] == '\n')
                    i++;
                st = ++i;
            } else {
                i++;
            }
        }
        if (st < n)
            LM_TRY(jj_list_push(R, out->u.l, jv_strn(p + st, n - st)));
        return LM_OK;
    }
    if (!strcmp(m, "removeprefix") || !strcmp(m, "removesuffix")) {
        if (a0.t != JV_STR)
            return JJ_ERR(R, "%s() argument must be str", m);
        LM_TRY(affix(R, s, a0, m[6] == 's', &r));
        *out = !r ? s : m[6] == 's' ? jv_strn(s.u.s.p, s.u.s.n - a0.u.s.n) : jv_strn(s.u.s.p + a0.u.s.n, s.u.s.n - a0.u.s.n);
        return LM_OK;
    }
    return JJ_ERR(R, "'str' object has no attribute '%s'", m);
}
