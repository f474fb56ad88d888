// api.c — OpenAI request parsing/validation and response JSON (see api.h).
#include "serve/api.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer.h"

int api_error(ApiError *err, int status, const char *param, const char *code, const char *fmt, ...) {
    err->status = status;
    err->param = param;
    err->code = code;
    err->type = status == 401 ? "authentication_error" : status == 404 ? "not_found_error"
              : status >= 500 ? "server_error" : "invalid_request_error";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return -1;
}

void api_limits_default(ApiLimits *l) {
    l->max_depth = 32;
    l->max_messages = 1024;
    l->max_stop = 16;
    l->max_stop_len = 256;
    l->max_prompt_ids = 1 << 20;
}

int api_json_depth(const char *s, size_t n) {
    int depth = 0, max = 0;
    bool in_str = false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\') i++;
            else if (c == '"') in_str = false;
        } else if (c == '"') {
            in_str = true;
        } else if (c == '[' || c == '{') {
            if (++depth > max) max = depth;
        } else if (c == ']' || c == '}') {
            depth--;
        }
    }
    return max;
}

void api_request_free(ApiRequest *r) {
    for (size_t i = 0; i < r->n_msgs; i++) free((char *)r->msgs[i].content);
    free(r->msgs);
    free(r->prompt);
    free(r->prompt_ids);
    for (size_t i = 0; i < r->n_stop; i++) free(r->stop[i]);
    free(r->stop);
    memset(r, 0, sizeof *r);
}

// A number field in [lo, hi]; absent or null leaves *out. Returns -1 with err on a wrong type or range.
static int get_num(const json_t *o, const char *key, double lo, double hi, double *out, ApiError *err) {
    const json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_number(v)) return api_error(err, 400, key, "invalid_type", "'%s' must be a number", key);
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi)) return api_error(err, 400, key, "invalid_value", "'%s' must be between %g and %g (got %g)", key, lo, hi, x);
    *out = x;
    return 0;
}

// An integer field in [lo, hi] (a real with an integral value is accepted, as JSON does not distinguish them).
static int get_int(const json_t *o, const char *key, int64_t lo, int64_t hi, int64_t *out, bool *given, ApiError *err) {
    const json_t *v = json_object_get(o, key);
    if (given) *given = false;
    if (!v || json_is_null(v)) return 0;
    int64_t x;
    if (json_is_integer(v)) {
        x = (int64_t)json_integer_value(v);
    } else if (json_is_real(v)) {
        double d = json_real_value(v);
        if (d != floor(d) || !(d >= -9.2e18 && d <= 9.2e18))
            return api_error(err, 400, key, "invalid_value", "'%s' must be an integer between %lld and %lld", key, (long long)lo, (long long)hi);
        x = (int64_t)d;
    } else {
        return api_error(err, 400, key, "invalid_type", "'%s' must be an integer", key);
    }
    if (x < lo || x > hi)
        return api_error(err, 400, key, "invalid_value", "'%s' must be between %lld and %lld (got %lld)", key, (long long)lo, (long long)hi, (long long)x);
    *out = x;
    if (given) *given = true;
    return 0;
}

static int get_bool(const json_t *o, const char *key, bool *out, ApiError *err) {
    const json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_boolean(v)) return api_error(err, 400, key, "invalid_type", "'%s' must be true or false", key);
    *out = json_is_true(v);
    return 0;
}

// A message content: a string, or an array of {"type": "text", "text": ...} parts (concatenated).
static int get_content(const json_t *m, size_t i, char **out, size_t *len, ApiError *err) {
    const json_t *c = json_object_get(m, "content");
    if (!c || json_is_null(c)) {
        if (json_object_get(m, "tool_calls")) return api_error(err, 400, "messages", "unsupported", "messages[%zu]: tool calls are not supported", i);
        *out = xstrdup("");
        *len = 0;
        return 0;
    }
    if (json_is_string(c)) {
        *len = json_string_length(c);
        *out = xmalloc(*len + 1);
        memcpy(*out, json_string_value(c), *len + 1);
        return 0;
    }
    if (!json_is_array(c)) return api_error(err, 400, "messages", "invalid_type", "messages[%zu].content must be a string or an array of text parts", i);
    Buf b;
    buf_init(&b);
    buf_reserve(&b, 1);
    size_t k;
    const json_t *part;
    json_array_foreach(c, k, part) {
        const json_t *t = json_object_get(part, "type"), *tx = json_object_get(part, "text");
        if (!json_is_string(t) || strcmp(json_string_value(t), "text") != 0 || !json_is_string(tx)) {
            buf_free(&b);
            return api_error(err, 400, "messages", "unsupported", "messages[%zu].content[%zu]: only {\"type\": \"text\", \"text\": ...} parts are supported", i, k);
        }
        buf_append(&b, json_string_value(tx), json_string_length(tx));
    }
    *out = b.data;
    *len = b.len;
    return 0;
}

