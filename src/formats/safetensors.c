// safetensors.c — safetensors reader: header validation, zero-copy tensor views, sharded index (see safetensors.h).
#include "safetensors.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct STDTypeDesc {
    const char *name;
    size_t size;
    int dtype; // DType or -1
} STDTypeDesc;

static const STDTypeDesc ST_DTYPES[ST_DTYPE_COUNT] = {
    [ST_BOOL] = {"BOOL", 1, -1},       [ST_U8] = {"U8", 1, -1},         [ST_I8] = {"I8", 1, DT_I8},
    [ST_U16] = {"U16", 2, -1},         [ST_I16] = {"I16", 2, DT_I16},   [ST_U32] = {"U32", 4, -1},
    [ST_I32] = {"I32", 4, DT_I32},     [ST_U64] = {"U64", 8, -1},       [ST_I64] = {"I64", 8, DT_I64},
    [ST_F16] = {"F16", 2, DT_F16},     [ST_BF16] = {"BF16", 2, DT_BF16}, [ST_F32] = {"F32", 4, DT_F32},
    [ST_F64] = {"F64", 8, DT_F64},     [ST_F8_E4M3] = {"F8_E4M3", 1, -1}, [ST_F8_E5M2] = {"F8_E5M2", 1, -1},
};

const char *st_dtype_name(STDType t) { return (unsigned)t < ST_DTYPE_COUNT ? ST_DTYPES[t].name : "unknown"; }
size_t st_dtype_size(STDType t) { return (unsigned)t < ST_DTYPE_COUNT ? ST_DTYPES[t].size : 0; }

int st_dtype_from_name(const char *name) {
    for (int i = 0; i < ST_DTYPE_COUNT; i++)
        if (strcmp(ST_DTYPES[i].name, name) == 0) return i;
    return -1;
}

static const char *json_kind(const json_t *j) {
    switch (json_typeof(j)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    case JSON_STRING: return "string";
    case JSON_INTEGER: return "integer";
    case JSON_REAL: return "real";
    case JSON_TRUE: case JSON_FALSE: return "boolean";
    case JSON_NULL: return "null";
    }
    return "?";
}

// ---- name index ----

