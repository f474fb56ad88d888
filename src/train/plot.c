// plot.c — CSV loss logs to SVG charts (see plot.h).
//
// Layout: a fixed 960 x 540 canvas, a plot frame with a margin for tick labels, x = step, y = loss in nats. The raw
// training loss is a thin pale line (it is noisy), an exponential moving average of it a solid line, validation
// evaluations a second colour with markers. Tick values are "nice" numbers (1, 2, 5 x 10^k) so the axes read easily.
#include "train/plot.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct Cols {
    int step, loss, val_loss, val_bpb;
} Cols;

// The next CSV field of a line: [*p, end of field); advances *p past the comma. No quoting (numbers only).
static size_t next_field(const char **p, const char *eol, const char **start) {
    *start = *p;
    const char *c = memchr(*p, ',', (size_t)(eol - *p));
    size_t n = c ? (size_t)(c - *p) : (size_t)(eol - *p);
    *p = c ? c + 1 : eol;
    return n;
}

// Parse a number field; empty -> NAN with ok. Returns false on junk.
static bool parse_num(const char *s, size_t n, double *out) {
    while (n && (*s == ' ' || *s == '\t')) s++, n--;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r')) n--;
    if (n == 0) {
        *out = NAN;
        return true;
    }
    char buf[64];
    if (n >= sizeof buf) return false;
    memcpy(buf, s, n);
    buf[n] = 0;
    char *end;
    *out = strtod(buf, &end);
    return *end == 0;
}

static void push(double **a, size_t n, double v) {
    if ((n & (n - 1)) == 0) *a = xrealloc(*a, (n ? 2 * n : 1) * sizeof(double));
    (*a)[n] = v;
}

int plot_parse_csv(const char *text, size_t len, const char *name, LossSeries *s, Err *e) {
    memset(s, 0, sizeof *s);
    const char *p = text, *end = text + len;
    const char *eol = memchr(p, '\n', len);
    if (!eol) eol = end;
    Cols c = {-1, -1, -1, -1};
    int col = 0;
    for (const char *q = p; q < eol; col++) {
        const char *f;
        size_t n = next_field(&q, eol, &f);
        while (n && f[n - 1] == '\r') n--;
        if (n == 4 && memcmp(f, "step", 4) == 0) c.step = col;
        else if (n == 4 && memcmp(f, "loss", 4) == 0) c.loss = col;
        else if (n == 8 && memcmp(f, "val_loss", 8) == 0) c.val_loss = col;
        else if (n == 7 && memcmp(f, "val_bpb", 7) == 0) c.val_bpb = col;
    }
    if (c.step < 0 || c.loss < 0) return ERR(e, "%s: the header row must name the columns 'step' and 'loss'", name);
    size_t line = 1;
    for (p = eol < end ? eol + 1 : end; p < end; p = eol < end ? eol + 1 : end) {
        line++;
        eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) eol = end;
        if (eol == p || (eol - p == 1 && *p == '\r')) continue;
        double step = NAN, loss = NAN, vl = NAN, vb = NAN;
        col = 0;
        for (const char *q = p; q < eol; col++) {
            const char *f;
            size_t n = next_field(&q, eol, &f);
            double v;
            if (col != c.step && col != c.loss && col != c.val_loss && col != c.val_bpb) continue;
            if (!parse_num(f, n, &v)) {
                loss_series_free(s);
                return ERR(e, "%s:%zu: column %d is not a number: '%.*s'", name, line, col + 1, (int)(n < 40 ? n : 40), f);
            }
            if (col == c.step) step = v;
            else if (col == c.loss) loss = v;
            else if (col == c.val_loss) vl = v;
            else vb = v;
        }
        if (!isfinite(step)) {
            loss_series_free(s);
            return ERR(e, "%s:%zu: no step value", name, line);
        }
        if (isfinite(loss)) {
            push(&s->step, s->n, step);
            push(&s->loss, s->n, loss);
            s->n++;
        }
        if (isfinite(vl)) {
            push(&s->val_step, s->n_val, step);
            push(&s->val_loss, s->n_val, vl);
            push(&s->val_bpb, s->n_val, vb);
            s->n_val++;
        }
    }
    return 0;
}

