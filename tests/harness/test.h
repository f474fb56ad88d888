// test.h — lossy's test harness: self-registering tests, checks, fixtures and CLI runs.
//
// A test file includes this header and writes `TEST(name) { CHECK(...); }`. Tests register themselves at start-up,
// so adding a file under tests/unit or tests/e2e is all it takes. Each test runs in a forked child, so a crash in one
// is reported as that test failing, not as the end of the run. The runner's last line is `N passed, N failed`.
#ifndef LOSSY_TEST_H
#define LOSSY_TEST_H

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "base/util.h"

typedef void (*TestFn)(void);
void test_register(const char *name, const char *file, TestFn fn);

#define TEST(name)                                                                                                    \
    static void test_fn_##name(void);                                                                                 \
    __attribute__((constructor)) static void test_reg_##name(void) { test_register(#name, __FILE__, test_fn_##name); } \
    static void test_fn_##name(void)

// Record a failure (with file:line) and keep going.
void test_fail_at(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int test_failures(void); // failures recorded so far in the current test
// End the current test as SKIPPED (e.g. it needs a GPU and there is none): printed with the reason and counted
// apart, never as passed. Failures recorded before it still fail the test.
void test_skip_at(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4), noreturn));
#define TEST_SKIP(...) test_skip_at(__FILE__, __LINE__, __VA_ARGS__)

#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond)) test_fail_at(__FILE__, __LINE__, "CHECK(%s)", #cond); \
    } while (0)
#define CHECKF(cond, ...)                                          \
    do {                                                           \
        if (!(cond)) test_fail_at(__FILE__, __LINE__, __VA_ARGS__); \
    } while (0)
// Like CHECK, but stop the test on failure.
#define REQUIRE(cond)                                                          \
    do {                                                                       \
        if (!(cond)) {                                                         \
            test_fail_at(__FILE__, __LINE__, "REQUIRE(%s)", #cond);            \
            return;                                                            \
        }                                                                      \
    } while (0)
#define REQUIREF(cond, ...)                                         \
    do {                                                            \
        if (!(cond)) {                                              \
            test_fail_at(__FILE__, __LINE__, __VA_ARGS__);          \
            return;                                                 \
        }                                                           \
    } while (0)
#define CHECK_EQ_INT(a, b)                                                                                        \
    do {                                                                                                          \
        long long va_ = (long long)(a), vb_ = (long long)(b);                                                     \
        if (va_ != vb_) test_fail_at(__FILE__, __LINE__, "%s == %s: %lld != %lld", #a, #b, va_, vb_);             \
    } while (0)
#define CHECK_EQ_STR(a, b)                                                                                           \
    do {                                                                                                             \
        const char *sa_ = (a), *sb_ = (b);                                                                           \
        if (!sa_ || !sb_ || strcmp(sa_, sb_) != 0)                                                                   \
            test_fail_at(__FILE__, __LINE__, "%s == %s: \"%s\" != \"%s\"", #a, #b, sa_ ? sa_ : "(null)", sb_ ? sb_ : "(null)"); \
    } while (0)
#define CHECK_NEAR(a, b, tol)                                                                                       \
    do {                                                                                                            \
        double va_ = (double)(a), vb_ = (double)(b);                                                                \
        if (!(fabs(va_ - vb_) <= (tol))) test_fail_at(__FILE__, __LINE__, "%s ~ %s: %.9g vs %.9g (tol %g)", #a, #b, va_, vb_, (double)(tol)); \
    } while (0)

// Path of a fixture under ../shared/fixtures (or $LOSSY_FIXTURES). A missing fixture records a failure naming the
// full path and returns NULL: callers `REQUIRE(path)`. The string is valid until the next call to fixture_path.
const char *fixture_path(const char *rel);
// A fresh scratch directory for this test (removed after the run unless LOSSY_KEEP_TMP is set).
const char *test_tmpdir(void);
// Relative L2 error ||got - want|| / ||want|| in double (the plain ||got - want|| when want is all zeros); _ref:
// against a double-precision reference.
double test_rel_l2(const float *got, const float *want, size_t n);
double test_rel_l2_ref(const float *got, const double *want, size_t n);
// Deterministic per-test random numbers (xorshift), for random inputs that reproduce.
uint64_t test_rand_u64(void);
float test_rand_uniform(void); // [0, 1)

// Run the lossy binary with arguments (NULL-terminated), feeding stdin_data (may be NULL) and capturing stdout and
// stderr. Returns the exit code (or 128+signal when killed by a signal).
int run_lossy(const char *stdin_data, Buf *out, Buf *err, ...) __attribute__((sentinel));
// Same with an argv array.
int run_lossy_argv(const char *stdin_data, Buf *out, Buf *err, const char *const *argv);
const char *lossy_binary(void);

#endif
