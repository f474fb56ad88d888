// cli_sampling.c — parsing and range checks of the shared sampling flags (see cli_sampling.h).
#include "cli/cli_sampling.h"

#include <math.h>
#include <time.h>

static int bad(const char *flag, const char *what) { return cli_errorf(EXIT_USAGE, flag, "must be %s", what); }

int cli_sampling_params(const CliArgs *a, bool with_seed, SamplerParams *sp) {
    sampler_params_default(sp);
    sp->temperature = cli_flag_float(a, "temp");
    sp->top_k = cli_flag_int(a, "top-k");
    sp->top_p = cli_flag_float(a, "top-p");
    sp->min_p = cli_flag_float(a, "min-p");
    sp->repeat_penalty = cli_flag_float(a, "repeat-penalty");
    sp->presence_penalty = cli_flag_float(a, "presence-penalty");
    sp->frequency_penalty = cli_flag_float(a, "frequency-penalty");
    sp->penalty_last_n = cli_flag_int(a, "repeat-last-n");
    // the ranges the HTTP API accepts too (serve/api.c), so a value that works on one command works on the others
    if (!isfinite(sp->temperature) || sp->temperature < 0 || sp->temperature > 100) return bad("--temp", "0 to 100");
    if (sp->top_k < 0) return bad("--top-k", ">= 0");
    if (!(sp->top_p > 0 && sp->top_p <= 1)) return bad("--top-p", "greater than 0 and at most 1");
    if (!(sp->min_p >= 0 && sp->min_p <= 1)) return bad("--min-p", "0 to 1");
    if (!(sp->repeat_penalty >= 0.01 && sp->repeat_penalty <= 100)) return bad("--repeat-penalty", "0.01 to 100");
    if (!(fabs(sp->presence_penalty) <= 2)) return bad("--presence-penalty", "-2 to 2");
    if (!(fabs(sp->frequency_penalty) <= 2)) return bad("--frequency-penalty", "-2 to 2");
    if (sp->penalty_last_n < -1) return bad("--repeat-last-n", ">= -1");
    if (with_seed) sp->seed = cli_flag_given(a, "seed") ? (uint64_t)cli_flag_int(a, "seed") : (uint64_t)time(NULL);
    return EXIT_OK;
}
