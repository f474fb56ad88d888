// test_model_variants.c — Hugging Face architecture variants against an independent double-precision reference.
//
// The shipped fixtures (../shared/fixtures/hf) cover three configurations checked against transformers itself. This
// file covers the rest of what hfconfig.c / weights.c / convert.c accept: each test writes a tiny random model as a
// Hugging Face directory (config.json + model.safetensors, or two shards and model.safetensors.index.json), loads it
// with model_load, and compares every logit of a short prompt — through the prompt-chunk path (model_forward_all)
// and the one-token decoding path (model_forward) — with a naive forward pass written here in double precision from
// transformers' semantics (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, GPT2LMHeadModel):
//   - RoPE as rotate_half on the q/k rows as stored (pair (i, i + hd/2)), inv_freq = 1 / theta^(2i/hd), Llama 3.1
//     scaling as transformers' _compute_llama3_parameters (low band / factor, high band kept, medium band blended);
//   - repeat_kv: query head h reads key/value head h / (H / Hkv);
//   - RMSNorm x * rsqrt(mean(x^2) + eps) * w; LayerNorm with biased variance; SiLU-gated MLP; GPT-2 gelu_new;
//   - GPT-2 Conv1D weights (in, out): y = x W + b; fused c_attn split q | k | v; learned positions; tied lm_head;
//   - causal softmax attention scaled by 1/sqrt(head_dim); Mistral's sliding window (key j visible from i iff
//     i - j < sliding_window, transformers' sliding_window_overlay).
// The reference reads the weights as stored (rounded to the storage dtype), so F16/BF16 storage needs no looser
// bound: what is left is lossy's f32 arithmetic, measured at 2e-7 .. 7e-7 rel L2 for every variant and dtype (F16/BF16
// weights are exact in f32, and the CPU kernels multiply them with f32 activations). The bound, 1e-5 for all of
// them, keeps a 10x margin; VARIANT_TOL_HALF is kept apart so that a kernel rounding activations to the weights'
// dtype would have one place to state its (much looser, ~1e-2) bound.
// Each model is then written to GGUF at f32 by model_write_gguf (what `lossy convert` calls) and the GGUF file must
// give the same logits within the same bound (llama q/k rows permuted to the interleaved order, llama3 scaling as
// rope_freqs.weight, GPT-2's tied output written out, the sliding window as <arch>.attention.sliding_window).
// One malformed directory per family checks for a clear error naming the tensor or key.
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model/convert.h"
#include "model/model.h"
#include "safetensors_writer.h"
#include "test.h"

#define VARIANT_TOL 1e-5      // rel L2 of all logits, F32 storage
#define VARIANT_TOL_HALF 1e-5 // F16/BF16 storage: the reference uses the rounded weights, lossy f32 arithmetic
#define N_TOK 9               // prompt length (positions 0..8)
#define MAX_PARAMS 64

// rope_scaling: none; llama3 in the older `rope_scaling` {"rope_type"} or the newer `rope_parameters` style; linear in
// the oldest style (`rope_scaling` {"type": "linear"})
typedef enum Rope { ROPE_PLAIN = 0, ROPE_LLAMA3_OLD, ROPE_LLAMA3_NEW, ROPE_LINEAR_OLD } Rope;

typedef struct Spec {
    const char *model_type; // llama, mistral, qwen2, gpt2
    const char *arch;       // architectures[0]
    const char *st_dtype;   // F32, F16, BF16 (every tensor)
    int64_t V, C, F, L, H, Hkv, hd; // hd written as head_dim when != C / H
    int64_t n_ctx;
    double eps, theta;
    Rope rope;
    double factor, low, high;
    int64_t orig_ctx;
    bool bias_qkv;  // Qwen2 (always), Llama attention_bias (with bias_o)
    bool bias_o;    // Llama attention_bias
    bool bias_mlp;  // Llama mlp_bias
    bool tied;
    int64_t window; // sliding_window (0: null)
    int shards;     // 1: model.safetensors; 2: two shards + index
} Spec;

typedef struct Param {
    char name[96];
    int ndim;
    int64_t shape[4];
    size_t n;
    double *v; // as stored: already rounded to the storage dtype
} Param;

typedef struct Ref {
    Spec s;
    Param p[MAX_PARAMS];
    int n;
} Ref;

static bool is_gpt2(const Spec *s) { return strcmp(s->model_type, "gpt2") == 0; }

static double gauss(void) {
    double u1 = 1.0 - test_rand_uniform(), u2 = test_rand_uniform();
    return sqrt(-2 * log(u1)) * cos(2 * M_PI * u2);
}

static double round_to(const char *dt, double x) {
    float f = (float)x;
    if (!strcmp(dt, "F16")) return fp16_to_fp32(fp32_to_fp16(f));
    if (!strcmp(dt, "BF16")) return bf16_to_fp32(fp32_to_bf16(f));
    return f;
}

// A random parameter: offset + scale * N(0, 1), rounded to the storage dtype. cols 0: a vector of rows elements.
static Param *add_param(Ref *r, const char *name, int64_t rows, int64_t cols, double scale, double offset) {
    if (r->n >= MAX_PARAMS) abort();
    Param *p = &r->p[r->n++];
    snprintf(p->name, sizeof p->name, "%s", name);
    p->ndim = cols ? 2 : 1;
    p->shape[0] = rows;
    p->shape[1] = cols;
    p->n = (size_t)(rows * (cols ? cols : 1));
    p->v = xmalloc_array(p->n, sizeof(double));
    for (size_t i = 0; i < p->n; i++) p->v[i] = round_to(r->s.st_dtype, offset + scale * gauss());
    return p;
}

