/* Fast loading of tokenizer.json's two large parts. model.vocab (up to ~260k entries) and
 * model.merges (up to ~500k) dominate the file; building cJSON nodes for them costs more
 * than everything else together. A small scanner finds their spans, they are parsed here
 * straight into the vocab and merge tables, and cJSON parses the rest with the two spans
 * blanked out. Every offset is bounds-checked: the input is untrusted. */
#include <stdlib.h>
#include <string.h>

#include "text/tokenizer_impl.h"

typedef struct {
    const char *s;
    size_t n, i;
    const char *what;
} jscan;

static lm_status jerr(const jscan *j, const char *msg) {
    return lm_err(LM_ERR_FORMAT, "%s: %s at byte %zu", j->what, msg, j->i);
}

static void ws(jscan *j) {
    while (j->i < j->n && (j->s[j->i] == ' ' || j->s[j->i] == '\n' || j->s[j->i] == '\r' || j->s[j->i] == '\t'))
        j->i++;
}

/* After a key: the ':' (skipped with the space around it), or an error. */
static lm_status jcolon(jscan *j) {
    ws(j);
    if (j->i >= j->n || j->s[j->i] != ':')
        return jerr(j, "expected ':'");
    j->i++;
    return LM_OK;
}

/* After an element of an object or array: 1 after a ',', 0 after the closing `close` (both
 * consumed), -1 when neither follows (the caller reports where it was). */
static int jnext(jscan *j, char close) {
    ws(j);
    if (j->i < j->n && (j->s[j->i] == ',' || j->s[j->i] == close))
        return j->s[j->i++] == ',';
    return -1;
}

static int hex4(const char *p, uint32_t *v) {
    *v = 0;
    for (int k = 0; k < 4; k++) {
        char c = p[k];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0)
            return 0;
        *v = *v * 16 + (uint32_t)d;
    }
    return 1;
}

/* Parse a JSON string at j->i (the opening quote); its unescaped bytes go to out (when
 * not NULL, cleared first). */
static lm_status jstring(jscan *j, tk_buf *out) {
    if (j->i >= j->n || j->s[j->i] != '"')
        return jerr(j, "expected a string");
    j->i++;
    if (out)
        out->n = 0;
    size_t run = j->i;
    while (j->i < j->n) {
        char c = j->s[j->i];
        if (c == '"') {
            if (out)
                LM_TRY(tk_buf_put(out, j->s + run, j->i - run));
            j->i++;
            return LM_OK;
        }
        if ((unsigned char)c < 0x20)
            return jerr(j, "control character in string");
        if (c != '\\') {
            j->i++;
            continue;
        }
        if (out)
            LM_TRY(tk_buf_put(out, j->s + run, j->i - run));
        if (j->i + 1 >= j->n)
            return jerr(j, "unterminated escape");
        char e = j->s[j->i + 1], ch = 0;
        j->i += 2;
        switch (e) {
        case '"': ch = '"'; break;
        case '\\': ch = '\\'; break;
        case '/': ch = '/'; break;
        case 'b': ch = '\b'; break;
        case 'f': ch = '\f'; break;
        case 'n': ch = '\n'; break;
        case 'r': ch = '\r'; break;
        case 't': ch = '\t'; break;
        case 'u': {
            uint32_t cp, lo;
            if (j->i + 4 > j->n || !hex4(j->s + j->i, &cp))
                return jerr(j, "bad \\u escape");
            j->i += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (j->i + 6 > j->n || j->s[j->i] != '\\' || j->s[j->i + 1] != 'u' || !hex4(j->s + j->i + 2, &lo) ||
                    lo < 0xDC00 || lo > 0xDFFF)
                    return jerr(j, "unpaired surrogate in \\u escape");
                j->i += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                return jerr(j, "unpaired surrogate in \\u escape");
            }
            if (out) {
                char u[4];
                int k = tk_utf8_encode((int32_t)cp, u);
                LM_TRY(tk_buf_put(out, u, (size_t)k));
            }
            run = j->i;
            continue;
        }
        default:
            return jerr(j, "bad escape");
        }
        if (out)
            LM_TRY(tk_buf_put(out, &ch, 1));
        run = j->i;
    }
    return jerr(j, "unterminated string");
}

