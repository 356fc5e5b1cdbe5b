/* Internal structures of the tokenizer.json pipeline (src/text/tokenizer*.c).
 *
 * Encoding follows Hugging Face `tokenizers`:
 *   added tokens (raw text) -> normalizer -> added tokens (normalized text)
 *   -> pre-tokenizer -> BPE model -> post-processor (only with add_special)
 * Decoding: ids -> token strings -> decoder chain -> joined text.
 * Everything here is read-only after load, so one tokenizer may serve many threads;
 * per-call scratch lives in tk_work. */
#ifndef LM_TEXT_TOKENIZER_IMPL_H
#define LM_TEXT_TOKENIZER_IMPL_H
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "io/json.h"

/* --- growable buffers ------------------------------------------------------------------ */

typedef struct tk_buf {
    char *p;
    size_t n, cap;
} tk_buf;

lm_status tk_buf_reserve(tk_buf *b, size_t extra);
lm_status tk_buf_put(tk_buf *b, const void *s, size_t n);
void tk_buf_free(tk_buf *b);

typedef struct tk_ids {
    int32_t *v;
    size_t n, cap;
} tk_ids;

lm_status tk_ids_push(tk_ids *a, int32_t id);
void tk_ids_free(tk_ids *a);

/* A list of strings sharing one byte buffer: piece i is buf.p[off .. off+len). */
typedef struct tk_piece {
    size_t off, len;
    int32_t id;    /* >= 0: already a token (an added token); -1: text to process */
    uint8_t first; /* starts at offset 0 of the original input (Metaspace prepend "first") */
} tk_piece;

typedef struct tk_strs {
    tk_buf buf;
    tk_piece *v;
    size_t n, cap;
} tk_strs;

lm_status tk_strs_add(tk_strs *s, const char *p, size_t len, int32_t id, int first);
/* Appends a piece whose bytes were already appended to s->buf (starting at off). */
lm_status tk_strs_add_tail(tk_strs *s, size_t off, int32_t id, int first);
void tk_strs_clear(tk_strs *s);
void tk_strs_free(tk_strs *s);

/* --- UTF-8 and character classes -------------------------------------------------------- */

/* Length of the valid UTF-8 prefix: returns n when all of s is valid. */
size_t tk_utf8_valid_prefix(const char *s, size_t n);
/* Decode one code point at s (valid UTF-8 assumed); returns its byte length. */
int tk_utf8_decode(const char *s, size_t n, int32_t *cp);
int tk_utf8_encode(int32_t cp, char out[4]);
/* Append bytes to b, replacing ill-formed sequences by U+FFFD the way Rust's
 * String::from_utf8_lossy does (one replacement per maximal invalid subpart). */
lm_status tk_utf8_lossy(tk_buf *b, const char *s, size_t n);
int tk_is_space(int32_t cp);   /* Unicode White_Space (Rust char::is_whitespace) */
int tk_is_word(int32_t cp);    /* regex \w: letters, marks, decimal digits, connectors */
int tk_is_numeric(int32_t cp); /* Rust char::is_numeric: general category N* */
int tk_is_punct(int32_t cp);   /* ASCII punctuation or general category P* */

/* --- hash tables ------------------------------------------------------------------------ */

uint64_t tk_hash(const void *p, size_t n);

/* String -> id. Strings are owned by the table (one arena). A slot carries the hash, the
 * arena offset and length, so a probe touches the slot and (on a hash hit) the string. */
typedef struct tk_vslot {
    uint32_t hash, off, len;
    int32_t id;
} tk_vslot;

typedef struct tk_vocab {
    char *arena;
    size_t arena_n, arena_cap;
    size_t *str_off;  /* [2 * (n_ids + 1)] (offset into arena, length) of the string of id i */
    struct tk_vslot *slots; /* [mask + 1] open addressing; id -1 when empty */
    size_t mask;
    int32_t n_ids;    /* ids are 0 .. n_ids-1; holes have zero-length strings and no slot */
    uint8_t *present; /* [n_ids] 1 when id i has a string */
} tk_vocab;

