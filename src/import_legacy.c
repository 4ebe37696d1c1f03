/*
 * import_legacy.c - recover the vectors.bin of the original d-vecDB.
 *
 * The original wrote each vector as the bincode encoding (little endian,
 * fixed-width integers, no framing) of {id: Uuid, data: Vec<f32>,
 * metadata: Option<HashMap<String, serde_json::Value>>}, appended from
 * offset 0 into a file pre-sized with zeros (1 MiB, then doubled):
 *
 *   off        size   field
 *   0          8      u64 16            (length of the UUID byte string)
 *   8          16     UUID bytes        (canonical order)
 *   24         8      u64 n             (= the dimension)
 *   32         4n     n x f32
 *   32+4n      1      u8 option tag     (0: no metadata, 1: metadata follows)
 *   33+4n      8      u64 entry count   (tag 1 only)
 *   ...               per entry: key (u64 len + UTF-8), value
 *
 * Values carry NO type tag (serde_json::Value serialized by bincode): string
 * = u64 len + UTF-8, number = 8 bytes (u64, i64 or f64: the bytes do not
 * say which), bool = 1 byte, null = nothing, array = u64 len + elements,
 * object = u64 len + (key, value) pairs. There is no record length: the only
 * way to find where a record ends is to parse its metadata, and the parse
 * can be ambiguous. The rules (docs/recovery.md):
 *   1. Parsing: every way of reading the map that consumes exactly up to a
 *      record boundary (the next record header "u64 16 ... u64 dim", the
 *      zero tail, or EOF) is enumerated (at most LG_MAX_PARSES, within a
 *      step budget). Strings must be valid UTF-8 without control characters
 *      other than \t \n \r; a string, array or object of length 0 is not
 *      considered (its 8 zero bytes are read as a number, see 3); an array
 *      of nulls only is not considered (it would shadow every small integer).
 *   2. One parse: decoded. Several: the parses whose top-level keys all occur
 *      in records that parse one way only (the collection's key vocabulary)
 *      are kept; if exactly one is left it is decoded; otherwise the entries
 *      all parses agree on are decoded and the rest of the map is kept as hex
 *      under "_legacy_raw" ("<key>" when the key is agreed, else "_rest").
 *   3. Numbers: 8 zero bytes are 0, 0.0, "", [] or {}: kept raw. As i64 with
 *      |i| < 2^61: an integer (its f64 reading would be below 2^-511). Else
 *      a normal f64 with 1e-12 <= |x| <= 1e15: a float. Else (NaN/Inf
 *      readings aside, which are integers) kept raw. Raw values go under
 *      "_legacy_raw" as hex, by key.
 * Records are never guessed past: a header that does not match, a tag that
 * is not 0/1, or metadata that does not parse to a boundary marks the record
 * damaged; it is skipped and reading re-synchronises on the next plausible
 * header (u64 16, then u64 dim == the expected dimension). Records whose
 * vector holds NaN/Inf are skipped too (the engine cannot store them).
 * Records with several parses are resolved after the pass (their offsets are
 * remembered), once the key vocabulary is complete.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "err.h"
#include "recovery_int.h"

#define LG_UUID_LEN 16
#define LG_HDR 32
#define LG_MAX_PARSES 8
#define LG_MAX_DEPTH 8
#define LG_STEP_BUDGET 200000
#define LG_META_SPAN (1u << 20) /* longest metadata map considered */
#define LG_KEY_MAX 1024
#define LG_STR_MAX DV_METADATA_MAX
#define LG_VOCAB_CAP 4096
#define LG_RAW_MAX (24 * 1024)  /* hex kept per raw value: fits DV_METADATA_MAX */

static uint64_t rd64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

int legacy_sniff(const uint8_t *p, size_t n)
{
    if (n < LG_HDR)
        return 0;
    uint64_t d = rd64(p + 24);
    return rd64(p) == LG_UUID_LEN && d >= 1 && d <= DV_DIM_MAX;
}

/* ---- tokens of one parse ---------------------------------------------------- */

enum { T_NULL, T_BOOL, T_NUM, T_STR, T_KEY, T_ARR, T_OBJ };

