// test_main.c — the test runner behind `make test`.
//
// Usage: lossy_tests [--list] [FILTER...]   (a test runs when its name or file contains any FILTER)
// Environment: LOSSY_BIN (the lossy binary for end-to-end tests), LOSSY_FIXTURES (default ../shared/fixtures),
// LOSSY_TEST_VERBOSE=1 (print passing tests too). Every test runs in its own forked child.

#include "test.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct {
    const char *name;
    const char *file;
    TestFn fn;
} TestCase;

static TestCase *g_tests;
static size_t g_ntests, g_cap;
static int g_failures;
static char g_tmpdir[4096];
static char g_fixture[4096];
static uint64_t g_rng = 0x9e3779b97f4a7c15ull;

void test_register(const char *name, const char *file, TestFn fn) {
    if (g_ntests == g_cap) {
        g_cap = g_cap ? g_cap * 2 : 64;
        g_tests = realloc(g_tests, g_cap * sizeof *g_tests);
        if (!g_tests) abort();
    }
    g_tests[g_ntests++] = (TestCase){name, file, fn};
}

void test_fail_at(const char *file, int line, const char *fmt, ...) {
    g_failures++;
    if (g_failures > 20) {
        if (g_failures == 21) fprintf(stdout, "    ... (further failures in this test not shown)\n");
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    fprintf(stdout, "    %s:%d: ", file, line);
    vfprintf(stdout, fmt, ap);
    fprintf(stdout, "\n");
    fflush(stdout);
    va_end(ap);
}

int test_failures(void) { return g_failures; }

// The child's exit status for "skipped" (the automake convention).
#define TEST_EXIT_SKIP 77

void test_skip_at(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stdout, "    %s:%d: skipped: ", file, line);
    vfprintf(stdout, fmt, ap);
    fprintf(stdout, "\n");
    va_end(ap);
    fflush(NULL);
    _exit(g_failures ? 1 : TEST_EXIT_SKIP);
}

const char *fixture_path(const char *rel) {
    const char *root = getenv("LOSSY_FIXTURES");
    if (!root || !*root) root = "../shared/fixtures";
    snprintf(g_fixture, sizeof g_fixture, "%s/%s", root, rel);
    if (access(g_fixture, R_OK) != 0) {
        test_fail_at(__FILE__, __LINE__, "missing fixture: %s (set LOSSY_FIXTURES to the fixtures folder)", g_fixture);
        return NULL;
    }
    return g_fixture;
}

const char *test_tmpdir(void) { return g_tmpdir; }

// A test's random stream starts from its name (FNV-1a), so its inputs are the same whether it runs alone or in the
// suite, and do not move when tests are added elsewhere; LOSSY_TEST_SEED=N draws other inputs for every test (to
// probe tolerances) and is printed with each failure.
static uint64_t g_seed_extra;
static uint64_t test_seed(const char *name) {
    uint64_t h = 0xcbf29ce484222325ull ^ g_seed_extra * 0x2545F4914F6CDD1Dull;
    for (const unsigned char *c = (const unsigned char *)name; *c; c++) h = (h ^ *c) * 0x100000001b3ull;
    return h ? h : 0x9e3779b97f4a7c15ull; // xorshift never leaves 0
}

uint64_t test_rand_u64(void) {
    uint64_t x = g_rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return g_rng = x;
}
float test_rand_uniform(void) { return (float)(test_rand_u64() >> 40) / (float)(1ull << 24); }

double test_rel_l2(const float *got, const float *want, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)got[i] - want[i];
        num += d * d;
        den += (double)want[i] * want[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
}

double test_rel_l2_ref(const float *got, const double *want, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)got[i] - want[i];
        num += d * d;
        den += want[i] * want[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
}

const char *lossy_binary(void) {
    const char *b = getenv("LOSSY_BIN");
    return b && *b ? b : "build/release/lossy";
}

