// cmd_plot.c — `lossy plot LOG.csv -o curve.svg`: draw a training log's loss curves (src/train/plot.c).
#include <string.h>

#include "cli.h"
#include "train/plot.h"

static const CliFlag FLAGS[] = {
    {"out", 'o', FLAG_STR, "FILE", NULL, "SVG file to write (default: LOG with .svg)"},
    {"title", 0, FLAG_STR, "TEXT", NULL, "chart title"},
    {NULL, 0, 0, NULL, NULL, NULL},
};

static int run(const CliArgs *a) {
    const char *log = a->pos[0], *out = cli_flag_str(a, "out");
    Buf def;
    buf_init(&def);
    if (!out) {
        size_t n = strlen(log);
        if (str_ends_with(log, ".csv")) n -= 4;
        buf_append(&def, log, n);
        buf_append_str(&def, ".svg");
        out = def.data;
    }
    Err e;
    int rc = plot_csv_to_svg(log, out, cli_flag_str(a, "title") ? cli_flag_str(a, "title") : log, &e);
    if (rc == 0) fprintf(stderr, "wrote %s\n", out);
    buf_free(&def);
    return rc ? cli_fail(&e, log) : EXIT_OK;
}

const CliCommand cmd_plot = {
    .name = "plot",
    .summary = "draw a training log (CSV) as an SVG loss curve",
    .usage = "LOG.csv",
    .min_pos = 1,
    .max_pos = 1,
    .flags = FLAGS,
    .details = "The CSV needs a header naming 'step' and 'loss' columns; 'val_loss' and 'val_bpb' are drawn when "
               "present (the log lossy train writes).",
    .run = run,
};
