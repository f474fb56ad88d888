// cmd_info.c — `lossy info FILE`: what is inside a GGUF file (architecture, hyper-parameters, tensors, vocabulary,
// every metadata key), as text or JSON.
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "formats/gguf.h"
#include "model/model.h"

static const CliFlag FLAGS[] = {
    {"json", 0, FLAG_BOOL, NULL, NULL, "print machine-readable JSON"},
    {"tensors", 't', FLAG_BOOL, NULL, NULL, "list every tensor (name, type, shape, bytes)"},
    {"ctx", 'c', FLAG_INT, "N", "0", "context length for the memory plan (0 = what lossy run would use)"},
    {NULL, 0, 0, NULL, NULL, NULL},
};

static void shape_str(const GGUFTensor *t, char *out, size_t n) {
    size_t len = 0;
    out[0] = 0;
    for (uint32_t d = 0; d < t->n_dims && len < n; d++)
        len += (size_t)snprintf(out + len, n - len, d ? " x %" PRId64 : "%" PRId64, t->ne[d]);
}

// A printable, bounded rendering of a string value (escapes control bytes, truncates long values).
static void print_gstr(FILE *f, GStr s, size_t max) {
    fputc('"', f);
    for (size_t i = 0; i < s.len && i < max; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        if (c == '\n') fputs("\\n", f);
        else if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20 || c == 0x7f) fprintf(f, "\\x%02x", c);
        else fputc(c, f);
    }
    fputc('"', f);
    if (s.len > max) fprintf(f, "... (%zu bytes)", s.len);
}

static void print_value(FILE *f, const GGUFKV *kv) {
    switch (kv->type) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_UINT16: case GGUF_TYPE_UINT32: case GGUF_TYPE_UINT64:
        fprintf(f, "%" PRIu64, kv->v.u64); break;
    case GGUF_TYPE_INT8: case GGUF_TYPE_INT16: case GGUF_TYPE_INT32: case GGUF_TYPE_INT64:
        fprintf(f, "%" PRId64, kv->v.i64); break;
    case GGUF_TYPE_FLOAT32: case GGUF_TYPE_FLOAT64: fprintf(f, "%g", kv->v.f64); break;
    case GGUF_TYPE_BOOL: fprintf(f, "%s", kv->v.b ? "true" : "false"); break;
    case GGUF_TYPE_STRING: print_gstr(f, kv->v.str, 80); break;
    case GGUF_TYPE_ARRAY:
        fprintf(f, "[%s x %" PRIu64 "]", gguf_type_name(kv->arr_type), kv->arr_count);
        if (kv->arr_count && kv->arr_count <= 8 && kv->arr_type != GGUF_TYPE_STRING) {
            fprintf(f, " {");
            for (uint64_t i = 0; i < kv->arr_count; i++) fprintf(f, i ? ", %g" : "%g", gguf_arr_float(kv, i));
            fprintf(f, "}");
        }
        break;
    default: break;
    }
}

static json_t *json_gstr(GStr s) {
    json_t *j = json_stringn(s.ptr, s.len); // NULL when not valid UTF-8
    if (j) return j;
    // invalid UTF-8 cannot go into JSON text: replace non-ASCII bytes so the key is still shown
    char *tmp = xmalloc(s.len + 1);
    for (size_t i = 0; i < s.len; i++) tmp[i] = (unsigned char)s.ptr[i] < 0x80 ? s.ptr[i] : '?';
    j = json_stringn(tmp, s.len);
    free(tmp);
    return j ? j : json_string("");
}

static json_t *json_value(const GGUFKV *kv) {
    switch (kv->type) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_UINT16: case GGUF_TYPE_UINT32: case GGUF_TYPE_UINT64:
        return kv->v.u64 <= (uint64_t)INT64_MAX ? json_integer((json_int_t)kv->v.u64) : json_real((double)kv->v.u64);
    case GGUF_TYPE_INT8: case GGUF_TYPE_INT16: case GGUF_TYPE_INT32: case GGUF_TYPE_INT64: return json_integer(kv->v.i64);
    case GGUF_TYPE_FLOAT32: case GGUF_TYPE_FLOAT64: return json_real(kv->v.f64);
    case GGUF_TYPE_BOOL: return json_boolean(kv->v.b);
    case GGUF_TYPE_STRING: return json_gstr(kv->v.str);
    case GGUF_TYPE_ARRAY: {
        // arrays are summarised (vocabularies run to 100k+ entries): type, length and the first few values
        json_t *o = json_object();
        json_object_set_new(o, "array_of", json_string(gguf_type_name(kv->arr_type)));
        json_object_set_new(o, "length", json_integer((json_int_t)kv->arr_count));
        json_t *head = json_array();
        for (uint64_t i = 0; i < kv->arr_count && i < 8; i++) {
            if (kv->arr_type == GGUF_TYPE_STRING) json_array_append_new(head, json_gstr(kv->arr_str[i]));
            else if (kv->arr_type == GGUF_TYPE_FLOAT32 || kv->arr_type == GGUF_TYPE_FLOAT64) json_array_append_new(head, json_real(gguf_arr_float(kv, i)));
            else json_array_append_new(head, json_integer(gguf_arr_int(kv, i)));
        }
        json_object_set_new(o, "head", head);
        return o;
    }
    default: return json_null();
    }
}

