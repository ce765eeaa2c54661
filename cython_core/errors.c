/* errors.c - status names and the error-message helpers (first error wins). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

const char *eng_status_name(eng_status s) {
    static const char *const names[ENG_STATUS_COUNT] = {
        "ENG_OK",          "ENG_ERR_INVALID_ARG", "ENG_ERR_IO",        "ENG_ERR_FORMAT",
        "ENG_ERR_OOM",     "ENG_ERR_UNSUPPORTED", "ENG_ERR_CANCELLED", "ENG_ERR_BACKEND",
    };
    return (s >= 0 && s < ENG_STATUS_COUNT) ? names[s] : "ENG_ERR_UNKNOWN";
}

void eng_err_clear(eng_error *err) {
    if (!err) return;
    err->status = ENG_OK;
    err->message[0] = '\0';
}

eng_status eng_err_set(eng_error *err, eng_status st, const char *fmt, ...) {
    if (!err || err->status != ENG_OK) return st;
    err->status = st;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return st;
}

eng_status eng_err_prefix(eng_error *err, const char *fmt, ...) {
    if (!err) return ENG_OK;
    char prefix[256], old[ENG_ERROR_CAP];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->message, sizeof old);
    snprintf(err->message, sizeof err->message, "%.200s: %.800s", prefix, old);
    return err->status;
}
