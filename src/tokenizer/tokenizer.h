// tokenizer.h — lossy's one in-memory tokenizer: a builder API every vocabulary loader uses, and encode/decode.
//
// Every format (GGUF metadata, Hugging Face tokenizer.json, sentencepiece tokenizer.model, llama2.c tokenizer.bin,
// GPT-2 encoder.json + vocab.bpe, tiktoken rank files, and vocabularies lossy trains) is loaded into the same
// Tokenizer through the builder below, and encoded by the same code path. Per-model behaviour is data (options and
// small pipelines), never a copy of the encoder per format.
//
// Encoding a text, in order:
//   1. split out added/special tokens (leftmost-longest match of their exact spellings; see TokenizeMode);
//   2. on each remaining segment: the normalizer steps (Prepend, Replace, NFC, ...);
//   3. the pre-tokenizer steps (regex splits, ByteLevel, Metaspace, Digits), which cut the segment into words;
//   4. each word is BPE-merged: initial symbols are its bytes (TOKENIZER_BPE_BYTES) or its UTF-8 characters with
//      <0xXX> byte fallback (TOKENIZER_BPE_SPM); adjacent pairs merge lowest rank first (leftmost on ties). Ranks come
//      from the merges list when one was added (HF/GGUF merges), otherwise from token scores (sentencepiece,
//      llama2.c, tiktoken: score = -rank): the pair whose concatenation has the highest score merges first.
//   5. with TOKENIZE_ADD_SPECIAL, the template's prefix/suffix ids (BOS/EOS) are added.
//
// Token bytes are stored RAW: byte-level vocabularies (GPT-2 style, whose files spell bytes through the GPT-2
// byte<->unicode table, e.g. "Ġthe") are converted by their loader with tokenizer_bytelevel_to_bytes(); sentencepiece
// pieces keep their "▁" (U+2581) spelling, and byte pieces are spelled "<0xXX>". Decoding is then mostly concatenation.
//
// Build sequence for a loader:
//   Tokenizer *t = tokenizer_new(TOKENIZER_BPE_BYTES);
//   tokenizer_add_token(t, bytes, len, score, TOKEN_NORMAL, &e) ... (ids are assigned 0, 1, 2, ...)
//   tokenizer_add_merge_str(t, left, llen, right, rlen, &e) ...     (rank = order added)
//   tokenizer_add_pretok_preset(t, "gpt2", &e); tokenizer_set_special_id(t, TOKEN_ID_EOS, 50256); ...
//   if (tokenizer_finalize(t, &e)) { tokenizer_free(t); return -1; }
// Builder calls after tokenizer_finalize() fail (return -1 with an Err) or are ignored (void setters).
// A finalized Tokenizer is immutable: encode/decode may run on it from several threads at once.
#ifndef LOSSY_TOKENIZER_H
#define LOSSY_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "base/util.h"
#include "formats/gguf.h"

typedef struct Tokenizer Tokenizer;

typedef enum TokenizerKind {
    // Byte-level BPE: the initial symbols of a word are its bytes, each the single-byte token with those raw bytes.
    // GPT-2, Llama 3, Qwen, tiktoken, and lossy's own trained vocabularies.
    TOKENIZER_BPE_BYTES = 1,
    // Sentencepiece-style BPE: initial symbols are UTF-8 characters looked up in the vocabulary; a character that
    // is not a token becomes its <0xXX> byte tokens (byte fallback) or UNK. Llama 2, Mistral, TinyLlama.
    TOKENIZER_BPE_SPM = 2,
} TokenizerKind;

// Token types: the same numbers as GGUF's tokenizer.ggml.token_type.
typedef enum TokenType {
    TOKEN_NORMAL = 1,
    TOKEN_UNKNOWN = 2,      // <unk>
    TOKEN_CONTROL = 3,      // special tokens: <s>, </s>, <|endoftext|>, <|im_start|> ... (HF added_tokens special=true)
    TOKEN_USER_DEFINED = 4, // added tokens that are ordinary text (HF added_tokens special=false): always matched whole
    TOKEN_UNUSED = 5,
    TOKEN_BYTE = 6,         // sentencepiece byte pieces "<0xXX>"
} TokenType;