static int parse_messages(const json_t *root, const ApiLimits *lim, ApiRequest *r, ApiError *err) {
    const json_t *ms = json_object_get(root, "messages");
    if (!ms) return api_error(err, 400, "messages", "missing_required_parameter", "'messages' is required");
    if (!json_is_array(ms)) return api_error(err, 400, "messages", "invalid_type", "'messages' must be an array");
    size_t n = json_array_size(ms);
    if (n == 0) return api_error(err, 400, "messages", "invalid_value", "'messages' must not be empty");
    if (n > lim->max_messages) return api_error(err, 400, "messages", "invalid_value", "too many messages (%zu, at most %zu)", n, lim->max_messages);
    r->msgs = xcalloc(n, sizeof *r->msgs);
    for (size_t i = 0; i < n; i++) {
        const json_t *m = json_array_get(ms, i);
        if (!json_is_object(m)) return api_error(err, 400, "messages", "invalid_type", "messages[%zu] must be an object", i);
        const json_t *role = json_object_get(m, "role");
        if (!json_is_string(role)) return api_error(err, 400, "messages", "invalid_type", "messages[%zu].role must be a string", i);
        ChatRole cr;
        if (chat_role_from_name(json_string_value(role), &cr))
            return api_error(err, 400, "messages", "invalid_value", "messages[%zu].role must be system, user, assistant or tool", i);
        char *content = NULL;
        size_t len = 0;
        if (get_content(m, i, &content, &len, err)) return -1;
        r->msgs[i] = (ChatMessage){cr, content, len};
        r->n_msgs = i + 1;
    }
    return 0;
}

static int parse_prompt(const json_t *root, const ApiLimits *lim, ApiRequest *r, ApiError *err) {
    const json_t *p = json_object_get(root, "prompt");
    if (!p || json_is_null(p)) return api_error(err, 400, "prompt", "missing_required_parameter", "'prompt' is required");
    if (json_is_array(p) && json_array_size(p) == 1 && json_is_string(json_array_get(p, 0))) p = json_array_get(p, 0);
    if (json_is_string(p)) {
        r->prompt_len = json_string_length(p);
        r->prompt = xmalloc(r->prompt_len + 1);
        memcpy(r->prompt, json_string_value(p), r->prompt_len + 1);
        return 0;
    }
    if (!json_is_array(p)) return api_error(err, 400, "prompt", "invalid_type", "'prompt' must be a string or an array of token ids");
    size_t n = json_array_size(p);
    if (n > lim->max_prompt_ids) return api_error(err, 413, "prompt", "request_too_large", "too many prompt tokens (%zu)", n);
    r->prompt_is_ids = true;
    r->prompt_ids = xmalloc_array(n ? n : 1, sizeof *r->prompt_ids);
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_array_get(p, i);
        if (!json_is_integer(v)) {
            return api_error(err, 400, "prompt", "invalid_type",
                             json_is_string(v) ? "only one prompt per request is supported" : "prompt[%zu] must be a token id", i);
        }
        json_int_t id = json_integer_value(v);
        if (id < 0 || id > INT32_MAX) return api_error(err, 400, "prompt", "invalid_value", "prompt[%zu] = %lld is not a token id", i, (long long)id);
        r->prompt_ids[i] = (int32_t)id;
    }
    r->n_prompt_ids = n;
    return 0;
}

static int parse_stop(const json_t *root, const ApiLimits *lim, ApiRequest *r, ApiError *err) {
    const json_t *s = json_object_get(root, "stop");
    if (!s || json_is_null(s)) return 0;
    size_t n = json_is_string(s) ? 1 : json_is_array(s) ? json_array_size(s) : (size_t)-1;
    if (n == (size_t)-1) return api_error(err, 400, "stop", "invalid_type", "'stop' must be a string or an array of strings");
    if (n > lim->max_stop) return api_error(err, 400, "stop", "invalid_value", "at most %zu stop strings", lim->max_stop);
    r->stop = xcalloc(n ? n : 1, sizeof *r->stop);
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_is_string(s) ? s : json_array_get(s, i);
        if (!json_is_string(v)) return api_error(err, 400, "stop", "invalid_type", "stop[%zu] must be a string", i);
        size_t len = json_string_length(v);
        if (len == 0 || len > lim->max_stop_len)
            return api_error(err, 400, "stop", "invalid_value", "stop strings must be 1 to %zu bytes", lim->max_stop_len);
        r->stop[r->n_stop++] = xstrdup(json_string_value(v));
    }
    return 0;
}

