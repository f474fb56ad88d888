// util.c — checked allocation, files, atomic writes, half-precision conversion (see util.h).
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void die_oom(size_t n, const char *file, int line) {
    fprintf(stderr, "lossy: fatal: out of memory allocating %zu bytes (%s:%d)\n", n, file, line);
    abort();
}

void *xmalloc_at(size_t n, const char *file, int line) {
    void *p = malloc(n ? n : 1);
    if (!p) die_oom(n, file, line);
    return p;
}

void *xcalloc_at(size_t count, size_t size, const char *file, int line) {
    size_t n;
    if (!size_mul(count, size, &n)) {
        fprintf(stderr, "lossy: fatal: allocation size overflow %zu x %zu (%s:%d)\n", count, size, file, line);
        abort();
    }
    void *p = calloc(n ? n : 1, 1);
    if (!p) die_oom(n, file, line);
    return p;
}

void *xmalloc_huge_at(size_t count, size_t size, const char *file, int line) {
    const size_t huge = (size_t)2 << 20;
    size_t n, rounded;
    if (!size_mul(count, size, &n) || !size_add(n, huge - 1, &rounded)) {
        fprintf(stderr, "lossy: fatal: allocation size overflow %zu x %zu (%s:%d)\n", count, size, file, line);
        abort();
    }
    if (n < huge) return xcalloc_at(count, size, file, line); // small: a huge page would be mostly empty
    rounded = rounded / huge * huge;
    void *p = NULL;
    if (posix_memalign(&p, huge, rounded) != 0) die_oom(n, file, line);
#ifdef MADV_HUGEPAGE
    madvise(p, rounded, MADV_HUGEPAGE);
#endif
    memset(p, 0, n); // fresh pages are zero already; this also faults them in huge where the kernel can
    return p;
}

void *xrealloc_at(void *p, size_t n, const char *file, int line) {
    void *q = realloc(p, n ? n : 1);
    if (!q) die_oom(n, file, line);
    return q;
}

char *xstrdup_at(const char *s, const char *file, int line) { return xstrndup_at(s, strlen(s), file, line); }

char *xstrndup_at(const char *s, size_t n, const char *file, int line) {
    size_t total;
    if (!size_add(n, 1, &total)) die_oom(n, file, line);
    char *d = xmalloc_at(total, file, line);
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

bool size_align_up(size_t n, size_t align, size_t *out) {
    if (align == 0) return false;
    size_t rem = n % align;
    if (rem == 0) {
        *out = n;
        return true;
    }
    return size_add(n, align - rem, out);
}

// ---- Buf ----
void buf_init(Buf *b) { memset(b, 0, sizeof *b); }
void buf_free(Buf *b) {
    free(b->data);
    memset(b, 0, sizeof *b);
}
void buf_reserve(Buf *b, size_t extra) {
    size_t need;
    if (!size_add(b->len, extra, &need) || !size_add(need, 1, &need)) die_oom(SIZE_MAX, __FILE__, __LINE__);
    if (need <= b->cap) return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    b->data = xrealloc(b->data, cap);
    b->cap = cap;
}
void buf_append(Buf *b, const void *p, size_t n) {
    buf_reserve(b, n);
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = 0;
}
void buf_append_str(Buf *b, const char *s) { buf_append(b, s, strlen(s)); }
void buf_printf(Buf *b, const char *fmt, ...) {
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        va_end(ap2);
        return;
    }
    buf_reserve(b, (size_t)n);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    b->len += (size_t)n;
}

// ---- files ----
int file_read_all(const char *path, char **out, size_t *out_len, Err *e) {
    *out = NULL;
    *out_len = 0;
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) return ERR(e, "cannot open '%s': %s", path, strerror(errno));
    Buf b;
    buf_init(&b);
    char chunk[1 << 16];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) buf_append(&b, chunk, n);
    int bad = ferror(f);
    if (f != stdin) fclose(f);
    if (bad) {
        buf_free(&b);
        return ERR(e, "read error on '%s'", path);
    }
    buf_reserve(&b, 0);
    b.data[b.len] = 0;
    *out = b.data;
    *out_len = b.len;
    return 0;
}

int filemap_open(FileMap *m, const char *path, Err *e) {
    memset(m, 0, sizeof *m);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return ERR(e, "cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int err = errno;
        close(fd);
        return ERR(e, "cannot stat '%s': %s", path, strerror(err));
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return ERR(e, "'%s' is a directory, expected a file", path);
    }
    if (st.st_size < 0) {
        close(fd);
        return ERR(e, "'%s' has a negative size", path);
    }
    m->size = (size_t)st.st_size;
    if (m->size > 0) {
        void *p = mmap(NULL, m->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int err = errno;
            close(fd);
            return ERR(e, "cannot mmap '%s': %s", path, strerror(err));
        }
#ifdef MADV_HUGEPAGE
        // Before the first touch: pages this mapping faults in from disk are then read into 2 MiB page-cache folios,
        // which the kernel maps with one TLB entry each (where the filesystem supports large folios, as ext4 does).
        // Nothing is copied and no cached page is dropped; pages already cached keep their size.
        (void)madvise(p, m->size, MADV_HUGEPAGE);
#endif
        m->data = p;
    }
    close(fd); // the mapping stays valid after close
    m->path = xstrdup(path);
    return 0;
}

