/* model.h - internal side of eng_model: the folder, its components, and file helpers that
 * component loaders (mmdit.c, vae.c, textenc.c) share. */
#ifndef ENG_MODEL_H
#define ENG_MODEL_H

#include "internal.h"
#include "json.h"

#define ENG_PATH_CAP 4096

/* Reads a whole (small) file: *data is NUL-terminated, free() it. ENG_ERR_IO / ENG_ERR_FORMAT
 * when missing or larger than cap bytes. */
eng_status eng_read_file(const char *path, size_t cap, char **data, size_t *len, eng_error *err);
/* Parses a JSON file (config.json, model_index.json); errors name the path. */
eng_status eng_read_json(const char *path, json_value **root, eng_error *err);
/* The weights of a component folder: <base>.safetensors.index.json if present, else
 * <base>.safetensors, else the only *.safetensors in the folder; for each base in bases
 * (NULL-terminated, e.g. {"diffusion_pytorch_model", "model", NULL}). */
eng_status eng_find_weights(const char *dir, const char *const *bases, char *out, size_t cap,
                            eng_error *err);
/* snprintf into a path buffer with an overflow check. */
eng_status eng_join_path(char *out, size_t cap, const char *a, const char *b, eng_error *err);

#endif /* ENG_MODEL_H */