void loss_series_free(LossSeries *s) {
    free(s->step);
    free(s->loss);
    free(s->val_step);
    free(s->val_loss);
    free(s->val_bpb);
    memset(s, 0, sizeof *s);
}

// A round tick spacing giving about `want` intervals over [lo, hi].
static double nice_step(double lo, double hi, int want) {
    double range = hi - lo;
    if (!(range > 0)) return 1.0;
    double raw = range / want, mag = pow(10.0, floor(log10(raw))), f = raw / mag;
    double nf = f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10;
    return nf * mag;
}

static void fmt_tick(char *out, size_t n, double v, double step) {
    if (fabs(v) >= 10000 && step >= 1000) snprintf(out, n, "%gk", v / 1000.0);
    else if (step >= 1) snprintf(out, n, "%.0f", v);
    else {
        int dec = (int)ceil(-log10(step));
        snprintf(out, n, "%.*f", dec < 6 ? dec : 6, v);
    }
}

void plot_loss_svg(const LossSeries *s, const char *title, Buf *out) {
    const double W = 960, H = 540, L = 80, R = 30, T = 50, Bm = 60;
    const double pw = W - L - R, ph = H - T - Bm;
    double xmin = 0, xmax = 1, ymin = INFINITY, ymax = -INFINITY;
    for (size_t i = 0; i < s->n; i++) {
        xmax = fmax(xmax, s->step[i]);
        ymin = fmin(ymin, s->loss[i]);
        ymax = fmax(ymax, s->loss[i]);
    }
    for (size_t i = 0; i < s->n_val; i++) {
        xmax = fmax(xmax, s->val_step[i]);
        ymin = fmin(ymin, s->val_loss[i]);
        ymax = fmax(ymax, s->val_loss[i]);
    }
    if (!isfinite(ymin)) ymin = 0, ymax = 1;
    if (ymax - ymin < 1e-6) ymin -= 0.5, ymax += 0.5;
    double ys = nice_step(ymin, ymax, 6), xs = nice_step(xmin, xmax, 8);
    ymin = floor(ymin / ys) * ys;
    ymax = ceil(ymax / ys) * ys;
    xmax = ceil(xmax / xs) * xs;
#define X(v) (L + ((v) - xmin) / (xmax - xmin) * pw)
#define Y(v) (T + (ymax - (v)) / (ymax - ymin) * ph)
    buf_printf(out, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
                    "font-family=\"sans-serif\" font-size=\"13\">\n", W, H, W, H);
    buf_printf(out, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    buf_printf(out, "<defs><clipPath id=\"frame\"><rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\"/></clipPath></defs>\n",
               L, T, pw, ph);
    // grid and ticks
    char lab[32];
    for (double v = ymin; v <= ymax + ys * 1e-6; v += ys) {
        fmt_tick(lab, sizeof lab, v, ys);
        buf_printf(out, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>\n", L, Y(v), L + pw, Y(v));
        buf_printf(out, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" dominant-baseline=\"middle\">%s</text>\n", L - 8, Y(v), lab);
    }
    for (double v = xmin; v <= xmax + xs * 1e-6; v += xs) {
        fmt_tick(lab, sizeof lab, v, xs);
        buf_printf(out, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>\n", X(v), T, X(v), T + ph);
        buf_printf(out, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n", X(v), T + ph + 20, lab);
    }
    buf_printf(out, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#444\"/>\n", L, T, pw, ph);
    buf_printf(out, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">step</text>\n", L + pw / 2, H - 15);
    buf_printf(out, "<text transform=\"translate(22 %.1f) rotate(-90)\" text-anchor=\"middle\">loss (nats per token)</text>\n",
               T + ph / 2);
    if (title) {
        Buf esc;
        buf_init(&esc);
        for (const char *c = title; *c; c++) {
            if (*c == '<') buf_append_str(&esc, "&lt;");
            else if (*c == '>') buf_append_str(&esc, "&gt;");
            else if (*c == '&') buf_append_str(&esc, "&amp;");
            else buf_append(&esc, c, 1);
        }
        buf_printf(out, "<text x=\"%.1f\" y=\"28\" text-anchor=\"middle\" font-size=\"16\">%s</text>\n", W / 2, esc.data ? esc.data : "");
        buf_free(&esc);
    }
    // curves
    buf_printf(out, "<g clip-path=\"url(#frame)\" fill=\"none\">\n");
    if (s->n) {
        buf_printf(out, "<polyline stroke=\"#9ecae1\" stroke-width=\"1\" points=\"");
        for (size_t i = 0; i < s->n; i++) buf_printf(out, "%.1f,%.1f ", X(s->step[i]), Y(s->loss[i]));
        buf_printf(out, "\"/>\n<polyline stroke=\"#08519c\" stroke-width=\"2\" points=\"");
        // moving average with a window of ~2% of the points, bias-corrected at the start
        double a = 1.0 - 1.0 / fmax(1.0, (double)s->n / 50.0), m = 0, wsum = 0;
        for (size_t i = 0; i < s->n; i++) {
            m = a * m + (1 - a) * s->loss[i];
            wsum = a * wsum + (1 - a);
            buf_printf(out, "%.1f,%.1f ", X(s->step[i]), Y(m / wsum));
        }
        buf_printf(out, "\"/>\n");
    }
    if (s->n_val) {
        buf_printf(out, "<polyline stroke=\"#d94801\" stroke-width=\"2\" points=\"");
        for (size_t i = 0; i < s->n_val; i++) buf_printf(out, "%.1f,%.1f ", X(s->val_step[i]), Y(s->val_loss[i]));
        buf_printf(out, "\"/>\n");
        for (size_t i = 0; i < s->n_val; i++)
            buf_printf(out, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"#d94801\"/>\n", X(s->val_step[i]), Y(s->val_loss[i]));
    }
    buf_printf(out, "</g>\n");
    // legend
    double lx = L + pw - 300, ly = T + 15;
    buf_printf(out, "<rect x=\"%.1f\" y=\"%.1f\" width=\"290\" height=\"%d\" fill=\"white\" stroke=\"#ccc\"/>\n", lx, ly - 10,
               s->n_val ? 70 : 50);
    buf_printf(out, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#9ecae1\"/><text x=\"%.1f\" y=\"%.1f\" "
                    "dominant-baseline=\"middle\">train loss</text>\n", lx + 10, ly + 5, lx + 40, ly + 5, lx + 48, ly + 5);
    buf_printf(out, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#08519c\" stroke-width=\"2\"/><text x=\"%.1f\" "
                    "y=\"%.1f\" dominant-baseline=\"middle\">train loss (moving average)</text>\n",
               lx + 10, ly + 25, lx + 40, ly + 25, lx + 48, ly + 25);
    if (s->n_val) {
        double last = s->val_loss[s->n_val - 1], bpb = s->val_bpb[s->n_val - 1];
        char extra[64] = "";
        if (isfinite(bpb)) snprintf(extra, sizeof extra, ", %.3f bits/byte", bpb);
        buf_printf(out, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#d94801\" stroke-width=\"2\"/><text x=\"%.1f\" "
                        "y=\"%.1f\" dominant-baseline=\"middle\">val loss (last %.3f%s)</text>\n",
                   lx + 10, ly + 45, lx + 40, ly + 45, lx + 48, ly + 45, last, extra);
    }
    buf_printf(out, "</svg>\n");
#undef X
#undef Y
}

int plot_csv_to_svg(const char *csv_path, const char *svg_path, const char *title, Err *e) {
    char *text;
    size_t len;
    if (file_read_all(csv_path, &text, &len, e)) return -1;
    LossSeries s;
    int rc = plot_parse_csv(text, len, csv_path, &s, e);
    free(text);
    if (rc) return -1;
    Buf svg;
    buf_init(&svg);
    plot_loss_svg(&s, title, &svg);
    rc = file_write_atomic_bytes(svg_path, svg.data, svg.len, e);
    buf_free(&svg);
    loss_series_free(&s);
    return rc;
}
