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
#include "utf8.h"

#define LG_UUID_LEN 16
#define LG_HDR 32
#define LG_MAX_PARSES 32
#define LG_MAX_DEPTH 8
#define LG_STEP_BUDGET 1024     /* steps per nested value: real tag lists need tens */
#define LG_META_SPAN (1u << 20) /* longest metadata map considered */
#define LG_KEY_MAX 1024
#define LG_STR_MAX DV_METADATA_MAX
#define LG_VOCAB_CAP 4096
#define LG_RAW_MAX (24 * 1024) /* hex kept per raw value: fits DV_METADATA_MAX */

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
    uint8_t bval; /* BOOL: the value */
    uint64_t pos; /* file offset of the value's first byte (its length prefix included) */
    uint64_t n;   /* STR/KEY: text bytes (text at pos + 8); ARR/OBJ: element/entry count */
} tok;

typedef struct parse {
    tok *t;
    size_t n;
    uint64_t end; /* file offset after the map */
} parse;

typedef struct frame {
    uint8_t kind; /* T_OBJ (map entries) or T_ARR */
    uint8_t expect_value;
    uint8_t nonnull; /* OBJ: a non-null value seen; ARR: 1 + the kind of its elements */
    uint64_t remaining;
} frame;

typedef struct lg {
    imp_reader *r;
    uint32_t dim;
    uint64_t zero_start; /* first byte of the all-zero tail (file size if none) */
    /* the metadata view of the record being parsed */
    const uint8_t *v;
    uint64_t v_off, v_len;
    /* where this map must end: exactly at want_end (the next record's
     * header), or anywhere in the zero tail (tail_mode); lim = the furthest
     * byte a reading may use */
    uint64_t want_end, lim;
    int tail_mode, weak_mode;
    uint64_t first_end; /* the first end parse_map tried */
    size_t max_parses;  /* stop enumerating after this many */
    int prune_vocab;    /* top-level keys must be in the vocabulary */
    /* readings of one nested value (dfs -> nest_add) */
    uint64_t *nest_end;
    size_t *nest_off, *nest_n;
    size_t n_nest, cap_nest;
    tok *npool;
    size_t n_npool, cap_npool;
    /* the graph of top-level states (solve) */
    struct lst *sts;
    size_t n_sts, cap_sts;
    uint32_t *sh; /* open-addressing index of sts: state + 1, 0 = empty */
    size_t sh_cap;
    struct edge *eds;
    size_t n_eds, cap_eds;
    tok *epool;
    size_t n_epool, cap_epool;
    /* DFS state */
    tok *stack;
    size_t n_stack, cap_stack;
    struct cp *cps;
    size_t n_cps, cap_cps;
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
    if (g->weak_mode) /* where a damaged record may start: u64 16 */
        return pos >= g->v_off && pos + 8 <= g->v_off + g->v_len && rd64(g->v + (pos - g->v_off)) == LG_UUID_LEN;
    if (g->tail_mode)
        return pos >= g->zero_start && pos <= g->r->size;
    return pos == g->want_end;
}

/* Valid UTF-8 without control characters other than \t \n \r. */
static int text_ok(const uint8_t *s, uint64_t n)
{
    for (uint64_t i = 0; i < n;) {
        unsigned c = s[i];
        if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f)
            return 0;
        size_t len = utf8_char_len(s + i, (size_t)(n - i));
        if (!len)
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
    if (L == 0 || L > max_len || rel + 8 + L > g->lim - g->v_off || !text_ok(g->v + rel + 8, L))
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
    if (g->n_parses >= g->max_parses) {
        g->overflow = 1;
        return;
    }
    parse *p = &g->parses[g->n_parses];
    p->t = malloc((g->n_stack ? g->n_stack : 1) * sizeof *p->t);
    if (!p->t) {
        g->overflow = 1;
        return;
    }
    if (g->n_stack) /* memcpy from a NULL stack is undefined even for 0 bytes */
        memcpy(p->t, g->stack, g->n_stack * sizeof *p->t);
    p->n = g->n_stack;
    p->end = end;
    g->n_parses++;
}

