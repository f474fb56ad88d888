// server.c — libmicrohttpd glue, routing and the request life cycle (see server.h).
#include "serve/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "serve/api.h"
#include "serve/sched.h"

struct Server {
    struct MHD_Daemon *d;
    Sched *sched;
    const Model *m;
    const Tokenizer *tok;
    const Chat *chat;
    ServeOpts o;
    char *web_root;        // realpath of o.web_dir, or NULL
    ApiLimits lim;
    int port;
    int64_t created;       // start time, for /v1/models
    atomic_bool stopping;
    atomic_uint_fast64_t counter; // ids and default seeds
    uint64_t id_salt;
};

void serve_opts_default(ServeOpts *o) {
    memset(o, 0, sizeof *o);
    o->host = "127.0.0.1";
    o->port = 8080;
    o->n_parallel = 4;
    o->queue = 64;
    o->max_body = 1 << 20;
    o->timeout_s = 600;
    o->max_connections = 512;
    o->idle_timeout_s = 60;
    o->model_name = "lossy";
    sampler_params_default(&o->defaults);
}

static uint64_t splitmix(uint64_t z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t next_random(Server *s) { return splitmix(s->id_salt ^ atomic_fetch_add(&s->counter, 1)); }

// ---- responses ----

static enum MHD_Result send_body(struct MHD_Connection *c, int status, const char *ctype, char *body, size_t len,
                                 bool owned) {
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, owned ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!r) {
        if (owned) free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", ctype);
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "Cache-Control", "no-store");
    if (status == 503) MHD_add_response_header(r, "Retry-After", "1");
    if (status == 401) MHD_add_response_header(r, "WWW-Authenticate", "Bearer");
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result send_json(struct MHD_Connection *c, int status, char *json) {
    return send_body(c, status, "application/json", json, strlen(json), true);
}

static enum MHD_Result send_error(struct MHD_Connection *c, const ApiError *err) {
    return send_json(c, err->status, api_error_json(err));
}

static enum MHD_Result fail(struct MHD_Connection *c, int status, const char *param, const char *code, const char *msg) {
    ApiError err;
    api_error(&err, status, param, code, "%s", msg);
    return send_error(c, &err);
}

// ---- waiting for a request's progress ----

// Wait until the request has news (0), or the client hung up / the server stops (-1).
static int wait_request(Server *s, ServeRequest *r, int sockfd) {
    for (;;) {
        if (atomic_load(&s->stopping)) return -1;
        struct pollfd p[2] = {{.fd = r->efd, .events = POLLIN}, {.fd = sockfd, .events = POLLRDHUP}};
        int n = poll(p, sockfd >= 0 ? 2 : 1, 250);
        if (n < 0 && errno != EINTR) return -1;
        if (n <= 0) continue;
        if (sockfd >= 0 && (p[1].revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL))) return -1;
        if (p[0].revents & POLLIN) return 0;
    }
}

static int conn_fd(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? ci->connect_fd : -1;
}

static const char *finish_reason(ServeFinish f) { return f == SERVE_STOP ? "stop" : "length"; }

// ---- streaming ----

typedef struct Stream {
    Server *s;
    ServeRequest *r;
    ApiKind kind;
    char id[48];
    int64_t created;
    bool include_usage;
    int sockfd;
    Buf pending;  // SSE bytes not yet handed to MHD
    size_t off;
    Buf text;     // scratch: new text
    bool ended;
} Stream;

static void sse_event(Buf *b, char *json) {
    buf_append_str(b, "data: ");
    buf_append_str(b, json);
    buf_append_str(b, "\n\n");
    free(json);
}