// Well-known special token roles (GGUF tokenizer.ggml.<role>_token_id). -1 = none.
typedef enum TokenRole {
    TOKEN_ID_BOS, TOKEN_ID_EOS, TOKEN_ID_UNK, TOKEN_ID_PAD, TOKEN_ID_SEP, TOKEN_ID_MASK, TOKEN_ID_EOT, TOKEN_ID_EOM,
    TOKEN_ROLE_COUNT
} TokenRole;

// Encode modes (bit flags; 0 = default).
enum {
    // default (0): Hugging Face add_special_tokens=False — special tokens written in the text ARE recognised by
    // their spelling, nothing is added.
    TOKENIZE_ADD_SPECIAL = 1, // add the tokenizer's template (BOS/EOS ...), like HF add_special_tokens=True
    TOKENIZE_ORDINARY = 2,    // the text is all ordinary text: CONTROL/UNKNOWN tokens are never matched by spelling
                              // and never produced (USER_DEFINED added tokens are still matched, as HF and llama.cpp
                              // do). Chat/server code MUST use this for anything a user or tool supplied.
};

// Decode flags.
enum {
    TOKENIZER_DECODE_SKIP_SPECIAL = 1, // CONTROL and UNKNOWN tokens produce nothing (HF skip_special_tokens=True)
    TOKENIZER_DECODE_FIRST = 2,        // tokenizer_token_piece only: this is the text's first token (apply the
                                       // decoder's strip of one leading space, as tokenizer_decode does)
};

// Split behaviours of a pre-tokenizer regex (HF Split "behavior").
typedef enum TokSplitBehavior {
    TOKSPLIT_ISOLATED,            // matches and the gaps between them are separate words (GPT-2 style splitting)
    TOKSPLIT_REMOVED,             // matches are dropped
    TOKSPLIT_MERGED_WITH_PREVIOUS,
    TOKSPLIT_MERGED_WITH_NEXT,
    TOKSPLIT_CONTIGUOUS,
} TokSplitBehavior;

// Metaspace prepend scheme (HF Metaspace "prepend_scheme").
typedef enum TokPrependScheme { TOKPREPEND_ALWAYS, TOKPREPEND_FIRST, TOKPREPEND_NEVER } TokPrependScheme;

typedef enum TokUnicodeForm { TOKNORM_NFC, TOKNORM_NFD, TOKNORM_NFKC, TOKNORM_NFKD } TokUnicodeForm;

// Decoder flags (tokenizer_set_decoder): how token bytes become text.
enum {
    TOKDEC_METASPACE = 1,   // "▁" (U+2581) in NORMAL/USER_DEFINED pieces becomes ' ' (sentencepiece vocabularies)
    TOKDEC_STRIP_SPACE = 2, // strip one leading ' ' from the decoded text (HF Strip(start=1) / Metaspace
                            // prepend_scheme, llama.cpp add_space_prefix)
    TOKDEC_BYTE_FALLBACK = 4, // "<0xXX>" pieces decode to the byte XX (on by default for TOKENIZER_BPE_SPM)
};

// A growable list of token ids.
typedef struct TokenIds {
    int32_t *ids;
    size_t n, cap;
} TokenIds;
void token_ids_push(TokenIds *v, int32_t id);
void token_ids_free(TokenIds *v);

// ======================================================================================================
// Builder (used by every loader and by the trainer)
// ======================================================================================================

Tokenizer *tokenizer_new(TokenizerKind kind);
void tokenizer_free(Tokenizer *t);

