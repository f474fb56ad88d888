// commands.c — the list of lossy's commands, in the order `lossy --help` shows them.
// To add a command: write src/cli/cmd_<name>.c defining `const CliCommand cmd_<name>`, declare it here, list it.
#include "cli/cli.h"

extern const CliCommand cmd_info;
extern const CliCommand cmd_run;
extern const CliCommand cmd_serve;
extern const CliCommand cmd_chat;
extern const CliCommand cmd_logits;
extern const CliCommand cmd_convert;
extern const CliCommand cmd_bench;
extern const CliCommand cmd_tokenizer_train;
extern const CliCommand cmd_tokenize;
extern const CliCommand cmd_data_prepare;
extern const CliCommand cmd_data_sft_synth;
extern const CliCommand cmd_train;
extern const CliCommand cmd_sft;
extern const CliCommand cmd_plot;
extern const CliCommand cmd_quantize;
extern const CliCommand cmd_eval_ppl;
extern const CliCommand cmd_eval_bpb;
extern const CliCommand cmd_eval_sft;

const CliCommand *const cli_commands[] = {
    &cmd_run,
    &cmd_chat,
    &cmd_serve,
    &cmd_logits,
    &cmd_convert,
    &cmd_quantize,
    &cmd_bench,
    &cmd_eval_ppl,
    &cmd_eval_bpb,
    &cmd_eval_sft,
    &cmd_info,
    &cmd_tokenize,
    &cmd_tokenizer_train,
    &cmd_data_prepare,
    &cmd_data_sft_synth,
    &cmd_train,
    &cmd_sft,
    &cmd_plot,
    NULL,
};
