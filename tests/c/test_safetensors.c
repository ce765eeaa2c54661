/* test_safetensors.c - the JSON reader, the safetensors loader (valid and malformed files), the
 * sharded index and the eng_weights API. Files are written with fopen/fwrite into the scratch
 * folder $ENG_TEST_TMP. */
#define _DEFAULT_SOURCE /* clock_gettime, MADV_* under -std=c11 */
#include <errno.h>
#include <sys/stat.h>
#include <time.h>

#include "dtype.h"
#include "json.h"
#include "safetensors.h"
#include "test_util.h"

static char g_tmp[400]; /* scratch folder (paths are built in 600-byte buffers) */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void mkdir_p(const char *dir) {
    char buf[512];
    snprintf(buf, sizeof buf, "%s", dir);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        mkdir(buf, 0755);
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
        printf("FATAL: mkdir %s: %s\n", buf, strerror(errno));
        exit(2);
    }
}

/* buf <- "<tmp>/<name>" */
static const char *tpath(char *buf, size_t cap, const char *name) {
    snprintf(buf, cap, "%s/%s", g_tmp, name);
    return buf;
}

static void write_raw(const char *path, const void *bytes, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(bytes, 1, n, f) != n) || fclose(f) != 0) {
        printf("FATAL: writing %s\n", path);
        exit(2);
    }
}

/* Writes u64 LE header length (len_override if nonzero, else strlen(header)), the header and
 * data[data_len]. */
static void write_st_len(const char *path, uint64_t len_override, const char *header,
                         const void *data, size_t data_len) {
    size_t hl = strlen(header);
    uint64_t n = len_override ? len_override : (uint64_t)hl;
    FILE *f = fopen(path, "wb");
    if (!f) {
        printf("FATAL: fopen %s\n", path);
        exit(2);
    }
    uint8_t le[8];
    for (int i = 0; i < 8; i++) le[i] = (uint8_t)(n >> (8 * i));
    fwrite(le, 1, 8, f);
    fwrite(header, 1, hl, f);
    if (data_len) fwrite(data, 1, data_len, f);
    fclose(f);
}

/* Like the safetensors library: the header is padded with spaces so that the data section
 * starts at a multiple of 8 bytes. */
static void write_st(const char *path, const char *header, const void *data, size_t data_len) {
    size_t hl = strlen(header), padded = (8 + hl + 7) / 8 * 8 - 8;
    char *h = test_alloc(padded + 1); /* header + spaces + NUL */
    memcpy(h, header, hl);
    memset(h + hl, ' ', padded - hl);
    h[padded] = 0;
    write_st_len(path, 0, h, data, data_len);
    eng_free(h);
}

/* Clears an eng_error and passes it on: f(..., CLR(e)) inside a CHECK. */
#define CLR(e) (eng_err_clear(&(e)), &(e))

/* A tensor entry of a header: ENTRY("\"F32\"", "[2, 3]", "[0, 24]") */
#define ENTRY(dt, sh, off) "{\"dtype\": " dt ", \"shape\": " sh ", \"data_offsets\": " off "}"

/* Opens `path` expecting failure with `want`; the message must contain `file` (the base name)
 * and, if non-NULL, `what1` and `what2`. */
static void expect_fail_at(int line, const char *path, eng_status want, const char *what1,
                           const char *what2) {
    eng_weights *w = (eng_weights *)(uintptr_t)1;
    eng_error e = {0};
    eng_status st = eng_weights_open(path, &w, &e);
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    CHECK(st == want, "line %d: %s: got %s, want %s (%s)", line, base, eng_status_name(st),
          eng_status_name(want), e.message);
    CHECK(e.status == st, "line %d: err.status %s", line, eng_status_name(e.status));
    CHECK(w == NULL, "line %d: out not NULL on failure", line);
    CHECK(strstr(e.message, base) != NULL, "line %d: message lacks the file name: %s", line,
          e.message);
    if (what1) CHECK(strstr(e.message, what1) != NULL, "line %d: lacks '%s': %s", line, what1,
                     e.message);
    if (what2) CHECK(strstr(e.message, what2) != NULL, "line %d: lacks '%s': %s", line, what2,
                     e.message);
    if (st == ENG_OK) eng_weights_free(w);
}
#define EXPECT_FAIL(path, want, w1, w2) expect_fail_at(__LINE__, path, want, w1, w2)

/* A one-tensor file with the given header, and `data_len` zero bytes of data, must fail. */
static void bad_header_at(int line, const char *name, const char *header, size_t data_len,
                          const char *w1, const char *w2) {
    char p[600];
    static const uint8_t zeros[4096]; /* data section filler */
    write_st(tpath(p, sizeof p, name), header, zeros, data_len);
    expect_fail_at(line, p, ENG_ERR_FORMAT, w1, w2);
}
#define BAD_HEADER(name, header, data_len, w1, w2) \
    bad_header_at(__LINE__, name, header, data_len, w1, w2)

static eng_weights *open_ok(const char *path) {
    eng_weights *w = NULL;
    eng_error e = {0};
    eng_status st = eng_weights_open(path, &w, &e);
    CHECK(st == ENG_OK && w, "open %s: %s %s", path, eng_status_name(st), e.message);
    return st == ENG_OK ? w : NULL;
}

/* ---- JSON ---------------------------------------------------------------------------------- */

static json_value *parse_ok(const char *text) {
    json_value *v = NULL;
    eng_error e = {0};
    eng_status st = json_parse(text, strlen(text), &v, &e);
    CHECK(st == ENG_OK && v, "parse '%s': %s", text, e.message);
    return v;
}

static void parse_bad_at(int line, const char *text, size_t len, const char *must) {
    json_value *v = (json_value *)(uintptr_t)1;
    eng_error e = {0};
    eng_status st = json_parse(text, len, &v, &e);
    CHECK(st == ENG_ERR_FORMAT, "line %d: '%.40s' parsed (%s)", line, text, eng_status_name(st));
    CHECK(v == NULL, "line %d: root not NULL on failure", line);
    CHECK(strstr(e.message, "JSON at byte") != NULL, "line %d: no offset in: %s", line,
          e.message);
    if (must) CHECK(strstr(e.message, must) != NULL, "line %d: lacks '%s': %s", line, must,
                    e.message);
    if (st == ENG_OK) json_free(v);
}
#define PARSE_BAD(text, must) parse_bad_at(__LINE__, text, strlen(text), must)

