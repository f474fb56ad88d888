// cli.c — argument parsing, dispatch and help text, all driven by the command tables (see cli.h).
#include "cli/cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "base/cpu.h"
#include "base/util.h"
#ifdef LOSSY_CUDA
#include "cuda/cuda.h"
#endif

int cli_errorf(int code, const char *context, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "lossy: error: ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (context) fprintf(stderr, " (%s)", context);
    fprintf(stderr, "\n");
    return code;
}

int cli_fail(const Err *e, const char *context) {
    const char *dbg = getenv("LOSSY_DEBUG");
    if (dbg && *dbg && strcmp(dbg, "0") != 0 && e->file)
        return cli_errorf(EXIT_RUNTIME, context, "%s [%s:%d]", e->msg[0] ? e->msg : "unknown error", e->file, e->line);
    return cli_errorf(EXIT_RUNTIME, context, "%s", e->msg[0] ? e->msg : "unknown error");
}

static const CliFlag HELP_FLAG = {"help", 'h', FLAG_BOOL, NULL, NULL, "show this help"};

static long flag_index(const CliCommand *c, const char *name) {
    for (long i = 0; c->flags && c->flags[i].name; i++)
        if (strcmp(c->flags[i].name, name) == 0) return i;
    return -1;
}

static long flag_index_checked(const CliArgs *a, const char *name) {
    long i = flag_index(a->cmd, name);
    if (i < 0) {
        fprintf(stderr, "lossy: internal error: command '%s' has no flag --%s\n", a->cmd->name, name);
        abort();
    }
    return i;
}

bool cli_flag_given(const CliArgs *a, const char *name) { return a->count[flag_index_checked(a, name)] > 0; }
bool cli_flag_bool(const CliArgs *a, const char *name) { return cli_flag_given(a, name); }

const char *cli_flag_str(const CliArgs *a, const char *name) {
    long i = flag_index_checked(a, name);
    if (a->count[i]) return a->values[i][a->count[i] - 1];
    return a->cmd->flags[i].def;
}

static bool parse_i64(const char *s, int64_t *out) {
    if (!s || !*s) return false;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    // allow k/M/G suffixes for token counts and sizes
    long long mul = 1;
    if (*end == 'k' || *end == 'K') mul = 1000, end++;
    else if (*end == 'M') mul = 1000000, end++;
    else if (*end == 'G') mul = 1000000000, end++;
    if (errno || *end) return false;
    if (__builtin_mul_overflow(v, mul, &v)) return false;
    *out = v;
    return true;
}
static bool parse_f64(const char *s, double *out) {
    if (!s || !*s) return false;
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (errno || *end) return false;
    *out = v;
    return true;
}

int64_t cli_flag_int(const CliArgs *a, const char *name) {
    int64_t v = 0;
    parse_i64(cli_flag_str(a, name), &v);
    return v;
}
int cli_flag_threads(const CliArgs *a, int *n) {
    *n = 0;
    if (!cli_flag_given(a, "threads")) return EXIT_OK;
    int64_t t = cli_flag_int(a, "threads");
    if (t < 1 || t > 512) return cli_errorf(EXIT_USAGE, NULL, "--threads must be between 1 and 512, got %lld", (long long)t);
    *n = (int)t;
    return EXIT_OK;
}
double cli_flag_float(const CliArgs *a, const char *name) {
    double v = 0;
    parse_f64(cli_flag_str(a, name), &v);
    return v;
}
size_t cli_flag_list(const CliArgs *a, const char *name, char ***values) {
    long i = flag_index_checked(a, name);
    *values = a->values[i];
    return a->count[i];
}

int cli_parse_ids(const char *s, int32_t **ids, size_t *n) {
    size_t cap = 16;
    *n = 0;
    *ids = xmalloc_array(cap, sizeof **ids);
    while (*s) {
        while (*s == ',' || *s == ' ' || *s == '\t' || *s == '\n') s++;
        if (!*s) break;
        char *end;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (end == s || errno || v < 0 || v > INT32_MAX || (*end && !strchr(", \t\n", *end))) break;
        if (*n == cap) *ids = xrealloc(*ids, (cap *= 2) * sizeof **ids);
        (*ids)[(*n)++] = (int32_t)v;
        s = end;
    }
    if (*s || *n == 0) {
        free(*ids);
        *ids = NULL;
        *n = 0;
        return -1;
    }
    return 0;
}

// ---- help ----
static void print_flag_line(FILE *f, const CliFlag *fl) {
    char left[96];
    if (fl->short_name)
        snprintf(left, sizeof left, "-%c, --%s%s%s", fl->short_name, fl->name, fl->metavar ? " " : "", fl->metavar ? fl->metavar : "");
    else
        snprintf(left, sizeof left, "    --%s%s%s", fl->name, fl->metavar ? " " : "", fl->metavar ? fl->metavar : "");
    fprintf(f, "  %-28s %s", left, fl->help);
    if (fl->def) fprintf(f, " (default: %s)", fl->def);
    if (fl->kind == FLAG_LIST) fprintf(f, " (repeatable)");
    fprintf(f, "\n");
}

