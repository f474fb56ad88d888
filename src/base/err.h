// err.h — how lossy reports failures.
//
// Library functions never print and never exit: they return a status (0 ok, -1 failed) and fill an Err with a
// one-line human message plus the source location that raised it. Commands turn an Err into
// `lossy: error: <message>` on stderr and exit 1. Keep messages specific: name the file, key, tensor or byte offset.
#ifndef LOSSY_ERR_H
#define LOSSY_ERR_H

#include <stdarg.h>

typedef struct Err {
    char msg[1024];   // human message, e.g. "tensor 'blk.0.attn_q.weight' data out of bounds (model.gguf)"
    const char *file; // source file that raised it (for developers: shown with LOSSY_DEBUG=1)
    int line;
} Err;

// Fill e (if not NULL) and return -1, so callers can write `return ERR(e, "...", ...)`.
int err_set_at(Err *e, const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
#define ERR(e, ...) err_set_at((e), __FILE__, __LINE__, __VA_ARGS__)

// Prefix an existing message with context ("while reading X: "), keeping the original location.
int err_prefix(Err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void err_clear(Err *e);

#endif
