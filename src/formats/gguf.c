// gguf.c — GGUF reader and writer (see gguf.h for the layout).
//
// The reader walks the file with a bounds-checked cursor: every read first checks that the bytes exist, every count
// read from the file is checked against the bytes that could possibly hold it before anything is allocated, and
// tensor extents are checked for overflow, bounds, alignment and overlap. Failures name the byte offset.
#include "gguf.h"

#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------------------------------------------
// reader

typedef struct Cursor {
    const uint8_t *p;
    size_t size, off;
    Err *e;
} Cursor;

static int need(Cursor *c, size_t n, const char *what) {
    if (n > c->size - c->off)
        return ERR(c->e, "truncated file: %s needs %zu bytes at offset %zu but only %zu remain", what, n, c->off, c->size - c->off);
    return 0;
}
static int rd_u32(Cursor *c, uint32_t *v, const char *what) {
    if (need(c, 4, what)) return -1;
    *v = load_u32le(c->p + c->off);
    c->off += 4;
    return 0;
}
static int rd_u64(Cursor *c, uint64_t *v, const char *what) {
    if (need(c, 8, what)) return -1;
    *v = load_u64le(c->p + c->off);
    c->off += 8;
    return 0;
}
static int rd_str(Cursor *c, GStr *s, const char *what) {
    uint64_t len;
    size_t at = c->off;
    if (rd_u64(c, &len, what)) return -1;
    if (len > c->size - c->off)
        return ERR(c->e, "bad string length %llu for %s at offset %zu (only %zu bytes remain)", (unsigned long long)len, what, at, c->size - c->off);
    s->ptr = (const char *)c->p + c->off;
    s->len = (size_t)len;
    c->off += (size_t)len;
    return 0;
}

size_t gguf_type_size(GGUFType t) {
    switch (t) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_INT8: case GGUF_TYPE_BOOL: return 1;
    case GGUF_TYPE_UINT16: case GGUF_TYPE_INT16: return 2;
    case GGUF_TYPE_UINT32: case GGUF_TYPE_INT32: case GGUF_TYPE_FLOAT32: return 4;
    case GGUF_TYPE_UINT64: case GGUF_TYPE_INT64: case GGUF_TYPE_FLOAT64: return 8;
    default: return 0;
    }
}

const char *gguf_type_name(GGUFType t) {
    static const char *names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "str", "arr", "u64", "i64", "f64"};
    return (unsigned)t < GGUF_TYPE_COUNT ? names[t] : "?";
}

static bool is_int_type(GGUFType t) {
    return t == GGUF_TYPE_UINT8 || t == GGUF_TYPE_INT8 || t == GGUF_TYPE_UINT16 || t == GGUF_TYPE_INT16 ||
           t == GGUF_TYPE_UINT32 || t == GGUF_TYPE_INT32 || t == GGUF_TYPE_UINT64 || t == GGUF_TYPE_INT64;
}
static bool is_signed_type(GGUFType t) {
    return t == GGUF_TYPE_INT8 || t == GGUF_TYPE_INT16 || t == GGUF_TYPE_INT32 || t == GGUF_TYPE_INT64;
}

// Decode one scalar at p (type t, already bounds-checked) into kv->v.
static void decode_scalar(GGUFType t, const uint8_t *p, GGUFKV *kv) {
    switch (t) {
    case GGUF_TYPE_UINT8: kv->v.u64 = p[0]; break;
    case GGUF_TYPE_INT8: kv->v.i64 = (int8_t)p[0]; break;
    case GGUF_TYPE_UINT16: kv->v.u64 = load_u16le(p); break;
    case GGUF_TYPE_INT16: kv->v.i64 = (int16_t)load_u16le(p); break;
    case GGUF_TYPE_UINT32: kv->v.u64 = load_u32le(p); break;
    case GGUF_TYPE_INT32: kv->v.i64 = (int32_t)load_u32le(p); break;
    case GGUF_TYPE_UINT64: kv->v.u64 = load_u64le(p); break;
    case GGUF_TYPE_INT64: kv->v.i64 = (int64_t)load_u64le(p); break;
    case GGUF_TYPE_FLOAT32: { uint32_t u = load_u32le(p); float f; memcpy(&f, &u, 4); kv->v.f64 = f; break; }
    case GGUF_TYPE_FLOAT64: { uint64_t u = load_u64le(p); double d; memcpy(&d, &u, 8); kv->v.f64 = d; break; }
    case GGUF_TYPE_BOOL: kv->v.b = p[0] != 0; break;
    default: break;
    }
}

