// test_device_cli.c — the shared `--device cpu|cuda` flag of run, chat, serve, bench and logits.
//
// Runs in the CPU suite: where no GPU is usable (or the build has no CUDA), `--device cuda` must fail with exit 1
// and a message saying why; where a GPU is usable, the same command must succeed and print what the CPU prints
// (greedy ids of stories260K).
#include <stdio.h>
#include <string.h>

#include "test.h"
#ifdef LOSSY_CUDA
#include "cuda/cuda.h"
#endif

static int gpu_count(void) {
#ifdef LOSSY_CUDA
    char why[256];
    return cuda_device_count(why, sizeof why);
#else
    return 0;
#endif
}

TEST(device_flag_cuda_without_gpu_fails_clearly) {
    const char *p = fixture_path("models/stories260K.gguf");
    REQUIRE(p);
    char model[4200];
    snprintf(model, sizeof model, "%s", p);
    Buf out = {0}, err = {0}, cout = {0}, cerr = {0};
    int rc = run_lossy(NULL, &out, &err, "run", model, "--ids", "1", "--print-ids", "-n", "12", "--temp", "0", "--device", "cuda", NULL);
    if (gpu_count() > 0) {
        CHECKF(rc == 0, "exit %d: %s", rc, err.data ? err.data : "");
        int rc2 = run_lossy(NULL, &cout, &cerr, "run", model, "--ids", "1", "--print-ids", "-n", "12", "--temp", "0", NULL);
        CHECK_EQ_INT(rc2, 0);
        CHECK_EQ_STR(out.data, cout.data);
    } else {
        CHECK_EQ_INT(rc, 1);
        REQUIRE(err.data);
        CHECKF(strstr(err.data, "lossy: error: ") && strstr(err.data, "--device cuda"), "stderr: %s", err.data);
#ifdef LOSSY_CUDA
        CHECKF(strstr(err.data, "no usable CUDA device ("), "stderr: %s", err.data);
#else
        CHECKF(strstr(err.data, "built without CUDA"), "stderr: %s", err.data);
#endif
    }
    buf_free(&out), buf_free(&err), buf_free(&cout), buf_free(&cerr);
}

TEST(device_flag_rejects_unknown_device) {
    const char *p = fixture_path("models/stories260K.gguf");
    REQUIRE(p);
    char model[4200];
    snprintf(model, sizeof model, "%s", p);
    Buf err = {0};
    int rc = run_lossy(NULL, NULL, &err, "logits", model, "--ids", "1,2", "--out", "/dev/null", "--device", "tpu", NULL);
    CHECK_EQ_INT(rc, 2);
    CHECKF(err.data && strstr(err.data, "--device") && strstr(err.data, "cpu or cuda"), "stderr: %s", err.data ? err.data : "");
    buf_free(&err);
}

TEST(device_flag_in_every_model_command) {
    const char *cmds[] = {"run", "chat", "serve", "bench", "logits"};
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++) {
        Buf out = {0};
        int rc = run_lossy(NULL, &out, NULL, cmds[i], "--help", NULL);
        CHECK_EQ_INT(rc, 0);
        CHECKF(out.data && strstr(out.data, "--device"), "lossy %s --help lacks --device", cmds[i]);
        buf_free(&out);
    }
}
