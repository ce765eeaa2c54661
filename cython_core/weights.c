/* weights.c - eng_weights: one .safetensors file or the shards of a *.safetensors.index.json
 * (huggingface sharded-checkpoint convention), as one immutable, name-sorted tensor set.
 *
 * Index: {"metadata": {...}, "weight_map": {"<tensor>": "<shard file>", ...}}. Every distinct
 * shard is opened from the index's folder (a shard name must be a plain file name); every
 * mapped tensor must be in the shard it is mapped to; a tensor in two shards is an error;
 * tensors a shard holds but weight_map omits are still part of the set.
 * Also the public read/convert API and the internal views model code uses (safetensors.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dtype.h"
#include "safetensors.h"

struct eng_weights {
    char *path;                  /* what eng_weights_open was given */
    st_file *files;              /* files[n_files]: the file, or the shards in name order */
    int32_t n_files;
    st_tensor *tensors;          /* tensors[n_tensors], sorted by name */
    size_t n_tensors;
    bool own_tensors;            /* tensors is a merged copy (index) rather than files[0]'s */
    json_value *index;           /* the parsed index (NULL for a single file) */
    const json_value *index_metadata; /* its "metadata" object, or NULL */
};

#define P400 "'%.400s'" /* a path in a message */

/* ---- lookup ----------------------------------------------------------------------------- */

static const st_tensor *lookup(const eng_weights *w, const char *name) {
    size_t lo = 0, hi = w->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(w->tensors[mid].name, name);
        if (c == 0) return &w->tensors[mid];
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return NULL;
}

static eng_status find(const eng_weights *w, const char *name, const st_tensor **out,
                       eng_error *err) {
    if (!w || !name)
        return eng_err_set(err, ENG_ERR_INVALID_ARG, "weights lookup: %s is NULL",
                           w ? "name" : "weights");
    *out = lookup(w, name);
    if (!*out)
        return eng_err_set(err, ENG_ERR_FORMAT, "tensor '%.200s' not found in " P400, name,
                           w->path);
    return ENG_OK;
}

static const char *file_of(const eng_weights *w, const st_tensor *t) {
    return w->files[t->file].path;
}

/* ---- index files ------------------------------------------------------------------------- */

/* Reads a whole (small) file into *buf (*len bytes, heap; NUL-terminated for convenience). */
static eng_status read_small_file(const char *path, char **buf, size_t *len, eng_error *err) {
    *buf = NULL;
    *len = 0;
    eng_status st = ENG_OK;
    char *data = NULL; /* data[size + 1] */
    int fd = safetensors_open_fd(path);
    if (fd < 0) return eng_err_set(err, ENG_ERR_IO, "open " P400 ": %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        st = eng_err_set(err, ENG_ERR_IO, "fstat " P400 ": %s", path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(sb.st_mode)) {
        st = eng_err_set(err, ENG_ERR_IO, P400 ": not a regular file", path);
        goto fail;
    }
    if ((uint64_t)sb.st_size > ST_HEADER_CAP) {
        st = eng_err_set(err, ENG_ERR_FORMAT, P400 ": %lld bytes is over the 100 MiB index cap",
                         path, (long long)sb.st_size);
        goto fail;
    }
    size_t size = (size_t)sb.st_size, got = 0;
    data = malloc(size + 1);
    if (!data) {
        st = eng_err_set(err, ENG_ERR_OOM, P400 ": out of memory", path);
        goto fail;
    }
    while (got < size) {
        ssize_t r = read(fd, data + got, size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            st = eng_err_set(err, ENG_ERR_IO, "read " P400 ": %s", path, strerror(errno));
            goto fail;
        }
        if (r == 0) break; /* shrank while reading: parse what is there */
        got += (size_t)r;
    }
    data[got] = 0;
    close(fd);
    *buf = data;
    *len = got;
    return ENG_OK;
fail:
    free(data);
    close(fd);
    return st;
}

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp(((const st_tensor *)a)->name, ((const st_tensor *)b)->name);
}