/* Skip any JSON value (depth-limited). */
static lm_status jskip(jscan *j, int depth) {
    ws(j);
    if (j->i >= j->n)
        return jerr(j, "unexpected end");
    if (depth > 200)
        return jerr(j, "nesting too deep");
    char c = j->s[j->i];
    if (c == '"')
        return jstring(j, NULL);
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        j->i++;
        ws(j);
        if (j->i < j->n && j->s[j->i] == close) {
            j->i++;
            return LM_OK;
        }
        for (;;) {
            if (c == '{') {
                ws(j);
                LM_TRY(jstring(j, NULL));
                LM_TRY(jcolon(j));
            }
            LM_TRY(jskip(j, depth + 1));
            int more = jnext(j, close);
            if (more < 0)
                return jerr(j, "expected ',' or a closing bracket");
            if (!more)
                return LM_OK;
        }
    }
    size_t st = j->i;
    while (j->i < j->n && strchr("+-0123456789.eEtruefalsn", j->s[j->i]) && j->s[j->i])
        j->i++;
    return j->i > st ? LM_OK : jerr(j, "unexpected character");
}

/* Find the spans of model.vocab and model.merges: [start, end) byte offsets, 0/0 when absent. */
static lm_status find_spans(jscan *j, size_t span[2][2]) {
    tk_buf key = {0};
    lm_status st = LM_OK;
    memset(span, 0, 4 * sizeof(size_t));
    ws(j);
    if (j->i >= j->n || j->s[j->i] != '{')
        return jerr(j, "expected a JSON object");
    j->i++;
    for (int level = 0; st == LM_OK;) {
        ws(j);
        if (j->i < j->n && j->s[j->i] == '}') { /* empty object or end of model */
            j->i++;
            if (level == 0)
                break;
            level--;
            goto after_value;
        }
        if ((st = jstring(j, &key)) != LM_OK || (st = jcolon(j)) != LM_OK)
            break;
        ws(j);
        if (level == 0 && key.n == 5 && memcmp(key.p, "model", 5) == 0 && j->i < j->n && j->s[j->i] == '{') {
            j->i++;
            level = 1;
            continue;
        }
        int which = level == 1 ? (key.n == 5 && memcmp(key.p, "vocab", 5) == 0     ? 0
                                  : key.n == 6 && memcmp(key.p, "merges", 6) == 0 ? 1
                                                                                  : -1)
                               : -1;
        size_t start = j->i;
        if ((st = jskip(j, 1)) != LM_OK)
            break;
        if (which >= 0) {
            span[which][0] = start;
            span[which][1] = j->i;
        }
    after_value:;
        int more = jnext(j, '}');
        if (more > 0)
            continue;
        if (more < 0) {
            st = jerr(j, "expected ',' or '}'");
            break;
        }
        if (level == 0)
            break;
        level--;
        goto after_value;
    }
    tk_buf_free(&key);
    return st;
}

/* --- vocab and merges ------------------------------------------------------------------------- */

static lm_status parse_int(jscan *j, int32_t *v) {
    *v = -1;
    ws(j);
    long long x = 0;
    size_t st = j->i;
    while (j->i < j->n && j->s[j->i] >= '0' && j->s[j->i] <= '9' && x <= 0x7ffffffe)
        x = x * 10 + (j->s[j->i++] - '0');
    if (j->i == st || x > 0x7ffffffe || (j->i < j->n && strchr(".eE", j->s[j->i]) && j->s[j->i]))
        return jerr(j, "vocab id is not a non-negative integer");
    *v = (int32_t)x;
    return LM_OK;
}

/* Two passes over the vocab object: count and find the largest id, then insert. */
static lm_status parse_vocab(jscan *j, tk_bpe *bpe) {
    tk_buf key = {0};
    lm_status st = LM_OK;
    size_t start = j->i;
    for (int pass = 0; pass < 2 && st == LM_OK; pass++) {
        int32_t max_id = -1;
        size_t bytes = 0;
        j->i = start;
        ws(j);
        if (j->i >= j->n || j->s[j->i] != '{') {
            st = jerr(j, "model.vocab must be an object");
            break;
        }
        j->i++;
        ws(j);
        if (j->i < j->n && j->s[j->i] == '}') {
            if (pass == 0)
                st = tk_vocab_init(&bpe->vocab, 0, 0);
            break;
        }
        while (st == LM_OK) {
            int32_t id;
            ws(j);
            if ((st = jstring(j, &key)) != LM_OK || (st = jcolon(j)) != LM_OK || (st = parse_int(j, &id)) != LM_OK)
                break;
            if (pass == 0) {
                max_id = id > max_id ? id : max_id;
                bytes += key.n + 1;
            } else if ((st = tk_vocab_set(&bpe->vocab, id, key.p ? key.p : "", key.n)) != LM_OK) {
                st = lm_err_prefix(st, "%s", j->what);
                break;
            }
            int more = jnext(j, '}');
            if (more > 0)
                continue;
            if (more < 0)
                st = jerr(j, "expected ',' or '}' in model.vocab");
            break;
        }
        if (st == LM_OK && pass == 0)
            st = tk_vocab_init(&bpe->vocab, max_id + 1, bytes);
    }
    tk_buf_free(&key);
    return st;
}

