// test_chat_cli.c — `lossy chat` end to end with piped input: the base-model refusal and raw mode on stories260K
// (raw mode's first answer equals `lossy run`'s), and tiny random models written here with chat templates (ChatML,
// lossy's own format): the ids fed to the model each turn (--trace) equal chat.h's rendering of the whole
// conversation as /save wrote it, with the KV cache reused across turns; control-token spellings typed by the user
// stay text; /reset, /system, //; a full context refused or trimmed (--trim-history) with messages; Ctrl-C stopping
// an answer without ending the program.
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sample/chat.h"
#include "sample/chat_session.h"
#include "test.h"
#include "tokenizer/train_bpe.h"
#include "train/train_model.h"

static const char CHATML_TEMPLATE[] =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + "
    "'\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

static const char CORPUS[] =
    "The capital of Texas is Austin. What is the capital of Ohio? The capital of Ohio is Columbus. "
    "Hello! How can I help you today? I am a small language model. Two plus three is five. "
    "The word dog has three letters. A cat is a small animal that likes to sleep in the sun. ";

static const char *tmp_path(char *out, size_t n, const char *name) {
    snprintf(out, n, "%s/%s", test_tmpdir(), name);
    return out;
}

// A tiny random llama model (2 layers, width 32) with a byte-level BPE vocabulary trained on CORPUS, reserving the
// given special tokens; tmpl (may be NULL) is stored as tokenizer.chat_template. 0 on success.
static int make_model(const char *path, const char *const *specials, size_t n_specials, const char *bos,
                      const char *eos, const char *tmpl, uint64_t seed) {
    Err e;
    BpeTrainOptions o;
    bpe_train_options_default(&o);
    o.vocab_size = 320;
    o.specials = specials;
    o.n_specials = n_specials;
    o.min_frequency = 1;
    BpeTrainer *t = bpe_trainer_new(&o, &e);
    if (!t) return -1;
    Buf text;
    buf_init(&text);
    for (int i = 0; i < 8; i++) buf_append_str(&text, CORPUS);
    BpeVocab v;
    int rc = bpe_trainer_add_text(t, text.data, text.len, &e);
    buf_free(&text);
    if (rc == 0) rc = bpe_trainer_train(t, &v, &e);
    bpe_trainer_free(t);
    if (rc) return -1;
    Tokenizer *tok = NULL;
    rc = bpe_vocab_set_bos_eos(&v, bos, eos, &e);
    if (rc == 0) rc = bpe_vocab_to_tokenizer(&v, bos != NULL, &tok, &e);
    size_t n_tokens = v.n_tokens;
    bpe_vocab_free(&v);
    if (rc) return -1;
    ModelConfig c;
    TrainModel m;
    rc = train_config_llama(&c, (int64_t)n_tokens, 2, 32, 4, 4, 0, 512, false, &e);
    if (rc == 0) rc = train_model_init(&m, &c, NULL, &e);
    if (rc) {
        tokenizer_free(tok);
        return -1;
    }
    train_model_init_weights(&m, seed);
    GGUFWriter *w = train_model_gguf_writer(&m, tok, "chat-test", &e);
    if (w && tmpl) gguf_writer_set_str(w, "tokenizer.chat_template", tmpl);
    rc = w ? gguf_writer_write(w, path, &e) : -1;
    if (rc) fprintf(stderr, "make_model: %s\n", e.msg);
    gguf_writer_free(w);
    train_model_free(&m);
    tokenizer_free(tok);
    return rc;
}

static int make_chatml_model(const char *path, const char *tmpl) {
    static const char *const sp[] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
    return make_model(path, sp, 3, NULL, "<|endoftext|>", tmpl, 7);
}

static int make_lossy_model(const char *path) {
    const char *sp[16];
    for (size_t i = 0; i < BPE_N_DEFAULT_SPECIALS; i++) sp[i] = BPE_DEFAULT_SPECIALS[i].text;
    return make_model(path, sp, BPE_N_DEFAULT_SPECIALS, BPE_DEFAULT_BOS, BPE_DEFAULT_EOS, CHAT_TEMPLATE_LOSSY, 11);
}

