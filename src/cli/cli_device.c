// cli_device.c — `--device` (see cli_device.h).
#include "cli/cli_device.h"

#include <string.h>

#include "model/model_device.h"

int cli_device_apply(const CliArgs *a, Model *m) {
    const char *dev = cli_flag_str(a, "device");
    if (strcmp(dev, "cpu") != 0 && strcmp(dev, "cuda") != 0)
        return cli_errorf(EXIT_USAGE, "--device", "must be cpu or cuda (got '%s')", dev);
    Err e;
    if (model_use_device(m, dev, &e)) return cli_fail(&e, strcmp(dev, "cuda") == 0 ? "--device cuda" : "--device");
    return EXIT_OK;
}
