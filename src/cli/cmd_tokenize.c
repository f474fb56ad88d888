// cmd_tokenize.c — `lossy tokenize TOKENIZER_OR_MODEL`: encode stdin to token ids, or decode ids back to text.
//
// This exact interface is used by external conformance checks, so its input/output shapes are fixed:
//   (default)        the whole of stdin is one text; ids printed space-separated on one line
//   --jsonl          each input line is a JSON string; each output line a JSON array of ids
//   --decode         stdin holds whitespace-separated ids; the raw decoded bytes are written (no newline added)
//   --decode --jsonl each input line is a JSON array of ids; each output line a JSON string (invalid UTF-8 -> U+FFFD)
//   --count          print the number of tokens instead of the ids (per line with --jsonl)
// Modes: default = Hugging Face add_special_tokens=False (special tokens written in the text are recognised);
// --add-special adds the tokenizer's BOS/EOS template; --ordinary treats every byte as ordinary text.
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "tokenizer/tokenizer.h"

static const CliFlag FLAGS[] = {
    {"add-special", 0, FLAG_BOOL, NULL, NULL, "add the tokenizer's special tokens (BOS/EOS template), like HF add_special_tokens=True"},
    {"ordinary", 0, FLAG_BOOL, NULL, NULL, "treat all text as ordinary: special-token spellings never become control tokens"},
    {"jsonl", 0, FLAG_BOOL, NULL, NULL, "one JSON string per input line -> one JSON array of ids per output line"},
    {"decode", 'd', FLAG_BOOL, NULL, NULL, "decode ids to text (input: ids separated by spaces, or JSON arrays with --jsonl)"},
    {"count", 'c', FLAG_BOOL, NULL, NULL, "print only the number of tokens"},
    {"skip-special", 0, FLAG_BOOL, NULL, NULL, "with --decode: control tokens produce no text"},
    {"stats", 0, FLAG_BOOL, NULL, NULL, "print bytes, tokens, load and encode time and MB/s to stderr"},
    {NULL, 0, 0, NULL, NULL, NULL},
};

static void print_ids(const TokenIds *ids, bool count, bool json) {
    if (count) {
        printf("%zu\n", ids->n);
        return;
    }
    if (json) putchar('[');
    for (size_t i = 0; i < ids->n; i++) printf(i ? (json ? ",%" PRId32 : " %" PRId32) : "%" PRId32, ids->ids[i]);
    puts(json ? "]" : "");
}

// A JSON string literal of the text (invalid UTF-8 replaced), to stdout.
static void print_json_text(const char *s, size_t n) {
    Buf clean;
    buf_init(&clean);
    tokenizer_utf8_lossy(s, n, &clean);
    json_t *j = json_stringn(clean.data ? clean.data : "", clean.len);
    char *txt = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
    puts(txt ? txt : "\"\"");
    free(txt);
    json_decref(j);
    buf_free(&clean);
}

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static bool blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n') return false;
    return true;
}

// Parse whitespace-separated ids; -1 with a message on a bad one.
static int parse_ids(const char *s, size_t n, TokenIds *ids, Err *e) {
    size_t i = 0;
    while (i < n) {
        while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n')) i++;
        if (i == n) break;
        size_t j = i;
        while (j < n && !(s[j] == ' ' || s[j] == '\t' || s[j] == '\r' || s[j] == '\n')) j++;
        char buf[32];
        if (j - i >= sizeof buf) return ERR(e, "bad token id '%.20s...'", s + i);
        memcpy(buf, s + i, j - i);
        buf[j - i] = 0;
        char *end;
        errno = 0;
        long long v = strtoll(buf, &end, 10);
        if (*end || errno || v < 0 || v > INT32_MAX) return ERR(e, "bad token id '%s'", buf);
        token_ids_push(ids, (int32_t)v);
        i = j;
    }
    return 0;
}