static uint64_t name_hash(const char *s) {
    uint64_t h = 1469598103934665603ull; // FNV-1a
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

// Build the index; fails on a duplicate name (possible across shards; within one header jansson rejects it).
static int build_index(SafeTensors *st, Err *e) {
    free(st->slots);
    size_t n = 16;
    while (n < st->n_tensors * 2) n *= 2;
    st->slots = xcalloc(n, sizeof *st->slots);
    st->n_slots = n;
    for (size_t i = 0; i < st->n_tensors; i++) {
        const char *name = st->tensors[i].name;
        size_t s = (size_t)name_hash(name) & (n - 1);
        while (st->slots[s]) {
            const STTensor *o = &st->tensors[st->slots[s] - 1];
            if (strcmp(o->name, name) == 0)
                return ERR(e, "tensor '%s' appears twice (in %s and %s)", name, st->shard_paths[o->shard],
                           st->shard_paths[st->tensors[i].shard]);
            s = (s + 1) & (n - 1);
        }
        st->slots[s] = i + 1;
    }
    return 0;
}

const STTensor *st_find(const SafeTensors *st, const char *name) {
    if (!st->n_slots) return NULL;
    size_t s = (size_t)name_hash(name) & (st->n_slots - 1);
    while (st->slots[s]) {
        const STTensor *t = &st->tensors[st->slots[s] - 1];
        if (strcmp(t->name, name) == 0) return t;
        s = (s + 1) & (st->n_slots - 1);
    }
    return NULL;
}

const char *st_metadata(const SafeTensors *st, const char *key) {
    for (size_t i = 0; i < st->n_meta; i++)
        if (strcmp(st->meta_keys[i], key) == 0) return st->meta_values[i];
    return NULL;
}

void st_close(SafeTensors *st) {
    for (size_t i = 0; i < st->n_tensors; i++) free((char *)st->tensors[i].name);
    free(st->tensors);
    for (size_t i = 0; i < st->n_shards; i++) {
        if (st->maps) filemap_close(&st->maps[i]);
        free(st->shard_paths[i]);
    }
    free(st->maps);
    free(st->shard_paths);
    for (size_t i = 0; i < st->n_meta; i++) {
        free(st->meta_keys[i]);
        free(st->meta_values[i]);
    }
    free(st->meta_keys);
    free(st->meta_values);
    free(st->slots);
    memset(st, 0, sizeof *st);
}

// ---- one header ----

// A non-negative JSON integer (jansson integers are signed 64-bit).
static int get_u64(const json_t *j, uint64_t *out) {
    if (!json_is_integer(j) || json_integer_value(j) < 0) return -1;
    *out = (uint64_t)json_integer_value(j);
    return 0;
}

static int parse_entry(const char *name, const json_t *v, size_t data_size, STTensor *t, const char *label, Err *e) {
    if (!json_is_object(v)) return ERR(e, "%s: tensor '%s': expected an object, got %s", label, name, json_kind(v));
    const json_t *jd = json_object_get(v, "dtype");
    const json_t *js = json_object_get(v, "shape");
    const json_t *jo = json_object_get(v, "data_offsets");
    if (!jd || !json_is_string(jd))
        return ERR(e, "%s: tensor '%s': 'dtype' must be a string%s", label, name, jd ? "" : " (missing)");
    int dt = st_dtype_from_name(json_string_value(jd));
    if (dt < 0) return ERR(e, "%s: tensor '%s': unsupported dtype '%s'", label, name, json_string_value(jd));
    if (!js || !json_is_array(js))
        return ERR(e, "%s: tensor '%s': 'shape' must be an array%s", label, name, js ? "" : " (missing)");
    if (!jo || !json_is_array(jo) || json_array_size(jo) != 2)
        return ERR(e, "%s: tensor '%s': 'data_offsets' must be an array of two integers", label, name);
    size_t ndim = json_array_size(js);
    if (ndim > ST_MAX_DIMS)
        return ERR(e, "%s: tensor '%s': %zu dimensions (at most %d supported)", label, name, ndim, ST_MAX_DIMS);
    memset(t, 0, sizeof *t);
    t->st_dtype = (STDType)dt;
    t->dtype = ST_DTYPES[dt].dtype;
    t->ndim = (uint32_t)ndim;
    size_t n = 1;
    for (size_t d = 0; d < ndim; d++) {
        uint64_t dim;
        if (get_u64(json_array_get(js, d), &dim) != 0)
            return ERR(e, "%s: tensor '%s': shape[%zu] must be a non-negative integer", label, name, d);
        if (dim > SIZE_MAX || !size_mul(n, (size_t)dim, &n))
            return ERR(e, "%s: tensor '%s': shape product overflows", label, name);
        t->shape[d] = (int64_t)dim;
    }
    size_t nbytes;
    if (!size_mul(n, ST_DTYPES[dt].size, &nbytes))
        return ERR(e, "%s: tensor '%s': byte size overflows", label, name);
    uint64_t b, en;
    if (get_u64(json_array_get(jo, 0), &b) != 0 || get_u64(json_array_get(jo, 1), &en) != 0)
        return ERR(e, "%s: tensor '%s': data_offsets must be non-negative integers", label, name);
    if (b > en) return ERR(e, "%s: tensor '%s': data_offsets [%llu, %llu] are reversed", label, name,
                           (unsigned long long)b, (unsigned long long)en);
    if (en > data_size)
        return ERR(e, "%s: tensor '%s': data_offsets [%llu, %llu] run past the end of the data (%zu bytes)", label,
                   name, (unsigned long long)b, (unsigned long long)en, data_size);
    if (en - b != nbytes)
        return ERR(e, "%s: tensor '%s': data_offsets span %llu bytes but %s x %zu elements need %zu", label, name,
                   (unsigned long long)(en - b), ST_DTYPES[dt].name, n, nbytes);
    t->n_elements = n;
    t->nbytes = nbytes;
    t->offset = (size_t)b; // made absolute by the caller
    return 0;
}

static int cmp_offset(const void *a, const void *b) {
    const STTensor *x = a, *y = b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes;
}

static void add_meta(SafeTensors *st, const char *k, const char *v) {
    if (st_metadata(st, k)) return;
    st->meta_keys = xrealloc(st->meta_keys, (st->n_meta + 1) * sizeof *st->meta_keys);
    st->meta_values = xrealloc(st->meta_values, (st->n_meta + 1) * sizeof *st->meta_values);
    st->meta_keys[st->n_meta] = xstrdup(k);
    st->meta_values[st->n_meta] = xstrdup(v);
    st->n_meta++;
}

// Parse one file's bytes and append its tensors (shard index `shard`) to st. Does not build the name index.
static int parse_append(SafeTensors *st, const uint8_t *data, size_t size, size_t shard, const char *label, Err *e) {
    if (size < 8) return ERR(e, "%s: %zu bytes is too small for a safetensors file (8-byte header length)", label, size);
    uint64_t hlen = load_u64le(data);
    if (hlen > ST_MAX_HEADER)
        return ERR(e, "%s: header length %llu exceeds the %u byte limit (not a safetensors file?)", label,
                   (unsigned long long)hlen, ST_MAX_HEADER);
    if (hlen > size - 8)
        return ERR(e, "%s: header length %llu runs past the end of the file (%zu bytes): truncated?", label,
                   (unsigned long long)hlen, size);
    if (hlen < 2 || data[8] != '{') return ERR(e, "%s: header does not start with a JSON object", label);
    json_error_t jerr;
    json_t *root = json_loadb((const char *)data + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) return ERR(e, "%s: invalid header JSON (line %d, column %d): %s", label, jerr.line, jerr.column, jerr.text);
    int rc = 0;
    if (!json_is_object(root)) {
        rc = ERR(e, "%s: header must be a JSON object, got %s", label, json_kind(root));
        goto done;
    }
    size_t data_start = 8 + (size_t)hlen, data_size = size - data_start;
    size_t first = st->n_tensors, n_new = json_object_size(root);
    st->tensors = xrealloc(st->tensors, (first + n_new + 1) * sizeof *st->tensors);
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (strcmp(key, "__metadata__") == 0) {
            if (!json_is_object(val)) {
                rc = ERR(e, "%s: '__metadata__' must be an object of strings, got %s", label, json_kind(val));
                goto done;
            }
            const char *mk;
            json_t *mv;
            json_object_foreach(val, mk, mv) {
                if (!json_is_string(mv)) {
                    rc = ERR(e, "%s: '__metadata__' value of '%s' must be a string, got %s", label, mk, json_kind(mv));
                    goto done;
                }
                add_meta(st, mk, json_string_value(mv));
            }
            continue;
        }
        if (!key[0]) {
            rc = ERR(e, "%s: a tensor has an empty name", label);
            goto done;
        }
        STTensor *t = &st->tensors[st->n_tensors];
        if (parse_entry(key, val, data_size, t, label, e) != 0) {
            rc = -1;
            goto done;
        }
        t->name = xstrdup(key);
        t->shard = shard;
        t->data = data + data_start + t->offset;
        t->offset += data_start;
        st->n_tensors++;
    }
    // Sorting by offset makes the overlap check linear; empty tensors can share an offset with anything.
    qsort(st->tensors + first, st->n_tensors - first, sizeof *st->tensors, cmp_offset);
    size_t end = 0;
    const char *end_name = NULL;
    for (size_t i = first; i < st->n_tensors; i++) {
        const STTensor *t = &st->tensors[i];
        if (t->nbytes == 0) continue;
        if (t->offset < end) {
            rc = ERR(e, "%s: tensors '%s' and '%s' overlap in the data buffer", label, end_name, t->name);
            goto done;
        }
        end = t->offset + t->nbytes;
        end_name = t->name;
    }
done:
    json_decref(root);
    return rc;
}

