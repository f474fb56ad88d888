// test_serve.c — `lossy serve` end to end over real HTTP on a free loopback port, with the stories260K model:
// completions (plain and streamed) equal to `lossy run` with the same seed and settings, chat completions, errors
// and their statuses, the API key, concurrent requests equal to sequential ones, cancellation by disconnect, a full
// queue, slow and malformed clients, memory over many requests, static files without path traversal, and a clean
// shutdown (under BUILD=asan, LeakSanitizer makes a leak a non-zero exit).
//
// The HTTP client here is a minimal one for tests (one request per connection, "Connection: close").
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"

typedef struct Srv {
    pid_t pid;
    int port;
    char log[4200];
} Srv;

// Start `lossy serve MODEL --port 0 ...extra` and wait for its "serving ... on http://127.0.0.1:PORT/" line.
static bool srv_start(Srv *s, const char *const *extra) {
    const char *model = fixture_path("models/stories260K.gguf");
    if (!model) return false;
    char mp[4200];
    snprintf(mp, sizeof mp, "%s", model);
    snprintf(s->log, sizeof s->log, "%s/serve-%d.log", test_tmpdir(), (int)getpid());
    const char *argv[40] = {lossy_binary(), "serve", mp, "--port", "0", "--threads", "1"};
    int n = 7;
    for (int i = 0; extra && extra[i] && n < 38; i++) argv[n++] = extra[i];
    argv[n] = NULL;
    unlink(s->log); // a previous server's log would answer the wait below
    fflush(NULL);
    pid_t parent = getpid();
    s->pid = fork();
    if (s->pid < 0) return false;
    if (s->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM); // a failed test never leaves a server behind
        if (getppid() != parent) _exit(1);
        int fd = open(s->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int nul = open("/dev/null", O_RDWR);
        dup2(nul, 0);
        dup2(nul, 1);
        dup2(fd, 2);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    for (int tries = 0; tries < 600; tries++) { // up to 60 s (model load under sanitizers)
        char *text;
        size_t len;
        Err e;
        if (file_read_all(s->log, &text, &len, &e) == 0) {
            const char *p = strstr(text, "http://127.0.0.1:");
            if (p) {
                s->port = atoi(p + strlen("http://127.0.0.1:"));
                free(text);
                return s->port > 0;
            }
            free(text);
        }
        int st;
        if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
            s->pid = 0;
            return false;
        }
        usleep(100000);
    }
    return false;
}

// SIGTERM and wait: the exit code (128+signal when killed).
static int srv_stop(Srv *s) {
    if (s->pid <= 0) return -1;
    kill(s->pid, SIGTERM);
    int st = 0;
    for (int i = 0; i < 300; i++) {
        if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
            s->pid = 0;
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        }
        usleep(100000);
    }
    kill(s->pid, SIGKILL);
    waitpid(s->pid, &st, 0);
    s->pid = 0;
    return 137;
}

static void srv_print_log(const Srv *s) {
    char *text;
    size_t len;
    Err e;
    if (file_read_all(s->log, &text, &len, &e) == 0) {
        fprintf(stderr, "--- server log ---\n%s\n---\n", text);
        free(text);
    }
}

static bool log_has(const Srv *s, const char *needle) {
    char *text;
    size_t len;
    Err e;
    if (file_read_all(s->log, &text, &len, &e)) return false;
    bool found = strstr(text, needle) != NULL;
    free(text);
    return found;
}

static int connect_port(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a)) {
        close(fd);
        return -1;
    }
    struct timeval tv = {.tv_sec = 60};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    return fd;
}

static bool send_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0) return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

typedef struct Resp {
    int status;
    Buf head, body; // body de-chunked
} Resp;

static void resp_free(Resp *r) {
    buf_free(&r->head);
    buf_free(&r->body);
}

static void dechunk(const char *p, size_t n, Buf *out) {
    size_t i = 0;
    while (i < n) {
        char *end;
        unsigned long len = strtoul(p + i, &end, 16);
        const char *crlf = strstr(end, "\r\n");
        if (!crlf || len == 0) break;
        i = (size_t)(crlf - p) + 2;
        if (i + len > n) len = n - i;
        buf_append(out, p + i, len);
        i += len + 2;
    }
}

// Parse a whole raw response.
static void parse_resp(const Buf *raw, Resp *r) {
    buf_init(&r->head);
    buf_init(&r->body);
    r->status = 0;
    if (!raw->data) return;
    const char *sep = strstr(raw->data, "\r\n\r\n");
    if (!sep || sscanf(raw->data, "HTTP/1.%*d %d", &r->status) != 1) return;
    buf_append(&r->head, raw->data, (size_t)(sep - raw->data) + 2);
    const char *b = sep + 4;
    size_t n = raw->len - (size_t)(b - raw->data);
    if (strcasestr(r->head.data, "transfer-encoding: chunked")) dechunk(b, n, &r->body);
    else buf_append(&r->body, b, n);
    buf_append(&r->body, "", 0);
}