static void test_json_basic(void) {
    json_value *v = parse_ok(" \t\r\n{\"a\": [1, 2.5, \"x\", true, false, null, [], {}],"
                             " \"b\": {\"c\": -3}, \"\": 7} \n");
    if (!v) return;
    CHECK(v->type == JSON_OBJECT && json_len(v) == 3, "root");
    const json_value *a = json_get(v, "a");
    CHECK(a && a->type == JSON_ARRAY && json_len(a) == 8, "a");
    CHECK(json_at(a, 0)->type == JSON_NUMBER && json_at(a, 0)->u.number.value == 1.0, "a[0]");
    CHECK(json_at(a, 1)->u.number.value == 2.5 && strcmp(json_at(a, 1)->u.number.text, "2.5") == 0,
          "a[1]");
    CHECK(json_at(a, 2)->type == JSON_STRING && strcmp(json_at(a, 2)->u.string, "x") == 0, "a[2]");
    CHECK(json_at(a, 3)->type == JSON_BOOL && json_at(a, 3)->u.boolean, "a[3]");
    CHECK(json_at(a, 4)->type == JSON_BOOL && !json_at(a, 4)->u.boolean, "a[4]");
    CHECK(json_at(a, 5)->type == JSON_NULL, "a[5]");
    CHECK(json_at(a, 6)->type == JSON_ARRAY && json_len(json_at(a, 6)) == 0, "a[6]");
    CHECK(json_at(a, 7)->type == JSON_OBJECT && json_len(json_at(a, 7)) == 0, "a[7]");
    CHECK(json_at(a, 8) == NULL, "a[8] out of range");
    CHECK(json_get(json_at(a, 7), "x") == NULL, "lookup in empty object");
    int64_t c = 0;
    eng_error e;
    CHECK(json_get_int64(json_get(v, "b"), "c", &c, CLR(e)) == ENG_OK && c == -3, "b.c %s",
          e.message);
    CHECK(json_get_int64(v, "", &c, &e) == ENG_OK && c == 7, "empty key");
    CHECK(json_get(v, "zz") == NULL && json_get(a, "a") == NULL && json_get(NULL, "a") == NULL,
          "absent lookups");
    CHECK(json_at(a, 0)->offset == 11, "offset of a[0] = %zu", json_at(a, 0)->offset);
    const json_member *m0 = json_member_at(v, 0);
    CHECK(m0 && strcmp(m0->key, "a") == 0, "members keep file order");
    json_free(v);

    /* top-level scalars, and a buffer that is not NUL-terminated */
    v = parse_ok("42");
    CHECK(v && v->type == JSON_NUMBER && v->u.number.value == 42, "scalar root");
    json_free(v);
    v = parse_ok("\"s\"");
    CHECK(v && v->type == JSON_STRING && v->n == 1, "string root");
    json_free(v);
    json_value *r = NULL;
    CHECK(json_parse("123456", 3, &r, &e) == ENG_OK && r->u.number.value == 123 &&
              strcmp(r->u.number.text, "123") == 0,
          "length-bounded number");
    json_free(r);
    r = NULL;
    CHECK(json_parse("[1]garbage", 3, &r, &e) == ENG_OK && json_len(r) == 1, "bounded array");
    json_free(r);
    parse_bad_at(__LINE__, "\"abc\"", 4, "unterminated"); /* the closing quote is past len */
    parse_bad_at(__LINE__, "tru", 3, "'true'");
    parse_bad_at(__LINE__, "[1,", 3, "end of input");
}

static void test_json_syntax_errors(void) {
    PARSE_BAD("", "expected a value, got end of input");
    PARSE_BAD("   ", "end of input");
    PARSE_BAD("[1, 2,]", "byte 6");
    PARSE_BAD("{\"a\" 1}", "':'");
    PARSE_BAD("{\"a\":1,}", "a string key");
    PARSE_BAD("{'a':1}", "a string key");
    PARSE_BAD("{a:1}", "a string key");
    PARSE_BAD("[1 2]", "',' or ']'");
    PARSE_BAD("{\"a\":1 \"b\":2}", "',' or '}'");
    PARSE_BAD("01", "end of input");
    PARSE_BAD("1.", "after the decimal point");
    PARSE_BAD(".5", "a value");
    PARSE_BAD("-", "a digit");
    PARSE_BAD("1e", "exponent");
    PARSE_BAD("1e+", "exponent");
    PARSE_BAD("+1", "a value");
    PARSE_BAD("nul", "'null'");
    PARSE_BAD("NaN", "a value");
    PARSE_BAD("Infinity", "a value");
    PARSE_BAD("[", "end of input");
    PARSE_BAD("{", "a string key");
    PARSE_BAD("[1]x", "byte 3");
    PARSE_BAD("{} {}", "end of input");
    PARSE_BAD("[1,,2]", "a value");
    PARSE_BAD("\x01", "byte 0x01");
}

static void test_json_strings(void) {
    json_value *v = parse_ok("\"\\\"\\\\\\/\\b\\f\\n\\r\\tA\\u0041\\u00e9\\u20AC\\ud83d\\ude00\"");
    const char want[] = "\"\\/\b\f\n\r\tAA\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80";
    if (v) {
        CHECK(v->type == JSON_STRING && v->n == sizeof want - 1 &&
                  memcmp(v->u.string, want, v->n) == 0 && v->u.string[v->n] == 0,
              "escapes decoded (n=%zu)", v->n);
        json_free(v);
    }
    v = parse_ok("\"a\\u0000b\"");
    CHECK(v && v->n == 3 && v->u.string[1] == 0 && v->u.string[2] == 'b', "embedded NUL");
    json_free(v);
    v = parse_ok("\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf\xed\x9f\xbf\"");
    CHECK(v && v->n == 16, "raw UTF-8 kept (n=%zu)", v ? v->n : 0);
    json_free(v);
    /* key lookup with an embedded NUL needs json_get_n */
    v = parse_ok("{\"k\\u0000x\": 1, \"k\": 2}");
    if (v) {
        CHECK(json_get_n(v, "k\0x", 3) && json_get_n(v, "k\0x", 3)->u.number.value == 1, "NUL key");
        CHECK(json_get(v, "k") && json_get(v, "k")->u.number.value == 2, "prefix key");
        json_free(v);
    }

    PARSE_BAD("\"\\ud83d\"", "high surrogate");
    PARSE_BAD("\"\\ud83d\\u0041\"", "high surrogate");
    PARSE_BAD("\"\\ud83dx\"", "high surrogate");
    PARSE_BAD("\"\\ude00\"", "low surrogate");
    PARSE_BAD("\"\\x\"", "invalid escape");
    PARSE_BAD("\"\\u12G4\"", "hex digit");
    PARSE_BAD("\"\\u12\"", "hex digit");
    PARSE_BAD("\"a\x01\"", "control character 0x01");
    PARSE_BAD("\"a\nb\"", "control character 0x0a");
    PARSE_BAD("\"\xc0\xaf\"", "invalid UTF-8");         /* overlong '/' */
    PARSE_BAD("\"\xe0\x80\xaf\"", "invalid UTF-8");     /* overlong 3-byte */
    PARSE_BAD("\"\xed\xa0\x80\"", "invalid UTF-8");     /* UTF-16 surrogate */
    PARSE_BAD("\"\xf4\x90\x80\x80\"", "invalid UTF-8"); /* > U+10FFFF */
    PARSE_BAD("\"\xe2\x82\"", "invalid UTF-8");         /* truncated */
    PARSE_BAD("\"\x80\"", "invalid UTF-8");             /* lone continuation */
    PARSE_BAD("\"\xff\"", "invalid UTF-8");
    PARSE_BAD("\"abc", "unterminated");
    PARSE_BAD("\"\\", "escape");
    PARSE_BAD("{\"\xff\":1}", "invalid UTF-8"); /* keys too */
}

static void test_json_depth(void) {
    char buf[300]; /* JSON_MAX_DEPTH (+1) nested arrays */
    for (int d = JSON_MAX_DEPTH; d <= JSON_MAX_DEPTH + 1; d++) {
        int n = 0;
        for (int i = 0; i < d; i++) buf[n++] = '[';
        for (int i = 0; i < d; i++) buf[n++] = ']';
        buf[n] = 0;
        json_value *v = NULL;
        eng_error e = {0};
        eng_status st = json_parse(buf, (size_t)n, &v, &e);
        if (d == JSON_MAX_DEPTH) {
            CHECK(st == ENG_OK, "depth %d rejected: %s", d, e.message);
        } else {
            CHECK(st == ENG_ERR_FORMAT && strstr(e.message, "nesting"), "depth %d: %s", d,
                  e.message);
        }
        json_free(v);
    }
    /* objects count too; a deep but failing document must not recurse unboundedly */
    char deep[20001];
    memset(deep, '[', 20000);
    deep[20000] = 0;
    parse_bad_at(__LINE__, deep, 20000, "nesting");
    char obj[600];
    int n = 0;
    for (int i = 0; i <= JSON_MAX_DEPTH; i++)
        n += snprintf(obj + n, sizeof obj - (size_t)n, "{\"a\":");
    n += snprintf(obj + n, sizeof obj - (size_t)n, "1");
    for (int i = 0; i <= JSON_MAX_DEPTH; i++) obj[n++] = '}';
    obj[n] = 0;
    parse_bad_at(__LINE__, obj, (size_t)n, "nesting");
}