typedef struct tok {
    uint8_t type;
    uint8_t bval;  /* BOOL: the value */
    uint64_t pos;  /* file offset of the value's first byte (its length prefix included) */
    uint64_t n;    /* STR/KEY: text bytes (text at pos + 8); ARR/OBJ: element/entry count */
} tok;

typedef struct parse {
    tok *t;
    size_t n;
    uint64_t end; /* file offset after the map */
} parse;

typedef struct frame {
    uint8_t kind;  /* T_OBJ (map entries) or T_ARR */
    uint8_t expect_value;
    uint8_t nonnull;
    uint64_t remaining;
} frame;

typedef struct lg {
    imp_reader *r;
    uint32_t dim;
    uint64_t zero_start; /* first byte of the all-zero tail (file size if none) */
    /* the metadata view of the record being parsed */
    const uint8_t *v;
    uint64_t v_off, v_len;
    /* DFS state */
    tok *stack;
    size_t n_stack, cap_stack;
    parse parses[LG_MAX_PARSES];
    size_t n_parses;
    uint64_t steps;
    int overflow;
    /* vocabulary: top-level keys of records with exactly one parse */
    uint64_t vocab[LG_VOCAB_CAP * 2];
    size_t n_vocab;
    /* records with several parses, resolved at the end */
    uint64_t *deferred;
    size_t n_deferred, cap_deferred;
    imp_sink *sink;
    legacy_stats *st;
    float *vec;
} lg;

/* ---- small checks ------------------------------------------------------ */

static int header_at(const lg *g, const uint8_t *p)
{
    return rd64(p) == LG_UUID_LEN && rd64(p + 24) == g->dim;
}

/* A record may end at pos: EOF, inside the zero tail, or where the next
 * record header starts. */
static int boundary(const lg *g, uint64_t pos)
{
    if (pos >= g->zero_start || pos == g->r->size)
        return 1;
    if (pos < g->v_off || pos + LG_HDR > g->v_off + g->v_len)
        return 0;
    return header_at(g, g->v + (pos - g->v_off));
}

/* Valid UTF-8 without control characters other than \t \n \r. */
static int text_ok(const uint8_t *s, uint64_t n)
{
    for (uint64_t i = 0; i < n;) {
        unsigned c = s[i];
        if (c < 0x80) {
            if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f)
                return 0;
            i++;
            continue;
        }
        uint64_t len;
        unsigned cp;
        if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (i + len > n)
            return 0;
        for (uint64_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += len;
    }
    return 1;
}

/* Length-prefixed text at pos within the view, or -1. */
static int64_t text_at(const lg *g, uint64_t pos, uint64_t max_len)
{
    uint64_t rel = pos - g->v_off;
    if (rel + 8 > g->v_len)
        return -1;
    uint64_t L = rd64(g->v + rel);
    if (L == 0 || L > max_len || rel + 8 + L > g->v_len || !text_ok(g->v + rel + 8, L))
        return -1;
    return (int64_t)L;
}

/* ---- enumeration of parses ---------------------------------------------- */

static int push_tok(lg *g, tok t)
{
    if (g->n_stack == g->cap_stack) {
        size_t nc = g->cap_stack ? g->cap_stack * 2 : 256;
        tok *nt = realloc(g->stack, nc * sizeof *nt);
        if (!nt)
            return -1;
        g->stack = nt;
        g->cap_stack = nc;
    }
    g->stack[g->n_stack++] = t;
    return 0;
}

static void record_parse(lg *g, uint64_t end)
{
    if (g->n_parses == LG_MAX_PARSES) {
        g->overflow = 1;
        return;
    }
    parse *p = &g->parses[g->n_parses];
    p->t = malloc((g->n_stack ? g->n_stack : 1) * sizeof *p->t);
    if (!p->t) {
        g->overflow = 1;
        return;
    }
    memcpy(p->t, g->stack, g->n_stack * sizeof *p->t);
    p->n = g->n_stack;
    p->end = end;
    g->n_parses++;
}

/* Depth-first over every reading of the map from pos with the open
 * containers in fr[0..depth) (copied per call: alternatives never see each
 * other's state). */