static void read_all(int fd, Buf *raw) {
    char chunk[8192];
    ssize_t n;
    while ((n = recv(fd, chunk, sizeof chunk, 0)) > 0) buf_append(raw, chunk, (size_t)n);
}

// One request, "Connection: close"; the response read to EOF. headers: extra header lines ("K: V\r\n"), may be NULL.
static int http(int port, const char *method, const char *path, const char *headers, const char *body, size_t n, Resp *r) {
    Buf raw;
    buf_init(&raw);
    int fd = connect_port(port);
    if (fd < 0) {
        parse_resp(&raw, r);
        return -1;
    }
    Buf req;
    buf_init(&req);
    buf_printf(&req, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s", method, path, headers ? headers : "");
    if (body) buf_printf(&req, "Content-Type: application/json\r\nContent-Length: %zu\r\n", n);
    buf_append_str(&req, "\r\n");
    send_all(fd, req.data, req.len);
    if (body) send_all(fd, body, n); // may fail when the server refuses early (413): the response is still read
    read_all(fd, &raw);
    close(fd);
    parse_resp(&raw, r);
    buf_free(&raw);
    buf_free(&req);
    return r->status;
}

static int post(int port, const char *path, const char *json, Resp *r) {
    return http(port, "POST", path, NULL, json, strlen(json), r);
}

static json_t *body_json(const Resp *r) { return r->body.data ? json_loads(r->body.data, 0, NULL) : NULL; }

// The text of a non-streamed answer (completion text or chat message content), malloc'ed; NULL when absent.
static char *answer_text(const Resp *r) {
    json_t *j = body_json(r);
    const json_t *c = json_array_get(json_object_get(j, "choices"), 0);
    const char *t = json_string_value(json_object_get(c, "text"));
    if (!t) t = json_string_value(json_object_get(json_object_get(c, "message"), "content"));
    char *out = t ? xstrdup(t) : NULL;
    json_decref(j);
    return out;
}

static const char *error_code(const Resp *r, char *buf, size_t n) {
    json_t *j = body_json(r);
    const char *c = json_string_value(json_object_get(json_object_get(j, "error"), "code"));
    snprintf(buf, n, "%s", c ? c : "(none)");
    json_decref(j);
    return buf;
}

// Concatenated text of an SSE stream; *done tells whether it ended with "data: [DONE]"; finish: the last
// finish_reason; usage_total: total_tokens of a usage chunk (-1 when none).
typedef struct Sse {
    Buf text;
    bool done, role_seen;
    char finish[32];
    long long usage_total, usage_completion;
    int n_events;
} Sse;

static void parse_sse(const char *body, Sse *s) {
    buf_init(&s->text);
    buf_append(&s->text, "", 0);
    s->done = s->role_seen = false;
    s->finish[0] = 0;
    s->usage_total = s->usage_completion = -1;
    s->n_events = 0;
    const char *p = body;
    while (p && (p = strstr(p, "data: "))) {
        p += 6;
        const char *end = strstr(p, "\n\n");
        if (!end) break;
        s->n_events++;
        if (strncmp(p, "[DONE]", 6) == 0) {
            s->done = true;
            break;
        }
        json_t *j = json_loadb(p, (size_t)(end - p), 0, NULL);
        const json_t *c = json_array_get(json_object_get(j, "choices"), 0);
        const json_t *delta = json_object_get(c, "delta");
        const char *t = delta ? json_string_value(json_object_get(delta, "content")) : json_string_value(json_object_get(c, "text"));
        if (t) buf_append_str(&s->text, t);
        if (delta && json_object_get(delta, "role")) s->role_seen = true;
        const char *f = json_string_value(json_object_get(c, "finish_reason"));
        if (f) snprintf(s->finish, sizeof s->finish, "%s", f);
        const json_t *u = json_object_get(j, "usage");
        if (u) {
            s->usage_total = json_integer_value(json_object_get(u, "total_tokens"));
            s->usage_completion = json_integer_value(json_object_get(u, "completion_tokens"));
        }
        json_decref(j);
        p = end;
    }
}

static long long health_field(int port, const char *field) {
    Resp r;
    http(port, "GET", "/health", NULL, NULL, 0, &r);
    json_t *j = body_json(&r);
    long long v = json_is_integer(json_object_get(j, field)) ? json_integer_value(json_object_get(j, field)) : -1;
    json_decref(j);
    resp_free(&r);
    return v;
}

// `lossy run` continuation (no echo, final newline removed), malloc'ed.
static char *lossy_run_text(const char *prompt, const char *n, const char *seed, const char *temp) {
    const char *model = fixture_path("models/stories260K.gguf");
    if (!model) return NULL;
    char mp[4200];
    snprintf(mp, sizeof mp, "%s", model);
    Buf out, err;
    buf_init(&out);
    buf_init(&err);
    int rc = run_lossy(NULL, &out, &err, "run", mp, "-p", prompt, "-n", n, "--seed", seed, "--temp", temp, "--no-echo", "--threads", "1", NULL);
    buf_free(&err);
    if (rc != 0 || !out.data) {
        buf_free(&out);
        return NULL;
    }
    if (out.len && out.data[out.len - 1] == '\n') out.data[--out.len] = 0;
    return out.data;
}

TEST(serve_completion_matches_lossy_run_plain_and_streamed) {
    Srv s;
    REQUIRE(srv_start(&s, NULL));
    char *ref = lossy_run_text("Once upon a time", "40", "11", "0.8");
    REQUIRE(ref);
    Resp r;
    CHECK_EQ_INT(post(s.port, "/v1/completions", "{\"model\":\"x\",\"prompt\":\"Once upon a time\",\"max_tokens\":40,\"seed\":11,\"temperature\":0.8}", &r), 200);
    char *text = answer_text(&r);
    CHECK_EQ_STR(text, ref);
    json_t *j = body_json(&r);
    CHECK_EQ_STR(json_string_value(json_object_get(j, "object")), "text_completion");
    const json_t *u = json_object_get(j, "usage");
    CHECK_EQ_INT(json_integer_value(json_object_get(u, "completion_tokens")), 40);
    CHECK_EQ_INT(json_integer_value(json_object_get(u, "total_tokens")),
                 json_integer_value(json_object_get(u, "prompt_tokens")) + 40);
    CHECK_EQ_STR(json_string_value(json_object_get(json_array_get(json_object_get(j, "choices"), 0), "finish_reason")), "length");
    json_decref(j);
    resp_free(&r);
    // streamed: same text, usage chunk, [DONE]
    CHECK_EQ_INT(post(s.port, "/v1/completions", "{\"prompt\":\"Once upon a time\",\"max_tokens\":40,\"seed\":11,\"temperature\":0.8,"
                                                 "\"stream\":true,\"stream_options\":{\"include_usage\":true}}", &r), 200);
    CHECK(strcasestr(r.head.data, "content-type: text/event-stream") != NULL);
    Sse sse;
    parse_sse(r.body.data, &sse);
    CHECK_EQ_STR(sse.text.data, ref);
    CHECK(sse.done);
    CHECK(sse.n_events >= 4); // opening chunk, text as it comes, the finish chunk, usage
    CHECK_EQ_STR(sse.finish, "length");
    CHECK_EQ_INT(sse.usage_completion, 40);
    buf_free(&sse.text);
    resp_free(&r);
    // greedy with a stop string: the text ends before it
    char *greedy = lossy_run_text("Once upon a time", "60", "1", "0");
    REQUIRE(greedy);
    const char *cut = strstr(greedy, " she");
    if (cut) {
        CHECK_EQ_INT(post(s.port, "/v1/completions", "{\"prompt\":\"Once upon a time\",\"max_tokens\":60,\"temperature\":0,\"stop\":[\" she\"]}", &r), 200);
        char *t2 = answer_text(&r);
        CHECK(t2 && strlen(t2) == (size_t)(cut - greedy) && strncmp(t2, greedy, strlen(t2)) == 0);
        j = body_json(&r);
        CHECK_EQ_STR(json_string_value(json_object_get(json_array_get(json_object_get(j, "choices"), 0), "finish_reason")), "stop");
        json_decref(j);
        free(t2);
        resp_free(&r);
    }
    free(greedy);
    // a prompt longer than one prefill piece (the scheduler feeds it over several iterations): still lossy run's text
    char lp[600] = "";
    for (int k = 0; k < 3; k++)
        strcat(lp, "Once upon a time there was a little girl named Lily. She liked to play in the park with her dog. "
                   "One day she saw a big red ball under a tree and ran to get it. ");
    lp[strlen(lp) - 1] = 0;
    char *lref = lossy_run_text(lp, "30", "5", "0.8"), body[900];
    REQUIRE(lref);
    snprintf(body, sizeof body, "{\"prompt\":\"%s\",\"max_tokens\":30,\"seed\":5,\"temperature\":0.8}", lp);
    CHECK_EQ_INT(post(s.port, "/v1/completions", body, &r), 200);
    char *lt = answer_text(&r);
    CHECK_EQ_STR(lt, lref);
    j = body_json(&r);
    json_int_t np = json_integer_value(json_object_get(json_object_get(j, "usage"), "prompt_tokens"));
    CHECKF(np > 64 * 2, "the long prompt has only %lld tokens: it does not take several pieces", (long long)np);
    json_decref(j);
    resp_free(&r);
    free(lt);
    free(lref);
    free(text);
    free(ref);
    CHECK_EQ_INT(srv_stop(&s), 0);
}

TEST(serve_chat_completions_and_models) {
    Srv s;
    REQUIRE(srv_start(&s, (const char *const[]){"--alias", "tiny", NULL}));
    Resp r;
    CHECK_EQ_INT(http(s.port, "GET", "/v1/models", NULL, NULL, 0, &r), 200);
    CHECK(strstr(r.body.data, "\"id\":\"tiny\"") != NULL);
    resp_free(&r);
    const char *req = "{\"model\":\"tiny\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Tell me a story.\"}]}],"
                      "\"max_tokens\":24,\"seed\":5,\"temperature\":0.7,\"top_k\":20,\"top_p\":0.9,\"min_p\":0.02,\"presence_penalty\":0.5,\"frequency_penalty\":0.2}";
    CHECK_EQ_INT(post(s.port, "/v1/chat/completions", req, &r), 200);
    json_t *j = body_json(&r);
    CHECK_EQ_STR(json_string_value(json_object_get(j, "object")), "chat.completion");
    CHECK_EQ_STR(json_string_value(json_object_get(j, "model")), "tiny");
    const json_t *msg = json_object_get(json_array_get(json_object_get(j, "choices"), 0), "message");
    CHECK_EQ_STR(json_string_value(json_object_get(msg, "role")), "assistant");
    char *plain = answer_text(&r);
    REQUIRE(plain);
    json_decref(j);
    resp_free(&r);
    // the same request streamed gives the same text, with a role delta first
    Buf sreq;
    buf_init(&sreq);
    buf_append(&sreq, req, strlen(req) - 1);
    buf_append_str(&sreq, ",\"stream\":true}");
    CHECK_EQ_INT(post(s.port, "/v1/chat/completions", sreq.data, &r), 200);
    Sse sse;
    parse_sse(r.body.data, &sse);
    CHECK(sse.role_seen);
    CHECK(sse.done);
    CHECK_EQ_STR(sse.text.data, plain);
    CHECK_EQ_INT(sse.usage_total, -1); // no usage chunk unless asked
    buf_free(&sse.text);
    buf_free(&sreq);
    resp_free(&r);
    free(plain);
    CHECK_EQ_INT(srv_stop(&s), 0);
    // stories260K has no chat template and no control tokens: served all the same, with the warning lossy chat's
    // refusal gives (as an error there); a forced format starts without it
    CHECK(log_has(&s, "looks like a base model"));
    REQUIRE(srv_start(&s, (const char *const[]){"--chat-format", "chatml", NULL}));
    CHECK(!log_has(&s, "looks like a base model"));
    CHECK(log_has(&s, "--chat-format"));
    CHECK_EQ_INT(srv_stop(&s), 0);
}

typedef struct Case {
    const char *method, *path, *body;
    int status;
    const char *code; // expected error code, or NULL
} Case;

TEST(serve_errors_have_openai_shape_and_status) {
    Srv s;
    REQUIRE(srv_start(&s, (const char *const[]){"--max-body", "4096", "--ctx", "64", NULL}));
    static const Case cases[] = {
        {"GET", "/v1/nothing", NULL, 404, "not_found"},
        {"GET", "/v1/completions", NULL, 405, "method_not_allowed"},
        {"POST", "/v1/completions", "{\"prompt\": \"a\",", 400, "invalid_json"},
        {"POST", "/v1/completions", "", 400, "invalid_json"},
        {"POST", "/v1/completions", "[1,2]", 400, "invalid_type"},
        {"POST", "/v1/completions", "{\"prompt\": 5}", 400, "invalid_type"},
        {"POST", "/v1/completions", "{\"prompt\": \"a\", \"temperature\": \"hot\"}", 400, "invalid_type"},
        {"POST", "/v1/completions", "{\"prompt\": \"a\", \"temperature\": 1e300}", 400, "invalid_value"},
        {"POST", "/v1/completions", "{\"prompt\": \"a\", \"max_tokens\": 1e300}", 400, "invalid_value"},
        {"POST", "/v1/completions", "{\"prompt\": \"a\", \"max_tokens\": -1}", 400, "invalid_value"},
        {"POST", "/v1/completions", "{\"prompt\": \"a\", \"max_tokens\": 2.5}", 400, "invalid_value"},
        {"POST", "/v1/completions", "{\"prompt\": \"a\", \"seed\": 123456789012345678901234567890}", 400, "invalid_json"},
        {"POST", "/v1/completions", "{\"prompt\": \"a\", \"top_k\": true}", 400, "invalid_type"},
        {"POST", "/v1/completions", "{\"prompt\": \"a\", \"stream\": \"yes\"}", 400, "invalid_type"},
        {"POST", "/v1/completions", "{\"prompt\": \"a\", \"n\": 2}", 400, "unsupported"},
        {"POST", "/v1/completions", "{\"prompt\": \"a\", \"stop\": [\"x\", 3]}", 400, "invalid_type"},
        {"POST", "/v1/completions", "{\"prompt\": \"a\", \"stop\": \"\"}", 400, "invalid_value"},
        {"POST", "/v1/completions", "{\"prompt\": \"a\", \"prompt\": \"b\"}", 400, "invalid_json"},
        {"POST", "/v1/completions", "{\"prompt\": [1, 2, 999999]}", 400, "invalid_value"},
        {"POST", "/v1/completions", "{\"prompt\": [1, -2]}", 400, "invalid_value"},
        {"POST", "/v1/completions", "{\"prompt\": [\"a\", \"b\"]}", 400, "invalid_type"},
        {"POST", "/v1/completions", "{\"prompt\": \"a\\u0000b\"}", 400, "invalid_json"},
        {"POST", "/v1/completions", "{\"prompt\": \"\xff\xfe bad utf-8\"}", 400, "invalid_json"},
        {"POST", "/v1/completions", "{\"prompt\": \"\xc3\"}", 400, "invalid_json"},
        {"POST", "/v1/chat/completions", "{\"messages\": []}", 400, "invalid_value"},
        {"POST", "/v1/chat/completions", "{\"messages\": \"hi\"}", 400, "invalid_type"},
        {"POST", "/v1/chat/completions", "{\"prompt\": \"hi\"}", 400, "missing_required_parameter"},
        {"POST", "/v1/chat/completions", "{\"messages\": [{\"role\": \"wizard\", \"content\": \"hi\"}]}", 400, "invalid_value"},
        {"POST", "/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": 7}]}", 400, "invalid_type"},
        {"POST", "/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image_url\"}]}]}", 400, "unsupported"},
        {"POST", "/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"tools\": [{}]}", 400, "unsupported"},
    };
    char code[64];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const Case *c = &cases[i];
        Resp r;
        int st = http(s.port, c->method, c->path, NULL, c->body, c->body ? strlen(c->body) : 0, &r);
        CHECKF(st == c->status, "case %zu (%s %s %s): status %d, want %d: %s", i, c->method, c->path, c->body ? c->body : "", st, c->status, r.body.data ? r.body.data : "");
        json_t *j = body_json(&r);
        const json_t *err = json_object_get(j, "error");
        CHECKF(json_is_string(json_object_get(err, "message")) && json_is_string(json_object_get(err, "type")),
               "case %zu: not an OpenAI error body: %s", i, r.body.data ? r.body.data : "");
        if (c->code) CHECKF(strcmp(error_code(&r, code, sizeof code), c->code) == 0, "case %zu: code %s, want %s", i, code, c->code);
        json_decref(j);
        resp_free(&r);
    }
    // deep nesting, an oversized body, a prompt longer than the context
    Buf b;
    buf_init(&b);
    buf_append_str(&b, "{\"prompt\": \"a\", \"x\": ");
    for (int i = 0; i < 200; i++) buf_append_str(&b, "[");
    for (int i = 0; i < 200; i++) buf_append_str(&b, "]");
    buf_append_str(&b, "}");
    Resp r;
    CHECK_EQ_INT(post(s.port, "/v1/completions", b.data, &r), 400);
    CHECK(r.body.data && strstr(r.body.data, "nested"));
    resp_free(&r);
    b.len = 0;
    buf_append_str(&b, "{\"prompt\": \"");
    for (int i = 0; i < 5000; i++) buf_append_str(&b, "a");
    buf_append_str(&b, "\"}");
    CHECK_EQ_INT(post(s.port, "/v1/completions", b.data, &r), 413);
    CHECK_EQ_STR(error_code(&r, code, sizeof code), "request_too_large");
    resp_free(&r);
    b.len = 0;
    buf_append_str(&b, "{\"prompt\": \"");
    for (int i = 0; i < 200; i++) buf_append_str(&b, "Once upon a time ");
    buf_append_str(&b, "\"}");
    CHECK_EQ_INT(post(s.port, "/v1/completions", b.data, &r), 400);
    CHECK_EQ_STR(error_code(&r, code, sizeof code), "context_length_exceeded");
    resp_free(&r);
    buf_free(&b);
    // control-token spellings in a prompt stay text: "<s>" is several ordinary tokens, not BOS
    CHECK_EQ_INT(post(s.port, "/v1/completions", "{\"prompt\": \"<s><s><s>\", \"max_tokens\": 1}", &r), 200);
    json_t *j = body_json(&r);
    CHECK(json_integer_value(json_object_get(json_object_get(j, "usage"), "prompt_tokens")) > 4);
    json_decref(j);
    resp_free(&r);
    // headers beyond the connection's memory limit are refused by the library (431)
    Buf big;
    buf_init(&big);
    buf_append_str(&big, "X-Big: ");
    for (int i = 0; i < 100000; i++) buf_append(&big, "x", 1);
    buf_append_str(&big, "\r\n");
    int st = http(s.port, "GET", "/health", big.data, NULL, 0, &r);
    CHECKF(st == 431 || st == 413, "huge header: status %d", st);
    resp_free(&r);
    buf_free(&big);
    // a raw request that is not HTTP: answered by the library, and the server stays up
    int fd = connect_port(s.port);
    REQUIRE(fd >= 0);
    const char *junk = "\x16\x03\x01 garbage\r\n\r\n";
    send_all(fd, junk, strlen(junk));
    Buf raw;
    buf_init(&raw);
    read_all(fd, &raw);
    close(fd);
    buf_free(&raw);
    CHECK_EQ_INT(http(s.port, "GET", "/health", NULL, NULL, 0, &r), 200);
    resp_free(&r);
    CHECK_EQ_INT(srv_stop(&s), 0);
}