static const double *get(const Ref *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static const double *get(const Ref *r, const char *fmt, ...) {
    char name[96];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    for (int i = 0; i < r->n; i++)
        if (!strcmp(r->p[i].name, name)) return r->p[i].v;
    fprintf(stderr, "test bug: no parameter %s\n", name);
    abort();
}

static void ref_free(Ref *r) {
    for (int i = 0; i < r->n; i++) free(r->p[i].v);
    r->n = 0;
}

static Param *find_param(Ref *r, const char *name) {
    for (int i = 0; i < r->n; i++)
        if (!strcmp(r->p[i].name, name)) return &r->p[i];
    return NULL;
}

static void drop_param(Ref *r, const char *name) {
    Param *p = find_param(r, name);
    if (!p) abort();
    free(p->v);
    *p = r->p[--r->n];
}

// The random weights of spec s, named as transformers saves them.
static void make_params(Ref *r, const Spec *s) {
    memset(r, 0, sizeof *r);
    r->s = *s;
    const int64_t V = s->V, C = s->C, F = s->F, H = s->H, Hkv = s->Hkv, hd = s->hd;
    char n[96];
    if (is_gpt2(s)) {
        // original GPT-2 checkpoint names (no "transformer." prefix; the fixture has the prefixed form)
        add_param(r, "wte.weight", V, C, 0.5, 0);
        add_param(r, "wpe.weight", s->n_ctx, C, 0.3, 0);
        for (int64_t l = 0; l < s->L; l++) {
#define N(x) (snprintf(n, sizeof n, "h.%lld." x, (long long)l), n)
            add_param(r, N("ln_1.weight"), C, 0, 0.1, 1);
            add_param(r, N("ln_1.bias"), C, 0, 0.1, 0);
            add_param(r, N("attn.c_attn.weight"), C, 3 * C, 0.25, 0); // Conv1D (in, out)
            add_param(r, N("attn.c_attn.bias"), 3 * C, 0, 0.1, 0);
            add_param(r, N("attn.c_proj.weight"), C, C, 0.15, 0);
            add_param(r, N("attn.c_proj.bias"), C, 0, 0.1, 0);
            add_param(r, N("ln_2.weight"), C, 0, 0.1, 1);
            add_param(r, N("ln_2.bias"), C, 0, 0.1, 0);
            add_param(r, N("mlp.c_fc.weight"), C, F, 0.2, 0);
            add_param(r, N("mlp.c_fc.bias"), F, 0, 0.1, 0);
            add_param(r, N("mlp.c_proj.weight"), F, C, 0.1, 0);
            add_param(r, N("mlp.c_proj.bias"), C, 0, 0.1, 0);
            // the causal-mask buffer older checkpoints carry: not a weight, must be skipped
            Param *m = add_param(r, N("attn.bias"), s->n_ctx, s->n_ctx, 0, 0);
            m->ndim = 4, m->shape[0] = 1, m->shape[1] = 1, m->shape[2] = s->n_ctx, m->shape[3] = s->n_ctx;
            for (int64_t i = 0; i < s->n_ctx; i++)
                for (int64_t j = 0; j <= i; j++) m->v[i * s->n_ctx + j] = 1;
#undef N
        }
        add_param(r, "ln_f.weight", C, 0, 0.1, 1);
        add_param(r, "ln_f.bias", C, 0, 0.1, 0);
        return;
    }
    add_param(r, "model.embed_tokens.weight", V, C, 1.0, 0);
    for (int64_t l = 0; l < s->L; l++) {
#define N(x) (snprintf(n, sizeof n, "model.layers.%lld." x, (long long)l), n)
        add_param(r, N("input_layernorm.weight"), C, 0, 0.1, 1);
        add_param(r, N("self_attn.q_proj.weight"), H * hd, C, 0.3, 0);
        add_param(r, N("self_attn.k_proj.weight"), Hkv * hd, C, 0.3, 0);
        add_param(r, N("self_attn.v_proj.weight"), Hkv * hd, C, 0.3, 0);
        if (s->bias_qkv) {
            add_param(r, N("self_attn.q_proj.bias"), H * hd, 0, 0.2, 0);
            add_param(r, N("self_attn.k_proj.bias"), Hkv * hd, 0, 0.2, 0);
            add_param(r, N("self_attn.v_proj.bias"), Hkv * hd, 0, 0.2, 0);
        }
        add_param(r, N("self_attn.o_proj.weight"), C, H * hd, 0.15, 0);
        if (s->bias_o) add_param(r, N("self_attn.o_proj.bias"), C, 0, 0.2, 0);
        add_param(r, N("post_attention_layernorm.weight"), C, 0, 0.1, 1);
        add_param(r, N("mlp.gate_proj.weight"), F, C, 0.2, 0);
        add_param(r, N("mlp.up_proj.weight"), F, C, 0.2, 0);
        add_param(r, N("mlp.down_proj.weight"), C, F, 0.15, 0);
        if (s->bias_mlp) {
            add_param(r, N("mlp.gate_proj.bias"), F, 0, 0.2, 0);
            add_param(r, N("mlp.up_proj.bias"), F, 0, 0.2, 0);
            add_param(r, N("mlp.down_proj.bias"), C, 0, 0.2, 0);
        }
#undef N
    }
    add_param(r, "model.norm.weight", C, 0, 0.1, 1);
    if (!s->tied) add_param(r, "lm_head.weight", V, C, 0.2, 0);
}

// ---- files ----

static void write_bytes(const char *path, const void *p, size_t n) {
    Err e;
    if (file_write_atomic_bytes(path, p, n, &e) != 0) test_fail_at(__FILE__, __LINE__, "%s", e.msg);
}

// One safetensors file with params [i0, i1) in the spec's storage dtype; returns its data bytes.
static size_t write_st(const char *path, const Ref *r, int i0, int i1) {
    const char *dt = r->s.st_dtype;
    const size_t esz = strcmp(dt, "F32") ? 2 : 4;
    TT *ts = xcalloc((size_t)(i1 > i0 ? i1 - i0 : 1), sizeof *ts);
    Buf d;
    buf_init(&d);
    for (int i = i0; i < i1; i++) {
        const Param *p = &r->p[i];
        for (size_t k = 0; k < p->n; k++) {
            float f = (float)p->v[k];
            uint16_t u = !strcmp(dt, "F16") ? fp32_to_fp16(f) : fp32_to_bf16(f);
            if (esz == 4) buf_append(&d, &f, 4);
            else buf_append(&d, &u, 2);
        }
        TT *t = &ts[i - i0];
        t->name = p->name, t->dtype = dt, t->ndim = p->ndim, t->nbytes = p->n * esz;
        for (int k = 0; k < p->ndim; k++) t->shape[k] = p->shape[k];
    }
    size_t at = 0; // the data pointers once d no longer moves
    for (int i = 0; i < i1 - i0; i++) ts[i].data = d.data + at, at += ts[i].nbytes;
    Buf out;
    make_st(&out, ts, (size_t)(i1 - i0), "\"format\":\"pt\"");
    write_bytes(path, out.data, out.len);
    const size_t data_bytes = d.len;
    buf_free(&out);
    buf_free(&d);
    free(ts);
    return data_bytes;
}

static void write_config(const char *dir, const Spec *s) {
    Buf b;
    buf_init(&b);
    const char *torch = !strcmp(s->st_dtype, "F16") ? "float16" : !strcmp(s->st_dtype, "BF16") ? "bfloat16" : "float32";
    buf_printf(&b, "{\n  \"architectures\": [\"%s\"],\n  \"model_type\": \"%s\",\n  \"torch_dtype\": \"%s\",\n",
               s->arch, s->model_type, torch);
    buf_printf(&b, "  \"vocab_size\": %lld,\n  \"tie_word_embeddings\": %s,\n", (long long)s->V, s->tied ? "true" : "false");
    if (is_gpt2(s)) {
        char inner[32]; // null means 4 x n_embd
        if (s->F == 4 * s->C) snprintf(inner, sizeof inner, "null");
        else snprintf(inner, sizeof inner, "%lld", (long long)s->F);
        buf_printf(&b, "  \"n_embd\": %lld, \"n_layer\": %lld, \"n_head\": %lld, \"n_positions\": %lld, \"n_ctx\": %lld,\n"
                       "  \"n_inner\": %s, \"activation_function\": \"gelu_new\", \"layer_norm_epsilon\": %.17g,\n"
                       "  \"scale_attn_weights\": true, \"scale_attn_by_inverse_layer_idx\": false,\n"
                       "  \"reorder_and_upcast_attn\": false, \"bos_token_id\": 50256, \"eos_token_id\": 50256\n}\n",
                   (long long)s->C, (long long)s->L, (long long)s->H, (long long)s->n_ctx, (long long)s->n_ctx,
                   inner, s->eps);
    } else {
        buf_printf(&b, "  \"hidden_size\": %lld, \"intermediate_size\": %lld, \"num_hidden_layers\": %lld,\n"
                       "  \"num_attention_heads\": %lld, \"num_key_value_heads\": %lld, \"max_position_embeddings\": %lld,\n"
                       "  \"rms_norm_eps\": %.17g, \"hidden_act\": \"silu\",\n"
                       "  \"bos_token_id\": 1, \"eos_token_id\": 2,\n",
                   (long long)s->C, (long long)s->F, (long long)s->L, (long long)s->H, (long long)s->Hkv,
                   (long long)s->n_ctx, s->eps);
        if (s->hd * s->H != s->C) buf_printf(&b, "  \"head_dim\": %lld,\n", (long long)s->hd);
        if (strcmp(s->model_type, "qwen2") != 0) // Qwen2's biases are implied by the model type
            buf_printf(&b, "  \"attention_bias\": %s, \"mlp_bias\": %s,\n", s->bias_o ? "true" : "false",
                       s->bias_mlp ? "true" : "false");
        if (!strcmp(s->model_type, "qwen2"))
            buf_printf(&b, "  \"use_sliding_window\": false, \"sliding_window\": 4096, \"max_window_layers\": %lld,\n",
                       (long long)s->L);
        if (!strcmp(s->model_type, "mistral")) {
            if (s->window) buf_printf(&b, "  \"sliding_window\": %lld,\n", (long long)s->window);
            else buf_printf(&b, "  \"sliding_window\": null,\n");
        }
        char l3[256];
        snprintf(l3, sizeof l3, "\"rope_type\": \"llama3\", \"factor\": %.17g, \"low_freq_factor\": %.17g, "
                                "\"high_freq_factor\": %.17g, \"original_max_position_embeddings\": %lld",
                 s->factor, s->low, s->high, (long long)s->orig_ctx);
        if (s->rope == ROPE_LLAMA3_OLD)
            buf_printf(&b, "  \"rope_theta\": %.17g,\n  \"rope_scaling\": {%s}\n}\n", s->theta, l3);
        else if (s->rope == ROPE_LLAMA3_NEW) // transformers 5: theta inside, no top-level rope_theta
            buf_printf(&b, "  \"rope_parameters\": {\"rope_theta\": %.17g, %s}\n}\n", s->theta, l3);
        else if (s->rope == ROPE_LINEAR_OLD)
            buf_printf(&b, "  \"rope_theta\": %.17g,\n  \"rope_scaling\": {\"type\": \"linear\", \"factor\": %.17g}\n}\n",
                       s->theta, s->factor);
        else
            buf_printf(&b, "  \"rope_theta\": %.17g,\n  \"rope_scaling\": null\n}\n", s->theta);
    }
    char path[4300];
    snprintf(path, sizeof path, "%s/config.json", dir);
    write_bytes(path, b.data, b.len);
    buf_free(&b);
}

// A Hugging Face directory for r under the test's tmpdir; returns its path (static buffer).
static const char *write_hf_dir(const Ref *r, const char *sub) {
    static char dir[4200];
    snprintf(dir, sizeof dir, "%s/%s", test_tmpdir(), sub);
    mkdir(dir, 0755);
    write_config(dir, &r->s);
    char path[4300];
    if (r->s.shards <= 1) {
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        write_st(path, r, 0, r->n);
        return dir;
    }
    // two shards split in the middle of a layer, as save_pretrained's max_shard_size does
    int mid = r->n / 2;
    static const char *names[2] = {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"};
    size_t total = 0;
    for (int k = 0; k < 2; k++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[k]);
        total += write_st(path, r, k ? mid : 0, k ? r->n : mid);
    }
    Buf b;
    buf_init(&b);
    buf_printf(&b, "{\"metadata\": {\"total_size\": %zu}, \"weight_map\": {", total);
    for (int i = 0; i < r->n; i++) buf_printf(&b, "%s\"%s\": \"%s\"", i ? ", " : "", r->p[i].name, names[i >= mid]);
    buf_append_str(&b, "}}\n");
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    write_bytes(path, b.data, b.len);
    buf_free(&b);
    return dir;
}

// ---- the reference forward pass (double precision, transformers semantics) ----

// Rotary inverse frequencies: default rope, then transformers' _compute_llama3_parameters when scaled.
static void ref_inv_freq(const Spec *s, bool scaled, double *inv) {
    const int64_t hd = s->hd;
    for (int64_t i = 0; i < hd / 2; i++) inv[i] = 1.0 / pow(s->theta, (double)(2 * i) / (double)hd);
    if (!scaled || s->rope == ROPE_PLAIN) return;
    if (s->rope == ROPE_LINEAR_OLD) { // _compute_linear_scaling_rope_parameters
        for (int64_t i = 0; i < hd / 2; i++) inv[i] /= s->factor;
        return;
    }
    double low_wavelen = (double)s->orig_ctx / s->low, high_wavelen = (double)s->orig_ctx / s->high;
    for (int64_t i = 0; i < hd / 2; i++) {
        double wavelen = 2 * M_PI / inv[i];
        double llama = wavelen > low_wavelen ? inv[i] / s->factor : inv[i];
        double smooth = ((double)s->orig_ctx / wavelen - s->low) / (s->high - s->low);
        double smoothed = (1 - smooth) * llama / s->factor + smooth * llama;
        bool medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
        inv[i] = medium ? smoothed : llama;
    }
}

// Frequencies of spec s in each llama3 band: [0] kept (short wavelengths), [1] blended, [2] divided by factor.
static void llama3_bands(const Spec *s, int count[3]) {
    double inv[256];
    ref_inv_freq(s, false, inv);
    count[0] = count[1] = count[2] = 0;
    for (int64_t i = 0; i < s->hd / 2; i++) {
        double wl = 2 * M_PI / inv[i];
        count[wl < (double)s->orig_ctx / s->high ? 0 : wl > (double)s->orig_ctx / s->low ? 2 : 1]++;
    }
}

// y (out) = W x (in), W row-major (out, in) as nn.Linear stores it; bias may be NULL.
static void linear(double *y, const double *W, const double *b, const double *x, int64_t in, int64_t out) {
    for (int64_t o = 0; o < out; o++) {
        double acc = b ? b[o] : 0;
        for (int64_t i = 0; i < in; i++) acc += W[o * in + i] * x[i];
        y[o] = acc;
    }
}

// y (out) = x W + b, W row-major (in, out): GPT-2's Conv1D.
static void conv1d(double *y, const double *W, const double *b, const double *x, int64_t in, int64_t out) {
    for (int64_t o = 0; o < out; o++) {
        double acc = b[o];
        for (int64_t i = 0; i < in; i++) acc += x[i] * W[i * out + o];
        y[o] = acc;
    }
}

static void rmsnorm(double *y, const double *x, const double *w, int64_t n, double eps) {
    double ss = 0;
    for (int64_t i = 0; i < n; i++) ss += x[i] * x[i];
    double r = 1.0 / sqrt(ss / (double)n + eps);
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * r * w[i];
}

static void layernorm(double *y, const double *x, const double *w, const double *b, int64_t n, double eps) {
    double mean = 0, var = 0;
    for (int64_t i = 0; i < n; i++) mean += x[i];
    mean /= (double)n;
    for (int64_t i = 0; i < n; i++) var += (x[i] - mean) * (x[i] - mean);
    var /= (double)n; // torch layer_norm: biased variance
    double r = 1.0 / sqrt(var + eps);
    for (int64_t i = 0; i < n; i++) y[i] = (x[i] - mean) * r * w[i] + b[i];
}

// rotate_half: q * cos + rotate_half(q) * sin with cos/sin = cat(freqs, freqs).
static void rope_head(double *q, int64_t hd, const double *inv, int64_t pos) {
    for (int64_t i = 0; i < hd / 2; i++) {
        double a = (double)pos * inv[i], c = cos(a), s = sin(a);
        double x1 = q[i], x2 = q[i + hd / 2];
        q[i] = x1 * c - x2 * s;
        q[i + hd / 2] = x2 * c + x1 * s;
    }
}

// Causal attention for all T positions: q (T, H*hd), k/v (T, Hkv*hd) → out (T, H*hd).
static void attention(double *out, const double *q, const double *k, const double *v, int64_t T, int64_t H,
                      int64_t Hkv, int64_t hd, int64_t window) {
    double *p = xmalloc_array((size_t)T, sizeof(double));
    const int64_t rep = H / Hkv; // repeat_kv: kv head g serves query heads g*rep .. g*rep + rep - 1
    for (int64_t t = 0; t < T; t++)
        for (int64_t h = 0; h < H; h++) {
            const int64_t g = h / rep;
            const double *qh = q + t * H * hd + h * hd;
            double mx = -INFINITY, sum = 0;
            for (int64_t j = 0; j <= t; j++) {
                if (window && t - j >= window) {
                    p[j] = -INFINITY;
                    continue;
                }
                double s = 0;
                for (int64_t d = 0; d < hd; d++) s += qh[d] * k[j * Hkv * hd + g * hd + d];
                p[j] = s / sqrt((double)hd);
                if (p[j] > mx) mx = p[j];
            }
            for (int64_t j = 0; j <= t; j++) sum += p[j] = p[j] == -INFINITY ? 0 : exp(p[j] - mx);
            double *o = out + t * H * hd + h * hd;
            for (int64_t d = 0; d < hd; d++) {
                double acc = 0;
                for (int64_t j = 0; j <= t; j++) acc += p[j] * v[j * Hkv * hd + g * hd + d];
                o[d] = acc / sum;
            }
        }
    free(p);
}

static double gelu_new(double x) { return 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x))); }
static double silu(double x) { return x / (1 + exp(-x)); }