static int read_kv(Cursor *c, GGUFKV *kv, size_t index) {
    GStr key = {0};
    size_t at = c->off;
    if (rd_str(c, &key, "metadata key")) return err_prefix(c->e, "metadata entry %zu: ", index);
    if (key.len == 0) return ERR(c->e, "metadata entry %zu at offset %zu has an empty key", index, at);
    if (memchr(key.ptr, 0, key.len)) return ERR(c->e, "metadata entry %zu at offset %zu has a key containing a NUL byte", index, at);
    kv->key = xstrndup(key.ptr, key.len);
    uint32_t t;
    if (rd_u32(c, &t, "metadata value type")) return err_prefix(c->e, "key '%s': ", kv->key);
    if (t >= GGUF_TYPE_COUNT) return ERR(c->e, "key '%s': unknown value type %u at offset %zu", kv->key, t, c->off - 4);
    kv->type = (GGUFType)t;
    if (kv->type == GGUF_TYPE_STRING) {
        if (rd_str(c, &kv->v.str, "string value")) return err_prefix(c->e, "key '%s': ", kv->key);
        return 0;
    }
    if (kv->type != GGUF_TYPE_ARRAY) {
        size_t sz = gguf_type_size(kv->type);
        if (need(c, sz, "metadata value")) return err_prefix(c->e, "key '%s': ", kv->key);
        decode_scalar(kv->type, c->p + c->off, kv);
        c->off += sz;
        return 0;
    }
    uint32_t et;
    uint64_t count;
    if (rd_u32(c, &et, "array element type") || rd_u64(c, &count, "array length")) return err_prefix(c->e, "key '%s': ", kv->key);
    if (et >= GGUF_TYPE_COUNT) return ERR(c->e, "key '%s': unknown array element type %u", kv->key, et);
    if (et == GGUF_TYPE_ARRAY) return ERR(c->e, "key '%s': nested arrays are not supported", kv->key);
    kv->arr_type = (GGUFType)et;
    kv->arr_count = count;
    size_t remain = c->size - c->off;
    if (kv->arr_type == GGUF_TYPE_STRING) {
        // every string takes at least its 8-byte length: bound the count before allocating
        if (count > remain / 8)
            return ERR(c->e, "key '%s': array of %llu strings cannot fit in the %zu bytes left", kv->key, (unsigned long long)count, remain);
        kv->arr_str = xmalloc_array((size_t)count, sizeof(GStr));
        for (uint64_t i = 0; i < count; i++)
            if (rd_str(c, &kv->arr_str[i], "array string")) return err_prefix(c->e, "key '%s' element %llu: ", kv->key, (unsigned long long)i);
        return 0;
    }
    size_t esz = gguf_type_size(kv->arr_type), total;
    if (count > SIZE_MAX || !size_mul((size_t)count, esz, &total) || total > remain)
        return ERR(c->e, "key '%s': array of %llu %s elements cannot fit in the %zu bytes left", kv->key, (unsigned long long)count, gguf_type_name(kv->arr_type), remain);
    kv->arr_data = c->p + c->off;
    c->off += total;
    return 0;
}