static void test_json_duplicates(void) {
    json_value *v = parse_ok("{\"a\": 1, \"b\": 2, \"a\": 3}");
    if (!v) return;
    const json_member *d = json_duplicate_key(v);
    CHECK(d && strcmp(d->key, "a") == 0 && d->value.u.number.value == 3, "duplicate 'a' found");
    CHECK(json_get(v, "a")->u.number.value == 1, "lookup returns the first of duplicates");
    json_free(v);
    v = parse_ok("{\"a\": 1, \"b\": {\"a\": 2}, \"ab\": 3}");
    CHECK(v && json_duplicate_key(v) == NULL, "no false duplicate");
    CHECK(json_duplicate_key(NULL) == NULL, "NULL-safe");
    json_free(v);
}

static void int64_case(int line, const char *text, bool ok, int64_t want, const char *must) {
    json_value *v = parse_ok(text);
    if (!v) return;
    int64_t got = 12345;
    eng_error e = {0};
    eng_status st = json_as_int64(v, "n", &got, &e);
    if (ok) {
        CHECK(st == ENG_OK && got == want, "line %d: %s -> %lld (%s)", line, text, (long long)got,
              e.message);
    } else {
        CHECK(st == ENG_ERR_FORMAT, "line %d: %s accepted as %lld", line, text, (long long)got);
        CHECK(strstr(e.message, "'n'") != NULL, "line %d: no name in %s", line, e.message);
        if (must)
            CHECK(strstr(e.message, must) != NULL, "line %d: lacks %s: %s", line, must, e.message);
        CHECK(got == 12345, "line %d: out written on failure", line);
    }
    json_free(v);
}
#define I64_OK(text, want) int64_case(__LINE__, text, true, want, NULL)
#define I64_BAD(text, must) int64_case(__LINE__, text, false, 0, must)

static void test_json_int64(void) {
    I64_OK("0", 0);
    I64_OK("-0", 0);
    I64_OK("-0.0e5", 0);
    I64_OK("7", 7);
    I64_OK("-42", -42);
    I64_OK("9223372036854775807", INT64_MAX);
    I64_OK("-9223372036854775808", INT64_MIN);
    I64_OK("1e3", 1000);
    I64_OK("1E+3", 1000);
    I64_OK("2.50e1", 25);
    I64_OK("1.0", 1);
    I64_OK("0.1e1", 1);
    I64_OK("100e-2", 1);
    I64_OK("1e18", 1000000000000000000LL);
    I64_OK("9.223372036854775807e18", INT64_MAX);
    I64_OK("1.0000000000000000000000000000000000", 1);
    I64_OK("0.000000000000000000000000000000000001e36", 1);
    I64_BAD("9223372036854775808", "int64 range");
    I64_BAD("-9223372036854775809", "int64 range");
    I64_BAD("1e19", "int64 range");
    I64_BAD("1e400", "int64 range");
    I64_BAD("1e999999999999999999999", "int64 range");
    I64_BAD("123456789012345678901234567890", "int64 range");
    I64_BAD("1.5", "expected an integer");
    I64_BAD("123e-1", "expected an integer");
    I64_BAD("1e-999999999999999999999", "expected an integer");
    I64_BAD("0.5", "expected an integer");
    I64_BAD("\"5\"", "string");
    I64_BAD("true", "bool");
    I64_BAD("null", "null");
}

static void test_json_doubles(void) {
    static const char *const texts[] = {
        "0.1", "1e-7", "3.141592653589793", "1.7976931348623157e308", "5e-324",
        "2.2250738585072014e-308",
        "123456789012345678901234567890", "0.000001", "-1.5E-3", "9007199254740993", "1e22",
        "1e23", "0.30000000000000004", "4.9406564584124654e-324",
        "100000000000000000000000000000.5",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        json_value *v = parse_ok(texts[i]);
        if (!v) continue;
        double want = strtod(texts[i], NULL), got = 0;
        eng_error e;
        CHECK(json_as_double(v, "x", &got, CLR(e)) == ENG_OK && got == want,
              "%s -> %.17g (want %.17g)", texts[i], got, want);
        json_free(v);
    }
    json_value *v = parse_ok("-0.0");
    CHECK(v && v->u.number.value == 0 && signbit(v->u.number.value), "-0.0 keeps its sign");
    json_free(v);
    v = parse_ok("1e400");
    double d = 0;
    eng_error e = {0};
    CHECK(v && isinf(v->u.number.value), "1e400 is inf in the tree");
    CHECK(json_as_double(v, "x", &d, &e) == ENG_ERR_FORMAT && strstr(e.message, "double range"),
          "1e400 rejected by json_as_double: %s", e.message);
    json_free(v);
}

static void test_json_accessors(void) {
    json_value *v = parse_ok("{\"n\": 3, \"f\": 0.5, \"b\": true, \"s\": \"hi\", \"z\": null}");
    if (!v) return;
    eng_error e;
    int64_t i = 0;
    double d = 0;
    bool b = false;
    const char *s = NULL;
    CHECK(json_get_int64(v, "n", &i, CLR(e)) == ENG_OK && i == 3, "int");
    CHECK(json_get_double(v, "f", &d, &e) == ENG_OK && d == 0.5, "double");
    CHECK(json_get_double(v, "n", &d, &e) == ENG_OK && d == 3, "int as double");
    CHECK(json_get_bool(v, "b", &b, &e) == ENG_OK && b, "bool");
    CHECK(json_get_string(v, "s", &s, &e) == ENG_OK && strcmp(s, "hi") == 0, "string");
    CHECK(json_get_int64_or(v, "missing", 9, &i, &e) == ENG_OK && i == 9, "int default");
    CHECK(json_get_int64_or(v, "z", 8, &i, &e) == ENG_OK && i == 8, "null -> default");
    CHECK(json_get_double_or(v, "missing", 1.5, &d, &e) == ENG_OK && d == 1.5, "double default");
    CHECK(json_get_bool_or(v, "b", false, &b, &e) == ENG_OK && b, "bool present");
    CHECK(e.status == ENG_OK, "no error so far: %s", e.message);

    CHECK(json_get_int64(v, "missing", &i, CLR(e)) == ENG_ERR_FORMAT &&
              strstr(e.message, "missing 'missing'"),
          "missing: %s", e.message);
    CHECK(json_get_int64(v, "s", &i, CLR(e)) == ENG_ERR_FORMAT && strstr(e.message, "'s'") &&
              strstr(e.message, "string"),
          "int from string: %s", e.message);
    CHECK(json_get_int64(v, "f", &i, CLR(e)) == ENG_ERR_FORMAT && strstr(e.message, "0.5"),
          "int from 0.5: %s", e.message);
    CHECK(json_get_bool_or(v, "n", true, &b, CLR(e)) == ENG_ERR_FORMAT && strstr(e.message, "'n'"),
          "bool from number: %s", e.message);
    CHECK(json_get_string(json_get(v, "n"), "x", &s, CLR(e)) == ENG_ERR_FORMAT &&
              strstr(e.message, "expected an object"),
          "lookup in a number: %s", e.message);
    /* first error wins */
    eng_err_clear(&e);
    json_get_int64(v, "missing", &i, &e);
    json_get_int64(v, "s", &i, &e);
    CHECK(strstr(e.message, "missing 'missing'") != NULL, "first error kept: %s", e.message);
    json_free(v);
}