// logits (T, V) for ids; scaled = false drops llama3 scaling (to show the test can tell it apart).
static void ref_forward(const Ref *r, const int32_t *ids, int64_t T, bool scaled, double *logits) {
    const Spec *s = &r->s;
    const int64_t C = s->C, F = s->F, H = s->H, Hkv = s->Hkv, hd = s->hd, V = s->V;
    const bool g2 = is_gpt2(s);
    double *x = xcalloc((size_t)(T * C), sizeof(double));        // (T, C) residual
    double *h = xmalloc_array((size_t)C, sizeof(double));         // (C)
    double *q = xmalloc_array((size_t)(T * H * hd), sizeof(double));
    double *k = xmalloc_array((size_t)(T * Hkv * hd), sizeof(double));
    double *v = xmalloc_array((size_t)(T * Hkv * hd), sizeof(double));
    double *att = xmalloc_array((size_t)(T * H * hd), sizeof(double));
    double *o = xmalloc_array((size_t)(3 * C > F ? 3 * C : F), sizeof(double));
    double *u = xmalloc_array((size_t)F, sizeof(double));
    double inv[256];
    if (!g2) ref_inv_freq(s, scaled, inv);
    const double *emb = get(r, g2 ? "wte.weight" : "model.embed_tokens.weight");
    for (int64_t t = 0; t < T; t++)
        for (int64_t c = 0; c < C; c++)
            x[t * C + c] = emb[ids[t] * C + c] + (g2 ? get(r, "wpe.weight")[t * C + c] : 0);
    for (int64_t l = 0; l < s->L; l++) {
        char pre[64];
        snprintf(pre, sizeof pre, g2 ? "h.%lld." : "model.layers.%lld.", (long long)l);
        for (int64_t t = 0; t < T; t++) {
            double *xt = x + t * C;
            if (g2) {
                layernorm(h, xt, get(r, "%sln_1.weight", pre), get(r, "%sln_1.bias", pre), C, s->eps);
                conv1d(o, get(r, "%sattn.c_attn.weight", pre), get(r, "%sattn.c_attn.bias", pre), h, C, 3 * C);
                memcpy(q + t * C, o, (size_t)C * sizeof(double));
                memcpy(k + t * C, o + C, (size_t)C * sizeof(double));
                memcpy(v + t * C, o + 2 * C, (size_t)C * sizeof(double));
            } else {
                rmsnorm(h, xt, get(r, "%sinput_layernorm.weight", pre), C, s->eps);
                linear(q + t * H * hd, get(r, "%sself_attn.q_proj.weight", pre),
                       s->bias_qkv ? get(r, "%sself_attn.q_proj.bias", pre) : NULL, h, C, H * hd);
                linear(k + t * Hkv * hd, get(r, "%sself_attn.k_proj.weight", pre),
                       s->bias_qkv ? get(r, "%sself_attn.k_proj.bias", pre) : NULL, h, C, Hkv * hd);
                linear(v + t * Hkv * hd, get(r, "%sself_attn.v_proj.weight", pre),
                       s->bias_qkv ? get(r, "%sself_attn.v_proj.bias", pre) : NULL, h, C, Hkv * hd);
                for (int64_t hh = 0; hh < H; hh++) rope_head(q + t * H * hd + hh * hd, hd, inv, t);
                for (int64_t hh = 0; hh < Hkv; hh++) rope_head(k + t * Hkv * hd + hh * hd, hd, inv, t);
            }
        }
        attention(att, q, k, v, T, H, Hkv, hd, s->window);
        for (int64_t t = 0; t < T; t++) {
            double *xt = x + t * C;
            if (g2) conv1d(o, get(r, "%sattn.c_proj.weight", pre), get(r, "%sattn.c_proj.bias", pre), att + t * C, C, C);
            else
                linear(o, get(r, "%sself_attn.o_proj.weight", pre), s->bias_o ? get(r, "%sself_attn.o_proj.bias", pre) : NULL,
                       att + t * H * hd, H * hd, C);
            for (int64_t c = 0; c < C; c++) xt[c] += o[c];
            if (g2) {
                layernorm(h, xt, get(r, "%sln_2.weight", pre), get(r, "%sln_2.bias", pre), C, s->eps);
                conv1d(u, get(r, "%smlp.c_fc.weight", pre), get(r, "%smlp.c_fc.bias", pre), h, C, F);
                for (int64_t f = 0; f < F; f++) u[f] = gelu_new(u[f]);
                conv1d(o, get(r, "%smlp.c_proj.weight", pre), get(r, "%smlp.c_proj.bias", pre), u, F, C);
            } else {
                rmsnorm(h, xt, get(r, "%spost_attention_layernorm.weight", pre), C, s->eps);
                double *gate = xmalloc_array((size_t)F, sizeof(double));
                linear(gate, get(r, "%smlp.gate_proj.weight", pre), s->bias_mlp ? get(r, "%smlp.gate_proj.bias", pre) : NULL,
                       h, C, F);
                linear(u, get(r, "%smlp.up_proj.weight", pre), s->bias_mlp ? get(r, "%smlp.up_proj.bias", pre) : NULL, h,
                       C, F);
                for (int64_t f = 0; f < F; f++) u[f] *= silu(gate[f]);
                free(gate);
                linear(o, get(r, "%smlp.down_proj.weight", pre), s->bias_mlp ? get(r, "%smlp.down_proj.bias", pre) : NULL,
                       u, F, C);
            }
            for (int64_t c = 0; c < C; c++) xt[c] += o[c];
        }
    }
    const double *head = s->tied ? emb : get(r, "lm_head.weight");
    for (int64_t t = 0; t < T; t++) {
        if (g2) layernorm(h, x + t * C, get(r, "ln_f.weight"), get(r, "ln_f.bias"), C, s->eps);
        else rmsnorm(h, x + t * C, get(r, "model.norm.weight"), C, s->eps);
        linear(logits + t * V, head, NULL, h, C, V);
    }
    free(x), free(h), free(q), free(k), free(v), free(att), free(o), free(u);
}