static int cmp_offset(const void *a, const void *b) {
    const GGUFTensor *x = *(const GGUFTensor *const *)a, *y = *(const GGUFTensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static int read_tensor_info(Cursor *c, GGUFTensor *t, size_t index) {
    GStr name;
    if (rd_str(c, &name, "tensor name")) return err_prefix(c->e, "tensor %zu: ", index);
    if (name.len == 0 || memchr(name.ptr, 0, name.len)) return ERR(c->e, "tensor %zu has an empty name or one containing NUL", index);
    t->name = xstrndup(name.ptr, name.len);
    if (rd_u32(c, &t->n_dims, "tensor n_dims")) return err_prefix(c->e, "tensor '%s': ", t->name);
    if (t->n_dims == 0 || t->n_dims > GGUF_MAX_DIMS) return ERR(c->e, "tensor '%s': %u dimensions (1 to %d supported)", t->name, t->n_dims, GGUF_MAX_DIMS);
    uint64_t n = 1;
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        uint64_t v;
        if (rd_u64(c, &v, "tensor dimension")) return err_prefix(c->e, "tensor '%s': ", t->name);
        if (v == 0 || v > (uint64_t)INT64_MAX) return ERR(c->e, "tensor '%s': dimension %u is %llu", t->name, d, (unsigned long long)v);
        if (__builtin_mul_overflow(n, v, &n) || n > (uint64_t)INT64_MAX) return ERR(c->e, "tensor '%s': element count overflows", t->name);
        t->ne[d] = (int64_t)v;
    }
    t->n_elements = n;
    if (rd_u32(c, &t->type, "tensor type")) return err_prefix(c->e, "tensor '%s': ", t->name);
    const DTypeInfo *di = dtype_info(t->type);
    if (!di) return ERR(c->e, "tensor '%s': unknown type %u", t->name, t->type);
    if (t->ne[0] % di->block_size != 0)
        return ERR(c->e, "tensor '%s': row length %lld is not a multiple of the %s block size %u", t->name, (long long)t->ne[0], di->name, di->block_size);
    Err sub;
    if (dtype_nbytes(t->type, n, &t->nbytes, &sub)) return ERR(c->e, "tensor '%s': %s", t->name, sub.msg);
    if (rd_u64(c, &t->offset, "tensor offset")) return err_prefix(c->e, "tensor '%s': ", t->name);
    return 0;
}

int gguf_parse(GGUFFile *g, const uint8_t *data, size_t size, const char *name, Err *e) {
    memset(g, 0, sizeof *g);
    g->base = data;
    g->size = size;
    g->name = xstrdup(name ? name : "(memory)");
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    Cursor c = {data, size, 0, e};
    if (size < 4 || memcmp(data, "GGUF", 4) != 0) {
        gguf_close(g);
        return ERR(e, "not a GGUF file (bad magic)");
    }
    c.off = 4;
    uint64_t n_tensors, n_kv;
    if (rd_u32(&c, &g->version, "version")) goto fail;
    if (g->version == 1) { ERR(e, "GGUF version 1 is not supported (convert it with a current llama.cpp)"); goto fail; }
    if (g->version != 2 && g->version != 3) {
        if ((g->version & 0xffff) == 0 && g->version != 0) ERR(e, "big-endian GGUF files are not supported");
        else ERR(e, "unsupported GGUF version %u (2 and 3 are supported)", g->version);
        goto fail;
    }
    if (rd_u64(&c, &n_tensors, "tensor count") || rd_u64(&c, &n_kv, "metadata count")) goto fail;
    // each KV takes at least 8 (key len) + 1 (key) + 4 (type) + 1 bytes; each tensor info at least 8+1+4+8+4+8
    if (n_kv > (size - c.off) / 14) { ERR(e, "metadata count %llu cannot fit in a %zu-byte file", (unsigned long long)n_kv, size); goto fail; }
    if (n_tensors > (size - c.off) / 33) { ERR(e, "tensor count %llu cannot fit in a %zu-byte file", (unsigned long long)n_tensors, size); goto fail; }
    g->kv = xcalloc((size_t)n_kv, sizeof *g->kv);
    for (uint64_t i = 0; i < n_kv; i++) {
        if (read_kv(&c, &g->kv[i], (size_t)i)) { g->n_kv = (size_t)i + 1; goto fail; }
        g->n_kv = (size_t)i + 1;
        for (size_t j = 0; j < (size_t)i; j++)
            if (strcmp(g->kv[j].key, g->kv[i].key) == 0) { ERR(e, "duplicate metadata key '%s'", g->kv[i].key); goto fail; }
    }
    const GGUFKV *al = gguf_find(g, "general.alignment");
    if (al) {
        if (!is_int_type(al->type)) { ERR(e, "general.alignment has type %s, expected an integer", gguf_type_name(al->type)); goto fail; }
        int64_t a = is_signed_type(al->type) ? al->v.i64 : (int64_t)al->v.u64;
        if (a <= 0 || a > (1 << 24) || (a & (a - 1)) != 0) { ERR(e, "general.alignment %lld is not a power of two", (long long)a); goto fail; }
        g->alignment = (size_t)a;
    }
    g->tensors = xcalloc((size_t)n_tensors, sizeof *g->tensors);
    for (uint64_t i = 0; i < n_tensors; i++) {
        g->n_tensors = (size_t)i + 1;
        if (read_tensor_info(&c, &g->tensors[i], (size_t)i)) goto fail;
    }
    if (!size_align_up(c.off, g->alignment, &g->data_offset)) { ERR(e, "data offset overflows"); goto fail; }
    if (n_tensors > 0 && g->data_offset > size) { ERR(e, "truncated file: tensor data would start at %zu, past the end (%zu)", g->data_offset, size); goto fail; }
    size_t data_size = size - (g->data_offset <= size ? g->data_offset : size);
    // check each tensor's extent, then overlaps in offset order
    GGUFTensor **order = xcalloc((size_t)n_tensors, sizeof *order);
    for (size_t i = 0; i < g->n_tensors; i++) {
        GGUFTensor *t = &g->tensors[i];
        order[i] = t;
        if (t->offset % g->alignment != 0) { ERR(e, "tensor '%s': offset %llu is not aligned to %zu", t->name, (unsigned long long)t->offset, g->alignment); free(order); goto fail; }
        if (t->offset > data_size || t->nbytes > data_size - t->offset) {
            ERR(e, "tensor '%s': data [%llu, +%zu) runs past the end of the file (data section is %zu bytes)", t->name, (unsigned long long)t->offset, t->nbytes, data_size);
            free(order);
            goto fail;
        }
        t->data = data + g->data_offset + t->offset;
        for (size_t j = 0; j < i; j++)
            if (strcmp(g->tensors[j].name, t->name) == 0) { ERR(e, "duplicate tensor name '%s'", t->name); free(order); goto fail; }
    }
    qsort(order, g->n_tensors, sizeof *order, cmp_offset);
    for (size_t i = 1; i < g->n_tensors; i++) {
        const GGUFTensor *a = order[i - 1], *b = order[i];
        if (a->offset + a->nbytes > b->offset) {
            ERR(e, "tensors '%s' and '%s' overlap in the data section", a->name, b->name);
            free(order);
            goto fail;
        }
    }
    free(order);
    return 0;
fail:
    gguf_close(g);
    return -1;
}

int gguf_open(GGUFFile *g, const char *path, Err *e) {
    FileMap m;
    if (filemap_open(&m, path, e)) {
        memset(g, 0, sizeof *g);
        return -1;
    }
    if (gguf_parse(g, m.data, m.size, path, e)) {
        filemap_close(&m);
        return -1;
    }
    g->map = m;
    return 0;
}

void gguf_close(GGUFFile *g) {
    for (size_t i = 0; i < g->n_kv; i++) {
        free(g->kv[i].key);
        free(g->kv[i].arr_str);
    }
    free(g->kv);
    for (size_t i = 0; i < g->n_tensors; i++) free(g->tensors[i].name);
    free(g->tensors);
    free(g->name);
    if (g->map.path) filemap_close(&g->map);
    memset(g, 0, sizeof *g);
}

const GGUFKV *gguf_find(const GGUFFile *g, const char *key) {
    for (size_t i = 0; i < g->n_kv; i++)
        if (strcmp(g->kv[i].key, key) == 0) return &g->kv[i];
    return NULL;
}

const GGUFTensor *gguf_find_tensor(const GGUFFile *g, const char *name) {
    for (size_t i = 0; i < g->n_tensors; i++)
        if (strcmp(g->tensors[i].name, name) == 0) return &g->tensors[i];
    return NULL;
}

static const GGUFKV *need_kv(const GGUFFile *g, const char *key, Err *e) {
    const GGUFKV *kv = gguf_find(g, key);
    if (!kv) ERR(e, "missing metadata key '%s'", key);
    return kv;
}

int gguf_get_int(const GGUFFile *g, const char *key, int64_t *out, Err *e) {
    const GGUFKV *kv = need_kv(g, key, e);
    if (!kv) return -1;
    if (!is_int_type(kv->type)) return ERR(e, "metadata key '%s' has type %s, expected an integer", key, gguf_type_name(kv->type));
    if (is_signed_type(kv->type)) *out = kv->v.i64;
    else {
        if (kv->v.u64 > (uint64_t)INT64_MAX) return ERR(e, "metadata key '%s' value %llu is too large", key, (unsigned long long)kv->v.u64);
        *out = (int64_t)kv->v.u64;
    }
    return 0;
}

int gguf_get_uint(const GGUFFile *g, const char *key, uint64_t *out, Err *e) {
    const GGUFKV *kv = need_kv(g, key, e);
    if (!kv) return -1;
    if (!is_int_type(kv->type)) return ERR(e, "metadata key '%s' has type %s, expected an integer", key, gguf_type_name(kv->type));
    if (is_signed_type(kv->type)) {
        if (kv->v.i64 < 0) return ERR(e, "metadata key '%s' is negative (%lld)", key, (long long)kv->v.i64);
        *out = (uint64_t)kv->v.i64;
    } else *out = kv->v.u64;
    return 0;
}

int gguf_get_float(const GGUFFile *g, const char *key, double *out, Err *e) {
    const GGUFKV *kv = need_kv(g, key, e);
    if (!kv) return -1;
    if (kv->type == GGUF_TYPE_FLOAT32 || kv->type == GGUF_TYPE_FLOAT64) *out = kv->v.f64;
    else if (is_int_type(kv->type)) *out = is_signed_type(kv->type) ? (double)kv->v.i64 : (double)kv->v.u64;
    else return ERR(e, "metadata key '%s' has type %s, expected a number", key, gguf_type_name(kv->type));
    return 0;
}

int gguf_get_bool(const GGUFFile *g, const char *key, bool *out, Err *e) {
    const GGUFKV *kv = need_kv(g, key, e);
    if (!kv) return -1;
    if (kv->type != GGUF_TYPE_BOOL) return ERR(e, "metadata key '%s' has type %s, expected bool", key, gguf_type_name(kv->type));
    *out = kv->v.b;
    return 0;
}

int gguf_get_str(const GGUFFile *g, const char *key, GStr *out, Err *e) {
    const GGUFKV *kv = need_kv(g, key, e);
    if (!kv) return -1;
    if (kv->type != GGUF_TYPE_STRING) return ERR(e, "metadata key '%s' has type %s, expected a string", key, gguf_type_name(kv->type));
    *out = kv->v.str;
    return 0;
}

int gguf_get_arr(const GGUFFile *g, const char *key, int elem_type, const GGUFKV **out, Err *e) {
    const GGUFKV *kv = need_kv(g, key, e);
    if (!kv) return -1;
    if (kv->type != GGUF_TYPE_ARRAY) return ERR(e, "metadata key '%s' has type %s, expected an array", key, gguf_type_name(kv->type));
    if (elem_type >= 0 && kv->arr_type != (GGUFType)elem_type)
        return ERR(e, "metadata key '%s' is an array of %s, expected %s", key, gguf_type_name(kv->arr_type), gguf_type_name((GGUFType)elem_type));
    *out = kv;
    return 0;
}

int64_t gguf_arr_int(const GGUFKV *kv, uint64_t i) {
    GGUFKV tmp = {0};
    size_t sz = gguf_type_size(kv->arr_type);
    if (i >= kv->arr_count || sz == 0) return 0;
    decode_scalar(kv->arr_type, kv->arr_data + i * sz, &tmp);
    if (kv->arr_type == GGUF_TYPE_FLOAT32 || kv->arr_type == GGUF_TYPE_FLOAT64) return (int64_t)tmp.v.f64;
    if (kv->arr_type == GGUF_TYPE_BOOL) return tmp.v.b;
    return is_signed_type(kv->arr_type) ? tmp.v.i64 : (int64_t)tmp.v.u64;
}

double gguf_arr_float(const GGUFKV *kv, uint64_t i) {
    GGUFKV tmp = {0};
    size_t sz = gguf_type_size(kv->arr_type);
    if (i >= kv->arr_count || sz == 0) return 0;
    decode_scalar(kv->arr_type, kv->arr_data + i * sz, &tmp);
    if (kv->arr_type == GGUF_TYPE_FLOAT32 || kv->arr_type == GGUF_TYPE_FLOAT64) return tmp.v.f64;
    if (kv->arr_type == GGUF_TYPE_BOOL) return tmp.v.b;
    return is_signed_type(kv->arr_type) ? (double)tmp.v.i64 : (double)tmp.v.u64;
}

int gguf_get_int_or(const GGUFFile *g, const char *key, int64_t def, int64_t *out, Err *e) {
    if (!gguf_find(g, key)) {
        *out = def;
        return 0;
    }
    return gguf_get_int(g, key, out, e);
}

int gguf_get_float_or(const GGUFFile *g, const char *key, double def, double *out, Err *e) {
    if (!gguf_find(g, key)) {
        *out = def;
        return 0;
    }
    return gguf_get_float(g, key, out, e);
}

// ---------------------------------------------------------------------------------------------------------------
// writer

typedef struct WKV {
    char *key;
    GGUFType type;
    GGUFType arr_type;
    uint64_t count;    // array length
    uint8_t *payload;  // encoded value bytes exactly as written after the type field (owned)
    size_t payload_len;
} WKV;

typedef struct WTensor {
    char *name;
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    uint32_t type;
    size_t nbytes;
    const void *data;
} WTensor;

struct GGUFWriter {
    WKV *kv;
    size_t n_kv, cap_kv;
    WTensor *t;
    size_t n_t, cap_t;
    size_t alignment;
};

GGUFWriter *gguf_writer_new(void) {
    GGUFWriter *w = xcalloc(1, sizeof *w);
    w->alignment = GGUF_DEFAULT_ALIGNMENT;
    return w;
}

void gguf_writer_free(GGUFWriter *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key);
        free(w->kv[i].payload);
    }
    for (size_t i = 0; i < w->n_t; i++) free(w->t[i].name);
    free(w->kv);
    free(w->t);
    free(w);
}