// ---- reading what the chat wrote ----

typedef struct Trace {
    json_t *turns[16];
    size_t n;
} Trace;

static bool trace_load(const char *path, Trace *t) {
    memset(t, 0, sizeof *t);
    char *s;
    size_t n;
    Err e;
    if (file_read_all(path, &s, &n, &e)) return false;
    char *p = s;
    while (*p && t->n < 16) {
        char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        json_t *j = json_loadb(p, len, 0, NULL);
        if (!j) break;
        t->turns[t->n++] = j;
        p += len + (nl ? 1 : 0);
    }
    free(s);
    return t->n > 0;
}

static void trace_free(Trace *t) {
    for (size_t i = 0; i < t->n; i++) json_decref(t->turns[i]);
}

static long long trace_int(const Trace *t, size_t turn, const char *key) {
    return json_integer_value(json_object_get(t->turns[turn], key));
}

static void trace_ids(const Trace *t, size_t turn, TokenIds *out) {
    const json_t *a = json_object_get(t->turns[turn], "prompt_ids");
    for (size_t i = 0; i < json_array_size(a); i++) token_ids_push(out, (int32_t)json_integer_value(json_array_get(a, i)));
}

typedef struct Saved {
    json_t *root;
    ChatMessage m[64];
    size_t n;
} Saved;

static bool saved_load(const char *path, Saved *s) {
    memset(s, 0, sizeof *s);
    s->root = json_load_file(path, 0, NULL);
    const json_t *msgs = json_object_get(s->root, "messages");
    if (!json_is_array(msgs)) return false;
    for (size_t i = 0; i < json_array_size(msgs) && s->n < 64; i++) {
        const json_t *o = json_array_get(msgs, i);
        ChatRole r;
        if (chat_role_from_name(json_string_value(json_object_get(o, "role")), &r)) return false;
        const json_t *c = json_object_get(o, "content");
        s->m[s->n++] = (ChatMessage){r, json_string_value(c), json_string_length(c)};
    }
    return true;
}

// Render msgs[0, n) + the assistant opening with the model's own tokenizer and template, as an independent
// reference for what the chat fed.
static bool render_ref(const char *model, const ChatMessage *msgs, size_t n, TokenIds *ids) {
    Err e;
    Tokenizer *tok;
    if (tokenizer_load(model, &tok, &e)) return false;
    char *tmpl = NULL;
    bool ok = chat_template_from_path(model, &tmpl, &e) == 0;
    ChatFormat f = chat_format_detect(tmpl);
    if (!f) f = chat_format_from_vocab(tok);
    Chat c;
    ok = ok && chat_init(&c, f, tok, tmpl, &e) == 0;
    if (ok) {
        ok = chat_render(&c, msgs, n, true, ids, NULL, NULL, &e) == 0;
        chat_free(&c);
    }
    free(tmpl);
    tokenizer_free(tok);
    return ok;
}

static bool ids_equal(const TokenIds *a, const TokenIds *b) {
    return a->n == b->n && (a->n == 0 || memcmp(a->ids, b->ids, a->n * sizeof *a->ids) == 0);
}

static size_t common_prefix(const TokenIds *a, const TokenIds *b) {
    size_t k = 0;
    while (k < a->n && k < b->n && a->ids[k] == b->ids[k]) k++;
    return k;
}

// For every turn of the trace: its prompt ids equal the rendering of the saved conversation's messages before that
// turn's answer. turn_msg[k] = number of saved messages that make turn k's prompt (system + history + the user).
static void check_turns(const char *model, const Trace *t, const Saved *s, const size_t *turn_msgs, size_t n_turns) {
    CHECK_EQ_INT(t->n, n_turns);
    for (size_t k = 0; k < n_turns && k < t->n; k++) {
        TokenIds want = {0}, got = {0};
        CHECKF(render_ref(model, s->m, turn_msgs[k], &want), "reference render of turn %zu", k + 1);
        trace_ids(t, k, &got);
        CHECKF(ids_equal(&want, &got), "turn %zu: fed %zu ids, the rendering of the conversation has %zu (first "
                                       "difference at %zu)", k + 1, got.n, want.n, common_prefix(&want, &got));
        CHECK_EQ_INT(trace_int(t, k, "n_prompt"), (long long)got.n);
        token_ids_free(&want);
        token_ids_free(&got);
    }
}

