/*
 * payload.c - metadata (one JSON object per vector) and filters over it.
 *
 * Owns the only JSON parsing in the engine (jansson, and a direct parser
 * for short metadata: see "direct parser" below), for two inputs:
 *
 * 1. Metadata (payload_parse). The text must be a JSON object of at most
 *    DV_METADATA_MAX bytes and PAYLOAD_DEPTH_MAX levels. It is parsed once
 *    and converted into one malloc'd block:
 *
 *      struct payload | pnode[n_nodes] | pmember[n_members] | string pool
 *
 *    nodes[0] is the root object. An object node's members are a contiguous
 *    run of pmember sorted by key bytes (binary search on lookup), each naming
 *    its value node; an array node's elements are a contiguous run of nodes;
 *    strings (keys and values) are byte ranges of the pool. The jansson tree
 *    is freed right after conversion. The engine keeps the original text
 *    itself; this form exists only for filtering.
 *
 * 2. Filters (filter_compile). The text is compiled into a tree of fnode:
 *    BOOL nodes (must / should / must_not child lists), IN nodes (a key path
 *    and a set of accepted scalars: sorted strings, sorted numbers, flags for
 *    true/false/null) and RANGE nodes (a key path and numeric bounds). The
 *    equality map {"k": v}, match.value and match.any all compile to IN.
 *
 * Invariants: a payload and a filter are never modified after creation, so
 * filter_match is safe from any number of threads at once; filter_match
 * neither parses nor allocates, and its recursion is bounded by
 * PAYLOAD_DEPTH_MAX (both for the filter tree and the payload tree).
 *
 * Numbers: JSON integers are kept as int64 (exact), other numbers as double.
 * Two numbers are equal when both are integers and equal, or else when their
 * double values are equal (so 1 == 1.0). Integers beyond int64 are parsed as
 * doubles (they stay valid metadata).
 */
#include "payload.h"
#include "utf8.h"

#include <errno.h>
#include <jansson.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

/* ---- shared helpers ------------------------------------------------------ */

enum { T_NULL, T_FALSE, T_TRUE, T_INT, T_REAL, T_STR, T_ARR, T_OBJ };

typedef struct num {
    int is_int;
    int64_t i; /* valid when is_int */
    double d;  /* always valid (== (double)i for integers) */
} num;

/* Byte-wise order of two strings (memcmp on the common prefix, then length). */
static int bytes_cmp(const char *a, size_t na, const char *b, size_t nb)
{
    int c = memcmp(a, b, na < nb ? na : nb);
    if (c)
        return c;
    return na < nb ? -1 : na > nb;
}

static int num_eq(const num *a, const num *b)
{
    if (a->is_int && b->is_int)
        return a->i == b->i;
    return a->d == b->d;
}

/* Three-way comparison with the same rule as num_eq. */
static int num_cmp(const num *a, const num *b)
{
    if (a->is_int && b->is_int)
        return a->i < b->i ? -1 : a->i > b->i;
    return a->d < b->d ? -1 : a->d > b->d;
}

/* Nesting depth of JSON text (brackets outside strings), stopping early past
 * max. A pre-scan so that hostile input never makes jansson or our own
 * recursion go deeper than max; malformed text is left for jansson to report. */
static int text_depth_exceeds(const char *text, size_t len, int max)
{
    int depth = 0, in_str = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = text[i];
        if (in_str) {
            if (ch == '\\')
                i++;
            else if (ch == '"')
                in_str = 0;
        } else if (ch == '"') {
            in_str = 1;
        } else if (ch == '{' || ch == '[') {
            if (++depth > max)
                return 1;
        } else if (ch == '}' || ch == ']') {
            depth--;
        }
    }
    return 0;
}

/* Parse text with jansson (any JSON value, NUL allowed in strings). Integers
 * too big for int64 make jansson fail; then the text is parsed again with
 * every number as a double, which keeps such metadata valid. */
static json_t *parse_json(const char *what, const char *text, size_t len, dv_err *err)
{
    json_error_t je;
    size_t flags = JSON_DECODE_ANY | JSON_ALLOW_NUL;
    json_t *j = json_loadb(text, len, flags, &je);
    if (!j && json_error_code(&je) == json_error_numeric_overflow)
        j = json_loadb(text, len, flags | JSON_DECODE_INT_AS_REAL, &je);
    if (!j) {
        if (json_error_code(&je) == json_error_out_of_memory)
            dv_errorf(err, DV_ENOMEM, "%s: out of memory parsing JSON", what);
        else
            dv_errorf(err, DV_EINVAL, "%s: invalid JSON at line %d, column %d (byte %d): %s", what, je.line, je.column,
                      je.position, je.text);
    }
    return j;
}

static const char *json_type_word(const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    default:
        return "null";
    }
}

/* ---- payload ------------------------------------------------------------- */

/* 16 bytes: numbers keep only their value; the num form is rebuilt at
 * comparison time (node_num). */
typedef struct pnode {
    uint8_t type; /* T_* */
    uint32_t n;   /* T_STR: bytes; T_ARR: elements; T_OBJ: members */
    union {
        uint32_t first; /* T_STR: pool offset; T_ARR: first element node; T_OBJ: first member */
        int64_t i;      /* T_INT */
        double d;       /* T_REAL */
    } u;
} pnode;

typedef struct pmember {
    uint32_t key_off, key_len; /* key bytes in the pool */
    uint32_t node;             /* value node */
} pmember;

struct payload {
    size_t mem; /* bytes of the whole block */
    uint32_t n_nodes, n_members;
    pnode *nodes;
    pmember *members;
    char *pool;
};

typedef struct pcount {
    size_t nodes, members, pool;
} pcount;

/* Count nodes, members and pool bytes of a jansson tree (depth already bounded). */
static void count_tree(const json_t *j, pcount *c)
{
    c->nodes++;
    if (json_is_object(j)) {
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)j, k, v)
        {
            c->members++;
            c->pool += json_object_iter_key_len(json_object_key_to_iter(k));
            count_tree(v, c);
        }
    } else if (json_is_array(j)) {
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v) count_tree(v, c);
    } else if (json_is_string(j)) {
        c->pool += json_string_length(j);
    }
}

