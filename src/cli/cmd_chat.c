// cmd_chat.c — `lossy chat MODEL`: a terminal chat (src/sample/chat_session.h holds the conversation and its KV
// cache; this file is the terminal side: reading lines, the /commands, Ctrl-C, and messages).
//
// On a terminal it prompts with "> " and streams each answer; a line ending in a backslash continues on the next
// line. With stdin not a terminal, each input line is one user message and each answer is printed followed by a
// newline, until EOF — scriptable, and how the tests drive it. Ctrl-C stops the answer being written (the partial
// answer stays in the history); at the prompt it discards the line, and twice within two seconds quits.
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/cli_device.h"
#include "cli/cli_chat.h"
#include "cli/cli_sampling.h"
#include "sample/chat_session.h"

static const CliFlag FLAGS[] = {
    {"system", 0, FLAG_STR, "TEXT", NULL, "system message (change it later with /system)"},
    {"chat-format", 0, FLAG_STR, "NAME", NULL,
     "chatml, llama2, llama3, mistral, lossy, or raw (plain text continuation, for base models); default: from the "
     "model's template"},
    {"n-predict", 'n', FLAG_INT, "N", "1024", "tokens per answer at most (0 = until end of turn or a full context)"},
    CLI_SAMPLING_FLAGS,
    CLI_SEED_FLAG,
    {"stop", 0, FLAG_LIST, "TEXT", NULL, "also end an answer before this text"},
    {"ctx", 'c', FLAG_INT, "N", "0", "context length (0 = the model's, capped at 4096)"},
    {"trim-history", 0, FLAG_BOOL, NULL, NULL,
     "when the conversation outgrows the context, drop the oldest exchanges (with a notice) instead of refusing"},
    {"threads", 't', FLAG_INT, "N", NULL, "threads (default: all cores)"},
    {"trace", 0, FLAG_STR, "FILE", NULL, "write each turn's prompt ids (the whole conversation as fed) as JSON lines to FILE"},
    {"verbose", 'v', FLAG_BOOL, NULL, NULL, "token counts, cache reuse and speed after each answer (stderr)"},
    CLI_DEVICE_FLAG,
    {NULL, 0, 0, NULL, NULL, NULL},
};

static const char HELP_TEXT[] =
    "commands:\n"
    "  /reset         forget the conversation (the system message stays)\n"
    "  /system TEXT   set the system message; /system alone removes it\n"
    "  /save FILE     write the conversation as JSON ({\"messages\": [...]}, OpenAI shape)\n"
    "  /quit          leave (also /exit, Ctrl-D)\n"
    "  /help          this list\n"
    "Start a message with // to send text that begins with /. Ctrl-C stops an answer; twice at the prompt quits.\n";

static volatile sig_atomic_t g_interrupt;

static void on_sigint(int sig) {
    (void)sig;
    g_interrupt = 1;
}

static bool emit_stdout(void *ctx, const char *text, size_t len) {
    bool *any = ctx;
    if (len) *any = true;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return true;
}

// Read one line into b (without its newline). 1: a line, 0: end of input, -1: interrupted by Ctrl-C.
static int read_line(Buf *b) {
    b->len = 0;
    for (;;) {
        int ch = getc(stdin);
        if (ch == EOF) {
            if (ferror(stdin) && errno == EINTR) {
                clearerr(stdin);
                return -1;
            }
            if (b->len) break; // a last line without its newline
            return 0;
        }
        if (ch == '\n') break;
        char c = (char)ch;
        buf_append(b, &c, 1);
    }
    if (b->len && b->data[b->len - 1] == '\r') b->len--;
    buf_append(b, "", 1); // NUL-terminate for the command parser
    b->len--;
    return 1;
}

typedef struct ChatCli {
    const char *trace_path;
    Buf trace;
    int turn;
    bool verbose;
    int64_t n_ctx;
} ChatCli;

static void on_prompt(void *ctx, const ChatSession *cs, const ChatTurnStats *st) {
    ChatCli *c = ctx;
    if (st->n_dropped)
        fprintf(stderr, "lossy: history trimmed: dropped the %zu oldest messages so the conversation fits the context (%lld tokens)\n",
                st->n_dropped, (long long)c->n_ctx);
    if (!c->trace_path) return;
    buf_printf(&c->trace, "{\"turn\":%d,\"n_prompt\":%lld,\"n_reused\":%lld,\"n_dropped\":%zu,\"prompt_ids\":[", c->turn,
               (long long)st->n_prompt, (long long)st->n_reused, st->n_dropped);
    for (int64_t i = 0; i < st->n_prompt; i++) buf_printf(&c->trace, i ? ",%d" : "%d", cs->cached.ids[i]);
    buf_append_str(&c->trace, "]}\n");
    Err e;
    if (file_write_atomic_bytes(c->trace_path, c->trace.data, c->trace.len, &e))
        fprintf(stderr, "lossy: warning: trace not written: %s\n", e.msg);
}

