// err.c — Err helpers (see err.h).
#include "err.h"

#include <stdio.h>
#include <string.h>

int err_set_at(Err *e, const char *file, int line, const char *fmt, ...) {
    if (!e) return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    e->file = file;
    e->line = line;
    return -1;
}

int err_prefix(Err *e, const char *fmt, ...) {
    if (!e) return -1;
    char head[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(head, sizeof head, fmt, ap);
    va_end(ap);
    // head + old message, truncated to fit (done by hand: snprintf("%s%s") trips -Wformat-truncation)
    char old[sizeof e->msg];
    memcpy(old, e->msg, sizeof old);
    size_t hn = strnlen(head, sizeof head), on = strnlen(old, sizeof old - 1);
    if (hn > sizeof e->msg - 1) hn = sizeof e->msg - 1;
    if (on > sizeof e->msg - 1 - hn) on = sizeof e->msg - 1 - hn;
    memcpy(e->msg, head, hn);
    memcpy(e->msg + hn, old, on);
    e->msg[hn + on] = 0;
    return -1;
}

void err_clear(Err *e) {
    if (!e) return;
    e->msg[0] = 0;
    e->file = NULL;
    e->line = 0;
}