// ---- running lossy ----

static double rel_l2_dd(const double *a, const double *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) num += (a[i] - b[i]) * (a[i] - b[i]), den += b[i] * b[i];
    return sqrt(num / den);
}

// Logits of ids under the model at path: prompt path (chunk) into all (T, V), decoding path (one token at a time)
// into step (T, V). The loaded config goes to cfg.
static int lossy_logits(const char *path, const int32_t *ids, int64_t T, float *all, float *step, ModelConfig *cfg,
                        Err *e) {
    Model m;
    if (model_load(&m, path, e)) return -1;
    *cfg = m.cfg;
    ModelState s;
    int rc = model_state_init(&s, &m, 16, NULL, e);
    if (rc) {
        model_free(&m);
        return -1;
    }
    rc = model_forward_all(&s, ids, T, all, e);
    if (rc == 0) {
        model_state_reset(&s);
        for (int64_t t = 0; t < T && rc == 0; t++) {
            rc = model_forward(&s, ids + t, 1, e);
            if (rc == 0) memcpy(step + t * m.cfg.vocab_size, s.logits, (size_t)m.cfg.vocab_size * sizeof(float));
        }
    }
    model_state_free(&s);
    model_free(&m);
    return rc;
}

// Compare lossy's logits for the model at path with want (T, V); label names the case in failures.
static void check_logits(const char *label, const char *path, const int32_t *ids, const double *want, const Spec *s,
                         ModelConfig *cfg) {
    const size_t n = (size_t)(N_TOK * s->V);
    float *all = xmalloc_array(n, sizeof(float)), *step = xmalloc_array(n, sizeof(float));
    Err e;
    if (lossy_logits(path, ids, N_TOK, all, step, cfg, &e)) {
        test_fail_at(__FILE__, __LINE__, "%s: %s", label, e.msg);
    } else {
        double tol = strcmp(s->st_dtype, "F32") ? VARIANT_TOL_HALF : VARIANT_TOL;
        double ea = test_rel_l2_ref(all, want, n), es = test_rel_l2_ref(step, want, n);
        CHECKF(ea <= tol, "%s: prompt-path logits rel L2 %.3g > %.1g", label, ea, tol);
        CHECKF(es <= tol, "%s: decoding-path logits rel L2 %.3g > %.1g", label, es, tol);
    }
    free(all);
    free(step);
}

