/* json.h - a small, strictly bounds-checked JSON reader (RFC 8259) for safetensors headers,
 * *.safetensors.index.json and config.json files. Internal to the engine.
 *
 * json_parse() reads a (text, len) buffer (not NUL-terminated) into a read-only tree that
 * lives in ONE heap block: the root is the first node of that block and json_free(root)
 * releases everything. The source text is not referenced after parsing.
 *
 * Accepted: exactly one value (any type) surrounded by optional JSON whitespace (space, tab,
 * CR, LF). Rejected (ENG_ERR_FORMAT, message "JSON at byte N: expected ..., got ..."): any
 * syntax error, nesting deeper than JSON_MAX_DEPTH, raw control characters or invalid escapes
 * in strings, lone or mismatched UTF-16 surrogates in \u escapes, invalid UTF-8 (overlong
 * forms, UTF-16 surrogates, code points above U+10FFFF, truncated sequences).
 *
 * Strings (values and keys) are decoded to UTF-8 and NUL-terminated; a \u0000 escape yields an
 * embedded NUL byte, so the length field is authoritative. Numbers keep their source text
 * (validated against the RFC grammar) and a double (correctly rounded; +-inf when out of
 * range); json_as_int64 decides integrality exactly from the text, not from the double.
 * Objects keep their members in file order plus a by-key index, so member lookup is a binary
 * search and duplicate keys are detectable (json_duplicate_key). Parsing is linear in the
 * input apart from the O(m log m) sort of each object's key index. */
#ifndef ENG_JSON_H
#define ENG_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"

#define JSON_MAX_DEPTH 64 /* most nested arrays/objects json_parse accepts */

typedef enum json_type {
    JSON_NULL = 0,
    JSON_BOOL,
    JSON_NUMBER,
    JSON_STRING,
    JSON_ARRAY,
    JSON_OBJECT,
} json_type;

typedef struct json_value json_value;
typedef struct json_member json_member;

struct json_value {
    json_type type;
    size_t offset; /* byte offset of the value's first character in the parsed text */
    size_t n;      /* STRING: decoded bytes (no NUL); NUMBER: text bytes; ARRAY: elements;
                      OBJECT: members; 0 for NULL/BOOL */
    union {
        bool boolean; /* BOOL */
        struct {
            const char *text; /* NUMBER: the source text, NUL-terminated, e.g. "-1.5e3" */
            double value;     /* NUMBER: nearest double; +-inf when it overflows */
        } number;
        const char *string;   /* STRING: decoded UTF-8, NUL-terminated, n bytes */
        const json_value *items; /* ARRAY: items[n] in file order */
        struct {
            const json_member *members; /* OBJECT: members[n] in file order */
            const size_t *by_key;       /* OBJECT: by_key[n], member indices sorted by key
                                           bytes (ties by index) */
        } object;
    } u;
};

struct json_member {
    const char *key; /* decoded UTF-8, NUL-terminated, key_len bytes */
    size_t key_len;
    json_value value;
};

/* Parses text[0, len). On success *root is the tree (free with json_free); on failure *root is
 * NULL and err says where (byte offset) and what was expected: ENG_ERR_FORMAT, or ENG_ERR_OOM. */
eng_status json_parse(const char *text, size_t len, json_value **root, eng_error *err);
void json_free(json_value *root); /* NULL-safe; root must be what json_parse returned */

const char *json_type_name(json_type t); /* "null", "bool", "number", "string", ... */

/* ---- navigation (NULL-safe: a NULL or wrongly typed v gives NULL / 0) ------------------ */
size_t json_len(const json_value *v);                        /* array/object count, else 0 */
const json_value *json_at(const json_value *arr, size_t i);  /* array element, NULL if out */
const json_member *json_member_at(const json_value *obj, size_t i); /* file order */
/* Member value by key (binary search over the key index). NUL-terminated key; when the key is
 * duplicated the first member in file order is returned. NULL if absent or obj no object. */
const json_value *json_get(const json_value *obj, const char *key);
/* Same with an explicit key length (keys may contain NUL bytes). */
const json_value *json_get_n(const json_value *obj, const char *key, size_t key_len);
/* The first member (in by-key order) whose key equals another member's key, or NULL. */
const json_member *json_duplicate_key(const json_value *obj);

/* ---- typed conversions: ENG_ERR_FORMAT "'<what>': expected ..., got <type/value>" ------- */
/* Exact: the number's decimal value must be an integer in [INT64_MIN, INT64_MAX] ("3", "-0",
 * "1e3" and "2.50e1" are fine; "1.5", "1e400" and 9223372036854775808 are not). */
eng_status json_as_int64(const json_value *v, const char *what, int64_t *out, eng_error *err);
/* The same check without an error message, for callers that word their own. */
typedef enum json_int_result {
    JSON_INT_OK = 0,
    JSON_INT_NOT_NUMBER,  /* v is NULL or not a number */
    JSON_INT_FRACTIONAL,  /* a number, but not an integer (1.5, 1e-3) */
    JSON_INT_RANGE,       /* an integer outside int64 (9223372036854775808, 1e400) */
} json_int_result;
json_int_result json_try_int64(const json_value *v, int64_t *out);
/* Any finite number (a literal that overflows a double is an error). */
eng_status json_as_double(const json_value *v, const char *what, double *out, eng_error *err);
eng_status json_as_bool(const json_value *v, const char *what, bool *out, eng_error *err);
/* *len may be NULL; the string is valid while the tree lives. */
eng_status json_as_string(const json_value *v, const char *what, const char **out, size_t *len,
                          eng_error *err);

/* ---- object member accessors for config files ------------------------------------------ */
/* Required member: absent -> ENG_ERR_FORMAT "missing '<key>'"; wrong type as above. */
eng_status json_get_int64(const json_value *obj, const char *key, int64_t *out, eng_error *err);
eng_status json_get_double(const json_value *obj, const char *key, double *out, eng_error *err);
eng_status json_get_bool(const json_value *obj, const char *key, bool *out, eng_error *err);
eng_status json_get_string(const json_value *obj, const char *key, const char **out,
                           eng_error *err);
/* Optional member: absent or null -> *out = def; present with the wrong type -> error. */
eng_status json_get_int64_or(const json_value *obj, const char *key, int64_t def, int64_t *out,
                             eng_error *err);
eng_status json_get_double_or(const json_value *obj, const char *key, double def, double *out,
                              eng_error *err);
eng_status json_get_bool_or(const json_value *obj, const char *key, bool def, bool *out,
                            eng_error *err);

/* Optional integer member of a config file, range-checked: absent or null -> def; errors are
 * ENG_ERR_FORMAT prefixed with the file path ("'<path>': <key> = 7 outside [1, 4]"). */
eng_status json_get_int32_in(const json_value *obj, const char *key, int64_t def, int64_t lo,
                             int64_t hi, int32_t *out, const char *path, eng_error *err);

#endif /* ENG_JSON_H */