// ---- stories260K: a base model ----

TEST(chat_base_model_needs_a_format) {
    const char *model = fixture_path("models/stories260K.gguf");
    REQUIRE(model);
    Buf out = {0}, err = {0};
    int rc = run_lossy("hello\n", &out, &err, "chat", model, NULL);
    CHECK_EQ_INT(rc, 2);
    CHECKF(err.data && strstr(err.data, "no chat template") && strstr(err.data, "--chat-format raw"), "stderr: %s", err.data);
    CHECK_EQ_INT(out.len, 0);
    buf_free(&out);
    buf_free(&err);
    rc = run_lossy("hello\n", &out, &err, "chat", model, "--chat-format", "jinja", NULL);
    CHECK_EQ_INT(rc, 2);
    CHECKF(err.data && strstr(err.data, "unknown chat format"), "stderr: %s", err.data);
    buf_free(&out);
    buf_free(&err);
}

TEST(chat_raw_mode_continues_like_run) {
    const char *fx = fixture_path("models/stories260K.gguf");
    REQUIRE(fx);
    char model[4096];
    snprintf(model, sizeof model, "%s", fx);
    char trace[512];
    tmp_path(trace, sizeof trace, "raw.trace");
    Buf ref = {0}, rerr = {0}, out = {0}, err = {0};
    CHECK_EQ_INT(run_lossy(NULL, &ref, &rerr, "run", model, "-p", "Once upon a time", "--temp", "0", "-n", "30",
                           "--no-echo", "-t", "1", NULL), 0);
    int rc = run_lossy("Once upon a time\nThe dog\n", &out, &err, "chat", model, "--chat-format", "raw", "--temp", "0",
                       "-n", "30", "-t", "1", "--trace", trace, NULL);
    CHECKF(rc == 0, "rc %d, stderr: %s", rc, err.data);
    REQUIRE(out.data && ref.data);
    // run prints the continuation and a newline; chat prints each answer on its own line
    const char *nl = strchr(out.data, '\n');
    REQUIRE(nl);
    CHECKF(strncmp(out.data, ref.data, (size_t)(nl - out.data) + 1) == 0 && ref.len == (size_t)(nl - out.data) + 1,
           "chat: %s\nrun: %s", out.data, ref.data);
    CHECKF(strlen(nl + 1) > 1 && nl[strlen(nl) - 1] == '\n', "second answer missing: %s", out.data);
    // the second turn's prompt is the whole document; the first turn's prompt and answer came from the cache
    Trace t;
    REQUIRE(trace_load(trace, &t));
    CHECK_EQ_INT(t.n, 2);
    if (t.n == 2) {
        TokenIds a = {0}, b = {0};
        trace_ids(&t, 0, &a);
        trace_ids(&t, 1, &b);
        CHECK(common_prefix(&a, &b) == a.n);
        CHECKF(trace_int(&t, 1, "n_reused") > (long long)a.n, "reused %lld of the %zu-token first prompt and its answer",
               trace_int(&t, 1, "n_reused"), a.n);
        // the document: BOS + "Once upon a time" + answer + "\nThe dog", encoded as one text
        Err e;
        Tokenizer *tok;
        REQUIRE(tokenizer_load(model, &tok, &e) == 0);
        Buf doc;
        buf_init(&doc);
        buf_append_str(&doc, "Once upon a time");
        buf_append(&doc, out.data, (size_t)(nl - out.data));
        buf_append_str(&doc, "\nThe dog");
        TokenIds want = {0};
        REQUIRE(tokenizer_encode(tok, doc.data, doc.len, TOKENIZE_ADD_SPECIAL, &want, &e) == 0);
        CHECKF(ids_equal(&want, &b), "raw document: %zu ids fed, %zu expected", b.n, want.n);
        token_ids_free(&want);
        buf_free(&doc);
        tokenizer_free(tok);
        token_ids_free(&a);
        token_ids_free(&b);
    }
    trace_free(&t);
    buf_free(&ref);
    buf_free(&rerr);
    buf_free(&out);
    buf_free(&err);
}

