// cmd_run.c — `lossy run MODEL`: generate text from a prompt (a base model continues the document).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_device.h"
#include "cli/cli_sampling.h"
#include "sample/generate.h"

static const CliFlag FLAGS[] = {
    {"prompt", 'p', FLAG_STR, "TEXT", "", "prompt text (special tokens written in it are recognised)"},
    {"file", 'f', FLAG_STR, "FILE", NULL, "read the prompt from a file"},
    {"ids", 0, FLAG_STR, "1,2,3", NULL, "prompt as token ids (comma or space separated) instead of text"},
    {"print-ids", 0, FLAG_BOOL, NULL, NULL, "print the generated ids (space-separated, one line) instead of text"},
    {"stop", 0, FLAG_LIST, "TEXT", NULL, "stop before this text appears in the output"},
    {"n-predict", 'n', FLAG_INT, "N", "256", "number of tokens to generate"},
    CLI_SAMPLING_FLAGS,
    CLI_SEED_FLAG,
    {"threads", 't', FLAG_INT, "N", NULL, "threads (default: all cores)"},
    {"ctx", 'c', FLAG_INT, "N", "0", "context length (0 = the model's, capped at 4096)"},
    {"no-bos", 0, FLAG_BOOL, NULL, NULL, "do not add the tokenizer's BOS/template tokens to the prompt"},
    {"ignore-eos", 0, FLAG_BOOL, NULL, NULL, "keep generating past end-of-text tokens"},
    {"no-echo", 0, FLAG_BOOL, NULL, NULL, "do not print the prompt before the generated text"},
    {"tokenizer", 0, FLAG_STR, "PATH", NULL, "tokenizer to use instead of the model's own (e.g. llama2.c tokenizer.bin)"},
    CLI_DEVICE_FLAG,
    {NULL, 0, 0, NULL, NULL, NULL},
};

static bool emit_stdout(void *ctx, const char *text, size_t len) {
    (void)ctx;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return true;
}

