/* safetensors.c - opens and validates one .safetensors file (zero-copy, read-only mmap).
 *
 * Layout (huggingface/safetensors): u64 little-endian N | N bytes of JSON header | data.
 * The header is an object: an optional "__metadata__" object of string values, and one member
 * per tensor {"dtype": "BF16", "shape": [3072, 64], "data_offsets": [begin, end]} whose
 * offsets are relative to the start of the data section.
 *
 * Validation (every failure is ENG_ERR_FORMAT naming the file and, if any, the tensor):
 * 8 <= file size; 0 < N <= 100 MiB; 8 + N <= file size; the header is valid JSON holding an
 * object with no duplicate keys; each tensor has a known dtype, 0 <= rank <= ENG_MAX_DIMS,
 * integer dims >= 0 whose product (and byte count) does not overflow, and
 * begin <= end <= data size with end - begin == numel * dtype size; no two non-empty byte ranges
 * overlap. Gaps between tensors are allowed, and so are members a tensor entry does not need
 * (the reference implementation ignores them as well). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "safetensors.h"

/* safetensors dtype spellings; the order is irrelevant (looked up by name or dtype). */
static const struct {
    const char *name;
    eng_dtype dtype;
} st_dtypes[] = {
    {"F64", ENG_F64},         {"F32", ENG_F32},         {"F16", ENG_F16},   {"BF16", ENG_BF16},
    {"F8_E4M3", ENG_F8_E4M3}, {"F8_E5M2", ENG_F8_E5M2}, {"I64", ENG_I64},   {"I32", ENG_I32},
    {"I16", ENG_I16},         {"I8", ENG_I8},           {"U64", ENG_U64},   {"U32", ENG_U32},
    {"U16", ENG_U16},         {"U8", ENG_U8},           {"BOOL", ENG_BOOL},
};
#define N_ST_DTYPES (sizeof st_dtypes / sizeof st_dtypes[0])

const char *safetensors_dtype_name(eng_dtype dt) {
    for (size_t i = 0; i < N_ST_DTYPES; i++)
        if (st_dtypes[i].dtype == dt) return st_dtypes[i].name;
    return "?";
}

bool safetensors_dtype_parse(const char *s, size_t len, eng_dtype *out) {
    for (size_t i = 0; i < N_ST_DTYPES; i++) {
        if (strlen(st_dtypes[i].name) == len && memcmp(st_dtypes[i].name, s, len) == 0) {
            *out = st_dtypes[i].dtype;
            return true;
        }
    }
    return false;
}

/* ---- one tensor entry ------------------------------------------------------------------ */

/* A JSON number that must be an integer in [0, INT64_MAX]; false (with *why) otherwise. */
static bool nonneg_int(const json_value *v, int64_t *out, const char **why) {
    switch (json_try_int64(v, out)) {
    case JSON_INT_OK:
        if (*out >= 0) return true;
        *why = " (negative)";
        return false;
    case JSON_INT_FRACTIONAL: *why = " (not an integer)"; return false;
    case JSON_INT_RANGE: *why = " (outside the int64 range)"; return false;
    default: *why = ""; return false; /* value_str names the type */
    }
}

/* Copies a JSON number's text for a message (at most 40 chars) or the value's type name. */
static const char *value_str(const json_value *v, char *buf, size_t cap) {
    if (!v) return "nothing";
    if (v->type == JSON_NUMBER) {
        snprintf(buf, cap, "%.40s", v->u.number.text);
        return buf;
    }
    snprintf(buf, cap, "a JSON %s", json_type_name(v->type));
    return buf;
}

