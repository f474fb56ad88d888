// cli_sampling.h — the sampling flags that `lossy run`, `lossy chat` and `lossy serve` share, and their parsing into
// SamplerParams, so the three commands spell, default and validate them the same way.
//
// A command puts CLI_SAMPLING_FLAGS inside its flag table (the entries are plain CliFlag initialisers) and calls
// cli_sampling_params() in its run function. The seed is not part of the shared set: run and chat draw a time-based
// seed when none is given (CLI_SEED_FLAG), while the server seeds each request.
#ifndef LOSSY_CLI_SAMPLING_H
#define LOSSY_CLI_SAMPLING_H

#include "cli/cli.h"
#include "sample/sampler.h"

#define CLI_SAMPLING_FLAGS                                                                                       \
    {"temp", 0, FLAG_FLOAT, "T", "0.8", "temperature; 0 = greedy"},                                             \
    {"top-k", 0, FLAG_INT, "K", "40", "keep the K most likely tokens (0 = off)"},                                 \
    {"top-p", 0, FLAG_FLOAT, "P", "0.95", "nucleus sampling mass (1 = off)"},                                     \
    {"min-p", 0, FLAG_FLOAT, "P", "0.05", "drop tokens below P x the best probability (0 = off)"},               \
    {"repeat-penalty", 0, FLAG_FLOAT, "X", "1.0", "divide logits of recent tokens by X (1 = off)"},              \
    {"presence-penalty", 0, FLAG_FLOAT, "X", "0", "subtract X from logits of recent tokens"},                     \
    {"frequency-penalty", 0, FLAG_FLOAT, "X", "0", "subtract X times the count of recent tokens"},               \
    {"repeat-last-n", 0, FLAG_INT, "N", "64", "how many recent tokens the penalties see (-1 = all)"}

#define CLI_SEED_FLAG {"seed", 's', FLAG_INT, "S", NULL, "random seed (default: time-based)"}

// Fill sp from the CLI_SAMPLING_FLAGS of a (and from the seed flag when with_seed: its value, else time-based).
// Returns EXIT_OK, or EXIT_USAGE after printing which flag is out of range.
int cli_sampling_params(const CliArgs *a, bool with_seed, SamplerParams *sp);

#endif
