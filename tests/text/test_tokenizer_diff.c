/* Differential test against the Hugging Face `tokenizers` Node binding: gen_tokenizer_diff.js
 * (run by ctest first, see tests.cmake) writes generated strings and random id sequences with
 * HF's ids and texts to $LMCORE_TOK_DIFF (default ./tokenizer_diff); every one must agree. */
#include "test_util.h"
#include "text/tok_common.h"

static int report_limit = 8;

static void run_one(const char *dir_diff, const char *name) {
    char dir[1024], path[1024];
    tok_dir(dir, sizeof dir, name);
    snprintf(path, sizeof path, "%s/%s.json", dir_diff, name);
    lm_tokenizer *tok = NULL;
    CHECKF(lm_tokenizer_load(dir, &tok) == LM_OK, "%s: %s", name, lm_last_error());
    cJSON *j = tok_read_json(path);
    CHECKF(j != NULL, "cannot read %s (the gen_tokenizer_diff.js ctest writes it; needs node + npm install)", path);
    if (!tok || !j) {
        lm_tokenizer_free(tok);
        cJSON_Delete(j);
        return;
    }
    int n = 0, ok_ids = 0, ok_sp = 0, ok_dec = 0, n_seq = 0, ok_seq = 0;
    const cJSON *cases = cJSON_GetObjectItem(j, "cases");
    for (const cJSON *c = cases ? cases->child : NULL; c; c = c->next, n++) {
        tok_case r;
        tok_case_run(tok, c, &r);
        int d = r.decoded && r.streamed;
        ok_ids += r.ids;
        ok_sp += r.special;
        ok_dec += d;
        if ((!r.ids || !r.special || !d) && report_limit-- > 0) {
            fprintf(stderr, "%s: mismatch (ids %d, special %d, decode %d) for text \"%s\"\n", name, r.ids, r.special, d,
                    r.text);
            tok_print_ids("want", r.want, r.nw);
            if (r.got)
                tok_print_ids("got ", r.got, r.n1);
            if (!d)
                fprintf(stderr, "  decoded \"%s\" streamed \"%s\" want \"%s\"\n", r.dec ? r.dec : "", r.str ? r.str : "",
                        r.want_dec);
        }
        tok_case_free(&r);
    }
    const cJSON *seqs = cJSON_GetObjectItem(j, "id_cases");
    for (const cJSON *c = seqs ? seqs->child : NULL; c; c = c->next, n_seq++) {
        int ni, split1, split2;
        int32_t *ids = tok_json_ids(cJSON_GetObjectItem(c, "ids"), &ni);
        const char *w1 = cJSON_GetObjectItem(c, "decoded")->valuestring;
        const char *w2 = cJSON_GetObjectItem(c, "decoded_skip")->valuestring;
        char *d1 = tok_decode(tok, ids, ni, 0, NULL), *d2 = tok_decode(tok, ids, ni, 1, NULL);
        char *s1 = tok_stream(tok, ids, ni, 0, &split1), *s2 = tok_stream(tok, ids, ni, 1, &split2);
        int good = d1 && d2 && s1 && s2 && !strcmp(d1, w1) && !strcmp(d2, w2) && !strcmp(s1, w1) && !strcmp(s2, w2);
        ok_seq += good;
        if (!good && report_limit-- > 0) {
            tok_print_ids("ids", ids, ni);
            fprintf(stderr, "  %s: decoded \"%s\" / \"%s\", streamed \"%s\" / \"%s\", want \"%s\" / \"%s\"\n", name,
                    d1 ? d1 : "", d2 ? d2 : "", s1 ? s1 : "", s2 ? s2 : "", w1, w2);
        }
        free(ids);
        free(d1);
        free(d2);
        free(s1);
        free(s2);
    }
    CHECKF(n >= 1000, "%s: only %d generated strings", name, n);
    CHECKF(ok_ids == n, "%s: ids differ on %d of %d strings", name, n - ok_ids, n);
    CHECKF(ok_sp == n, "%s: ids_with_special differ on %d of %d strings", name, n - ok_sp, n);
    CHECKF(ok_dec == n, "%s: decode/stream differ on %d of %d strings", name, n - ok_dec, n);
    CHECKF(ok_seq == n_seq && n_seq > 0, "%s: decode of random ids differs on %d of %d", name, n_seq - ok_seq, n_seq);
    printf("%-12s strings: ids %d/%d, with special %d/%d, decode+stream %d/%d; random id sequences %d/%d\n", name,
           ok_ids, n, ok_sp, n, ok_dec, n, ok_seq, n_seq);
    cJSON_Delete(j);
    lm_tokenizer_free(tok);
}

int main(void) {
    const char *d = getenv("LMCORE_TOK_DIFF");
    if (!d || !*d)
        d = "tokenizer_diff";
    for (size_t i = 0; i < TOK_N_NAMES; i++)
        run_one(d, TOK_NAMES[i]);
    return test_done("test_tokenizer_diff");
}