static eng_status parse_tensor(const st_file *f, const json_member *m, st_tensor *t,
                               eng_error *err) {
    const char *path = f->path, *name = m->key;
    const json_value *v = &m->value;
    char buf[64], sbuf[256];
    if (v->type != JSON_OBJECT)
        return eng_err_set(err, ENG_ERR_FORMAT,
                           "'%.400s': tensor '%.200s': entry is a JSON %s, expected an object "
                           "with dtype, shape and data_offsets",
                           path, name, json_type_name(v->type));
    const json_member *dup = json_duplicate_key(v);
    if (dup)
        return eng_err_set(err, ENG_ERR_FORMAT,
                           "'%.400s': tensor '%.200s': duplicate field '%.40s'", path, name,
                           dup->key);

    /* dtype */
    const json_value *dt = json_get(v, "dtype");
    if (!dt)
        return eng_err_set(err, ENG_ERR_FORMAT, "'%.400s': tensor '%.200s': missing field 'dtype'",
                           path, name);
    if (dt->type != JSON_STRING)
        return eng_err_set(err, ENG_ERR_FORMAT,
                           "'%.400s': tensor '%.200s': field 'dtype' is %s, expected a string",
                           path, name, value_str(dt, buf, sizeof buf));
    if (!safetensors_dtype_parse(dt->u.string, dt->n, &t->dtype))
        return eng_err_set(err, ENG_ERR_FORMAT,
                           "'%.400s': tensor '%.200s': unknown dtype '%.40s' (expected one of F64 "
                           "F32 F16 BF16 F8_E4M3 F8_E5M2 I64 I32 I16 I8 U64 U32 U16 U8 BOOL)",
                           path, name, dt->u.string);

    /* shape */
    const json_value *sh = json_get(v, "shape");
    if (!sh)
        return eng_err_set(err, ENG_ERR_FORMAT, "'%.400s': tensor '%.200s': missing field 'shape'",
                           path, name);
    if (sh->type != JSON_ARRAY)
        return eng_err_set(err, ENG_ERR_FORMAT,
                           "'%.400s': tensor '%.200s': field 'shape' is %s, expected an array",
                           path, name, value_str(sh, buf, sizeof buf));
    if (sh->n > ENG_MAX_DIMS)
        return eng_err_set(err, ENG_ERR_FORMAT,
                           "'%.400s': tensor '%.200s': rank %zu exceeds the maximum of %d dims",
                           path, name, sh->n, ENG_MAX_DIMS);
    t->ndim = (int32_t)sh->n;
    bool has_zero = false;
    for (size_t i = 0; i < sh->n; i++) {
        const char *why;
        if (!nonneg_int(json_at(sh, i), &t->shape[i], &why))
            return eng_err_set(err, ENG_ERR_FORMAT,
                               "'%.400s': tensor '%.200s': shape[%zu] is %s%s, expected an "
                               "integer >= 0",
                               path, name, i, value_str(json_at(sh, i), buf, sizeof buf), why);
        has_zero = has_zero || t->shape[i] == 0;
    }
    t->numel = 1;
    if (has_zero) {
        t->numel = 0;
    } else {
        for (int32_t i = 0; i < t->ndim; i++)
            if (__builtin_mul_overflow(t->numel, t->shape[i], &t->numel))
                return eng_err_set(err, ENG_ERR_FORMAT,
                                   "'%.400s': tensor '%.200s': shape %s has more than 2^63-1 "
                                   "elements",
                                   path, name, eng_shape_str(t->shape, t->ndim, sbuf, sizeof sbuf));
    }
    uint64_t nbytes;
    if (eng_mul_overflow_u64((uint64_t)t->numel, eng_dtype_size(t->dtype), &nbytes))
        return eng_err_set(err, ENG_ERR_FORMAT,
                           "'%.400s': tensor '%.200s': shape %s of %s needs more than 2^64 bytes",
                           path, name, eng_shape_str(t->shape, t->ndim, sbuf, sizeof sbuf),
                           dt->u.string);

    /* data_offsets */
    const json_value *off = json_get(v, "data_offsets");
    if (!off)
        return eng_err_set(err, ENG_ERR_FORMAT,
                           "'%.400s': tensor '%.200s': missing field 'data_offsets'", path, name);
    if (off->type != JSON_ARRAY || off->n != 2)
        return eng_err_set(err, ENG_ERR_FORMAT,
                           "'%.400s': tensor '%.200s': field 'data_offsets' is %s%s, expected "
                           "[begin, end]",
                           path, name, value_str(off, buf, sizeof buf),
                           off->type == JSON_ARRAY ? (off->n < 2 ? " too short" : " too long")
                                                   : "");
    int64_t be[2]; /* begin, end */
    for (size_t i = 0; i < 2; i++) {
        const char *why;
        if (!nonneg_int(json_at(off, i), &be[i], &why))
            return eng_err_set(err, ENG_ERR_FORMAT,
                               "'%.400s': tensor '%.200s': data_offsets[%zu] is %s%s, "
                               "expected an integer >= 0",
                               path, name, i, value_str(json_at(off, i), buf, sizeof buf), why);
    }
    t->begin = (uint64_t)be[0];
    t->end = (uint64_t)be[1];
    if (t->end < t->begin)
        return eng_err_set(err, ENG_ERR_FORMAT,
                           "'%.400s': tensor '%.200s': data_offsets [%llu, %llu] end before they "
                           "begin",
                           path, name, (unsigned long long)t->begin, (unsigned long long)t->end);
    if (t->end - t->begin != nbytes)
        return eng_err_set(err, ENG_ERR_FORMAT,
                           "'%.400s': tensor '%.200s': data_offsets [%llu, %llu] hold %llu bytes "
                           "but shape %s of %s needs %llu",
                           path, name, (unsigned long long)t->begin, (unsigned long long)t->end,
                           (unsigned long long)(t->end - t->begin),
                           eng_shape_str(t->shape, t->ndim, sbuf, sizeof sbuf), dt->u.string,
                           (unsigned long long)nbytes);
    if (t->end > f->data_size)
        return eng_err_set(err, ENG_ERR_FORMAT,
                           "'%.400s': tensor '%.200s': data_offsets [%llu, %llu] lie past the end "
                           "of the %llu-byte data section (file truncated?)",
                           path, name, (unsigned long long)t->begin, (unsigned long long)t->end,
                           (unsigned long long)f->data_size);
    t->name = name;
    t->data = f->data + t->begin;
    return ENG_OK;
}

