// cli_device.c — `--device` (see cli_device.h).
#include "cli/cli_device.h"

#include <string.h>

#include "model/model_device.h"

int cli_device_load(const CliArgs *a, Model *m, const char *path) {
    memset(m, 0, sizeof *m);
    const char *dev = cli_flag_str(a, "device");
    const bool cuda = strcmp(dev, "cuda") == 0;
    if (!cuda && strcmp(dev, "cpu") != 0) return cli_errorf(EXIT_USAGE, "--device", "must be cpu or cuda (got '%s')", dev);
    Err e;
    if ((cuda ? model_load_mapped : model_load)(m, path, &e)) return cli_fail(&e, path);
    if (model_use_device(m, dev, &e)) {
        model_free(m);
        return cli_fail(&e, cuda ? "--device cuda" : "--device");
    }
    return EXIT_OK;
}
