/*
 * out.c - everything the CLI prints for humans and scripts: --json output
 * (the server's data, value-exact), aligned tables, key/value listings and
 * progress reporting on stderr.
 *
 * Invariants: data goes to stdout, progress and messages to stderr, so
 * `vectordb-cli --json ... | jq` always sees clean JSON; a progress bar is
 * drawn only when stderr is a terminal, otherwise plain lines are printed at
 * most every interval_s (DVECDB_PROGRESS_INTERVAL, default 5 s).
 */
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void out_json(const json_t *v)
{
    /* Reals are written with 17 significant digits: they parse back to the
     * same doubles the server sent. */
    char *s = json_dumps(v, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
    if (s) {
        fputs(s, stdout);
        fputc('\n', stdout);
        free(s);
    }
}

json_t *out_get(const json_t *obj, const char *path)
{
    char alt[256];
    const char *p = path;
    while (*p) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        if (n >= sizeof alt)
            n = sizeof alt - 1;
        memcpy(alt, p, n);
        alt[n] = '\0';
        const json_t *cur = obj;
        char *save = NULL;
        for (char *k = strtok_r(alt, ".", &save); k && cur; k = strtok_r(NULL, ".", &save))
            cur = json_is_object(cur) ? json_object_get(cur, k) : NULL;
        if (cur && !json_is_null(cur))
            return (json_t *)cur;
        p = bar ? bar + 1 : p + n;
    }
    return NULL;
}