typedef struct Summary {
    GStr arch;
    bool has_arch;
    uint64_t vocab;
    bool has_vocab;
    uint64_t n_params, n_bytes;
    uint64_t count_by_type[DT_COUNT], bytes_by_type[DT_COUNT];
} Summary;

static void summarise(const GGUFFile *g, Summary *s) {
    memset(s, 0, sizeof *s);
    const GGUFKV *a = gguf_find(g, "general.architecture");
    if (a && a->type == GGUF_TYPE_STRING) s->arch = a->v.str, s->has_arch = true;
    const GGUFKV *tok = gguf_find(g, "tokenizer.ggml.tokens");
    if (tok && tok->type == GGUF_TYPE_ARRAY) s->vocab = tok->arr_count, s->has_vocab = true;
    for (size_t i = 0; i < g->n_tensors; i++) {
        const GGUFTensor *t = &g->tensors[i];
        s->n_params += t->n_elements;
        s->n_bytes += t->nbytes;
        s->count_by_type[t->type]++;
        s->bytes_by_type[t->type] += t->nbytes;
    }
}

// Hyper-parameters are the keys under "<arch>.".
static bool is_hparam(const Summary *s, const char *key) {
    return s->has_arch && strncmp(key, s->arch.ptr, s->arch.len) == 0 && key[s->arch.len] == '.';
}

// The memory plan of a model file (plan->total == 0 and why in *why when the file is not a model lossy runs).
static void memory_plan(const GGUFFile *g, const Summary *s, int64_t n_ctx, ModelMemoryPlan *plan, Err *why) {
    memset(plan, 0, sizeof *plan);
    why->msg[0] = 0;
    if (!s->has_arch) {
        snprintf(why->msg, sizeof why->msg, "no architecture (a tokenizer-only file)");
        return;
    }
    if (model_memory_plan(g, n_ctx, plan, why)) plan->total = 0;
}

static double mb(size_t bytes) { return (double)bytes / 1e6; }

static int print_json(const GGUFFile *g, const Summary *s, bool tensors, const ModelMemoryPlan *plan, const Err *why) {
    json_t *root = json_object();
    json_object_set_new(root, "file", json_string(g->name));
    json_object_set_new(root, "gguf_version", json_integer(g->version));
    json_object_set_new(root, "file_bytes", json_integer((json_int_t)g->size));
    json_object_set_new(root, "alignment", json_integer((json_int_t)g->alignment));
    json_object_set_new(root, "architecture", s->has_arch ? json_gstr(s->arch) : json_null());
    json_t *hp = json_object(), *meta = json_object();
    for (size_t i = 0; i < g->n_kv; i++) {
        json_object_set_new(meta, g->kv[i].key, json_value(&g->kv[i])); // keys with invalid UTF-8 are skipped by jansson
        if (is_hparam(s, g->kv[i].key)) json_object_set_new(hp, g->kv[i].key + s->arch.len + 1, json_value(&g->kv[i]));
    }
    json_object_set_new(root, "hyperparameters", hp);
    json_object_set_new(root, "vocab_size", s->has_vocab ? json_integer((json_int_t)s->vocab) : json_null());
    json_object_set_new(root, "tensor_count", json_integer((json_int_t)g->n_tensors));
    json_object_set_new(root, "parameters", json_integer((json_int_t)s->n_params));
    json_object_set_new(root, "tensor_bytes", json_integer((json_int_t)s->n_bytes));
    json_t *types = json_object();
    for (int t = 0; t < DT_COUNT; t++) {
        if (!s->count_by_type[t]) continue;
        json_t *o = json_object();
        json_object_set_new(o, "tensors", json_integer((json_int_t)s->count_by_type[t]));
        json_object_set_new(o, "bytes", json_integer((json_int_t)s->bytes_by_type[t]));
        json_object_set_new(types, dtype_name((uint32_t)t), o);
    }
    json_object_set_new(root, "tensor_types", types);
    if (plan->total) {
        json_object_set_new(root, "memory_plan", json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "n_ctx", (json_int_t)plan->n_ctx, "weights_bytes",
                                                           (json_int_t)plan->weights, "weights_released_bytes", (json_int_t)plan->released,
                                                           "copies_bytes", (json_int_t)plan->copies, "kv_cache_bytes", (json_int_t)plan->kv_cache,
                                                           "total_bytes", (json_int_t)plan->total));
    } else {
        json_object_set_new(root, "memory_plan", json_null());
        json_object_set_new(root, "memory_plan_unavailable", json_string(why->msg));
    }
    json_object_set_new(root, "metadata", meta);
    if (tensors) {
        json_t *arr = json_array();
        for (size_t i = 0; i < g->n_tensors; i++) {
            const GGUFTensor *t = &g->tensors[i];
            json_t *o = json_object(), *shape = json_array();
            for (uint32_t d = 0; d < t->n_dims; d++) json_array_append_new(shape, json_integer(t->ne[d]));
            json_object_set_new(o, "name", json_gstr((GStr){t->name, strlen(t->name)}));
            json_object_set_new(o, "type", json_string(dtype_name(t->type)));
            json_object_set_new(o, "shape", shape);
            json_object_set_new(o, "offset", json_integer((json_int_t)t->offset));
            json_object_set_new(o, "bytes", json_integer((json_int_t)t->nbytes));
            json_array_append_new(arr, o);
        }
        json_object_set_new(root, "tensors", arr);
    }
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (!text) return cli_errorf(EXIT_RUNTIME, g->name, "cannot render JSON");
    puts(text);
    free(text);
    return EXIT_OK;
}

