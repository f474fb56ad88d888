// plot.h — loss curves as SVG, drawn by lossy itself (no Python): the training log (CSV) becomes a chart with the
// raw training loss, its moving average, and the validation loss, on labelled axes with round tick values.
//
// The CSV needs a header row naming its columns; the plot reads "step", "loss" and, when present, "val_loss" and
// "val_bpb" (empty cells = no value at that step). That is the log `lossy train` writes; any CSV with those columns
// plots the same way (`lossy plot`).
#ifndef LOSSY_TRAIN_PLOT_H
#define LOSSY_TRAIN_PLOT_H

#include <stddef.h>

#include "base/err.h"
#include "base/util.h"

typedef struct LossSeries {
    double *step, *loss;          // (n) training loss per logged step
    size_t n;
    double *val_step, *val_loss, *val_bpb; // (n_val) evaluations (val_bpb NAN when absent)
    size_t n_val;
} LossSeries;

// Parse CSV text (len bytes). Errors name the line and column.
int plot_parse_csv(const char *text, size_t len, const char *name, LossSeries *s, Err *e);
void loss_series_free(LossSeries *s);

// SVG document for the series, appended to out. title may be NULL.
void plot_loss_svg(const LossSeries *s, const char *title, Buf *out);

// Read csv_path, write svg_path atomically.
int plot_csv_to_svg(const char *csv_path, const char *svg_path, const char *title, Err *e);

#endif
