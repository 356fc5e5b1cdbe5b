#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "lmcore.h"

static const lm_cli_cmd COMMANDS[] = {
    {"logits", cmd_logits, "run token ids through a model and write logits (safetensors)"},
    {"info", cmd_info, "print a model's architecture, features and parameter count"},
    {"tokenize", cmd_tokenize, "encode stdin text to a JSON array of token ids"},
    {"detokenize", cmd_detokenize, "decode a JSON array of token ids from stdin to text"},
    {"template", cmd_template, "render a chat template for a JSON message list on stdin"},
    {"generate", cmd_generate, "generate text from a prompt (the bundled model without -m)"},
    {"chat", cmd_chat, "interactive chat"},
    {"perplexity", cmd_perplexity, "perplexity of a model on a text file"},
    {"cache-prompt", cmd_cache_prompt, "run a prompt and save its KV cache to a file"},
    {"convert", cmd_convert, "quantize (MLX affine / MXFP4) or dequantize a checkpoint"},
};
#define N_COMMANDS (sizeof COMMANDS / sizeof COMMANDS[0])

int cli_fail(const char *cmd, const char *msg) {
    fprintf(stderr, "lmcore %s: %s\n", cmd, msg ? msg : lm_last_error());
    return 1;
}

int cli_parse_long(const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return 0;
    *out = v;
    return 1;
}

int cli_is(const char *arg, const char *a, const char *b) {
    return strcmp(arg, a) == 0 || (b && strcmp(arg, b) == 0);
}

char *cli_read_stdin(size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    if (!buf)
        return NULL;
    for (;;) {
        if (n + 1 >= cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) {
                free(buf);
                return NULL;
            }
            buf = nb;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, stdin);
        if (r == 0)
            break;
        n += r;
    }
    buf[n] = 0;
    if (len)
        *len = n;
    return buf;
}

static void usage(FILE *f) {
    fprintf(f, "usage: lmcore <command> [options]   (lmcore <command> --help for its options)\n\ncommands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  %-11s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 1;
    }
    if (cli_is(argv[1], "--help", "-h") || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(argv[1], COMMANDS[i].name) == 0)
            return COMMANDS[i].run(argc - 1, argv + 1);
    fprintf(stderr, "lmcore: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 1;
}