void cli_print_command_help(FILE *f, const CliCommand *c) {
    fprintf(f, "usage: lossy %s [options]%s%s\n\n%s\n", c->name, c->usage && *c->usage ? " " : "", c->usage ? c->usage : "", c->summary);
    if (c->details) fprintf(f, "\n%s\n", c->details);
    fprintf(f, "\noptions:\n");
    for (const CliFlag *fl = c->flags; fl && fl->name; fl++) print_flag_line(f, fl);
    print_flag_line(f, &HELP_FLAG);
}

void cli_print_help(FILE *f) {
    fprintf(f, "lossy %s — a large language model system in C: run, train, finetune, chat, serve, evaluate.\n\n", LOSSY_VERSION);
    fprintf(f, "usage: lossy <command> [options] [arguments]\n\ncommands:\n");
    for (size_t i = 0; cli_commands[i]; i++) fprintf(f, "  %-18s %s\n", cli_commands[i]->name, cli_commands[i]->summary);
    fprintf(f, "\n`lossy <command> --help` shows a command's options. `lossy --version` shows the build.\n");
    fprintf(f, "Exit codes: 0 success, 1 runtime failure, 2 usage error.\n");
}

void cli_print_markdown(FILE *f) {
    fprintf(f, "| command | what it does |\n| --- | --- |\n");
    for (size_t i = 0; cli_commands[i]; i++) {
        const CliCommand *c = cli_commands[i];
        fprintf(f, "| `lossy %s%s%s` | %s |\n", c->name, c->usage && *c->usage ? " " : "", c->usage ? c->usage : "", c->summary);
    }
}

void cli_print_version(FILE *f) {
    fprintf(f, "lossy %s\n", LOSSY_VERSION);
    fprintf(f, "compiler: %s\n", __VERSION__);
#ifdef __OPTIMIZE__
    fprintf(f, "build: optimized");
#else
    fprintf(f, "build: debug");
#endif
#if defined(__SANITIZE_ADDRESS__)
    fprintf(f, ", asan");
#endif
    fprintf(f, "\n");
    char feats[256];
    cpu_features_string(feats, sizeof feats);
    fprintf(f, "cpu: %s\n", feats);
#ifdef LOSSY_CUDA
    char why[256] = "";
    int n = cuda_device_count(why, sizeof why);
    // the runtime's messages may end in a newline; keep the line whole
    for (char *p = why; *p; p++)
        if (*p == '\n') *p = ' ';
    if (n) fprintf(f, "cuda: compiled in, %d device%s\n", n, n == 1 ? "" : "s");
    else fprintf(f, "cuda: compiled in, no usable device (%s)\n", why);
    for (int i = 0; i < n; i++) {
        char line[256];
        cuda_device_describe(i, line, sizeof line);
        fprintf(f, "  %s\n", line);
    }
#else
    fprintf(f, "cuda: not compiled in\n");
#endif
}

// ---- parsing ----
static const CliCommand *find_command(int argc, char **argv, int *consumed) {
    // two-word commands first ("tokenizer train"), then one word
    if (argc >= 3) {
        for (size_t i = 0; cli_commands[i]; i++) {
            const char *n = cli_commands[i]->name;
            const char *sp = strchr(n, ' ');
            if (sp && strncmp(n, argv[1], (size_t)(sp - n)) == 0 && strlen(argv[1]) == (size_t)(sp - n) && strcmp(sp + 1, argv[2]) == 0) {
                *consumed = 2;
                return cli_commands[i];
            }
        }
    }
    for (size_t i = 0; cli_commands[i]; i++) {
        if (strcmp(cli_commands[i]->name, argv[1]) == 0) {
            *consumed = 1;
            return cli_commands[i];
        }
    }
    return NULL;
}

static bool is_group(const char *word) {
    size_t n = strlen(word);
    for (size_t i = 0; cli_commands[i]; i++)
        if (strncmp(cli_commands[i]->name, word, n) == 0 && cli_commands[i]->name[n] == ' ') return true;
    return false;
}

static void args_free(CliArgs *a, size_t nflags) {
    for (size_t i = 0; i < nflags; i++) free(a->values[i]);
    free(a->values);
    free(a->count);
    free(a->pos);
}

