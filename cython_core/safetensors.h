/* safetensors.h - internal API of the weights loader (never included by Cython).
 *
 * Two layers:
 *   safetensors_*  one .safetensors file: open + fstat + mmap(PROT_READ, MAP_PRIVATE), strict
 *                  header validation, a name-sorted tensor table pointing into the mapping
 *                  (safetensors.c);
 *   weights_*      the eng_weights set behind the public API (weights.c): one file or the
 *                  shards of a *.safetensors.index.json, merged and sorted by name; model code
 *                  takes eng_tensor views from it.
 * File format: https://github.com/huggingface/safetensors (u64 LE header length N, N bytes of
 * JSON header, then the data section that data_offsets index). */
#ifndef ENG_SAFETENSORS_H
#define ENG_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h> /* MADV_WILLNEED / MADV_DONTNEED for eng_weights_advise (they need
                          _DEFAULT_SOURCE or _GNU_SOURCE; eng_core builds with _GNU_SOURCE) */

#include "internal.h"
#include "json.h"

#define ST_HEADER_CAP ((uint64_t)100 << 20) /* largest JSON header accepted: 100 MiB */

/* One tensor of a file. All pointers stay valid while the file stays open. */
typedef struct st_tensor {
    const char *name;          /* NUL-terminated (names with NUL bytes are rejected) */
    eng_dtype dtype;
    int32_t ndim;              /* 0 for a scalar */
    int64_t shape[ENG_MAX_DIMS]; /* outermost first; shape[ndim..] are 0 */
    int64_t numel;             /* product of shape (1 for a scalar) */
    uint64_t begin, end;       /* data_offsets: byte range in the data section */
    const void *data;          /* into the mapping; any alignment */
    int32_t file;              /* index of the owning file in an eng_weights set */
} st_tensor;

/* One open, validated .safetensors file. */
typedef struct st_file {
    char *path;                /* owned copy of the path it was opened with */
    void *map;                 /* mmap of the whole file, map_size bytes (NULL if closed) */
    size_t map_size;
    uint64_t header_len;       /* N */
    const uint8_t *data;       /* data section: map + 8 + N, data_size bytes */
    uint64_t data_size;
    json_value *header;        /* the parsed header (owns the names) */
    const json_value *metadata; /* the "__metadata__" object (string values), or NULL */
    st_tensor *tensors;        /* tensors[n_tensors], sorted by name (strcmp) */
    size_t n_tensors;
} st_file;

/* The dtype's safetensors spelling ("BF16"); "?" when unknown. */
const char *safetensors_dtype_name(eng_dtype dt);
/* Parses a safetensors dtype string; false when it is not one of the 15 names. */
bool safetensors_dtype_parse(const char *s, size_t len, eng_dtype *out);

/* Opens and validates one file. Errors: ENG_ERR_IO (open/fstat/mmap, with strerror) or
 * ENG_ERR_FORMAT naming the path and, where one is involved, the tensor. On failure *out is
 * left closed (safetensors_close on it is a no-op). */
eng_status safetensors_open(const char *path, st_file *out, eng_error *err);
/* open(path, O_RDONLY | O_CLOEXEC) that returns at once on a FIFO or device (O_NONBLOCK for the
 * open only; the flag is cleared after it). -1 with errno on failure; callers still fstat and
 * refuse anything but a regular file. */
int safetensors_open_fd(const char *path);
void safetensors_close(st_file *f); /* NULL-safe, idempotent */
/* Binary search by name; NULL when absent. */
const st_tensor *safetensors_find(const st_file *f, const char *name);

/* ---- the eng_weights set (weights.c) ---------------------------------------------------- */

/* A view of tensor `name` (any dtype; data may be unaligned): ENG_ERR_FORMAT
 * "tensor 'x' not found in '<path>'" when absent. */
eng_status weights_tensor(const eng_weights *w, const char *name, eng_tensor *out,
                          eng_error *err);
/* Same, for a weight that the kernels read directly: dtype must be F32, F16 or BF16, the shape
 * exactly shape[ndim] (eng_tensor_expect), and the data aligned to its element size (files
 * written by the safetensors library always are), else ENG_ERR_FORMAT naming the file and
 * tensor. shape: (ndim) expected dims, outermost first. */
eng_status weights_tensor_float(const eng_weights *w, const char *name, int32_t ndim,
                                const int64_t *shape, eng_tensor *out, eng_error *err);
/* True when the set holds `name` (for optional tensors such as biases or LoRA alphas). */
bool weights_has(const eng_weights *w, const char *name);
/* Reads a rank-0 or one-element float tensor (e.g. a LoRA "<name>.alpha") as float32. */
eng_status weights_scalar_f32(const eng_weights *w, const char *name, float *out,
                              eng_error *err);
/* The set's path (the .safetensors file or the index), its shard files, and their
 * "__metadata__" objects (NULL when absent); the index's "metadata" object (NULL for a single
 * file or when absent). */
const char *weights_path(const eng_weights *w);
int32_t weights_file_count(const eng_weights *w);
const char *weights_file_path(const eng_weights *w, int32_t i);
const json_value *weights_file_metadata(const eng_weights *w, int32_t i);
const json_value *weights_index_metadata(const eng_weights *w);
/* madvise(advice) over every mapped file: MADV_WILLNEED to prefetch, MADV_DONTNEED to drop the
 * pages (e.g. the text encoder's after encoding; they are re-read from disk if touched again).
 * Also accepts MADV_NORMAL, MADV_SEQUENTIAL and MADV_RANDOM; anything else is
 * ENG_ERR_INVALID_ARG; a failing madvise is ENG_ERR_IO with strerror. */
eng_status eng_weights_advise(const eng_weights *w, int advice, eng_error *err);

#endif /* ENG_SAFETENSORS_H */
