/* Placeholder until the tokenizer lands (src/text). */
#include "cli.h"

int cmd_tokenize(int argc, char **argv) { return cli_fail("tokenize", "not built yet"); }
int cmd_detokenize(int argc, char **argv) { return cli_fail("detokenize", "not built yet"); }
