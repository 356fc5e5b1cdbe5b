/* libFuzzer target for the tokenizer. The first input byte picks a mode:
 *   even: the rest is a tokenizer.json to load (and, if it loads, to encode/decode with);
 *   odd:  the rest is text to encode with a fixed small tokenizer that exercises every
 *         stage (added tokens with lstrip/rstrip/single_word, normalizers, Split/ByteLevel/
 *         Metaspace/Digits pre-tokenizers, BPE with byte fallback, decoders), and the ids
 *         are decoded and streamed back. Nothing may crash, leak or read out of bounds. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lmcore.h"

static const char FIXED[] =
    "{\"added_tokens\":[{\"id\":20,\"content\":\"<s>\",\"special\":true,\"normalized\":false,\"lstrip\":true},"
    "{\"id\":21,\"content\":\"ab\",\"special\":false,\"normalized\":true,\"single_word\":true,\"rstrip\":true}],"
    "\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFKC\"},{\"type\":\"Lowercase\"},"
    "{\"type\":\"Replace\",\"pattern\":{\"Regex\":\"\\\\s+\"},\"content\":\" \"},{\"type\":\"Prepend\",\"prepend\":\"x\"}]},"
    "\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Digits\",\"individual_digits\":false},"
    "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"\\\\p{L}+|\\\\p{N}{1,3}\"},\"behavior\":\"MergedWithNext\",\"invert\":true},"
    "{\"type\":\"Metaspace\",\"replacement\":\"\\u2581\",\"prepend_scheme\":\"first\",\"split\":true}]},"
    "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}},"
    "{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],\"special_tokens\":{\"<s>\":{\"id\":\"<s>\",\"ids\":[20],\"tokens\":[\"<s>\"]}}},"
    "\"decoder\":{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Replace\",\"pattern\":{\"String\":\"\\u2581\"},\"content\":\" \"},"
    "{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"},{\"type\":\"Strip\",\"content\":\" \",\"start\":1,\"stop\":1}]},"
    "\"model\":{\"type\":\"BPE\",\"byte_fallback\":true,\"unk_token\":\"<unk>\",\"fuse_unk\":true,"
    "\"vocab\":{\"<unk>\":0,\"a\":1,\"b\":2,\"\\u2581\":3,\"\\u2581a\":4,\"ab\":5,\"<0x00>\":6,\"<0xC3>\":7,\"<0xA9>\":8,"
    "\"1\":9,\"12\":10,\"x\":11,\"2\":16,\"\\u2581ab\":12,\"<0xE2>\":13,\"<0x82>\":14,\"<0xAC>\":15},"
    "\"merges\":[\"a b\",[\"\\u2581\",\"a\"],[\"\\u2581\",\"ab\"],\"1 2\"]}}";

static void exercise(const lm_tokenizer *tok, const char *text, size_t len) {
    int32_t ids[256], n = 0;
    for (int special = 0; special < 2; special++) {
        if (lm_tokenizer_encode(tok, text, len, special, ids, 256, &n) != LM_OK || n < 0)
            continue;
        char buf[512];
        size_t out_len;
        lm_tokenizer_decode(tok, ids, (size_t)n, special, buf, sizeof buf, &out_len);
        lm_detok *d = NULL;
        if (lm_detok_new(tok, special, &d) == LM_OK) {
            const char *t;
            size_t tl;
            for (int32_t i = 0; i < n; i++)
                lm_detok_push(d, ids[i], &t, &tl);
            lm_detok_flush(d, &t, &tl);
            lm_detok_free(d);
        }
    }
    /* arbitrary ids, including out-of-range ones */
    int32_t raw[16];
    size_t k = len / 4 < 16 ? len / 4 : 16;
    memcpy(raw, text, k * 4);
    char buf[64];
    size_t out_len;
    lm_tokenizer_decode(tok, raw, k, 0, buf, sizeof buf, &out_len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static lm_tokenizer *fixed; /* loaded once: read-only afterwards */
    if (size < 1)
        return 0;
    const char *rest = (const char *)data + 1;
    size_t n = size - 1;
    if (data[0] & 1) {
        if (!fixed && lm_tokenizer_load_json(FIXED, strlen(FIXED), NULL, 0, "fixed", &fixed) != LM_OK)
            abort(); /* the fixed tokenizer must load */
        exercise(fixed, rest, n);
        return 0;
    }
    lm_tokenizer *tok = NULL;
    if (lm_tokenizer_load_json(rest, n, NULL, 0, "fuzz", &tok) == LM_OK) {
        exercise(tok, "Hello \xE2\x82\xAC 123 <s> ab", strlen("Hello \xE2\x82\xAC 123 <s> ab"));
        exercise(tok, rest, n < 200 ? n : 200);
        lm_tokenizer_free(tok);
    }
    return 0;
}
