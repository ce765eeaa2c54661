/* json.c - the JSON reader of json.h (RFC 8259), strictly bounds-checked.
 *
 * Two passes over the same recursive-descent code:
 *   1. validate + count: every syntax/escape/UTF-8/depth error is found here; it counts the
 *      nodes, members and string bytes, and records each container's child count (pre-order);
 *   2. build: with exact sizes known, one heap block holds
 *        json_value  nodes[n_nodes]       root + every array element
 *        json_member members[n_members]   every object member (its value inline)
 *        size_t      by_key[n_members]    per object, member indices sorted by key
 *        char        bytes[n_bytes]       decoded strings and number texts, NUL-terminated
 *      and pass 2 fills it, reserving each container's children contiguously when the
 *      container opens.
 * Number -> double: exact fast path (Clinger) when the decimal significand fits 2^53 and the
 * power of ten is at most 22; otherwise strtod on a radix-free rewrite ("12.5e3" -> "125e2"),
 * which reads the same in every locale. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

typedef struct parser {
    const uint8_t *s; /* text[len], not NUL-terminated */
    size_t len;
    size_t pos;       /* next byte to read */
    bool build;       /* false: pass 1 (validate + count); true: pass 2 (build) */
    eng_error *err;

    /* pass 1 results */
    size_t n_nodes;    /* json_value nodes: root + array elements */
    size_t n_members;  /* object members over all objects */
    size_t n_bytes;    /* decoded string bytes + number text bytes, each + 1 NUL */
    size_t *counts;    /* counts[n_counts]: child count of each container, in pre-order */
    size_t n_counts, cap_counts;

    /* pass 2 cursors into the block */
    size_t next_count;    /* next entry of counts[] */
    json_value *nodes;    /* nodes[n_nodes] */
    size_t next_node;
    json_member *members; /* members[n_members] */
    size_t *by_key;       /* by_key[n_members], parallel to members */
    size_t next_member;
    char *bytes;          /* bytes[n_bytes] */
    size_t next_byte;

    char *scratch;        /* scratch[scratch_cap]: radix-free number text for strtod */
    size_t scratch_cap;
} parser;

/* ---- errors --------------------------------------------------------------------------- */

/* "'x'", "byte 0x07" or "end of input" for the byte at `at`. */
static const char *describe(const parser *p, size_t at, char *buf, size_t cap) {
    if (at >= p->len) return "end of input";
    uint8_t c = p->s[at];
    if (c >= 0x20 && c < 0x7f) {
        snprintf(buf, cap, "'%c'", (char)c);
    } else {
        snprintf(buf, cap, "byte 0x%02x", (unsigned)c);
    }
    return buf;
}

static eng_status fail_expected(parser *p, size_t at, const char *expected) {
    char got[32];
    return eng_err_set(p->err, ENG_ERR_FORMAT, "JSON at byte %zu: expected %s, got %s", at,
                       expected, describe(p, at, got, sizeof got));
}

static eng_status fail_at(parser *p, size_t at, const char *what) {
    return eng_err_set(p->err, ENG_ERR_FORMAT, "JSON at byte %zu: %s", at, what);
}

/* ---- lexing helpers ------------------------------------------------------------------- */

static void skip_ws(parser *p) {
    while (p->pos < p->len) {
        uint8_t c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        p->pos++;
    }
}

static bool is_digit(uint8_t c) { return c >= '0' && c <= '9'; }

static int hex_val(uint8_t c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Length (1..4) of the well-formed UTF-8 sequence at s[0, avail) (Unicode table 3-7), or 0. */
static size_t utf8_seq_len(const uint8_t *s, size_t avail) {
    uint8_t c = s[0];
    if (c < 0x80) return 1;
    size_t n;
    uint8_t lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        if (c == 0xe0) lo = 0xa0;     /* no overlongs */
        if (c == 0xed) hi = 0x9f;     /* no UTF-16 surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        if (c == 0xf0) lo = 0x90;     /* no overlongs */
        if (c == 0xf4) hi = 0x8f;     /* nothing above U+10FFFF */
    } else {
        return 0;                     /* 0x80..0xc1 or 0xf5..0xff can't start a sequence */
    }
    if (avail < n) return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xbf) return 0;
    return n;
}