static void add_shard(SafeTensors *st, const char *path) {
    st->shard_paths = xrealloc(st->shard_paths, (st->n_shards + 1) * sizeof *st->shard_paths);
    st->maps = xrealloc(st->maps, (st->n_shards + 1) * sizeof *st->maps);
    memset(&st->maps[st->n_shards], 0, sizeof *st->maps);
    st->shard_paths[st->n_shards] = xstrdup(path);
    st->n_shards++;
}

int st_parse(SafeTensors *st, const uint8_t *data, size_t size, const char *name, Err *e) {
    memset(st, 0, sizeof *st);
    add_shard(st, name ? name : "safetensors");
    if (parse_append(st, data, size, 0, st->shard_paths[0], e) != 0 || build_index(st, e) != 0) {
        st_close(st);
        return -1;
    }
    return 0;
}

int st_open(SafeTensors *st, const char *path, Err *e) {
    memset(st, 0, sizeof *st);
    add_shard(st, path);
    if (filemap_open(&st->maps[0], path, e) != 0 ||
        parse_append(st, st->maps[0].data, st->maps[0].size, 0, path, e) != 0 || build_index(st, e) != 0) {
        st_close(st);
        return -1;
    }
    return 0;
}

// ---- sharded index ----

// Shard names come from a file: keep them to plain names in the index's directory.
static bool shard_name_ok(const char *s) {
    if (!s[0] || strcmp(s, ".") == 0 || strcmp(s, "..") == 0) return false;
    return !strchr(s, '/') && !strchr(s, '\\');
}

