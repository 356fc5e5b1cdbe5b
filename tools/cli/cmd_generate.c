/* Placeholder until generation lands (src/generate). */
#include "cli.h"

int cmd_generate(int argc, char **argv) { return cli_fail("generate", "not built yet"); }
int cmd_chat(int argc, char **argv) { return cli_fail("chat", "not built yet"); }
int cmd_perplexity(int argc, char **argv) { return cli_fail("perplexity", "not built yet"); }
int cmd_cache_prompt(int argc, char **argv) { return cli_fail("cache-prompt", "not built yet"); }
