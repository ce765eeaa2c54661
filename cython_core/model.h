/* model.h - internal side of eng_model: the folder, its components, and file helpers that
 * component loaders (mmdit.c, vae.c, textenc.c) share. */
#ifndef ENG_MODEL_H
#define ENG_MODEL_H

#include "internal.h"
#include "json.h"

#define ENG_PATH_CAP 4096

struct mmdit_model;

/* Component slots: the index order of eng_model.has / extra. */
enum { ENG_COMP_TRANSFORMER, ENG_COMP_VAE, ENG_COMP_TEXT_ENCODER, ENG_COMP_TOKENIZER,
       ENG_COMP_SCHEDULER, ENG_N_COMPONENTS };

struct eng_model {
    eng_runtime *rt;                       /* borrowed; outlives the model */
    char dir[ENG_PATH_CAP];
    bool has[ENG_N_COMPONENTS];            /* component folder exists */
    struct mmdit_model *mmdit;             /* transformer, loaded on first use */
    /* Other components (vae.c, textenc.c) keep their loaded state here, freed with
     * extra_free[slot](extra[slot]) by eng_model_free. Loaders run under rt->lock. */
    void *extra[ENG_N_COMPONENTS];
    void (*extra_free[ENG_N_COMPONENTS])(void *);
    eng_progress_fn progress;              /* loading progress (optional) */
    void *progress_user;
    char *lora_path;                       /* merged into the transformer when it loads */
    float lora_scale;
};

/* <dir>/<component> into out, or ENG_ERR_IO "model '<dir>' has no <component>/ folder". */
eng_status eng_model_component_dir(const eng_model *m, const char *component, char *out,
                                   size_t cap, eng_error *err);

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