lm_status tk_vocab_init(tk_vocab *v, int32_t n_ids, size_t arena_hint);
/* Set the string of id (id < n_ids); fails when id or string is already taken. */
lm_status tk_vocab_set(tk_vocab *v, int32_t id, const char *s, size_t n);
int32_t tk_vocab_find(const tk_vocab *v, const char *s, size_t n); /* -1 when absent */
const char *tk_vocab_str(const tk_vocab *v, int32_t id, size_t *len); /* NULL when absent */
void tk_vocab_free(tk_vocab *v);

/* (left id, right id) -> (rank, merged id). */
typedef struct tk_merge_entry {
    uint64_t key; /* (left << 32 | right) + 1; 0 marks an empty slot */
    int32_t rank, id;
} tk_merge_entry;

typedef struct tk_merges {
    tk_merge_entry *slots;
    size_t mask, n;
} tk_merges;

lm_status tk_merges_init(tk_merges *m, size_t n);
void tk_merges_put(tk_merges *m, int32_t a, int32_t b, int32_t rank, int32_t id);
const tk_merge_entry *tk_merges_find(const tk_merges *m, int32_t a, int32_t b);
void tk_merges_free(tk_merges *m);

/* --- patterns (literal strings or PCRE2 regexes) ---------------------------------------- */

typedef struct tk_pattern {
    char *lit; /* literal pattern when re == NULL */
    size_t lit_len;
    pcre2_code *re;
} tk_pattern;

/* Parse {"String": "..."} or {"Regex": "..."}; `what` names the owner in errors. */
lm_status tk_pattern_parse(const cJSON *j, tk_pattern *p, const char *what);
lm_status tk_pattern_regex(const char *re, size_t len, tk_pattern *p, const char *what);
void tk_pattern_free(tk_pattern *p);

/* Segments of s covering it completely: matches and gaps, in order; *n_out segments. */
typedef struct tk_seg {
    size_t start, end;
    int is_match;
} tk_seg;

typedef struct tk_work tk_work;
lm_status tk_pattern_segments(const tk_pattern *p, tk_work *w, const char *s, size_t n);

/* --- normalizers ------------------------------------------------------------------------ */

typedef enum {
    TK_NORM_NFC,
    TK_NORM_NFD,
    TK_NORM_NFKC,
    TK_NORM_NFKD,
    TK_NORM_LOWERCASE,
    TK_NORM_STRIP,
    TK_NORM_REPLACE,
    TK_NORM_PREPEND,
    TK_NORM_SEQUENCE,
    TK_NORM_STRIP_ACCENTS,
    TK_NORM_COUNT_
} tk_norm_kind;

typedef struct tk_norm {
    tk_norm_kind kind;
    struct tk_norm *items; /* SEQUENCE */
    int n_items;
    tk_pattern pat;        /* REPLACE */
    char *str;             /* REPLACE content, PREPEND text */
    size_t str_len;
    int left, right;       /* STRIP */
} tk_norm;

lm_status tk_norm_parse(const cJSON *j, tk_norm **out, const char *what);
void tk_norm_free(tk_norm *n);
/* Normalize s[0..n) into out (cleared first). */
lm_status tk_norm_apply(const tk_norm *nm, tk_work *w, const char *s, size_t n, tk_buf *out);

/* --- pre-tokenizers --------------------------------------------------------------------- */

typedef enum {
    TK_SPLIT_REMOVED,
    TK_SPLIT_ISOLATED,
    TK_SPLIT_MERGED_WITH_PREVIOUS,
    TK_SPLIT_MERGED_WITH_NEXT,
    TK_SPLIT_CONTIGUOUS,
    TK_SPLIT_COUNT_
} tk_split_behavior;

typedef enum {
    TK_PRE_SPLIT,
    TK_PRE_BYTELEVEL,
    TK_PRE_METASPACE,
    TK_PRE_DIGITS,
    TK_PRE_WHITESPACE,
    TK_PRE_WHITESPACE_SPLIT,
    TK_PRE_PUNCTUATION,
    TK_PRE_SEQUENCE,
    TK_PRE_COUNT_
} tk_pre_kind;

typedef enum { TK_PREPEND_ALWAYS, TK_PREPEND_FIRST, TK_PREPEND_NEVER } tk_prepend_scheme;

