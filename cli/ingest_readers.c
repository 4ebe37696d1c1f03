/*
 * ingest_readers.c - the input formats of `vectordb-cli ingest`: JSONL, CSV,
 * .npy (2-D float32/float64, C order) and .fvecs, behind one sequential
 * reader with positions (byte offset + record number) for checkpoints.
 *
 * Invariants: records are numbered 0, 1, 2, ... in input order and the
 * numbering does not depend on where reading started (rd_seek restores it),
 * which is what makes derived ids stable across resumes; a malformed record
 * is returned with rec->error set and never ends the input; every float
 * handed out is finite.
 *
 * CSV columns: a header row is recognised when it names a column id, vector,
 * text or metadata, or when a field after the first is not a number.
 *   with a header: id -> id; vector -> the vector ("[1,2]", "1 2" or "1;2");
 *     text -> text to embed; metadata -> a JSON object; when there is no
 *     vector and no text column, every other column is one vector component
 *     (in order), else every other column becomes a string metadata field.
 *   without a header: all fields are components, unless the first field of
 *     the first row is not a number: then the first column is the id.
 */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

enum { COL_COMPONENT = 0, COL_ID, COL_VECTOR, COL_TEXT, COL_METADATA, COL_META_FIELD };

struct rd_reader {
    FILE *f;
    rd_format fmt;
    uint64_t size;
    uint64_t off;   /* byte offset of the next record */
    uint64_t recno; /* number of the next record */
    uint64_t line;  /* 1-based line of the next record (JSONL/CSV) */
    /* npy / fvecs */
    uint32_t dim;
    int f64;
    uint64_t rows;
    uint64_t data_off;
    void *rowbuf;
    /* JSONL / CSV */
    char *buf;
    size_t cap;
    /* CSV */
    char **fields;
    size_t n_fields, fields_cap;
    char **names; /* header names, or NULL */
    int *kinds;
    size_t n_cols;
    int no_header_id; /* headerless file whose first column is the id */
    int csv_vector_cols;
};

const char *rd_format_name(rd_format f)
{
    static const char *const names[] = {"auto", "jsonl", "csv", "npy", "fvecs"};
    return (unsigned)f <= RD_FVECS ? names[f] : "?";
}

rd_format rd_format_parse(const char *s)
{
    if (!strcasecmp(s, "auto"))
        return RD_AUTO;
    if (!strcasecmp(s, "jsonl") || !strcasecmp(s, "ndjson") || !strcasecmp(s, "json"))
        return RD_JSONL;
    if (!strcasecmp(s, "csv"))
        return RD_CSV;
    if (!strcasecmp(s, "npy"))
        return RD_NPY;
    if (!strcasecmp(s, "fvecs"))
        return RD_FVECS;
    return (rd_format)-1;
}

void rd_record_clear(rd_record *rec)
{
    free(rec->id);
    free(rec->vec);
    free(rec->text);
    free(rec->error);
    json_decref(rec->metadata);
    memset(rec, 0, sizeof *rec);
}

static void set_error(rd_record *rec, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_error(rd_record *rec, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    free(rec->error);
    rec->error = strdup(buf);
}

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcasecmp(s + a - b, suf);
}

/* Parse floats separated by commas, spaces, semicolons or tabs, optionally
 * inside [ ]. Returns count, or -1 on a bad or non-finite number. */
static long parse_floats(const char *s, float **out)
{
    size_t n = 0, cap = 64;
    float *v = malloc(cap * sizeof *v);
    if (!v)
        return -1;
    const char *p = s;
    for (;;) {
        while (*p == ' ' || *p == ',' || *p == ';' || *p == '\t' || *p == '[' || *p == ']' || *p == '\r' || *p == '\n')
            p++;
        if (!*p)
            break;
        char *end;
        errno = 0;
        double d = strtod(p, &end);
        if (end == p || errno == ERANGE || !isfinite(d) || !isfinite((float)d)) {
            free(v);
            return -1;
        }
        if (n == cap) {
            float *nv = realloc(v, (cap *= 2) * sizeof *v);
            if (!nv) {
                free(v);
                return -1;
            }
            v = nv;
        }
        v[n++] = (float)d;
        p = end;
    }
    *out = v;
    return (long)n;
}

