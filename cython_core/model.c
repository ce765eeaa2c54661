/* model.c - eng_model: a diffusers model folder and its lazily loaded components, plus the
 * file helpers the component loaders share (read a small file, parse a JSON file, find a
 * component's weights). */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mmdit.h"
#include "model.h"
#include "safetensors.h"

/* ---- file helpers -------------------------------------------------------------------- */

eng_status eng_join_path(char *out, size_t cap, const char *a, const char *b, eng_error *err) {
    int n = snprintf(out, cap, "%s/%s", a, b);
    if (n < 0 || (size_t)n >= cap)
        return eng_err_set(err, ENG_ERR_INVALID_ARG, "path too long: '%s/%s'", a, b);
    return ENG_OK;
}

eng_status eng_read_file(const char *path, size_t cap, char **data, size_t *len, eng_error *err) {
    *data = NULL;
    *len = 0;
    int fd = safetensors_open_fd(path); /* never blocks on a FIFO */
    FILE *f = fd < 0 ? NULL : fdopen(fd, "rb");
    if (!f) {
        eng_status st = eng_err_set(err, ENG_ERR_IO, "open '%s': %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        return st;
    }
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fclose(f);
        return eng_err_set(err, ENG_ERR_IO, "'%s' is not a regular file", path);
    }
    if ((uint64_t)sb.st_size > cap) {
        fclose(f);
        return eng_err_set(err, ENG_ERR_FORMAT, "'%s' is %lld bytes, more than the %zu allowed", path,
                           (long long)sb.st_size, cap);
    }
    char *buf = malloc((size_t)sb.st_size + 1);
    if (!buf) {
        fclose(f);
        return eng_err_set(err, ENG_ERR_OOM, "reading '%s': out of memory", path);
    }
    size_t got = fread(buf, 1, (size_t)sb.st_size, f);
    int bad = ferror(f);
    fclose(f);
    if (bad || got != (size_t)sb.st_size) {
        free(buf);
        return eng_err_set(err, ENG_ERR_IO, "read '%s': short read", path);
    }
    buf[got] = '\0';
    *data = buf;
    *len = got;
    return ENG_OK;
}

eng_status eng_read_json(const char *path, json_value **root, eng_error *err) {
    char *text;
    size_t len;
    eng_status st = eng_read_file(path, (size_t)64 << 20, &text, &len, err);
    if (st != ENG_OK) return st;
    st = json_parse(text, len, root, err);
    free(text);
    if (st != ENG_OK) return eng_err_prefix(err, "'%s'", path);
    if (json_type_name((*root)->type) && (*root)->type != JSON_OBJECT) {
        json_free(*root);
        *root = NULL;
        return eng_err_set(err, ENG_ERR_FORMAT, "'%s': expected a JSON object", path);
    }
    return ENG_OK;
}

static bool is_file(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

static bool is_dir(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

eng_status eng_find_weights(const char *dir, const char *const *bases, char *out, size_t cap,
                            eng_error *err) {
    char name[512];
    eng_status st;
    for (int i = 0; bases[i]; i++) {
        snprintf(name, sizeof name, "%s.safetensors.index.json", bases[i]);
        if ((st = eng_join_path(out, cap, dir, name, err))) return st;
        if (is_file(out)) return ENG_OK;
        snprintf(name, sizeof name, "%s.safetensors", bases[i]);
        if ((st = eng_join_path(out, cap, dir, name, err))) return st;
        if (is_file(out)) return ENG_OK;
    }
    /* otherwise exactly one *.safetensors file */
    DIR *d = opendir(dir);
    if (!d) return eng_err_set(err, ENG_ERR_IO, "open folder '%s': %s", dir, strerror(errno));
    int found = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n > 12 && strcmp(e->d_name + n - 12, ".safetensors") == 0) {
            if (found++ == 0 && (st = eng_join_path(out, cap, dir, e->d_name, err))) {
                closedir(d);
                return st;
            }
        }
    }
    closedir(d);
    if (found == 1) return ENG_OK;
    if (found == 0)
        return eng_err_set(err, ENG_ERR_IO, "no .safetensors weights in '%s' (expected %s.safetensors or %s.safetensors.index.json)",
                           dir, bases[0], bases[0]);
    return eng_err_set(err, ENG_ERR_FORMAT,
                       "'%s' holds %d .safetensors files and no %s.safetensors.index.json naming the shards",
                       dir, found, bases[0]);
}

