// main.c — the lossy binary: everything it does is a command in the table (see cli.h, commands.c).
#include "cli/cli.h"

int main(int argc, char **argv) { return cli_main(argc, argv); }