static int is_number(const char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    if (!*s)
        return 0;
    char *end;
    strtod(s, &end);
    while (isspace((unsigned char)*end))
        end++;
    return *end == '\0';
}

/* ---- CSV ------------------------------------------------------------ */

static int push_field(rd_reader *r, const char *s, size_t n)
{
    if (r->n_fields == r->fields_cap) {
        size_t nc = r->fields_cap ? r->fields_cap * 2 : 16;
        char **nf = realloc(r->fields, nc * sizeof *nf);
        if (!nf)
            return -1;
        r->fields = nf;
        r->fields_cap = nc;
    }
    char *f = malloc(n + 1);
    if (!f)
        return -1;
    memcpy(f, s, n);
    f[n] = '\0';
    r->fields[r->n_fields++] = f;
    return 0;
}

static void free_fields(rd_reader *r)
{
    for (size_t i = 0; i < r->n_fields; i++)
        free(r->fields[i]);
    r->n_fields = 0;
}

/* Read one RFC 4180 row (quoted fields, "" escapes, newlines in quotes).
 * Empty lines are skipped. 1 row, 0 EOF, -1 error. Tracks off and line. */
static int csv_row(rd_reader *r, uint64_t *row_line)
{
    free_fields(r);
    size_t n = 0;
    int inq = 0, any = 0, c;
    for (;;) {
        c = getc_unlocked(r->f);
        if (c == EOF) {
            if (ferror(r->f))
                return -1;
            if (!any)
                return 0;
            break;
        }
        r->off++;
        if (!any && !inq && (c == '\n' || c == '\r')) {
            if (c == '\n')
                r->line++;
            continue; /* blank line */
        }
        if (!any)
            *row_line = r->line;
        any = 1;
        if (n + 2 > r->cap) {
            size_t nc = r->cap ? r->cap * 2 : 4096;
            char *nb = realloc(r->buf, nc);
            if (!nb)
                return -1;
            r->buf = nb;
            r->cap = nc;
        }
        if (inq) {
            if (c == '"') {
                int d = getc_unlocked(r->f);
                if (d == '"') {
                    r->off++;
                    r->buf[n++] = '"';
                } else {
                    if (d != EOF)
                        ungetc(d, r->f);
                    inq = 0;
                }
            } else {
                if (c == '\n')
                    r->line++;
                r->buf[n++] = (char)c;
            }
            continue;
        }
        if (c == '"' && n == 0) {
            inq = 1;
        } else if (c == ',') {
            if (push_field(r, r->buf, n))
                return -1;
            n = 0;
        } else if (c == '\n') {
            r->line++;
            break;
        } else if (c != '\r') {
            r->buf[n++] = (char)c;
        }
    }
    if (push_field(r, r->buf, n))
        return -1;
    return 1;
}

static int col_kind_of(const char *name)
{
    if (!strcasecmp(name, "id"))
        return COL_ID;
    if (!strcasecmp(name, "vector") || !strcasecmp(name, "embedding"))
        return COL_VECTOR;
    if (!strcasecmp(name, "text"))
        return COL_TEXT;
    if (!strcasecmp(name, "metadata"))
        return COL_METADATA;
    return -1;
}

/* Look at the first row: a header or data? Leaves the reader at the first
 * data record. */
static dv_code csv_open(rd_reader *r, dv_err *err)
{
    uint64_t ln = 0;
    int k = csv_row(r, &ln);
    if (k < 0)
        return dv_errorf(err, DV_EIO, "ingest: csv: read error");
    if (k == 0)
        return DV_OK; /* empty file: no records */
    int header = 0;
    for (size_t i = 0; i < r->n_fields; i++)
        if (col_kind_of(r->fields[i]) >= 0 || (i > 0 && !is_number(r->fields[i])))
            header = 1;
    if (header) {
        r->n_cols = r->n_fields;
        r->names = calloc(r->n_cols, sizeof *r->names);
        r->kinds = calloc(r->n_cols, sizeof *r->kinds);
        if (!r->names || !r->kinds)
            return dv_errorf(err, DV_ENOMEM, "ingest: csv: out of memory");
        int has_vec = 0;
        for (size_t i = 0; i < r->n_cols; i++) {
            r->names[i] = strdup(r->fields[i]);
            int kind = col_kind_of(r->fields[i]);
            if (kind == COL_VECTOR || kind == COL_TEXT)
                has_vec = 1;
            r->kinds[i] = kind;
        }
        for (size_t i = 0; i < r->n_cols; i++)
            if (r->kinds[i] < 0) {
                r->kinds[i] = has_vec ? COL_META_FIELD : COL_COMPONENT;
                r->csv_vector_cols += !has_vec;
            }
        return DV_OK;
    }
    r->no_header_id = r->n_fields > 0 && !is_number(r->fields[0]);
    /* Data row: start over at offset 0. */
    if (fseeko(r->f, 0, SEEK_SET))
        return dv_errorf(err, DV_EIO, "ingest: csv: seek: %s", strerror(errno));
    r->off = 0;
    r->line = 1;
    return DV_OK;
}