static bool plain_file_name(const char *s, size_t len) {
    return len > 0 && strlen(s) == len && !strchr(s, '/') && !strstr(s, "..");
}

/* Index of shard `name` in the sorted names[n], or -1. */
static int32_t shard_index(const char *const *names, int32_t n, const char *name) {
    int32_t lo = 0, hi = n;
    while (lo < hi) {
        int32_t mid = lo + (hi - lo) / 2;
        int c = strcmp(names[mid], name);
        if (c == 0) return mid;
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return -1;
}

static eng_status open_index(eng_weights *w, eng_error *err) {
    const char *path = w->path;
    char *text = NULL;           /* text[len]: the index file */
    size_t len = 0;
    const char **names = NULL;   /* names[n_map]: shard name per weight_map entry, then sorted
                                    and made unique (the first n_files entries) */
    char *shard_path = NULL;     /* "<index folder>/<shard>" */
    bool fresh = !err || err->status == ENG_OK;
    eng_status st;

    if ((st = read_small_file(path, &text, &len, err)) != ENG_OK) goto fail;
    if ((st = json_parse(text, len, &w->index, err)) != ENG_OK) {
        if (fresh) eng_err_prefix(err, P400, path);
        goto fail;
    }
    const json_value *root = w->index;
    if (root->type != JSON_OBJECT) {
        st = eng_err_set(err, ENG_ERR_FORMAT, P400 ": index is a JSON %s, expected an object",
                         path, json_type_name(root->type));
        goto fail;
    }
    const json_member *dup = json_duplicate_key(root);
    if (dup) {
        st = eng_err_set(err, ENG_ERR_FORMAT, P400 ": key '%.200s' appears twice", path, dup->key);
        goto fail;
    }
    const json_value *md = json_get(root, "metadata");
    if (md && md->type != JSON_OBJECT && md->type != JSON_NULL) {
        st = eng_err_set(err, ENG_ERR_FORMAT, P400 ": 'metadata' is a JSON %s, expected an object",
                         path, json_type_name(md->type));
        goto fail;
    }
    w->index_metadata = (md && md->type == JSON_OBJECT) ? md : NULL;
    const json_value *map = json_get(root, "weight_map");
    if (!map || map->type != JSON_OBJECT) {
        st = eng_err_set(err, ENG_ERR_FORMAT, P400 ": %s, expected a 'weight_map' object", path,
                         map ? json_type_name(map->type) : "no 'weight_map'");
        goto fail;
    }
    if ((dup = json_duplicate_key(map))) {
        st = eng_err_set(err, ENG_ERR_FORMAT, P400 ": tensor '%.200s' appears twice in weight_map",
                         path, dup->key);
        goto fail;
    }

    /* distinct shard names */
    size_t n_map = map->n;
    names = calloc(n_map ? n_map : 1, sizeof *names);
    if (!names) {
        st = eng_err_set(err, ENG_ERR_OOM, P400 ": out of memory", path);
        goto fail;
    }
    for (size_t i = 0; i < n_map; i++) {
        const json_member *m = json_member_at(map, i);
        if (m->value.type != JSON_STRING) {
            st = eng_err_set(err, ENG_ERR_FORMAT,
                             P400 ": weight_map entry '%.200s' is a JSON %s, expected a shard "
                             "file name",
                             path, m->key, json_type_name(m->value.type));
            goto fail;
        }
        if (!plain_file_name(m->value.u.string, m->value.n)) {
            st = eng_err_set(err, ENG_ERR_FORMAT,
                             P400 ": weight_map entry '%.200s' names shard '%.200s', which is not "
                             "a plain file name in the index's folder",
                             path, m->key, m->value.u.string);
            goto fail;
        }
        names[i] = m->value.u.string;
    }
    qsort(names, n_map, sizeof *names, cmp_str_ptr);
    size_t n_files = 0;
    for (size_t i = 0; i < n_map; i++)
        if (n_files == 0 || strcmp(names[n_files - 1], names[i]) != 0) names[n_files++] = names[i];
    if (n_files > INT32_MAX) {
        st = eng_err_set(err, ENG_ERR_FORMAT, P400 ": too many shards (%zu)", path, n_files);
        goto fail;
    }

    /* open every shard from the index's folder */
    const char *slash = strrchr(path, '/');
    size_t dir_len = slash ? (size_t)(slash - path) + 1 : 0; /* keeps the '/' */
    w->files = calloc(n_files ? n_files : 1, sizeof *w->files);
    if (!w->files) {
        st = eng_err_set(err, ENG_ERR_OOM, P400 ": out of memory", path);
        goto fail;
    }
    size_t total = 0;
    for (size_t i = 0; i < n_files; i++) {
        size_t nl = strlen(names[i]);
        free(shard_path);
        shard_path = malloc(dir_len + nl + 1);
        if (!shard_path) {
            st = eng_err_set(err, ENG_ERR_OOM, P400 ": out of memory", path);
            goto fail;
        }
        memcpy(shard_path, path, dir_len);
        memcpy(shard_path + dir_len, names[i], nl + 1);
        if ((st = safetensors_open(shard_path, &w->files[i], err)) != ENG_OK) {
            if (fresh) eng_err_prefix(err, P400 ": shard '%.200s'", path, names[i]);
            goto fail;
        }
        w->n_files = (int32_t)i + 1;
        for (size_t j = 0; j < w->files[i].n_tensors; j++) w->files[i].tensors[j].file = (int32_t)i;
        total += w->files[i].n_tensors; /* each <= its header size: no overflow */
    }

    /* merge, sort by name, reject a tensor held by two shards */
    w->tensors = calloc(total ? total : 1, sizeof *w->tensors);
    if (!w->tensors) {
        st = eng_err_set(err, ENG_ERR_OOM, P400 ": out of memory for %zu tensors", path, total);
        goto fail;
    }
    w->own_tensors = true;
    for (int32_t i = 0; i < w->n_files; i++) {
        memcpy(w->tensors + w->n_tensors, w->files[i].tensors,
               w->files[i].n_tensors * sizeof *w->tensors);
        w->n_tensors += w->files[i].n_tensors;
    }
    qsort(w->tensors, w->n_tensors, sizeof *w->tensors, cmp_tensor_name);
    for (size_t i = 1; i < w->n_tensors; i++) {
        const st_tensor *a = &w->tensors[i - 1], *b = &w->tensors[i];
        if (strcmp(a->name, b->name) == 0) {
            st = eng_err_set(err, ENG_ERR_FORMAT,
                             P400 ": tensor '%.200s' is in two shards: '%.200s' and '%.200s'", path,
                             a->name, names[a->file], names[b->file]);
            goto fail;
        }
    }

    /* every mapped tensor is where weight_map says */
    for (size_t i = 0; i < n_map; i++) {
        const json_member *m = json_member_at(map, i);
        int32_t want = shard_index(names, (int32_t)n_files, m->value.u.string);
        const st_tensor *t = lookup(w, m->key);
        if (!t) {
            st = eng_err_set(err, ENG_ERR_FORMAT,
                             P400 ": weight_map maps tensor '%.200s' to '%.200s', which does not "
                             "hold it (nor does any other shard)",
                             path, m->key, m->value.u.string);
            goto fail;
        }
        if (t->file != want) {
            st = eng_err_set(err, ENG_ERR_FORMAT,
                             P400 ": weight_map maps tensor '%.200s' to '%.200s', but it is in "
                             "'%.200s'",
                             path, m->key, m->value.u.string, names[t->file]);
            goto fail;
        }
    }
    st = ENG_OK;
fail:
    free(shard_path);
    free(names);
    free(text);
    return st;
}

/* ---- public API ----------------------------------------------------------------------- */

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

eng_status eng_weights_open(const char *path, eng_weights **out, eng_error *err) {
    if (!out) return eng_err_set(err, ENG_ERR_INVALID_ARG, "eng_weights_open: out is NULL");
    *out = NULL;
    if (!path) return eng_err_set(err, ENG_ERR_INVALID_ARG, "eng_weights_open: path is NULL");
    eng_status st;
    eng_weights *w = calloc(1, sizeof *w);
    if (!w) return eng_err_set(err, ENG_ERR_OOM, "opening " P400 ": out of memory", path);
    w->path = strdup(path);
    if (!w->path) {
        st = eng_err_set(err, ENG_ERR_OOM, "opening " P400 ": out of memory", path);
        goto fail;
    }
    if (ends_with(path, ".index.json")) {
        if ((st = open_index(w, err)) != ENG_OK) goto fail;
    } else {
        w->files = calloc(1, sizeof *w->files);
        if (!w->files) {
            st = eng_err_set(err, ENG_ERR_OOM, "opening " P400 ": out of memory", path);
            goto fail;
        }
        if ((st = safetensors_open(path, &w->files[0], err)) != ENG_OK) goto fail;
        w->n_files = 1;
        w->tensors = w->files[0].tensors;
        w->n_tensors = w->files[0].n_tensors;
    }
    *out = w;
    return ENG_OK;
fail:
    eng_weights_free(w);
    return st;
}

void eng_weights_free(eng_weights *w) {
    if (!w) return;
    for (int32_t i = 0; i < w->n_files; i++) safetensors_close(&w->files[i]);
    free(w->files);
    if (w->own_tensors) free(w->tensors);
    json_free(w->index);
    free(w->path);
    free(w);
}

int64_t eng_weights_count(const eng_weights *w) { return w ? (int64_t)w->n_tensors : 0; }

static void fill_info(const eng_weights *w, const st_tensor *t, eng_tensor_info *out) {
    memset(out, 0, sizeof *out);
    out->name = t->name;
    out->file = file_of(w, t);
    out->dtype = t->dtype;
    out->ndim = t->ndim;
    memcpy(out->shape, t->shape, sizeof out->shape);
    out->numel = t->numel;
    out->nbytes = (size_t)(t->end - t->begin);
    out->data = t->data;
}

eng_status eng_weights_info(const eng_weights *w, int64_t index, eng_tensor_info *out,
                            eng_error *err) {
    if (!w || !out)
        return eng_err_set(err, ENG_ERR_INVALID_ARG, "eng_weights_info: %s is NULL",
                           w ? "out" : "weights");
    if (index < 0 || (uint64_t)index >= w->n_tensors)
        return eng_err_set(err, ENG_ERR_INVALID_ARG,
                           "eng_weights_info: index %lld outside [0, %zu) for " P400,
                           (long long)index, w->n_tensors, w->path);
    fill_info(w, &w->tensors[index], out);
    return ENG_OK;
}

eng_status eng_weights_find(const eng_weights *w, const char *name, eng_tensor_info *out,
                            eng_error *err) {
    if (!out) return eng_err_set(err, ENG_ERR_INVALID_ARG, "eng_weights_find: out is NULL");
    const st_tensor *t;
    eng_status st = find(w, name, &t, err);
    if (st != ENG_OK) return st;
    fill_info(w, t, out);
    return ENG_OK;
}

/* double -> float with IEEE semantics made explicit (an out-of-range cast is UB in C). */
static float f64_to_f32(double d) {
    if (d != d) return eng_bits_f32(0x7fc00000u);
    if (d >= 0x1.ffffffp127) return eng_bits_f32(0x7f800000u);  /* rounds past FLT_MAX */
    if (d <= -0x1.ffffffp127) return eng_bits_f32(0xff800000u);
    return (float)d;
}

/* dst[n] float32 <- src (n elements of dtype dt, any alignment). ENG_ERR_UNSUPPORTED unless dt
 * is a float dtype. */
static eng_status convert_to_f32(float *dst, const uint8_t *src, eng_dtype dt, int64_t n) {
    enum { CHUNK = 1024 };
    uint16_t half[CHUNK]; /* half[k]: aligned copy of a chunk of 16-bit elements */
    switch (dt) {
    case ENG_F32:
        if (n) memcpy(dst, src, (size_t)n * 4);
        return ENG_OK;
    case ENG_F16:
    case ENG_BF16:
        for (int64_t i = 0; i < n; i += CHUNK) {
            int64_t k = n - i < CHUNK ? n - i : CHUNK;
            memcpy(half, src + i * 2, (size_t)k * 2);
            if (dt == ENG_F16) {
                eng_f16_to_f32(dst + i, half, k);
            } else {
                eng_bf16_to_f32(dst + i, half, k);
            }
        }
        return ENG_OK;
    case ENG_F8_E4M3:
        for (int64_t i = 0; i < n; i++) dst[i] = eng_f8e4m3_to_f32_1(src[i]);
        return ENG_OK;
    case ENG_F8_E5M2: /* E5M2 is the top byte of an IEEE binary16 */
        for (int64_t i = 0; i < n; i++) dst[i] = eng_f16_to_f32_1((uint16_t)(src[i] << 8));
        return ENG_OK;
    case ENG_F64:
        for (int64_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, src + i * 8, 8);
            dst[i] = f64_to_f32(d);
        }
        return ENG_OK;
    default: return ENG_ERR_UNSUPPORTED;
    }
}

