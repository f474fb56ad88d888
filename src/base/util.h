// util.h — checked libc wrappers and the size discipline every module uses.
//
// Allocation failure is not recoverable for lossy, so x*alloc print the caller's file:line and abort (the one place
// the library may stop the process). Everything that can fail because of *input* (files, sizes read from files)
// returns a status and fills an Err instead. Sizes and offsets are size_t/int64_t; any multiplication or addition
// that sizes an allocation or an offset from file data goes through size_mul/size_add, which detect overflow.
#ifndef LOSSY_UTIL_H
#define LOSSY_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "err.h"

// ---- allocation (abort with file:line on failure) ----
void *xmalloc_at(size_t n, const char *file, int line);
void *xcalloc_at(size_t count, size_t size, const char *file, int line);
void *xrealloc_at(void *p, size_t n, const char *file, int line);
char *xstrdup_at(const char *s, const char *file, int line);
char *xstrndup_at(const char *s, size_t n, const char *file, int line);
#define xmalloc(n) xmalloc_at((n), __FILE__, __LINE__)
#define xcalloc(c, s) xcalloc_at((c), (s), __FILE__, __LINE__)
#define xrealloc(p, n) xrealloc_at((p), (n), __FILE__, __LINE__)
#define xstrdup(s) xstrdup_at((s), __FILE__, __LINE__)
#define xstrndup(s, n) xstrndup_at((s), (n), __FILE__, __LINE__)
// Array allocation with an overflow-checked count*size.
#define xmalloc_array(count, size) xcalloc_at((count), (size), __FILE__, __LINE__)
// A large buffer streamed or strided through on every token (weight copies, KV caches): 2 MiB aligned and advised
// for transparent huge pages (fewer TLB misses), zero-filled, released with free().
void *xmalloc_huge_at(size_t count, size_t size, const char *file, int line);
#define xmalloc_huge(count, size) xmalloc_huge_at((count), (size), __FILE__, __LINE__)

// ---- overflow-checked size arithmetic: return false on overflow ----
static inline bool size_mul(size_t a, size_t b, size_t *out) { return !__builtin_mul_overflow(a, b, out); }
static inline bool size_add(size_t a, size_t b, size_t *out) { return !__builtin_add_overflow(a, b, out); }
static inline bool i64_mul(int64_t a, int64_t b, int64_t *out) { return !__builtin_mul_overflow(a, b, out); }
// Round n up to a multiple of align (a power of two or not); false on overflow.
bool size_align_up(size_t n, size_t align, size_t *out);

// ---- growable byte buffer (for building strings and files in memory) ----
typedef struct Buf {
    char *data; // owned, always NUL-terminated when len > 0 or cap > 0
    size_t len;
    size_t cap;
} Buf;
void buf_init(Buf *b);
void buf_free(Buf *b);
void buf_reserve(Buf *b, size_t extra);
void buf_append(Buf *b, const void *p, size_t n);
void buf_append_str(Buf *b, const char *s);
void buf_printf(Buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// ---- files ----
// Read a whole file (or "-" for stdin) into a NUL-terminated heap buffer.
int file_read_all(const char *path, char **out, size_t *out_len, Err *e);

// A read-only memory map of a whole file. Empty files map to data=NULL, size=0.
typedef struct FileMap {
    const uint8_t *data;
    size_t size;
    char *path; // owned copy, for messages
} FileMap;
int filemap_open(FileMap *m, const char *path, Err *e);
void filemap_close(FileMap *m);
// Give back the whole pages of [p, p + n) that lie inside the map (nothing when the range is elsewhere): they are
// clean file pages, so a later read faults them in again from the file. For tensors copied into another layout at
// load, so their bytes do not stay resident twice.
void filemap_drop(const FileMap *m, const void *p, size_t n);

// Write a file atomically: data goes to "<path>.tmp.<pid>", is fsync'ed, then renamed over path, so a reader (or a
// crash) never sees a half-written file. The writer callback may be called once; it returns 0 or -1 with e filled.
typedef int (*FileWriteFn)(FILE *f, void *ctx, Err *e);
int file_write_atomic(const char *path, FileWriteFn fn, void *ctx, Err *e);
int file_write_atomic_bytes(const char *path, const void *data, size_t n, Err *e);

// fwrite that reports failure as an Err.
int file_write_checked(FILE *f, const void *p, size_t n, const char *what, Err *e);

bool path_is_dir(const char *path);
bool path_exists(const char *path);
bool str_ends_with(const char *s, const char *suffix);
bool str_starts_with(const char *s, const char *prefix);

// Monotonic time in seconds.
double time_now(void);

// ---- float16 / bfloat16 conversions (exact, scalar; kernels may vectorise their own) ----
float fp16_to_fp32(uint16_t h);
uint16_t fp32_to_fp16(float f); // round to nearest even
float bf16_to_fp32(uint16_t h);
uint16_t fp32_to_bf16(float f); // round to nearest even, NaN stays NaN

// Little-endian loads from possibly unaligned memory (file formats are little-endian).
static inline uint16_t load_u16le(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t load_u32le(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t load_u64le(const uint8_t *p) { return (uint64_t)load_u32le(p) | ((uint64_t)load_u32le(p + 4) << 32); }

#endif