void filemap_drop(const FileMap *m, const void *p, size_t n) {
    const uintptr_t b = (uintptr_t)m->data, q = (uintptr_t)p, page = (uintptr_t)sysconf(_SC_PAGESIZE);
    if (!m->data || q < b || q - b > m->size || n > m->size - (q - b)) return;
    uintptr_t lo = (q + page - 1) / page * page, hi = (q + n) / page * page;
    if (hi > lo) (void)madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

void filemap_close(FileMap *m) {
    if (m->data) munmap((void *)m->data, m->size);
    free(m->path);
    memset(m, 0, sizeof *m);
}

int file_write_checked(FILE *f, const void *p, size_t n, const char *what, Err *e) {
    if (n && fwrite(p, 1, n, f) != n) return ERR(e, "write failed (%s): %s", what, strerror(errno));
    return 0;
}

int file_write_atomic(const char *path, FileWriteFn fn, void *ctx, Err *e) {
    Buf tmp;
    buf_init(&tmp);
    buf_printf(&tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp.data, "wb");
    if (!f) {
        ERR(e, "cannot create '%s': %s", tmp.data, strerror(errno));
        buf_free(&tmp);
        return -1;
    }
    int rc = fn(f, ctx, e);
    if (rc == 0 && fflush(f) != 0) rc = ERR(e, "cannot write '%s': %s", tmp.data, strerror(errno));
    if (rc == 0 && fsync(fileno(f)) != 0) rc = ERR(e, "cannot fsync '%s': %s", tmp.data, strerror(errno));
    if (fclose(f) != 0 && rc == 0) rc = ERR(e, "cannot close '%s': %s", tmp.data, strerror(errno));
    if (rc == 0 && rename(tmp.data, path) != 0) rc = ERR(e, "cannot rename '%s' to '%s': %s", tmp.data, path, strerror(errno));
    if (rc != 0) unlink(tmp.data);
    buf_free(&tmp);
    return rc;
}

typedef struct {
    const void *data;
    size_t n;
} BytesCtx;
static int write_bytes_cb(FILE *f, void *ctx, Err *e) {
    BytesCtx *c = ctx;
    return file_write_checked(f, c->data, c->n, "file", e);
}
int file_write_atomic_bytes(const char *path, const void *data, size_t n, Err *e) {
    BytesCtx c = {data, n};
    return file_write_atomic(path, write_bytes_cb, &c, e);
}

bool path_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}
bool path_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}
bool str_ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && memcmp(s + a - b, suffix, b) == 0;
}
bool str_starts_with(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

double time_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// ---- half precision ----
static inline float f32_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

float fp16_to_fp32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    if (exp == 0) {
        if (mant == 0) return f32_from_bits(sign);
        // subnormal: value = mant * 2^-24
        float v = (float)mant * 5.9604644775390625e-8f;
        return sign ? -v : v;
    }
    if (exp == 31) return f32_from_bits(sign | 0x7f800000u | (mant << 13));
    return f32_from_bits(sign | ((exp + 112) << 23) | (mant << 13));
}

uint16_t fp32_to_fp16(float f) {
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t absx = x & 0x7fffffffu;
    if (absx >= 0x7f800000u) return (uint16_t)(sign | 0x7c00 | (absx > 0x7f800000u ? 0x200 : 0)); // inf / nan
    if (absx >= 0x477ff000u) return (uint16_t)(sign | 0x7c00); // rounds to >= 65520 -> inf
    if (absx < 0x38800000u) { // below the smallest normal half: subnormal or zero
        if (absx < 0x33000000u) return sign; // < 2^-25 rounds to zero
        uint32_t e = absx >> 23;
        uint32_t m = (absx & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e; // 14..24 => value = m * 2^(e-150), half subnormal unit 2^-24
        uint32_t h = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1))) h++;
        return (uint16_t)(sign | h);
    }
    uint32_t h = ((absx >> 13) - (112u << 10));
    uint32_t rem = absx & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
    return (uint16_t)(sign | h);
}

float bf16_to_fp32(uint16_t h) { return f32_from_bits((uint32_t)h << 16); }

uint16_t fp32_to_bf16(float f) {
    uint32_t x = f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40); // quiet NaN
    x += 0x7fff + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}