// The whole check for one variant: HF directory vs reference, then the GGUF written at f32 vs the same reference.
static void run_variant(const Spec *spec) {
    Ref r;
    make_params(&r, spec);
    int32_t ids[N_TOK];
    for (int i = 0; i < N_TOK; i++) ids[i] = (int32_t)(test_rand_u64() % (uint64_t)spec->V);
    double *want = xmalloc_array((size_t)(N_TOK * spec->V), sizeof(double));
    ref_forward(&r, ids, N_TOK, true, want);
    const char *dir = write_hf_dir(&r, "hf");
    char hf[4200];
    snprintf(hf, sizeof hf, "%s", dir);

    ModelConfig c;
    check_logits("hf", hf, ids, want, spec, &c);
    if (!test_failures()) {
        CHECK_EQ_INT(c.head_dim, spec->hd);
        CHECK_EQ_INT(c.n_head_kv, spec->Hkv);
        CHECK_EQ_INT(c.tied_embeddings, spec->tied);
        CHECK_EQ_INT(c.sliding_window, spec->window);
        if (spec->rope != ROPE_PLAIN) {
            CHECK_EQ_INT(c.rope_scaling, spec->rope == ROPE_LINEAR_OLD ? ROPE_SCALING_LINEAR : ROPE_SCALING_LLAMA3);
            CHECK_NEAR(c.rope_theta, spec->theta, 0);
        }
    }

    // the GGUF that `lossy convert DIR OUT --dtype f32` writes
    Model m;
    Err e;
    char gguf[4300];
    snprintf(gguf, sizeof gguf, "%s/model-f32.gguf", test_tmpdir());
    REQUIREF(model_load(&m, hf, &e) == 0, "%s", e.msg);
    ConvertOpts o = {.dtype = DT_F32};
    int rc = model_write_gguf(&m, NULL, gguf, &o, &e);
    model_free(&m);
    REQUIREF(rc == 0, "convert: %s", e.msg);
    check_logits("gguf f32", gguf, ids, want, spec, &c);
    if (spec->rope == ROPE_LLAMA3_OLD || spec->rope == ROPE_LLAMA3_NEW)
        CHECK(c.rope_freqs_tensor); // llama.cpp's form of llama3 scaling
    if (spec->rope == ROPE_LINEAR_OLD) CHECK_EQ_INT(c.rope_scaling, ROPE_SCALING_LINEAR);

    free(want);
    ref_free(&r);
}