typedef struct pbuild {
    payload *p;
    uint32_t next_node, next_member, next_pool;
} pbuild;

static uint32_t pool_put(pbuild *b, const char *s, size_t n)
{
    uint32_t off = b->next_pool;
    if (n)
        memcpy(b->p->pool + off, s, n);
    b->next_pool += (uint32_t)n;
    return off;
}

static int member_cmp(const void *a, const void *b, void *pool)
{
    const pmember *x = a, *y = b;
    const char *s = pool;
    return bytes_cmp(s + x->key_off, x->key_len, s + y->key_off, y->key_len);
}

/* Fill node `at` from j. Children of one object/array are reserved as one
 * contiguous run before descending, which keeps each run contiguous. */
static void build_tree(pbuild *b, const json_t *j, uint32_t at)
{
    pnode *nd = &b->p->nodes[at];
    memset(nd, 0, sizeof *nd);
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        uint32_t n = (uint32_t)json_object_size(j);
        uint32_t first = b->next_member, base = b->next_node;
        nd->type = T_OBJ;
        nd->n = n;
        nd->u.first = first;
        b->next_member += n;
        b->next_node += n;
        const char *k;
        json_t *v;
        uint32_t i = 0;
        json_object_foreach((json_t *)j, k, v)
        {
            pmember *m = &b->p->members[first + i];
            size_t klen = json_object_iter_key_len(json_object_key_to_iter(k));
            m->key_len = (uint32_t)klen;
            m->key_off = pool_put(b, k, klen);
            m->node = base + i;
            build_tree(b, v, base + i);
            i++;
        }
        if (n > 1)
            qsort_r(&b->p->members[first], n, sizeof(pmember), member_cmp, b->p->pool);
        break;
    }
    case JSON_ARRAY: {
        uint32_t n = (uint32_t)json_array_size(j), base = b->next_node;
        nd->type = T_ARR;
        nd->n = n;
        nd->u.first = base;
        b->next_node += n;
        for (uint32_t i = 0; i < n; i++)
            build_tree(b, json_array_get(j, i), base + i);
        break;
    }
    case JSON_STRING:
        nd->type = T_STR;
        nd->n = (uint32_t)json_string_length(j);
        nd->u.first = pool_put(b, json_string_value(j), nd->n);
        break;
    case JSON_INTEGER:
        nd->type = T_INT;
        nd->u.i = json_integer_value(j);
        break;
    case JSON_REAL:
        nd->type = T_REAL;
        nd->u.d = json_real_value(j);
        break;
    case JSON_TRUE:
        nd->type = T_TRUE;
        break;
    case JSON_FALSE:
        nd->type = T_FALSE;
        break;
    default:
        nd->type = T_NULL;
        break;
    }
}

/* ---- direct parser (the common case, no jansson) ------------------------ */

/* Metadata up to FAST_MAX bytes is parsed straight into the compact form,
 * without building a jansson tree (a tree of malloc'd values, a hash table
 * per object) only to copy and free it: at open, parsing every point's
 * metadata this way took most of the time spent on the ids file. The
 * direct parser accepts a strict subset of JSON - objects, arrays, strings
 * without escapes (strict UTF-8), numbers that need no overflow handling,
 * true/false/null, no duplicate keys - and builds the very same block as
 * the jansson path (same node order, same pool bytes; test_open checks it).
 * Anything else, valid or not, goes to jansson, which then decides: the
 * direct parser never accepts text jansson would reject. */
#define FAST_MAX 512
#define FAST_TOKS (FAST_MAX / 2 + 2) /* a value takes >= 1 byte plus a separator */

typedef struct ftok {
    uint8_t type;
    uint32_t n;                /* T_STR: bytes; T_ARR: elements; T_OBJ: members */
    uint32_t off;              /* T_STR: offset of its bytes in the text */
    uint32_t key_off, key_len; /* an object member's value: its key in the text */
    uint32_t end;              /* the token after this one's subtree */
    union {
        int64_t i;
        double d;
    } u;
} ftok;

typedef struct fparse {
    const uint8_t *s;
    size_t len, i;
    ftok *t;
    uint32_t nt;
    size_t members, pool;
} fparse;

static void f_ws(fparse *f)
{
    while (f->i < f->len && (f->s[f->i] == ' ' || f->s[f->i] == '\t' || f->s[f->i] == '\n' || f->s[f->i] == '\r'))
        f->i++;
}

/* A string at f->i (a '"') without escapes or control characters. */
static int f_str(fparse *f, uint32_t *off, uint32_t *n)
{
    size_t j = f->i + 1;
    while (j < f->len) {
        uint8_t c = f->s[j];
        if (c == '"') {
            *off = (uint32_t)(f->i + 1);
            *n = (uint32_t)(j - f->i - 1);
            f->i = j + 1;
            return 1;
        }
        if (c == '\\' || c < 0x20)
            return 0;
        if (c < 0x80) {
            j++;
            continue;
        }
        size_t k = utf8_char_len(f->s + j, f->len - j);
        if (!k)
            return 0;
        j += k;
    }
    return 0;
}

static int f_digit(const fparse *f, size_t j)
{
    return j < f->len && f->s[j] >= '0' && f->s[j] <= '9';
}

/* A number at f->i, by the JSON grammar. Integers as jansson: int64 (an
 * overflow goes to jansson, which retries with doubles); others by strtod
 * (an overflow goes to jansson, which rejects it). */