static eng_status read_f32(const eng_weights *w, const st_tensor *t, float *out, size_t out_bytes,
                           eng_error *err) {
    size_t need;
    if (!eng_bytes_for(t->numel, sizeof(float), &need))
        return eng_err_set(err, ENG_ERR_OOM, P400 ": tensor '%.200s': %lld floats overflow size_t",
                           file_of(w, t), t->name, (long long)t->numel);
    if (out_bytes < need || (!out && need))
        return eng_err_set(err, ENG_ERR_INVALID_ARG,
                           "tensor '%.200s' (%lld elements) needs %zu output bytes, got %zu%s",
                           t->name, (long long)t->numel, need, out_bytes, out ? "" : " (NULL)");
    if (convert_to_f32(out, t->data, t->dtype, t->numel) != ENG_OK)
        return eng_err_set(err, ENG_ERR_UNSUPPORTED,
                           P400 ": tensor '%.200s' has dtype %s, which does not convert to f32 "
                           "(float dtypes only)",
                           file_of(w, t), t->name, safetensors_dtype_name(t->dtype));
    return ENG_OK;
}

eng_status eng_weights_read_f32(const eng_weights *w, const char *name, float *out,
                                size_t out_bytes, eng_error *err) {
    const st_tensor *t;
    eng_status st = find(w, name, &t, err);
    return st != ENG_OK ? st : read_f32(w, t, out, out_bytes, err);
}