// Expect model_load of the directory to fail with a message holding every needle.
static void expect_load_error(const char *dir, int line, const char *needle1, const char *needle2) {
    Model m;
    Err e = {0};
    char path[4200];
    snprintf(path, sizeof path, "%s", dir);
    if (model_load(&m, path, &e) == 0) {
        test_fail_at(__FILE__, line, "%s loaded; expected an error naming '%s'", dir, needle1);
        model_free(&m);
        return;
    }
    if (!strstr(e.msg, needle1) || (needle2 && !strstr(e.msg, needle2)))
        test_fail_at(__FILE__, line, "error '%s' does not name '%s'%s%s", e.msg, needle1, needle2 ? " and " : "",
                     needle2 ? needle2 : "");
}

// ---- the variants ----

// Llama 3.1 shape: GQA 4/2, head_dim 16 != 48/4, untied, theta 500000, llama3 scaling whose bands all hold
// frequencies at this head_dim (wavelengths 6.3, 32.6 | 167 | 864, 4443, ...: orig 64 / high 4 = 16, orig / low = 64).
static Spec llama31_spec(Rope rope) {
    return (Spec){.model_type = "llama", .arch = "LlamaForCausalLM", .st_dtype = "F32", .V = 67, .C = 48, .F = 80,
                  .L = 2, .H = 4, .Hkv = 2, .hd = 16, .n_ctx = 256, .eps = 1e-5, .theta = 500000, .rope = rope,
                  .factor = 8, .low = 1, .high = 4, .orig_ctx = 64, .shards = 1};
}

static void check_llama3_bands_and_effect(const Spec *s) {
    int bands[3];
    llama3_bands(s, bands);
    CHECKF(bands[0] >= 1 && bands[1] >= 1 && bands[2] >= 1, "llama3 bands hold %d / %d / %d frequencies", bands[0],
           bands[1], bands[2]);
    // the scaling must be visible at these positions, or the test could not tell it from plain rope
    Ref r;
    make_params(&r, s);
    int32_t ids[N_TOK];
    for (int i = 0; i < N_TOK; i++) ids[i] = (int32_t)(i * 7 % s->V);
    const size_t n = (size_t)(N_TOK * s->V);
    double *a = xmalloc_array(n, sizeof(double)), *b = xmalloc_array(n, sizeof(double));
    ref_forward(&r, ids, N_TOK, true, a);
    ref_forward(&r, ids, N_TOK, false, b);
    double d = rel_l2_dd(a, b, n);
    CHECKF(d > 1000 * VARIANT_TOL, "llama3 scaling changes the reference logits by only %.3g", d);
    free(a);
    free(b);
    ref_free(&r);
}

TEST(model_variants_llama31_rope_scaling_old_style) {
    Spec s = llama31_spec(ROPE_LLAMA3_OLD);
    check_llama3_bands_and_effect(&s);
    run_variant(&s);
}

TEST(model_variants_llama31_rope_parameters_new_style) {
    Spec s = llama31_spec(ROPE_LLAMA3_NEW);
    run_variant(&s);
}

// Llama 3.2 shape: tied embeddings (no lm_head.weight), llama3 scaling, bf16 storage.
TEST(model_variants_llama32_tied_bf16) {
    Spec s = llama31_spec(ROPE_LLAMA3_OLD);
    s.st_dtype = "BF16";
    s.tied = true;
    run_variant(&s);
}

// Older Llama fine-tunes: linear rope scaling spelled {"type": "linear"}, attention_bias (q, k, v and o biases) and
// mlp_bias, f16 storage.
TEST(model_variants_llama_linear_rope_biases_f16) {
    Spec s = {.model_type = "llama", .arch = "LlamaForCausalLM", .st_dtype = "F16", .V = 61, .C = 32, .F = 72, .L = 2,
              .H = 4, .Hkv = 2, .hd = 8, .n_ctx = 64, .eps = 1e-6, .theta = 10000, .rope = ROPE_LINEAR_OLD, .factor = 4,
              .bias_qkv = true, .bias_o = true, .bias_mlp = true, .shards = 1};
    run_variant(&s);
}