static int f_num(fparse *f, ftok *t)
{
    size_t j = f->i, start = f->i;
    int neg = f->s[j] == '-', real = 0;
    if (neg)
        j++;
    if (!f_digit(f, j))
        return 0;
    if (f->s[j] == '0') {
        j++;
        if (f_digit(f, j))
            return 0;
    } else {
        while (f_digit(f, j))
            j++;
    }
    if (j < f->len && f->s[j] == '.') {
        j++;
        if (!f_digit(f, j))
            return 0;
        while (f_digit(f, j))
            j++;
        real = 1;
    }
    if (j < f->len && (f->s[j] == 'e' || f->s[j] == 'E')) {
        j++;
        if (j < f->len && (f->s[j] == '+' || f->s[j] == '-'))
            j++;
        if (!f_digit(f, j))
            return 0;
        while (f_digit(f, j))
            j++;
        real = 1;
    }
    size_t n = j - start;
    if (!real && n - (size_t)neg <= 18) {
        int64_t v = 0;
        for (size_t k = start + (size_t)neg; k < j; k++)
            v = v * 10 + (f->s[k] - '0');
        t->type = T_INT;
        t->u.i = neg ? -v : v;
    } else {
        char buf[64];
        const char *dp = localeconv()->decimal_point;
        if (n >= sizeof buf || (real && (dp[0] != '.' || dp[1] != 0)))
            return 0;
        memcpy(buf, f->s + start, n);
        buf[n] = 0;
        char *end;
        errno = 0;
        if (real) {
            double d = strtod(buf, &end);
            if ((d == HUGE_VAL || d == -HUGE_VAL) && errno == ERANGE)
                return 0;
            t->type = T_REAL;
            t->u.d = d;
        } else {
            long long v = strtoll(buf, &end, 10);
            if (errno == ERANGE)
                return 0;
            t->type = T_INT;
            t->u.i = v;
        }
        if (end != buf + n)
            return 0;
    }
    f->i = j;
    return 1;
}

static int f_lit(fparse *f, const char *word, uint8_t type, ftok *t)
{
    size_t n = strlen(word);
    if (f->len - f->i < n || memcmp(f->s + f->i, word, n) != 0)
        return 0;
    f->i += n;
    /* jansson reads a run of letters as one word */
    if (f->i < f->len && ((f->s[f->i] | 0x20) >= 'a' && (f->s[f->i] | 0x20) <= 'z'))
        return 0;
    t->type = type;
    return 1;
}

/* One value at f->i into token f->nt (and its subtree after it). */
static int f_value(fparse *f)
{
    if (f->i >= f->len || f->nt >= FAST_TOKS)
        return 0;
    uint32_t ti = f->nt++;
    ftok *t = &f->t[ti];
    memset(t, 0, sizeof *t);
    uint8_t c = f->s[f->i];
    int ok;
    if (c == '{' || c == '[') {
        uint8_t close = c == '{' ? '}' : ']';
        t->type = c == '{' ? T_OBJ : T_ARR;
        f->i++;
        f_ws(f);
        if (f->i < f->len && f->s[f->i] == close) {
            f->i++;
        } else {
            for (;;) {
                uint32_t koff = 0, klen = 0;
                if (t->type == T_OBJ) {
                    if (f->i >= f->len || f->s[f->i] != '"' || !f_str(f, &koff, &klen))
                        return 0;
                    f_ws(f);
                    if (f->i >= f->len || f->s[f->i] != ':')
                        return 0;
                    f->i++;
                    f_ws(f);
                }
                uint32_t child = f->nt;
                if (!f_value(f))
                    return 0;
                t = &f->t[ti];
                if (t->type == T_OBJ) {
                    f->t[child].key_off = koff;
                    f->t[child].key_len = klen;
                    f->members++;
                    f->pool += klen;
                }
                t->n++;
                f_ws(f);
                if (f->i < f->len && f->s[f->i] == ',') {
                    f->i++;
                    f_ws(f);
                    continue;
                }
                if (f->i < f->len && f->s[f->i] == close) {
                    f->i++;
                    break;
                }
                return 0;
            }
        }
        ok = 1;
    } else if (c == '"') {
        t->type = T_STR;
        ok = f_str(f, &t->off, &t->n);
        f->pool += t->n;
    } else if (c == '-' || (c >= '0' && c <= '9')) {
        ok = f_num(f, t);
    } else if (c == 't') {
        ok = f_lit(f, "true", T_TRUE, t);
    } else if (c == 'f') {
        ok = f_lit(f, "false", T_FALSE, t);
    } else if (c == 'n') {
        ok = f_lit(f, "null", T_NULL, t);
    } else {
        ok = 0;
    }
    f->t[ti].end = f->nt;
    return ok;
}

/* Lay token ti out as node `at`, exactly as build_tree does with jansson's
 * tree. 0 when an object has a duplicate key (jansson keeps the last). */
static int f_lay(const fparse *f, pbuild *b, uint32_t ti, uint32_t at)
{
    const ftok *t = &f->t[ti];
    pnode *nd = &b->p->nodes[at];
    memset(nd, 0, sizeof *nd);
    nd->type = t->type;
    switch (t->type) {
    case T_OBJ:
    case T_ARR: {
        uint32_t n = t->n, base = b->next_node, first = t->type == T_OBJ ? b->next_member : base;
        nd->n = n;
        nd->u.first = first;
        b->next_node += n;
        if (t->type == T_OBJ)
            b->next_member += n;
        uint32_t child = ti + 1;
        for (uint32_t k = 0; k < n; k++) {
            if (t->type == T_OBJ) {
                pmember *m = &b->p->members[first + k];
                m->key_len = f->t[child].key_len;
                m->key_off = pool_put(b, (const char *)f->s + f->t[child].key_off, m->key_len);
                m->node = base + k;
            }
            if (!f_lay(f, b, child, base + k))
                return 0;
            child = f->t[child].end;
        }
        if (t->type == T_OBJ && n > 1) {
            pmember *ms = &b->p->members[first];
            qsort_r(ms, n, sizeof(pmember), member_cmp, b->p->pool);
            for (uint32_t k = 1; k < n; k++)
                if (member_cmp(&ms[k - 1], &ms[k], b->p->pool) == 0)
                    return 0;
        }
        break;
    }
    case T_STR:
        nd->n = t->n;
        nd->u.first = pool_put(b, (const char *)f->s + t->off, t->n);
        break;
    case T_INT:
        nd->u.i = t->u.i;
        break;
    case T_REAL:
        nd->u.d = t->u.d;
        break;
    default:
        break;
    }
    return 1;
}