static void test_json_big_object(void) {
    enum { N = 100000 };
    size_t cap = (size_t)N * 32 + 16, n = 0;
    char *text = test_alloc(cap); /* {"k<i>": i, ...} in descending key order */
    text[n++] = '{';
    for (int i = N - 1; i >= 0; i--)
        n += (size_t)snprintf(text + n, cap - n, "%s\"k%d\": %d", i == N - 1 ? "" : ",", i, i);
    text[n++] = '}';
    double t0 = now_s();
    json_value *v = NULL;
    eng_error e = {0};
    eng_status st = json_parse(text, n, &v, &e);
    double t1 = now_s();
    CHECK(st == ENG_OK && json_len(v) == N, "big object: %s", e.message);
    int bad = 0;
    for (int i = 0; i < N && v; i++) {
        char key[32];
        snprintf(key, sizeof key, "k%d", i);
        const json_value *x = json_get(v, key);
        if (!x || x->u.number.value != i) bad++;
    }
    double t2 = now_s();
    CHECK(bad == 0, "%d lookups failed", bad);
    CHECK(json_duplicate_key(v) == NULL, "no duplicates");
    printf("  json: 100k-member object parsed in %.1f ms, 100k lookups in %.1f ms\n",
           (t1 - t0) * 1e3, (t2 - t1) * 1e3);
    CHECK(t2 - t0 < 2.0, "100k-member object too slow: %.2f s", t2 - t0);
    json_free(v);
    eng_free(text);
}

/* ---- safetensors: valid files -------------------------------------------------------------- */

/* exactly representable in every float dtype, F8_E5M2 included */
static const float k_vals[8] = {0.0f, 1.0f, -2.0f, 0.5f, 3.5f, -0.125f, 96.0f, -0.0f};

static void check_read(eng_weights *w, const char *name, const float *want, int64_t n) {
    float got[64];
    eng_error e = {0};
    eng_status st = eng_weights_read_f32(w, name, got, sizeof got, &e);
    CHECK(st == ENG_OK, "read %s: %s", name, e.message);
    if (st != ENG_OK) return;
    for (int64_t i = 0; i < n; i++) {
        bool same = (want[i] != want[i]) ? (got[i] != got[i])
                                         : eng_f32_bits(got[i]) == eng_f32_bits(want[i]);
        CHECK(same, "%s[%lld]: got %g (0x%08x), want %g (0x%08x)", name, (long long)i, got[i],
              eng_f32_bits(got[i]), want[i], eng_f32_bits(want[i]));
    }
}

static void test_float_dtypes(void) {
    /* data: one tensor per dtype holding k_vals (8 values), in dtype-size order (aligned) */
    uint8_t data[8 * 8 + 8 * 4 + 8 * 2 * 2 + 8 * 2];
    size_t o = 0;
    for (int i = 0; i < 8; i++) {
        double d = k_vals[i];
        memcpy(data + o, &d, 8);
        o += 8;
    }
    memcpy(data + o, k_vals, 32);
    o += 32;
    uint16_t half[8]; /* f16 / bf16 encodings of k_vals */
    eng_f32_to_f16(half, k_vals, 8);
    memcpy(data + o, half, 16);
    o += 16;
    eng_f32_to_bf16(half, k_vals, 8);
    memcpy(data + o, half, 16);
    o += 16;
    /* f8 e4m3: 0, 1, -2, 0.5, 3.5, -0.125, 96, -0 */
    const uint8_t e4m3[8] = {0x00, 0x38, 0xc0, 0x30, 0x46, 0xa0, 0x6c, 0x80};
    /* f8 e5m2: same values */
    const uint8_t e5m2[8] = {0x00, 0x3c, 0xc0, 0x38, 0x43, 0xb0, 0x56, 0x80};
    memcpy(data + o, e4m3, 8);
    o += 8;
    memcpy(data + o, e5m2, 8);
    o += 8;
    const char *hdr = "{\"__metadata__\": {\"format\": \"pt\", \"note\": \"caf\\u00e9\"},"
                      "\"w64\": " ENTRY("\"F64\"", "[2, 4]", "[0, 64]") ","
                      "\"w32\": " ENTRY("\"F32\"", "[8]", "[64, 96]") ","
                      "\"w16\": " ENTRY("\"F16\"", "[4, 2]", "[96, 112]") ","
                      "\"wbf\": " ENTRY("\"BF16\"", "[1, 8]", "[112, 128]") ","
                      "\"we4\": " ENTRY("\"F8_E4M3\"", "[8]", "[128, 136]") ","
                      "\"we5\": " ENTRY("\"F8_E5M2\"", "[2, 2, 2]", "[136, 144]") "}";
    char p[600];
    write_st(tpath(p, sizeof p, "float_dtypes.safetensors"), hdr, data, o);
    eng_weights *w = open_ok(p);
    if (!w) return;
    CHECK(eng_weights_count(w) == 6, "count %lld", (long long)eng_weights_count(w));
    const char *names[] = {"w16", "w32", "w64", "wbf", "we4", "we5"}; /* name order */
    const eng_dtype dts[] = {ENG_F16, ENG_F32, ENG_F64, ENG_BF16, ENG_F8_E4M3, ENG_F8_E5M2};
    for (int i = 0; i < 6; i++) {
        eng_tensor_info info;
        eng_error e;
        CHECK(eng_weights_info(w, i, &info, CLR(e)) == ENG_OK, "info %d: %s", i, e.message);
        CHECK(strcmp(info.name, names[i]) == 0, "info %d is %s, want %s", i, info.name, names[i]);
        CHECK(info.dtype == dts[i], "%s dtype %s", names[i], eng_dtype_name(info.dtype));
        CHECK(info.numel == 8 && info.nbytes == 8 * eng_dtype_size(dts[i]), "%s numel/nbytes",
              names[i]);
        CHECK(strcmp(info.file, p) == 0, "file %s", info.file);
        check_read(w, names[i], k_vals, 8);
    }
    eng_tensor_info info;
    eng_error e;
    CHECK(eng_weights_find(w, "we5", &info, CLR(e)) == ENG_OK && info.ndim == 3 &&
              info.shape[0] == 2 && info.shape[2] == 2,
          "find we5");
    /* the data pointer is into the mapping at the right place */
    CHECK(eng_weights_find(w, "w32", &info, &e) == ENG_OK && memcmp(info.data, k_vals, 32) == 0,
          "w32 data pointer");
    const json_value *md = weights_file_metadata(w, 0);
    const char *s = NULL;
    CHECK(md && json_get_string(md, "format", &s, &e) == ENG_OK && strcmp(s, "pt") == 0,
          "__metadata__ format");
    CHECK(md && json_get_string(md, "note", &s, &e) == ENG_OK && strcmp(s, "caf\xc3\xa9") == 0,
          "__metadata__ escapes");
    CHECK(weights_index_metadata(w) == NULL && weights_file_count(w) == 1, "single file");
    CHECK(strcmp(weights_path(w), p) == 0 && strcmp(weights_file_path(w, 0), p) == 0, "paths");

    /* internal views */
    eng_tensor t;
    const int64_t sh16[2] = {4, 2}, bad_sh[2] = {2, 4};
    CHECK(weights_tensor_float(w, "w16", 2, sh16, &t, CLR(e)) == ENG_OK && t.dtype == ENG_F16 &&
              t.data == (const uint8_t *)info.data + 32,
          "w16 float view: %s", e.message);
    CHECK(weights_tensor_float(w, "w16", 2, bad_sh, &t, CLR(e)) == ENG_ERR_FORMAT &&
              strstr(e.message, "float_dtypes.safetensors") && strstr(e.message, "w16") &&
              strstr(e.message, "[2, 4]") && strstr(e.message, "[4, 2]"),
          "shape mismatch: %s", e.message);
    CHECK(weights_tensor_float(w, "we4", 1, (const int64_t[]){8}, &t, CLR(e)) == ENG_ERR_FORMAT &&
              strstr(e.message, "F8_E4M3") && strstr(e.message, "we4"),
          "f8 is no kernel dtype: %s", e.message);
    CHECK(weights_tensor(w, "w64", &t, CLR(e)) == ENG_OK && t.dtype == ENG_F64 && t.ndim == 2 &&
              eng_tensor_numel(&t) == 8,
          "plain view of f64");
    CHECK(weights_has(w, "w32") && !weights_has(w, "w33") && !weights_has(w, NULL), "has");

    /* errors of the API */
    float out[8];
    CHECK(eng_weights_read_f32(w, "w32", out, sizeof out - 1, CLR(e)) == ENG_ERR_INVALID_ARG &&
              strstr(e.message, "w32"),
          "small output: %s", e.message);
    CHECK(eng_weights_find(w, "nope", &info, CLR(e)) == ENG_ERR_FORMAT &&
              strstr(e.message, "tensor 'nope' not found in") && strstr(e.message, p),
          "not found: %s", e.message);
    CHECK(eng_weights_read_f32(w, "nope", out, sizeof out, CLR(e)) == ENG_ERR_FORMAT, "missing");
    CHECK(eng_weights_info(w, 6, &info, CLR(e)) == ENG_ERR_INVALID_ARG, "info past end");
    CHECK(eng_weights_info(w, -1, &info, CLR(e)) == ENG_ERR_INVALID_ARG, "info -1");

    /* madvise wrapper */
    CHECK(eng_weights_advise(w, MADV_WILLNEED, CLR(e)) == ENG_OK, "WILLNEED: %s", e.message);
    CHECK(eng_weights_advise(w, MADV_DONTNEED, &e) == ENG_OK, "DONTNEED: %s", e.message);
    check_read(w, "wbf", k_vals, 8); /* pages come back from the file */
    CHECK(eng_weights_advise(w, 12345, &e) == ENG_ERR_INVALID_ARG, "bogus advice");
    eng_weights_free(w);
}

