// cli_device.h — the `--device cpu|cuda` flag that run, chat, serve, bench and logits share: one spelling, one
// default, one error message when the device cannot be used.
//
// A command puts CLI_DEVICE_FLAG in its flag table and loads its model with cli_device_load() (before any
// model_state_init): with cuda the weights are uploaded and the model runs on the GPU from then on (model_device.h).
#ifndef LOSSY_CLI_DEVICE_H
#define LOSSY_CLI_DEVICE_H

#include "cli/cli.h"
#include "model/model.h"

#define CLI_DEVICE_FLAG {"device", 0, FLAG_STR, "cpu|cuda", "cpu", "where the model runs: cpu, or cuda (an NVIDIA GPU)"}

// Load the model at path for the device named by --device and move it there: for cuda the weights stay mapped (the
// CPU's load-time copies would only be uploaded and given back). Returns EXIT_OK, or the exit code after printing why
// not (an unknown device name, before anything is read; a bad model; no GPU, a build without CUDA), m then empty.
int cli_device_load(const CliArgs *a, Model *m, const char *path);

#endif
