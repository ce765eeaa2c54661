/* test_models.c - the model layer in C (so it also runs under ASan/UBSan and qemu): the
 * golden MMDiT cases from tests/golden (made by make_golden_mmdit.py from diffusers), the
 * denoising loop, and argument errors. ENG_TEST_GOLDEN names the golden folder. */
#include "test_util.h"

static const char *golden_dir(void) {
    const char *d = getenv("ENG_TEST_GOLDEN");
    return d && d[0] ? d : "tests/golden";
}


/* Reads tensor `name` from w into a new float buffer; *n gets the element count. */
static float *read_f32(const eng_weights *w, const char *name, int64_t *n) {
    eng_tensor_info info;
    eng_error err;
    eng_err_clear(&err);
    if (eng_weights_find(w, name, &info, &err) != ENG_OK) return NULL;
    float *buf = test_alloc((size_t)(info.numel ? info.numel : 1) * 4);
    eng_err_clear(&err);
    CHECK(eng_weights_read_f32(w, name, buf, (size_t)info.numel * 4, &err) == ENG_OK, "%s", err.message);
    if (n) *n = info.numel;
    return buf;
}

static void run_golden(const char *model_sub, const char *ref_suffix, double tol) {
    char path[1024];
    snprintf(path, sizeof path, "%s/mmdit_cases.safetensors", golden_dir());
    eng_weights *cases = NULL;
    eng_error err;
    eng_err_clear(&err);
    if (eng_weights_open(path, &cases, &err) != ENG_OK) {
        CHECK(0, "golden cases: %s", err.message);
        return;
    }
    const char *names[] = {"odd_grid_txt1", "txt77", "masked"};
    eng_isa isas[4];
    int n_isa = test_simd_isas(isas);
    for (int ii = -1; ii < n_isa; ii++) {
        eng_runtime *rt = test_runtime(ii < 0 ? ENG_ISA_SCALAR : isas[ii], 2);
        eng_model *m = NULL;
        snprintf(path, sizeof path, "%s/%s", golden_dir(), model_sub);
        eng_err_clear(&err);
        CHECK(eng_model_open(rt, path, &m, &err) == ENG_OK, "%s", err.message);
        for (int c = 0; c < 3 && m; c++) {
            char k[128];
            int64_t n_lat, n_txt, n_ref, n_mask = 0;
            snprintf(k, sizeof k, "%s.latents", names[c]);
            float *lat = read_f32(cases, k, &n_lat);
            snprintf(k, sizeof k, "%s.txt", names[c]);
            float *txt = read_f32(cases, k, &n_txt);
            snprintf(k, sizeof k, "%s.params", names[c]);
            float *par = read_f32(cases, k, NULL);
            snprintf(k, sizeof k, "%s.%s", names[c], ref_suffix);
            float *ref = read_f32(cases, k, &n_ref);
            snprintf(k, sizeof k, "%s.mask", names[c]);
            eng_tensor_info mi;
            const uint8_t *maskf = NULL; /* (n_txt) u8, only in the masked case */
            eng_err_clear(&err);
            if (eng_weights_find(cases, k, &mi, &err) == ENG_OK) {
                maskf = (const uint8_t *)mi.data;
                n_mask = mi.numel;
            }
            float *out = test_alloc((size_t)n_ref * 4);
            eng_err_clear(&err);
            eng_status st = eng_transformer_forward(m, lat, n_lat / 16, txt, n_txt / 16, maskf,
                                                    par[2], (int32_t)par[0], (int32_t)par[1], out,
                                                    (size_t)n_ref * 4, NULL, &err);
            CHECK(st == ENG_OK, "%s: %s", names[c], err.message);
            double e = test_rel_err(out, ref, n_ref);
            CHECK(e <= tol, "%s %s isa=%d: rel err %.3g", model_sub, names[c], ii, e);
            eng_free(lat); eng_free(txt); eng_free(par); eng_free(ref); eng_free(out);
            (void)n_mask;
        }
        eng_model_free(m);
        eng_runtime_free(rt);
    }
    eng_weights_free(cases);
}

static void test_golden_f32(void) { run_golden("mmdit_tiny", "ref_f32", 1e-4); }
static void test_golden_bf16(void) { run_golden("mmdit_tiny_bf16", "ref_bf16", 2e-3); }

static void test_denoise_and_errors(void) {
    char path[1024];
    snprintf(path, sizeof path, "%s/mmdit_tiny", golden_dir());
    eng_runtime *rt = test_runtime(ENG_ISA_AUTO, 2);
    eng_model *m = NULL;
    eng_error err;
    eng_err_clear(&err);
    CHECK(eng_model_open(rt, path, &m, &err) == ENG_OK, "%s", err.message);
    if (!m) return;
    float lat[12 * 16], txt[5 * 16], out[12 * 16];
    eng_randn(1, 0, lat, 12 * 16);
    eng_randn(2, 0, txt, 5 * 16);
    const float sig[5] = {1.0f, 0.9f, 0.75f, 0.5f, 0.0f};
    eng_denoise_params p = {.txt = txt, .n_txt = 5, .txt_dim = 16, .sigmas = sig, .n_steps = 4, .height = 48, .width = 64};
    eng_err_clear(&err);
    CHECK(eng_denoise(m, &p, lat, sizeof lat, NULL, &err) == ENG_OK, "%s", err.message);
    int finite = 1;
    for (int i = 0; i < 12 * 16; i++) finite &= lat[i] == lat[i];
    CHECK(finite, "denoised latents are finite");
    eng_denoise_params wide = p;
    wide.txt_dim = 8; /* a text encoder of another width than joint_attention_dim */
    eng_err_clear(&err);
    CHECK(eng_denoise(m, &wide, lat, sizeof lat, NULL, &err) == ENG_ERR_INVALID_ARG &&
              strstr(err.message, "joint_attention_dim"),
          "txt_dim checked: %s", err.message);
    eng_err_clear(&err);
    CHECK(eng_denoise(m, &p, lat, sizeof lat - 4, NULL, &err) == ENG_ERR_INVALID_ARG && strstr(err.message, "needs"),
          "latents size checked: %s", err.message);
    eng_err_clear(&err);
    CHECK(eng_transformer_forward(m, lat, 12, txt, 5, NULL, 0.5f, 50, 64, out, sizeof out, NULL, &err) ==
              ENG_ERR_INVALID_ARG && strstr(err.message, "multiples of 16"),
          "bad height: %s", err.message);
    eng_err_clear(&err);
    CHECK(eng_transformer_forward(m, lat, 12, txt, 5, NULL, 0.5f, 48, 64, out, 8, NULL, &err) ==
              ENG_ERR_INVALID_ARG && strstr(err.message, "needs"),
          "small out: %s", err.message);
    eng_cancel *c = eng_cancel_create();
    eng_cancel_request(c);
    eng_request req = {.cancel = c};
    eng_err_clear(&err);
    CHECK(eng_transformer_forward(m, lat, 12, txt, 5, NULL, 0.5f, 48, 64, out, sizeof out, &req, &err) ==
              ENG_ERR_CANCELLED,
          "cancel: %s", err.message);
    eng_cancel_free(c);
    eng_model_free(m);
    eng_err_clear(&err);
    CHECK(eng_model_open(rt, "/nonexistent/model", &m, &err) == ENG_ERR_IO && strstr(err.message, "/nonexistent"),
          "missing folder: %s", err.message);
    eng_runtime_free(rt);
}

int main(void) {
    RUN(test_golden_f32);
    RUN(test_golden_bf16);
    RUN(test_denoise_and_errors);
    return test_finish("test_models");
}