/* A choice point of the depth-first search: where we are, the open
 * containers, how many tokens the path holds, and which reading of the
 * value at pos to try next (0: not expanded yet). */
typedef struct cp {
    uint64_t pos;
    frame fr[LG_MAX_DEPTH + 1];
    int depth;
    size_t n_tok;
    int alt;
} cp;

static cp *cp_push(lg *g, const cp *from)
{
    if (g->n_cps == g->cap_cps) {
        size_t nc = g->cap_cps ? g->cap_cps * 2 : 64;
        cp *n = realloc(g->cps, nc * sizeof *n);
        if (!n) {
            g->overflow = 1;
            return NULL;
        }
        g->cps = n;
        g->cap_cps = nc;
    }
    cp *c = &g->cps[g->n_cps++];
    *c = *from;
    c->alt = 0;
    return c;
}

/* Iterative depth-first over every reading of the map (an explicit stack:
 * a hostile map must not be able to exhaust the thread's stack). Each
 * value has up to six readings (rule 1); keys have one. */
static void nest_add(lg *g, uint64_t end);

/* Every reading of one array or object value: ctok is its token (count at
 * ctok.pos, elements from ctok.pos + 8); each complete reading goes to
 * nest_add with its end. */
static void dfs(lg *g, tok ctok)
{
    cp root;
    memset(&root, 0, sizeof root);
    root.pos = ctok.pos + 8;
    root.fr[0] = (frame){ctok.type, 0, 0, ctok.n};
    root.depth = 1;
    g->n_stack = 0;
    if (push_tok(g, ctok) != 0) {
        g->overflow = 1;
        return;
    }
    root.n_tok = 1;
    g->n_cps = 0;
    if (!cp_push(g, &root))
        return;
    while (g->n_cps > 0 && !g->overflow) {
        if (++g->steps > LG_STEP_BUDGET) {
            g->overflow = 1;
            break;
        }
        cp *s = &g->cps[g->n_cps - 1];
        g->n_stack = s->n_tok;
        if (s->alt == 0) {
            /* close finished containers */
            int bad = 0;
            while (s->depth > 0 && s->fr[s->depth - 1].remaining == 0 && !s->fr[s->depth - 1].expect_value) {
                if (s->fr[s->depth - 1].kind == T_ARR && !s->fr[s->depth - 1].nonnull) {
                    bad = 1; /* arrays of nulls only are not considered (rule 1) */
                    break;
                }
                s->depth--;
            }
            /* what the open containers still need: >= 9 bytes per entry
             * (a key), >= 1 byte for an array still without a non-null */
            uint64_t need = 0;
            for (int d = 0; d < s->depth; d++) {
                const frame *fd = &s->fr[d];
                if (fd->kind == T_OBJ)
                    need += 9 * fd->remaining;
                else
                    need += fd->remaining; /* no null elements: >= 1 byte each */
            }
            if (bad || s->pos > g->lim || g->lim - s->pos < need) {
                g->n_cps--;
                continue;
            }
            if (s->depth == 0) {
                nest_add(g, s->pos);
                g->n_cps--;
                continue;
            }
            frame *f = &s->fr[s->depth - 1];
            if (f->kind == T_OBJ && !f->expect_value) {
                int64_t L = text_at(g, s->pos, LG_KEY_MAX);
                if (L < 0 || push_tok(g, (tok){T_KEY, 0, s->pos, (uint64_t)L}) != 0) {
                    g->n_cps--;
                    continue;
                }
                /* a key has one reading: advance in place */
                f->expect_value = 1;
                s->pos += 8 + (uint64_t)L;
                s->n_tok = g->n_stack;
                continue;
            }
            if (f->kind == T_OBJ)
                f->expect_value = 0;
            f->remaining--;
            s->alt = 1;
        }
        /* the natural readings first: they are found before any budget runs out */
        static const int order[7] = {0, 4, 5, 6, 3, 2, 1};
        if (s->alt > 6) {
            g->n_cps--;
            continue;
        }
        int alt = order[s->alt++];
        uint64_t pos = s->pos, rel = pos - g->v_off, left = pos <= g->lim ? g->lim - pos : 0;
        cp child = *s;
        frame *cf = &child.fr[child.depth - 1];
        tok t = {0, 0, pos, 0};
        int ok = 0;
        uint64_t c = left >= 8 ? rd64(g->v + rel) : 0;
        switch (alt) {
        case 1: /* null: no bytes */
            t.type = T_NULL;
            ok = 1;
            break;
        case 2: /* bool */
            if (left >= 1 && g->v[rel] <= 1) {
                t.type = T_BOOL;
                t.bval = g->v[rel];
                child.pos = pos + 1;
                ok = 1;
            }
            break;
        case 3: /* number */
            if (left >= 8) {
                t.type = T_NUM;
                child.pos = pos + 8;
                ok = 1;
            }
            break;
        case 4: { /* string */
            int64_t L = text_at(g, pos, LG_STR_MAX);
            if (L > 0) {
                t.type = T_STR;
                t.n = (uint64_t)L;
                child.pos = pos + 8 + (uint64_t)L;
                ok = 1;
            }
            break;
        }
        case 5: /* array: at most one element per byte left (nulls aside) */
            if (left >= 8 && c >= 1 && c <= 65536 && c <= left && child.depth < LG_MAX_DEPTH) {
                t.type = T_ARR;
                t.n = c;
                child.pos = pos + 8;
                child.fr[child.depth++] = (frame){T_ARR, 0, 0, c};
                ok = 1;
            }
            break;
        case 6: /* object: each entry takes at least 9 bytes */
            if (left >= 8 && c >= 1 && c <= (left - 8) / 9 && child.depth < LG_MAX_DEPTH) {
                t.type = T_OBJ;
                t.n = c;
                child.pos = pos + 8;
                child.fr[child.depth++] = (frame){T_OBJ, 0, 0, c};
                ok = 1;
            }
            break;
        }
        if (!ok)
            continue;
        if (cf->kind == T_ARR) {
            /* rule 1: an array holds values of one kind, none null */
            if (t.type == T_NULL || (cf->nonnull && cf->nonnull != t.type + 1))
                continue;
            cf->nonnull = (uint8_t)(t.type + 1);
        } else if (t.type != T_NULL) {
            cf->nonnull = 1;
        }
        if (push_tok(g, t) != 0) {
            g->overflow = 1;
            break;
        }
        child.n_tok = g->n_stack;
        cp_push(g, &child);
    }
    g->n_cps = 0;
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

static uint64_t key_hash(const uint8_t *s, uint64_t n);
static int vocab_has(const lg *g, uint64_t h);

/* ---- the top-level map as a graph ------------------------------------------
 *
 * A state is (pos, r): r top-level entries still to read from pos. An edge
 * is one reading of one entry (its key, which has one reading, then one of
 * the value's readings). Every state is expanded once, so the work follows
 * the number of distinct states, not the (exponential) number of readings.
 * r drops by one on every edge: the graph is acyclic, and the number of
 * complete readings from each state is a simple sum over its edges.
 */
#define LG_MAX_STATES 65536
#define LG_MAX_EDGES (4 * LG_MAX_STATES)
#define LG_NEST_MAX 8 /* readings kept per nested value */
#define LG_WAYS_CAP ((uint64_t)1 << 40)

typedef struct lst {
    uint64_t pos;
    uint32_t r;
    uint32_t first_edge, n_edges;
    uint64_t ways; /* complete readings from here (saturating) */
} lst;

typedef struct edge {
    uint32_t to;
    uint32_t tok_off, tok_n; /* in epool: the key token, then the value's */
} edge;

static int grow_arr(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t nc = *cap ? *cap : 64;
    while (nc < need)
        nc *= 2;
    void *n = realloc(*p, nc * elem);
    if (!n)
        return -1;
    *p = n;
    *cap = nc;
    return 0;
}

static void nest_add(lg *g, uint64_t end)
{
    if (g->n_nest >= LG_NEST_MAX) {
        g->overflow = 1;
        return;
    }
    if (grow_arr((void **)&g->nest_end, &g->cap_nest, g->n_nest + 1, sizeof *g->nest_end) ||
        grow_arr((void **)&g->npool, &g->cap_npool, g->n_npool + g->n_stack, sizeof *g->npool)) {
        g->overflow = 1;
        return;
    }
    size_t cap = g->cap_nest;
    void *o = realloc(g->nest_off, cap * sizeof *g->nest_off),
         *n = o ? realloc(g->nest_n, cap * sizeof *g->nest_n) : NULL;
    if (o)
        g->nest_off = o;
    if (!n) {
        g->overflow = 1;
        return;
    }
    g->nest_n = n;
    if (g->n_stack)
        memcpy(g->npool + g->n_npool, g->stack, g->n_stack * sizeof *g->stack);
    g->nest_end[g->n_nest] = end;
    g->nest_off[g->n_nest] = g->n_npool;
    g->nest_n[g->n_nest] = g->n_stack;
    g->n_npool += g->n_stack;
    g->n_nest++;
}

/* Index of state (pos, r), created if new; UINT32_MAX on overflow. */
static uint32_t state_get(lg *g, uint64_t pos, uint32_t r, int *created)
{
    *created = 0;
    if (g->sh_cap < 2 * (g->n_sts + 1)) {
        size_t nc = g->sh_cap ? g->sh_cap * 2 : 1024;
        uint32_t *nh = calloc(nc, sizeof *nh);
        if (!nh)
            return UINT32_MAX;
        for (size_t i = 0; i < g->n_sts; i++) {
            uint64_t h = (g->sts[i].pos * 0x9E3779B97F4A7C15ull) ^ g->sts[i].r;
            size_t k = (size_t)(h % nc);
            while (nh[k])
                k = (k + 1) % nc;
            nh[k] = (uint32_t)i + 1;
        }
        free(g->sh);
        g->sh = nh;
        g->sh_cap = nc;
    }
    uint64_t h = (pos * 0x9E3779B97F4A7C15ull) ^ r;
    size_t k = (size_t)(h % g->sh_cap);
    for (; g->sh[k]; k = (k + 1) % g->sh_cap) {
        const lst *x = &g->sts[g->sh[k] - 1];
        if (x->pos == pos && x->r == r)
            return g->sh[k] - 1;
    }
    if (g->n_sts >= LG_MAX_STATES || grow_arr((void **)&g->sts, &g->cap_sts, g->n_sts + 1, sizeof *g->sts))
        return UINT32_MAX;
    g->sts[g->n_sts] = (lst){pos, r, 0, 0, 0};
    g->sh[k] = (uint32_t)g->n_sts + 1;
    *created = 1;
    return (uint32_t)g->n_sts++;
}

/* Add the edge from -> (end, r - 1) carrying key then value tokens. */
static int edge_add(lg *g, uint32_t from, tok key, const tok *val, size_t n_val, uint64_t end, uint32_t **work,
                    size_t *n_work, size_t *cap_work)
{
    uint32_t r = g->sts[from].r - 1;
    /* every entry still to come needs at least a key (9 bytes) */
    if (end > g->lim || g->lim - end < 9 * (uint64_t)r)
        return 0;
    int created;
    uint32_t to = state_get(g, end, r, &created);
    if (to == UINT32_MAX || g->n_eds >= LG_MAX_EDGES ||
        grow_arr((void **)&g->eds, &g->cap_eds, g->n_eds + 1, sizeof *g->eds) ||
        grow_arr((void **)&g->epool, &g->cap_epool, g->n_epool + 1 + n_val, sizeof *g->epool))
        return -1;
    if (created) {
        if (grow_arr((void **)work, cap_work, *n_work + 1, sizeof **work))
            return -1;
        (*work)[(*n_work)++] = to;
    }
    g->eds[g->n_eds++] = (edge){to, (uint32_t)g->n_epool, (uint32_t)(1 + n_val)};
    g->epool[g->n_epool++] = key;
    if (n_val)
        memcpy(g->epool + g->n_epool, val, n_val * sizeof *val);
    g->n_epool += n_val;
    g->sts[from].n_edges++;
    return 0;
}

/* Expand state i: its key, then every reading of the value after it. */
static int expand(lg *g, uint32_t i, uint32_t **work, size_t *n_work, size_t *cap_work)
{
    uint64_t pos = g->sts[i].pos;
    g->sts[i].first_edge = (uint32_t)g->n_eds;
    g->sts[i].n_edges = 0;
    if (g->sts[i].r == 0)
        return 0;
    int64_t L = text_at(g, pos, LG_KEY_MAX);
    if (L < 0)
        return 0;
    if (g->prune_vocab && !vocab_has(g, key_hash(g->v + (pos + 8 - g->v_off), (uint64_t)L)))
        return 0;
    tok key = {T_KEY, 0, pos, (uint64_t)L};
    uint64_t vp = pos + 8 + (uint64_t)L, rel = vp - g->v_off;
    if (vp > g->lim)
        return 0;
    uint64_t left = g->lim - vp;
    tok t = {T_NULL, 0, vp, 0};
    if (edge_add(g, i, key, &t, 1, vp, work, n_work, cap_work))
        return -1;
    if (left >= 1 && g->v[rel] <= 1) {
        t = (tok){T_BOOL, g->v[rel], vp, 0};
        if (edge_add(g, i, key, &t, 1, vp + 1, work, n_work, cap_work))
            return -1;
    }
    if (left >= 8) {
        t = (tok){T_NUM, 0, vp, 0};
        if (edge_add(g, i, key, &t, 1, vp + 8, work, n_work, cap_work))
            return -1;
    }
    int64_t S = text_at(g, vp, LG_STR_MAX);
    if (S > 0) {
        t = (tok){T_STR, 0, vp, (uint64_t)S};
        if (edge_add(g, i, key, &t, 1, vp + 8 + (uint64_t)S, work, n_work, cap_work))
            return -1;
    }
    if (left >= 8) {
        uint64_t c = rd64(g->v + rel);
        for (int kind = 0; kind < 2; kind++) {
            int ok = kind == 0 ? (c >= 1 && c <= 65536 && c <= left) : (c >= 1 && c <= (left - 8) / 9);
            if (!ok)
                continue;
            g->n_nest = g->n_npool = 0;
            int over = g->overflow;
            g->overflow = 0;
            g->steps = 0;
            dfs(g, (tok){kind == 0 ? T_ARR : T_OBJ, 0, vp, c});
            /* more readings of one nested value than LG_NEST_MAX: the
             * natural ones come first and are kept; the record still counts
             * as fully enumerated at the top level */
            g->overflow = over;
            for (size_t k = 0; k < g->n_nest; k++)
                if (edge_add(g, i, key, g->npool + g->nest_off[k], g->nest_n[k], g->nest_end[k], work, n_work,
                             cap_work))
                    return -1;
        }
    }
    return 0;
}

static int cmp_state_r(const void *a, const void *b, void *ctx)
{
    const lst *s = ctx;
    uint32_t x = s[*(const uint32_t *)a].r, y = s[*(const uint32_t *)b].r;
    return x < y ? -1 : x > y;
}

/* Find the readings of a map of count entries from start: build the state
 * graph, count the complete readings, and put up to max_parses of them in
 * g->parses (overflow set when there are more, or when a limit was hit). */
static void solve(lg *g, uint64_t start, uint64_t count)
{
    g->n_sts = g->n_eds = g->n_epool = 0;
    if (g->sh)
        memset(g->sh, 0, g->sh_cap * sizeof *g->sh);
    uint32_t *work = NULL, *order = NULL;
    size_t n_work = 0, cap_work = 0;
    int created;
    uint32_t s0 = state_get(g, start, (uint32_t)count, &created);
    if (s0 == UINT32_MAX || grow_arr((void **)&work, &cap_work, 1, sizeof *work)) {
        g->overflow = 1;
        goto out;
    }
    work[n_work++] = s0;
    while (n_work > 0) {
        uint32_t i = work[--n_work];
        if (expand(g, i, &work, &n_work, &cap_work) != 0) {
            g->overflow = 1;
            goto out;
        }
    }
    /* ways, children (r - 1) before parents */
    order = malloc((g->n_sts + 1) * sizeof *order);
    if (!order) {
        g->overflow = 1;
        goto out;
    }
    for (uint32_t i = 0; i < g->n_sts; i++)
        order[i] = i;
    qsort_r(order, g->n_sts, sizeof *order, cmp_state_r, g->sts);
    for (size_t k = 0; k < g->n_sts; k++) {
        lst *x = &g->sts[order[k]];
        if (x->r == 0) {
            x->ways = boundary(g, x->pos) ? 1 : 0;
            continue;
        }
        uint64_t w = 0;
        for (uint32_t e = 0; e < x->n_edges; e++) {
            w += g->sts[g->eds[x->first_edge + e].to].ways;
            if (w > LG_WAYS_CAP)
                w = LG_WAYS_CAP;
        }
        x->ways = w;
    }
    if (g->sts[s0].ways > g->max_parses)
        g->overflow = 1;
    /* Walk the complete readings (every branch taken has ways > 0). */
    size_t depth = 0;
    uint32_t *path_state = malloc((count + 1) * sizeof *path_state),
             *path_edge = malloc((count + 1) * sizeof *path_edge);
    if (!path_state || !path_edge) {
        free(path_state);
        free(path_edge);
        g->overflow = 1;
        goto out;
    }
    if (g->sts[s0].ways > 0) {
        path_state[0] = s0;
        path_edge[0] = 0;
        depth = 1;
    }
    while (depth > 0 && g->n_parses < g->max_parses) {
        lst *x = &g->sts[path_state[depth - 1]];
        if (x->r == 0) {
            /* a complete reading: the tokens of the edges on the path */
            g->n_stack = 0;
            int fail = 0;
            for (size_t d = 0; d + 1 < depth && !fail; d++) {
                const lst *y = &g->sts[path_state[d]];
                const edge *e = &g->eds[y->first_edge + path_edge[d] - 1];
                for (uint32_t t = 0; t < e->tok_n && !fail; t++)
                    fail = push_tok(g, g->epool[e->tok_off + t]) != 0;
            }
            if (!fail)
                record_parse(g, x->pos);
            depth--;
            continue;
        }
        uint32_t *ei = &path_edge[depth - 1];
        while (*ei < x->n_edges && g->sts[g->eds[x->first_edge + *ei].to].ways == 0)
            (*ei)++;
        if (*ei >= x->n_edges) {
            depth--;
            continue;
        }
        path_state[depth] = g->eds[x->first_edge + *ei].to;
        path_edge[depth] = 0;
        (*ei)++;
        depth++;
    }
    free(path_state);
    free(path_edge);
out:
    free(work);
    free(order);
}

/* First record header at or after from inside the view, or 0. */
static uint64_t next_header(const lg *g, uint64_t from)
{
    if (from < g->v_off)
        from = g->v_off;
    for (uint64_t p = from; p + LG_HDR <= g->v_off + g->v_len && p < g->zero_start; p++) {
        const uint8_t *q = memchr(g->v + (p - g->v_off), LG_UUID_LEN, (size_t)(g->v_off + g->v_len - p));
        if (!q)
            return 0;
        p = (uint64_t)(q - g->v) + g->v_off;
        if (p + LG_HDR <= g->v_off + g->v_len && p < g->zero_start && header_at(g, q))
            return p;
    }
    return 0;
}

/* Enumerate the readings of the map whose count is at meta_off. The record
 * must end where the next record header starts (a 16-byte signature that
 * text practically never contains), else in the zero tail: that end is
 * fixed first, which keeps readings from running into the next record. If
 * no reading ends at the first header (a false one inside the map), the
 * next few are tried. */
static void parse_map(lg *g, uint64_t meta_off)
{
    parses_clear(g);
    uint64_t span = g->r->size - meta_off;
    if (span > LG_META_SPAN + LG_HDR)
        span = LG_META_SPAN + LG_HDR;
    g->v = imp_get(g->r, meta_off, (size_t)span);
    g->v_off = meta_off;
    g->v_len = g->v ? span : 0;
    g->first_end = 0;
    if (!g->v || span < 8)
        return;
    uint64_t count = rd64(g->v);
    if (count > 65536) /* more entries than a metadata map can hold */
        return;
    uint64_t from = meta_off + 8;
    g->weak_mode = 0;
    for (int tries = 0; tries < 4 && g->n_parses == 0; tries++) {
        uint64_t e = next_header(g, from);
        g->overflow = 0;
        g->steps = 0;
        if (e) {
            g->tail_mode = 0;
            g->want_end = g->lim = e;
        } else if (g->zero_start <= g->v_off + g->v_len) {
            g->tail_mode = 1;
            g->want_end = g->zero_start;
            g->lim = g->v_off + g->v_len;
        } else {
            return; /* no end within LG_META_SPAN */
        }
        if (tries == 0)
            g->first_end = g->tail_mode ? g->zero_start : e;
        solve(g, meta_off + 8, count);
        if (g->tail_mode || g->n_parses > 0)
            break;
        if (tries == 0) {
            /* The next record may be damaged: accept an end where a record
             * header at least begins (u64 16) before this intact header;
             * the damaged bytes are then skipped by re-synchronising. */
            g->weak_mode = 1;
            g->overflow = 0;
            g->steps = 0;
            solve(g, meta_off + 8, count);
            g->weak_mode = 0;
        }
        from = e + 1;
    }
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

/* Keys (by position) present in every reading of this record: whatever
 * the true reading is, these are keys of the collection's schema. */
static void vocab_learn_certain(lg *g)
{
    const parse *p0 = &g->parses[0];
    for (size_t i = 0; i < p0->n;) {
        if (p0->t[i].type != T_KEY)
            return;
        int everywhere = 1;
        for (size_t k = 1; k < g->n_parses && everywhere; k++) {
            const parse *pk = &g->parses[k];
            int found = 0;
            for (size_t j = 0; j < pk->n && !found;) {
                if (pk->t[j].type != T_KEY)
                    break;
                found = pk->t[j].pos == p0->t[i].pos && pk->t[j].n == p0->t[i].n;
                j = skip_subtree(pk->t, pk->n, j + 1);
            }
            everywhere = found;
        }
        if (everywhere)
            vocab_add(g, key_hash(g->v + (p0->t[i].pos + 8 - g->v_off), p0->t[i].n));
        i = skip_subtree(p0->t, p0->n, i + 1);
    }
}

/* 1 if every array of the reading holds one kind of value (nulls aside). */
static int parse_homogeneous(const parse *p)
{
    for (size_t i = 0; i < p->n; i++) {
        if (p->t[i].type != T_ARR)
            continue;
        int kind = -1;
        size_t j = i + 1;
        for (uint64_t c = 0; c < p->t[i].n && j < p->n; c++) {
            int k = p->t[j].type;
            if (k != T_NULL) {
                if (kind >= 0 && k != kind)
                    return 0;
                kind = k;
            }
            j = skip_subtree(p->t, p->n, j);
        }
    }
    return 1;
}

/* Rule 2b: when several readings remain, those whose arrays each hold one
 * kind of value are preferred (the zero bytes of length prefixes read as
 * false/null make mixed arrays out of plain lists of strings). */
static void prefer_homogeneous(lg *g)
{
    if (g->n_parses < 2)
        return;
    size_t keep = 0;
    for (size_t i = 0; i < g->n_parses; i++)
        keep += parse_homogeneous(&g->parses[i]);
    if (keep == 0 || keep == g->n_parses)
        return;
    size_t k = 0;
    for (size_t i = 0; i < g->n_parses; i++) {
        if (parse_homogeneous(&g->parses[i]))
            g->parses[k++] = g->parses[i];
        else
            free(g->parses[i].t);
    }
    g->n_parses = k;
}

/* Rule 2c: then those made of the fewest values: the zero bytes inside
 * length prefixes can always be re-read as runs of null/false/0 elements,
 * which only ever adds values. */
static void prefer_fewest_values(lg *g)
{
    if (g->n_parses < 2)
        return;
    size_t best = SIZE_MAX, k = 0;
    for (size_t i = 0; i < g->n_parses; i++)
        if (g->parses[i].n < best)
            best = g->parses[i].n;
    for (size_t i = 0; i < g->n_parses; i++) {
        if (g->parses[i].n == best)
            g->parses[k++] = g->parses[i];
        else
            free(g->parses[i].t);
    }
    g->n_parses = k;
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
static char *build_metadata(const lg *g, const parse *ps, size_t n_ps, uint64_t meta_off, uint64_t end, int *ambiguous)
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

static uint64_t resync(lg *g, uint64_t off);

/* A record whose header and vector are intact but whose metadata has no
 * reading at all (a type the original could write but rule 1 excludes, or
 * damage inside the map): the vector is kept, the map bytes up to the next
 * header go under "_legacy_raw"."_map". Damaged (0) if no header follows
 * within LG_META_SPAN. */
static int raw_record(lg *g, uint64_t off, uint64_t meta_off, const char *id, int finite, uint64_t *end, dv_code *rc,
                      dv_err *err)
{
    (void)off;
    uint64_t next = resync(g, meta_off - 1);
    if (next - meta_off > LG_META_SPAN)
        return 0;
    const uint8_t *m = imp_get(g->r, meta_off, (size_t)(next - meta_off));
    char *h = m ? hex_of(m, next - meta_off) : NULL;
    json_t *o = h ? json_pack("{s:{s:s}}", "_legacy_raw", "_map", h) : NULL;
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    free(h);
    json_decref(o);
    if (!text) {
        *rc = dv_errorf(err, DV_ENOMEM, "import: out of memory");
        return 1;
    }
    *end = next;
    g->st->meta_ambiguous++;
    if (!finite)
        g->st->skipped++;
    else
        *rc = imp_sink_add(g->sink, id, g->vec, text, strlen(text), err);
    free(text);
    return 1;
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
        /* the next record starts here: intact, or at least its "u64 16"
         * (a damaged one, skipped next) */
        if (!(meta_off >= g->zero_start || meta_off == g->r->size || (nx && rd64(nx) == LG_UUID_LEN)))
            return 0;
        *end = meta_off;
        if (!finite)
            g->st->skipped++;
        else
            *rc = imp_sink_add(g->sink, id, g->vec, NULL, 0, err);
        return 1;
    }
    /* First pass: is there exactly one reading? (stop at the second).
     * Final pass: only readings whose keys are in the vocabulary; none
     * such: every reading, for the entries they agree on. */
    g->max_parses = LG_MAX_PARSES;
    g->prune_vocab = final && g->n_vocab > 0;
    parse_map(g, meta_off);
    if (final && g->n_parses == 0 && g->prune_vocab) {
        g->prune_vocab = 0;
        parse_map(g, meta_off);
    }
    g->prune_vocab = 0;
    int ambiguous = g->n_parses > 1 || g->overflow;
    if (!final) {
        /* the vocabulary learns only from what is certain: a record with
         * one reading, or the keys every reading of a record shares */
        if (!ambiguous && g->n_parses == 1)
            vocab_learn(g, &g->parses[0]);
        else if (!g->overflow && g->n_parses > 1)
            vocab_learn_certain(g);
    } else if (ambiguous) {
        prefer_homogeneous(g);
        if (!g->overflow)
            prefer_fewest_values(g);
        ambiguous = g->n_parses > 1 || g->overflow;
    }
    if (!final && ambiguous) {
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
        /* the readings found end at the same place (fixed by parse_map);
         * none found within the budget: the first header ahead */
        *end = g->n_parses ? g->parses[0].end : g->first_end;
        return *end > off;
    }
    if (g->n_parses == 0)
        return raw_record(g, off, meta_off, id, finite, end, rc, err);
    const parse *use = g->parses;
    size_t n_use = g->n_parses;
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
            rc = dv_errorf(err, dv_code_from_errno(r->io_errno), "import: read %s: %s", r->path, strerror(r->io_errno));
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
    free(g->cps);
    free(g->nest_end);
    free(g->nest_off);
    free(g->nest_n);
    free(g->npool);
    free(g->sts);
    free(g->sh);
    free(g->eds);
    free(g->epool);
    free(g->deferred);
    free(g->vec);
    free(g);
    return rc;
}