static void stream_finish(Stream *st, ServeFinish f) {
    Server *s = st->s;
    if (f == SERVE_ERROR || f == SERVE_CANCELLED) {
        ApiError err;
        pthread_mutex_lock(&st->r->mu);
        if (f == SERVE_ERROR) api_error(&err, 500, NULL, "generation_failed", "generation failed: %s", st->r->error);
        else api_error(&err, 503, NULL, "server_shutting_down", "the server is shutting down");
        pthread_mutex_unlock(&st->r->mu);
        sse_event(&st->pending, api_error_json(&err));
    } else {
        sse_event(&st->pending, api_chunk_json(st->kind, st->id, st->created, s->o.model_name, "", 0, false, finish_reason(f), NULL));
        if (st->include_usage) {
            pthread_mutex_lock(&st->r->mu);
            ApiUsage u = {st->r->n_prompt, st->r->n_generated};
            pthread_mutex_unlock(&st->r->mu);
            sse_event(&st->pending, api_chunk_json(st->kind, st->id, st->created, s->o.model_name, NULL, 0, false, NULL, &u));
        }
    }
    buf_append_str(&st->pending, "data: [DONE]\n\n");
    st->ended = true;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *out, size_t max) {
    (void)pos;
    Stream *st = cls;
    for (;;) {
        if (st->off < st->pending.len) {
            size_t n = st->pending.len - st->off;
            if (n > max) n = max;
            memcpy(out, st->pending.data + st->off, n);
            st->off += n;
            if (st->off == st->pending.len) st->off = st->pending.len = 0;
            return (ssize_t)n;
        }
        if (st->ended) return MHD_CONTENT_READER_END_OF_STREAM;
        if (wait_request(st->s, st->r, st->sockfd)) {
            atomic_store(&st->r->cancel, true);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        st->text.len = 0;
        ServeFinish f = serve_request_take(st->r, &st->text);
        if (st->text.len)
            sse_event(&st->pending, api_chunk_json(st->kind, st->id, st->created, st->s->o.model_name, st->text.data, st->text.len, false, NULL, NULL));
        if (f != SERVE_RUNNING) stream_finish(st, f);
    }
}

static void stream_free(void *cls) {
    Stream *st = cls;
    sched_release(st->s->sched, st->r);
    buf_free(&st->pending);
    buf_free(&st->text);
    free(st);
}

// ---- the generation endpoints ----

static int build_prompt(Server *s, const ApiRequest *q, TokenIds *ids, ApiError *err) {
    Err e;
    if (q->kind == API_CHAT) {
        if (!s->chat) return api_error(err, 400, "messages", "unsupported", "this model has no chat format; use /v1/completions");
        if (chat_render(s->chat, q->msgs, q->n_msgs, true, ids, NULL, NULL, &e)) return api_error(err, 400, "messages", "invalid_value", "%s", e.msg);
        return 0;
    }
    if (q->prompt_is_ids) {
        int64_t V = s->m->cfg.vocab_size;
        for (size_t i = 0; i < q->n_prompt_ids; i++) {
            if (q->prompt_ids[i] >= V) return api_error(err, 400, "prompt", "invalid_value", "prompt[%zu] = %d is outside the vocabulary (%lld tokens)", i, q->prompt_ids[i], (long long)V);
            token_ids_push(ids, q->prompt_ids[i]);
        }
    } else if (tokenizer_encode(s->tok, q->prompt, q->prompt_len, TOKENIZE_ORDINARY | TOKENIZE_ADD_SPECIAL, ids, &e)) {
        return api_error(err, 500, NULL, NULL, "%s", e.msg);
    }
    if (ids->n == 0) { // as `lossy run`: start from BOS, or end-of-text for vocabularies without one
        int32_t start = tokenizer_special_id(s->tok, TOKEN_ID_BOS);
        if (start < 0) start = tokenizer_special_id(s->tok, TOKEN_ID_EOS);
        if (start < 0) return api_error(err, 400, "prompt", "invalid_value", "empty prompt and the vocabulary has no BOS/EOS token to start from");
        token_ids_push(ids, start);
    }
    return 0;
}

static enum MHD_Result handle_generate(Server *s, struct MHD_Connection *c, ApiKind kind, const char *body, size_t len) {
    ApiRequest q;
    ApiError err;
    if (api_parse_request(kind, body, len, &s->o.defaults, &s->lim, &q, &err)) return send_error(c, &err);
    Err e;
    ServeRequest *r = serve_request_new(&e);
    if (!r) {
        api_request_free(&q);
        return fail(c, 503, NULL, "server_busy", e.msg);
    }
    if (build_prompt(s, &q, &r->prompt, &err)) {
        api_request_free(&q);
        sched_release(s->sched, r);
        return send_error(c, &err);
    }
    const int64_t n_ctx = sched_n_ctx(s->sched);
    if ((int64_t)r->prompt.n >= n_ctx) {
        api_error(&err, 400, kind == API_CHAT ? "messages" : "prompt", "context_length_exceeded",
                  "the prompt is %zu tokens; this server's context is %lld tokens", r->prompt.n, (long long)n_ctx);
        api_request_free(&q);
        sched_release(s->sched, r);
        return send_error(c, &err);
    }
    r->sp = q.sp;
    if (!q.seed_given) r->sp.seed = next_random(s);
    int64_t cap = s->o.max_tokens > 0 ? s->o.max_tokens : n_ctx;
    r->max_tokens = q.max_tokens >= 0 && q.max_tokens < cap ? q.max_tokens : cap;
    r->ignore_eos = q.ignore_eos;
    r->stop = q.stop;
    r->n_stop = q.n_stop;
    q.stop = NULL;
    q.n_stop = 0;
    if (kind == API_CHAT) r->n_stop_ids = chat_stop_ids(s->chat, r->stop_ids);
    if (s->o.timeout_s > 0) r->deadline = time_now() + s->o.timeout_s;
    const bool stream = q.stream, include_usage = q.include_usage;
    api_request_free(&q);
    if (sched_submit(s->sched, r)) {
        sched_release(s->sched, r);
        return fail(c, 503, NULL, "queue_full", "the server is busy (all slots and the queue are full); retry later");
    }
    char id[48];
    snprintf(id, sizeof id, "%s-%016llx", kind == API_CHAT ? "chatcmpl" : "cmpl", (unsigned long long)next_random(s));
    const int64_t created = (int64_t)time(NULL);
    const int sockfd = conn_fd(c);

    if (stream) {
        Stream *st = xcalloc(1, sizeof *st);
        st->s = s;
        st->r = r;
        st->kind = kind;
        snprintf(st->id, sizeof st->id, "%s", id);
        st->created = created;
        st->include_usage = include_usage;
        st->sockfd = sockfd;
        buf_init(&st->pending);
        buf_init(&st->text);
        // the opening chunk goes out at once, before the first token
        sse_event(&st->pending, api_chunk_json(kind, id, created, s->o.model_name, "", 0, kind == API_CHAT, NULL, NULL));
        struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, st, stream_free);
        if (!resp) {
            stream_free(st);
            return MHD_NO;
        }
        MHD_add_response_header(resp, "Content-Type", "text/event-stream");
        MHD_add_response_header(resp, "Cache-Control", "no-cache");
        MHD_add_response_header(resp, "X-Accel-Buffering", "no");
        enum MHD_Result ret = MHD_queue_response(c, 200, resp);
        MHD_destroy_response(resp);
        return ret;
    }

    Buf text;
    buf_init(&text);
    ServeFinish f = SERVE_RUNNING;
    while (f == SERVE_RUNNING) {
        if (wait_request(s, r, sockfd)) {
            buf_free(&text);
            sched_release(s->sched, r); // cancels
            return MHD_NO;              // the client is gone: close the connection
        }
        f = serve_request_take(r, &text);
    }
    enum MHD_Result ret;
    if (f == SERVE_ERROR || f == SERVE_CANCELLED) {
        pthread_mutex_lock(&r->mu);
        if (f == SERVE_ERROR) api_error(&err, 500, NULL, "generation_failed", "generation failed: %s", r->error);
        else api_error(&err, 503, NULL, "server_shutting_down", "the server is shutting down");
        pthread_mutex_unlock(&r->mu);
        ret = send_error(c, &err);
    } else {
        pthread_mutex_lock(&r->mu);
        ApiUsage u = {r->n_prompt, r->n_generated};
        pthread_mutex_unlock(&r->mu);
        ret = send_json(c, 200, api_completion_json(kind, id, created, s->o.model_name, text.data ? text.data : "", text.len, finish_reason(f), &u));
    }
    if (s->o.verbose) {
        pthread_mutex_lock(&r->mu);
        fprintf(stderr, "lossy: %s prompt %lld tokens, %lld generated, %.3f s (queue %.3f s)\n", id, (long long)r->n_prompt,
                (long long)r->n_generated, time_now() - r->t_submit, r->t_start > 0 ? r->t_start - r->t_submit : 0.0);
        pthread_mutex_unlock(&r->mu);
    }
    buf_free(&text);
    sched_release(s->sched, r);
    return ret;
}

