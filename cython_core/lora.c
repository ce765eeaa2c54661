/* lora.c - merges a (Lightning) LoRA into a loaded transformer at load time:
 *   W' = W + scale * (alpha / r) * up (out, r) @ down (r, in)
 * computed in f32 (the up @ down product through the engine's GEMM) and stored back in W's
 * dtype in an owned copy; every other weight stays in the read-only mmap.
 * Key forms (ModelTC/Qwen-Image-Lightning and diffusers/PEFT):
 *   [diffusion_model.|transformer.]<module>.lora_down.weight / .lora_up.weight / .alpha
 *   [diffusion_model.|transformer.]<module>.lora_A.weight / .lora_B.weight  (alpha = r) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtype.h"
#include "mmdit.h"
#include "ops_cpu.h"
#include "safetensors.h"

typedef struct lora_module {
    char name[200];     /* module path inside the transformer */
    eng_tensor down;    /* (r, in) */
    eng_tensor up;      /* (out, r) */
    float alpha;
    bool has_down, has_up, has_alpha;
} lora_module;

typedef struct problems {
    char text[ENG_ERROR_CAP - 200];
    size_t used;
    int count;
} problems;

static void problem(problems *p, const char *fmt, const char *a, const char *b) {
    p->count++;
    if (p->count > 8 || p->used >= sizeof p->text - 1) return;
    int n = snprintf(p->text + p->used, sizeof p->text - p->used, p->count > 1 ? "; " : "");
    if (n > 0) p->used += (size_t)n;
    if (p->used < sizeof p->text - 1) {
        n = snprintf(p->text + p->used, sizeof p->text - p->used, fmt, a, b);
        if (n > 0) p->used += (size_t)n;
    }
    if (p->used >= sizeof p->text) p->used = sizeof p->text - 1;
}

/* Splits a key into (module, part); part: 0 down, 1 up, 2 alpha. False if the key is not a
 * LoRA key of a known form. */
static bool parse_key(const char *key, char *module, size_t cap, int *part) {
    static const struct {
        const char *suffix;
        int part;
    } forms[] = {{".lora_down.weight", 0}, {".lora_A.weight", 0}, {".lora_up.weight", 1},
                 {".lora_B.weight", 1},    {".alpha", 2}};
    static const char *const prefixes[] = {"diffusion_model.", "transformer."};
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++)
        if (strncmp(key, prefixes[i], strlen(prefixes[i])) == 0) {
            key += strlen(prefixes[i]);
            break;
        }
    size_t n = strlen(key);
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        size_t s = strlen(forms[i].suffix);
        if (n > s && strcmp(key + n - s, forms[i].suffix) == 0 && n - s < cap) {
            memcpy(module, key, n - s);
            module[n - s] = '\0';
            *part = forms[i].part;
            return true;
        }
    }
    return false;
}

static int cmp_module(const void *a, const void *b) {
    return strcmp(((const lora_module *)a)->name, ((const lora_module *)b)->name);
}

/* W' = dtype(f32(W) + s * up @ down) for one linear; the copy is owned by the model. */
static eng_status merge_one(eng_runtime *rt, mmdit_model *m, mmdit_linear *L, const lora_module *lm,
                            float s, eng_error *err) {
    const int64_t out = L->n_out, in = L->n_in, r = lm->down.shape[0];
    size_t n = (size_t)(out * in);
    float *up = eng_aligned_alloc((size_t)(out * r) * 4), *downT = eng_aligned_alloc((size_t)(in * r) * 4);
    float *delta = eng_aligned_alloc(n * 4), *dn = eng_aligned_alloc((size_t)(r * in) * 4);
    size_t esize = eng_dtype_size(L->w.dtype);
    void *merged = eng_aligned_alloc(n * esize);
    void **slots = realloc(m->merged, sizeof *slots * (size_t)(m->n_merged + 1));
    eng_status st = ENG_OK;
    if (slots) m->merged = slots;
    if (!up || !downT || !delta || !dn || !merged || !slots) {
        st = eng_err_set(err, ENG_ERR_OOM, "LoRA '%s': out of memory merging %lld x %lld", lm->name,
                         (long long)out, (long long)in);
        goto done;
    }
    if ((st = eng_convert_to_f32(up, lm->up.data, lm->up.dtype, out * r, err)) ||
        (st = eng_convert_to_f32(dn, lm->down.data, lm->down.dtype, r * in, err)))
        goto done;
    for (int64_t i = 0; i < r; i++)
        for (int64_t j = 0; j < in; j++) downT[j * r + i] = dn[i * in + j];
    /* delta (out, in) = up (out, r) . downT (in, r)^T */
    if ((st = cpu_linear(rt, delta, up, downT, ENG_F32, NULL, out, in, r, err))) goto done;
    const void *w = L->w.data;
    for (size_t i = 0; i < n; i++) {
        float base = L->w.dtype == ENG_F32    ? ((const float *)w)[i]
                     : L->w.dtype == ENG_BF16 ? eng_bf16_to_f32_1(((const uint16_t *)w)[i])
                                              : eng_f16_to_f32_1(((const uint16_t *)w)[i]);
        float v = base + s * delta[i];
        if (L->w.dtype == ENG_F32) ((float *)merged)[i] = v;
        else if (L->w.dtype == ENG_BF16) ((uint16_t *)merged)[i] = eng_f32_to_bf16_1(v);
        else ((uint16_t *)merged)[i] = eng_f32_to_f16_1(v);
    }
    m->merged[m->n_merged++] = merged;
    L->w.data = merged;
    merged = NULL;
done:
    eng_free(up);
    eng_free(downT);
    eng_free(delta);
    eng_free(dn);
    eng_free(merged);
    return st;
}