TEST(serve_api_key_is_enforced) {
    Srv s;
    REQUIRE(srv_start(&s, (const char *const[]){"--api-key", "sekret-123", NULL}));
    Resp r;
    char code[64];
    const char *body = "{\"prompt\": \"Once\", \"max_tokens\": 2}";
    CHECK_EQ_INT(post(s.port, "/v1/completions", body, &r), 401);
    CHECK_EQ_STR(error_code(&r, code, sizeof code), "invalid_api_key");
    resp_free(&r);
    CHECK_EQ_INT(http(s.port, "POST", "/v1/completions", "Authorization: Bearer sekret-12\r\n", body, strlen(body), &r), 401);
    resp_free(&r);
    CHECK_EQ_INT(http(s.port, "POST", "/v1/completions", "Authorization: Bearer sekret-1234\r\n", body, strlen(body), &r), 401);
    resp_free(&r);
    CHECK_EQ_INT(http(s.port, "POST", "/v1/completions", "Authorization: sekret-123\r\n", body, strlen(body), &r), 401);
    resp_free(&r);
    CHECK_EQ_INT(http(s.port, "GET", "/v1/models", NULL, NULL, 0, &r), 401);
    resp_free(&r);
    CHECK_EQ_INT(http(s.port, "POST", "/v1/completions", "Authorization: Bearer sekret-123\r\n", body, strlen(body), &r), 200);
    resp_free(&r);
    CHECK_EQ_INT(http(s.port, "GET", "/health", NULL, NULL, 0, &r), 200); // health checks need no key
    resp_free(&r);
    CHECK_EQ_INT(srv_stop(&s), 0);
}

