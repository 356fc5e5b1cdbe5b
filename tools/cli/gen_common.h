/* Shared by lmcore generate / chat / perplexity / cache-prompt: options, the default model,
 * streaming output, the progress bar and the stats line. */
#ifndef LM_CLI_GEN_COMMON_H
#define LM_CLI_GEN_COMMON_H
#include <stdio.h>

#include "lmcore.h"

#define GEN_MAX_STOPS 16
#define GEN_MAX_BIAS 64

typedef struct gen_opts {
    const char *model;              /* NULL: the bundled default model */
    const char *prompt;             /* generate: -p (or "-" for stdin) */
    const char *system_prompt;
    const char *chat_template_config; /* a JSON object of template variables */
    const char *chat_template_name;
    const char *prompt_cache_file;
    int ignore_chat_template;
    int verbose;
    int threads;
    lm_gen_params gen;
    lm_session_params sess;
    const char *stops[GEN_MAX_STOPS];
    lm_logit_bias bias[GEN_MAX_BIAS];
} gen_opts;

/* Parse the options of `cmd` (argv[0] is the command). Returns 0 when ready, 1 after a
 * reported error, 2 after printing `help`. */
int gen_parse(const char *cmd, int argc, char **argv, const char *help, gen_opts *o);
/* Resolve the model directory: o->model, else $LMCORE_DEFAULT_MODEL, else models/default next to
 * the executable (build/lmcore -> ../models/default), in the source tree, or in the current
 * directory. Writes it into buf; returns 0, or 1 after reporting a clear error. */
int gen_model_dir(const char *cmd, const gen_opts *o, char *buf, size_t cap);
/* Load the llm for the options; 0 or 1 after reporting. */
int gen_load(const char *cmd, const gen_opts *o, lm_llm **llm);

/* Progress bar on stderr, shown when it is a terminal and the prompt is long. */
typedef struct gen_progress {
    int enabled;
    int shown;
} gen_progress;
int gen_progress_cb(void *user, int done, int total);

/* "Prompt: N tokens, X tokens-per-sec | Generation: ... | Peak memory: G GB" on stderr. */
void gen_print_stats(const lm_gen_result *r);

#endif