static void test_bit_patterns(void) {
    /* bf16, f16, e4m3, e5m2 special values -> f32 */
    const uint16_t bf[6] = {0x3f80, 0xc000, 0x7f80, 0xff80, 0x0001, 0x7fc0};
    const float bf_want[6] = {1.0f, -2.0f, INFINITY, -INFINITY, 9.18354962e-41f /* 2^-133 */, NAN};
    const uint16_t h[6] = {0x3c00, 0x0001, 0x7bff, 0xfc00, 0x8400, 0x7e00};
    const float h_want[6] = {1.0f,      5.9604644775390625e-8f, 65504.0f,
                             -INFINITY, -6.103515625e-5f,       NAN};
    const uint8_t e4[6] = {0x38, 0x7e, 0x01, 0x7f, 0xfe, 0x08};
    const float e4_want[6] = {1.0f, 448.0f, 0.001953125f, NAN, -448.0f, 0.015625f};
    const uint8_t e5[6] = {0x3c, 0x7b, 0x7c, 0x01, 0x7f, 0xfc};
    const float e5_want[6] = {1.0f, 57344.0f, INFINITY, 1.52587890625e-5f, NAN, -INFINITY};
    const double f64[4] = {1e300, -1e300, 1e-300, 0.1};
    const float f64_want[4] = {INFINITY, -INFINITY, 0.0f, 0.1f};
    uint8_t data[12 + 12 + 6 + 6 + 32 + 4]; /* bf | h | e4 | e5 | f64 (at 36: misaligned) | i32 */
    memcpy(data, bf, 12);
    memcpy(data + 12, h, 12);
    memcpy(data + 24, e4, 6);
    memcpy(data + 30, e5, 6);
    memcpy(data + 36, f64, 32);
    memset(data + 68, 7, 4);
    const char *hdr = "{\"bf\": " ENTRY("\"BF16\"", "[6]", "[0, 12]") ","
                      " \"h\": " ENTRY("\"F16\"", "[6]", "[12, 24]") ","
                      " \"e4\": " ENTRY("\"F8_E4M3\"", "[6]", "[24, 30]") ","
                      " \"e5\": " ENTRY("\"F8_E5M2\"", "[6]", "[30, 36]") ","
                      " \"d\": " ENTRY("\"F64\"", "[4]", "[36, 68]") ","
                      " \"i\": " ENTRY("\"I32\"", "[1]", "[68, 72]") "}";
    char p[600];
    write_st(tpath(p, sizeof p, "bits.safetensors"), hdr, data, sizeof data);
    eng_weights *w = open_ok(p);
    if (!w) return;
    check_read(w, "bf", bf_want, 6);
    check_read(w, "h", h_want, 6);
    check_read(w, "e4", e4_want, 6);
    check_read(w, "e5", e5_want, 6);
    check_read(w, "d", f64_want, 4);
    float out[4];
    eng_error e;
    CHECK(eng_weights_read_f32(w, "i", out, sizeof out, CLR(e)) == ENG_ERR_UNSUPPORTED &&
              strstr(e.message, "'i'") && strstr(e.message, "I32") &&
              strstr(e.message, "bits.safetensors"),
          "I32 -> f32: %s", e.message);
    eng_weights_free(w);
}

static void test_alignment(void) {
    /* the data section is 8-byte aligned (write_st pads) and a 1-byte U8 comes first: the F32
     * and BF16 tensors sit at odd addresses; reading must still work (memcpy), views refuse */
    const float f[3] = {1.5f, -2.25f, 1e-3f};
    uint16_t b[3];
    eng_f32_to_bf16(b, f, 3);
    uint8_t data[1 + 12 + 6];
    data[0] = 9;
    memcpy(data + 1, f, 12);
    memcpy(data + 13, b, 6);
    char hdr[512];
    snprintf(hdr, sizeof hdr,
             "{\"u\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
             "\"f\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[1,13]},"
             "\"b\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[13,19]}}  ");
    char p[600];
    write_st(tpath(p, sizeof p, "unaligned.safetensors"), hdr, data, sizeof data);
    eng_weights *w = open_ok(p);
    if (!w) return;
    check_read(w, "f", f, 3);
    float fb[3];
    eng_bf16_to_f32(fb, b, 3);
    check_read(w, "b", fb, 3);
    eng_tensor t;
    eng_error e;
    CHECK(weights_tensor_float(w, "f", 1, (const int64_t[]){3}, &t, CLR(e)) == ENG_ERR_FORMAT &&
              strstr(e.message, "'f'") && strstr(e.message, "element size"),
          "misaligned view refused: %s", e.message);
    eng_weights_free(w);
}

static void test_scalars_and_empty(void) {
    const float alpha = 8.0f;
    const char *hdr = "{\"lora.alpha\": " ENTRY("\"F32\"", "[]", "[0, 4]") ","
                      " \"empty\": " ENTRY("\"BF16\"", "[0, 5]", "[4, 4]") ","
                      " \"empty2\": " ENTRY("\"F32\"", "[3, 0]", "[4, 4]") ","
                      " \"big0\": " ENTRY("\"F32\"", "[4611686018427387904, 8, 0]", "[0, 0]") ","
                      " \"one\": " ENTRY("\"F16\"", "[1, 1]", "[4, 6]") "}";
    uint8_t data[6];
    memcpy(data, &alpha, 4);
    uint16_t h = eng_f32_to_f16_1(0.25f);
    memcpy(data + 4, &h, 2);
    char p[600];
    write_st(tpath(p, sizeof p, "scalars.safetensors"), hdr, data, sizeof data);
    eng_weights *w = open_ok(p);
    if (!w) return;
    eng_tensor_info info;
    eng_error e;
    CHECK(eng_weights_find(w, "lora.alpha", &info, CLR(e)) == ENG_OK && info.ndim == 0 &&
              info.numel == 1 && info.nbytes == 4,
          "rank-0");
    float v = 0;
    CHECK(weights_scalar_f32(w, "lora.alpha", &v, &e) == ENG_OK && v == 8.0f, "alpha %g", v);
    CHECK(weights_scalar_f32(w, "one", &v, &e) == ENG_OK && v == 0.25f, "[1,1] scalar %g", v);
    CHECK(weights_scalar_f32(w, "empty", &v, CLR(e)) == ENG_ERR_FORMAT &&
              strstr(e.message, "scalar"),
          "empty is no scalar: %s", e.message);
    CHECK(eng_weights_find(w, "empty", &info, CLR(e)) == ENG_OK && info.numel == 0 &&
              info.nbytes == 0 && info.ndim == 2 && info.shape[1] == 5,
          "zero-size");
    CHECK(eng_weights_read_f32(w, "empty", NULL, 0, &e) == ENG_OK, "read empty into NULL: %s",
          e.message);
    CHECK(eng_weights_find(w, "big0", &info, &e) == ENG_OK && info.numel == 0,
          "zero dim beats a huge product");
    eng_weights_free(w);
}

