// test_base.c — base helpers: overflow-checked sizes, half-precision conversion, atomic files, dtype table.
#include <stdlib.h>
#include <unistd.h>

#include "base/dtype.h"
#include "base/util.h"
#include "test.h"

TEST(size_arithmetic_detects_overflow) {
    size_t out;
    CHECK(size_mul(1u << 20, 1u << 20, &out) && out == (size_t)1 << 40);
    CHECK(!size_mul(SIZE_MAX / 2 + 1, 2, &out));
    CHECK(!size_add(SIZE_MAX, 1, &out));
    CHECK(size_align_up(33, 32, &out) && out == 64);
    CHECK(size_align_up(64, 32, &out) && out == 64);
    CHECK(!size_align_up(SIZE_MAX - 3, 32, &out));
    size_t nb;
    Err e;
    CHECK(dtype_nbytes(DT_Q4_K, 512, &nb, &e) == 0 && nb == 288);
    CHECK(dtype_nbytes(DT_Q4_K, 100, &nb, &e) != 0);
    CHECK(dtype_nbytes(DT_F32, UINT64_MAX / 2, &nb, &e) != 0);
    CHECK(dtype_nbytes(4, 32, &nb, &e) != 0);
    CHECK_EQ_INT(dtype_from_name("Q8_0"), DT_Q8_0);
    CHECK_EQ_INT(dtype_from_name("bf16"), DT_BF16);
    CHECK_EQ_INT(dtype_from_name("nope"), -1);
}

// Reference: fp16 bits -> value computed in double from the definition.
static double fp16_ref(uint16_t h) {
    int s = h >> 15, ex = (h >> 10) & 31, m = h & 1023;
    double v;
    if (ex == 0) v = ldexp(m, -24);
    else if (ex == 31) v = m ? NAN : INFINITY;
    else v = ldexp(1024 + m, ex - 25);
    return s ? -v : v;
}

TEST(fp16_conversion_exhaustive) {
    for (uint32_t h = 0; h < 65536; h++) {
        double r = fp16_ref((uint16_t)h);
        float f = fp16_to_fp32((uint16_t)h);
        if (isnan(r)) {
            CHECKF(isnan(f), "h=%04x", h);
            continue;
        }
        CHECKF((double)f == r, "fp16_to_fp32(%04x) = %g, want %g", h, (double)f, r);
        CHECKF(fp32_to_fp16(f) == h, "fp32_to_fp16 round trip of %04x gave %04x", h, fp32_to_fp16(f));
    }
    // rounding: random floats go to the nearest half (ties to even)
    for (int i = 0; i < 200000; i++) {
        float x = (test_rand_uniform() - 0.5f) * ldexpf(1.0f, (int)(test_rand_u64() % 40) - 26);
        uint16_t h = fp32_to_fp16(x);
        double err = fabs(fp16_ref(h) - x);
        // neighbours must not be closer
        uint16_t up = (uint16_t)(h + 1), dn = (uint16_t)(h - 1);
        if ((h & 0x7fff) != 0x7c00 && (up & 0x7c00) != 0x7c00) CHECKF(fabs(fp16_ref(up) - x) >= err, "x=%g h=%04x", (double)x, h);
        if ((h & 0x7fff) != 0) CHECKF(fabs(fp16_ref(dn) - x) >= err, "x=%g h=%04x", (double)x, h);
    }
    CHECK(fp32_to_fp16(65520.0f) == 0x7c00);
    CHECK(fp32_to_fp16(65519.0f) == 0x7bff);
    CHECK(isnan(fp16_to_fp32(fp32_to_fp16(NAN))));
}

