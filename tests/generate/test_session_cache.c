/* Sessions with the KV-cache options on the bundled model (issue 6): a loaded prompt cache
 * continues exactly like the plain path, --max-kv-size is exact until the cache fills and then
 * keeps generating, a quantized KV cache stays close (measured difference printed), and a new
 * prompt that shares a prefix with the cached one evaluates only the rest. */
#include <math.h>
#include <unistd.h>

#include "lmcore.h"
#include "test_util.h"

#define MAXT 128

typedef struct rec {
    int32_t ids[MAXT];
    float lps[MAXT];
    int n;
} rec;

static int on_token(void *user, const char *t, size_t len, int32_t tok, float lp) {
    rec *r = user;
    if (tok >= 0 && r->n < MAXT) {
        r->ids[r->n] = tok;
        r->lps[r->n] = lp;
        r->n++;
    }
    return 0;
}

/* Generate in a new session; `prefix` > 0 first evaluates ids[0..prefix) alone (as the cached
 * prompt was), so the two paths chunk the prompt the same way. */
static lm_status gen_chunked(lm_llm *llm, const lm_session_params *sp, const int32_t *ids, int n, int max_tokens,
                             int prefix, const char *load, const char *save, rec *r, lm_gen_result *res) {
    lm_session *s = NULL;
    lm_status st = lm_session_new(llm, sp, &s);
    if (st == LM_OK && load)
        st = lm_session_load(s, load);
    if (st == LM_OK && prefix > 0) {
        lm_gen_params p0 = lm_gen_default_params();
        p0.max_tokens = 0;
        st = lm_session_generate(s, ids, prefix, &p0, NULL);
    }
    lm_gen_params p = lm_gen_default_params();
    p.max_tokens = max_tokens;
    p.logprobs = 1;
    p.on_token = on_token;
    p.user = r;
    memset(r, 0, sizeof *r);
    res->size = sizeof *res;
    if (st == LM_OK)
        st = lm_session_generate(s, ids, n, &p, res);
    if (st == LM_OK && save)
        st = lm_session_save(s, save);
    lm_session_free(s);
    return st;
}

static lm_status gen(lm_llm *llm, const lm_session_params *sp, const int32_t *ids, int n, int max_tokens,
                     const char *load, const char *save, rec *r, lm_gen_result *res) {
    return gen_chunked(llm, sp, ids, n, max_tokens, 0, load, save, r, res);
}

int main(void) {
    char dir[1024], path[128];
    const char *src = getenv("LMCORE_SRC");
    snprintf(dir, sizeof dir, "%s/models/default", src ? src : ".");
    snprintf(path, sizeof path, "/tmp/lmcore_session_%d.safetensors", (int)getpid());
    lm_llm *llm;
    if (lm_llm_load(dir, NULL, &llm) != LM_OK) {
        CHECKF(0, "%s", lm_last_error());
        return test_done("session_cache");
    }
    int32_t *ids = NULL;
    int n = 0;
    const char *text = "Return the number of elements in the array, counting";
    CHECK(lm_llm_encode_raw(llm, text, strlen(text), &ids, &n) == LM_OK && n > 6);
    lm_session_params plain = lm_session_default_params();
    rec a, b;
    lm_gen_result ra, rb;
    CHECK(gen(llm, &plain, ids, n, 40, NULL, NULL, &a, &ra) == LM_OK && a.n == 40);

    /* prompt cache: the first 6 prompt tokens cached and saved, then loaded and continued; the
     * plain path evaluates the same 6 tokens first in one session (prefill results depend on how
     * a prompt is chunked, by float rounding) */
    rec c, p6;
    lm_gen_result rc, r6;
    CHECK(gen(llm, &plain, ids, 6, 0, NULL, path, &c, &rc) == LM_OK);
    CHECK(gen_chunked(llm, &plain, ids, n, 40, 6, NULL, NULL, &p6, &r6) == LM_OK);
    CHECK(gen(llm, &plain, ids, n, 40, path, NULL, &b, &rb) == LM_OK);
    CHECK(rb.prompt_tokens_reused == 6 && b.n == p6.n);
    CHECKF(memcmp(p6.ids, b.ids, sizeof b.ids[0] * (size_t)b.n) == 0 && memcmp(p6.lps, b.lps, sizeof b.lps[0] * (size_t)b.n) == 0,
           "a loaded prompt cache must continue exactly like the plain path");
    printf("  prompt cache: %d cached tokens reused, 40 generated tokens and logprobs identical\n",
           rb.prompt_tokens_reused);
    unlink(path);

    /* max_kv_size: identical while the sequence fits, then it keeps going past the cache */
    lm_session_params rot = plain;
    rot.max_kv_size = n + 40 + 1;
    CHECK(gen(llm, &rot, ids, n, 40, NULL, NULL, &b, &rb) == LM_OK);
    CHECK(b.n == a.n && memcmp(a.ids, b.ids, sizeof a.ids[0] * (size_t)a.n) == 0);
    rot.max_kv_size = 16;
    rot.n_ctx = 16; /* the conversation may outgrow the context with a rotating cache */
    CHECK(gen(llm, &rot, ids, n, 100, NULL, NULL, &b, &rb) == LM_OK);
    CHECKF(b.n == 100 && rb.finish_reason == LM_FINISH_LENGTH, "max_kv_size 16: %d tokens, finish %s", b.n,
           lm_finish_reason_str(rb.finish_reason));
    int same = 0;
    while (same < a.n && a.ids[same] == b.ids[same])
        same++;
    printf("  max_kv_size: exact while it fits; with 16 tokens 100 generated, first %d equal to the plain path\n",
           same);

    /* quantized KV cache from the start: close to the plain path */
    for (int bits = 8; bits >= 4; bits -= 4) {
        lm_session_params q = plain;
        q.kv_bits = bits;
        q.kv_group_size = 32;
        q.quantized_kv_start = 0;
        CHECK(gen(llm, &q, ids, n, 40, NULL, NULL, &b, &rb) == LM_OK);
        same = 0;
        double dlp = 0;
        while (same < a.n && a.ids[same] == b.ids[same]) {
            double d = fabs((double)a.lps[same] - b.lps[same]);
            dlp = d > dlp ? d : dlp;
            same++;
        }
        printf("  kv_bits %d: first %d of 40 greedy tokens identical, max |logprob diff| over them %.4f\n", bits,
               same, dlp);
        if (bits == 8)
            CHECKF(same >= 10 && dlp < 0.1, "8-bit KV cache too far from the plain path (%d tokens, %g)", same, dlp);
    }
    lm_free_tokens(ids);
    lm_llm_free(llm);
    return test_done("session_cache");
}
