/* lmcore tokenize / detokenize: stdin text <-> JSON array of ids, through tokenizer.json. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "lmcore.h"

typedef struct {
    const char *dir;
    int special; /* tokenize: add the post-processor's tokens; detokenize: skip special tokens */
} tok_args;

/* Returns 0 on success, 1 on a usage error (reported), 2 after printing help. */
static int parse_args(const char *cmd, int argc, char **argv, const char *flag, const char *help, tok_args *a) {
    memset(a, 0, sizeof *a);
    for (int i = 1; i < argc; i++) {
        if (cli_is(argv[i], "--help", "-h")) {
            fputs(help, stdout);
            return 2;
        } else if (cli_is(argv[i], "-t", "--tokenizer")) {
            if (i + 1 >= argc) {
                cli_fail(cmd, "-t needs a directory");
                return 1;
            }
            a->dir = argv[++i];
        } else if (strcmp(argv[i], flag) == 0) {
            a->special = 1;
        } else {
            char msg[256];
            snprintf(msg, sizeof msg, "unknown option '%.200s' (see --help)", argv[i]);
            cli_fail(cmd, msg);
            return 1;
        }
    }
    if (!a->dir) {
        cli_fail(cmd, "missing -t DIR (a directory with tokenizer.json)");
        return 1;
    }
    return 0;
}

static const char TOKENIZE_HELP[] =
    "usage: lmcore tokenize -t DIR [--special]\n"
    "Reads UTF-8 text on stdin (all of it, byte for byte) and prints a JSON array of token ids.\n"
    "  -t, --tokenizer DIR  directory with tokenizer.json (and optionally tokenizer_config.json)\n"
    "  --special            add the special tokens of tokenizer.json's post-processor (BOS/EOS)\n";

int cmd_tokenize(int argc, char **argv) {
    tok_args a;
    int r = parse_args("tokenize", argc, argv, "--special", TOKENIZE_HELP, &a);
    if (r)
        return r == 2 ? 0 : 1;
    lm_tokenizer *tok = NULL;
    if (lm_tokenizer_load(a.dir, &tok) != LM_OK)
        return cli_fail("tokenize", NULL);
    size_t len = 0;
    char *text = cli_read_stdin(&len);
    if (!text) {
        lm_tokenizer_free(tok);
        return cli_fail("tokenize", "cannot read stdin");
    }
    int32_t n = 0, cap = 0;
    int32_t *ids = NULL;
    lm_status s = lm_tokenizer_encode(tok, text, len, a.special, NULL, 0, &n);
    if (s == LM_OK && n < 0) {
        cap = -n;
        ids = malloc((size_t)cap * sizeof *ids);
        s = ids ? lm_tokenizer_encode(tok, text, len, a.special, ids, cap, &n) : LM_ERR_NOMEM;
    }
    int rc = 0;
    if (s != LM_OK) {
        rc = cli_fail("tokenize", s == LM_ERR_NOMEM ? "out of memory" : NULL);
    } else {
        putchar('[');
        for (int32_t i = 0; i < n; i++)
            printf(i ? ", %d" : "%d", (int)ids[i]);
        puts("]");
    }
    free(ids);
    free(text);
    lm_tokenizer_free(tok);
    return rc;
}

static const char DETOKENIZE_HELP[] =
    "usage: lmcore detokenize -t DIR [--skip-special]\n"
    "Reads a JSON array of token ids on stdin and prints the decoded text (no newline added).\n"
    "  -t, --tokenizer DIR  directory with tokenizer.json (and optionally tokenizer_config.json)\n"
    "  --skip-special       leave special tokens (BOS, EOS, chat markers) out of the text\n";

/* Parse a JSON array of non-negative integer ids. */
static int parse_ids(const char *text, size_t len, int32_t **ids, size_t *n, char *err, size_t errcap) {
    cJSON *j = cJSON_ParseWithLength(text, len);
    *ids = NULL;
    *n = 0;
    if (!j || !cJSON_IsArray(j)) {
        snprintf(err, errcap, "stdin is not a JSON array of token ids");
        cJSON_Delete(j);
        return 1;
    }
    size_t k = (size_t)cJSON_GetArraySize(j), i = 0;
    *ids = malloc((k ? k : 1) * sizeof **ids);
    if (!*ids) {
        snprintf(err, errcap, "out of memory");
        cJSON_Delete(j);
        return 1;
    }
    for (const cJSON *e = j->child; e; e = e->next, i++) {
        double v = e->valuedouble;
        if (!cJSON_IsNumber(e) || v < 0 || v > 2147483647.0 || v != (double)(long long)v) {
            snprintf(err, errcap, "element %zu of the id array is not a non-negative integer", i);
            cJSON_Delete(j);
            free(*ids);
            *ids = NULL;
            return 1;
        }
        (*ids)[i] = (int32_t)v;
    }
    *n = k;
    cJSON_Delete(j);
    return 0;
}

int cmd_detokenize(int argc, char **argv) {
    tok_args a;
    int r = parse_args("detokenize", argc, argv, "--skip-special", DETOKENIZE_HELP, &a);
    if (r)
        return r == 2 ? 0 : 1;
    size_t len = 0, n = 0;
    char *text = cli_read_stdin(&len);
    if (!text)
        return cli_fail("detokenize", "cannot read stdin");
    int32_t *ids = NULL;
    char err[160];
    if (parse_ids(text, len, &ids, &n, err, sizeof err)) {
        free(text);
        return cli_fail("detokenize", err);
    }
    free(text);
    lm_tokenizer *tok = NULL;
    if (lm_tokenizer_load(a.dir, &tok) != LM_OK) {
        free(ids);
        return cli_fail("detokenize", NULL);
    }
    for (size_t i = 0; i < n; i++) {
        if (ids[i] >= lm_tokenizer_vocab_size(tok)) {
            snprintf(err, sizeof err, "id %d is outside the vocabulary (size %d)", (int)ids[i],
                     (int)lm_tokenizer_vocab_size(tok));
            free(ids);
            lm_tokenizer_free(tok);
            return cli_fail("detokenize", err);
        }
    }
    size_t need = 0;
    int rc = 0;
    char *out = NULL;
    lm_status s = lm_tokenizer_decode(tok, ids, n, a.special, NULL, 0, &need);
    if (s == LM_OK) {
        out = malloc(need + 1);
        s = out ? lm_tokenizer_decode(tok, ids, n, a.special, out, need + 1, &need) : LM_ERR_NOMEM;
    }
    if (s != LM_OK)
        rc = cli_fail("detokenize", s == LM_ERR_NOMEM ? "out of memory" : NULL);
    else
        fwrite(out, 1, need, stdout);
    free(out);
    free(ids);
    lm_tokenizer_free(tok);
    return rc;
}