// ---- static files ----

static const char *content_type(const char *path) {
    static const struct {
        const char *ext, *type;
    } T[] = {
        {".html", "text/html; charset=utf-8"}, {".js", "text/javascript; charset=utf-8"}, {".css", "text/css; charset=utf-8"},
        {".svg", "image/svg+xml"}, {".png", "image/png"}, {".ico", "image/x-icon"}, {".json", "application/json"},
        {".webmanifest", "application/manifest+json"}, {".txt", "text/plain; charset=utf-8"},
    };
    for (size_t i = 0; i < sizeof T / sizeof *T; i++)
        if (str_ends_with(path, T[i].ext)) return T[i].type;
    return "application/octet-stream";
}

// A URL path is served only when every segment is made of [A-Za-z0-9._-], does not start with '.', and the file's
// real path (symlinks resolved) stays inside the web root.
static bool safe_url_path(const char *url) {
    if (url[0] != '/' || strlen(url) > 200) return false;
    bool seg_start = true;
    for (const char *p = url + 1; *p; p++) {
        char ch = *p;
        if (ch == '/') {
            if (seg_start) return false; // "//"
            seg_start = true;
            continue;
        }
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-';
        if (!ok || (seg_start && ch == '.')) return false;
        seg_start = false;
    }
    return true;
}