static void test_header_padding_and_gaps(void) {
    /* trailing spaces in the header, a gap between tensors, data after the last tensor */
    const char *hdr = "{\"a\": {\"dtype\": \"U8\", \"shape\": [2], \"data_offsets\": [4, 6]}, "
                      "\"b\": {\"dtype\": \"I16\", \"shape\": [1], \"data_offsets\": [0, 2],"
                      " \"extra\": 1}}        ";
    const uint8_t data[10] = {1, 2, 0, 0, 3, 4, 0, 0, 0, 0};
    char p[600];
    write_st(tpath(p, sizeof p, "padded.safetensors"), hdr, data, sizeof data);
    eng_weights *w = open_ok(p);
    if (!w) return;
    eng_tensor_info info;
    eng_error e;
    CHECK(eng_weights_find(w, "a", &info, CLR(e)) == ENG_OK && ((const uint8_t *)info.data)[1] == 4,
          "a data");
    CHECK(eng_weights_find(w, "b", &info, &e) == ENG_OK && info.dtype == ENG_I16, "b dtype");
    eng_weights_free(w);

    /* every non-float dtype name opens */
    const char *hdr2 = "{\"a\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]},"
                       "\"b\":{\"dtype\":\"U64\",\"shape\":[1],\"data_offsets\":[8,16]},"
                       "\"c\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[16,20]},"
                       "\"d\":{\"dtype\":\"U32\",\"shape\":[1],\"data_offsets\":[20,24]},"
                       "\"e\":{\"dtype\":\"U16\",\"shape\":[1],\"data_offsets\":[24,26]},"
                       "\"f\":{\"dtype\":\"I8\",\"shape\":[1],\"data_offsets\":[26,27]},"
                       "\"g\":{\"dtype\":\"BOOL\",\"shape\":[1],\"data_offsets\":[27,28]}}";
    uint8_t zeros[28] = {0};
    write_st(tpath(p, sizeof p, "int_dtypes.safetensors"), hdr2, zeros, sizeof zeros);
    w = open_ok(p);
    const eng_dtype want[7] = {ENG_I64, ENG_U64, ENG_I32, ENG_U32, ENG_U16, ENG_I8, ENG_BOOL};
    for (int i = 0; w && i < 7; i++) {
        CHECK(eng_weights_info(w, i, &info, &e) == ENG_OK && info.dtype == want[i] &&
                  info.nbytes == eng_dtype_size(want[i]),
              "int dtype %d", i);
    }
    eng_weights_free(w);
    CHECK(strcmp(eng_dtype_name(ENG_U64), "u64") == 0 && eng_dtype_size(ENG_F64) == 8 &&
              eng_dtype_size(ENG_F8_E5M2) == 1,
          "dtype table extended");
}

/* ---- safetensors: malformed files ---------------------------------------------------------- */

static void test_bad_files(void) {
    char p[600];
    write_raw(tpath(p, sizeof p, "empty.safetensors"), "", 0);
    EXPECT_FAIL(p, ENG_ERR_FORMAT, "too small", NULL);
    write_raw(tpath(p, sizeof p, "five.safetensors"), "\x10\0\0\0\0", 5);
    EXPECT_FAIL(p, ENG_ERR_FORMAT, "too small", NULL);
    tpath(p, sizeof p, "does_not_exist.safetensors");
    EXPECT_FAIL(p, ENG_ERR_IO, "No such file", NULL);
    EXPECT_FAIL(g_tmp, ENG_ERR_IO, "not a regular file", NULL);

    const char *hdr = "{}";
    write_st_len(tpath(p, sizeof p, "len_past_end.safetensors"), 100, hdr, NULL, 0);
    EXPECT_FAIL(p, ENG_ERR_FORMAT, "header length 100", "only 2 bytes");
    write_st_len(tpath(p, sizeof p, "len_2p63.safetensors"), 1ull << 63, hdr, NULL, 0);
    EXPECT_FAIL(p, ENG_ERR_FORMAT, "9223372036854775808", "cap");
    write_st_len(tpath(p, sizeof p, "len_2p64m1.safetensors"), UINT64_MAX, hdr, NULL, 0);
    EXPECT_FAIL(p, ENG_ERR_FORMAT, "18446744073709551615", "cap");
    write_st_len(tpath(p, sizeof p, "len_cap.safetensors"), (100ull << 20) + 1, hdr, NULL, 0);
    EXPECT_FAIL(p, ENG_ERR_FORMAT, "104857601", "100 MiB");
    write_raw(tpath(p, sizeof p, "len_zero.safetensors"), "\0\0\0\0\0\0\0\0{}", 10);
    EXPECT_FAIL(p, ENG_ERR_FORMAT, "header length is 0", NULL);

    /* truncated data section: header promises 16 bytes, file holds 8 */
    const uint8_t eight[8] = {0};
    write_st(tpath(p, sizeof p, "truncated.safetensors"),
             "{\"w\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}}", eight, 8);
    EXPECT_FAIL(p, ENG_ERR_FORMAT, "'w'", "past the end");

    BAD_HEADER("garbage.safetensors", "{\"a\": [1, 2,, 3]}", 0, "JSON at byte 12", "header");
    BAD_HEADER("binary.safetensors", "\x89PNG\r\n\x1a\n", 0, "JSON at byte 0", NULL);
    BAD_HEADER("array.safetensors", "[1, 2]", 0, "expected an object", NULL);
    BAD_HEADER("trailing.safetensors", "{} x", 0, "JSON at byte 3", "end of input");
    BAD_HEADER("trailing_obj.safetensors", "{}{}", 0, "end of input", NULL);
    BAD_HEADER("bad_utf8.safetensors", "{\"w\xff\": 1}", 0, "invalid UTF-8", NULL);
}