/* Writes code point cp (<= 0x10FFFF, not a surrogate) as UTF-8; returns the byte count. */
static size_t utf8_encode(uint32_t cp, uint8_t out[4]) {
    if (cp < 0x80) {
        out[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (uint8_t)(0xc0 | (cp >> 6));
        out[1] = (uint8_t)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xe0 | (cp >> 12));
        out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (uint8_t)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (uint8_t)(0xf0 | (cp >> 18));
    out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (uint8_t)(0x80 | (cp & 0x3f));
    return 4;
}

/* Reads the 4 hex digits after "\u" at p->pos (which points at the 'u'). */
static eng_status read_u_escape(parser *p, uint32_t *out) {
    if (p->len - p->pos < 5) return fail_expected(p, p->len, "4 hex digits after '\\u'");
    uint32_t v = 0;
    for (size_t i = 1; i <= 4; i++) {
        int h = hex_val(p->s[p->pos + i]);
        if (h < 0) return fail_expected(p, p->pos + i, "a hex digit in a \\u escape");
        v = v << 4 | (uint32_t)h;
    }
    p->pos += 5;
    *out = v;
    return ENG_OK;
}

/* ---- strings -------------------------------------------------------------------------- */

/* p->pos at the opening quote. Pass 1: validates and counts the decoded bytes + NUL.
 * Pass 2: decodes into p->bytes and returns it in *out / *out_len. */
static eng_status parse_string(parser *p, const char **out, size_t *out_len) {
    size_t start = p->pos;
    p->pos++; /* the opening quote */
    uint8_t *dst = p->build ? (uint8_t *)p->bytes + p->next_byte : NULL; /* decoded bytes */
    size_t n = 0;                                                     /* bytes decoded so far */
    eng_status st;
    for (;;) {
        if (p->pos >= p->len) {
            char msg[96];
            snprintf(msg, sizeof msg, "unterminated string (opened at byte %zu)", start);
            return fail_at(p, p->len, msg);
        }
        uint8_t c = p->s[p->pos];
        if (c == '"') {
            p->pos++;
            break;
        }
        if (c < 0x20) {
            char msg[96];
            snprintf(msg, sizeof msg, "control character 0x%02x in a string (must be escaped)",
                     (unsigned)c);
            return fail_at(p, p->pos, msg);
        }
        if (c >= 0x80) {
            size_t k = utf8_seq_len(p->s + p->pos, p->len - p->pos);
            if (k == 0) return fail_at(p, p->pos, "invalid UTF-8 in a string");
            if (dst) memcpy(dst + n, p->s + p->pos, k);
            n += k;
            p->pos += k;
            continue;
        }
        if (c != '\\') {
            if (dst) dst[n] = c;
            n++;
            p->pos++;
            continue;
        }
        /* escape sequence */
        size_t esc = p->pos;
        p->pos++;
        if (p->pos >= p->len) return fail_expected(p, p->pos, "an escape character after '\\'");
        uint8_t e = p->s[p->pos], lit;
        switch (e) {
        case '"': lit = '"'; break;
        case '\\': lit = '\\'; break;
        case '/': lit = '/'; break;
        case 'b': lit = '\b'; break;
        case 'f': lit = '\f'; break;
        case 'n': lit = '\n'; break;
        case 'r': lit = '\r'; break;
        case 't': lit = '\t'; break;
        case 'u': {
            uint32_t cp;
            if ((st = read_u_escape(p, &cp)) != ENG_OK) return st;
            if (cp >= 0xdc00 && cp <= 0xdfff)
                return fail_at(p, esc, "unpaired low surrogate in a \\u escape");
            if (cp >= 0xd800 && cp <= 0xdbff) {
                if (p->len - p->pos < 2 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u')
                    return fail_at(p, esc, "high surrogate in a \\u escape not followed by a "
                                           "\\u low surrogate");
                p->pos++; /* the backslash; read_u_escape starts at the 'u' */
                uint32_t lo;
                if ((st = read_u_escape(p, &lo)) != ENG_OK) return st;
                if (lo < 0xdc00 || lo > 0xdfff)
                    return fail_at(p, esc, "high surrogate in a \\u escape not followed by a "
                                           "\\u low surrogate");
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            }
            uint8_t enc[4]; /* the code point as UTF-8 */
            size_t k = utf8_encode(cp, enc);
            if (dst) memcpy(dst + n, enc, k);
            n += k;
            continue; /* read_u_escape advanced p->pos */
        }
        default: {
            char got[32], msg[96];
            snprintf(msg, sizeof msg, "invalid escape '\\' followed by %s in a string",
                     describe(p, p->pos, got, sizeof got));
            return fail_at(p, esc, msg);
        }
        }
        if (dst) dst[n] = lit;
        n++;
        p->pos++;
    }
    if (dst) {
        dst[n] = 0;
        p->next_byte += n + 1;
        *out = (const char *)dst;
    } else {
        p->n_bytes += n + 1; /* n < len, and every string takes >= 2 input bytes */
        *out = NULL;
    }
    *out_len = n;
    return ENG_OK;
}

/* ---- numbers -------------------------------------------------------------------------- */

static const double pow10_exact[23] = {/* 10^0 .. 10^22, all exact doubles */
                                       1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                       1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                       1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* A validated number's text t[0, n) as its digits and decimal exponent. */
typedef struct num_parts {
    bool neg;
    const char *mant;   /* mant[mant_len]: integer digits, maybe '.', fraction digits */
    size_t mant_len;
    int64_t exp;        /* the e/E exponent, saturated to +-10^15 */
} num_parts;

static num_parts split_number(const char *t, size_t n) {
    num_parts r = {false, t, 0, 0};
    size_t i = 0;
    if (i < n && t[i] == '-') {
        r.neg = true;
        i++;
    }
    r.mant = t + i;
    while (i < n && t[i] != 'e' && t[i] != 'E') i++;
    r.mant_len = (size_t)(t + i - r.mant);
    if (i < n) { /* exponent */
        i++;
        bool eneg = false;
        if (t[i] == '+' || t[i] == '-') eneg = t[i++] == '-';
        int64_t e = 0;
        for (; i < n; i++)
            if (e < 1000000000000000) e = e * 10 + (t[i] - '0');
        r.exp = eneg ? -e : e;
    }
    return r;
}

static eng_status number_value(parser *p, const char *t, size_t n, double *out) {
    num_parts np = split_number(t, n);
    uint64_t m = 0;   /* decimal significand without leading zeros (if it fits) */
    int n_sig = 0;    /* digits in m */
    int64_t n_frac = 0;
    bool fits = true, in_frac = false;
    for (size_t i = 0; i < np.mant_len; i++) {
        char c = np.mant[i];
        if (c == '.') {
            in_frac = true;
            continue;
        }
        if (in_frac) n_frac++;
        if (m == 0 && c == '0') continue; /* leading zero */
        if (n_sig >= 19) {
            fits = false;
            continue;
        }
        m = m * 10 + (uint64_t)(c - '0');
        n_sig++;
    }
    if (m == 0 && fits) {
        *out = np.neg ? -0.0 : 0.0;
        return ENG_OK;
    }
    int64_t e10 = np.exp - n_frac; /* value = m * 10^e10 when fits */
    if (fits && m <= (1ull << 53) && e10 >= -22 && e10 <= 22) {
        double d = (double)m;
        d = e10 >= 0 ? d * pow10_exact[e10] : d / pow10_exact[-e10];
        *out = np.neg ? -d : d;
        return ENG_OK;
    }
    /* slow path: "[-]<all digits, leading zeros dropped>e<e10>" through strtod */
    size_t need = n + 32;
    if (need > p->scratch_cap) {
        char *s = realloc(p->scratch, need);
        if (!s) return eng_err_set(p->err, ENG_ERR_OOM, "JSON: out of memory converting a number");
        p->scratch = s;
        p->scratch_cap = need;
    }
    char *w = p->scratch;
    if (np.neg) *w++ = '-';
    bool lead = true;
    for (size_t i = 0; i < np.mant_len; i++) {
        char c = np.mant[i];
        if (c == '.' || (lead && c == '0')) continue;
        lead = false;
        *w++ = c;
    }
    if (lead) *w++ = '0';
    snprintf(w, 28, "e%lld", (long long)e10);
    int saved = errno;
    *out = strtod(p->scratch, NULL);
    errno = saved;
    return ENG_OK;
}

static eng_status parse_number(parser *p, json_value *out) {
    size_t start = p->pos;
    if (p->s[p->pos] == '-') p->pos++;
    if (p->pos >= p->len || !is_digit(p->s[p->pos]))
        return fail_expected(p, p->pos, "a digit in a number");
    if (p->s[p->pos] == '0') {
        p->pos++;
    } else {
        while (p->pos < p->len && is_digit(p->s[p->pos])) p->pos++;
    }
    if (p->pos < p->len && p->s[p->pos] == '.') {
        p->pos++;
        if (p->pos >= p->len || !is_digit(p->s[p->pos]))
            return fail_expected(p, p->pos, "a digit after the decimal point");
        while (p->pos < p->len && is_digit(p->s[p->pos])) p->pos++;
    }
    if (p->pos < p->len && (p->s[p->pos] == 'e' || p->s[p->pos] == 'E')) {
        p->pos++;
        if (p->pos < p->len && (p->s[p->pos] == '+' || p->s[p->pos] == '-')) p->pos++;
        if (p->pos >= p->len || !is_digit(p->s[p->pos]))
            return fail_expected(p, p->pos, "a digit in the exponent");
        while (p->pos < p->len && is_digit(p->s[p->pos])) p->pos++;
    }
    size_t n = p->pos - start;
    if (!p->build) {
        p->n_bytes += n + 1;
        return ENG_OK;
    }
    char *text = p->bytes + p->next_byte; /* text[n + 1] */
    memcpy(text, p->s + start, n);
    text[n] = 0;
    p->next_byte += n + 1;
    out->type = JSON_NUMBER;
    out->n = n;
    out->u.number.text = text;
    return number_value(p, text, n, &out->u.number.value);
}

/* ---- containers ----------------------------------------------------------------------- */

static eng_status parse_value(parser *p, json_value *out, int depth);

/* Pass 1: reserves the next pre-order slot of counts[]. */
static eng_status push_count(parser *p, size_t *slot) {
    if (p->n_counts == p->cap_counts) {
        size_t cap = p->cap_counts ? p->cap_counts * 2 : 64;
        size_t *c = cap > SIZE_MAX / sizeof *c ? NULL : realloc(p->counts, cap * sizeof *c);
        if (!c) return eng_err_set(p->err, ENG_ERR_OOM, "JSON: out of memory");
        p->counts = c;
        p->cap_counts = cap;
    }
    *slot = p->n_counts;
    p->counts[p->n_counts++] = 0;
    return ENG_OK;
}

/* Pass 2: the child count pass 1 recorded for the container opening now. */
static eng_status pop_count(parser *p, size_t *count) {
    if (p->next_count >= p->n_counts) return fail_at(p, p->pos, "internal: container count");
    *count = p->counts[p->next_count++];
    return ENG_OK;
}

static eng_status check_depth(parser *p, int depth) {
    if (depth <= JSON_MAX_DEPTH) return ENG_OK;
    char msg[64];
    snprintf(msg, sizeof msg, "nesting deeper than %d levels", JSON_MAX_DEPTH);
    return fail_at(p, p->pos, msg);
}

static eng_status parse_array(parser *p, json_value *out, int depth) {
    eng_status st;
    if ((st = check_depth(p, depth)) != ENG_OK) return st;
    p->pos++; /* '[' */
    size_t slot = 0, expected = 0, count = 0;
    json_value *items = NULL; /* items[expected], pass 2 only */
    if (!p->build) {
        if ((st = push_count(p, &slot)) != ENG_OK) return st;
    } else {
        if ((st = pop_count(p, &expected)) != ENG_OK) return st;
        items = p->nodes + p->next_node;
        p->next_node += expected;
    }
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == ']') {
        p->pos++;
    } else {
        for (;;) {
            if (p->build && count >= expected) return fail_at(p, p->pos, "internal: array size");
            if ((st = parse_value(p, p->build ? &items[count] : NULL, depth)) != ENG_OK)
                return st;
            count++;
            skip_ws(p);
            if (p->pos < p->len && p->s[p->pos] == ',') {
                p->pos++;
                continue;
            }
            if (p->pos < p->len && p->s[p->pos] == ']') {
                p->pos++;
                break;
            }
            return fail_expected(p, p->pos, "',' or ']' after an array element");
        }
    }
    if (!p->build) {
        p->counts[slot] = count;
        p->n_nodes += count;
        return ENG_OK;
    }
    if (count != expected) return fail_at(p, p->pos, "internal: array size");
    out->type = JSON_ARRAY;
    out->n = count;
    out->u.items = items;
    return ENG_OK;
}

/* Key order: bytes, then length, then file position (so duplicates keep file order). */
static int member_cmp(const json_member *m, size_t a, size_t b) {
    size_t la = m[a].key_len, lb = m[b].key_len;
    int c = memcmp(m[a].key, m[b].key, la < lb ? la : lb);
    if (c) return c;
    if (la != lb) return la < lb ? -1 : 1;
    return a < b ? -1 : (a > b);
}

static void sift_down(size_t *idx, size_t root, size_t end, const json_member *m) {
    while (2 * root + 1 < end) {
        size_t child = 2 * root + 1;
        if (child + 1 < end && member_cmp(m, idx[child], idx[child + 1]) < 0) child++;
        if (member_cmp(m, idx[root], idx[child]) >= 0) return;
        size_t t = idx[root];
        idx[root] = idx[child];
        idx[child] = t;
        root = child;
    }
}

/* Heapsort of idx[n] (member indices) by member_cmp: O(n log n), no extra memory. */
static void sort_by_key(size_t *idx, size_t n, const json_member *m) {
    for (size_t i = 0; i < n; i++) idx[i] = i;
    for (size_t start = n / 2; start-- > 0;) sift_down(idx, start, n, m);
    for (size_t end = n; end-- > 1;) {
        size_t t = idx[0];
        idx[0] = idx[end];
        idx[end] = t;
        sift_down(idx, 0, end, m);
    }
}

static eng_status parse_object(parser *p, json_value *out, int depth) {
    eng_status st;
    if ((st = check_depth(p, depth)) != ENG_OK) return st;
    p->pos++; /* '{' */
    size_t slot = 0, expected = 0, count = 0;
    json_member *members = NULL; /* members[expected], pass 2 only */
    size_t *by_key = NULL;       /* by_key[expected], pass 2 only */
    if (!p->build) {
        if ((st = push_count(p, &slot)) != ENG_OK) return st;
    } else {
        if ((st = pop_count(p, &expected)) != ENG_OK) return st;
        members = p->members + p->next_member;
        by_key = p->by_key + p->next_member;
        p->next_member += expected;
    }
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == '}') {
        p->pos++;
    } else {
        for (;;) {
            skip_ws(p);
            if (p->pos >= p->len || p->s[p->pos] != '"')
                return fail_expected(p, p->pos, "a string key");
            if (p->build && count >= expected) return fail_at(p, p->pos, "internal: object size");
            json_member *m = p->build ? &members[count] : NULL;
            const char *key;
            size_t key_len;
            if ((st = parse_string(p, &key, &key_len)) != ENG_OK) return st;
            skip_ws(p);
            if (p->pos >= p->len || p->s[p->pos] != ':')
                return fail_expected(p, p->pos, "':' after an object key");
            p->pos++;
            if (m) {
                m->key = key;
                m->key_len = key_len;
            }
            if ((st = parse_value(p, m ? &m->value : NULL, depth)) != ENG_OK) return st;
            count++;
            skip_ws(p);
            if (p->pos < p->len && p->s[p->pos] == ',') {
                p->pos++;
                continue;
            }
            if (p->pos < p->len && p->s[p->pos] == '}') {
                p->pos++;
                break;
            }
            return fail_expected(p, p->pos, "',' or '}' after an object member");
        }
    }
    if (!p->build) {
        p->counts[slot] = count;
        p->n_members += count;
        return ENG_OK;
    }
    if (count != expected) return fail_at(p, p->pos, "internal: object size");
    sort_by_key(by_key, count, members);
    out->type = JSON_OBJECT;
    out->n = count;
    out->u.object.members = members;
    out->u.object.by_key = by_key;
    return ENG_OK;
}

static eng_status parse_literal(parser *p, json_value *out, const char *word, json_type type,
                                bool b) {
    size_t n = strlen(word);
    if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n) != 0) {
        char expected[16];
        snprintf(expected, sizeof expected, "'%s'", word);
        return fail_expected(p, p->pos, expected);
    }
    p->pos += n;
    if (out) {
        out->type = type;
        out->u.boolean = b;
    }
    return ENG_OK;
}