static enum MHD_Result handle_static(Server *s, struct MHD_Connection *c, const char *url) {
    if (!s->web_root) return fail(c, 404, NULL, "not_found", "no web page is served (start with --web DIR)");
    if (strcmp(url, "/") == 0) url = "/index.html";
    if (!safe_url_path(url)) return fail(c, 404, NULL, "not_found", "not found");
    Buf p;
    buf_init(&p);
    buf_printf(&p, "%s%s", s->web_root, url);
    char real[PATH_MAX];
    struct stat sb;
    size_t rl = strlen(s->web_root);
    bool ok = realpath(p.data, real) && strncmp(real, s->web_root, rl) == 0 && real[rl] == '/' && stat(real, &sb) == 0 &&
              S_ISREG(sb.st_mode) && sb.st_size <= (8 << 20);
    buf_free(&p);
    if (!ok) return fail(c, 404, NULL, "not_found", "not found");
    char *data;
    size_t len;
    Err e;
    if (file_read_all(real, &data, &len, &e)) return fail(c, 500, NULL, NULL, "cannot read the file");
    struct MHD_Response *r = MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(data);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", content_type(real));
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    MHD_add_response_header(r, "Content-Security-Policy",
                            "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'");
    MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
    enum MHD_Result ret = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return ret;
}

// ---- routing ----

typedef struct Conn {
    Buf body;
    bool too_big;
    bool answered; // a response was queued on the first call (refused before the body): nothing more is done
} Conn;

static enum MHD_Result handle_health(Server *s, struct MHD_Connection *c) {
    SchedStats st;
    sched_stats(s->sched, &st);
    Buf b;
    buf_init(&b);
    buf_printf(&b, "{\"status\":\"ok\",\"slots_total\":%d,\"slots_processing\":%d,\"slots_idle\":%d,\"queued\":%zu,\"queue_size\":%zu,\"requests_served\":%llu,\"requests_cancelled\":%llu}",
               st.n_slots, st.n_active, st.n_slots - st.n_active, st.n_queued, st.queue_cap, (unsigned long long)st.n_served, (unsigned long long)st.n_cancelled);
    return send_json(c, 200, b.data);
}