int cli_main(int argc, char **argv) {
    if (argc < 2) {
        cli_print_help(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        if (argc >= 3 && strcmp(argv[2], "--markdown") == 0) cli_print_markdown(stdout);
        else cli_print_help(stdout);
        return EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0) {
        cli_print_version(stdout);
        return EXIT_OK;
    }
    int consumed = 0;
    const CliCommand *c = find_command(argc, argv, &consumed);
    if (!c) {
        if (is_group(argv[1])) {
            fprintf(stderr, "lossy: error: '%s' needs a subcommand (lossy --help)\n", argv[1]);
            for (size_t i = 0; cli_commands[i]; i++)
                if (str_starts_with(cli_commands[i]->name, argv[1]) && cli_commands[i]->name[strlen(argv[1])] == ' ')
                    fprintf(stderr, "  lossy %-18s %s\n", cli_commands[i]->name, cli_commands[i]->summary);
            return EXIT_USAGE;
        }
        return cli_errorf(EXIT_USAGE, "lossy --help", "unknown command '%s'", argv[1]);
    }
    size_t nflags = 0;
    while (c->flags && c->flags[nflags].name) nflags++;
    CliArgs a = {.cmd = c};
    a.count = xcalloc(nflags + 1, sizeof *a.count);
    a.values = xcalloc(nflags + 1, sizeof *a.values);
    a.pos = xcalloc((size_t)argc + 1, sizeof *a.pos);
    char ctx[128];
    snprintf(ctx, sizeof ctx, "lossy %s --help", c->name);
    int rc = EXIT_OK;
    bool only_pos = false;
    for (int i = 1 + consumed; i < argc; i++) {
        char *arg = argv[i];
        if (only_pos || arg[0] != '-' || strcmp(arg, "-") == 0) {
            a.pos[a.n_pos++] = arg;
            continue;
        }
        if (strcmp(arg, "--") == 0) {
            only_pos = true;
            continue;
        }
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            cli_print_command_help(stdout, c);
            args_free(&a, nflags);
            return EXIT_OK;
        }
        // --name, --name=value, -x
        long fi = -1;
        const char *inline_val = NULL;
        char namebuf[128];
        if (arg[1] == '-') {
            const char *eq = strchr(arg + 2, '=');
            size_t n = eq ? (size_t)(eq - (arg + 2)) : strlen(arg + 2);
            if (n >= sizeof namebuf) n = sizeof namebuf - 1;
            memcpy(namebuf, arg + 2, n);
            namebuf[n] = 0;
            fi = flag_index(c, namebuf);
            if (eq) inline_val = eq + 1;
        } else if (arg[1] && !arg[2]) {
            for (size_t k = 0; k < nflags; k++)
                if (c->flags[k].short_name == arg[1]) fi = (long)k;
        } else if (arg[1] >= '0' && arg[1] <= '9') { // a negative number as a positional
            a.pos[a.n_pos++] = arg;
            continue;
        }
        if (fi < 0) {
            rc = cli_errorf(EXIT_USAGE, ctx, "unknown option '%s'", arg);
            goto done;
        }
        const CliFlag *fl = &c->flags[fi];
        char *val = NULL;
        if (fl->kind == FLAG_BOOL) {
            if (inline_val) {
                rc = cli_errorf(EXIT_USAGE, ctx, "option --%s takes no value", fl->name);
                goto done;
            }
        } else {
            if (inline_val) val = (char *)inline_val;
            else if (i + 1 < argc) val = argv[++i];
            else {
                rc = cli_errorf(EXIT_USAGE, ctx, "option --%s needs a value %s", fl->name, fl->metavar ? fl->metavar : "");
                goto done;
            }
            int64_t iv;
            double fv;
            if (fl->kind == FLAG_INT && !parse_i64(val, &iv)) {
                rc = cli_errorf(EXIT_USAGE, ctx, "option --%s expects an integer, got '%s'", fl->name, val);
                goto done;
            }
            if (fl->kind == FLAG_FLOAT && !parse_f64(val, &fv)) {
                rc = cli_errorf(EXIT_USAGE, ctx, "option --%s expects a number, got '%s'", fl->name, val);
                goto done;
            }
            if (fl->kind != FLAG_LIST && a.count[fi] > 0) {
                // last one wins, as in most CLIs; keep only one value slot
                a.values[fi][0] = val;
                continue;
            }
        }
        a.values[fi] = xrealloc(a.values[fi], (a.count[fi] + 1) * sizeof(char *));
        a.values[fi][a.count[fi]++] = val;
    }
    if ((int)a.n_pos < c->min_pos || (c->max_pos >= 0 && (int)a.n_pos > c->max_pos)) {
        if (c->min_pos == c->max_pos)
            rc = cli_errorf(EXIT_USAGE, ctx, "'%s' takes %d argument%s (%s), got %zu", c->name, c->min_pos, c->min_pos == 1 ? "" : "s", c->usage ? c->usage : "", a.n_pos);
        else
            rc = cli_errorf(EXIT_USAGE, ctx, "wrong number of arguments for '%s' (usage: lossy %s %s), got %zu", c->name, c->name, c->usage ? c->usage : "", a.n_pos);
        goto done;
    }
    rc = c->run(&a);
done:
    args_free(&a, nflags);
    return rc;
}
