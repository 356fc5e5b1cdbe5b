/* Unit tests of the tokenizer pipeline on small hand-written tokenizer.json files (each
 * component and rule with known answers), error handling, the API contracts, and the CLI. */
#include <signal.h>
#include <sys/wait.h>

#include "test_util.h"
#include "text/tok_common.h"

static lm_tokenizer *load(const char *json) {
    lm_tokenizer *t = NULL;
    lm_status s = lm_tokenizer_load_json(json, strlen(json), NULL, 0, "unit.json", &t);
    CHECKF(s == LM_OK, "load: %s", lm_last_error());
    return t;
}

/* Encode and compare with an expected list (terminated by -1). */
static void expect(lm_tokenizer *t, const char *text, int special, const int32_t *want) {
    int n, nw = 0;
    while (want[nw] >= 0)
        nw++;
    int32_t *got = t ? tok_encode(t, text, strlen(text), special, &n) : NULL;
    int ok = got && tok_ids_eq(got, n, want, nw);
    CHECKF(ok, "encode \"%s\"", text);
    if (!ok && got)
        tok_print_ids("got", got, n);
    free(got);
}

static void expect_dec(lm_tokenizer *t, const int32_t *ids, int n, const char *want) {
    char *d = t ? tok_decode(t, ids, n, 0, NULL) : NULL;
    CHECKF(d && strcmp(d, want) == 0, "decode gave \"%s\", want \"%s\"", d ? d : "(null)", want);
    free(d);
}

#define IDS(...) ((const int32_t[]){__VA_ARGS__, -1})
#define NONE ((const int32_t[]){-1})

/* vocab shared by the split tests: a b - a- -b -- ' ' */
#define SPLIT_VOCAB "\"vocab\":{\"a\":0,\"b\":1,\"-\":2,\"a-\":3,\"-b\":4,\"--\":5,\" \":6}"

static void test_split_behaviors(void) {
    static const struct {
        const char *behavior, *text;
        int32_t want[6];
    } cases[] = {
        {"Isolated", "a--b", {0, 2, 2, 1, -1}},       {"Removed", "a-b", {0, 1, -1}},
        {"MergedWithPrevious", "a-b", {3, 1, -1}},    {"MergedWithNext", "a-b", {0, 4, -1}},
        {"Contiguous", "a--b", {0, 5, 1, -1}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char json[1024];
        snprintf(json, sizeof json,
                 "{\"model\":{\"type\":\"BPE\",\"ignore_merges\":true," SPLIT_VOCAB ",\"merges\":[]},"
                 "\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"-\"},\"behavior\":\"%s\"}}",
                 cases[i].behavior);
        lm_tokenizer *t = load(json);
        expect(t, cases[i].text, 0, cases[i].want);
        lm_tokenizer_free(t);
    }
}

static void test_bpe_merges(void) {
    /* rank order decides: "b c" (rank 0) before "a b" (rank 1); both JSON merge forms */
    lm_tokenizer *t = load("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"c\":2,\"ab\":3,\"bc\":4,\"abc\":5},"
                           "\"merges\":[[\"b\",\"c\"],\"a b\",\"a bc\"]}}");
    expect(t, "abc", 0, IDS(5));
    expect(t, "abab", 0, IDS(3, 3));
    expect(t, "cab", 0, IDS(2, 3));
    lm_tokenizer_free(t);
    /* ignore_merges: a whole word in the vocab wins even without a merge path */
    t = load("{\"model\":{\"type\":\"BPE\",\"ignore_merges\":true,\"vocab\":{\"a\":0,\"b\":1,\"ba\":2},\"merges\":[]}}");
    expect(t, "ba", 0, IDS(2));
    lm_tokenizer_free(t);
    /* byte fallback and fused unk */
    t = load("{\"model\":{\"type\":\"BPE\",\"byte_fallback\":true,\"unk_token\":\"<unk>\",\"fuse_unk\":true,"
             "\"vocab\":{\"<unk>\":0,\"<0xC3>\":1,\"<0xA9>\":2,\"x\":3},\"merges\":[]},"
             "\"decoder\":{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"}]}}");
    expect(t, "x\xC3\xA9x", 0, IDS(3, 1, 2, 3));
    expect(t, "x\xE4\xB8\xAD\xE4\xB8\xADx", 0, IDS(3, 0, 3)); /* no byte tokens for these: one fused unk */
    expect_dec(t, IDS(3, 1, 2), 3, "x\xC3\xA9");
    expect_dec(t, IDS(1, 3), 2, "\xEF\xBF\xBDx"); /* an invalid byte run: one U+FFFD per byte */
    lm_tokenizer_free(t);
}