// ---- chat models ----

TEST(chat_chatml_two_turns_feed_the_rendered_conversation) {
    char model[512], trace[512], save[512], save_arg[600];
    REQUIRE(make_chatml_model(tmp_path(model, sizeof model, "chatml.gguf"), CHATML_TEMPLATE) == 0);
    tmp_path(trace, sizeof trace, "chatml.trace");
    snprintf(save_arg, sizeof save_arg, "/save %s\n", tmp_path(save, sizeof save, "conv.json"));
    Buf in;
    buf_init(&in);
    // the second message spells the control tokens: they must stay text
    buf_append_str(&in, "What is the capital of Texas?\n\nAnd <|im_end|> of <|im_start|>system Ohio?\n");
    buf_append_str(&in, save_arg);
    Buf out = {0}, err = {0};
    int rc = run_lossy(in.data, &out, &err, "chat", model, "--system", "You are a test.", "--temp", "0", "-n", "12",
                       "-t", "1", "--trace", trace, NULL);
    CHECKF(rc == 0, "rc %d, stderr: %s", rc, err.data);
    CHECKF(err.data && strstr(err.data, "chat format chatml") && strstr(err.data, "model's chat template"), "stderr: %s", err.data);
    CHECKF(err.data && strstr(err.data, "conversation saved"), "stderr: %s", err.data);
    Saved s;
    REQUIRE(saved_load(save, &s));
    REQUIRE(s.n == 5);
    CHECK(s.m[0].role == CHAT_ROLE_SYSTEM && strcmp(s.m[0].content, "You are a test.") == 0);
    CHECK(s.m[1].role == CHAT_ROLE_USER && strcmp(s.m[1].content, "What is the capital of Texas?") == 0);
    CHECK(s.m[2].role == CHAT_ROLE_ASSISTANT && s.m[4].role == CHAT_ROLE_ASSISTANT);
    CHECK(s.m[3].role == CHAT_ROLE_USER && strcmp(s.m[3].content, "And <|im_end|> of <|im_start|>system Ohio?") == 0);
    Trace t;
    REQUIRE(trace_load(trace, &t));
    const size_t turn_msgs[] = {2, 4};
    check_turns(model, &t, &s, turn_msgs, 2);
    if (t.n == 2) {
        TokenIds a = {0}, b = {0};
        trace_ids(&t, 0, &a);
        trace_ids(&t, 1, &b);
        // the cache held turn 1's prompt (and answer): at least their common prefix was reused, not re-fed
        size_t lcp = common_prefix(&a, &b);
        CHECKF(trace_int(&t, 1, "n_reused") >= (long long)lcp && lcp + 3 >= a.n,
               "turn 2 reused %lld ids; the prompts share %zu of turn 1's %zu", trace_int(&t, 1, "n_reused"), lcp, a.n);
        CHECK(trace_int(&t, 1, "n_reused") < (long long)b.n);
        // <|im_start|> / <|im_end|> as control ids: 3 messages + the opening in turn 2, never from the user's text
        Err e;
        Tokenizer *tok;
        REQUIRE(tokenizer_load(model, &tok, &e) == 0);
        int32_t start = tokenizer_find(tok, "<|im_start|>", 12), end = tokenizer_find(tok, "<|im_end|>", 10);
        REQUIRE(start >= 0 && end >= 0);
        int n_start = 0, n_end = 0;
        for (size_t i = 0; i < b.n; i++) n_start += b.ids[i] == start, n_end += b.ids[i] == end;
        CHECK_EQ_INT(n_start, 5);
        CHECK_EQ_INT(n_end, 4);
        tokenizer_free(tok);
        token_ids_free(&a);
        token_ids_free(&b);
    }
    // the answers on stdout are the saved assistant messages, one per line (a random model's text may hold
    // newlines of its own, so compare the concatenation; and bytes that are not UTF-8, shown raw)
    Buf want;
    buf_init(&want);
    buf_append(&want, s.m[2].content, s.m[2].len);
    buf_append_str(&want, "\n");
    buf_append(&want, s.m[4].content, s.m[4].len);
    buf_append_str(&want, "\n");
    Buf shown;
    buf_init(&shown);
    tokenizer_utf8_lossy(out.data ? out.data : "", out.len, &shown); // the history keeps answers as valid UTF-8
    CHECKF(shown.len == want.len && memcmp(shown.data, want.data, want.len) == 0, "stdout:\n%s\nsaved answers:\n%s", out.data, want.data);
    buf_free(&shown);
    buf_free(&want);
    trace_free(&t);
    json_decref(s.root);
    buf_free(&in);
    buf_free(&out);
    buf_free(&err);
}