/* out: the node to fill in pass 2, NULL in pass 1. depth: containers enclosing this value. */
static eng_status parse_value(parser *p, json_value *out, int depth) {
    skip_ws(p);
    if (p->pos >= p->len) return fail_expected(p, p->pos, "a value");
    if (out) {
        memset(out, 0, sizeof *out);
        out->offset = p->pos;
    }
    uint8_t c = p->s[p->pos];
    switch (c) {
    case '{': return parse_object(p, out, depth + 1);
    case '[': return parse_array(p, out, depth + 1);
    case '"': {
        const char *s;
        size_t n;
        eng_status st = parse_string(p, &s, &n);
        if (st == ENG_OK && out) {
            out->type = JSON_STRING;
            out->n = n;
            out->u.string = s;
        }
        return st;
    }
    case 't': return parse_literal(p, out, "true", JSON_BOOL, true);
    case 'f': return parse_literal(p, out, "false", JSON_BOOL, false);
    case 'n': return parse_literal(p, out, "null", JSON_NULL, false);
    default:
        if (c == '-' || is_digit(c)) return parse_number(p, out);
        return fail_expected(p, p->pos, "a value");
    }
}

/* ---- public: parse / free ------------------------------------------------------------- */

eng_status json_parse(const char *text, size_t len, json_value **root, eng_error *err) {
    if (!root) return eng_err_set(err, ENG_ERR_INVALID_ARG, "json_parse: root is NULL");
    *root = NULL;
    if (!text && len) return eng_err_set(err, ENG_ERR_INVALID_ARG, "json_parse: text is NULL");
    parser p;
    memset(&p, 0, sizeof p);
    p.s = (const uint8_t *)text;
    p.len = len;
    p.err = err;
    p.n_nodes = 1; /* the root */
    void *block = NULL;
    eng_status st;

    /* pass 1: validate + count */
    if ((st = parse_value(&p, NULL, 0)) != ENG_OK) goto fail;
    skip_ws(&p);
    if (p.pos != p.len) {
        st = fail_expected(&p, p.pos, "end of input after the top-level value");
        goto fail;
    }

    size_t sz_nodes, sz_members, sz_index, total;
    if (__builtin_mul_overflow(p.n_nodes, sizeof(json_value), &sz_nodes) ||
        __builtin_mul_overflow(p.n_members, sizeof(json_member), &sz_members) ||
        __builtin_mul_overflow(p.n_members, sizeof(size_t), &sz_index) ||
        __builtin_add_overflow(sz_nodes, sz_members, &total) ||
        __builtin_add_overflow(total, sz_index, &total) ||
        __builtin_add_overflow(total, p.n_bytes, &total)) {
        st = eng_err_set(err, ENG_ERR_OOM, "JSON: tree size overflows");
        goto fail;
    }
    block = malloc(total);
    if (!block) {
        st = eng_err_set(err, ENG_ERR_OOM, "JSON: out of memory (%zu bytes for %zu bytes of text)",
                         total, len);
        goto fail;
    }
    /* carve: nodes | members | by_key | bytes (each size a multiple of the next alignment) */
    p.nodes = (json_value *)block;
    p.members = (json_member *)((char *)block + sz_nodes);
    p.by_key = (size_t *)((char *)block + sz_nodes + sz_members);
    p.bytes = (char *)block + sz_nodes + sz_members + sz_index;

    /* pass 2: build */
    p.build = true;
    p.pos = 0;
    p.next_node = 1;
    if ((st = parse_value(&p, &p.nodes[0], 0)) != ENG_OK) goto fail;
    if (p.next_node != p.n_nodes || p.next_member != p.n_members || p.next_byte != p.n_bytes ||
        p.next_count != p.n_counts) { /* the two passes disagree: an engine bug, not bad input */
        st = eng_err_set(err, ENG_ERR_FORMAT,
                         "JSON: internal error (counting and building passes differ)");
        goto fail;
    }
    free(p.counts);
    free(p.scratch);
    *root = p.nodes;
    return ENG_OK;
fail:
    free(block);
    free(p.counts);
    free(p.scratch);
    return st;
}