static char *path_join(const char *dir, const char *name) {
    Buf b;
    buf_init(&b);
    if (dir[0]) {
        buf_append_str(&b, dir);
        if (!str_ends_with(dir, "/")) buf_append_str(&b, "/");
    }
    buf_append_str(&b, name);
    return b.data;
}

static int open_index(SafeTensors *st, const char *index_path, Err *e) {
    memset(st, 0, sizeof *st);
    char *text = NULL;
    size_t len = 0;
    if (file_read_all(index_path, &text, &len, e) != 0) return -1;
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    free(text);
    if (!root) return ERR(e, "%s: invalid JSON (line %d, column %d): %s", index_path, jerr.line, jerr.column, jerr.text);
    char *dir = xstrdup(index_path);
    char *slash = strrchr(dir, '/');
    if (slash) slash[1] = 0;
    else dir[0] = 0;
    int rc = 0;
    json_t *wm = json_is_object(root) ? json_object_get(root, "weight_map") : NULL;
    if (!wm || !json_is_object(wm)) {
        rc = ERR(e, "%s: expected an object with a 'weight_map' object", index_path);
        goto done;
    }
    if (json_object_size(wm) == 0) {
        rc = ERR(e, "%s: 'weight_map' is empty", index_path);
        goto done;
    }
    const char *key;
    json_t *val;
    // First pass: validate and collect the distinct shard files, in order of first mention.
    json_object_foreach(wm, key, val) {
        if (!json_is_string(val)) {
            rc = ERR(e, "%s: weight_map entry '%s' must be a file name string, got %s", index_path, key, json_kind(val));
            goto done;
        }
        const char *shard = json_string_value(val);
        if (!shard_name_ok(shard)) {
            rc = ERR(e, "%s: weight_map entry '%s' names an unsafe shard path '%s'", index_path, key, shard);
            goto done;
        }
        char *full = path_join(dir, shard);
        bool seen = false;
        for (size_t i = 0; i < st->n_shards && !seen; i++) seen = strcmp(st->shard_paths[i], full) == 0;
        if (!seen) add_shard(st, full);
        free(full);
    }
    for (size_t i = 0; i < st->n_shards; i++) {
        if (filemap_open(&st->maps[i], st->shard_paths[i], e) != 0) {
            rc = err_prefix(e, "%s: shard listed in the index: ", index_path);
            goto done;
        }
        if (parse_append(st, st->maps[i].data, st->maps[i].size, i, st->shard_paths[i], e) != 0) {
            rc = -1;
            goto done;
        }
    }
    if (build_index(st, e) != 0) {
        rc = -1;
        goto done;
    }
    // Second pass: every tensor the index promises must be in the shard it names.
    json_object_foreach(wm, key, val) {
        const STTensor *t = st_find(st, key);
        char *full = path_join(dir, json_string_value(val));
        if (!t) rc = ERR(e, "%s: tensor '%s' listed in the index is missing from %s", index_path, key, full);
        else if (strcmp(st->shard_paths[t->shard], full) != 0)
            rc = ERR(e, "%s: tensor '%s' is listed in %s but found in %s", index_path, key, full,
                     st->shard_paths[t->shard]);
        free(full);
        if (rc) goto done;
    }
done:
    free(dir);
    json_decref(root);
    if (rc) st_close(st);
    return rc;
}