typedef struct Job {
    int port;
    char body[256];
    int status;
    char *text;
} Job;

static void *job_run(void *arg) {
    Job *j = arg;
    Resp r;
    j->status = post(j->port, "/v1/completions", j->body, &r);
    if (strstr(j->body, "\"stream\":true")) {
        Sse s;
        parse_sse(r.body.data, &s);
        j->text = s.done ? s.text.data : (buf_free(&s.text), NULL);
    } else {
        j->text = answer_text(&r);
    }
    resp_free(&r);
    return NULL;
}

TEST(serve_concurrent_requests_equal_sequential) {
    Srv s;
    REQUIRE(srv_start(&s, (const char *const[]){"--parallel", "4", NULL}));
    enum { N = 7 };
    static const char *const prompts[] = {"Once upon a time", "The cat", "Lily and Tom went", "One day", "A big dog", "Sam liked", "The sun"};
    Job seq[N], par[N];
    for (int i = 0; i < N; i++) {
        seq[i] = (Job){.port = s.port};
        snprintf(seq[i].body, sizeof seq[i].body, "{\"prompt\":\"%s\",\"max_tokens\":%d,\"seed\":%d,\"temperature\":0.9%s}",
                 prompts[i], 20 + 9 * i, 100 + i, i % 2 ? ",\"stream\":true" : "");
        par[i] = seq[i];
        job_run(&seq[i]); // alone: one active slot
    }
    pthread_t th[N];
    for (int i = 0; i < N; i++) pthread_create(&th[i], NULL, job_run, &par[i]);
    for (int i = 0; i < N; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < N; i++) {
        CHECK_EQ_INT(seq[i].status, 200);
        CHECK_EQ_INT(par[i].status, 200);
        CHECKF(seq[i].text && par[i].text && strcmp(seq[i].text, par[i].text) == 0, "request %d: alone \"%s\" vs together \"%s\"", i,
               seq[i].text ? seq[i].text : "(null)", par[i].text ? par[i].text : "(null)");
        free(seq[i].text);
        free(par[i].text);
    }
    CHECK_EQ_INT(health_field(s.port, "requests_served"), 2 * N);
    CHECK_EQ_INT(srv_stop(&s), 0);
}