typedef struct tk_pre {
    tk_pre_kind kind;
    struct tk_pre *items; /* SEQUENCE */
    int n_items;
    tk_pattern pat;       /* SPLIT; BYTELEVEL with use_regex; WHITESPACE */
    tk_split_behavior behavior;
    int invert;
    int add_prefix_space, use_regex;  /* BYTELEVEL */
    char repl[8];                     /* METASPACE replacement char (UTF-8) */
    int repl_len;
    tk_prepend_scheme prepend;        /* METASPACE */
    int split;                        /* METASPACE */
    int individual_digits;            /* DIGITS */
} tk_pre;

/* Shared by Metaspace pre-tokenizer and decoder: "prepend_scheme" (or legacy
 * "add_prefix_space") and the one-character "replacement". */
lm_status tk_parse_prepend_scheme(const cJSON *j, tk_prepend_scheme *out, const char *what);
lm_status tk_parse_replacement(const cJSON *j, int32_t *cp, const char *what);
lm_status tk_pre_parse(const cJSON *j, tk_pre **out, const char *what);
void tk_pre_free(tk_pre *p);
/* Pre-tokenize the pieces of *in (ids < 0 only) into words; swaps buffers in w. */
lm_status tk_pre_apply(const tk_pre *p, const struct lm_tokenizer *tok, tk_work *w, tk_strs **words);

/* --- BPE model -------------------------------------------------------------------------- */

#define TK_CHAR_CACHE 0x800 /* code points below this have their single-char id precomputed */

typedef struct tk_bpe {
    tk_vocab vocab;
    tk_merges merges;
    int byte_fallback, fuse_unk, ignore_merges;
    int32_t unk_id;             /* -1: none */
    char *prefix, *suffix;      /* continuing_subword_prefix, end_of_word_suffix (NULL: none) */
    size_t prefix_len, suffix_len;
    int32_t byte_ids[256];      /* <0xXX> tokens, -1 when absent */
    int32_t *char_ids;          /* [TK_CHAR_CACHE] id of a code point as a word-initial token */
    /* Long SentencePiece-style words (no pre-tokenizer) are cut before a U+2581 that no
     * vocab token spans: a merge never crosses such a point, so the parts are independent.
     * meta_unsafe lists the characters X for which some token contains "X\u2581". */
    int meta_split;
    int32_t meta_unsafe[16];
    int n_meta_unsafe;
} tk_bpe;

/* tokenizer_json.c: byte spans of model.vocab / model.merges in the raw text ({0, 0} when
 * absent), found without building cJSON nodes; *rest is a copy of the text with both
 * blanked to {} / [] for cJSON. */
typedef struct tk_json_spans {
    size_t vocab[2], merges[2];
} tk_json_spans;
lm_status tk_json_find_model(const char *json, size_t n, const char *what, tk_json_spans *sp, char **rest);
lm_status tk_json_load_vocab(const char *json, const tk_json_spans *sp, const char *what, tk_bpe *bpe);
lm_status tk_json_load_merges(const char *json, const tk_json_spans *sp, const char *what, tk_bpe *bpe);

/* Configure a zeroed bpe from the model object (vocab and merges read from the raw text). */
lm_status tk_bpe_parse(const cJSON *model, const char *json, const tk_json_spans *sp, tk_bpe *bpe, const char *what);
/* Register merge `rank` of tokens a and b (both in the vocab, as is their concatenation). */
lm_status tk_bpe_add_merge(tk_bpe *bpe, tk_buf *tmp, const char *a, size_t na, const char *b, size_t nb,
                           int32_t rank, const char *what);
void tk_bpe_free(tk_bpe *bpe);
/* Append the ids of one pre-tokenized word. */
lm_status tk_bpe_encode(const tk_bpe *bpe, tk_work *w, const char *s, size_t n, tk_ids *out);

/* --- added tokens ----------------------------------------------------------------------- */

typedef struct tk_added {
    char *content; /* as written in tokenizer.json */
    size_t len;
    char *dec;     /* form used when decoding: the normalized content for normalized tokens */
    size_t dec_len;
    int32_t id;
    uint8_t special, lstrip, rstrip, normalized, single_word;
} tk_added;