void json_free(json_value *root) { free(root); }

const char *json_type_name(json_type t) {
    switch (t) {
    case JSON_NULL: return "null";
    case JSON_BOOL: return "bool";
    case JSON_NUMBER: return "number";
    case JSON_STRING: return "string";
    case JSON_ARRAY: return "array";
    case JSON_OBJECT: return "object";
    }
    return "unknown";
}

/* ---- navigation ----------------------------------------------------------------------- */

size_t json_len(const json_value *v) {
    return (v && (v->type == JSON_ARRAY || v->type == JSON_OBJECT)) ? v->n : 0;
}

const json_value *json_at(const json_value *arr, size_t i) {
    return (arr && arr->type == JSON_ARRAY && i < arr->n) ? &arr->u.items[i] : NULL;
}

const json_member *json_member_at(const json_value *obj, size_t i) {
    return (obj && obj->type == JSON_OBJECT && i < obj->n) ? &obj->u.object.members[i] : NULL;
}

const json_value *json_get_n(const json_value *obj, const char *key, size_t key_len) {
    if (!obj || obj->type != JSON_OBJECT || (!key && key_len)) return NULL;
    const json_member *m = obj->u.object.members;
    const size_t *idx = obj->u.object.by_key;
    size_t lo = 0, hi = obj->n; /* lower bound over by_key */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const json_member *x = &m[idx[mid]];
        size_t n = x->key_len < key_len ? x->key_len : key_len;
        int c = n ? memcmp(x->key, key, n) : 0;
        if (c == 0) c = x->key_len < key_len ? -1 : (x->key_len > key_len);
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if (lo < obj->n) {
        const json_member *x = &m[idx[lo]];
        if (x->key_len == key_len && (key_len == 0 || memcmp(x->key, key, key_len) == 0))
            return &x->value;
    }
    return NULL;
}

