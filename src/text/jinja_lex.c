/* Jinja lexer: splits a template into text and tag tokens, applying whitespace control
 * ({%- -%} {{- -}} {#- -#}), trim_blocks, lstrip_blocks and {% raw %}; tokenizes the
 * expressions inside tags. Mirrors jinja2/lexer.py's rules (see comments). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/jinja.h"

typedef struct lexer {
    jj_template *t;
    const char *s;
    size_t n, pos;
    jj_tok *toks;
    size_t ntoks, cap;
    int line_starting; /* the previous tag's match ended with '\n' (jinja2 lexer) */
} lexer;

void jj_linecol(const jj_template *t, uint32_t pos, int *line, int *col) {
    int l = 1, c = 1;
    for (size_t i = 0; i < pos && i < t->src_n; i++) {
        if (t->src[i] == '\n') {
            l++;
            c = 1;
        } else if (((unsigned char)t->src[i] & 0xC0) != 0x80) {
            c++;
        }
    }
    *line = l;
    *col = c;
}

lm_status jj_error(const jj_template *t, uint32_t pos, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int line, col;
    jj_linecol(t, pos, &line, &col);
    return lm_err(LM_ERR_TEMPLATE, "%s:%d:%d: %s", t->name ? t->name : "<template>", line, col, msg);
}

static jj_tok *push(lexer *L, jj_tok_type type, size_t pos) {
    if (L->ntoks == L->cap) {
        size_t cap = L->cap ? L->cap * 2 : 256;
        jj_tok *nt = realloc(L->toks, cap * sizeof *nt);
        if (!nt)
            return NULL;
        L->toks = nt;
        L->cap = cap;
    }
    jj_tok *k = &L->toks[L->ntoks++];
    memset(k, 0, sizeof *k);
    k->type = type;
    k->pos = (uint32_t)pos;
    return k;
}

#define NOMEM(L) lm_err(LM_ERR_NOMEM, "template: out of memory")

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
static int is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static int is_digit(char c) { return c >= '0' && c <= '9'; }

static lm_status push_text(lexer *L, size_t from, size_t to) {
    if (to <= from)
        return LM_OK;
    jj_tok *k = push(L, JT_TEXT, from);
    if (!k)
        return NOMEM(L);
    k->s = L->s + from;
    k->n = to - from;
    return LM_OK;
}

/* The end of the text before a tag at `tag` whose modifier is `mod`, for block/comment tags
 * (`block`) or variable tags. */
static size_t text_end(const lexer *L, size_t from, size_t tag, char mod, int block) {
    size_t end = tag;
    if (mod == '-') {
        while (end > from && is_ws(L->s[end - 1]))
            end--;
    } else if (mod != '+' && block) { /* lstrip_blocks */
        size_t l = end;
        while (l > from && L->s[l - 1] != '\n')
            l--;
        if (l > from || L->line_starting) {
            size_t k = l;
            while (k < end && is_ws(L->s[k]))
                k++;
            if (k == end)
                end = l;
        }
    }
    return end;
}

/* After a closing delimiter ending at `p` with modifier `mod`: skip whitespace (`-`) or one
 * newline (trim_blocks, for block and comment tags). */
static size_t after_close(lexer *L, size_t p, char mod, int block) {
    if (mod == '-') {
        while (p < L->n && is_ws(L->s[p]))
            p++;
    } else if (mod != '+' && block && p < L->n && L->s[p] == '\n') {
        p++;
    }
    L->line_starting = p > 0 && L->s[p - 1] == '\n';
    return p;
}