/* Build the payload block for pcount c (nodes, members, pool bytes). */
static payload *payload_alloc(const pcount *c)
{
    /* Every count is bounded by the text size (<= 64 KiB), so uint32 fits. */
    size_t off_nodes = sizeof(payload);
    off_nodes = (off_nodes + 7) & ~(size_t)7;
    size_t off_members = off_nodes + c->nodes * sizeof(pnode);
    size_t off_pool = off_members + c->members * sizeof(pmember);
    size_t total = off_pool + c->pool;
    char *block = malloc(total);
    if (!block)
        return NULL;
    payload *p = (payload *)block;
    p->mem = total;
    p->n_nodes = (uint32_t)c->nodes;
    p->n_members = (uint32_t)c->members;
    p->nodes = (pnode *)(block + off_nodes);
    p->members = (pmember *)(block + off_members);
    p->pool = block + off_pool;
    return p;
}

/* 1: parsed into *out; 0: not handled here (use jansson); -1: no memory. */
static int fast_parse(const char *text, size_t len, payload **out)
{
    ftok toks[FAST_TOKS];
    fparse f = {.s = (const uint8_t *)text, .len = len, .t = toks};
    f_ws(&f);
    if (f.i >= len || text[f.i] != '{' || !f_value(&f))
        return 0;
    f_ws(&f);
    if (f.i != len)
        return 0;
    pcount c = {f.nt, f.members, f.pool};
    payload *p = payload_alloc(&c);
    if (!p)
        return -1;
    pbuild b = {p, 1, 0, 0};
    if (!f_lay(&f, &b, 0, 0)) {
        free(p);
        return 0;
    }
    *out = p;
    return 1;
}

/* The jansson path: any valid metadata. */
static dv_code parse_jansson(const char *text, size_t len, payload **out, dv_err *err)
{
    dv_code rc;
    json_t *j = parse_json("metadata", text ? text : "", len, err);
    if (!j)
        return err ? err->code : DV_EINVAL;
    if (!json_is_object(j)) {
        rc = dv_errorf(err, DV_EINVAL, "metadata must be a JSON object (got %s)", json_type_word(j));
        json_decref(j);
        return rc;
    }
    pcount c = {0, 0, 0};
    count_tree(j, &c);
    payload *p = payload_alloc(&c);
    if (!p) {
        json_decref(j);
        return dv_errorf(err, DV_ENOMEM, "metadata: out of memory");
    }
    pbuild b = {p, 1, 0, 0};
    build_tree(&b, j, 0);
    json_decref(j);
    *out = p;
    return DV_OK;
}

/* Checks shared by both paths. */
static dv_code parse_precheck(const char *text, size_t len, dv_err *err)
{
    if (!text && len)
        return dv_errorf(err, DV_EINVAL, "metadata: NULL text with length %zu", len);
    if (len > DV_METADATA_MAX)
        return dv_errorf(err, DV_ELIMIT, "metadata: %zu bytes exceeds the limit of %d bytes", len, DV_METADATA_MAX);
    if (text_depth_exceeds(text, len, PAYLOAD_DEPTH_MAX))
        return dv_errorf(err, DV_ELIMIT, "metadata: nesting deeper than %d levels", PAYLOAD_DEPTH_MAX);
    return DV_OK;
}

/* Parse metadata text into the compact tree; see the top of this file.
 * Short metadata takes the direct parser when it can (above). */
dv_code payload_parse(const char *text, size_t len, payload **out, dv_err *err)
{
    dv_code rc = parse_precheck(text, len, err);
    if (rc)
        return rc;
    if (text && len <= FAST_MAX) {
        int r = fast_parse(text, len, out);
        if (r > 0)
            return DV_OK;
        if (r < 0)
            return dv_errorf(err, DV_ENOMEM, "metadata: out of memory");
    }
    return parse_jansson(text, len, out, err);
}

dv_code payload_parse_jansson(const char *text, size_t len, payload **out, dv_err *err)
{
    dv_code rc = parse_precheck(text, len, err);
    return rc ? rc : parse_jansson(text, len, out, err);
}

int payload_parse_direct(const char *text, size_t len, payload **out)
{
    if (!text || len > FAST_MAX || text_depth_exceeds(text, len, PAYLOAD_DEPTH_MAX))
        return 0;
    return fast_parse(text, len, out);
}

int payload_same(const payload *a, const payload *b)
{
    if (a->mem != b->mem || a->n_nodes != b->n_nodes || a->n_members != b->n_members)
        return 0;
    size_t hdr = ((const char *)a->nodes - (const char *)a);
    return memcmp((const char *)a + hdr, (const char *)b + hdr, a->mem - hdr) == 0;
}

void payload_free(payload *p)
{
    free(p);
}

size_t payload_mem_bytes(const payload *p)
{
    return p ? p->mem : 0;
}