const json_value *json_get(const json_value *obj, const char *key) {
    return key ? json_get_n(obj, key, strlen(key)) : NULL;
}

const json_member *json_duplicate_key(const json_value *obj) {
    if (!obj || obj->type != JSON_OBJECT) return NULL;
    const json_member *m = obj->u.object.members;
    const size_t *idx = obj->u.object.by_key;
    for (size_t i = 1; i < obj->n; i++) {
        const json_member *a = &m[idx[i - 1]], *b = &m[idx[i]];
        if (a->key_len == b->key_len && memcmp(a->key, b->key, a->key_len) == 0) return b;
    }
    return NULL;
}

/* ---- typed conversions ---------------------------------------------------------------- */

static const char *what_or(const char *what) { return what ? what : "value"; }

static eng_status type_error(const json_value *v, const char *what, const char *expected,
                             eng_error *err) {
    if (!v) return eng_err_set(err, ENG_ERR_FORMAT, "'%s': missing (expected %s)",
                               what_or(what), expected);
    if (v->type == JSON_NUMBER)
        return eng_err_set(err, ENG_ERR_FORMAT, "'%s': expected %s, got %.64s", what_or(what),
                           expected, v->u.number.text);
    return eng_err_set(err, ENG_ERR_FORMAT, "'%s': expected %s, got %s", what_or(what),
                       expected, json_type_name(v->type));
}