// Append a token with the next id (returned), or -1 with e filled (e.g. more than TOKENIZER_MAX_VOCAB tokens).
// bytes are raw (see the top of this file); empty tokens are allowed but never produced by encode.
#define TOKENIZER_MAX_VOCAB (1 << 24)
int32_t tokenizer_add_token(Tokenizer *t, const void *bytes, size_t len, float score, TokenType type, Err *e);
// Set the token with an explicit id (HF added_tokens, vocab maps): grows the vocabulary as needed (ids never set
// become TOKEN_UNUSED holes with no bytes); setting an existing id replaces its bytes, score and type.
int tokenizer_set_token(Tokenizer *t, int32_t id, const void *bytes, size_t len, float score, TokenType type, Err *e);
// Change only a token's type (e.g. HF added_tokens naming a vocabulary entry as special).
int tokenizer_set_token_type(Tokenizer *t, int32_t id, TokenType type, Err *e);
// Per-token flags of HF added tokens: lstrip/rstrip eat whitespace next to the token when it is matched.
int tokenizer_set_token_strip(Tokenizer *t, int32_t id, bool lstrip, bool rstrip, Err *e);

// Id of the token whose raw bytes are exactly these (the last id set with those bytes wins), or -1.
int32_t tokenizer_find(const Tokenizer *t, const void *bytes, size_t len);

// Add a merge rule (rank = number of merges added before it). The result is the token spelled left+right; an id
// out of range or a missing result token is an error naming the pieces.
int tokenizer_add_merge(Tokenizer *t, int32_t left, int32_t right, Err *e);
int tokenizer_add_merge_str(Tokenizer *t, const void *left, size_t llen, const void *right, size_t rlen, Err *e);

// Options.
void tokenizer_set_special_id(Tokenizer *t, TokenRole role, int32_t id); // -1 clears; range-checked at finalize
void tokenizer_set_byte_fallback(Tokenizer *t, bool on); // SPM: unknown characters -> <0xXX> tokens (else UNK)
void tokenizer_set_fuse_unk(Tokenizer *t, bool on);      // consecutive UNKs become one (HF BPE fuse_unk)
void tokenizer_set_ignore_merges(Tokenizer *t, bool on); // a word that is itself a token is emitted whole (Llama 3)
// Whether the default mode recognises CONTROL/UNKNOWN tokens spelled in the text (default true). Set false for
// vocabularies whose reference tokenizer has no special-token parsing, so that default mode equals ORDINARY mode:
// GPT-2's encoder.json + vocab.bpe (OpenAI's encoder.py, tiktoken's encode_ordinary and the shared Hugging Face
// reference all encode "<|endoftext|>" written in text as 7 ordinary tokens) and GGUF files with pre "gpt-2".
void tokenizer_set_parse_special(Tokenizer *t, bool on);
// The ADD_SPECIAL template: ids put before and after the encoded text (HF TemplateProcessing "single").
void tokenizer_set_template(Tokenizer *t, const int32_t *prefix, size_t n_prefix, const int32_t *suffix, size_t n_suffix);
// Convenience for GGUF/sentencepiece flags: template = [BOS if add_bos] text [EOS if add_eos], using the ids set
// with tokenizer_set_special_id (resolved at finalize).
void tokenizer_set_add_bos_eos(Tokenizer *t, bool add_bos, bool add_eos);
void tokenizer_set_decoder(Tokenizer *t, int flags); // TOKDEC_* (default: none for BYTES, BYTE_FALLBACK for SPM)
// Names kept for writers (GGUF tokenizer.ggml.model / .pre); optional.
void tokenizer_set_model_name(Tokenizer *t, const char *name); // "gpt2", "llama"
void tokenizer_set_pre_name(Tokenizer *t, const char *name);   // "gpt-2", "llama-bpe", "qwen2", "default", ...

// Normalizer steps, applied in the order added to each text segment between special tokens.
void tokenizer_add_norm_prepend(Tokenizer *t, const char *s, size_t n);  // prepend when the segment is non-empty
void tokenizer_add_norm_replace(Tokenizer *t, const char *pattern, size_t plen, const char *content, size_t clen);
int tokenizer_add_norm_replace_regex(Tokenizer *t, const char *pattern, const char *content, size_t clen, Err *e);
void tokenizer_add_norm_unicode(Tokenizer *t, TokUnicodeForm form);
void tokenizer_add_norm_lowercase(Tokenizer *t);
void tokenizer_add_norm_strip(Tokenizer *t, bool left, bool right);

