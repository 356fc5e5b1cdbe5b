/* Placeholder until `lmcore convert` lands (src/quant). */
#include "cli.h"

int cmd_convert(int argc, char **argv) { return cli_fail("convert", "not built yet"); }
