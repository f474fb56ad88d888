// sft_fixture.h — the tiny finetuning setup the SFT end-to-end tests share (test_sft_cli.c, test_eval_sft_cli.c): a
// handful of question/answer facts, a random 2-layer base model whose byte-level BPE vocabulary (with lossy's control
// tokens, no chat template) is trained on their text, and a JSONL file of those facts as conversations.
#ifndef LOSSY_TEST_SFT_FIXTURE_H
#define LOSSY_TEST_SFT_FIXTURE_H

#define SFT_N_FACTS 4
extern const char *const SFT_FACTS[SFT_N_FACTS][2]; // question, answer

// path under this test's scratch directory (out holds 512 bytes); returns out
const char *sft_path(char *out, const char *name);
// the random base model GGUF
int sft_make_base(const char *path);
// every fact as a one-turn conversation and as a two-turn one with a system message
int sft_write_facts(const char *path);

#endif