/* ---- the whole header ------------------------------------------------------------------ */

static int cmp_by_offset(const void *a, const void *b) {
    const st_tensor *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

static int cmp_by_name(const void *a, const void *b) {
    return strcmp(((const st_tensor *)a)->name, ((const st_tensor *)b)->name);
}

static eng_status check_metadata(const st_file *f, const json_value *md, eng_error *err) {
    if (md->type != JSON_OBJECT)
        return eng_err_set(err, ENG_ERR_FORMAT,
                           "'%.400s': '__metadata__' is a JSON %s, expected an object of strings",
                           f->path, json_type_name(md->type));
    const json_member *dup = json_duplicate_key(md);
    if (dup)
        return eng_err_set(err, ENG_ERR_FORMAT, "'%.400s': '__metadata__' has key '%.200s' twice",
                           f->path, dup->key);
    for (size_t i = 0; i < md->n; i++) {
        const json_member *m = json_member_at(md, i);
        if (m->value.type != JSON_STRING)
            return eng_err_set(err, ENG_ERR_FORMAT,
                               "'%.400s': '__metadata__' entry '%.200s' is a JSON %s, expected a "
                               "string",
                               f->path, m->key, json_type_name(m->value.type));
    }
    return ENG_OK;
}

static eng_status parse_header(st_file *f, eng_error *err) {
    const json_value *h = f->header;
    if (h->type != JSON_OBJECT)
        return eng_err_set(err, ENG_ERR_FORMAT, "'%.400s': header is a JSON %s, expected an object",
                           f->path, json_type_name(h->type));
    const json_member *dup = json_duplicate_key(h);
    if (dup)
        return eng_err_set(err, ENG_ERR_FORMAT,
                           "'%.400s': tensor '%.200s' appears twice in the header", f->path,
                           dup->key);
    f->tensors = calloc(h->n ? h->n : 1, sizeof *f->tensors); /* tensors[<= members] */
    if (!f->tensors)
        return eng_err_set(err, ENG_ERR_OOM, "'%.400s': out of memory for %zu tensors", f->path,
                           h->n);
    eng_status st;
    for (size_t i = 0; i < h->n; i++) {
        const json_member *m = json_member_at(h, i);
        if (strlen(m->key) != m->key_len)
            return eng_err_set(err, ENG_ERR_FORMAT,
                               "'%.400s': a tensor name (entry at header byte %zu) contains a NUL byte",
                               f->path, m->value.offset);
        if (strcmp(m->key, "__metadata__") == 0) {
            if ((st = check_metadata(f, &m->value, err)) != ENG_OK) return st;
            f->metadata = &m->value;
            continue;
        }
        if ((st = parse_tensor(f, m, &f->tensors[f->n_tensors], err)) != ENG_OK) return st;
        f->n_tensors++;
    }
    /* byte ranges: sorted by begin, a non-empty range must start at or after the end of every
     * earlier non-empty one */
    qsort(f->tensors, f->n_tensors, sizeof *f->tensors, cmp_by_offset);
    const st_tensor *last = NULL; /* the non-empty range that reaches furthest so far */
    for (size_t i = 0; i < f->n_tensors; i++) {
        const st_tensor *t = &f->tensors[i];
        if (t->begin == t->end) continue;
        if (last && t->begin < last->end)
            return eng_err_set(err, ENG_ERR_FORMAT,
                               "'%.400s': tensors '%.150s' [%llu, %llu] and '%.150s' [%llu, %llu] "
                               "overlap in the data section",
                               f->path, last->name, (unsigned long long)last->begin,
                               (unsigned long long)last->end, t->name,
                               (unsigned long long)t->begin, (unsigned long long)t->end);
        if (!last || t->end > last->end) last = t;
    }
    qsort(f->tensors, f->n_tensors, sizeof *f->tensors, cmp_by_name);
    return ENG_OK;
}

/* ---- open / close / find ---------------------------------------------------------------- */

int safetensors_open_fd(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* a FIFO must not block the open */
    if (fd < 0) return -1;
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

eng_status safetensors_open(const char *path, st_file *out, eng_error *err) {
    if (!out) return eng_err_set(err, ENG_ERR_INVALID_ARG, "safetensors_open: out is NULL");
    memset(out, 0, sizeof *out);
    if (!path) return eng_err_set(err, ENG_ERR_INVALID_ARG, "safetensors_open: path is NULL");
    st_file f;
    memset(&f, 0, sizeof f);
    int fd = -1;
    eng_status st;
    bool fresh = !err || err->status == ENG_OK; /* our message will be the one in err */

    f.path = strdup(path);
    if (!f.path) {
        st = eng_err_set(err, ENG_ERR_OOM, "'%.400s': out of memory", path);
        goto fail;
    }
    fd = safetensors_open_fd(path);
    if (fd < 0) {
        st = eng_err_set(err, ENG_ERR_IO, "open '%.400s': %s", path, strerror(errno));
        goto fail;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        st = eng_err_set(err, ENG_ERR_IO, "fstat '%.400s': %s", path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(sb.st_mode)) {
        st = eng_err_set(err, ENG_ERR_IO, "'%.400s': not a regular file", path);
        goto fail;
    }
    if (sb.st_size < 8) {
        st = eng_err_set(err, ENG_ERR_FORMAT,
                         "'%.400s': file is %lld bytes, too small for a safetensors header "
                         "(8-byte length + JSON)",
                         path, (long long)sb.st_size);
        goto fail;
    }
    if ((uint64_t)sb.st_size > SIZE_MAX) {
        st = eng_err_set(err, ENG_ERR_IO, "'%.400s': %lld bytes do not fit the address space",
                         path, (long long)sb.st_size);
        goto fail;
    }
    size_t size = (size_t)sb.st_size;
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        st = eng_err_set(err, ENG_ERR_IO, "mmap '%.400s' (%zu bytes): %s", path, size,
                         strerror(errno));
        goto fail;
    }
    f.map = map;
    f.map_size = size;
    close(fd); /* the mapping keeps the file */
    fd = -1;

    const uint8_t *bytes = map; /* bytes[size]: the whole file */
    uint64_t n = 0, header_end;
    for (int i = 0; i < 8; i++) n |= (uint64_t)bytes[i] << (8 * i);
    if (n == 0) {
        st = eng_err_set(err, ENG_ERR_FORMAT, "'%.400s': header length is 0", path);
        goto fail;
    }
    if (n > ST_HEADER_CAP) {
        st = eng_err_set(err, ENG_ERR_FORMAT,
                         "'%.400s': header length %llu exceeds the %llu-byte (100 MiB) cap "
                         "(not a safetensors file?)",
                         path, (unsigned long long)n, (unsigned long long)ST_HEADER_CAP);
        goto fail;
    }
    if (eng_add_overflow_u64(8, n, &header_end) || header_end > (uint64_t)size) {
        st = eng_err_set(err, ENG_ERR_FORMAT,
                         "'%.400s': header length %llu but the file has only %llu bytes after "
                         "the 8-byte length (truncated?)",
                         path, (unsigned long long)n, (unsigned long long)(size - 8));
        goto fail;
    }
    f.header_len = n;
    f.data = bytes + header_end;
    f.data_size = (uint64_t)size - header_end;
    if ((st = json_parse((const char *)bytes + 8, (size_t)n, &f.header, err)) != ENG_OK) {
        if (fresh) eng_err_prefix(err, "'%.400s': header (starts at file byte 8)", path);
        goto fail;
    }
    if ((st = parse_header(&f, err)) != ENG_OK) goto fail;
    *out = f;
    return ENG_OK;
fail:
    if (fd >= 0) close(fd);
    safetensors_close(&f);
    return st;
}

void safetensors_close(st_file *f) {
    if (!f) return;
    if (f->map) munmap(f->map, f->map_size);
    json_free(f->header);
    free(f->tensors);
    free(f->path);
    memset(f, 0, sizeof *f);
}

const st_tensor *safetensors_find(const st_file *f, const char *name) {
    if (!f || !name) return NULL;
    size_t lo = 0, hi = f->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->tensors[mid].name, name);
        if (c == 0) return &f->tensors[mid];
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return NULL;
}