static int parse_root(ApiKind kind, const json_t *root, const ApiLimits *lim, ApiRequest *r, ApiError *err) {
    if (!json_is_object(root)) return api_error(err, 400, NULL, "invalid_type", "the request body must be a JSON object");
    if (kind == API_CHAT ? parse_messages(root, lim, r, err) : parse_prompt(root, lim, r, err)) return -1;
    if (get_bool(root, "stream", &r->stream, err)) return -1;
    if (get_bool(root, "ignore_eos", &r->ignore_eos, err)) return -1;
    const json_t *so = json_object_get(root, "stream_options");
    if (so && !json_is_null(so)) {
        if (!json_is_object(so)) return api_error(err, 400, "stream_options", "invalid_type", "'stream_options' must be an object");
        if (get_bool(so, "include_usage", &r->include_usage, err)) return -1;
    }
    const json_t *model = json_object_get(root, "model");
    if (model && !json_is_null(model) && !json_is_string(model)) return api_error(err, 400, "model", "invalid_type", "'model' must be a string");
    int64_t n = 1;
    if (get_int(root, "n", 1, 1, &n, NULL, err)) return api_error(err, 400, "n", "unsupported", "only n = 1 is supported");
    bool lp = false;
    const json_t *lpv = json_object_get(root, "logprobs");
    if (json_is_boolean(lpv) && get_bool(root, "logprobs", &lp, err)) return -1;
    if (lp || (json_is_integer(lpv) && json_integer_value(lpv) > 0)) return api_error(err, 400, "logprobs", "unsupported", "logprobs are not supported");
    const json_t *tools = json_object_get(root, "tools");
    if (json_is_array(tools) && json_array_size(tools) > 0) return api_error(err, 400, "tools", "unsupported", "tools are not supported yet");
    if (kind == API_COMPLETION && json_is_true(json_object_get(root, "echo"))) return api_error(err, 400, "echo", "unsupported", "echo is not supported");

    SamplerParams *sp = &r->sp;
    if (get_num(root, "temperature", 0, 2, &sp->temperature, err)) return -1;
    if (get_num(root, "top_p", 0, 1, &sp->top_p, err)) return -1;
    if (get_num(root, "min_p", 0, 1, &sp->min_p, err)) return -1;
    if (get_num(root, "presence_penalty", -2, 2, &sp->presence_penalty, err)) return -1;
    if (get_num(root, "frequency_penalty", -2, 2, &sp->frequency_penalty, err)) return -1;
    if (get_num(root, "repeat_penalty", 0.01, 100, &sp->repeat_penalty, err)) return -1;
    if (get_int(root, "top_k", 0, INT32_MAX, &sp->top_k, NULL, err)) return -1;
    if (get_int(root, "repeat_last_n", -1, INT32_MAX, &sp->penalty_last_n, NULL, err)) return -1;
    if (sp->top_p <= 0) return api_error(err, 400, "top_p", "invalid_value", "'top_p' must be greater than 0");
    int64_t seed = 0;
    if (get_int(root, "seed", INT64_MIN, INT64_MAX, &seed, &r->seed_given, err)) return -1;
    if (r->seed_given) sp->seed = (uint64_t)seed;
    r->max_tokens = -1;
    bool given = false;
    const char *mt = json_object_get(root, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
    if (get_int(root, mt, 0, INT32_MAX, &r->max_tokens, &given, err)) return -1;
    if (!given) r->max_tokens = -1;
    return parse_stop(root, lim, r, err);
}

int api_parse_request(ApiKind kind, const char *body, size_t len, const SamplerParams *defaults, const ApiLimits *lim,
                      ApiRequest *r, ApiError *err) {
    memset(r, 0, sizeof *r);
    r->kind = kind;
    r->sp = *defaults;
    if (len == 0) return api_error(err, 400, NULL, "invalid_json", "empty request body: a JSON object is expected");
    int depth = api_json_depth(body, len);
    if (depth > lim->max_depth) return api_error(err, 400, NULL, "invalid_json", "JSON nested too deeply (%d levels, at most %d)", depth, lim->max_depth);
    json_error_t je;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) return api_error(err, 400, NULL, "invalid_json", "invalid JSON at byte %d: %s", je.position, je.text);
    int rc = parse_root(kind, root, lim, r, err);
    json_decref(root);
    if (rc) api_request_free(r);
    return rc;
}

// ---- responses ----

static json_t *text_json(const char *s, size_t n) {
    Buf b;
    buf_init(&b);
    tokenizer_utf8_lossy(s, n, &b);
    json_t *j = json_stringn(b.data ? b.data : "", b.len);
    buf_free(&b);
    return j;
}

static char *dump(json_t *j) {
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!s) abort(); // only on allocation failure: every string was made valid UTF-8
    return s;
}