json_int_result json_try_int64(const json_value *v, int64_t *out) {
    if (!v || v->type != JSON_NUMBER) return JSON_INT_NOT_NUMBER;
    num_parts np = split_number(v->u.number.text, v->n);
    /* value = acc * 10^(pending + exp - n_frac): acc holds the significant digits up to the
     * last nonzero one, `pending` counts the zeros after it */
    uint64_t acc = 0;
    int64_t pending = 0, n_frac = 0;
    bool in_frac = false, big = false;
    for (size_t i = 0; i < np.mant_len; i++) {
        char c = np.mant[i];
        if (c == '.') {
            in_frac = true;
            continue;
        }
        if (in_frac) n_frac++;
        if (c == '0') {
            if (acc) pending++;
            continue;
        }
        for (int64_t z = 0; z <= pending && !big; z++)
            big = __builtin_mul_overflow(acc, 10u, &acc);
        big = big || __builtin_add_overflow(acc, (uint64_t)(c - '0'), &acc);
        pending = 0;
    }
    if (acc == 0 && !big) {
        *out = 0; /* 0, -0, 0.000e5 */
        return JSON_INT_OK;
    }
    int64_t scale = pending + np.exp - n_frac; /* |terms| < 2^62: no overflow */
    if (scale < 0) return JSON_INT_FRACTIONAL;  /* the last nonzero digit is after the point */
    for (int64_t z = 0; z < scale && !big; z++) big = __builtin_mul_overflow(acc, 10u, &acc);
    uint64_t limit = np.neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    if (big || acc > limit) return JSON_INT_RANGE;
    *out = np.neg ? (int64_t)(0 - acc) : (int64_t)acc;
    return JSON_INT_OK;
}