static WKV *slot(GGUFWriter *w, const char *key) {
    for (size_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->kv[i].key, key) == 0) {
            free(w->kv[i].payload);
            w->kv[i].payload = NULL;
            return &w->kv[i];
        }
    if (w->n_kv == w->cap_kv) {
        w->cap_kv = w->cap_kv ? w->cap_kv * 2 : 32;
        w->kv = xrealloc(w->kv, w->cap_kv * sizeof *w->kv);
    }
    WKV *k = &w->kv[w->n_kv++];
    memset(k, 0, sizeof *k);
    k->key = xstrdup(key);
    return k;
}

static void set_raw(GGUFWriter *w, const char *key, GGUFType t, const void *p, size_t n) {
    WKV *k = slot(w, key);
    k->type = t;
    k->payload = xmalloc(n);
    memcpy(k->payload, p, n); // host is little-endian (x86-64, aarch64)
    k->payload_len = n;
}

void gguf_writer_set_u8(GGUFWriter *w, const char *key, uint8_t v) { set_raw(w, key, GGUF_TYPE_UINT8, &v, 1); }
void gguf_writer_set_i8(GGUFWriter *w, const char *key, int8_t v) { set_raw(w, key, GGUF_TYPE_INT8, &v, 1); }
void gguf_writer_set_u16(GGUFWriter *w, const char *key, uint16_t v) { set_raw(w, key, GGUF_TYPE_UINT16, &v, 2); }
void gguf_writer_set_i16(GGUFWriter *w, const char *key, int16_t v) { set_raw(w, key, GGUF_TYPE_INT16, &v, 2); }
void gguf_writer_set_u32(GGUFWriter *w, const char *key, uint32_t v) { set_raw(w, key, GGUF_TYPE_UINT32, &v, 4); }
void gguf_writer_set_i32(GGUFWriter *w, const char *key, int32_t v) { set_raw(w, key, GGUF_TYPE_INT32, &v, 4); }
void gguf_writer_set_u64(GGUFWriter *w, const char *key, uint64_t v) { set_raw(w, key, GGUF_TYPE_UINT64, &v, 8); }
void gguf_writer_set_i64(GGUFWriter *w, const char *key, int64_t v) { set_raw(w, key, GGUF_TYPE_INT64, &v, 8); }
void gguf_writer_set_f32(GGUFWriter *w, const char *key, float v) { set_raw(w, key, GGUF_TYPE_FLOAT32, &v, 4); }
void gguf_writer_set_f64(GGUFWriter *w, const char *key, double v) { set_raw(w, key, GGUF_TYPE_FLOAT64, &v, 8); }
void gguf_writer_set_bool(GGUFWriter *w, const char *key, bool v) {
    uint8_t b = v ? 1 : 0;
    set_raw(w, key, GGUF_TYPE_BOOL, &b, 1);
}