/* ---- internal API (safetensors.h) ------------------------------------------------------- */

eng_status weights_tensor(const eng_weights *w, const char *name, eng_tensor *out,
                          eng_error *err) {
    if (!out) return eng_err_set(err, ENG_ERR_INVALID_ARG, "weights_tensor: out is NULL");
    const st_tensor *t;
    eng_status st = find(w, name, &t, err);
    if (st != ENG_OK) return st;
    memset(out, 0, sizeof *out);
    out->dtype = t->dtype;
    out->ndim = t->ndim;
    memcpy(out->shape, t->shape, sizeof out->shape);
    out->data = t->data;
    return ENG_OK;
}

eng_status weights_tensor_float(const eng_weights *w, const char *name, int32_t ndim,
                                const int64_t *shape, eng_tensor *out, eng_error *err) {
    if (ndim < 0 || ndim > ENG_MAX_DIMS || (ndim > 0 && !shape))
        return eng_err_set(err, ENG_ERR_INVALID_ARG, "weights_tensor_float: bad expected rank %d",
                           (int)ndim);
    bool fresh = !err || err->status == ENG_OK;
    eng_status st = weights_tensor(w, name, out, err);
    if (st != ENG_OK) return st;
    const st_tensor *t = lookup(w, name);
    const char *file = file_of(w, t);
    if (out->dtype != ENG_F32 && out->dtype != ENG_F16 && out->dtype != ENG_BF16)
        return eng_err_set(err, ENG_ERR_FORMAT,
                           P400 ": tensor '%.200s' has dtype %s, expected F32, F16 or BF16", file,
                           name, safetensors_dtype_name(out->dtype));
    if ((st = eng_tensor_expect(out, name, ndim, shape, err)) != ENG_OK) {
        if (fresh) eng_err_prefix(err, P400, file);
        return st;
    }
    size_t esize = eng_dtype_size(out->dtype);
    if ((uintptr_t)out->data % esize != 0) {
        uint64_t at = 8 + w->files[t->file].header_len + t->begin; /* file offset */
        return eng_err_set(err, ENG_ERR_FORMAT,
                           P400 ": tensor '%.200s' (%s) starts at file byte %llu, not a multiple "
                           "of its %zu-byte element size (re-save the file with the safetensors "
                           "library, which aligns tensors)",
                           file, name, safetensors_dtype_name(out->dtype), (unsigned long long)at,
                           esize);
    }
    return ENG_OK;
}