static void test_bad_tensors(void) {
    /* header {"ok": <U8 [2] at [0, 2]>, "w": <entry>} with 64 (or 200) bytes of data */
    static const struct {
        const char *file, *entry, *who, *must; /* who: the tensor the message must name */
    } cases[] = {
        {"entry_num", "5", "'w'", "expected an object"},
        {"no_dtype", "{\"shape\": [2], \"data_offsets\": [2, 4]}", "'w'", "missing field 'dtype'"},
        {"no_shape", "{\"dtype\": \"U8\", \"data_offsets\": [2, 4]}", "'w'",
         "missing field 'shape'"},
        {"no_offsets", "{\"dtype\": \"U8\", \"shape\": [2]}", "'w'",
         "missing field 'data_offsets'"},
        {"dtype_num", ENTRY("5", "[2]", "[2, 4]"), "'w'", "'dtype' is 5"},
        {"shape_str", ENTRY("\"U8\"", "\"2\"", "[2, 4]"), "'w'", "'shape' is a JSON string"},
        {"offs_obj", ENTRY("\"U8\"", "[2]", "{}"), "'w'", "'data_offsets' is a JSON object"},
        {"offs_3", ENTRY("\"U8\"", "[2]", "[2, 4, 6]"), "'w'", "too long"},
        {"offs_1", ENTRY("\"U8\"", "[2]", "[2]"), "'w'", "too short"},
        {"offs_str", ENTRY("\"U8\"", "[2]", "[\"2\", 4]"), "'w'",
         "data_offsets[0] is a JSON string"},
        {"offs_neg", ENTRY("\"U8\"", "[2]", "[2, -4]"), "'w'", "data_offsets[1] is -4 (negative)"},
        {"dup_field", "{\"dtype\": \"U8\", \"shape\": [2], \"dtype\": \"U8\", "
                      "\"data_offsets\": [2, 4]}",
         "'w'", "duplicate field 'dtype'"},
        {"unknown_dtype", ENTRY("\"F12\"", "[2]", "[2, 4]"), "'w'", "unknown dtype 'F12'"},
        {"lower_dtype", ENTRY("\"f32\"", "[2]", "[2, 10]"), "'w'", "unknown dtype 'f32'"},
        {"neg_dim", ENTRY("\"U8\"", "[-2]", "[2, 4]"), "'w'", "shape[0] is -2 (negative)"},
        {"frac_dim", ENTRY("\"U8\"", "[2, 1.5]", "[2, 5]"), "'w'",
         "shape[1] is 1.5 (not an integer)"},
        {"huge_dim", ENTRY("\"U8\"", "[99999999999999999999]", "[2, 4]"), "'w'",
         "outside the int64 range"},
        {"null_dim", ENTRY("\"U8\"", "[null]", "[2, 4]"), "'w'", "shape[0] is a JSON null"},
        {"rank9", ENTRY("\"U8\"", "[1,1,1,1,1,1,1,1,2]", "[2, 4]"), "'w'", "rank 9"},
        {"numel_ovf", ENTRY("\"U8\"", "[4611686018427387904, 8]", "[2, 4]"), "'w'",
         "more than 2^63-1 elements"},
        {"bytes_ovf", ENTRY("\"F64\"", "[4611686018427387904]", "[2, 4]"), "'w'", "2^64 bytes"},
        {"end_lt_begin", ENTRY("\"U8\"", "[0]", "[4, 2]"), "'w'", "end before"},
        {"past_data", ENTRY("\"U8\"", "[8]", "[60, 68]"), "'w'", "64-byte data section"},
        {"mismatch", ENTRY("\"F32\"", "[5, 6]", "[0, 100]"), "'w'",
         "data_offsets [0, 100] hold 100 bytes but shape [5, 6] of F32 needs 120"},
        {"overlap", ENTRY("\"U8\"", "[2]", "[1, 3]"), "'ok'", "overlap"},
        {"dup_name", ENTRY("\"U8\"", "[2]", "[2, 4]") ", \"ok\": " ENTRY("\"U8\"", "[2]", "[4, 6]"),
         "'ok'", "twice"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char name[64], hdr[512];
        snprintf(name, sizeof name, "%s.safetensors", cases[i].file);
        snprintf(hdr, sizeof hdr, "{\"ok\": %s, \"w\": %s}", ENTRY("\"U8\"", "[2]", "[0, 2]"),
                 cases[i].entry);
        BAD_HEADER(name, hdr, 64, cases[i].who, cases[i].must);
    }
    BAD_HEADER("meta_num.safetensors", "{\"__metadata__\": {\"format\": 1}}", 0, "__metadata__",
               "'format'");
    BAD_HEADER("meta_arr.safetensors", "{\"__metadata__\": [\"pt\"]}", 0, "__metadata__", "array");
    BAD_HEADER("nul_name.safetensors", "{\"a\\u0000b\": " ENTRY("\"U8\"", "[2]", "[0, 2]") "}", 64,
               "NUL", NULL);
    /* a zero-size tensor inside another's range does not overlap anything */
    char p[600];
    static const uint8_t z[8];
    write_st(tpath(p, sizeof p, "empty_inside.safetensors"),
             "{\"a\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [0, 4]},"
             " \"b\": {\"dtype\": \"U8\", \"shape\": [0], \"data_offsets\": [2, 2]}}",
             z, 4);
    eng_weights *w = open_ok(p);
    eng_weights_free(w);
    /* overlap found even when the offending range is not adjacent after sorting */
    write_st(tpath(p, sizeof p, "overlap_far.safetensors"),
             "{\"a\": {\"dtype\": \"U8\", \"shape\": [8], \"data_offsets\": [0, 8]},"
             " \"b\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [1, 2]},"
             " \"c\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [6, 7]}}",
             z, 8);
    EXPECT_FAIL(p, ENG_ERR_FORMAT, "'a'", "overlap");
}

static void test_many_tensors(void) {
    enum { N = 100000 };
    size_t cap = (size_t)N * 96 + 16, n = 0;
    char *hdr = test_alloc(cap); /* names t<i> listed in descending order; offsets ascending */
    hdr[n++] = '{';
    for (int i = 0; i < N; i++) {
        int id = N - 1 - i;
        n += (size_t)snprintf(hdr + n, cap - n,
                              "%s\"t%06d\":{\"dtype\":\"U8\",\"shape\":[1],"
                              "\"data_offsets\":[%d,%d]}",
                              i ? "," : "", id, i, i + 1);
    }
    hdr[n++] = '}';
    hdr[n] = 0;
    uint8_t *data = test_alloc(N); /* data[i] = i % 251 */
    for (int i = 0; i < N; i++) data[i] = (uint8_t)(i % 251);
    char p[600];
    write_st(tpath(p, sizeof p, "many.safetensors"), hdr, data, N);
    double t0 = now_s();
    eng_weights *w = open_ok(p);
    double t1 = now_s();
    if (w) {
        CHECK(eng_weights_count(w) == N, "count");
        int bad = 0;
        for (int id = 0; id < N; id++) {
            char name[16];
            snprintf(name, sizeof name, "t%06d", id);
            eng_tensor_info info;
            if (eng_weights_find(w, name, &info, NULL) != ENG_OK ||
                *(const uint8_t *)info.data != (uint8_t)((N - 1 - id) % 251))
                bad++;
        }
        double t2 = now_s();
        eng_tensor_info first, last;
        eng_weights_info(w, 0, &first, NULL);
        eng_weights_info(w, N - 1, &last, NULL);
        CHECK(bad == 0, "%d lookups failed", bad);
        CHECK(strcmp(first.name, "t000000") == 0 && strcmp(last.name, "t099999") == 0, "order");
        printf("  100k-tensor file (%zu-byte header): open %.1f ms, 100k finds %.1f ms\n", n,
               (t1 - t0) * 1e3, (t2 - t1) * 1e3);
#if defined(__SANITIZE_ADDRESS__) || defined(__aarch64__)
        const double limit = 10.0; /* sanitizer / qemu builds run several times slower */
#else
        const double limit = 1.0;
#endif
        CHECK(t1 - t0 < limit, "open took %.2f s", t1 - t0);
        eng_weights_free(w);
    }
    eng_free(hdr);
    eng_free(data);
}

/* ---- sharded index ------------------------------------------------------------------------- */

static void write_shard(const char *name, const char *t1, const char *t2, float v) {
    char p[600], hdr[512];
    snprintf(hdr, sizeof hdr,
             "{\"__metadata__\": {\"format\": \"pt\"},"
             " \"%s\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
             " \"%s\": {\"dtype\": \"BF16\", \"shape\": [2], \"data_offsets\": [8, 12]}}",
             t1, t2);
    uint8_t data[12];
    const float f[2] = {v, -v};
    uint16_t b[2];
    eng_f32_to_bf16(b, f, 2);
    memcpy(data, f, 8);
    memcpy(data + 8, b, 4);
    write_st(tpath(p, sizeof p, name), hdr, data, sizeof data);
}

static void write_index(const char *name, const char *text) {
    char p[600];
    write_raw(tpath(p, sizeof p, name), text, strlen(text));
}

static void test_index(void) {
    char p[600];
    write_shard("m-00001-of-00002.safetensors", "a.w", "a.b", 1.0f);
    write_shard("m-00002-of-00002.safetensors", "b.w", "z.extra", 2.0f);
    write_index("m.safetensors.index.json",
                "{\"metadata\": {\"total_size\": 24},"
                " \"weight_map\": {\"a.w\": \"m-00001-of-00002.safetensors\","
                " \"a.b\": \"m-00001-of-00002.safetensors\","
                " \"b.w\": \"m-00002-of-00002.safetensors\"}}");
    eng_weights *w = open_ok(tpath(p, sizeof p, "m.safetensors.index.json"));
    if (w) {
        CHECK(eng_weights_count(w) == 4, "count %lld (unmapped z.extra included)",
              (long long)eng_weights_count(w));
        const char *order[4] = {"a.b", "a.w", "b.w", "z.extra"};
        for (int i = 0; i < 4; i++) {
            eng_tensor_info info;
            CHECK(eng_weights_info(w, i, &info, NULL) == ENG_OK && strcmp(info.name, order[i]) == 0,
                  "order %d", i);
        }
        eng_tensor_info info;
        CHECK(eng_weights_find(w, "b.w", &info, NULL) == ENG_OK &&
                  strstr(info.file, "m-00002-of-00002.safetensors"),
              "b.w in shard 2");
        const float want1[2] = {1.0f, -1.0f}, want2[2] = {2.0f, -2.0f};
        check_read(w, "a.w", want1, 2);
        check_read(w, "a.b", want1, 2);
        check_read(w, "b.w", want2, 2);
        check_read(w, "z.extra", want2, 2);
        int64_t total = 0;
        CHECK(json_get_int64(weights_index_metadata(w), "total_size", &total, NULL) == ENG_OK &&
                  total == 24,
              "index metadata");
        CHECK(weights_file_count(w) == 2 && weights_file_metadata(w, 1) != NULL, "shard files");
        eng_error e;
        CHECK(eng_weights_advise(w, MADV_DONTNEED, CLR(e)) == ENG_OK, "advise: %s", e.message);
        eng_weights_free(w);
    }

    write_shard("d-1.safetensors", "a.w", "dup", 1.0f);
    write_shard("d-2.safetensors", "b.w", "dup", 2.0f);
    write_raw(tpath(p, sizeof p, "broken-1.safetensors"), "\1\0\0", 3);
#define M1 "\"m-00001-of-00002.safetensors\""
#define M2 "\"m-00002-of-00002.safetensors\""
    static const struct {
        const char *file, *text; /* <file>.safetensors.index.json holds text */
        eng_status want;
        const char *must1, *must2; /* the message holds both (and the index's name) */
    } cases[] = {
        {"missing", "{\"weight_map\": {\"a.w\": " M1 ", \"x\": \"gone-2.safetensors\"}}",
         ENG_ERR_IO, "shard 'gone-2.safetensors'", "No such file"},
        {"escape", "{\"weight_map\": {\"a.w\": \"../m-00001-of-00002.safetensors\"}}",
         ENG_ERR_FORMAT, "'../m-00001-of-00002.safetensors'", "'a.w'"},
        {"abs", "{\"weight_map\": {\"a.w\": \"/etc/passwd\"}}", ENG_ERR_FORMAT, "'/etc/passwd'",
         "not a plain file name"},
        {"emptyname", "{\"weight_map\": {\"a.w\": \"\"}}", ENG_ERR_FORMAT, "not a plain file name",
         NULL},
        {"wrong", "{\"weight_map\": {\"a.w\": " M2 ", \"a.b\": " M1 ", \"b.w\": " M2 "}}",
         ENG_ERR_FORMAT, "'a.w'", "but it is in 'm-00001-of-00002.safetensors'"},
        {"nowhere", "{\"weight_map\": {\"q.w\": " M2 "}}", ENG_ERR_FORMAT, "'q.w'",
         "does not hold it"},
        {"twice", "{\"weight_map\": {\"a.w\": \"d-1.safetensors\", \"b.w\": \"d-2.safetensors\"}}",
         ENG_ERR_FORMAT, "'dup'", "two shards"},
        {"garbage", "{\"weight_map\": {\"a.w\": }", ENG_ERR_FORMAT, "JSON at byte 23", NULL},
        {"notobj", "[]", ENG_ERR_FORMAT, "expected an object", NULL},
        {"nomap", "{\"metadata\": {}}", ENG_ERR_FORMAT, "weight_map", NULL},
        {"mapnum", "{\"weight_map\": {\"a.w\": 3}}", ENG_ERR_FORMAT, "'a.w'", "shard file name"},
        {"dupmap", "{\"weight_map\": {\"a.w\": \"d-1.safetensors\", \"a.w\": \"d-1.safetensors\"}}",
         ENG_ERR_FORMAT, "'a.w'", "twice"},
        {"broken", "{\"weight_map\": {\"a.w\": \"broken-1.safetensors\"}}", ENG_ERR_FORMAT,
         "shard 'broken-1.safetensors'", "too small"},
    };
#undef M1
#undef M2
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char name[96];
        snprintf(name, sizeof name, "%s.safetensors.index.json", cases[i].file);
        write_index(name, cases[i].text);
        expect_fail_at(__LINE__, tpath(p, sizeof p, name), cases[i].want, cases[i].must1,
                       cases[i].must2);
    }
    tpath(p, sizeof p, "absent.safetensors.index.json");
    EXPECT_FAIL(p, ENG_ERR_IO, "No such file", NULL);
}