TEST(serve_disconnect_cancels_and_queue_full_answers_503) {
    Srv s;
    REQUIRE(srv_start(&s, (const char *const[]){"--parallel", "1", "--queue", "1", "--ctx", "2048", NULL}));
    // a long stream: read its first event, then hang up; the slot must come free
    int fd = connect_port(s.port);
    REQUIRE(fd >= 0);
    const char *body = "{\"prompt\":\"Once\",\"max_tokens\":2000,\"temperature\":1.5,\"top_k\":0,\"top_p\":1,\"min_p\":0,\"stream\":true,\"seed\":3}";
    Buf req;
    buf_init(&req);
    buf_printf(&req, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n%s", strlen(body), body);
    REQUIRE(send_all(fd, req.data, req.len));
    char first[256];
    CHECK(recv(fd, first, sizeof first, 0) > 0);
    close(fd);
    long long served = 0;
    for (int i = 0; i < 200 && served != 1; i++) { // the slot frees as soon as the server sees the hang-up
        served = health_field(s.port, "requests_served");
        if (served != 1) usleep(50000);
    }
    CHECK_EQ_INT(served, 1);
    CHECK_EQ_INT(health_field(s.port, "requests_cancelled"), 1);
    CHECK_EQ_INT(health_field(s.port, "slots_processing"), 0);
    // many requests at once on 1 slot + 1 queue place: some are refused with 503, the others complete
    enum { N = 12 };
    Job jobs[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        jobs[i] = (Job){.port = s.port};
        snprintf(jobs[i].body, sizeof jobs[i].body, "{\"prompt\":\"Once\",\"max_tokens\":1500,\"temperature\":1.5,\"top_k\":0,\"top_p\":1,\"min_p\":0,\"seed\":%d}", i);
        pthread_create(&th[i], NULL, job_run, &jobs[i]);
    }
    int n503 = 0, n200 = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        n503 += jobs[i].status == 503;
        n200 += jobs[i].status == 200;
        free(jobs[i].text);
    }
    CHECK(n503 > 0);
    CHECK(n200 > 0);
    CHECK_EQ_INT(n503 + n200, N);
    buf_free(&req);
    CHECK_EQ_INT(srv_stop(&s), 0);
}