// Pre-tokenizer steps, applied in the order added; each step cuts the words of the previous one.
// Split on a regex (PCRE2 syntax, UTF + UCP; compiled at finalize) or on a literal string.
int tokenizer_add_pretok_split(Tokenizer *t, const char *pattern, size_t plen, bool is_regex, TokSplitBehavior behavior,
                               bool invert, Err *e);
// The published split regexes by name, added as ISOLATED splits: "gpt2" (also "gpt-2", "r50k_base", "p50k_base"),
// "llama3" (also "llama-bpe"), "qwen2", "cl100k_base", "o200k_base", "default" (llama.cpp's default BPE
// pre-tokenizer). Unknown name: -1.
int tokenizer_add_pretok_preset(Tokenizer *t, const char *name, Err *e);
// The regex list of a preset (NULL-terminated), or NULL for an unknown name.
const char *const *tokenizer_regex_preset(const char *name);
// HF ByteLevel pre-tokenizer: add_prefix_space prepends ' ' to a word not starting with one; use_regex splits with
// the GPT-2 regex. (Bytes are kept raw, so the byte->unicode mapping itself is a no-op here.)
void tokenizer_add_pretok_bytelevel(Tokenizer *t, bool add_prefix_space, bool use_regex);
// HF Metaspace: ' ' -> replacement, prepend it per scheme (FIRST = only the text's first segment), split before it.
void tokenizer_add_pretok_metaspace(Tokenizer *t, const char *replacement, size_t rlen, TokPrependScheme scheme,
                                    bool split);
void tokenizer_add_pretok_digits(Tokenizer *t, bool individual);

// Validate and build the lookup tables (pair ranks, byte tables, special-token matcher, compiled regexes).
int tokenizer_finalize(Tokenizer *t, Err *e);

// ======================================================================================================
// Loading
// ======================================================================================================

// Load a tokenizer from a file or directory, detecting the format:
//   GGUF file (model or vocabulary-only) -> its tokenizer.ggml.* metadata; *.json -> Hugging Face tokenizer.json;
//   *.model -> sentencepiece; *.bin -> llama2.c; *.tiktoken (or a bare name "cl100k_base", "o200k_base",
//   "r50k_base" resolved by tokenizer_load_tiktoken) -> tiktoken; a directory -> its tokenizer.json, else
//   encoder.json + vocab.bpe, else tokenizer.model, else tokenizer.bin.
int tokenizer_load(const char *path, Tokenizer **out, Err *e);

// Formats implemented in this directory (tokenizer_gguf.c, tokenizer_hf.c):
// A model GGUF without a vocabulary carries tokenizer.ggml.model = TOKENIZER_GGUF_NO_VOCAB (llama.cpp's
// LLAMA_VOCAB_TYPE_NONE, which reads <arch>.vocab_size instead); loading its tokenizer fails as for a missing key.
#define TOKENIZER_GGUF_NO_VOCAB "no_vocab"
// Whether g carries a vocabulary: tokenizer.ggml.model present and not the marker (nor llama.cpp's other spelling
// of it, "none").
bool tokenizer_gguf_has_vocab(const GGUFFile *g);
int tokenizer_load_gguf(const GGUFFile *g, Tokenizer **out, Err *e);
int tokenizer_load_gguf_path(const char *path, Tokenizer **out, Err *e);
int tokenizer_load_hf_json(const char *path, Tokenizer **out, Err *e);
// From memory (text need not be NUL-terminated); name is used in messages. Used by tests and the fuzzer.
int tokenizer_parse_hf_json(const char *text, size_t len, const char *name, Tokenizer **out, Err *e);