static void dfs(lg *g, uint64_t pos, const frame *in, int depth)
{
    if (++g->steps > LG_STEP_BUDGET) {
        g->overflow = 1;
        return;
    }
    if (g->overflow || pos > g->v_off + g->v_len)
        return;
    frame fr[LG_MAX_DEPTH + 1];
    memcpy(fr, in, (size_t)depth * sizeof *fr);
    while (depth > 0 && fr[depth - 1].remaining == 0 && !fr[depth - 1].expect_value) {
        if (fr[depth - 1].kind == T_ARR && !fr[depth - 1].nonnull)
            return; /* arrays of nulls only are not considered (rule 1) */
        depth--;
    }
    if (depth == 0) {
        if (boundary(g, pos))
            record_parse(g, pos);
        return;
    }
    frame *f = &fr[depth - 1];
    size_t mark = g->n_stack;
    if (f->kind == T_OBJ && !f->expect_value) {
        int64_t L = text_at(g, pos, LG_KEY_MAX);
        if (L < 0 || push_tok(g, (tok){T_KEY, 0, pos, (uint64_t)L}) != 0)
            return;
        f->expect_value = 1;
        dfs(g, pos + 8 + (uint64_t)L, fr, depth);
        g->n_stack = mark;
        return;
    }
    if (f->kind == T_OBJ)
        f->expect_value = 0;
    f->remaining--;
    uint64_t rel = pos - g->v_off, left = g->v_len - rel;
    /* null: no bytes */
    if (push_tok(g, (tok){T_NULL, 0, pos, 0}) == 0)
        dfs(g, pos, fr, depth);
    g->n_stack = mark;
    f->nonnull = 1; /* every alternative below is a non-null child */
    if (left >= 1 && g->v[rel] <= 1 && push_tok(g, (tok){T_BOOL, g->v[rel], pos, 0}) == 0)
        dfs(g, pos + 1, fr, depth);
    g->n_stack = mark;
    if (left >= 8 && push_tok(g, (tok){T_NUM, 0, pos, 0}) == 0)
        dfs(g, pos + 8, fr, depth);
    g->n_stack = mark;
    int64_t L = text_at(g, pos, LG_STR_MAX);
    if (L > 0 && push_tok(g, (tok){T_STR, 0, pos, (uint64_t)L}) == 0)
        dfs(g, pos + 8 + (uint64_t)L, fr, depth);
    g->n_stack = mark;
    if (left >= 8 && depth < LG_MAX_DEPTH) {
        uint64_t c = rd64(g->v + rel);
        /* each element takes >= 1 byte except nulls; each entry >= 9 bytes */
        if (c >= 1 && c <= 65536 && push_tok(g, (tok){T_ARR, 0, pos, c}) == 0) {
            fr[depth] = (frame){T_ARR, 0, 0, c};
            dfs(g, pos + 8, fr, depth + 1);
        }
        g->n_stack = mark;
        if (c >= 1 && c <= (left - 8) / 9 && push_tok(g, (tok){T_OBJ, 0, pos, c}) == 0) {
            fr[depth] = (frame){T_OBJ, 0, 0, c};
            dfs(g, pos + 8, fr, depth + 1);
        }
        g->n_stack = mark;
    }
}

static void parses_clear(lg *g)
{
    for (size_t i = 0; i < g->n_parses; i++)
        free(g->parses[i].t);
    g->n_parses = 0;
    g->n_stack = 0;
    g->steps = 0;
    g->overflow = 0;
}

/* Enumerate the readings of the map whose count is at meta_off. */
static void parse_map(lg *g, uint64_t meta_off)
{
    parses_clear(g);
    uint64_t span = g->r->size - meta_off;
    if (span > LG_META_SPAN + LG_HDR)
        span = LG_META_SPAN + LG_HDR;
    g->v = imp_get(g->r, meta_off, (size_t)span);
    g->v_off = meta_off;
    g->v_len = g->v ? span : 0;
    if (!g->v || span < 8)
        return;
    uint64_t count = rd64(g->v);
    if (count > 65536) /* more entries than a metadata map can hold */
        return;
    if (count == 0) {
        if (boundary(g, meta_off + 8))
            record_parse(g, meta_off + 8);
        return;
    }
    frame root = {T_OBJ, 0, 0, count};
    dfs(g, meta_off + 8, &root, 1);
}