static long rss_kb(pid_t pid) {
    char path[64], *text;
    size_t len;
    Err e;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    if (file_read_all(path, &text, &len, &e)) return -1;
    const char *p = strstr(text, "VmRSS:");
    long kb = p ? atol(p + 6) : -1;
    free(text);
    return kb;
}

TEST(serve_slow_clients_many_requests_and_clean_exit) {
    Srv s;
    REQUIRE(srv_start(&s, (const char *const[]){"--idle-timeout", "30", NULL}));
    // a client that sends half its headers and stalls does not hold up others
    int slow = connect_port(s.port);
    REQUIRE(slow >= 0);
    const char *half = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Le";
    send_all(slow, half, strlen(half));
    Resp r;
    CHECK_EQ_INT(post(s.port, "/v1/completions", "{\"prompt\":\"Once\",\"max_tokens\":3}", &r), 200);
    resp_free(&r);
    // a client announcing a body it never sends: still no effect on others
    int slow2 = connect_port(s.port);
    REQUIRE(slow2 >= 0);
    const char *short_body = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"pro";
    send_all(slow2, short_body, strlen(short_body));
    // sequential requests: memory settles (no per-request growth)
    long before = 0;
    for (int i = 0; i < 300; i++) {
        const char *b = i % 3 == 0 ? "{\"prompt\":\"The dog\",\"max_tokens\":4,\"stream\":true}"
                      : i % 3 == 1 ? "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":4}"
                                   : "{\"prompt\":\"x\", \"temperature\": \"bad\"}";
        int st = post(s.port, i % 3 == 1 ? "/v1/chat/completions" : "/v1/completions", b, &r);
        resp_free(&r);
        if (st != (i % 3 == 2 ? 400 : 200)) {
            CHECKF(false, "request %d: status %d", i, st);
            break;
        }
        if (i == 99) before = rss_kb(s.pid);
    }
    long after = rss_kb(s.pid);