static json_t *text_json(const char *s, size_t n) {
    Buf b;
    buf_init(&b);
    tokenizer_utf8_lossy(s, n, &b);
    json_t *j = json_stringn(b.data ? b.data : "", b.len);
    buf_free(&b);
    return j;
}

static int save_conversation(const ChatSession *cs, const char *path, Err *e) {
    ChatMessage *m;
    size_t n;
    chat_session_messages(cs, &m, &n);
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_object();
        json_object_set_new(o, "role", json_string(chat_role_name(m[i].role)));
        json_object_set_new(o, "content", text_json(m[i].content, m[i].len));
        json_array_append_new(arr, o);
    }
    free(m);
    json_t *root = json_object();
    json_object_set_new(root, "messages", arr);
    char *s = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (!s) return ERR(e, "out of memory writing the conversation");
    size_t len = strlen(s);
    s = xrealloc(s, len + 2);
    s[len] = '\n';
    int rc = file_write_atomic_bytes(path, s, len + 1, e);
    free(s);
    return rc;
}

static const char *skip_space(const char *s) {
    while (*s == ' ' || *s == '\t') s++;
    return s;
}

// Handle a /command. Returns 1 to go on, 0 to quit.
static int command(ChatSession *cs, const char *line) {
    const char *p = line + 1;
    size_t n = strcspn(p, " \t");
    const char *arg = skip_space(p + n);
    size_t arg_len = strlen(arg);
    while (arg_len && (arg[arg_len - 1] == ' ' || arg[arg_len - 1] == '\t')) arg_len--;
#define IS(name) (n == strlen(name) && strncmp(p, name, n) == 0)
    if (IS("quit") || IS("exit") || IS("q")) return 0;
    if (IS("help") || IS("?")) {
        fputs(HELP_TEXT, stderr);
    } else if (IS("reset") || IS("clear")) {
        chat_session_reset(cs);
        fprintf(stderr, "lossy: conversation cleared%s\n", cs->system ? " (the system message stays)" : "");
    } else if (IS("system")) {
        chat_session_set_system(cs, arg, arg_len);
        if (arg_len) fprintf(stderr, "lossy: system message set%s\n", cs->n_msgs ? " (the history stays; /reset to start over)" : "");
        else fprintf(stderr, "lossy: system message removed\n");
    } else if (IS("save")) {
        if (!arg_len) {
            fprintf(stderr, "lossy: /save needs a file name\n");
        } else {
            char *path = xstrndup(arg, arg_len);
            Err e;
            if (save_conversation(cs, path, &e)) fprintf(stderr, "lossy: error: %s (%s)\n", e.msg, path);
            else fprintf(stderr, "lossy: conversation saved to %s\n", path);
            free(path);
        }
    } else {
        fprintf(stderr, "lossy: unknown command /%.*s: /help lists them; start a message with // to send text beginning with /\n", (int)n, p);
    }
#undef IS
    return 1;
}