/* ---- vocabulary --------------------------------------------------------- */

static uint64_t key_hash(const uint8_t *s, uint64_t n)
{
    uint64_t h = XXH3_64bits(s, (size_t)n);
    return h ? h : 1;
}

static int vocab_has(const lg *g, uint64_t h)
{
    for (size_t i = h % (LG_VOCAB_CAP * 2);; i = (i + 1) % (LG_VOCAB_CAP * 2)) {
        if (g->vocab[i] == 0)
            return 0;
        if (g->vocab[i] == h)
            return 1;
    }
}

static void vocab_add(lg *g, uint64_t h)
{
    if (g->n_vocab >= LG_VOCAB_CAP || vocab_has(g, h))
        return;
    size_t i = h % (LG_VOCAB_CAP * 2);
    while (g->vocab[i])
        i = (i + 1) % (LG_VOCAB_CAP * 2);
    g->vocab[i] = h;
    g->n_vocab++;
}

/* Index of the token after the subtree starting at t[i]. */
static size_t skip_subtree(const tok *t, size_t n, size_t i)
{
    uint8_t ty = t[i].type;
    uint64_t kids = (ty == T_ARR) ? t[i].n : (ty == T_OBJ) ? 2 * t[i].n : 0;
    i++;
    while (kids-- > 0 && i < n)
        i = skip_subtree(t, n, i);
    return i;
}

/* Call fn on each top-level key token of a parse. */
static void vocab_learn(lg *g, const parse *p)
{
    for (size_t i = 0; i < p->n;) {
        if (p->t[i].type != T_KEY)
            return;
        vocab_add(g, key_hash(g->v + (p->t[i].pos + 8 - g->v_off), p->t[i].n));
        i = skip_subtree(p->t, p->n, i + 1);
    }
}

static int parse_in_vocab(const lg *g, const parse *p)
{
    for (size_t i = 0; i < p->n;) {
        if (p->t[i].type != T_KEY)
            return 0;
        if (!vocab_has(g, key_hash(g->v + (p->t[i].pos + 8 - g->v_off), p->t[i].n)))
            return 0;
        i = skip_subtree(p->t, p->n, i + 1);
    }
    return 1;
}

/* ---- decoding ------------------------------------------------------------ */

static char *hex_of(const uint8_t *p, uint64_t n)
{
    if (n > LG_RAW_MAX / 2)
        n = LG_RAW_MAX / 2; /* XXX: very long raw values are cut (the limit is the engine's metadata size) */
    char *s = malloc(2 * (size_t)n + 1);
    if (!s)
        return NULL;
    for (uint64_t i = 0; i < n; i++)
        snprintf(s + 2 * i, 3, "%02x", p[i]);
    s[2 * n] = '\0';
    return s;
}

/* Rule 3. 1 = decoded into *out, 0 = keep raw. */
static int decode_number(const uint8_t *b, json_t **out)
{
    uint64_t u = rd64(b);
    if (u == 0)
        return 0;
    int64_t i;
    memcpy(&i, &u, 8);
    uint64_t mag = i < 0 ? (uint64_t)0 - u : u;
    if (mag < ((uint64_t)1 << 61)) {
        *out = json_integer((json_int_t)i);
        return *out != NULL;
    }
    unsigned exp = (unsigned)(u >> 52) & 0x7FF;
    if (exp == 0x7FF) { /* no JSON float reads as NaN/Inf: it is an integer */
        *out = json_integer((json_int_t)i);
        return *out != NULL;
    }
    double x;
    memcpy(&x, &u, 8);
    if (exp != 0 && fabs(x) >= 1e-12 && fabs(x) <= 1e15) {
        *out = json_real(x);
        return *out != NULL;
    }
    return 0;
}

/* Decode the subtree at t[*i] into a JSON value; 0 if it holds a value that
 * must stay raw (the whole top-level value then goes raw). */