TEST(chat_lossy_format_commands) {
    char model[512], trace[512], save[512], save_arg[600];
    REQUIRE(make_lossy_model(tmp_path(model, sizeof model, "lossy.gguf")) == 0);
    tmp_path(trace, sizeof trace, "lossy.trace");
    snprintf(save_arg, sizeof save_arg, "/save %s\n", tmp_path(save, sizeof save, "conv.json"));
    Buf in;
    buf_init(&in);
    buf_append_str(&in, "first question\n/system Be brief.\n/reset\n/bogus\n   \n//slash text\nsecond\n");
    buf_append_str(&in, save_arg);
    buf_append_str(&in, "/quit\nnever sent\n");
    Buf out = {0}, err = {0};
    int rc = run_lossy(in.data, &out, &err, "chat", model, "--temp", "0.7", "--seed", "3", "-n", "6", "-t", "1",
                       "--trace", trace, NULL);
    CHECKF(rc == 0, "rc %d, stderr: %s", rc, err.data);
    CHECKF(err.data && strstr(err.data, "chat format lossy") && strstr(err.data, "unknown command /bogus") &&
               strstr(err.data, "conversation cleared"), "stderr: %s", err.data);
    Saved s;
    REQUIRE(saved_load(save, &s));
    // after /reset: the system message set before it, then the two turns sent after it
    REQUIRE(s.n == 5);
    CHECK(s.m[0].role == CHAT_ROLE_SYSTEM && strcmp(s.m[0].content, "Be brief.") == 0);
    CHECK(s.m[1].role == CHAT_ROLE_USER && strcmp(s.m[1].content, "/slash text") == 0);
    CHECK(s.m[3].role == CHAT_ROLE_USER && strcmp(s.m[3].content, "second") == 0);
    Trace t;
    REQUIRE(trace_load(trace, &t));
    REQUIRE(t.n == 3);
    // turn 1 was "first question" alone (no system message yet)
    ChatMessage first = {CHAT_ROLE_USER, "first question", 14};
    TokenIds want = {0}, got = {0};
    CHECK(render_ref(model, &first, 1, &want));
    trace_ids(&t, 0, &got);
    CHECK(ids_equal(&want, &got));
    token_ids_free(&want);
    token_ids_free(&got);
    Trace rest = {{t.turns[1], t.turns[2]}, 2};
    const size_t turn_msgs[] = {2, 4};
    check_turns(model, &rest, &s, turn_msgs, 2);
    trace_free(&t);
    json_decref(s.root);
    buf_free(&in);
    buf_free(&out);
    buf_free(&err);
}

TEST(chat_format_from_vocabulary_without_template) {
    char model[512];
    REQUIRE(make_chatml_model(tmp_path(model, sizeof model, "notmpl.gguf"), NULL) == 0);
    Buf out = {0}, err = {0};
    int rc = run_lossy("hi\n", &out, &err, "chat", model, "--temp", "0", "-n", "3", "-t", "1", NULL);
    CHECKF(rc == 0, "rc %d, stderr: %s", rc, err.data);
    CHECKF(err.data && strstr(err.data, "chat format chatml") && strstr(err.data, "vocabulary's control tokens"), "stderr: %s", err.data);
    buf_free(&out);
    buf_free(&err);
}