void out_value(const json_t *v, char *buf, size_t cap)
{
    if (!v || json_is_null(v)) {
        snprintf(buf, cap, "-");
    } else if (json_is_string(v)) {
        snprintf(buf, cap, "%s", json_string_value(v));
    } else if (json_is_integer(v)) {
        snprintf(buf, cap, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    } else if (json_is_real(v)) {
        snprintf(buf, cap, "%.6g", json_real_value(v));
    } else if (json_is_boolean(v)) {
        snprintf(buf, cap, "%s", json_is_true(v) ? "true" : "false");
    } else {
        char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
        if (!s) {
            snprintf(buf, cap, "?");
            return;
        }
        if (strlen(s) > 60 && cap > 64)
            snprintf(buf, cap, "%.57s...", s);
        else
            snprintf(buf, cap, "%s", s);
        free(s);
    }
}

void out_table(const json_t *rows, const out_col *cols, size_t n_cols)
{
    size_t n_rows = json_array_size(rows);
    if (n_rows == 0) {
        printf("(none)\n");
        return;
    }
    enum { CELL = 128 };
    char *cells = calloc(n_rows * n_cols, CELL);
    size_t *w = calloc(n_cols, sizeof *w);
    if (!cells || !w) {
        free(cells);
        free(w);
        return;
    }
    for (size_t c = 0; c < n_cols; c++)
        w[c] = strlen(cols[c].header);
    for (size_t r = 0; r < n_rows; r++)
        for (size_t c = 0; c < n_cols; c++) {
            char *cell = cells + (r * n_cols + c) * CELL;
            out_value(out_get(json_array_get(rows, r), cols[c].path), cell, CELL);
            if (strlen(cell) > w[c])
                w[c] = strlen(cell);
        }
    for (size_t c = 0; c < n_cols; c++)
        printf("%-*s%s", c + 1 < n_cols ? (int)w[c] : 0, cols[c].header, c + 1 < n_cols ? "  " : "\n");
    for (size_t r = 0; r < n_rows; r++)
        for (size_t c = 0; c < n_cols; c++)
            printf("%-*s%s", c + 1 < n_cols ? (int)w[c] : 0, cells + (r * n_cols + c) * CELL,
                   c + 1 < n_cols ? "  " : "\n");
    free(cells);
    free(w);
}

static void kv_rec(const json_t *obj, int indent)
{
    const char *k;
    json_t *v;
    size_t width = 0;
    json_object_foreach((json_t *)obj, k, v) if (strlen(k) > width) width = strlen(k);
    json_object_foreach((json_t *)obj, k, v)
    {
        if (json_is_object(v) && json_object_size(v) > 0) {
            printf("%*s%s:\n", indent, "", k);
            kv_rec(v, indent + 2);
        } else {
            char buf[512];
            out_value(v, buf, sizeof buf);
            printf("%*s%-*s  %s\n", indent, "", (int)width + 1, k, buf);
        }
    }
}

void out_kv(const json_t *obj)
{
    kv_rec(obj, 0);
}

/* Generic rendering: arrays of objects become a table over the union of the
 * first row's scalar keys; objects become key/value lines. */
void out_auto(const cli_ctx *ctx, json_t *data)
{
    (void)ctx;
    if (json_is_array(data) && json_array_size(data) && json_is_object(json_array_get(data, 0))) {
        out_col cols[16];
        size_t n = 0;
        const char *k;
        json_t *v;
        json_object_foreach(json_array_get(data, 0), k, v)
        {
            if (n < 16) {
                cols[n].header = k;
                cols[n].path = k;
                n++;
            }
        }
        out_table(data, cols, n);
    } else if (json_is_object(data)) {
        out_kv(data);
    } else if (json_is_array(data) && json_array_size(data) == 0) {
        printf("(none)\n");
    } else if (data) {
        char buf[1024];
        out_value(data, buf, sizeof buf);
        printf("%s\n", buf);
    }
}

/* Powers of ten 1e-31 .. 1e54 (index k + 31), each the double nearest to
 * it. Scaling by an inexact power costs ~1e-16 relative error, far below the
 * 5e-10 that 9 significant digits leave: the text still parses back to the
 * same float. */
static const double pow10_tab[86] = {
    1e-31, 1e-30, 1e-29, 1e-28, 1e-27, 1e-26, 1e-25, 1e-24, 1e-23, 1e-22, 1e-21, 1e-20, 1e-19, 1e-18, 1e-17,
    1e-16, 1e-15, 1e-14, 1e-13, 1e-12, 1e-11, 1e-10, 1e-9,  1e-8,  1e-7,  1e-6,  1e-5,  1e-4,  1e-3,  1e-2,
    1e-1,  1e0,   1e1,   1e2,   1e3,   1e4,   1e5,   1e6,   1e7,   1e8,   1e9,   1e10,  1e11,  1e12,  1e13,
    1e14,  1e15,  1e16,  1e17,  1e18,  1e19,  1e20,  1e21,  1e22,  1e23,  1e24,  1e25,  1e26,  1e27,  1e28,
    1e29,  1e30,  1e31,  1e32,  1e33,  1e34,  1e35,  1e36,  1e37,  1e38,  1e39,  1e40,  1e41,  1e42,  1e43,
    1e44,  1e45,  1e46,  1e47,  1e48,  1e49,  1e50,  1e51,  1e52,  1e53,  1e54};

/* "00" .. "99": decimal digits two at a time. */
static const char d2[201] = "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
                            "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
                            "8081828384858687888990919293949596979899";

size_t out_f32(char *buf, float f)
{
    char *o = buf;
    double d = f;
    if (signbit(f)) {
        *o++ = '-';
        d = -d;
    }
    if (d == 0.0 || !isfinite(d)) { /* callers pass finite values; 0 stays 0 */
        *o++ = '0';
        return (size_t)(o - buf);
    }
    /* Integer values below 1e9 (pixels, counts, quantized data) are printed
     * as integers: the same text as the general path below gives them, at a
     * third of its cost. */
    if (d < 1e9 && (double)(uint32_t)d == d) {
        uint32_t u = (uint32_t)d;
        char t[28];
        int i = 10;
        for (; u >= 100; u /= 100, i -= 2)
            memcpy(t + i - 2, d2 + 2 * (u % 100), 2);
        if (u >= 10) {
            memcpy(t + i - 2, d2 + 2 * u, 2);
            i -= 2;
        } else {
            t[--i] = (char)('0' + u);
        }
        memcpy(o, t + i, 16); /* fixed size: may write past the text (<= buf + 17) */
        return (size_t)(o - buf) + (size_t)(10 - i);
    }
    /* 9 significant digits (enough for any float32 to round-trip):
     * q in [1e8, 1e9) with d ~= q * 10^(e10 - 8). */
    uint32_t bits;
    memcpy(&bits, &f, 4);
    int e2 = (int)((bits >> 23) & 0xff) - 126; /* d in [2^(e2-1), 2^e2) */
    if (e2 == -126)
        frexp(d, &e2); /* subnormal */
    /* floor((e2 - 1) * log10(2)) with log10(2) ~ 1233 / 4096: a first guess
     * the loop below corrects by one when needed. */
    int e10 = ((e2 - 1) * 1233) >> 12;
    uint64_t q = 0;
    for (int tries = 0; tries < 4; tries++) {
        double m = d * pow10_tab[8 - e10 + 31];
        q = (uint64_t)(m + 0.5);
        if (q >= 1000000000u)
            e10++;
        else if (q < 100000000u)
            e10--;
        else
            break;
    }
    if (q >= 1000000000u)
        q = (q + 5) / 10; /* rounding carried into a tenth digit */
    /* The 9 digits, two at a time from a table (the ingest hot path formats
     * every component of every vector: the client must not be the
     * bottleneck); dig has slack so fixed-size copies below may over-read. */
    char dig[24] = {0};
    uint32_t q32 = (uint32_t)q, lo8 = q32 % 100000000u;
    uint32_t hi4 = lo8 / 10000u, lo4 = lo8 % 10000u;
    dig[0] = (char)('0' + q32 / 100000000u);
    memcpy(dig + 1, d2 + 2 * (hi4 / 100), 2);
    memcpy(dig + 3, d2 + 2 * (hi4 % 100), 2);
    memcpy(dig + 5, d2 + 2 * (lo4 / 100), 2);
    memcpy(dig + 7, d2 + 2 * (lo4 % 100), 2);
    int nd = 9;
    while (nd > 1 && dig[nd - 1] == '0')
        nd--;
    /* Fixed-size copies write past the text's end (never past buf + 24);
     * the returned length excludes those bytes. */
    if (e10 >= 0 && e10 < 9) { /* ddd.ddd or ddd000: dig holds the zeros */
        memcpy(o, dig, 16);
        o += e10 + 1;
        if (nd > e10 + 1) {
            *o++ = '.';
            memcpy(o, dig + e10 + 1, 8);
            o += nd - (e10 + 1);
        }
    } else if (e10 >= -5 && e10 < 0) { /* 0.000ddd */
        memcpy(o, "0.0000", 6);
        o += 2 + (-e10 - 1);
        memcpy(o, dig, 16);
        o += nd;
    } else { /* d.ddde-12 */
        *o++ = dig[0];
        if (nd > 1) {
            *o++ = '.';
            memcpy(o, dig + 1, 8);
            o += nd - 1;
        }
        *o++ = 'e';
        int x = e10;
        if (x < 0) {
            *o++ = '-';
            x = -x;
        }
        if (x >= 10)
            *o++ = (char)('0' + x / 10);
        *o++ = (char)('0' + x % 10);
    }
    return (size_t)(o - buf);
}

void out_commas(uint64_t v, char *buf, size_t cap)
{
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)v);
    size_t o = 0;
    for (int i = 0; i < n && o + 2 < cap; i++) {
        if (i && (n - i) % 3 == 0)
            buf[o++] = ',';
        buf[o++] = tmp[i];
    }
    buf[o] = '\0';
}

