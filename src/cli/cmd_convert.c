// cmd_convert.c — `lossy convert IN OUT.gguf`: any model lossy loads (GGUF, Hugging Face directory) → a GGUF file
// that llama.cpp and lossy run, with the tokenizer, special ids and chat template in the standard keys.
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "model/convert.h"

static const CliFlag FLAGS[] = {
    {"dtype", 0, FLAG_STR, "TYPE", "f16", "weight type of the matrices: f32, f16, bf16, q8_0, q4_0"},
    {"name", 0, FLAG_STR, "NAME", NULL, "general.name of the output"},
    {"tokenizer", 0, FLAG_STR, "PATH", NULL, "tokenizer to use instead of the model's own (e.g. llama2.c tokenizer.bin)"},
    {NULL, 0, 0, NULL, NULL, NULL},
};

// chat_template from a Hugging Face directory's tokenizer_config.json, when there is one (NULL otherwise).
static char *hf_chat_template(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    json_t *j = json_load_file(path, 0, NULL);
    if (!j) return NULL;
    const char *t = json_string_value(json_object_get(j, "chat_template"));
    char *out = t ? xstrdup(t) : NULL;
    json_decref(j);
    return out;
}

static int run(const CliArgs *a) {
    const char *in = a->pos[0], *out = a->pos[1];
    int dt = dtype_from_name(cli_flag_str(a, "dtype"));
    if (dt != DT_F32 && dt != DT_F16 && dt != DT_BF16 && dt != DT_Q8_0 && dt != DT_Q4_0)
        return cli_errorf(EXIT_USAGE, "--dtype", "unsupported type '%s' (f32, f16, bf16, q8_0, q4_0)", cli_flag_str(a, "dtype"));
    Err e;
    Model m;
    if (model_load_mapped(&m, in, &e)) return cli_fail(&e, in);
    Tokenizer *tok = NULL;
    if (tokenizer_load(cli_flag_given(a, "tokenizer") ? cli_flag_str(a, "tokenizer") : in, &tok, &e)) {
        if (cli_flag_given(a, "tokenizer")) { // asked for, so not optional
            model_free(&m);
            return cli_fail(&e, cli_flag_str(a, "tokenizer"));
        }
        fprintf(stderr, "lossy: warning: no tokenizer written (%s); the file is marked as having no vocabulary "
                        "(tokenizer.ggml.model = no_vocab) and runs on token ids only (run --ids ... --print-ids)\n", e.msg);
        tok = NULL;
    }
    char *tmpl = path_is_dir(in) ? hf_chat_template(in) : NULL;
    ConvertOpts o = {.dtype = (DType)dt, .name = cli_flag_str(a, "name"), .chat_template = tmpl};
    int rc = EXIT_OK;
    if (model_write_gguf(&m, tok, out, &o, &e)) rc = cli_fail(&e, out);
    else fprintf(stderr, "lossy: wrote %s (%s)\n", out, dtype_name((uint32_t)dt));
    free(tmpl);
    tokenizer_free(tok);
    model_free(&m);
    return rc;
}

const CliCommand cmd_convert = {
    .name = "convert",
    .summary = "convert a model (GGUF, Hugging Face directory) to a GGUF file in f32/f16/bf16/q8_0/q4_0",
    .usage = "IN OUT.gguf",
    .min_pos = 2,
    .max_pos = 2,
    .flags = FLAGS,
    .run = run,
};