static int csv_next(rd_reader *r, rd_record *rec)
{
    uint64_t ln = r->line;
    int k = csv_row(r, &ln);
    if (k <= 0)
        return k;
    rec->line = ln;
    size_t nf = r->n_fields;
    if (!r->names) {
        size_t first = r->no_header_id ? 1 : 0;
        if (r->no_header_id && nf > 0 && r->fields[0][0])
            rec->id = strdup(r->fields[0]);
        if (nf <= first) {
            set_error(rec, "csv line %llu: no vector components", (unsigned long long)ln);
            return 1;
        }
        rec->vec = malloc((nf - first) * sizeof *rec->vec);
        for (size_t i = first; i < nf; i++) {
            char *end;
            double d = strtod(r->fields[i], &end);
            if (end == r->fields[i] || *end || !isfinite(d) || !isfinite((float)d)) {
                set_error(rec, "csv line %llu: column %zu: not a finite number: '%.40s'", (unsigned long long)ln, i + 1,
                          r->fields[i]);
                return 1;
            }
            rec->vec[i - first] = (float)d;
        }
        rec->dim = (uint32_t)(nf - first);
        return 1;
    }
    if (nf != r->n_cols) {
        set_error(rec, "csv line %llu: %zu fields, the header has %zu", (unsigned long long)ln, nf, r->n_cols);
        return 1;
    }
    if (r->csv_vector_cols)
        rec->vec = malloc((size_t)r->csv_vector_cols * sizeof *rec->vec);
    uint32_t nc = 0;
    for (size_t i = 0; i < nf; i++) {
        const char *v = r->fields[i];
        switch (r->kinds[i]) {
        case COL_ID: /* a repeated column: the last one wins */
            if (v[0]) {
                free(rec->id);
                rec->id = strdup(v);
            }
            break;
        case COL_TEXT:
            if (v[0]) {
                free(rec->text);
                rec->text = strdup(v);
            }
            break;
        case COL_VECTOR: {
            if (!v[0])
                break;
            float *fv;
            long n = parse_floats(v, &fv);
            if (n == 0)
                free(fv);
            if (n <= 0) {
                set_error(rec, "csv line %llu: column vector: not a list of finite numbers", (unsigned long long)ln);
                return 1;
            }
            free(rec->vec);
            rec->vec = fv;
            rec->dim = (uint32_t)n;
            break;
        }
        case COL_METADATA: {
            if (!v[0])
                break;
            json_error_t je;
            json_t *m = json_loads(v, 0, &je);
            if (!json_is_object(m)) {
                json_decref(m);
                set_error(rec, "csv line %llu: column metadata: not a JSON object", (unsigned long long)ln);
                return 1;
            }
            if (rec->metadata)
                json_object_update_missing(m, rec->metadata), json_decref(rec->metadata);
            rec->metadata = m;
            break;
        }
        case COL_META_FIELD:
            if (!rec->metadata)
                rec->metadata = json_object();
            if (!json_object_get(rec->metadata, r->names[i]))
                json_object_set_new(rec->metadata, r->names[i], json_string(v));
            break;
        default: { /* COL_COMPONENT */
            char *end;
            double d = strtod(v, &end);
            if (end == v || *end || !isfinite(d) || !isfinite((float)d)) {
                set_error(rec, "csv line %llu: column %s: not a finite number: '%.40s'", (unsigned long long)ln,
                          r->names[i], v);
                return 1;
            }
            rec->vec[nc++] = (float)d;
        }
        }
    }
    if (r->csv_vector_cols)
        rec->dim = nc;
    if (!rec->vec && !rec->text)
        set_error(rec, "csv line %llu: neither a vector nor a text", (unsigned long long)ln);
    return 1;
}