// The first call for a request: headers only. Everything that can be refused without the body is refused now; a
// generation endpoint returns MHD_YES without a response, to receive its body.
static enum MHD_Result first_call(Server *s, struct MHD_Connection *c, const char *url, ApiKind kind, bool is_post,
                                  bool is_get, bool is_api, Conn *cn) {
    cn->answered = true;
    if (is_api && s->o.api_key && s->o.api_key[0] &&
        !api_check_bearer(MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization"), s->o.api_key))
        return fail(c, 401, NULL, "invalid_api_key", "invalid or missing API key (send 'Authorization: Bearer KEY')");
    if (kind) {
        if (!is_post) return fail(c, 405, NULL, "method_not_allowed", "use POST");
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (cl) {
            errno = 0;
            char *end;
            unsigned long long n = strtoull(cl, &end, 10);
            if (errno || *end || n > s->o.max_body)
                return fail(c, 413, NULL, "request_too_large", "the request body is larger than this server accepts");
        }
        cn->answered = false;
        return MHD_YES;
    }
    if (strcmp(url, "/health") == 0) return is_get ? handle_health(s, c) : fail(c, 405, NULL, "method_not_allowed", "use GET");
    if (strcmp(url, "/v1/models") == 0) {
        if (!is_get) return fail(c, 405, NULL, "method_not_allowed", "use GET");
        return send_json(c, 200, api_models_json(s->o.model_name, s->created));
    }
    if (is_api) return fail(c, 404, NULL, "not_found", "unknown endpoint");
    if (!is_get) return fail(c, 405, NULL, "method_not_allowed", "use GET");
    return handle_static(s, c, url);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    (void)version;
    Server *s = cls;
    const bool is_post = strcmp(method, "POST") == 0, is_get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    const bool is_api = strncmp(url, "/v1/", 4) == 0 || strcmp(url, "/v1") == 0;
    ApiKind kind = strcmp(url, "/v1/chat/completions") == 0 ? API_CHAT : strcmp(url, "/v1/completions") == 0 ? API_COMPLETION : 0;
    Conn *cn = *con_cls;
    if (!cn) {
        cn = xcalloc(1, sizeof *cn);
        buf_init(&cn->body);
        *con_cls = cn;
        return first_call(s, c, url, kind, is_post, is_get, is_api, cn);
    }
    if (cn->answered) { // never act on a request that was refused (e.g. a wrong API key) whatever follows
        *upload_size = 0;
        return MHD_NO;
    }
    if (*upload_size) {
        if (!cn->too_big) {
            size_t total;
            if (!size_add(cn->body.len, *upload_size, &total) || total > s->o.max_body) {
                cn->too_big = true;
                buf_free(&cn->body);
            } else {
                buf_append(&cn->body, upload, *upload_size);
            }
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (cn->too_big) return fail(c, 413, NULL, "request_too_large", "the request body is larger than this server accepts");
    return handle_generate(s, c, kind, cn->body.data ? cn->body.data : "", cn->body.len);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)cls, (void)c, (void)toe;
    Conn *cn = *con_cls;
    if (!cn) return;
    buf_free(&cn->body);
    free(cn);
    *con_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
    const Server *s = cls;
    if (!s->o.verbose) return;
    fprintf(stderr, "lossy: http: ");
    vfprintf(stderr, fmt, ap);
}

static bool is_loopback(const struct sockaddr *sa) {
    if (sa->sa_family == AF_INET) return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
    }
    return false;
}

int server_start(Server **out, const Model *m, const Tokenizer *tok, const Chat *chat, ThreadPool *pool,
                 const ServeOpts *o, Err *e) {
    *out = NULL;
    if (o->port < 0 || o->port > 65535) return ERR(e, "--port must be 0 to 65535 (got %d)", o->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai = NULL;
    char port[16];
    snprintf(port, sizeof port, "%d", o->port);
    int gai = getaddrinfo(o->host, port, &hints, &ai);
    if (gai) return ERR(e, "cannot resolve --host '%s': %s", o->host, gai_strerror(gai));
    Server *s = xcalloc(1, sizeof *s);
    s->m = m;
    s->tok = tok;
    s->chat = chat;
    s->o = *o;
    api_limits_default(&s->lim);
    s->created = (int64_t)time(NULL);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    s->id_salt = splitmix((uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)getpid());
    atomic_init(&s->stopping, false);
    atomic_init(&s->counter, 0);
    if (o->web_dir) {
        char real[PATH_MAX];
        if (!realpath(o->web_dir, real) || !path_is_dir(real)) {
            ERR(e, "web page directory '%s' not found", o->web_dir);
            goto fail;
        }
        s->web_root = xstrdup(real);
    }
    s->sched = sched_new(m, tok, o->n_parallel, o->n_ctx, o->queue, pool, e);
    if (!s->sched) goto fail;
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    s->d = MHD_start_daemon(flags, (uint16_t)o->port, NULL, NULL, on_request, s,
                            MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)o->max_connections,
                            MHD_OPTION_CONNECTION_TIMEOUT, o->idle_timeout_s,
                            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 << 10),
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                            MHD_OPTION_EXTERNAL_LOGGER, mhd_log, s,
                            MHD_OPTION_END);
    if (!s->d) {
        ERR(e, "cannot listen on %s:%d (address in use, or not allowed)", o->host, o->port);
        goto fail;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : o->port;
    if (!is_loopback(ai->ai_addr) && !(o->api_key && o->api_key[0]))
        fprintf(stderr, "lossy: warning: listening on %s, reachable from other machines, without --api-key: anyone who can "
                        "reach this address can use the model\n", o->host);
    freeaddrinfo(ai);
    *out = s;
    return 0;
fail:
    freeaddrinfo(ai);
    sched_free(s->sched);
    free(s->web_root);
    free(s);
    return -1;
}

int server_port(const Server *s) { return s->port; }

int64_t server_n_ctx(const Server *s) { return sched_n_ctx(s->sched); }

void server_stop(Server *s) {
    if (!s) return;
    atomic_store(&s->stopping, true);
    MHD_stop_daemon(s->d); // joins the connection threads; their waits see `stopping` within 250 ms
    sched_free(s->sched);
    free(s->web_root);
    free(s);
}