eng_status json_as_int64(const json_value *v, const char *what, int64_t *out, eng_error *err) {
    switch (json_try_int64(v, out)) {
    case JSON_INT_OK: return ENG_OK;
    case JSON_INT_RANGE:
        return eng_err_set(err, ENG_ERR_FORMAT, "'%s': %.64s is outside the int64 range",
                           what_or(what), v->u.number.text);
    default: return type_error(v, what, "an integer", err);
    }
}

eng_status json_as_double(const json_value *v, const char *what, double *out, eng_error *err) {
    if (!v || v->type != JSON_NUMBER) return type_error(v, what, "a number", err);
    if (!isfinite(v->u.number.value))
        return eng_err_set(err, ENG_ERR_FORMAT, "'%s': %.64s is outside the double range",
                           what_or(what), v->u.number.text);
    *out = v->u.number.value;
    return ENG_OK;
}

eng_status json_as_bool(const json_value *v, const char *what, bool *out, eng_error *err) {
    if (!v || v->type != JSON_BOOL) return type_error(v, what, "true or false", err);
    *out = v->u.boolean;
    return ENG_OK;
}

eng_status json_as_string(const json_value *v, const char *what, const char **out, size_t *len,
                          eng_error *err) {
    if (!v || v->type != JSON_STRING) return type_error(v, what, "a string", err);
    *out = v->u.string;
    if (len) *len = v->n;
    return ENG_OK;
}

