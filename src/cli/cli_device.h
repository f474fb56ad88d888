// cli_device.h — the `--device cpu|cuda` flag that run, chat, serve, bench and logits share: one spelling, one
// default, one error message when the device cannot be used.
//
// A command puts CLI_DEVICE_FLAG in its flag table and calls cli_device_apply() right after model_load (before any
// model_state_init): with cuda the weights are uploaded and the model runs on the GPU from then on (model_device.h).
#ifndef LOSSY_CLI_DEVICE_H
#define LOSSY_CLI_DEVICE_H

#include "cli/cli.h"
#include "model/model.h"

#define CLI_DEVICE_FLAG {"device", 0, FLAG_STR, "cpu|cuda", "cpu", "where the model runs: cpu, or cuda (an NVIDIA GPU)"}

// Move m to the device named by --device. Returns EXIT_OK, or the exit code after printing why not (no GPU, a build
// without CUDA, an unknown device name).
int cli_device_apply(const CliArgs *a, Model *m);

#endif