#ifndef __SANITIZE_ADDRESS__ // AddressSanitizer's quarantine keeps freed memory resident; LeakSanitizer checks the exit instead
    CHECKF(before > 0 && after - before < 4096, "RSS %ld kB after 100 requests, %ld kB after 300", before, after);
#else
    (void)before, (void)after;
#endif
    close(slow);
    close(slow2);
    int rc = srv_stop(&s);
    CHECK_EQ_INT(rc, 0);
    if (rc) srv_print_log(&s);
}

TEST(serve_static_files_without_traversal) {
    // a web root of our own, with a secret beside it
    char root[4200], file[4300];
    snprintf(root, sizeof root, "%s/www", test_tmpdir());
    REQUIRE(mkdir(root, 0755) == 0);
    Err e;
    snprintf(file, sizeof file, "%s/index.html", root);
    REQUIRE(file_write_atomic_bytes(file, "<!doctype html><title>t</title>", 31, &e) == 0);
    snprintf(file, sizeof file, "%s/app.js", root);
    REQUIRE(file_write_atomic_bytes(file, "let x = 1;", 10, &e) == 0);
    snprintf(file, sizeof file, "%s/.env", root);
    REQUIRE(file_write_atomic_bytes(file, "SECRET", 6, &e) == 0);
    snprintf(file, sizeof file, "%s/secret.txt", test_tmpdir());
    REQUIRE(file_write_atomic_bytes(file, "SECRET", 6, &e) == 0);
    snprintf(file, sizeof file, "%s/link.txt", root);
    char target[4300];
    snprintf(target, sizeof target, "%s/secret.txt", test_tmpdir());
    REQUIRE(symlink(target, file) == 0);
    Srv s;
    REQUIRE(srv_start(&s, (const char *const[]){"--web", root, NULL}));
    Resp r;
    CHECK_EQ_INT(http(s.port, "GET", "/", NULL, NULL, 0, &r), 200);
    CHECK(strcasestr(r.head.data, "content-type: text/html") != NULL);
    CHECK(r.body.data && strstr(r.body.data, "<title>t</title>"));
    resp_free(&r);
    CHECK_EQ_INT(http(s.port, "GET", "/app.js", NULL, NULL, 0, &r), 200);
    CHECK(strcasestr(r.head.data, "content-type: text/javascript") != NULL);
    resp_free(&r);
    static const char *const bad[] = {"/../secret.txt", "/%2e%2e/secret.txt", "/..%2fsecret.txt", "/.env", "/link.txt",
                                      "//etc/passwd", "/nope.html", "/a/../../secret.txt"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int st = http(s.port, "GET", bad[i], NULL, NULL, 0, &r);
        CHECKF(st == 404 || st == 400, "%s: status %d", bad[i], st);
        CHECKF(!r.body.data || !strstr(r.body.data, "SECRET"), "%s leaked the secret", bad[i]);
        resp_free(&r);
    }
    CHECK_EQ_INT(http(s.port, "POST", "/index.html", NULL, "{}", 2, &r), 405);
    resp_free(&r);
    CHECK_EQ_INT(srv_stop(&s), 0);
}