/* A byte trie over added-token contents for leftmost-longest matching. */
typedef struct tk_trie {
    uint64_t *edge_keys;  /* (node << 8 | byte) + 1, 0 = empty */
    int32_t *edge_child;
    size_t edge_mask, n_edges;
    int32_t *term;        /* [n_nodes] index into added[], -1 when not terminal */
    int32_t n_nodes, cap_nodes;
    uint8_t first[256];   /* bytes that can start a match */
} tk_trie;

lm_status tk_trie_add(tk_trie *t, const char *s, size_t n, int32_t value);
void tk_trie_free(tk_trie *t);
/* Split s into spans (added-token matches carry their id) with HF's lstrip/rstrip/
 * single_word rules; spans are appended to out with `first` set for offset 0 when
 * first_at_start. */
lm_status tk_added_split(const struct lm_tokenizer *tok, const tk_trie *t, const char *s,
                         size_t n, int first_at_start, tk_strs *out);

/* --- decoders --------------------------------------------------------------------------- */

typedef enum {
    TK_DEC_BYTELEVEL,
    TK_DEC_REPLACE,
    TK_DEC_BYTEFALLBACK,
    TK_DEC_FUSE,
    TK_DEC_STRIP,
    TK_DEC_METASPACE,
    TK_DEC_SEQUENCE,
    TK_DEC_COUNT_
} tk_dec_kind;

typedef struct tk_dec {
    tk_dec_kind kind;
    struct tk_dec *items;
    int n_items;
    tk_pattern pat;   /* REPLACE */
    char *str;        /* REPLACE content */
    size_t str_len;
    int32_t ch;       /* STRIP content, METASPACE replacement (code points) */
    int start, stop;  /* STRIP */
    tk_prepend_scheme prepend; /* METASPACE */
} tk_dec;

lm_status tk_dec_parse(const cJSON *j, tk_dec **out, const char *what);
void tk_dec_free(tk_dec *d);
int tk_dec_has(const tk_dec *d, tk_dec_kind kind); /* the chain contains a decoder of this kind */
/* Run the decoder chain over the token strings in *toks (may swap with w's spare list). */
lm_status tk_dec_apply(const tk_dec *d, const struct lm_tokenizer *tok, tk_work *w, tk_strs **toks);

/* --- the tokenizer ---------------------------------------------------------------------- */

struct lm_tokenizer {
    tk_bpe bpe;
    tk_norm *norm;  /* NULL: none */
    tk_pre *pre;    /* NULL: none */
    tk_dec *dec;    /* NULL: tokens joined by spaces */
    int dec_byte_fallback; /* the decoder contains ByteFallback */
    tk_added *added;
    int n_added;
    int32_t *added_of_id; /* [n_vocab] index into added[], -1 */
    tk_trie trie_raw, trie_norm;
    int32_t n_vocab;      /* model vocab and added ids together */
    int32_t *post_pre, *post_suf; /* ids added around a single sequence by the post-processor */
    int n_post_pre, n_post_suf;
    int32_t bos_id, eos_id;
    /* GPT-2 byte <-> char mapping */
    char byte_chr[256][2];
    uint8_t byte_chr_len[256];
    int16_t chr_byte[0x144]; /* code point -> byte, -1 when not a mapped char */
};

/* Per-call scratch (encode/decode). */
struct tk_work {
    pcre2_match_data *md;
    tk_seg *segs;
    size_t n_segs, cap_segs;
    tk_strs s[4];   /* rotating piece lists */
    tk_buf tmp, tmp2, nbuf;
    /* BPE */
    struct tk_sym *syms;
    size_t cap_syms;
    uint64_t *heap; /* BPE merge candidates (rank << 32 | position) */
    size_t cap_heap;
};

lm_status tk_work_init(tk_work *w);
void tk_work_free(tk_work *w);

/* Encode text (valid UTF-8 is checked) appending ids to out. */
lm_status tk_encode(const struct lm_tokenizer *tok, tk_work *w, const char *text, size_t len,
                    int add_special, tk_ids *out);
/* Decode ids to text (appended to out). Unknown ids are skipped, as HF does. */
lm_status tk_decode(const struct lm_tokenizer *tok, tk_work *w, const int32_t *ids, size_t n,
                    int skip_special, tk_buf *out);

#endif