bool weights_has(const eng_weights *w, const char *name) {
    return w && name && lookup(w, name) != NULL;
}

eng_status weights_scalar_f32(const eng_weights *w, const char *name, float *out,
                              eng_error *err) {
    if (!out) return eng_err_set(err, ENG_ERR_INVALID_ARG, "weights_scalar_f32: out is NULL");
    const st_tensor *t;
    eng_status st = find(w, name, &t, err);
    if (st != ENG_OK) return st;
    if (t->numel != 1) {
        char sbuf[256];
        return eng_err_set(err, ENG_ERR_FORMAT,
                           P400 ": tensor '%.200s' has shape %s, expected a scalar", file_of(w, t),
                           name, eng_shape_str(t->shape, t->ndim, sbuf, sizeof sbuf));
    }
    return read_f32(w, t, out, sizeof *out, err);
}

const char *weights_path(const eng_weights *w) { return w ? w->path : NULL; }

int32_t weights_file_count(const eng_weights *w) { return w ? w->n_files : 0; }

const char *weights_file_path(const eng_weights *w, int32_t i) {
    return (w && i >= 0 && i < w->n_files) ? w->files[i].path : NULL;
}

const json_value *weights_file_metadata(const eng_weights *w, int32_t i) {
    return (w && i >= 0 && i < w->n_files) ? w->files[i].metadata : NULL;
}