// A message of about n words.
static void words(Buf *b, const char *w, int n) {
    for (int i = 0; i < n; i++) {
        buf_append_str(b, i ? " " : "");
        buf_append_str(b, w);
    }
    buf_append_str(b, "\n");
}

TEST(chat_full_context_refused_or_trimmed) {
    char model[512], trace[512], save[512], save_arg[600];
    REQUIRE(make_chatml_model(tmp_path(model, sizeof model, "ctx.gguf"), CHATML_TEMPLATE) == 0);
    snprintf(save_arg, sizeof save_arg, "/save %s\n", tmp_path(save, sizeof save, "conv.json"));
    tmp_path(trace, sizeof trace, "ctx.trace");
    Buf in;
    buf_init(&in);
    words(&in, "capital", 20); // words the vocabulary holds whole: about 30 ids per message with the chat markers
    words(&in, "Ohio", 20);
    words(&in, "small", 20);
    buf_append_str(&in, save_arg);
    // without --trim-history: the third message does not fit and is not sent; the chat goes on
    Buf out = {0}, err = {0};
    int rc = run_lossy(in.data, &out, &err, "chat", model, "--ctx", "96", "--temp", "0", "-n", "8", "-t", "1", NULL);
    CHECKF(rc == 0, "rc %d, stderr: %s", rc, err.data);
    CHECKF(err.data && strstr(err.data, "context is full") && strstr(err.data, "not sent") && strstr(err.data, "--trim-history"),
           "stderr: %s", err.data);
    Saved s;
    REQUIRE(saved_load(save, &s));
    CHECK_EQ_INT(s.n, 4);
    json_decref(s.root);
    buf_free(&out);
    buf_free(&err);
    // with it: the oldest exchange goes, with a notice, and what is fed is the rendering of what is kept
    rc = run_lossy(in.data, &out, &err, "chat", model, "--ctx", "96", "--temp", "0", "-n", "8", "-t", "1",
                   "--trim-history", "--trace", trace, NULL);
    CHECKF(rc == 0, "rc %d, stderr: %s", rc, err.data);
    CHECKF(err.data && strstr(err.data, "history trimmed: dropped the 2 oldest messages"), "stderr: %s", err.data);
    REQUIRE(saved_load(save, &s));
    REQUIRE(s.n == 4);
    CHECK(strncmp(s.m[0].content, "Ohio", 4) == 0 && strncmp(s.m[2].content, "small", 5) == 0);
    Trace t;
    REQUIRE(trace_load(trace, &t));
    REQUIRE(t.n == 3);
    CHECK_EQ_INT(trace_int(&t, 2, "n_dropped"), 2);
    Trace last = {{t.turns[2]}, 1};
    const size_t turn_msgs[] = {3};
    check_turns(model, &last, &s, turn_msgs, 1);
    trace_free(&t);
    json_decref(s.root);
    buf_free(&out);
    buf_free(&err);
    // a single message larger than the context is refused whatever the flags
    buf_init(&in);
    words(&in, "capital", 200);
    rc = run_lossy(in.data, &out, &err, "chat", model, "--ctx", "96", "-n", "8", "-t", "1", "--trim-history", NULL);
    CHECKF(rc == 0, "rc %d, stderr: %s", rc, err.data);
    CHECKF(err.data && strstr(err.data, "the message needs") && strstr(err.data, "not sent"), "stderr: %s", err.data);
    buf_free(&in);
    buf_free(&out);
    buf_free(&err);
}

