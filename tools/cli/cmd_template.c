/* Placeholder until chat templates land (src/text). */
#include "cli.h"

int cmd_template(int argc, char **argv) { return cli_fail("template", "not built yet"); }