// Qwen2: q/k/v biases, tied embeddings (no lm_head.weight in the file), theta 1e6, bf16 storage.
TEST(model_variants_qwen2_bias_tied_bf16) {
    Spec s = {.model_type = "qwen2", .arch = "Qwen2ForCausalLM", .st_dtype = "BF16", .V = 71, .C = 64, .F = 96,
              .L = 2, .H = 4, .Hkv = 2, .hd = 16, .n_ctx = 512, .eps = 1e-6, .theta = 1e6, .tied = true,
              .bias_qkv = true, .shards = 1};
    run_variant(&s);
}

// Mistral: untied, f16 storage, GQA 4/1, theta 1e6, sliding_window null.
TEST(model_variants_mistral_untied_f16) {
    Spec s = {.model_type = "mistral", .arch = "MistralForCausalLM", .st_dtype = "F16", .V = 53, .C = 32, .F = 64,
              .L = 2, .H = 4, .Hkv = 1, .hd = 8, .n_ctx = 128, .eps = 1e-5, .theta = 1e6, .shards = 1};
    run_variant(&s);
}

// Mistral v0.1's sliding window, shorter than the prompt here so that it matters: key j is visible from query i iff
// i - j < 4.
TEST(model_variants_mistral_sliding_window) {
    Spec s = {.model_type = "mistral", .arch = "MistralForCausalLM", .st_dtype = "F32", .V = 53, .C = 32, .F = 64,
              .L = 2, .H = 4, .Hkv = 2, .hd = 8, .n_ctx = 128, .eps = 1e-5, .theta = 10000, .window = 4, .shards = 1};
    run_variant(&s);
}

// GPT-2: learned positions, LayerNorm with bias, gelu_new, Conv1D c_attn/c_proj/c_fc, tied lm_head, the original
// checkpoint's unprefixed names and its attn.bias mask buffers.
TEST(model_variants_gpt2_tied) {
    Spec s = {.model_type = "gpt2", .arch = "GPT2LMHeadModel", .st_dtype = "F32", .V = 59, .C = 32, .F = 128, .L = 2,
              .H = 4, .Hkv = 4, .hd = 8, .n_ctx = 16, .eps = 1e-5, .tied = true, .shards = 1};
    run_variant(&s);
}

// Llama 2 shape (MHA, theta 10000, untied) in two shards with model.safetensors.index.json.
TEST(model_variants_llama_sharded) {
    Spec s = {.model_type = "llama", .arch = "LlamaForCausalLM", .st_dtype = "F32", .V = 61, .C = 32, .F = 72, .L = 2,
              .H = 4, .Hkv = 4, .hd = 8, .n_ctx = 64, .eps = 1e-6, .theta = 10000, .shards = 2};
    run_variant(&s);
}

// ---- clear errors for a config that disagrees with the tensors ----
// Each names the tensor as the user's file does, then the GGUF name lossy binds it by.

TEST(model_variants_errors_llama) {
    Spec s = llama31_spec(ROPE_LLAMA3_OLD);
    Ref r;
    make_params(&r, &s);
    // num_key_value_heads 4 while k_proj holds 2 heads
    r.s.Hkv = 4;
    expect_load_error(write_hf_dir(&r, "kv_heads"), __LINE__,
                      "tensor 'model.layers.0.self_attn.k_proj.weight' (blk.0.attn_k.weight) has shape", "expected");
    r.s.Hkv = 2;
    // head_dim 12 (hidden / heads) while q_proj holds 4 x 16 rows: head_dim left out of the config
    r.s.hd = 12;
    expect_load_error(write_hf_dir(&r, "head_dim"), __LINE__, "'model.layers.0.self_attn.q_proj.weight' (blk.0.attn_q.weight)",
                      "expected");
    r.s.hd = 16;
    // untied config without lm_head.weight
    drop_param(&r, "lm_head.weight");
    expect_load_error(write_hf_dir(&r, "no_lm_head"), __LINE__, "missing tensor 'lm_head.weight' (output.weight)", NULL);
    // a rope type lossy does not implement is named, not ignored
    char path[4300];
    snprintf(path, sizeof path, "%s/config.json", write_hf_dir(&r, "yarn"));
    char *text;
    size_t len;
    Err e;
    REQUIREF(file_read_all(path, &text, &len, &e) == 0, "%s", e.msg);
    char *t = strstr(text, "\"llama3\"");
    REQUIRE(t);
    Buf b;
    buf_init(&b);
    buf_append(&b, text, (size_t)(t - text));
    buf_append_str(&b, "\"yarn\"");
    buf_append_str(&b, t + strlen("\"llama3\""));
    write_bytes(path, b.data, b.len);
    buf_free(&b);
    free(text);
    snprintf(path, sizeof path, "%s/yarn", test_tmpdir());
    expect_load_error(path, __LINE__, "rope_scaling.rope_type", "yarn");
    ref_free(&r);
}

TEST(model_variants_errors_qwen2) {
    Spec s = {.model_type = "qwen2", .arch = "Qwen2ForCausalLM", .st_dtype = "BF16", .V = 71, .C = 64, .F = 96,
              .L = 2, .H = 4, .Hkv = 2, .hd = 16, .n_ctx = 512, .eps = 1e-6, .theta = 1e6, .tied = true,
              .bias_qkv = true, .shards = 1};
    Ref r;
    make_params(&r, &s);
    // Qwen2 attention always has q/k/v biases
    drop_param(&r, "model.layers.1.self_attn.k_proj.bias");
    expect_load_error(write_hf_dir(&r, "no_bias"), __LINE__,
                      "missing tensor 'model.layers.1.self_attn.k_proj.bias' (blk.1.attn_k.bias)", NULL);
    ref_free(&r);
    // a bias of the wrong length
    make_params(&r, &s);
    Param *p = find_param(&r, "model.layers.0.self_attn.v_proj.bias");
    REQUIRE(p);
    p->shape[0] = p->n = (size_t)(s.H * s.hd); // q's length; the data is random anyway
    p->v = xrealloc(p->v, p->n * sizeof(double));
    for (size_t i = 0; i < p->n; i++) p->v[i] = 0;
    expect_load_error(write_hf_dir(&r, "bias_len"), __LINE__, "'model.layers.0.self_attn.v_proj.bias' (blk.0.attn_v.bias)",
                      "elements");
    ref_free(&r);
}

