// test_serve_api.c — the server's request parser/validator and response builders without HTTP: fields and their
// defaults, wrong types, out-of-range and huge numbers, nesting depth, invalid UTF-8, content parts, the constant-time
// key check, and that every response is valid JSON even when the model produced invalid UTF-8.
#include <jansson.h>
#include <stdlib.h>

#include "serve/api.h"
#include "test.h"

static int parse(ApiKind k, const char *body, ApiRequest *r, ApiError *err) {
    SamplerParams d;
    sampler_params_default(&d);
    ApiLimits lim;
    api_limits_default(&lim);
    return api_parse_request(k, body, strlen(body), &d, &lim, r, err);
}

TEST(serve_api_parses_a_full_chat_request) {
    ApiRequest r;
    ApiError err;
    const char *body = "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"S\"},{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\",\"text\":\"b\"}]},"
                       "{\"role\":\"assistant\",\"content\":null},{\"role\":\"developer\",\"content\":\"D\"}],"
                       "\"temperature\":0.5,\"top_p\":0.9,\"top_k\":7,\"min_p\":0.1,\"presence_penalty\":1.5,\"frequency_penalty\":-0.5,"
                       "\"max_tokens\":12,\"seed\":-3,\"stop\":[\"x\",\"yz\"],\"stream\":true,\"stream_options\":{\"include_usage\":true},"
                       "\"n\":1,\"logprobs\":false,\"user\":\"ignored\"}";
    REQUIREF(parse(API_CHAT, body, &r, &err) == 0, "%s", err.message);
    REQUIRE(r.n_msgs == 4);
    CHECK_EQ_INT(r.msgs[0].role, CHAT_ROLE_SYSTEM);
    CHECK_EQ_STR(r.msgs[1].content, "ab");
    CHECK_EQ_INT(r.msgs[1].len, 2);
    CHECK_EQ_STR(r.msgs[2].content, "");
    CHECK_EQ_INT(r.msgs[3].role, CHAT_ROLE_SYSTEM);
    CHECK_NEAR(r.sp.temperature, 0.5, 0);
    CHECK_NEAR(r.sp.top_p, 0.9, 0);
    CHECK_EQ_INT(r.sp.top_k, 7);
    CHECK_NEAR(r.sp.min_p, 0.1, 0);
    CHECK_NEAR(r.sp.presence_penalty, 1.5, 0);
    CHECK_NEAR(r.sp.frequency_penalty, -0.5, 0);
    CHECK_EQ_INT(r.max_tokens, 12);
    CHECK(r.seed_given && r.sp.seed == (uint64_t)-3);
    REQUIRE(r.n_stop == 2);
    CHECK_EQ_STR(r.stop[1], "yz");
    CHECK(r.stream && r.include_usage);
    api_request_free(&r);
}

TEST(serve_api_defaults_and_prompt_forms) {
    ApiRequest r;
    ApiError err;
    REQUIRE(parse(API_COMPLETION, "{\"prompt\":\"hi\"}", &r, &err) == 0);
    SamplerParams d;
    sampler_params_default(&d);
    CHECK_NEAR(r.sp.temperature, d.temperature, 0);
    CHECK_EQ_INT(r.sp.top_k, d.top_k);
    CHECK_EQ_INT(r.max_tokens, -1);
    CHECK(!r.seed_given && !r.stream && !r.prompt_is_ids);
    CHECK_EQ_STR(r.prompt, "hi");
    api_request_free(&r);
    REQUIRE(parse(API_COMPLETION, "{\"prompt\":[\"one\"],\"max_tokens\":3.0,\"stop\":\"s\",\"temperature\":null}", &r, &err) == 0);
    CHECK_EQ_STR(r.prompt, "one");
    CHECK_EQ_INT(r.max_tokens, 3);
    CHECK(r.n_stop == 1 && strcmp(r.stop[0], "s") == 0);
    api_request_free(&r);
    REQUIRE(parse(API_COMPLETION, "{\"prompt\":[1,2,3]}", &r, &err) == 0);
    CHECK(r.prompt_is_ids && r.n_prompt_ids == 3 && r.prompt_ids[2] == 3);
    api_request_free(&r);
    // embedded NUL is refused, but other escapes arrive intact
    REQUIRE(parse(API_COMPLETION, "{\"prompt\":\"a\\u00e9\\n\\ud83d\\ude00\"}", &r, &err) == 0);
    CHECK_EQ_STR(r.prompt, "a\xc3\xa9\n\xf0\x9f\x98\x80");
    api_request_free(&r);
}

