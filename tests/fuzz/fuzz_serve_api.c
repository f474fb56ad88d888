// fuzz_serve_api.c — libFuzzer target for the server's request parser (src/serve/api.c): the first byte picks the
// endpoint (chat or completions), the rest is the request body. Any input must give a request or a 4xx error with a
// message; a parsed request must render to valid response JSON. Build with `make fuzz`, run build/fuzz/fuzz_serve_api.
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "serve/api.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    ApiKind kind = data[0] & 1 ? API_CHAT : API_COMPLETION;
    SamplerParams d;
    sampler_params_default(&d);
    ApiLimits lim;
    api_limits_default(&lim);
    ApiRequest r;
    ApiError err;
    err.message[0] = 0;
    if (api_parse_request(kind, (const char *)data + 1, size - 1, &d, &lim, &r, &err) != 0) {
        if (!err.message[0] || err.status < 400 || err.status > 499) abort();
        char *j = api_error_json(&err);
        json_t *v = json_loads(j, 0, NULL);
        if (!v) abort();
        json_decref(v);
        free(j);
        return 0;
    }
    // echo the first message or the prompt back as if it were generated text
    const char *text = kind == API_CHAT ? r.msgs[0].content : (r.prompt ? r.prompt : "");
    size_t len = kind == API_CHAT ? r.msgs[0].len : r.prompt_len;
    ApiUsage u = {1, 2};
    char *j = api_completion_json(kind, "id", 0, "m", text, len, "stop", &u);
    json_t *v = json_loads(j, 0, NULL);
    if (!v) abort();
    json_decref(v);
    free(j);
    api_request_free(&r);
    return 0;
}