static int decode_value(const lg *g, const tok *t, size_t n, size_t *i, json_t **out)
{
    const tok *k = &t[*i];
    (*i)++;
    switch (k->type) {
    case T_NULL:
        *out = json_null();
        return 1;
    case T_BOOL:
        *out = json_boolean(k->bval);
        return 1;
    case T_NUM:
        return decode_number(g->v + (k->pos - g->v_off), out);
    case T_STR:
        *out = json_stringn((const char *)g->v + (k->pos + 8 - g->v_off), (size_t)k->n);
        return *out != NULL;
    case T_ARR: {
        json_t *a = json_array();
        for (uint64_t c = 0; c < k->n && a; c++) {
            json_t *e = NULL;
            if (*i >= n || !decode_value(g, t, n, i, &e) || json_array_append_new(a, e) != 0) {
                json_decref(a);
                return 0;
            }
        }
        *out = a;
        return a != NULL;
    }
    case T_OBJ: {
        json_t *o = json_object();
        for (uint64_t c = 0; c < k->n && o; c++) {
            json_t *e = NULL;
            if (*i + 1 >= n || t[*i].type != T_KEY) {
                json_decref(o);
                return 0;
            }
            const tok *key = &t[(*i)++];
            char *ks = strndup((const char *)g->v + (key->pos + 8 - g->v_off), (size_t)key->n);
            if (!ks || !decode_value(g, t, n, i, &e) || json_object_set_new(o, ks, e) != 0) {
                free(ks);
                json_decref(o);
                return 0;
            }
            free(ks);
        }
        *out = o;
        return o != NULL;
    }
    }
    return 0;
}

/* Two subtrees (key + value spans) identical? */
static int same_tokens(const tok *a, size_t na, const tok *b, size_t nb)
{
    if (na != nb)
        return 0;
    for (size_t i = 0; i < na; i++)
        if (a[i].type != b[i].type || a[i].bval != b[i].bval || a[i].pos != b[i].pos || a[i].n != b[i].n)
            return 0;
    return 1;
}

/* Set raw[name] = hex of [from, to). */
static void raw_put(const lg *g, json_t *raw, const char *name, uint64_t from, uint64_t to)
{
    if (to < from || to > g->v_off + g->v_len)
        to = from;
    char *h = hex_of(g->v + (from - g->v_off), to - from);
    if (h) {
        json_object_set_new(raw, name, json_string(h));
        free(h);
    }
}

/* JSON text of the metadata from the chosen parses (all of them when
 * ambiguous: entries they agree on are decoded). */
static char *build_metadata(const lg *g, const parse *ps, size_t n_ps, uint64_t meta_off, uint64_t end,
                            int *ambiguous)
{
    json_t *o = json_object(), *raw = json_object();
    const parse *p0 = &ps[0];
    size_t i = 0;
    while (i < p0->n && o && raw) {
        size_t next = skip_subtree(p0->t, p0->n, i + 1);
        int agreed = 1;
        for (size_t k = 1; k < n_ps && agreed; k++)
            agreed = ps[k].n >= next && same_tokens(p0->t + i, next - i, ps[k].t + i, next - i);
        const tok *key = &p0->t[i];
        char *ks = strndup((const char *)g->v + (key->pos + 8 - g->v_off), (size_t)key->n);
        if (!ks)
            break;
        if (!agreed) {
            /* The first entry the readings disagree on: keep the rest raw. */
            int key_agreed = 1;
            for (size_t k = 1; k < n_ps && key_agreed; k++)
                key_agreed = ps[k].n > i && same_tokens(p0->t + i, 1, ps[k].t + i, 1);
            if (key_agreed)
                raw_put(g, raw, ks, key->pos + 8 + key->n, end);
            else
                raw_put(g, raw, "_rest", key->pos, end);
            free(ks);
            *ambiguous = 1;
            break;
        }
        size_t vi = i + 1;
        json_t *val = NULL;
        if (decode_value(g, p0->t, p0->n, &vi, &val)) {
            json_object_set_new(o, ks, val);
        } else {
            uint64_t vstart = p0->t[i + 1].pos;
            uint64_t vend = next < p0->n ? p0->t[next].pos : p0->end;
            raw_put(g, raw, ks, vstart, vend);
            *ambiguous = 1;
        }
        free(ks);
        i = next;
    }
    (void)meta_off;
    if (o && raw && json_object_size(raw) > 0)
        json_object_set(o, "_legacy_raw", raw);
    char *text = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    json_decref(raw);
    return text;
}