static int run(const CliArgs *a) {
    int n_threads;
    if (cli_flag_threads(a, &n_threads) != EXIT_OK) return EXIT_USAGE;
    const char *path = a->pos[0];
    Err e;
    int64_t n_predict = cli_flag_int(a, "n-predict");
    if (n_predict < 0) return cli_errorf(EXIT_USAGE, "--n-predict", "must be >= 0");
    SamplerParams sp;
    int rc = cli_sampling_params(a, true, &sp);
    if (rc != EXIT_OK) return rc;
    ChatSetup cs;
    if ((rc = cli_chat_setup_init(&cs, a, path, &sp, n_threads)) != EXIT_OK) return rc;
    if (cli_flag_given(a, "system")) {
        const char *sys = cli_flag_str(a, "system");
        chat_session_set_system(&cs.session, sys, strlen(sys));
    }
    ChatCli cc = {.trace_path = cli_flag_str(a, "trace"), .verbose = cli_flag_bool(a, "verbose"), .n_ctx = cs.state.n_ctx};
    buf_init(&cc.trace);
    char **stops;
    size_t n_stop = cli_flag_list(a, "stop", &stops);
    bool any_text = false;
    ChatTurnOpts to = {.max_tokens = n_predict, .trim_history = cli_flag_bool(a, "trim-history"), .emit = emit_stdout,
                       .emit_ctx = &any_text, .cancel = &g_interrupt, .stop = (const char *const *)stops,
                       .n_stop = n_stop, .on_prompt = on_prompt, .on_prompt_ctx = &cc};

    const bool interactive = isatty(STDIN_FILENO);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint; // no SA_RESTART: a read at the prompt returns EINTR
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);

    fprintf(stderr, "lossy: chat with %s: %s%s%s, context %lld tokens, %d threads\n", path,
            cs.raw ? "raw text continuation" : "chat format ", cs.raw ? "" : chat_format_name(cs.fmt),
            cs.raw ? " (--chat-format raw)" : "", (long long)cs.state.n_ctx, threadpool_size(cs.pool));
    if (!cs.raw) fprintf(stderr, "lossy: the chat format comes from %s\n", cs.why);
    if (interactive) fprintf(stderr, "Type a message and press Enter (end a line with \\ to continue it). /help lists the commands; Ctrl-C stops an answer; Ctrl-D or /quit leaves.\n");

    Buf line, msg;
    buf_init(&line);
    buf_init(&msg);
    double last_interrupt = -10;
    for (;;) {
        if (interactive) {
            fputs(msg.len ? "... " : "> ", stdout);
            fflush(stdout);
        }
        g_interrupt = 0;
        int r = read_line(&line);
        if (r < 0) { // Ctrl-C at the prompt
            double now = time_now();
            msg.len = 0;
            if (now - last_interrupt < 2.0) {
                fputs("\n", stderr);
                break;
            }
            last_interrupt = now;
            fprintf(stderr, "\n(line discarded; Ctrl-C again to quit, or /quit, or Ctrl-D)\n");
            continue;
        }
        if (r == 0) {
            if (interactive) fputs("\n", stdout);
            break;
        }
        if (interactive && line.len && line.data[line.len - 1] == '\\') { // continued on the next line
            buf_append(&msg, line.data, line.len - 1);
            buf_append(&msg, "\n", 1);
            continue;
        }
        buf_append(&msg, line.data, line.len);
        buf_append(&msg, "", 1);
        msg.len--;
        const char *text = msg.data;
        size_t text_len = msg.len;
        const char *t = skip_space(text);
        if (*t == 0) {
            msg.len = 0;
            continue;
        }
        if (text[0] == '/' && text[1] != '/') {
            int go = command(&cs.session, text);
            msg.len = 0;
            if (!go) break;
            continue;
        }
        if (text[0] == '/') text++, text_len--; // "//text" sends "/text"
        cc.turn++;
        any_text = false;
        ChatTurnStats st;
        int tr = chat_session_turn(&cs.session, text, text_len, &to, &st, &e);
        msg.len = 0;
        if (tr == CHAT_TURN_ERROR) {
            fputs("\n", stdout);
            rc = cli_fail(&e, path);
            break;
        }
        if (tr == CHAT_TURN_NO_ROOM) {
            cc.turn--;
            fprintf(stderr, "lossy: %s. The message was not sent: /reset to start over, or restart with a larger --ctx "
                            "or with --trim-history\n", e.msg);
            continue;
        }
        if (st.cancelled && st.n_generated == 0 && !any_text && cs.session.n_msgs && cs.session.msgs[cs.session.n_msgs - 1].role == CHAT_ROLE_USER) {
            cc.turn--;
            fprintf(stderr, "\nlossy: stopped before the answer began; the message was not sent\n");
            continue;
        }
        fputs(interactive ? "\n\n" : "\n", stdout);
        fflush(stdout);
        if (st.cancelled) fprintf(stderr, "lossy: answer stopped (Ctrl-C); what was shown stays in the history\n");
        if (st.context_full)
            fprintf(stderr, "lossy: the context is full (%lld tokens): the answer was cut. /reset to start over, or "
                            "restart with a larger --ctx or with --trim-history\n", (long long)cs.state.n_ctx);
        if (st.hit_max_tokens) fprintf(stderr, "lossy: the answer reached --n-predict (%lld tokens) and was cut\n", (long long)n_predict);
        if (cc.verbose)
            fprintf(stderr, "lossy: turn %d: prompt %lld tokens (%lld reused from the cache, %lld fed in %.3f s), "
                            "answer %lld tokens in %.3f s (%.1f tok/s), context %lld/%lld\n",
                    cc.turn, (long long)st.n_prompt, (long long)st.n_reused, (long long)(st.n_prompt - st.n_reused),
                    st.prompt_seconds, (long long)st.n_generated, st.gen_seconds,
                    st.gen_seconds > 0 ? st.n_generated / st.gen_seconds : 0, (long long)cs.state.pos, (long long)cs.state.n_ctx);
    }
    signal(SIGINT, SIG_DFL);
    buf_free(&line);
    buf_free(&msg);
    buf_free(&cc.trace);
    cli_chat_setup_free(&cs);
    return rc;
}

const CliCommand cmd_chat = {
    .name = "chat",
    .summary = "chat with a model in the terminal (multi-turn, streaming; reads one message per line from a pipe)",
    .usage = "MODEL",
    .min_pos = 1,
    .max_pos = 1,
    .flags = FLAGS,
    .details = "The chat format comes from --chat-format, else the template stored with the model, else its control\n"
               "tokens; a base model without any needs --chat-format (raw continues your text). Each turn renders the\n"
               "whole conversation and feeds only what the KV cache does not already hold. A conversation that no\n"
               "longer fits is refused with a message, or trimmed from the oldest exchange with --trim-history.\n"
               "Commands: /reset, /system TEXT, /save FILE, /quit, /help. With stdin not a terminal, each line is\n"
               "one user message and each answer is printed on its own line(s); the chat ends at EOF.",
    .run = run,
};
