// cli.h — the one table of commands and flags, and the parser and help printer built from it.
//
// Each command lives in its own file src/cli/cmd_<name>.c and defines a `const CliCommand cmd_<name>` with its
// flags; src/cli/commands.c lists them. `lossy --help`, `lossy <command> --help` and the README command list
// (`make docs`, checked by a test) are all printed from these tables, so a flag exists in exactly one place.
// Exit codes: 0 success, 1 runtime failure, 2 usage error. Errors: `lossy: error: <what> (<which file/flag>)`.
#ifndef LOSSY_CLI_H
#define LOSSY_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "base/err.h"

enum { EXIT_OK = 0, EXIT_RUNTIME = 1, EXIT_USAGE = 2 };

typedef enum CliFlagKind {
    FLAG_BOOL,  // --name
    FLAG_INT,   // --name N   (int64, checked)
    FLAG_FLOAT, // --name X
    FLAG_STR,   // --name S
    FLAG_LIST,  // --name S, may repeat; values collected in order
} CliFlagKind;

typedef struct CliFlag {
    const char *name;    // long name without dashes
    char short_name;     // 0 for none
    CliFlagKind kind;
    const char *metavar; // "N", "FILE", ... (NULL for bool)
    const char *def;     // default as text, NULL for none
    const char *help;
} CliFlag;

struct CliArgs;
typedef struct CliCommand {
    const char *name;     // "info", or two words for a subcommand: "tokenizer train"
    const char *summary;  // one line
    const char *usage;    // positional arguments, e.g. "FILE"
    int min_pos, max_pos; // positional argument count bounds (max_pos < 0: unlimited)
    const CliFlag *flags; // terminated by an entry with name == NULL
    const char *details;  // extra help paragraph, may be NULL
    int (*run)(const struct CliArgs *a);
} CliCommand;

typedef struct CliArgs {
    const CliCommand *cmd;
    size_t n_pos;
    char **pos;
    // parallel to cmd->flags: how many times each flag was given and its values
    size_t *count;
    char ***values;
} CliArgs;

// The command list (commands.c), NULL-terminated.
extern const CliCommand *const cli_commands[];

// Entry point used by main(): parses argv and runs the command. Returns the exit code.
int cli_main(int argc, char **argv);

// Flag getters (the flag must exist in the command's table; asking for an undeclared flag aborts: a programming error).
bool cli_flag_given(const CliArgs *a, const char *name);
bool cli_flag_bool(const CliArgs *a, const char *name);
const char *cli_flag_str(const CliArgs *a, const char *name); // value, else default, else NULL
int64_t cli_flag_int(const CliArgs *a, const char *name);     // value, else default, else 0 (validated at parse)
double cli_flag_float(const CliArgs *a, const char *name);
size_t cli_flag_list(const CliArgs *a, const char *name, char ***values);
// --threads: *n = the given count (1 .. 512), or 0 when not given (the caller's default, e.g. all cores). A value
// out of range prints the usage error and returns EXIT_USAGE; every command reads the flag through this.
int cli_flag_threads(const CliArgs *a, int *n);

// Print `lossy: error: <msg> (<context>)` to stderr; context may be NULL. Returns EXIT_RUNTIME.
int cli_fail(const Err *e, const char *context);
int cli_errorf(int code, const char *context, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

// Parse token ids written "1,2,3" or "1 2 3" into a malloc'ed array; -1 on a malformed list or an empty one.
int cli_parse_ids(const char *s, int32_t **ids, size_t *n);

void cli_print_help(FILE *f);
void cli_print_command_help(FILE *f, const CliCommand *c);
// The README command list (markdown), generated from the table.
void cli_print_markdown(FILE *f);
void cli_print_version(FILE *f);

#define LOSSY_VERSION "0.1.0"

#endif