int st_open_dir(SafeTensors *st, const char *path, Err *e) {
    memset(st, 0, sizeof *st);
    if (path_is_dir(path)) {
        char *index = path_join(path, "model.safetensors.index.json");
        char *single = path_join(path, "model.safetensors");
        int rc;
        if (path_exists(index)) rc = open_index(st, index, e);
        else if (path_exists(single)) rc = st_open(st, single, e);
        else rc = ERR(e, "%s: no model.safetensors or model.safetensors.index.json in this directory", path);
        free(index);
        free(single);
        return rc;
    }
    if (str_ends_with(path, ".json")) return open_index(st, path, e);
    return st_open(st, path, e);
}

// ---- element access ----

static float f8_e4m3_to_f32(uint8_t v) {
    int s = v >> 7, ex = (v >> 3) & 15, m = v & 7;
    float r;
    if (ex == 15 && m == 7) r = NAN; // the "fn" variant: no infinities, one NaN pattern
    else if (ex == 0) r = ldexpf((float)m, -9); // subnormal: m/8 * 2^-6
    else r = ldexpf(1.0f + (float)m / 8.0f, ex - 7);
    return s ? -r : r;
}

double st_tensor_get(const STTensor *t, uint64_t i) {
    const uint8_t *p = (const uint8_t *)t->data + i * ST_DTYPES[t->st_dtype].size;
    switch (t->st_dtype) {
    case ST_BOOL: return p[0] != 0;
    case ST_U8: return p[0];
    case ST_I8: return (int8_t)p[0];
    case ST_U16: return load_u16le(p);
    case ST_I16: return (int16_t)load_u16le(p);
    case ST_U32: return load_u32le(p);
    case ST_I32: return (int32_t)load_u32le(p);
    case ST_U64: return (double)load_u64le(p);
    case ST_I64: return (double)(int64_t)load_u64le(p);
    case ST_F16: return fp16_to_fp32(load_u16le(p));
    case ST_BF16: return bf16_to_fp32(load_u16le(p));
    case ST_F32: {
        uint32_t u = load_u32le(p);
        float f;
        memcpy(&f, &u, 4);
        return f;
    }
    case ST_F64: {
        uint64_t u = load_u64le(p);
        double d;
        memcpy(&d, &u, 8);
        return d;
    }
    case ST_F8_E4M3: return f8_e4m3_to_f32(p[0]);
    case ST_F8_E5M2: return fp16_to_fp32((uint16_t)(p[0] << 8));
    default: return 0;
    }
}