// Ctrl-C during an answer stops that answer, and the chat goes on. The model has no end-of-text token, so the
// answer could only end at the full context; stdout is a one-page pipe the test leaves unread, so the chat is
// certainly still writing its answer when SIGINT comes.
TEST(chat_ctrl_c_stops_the_answer_not_the_program) {
    char model[512], save[512], save_arg[600];
    REQUIRE(make_model(tmp_path(model, sizeof model, "noeos.gguf"), NULL, 0, NULL, NULL, NULL, 5) == 0);
    snprintf(save_arg, sizeof save_arg, "/save %s\n", tmp_path(save, sizeof save, "conv.json"));
    int in_p[2], out_p[2], err_p[2];
    REQUIRE(pipe(in_p) == 0 && pipe(out_p) == 0 && pipe(err_p) == 0);
    REQUIRE(fcntl(out_p[1], F_SETPIPE_SZ, 4096) >= 0);
    fflush(NULL);
    pid_t parent = getpid();
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(1);
        dup2(in_p[0], 0);
        dup2(out_p[1], 1);
        dup2(err_p[1], 2);
        close(in_p[1]);
        close(out_p[0]);
        close(err_p[0]);
        const char *argv[] = {lossy_binary(), "chat", model, "--chat-format", "raw", "--ctx", "4096", "-n", "0",
                              "--temp", "0", "-t", "1", NULL};
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(in_p[0]);
    close(out_p[1]);
    close(err_p[1]);
    REQUIRE(write(in_p[1], "go on\n", 6) == 6);
    // wait until the answer has filled the pipe (the chat is then blocked writing it)
    int avail = 0;
    for (int i = 0; i < 6000 && avail < 4096; i++) {
        usleep(10000);
        if (ioctl(out_p[0], FIONREAD, &avail) != 0) break;
    }
    CHECKF(avail >= 4096, "the answer did not fill the pipe (%d bytes)", avail);
    kill(pid, SIGINT);
    size_t sl = strlen(save_arg);
    CHECK(write(in_p[1], save_arg, sl) == (ssize_t)sl);
    close(in_p[1]);
    // drain stdout and stderr until both close
    Buf out = {0}, err = {0};
    buf_init(&out);
    buf_init(&err);
    struct pollfd pf[2] = {{out_p[0], POLLIN, 0}, {err_p[0], POLLIN, 0}};
    int open_fds = 2;
    while (open_fds > 0) {
        if (poll(pf, 2, 60000) <= 0) break;
        for (int k = 0; k < 2; k++) {
            if (pf[k].fd < 0 || !(pf[k].revents & (POLLIN | POLLHUP))) continue;
            char chunk[4096];
            ssize_t n = read(pf[k].fd, chunk, sizeof chunk);
            if (n > 0) buf_append(k ? &err : &out, chunk, (size_t)n);
            else pf[k].fd = -1, open_fds--;
        }
    }
    int status = 0;
    waitpid(pid, &status, 0);
    close(out_p[0]);
    close(err_p[0]);
    buf_append(&err, "", 1);
    CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d, stderr: %s", status, err.data);
    CHECKF(strstr(err.data, "answer stopped (Ctrl-C)") && strstr(err.data, "conversation saved"), "stderr: %s", err.data);
    CHECKF(!strstr(err.data, "context is full"), "the answer ran to the end of the context: %s", err.data);
    Saved s;
    REQUIRE(saved_load(save, &s));
    REQUIRE(s.n == 2);
    CHECK(s.m[1].role == CHAT_ROLE_ASSISTANT && s.m[1].len >= 4096);
    json_decref(s.root);
    buf_free(&out);
    buf_free(&err);
}

// ---- the session in-process: reusing the cache gives the state a full feed gives ----

typedef struct Snap {
    float *logits;
    TokenIds ids;
    int64_t n_reused;
    int64_t vocab;
} Snap;

static void snap_prompt(void *ctx, const ChatSession *cs, const ChatTurnStats *st) {
    Snap *s = ctx;
    free(s->logits);
    s->logits = xmalloc((size_t)s->vocab * sizeof(float));
    memcpy(s->logits, cs->s->logits, (size_t)s->vocab * sizeof(float));
    s->ids.n = 0;
    for (int64_t i = 0; i < st->n_prompt; i++) token_ids_push(&s->ids, cs->cached.ids[i]);
    s->n_reused = st->n_reused;
}