static int run(const CliArgs *a) {
    int n_threads;
    if (cli_flag_threads(a, &n_threads) != EXIT_OK) return EXIT_USAGE;
    const char *path = a->pos[0];
    Err e;
    // prompt text
    char *prompt = NULL;
    size_t prompt_len = 0;
    if (cli_flag_given(a, "file")) {
        if (file_read_all(cli_flag_str(a, "file"), &prompt, &prompt_len, &e)) return cli_fail(&e, cli_flag_str(a, "file"));
    } else {
        prompt = xstrdup(cli_flag_str(a, "prompt"));
        prompt_len = strlen(prompt);
    }
    int64_t n_predict = cli_flag_int(a, "n-predict");
    if (n_predict < 0) {
        free(prompt);
        return cli_errorf(EXIT_USAGE, "--n-predict", "must be >= 0");
    }
    SamplerParams sp;
    int rc = cli_sampling_params(a, true, &sp);
    if (rc != EXIT_OK) {
        free(prompt);
        return rc;
    }
    Model m;
    if ((rc = cli_device_load(a, &m, path)) != EXIT_OK) {
        free(prompt);
        return rc;
    }
    const bool by_ids = cli_flag_given(a, "ids"), print_ids = cli_flag_bool(a, "print-ids");
    Tokenizer *tok = NULL;
    // a model given only as ids and printed as ids needs no tokenizer (e.g. a checkpoint without one)
    if (tokenizer_load(cli_flag_given(a, "tokenizer") ? cli_flag_str(a, "tokenizer") : path, &tok, &e) && !(by_ids && print_ids)) {
        free(prompt);
        model_free(&m);
        return cli_fail(&e, path);
    }
    TokenIds ids = {0};
    if (by_ids) {
        int32_t *given;
        size_t n_given;
        if (cli_parse_ids(cli_flag_str(a, "ids"), &given, &n_given) == 0) {
            for (size_t i = 0; i < n_given; i++) token_ids_push(&ids, given[i]);
            free(given);
        } else {
            rc = cli_errorf(EXIT_USAGE, "--ids", "expected token ids like 1,2,3");
            goto out;
        }
    } else if (tokenizer_encode(tok, prompt, prompt_len, cli_flag_bool(a, "no-bos") ? 0 : TOKENIZE_ADD_SPECIAL, &ids, &e)) {
        rc = cli_fail(&e, "--prompt");
        goto out;
    }
    if (ids.n == 0) {
        // nothing to condition on: start from BOS, or end-of-text for vocabularies without one (GPT-2)
        int32_t start = tokenizer_special_id(tok, TOKEN_ID_BOS);
        if (start < 0) start = tokenizer_special_id(tok, TOKEN_ID_EOS);
        if (start < 0) {
            rc = cli_errorf(EXIT_USAGE, "--prompt", "empty prompt and the vocabulary has no BOS/EOS token to start from");
            goto out;
        }
        token_ids_push(&ids, start);
    }
    ThreadPool *pool = threadpool_new(n_threads);
    ModelState s;
    if (model_state_init(&s, &m, cli_flag_int(a, "ctx"), pool, &e)) {
        threadpool_free(pool);
        rc = cli_fail(&e, path);
        goto out;
    }
    Sampler smp;
    sampler_init(&smp, m.cfg.vocab_size, &sp);
    if (!cli_flag_bool(a, "no-echo") && !print_ids && tok) {
        Buf pb;
        buf_init(&pb);
        if (tokenizer_decode(tok, ids.ids, ids.n, TOKENIZER_DECODE_SKIP_SPECIAL, &pb, &e) == 0 && pb.len) fwrite(pb.data, 1, pb.len, stdout);
        buf_free(&pb);
    }
    char **stops;
    size_t n_stop = cli_flag_list(a, "stop", &stops);
    GenerateOpts go = {.max_tokens = n_predict, .ignore_eos = cli_flag_bool(a, "ignore-eos"),
                       .emit = print_ids ? NULL : emit_stdout, .stop = (const char *const *)stops, .n_stop = n_stop};
    GenerateStats st;
    TokenIds out_ids = {0};
    if (generate_run(&s, tok, &smp, ids.ids, (int64_t)ids.n, &go, &out_ids, &st, &e)) rc = cli_fail(&e, path);
    if (print_ids)
        for (size_t i = 0; i < out_ids.n; i++) printf(i ? " %d" : "%d", out_ids.ids[i]);
    printf("\n");
    token_ids_free(&out_ids);
    if (st.n_generated < n_predict && !st.stopped_by_eos && !st.stopped_by_string && rc == EXIT_OK && s.pos >= s.n_ctx)
        fprintf(stderr, "lossy: context full (%lld tokens): generation stopped early; use a larger --ctx\n", (long long)s.n_ctx);
    fprintf(stderr, "lossy: prompt %lld tokens in %.3f s (%.1f tok/s), generated %lld tokens in %.3f s (%.1f tok/s), %d threads\n",
                (long long)st.n_prompt, st.prompt_seconds, st.prompt_seconds > 0 ? st.n_prompt / st.prompt_seconds : 0,
                (long long)st.n_generated, st.gen_seconds, st.gen_seconds > 0 ? st.n_generated / st.gen_seconds : 0,
                threadpool_size(pool));
    sampler_free(&smp);
    model_state_free(&s);
    threadpool_free(pool);
out:
    token_ids_free(&ids);
    tokenizer_free(tok);
    model_free(&m);
    free(prompt);
    return rc;
}

const CliCommand cmd_run = {
    .name = "run",
    .summary = "generate text with a model (GGUF file or Hugging Face directory)",
    .usage = "MODEL",
    .min_pos = 1,
    .max_pos = 1,
    .flags = FLAGS,
    .details = "The prompt is encoded with the model's own tokenizer, with its BOS/template tokens unless --no-bos;\n"
               "an empty prompt starts from BOS (or end-of-text). The prompt is echoed, then the continuation.",
    .run = run,
};