/* ---- member accessors ----------------------------------------------------------------- */

static eng_status member(const json_value *obj, const char *key, const json_value **v,
                         eng_error *err) {
    if (!obj || obj->type != JSON_OBJECT)
        return eng_err_set(err, ENG_ERR_FORMAT, "looking up '%s': expected an object, got %s",
                           what_or(key), obj ? json_type_name(obj->type) : "nothing");
    *v = json_get(obj, key);
    return ENG_OK;
}

static eng_status required(const json_value *obj, const char *key, const json_value **v,
                           eng_error *err) {
    eng_status st = member(obj, key, v, err);
    if (st == ENG_OK && !*v)
        st = eng_err_set(err, ENG_ERR_FORMAT, "missing '%s'", what_or(key));
    return st;
}

eng_status json_get_int64(const json_value *obj, const char *key, int64_t *out, eng_error *err) {
    const json_value *v = NULL;
    eng_status st = required(obj, key, &v, err);
    return st != ENG_OK ? st : json_as_int64(v, key, out, err);
}

eng_status json_get_double(const json_value *obj, const char *key, double *out, eng_error *err) {
    const json_value *v = NULL;
    eng_status st = required(obj, key, &v, err);
    return st != ENG_OK ? st : json_as_double(v, key, out, err);
}

eng_status json_get_bool(const json_value *obj, const char *key, bool *out, eng_error *err) {
    const json_value *v = NULL;
    eng_status st = required(obj, key, &v, err);
    return st != ENG_OK ? st : json_as_bool(v, key, out, err);
}

eng_status json_get_string(const json_value *obj, const char *key, const char **out,
                           eng_error *err) {
    const json_value *v = NULL;
    eng_status st = required(obj, key, &v, err);
    return st != ENG_OK ? st : json_as_string(v, key, out, NULL, err);
}

eng_status json_get_int64_or(const json_value *obj, const char *key, int64_t def, int64_t *out,
                             eng_error *err) {
    const json_value *v = NULL;
    eng_status st = member(obj, key, &v, err);
    if (st != ENG_OK) return st;
    if (!v || v->type == JSON_NULL) {
        *out = def;
        return ENG_OK;
    }
    return json_as_int64(v, key, out, err);
}

eng_status json_get_double_or(const json_value *obj, const char *key, double def, double *out,
                              eng_error *err) {
    const json_value *v = NULL;
    eng_status st = member(obj, key, &v, err);
    if (st != ENG_OK) return st;
    if (!v || v->type == JSON_NULL) {
        *out = def;
        return ENG_OK;
    }
    return json_as_double(v, key, out, err);
}

eng_status json_get_bool_or(const json_value *obj, const char *key, bool def, bool *out,
                            eng_error *err) {
    const json_value *v = NULL;
    eng_status st = member(obj, key, &v, err);
    if (st != ENG_OK) return st;
    if (!v || v->type == JSON_NULL) {
        *out = def;
        return ENG_OK;
    }
    return json_as_bool(v, key, out, err);
}

eng_status json_get_int32_in(const json_value *obj, const char *key, int64_t def, int64_t lo,
                             int64_t hi, int32_t *out, const char *path, eng_error *err) {
    int64_t v;
    if (json_get_int64_or(obj, key, def, &v, err) != ENG_OK)
        return eng_err_prefix(err, "'%s'", path);
    if (v < lo || v > hi || v < INT32_MIN || v > INT32_MAX)
        return eng_err_set(err, ENG_ERR_FORMAT, "'%s': %s = %lld outside [%lld, %lld]", path, key,
                           (long long)v, (long long)lo, (long long)hi);
    *out = (int32_t)v;
    return ENG_OK;
}
