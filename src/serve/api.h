// api.h — the OpenAI-compatible API of `lossy serve`, without the HTTP: request parsing and validation, and the JSON
// bodies of responses, stream chunks and errors.
//
// Parsing is strict where a wrong value would silently change results (types, ranges, n != 1, unsupported features)
// and lenient about fields it does not use (clients send `user`, `logprobs: false`, ...). Bodies are checked before
// jansson sees them: nesting depth is bounded (a deeply nested body would otherwise cost stack), and jansson rejects
// invalid UTF-8, NUL characters in strings and integers that overflow.
#ifndef LOSSY_SERVE_API_H
#define LOSSY_SERVE_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/util.h"
#include "sample/chat.h"
#include "sample/sampler.h"

typedef enum ApiKind { API_CHAT = 1, API_COMPLETION } ApiKind;

// An HTTP status with an OpenAI error body: {"error": {"message", "type", "param", "code"}}.
typedef struct ApiError {
    int status;           // 400, 401, 404, 405, 413, 500, 503
    char message[512];
    const char *type;     // "invalid_request_error", "authentication_error", "not_found_error", "server_error"
    const char *param;    // the offending field, or NULL
    const char *code;     // machine-readable code, or NULL
} ApiError;

// Fill an ApiError; returns -1.
int api_error(ApiError *err, int status, const char *param, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

typedef struct ApiLimits {
    int max_depth;         // JSON nesting
    size_t max_messages;
    size_t max_stop;       // stop strings
    size_t max_stop_len;   // bytes per stop string
    size_t max_prompt_ids; // a prompt given as token ids
} ApiLimits;
void api_limits_default(ApiLimits *l);

typedef struct ApiRequest {
    ApiKind kind;
    bool stream;
    bool include_usage;     // stream_options.include_usage: a last chunk with usage
    // chat: messages (contents owned)
    ChatMessage *msgs;
    size_t n_msgs;
    // completion: prompt text, or token ids
    char *prompt;
    size_t prompt_len;
    bool prompt_is_ids;
    int32_t *prompt_ids;
    size_t n_prompt_ids;
    // sampling; fields not given keep the server's defaults
    SamplerParams sp;
    bool seed_given;
    int64_t max_tokens;     // -1 when not given
    bool ignore_eos;        // extension (as llama.cpp's server): generate through end-of-text tokens
    char **stop;            // owned
    size_t n_stop;
} ApiRequest;

// Parse a request body. defaults: the server's sampling defaults (copied into r->sp, then overridden by the body).
// On failure err holds a 400 (or 413 for a prompt over the limits) and r needs no freeing.
int api_parse_request(ApiKind kind, const char *body, size_t len, const SamplerParams *defaults, const ApiLimits *lim,
                      ApiRequest *r, ApiError *err);
void api_request_free(ApiRequest *r);

// Nesting depth of a JSON text (brackets outside strings), to refuse deep bodies before parsing.
int api_json_depth(const char *s, size_t n);

// ---- responses (each returns a malloc'ed NUL-terminated JSON text) ----
// text may be any bytes: invalid UTF-8 is replaced by U+FFFD.
typedef struct ApiUsage {
    int64_t prompt_tokens, completion_tokens;
} ApiUsage;

char *api_error_json(const ApiError *err);
// A whole (non-streamed) completion.
char *api_completion_json(ApiKind kind, const char *id, int64_t created, const char *model, const char *text,
                          size_t len, const char *finish_reason, const ApiUsage *u);
// One stream chunk. For chat, role_delta sends {"role": "assistant", "content": ""} (the first chunk); finish_reason
// NULL for a chunk in the middle. usage non-NULL makes the usage-only final chunk (empty choices).
char *api_chunk_json(ApiKind kind, const char *id, int64_t created, const char *model, const char *text, size_t len,
                     bool role_delta, const char *finish_reason, const ApiUsage *usage);
char *api_models_json(const char *model, int64_t created);

// Constant-time check of an "Authorization: Bearer KEY" header value against the key (time independent of where
// they differ).
bool api_check_bearer(const char *header, const char *key);

#endif