TEST(bf16_conversion) {
    CHECK(bf16_to_fp32(fp32_to_bf16(1.0f)) == 1.0f);
    CHECK(fp32_to_bf16(1.00390625f) == 0x3f80); // halfway between 0x3f80 and 0x3f81: ties to even
    CHECK(fp32_to_bf16(1.01171875f) == 0x3f82); // halfway between 0x3f81 and 0x3f82: ties to even
    CHECK(isnan(bf16_to_fp32(fp32_to_bf16(NAN))));
    for (int i = 0; i < 100000; i++) {
        float x = (test_rand_uniform() - 0.5f) * 1000.0f;
        float y = bf16_to_fp32(fp32_to_bf16(x));
        CHECKF(fabsf(x - y) <= fabsf(x) * (1.0f / 256.0f), "x=%g y=%g", (double)x, (double)y);
    }
}

static int fail_writer(FILE *f, void *ctx, Err *e) {
    fputs("partial", f);
    return ERR(e, "simulated failure");
}

TEST(atomic_write_keeps_old_file_on_failure) {
    char path[4200];
    snprintf(path, sizeof path, "%s/out.bin", test_tmpdir());
    Err e;
    REQUIRE(file_write_atomic_bytes(path, "first", 5, &e) == 0);
    CHECK(file_write_atomic(path, fail_writer, NULL, &e) != 0);
    char *data;
    size_t len;
    REQUIRE(file_read_all(path, &data, &len, &e) == 0);
    CHECK(len == 5 && memcmp(data, "first", 5) == 0);
    free(data);
    char tmp[4300];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    CHECK(!path_exists(tmp));
    CHECK(file_read_all("/nonexistent/file", &data, &len, &e) != 0 && strstr(e.msg, "/nonexistent/file"));
    FileMap m;
    CHECK(filemap_open(&m, test_tmpdir(), &e) != 0 && strstr(e.msg, "directory"));
}

TEST(buf_grows) {
    Buf b;
    buf_init(&b);
    for (int i = 0; i < 10000; i++) buf_printf(&b, "%d,", i);
    CHECK(b.len > 40000);
    CHECK(strncmp(b.data, "0,1,2,", 6) == 0);
    CHECK(b.data[b.len] == 0);
    buf_free(&b);
}

// Resident kB of the mapping that starts at addr (from /proc/self/smaps), or -1.
static long mapping_rss_kb(const void *addr) {
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f) return -1;
    char line[512];
    bool in = false;
    long kb = -1;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2) in = lo == (unsigned long)(uintptr_t)addr;
        else if (in && sscanf(line, "Rss: %ld kB", &kb) == 1) break;
    }
    fclose(f);
    return kb;
}

// filemap_drop gives back the whole pages of a range inside the map (they read the same afterwards: faulted in again
// from the file) and ignores ranges outside it.
TEST(filemap_drop_gives_pages_back) {
    const size_t n = (size_t)4 << 20;
    uint8_t *data = xmalloc(n);
    for (size_t i = 0; i < n; i++) data[i] = (uint8_t)(i * 131 + (i >> 12));
    char path[4200];
    snprintf(path, sizeof path, "%s/map.bin", test_tmpdir());
    Err e;
    REQUIRE(file_write_atomic_bytes(path, data, n, &e) == 0);
    FileMap m;
    REQUIRE(filemap_open(&m, path, &e) == 0);
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < n; i += 4096) sink ^= m.data[i]; // touch every page
    long before = mapping_rss_kb(m.data);
    filemap_drop(&m, m.data + 100, n - 200); // all pages but the first and the last
    long after = mapping_rss_kb(m.data);
    CHECKF(before >= 4000 && after >= 0 && after <= 16, "rss %ld kB before, %ld kB after", before, after);
    CHECK(memcmp(m.data, data, n) == 0);
    uint8_t *heap = xmalloc(8192);
    memset(heap, 7, 8192);
    filemap_drop(&m, heap, 8192);                 // not in the map: untouched
    filemap_drop(&m, m.data + n - 10, 4096);      // runs past the end: ignored
    CHECK(heap[0] == 7 && heap[8191] == 7 && m.data[n - 1] == data[n - 1]);
    free(heap);
    filemap_close(&m);
    free(data);
}