eng_status lora_apply(eng_runtime *rt, mmdit_model *m, const char *path, float scale,
                      const mmdit_progress *progress, eng_error *err) {
    eng_weights *w = NULL;
    lora_module *mods = NULL;
    int64_t n_mods = 0;
    problems pr = {{0}, 0, 0};
    eng_status st = eng_weights_open(path, &w, err);
    if (st != ENG_OK) return eng_err_prefix(err, "LoRA");
    const int64_t n_keys = eng_weights_count(w);
    mods = calloc((size_t)(n_keys > 0 ? n_keys : 1), sizeof *mods);
    if (!mods) {
        st = eng_err_set(err, ENG_ERR_OOM, "LoRA: out of memory");
        goto done;
    }
    /* 1. group keys by module */
    for (int64_t i = 0; i < n_keys; i++) {
        eng_tensor_info info;
        if ((st = eng_weights_info(w, i, &info, err))) goto done;
        char module[200];
        int part;
        if (!parse_key(info.name, module, sizeof module, &part)) {
            problem(&pr, "unknown key '%s'%s", info.name, "");
            continue;
        }
        lora_module *lm = NULL;
        for (int64_t j = n_mods - 1; j >= 0 && !lm; j--) /* keys arrive sorted: look back */
            if (strcmp(mods[j].name, module) == 0) lm = &mods[j];
        if (!lm) {
            lm = &mods[n_mods++];
            snprintf(lm->name, sizeof lm->name, "%s", module);
        }
        if ((part == 0 && lm->has_down) || (part == 1 && lm->has_up) || (part == 2 && lm->has_alpha)) {
            /* e.g. "diffusion_model.X.lora_down.weight" next to "X.lora_A.weight" */
            problem(&pr, "'%s' is given twice (%s)", lm->name, info.name);
            continue;
        }
        if (part == 2) {
            if ((st = weights_scalar_f32(w, info.name, &lm->alpha, err))) goto done;
            lm->has_alpha = true;
            if (!isfinite(lm->alpha)) problem(&pr, "'%s' has a non-finite alpha%s", info.name, "");
        } else {
            eng_tensor t;
            if ((st = weights_tensor(w, info.name, &t, err))) goto done;
            if (t.ndim != 2 || (t.dtype != ENG_F32 && t.dtype != ENG_BF16 && t.dtype != ENG_F16)) {
                problem(&pr, "'%s' must be a 2-D f32/bf16/f16 matrix%s", info.name, "");
                continue;
            }
            if (part == 0) lm->down = t, lm->has_down = true;
            else lm->up = t, lm->has_up = true;
        }
    }
    qsort(mods, (size_t)n_mods, sizeof *mods, cmp_module);
    /* 2. validate every module before touching the model */
    for (int64_t i = 0; i < n_mods; i++) {
        lora_module *lm = &mods[i];
        mmdit_linear *L = mmdit_find_linear(m, lm->name);
        if (!L) {
            problem(&pr, "'%s' is not a linear layer of this transformer%s", lm->name, "");
            continue;
        }
        if (!lm->has_down || !lm->has_up) {
            problem(&pr, "'%s' lacks its %s matrix", lm->name, lm->has_down ? "up (lora_up / lora_B)" : "down (lora_down / lora_A)");
            continue;
        }
        const int64_t r = lm->down.shape[0];
        if (r < 1 || lm->down.shape[1] != L->n_in || lm->up.shape[0] != L->n_out || lm->up.shape[1] != r) {
            char detail[160];
            snprintf(detail, sizeof detail, "down [%lld, %lld] / up [%lld, %lld] do not fit weight [%lld, %lld]",
                     (long long)lm->down.shape[0], (long long)lm->down.shape[1], (long long)lm->up.shape[0],
                     (long long)lm->up.shape[1], (long long)L->n_out, (long long)L->n_in);
            problem(&pr, "'%s': %s", lm->name, detail);
        }
    }
    if (n_mods == 0 && pr.count == 0) problem(&pr, "no LoRA tensors found%s%s", "", "");
    if (pr.count) {
        st = eng_err_set(err, ENG_ERR_FORMAT, "LoRA '%s': %d problem%s: %s%s", path, pr.count,
                         pr.count > 1 ? "s" : "", pr.text, pr.count > 8 ? "; ..." : "");
        goto done;
    }
    /* 3. merge */
    for (int64_t i = 0; i < n_mods; i++) {
        lora_module *lm = &mods[i];
        const float r = (float)lm->down.shape[0];
        const float s = scale * (lm->has_alpha ? lm->alpha : r) / r;
        if ((st = merge_one(rt, m, mmdit_find_linear(m, lm->name), lm, s, err))) goto done;
        if (progress && progress->fn && progress->fn("lora", i + 1, n_mods, progress->user)) {
            st = eng_err_set(err, ENG_ERR_CANCELLED, "loading aborted by the progress callback");
            goto done;
        }
    }
done:
    free(mods);
    eng_weights_free(w);
    return st;
}
