// cmd_serve.c — `lossy serve MODEL`: the OpenAI-compatible HTTP server and the web chat page (src/serve/).
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/cli_chat.h"
#include "cli/cli_device.h"
#include "cli/cli_sampling.h"
#include "serve/server.h"

static const CliFlag FLAGS[] = {
    {"host", 0, FLAG_STR, "ADDR", "127.0.0.1", "address to listen on (other than loopback: use --api-key)"},
    {"port", 0, FLAG_INT, "N", "8080", "TCP port (0: any free port, printed at start)"},
    {"api-key", 0, FLAG_STR, "KEY", NULL, "require 'Authorization: Bearer KEY' on /v1/ (default: $LOSSY_API_KEY)"},
    {"parallel", 0, FLAG_INT, "N", "4", "slots: requests decoded together in one batch"},
    {"ctx", 'c', FLAG_INT, "N", "0", "context length per slot (0 = the model's, capped at 4096)"},
    {"queue", 0, FLAG_INT, "N", "64", "requests waiting for a slot; more get 503"},
    {"max-tokens", 0, FLAG_INT, "N", "0", "cap on tokens generated per request (0 = the context)"},
    {"timeout", 0, FLAG_FLOAT, "S", "600", "wall-time limit per request in seconds (0 = none)"},
    {"max-body", 0, FLAG_INT, "BYTES", "1048576", "largest request body accepted (413 above)"},
    {"max-connections", 0, FLAG_INT, "N", "512", "open connections at most"},
    {"idle-timeout", 0, FLAG_INT, "S", "60", "close connections silent this long (slow clients)"},
    {"chat-format", 0, FLAG_STR, "NAME", NULL, "chatml, llama2, llama3, mistral, lossy (default: from the model's template)"},
    {"alias", 0, FLAG_STR, "NAME", NULL, "model id in the API (default: the file name)"},
    {"web", 0, FLAG_STR, "DIR", NULL, "chat page files (default: web/ beside the binary's source tree or the current directory)"},
    {"no-web", 0, FLAG_BOOL, NULL, NULL, "do not serve the chat page"},
    CLI_SAMPLING_FLAGS,
    {"threads", 't', FLAG_INT, "N", NULL, "threads (default: all cores)"},
    {"verbose", 'v', FLAG_BOOL, NULL, NULL, "log each request to stderr"},
    CLI_DEVICE_FLAG,
    {NULL, 0, 0, NULL, NULL, NULL},
};

// The chat page: --web, else $LOSSY_WEB, else web/ in the source tree the binary was built in (build/X/lossy ->
// ../../web), else ./web. NULL when none exists.
static char *find_web_dir(const CliArgs *a) {
    if (cli_flag_given(a, "web")) return xstrdup(cli_flag_str(a, "web"));
    const char *env = getenv("LOSSY_WEB");
    if (env && *env) return xstrdup(env);
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *dir = dirname(exe);
        const char *rel[] = {"/../../web", "/../web", "/web", "/../share/lossy/web"};
        for (size_t i = 0; i < sizeof rel / sizeof *rel; i++) {
            Buf p;
            buf_init(&p);
            buf_printf(&p, "%s%s/index.html", dir, rel[i]);
            if (path_exists(p.data)) {
                p.len -= strlen("/index.html");
                p.data[p.len] = 0;
                return p.data;
            }
            buf_free(&p);
        }
    }
    return path_exists("web/index.html") ? xstrdup("web") : NULL;
}