/* ---- JSONL ---------------------------------------------------------- */

static int jsonl_next(rd_reader *r, rd_record *rec)
{
    for (;;) {
        ssize_t n = getline(&r->buf, &r->cap, r->f);
        if (n < 0)
            return ferror(r->f) ? -1 : 0;
        r->off += (uint64_t)n;
        uint64_t ln = r->line++;
        const char *p = r->buf;
        while (isspace((unsigned char)*p))
            p++;
        if (!*p)
            continue; /* blank lines are not records */
        rec->line = ln;
        json_error_t je;
        json_t *o = json_loads(r->buf, JSON_REJECT_DUPLICATES, &je);
        if (!json_is_object(o)) {
            if (o)
                set_error(rec, "line %llu: not a JSON object", (unsigned long long)ln);
            else
                set_error(rec, "line %llu: invalid JSON at column %d: %s", (unsigned long long)ln, je.column, je.text);
            json_decref(o);
            return 1;
        }
        const char *k;
        json_t *v;
        json_object_foreach(o, k, v)
        {
            if (!strcmp(k, "id")) {
                if (json_is_string(v)) {
                    rec->id = strdup(json_string_value(v));
                } else if (json_is_integer(v)) {
                    char b[32];
                    snprintf(b, sizeof b, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
                    rec->id = strdup(b);
                } else if (!json_is_null(v)) {
                    set_error(rec, "line %llu: id must be a string or an integer", (unsigned long long)ln);
                    break;
                }
            } else if (!strcmp(k, "vector") || !strcmp(k, "data") || !strcmp(k, "embedding")) {
                size_t dn = json_array_size(v);
                if (!json_is_array(v) || dn == 0) {
                    set_error(rec, "line %llu: %s must be a non-empty array of numbers", (unsigned long long)ln, k);
                    break;
                }
                free(rec->vec);
                rec->vec = malloc(dn * sizeof *rec->vec);
                for (size_t i = 0; i < dn && !rec->error; i++) {
                    json_t *x = json_array_get(v, i);
                    double d = json_number_value(x);
                    if (!json_is_number(x) || !isfinite((float)d))
                        set_error(rec, "line %llu: %s[%zu] is not a finite number", (unsigned long long)ln, k, i);
                    else
                        rec->vec[i] = (float)d;
                }
                rec->dim = (uint32_t)dn;
            } else if (!strcmp(k, "text")) {
                if (!json_is_string(v)) {
                    set_error(rec, "line %llu: text must be a string", (unsigned long long)ln);
                    break;
                }
                rec->text = strdup(json_string_value(v));
            } else if (!strcmp(k, "metadata")) {
                if (json_is_null(v))
                    continue;
                if (!json_is_object(v)) {
                    set_error(rec, "line %llu: metadata must be an object", (unsigned long long)ln);
                    break;
                }
                if (!rec->metadata)
                    rec->metadata = json_object();
                json_object_update(rec->metadata, v);
            } else {
                /* Other top-level fields are kept as metadata (explicit
                 * metadata keys win). */
                if (!rec->metadata)
                    rec->metadata = json_object();
                if (!json_object_get(rec->metadata, k))
                    json_object_set(rec->metadata, k, v);
            }
        }
        json_decref(o);
        if (!rec->error && !rec->vec && !rec->text)
            set_error(rec, "line %llu: neither \"vector\" nor \"text\"", (unsigned long long)ln);
        if (rec->error) {
            free(rec->vec);
            rec->vec = NULL;
            free(rec->text);
            rec->text = NULL;
            json_decref(rec->metadata);
            rec->metadata = NULL;
        }
        return 1;
    }
}

/* ---- .npy ----------------------------------------------------------- */

/* Header of format version 1.0/2.0/3.0: magic "\x93NUMPY", major, minor,
 * header length (u16 LE for 1.x, u32 LE after), then a Python dict literal
 * padded with spaces and ending in '\n'. Only C-order little-endian f4/f8
 * 2-D arrays are accepted. */
static dv_code npy_open(rd_reader *r, dv_err *err)
{
    unsigned char pre[12];
    if (fread(pre, 1, 10, r->f) != 10 || memcmp(pre, "\x93NUMPY", 6))
        return dv_errorf(err, DV_EINVAL, "ingest: npy: not a .npy file (bad magic)");
    uint32_t hlen;
    uint64_t start;
    if (pre[6] == 1) {
        hlen = (uint32_t)pre[8] | (uint32_t)pre[9] << 8;
        start = 10;
    } else if (pre[6] == 2 || pre[6] == 3) {
        if (fread(pre + 10, 1, 2, r->f) != 2)
            return dv_errorf(err, DV_EINVAL, "ingest: npy: truncated header");
        hlen = (uint32_t)pre[8] | (uint32_t)pre[9] << 8 | (uint32_t)pre[10] << 16 | (uint32_t)pre[11] << 24;
        start = 12;
    } else {
        return dv_errorf(err, DV_EINVAL, "ingest: npy: unsupported format version %u", pre[6]);
    }
    if (hlen > 1 << 20)
        return dv_errorf(err, DV_EINVAL, "ingest: npy: header of %u bytes is too long", hlen);
    char *h = calloc(1, hlen + 1);
    if (!h)
        return dv_errorf(err, DV_ENOMEM, "ingest: npy: out of memory");
    if (fread(h, 1, hlen, r->f) != hlen) {
        free(h);
        return dv_errorf(err, DV_EINVAL, "ingest: npy: truncated header");
    }
    dv_code rc = DV_OK;
    const char *d = strstr(h, "'descr'");
    const char *fo = strstr(h, "'fortran_order'");
    const char *sh = strstr(h, "'shape'");
    if (!d || !fo || !sh) {
        rc = dv_errorf(err, DV_EINVAL, "ingest: npy: header lacks descr/fortran_order/shape");
        goto done;
    }
    d = strchr(d + 7, '\'');
    if (d && (!strncmp(d, "'<f4'", 5) || !strncmp(d, "'=f4'", 5))) {
        r->f64 = 0;
    } else if (d && (!strncmp(d, "'<f8'", 5) || !strncmp(d, "'=f8'", 5))) {
        r->f64 = 1;
    } else {
        rc = dv_errorf(err, DV_EINVAL, "ingest: npy: dtype must be little-endian float32 or float64 (got %.10s)",
                       d ? d : "?");
        goto done;
    }
    fo = strchr(fo + 15, ':');
    while (fo && (*fo == ':' || *fo == ' '))
        fo++;
    if (!fo || strncmp(fo, "False", 5)) {
        rc = dv_errorf(err, DV_EINVAL,
                       "ingest: npy: Fortran-order arrays are not supported; "
                       "save with np.ascontiguousarray");
        goto done;
    }
    const char *t = strchr(sh, '(');
    unsigned long long dims[3];
    int nd = 0;
    if (t) {
        t++;
        while (nd < 3) {
            while (*t == ' ')
                t++;
            if (*t == ')')
                break;
            char *end;
            dims[nd] = strtoull(t, &end, 10);
            if (end == t)
                break;
            nd++;
            t = end;
            while (*t == ' ' || *t == ',')
                t++;
        }
    }
    if (nd != 2 || dims[1] == 0 || dims[1] > 65536) {
        rc = dv_errorf(err, DV_EINVAL,
                       "ingest: npy: need a 2-D array (rows, dim <= 65536), "
                       "got %d dimensions",
                       nd);
        goto done;
    }
    r->rows = dims[0];
    r->dim = (uint32_t)dims[1];
    r->data_off = start + hlen;
    uint64_t need = r->data_off + r->rows * r->dim * (r->f64 ? 8 : 4);
    if (need > r->size) {
        rc = dv_errorf(err, DV_EINVAL, "ingest: npy: file holds %llu bytes, the header promises %llu",
                       (unsigned long long)r->size, (unsigned long long)need);
        goto done;
    }
    r->rowbuf = malloc((size_t)r->dim * (r->f64 ? 8 : 4));
    if (!r->rowbuf)
        rc = dv_errorf(err, DV_ENOMEM, "ingest: npy: out of memory");
    r->off = r->data_off;
done:
    free(h);
    return rc;
}

static void fill_vec(rd_record *rec, const void *src, uint32_t dim, int f64, const char *what)
{
    rec->vec = malloc((size_t)dim * sizeof *rec->vec);
    rec->dim = dim;
    for (uint32_t i = 0; i < dim; i++) {
        double d;
        if (f64) {
            memcpy(&d, (const char *)src + 8 * (size_t)i, 8);
        } else {
            float f;
            memcpy(&f, (const char *)src + 4 * (size_t)i, 4);
            d = f;
        }
        if (!isfinite((float)d)) {
            set_error(rec, "%s %llu: component %u is not a finite float32", what, (unsigned long long)rec->recno, i);
            free(rec->vec);
            rec->vec = NULL;
            return;
        }
        rec->vec[i] = (float)d;
    }
}

static int npy_next(rd_reader *r, rd_record *rec)
{
    if (r->recno >= r->rows)
        return 0;
    size_t row = (size_t)r->dim * (r->f64 ? 8 : 4);
    if (fread(r->rowbuf, 1, row, r->f) != row)
        return -1;
    r->off += row;
    fill_vec(rec, r->rowbuf, r->dim, r->f64, "row");
    return 1;
}

/* ---- .fvecs --------------------------------------------------------- */

/* Each record: int32 LE dimension d, then d float32 LE. */
static dv_code fvecs_open(rd_reader *r, dv_err *err)
{
    unsigned char b[4];
    if (r->size == 0)
        return DV_OK;
    if (fread(b, 1, 4, r->f) != 4)
        return dv_errorf(err, DV_EINVAL, "ingest: fvecs: truncated first record");
    int32_t d = (int32_t)((uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24);
    if (d <= 0 || d > 65536)
        return dv_errorf(err, DV_EINVAL, "ingest: fvecs: first record's dimension %d is invalid", d);
    r->dim = (uint32_t)d;
    uint64_t rec_size = 4 + 4 * (uint64_t)d;
    r->rows = r->size / rec_size;
    if (r->size % rec_size)
        return dv_errorf(err, DV_EINVAL,
                         "ingest: fvecs: size %llu is not a multiple of the record size %llu "
                         "(dimension %d): truncated or mixed dimensions",
                         (unsigned long long)r->size, (unsigned long long)rec_size, d);
    r->rowbuf = malloc(rec_size);
    if (!r->rowbuf)
        return dv_errorf(err, DV_ENOMEM, "ingest: fvecs: out of memory");
    if (fseeko(r->f, 0, SEEK_SET))
        return dv_errorf(err, DV_EIO, "ingest: fvecs: seek: %s", strerror(errno));
    return DV_OK;
}

static int fvecs_next(rd_reader *r, rd_record *rec)
{
    if (r->recno >= r->rows)
        return 0;
    size_t rec_size = 4 + 4 * (size_t)r->dim;
    if (fread(r->rowbuf, 1, rec_size, r->f) != rec_size)
        return -1;
    r->off += rec_size;
    const unsigned char *b = r->rowbuf;
    uint32_t d = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    if (d != r->dim) {
        set_error(rec, "vector %llu: dimension %u differs from the first vector's %u", (unsigned long long)r->recno, d,
                  r->dim);
        return 1;
    }
    fill_vec(rec, b + 4, r->dim, 0, "vector");
    return 1;
}

/* ---- the reader ----------------------------------------------------- */

dv_code rd_open(const char *path, rd_format fmt, rd_reader **out, dv_err *err)
{
    rd_reader *r = calloc(1, sizeof *r);
    if (!r)
        return dv_errorf(err, DV_ENOMEM, "ingest: out of memory");
    dv_code rc;
    r->f = fopen(path, "rb");
    if (!r->f) {
        rc = dv_errorf(err, errno == ENOENT ? DV_ENOTFOUND : DV_EIO, "ingest: open %s: %s", path, strerror(errno));
        goto fail;
    }
    /* stdio's 4 KiB buffer costs a read() per .fvecs/.npy row of a few KiB;
     * 1 MiB makes reading a negligible part of the ingest's CPU. */
    setvbuf(r->f, NULL, _IOFBF, 1 << 20);
    struct stat st;
    if (fstat(fileno(r->f), &st) || !S_ISREG(st.st_mode)) {
        rc = dv_errorf(err, DV_EINVAL, "ingest: %s: not a regular file", path);
        goto fail;
    }
    r->size = (uint64_t)st.st_size;
    r->line = 1;
    if (fmt == RD_AUTO) {
        if (ends_with(path, ".jsonl") || ends_with(path, ".ndjson") || ends_with(path, ".json"))
            fmt = RD_JSONL;
        else if (ends_with(path, ".csv"))
            fmt = RD_CSV;
        else if (ends_with(path, ".npy"))
            fmt = RD_NPY;
        else if (ends_with(path, ".fvecs"))
            fmt = RD_FVECS;
        else {
            char head[8] = {0};
            size_t n = fread(head, 1, sizeof head, r->f);
            rewind(r->f);
            size_t i = 0;
            while (i < n && isspace((unsigned char)head[i]))
                i++;
            if (n >= 6 && !memcmp(head, "\x93NUMPY", 6))
                fmt = RD_NPY;
            else if (i < n && head[i] == '{')
                fmt = RD_JSONL;
            else {
                rc = dv_errorf(err, DV_EINVAL,
                               "ingest: cannot tell the format of %s: use --format "
                               "jsonl|csv|npy|fvecs",
                               path);
                goto fail;
            }
        }
    }
    r->fmt = fmt;
    if (fmt == RD_NPY)
        rc = npy_open(r, err);
    else if (fmt == RD_FVECS)
        rc = fvecs_open(r, err);
    else if (fmt == RD_CSV)
        rc = csv_open(r, err);
    else
        rc = DV_OK;
    if (rc)
        goto fail;
    *out = r;
    return DV_OK;
fail:
    rd_close(r);
    return rc;
}

void rd_close(rd_reader *r)
{
    if (!r)
        return;
    if (r->f)
        fclose(r->f);
    free_fields(r);
    free(r->fields);
    for (size_t i = 0; r->names && i < r->n_cols; i++)
        free(r->names[i]);
    free(r->names);
    free(r->kinds);
    free(r->buf);
    free(r->rowbuf);
    free(r);
}

rd_format rd_get_format(const rd_reader *r)
{
    return r->fmt;
}

int rd_next(rd_reader *r, rd_record *rec, dv_err *err)
{
    rd_record_clear(rec);
    rec->recno = r->recno;
    int k;
    switch (r->fmt) {
    case RD_JSONL:
        k = jsonl_next(r, rec);
        break;
    case RD_CSV:
        k = csv_next(r, rec);
        break;
    case RD_NPY:
        k = npy_next(r, rec);
        break;
    default:
        k = fvecs_next(r, rec);
        break;
    }
    if (k < 0) {
        dv_errorf(err, DV_EIO, "ingest: read error after record %llu: %s", (unsigned long long)r->recno,
                  errno ? strerror(errno) : "short read");
        return -1;
    }
    if (k == 1) {
        if (rec->error) {
            free(rec->vec);
            rec->vec = NULL;
        }
        r->recno++;
    }
    return k;
}

uint64_t rd_tell(const rd_reader *r)
{
    return r->off;
}

uint64_t rd_line(const rd_reader *r)
{
    return r->line;
}

dv_code rd_seek(rd_reader *r, uint64_t offset, uint64_t recno, uint64_t line, dv_err *err)
{
    if (r->fmt == RD_NPY || r->fmt == RD_FVECS) {
        uint64_t row = r->fmt == RD_NPY ? (uint64_t)r->dim * (r->f64 ? 8 : 4) : 4 + 4 * (uint64_t)r->dim;
        uint64_t want = (r->fmt == RD_NPY ? r->data_off : 0) + recno * row;
        if (recno > r->rows || want != offset)
            return dv_errorf(err, DV_EINVAL,
                             "ingest: checkpoint position (record %llu, offset %llu) does not "
                             "fit this file",
                             (unsigned long long)recno, (unsigned long long)offset);
    }
    if (offset > r->size)
        return dv_errorf(err, DV_EINVAL, "ingest: checkpoint offset %llu is past the end (%llu)",
                         (unsigned long long)offset, (unsigned long long)r->size);
    if (fseeko(r->f, (off_t)offset, SEEK_SET))
        return dv_errorf(err, DV_EIO, "ingest: seek: %s", strerror(errno));
    r->off = offset;
    r->recno = recno;
    r->line = line ? line : 1;
    return DV_OK;
}

uint64_t rd_total(const rd_reader *r)
{
    return r->fmt == RD_NPY || r->fmt == RD_FVECS ? r->rows : 0;
}

uint64_t rd_size(const rd_reader *r)
{
    return r->size;
}