static void put_str(Buf *b, const char *s, size_t len) {
    uint64_t n = len;
    buf_append(b, &n, 8);
    buf_append(b, s, len);
}

void gguf_writer_set_strn(GGUFWriter *w, const char *key, const char *v, size_t len) {
    Buf b;
    buf_init(&b);
    put_str(&b, v, len);
    set_raw(w, key, GGUF_TYPE_STRING, b.data, b.len);
    buf_free(&b);
}
void gguf_writer_set_str(GGUFWriter *w, const char *key, const char *v) { gguf_writer_set_strn(w, key, v, strlen(v)); }

void gguf_writer_set_arr(GGUFWriter *w, const char *key, GGUFType elem_type, const void *data, size_t n) {
    size_t esz = gguf_type_size(elem_type), total;
    if (esz == 0 || !size_mul(esz, n, &total)) abort(); // programming error: callers pass numeric types
    Buf b;
    buf_init(&b);
    uint32_t et = elem_type;
    uint64_t cnt = n;
    buf_append(&b, &et, 4);
    buf_append(&b, &cnt, 8);
    buf_append(&b, data, total);
    set_raw(w, key, GGUF_TYPE_ARRAY, b.data, b.len);
    buf_free(&b);
}

void gguf_writer_set_arr_str(GGUFWriter *w, const char *key, const char *const *strs, const size_t *lens, size_t n) {
    Buf b;
    buf_init(&b);
    uint32_t et = GGUF_TYPE_STRING;
    uint64_t cnt = n;
    buf_append(&b, &et, 4);
    buf_append(&b, &cnt, 8);
    for (size_t i = 0; i < n; i++) put_str(&b, strs[i], lens ? lens[i] : strlen(strs[i]));
    set_raw(w, key, GGUF_TYPE_ARRAY, b.data, b.len);
    buf_free(&b);
}