/* ---- records -------------------------------------------------------------- */

static void uuid_string(const uint8_t *u, char out[37])
{
    static const char hx[] = "0123456789abcdef";
    size_t k = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[k++] = '-';
        out[k++] = hx[u[i] >> 4];
        out[k++] = hx[u[i] & 15];
    }
    out[k] = '\0';
}

/* Read the record at off. Returns 1 and *end on an intact record (emitted,
 * deferred or skipped for NaN), 0 if damaged. final: resolve ambiguity now
 * (vocabulary complete) instead of deferring. */
static int do_record(lg *g, uint64_t off, int final, uint64_t *end, dv_code *rc, dv_err *err)
{
    uint64_t vbytes = 4 * (uint64_t)g->dim;
    const uint8_t *h = imp_get(g->r, off, (size_t)(LG_HDR + vbytes + 1));
    if (!h || !header_at(g, h))
        return 0;
    uint8_t tag = h[LG_HDR + vbytes];
    if (tag > 1)
        return 0;
    char id[37];
    uuid_string(h + 8, id);
    memcpy(g->vec, h + LG_HDR, (size_t)vbytes); /* XXX: little-endian host assumed (the file is LE) */
    int finite = 1;
    for (uint32_t i = 0; i < g->dim && finite; i++)
        finite = isfinite(g->vec[i]);
    uint64_t meta_off = off + LG_HDR + vbytes + 1;
    g->v = NULL; /* the previous record's view is gone with the imp_get above */
    g->v_len = 0;
    if (tag == 0) {
        const uint8_t *nx = meta_off + LG_HDR <= g->r->size ? imp_get(g->r, meta_off, LG_HDR) : NULL;
        if (!(meta_off >= g->zero_start || meta_off == g->r->size || (nx && header_at(g, nx))))
            return 0;
        *end = meta_off;
        if (!finite)
            g->st->skipped++;
        else
            *rc = imp_sink_add(g->sink, id, g->vec, NULL, 0, err);
        return 1;
    }
    parse_map(g, meta_off);
    if (g->n_parses == 0)
        return 0; /* metadata that never reaches a boundary: damaged */
    const parse *use = g->parses;
    size_t n_use = g->n_parses;
    parse filtered[LG_MAX_PARSES];
    int ambiguous = g->n_parses > 1 || g->overflow;
    if (!ambiguous) {
        vocab_learn(g, &g->parses[0]);
    } else if (!final) {
        /* resolved after the pass, with the whole vocabulary */
        if (g->n_deferred == g->cap_deferred) {
            size_t nc = g->cap_deferred ? g->cap_deferred * 2 : 64;
            uint64_t *nd = realloc(g->deferred, nc * sizeof *nd);
            if (!nd) {
                *rc = dv_errorf(err, DV_ENOMEM, "import: out of memory");
                return 1;
            }
            g->deferred = nd;
            g->cap_deferred = nc;
        }
        g->deferred[g->n_deferred++] = off;
        /* every reading must end at the same boundary to continue from it;
         * otherwise take the nearest header (the others run into it). */
        uint64_t e = g->parses[0].end;
        for (size_t i = 1; i < g->n_parses; i++)
            if (g->parses[i].end < e)
                e = g->parses[i].end;
        *end = e;
        return 1;
    } else {
        size_t nf = 0;
        for (size_t i = 0; i < g->n_parses; i++)
            if (parse_in_vocab(g, &g->parses[i]))
                filtered[nf++] = g->parses[i];
        if (nf == 1 && !g->overflow) {
            use = filtered;
            n_use = 1;
            ambiguous = 0;
        } else if (nf > 1) {
            use = filtered;
            n_use = nf;
        }
    }
    uint64_t e = use[0].end;
    for (size_t i = 1; i < n_use; i++)
        if (use[i].end < e)
            e = use[i].end;
    *end = e;
    int amb = ambiguous && n_use > 1;
    char *meta = build_metadata(g, use, n_use, meta_off, e, &amb);
    if (!meta) {
        *rc = dv_errorf(err, DV_ENOMEM, "import: out of memory decoding metadata");
        return 1;
    }
    size_t ml = strlen(meta);
    if (ml > DV_METADATA_MAX) {
        /* Intact but larger than the engine accepts: keep the vector. */
        free(meta);
        char note[128];
        snprintf(note, sizeof note, "{\"_legacy_note\":\"metadata of %zu bytes exceeds the %d-byte limit\"}", ml,
                 DV_METADATA_MAX);
        meta = strdup(note);
        amb = 1;
        if (!meta) {
            *rc = dv_errorf(err, DV_ENOMEM, "import: out of memory");
            return 1;
        }
        ml = strlen(meta);
    }
    if (amb)
        g->st->meta_ambiguous++;
    if (!finite)
        g->st->skipped++;
    else
        *rc = imp_sink_add(g->sink, id, g->vec, meta, ml, err);
    free(meta);
    return 1;
}