TEST(chat_session_cache_reuse_equals_a_full_feed) {
    char path[512];
    REQUIRE(make_chatml_model(tmp_path(path, sizeof path, "reuse.gguf"), CHATML_TEMPLATE) == 0);
    Err e;
    Model m;
    REQUIRE(model_load(&m, path, &e) == 0);
    Tokenizer *tok;
    REQUIRE(tokenizer_load(path, &tok, &e) == 0);
    Chat chat;
    REQUIRE(chat_init(&chat, CHAT_FORMAT_CHATML, tok, NULL, &e) == 0);
    ModelState s, full;
    REQUIRE(model_state_init(&s, &m, 256, NULL, &e) == 0);
    REQUIRE(model_state_init(&full, &m, 256, NULL, &e) == 0);
    SamplerParams sp;
    sampler_params_default(&sp);
    sp.temperature = 0;
    Sampler smp;
    sampler_init(&smp, m.cfg.vocab_size, &sp);
    ChatSession cs;
    chat_session_init(&cs, &s, tok, &chat, &smp);
    chat_session_set_system(&cs, "Be brief.", 9);
    Snap snap = {.vocab = m.cfg.vocab_size};
    ChatTurnOpts o = {.max_tokens = 10, .on_prompt = snap_prompt, .on_prompt_ctx = &snap};
    ChatTurnStats st;
    static const char *const msgs[] = {"What is the capital of Texas?", "And Ohio?", "Spell dog."};
    for (int turn = 0; turn < 3; turn++) {
        REQUIRE(chat_session_turn(&cs, msgs[turn], strlen(msgs[turn]), &o, &st, &e) == CHAT_TURN_OK);
        // the ids fed are the rendering of the conversation; the logits equal one forward over all of them
        TokenIds want = {0};
        cs.n_msgs--; // render without the answer just added
        REQUIRE(chat_session_render(&cs, true, &want, &e) == 0);
        cs.n_msgs++;
        CHECK(ids_equal(&want, &snap.ids));
        model_state_reset(&full);
        REQUIRE(model_forward(&full, snap.ids.ids, (int64_t)snap.ids.n, &e) == 0);
        double worst = 0;
        for (int64_t v = 0; v < m.cfg.vocab_size; v++) worst = fmax(worst, fabs(full.logits[v] - snap.logits[v]));
        CHECKF(worst < 1e-4, "turn %d: logits after reusing %lld cached ids differ from a full feed by %g", turn + 1,
               (long long)snap.n_reused, worst);
        if (turn > 0) CHECKF(snap.n_reused > 10, "turn %d reused only %lld ids", turn + 1, (long long)snap.n_reused);
        token_ids_free(&want);
    }
    CHECK_EQ_INT(cs.n_msgs, 6);
    // a refused turn changes nothing: neither the history nor the cache
    size_t cached = cs.cached.n;
    Buf big;
    buf_init(&big);
    for (int i = 0; i < 300; i++) buf_append_str(&big, "capital ");
    CHECK_EQ_INT(chat_session_turn(&cs, big.data, big.len, &o, &st, &e), CHAT_TURN_NO_ROOM);
    CHECK(strstr(e.msg, "context is full") != NULL);
    CHECK_EQ_INT(cs.n_msgs, 6);
    CHECK_EQ_INT(cs.cached.n, cached);
    CHECK_EQ_INT(cs.s->pos, (long long)cached);
    o.trim_history = true; // trimming cannot help a message larger than the context: still refused, still unchanged
    CHECK_EQ_INT(chat_session_turn(&cs, big.data, big.len, &o, &st, &e), CHAT_TURN_NO_ROOM);
    CHECK(strstr(e.msg, "the message needs") != NULL);
    CHECK_EQ_INT(cs.n_msgs, 6);
    buf_free(&big);
    free(snap.logits);
    token_ids_free(&snap.ids);
    chat_session_free(&cs);
    sampler_free(&smp);
    model_state_free(&s);
    model_state_free(&full);
    chat_free(&chat);
    tokenizer_free(tok);
    model_free(&m);
}