static void test_api_args(void) {
    eng_error e = {0};
    eng_weights *w = NULL;
    CHECK(eng_weights_open(NULL, &w, &e) == ENG_ERR_INVALID_ARG, "NULL path");
    CHECK(eng_weights_open("x", NULL, CLR(e)) == ENG_ERR_INVALID_ARG, "NULL out");
    CHECK(eng_weights_count(NULL) == 0, "count NULL");
    eng_weights_free(NULL);
    eng_tensor_info info;
    CHECK(eng_weights_find(NULL, "x", &info, CLR(e)) == ENG_ERR_INVALID_ARG, "find NULL");
    /* a NULL eng_error is allowed everywhere */
    CHECK(eng_weights_open("/nonexistent/x.safetensors", &w, NULL) == ENG_ERR_IO, "NULL err");
    CHECK(eng_weights_open("/nonexistent/x.safetensors.index.json", &w, NULL) == ENG_ERR_IO,
          "NULL err, index");
}

int main(void) {
    const char *tmp = getenv("ENG_TEST_TMP");
    snprintf(g_tmp, sizeof g_tmp, "%s", tmp && tmp[0] ? tmp : "/tmp/eng_test_safetensors");
    mkdir_p(g_tmp);
    RUN(test_json_basic);
    RUN(test_json_syntax_errors);
    RUN(test_json_strings);
    RUN(test_json_depth);
    RUN(test_json_duplicates);
    RUN(test_json_int64);
    RUN(test_json_doubles);
    RUN(test_json_accessors);
    RUN(test_json_big_object);
    RUN(test_float_dtypes);
    RUN(test_bit_patterns);
    RUN(test_alignment);
    RUN(test_scalars_and_empty);
    RUN(test_header_padding_and_gaps);
    RUN(test_bad_files);
    RUN(test_bad_tensors);
    RUN(test_many_tensors);
    RUN(test_index);
    RUN(test_api_args);
    return test_finish("test_safetensors");
}
