// write_tokenizer.h — writing a Tokenizer back out: GGUF tokenizer metadata and Hugging Face tokenizer.json.
//
// Used by `lossy tokenizer train` (the vocabularies lossy trains) and by anything that writes a model GGUF (the
// tokenizer.ggml.* keys go into every model file). The files are what llama.cpp and Hugging Face tokenizers load:
//  - GGUF: tokenizer.ggml.model ("gpt2" byte-level BPE / "llama" sentencepiece), .pre, .tokens (byte-level tokens
//    spelled through the GPT-2 byte<->unicode table, as llama.cpp stores them; CONTROL / USER_DEFINED tokens raw),
//    .token_type, .merges ("left right"), .scores (sentencepiece), special ids and add_bos/add_eos.
//  - tokenizer.json (byte-level BPE only): model BPE with vocab + merges, the pre-tokenizer pipeline (Split regexes
//    + ByteLevel), ByteLevel decoder, added_tokens, and a TemplateProcessing post-processor for the BOS/EOS template.
// Both writers are atomic (temp file + rename).
#ifndef LOSSY_WRITE_TOKENIZER_H
#define LOSSY_WRITE_TOKENIZER_H

#include "base/err.h"
#include "base/util.h"
#include "formats/gguf.h"
#include "tokenizer/tokenizer.h"

// Add the tokenizer.ggml.* keys for a finalized t to w. t NULL (a model written without a vocabulary): only
// tokenizer.ggml.model = TOKENIZER_GGUF_NO_VOCAB, the marker llama.cpp needs to load such a file (it refuses a file
// without the key); the caller writes <arch>.vocab_size.
int tokenizer_gguf_set_keys(GGUFWriter *w, const Tokenizer *t, Err *e);

// A vocabulary-only GGUF like llama.cpp's models/ggml-vocab-*.gguf: general.architecture = "llama" (llama.cpp
// loads a vocabulary-only file of any architecture it knows; no hyper-parameters are needed for that),
// general.name = name (may be NULL), the tokenizer keys, no tensors.
int tokenizer_write_gguf(const Tokenizer *t, const char *path, const char *name, Err *e);
// The same file's writer before it is written, so callers can add keys (e.g. lossy.* provenance); NULL on error.
GGUFWriter *tokenizer_gguf_vocab_writer(const Tokenizer *t, const char *name, Err *e);

// Hugging Face tokenizer.json text for a finalized byte-level BPE tokenizer (TOKENIZER_BPE_BYTES whose normalizer
// list is empty and whose pre-tokenizer is made of regex/literal splits, ByteLevel and Digits steps); other
// tokenizers fail with a message saying what cannot be expressed.
int tokenizer_hf_json_dump(const Tokenizer *t, Buf *out, Err *e);
int tokenizer_write_hf_json(const Tokenizer *t, const char *path, Err *e);

#endif