TEST(serve_api_rejects_bad_requests) {
    static const struct {
        ApiKind kind;
        const char *body, *param;
    } bad[] = {
        {API_COMPLETION, "", NULL},
        {API_COMPLETION, "{", NULL},
        {API_COMPLETION, "null", NULL},
        {API_COMPLETION, "\"str\"", NULL},
        {API_COMPLETION, "{}", "prompt"},
        {API_COMPLETION, "{\"prompt\":{}}", "prompt"},
        {API_COMPLETION, "{\"prompt\":[1,\"a\"]}", "prompt"},
        {API_COMPLETION, "{\"prompt\":[3000000000]}", "prompt"},
        {API_COMPLETION, "{\"prompt\":\"a\",\"temperature\":-0.1}", "temperature"},
        {API_COMPLETION, "{\"prompt\":\"a\",\"temperature\":2.5}", "temperature"},
        {API_COMPLETION, "{\"prompt\":\"a\",\"top_p\":0}", "top_p"},
        {API_COMPLETION, "{\"prompt\":\"a\",\"top_p\":1.5}", "top_p"},
        {API_COMPLETION, "{\"prompt\":\"a\",\"top_k\":-1}", "top_k"},
        {API_COMPLETION, "{\"prompt\":\"a\",\"top_k\":1e30}", "top_k"},
        {API_COMPLETION, "{\"prompt\":\"a\",\"min_p\":\"0.1\"}", "min_p"},
        {API_COMPLETION, "{\"prompt\":\"a\",\"presence_penalty\":3}", "presence_penalty"},
        {API_COMPLETION, "{\"prompt\":\"a\",\"max_tokens\":9007199254740993}", "max_tokens"},
        {API_COMPLETION, "{\"prompt\":\"a\",\"max_tokens\":\"5\"}", "max_tokens"},
        {API_COMPLETION, "{\"prompt\":\"a\",\"seed\":1.5}", "seed"},
        {API_COMPLETION, "{\"prompt\":\"a\",\"seed\":1e300}", "seed"},
        {API_COMPLETION, "{\"prompt\":\"a\",\"n\":3}", "n"},
        {API_COMPLETION, "{\"prompt\":\"a\",\"logprobs\":true}", "logprobs"},
        {API_COMPLETION, "{\"prompt\":\"a\",\"logprobs\":5}", "logprobs"},
        {API_COMPLETION, "{\"prompt\":\"a\",\"echo\":true}", "echo"},
        {API_COMPLETION, "{\"prompt\":\"a\",\"stream\":1}", "stream"},
        {API_COMPLETION, "{\"prompt\":\"a\",\"stream_options\":[]}", "stream_options"},
        {API_COMPLETION, "{\"prompt\":\"a\",\"model\":5}", "model"},
        {API_COMPLETION, "{\"prompt\":\"a\",\"stop\":[\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\",\"10\",\"11\",\"12\",\"13\",\"14\",\"15\",\"16\",\"17\"]}", "stop"},
        {API_COMPLETION, "{\"prompt\":\"a\",\"stop\":{}}", "stop"},
        {API_CHAT, "{\"messages\":[{\"content\":\"x\"}]}", "messages"},
        {API_CHAT, "{\"messages\":[{\"role\":\"user\"},5]}", "messages"},
        {API_CHAT, "{\"messages\":[{\"role\":\"function\",\"content\":\"x\"}]}", "messages"},
        {API_CHAT, "{\"messages\":[{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[]}]}", "messages"},
        {API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\"}]}]}", "messages"},
        {API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":\"function\"}]}", "tools"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ApiRequest r;
        ApiError err = {0};
        int rc = parse(bad[i].kind, bad[i].body, &r, &err);
        CHECKF(rc == -1 && err.status == 400 && err.message[0], "case %zu (%s): rc %d status %d", i, bad[i].body, rc, err.status);
        if (rc == 0) api_request_free(&r);
        if (bad[i].param) CHECKF(err.param && strcmp(err.param, bad[i].param) == 0, "case %zu: param %s", i, err.param ? err.param : "(null)");
    }
    // invalid UTF-8, NUL and duplicate keys are refused by the JSON parser
    const char *raw[] = {"{\"prompt\":\"\xff\"}", "{\"prompt\":\"\xed\xa0\x80\"}", "{\"prompt\":\"a\\u0000\"}", "{\"prompt\":\"a\",\"prompt\":\"b\"}",
                         "{\"prompt\":\"a\",\"seed\":99999999999999999999999}"};
    for (size_t i = 0; i < sizeof raw / sizeof *raw; i++) {
        ApiRequest r;
        ApiError err = {0};
        CHECKF(parse(API_COMPLETION, raw[i], &r, &err) == -1 && err.status == 400, "raw case %zu", i);
    }
}

TEST(serve_api_depth_limit) {
    CHECK_EQ_INT(api_json_depth("{\"a\":[1,{\"b\":2}]}", 16), 3);
    CHECK_EQ_INT(api_json_depth("{\"a\":\"[[[[\\\"{{\"}", 17), 1); // brackets inside strings do not count
    Buf b;
    buf_init(&b);
    buf_append_str(&b, "{\"prompt\":\"a\",\"x\":");
    for (int i = 0; i < 100000; i++) buf_append_str(&b, "[");
    ApiRequest r;
    ApiError err;
    CHECK(parse(API_COMPLETION, b.data, &r, &err) == -1 && strstr(err.message, "nested"));
    buf_free(&b);
}

TEST(serve_api_responses_are_valid_json) {
    ApiUsage u = {5, 3};
    // the model may produce invalid UTF-8 (byte-fallback pieces): it becomes U+FFFD, and the JSON stays valid
    char *s = api_completion_json(API_CHAT, "chatcmpl-1", 7, "m\xff", "ok\xff\xfe!", 5, "stop", &u);
    json_t *j = json_loads(s, 0, NULL);
    REQUIRE(j);
    const json_t *msg = json_object_get(json_array_get(json_object_get(j, "choices"), 0), "message");
    CHECK_EQ_STR(json_string_value(json_object_get(msg, "content")), "ok\xef\xbf\xbd\xef\xbf\xbd!");
    CHECK_EQ_INT(json_integer_value(json_object_get(json_object_get(j, "usage"), "total_tokens")), 8);
    json_decref(j);
    free(s);
    s = api_chunk_json(API_CHAT, "c", 1, "m", "", 0, true, NULL, NULL);
    j = json_loads(s, 0, NULL);
    const json_t *delta = json_object_get(json_array_get(json_object_get(j, "choices"), 0), "delta");
    CHECK_EQ_STR(json_string_value(json_object_get(delta, "role")), "assistant");
    CHECK(json_is_null(json_object_get(json_array_get(json_object_get(j, "choices"), 0), "finish_reason")));
    json_decref(j);
    free(s);
    s = api_chunk_json(API_COMPLETION, "c", 1, "m", NULL, 0, false, NULL, &u);
    j = json_loads(s, 0, NULL);
    CHECK(json_array_size(json_object_get(j, "choices")) == 0 && json_object_get(j, "usage"));
    json_decref(j);
    free(s);
    ApiError err;
    api_error(&err, 413, NULL, "request_too_large", "too big: %d", 5);
    s = api_error_json(&err);
    j = json_loads(s, 0, NULL);
    const json_t *e = json_object_get(j, "error");
    CHECK_EQ_STR(json_string_value(json_object_get(e, "message")), "too big: 5");
    CHECK_EQ_STR(json_string_value(json_object_get(e, "type")), "invalid_request_error");
    CHECK(json_is_null(json_object_get(e, "param")));
    json_decref(j);
    free(s);
}

TEST(serve_api_bearer_check) {
    CHECK(api_check_bearer("Bearer k3y", "k3y"));
    CHECK(!api_check_bearer("Bearer k3", "k3y"));
    CHECK(!api_check_bearer("Bearer k3yy", "k3y"));
    CHECK(!api_check_bearer("Bearer K3y", "k3y"));
    CHECK(!api_check_bearer("k3y", "k3y"));
    CHECK(!api_check_bearer("bearer k3y", "k3y"));
    CHECK(!api_check_bearer(NULL, "k3y"));
    CHECK(!api_check_bearer("Bearer ", ""));
}