void gguf_writer_copy_kv(GGUFWriter *w, const GGUFKV *kv) {
    switch (kv->type) {
    case GGUF_TYPE_UINT8: gguf_writer_set_u8(w, kv->key, (uint8_t)kv->v.u64); break;
    case GGUF_TYPE_INT8: gguf_writer_set_i8(w, kv->key, (int8_t)kv->v.i64); break;
    case GGUF_TYPE_UINT16: gguf_writer_set_u16(w, kv->key, (uint16_t)kv->v.u64); break;
    case GGUF_TYPE_INT16: gguf_writer_set_i16(w, kv->key, (int16_t)kv->v.i64); break;
    case GGUF_TYPE_UINT32: gguf_writer_set_u32(w, kv->key, (uint32_t)kv->v.u64); break;
    case GGUF_TYPE_INT32: gguf_writer_set_i32(w, kv->key, (int32_t)kv->v.i64); break;
    case GGUF_TYPE_UINT64: gguf_writer_set_u64(w, kv->key, kv->v.u64); break;
    case GGUF_TYPE_INT64: gguf_writer_set_i64(w, kv->key, kv->v.i64); break;
    case GGUF_TYPE_FLOAT32: gguf_writer_set_f32(w, kv->key, (float)kv->v.f64); break;
    case GGUF_TYPE_FLOAT64: gguf_writer_set_f64(w, kv->key, kv->v.f64); break;
    case GGUF_TYPE_BOOL: gguf_writer_set_bool(w, kv->key, kv->v.b); break;
    case GGUF_TYPE_STRING: gguf_writer_set_strn(w, kv->key, kv->v.str.ptr, kv->v.str.len); break;
    case GGUF_TYPE_ARRAY:
        if (kv->arr_type == GGUF_TYPE_STRING) {
            const char **s = xmalloc_array((size_t)kv->arr_count, sizeof *s);
            size_t *l = xmalloc_array((size_t)kv->arr_count, sizeof *l);
            for (uint64_t i = 0; i < kv->arr_count; i++) s[i] = kv->arr_str[i].ptr, l[i] = kv->arr_str[i].len;
            gguf_writer_set_arr_str(w, kv->key, s, l, (size_t)kv->arr_count);
            free(s);
            free(l);
        } else {
            gguf_writer_set_arr(w, kv->key, kv->arr_type, kv->arr_data, (size_t)kv->arr_count);
        }
        break;
    default: break;
    }
}