/* Member of object node nd whose key is exactly s[0..n), or NULL. */
static const pmember *obj_find(const payload *p, const pnode *nd, const char *s, size_t n)
{
    size_t lo = 0, hi = nd->n;
    const pmember *ms = &p->members[nd->u.first];
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = bytes_cmp(p->pool + ms[mid].key_off, ms[mid].key_len, s, n);
        if (c == 0)
            return &ms[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* ---- filters ------------------------------------------------------------- */

enum { F_BOOL, F_IN, F_RANGE };

typedef struct fseg {
    uint32_t off, len; /* bytes of one path segment in the filter pool */
} fseg;

typedef struct fnode {
    uint8_t kind; /* F_* */
    /* F_BOOL: children are kids[first .. first + n_must + n_should + n_not),
     * in that order. */
    uint32_t first, n_must, n_should, n_not;
    /* F_IN, F_RANGE: the key (whole text) and its segments. */
    uint32_t key_off, key_len, seg_first, n_seg;
    /* F_IN: sorted strings strs[str_first..+n_str), sorted numbers
     * nums[num_first..+n_num), and flags. */
    uint32_t str_first, n_str, num_first, n_num;
    uint8_t has_true, has_false, has_null;
    /* F_RANGE: bounds. */
    uint8_t has_lo, lo_incl, has_hi, hi_incl;
    num lo, hi;
} fnode;

struct filter {
    fnode *nodes;
    uint32_t *kids;
    fseg *segs;
    fseg *strs; /* string values, as byte ranges of the pool */
    num *nums;
    char *pool;
    uint32_t root;
    size_t n_nodes, n_kids, n_segs, n_strs, n_nums, n_pool;
};

/* Compile state: growable arrays that become the filter. */
typedef struct fcc {
    filter *f;
    size_t cap_nodes, cap_kids, cap_segs, cap_strs, cap_nums, cap_pool;
    dv_err *err;
} fcc;

#define LOC_MAX 160

static int grow(void **arr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t ncap = *cap ? *cap * 2 : 8;
    while (ncap < need)
        ncap *= 2;
    void *a = realloc(*arr, ncap * elem);
    if (!a)
        return -1;
    *arr = a;
    *cap = ncap;
    return 0;
}

#define GROW(cc, field, capf, extra)                                                                   \
    (grow((void **)&(cc)->f->field, &(cc)->capf, (cc)->f->n_##field + (extra), sizeof *(cc)->f->field) \
         ? dv_errorf((cc)->err, DV_ENOMEM, "filter: out of memory")                                    \
         : DV_OK)

/* Error at location loc ("" for the whole filter). */
static dv_code ferr(fcc *cc, const char *loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static dv_code ferr(fcc *cc, const char *loc, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (loc[0])
        return dv_errorf(cc->err, DV_EINVAL, "filter: %s: %s", loc, msg);
    return dv_errorf(cc->err, DV_EINVAL, "filter: %s", msg);
}

/* dst = loc + sep + formatted part, truncated to LOC_MAX (a location in an
 * error message, like "must[2].match.any[0]"). sep is skipped when loc is "". */
static void loc_join(char *dst, const char *loc, const char *sep, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void loc_join(char *dst, const char *loc, const char *sep, const char *fmt, ...)
{
    size_t n = strnlen(loc, LOC_MAX - 1);
    memmove(dst, loc, n);
    if (n)
        for (; *sep && n < LOC_MAX - 1; sep++)
            dst[n++] = *sep;
    dst[n] = '\0';
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dst + n, LOC_MAX - n, fmt, ap);
    va_end(ap);
}
#define sub_loc(dst, loc, ...) loc_join(dst, loc, ".", __VA_ARGS__)

static dv_code pool_add(fcc *cc, const char *s, size_t n, uint32_t *off)
{
    dv_code rc = GROW(cc, pool, cap_pool, n);
    if (rc)
        return rc;
    if (n)
        memcpy(cc->f->pool + cc->f->n_pool, s, n);
    *off = (uint32_t)cc->f->n_pool;
    cc->f->n_pool += n;
    return DV_OK;
}

static dv_code node_add(fcc *cc, uint8_t kind, uint32_t *idx)
{
    dv_code rc = GROW(cc, nodes, cap_nodes, 1);
    if (rc)
        return rc;
    *idx = (uint32_t)cc->f->n_nodes++;
    fnode *nd = &cc->f->nodes[*idx];
    memset(nd, 0, sizeof *nd);
    nd->kind = kind;
    return DV_OK;
}

/* Store the key path of a condition: its bytes and its dot-separated segments.
 * Keys are non-empty, without empty segments, at most 1024 bytes. */
static dv_code set_key(fcc *cc, uint32_t idx, const char *key, size_t klen, const char *loc)
{
    if (klen == 0)
        return ferr(cc, loc, "key is empty");
    if (klen > 1024)
        return ferr(cc, loc, "key is %zu bytes, longer than 1024", klen);
    if (memchr(key, '\0', klen))
        return ferr(cc, loc, "key contains a NUL byte");
    uint32_t koff, seg_first = (uint32_t)cc->f->n_segs, n_seg = 0;
    dv_code rc = pool_add(cc, key, klen, &koff);
    if (rc)
        return rc;
    size_t start = 0;
    for (size_t i = 0; i <= klen; i++) {
        if (i < klen && key[i] != '.')
            continue;
        if (i == start)
            return ferr(cc, loc, "key \"%.*s\" has an empty path segment", (int)klen, key);
        if ((rc = GROW(cc, segs, cap_segs, 1)))
            return rc;
        cc->f->segs[cc->f->n_segs].off = koff + (uint32_t)start;
        cc->f->segs[cc->f->n_segs].len = (uint32_t)(i - start);
        cc->f->n_segs++;
        n_seg++;
        start = i + 1;
    }
    fnode *nd = &cc->f->nodes[idx];
    nd->key_off = koff;
    nd->key_len = (uint32_t)klen;
    nd->seg_first = seg_first;
    nd->n_seg = n_seg;
    return DV_OK;
}

static void num_from_json(const json_t *v, num *out)
{
    memset(out, 0, sizeof *out);
    if (json_is_integer(v)) {
        out->is_int = 1;
        out->i = json_integer_value(v);
        out->d = (double)out->i;
    } else {
        out->d = json_real_value(v);
    }
}

/* Total order for sorted number sets: by double value, then integers after
 * doubles, then by integer value. Equal doubles are adjacent, which is all
 * that the lookup in in_has_num needs. */
static int num_sort_cmp(const void *a, const void *b)
{
    const num *x = a, *y = b;
    if (x->d != y->d)
        return x->d < y->d ? -1 : 1;
    if (x->is_int != y->is_int)
        return x->is_int - y->is_int;
    return x->i < y->i ? -1 : x->i > y->i;
}

static int str_sort_cmp(const void *a, const void *b, void *pool)
{
    const fseg *x = a, *y = b;
    const char *s = pool;
    return bytes_cmp(s + x->off, x->len, s + y->off, y->len);
}

/* Add one accepted scalar to the IN node idx. Arrays and objects are refused. */
static dv_code in_add_value(fcc *cc, uint32_t idx, const json_t *v, const char *loc)
{
    dv_code rc;
    fnode *nd = &cc->f->nodes[idx];
    switch (json_typeof(v)) {
    case JSON_STRING: {
        uint32_t off;
        if ((rc = pool_add(cc, json_string_value(v), json_string_length(v), &off)))
            return rc;
        if ((rc = GROW(cc, strs, cap_strs, 1)))
            return rc;
        cc->f->strs[cc->f->n_strs].off = off;
        cc->f->strs[cc->f->n_strs].len = (uint32_t)json_string_length(v);
        cc->f->n_strs++;
        cc->f->nodes[idx].n_str++;
        return DV_OK;
    }
    case JSON_INTEGER:
    case JSON_REAL:
        if ((rc = GROW(cc, nums, cap_nums, 1)))
            return rc;
        num_from_json(v, &cc->f->nums[cc->f->n_nums++]);
        cc->f->nodes[idx].n_num++;
        return DV_OK;
    case JSON_TRUE:
        nd->has_true = 1;
        return DV_OK;
    case JSON_FALSE:
        nd->has_false = 1;
        return DV_OK;
    case JSON_NULL:
        nd->has_null = 1;
        return DV_OK;
    default:
        return ferr(cc, loc, "value must be a string, number, boolean or null, not %s", json_type_word(v));
    }
}

/* Start an IN node; values follow through in_add_value, then in_finish. */
static dv_code in_begin(fcc *cc, const char *key, size_t klen, const char *loc, uint32_t *idx)
{
    dv_code rc = node_add(cc, F_IN, idx);
    if (rc)
        return rc;
    if ((rc = set_key(cc, *idx, key, klen, loc)))
        return rc;
    cc->f->nodes[*idx].str_first = (uint32_t)cc->f->n_strs;
    cc->f->nodes[*idx].num_first = (uint32_t)cc->f->n_nums;
    return DV_OK;
}

static void in_finish(fcc *cc, uint32_t idx)
{
    fnode *nd = &cc->f->nodes[idx];
    if (nd->n_str > 1)
        qsort_r(&cc->f->strs[nd->str_first], nd->n_str, sizeof(fseg), str_sort_cmp, cc->f->pool);
    if (nd->n_num > 1)
        qsort(&cc->f->nums[nd->num_first], nd->n_num, sizeof(num), num_sort_cmp);
}

/* {"key": k, "match": {...}} or {"key": k, "range": {...}} */
static dv_code compile_cond(fcc *cc, const json_t *j, const char *loc, uint32_t *idx)
{
    const json_t *key = json_object_get(j, "key"), *match = json_object_get(j, "match"),
                 *range = json_object_get(j, "range");
    const char *k;
    json_t *v;
    char sub[LOC_MAX];
    dv_code rc;

    json_object_foreach((json_t *)j, k, v)
    {
        if (strcmp(k, "key") && strcmp(k, "match") && strcmp(k, "range"))
            return ferr(cc, loc, "unknown member \"%s\" in a condition (expected key, match or range)", k);
    }
    if (!json_is_string(key))
        return ferr(cc, loc, "\"key\" must be a string, not %s", json_type_word(key));
    if (match && range)
        return ferr(cc, loc, "a condition has either \"match\" or \"range\", not both");
    if (!match && !range)
        return ferr(cc, loc, "a condition needs \"match\" or \"range\"");
    const char *ks = json_string_value(key);
    size_t klen = json_string_length(key);

    if (match) {
        sub_loc(sub, loc, "match");
        if (!json_is_object(match))
            return ferr(cc, sub, "must be an object like {\"value\": v} or {\"any\": [v, ...]}, not %s",
                        json_type_word(match));
        const json_t *value = json_object_get(match, "value"), *any = json_object_get(match, "any");
        json_object_foreach((json_t *)match, k, v)
        {
            if (strcmp(k, "value") && strcmp(k, "any"))
                return ferr(cc, sub, "unknown operator \"%s\" (expected value or any)", k);
        }
        if (value && any)
            return ferr(cc, sub, "has both \"value\" and \"any\"; use one");
        if (!value && !any)
            return ferr(cc, sub, "needs \"value\" or \"any\"");
        if ((rc = in_begin(cc, ks, klen, loc, idx)))
            return rc;
        if (value) {
            sub_loc(sub, loc, "match.value");
            if ((rc = in_add_value(cc, *idx, value, sub)))
                return rc;
        } else {
            sub_loc(sub, loc, "match.any");
            if (!json_is_array(any))
                return ferr(cc, sub, "must be an array, not %s", json_type_word(any));
            if (json_array_size(any) == 0)
                return ferr(cc, sub, "empty list (it would match nothing)");
            size_t i;
            json_array_foreach(any, i, v)
            {
                char el[LOC_MAX];
                loc_join(el, sub, "", "[%zu]", i);
                if ((rc = in_add_value(cc, *idx, v, el)))
                    return rc;
            }
        }
        in_finish(cc, *idx);
        return DV_OK;
    }

    sub_loc(sub, loc, "range");
    if (!json_is_object(range))
        return ferr(cc, sub, "must be an object like {\"gte\": 1, \"lt\": 5}, not %s", json_type_word(range));
    if (json_object_size(range) == 0)
        return ferr(cc, sub, "needs at least one of gt, gte, lt, lte");
    if ((rc = node_add(cc, F_RANGE, idx)))
        return rc;
    if ((rc = set_key(cc, *idx, ks, klen, loc)))
        return rc;
    fnode *nd = &cc->f->nodes[*idx];
    json_object_foreach((json_t *)range, k, v)
    {
        int lower = !strcmp(k, "gt") || !strcmp(k, "gte");
        int upper = !strcmp(k, "lt") || !strcmp(k, "lte");
        if (!lower && !upper)
            return ferr(cc, sub, "unknown operator \"%s\" (expected gt, gte, lt or lte)", k);
        if (!json_is_number(v))
            return ferr(cc, sub, "\"%s\" must be a number, not %s", k, json_type_word(v));
        if (lower) {
            if (nd->has_lo)
                return ferr(cc, sub, "both gt and gte given; use one");
            nd->has_lo = 1;
            nd->lo_incl = !strcmp(k, "gte");
            num_from_json(v, &nd->lo);
        } else {
            if (nd->has_hi)
                return ferr(cc, sub, "both lt and lte given; use one");
            nd->has_hi = 1;
            nd->hi_incl = !strcmp(k, "lte");
            num_from_json(v, &nd->hi);
        }
    }
    return DV_OK;
}

static dv_code compile_filter(fcc *cc, const json_t *j, const char *loc, uint32_t *idx);

/* An element of a must/should/must_not array: a condition if it has "key",
 * else a nested filter. */
static dv_code compile_elem(fcc *cc, const json_t *j, const char *loc, uint32_t *idx)
{
    if (!json_is_object(j))
        return ferr(cc, loc, "must be an object (a condition or a nested filter), not %s", json_type_word(j));
    if (json_object_get(j, "key"))
        return compile_cond(cc, j, loc, idx);
    return compile_filter(cc, j, loc, idx);
}

static int is_clause_name(const char *k)
{
    return !strcmp(k, "must") || !strcmp(k, "should") || !strcmp(k, "must_not");
}

/* A filter object: must / should / must_not arrays plus legacy equality
 * members {"k": v} (which join "must"). A top-level object with "key" and
 * "match" or "range" is taken as a single condition. */
static dv_code compile_filter(fcc *cc, const json_t *j, const char *loc, uint32_t *idx)
{
    static const char *const clause[3] = {"must", "should", "must_not"};
    uint32_t *lists[3] = {NULL, NULL, NULL};
    size_t n[3] = {0, 0, 0};
    const char *k;
    json_t *v;
    char sub[LOC_MAX];
    dv_code rc = DV_OK;

    if (json_object_get(j, "key") && (json_object_get(j, "match") || json_object_get(j, "range")))
        return compile_cond(cc, j, loc, idx);

    /* A member named must/should/must_not whose value is an array is a
     * clause; any other member is an equality on that metadata key (so a
     * metadata field literally named "must" can still be matched). */
    size_t n_eq = 0;
    json_object_foreach((json_t *)j, k, v)
    {
        if (!(is_clause_name(k) && json_is_array(v)))
            n_eq++;
    }
    for (int c = 0; c < 3; c++) {
        const json_t *arr = json_object_get(j, clause[c]);
        size_t cap = (arr && json_is_array(arr) ? json_array_size(arr) : 0) + (c == 0 ? n_eq : 0);
        if (cap && !(lists[c] = malloc(cap * sizeof(uint32_t)))) {
            rc = dv_errorf(cc->err, DV_ENOMEM, "filter: out of memory");
            goto fail;
        }
    }

    json_object_foreach((json_t *)j, k, v)
    {
        if (is_clause_name(k) && json_is_array(v))
            continue;
        size_t klen = json_object_iter_key_len(json_object_key_to_iter(k));
        if (is_clause_name(k) && json_is_object(v)) {
            sub_loc(sub, loc, "%s", k);
            rc = ferr(cc, sub, "must be an array of conditions, not an object");
            goto fail;
        }
        sub_loc(sub, loc, "key \"%.*s\"", (int)(klen > 64 ? 64 : klen), k);
        if (json_is_array(v) || json_is_object(v)) {
            rc = ferr(cc, sub,
                      "value must be a string, number, boolean or null, not %s (for a list of accepted "
                      "values use {\"key\": \"%.*s\", \"match\": {\"any\": [...]}})",
                      json_type_word(v), (int)(klen > 64 ? 64 : klen), k);
            goto fail;
        }
        uint32_t c_idx;
        if ((rc = in_begin(cc, k, klen, sub, &c_idx)) || (rc = in_add_value(cc, c_idx, v, sub)))
            goto fail;
        in_finish(cc, c_idx);
        lists[0][n[0]++] = c_idx;
    }
    for (int c = 0; c < 3; c++) {
        const json_t *arr = json_object_get(j, clause[c]);
        if (!arr || !json_is_array(arr))
            continue;
        size_t i;
        json_array_foreach(arr, i, v)
        {
            sub_loc(sub, loc, "%s[%zu]", clause[c], i);
            if ((rc = compile_elem(cc, v, sub, &lists[c][n[c]])))
                goto fail;
            n[c]++;
        }
    }

    if ((rc = node_add(cc, F_BOOL, idx)))
        goto fail;
    size_t total = n[0] + n[1] + n[2];
    if ((rc = GROW(cc, kids, cap_kids, total)))
        goto fail;
    fnode *nd = &cc->f->nodes[*idx];
    nd->first = (uint32_t)cc->f->n_kids;
    nd->n_must = (uint32_t)n[0];
    nd->n_should = (uint32_t)n[1];
    nd->n_not = (uint32_t)n[2];
    for (int c = 0; c < 3; c++) {
        if (n[c])
            memcpy(&cc->f->kids[cc->f->n_kids], lists[c], n[c] * sizeof(uint32_t));
        cc->f->n_kids += n[c];
    }
fail:
    for (int c = 0; c < 3; c++)
        free(lists[c]);
    return rc;
}

/* Parse and compile filter text; see docs/filters.md for the language. */
dv_code filter_compile(const char *text, size_t len, filter **out, dv_err *err)
{
    json_t *j = NULL;
    filter *f = NULL;
    dv_code rc;

    if (!text && len)
        return dv_errorf(err, DV_EINVAL, "filter: NULL text with length %zu", len);
    if (len > FILTER_TEXT_MAX)
        return dv_errorf(err, DV_ELIMIT, "filter: %zu bytes exceeds the limit of %d bytes", len, FILTER_TEXT_MAX);
    if (text_depth_exceeds(text, len, PAYLOAD_DEPTH_MAX))
        return dv_errorf(err, DV_ELIMIT, "filter: nesting deeper than %d levels", PAYLOAD_DEPTH_MAX);
    j = parse_json("filter", text ? text : "", len, err);
    if (!j)
        return err ? err->code : DV_EINVAL;
    if (!json_is_object(j)) {
        rc = dv_errorf(err, DV_EINVAL, "filter must be a JSON object (got %s)", json_type_word(j));
        goto fail;
    }
    if (!(f = calloc(1, sizeof *f))) {
        rc = dv_errorf(err, DV_ENOMEM, "filter: out of memory");
        goto fail;
    }
    fcc cc = {.f = f, .err = err};
    if ((rc = compile_filter(&cc, j, "", &f->root)))
        goto fail;
    json_decref(j);
    *out = f;
    return DV_OK;

fail:
    json_decref(j);
    filter_free(f);
    return rc;
}

void filter_free(filter *f)
{
    if (!f)
        return;
    free(f->nodes);
    free(f->kids);
    free(f->segs);
    free(f->strs);
    free(f->nums);
    free(f->pool);
    free(f);
}

size_t filter_mem_bytes(const filter *f)
{
    if (!f)
        return 0;
    return sizeof *f + f->n_nodes * sizeof(fnode) + f->n_kids * sizeof(uint32_t) + f->n_segs * sizeof(fseg) +
           f->n_strs * sizeof(fseg) + f->n_nums * sizeof(num) + f->n_pool;
}

int filter_matches_all(const filter *f)
{
    const fnode *r = &f->nodes[f->root];
    return r->kind == F_BOOL && r->n_must + r->n_should + r->n_not == 0;
}

/* ---- matching (no parsing, no allocation) -------------------------------- */

static int in_has_num(const filter *f, const fnode *c, const num *v)
{
    const num *a = &f->nums[c->num_first];
    size_t lo = 0, hi = c->n_num;
    while (lo < hi) { /* first element with d >= v->d */
        size_t mid = lo + (hi - lo) / 2;
        if (a[mid].d < v->d)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (size_t i = lo; i < c->n_num && a[i].d == v->d; i++)
        if (num_eq(&a[i], v))
            return 1;
    return 0;
}

static int in_has_str(const filter *f, const fnode *c, const char *s, size_t n)
{
    const fseg *a = &f->strs[c->str_first];
    size_t lo = 0, hi = c->n_str;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int r = bytes_cmp(f->pool + a[mid].off, a[mid].len, s, n);
        if (r == 0)
            return 1;
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

/* The num form of a T_INT / T_REAL node. */
static num node_num(const pnode *v)
{
    num x;
    x.is_int = v->type == T_INT;
    x.i = x.is_int ? v->u.i : 0;
    x.d = x.is_int ? (double)v->u.i : v->u.d;
    return x;
}

/* Does the scalar node v satisfy condition c? Objects never do; arrays are
 * expanded by the caller. */
static int leaf_test(const filter *f, const fnode *c, const payload *p, const pnode *v)
{
    if (c->kind == F_IN) {
        switch (v->type) {
        case T_STR:
            return c->n_str && in_has_str(f, c, p->pool + v->u.first, v->n);
        case T_INT:
        case T_REAL: {
            num x = node_num(v);
            return c->n_num && in_has_num(f, c, &x);
        }
        case T_TRUE:
            return c->has_true;
        case T_FALSE:
            return c->has_false;
        case T_NULL:
            return c->has_null;
        default:
            return 0;
        }
    }
    if (v->type != T_INT && v->type != T_REAL)
        return 0;
    num x = node_num(v);
    if (c->has_lo) {
        int r = num_cmp(&x, &c->lo);
        if (r < 0 || (r == 0 && !c->lo_incl))
            return 0;
    }
    if (c->has_hi) {
        int r = num_cmp(&x, &c->hi);
        if (r > 0 || (r == 0 && !c->hi_incl))
            return 0;
    }
    return 1;
}

/* 1 if some value reached from node ni by the remaining path segments
 * satisfies c. Arrays are transparent at every step: each element is tried
 * (so "tags" matches any element of a tags array, and "a.b" walks into every
 * object of an array a). Depth is bounded by the payload's depth. */
static int walk(const filter *f, const fnode *c, const payload *p, uint32_t ni, const fseg *seg, uint32_t n_seg)
{
    const pnode *nd = &p->nodes[ni];
    if (nd->type == T_ARR) {
        for (uint32_t i = 0; i < nd->n; i++)
            if (walk(f, c, p, nd->u.first + i, seg, n_seg))
                return 1;
        return 0;
    }
    if (n_seg == 0)
        return leaf_test(f, c, p, nd);
    if (nd->type != T_OBJ)
        return 0;
    const pmember *m = obj_find(p, nd, f->pool + seg->off, seg->len);
    return m && walk(f, c, p, m->node, seg + 1, n_seg - 1);
}

static int cond_match(const filter *f, const fnode *c, const payload *p)
{
    if (!p)
        return 0;
    if (walk(f, c, p, 0, &f->segs[c->seg_first], c->n_seg))
        return 1;
    /* A dotted key is also looked up literally at the top level, so that a
     * metadata key containing dots ({"a.b": 1}) stays matchable. */
    if (c->n_seg > 1) {
        const pmember *m = obj_find(p, &p->nodes[0], f->pool + c->key_off, c->key_len);
        if (m && walk(f, c, p, m->node, NULL, 0))
            return 1;
    }
    return 0;
}

static int node_match(const filter *f, uint32_t idx, const payload *p)
{
    const fnode *nd = &f->nodes[idx];
    if (nd->kind != F_BOOL)
        return cond_match(f, nd, p);
    if (nd->n_must + nd->n_should + nd->n_not == 0)
        return 1;
    const uint32_t *k = &f->kids[nd->first];
    for (uint32_t i = 0; i < nd->n_must; i++)
        if (!node_match(f, k[i], p))
            return 0;
    k += nd->n_must;
    if (nd->n_should) {
        uint32_t i;
        for (i = 0; i < nd->n_should; i++)
            if (node_match(f, k[i], p))
                break;
        if (i == nd->n_should)
            return 0;
    }
    k += nd->n_should;
    for (uint32_t i = 0; i < nd->n_not; i++)
        if (node_match(f, k[i], p))
            return 0;
    return 1;
}

int filter_match(const filter *f, const payload *p)
{
    return node_match(f, f->root, p);
}
