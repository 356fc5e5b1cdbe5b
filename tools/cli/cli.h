/* lmcore command-line tool: one function per subcommand, dispatched by main.c. */
#ifndef LM_CLI_H
#define LM_CLI_H
#include <stddef.h>

typedef struct lm_cli_cmd {
    const char *name;
    int (*run)(int argc, char **argv); /* argv[0] is the subcommand name */
    const char *summary;
} lm_cli_cmd;

int cmd_logits(int argc, char **argv);     /* cmd_logits.c */
int cmd_info(int argc, char **argv);       /* cmd_logits.c */
int cmd_tokenize(int argc, char **argv);   /* cmd_tokenize.c */
int cmd_detokenize(int argc, char **argv); /* cmd_tokenize.c */
int cmd_template(int argc, char **argv);   /* cmd_template.c */
int cmd_generate(int argc, char **argv);   /* cmd_generate.c */
int cmd_chat(int argc, char **argv);       /* cmd_generate.c */
int cmd_perplexity(int argc, char **argv); /* cmd_generate.c */
int cmd_cache_prompt(int argc, char **argv); /* cmd_generate.c */
int cmd_convert(int argc, char **argv);    /* cmd_convert.c */

/* Print "lmcore <cmd>: <message>" (with lm_last_error() when msg is NULL) to stderr; returns 1. */
int cli_fail(const char *cmd, const char *msg);
/* Read all of stdin into a malloc'd NUL-terminated buffer; NULL on failure. */
char *cli_read_stdin(size_t *len);
/* A base-10 integer in [lo, hi] filling the whole string; 1 on success, 0 otherwise. */
int cli_parse_long(const char *s, long lo, long hi, long *out);
/* Does argv[i] equal `a` or `b` (b may be NULL)? */
int cli_is(const char *arg, const char *a, const char *b);

#endif