static int run(const CliArgs *a) {
    int n_threads;
    if (cli_flag_threads(a, &n_threads) != EXIT_OK) return EXIT_USAGE;
    const char *path = a->pos[0];
    Err e;
    ServeOpts o;
    serve_opts_default(&o);
    o.host = cli_flag_str(a, "host");
    int64_t port = cli_flag_int(a, "port"), par = cli_flag_int(a, "parallel"), queue = cli_flag_int(a, "queue");
    int64_t body = cli_flag_int(a, "max-body"), conns = cli_flag_int(a, "max-connections"), idle = cli_flag_int(a, "idle-timeout");
    if (port < 0 || port > 65535) return cli_errorf(EXIT_USAGE, "--port", "must be 0 to 65535");
    if (par < 1 || par > 256) return cli_errorf(EXIT_USAGE, "--parallel", "must be 1 to 256");
    if (queue < 0 || queue > 100000) return cli_errorf(EXIT_USAGE, "--queue", "must be 0 to 100000");
    if (body < 1024 || body > ((int64_t)1 << 30)) return cli_errorf(EXIT_USAGE, "--max-body", "must be 1024 to 1073741824");
    if (conns < 1 || conns > 65536) return cli_errorf(EXIT_USAGE, "--max-connections", "must be 1 to 65536");
    if (idle < 1 || idle > 86400) return cli_errorf(EXIT_USAGE, "--idle-timeout", "must be 1 to 86400");
    o.port = (int)port;
    o.n_parallel = (int)par;
    o.queue = (size_t)queue;
    o.max_body = (size_t)body;
    o.max_connections = (size_t)conns;
    o.idle_timeout_s = (unsigned)idle;
    o.n_ctx = cli_flag_int(a, "ctx");
    o.max_tokens = cli_flag_int(a, "max-tokens");
    o.timeout_s = cli_flag_float(a, "timeout");
    o.verbose = cli_flag_bool(a, "verbose");
    o.api_key = cli_flag_given(a, "api-key") ? cli_flag_str(a, "api-key") : getenv("LOSSY_API_KEY");
    // the sampling flags are the defaults of requests that do not set a field themselves; the seed stays the server's
    uint64_t seed = o.defaults.seed;
    int src = cli_sampling_params(a, false, &o.defaults);
    if (src != EXIT_OK) return src;
    o.defaults.seed = seed;
    ChatFormat forced = CHAT_FORMAT_UNKNOWN;
    if (cli_flag_given(a, "chat-format") && chat_format_from_name(cli_flag_str(a, "chat-format"), &forced, &e))
        return cli_errorf(EXIT_USAGE, "--chat-format", "%s", e.msg);

    Model m;
    if ((src = cli_device_load(a, &m, path)) != EXIT_OK) return src;
    Tokenizer *tok = NULL;
    if (tokenizer_load(path, &tok, &e)) {
        model_free(&m);
        return cli_fail(&e, path);
    }
    char *tmpl = NULL;
    if (m.format == MODEL_FORMAT_GGUF ? chat_template_from_gguf(&m.gguf, &tmpl, &e)
        : m.format == MODEL_FORMAT_HF ? chat_template_from_hf_dir(path, &tmpl, &e) : 0)
        fprintf(stderr, "lossy: warning: chat template not read: %s\n", e.msg);
    ChatFormat fmt = forced ? forced : chat_format_detect(tmpl);
    const char *why = forced ? "--chat-format" : "the model's template";
    // As lossy chat decides, except that a base model still serves: /v1/completions continues text, and chat
    // requests get ChatML markers as ordinary text (what llama.cpp's server does too), with a warning here.
    if (!fmt) {
        why = "the vocabulary";
        if (cli_chat_vocab_format(tok, &fmt)) {
            if (tmpl) fprintf(stderr, "lossy: warning: the model's chat template is not one lossy recognises; using the vocabulary's control tokens (%s; --chat-format to choose)\n", chat_format_name(fmt));
        } else {
            why = "a fallback for a base model";
            fprintf(stderr, "lossy: warning: the model has %s and no chat control tokens in its vocabulary: it looks like a "
                            "base model; /v1/chat/completions will lay messages out as %s with its markers as ordinary "
                            "text (--chat-format NAME to choose; /v1/completions continues text as it is)\n",
                    tmpl ? "a chat template lossy does not recognise" : "no chat template", chat_format_name(fmt));
        }
    }
    Chat chat;
    int rc = EXIT_OK;
    if (chat_init(&chat, fmt, tok, tmpl, &e)) {
        free(tmpl);
        tokenizer_free(tok);
        model_free(&m);
        return cli_fail(&e, path);
    }
    free(tmpl);
    char *alias = NULL;
    if (cli_flag_given(a, "alias")) {
        alias = xstrdup(cli_flag_str(a, "alias"));
    } else {
        char *copy = xstrdup(path);
        size_t n = strlen(copy);
        while (n > 1 && copy[n - 1] == '/') copy[--n] = 0;
        alias = xstrdup(basename(copy));
        free(copy);
        if (str_ends_with(alias, ".gguf")) alias[strlen(alias) - 5] = 0;
    }
    o.model_name = alias;
    char *web = cli_flag_bool(a, "no-web") ? NULL : find_web_dir(a);
    char real[PATH_MAX];
    if (web && realpath(web, real)) {
        free(web);
        web = xstrdup(real);
    }
    o.web_dir = web;

    // signals are taken by this thread only (sigwait), so every thread started below inherits the block
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    ThreadPool *pool = threadpool_new(n_threads);
    Server *srv;
    if (server_start(&srv, &m, tok, &chat, pool, &o, &e)) {
        rc = cli_fail(&e, path);
    } else {
        fprintf(stderr, "lossy: serving %s (chat format %s, from %s) on http://%s%s%s:%d/ with %d slots of %lld tokens, %d threads%s%s\n",
                o.model_name, chat_format_name(fmt), why, strchr(o.host, ':') ? "[" : "", o.host, strchr(o.host, ':') ? "]" : "",
                server_port(srv), o.n_parallel, (long long)server_n_ctx(srv), threadpool_size(pool),
                web ? "; chat page from " : "; no chat page", web ? web : "");
        fflush(stderr);
        int sig = 0;
        sigwait(&sigs, &sig);
        fprintf(stderr, "lossy: %s received, stopping\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
        server_stop(srv);
    }
    threadpool_free(pool);
    free(web);
    free(alias);
    chat_free(&chat);
    tokenizer_free(tok);
    model_free(&m);
    return rc;
}

const CliCommand cmd_serve = {
    .name = "serve",
    .summary = "serve a model over an OpenAI-compatible HTTP API, with a web chat page",
    .usage = "MODEL",
    .min_pos = 1,
    .max_pos = 1,
    .flags = FLAGS,
    .details = "Endpoints: POST /v1/chat/completions, POST /v1/completions (streaming with \"stream\": true), GET /v1/models,\n"
               "GET /health, and the chat page at /. Listens on 127.0.0.1 unless --host says otherwise. Requests run in\n"
               "--parallel slots decoded together; more wait in a queue of --queue, and beyond that get 503. The sampling flags\n"
               "set the defaults for requests that do not give those fields.",
    .run = run,
};