/* ---- eng_model ----------------------------------------------------------------------- */

static const char *const component_names[ENG_N_COMPONENTS] = {"transformer", "vae", "text_encoder",
                                                              "tokenizer", "scheduler"};
#define N_COMPONENTS ENG_N_COMPONENTS

eng_status eng_model_open(eng_runtime *rt, const char *dir, eng_model **out, eng_error *err) {
    if (!out) return eng_err_set(err, ENG_ERR_INVALID_ARG, "eng_model_open: out is NULL");
    *out = NULL;
    if (!rt || !dir) return eng_err_set(err, ENG_ERR_INVALID_ARG, "eng_model_open: runtime and dir are required");
    if (strlen(dir) >= ENG_PATH_CAP - 64)
        return eng_err_set(err, ENG_ERR_INVALID_ARG, "model path too long");
    if (!is_dir(dir))
        return eng_err_set(err, ENG_ERR_IO, "model folder '%s' does not exist or is not a folder", dir);
    eng_model *m = calloc(1, sizeof *m);
    if (!m) return eng_err_set(err, ENG_ERR_OOM, "model: out of memory");
    m->rt = rt;
    snprintf(m->dir, sizeof m->dir, "%s", dir);
    for (int i = 0; i < N_COMPONENTS; i++) {
        char p[ENG_PATH_CAP];
        m->has[i] = eng_join_path(p, sizeof p, dir, component_names[i], NULL) == ENG_OK && is_dir(p);
    }
    *out = m;
    return ENG_OK;
}

void eng_model_free(eng_model *m) {
    if (!m) return;
    mmdit_free(m->mmdit);
    free(m->lora_path);
    for (int i = 0; i < ENG_N_COMPONENTS; i++)
        if (m->extra_free[i]) m->extra_free[i](m->extra[i]);
    free(m);
}

eng_status eng_model_component_dir(const eng_model *m, const char *component, char *out,
                                   size_t cap, eng_error *err) {
    int i = -1;
    for (int j = 0; j < N_COMPONENTS; j++)
        if (strcmp(component, component_names[j]) == 0) i = j;
    if (i < 0 || !m->has[i])
        return eng_err_set(err, ENG_ERR_IO, "model '%s' has no %s/ folder", m->dir, component);
    return eng_join_path(out, cap, m->dir, component, err);
}

static int component_index(const char *name) {
    for (int i = 0; i < N_COMPONENTS; i++)
        if (name && strcmp(name, component_names[i]) == 0) return i;
    return -1;
}

int eng_model_has(const eng_model *m, const char *component) {
    int i = component_index(component);
    return m && i >= 0 && m->has[i];
}

eng_status eng_model_load_transformer(eng_model *m, eng_error *err) {
    if (!m) return eng_err_set(err, ENG_ERR_INVALID_ARG, "model is NULL");
    if (m->mmdit) return ENG_OK;
    if (!m->has[0])
        return eng_err_set(err, ENG_ERR_IO, "model '%s' has no transformer/ folder", m->dir);
    char p[ENG_PATH_CAP];
    eng_status st = eng_join_path(p, sizeof p, m->dir, "transformer", err);
    if (st != ENG_OK) return st;
    pthread_mutex_lock(&m->rt->lock);
    mmdit_progress prog = {m->progress, m->progress_user};
    if (!m->mmdit) {
        mmdit_model *mm = NULL;
        st = mmdit_load(p, &prog, &mm, err);
        if (st == ENG_OK && m->lora_path) st = lora_apply(m->rt, mm, m->lora_path, m->lora_scale, &prog, err);
        if (st == ENG_OK) m->mmdit = mm;
        else mmdit_free(mm);
    }
    pthread_mutex_unlock(&m->rt->lock);
    return st;
}

void eng_model_set_progress(eng_model *m, eng_progress_fn fn, void *user) {
    if (!m) return;
    m->progress = fn;
    m->progress_user = user;
}