/* First offset > off where a header starts, or zero_start. */
static uint64_t resync(lg *g, uint64_t off)
{
    uint64_t p = off + 1;
    while (p < g->zero_start) {
        uint64_t left = g->r->size - p;
        size_t take = left > (4u << 20) ? (4u << 20) : (size_t)left;
        const uint8_t *b = imp_get(g->r, p, take);
        if (!b || take < LG_HDR)
            break;
        for (size_t i = 0; i + LG_HDR <= take; i++)
            if (b[i] == LG_UUID_LEN && header_at(g, b + i))
                return p + i;
        p += take - LG_HDR + 1;
    }
    return g->zero_start;
}

/* Position after the last nonzero byte (scanning back from EOF). */
static uint64_t find_zero_start(imp_reader *r)
{
    uint64_t end = r->size;
    while (end > 0) {
        size_t take = end > (4u << 20) ? (4u << 20) : (size_t)end;
        const uint8_t *b = imp_get(r, end - take, take);
        if (!b)
            return r->size;
        for (size_t i = take; i > 0; i--)
            if (b[i - 1] != 0)
                return end - take + i;
        end -= take;
    }
    return 0;
}

dv_code legacy_import(imp_reader *r, uint32_t *dim, imp_sink *sink, legacy_stats *st, dv_err *err)
{
    lg *g = calloc(1, sizeof *g);
    if (!g)
        return dv_errorf(err, DV_ENOMEM, "import: out of memory");
    dv_code rc = DV_OK;
    g->r = r;
    g->sink = sink;
    g->st = st;
    g->zero_start = find_zero_start(r);
    if (*dim == 0) {
        const uint8_t *p = imp_get(r, 0, LG_HDR);
        if (!p || !legacy_sniff(p, LG_HDR)) {
            rc = dv_errorf(err, DV_EINVAL, "import: %s: first record damaged; pass the dimension", r->path);
            goto out;
        }
        *dim = (uint32_t)rd64(p + 24);
    }
    g->dim = *dim;
    g->vec = malloc((size_t)g->dim * sizeof(float));
    if (!g->vec) {
        rc = dv_errorf(err, DV_ENOMEM, "import: out of memory");
        goto out;
    }
    uint64_t off = 0, last_progress = 0;
    while (off < g->zero_start && rc == DV_OK) {
        uint64_t end = 0;
        if (do_record(g, off, 0, &end, &rc, err) && end > off) {
            off = end;
        } else {
            st->skipped++;
            off = resync(g, off);
        }
        if (r->io_failed) {
            rc = dv_errorf(err, dv_code_from_errno(r->io_errno), "import: read %s: %s", r->path,
                           strerror(r->io_errno));
            break;
        }
        if (rc == DV_OK && off - last_progress >= (8u << 20)) {
            last_progress = off;
            rc = imp_sink_progress(sink, "read", off, g->zero_start, err);
        }
    }
    st->bytes_scanned = off > r->size ? r->size : off;
    for (size_t i = 0; i < g->n_deferred && rc == DV_OK; i++) {
        uint64_t end = 0;
        if (!do_record(g, g->deferred[i], 1, &end, &rc, err))
            st->skipped++; /* cannot happen: it parsed in the first pass */
    }
    if (rc == DV_OK)
        rc = imp_sink_progress(sink, "read", g->zero_start, g->zero_start, err);
out:
    parses_clear(g);
    free(g->stack);
    free(g->deferred);
    free(g->vec);
    free(g);
    return rc;
}