static void test_added_tokens(void) {
#define ADDED_FMT                                                                                             \
    "{\"model\":{\"type\":\"BPE\",\"ignore_merges\":true,\"unk_token\":\"<unk>\",\"fuse_unk\":true,"              \
    "\"vocab\":{\"a\":0,\"b\":1,\" \":2,\"<unk>\":3},\"merges\":[]},"                                               \
    "\"added_tokens\":[{\"id\":4,\"content\":\"<x>\",\"special\":true,\"normalized\":false,%s}]}"
    char json[1024];
    snprintf(json, sizeof json, ADDED_FMT, "\"lstrip\":true");
    lm_tokenizer *t = load(json);
    expect(t, "a  <x> b", 0, IDS(0, 4, 2, 1));
    lm_tokenizer_free(t);
    snprintf(json, sizeof json, ADDED_FMT, "\"rstrip\":true");
    t = load(json);
    expect(t, "a <x>  b", 0, IDS(0, 2, 4, 1));
    CHECK(lm_tokenizer_is_special(t, 4) && !lm_tokenizer_is_special(t, 0));
    CHECK(lm_tokenizer_token_to_id(t, "<x>", 3) == 4 && lm_tokenizer_token_to_id(t, "zz", 2) == -1);
    lm_tokenizer_free(t);
    snprintf(json, sizeof json, ADDED_FMT, "\"single_word\":true");
    t = load(json);
    expect(t, "a<x>", 0, IDS(0, 3));      /* inside a word: not the added token */
    expect(t, "a <x> b", 0, IDS(0, 2, 4, 2, 1));
    lm_tokenizer_free(t);
}

static void test_normalizers_and_metaspace(void) {
    /* NFKC, Lowercase, Strip, Replace, Prepend in one Sequence */
    lm_tokenizer *t = load(
        "{\"model\":{\"type\":\"BPE\",\"ignore_merges\":true,\"vocab\":{\"\\u2581ab\\u2581c\":0,\"a\":1},\"merges\":[]},"
        "\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFKC\"},{\"type\":\"Lowercase\"},"
        "{\"type\":\"Strip\",\"strip_left\":true,\"strip_right\":true},"
        "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\\u2581\"},"
        "{\"type\":\"Prepend\",\"prepend\":\"\\u2581\"}]}}");
    expect(t, "  \xEF\xBC\xA1" "B C\t ", 0, IDS(0)); /* fullwidth A */
    lm_tokenizer_free(t);
    /* Metaspace: prepend_scheme first only prepends at the start of the input */
#define META_FMT                                                                                              \
                      "{\"model\":{\"type\":\"BPE\",\"ignore_merges\":true,"                                          \
                      "\"vocab\":{\"\\u2581a\":0,\"a\":1,\"\\u2581b\":2},\"merges\":[]},"                          \
                      "\"added_tokens\":[{\"id\":3,\"content\":\"<x>\",\"special\":true,\"normalized\":false}],"  \
                      "\"pre_tokenizer\":{\"type\":\"Metaspace\",\"replacement\":\"\\u2581\",\"prepend_scheme\":\"%s\"," \
                      "\"split\":true},\"decoder\":{\"type\":\"Metaspace\",\"replacement\":\"\\u2581\","         \
                      "\"prepend_scheme\":\"%s\",\"split\":true}}"
    char json[1024];
    snprintf(json, sizeof json, META_FMT, "first", "first");
    t = load(json);
    expect(t, "a b", 0, IDS(0, 2));
    expect(t, "<x>a", 0, IDS(3, 1));
    expect_dec(t, IDS(0, 2), 2, "a b");
    lm_tokenizer_free(t);
    snprintf(json, sizeof json, META_FMT, "always", "always");
    t = load(json);
    expect(t, "<x>a", 0, IDS(3, 0));
    lm_tokenizer_free(t);
    /* Digits, individual */
    t = load("{\"model\":{\"type\":\"BPE\",\"ignore_merges\":true,\"vocab\":{\"1\":0,\"2\":1,\"12\":2,\"x\":3},"
             "\"merges\":[]},\"pre_tokenizer\":{\"type\":\"Digits\",\"individual_digits\":true}}");
    expect(t, "x12", 0, IDS(3, 0, 1));
    lm_tokenizer_free(t);
}