// Formats implemented in load_spm.c, load_llama2c.c, load_gpt2.c, load_tiktoken.c:
int tokenizer_load_spm_model(const char *path, Tokenizer **out, Err *e);
int tokenizer_parse_spm_model(const uint8_t *data, size_t size, const char *name, Tokenizer **out, Err *e);
int tokenizer_load_llama2c(const char *path, Tokenizer **out, Err *e);
int tokenizer_load_gpt2_files(const char *encoder_json, const char *vocab_bpe, Tokenizer **out, Err *e);
// A .tiktoken rank file path, or one of the names cl100k_base, o200k_base, r50k_base, p50k_base (the split regex is
// chosen from the name; a path's file name selects it too).
int tokenizer_load_tiktoken(const char *name_or_path, Tokenizer **out, Err *e);

// GPT-2 byte<->unicode table (the spelling byte-level vocabularies use in files).
// Mapped text (UTF-8) -> raw bytes, appended to out; -1 when a character is not in the table (out unchanged).
int tokenizer_bytelevel_to_bytes(const char *s, size_t n, Buf *out);
// Raw bytes -> mapped text (UTF-8), appended to out.
void tokenizer_bytelevel_from_bytes(const void *bytes, size_t n, Buf *out);

// Valid UTF-8 for display or JSON: each maximal invalid subsequence becomes U+FFFD (as Rust's from_utf8_lossy and
// Hugging Face decode do). Appended to out.
void tokenizer_utf8_lossy(const void *s, size_t n, Buf *out);

// ======================================================================================================
// Use
// ======================================================================================================

// Encode len bytes of text (need not be NUL-terminated; invalid UTF-8 is encoded through byte tokens / byte
// fallback), APPENDING ids to out. mode: 0 or TOKENIZE_* flags. A character the vocabulary cannot represent at all
// (no token, no byte fallback, no UNK) is dropped, as Hugging Face does. Fails only on a tokenizer not finalized.
int tokenizer_encode(const Tokenizer *t, const char *text, size_t len, int mode, TokenIds *out, Err *e);

// Decode ids to bytes APPENDED to out (not NUL-terminated beyond Buf's guarantee). flags: TOKENIZER_DECODE_*.
// An id outside [0, vocab size) is an error. The output may be invalid UTF-8 (e.g. a cut multi-byte character).
int tokenizer_decode(const Tokenizer *t, const int32_t *ids, size_t n, int flags, Buf *out, Err *e);
// The text of one token for streaming, appended to out (flags as above; TOKENIZER_DECODE_FIRST for the first).
int tokenizer_token_piece(const Tokenizer *t, int32_t id, int flags, Buf *out, Err *e);

// Vocabulary access.
size_t tokenizer_vocab_size(const Tokenizer *t);
TokenizerKind tokenizer_kind(const Tokenizer *t);
// Raw bytes of a token (NULL with *len 0 for an id out of range).
const char *tokenizer_token_bytes(const Tokenizer *t, int32_t id, size_t *len);
float tokenizer_token_score(const Tokenizer *t, int32_t id);
TokenType tokenizer_token_type(const Tokenizer *t, int32_t id); // 0 for an id out of range
bool tokenizer_is_control(const Tokenizer *t, int32_t id);      // CONTROL or UNKNOWN
int32_t tokenizer_special_id(const Tokenizer *t, TokenRole role); // -1 when unset
// End of generation: EOS, EOT, EOM.
bool tokenizer_is_eog(const Tokenizer *t, int32_t id);
size_t tokenizer_n_merges(const Tokenizer *t);
void tokenizer_get_merge(const Tokenizer *t, size_t i, int32_t *left, int32_t *right);
void tokenizer_get_template(const Tokenizer *t, const int32_t **prefix, size_t *n_prefix, const int32_t **suffix,
                            size_t *n_suffix);
bool tokenizer_byte_fallback(const Tokenizer *t);
int tokenizer_decoder_flags(const Tokenizer *t);
const char *tokenizer_model_name(const Tokenizer *t); // NULL when unset
const char *tokenizer_pre_name(const Tokenizer *t);   // NULL when unset

#endif