static void put_utf8(char *d, size_t *o, uint32_t cp) {
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        cp = 0xFFFD;
    if (cp < 0x80) {
        d[(*o)++] = (char)cp;
    } else if (cp < 0x800) {
        d[(*o)++] = (char)(0xC0 | (cp >> 6));
        d[(*o)++] = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        d[(*o)++] = (char)(0xE0 | (cp >> 12));
        d[(*o)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        d[(*o)++] = (char)(0x80 | (cp & 0x3F));
    } else {
        d[(*o)++] = (char)(0xF0 | (cp >> 18));
        d[(*o)++] = (char)(0x80 | ((cp >> 12) & 0x3F));
        d[(*o)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        d[(*o)++] = (char)(0x80 | (cp & 0x3F));
    }
}

static int hexval(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* A string literal at L->pos (the quote); Python escapes. */
static lm_status lex_string(lexer *L) {
    size_t start = L->pos;
    char q = L->s[L->pos++];
    size_t end = L->pos;
    while (end < L->n && L->s[end] != q) {
        if (L->s[end] == '\\' && end + 1 < L->n)
            end++;
        end++;
    }
    if (end >= L->n)
        return jj_error(L->t, (uint32_t)start, "unterminated string literal");
    /* decoded output is never longer than the source (\U........ is 10 bytes -> 4) */
    char *d = jj_alloc(&L->t->ar, end - L->pos + 1);
    if (!d)
        return NOMEM(L);
    size_t o = 0;
    for (size_t i = L->pos; i < end; i++) {
        char c = L->s[i];
        if (c != '\\') {
            d[o++] = c;
            continue;
        }
        char e = L->s[++i];
        int digits = 0;
        switch (e) {
        case 'n': d[o++] = '\n'; break;
        case 't': d[o++] = '\t'; break;
        case 'r': d[o++] = '\r'; break;
        case 'b': d[o++] = '\b'; break;
        case 'f': d[o++] = '\f'; break;
        case 'v': d[o++] = '\v'; break;
        case 'a': d[o++] = '\a'; break;
        case '\\': d[o++] = '\\'; break;
        case '\'': d[o++] = '\''; break;
        case '"': d[o++] = '"'; break;
        case '\n': break; /* line continuation */
        case 'x': digits = 2; break;
        case 'u': digits = 4; break;
        case 'U': digits = 8; break;
        default:
            if (e >= '0' && e <= '7') { /* octal, up to 3 digits */
                uint32_t v = 0;
                int k = 0;
                while (k < 3 && i < end && L->s[i] >= '0' && L->s[i] <= '7') {
                    v = v * 8 + (uint32_t)(L->s[i] - '0');
                    i++;
                    k++;
                }
                i--;
                put_utf8(d, &o, v);
            } else {
                d[o++] = '\\';
                d[o++] = e;
            }
        }
        if (digits) {
            uint32_t v = 0;
            for (int k = 0; k < digits; k++) {
                int h = i + 1 + (size_t)k < end ? hexval(L->s[i + 1 + (size_t)k]) : -1;
                if (h < 0)
                    return jj_error(L->t, (uint32_t)i - 1, "truncated \\%c escape in string literal", e);
                v = v * 16 + (uint32_t)h;
            }
            i += (size_t)digits;
            put_utf8(d, &o, v);
        }
    }
    jj_tok *k = push(L, JT_STRING, start);
    if (!k)
        return NOMEM(L);
    k->s = d;
    k->n = o;
    L->pos = end + 1;
    return LM_OK;
}

static lm_status lex_number(lexer *L) {
    size_t start = L->pos, p = L->pos;
    char tmp[128];
    size_t o = 0;
    int is_float = 0;
    while (p < L->n && (is_digit(L->s[p]) || (L->s[p] == '_' && p + 1 < L->n && is_digit(L->s[p + 1])))) {
        if (L->s[p] != '_' && o < sizeof tmp - 1)
            tmp[o++] = L->s[p];
        p++;
    }
    if (p + 1 < L->n && L->s[p] == '.' && is_digit(L->s[p + 1])) {
        is_float = 1;
        tmp[o < sizeof tmp - 1 ? o++ : o] = '.';
        p++;
        while (p < L->n && (is_digit(L->s[p]) || (L->s[p] == '_' && p + 1 < L->n && is_digit(L->s[p + 1])))) {
            if (L->s[p] != '_' && o < sizeof tmp - 1)
                tmp[o++] = L->s[p];
            p++;
        }
    }
    if (p < L->n && (L->s[p] == 'e' || L->s[p] == 'E')) {
        size_t q = p + 1;
        if (q < L->n && (L->s[q] == '+' || L->s[q] == '-'))
            q++;
        if (q < L->n && is_digit(L->s[q])) {
            is_float = 1;
            for (size_t k = p; k < q && o < sizeof tmp - 1; k++)
                tmp[o++] = L->s[k];
            p = q;
            while (p < L->n && is_digit(L->s[p])) {
                if (o < sizeof tmp - 1)
                    tmp[o++] = L->s[p];
                p++;
            }
        }
    }
    if (o >= sizeof tmp - 1)
        return jj_error(L->t, (uint32_t)start, "number literal too long");
    tmp[o] = 0;
    jj_tok *k = push(L, is_float ? JT_FLOAT : JT_INT, start);
    if (!k)
        return NOMEM(L);
    if (is_float) {
        k->fval = strtod(tmp, NULL);
    } else {
        uint64_t v = 0;
        for (size_t i = 0; i < o; i++) {
            if (v > (UINT64_C(9223372036854775807) - (uint64_t)(tmp[i] - '0')) / 10)
                return jj_error(L->t, (uint32_t)start, "integer literal too large");
            v = v * 10 + (uint64_t)(tmp[i] - '0');
        }
        k->ival = (int64_t)v;
    }
    L->pos = p;
    return LM_OK;
}

static const char *const OPS2[] = {"//", "**", "==", "!=", "<=", ">="};
static const char OPS1[] = "+-*/%~<>=()[]{},.:|";

/* Tokens of one {{ }} or {% %} tag, from L->pos up to and including its closing delimiter. */
static lm_status lex_tag(lexer *L, int block, size_t open_pos) {
    int balance = 0;
    for (;;) {
        while (L->pos < L->n && is_ws(L->s[L->pos]))
            L->pos++;
        if (L->pos >= L->n)
            return jj_error(L->t, (uint32_t)open_pos, "unclosed %s tag", block ? "{%" : "{{");
        const char *p = L->s + L->pos;
        size_t left = L->n - L->pos;
        if (balance == 0) {
            char mod = 0;
            size_t len = 0;
            if (block) {
                if (left >= 3 && (p[0] == '-' || p[0] == '+') && p[1] == '%' && p[2] == '}')
                    mod = p[0], len = 3;
                else if (left >= 2 && p[0] == '%' && p[1] == '}')
                    len = 2;
            } else {
                if (left >= 3 && p[0] == '-' && p[1] == '}' && p[2] == '}')
                    mod = '-', len = 3;
                else if (left >= 2 && p[0] == '}' && p[1] == '}')
                    len = 2;
            }
            if (len) {
                if (!push(L, block ? JT_BLOCK_END : JT_VAR_END, L->pos))
                    return NOMEM(L);
                L->pos = after_close(L, L->pos + len, mod, block);
                return LM_OK;
            }
        }
        char c = *p;
        if (is_alpha(c)) {
            size_t e = L->pos;
            while (e < L->n && (is_alpha(L->s[e]) || is_digit(L->s[e])))
                e++;
            jj_tok *k = push(L, JT_NAME, L->pos);
            if (!k)
                return NOMEM(L);
            k->s = p;
            k->n = e - L->pos;
            L->pos = e;
        } else if (is_digit(c)) {
            LM_TRY(lex_number(L));
        } else if (c == '\'' || c == '"') {
            LM_TRY(lex_string(L));
        } else {
            size_t len = 0;
            for (size_t i = 0; i < sizeof OPS2 / sizeof OPS2[0]; i++)
                if (left >= 2 && p[0] == OPS2[i][0] && p[1] == OPS2[i][1])
                    len = 2;
            if (!len && c && strchr(OPS1, c))
                len = 1;
            if (!len)
                return jj_error(L->t, (uint32_t)L->pos, "unexpected character '%c' in tag",
                                (unsigned char)c >= 0x20 && (unsigned char)c < 0x7f ? c : '?');
            if (c == '(' || c == '[' || c == '{')
                balance++;
            else if ((c == ')' || c == ']' || c == '}') && balance > 0)
                balance--;
            jj_tok *k = push(L, JT_OP, L->pos);
            if (!k)
                return NOMEM(L);
            k->s = p;
            k->n = len;
            L->pos += len;
        }
    }
}

/* Does a {% raw %} tag start at `p` (just after "{%" and its modifier)? Returns the offset of
 * its closing delimiter ("%}" or "-%}"/"+%}"), or 0. */
static size_t match_word_tag(const lexer *L, size_t p, const char *word) {
    while (p < L->n && is_ws(L->s[p]))
        p++;
    size_t wl = strlen(word);
    if (p + wl > L->n || memcmp(L->s + p, word, wl) != 0)
        return 0;
    p += wl;
    if (p < L->n && (is_alpha(L->s[p]) || is_digit(L->s[p])))
        return 0;
    while (p < L->n && is_ws(L->s[p]))
        p++;
    if (p + 1 < L->n && L->s[p] == '%' && L->s[p + 1] == '}')
        return p;
    if (p + 2 < L->n && (L->s[p] == '-' || L->s[p] == '+') && L->s[p + 1] == '%' && L->s[p + 2] == '}')
        return p;
    return 0;
}

static size_t close_len(const lexer *L, size_t p, char *mod) {
    *mod = L->s[p] == '%' ? 0 : L->s[p];
    return *mod ? 3 : 2;
}

static lm_status lex_raw(lexer *L, size_t close) {
    char mod;
    size_t len = close_len(L, close, &mod);
    size_t p = after_close(L, close + len, mod, 1);
    for (size_t i = p; i + 1 < L->n; i++) {
        if (L->s[i] != '{' || L->s[i + 1] != '%')
            continue;
        char omod = (i + 2 < L->n && (L->s[i + 2] == '-' || L->s[i + 2] == '+')) ? L->s[i + 2] : 0;
        size_t c = match_word_tag(L, i + 2 + (omod ? 1 : 0), "endraw");
        if (!c)
            continue;
        LM_TRY(push_text(L, p, text_end(L, p, i, omod, 1)));
        len = close_len(L, c, &mod);
        L->pos = after_close(L, c + len, mod, 1);
        return LM_OK;
    }
    return jj_error(L->t, (uint32_t)close, "missing {%% endraw %%}");
}

lm_status jj_lex(jj_template *t, jj_tok **toks, size_t *ntoks) {
    lexer L = {.t = t, .s = t->src, .n = t->src_n, .line_starting = 1};
    lm_status st = LM_OK;
    *toks = NULL;
    *ntoks = 0;
    while (L.pos < L.n && st == LM_OK) {
        size_t i = L.pos;
        while (i + 1 < L.n && !(L.s[i] == '{' && (L.s[i + 1] == '{' || L.s[i + 1] == '%' || L.s[i + 1] == '#')))
            i++;
        if (i + 1 >= L.n) {
            st = push_text(&L, L.pos, L.n);
            L.pos = L.n;
            break;
        }
        char kind = L.s[i + 1];
        char mod = i + 2 < L.n && (L.s[i + 2] == '-' || L.s[i + 2] == '+') ? L.s[i + 2] : 0;
        int block = kind != '{';
        if ((st = push_text(&L, L.pos, text_end(&L, L.pos, i, mod, block))) != LM_OK)
            break;
        size_t body = i + 2 + (mod ? 1 : 0);
        if (kind == '#') {
            size_t e = body;
            while (e + 1 < L.n && !(L.s[e] == '#' && L.s[e + 1] == '}'))
                e++;
            if (e + 1 >= L.n) {
                st = jj_error(t, (uint32_t)i, "unclosed comment");
                break;
            }
            char cmod = (e > body && (L.s[e - 1] == '-' || L.s[e - 1] == '+')) ? L.s[e - 1] : 0;
            L.pos = after_close(&L, e + 2, cmod, 1);
            continue;
        }
        size_t raw = kind == '%' ? match_word_tag(&L, body, "raw") : 0;
        if (raw) {
            st = lex_raw(&L, raw);
            continue;
        }
        if (!push(&L, block ? JT_BLOCK_BEGIN : JT_VAR_BEGIN, i)) {
            st = NOMEM(&L);
            break;
        }
        L.pos = body;
        st = lex_tag(&L, block, i);
    }
    if (st == LM_OK && !push(&L, JT_EOF, L.n))
        st = NOMEM(&L);
    if (st != LM_OK) {
        free(L.toks);
        return st;
    }
    *toks = L.toks;
    *ntoks = L.ntoks;
    return LM_OK;
}