static void fmt_dur(double s, char *buf, size_t cap)
{
    if (!isfinite(s) || s < 0) {
        snprintf(buf, cap, "--:--");
        return;
    }
    if (s > 359999)
        s = 359999; /* 99:59:59 is plenty for an ETA */
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, cap, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, cap, "%ld:%02ld", t / 60, t % 60);
}

void out_progress_init(out_progress *p, const cli_ctx *ctx, const char *label, const char *unit)
{
    memset(p, 0, sizeof *p);
    p->label = label;
    p->unit = unit;
    p->tty = ctx->stderr_tty;
    p->start_s = dv_mono_s();
    p->last_s = -1e9;
    const char *iv = getenv("DVECDB_PROGRESS_INTERVAL");
    p->interval_s = iv ? atof(iv) : 5.0;
    if (p->interval_s <= 0)
        p->interval_s = 5.0;
}

void out_progress_show(out_progress *p, uint64_t count, uint64_t total, double frac, const char *extra, int force)
{
    double now = dv_mono_s();
    double min_gap = p->tty ? 0.1 : p->interval_s;
    if (!force && now - p->last_s < min_gap)
        return;
    p->last_s = now;
    double el = now - p->start_s;
    if (frac < 0 && total)
        frac = (double)count / (double)total;
    if (frac > 1)
        frac = 1;
    double rate = el > 0.2 ? (double)count / el : 0; /* no wild rates in the first instant */
    double eta = frac > 0 ? el * (1 - frac) / frac : -1;
    char c1[32], c2[32], e[32], ebuf[32];
    out_commas(count, c1, sizeof c1);
    out_commas(total, c2, sizeof c2);
    fmt_dur(eta, e, sizeof e);
    fmt_dur(el, ebuf, sizeof ebuf);
    if (p->tty) {
        char bar[31];
        int fill = frac >= 0 ? (int)(frac * 30) : 0;
        for (int i = 0; i < 30; i++)
            bar[i] = frac < 0 ? '.' : i < fill ? '#' : '-';
        bar[30] = '\0';
        fprintf(stderr, "\r%s [%s] %3.0f%% %s%s%s %s %.0f/s ETA %s%s%s\033[K", p->label, bar,
                frac >= 0 ? frac * 100 : 0.0, c1, total ? "/" : "", total ? c2 : "", p->unit, rate, e, extra ? " " : "",
                extra ? extra : "");
    } else {
        fprintf(stderr, "%s: %s%s%s %s", p->label, c1, total ? "/" : "", total ? c2 : "", p->unit);
        if (frac >= 0)
            fprintf(stderr, " (%.1f%%)", frac * 100);
        fprintf(stderr, ", %.0f %s/s, elapsed %s, ETA %s%s%s\n", rate, p->unit, ebuf, e, extra ? ", " : "",
                extra ? extra : "");
    }
    p->shown = 1;
    fflush(stderr);
}

void out_progress_end(out_progress *p)
{
    if (p->tty && p->shown)
        fputc('\n', stderr);
    p->shown = 0;
}
