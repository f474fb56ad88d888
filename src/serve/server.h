// server.h — `lossy serve`'s HTTP side: libmicrohttpd, routing, API key, limits, streaming, static web page.
//
// Threading: libmicrohttpd runs one thread per connection. A connection parses and validates its request, renders
// the prompt to ids, queues it on the scheduler (sched.h), then waits on the request's eventfd and its own socket:
// new text is sent as it comes (server-sent events when streaming), and a closed socket cancels the generation.
// Endpoints: POST /v1/chat/completions, POST /v1/completions, GET /v1/models, GET /health, and GET of the chat page's
// static files (web/) at /. Every error is an OpenAI-style JSON body with its HTTP status.
#ifndef LOSSY_SERVE_SERVER_H
#define LOSSY_SERVE_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "base/threadpool.h"
#include "model/model.h"
#include "sample/chat.h"
#include "sample/sampler.h"
#include "tokenizer/tokenizer.h"

typedef struct ServeOpts {
    const char *host;         // numeric address or name; default 127.0.0.1
    int port;                 // 0: any free port (see server_port)
    const char *api_key;      // NULL or "": no key required
    int n_parallel;           // slots
    int64_t n_ctx;            // per slot; <= 0: the model's (capped at 4096)
    size_t queue;             // requests waiting beyond the slots
    size_t max_body;          // bytes
    int64_t max_tokens;       // per request cap; <= 0: the context
    double timeout_s;         // per request wall-time limit; <= 0: none
    size_t max_connections;
    unsigned idle_timeout_s;  // a connection silent this long is closed (slow clients)
    const char *web_dir;      // the chat page's files; NULL: no page
    const char *model_name;   // id in /v1/models and responses
    SamplerParams defaults;   // sampling settings a request does not give
    bool verbose;             // one stderr line per request
} ServeOpts;

void serve_opts_default(ServeOpts *o);

typedef struct Server Server;

// Start listening (the call returns at once; requests are served on libmicrohttpd's threads). chat may be NULL
// (then /v1/chat/completions answers 400). m, tok, chat and pool must outlive the server.
int server_start(Server **out, const Model *m, const Tokenizer *tok, const Chat *chat, ThreadPool *pool,
                 const ServeOpts *o, Err *e);
int server_port(const Server *s);
int64_t server_n_ctx(const Server *s); // tokens per slot
// Stop accepting, end open requests (streams get an error event), join every thread, free.
void server_stop(Server *s);

#endif