// Drain two pipes while feeding a third, so large outputs cannot deadlock.
int run_lossy_argv(const char *stdin_data, Buf *out, Buf *err, const char *const *argv) {
    int pin[2], pout[2], perr[2];
    if (pipe(pin) || pipe(pout) || pipe(perr)) return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        dup2(pin[0], 0);
        dup2(pout[1], 1);
        dup2(perr[1], 2);
        close(pin[0]); close(pin[1]); close(pout[0]); close(pout[1]); close(perr[0]); close(perr[1]);
        size_t n = 0;
        while (argv[n]) n++;
        const char **args = calloc(n + 2, sizeof *args);
        args[0] = lossy_binary();
        for (size_t i = 0; i < n; i++) args[i + 1] = argv[i];
        execv(args[0], (char *const *)args);
        fprintf(stderr, "cannot exec %s: %s\n", args[0], strerror(errno));
        _exit(127);
    }
    close(pin[0]);
    close(pout[1]);
    close(perr[1]);
    signal(SIGPIPE, SIG_IGN);
    const char *in = stdin_data ? stdin_data : "";
    size_t in_len = strlen(in), in_off = 0;
    if (in_len == 0) { close(pin[1]); pin[1] = -1; }
    else fcntl(pin[1], F_SETFL, O_NONBLOCK);
    int open_out = 1, open_err = 1;
    char chunk[65536];
    while (open_out || open_err || pin[1] >= 0) {
        fd_set rs, ws;
        FD_ZERO(&rs);
        FD_ZERO(&ws);
        int maxfd = 0;
        if (open_out) { FD_SET(pout[0], &rs); if (pout[0] > maxfd) maxfd = pout[0]; }
        if (open_err) { FD_SET(perr[0], &rs); if (perr[0] > maxfd) maxfd = perr[0]; }
        if (pin[1] >= 0) { FD_SET(pin[1], &ws); if (pin[1] > maxfd) maxfd = pin[1]; }
        if (select(maxfd + 1, &rs, &ws, NULL, NULL) < 0) { if (errno == EINTR) continue; break; }
        if (open_out && FD_ISSET(pout[0], &rs)) {
            ssize_t r = read(pout[0], chunk, sizeof chunk);
            if (r <= 0) open_out = 0; else if (out) buf_append(out, chunk, (size_t)r);
        }
        if (open_err && FD_ISSET(perr[0], &rs)) {
            ssize_t r = read(perr[0], chunk, sizeof chunk);
            if (r <= 0) open_err = 0; else if (err) buf_append(err, chunk, (size_t)r);
        }
        if (pin[1] >= 0 && FD_ISSET(pin[1], &ws)) {
            ssize_t w = write(pin[1], in + in_off, in_len - in_off);
            if (w > 0) in_off += (size_t)w;
            if (w < 0 && errno != EAGAIN) in_off = in_len;
            if (in_off >= in_len) { close(pin[1]); pin[1] = -1; }
        }
    }
    close(pout[0]);
    close(perr[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    // never NULL, always NUL-terminated (also when the command printed nothing), so callers can strstr the text
    if (out) buf_reserve(out, 0), out->data[out->len] = 0;
    if (err) buf_reserve(err, 0), err->data[err->len] = 0;
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return WEXITSTATUS(status);
}

int run_lossy(const char *stdin_data, Buf *out, Buf *err, ...) {
    const char *argv[64];
    size_t n = 0;
    va_list ap;
    va_start(ap, err);
    const char *a;
    while ((a = va_arg(ap, const char *)) && n < 63) argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    return run_lossy_argv(stdin_data, out, err, argv);
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb; (void)flag; (void)ftw;
    return remove(p);
}

static bool matches(const TestCase *t, int argc, char **argv) {
    int nfilters = 0;
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] == '-') continue;
        nfilters++;
        if (strstr(t->name, argv[i]) || strstr(t->file, argv[i])) return true;
    }
    return nfilters == 0;
}

int main(int argc, char **argv) {
    bool list = false;
    for (int i = 1; i < argc; i++) if (strcmp(argv[i], "--list") == 0) list = true;
    bool verbose = getenv("LOSSY_TEST_VERBOSE") && atoi(getenv("LOSSY_TEST_VERBOSE"));
    if (getenv("LOSSY_TEST_SEED")) g_seed_extra = strtoull(getenv("LOSSY_TEST_SEED"), NULL, 0);
    char seed_note[64] = "";
    if (g_seed_extra) snprintf(seed_note, sizeof seed_note, " (LOSSY_TEST_SEED=%llu)", (unsigned long long)g_seed_extra);
    size_t passed = 0, failed = 0, skipped = 0;
    double t0 = time_now();
    for (size_t i = 0; i < g_ntests; i++) {
        const TestCase *t = &g_tests[i];
        if (!matches(t, argc, argv)) continue;
        if (list) { printf("%s (%s)\n", t->name, t->file); continue; }
        snprintf(g_tmpdir, sizeof g_tmpdir, "/tmp/lossy-test-%ld-%zu-XXXXXX", (long)getpid(), i);
        if (!mkdtemp(g_tmpdir)) { perror("mkdtemp"); return 2; }
        double ts = time_now();
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            g_failures = 0;
            g_rng = test_seed(t->name);
            t->fn();
            fflush(NULL);
            _exit(g_failures ? 1 : 0);
        }
        int status = 0;
        waitpid(pid, &status, 0);
        double dt = time_now() - ts;
        bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
        if (WIFEXITED(status) && WEXITSTATUS(status) == TEST_EXIT_SKIP) {
            skipped++;
            printf("SKIP %s  [%s]\n", t->name, t->file);
        } else if (ok) {
            passed++;
            if (verbose) printf("ok   %s (%.2fs)\n", t->name, dt);
        } else {
            failed++;
            if (WIFSIGNALED(status))
                printf("FAIL %s  [%s] (killed by signal %d)%s\n", t->name, t->file, WTERMSIG(status), seed_note);
            else
                printf("FAIL %s  [%s] (%.2fs)%s\n", t->name, t->file, dt, seed_note);
        }
        fflush(stdout);
        if (!getenv("LOSSY_KEEP_TMP")) nftw(g_tmpdir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    }
    if (list) return 0;
    if (skipped) printf("%zu skipped\n", skipped);
    printf("(%.1fs)\n%zu passed, %zu failed\n", time_now() - t0, passed, failed);
    return failed ? 1 : 0;
}
