/* fuzz_legacy.c - libFuzzer target for the parser of the original d-vecDB's
 * vectors.bin (src/import_legacy.c: bincode records with untagged metadata,
 * the riskiest parser of outside bytes we have).
 *
 * Input: byte 0 = expected dimension (0: take it from the first record);
 * the rest is the file. legacy_import runs against this file's own
 * imp_get / imp_sink (import.c's need a database):
 *  - imp_get hands out a fresh malloc'd copy of the requested bytes and
 *    frees the previous one, so a view used after the next imp_get (the
 *    contract says views die then) is a use-after-free that ASan reports;
 *  - the sink checks every decoded point: an id of 1..DV_ID_MAX bytes, dim
 *    finite floats, and metadata that the engine accepts (payload_parse OK,
 *    or DV_ELIMIT for size/depth: never malformed JSON).
 * Checked too: an error carries a message; the dimension is the expected
 * one (or the first header's). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "payload.h"
#include "recovery_int.h"

struct imp_sink {
    uint32_t dim;
    uint64_t n_added;
};

static const uint8_t *file_data;

const uint8_t *imp_get(imp_reader *r, uint64_t off, size_t n)
{
    if (off > r->size || n > r->size - off)
        return NULL;
    free(r->buf);
    r->buf = malloc(n ? n : 1);
    if (!r->buf)
        abort();
    if (n)
        memcpy(r->buf, file_data + off, n);
    r->base = off;
    r->len = n;
    r->cap = n;
    return r->buf;
}

dv_code imp_sink_add(imp_sink *s, const char *id, const float *v, const char *meta, size_t meta_len, dv_err *err)
{
    (void)err;
    if (!id || !id[0] || strlen(id) > DV_ID_MAX || !v)
        abort();
    for (uint32_t i = 0; i < s->dim; i++)
        if (!isfinite(v[i]))
            abort();
    if (meta) {
        payload *p = NULL;
        dv_err e = {0};
        dv_code rc = payload_parse(meta, meta_len, &p, &e);
        if (rc == DV_OK)
            payload_free(p);
        else if (rc != DV_ELIMIT) {
            fprintf(stderr, "fuzz_legacy: import produced metadata the engine refuses: %s\n  %.*s\n", e.msg,
                    (int)(meta_len > 400 ? 400 : meta_len), meta);
            abort();
        }
    }
    s->n_added++;
    return DV_OK;
}

dv_code imp_sink_progress(imp_sink *s, const char *phase, uint64_t done, uint64_t total, dv_err *err)
{
    (void)s, (void)phase, (void)done, (void)total, (void)err;
    return DV_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint32_t dim = data[0];
    file_data = data + 1;
    imp_reader r;
    memset(&r, 0, sizeof r);
    r.path = "vectors.bin";
    r.fd = -1;
    r.size = size - 1;
    imp_sink sink = {0, 0};
    legacy_stats st;
    memset(&st, 0, sizeof st);
    dv_err err = {0};
    /* The sink needs the dimension before the first point: a header-given
     * dim is read the same way legacy_import does (u64 at offset 24). */
    sink.dim = dim;
    if (!dim && size - 1 >= 32) {
        uint64_t d = 0;
        for (int i = 7; i >= 0; i--)
            d = d << 8 | data[1 + 24 + i];
        sink.dim = d <= DV_DIM_MAX ? (uint32_t)d : 0;
    }
    dv_code rc = legacy_import(&r, &dim, &sink, &st, &err);
    free(r.buf);
    if (rc != DV_OK) {
        if (err.code != rc || !err.msg[0])
            abort();
        return 0;
    }
    if (getenv("FUZZ_DEBUG"))
        fprintf(stderr, "fuzz_legacy: dim %u (sink %u), imported %llu, added %llu, skipped %llu, ambiguous %llu\n",
                dim, sink.dim, (unsigned long long)st.imported, (unsigned long long)sink.n_added,
                (unsigned long long)st.skipped, (unsigned long long)st.meta_ambiguous);
    if (dim == 0 || dim > DV_DIM_MAX || dim != sink.dim)
        abort();
    return 0;
}