static int run(const CliArgs *a) {
    const char *path = a->pos[0];
    bool add_special = cli_flag_bool(a, "add-special"), ordinary = cli_flag_bool(a, "ordinary");
    bool jsonl = cli_flag_bool(a, "jsonl"), decode = cli_flag_bool(a, "decode"), count = cli_flag_bool(a, "count");
    bool stats = cli_flag_bool(a, "stats");
    int dflags = cli_flag_bool(a, "skip-special") ? TOKENIZER_DECODE_SKIP_SPECIAL : 0;
    int mode = (add_special ? TOKENIZE_ADD_SPECIAL : 0) | (ordinary ? TOKENIZE_ORDINARY : 0);

    Err e;
    Tokenizer *t;
    double t0 = time_now();
    if (tokenizer_load(path, &t, &e)) return cli_fail(&e, path);
    double t_load = time_now() - t0;
    static char outbuf[1 << 16];
    setvbuf(stdout, outbuf, _IOFBF, sizeof outbuf);

    int rc = EXIT_OK;
    TokenIds ids = {0};
    Buf text;
    buf_init(&text);
    size_t total_bytes = 0, total_tokens = 0;
    double t_work = 0, c_work = 0;
    if (!jsonl) {
        char *in;
        size_t n;
        if (file_read_all("-", &in, &n, &e)) {
            rc = cli_fail(&e, "stdin");
            goto done;
        }
        if (decode) {
            if (parse_ids(in, n, &ids, &e) || tokenizer_decode(t, ids.ids, ids.n, dflags, &text, &e)) {
                rc = cli_fail(&e, "stdin");
            } else if (count) {
                printf("%zu\n", ids.n);
            } else {
                fwrite(text.data ? text.data : "", 1, text.len, stdout);
            }
        } else {
            double s = time_now(), cs = cpu_now();
            if (tokenizer_encode(t, in, n, mode, &ids, &e)) {
                rc = cli_fail(&e, "stdin");
            } else {
                t_work += time_now() - s;
                c_work += cpu_now() - cs;
                total_bytes += n;
                total_tokens += ids.n;
                print_ids(&ids, count, false);
            }
        }
        free(in);
        goto done;
    }

    char *line = NULL;
    size_t cap = 0, lineno = 0;
    ssize_t got;
    while ((got = getline(&line, &cap, stdin)) >= 0) {
        lineno++;
        size_t n = (size_t)got;
        if (blank(line, n)) continue;
        json_error_t je;
        json_t *j = json_loadb(line, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
        char ctx[64];
        snprintf(ctx, sizeof ctx, "stdin line %zu", lineno);
        if (!j) {
            rc = cli_errorf(EXIT_RUNTIME, ctx, "invalid JSON: %s", je.text);
            break;
        }
        ids.n = 0;
        if (decode) {
            bool ok = json_is_array(j);
            for (size_t i = 0; ok && i < json_array_size(j); i++) {
                json_t *v = json_array_get(j, i);
                ok = json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) <= INT32_MAX;
                if (ok) token_ids_push(&ids, (int32_t)json_integer_value(v));
            }
            json_decref(j);
            if (!ok) {
                rc = cli_errorf(EXIT_RUNTIME, ctx, "expected a JSON array of token ids");
                break;
            }
            text.len = 0;
            if (tokenizer_decode(t, ids.ids, ids.n, dflags, &text, &e)) {
                rc = cli_fail(&e, ctx);
                break;
            }
            if (count) printf("%zu\n", ids.n);
            else print_json_text(text.data ? text.data : "", text.len);
        } else {
            if (!json_is_string(j)) {
                json_decref(j);
                rc = cli_errorf(EXIT_RUNTIME, ctx, "expected a JSON string");
                break;
            }
            double s = time_now(), cs = cpu_now();
            int r = tokenizer_encode(t, json_string_value(j), json_string_length(j), mode, &ids, &e);
            t_work += time_now() - s;
            c_work += cpu_now() - cs;
            total_bytes += json_string_length(j);
            total_tokens += ids.n;
            json_decref(j);
            if (r) {
                rc = cli_fail(&e, ctx);
                break;
            }
            print_ids(&ids, count, true);
        }
    }
    free(line);
done:
    if (fflush(stdout) != 0) rc = cli_errorf(EXIT_RUNTIME, "stdout", "write failed");
    if (stats && !decode)
        fprintf(stderr,
                "tokenize: %zu bytes -> %zu tokens (%.3f bytes/token); load %.3f s; encode %.4f s = %.2f MB/s "
                "(cpu %.4f s = %.2f MB/s)\n",
                total_bytes, total_tokens, total_tokens ? (double)total_bytes / (double)total_tokens : 0.0, t_load, t_work,
                t_work > 0 ? (double)total_bytes / t_work / 1e6 : 0.0, c_work,
                c_work > 0 ? (double)total_bytes / c_work / 1e6 : 0.0);
    token_ids_free(&ids);
    buf_free(&text);
    tokenizer_free(t);
    return rc;
}

const CliCommand cmd_tokenize = {
    .name = "tokenize",
    .summary = "encode text from stdin to token ids (or --decode ids to text) with a model's or a file's tokenizer",
    .usage = "TOKENIZER_OR_MODEL",
    .min_pos = 1,
    .max_pos = 1,
    .flags = FLAGS,
    .details = "TOKENIZER_OR_MODEL is a GGUF model or vocabulary, a tokenizer.json, tokenizer.model, tokenizer.bin or "
               ".tiktoken file, a tiktoken name (cl100k_base, o200k_base, r50k_base), or a directory holding "
               "tokenizer.json or encoder.json + vocab.bpe. Without --jsonl all of stdin is one text and the ids are "
               "printed on one line, separated by spaces.",
    .run = run,
};