const json_value *weights_index_metadata(const eng_weights *w) {
    return w ? w->index_metadata : NULL;
}

static const char *advice_name(int advice) {
    switch (advice) {
    case MADV_NORMAL: return "MADV_NORMAL";
    case MADV_RANDOM: return "MADV_RANDOM";
    case MADV_SEQUENTIAL: return "MADV_SEQUENTIAL";
    case MADV_WILLNEED: return "MADV_WILLNEED";
    case MADV_DONTNEED: return "MADV_DONTNEED";
    default: return NULL;
    }
}

eng_status eng_weights_advise(const eng_weights *w, int advice, eng_error *err) {
    if (!w) return eng_err_set(err, ENG_ERR_INVALID_ARG, "eng_weights_advise: weights is NULL");
    const char *what = advice_name(advice);
    if (!what)
        return eng_err_set(err, ENG_ERR_INVALID_ARG,
                           "eng_weights_advise: advice %d is not one of MADV_NORMAL, MADV_RANDOM, "
                           "MADV_SEQUENTIAL, MADV_WILLNEED, MADV_DONTNEED",
                           advice);
    for (int32_t i = 0; i < w->n_files; i++) {
        if (madvise(w->files[i].map, w->files[i].map_size, advice) != 0)
            return eng_err_set(err, ENG_ERR_IO, "madvise(%s) on " P400 ": %s", what,
                               w->files[i].path, strerror(errno));
    }
    return ENG_OK;
}