TEST(serve_bad_flags) {
    Buf out, err;
    buf_init(&out);
    buf_init(&err);
    CHECK_EQ_INT(run_lossy(NULL, &out, &err, "serve", "x.gguf", "--parallel", "0", NULL), 2);
    CHECK_EQ_INT(run_lossy(NULL, &out, &err, "serve", "x.gguf", "--chat-format", "jinja", NULL), 2);
    CHECK_EQ_INT(run_lossy(NULL, &out, &err, "serve", "/no/such.gguf", "--port", "0", NULL), 1);
    buf_free(&out);
    buf_free(&err);
}

// The official openai npm client, curl and the chat page in headless Chromium (tests/web/run.sh installs the npm
// packages; node, npm and chromium come from the Makefile's DEB_PACKAGES). Screenshots go to <build>/web-test/.
TEST(serve_web_clients_openai_curl_chromium) {
    const char *model = fixture_path("models/stories260K.gguf");
    REQUIRE(model);
    char mp[4200], script[4200], outdir[4200], bin[4200];
    snprintf(mp, sizeof mp, "%s", model);
    snprintf(bin, sizeof bin, "%s", lossy_binary());
    // the script beside the sources: the current directory (make test), else from build/<name>/lossy
    snprintf(script, sizeof script, "tests/web/run.sh");
    char *slash = strrchr(bin, '/');
    if (!path_exists(script) && slash) snprintf(script, sizeof script, "%.*s/../../tests/web/run.sh", (int)(slash - bin), bin);
    REQUIREF(path_exists(script), "tests/web/run.sh not found");
    if (slash) snprintf(outdir, sizeof outdir, "%.*s/web-test", (int)(slash - bin), bin);
    else snprintf(outdir, sizeof outdir, "web-test");
    char log[4300];
    snprintf(log, sizeof log, "%s/web-test.log", test_tmpdir());
    fflush(NULL);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        execl("/bin/bash", "bash", script, bin, mp, outdir, (char *)NULL);
        _exit(127);
    }
    int st;
    waitpid(pid, &st, 0);
    char *text = NULL;
    size_t len;
    Err e;
    file_read_all(log, &text, &len, &e);
    CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "tests/web/run.sh failed:\n%s", text ? text : "(no output)");
    CHECK(text && strstr(text, " passed, 0 failed"));
    free(text);
}