static void test_post_processor(void) {
    lm_tokenizer *t = load("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"<s>\":1,\"</s>\":2},\"merges\":[]},"
                           "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":["
                           "{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}},"
                           "{\"SpecialToken\":{\"id\":\"</s>\",\"type_id\":0}}],\"special_tokens\":{"
                           "\"<s>\":{\"id\":\"<s>\",\"ids\":[1],\"tokens\":[\"<s>\"]},"
                           "\"</s>\":{\"id\":\"</s>\",\"ids\":[2],\"tokens\":[\"</s>\"]}}}}");
    expect(t, "aa", 1, IDS(1, 0, 0, 2));
    expect(t, "aa", 0, IDS(0, 0));
    expect(t, "", 1, IDS(1, 2));
    CHECK(lm_tokenizer_bos(t) == 1); /* without tokenizer_config.json: the template's first token */
    /* the llama_tokenize contract: negated size when cap is too small */
    int32_t ids[2], n = 0;
    CHECK(lm_tokenizer_encode(t, "aa", 2, 1, ids, 2, &n) == LM_OK && n == -4);
    CHECK(lm_tokenizer_encode(t, "aa", 2, 0, ids, 2, &n) == LM_OK && n == 2 && ids[0] == 0);
    /* decode truncation: full length reported, buffer NUL-terminated */
    char buf[3];
    size_t len = 0;
    CHECK(lm_tokenizer_decode(t, IDS(0, 0, 0, 0), 4, 0, buf, sizeof buf, &len) == LM_OK && len == 7 &&
          strcmp(buf, "a ") == 0); /* no decoder: tokens joined by spaces */
    lm_tokenizer_free(t);
}

static void test_errors(void) {
    static const struct {
        const char *json, *needle;
        lm_status code;
    } cases[] = {
        {"{\"model\":{\"type\":\"Unigram\",\"vocab\":[[\"a\",0.0]]}}", "Unigram", LM_ERR_UNSUPPORTED},
        {"{\"model\":{\"type\":\"WordPiece\",\"vocab\":{\"a\":0}}}", "WordPiece", LM_ERR_UNSUPPORTED},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"a b\"]}}", "not in the vocab", LM_ERR_FORMAT},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":0}}}", "twice", LM_ERR_FORMAT},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":-1}}}", "vocab id", LM_ERR_FORMAT},
        {"{\"model\":{\"type\":\"BPE\"}}", "vocab is missing", LM_ERR_MISSING},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}", "byte", LM_ERR_FORMAT},
        {"[1, 2]", "object", LM_ERR_FORMAT},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{}},\"normalizer\":{\"type\":\"Nope\"}}", "Nope", LM_ERR_UNSUPPORTED},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{}},\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(\"}}}",
         "regex", LM_ERR_FORMAT},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        lm_tokenizer *t = (lm_tokenizer *)1;
        lm_status s = lm_tokenizer_load_json(cases[i].json, strlen(cases[i].json), NULL, 0, "bad.json", &t);
        CHECKF(s == cases[i].code && t == NULL && strstr(lm_last_error(), cases[i].needle),
               "case %zu: status %d, message \"%s\"", i, s, lm_last_error());
    }
    lm_tokenizer *t = load("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}");
    int32_t ids[8], n = 5;
    lm_status s = lm_tokenizer_encode(t, "a\xC3(", 3, 0, ids, 8, &n);
    CHECKF(s == LM_ERR_INVALID_ARG && n == 0 && strstr(lm_last_error(), "UTF-8") && strstr(lm_last_error(), "byte 1"),
           "invalid UTF-8: %d \"%s\"", s, lm_last_error());
    lm_tokenizer_free(t);
    CHECK(lm_tokenizer_load("/nonexistent-dir", &t) == LM_ERR_IO && t == NULL);
    lm_tokenizer_free(NULL);
}

/* Real tokenizers: special ids from tokenizer_config.json, lookups. */
static void test_real_ids(void) {
    char dir[1024];
    lm_tokenizer *t = NULL;
    if (lm_tokenizer_load(tok_dir(dir, sizeof dir, "llama3"), &t) == LM_OK) {
        CHECK(lm_tokenizer_bos(t) == 128000 && lm_tokenizer_eos(t) == 128001);
        CHECK(lm_tokenizer_vocab_size(t) == 128256);
        size_t len = 0;
        const char *s = lm_tokenizer_id_to_token(t, 9906, &len);
        CHECK(s && len == 5 && memcmp(s, "Hello", 5) == 0);
        CHECK(lm_tokenizer_is_special(t, 128000) && !lm_tokenizer_is_special(t, 9906));
        lm_tokenizer_free(t);
    } else {
        CHECKF(0, "llama3: %s", lm_last_error());
    }
    if (lm_tokenizer_load(tok_dir(dir, sizeof dir, "gemma3"), &t) == LM_OK) {
        CHECK(lm_tokenizer_bos(t) == 2 && lm_tokenizer_eos(t) == 106);
        lm_tokenizer_free(t);
    } else {
        CHECKF(0, "gemma3: %s", lm_last_error());
    }
}