char *api_error_json(const ApiError *err) {
    json_t *e = json_object();
    json_object_set_new(e, "message", text_json(err->message, strlen(err->message)));
    json_object_set_new(e, "type", json_string(err->type ? err->type : "invalid_request_error"));
    json_object_set_new(e, "param", err->param ? json_string(err->param) : json_null());
    json_object_set_new(e, "code", err->code ? json_string(err->code) : json_null());
    json_t *root = json_object();
    json_object_set_new(root, "error", e);
    return dump(root);
}

static json_t *usage_json(const ApiUsage *u) {
    json_t *j = json_object();
    json_object_set_new(j, "prompt_tokens", json_integer(u->prompt_tokens));
    json_object_set_new(j, "completion_tokens", json_integer(u->completion_tokens));
    json_object_set_new(j, "total_tokens", json_integer(u->prompt_tokens + u->completion_tokens));
    return j;
}

static json_t *envelope(ApiKind kind, bool chunk, const char *id, int64_t created, const char *model) {
    json_t *root = json_object();
    json_object_set_new(root, "id", json_string(id));
    json_object_set_new(root, "object", json_string(kind == API_CHAT ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion"));
    json_object_set_new(root, "created", json_integer(created));
    json_object_set_new(root, "model", text_json(model, strlen(model)));
    json_object_set_new(root, "system_fingerprint", json_string("lossy"));
    return root;
}

char *api_completion_json(ApiKind kind, const char *id, int64_t created, const char *model, const char *text,
                          size_t len, const char *finish_reason, const ApiUsage *u) {
    json_t *root = envelope(kind, false, id, created, model);
    json_t *choice = json_object();
    json_object_set_new(choice, "index", json_integer(0));
    if (kind == API_CHAT) {
        json_t *msg = json_object();
        json_object_set_new(msg, "role", json_string("assistant"));
        json_object_set_new(msg, "content", text_json(text, len));
        json_object_set_new(choice, "message", msg);
    } else {
        json_object_set_new(choice, "text", text_json(text, len));
    }
    json_object_set_new(choice, "logprobs", json_null());
    json_object_set_new(choice, "finish_reason", json_string(finish_reason));
    json_t *choices = json_array();
    json_array_append_new(choices, choice);
    json_object_set_new(root, "choices", choices);
    json_object_set_new(root, "usage", usage_json(u));
    return dump(root);
}

char *api_chunk_json(ApiKind kind, const char *id, int64_t created, const char *model, const char *text, size_t len,
                     bool role_delta, const char *finish_reason, const ApiUsage *usage) {
    json_t *root = envelope(kind, true, id, created, model);
    json_t *choices = json_array();
    if (usage) {
        json_object_set_new(root, "usage", usage_json(usage));
    } else {
        json_t *choice = json_object();
        json_object_set_new(choice, "index", json_integer(0));
        if (kind == API_CHAT) {
            json_t *delta = json_object();
            if (role_delta) json_object_set_new(delta, "role", json_string("assistant"));
            if (role_delta || len) json_object_set_new(delta, "content", text_json(text, len));
            json_object_set_new(choice, "delta", delta);
        } else {
            json_object_set_new(choice, "text", text_json(text, len));
        }
        json_object_set_new(choice, "logprobs", json_null());
        json_object_set_new(choice, "finish_reason", finish_reason ? json_string(finish_reason) : json_null());
        json_array_append_new(choices, choice);
    }
    json_object_set_new(root, "choices", choices);
    return dump(root);
}

char *api_models_json(const char *model, int64_t created) {
    json_t *m = json_object();
    json_object_set_new(m, "id", text_json(model, strlen(model)));
    json_object_set_new(m, "object", json_string("model"));
    json_object_set_new(m, "created", json_integer(created));
    json_object_set_new(m, "owned_by", json_string("lossy"));
    json_t *data = json_array();
    json_array_append_new(data, m);
    json_t *root = json_object();
    json_object_set_new(root, "object", json_string("list"));
    json_object_set_new(root, "data", data);
    return dump(root);
}

bool api_check_bearer(const char *header, const char *key) {
    static const char prefix[] = "Bearer ";
    const char *given = "";
    if (header && strncmp(header, prefix, sizeof prefix - 1) == 0) given = header + sizeof prefix - 1;
    size_t n = strlen(key), m = strlen(given);
    // every byte of the key is compared whatever the input, so the time taken says nothing about where they differ
    volatile unsigned char diff = (unsigned char)(n != m);
    for (size_t i = 0; i < n; i++) {
        unsigned char g = i < m ? (unsigned char)given[i] : 0;
        diff |= (unsigned char)(g ^ (unsigned char)key[i]);
    }
    return diff == 0 && n > 0;
}