TEST(model_variants_errors_mistral) {
    Spec s = {.model_type = "mistral", .arch = "MistralForCausalLM", .st_dtype = "F16", .V = 53, .C = 32, .F = 64,
              .L = 2, .H = 4, .Hkv = 1, .hd = 8, .n_ctx = 128, .eps = 1e-5, .theta = 1e6, .shards = 1};
    Ref r;
    make_params(&r, &s);
    // intermediate_size in the config disagrees with gate_proj
    r.s.F = 65;
    expect_load_error(write_hf_dir(&r, "ffn"), __LINE__, "'model.layers.0.mlp.gate_proj.weight' (blk.0.ffn_gate.weight)",
                      "expected");
    r.s.F = 64;
    // vocab_size disagrees with the embedding
    r.s.V = 54;
    expect_load_error(write_hf_dir(&r, "vocab"), __LINE__, "'model.embed_tokens.weight' (token_embd.weight)", "expected");
    ref_free(&r);
}

TEST(model_variants_errors_gpt2) {
    Spec s = {.model_type = "gpt2", .arch = "GPT2LMHeadModel", .st_dtype = "F32", .V = 59, .C = 32, .F = 128, .L = 2,
              .H = 4, .Hkv = 4, .hd = 8, .n_ctx = 16, .eps = 1e-5, .tied = true, .shards = 1};
    Ref r;
    make_params(&r, &s);
    // n_positions beyond the rows of wpe
    r.s.n_ctx = 32;
    expect_load_error(write_hf_dir(&r, "positions"), __LINE__, "'wpe.weight' (position_embd.weight)", "expected");
    r.s.n_ctx = 16;
    // c_attn stored (out, in) as a Linear would be: 3C x C instead of Conv1D's C x 3C
    Param *p = find_param(&r, "h.0.attn.c_attn.weight");
    REQUIRE(p);
    p->shape[0] = 3 * s.C, p->shape[1] = s.C;
    expect_load_error(write_hf_dir(&r, "c_attn_layout"), __LINE__, "'h.0.attn.c_attn.weight' (blk.0.attn_qkv.weight)",
                      "expected");
    p->shape[0] = s.C, p->shape[1] = 3 * s.C;
    // GPT2LMHeadModel's "transformer."-prefixed names: a missing c_attn is named in that form (lossy then looks
    // for separate q/k/v, which no GPT-2 file has: the fused tensor is what is missing)
    for (int i = 0; i < r.n; i++) {
        char prefixed[96];
        snprintf(prefixed, sizeof prefixed, "transformer.%s", r.p[i].name);
        snprintf(r.p[i].name, sizeof r.p[i].name, "%s", prefixed);
    }
    drop_param(&r, "transformer.h.1.attn.c_attn.weight");
    expect_load_error(write_hf_dir(&r, "no_c_attn"), __LINE__,
                      "missing tensor 'transformer.h.1.attn.c_attn.weight' (blk.1.attn_q.weight)", NULL);
    // both spellings of one weight
    Param *twin = add_param(&r, "h.0.ln_1.weight", s.C, 0, 1, 0);
    REQUIRE(twin);
    expect_load_error(write_hf_dir(&r, "twin"), __LINE__, "'transformer.h.0.ln_1.weight' and 'h.0.ln_1.weight'",
                      "blk.0.attn_norm.weight");
    ref_free(&r);
}

// Every Hugging Face name the loader maps to a GGUF name maps back to itself (errors about missing tensors rely on
// the reverse), and GGUF names of no Hugging Face tensor have none.
TEST(model_variants_hf_names_round_trip) {
    static const char *llama[] = {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight",
                                  "model.layers.0.input_layernorm.weight", "model.layers.3.self_attn.q_proj.bias",
                                  "model.layers.12.self_attn.k_proj.weight", "model.layers.1.self_attn.o_proj.weight",
                                  "model.layers.7.post_attention_layernorm.weight", "model.layers.2.mlp.gate_proj.weight",
                                  "model.layers.2.mlp.up_proj.bias", "model.layers.40.mlp.down_proj.weight"};
    static const char *gpt2[] = {"wte.weight", "wpe.weight", "ln_f.bias", "lm_head.weight", "h.0.ln_1.weight",
                                 "h.5.attn.c_attn.weight", "h.5.attn.c_attn.bias", "h.1.attn.c_proj.weight",
                                 "h.11.ln_2.bias", "h.2.mlp.c_fc.weight", "h.2.mlp.c_proj.bias"};
    WeightTable w;
    weights_init(&w);
    char gguf[256], back[256];
    int transpose;
    for (int g = 0; g < 2; g++) {
        const char **names = g ? gpt2 : llama;
        size_t n = g ? sizeof gpt2 / sizeof *gpt2 : sizeof llama / sizeof *llama;
        for (size_t i = 0; i < n; i++) {
            CHECKF(weights_map_hf_name(names[i], g, gguf, sizeof gguf, &transpose) == 1, "%s does not map", names[i]);
            CHECKF(weights_hf_name_of(&w, gguf, g, back, sizeof back) == 1 && !strcmp(back, names[i]),
                   "%s -> %s -> %s", names[i], gguf, back);
        }
    }
    CHECK(weights_hf_name_of(&w, "rope_freqs.weight", 0, back, sizeof back) == 0);
    CHECK(weights_hf_name_of(&w, "blk.0.attn_qkv.weight", 0, back, sizeof back) == 0);
    CHECK(weights_hf_name_of(&w, "blk.x.attn_q.weight", 0, back, sizeof back) == 0);
    CHECK(weights_hf_name_of(&w, "blk.3.attn_k.bias", 1, back, sizeof back) == 1 && !strcmp(back, "h.3.attn.c_attn.bias"));
    weights_free(&w);
}

TEST(model_variants_errors_shards) {
    Spec s = {.model_type = "llama", .arch = "LlamaForCausalLM", .st_dtype = "F32", .V = 61, .C = 32, .F = 72, .L = 2,
              .H = 4, .Hkv = 4, .hd = 8, .n_ctx = 64, .eps = 1e-6, .theta = 10000, .shards = 2};
    Ref r;
    make_params(&r, &s);
    const char *dir = write_hf_dir(&r, "missing_shard");
    char path[4300];
    snprintf(path, sizeof path, "%s/model-00002-of-00002.safetensors", dir);
    REQUIRE(remove(path) == 0);
    expect_load_error(dir, __LINE__, "model-00002-of-00002.safetensors", NULL);
    ref_free(&r);
}