static void print_text(const GGUFFile *g, const Summary *s, bool tensors, const ModelMemoryPlan *plan, const Err *why) {
    printf("file:          %s (%zu bytes, GGUF v%u, alignment %zu)\n", g->name, g->size, g->version, g->alignment);
    printf("architecture:  ");
    if (s->has_arch) print_gstr(stdout, s->arch, 64);
    else printf("(none)");
    printf("\n");
    const GGUFKV *name = gguf_find(g, "general.name");
    if (name && name->type == GGUF_TYPE_STRING) {
        printf("name:          ");
        print_gstr(stdout, name->v.str, 120);
        printf("\n");
    }
    if (s->has_vocab) printf("vocab size:    %" PRIu64 "\n", s->vocab);
    printf("tensors:       %zu (%" PRIu64 " parameters, %" PRIu64 " bytes)\n", g->n_tensors, s->n_params, s->n_bytes);
    for (int t = 0; t < DT_COUNT; t++)
        if (s->count_by_type[t])
            printf("  %-8s     %" PRIu64 " tensors, %" PRIu64 " bytes\n", dtype_name((uint32_t)t), s->count_by_type[t], s->bytes_by_type[t]);
    if (plan->total) {
        printf("memory plan:   %.1f MB at a %lld-token context = weights %.1f MB (mmapped", mb(plan->total), (long long)plan->n_ctx,
               mb(plan->weights));
        if (plan->released) printf(", %.1f MB of them given back once copied", mb(plan->released));
        printf(") + load-time copies %.1f MB (kernel layouts, huge pages) + KV cache %.1f MB (f32, one sequence)\n", mb(plan->copies),
               mb(plan->kv_cache));
    } else {
        printf("memory plan:   none: %s\n", why->msg);
    }
    printf("hyper-parameters:\n");
    for (size_t i = 0; i < g->n_kv; i++) {
        if (!is_hparam(s, g->kv[i].key)) continue;
        printf("  %-40s ", g->kv[i].key);
        print_value(stdout, &g->kv[i]);
        printf("\n");
    }
    printf("metadata (%zu keys):\n", g->n_kv);
    for (size_t i = 0; i < g->n_kv; i++) {
        printf("  %-40s %-4s ", g->kv[i].key, gguf_type_name(g->kv[i].type));
        print_value(stdout, &g->kv[i]);
        printf("\n");
    }
    if (tensors) {
        printf("tensor list:\n");
        for (size_t i = 0; i < g->n_tensors; i++) {
            const GGUFTensor *t = &g->tensors[i];
            char shape[128];
            shape_str(t, shape, sizeof shape);
            printf("  %-40s %-7s %-24s %zu bytes\n", t->name, dtype_name(t->type), shape, t->nbytes);
        }
    }
}

static int run(const CliArgs *a) {
    const char *path = a->pos[0];
    GGUFFile g;
    Err e;
    if (gguf_open(&g, path, &e)) return cli_fail(&e, path);
    Summary s;
    summarise(&g, &s);
    int64_t n_ctx = cli_flag_int(a, "ctx");
    if (n_ctx < 0 || n_ctx > ((int64_t)1 << 24)) {
        gguf_close(&g);
        return cli_errorf(EXIT_USAGE, "--ctx", "must be 0 to 16777216 (got %lld)", (long long)n_ctx);
    }
    ModelMemoryPlan plan;
    Err why;
    memory_plan(&g, &s, n_ctx, &plan, &why);
    int rc = EXIT_OK;
    if (cli_flag_bool(a, "json")) rc = print_json(&g, &s, cli_flag_bool(a, "tensors"), &plan, &why);
    else print_text(&g, &s, cli_flag_bool(a, "tensors"), &plan, &why);
    gguf_close(&g);
    return rc;
}

const CliCommand cmd_info = {
    .name = "info",
    .summary = "show what a GGUF file holds: architecture, hyper-parameters, tensors, vocabulary, metadata, memory plan",
    .usage = "FILE",
    .min_pos = 1,
    .max_pos = 1,
    .flags = FLAGS,
    .run = run,
};