/* Run the CLI with stdin text; returns the exit code and stdout/stderr in out/err. */
static int run_cli(const char *args, const char *in, size_t in_len, char *out, size_t cap, char *err, size_t ecap) {
    const char *cli = getenv("LMCORE_CLI");
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "printf '' > /dev/null; %s %s > cli_out.txt 2> cli_err.txt", cli ? cli : "lmcore", args);
    FILE *p = popen(cmd, "w");
    if (!p)
        return -1;
    fwrite(in, 1, in_len, p);
    int st = pclose(p);
    FILE *f = fopen("cli_out.txt", "rb");
    size_t n = f ? fread(out, 1, cap - 1, f) : 0;
    out[n] = 0;
    if (f)
        fclose(f);
    f = fopen("cli_err.txt", "rb");
    n = f ? fread(err, 1, ecap - 1, f) : 0;
    err[n] = 0;
    if (f)
        fclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_cli(void) {
    char dir[1024], args[1200], out[4096], err[1024];
    tok_dir(dir, sizeof dir, "gemma3");
    snprintf(args, sizeof args, "tokenize -t '%s'", dir);
    CHECK(run_cli(args, "Hello, world!", 13, out, sizeof out, err, sizeof err) == 0 &&
          strcmp(out, "[9259, 236764, 1902, 236888]\n") == 0);
    snprintf(args, sizeof args, "tokenize -t '%s' --special", dir);
    CHECK(run_cli(args, "Hello, world!", 13, out, sizeof out, err, sizeof err) == 0 &&
          strcmp(out, "[2, 9259, 236764, 1902, 236888]\n") == 0);
    snprintf(args, sizeof args, "detokenize -t '%s'", dir);
    CHECK(run_cli(args, "[2, 9259, 236764, 1902, 236888]", 31, out, sizeof out, err, sizeof err) == 0 &&
          strcmp(out, "<bos>Hello, world!") == 0);
    snprintf(args, sizeof args, "detokenize -t '%s' --skip-special", dir);
    CHECK(run_cli(args, "[2, 9259]", 9, out, sizeof out, err, sizeof err) == 0 && strcmp(out, "Hello") == 0);
    /* bad input: one-line error, non-zero exit */
    static const struct {
        const char *cmd, *extra, *in; /* cmd == NULL: no -t */
    } bad[] = {
        {"tokenize", "", "bad \xFF utf8"}, {"detokenize", "", "[1, \"x\"]"}, {"detokenize", "", "not json"},
        {"detokenize", "", "[999999999]"}, {NULL, "tokenize", "x"},             {NULL, "tokenize -t /nonexistent", "x"},
        {"tokenize", " --bogus", "x"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (bad[i].cmd)
            snprintf(args, sizeof args, "%s -t '%s'%s", bad[i].cmd, dir, bad[i].extra);
        else
            snprintf(args, sizeof args, "%s", bad[i].extra);
        int rc = run_cli(args, bad[i].in, strlen(bad[i].in), out, sizeof out, err, sizeof err);
        char *nl = strchr(err, '\n');
        CHECKF(rc != 0 && strncmp(err, "lmcore ", 7) == 0 && nl && nl[1] == 0, "bad case %zu: rc %d, stderr \"%s\"", i,
               rc, err);
    }
    CHECK(run_cli("tokenize --help", "", 0, out, sizeof out, err, sizeof err) == 0 && strstr(out, "usage"));
    CHECK(run_cli("detokenize --help", "", 0, out, sizeof out, err, sizeof err) == 0 && strstr(out, "usage"));
}

int main(void) {
    signal(SIGPIPE, SIG_IGN); /* the CLI may exit before reading all of stdin */
    test_split_behaviors();
    test_bpe_merges();
    test_added_tokens();
    test_normalizers_and_metaspace();
    test_post_processor();
    test_errors();
    test_real_ids();
    test_cli();
    return test_done("test_tokenizer_unit");
}