void gguf_writer_set_alignment(GGUFWriter *w, size_t alignment) {
    w->alignment = alignment;
    gguf_writer_set_u32(w, "general.alignment", (uint32_t)alignment);
}

int gguf_writer_add_tensor(GGUFWriter *w, const char *name, uint32_t type, uint32_t n_dims, const int64_t *ne,
                           const void *data, Err *e) {
    if (n_dims == 0 || n_dims > GGUF_MAX_DIMS) return ERR(e, "tensor '%s': %u dimensions", name, n_dims);
    for (size_t i = 0; i < w->n_t; i++)
        if (strcmp(w->t[i].name, name) == 0) return ERR(e, "duplicate tensor name '%s'", name);
    uint64_t n = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        if (ne[d] <= 0 || __builtin_mul_overflow(n, (uint64_t)ne[d], &n)) return ERR(e, "tensor '%s': bad dimension %lld", name, (long long)ne[d]);
    }
    size_t nbytes;
    if (dtype_nbytes(type, n, &nbytes, e)) return err_prefix(e, "tensor '%s': ", name);
    const DTypeInfo *di = dtype_info(type);
    if (ne[0] % di->block_size) return ERR(e, "tensor '%s': row length %lld not a multiple of %u", name, (long long)ne[0], di->block_size);
    if (w->n_t == w->cap_t) {
        w->cap_t = w->cap_t ? w->cap_t * 2 : 64;
        w->t = xrealloc(w->t, w->cap_t * sizeof *w->t);
    }
    WTensor *t = &w->t[w->n_t++];
    memset(t, 0, sizeof *t);
    t->name = xstrdup(name);
    t->n_dims = n_dims;
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = d < n_dims ? ne[d] : 1;
    t->type = type;
    t->nbytes = nbytes;
    t->data = data;
    return 0;
}