static lm_status parse_merges(jscan *j, tk_bpe *bpe) {
    tk_buf a = {0}, b = {0}, tmp = {0};
    lm_status st = LM_OK;
    /* count entries first to size the table: top-level commas + 1 is an upper bound */
    size_t count = 1;
    for (size_t k = j->i; k < j->n; k++)
        count += j->s[k] == ',';
    ws(j);
    if (j->i >= j->n || j->s[j->i] != '[')
        return jerr(j, "model.merges must be an array");
    LM_TRY(tk_merges_init(&bpe->merges, count));
    j->i++;
    ws(j);
    if (j->i < j->n && j->s[j->i] == ']')
        return LM_OK;
    for (int32_t rank = 0; st == LM_OK; rank++) {
        ws(j);
        if (j->i < j->n && j->s[j->i] == '"') {
            if ((st = jstring(j, &a)) != LM_OK)
                break;
            const char *sp = a.p ? memchr(a.p, ' ', a.n) : NULL;
            if (!sp || memchr(sp + 1, ' ', a.n - (size_t)(sp + 1 - a.p))) {
                st = lm_err(LM_ERR_FORMAT, "%s: merge %d is not two tokens separated by one space", j->what,
                            (int)rank);
                break;
            }
            st = tk_bpe_add_merge(bpe, &tmp, a.p, (size_t)(sp - a.p), sp + 1, a.n - (size_t)(sp + 1 - a.p), rank,
                                  j->what);
        } else if (j->i < j->n && j->s[j->i] == '[') {
            j->i++;
            ws(j);
            if ((st = jstring(j, &a)) != LM_OK)
                break;
            ws(j);
            if (j->i >= j->n || j->s[j->i] != ',') {
                st = jerr(j, "a merge pair needs two strings");
                break;
            }
            j->i++;
            ws(j);
            if ((st = jstring(j, &b)) != LM_OK)
                break;
            ws(j);
            if (j->i >= j->n || j->s[j->i] != ']') {
                st = jerr(j, "a merge pair needs exactly two strings");
                break;
            }
            j->i++;
            st = tk_bpe_add_merge(bpe, &tmp, a.p ? a.p : "", a.n, b.p ? b.p : "", b.n, rank, j->what);
        } else {
            st = jerr(j, "a merge must be \"a b\" or [\"a\", \"b\"]");
        }
        if (st != LM_OK)
            break;
        int more = jnext(j, ']');
        if (more > 0)
            continue;
        if (more < 0)
            st = jerr(j, "expected ',' or ']' in model.merges");
        break;
    }
    tk_buf_free(&a);
    tk_buf_free(&b);
    tk_buf_free(&tmp);
    return st;
}

lm_status tk_json_find_model(const char *json, size_t n, const char *what, tk_json_spans *sp, char **rest) {
    jscan j = {json, n, 0, what};
    size_t span[2][2];
    *rest = NULL;
    LM_TRY(find_spans(&j, span));
    memcpy(sp->vocab, span[0], sizeof sp->vocab);
    memcpy(sp->merges, span[1], sizeof sp->merges);
    char *r = malloc(n + 1);
    if (!r)
        return lm_err(LM_ERR_NOMEM, "%s: out of memory", what);
    memcpy(r, json, n);
    r[n] = 0;
    for (int k = 0; k < 2; k++) {
        if (span[k][1] < span[k][0] + 2) /* absent, or not an object/array: left for the checks */
            continue;
        char open = r[span[k][0]], close = open == '{' ? '}' : ']';
        if (open != '{' && open != '[')
            continue;
        memset(r + span[k][0], ' ', span[k][1] - span[k][0]);
        r[span[k][0]] = open;
        r[span[k][0] + 1] = close;
    }
    *rest = r;
    return LM_OK;
}

lm_status tk_json_load_vocab(const char *json, const tk_json_spans *sp, const char *what, tk_bpe *bpe) {
    if (!sp->vocab[1])
        return lm_err(LM_ERR_MISSING, "%s: model.vocab is missing", what);
    jscan v = {json, sp->vocab[1], sp->vocab[0], what};
    return parse_vocab(&v, bpe);
}

lm_status tk_json_load_merges(const char *json, const tk_json_spans *sp, const char *what, tk_bpe *bpe) {
    if (!sp->merges[1])
        return tk_merges_init(&bpe->merges, 0);
    jscan m = {json, sp->merges[1], sp->merges[0], what};
    return parse_merges(&m, bpe);
}