eng_status eng_model_set_lora(eng_model *m, const char *path, float scale, eng_error *err) {
    if (!m || !path) return eng_err_set(err, ENG_ERR_INVALID_ARG, "set_lora: model and path are required");
    if (m->mmdit)
        return eng_err_set(err, ENG_ERR_INVALID_ARG, "set_lora: the transformer is already loaded; set the LoRA first");
    if (!(scale == scale) || scale > 1e6f || scale < -1e6f)
        return eng_err_set(err, ENG_ERR_INVALID_ARG, "set_lora: scale %g is not a finite number", (double)scale);
    if (!is_file(path)) return eng_err_set(err, ENG_ERR_IO, "LoRA file '%s' does not exist", path);
    char *copy = strdup(path);
    if (!copy) return eng_err_set(err, ENG_ERR_OOM, "set_lora: out of memory");
    free(m->lora_path);
    m->lora_path = copy;
    m->lora_scale = scale;
    return ENG_OK;
}

eng_status eng_transformer_get_info(eng_model *m, eng_transformer_info *out, eng_error *err) {
    eng_status st = eng_model_load_transformer(m, err);
    if (st != ENG_OK) return st;
    const mmdit_config *c = &m->mmdit->cfg;
    memset(out, 0, sizeof *out);
    out->n_layers = c->n_layers;
    out->n_heads = c->n_heads;
    out->head_dim = c->head_dim;
    out->dim = c->dim;
    out->in_channels = c->in_channels;
    out->out_channels = c->out_channels;
    out->patch_size = c->patch_size;
    out->joint_dim = c->joint_dim;
    memcpy(out->rope_axes, c->axes, sizeof out->rope_axes);
    out->weight_dtype = m->mmdit->blocks[0].to_q.w.dtype;
    return ENG_OK;
}

eng_status eng_transformer_release(eng_model *m, eng_error *err) {
    if (!m) return eng_err_set(err, ENG_ERR_INVALID_ARG, "model is NULL");
    if (!m->mmdit) return ENG_OK;
    pthread_mutex_lock(&m->rt->lock);
    eng_runtime_trim_locked(m->rt);
    eng_status st = eng_weights_advise(m->mmdit->weights, MADV_DONTNEED, err);
    pthread_mutex_unlock(&m->rt->lock);
    return st;
}

eng_status eng_transformer_activation_bytes(eng_model *m, int64_t n_img, int64_t n_txt,
                                            size_t *out, eng_error *err) {
    eng_status st = eng_model_load_transformer(m, err);
    if (st != ENG_OK) return st;
    if (n_img < 1 || n_txt < 1 || n_img > (1 << 24) || n_txt > (1 << 24))
        return eng_err_set(err, ENG_ERR_INVALID_ARG, "token counts out of range");
    *out = mmdit_activation_bytes(&m->mmdit->cfg, n_img, n_txt);
    return ENG_OK;
}

eng_status eng_transformer_forward(eng_model *m, const float *latents, int64_t n_img,
                                   const float *txt, int64_t n_txt, const uint8_t *txt_mask,
                                   float sigma, int32_t height, int32_t width, float *out,
                                   size_t out_bytes, const eng_request *req, eng_error *err) {
    eng_status st = eng_model_load_transformer(m, err);
    if (st != ENG_OK) return st;
    if (!latents || !txt || !out)
        return eng_err_set(err, ENG_ERR_INVALID_ARG, "transformer_forward: latents, txt and out are required");
    if (n_img < 1 || n_img > (1 << 20) || n_txt < 1 || n_txt > (1 << 16))
        return eng_err_set(err, ENG_ERR_INVALID_ARG, "transformer_forward: %lld image / %lld text tokens out of range",
                           (long long)n_img, (long long)n_txt);
    const mmdit_config *c = &m->mmdit->cfg;
    size_t need = (size_t)n_img * (size_t)(c->patch_size * c->patch_size * c->out_channels) * sizeof(float);
    if (out_bytes < need)
        return eng_err_set(err, ENG_ERR_INVALID_ARG, "transformer_forward: out has %zu bytes, needs %zu",
                           out_bytes, need);
    mmdit_inputs in = {.latents = latents, .n_img = n_img, .txt = txt, .n_txt = n_txt,
                       .txt_mask = txt_mask, .sigma = sigma, .height = height, .width = width};
    pthread_mutex_lock(&m->rt->lock);
    st = mmdit_forward(m->rt, m->mmdit, &in, out, req ? req->cancel : NULL, err);
    pthread_mutex_unlock(&m->rt->lock);
    return st;
}