static int write_pad(FILE *f, size_t *pos, size_t align, Err *e) {
    static const uint8_t zeros[64];
    size_t target;
    if (!size_align_up(*pos, align, &target)) return ERR(e, "offset overflow");
    while (*pos < target) {
        size_t n = target - *pos < sizeof zeros ? target - *pos : sizeof zeros;
        if (file_write_checked(f, zeros, n, "padding", e)) return -1;
        *pos += n;
    }
    return 0;
}

int gguf_writer_write_stream(GGUFWriter *w, FILE *f, Err *e) {
    Buf h;
    buf_init(&h);
    uint32_t version = 3;
    uint64_t nt = w->n_t, nkv = w->n_kv;
    buf_append(&h, "GGUF", 4);
    buf_append(&h, &version, 4);
    buf_append(&h, &nt, 8);
    buf_append(&h, &nkv, 8);
    for (size_t i = 0; i < w->n_kv; i++) {
        put_str(&h, w->kv[i].key, strlen(w->kv[i].key));
        uint32_t t = w->kv[i].type;
        buf_append(&h, &t, 4);
        buf_append(&h, w->kv[i].payload, w->kv[i].payload_len);
    }
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        WTensor *t = &w->t[i];
        put_str(&h, t->name, strlen(t->name));
        buf_append(&h, &t->n_dims, 4);
        for (uint32_t d = 0; d < t->n_dims; d++) {
            uint64_t v = (uint64_t)t->ne[d];
            buf_append(&h, &v, 8);
        }
        buf_append(&h, &t->type, 4);
        buf_append(&h, &off, 8);
        size_t next;
        if (!size_add((size_t)off, t->nbytes, &next) || !size_align_up(next, w->alignment, &next)) {
            buf_free(&h);
            return ERR(e, "file too large");
        }
        off = next;
    }
    size_t pos = h.len;
    int rc = file_write_checked(f, h.data, h.len, "GGUF header", e);
    buf_free(&h);
    if (rc) return -1;
    if (w->n_t && write_pad(f, &pos, w->alignment, e)) return -1;
    for (size_t i = 0; i < w->n_t; i++) {
        if (file_write_checked(f, w->t[i].data, w->t[i].nbytes, w->t[i].name, e)) return -1;
        pos += w->t[i].nbytes;
        if (write_pad(f, &pos, w->alignment, e)) return -1;
    }
    return 0;
}

static int write_cb(FILE *f, void *ctx, Err *e) { return gguf_writer_write_stream(ctx, f, e); }

int gguf_writer_write(GGUFWriter *w, const char *path, Err *e) { return file_write_atomic(path, write_cb, w, e); }
