/*
 * cmd_ingest.c - `vectordb-cli ingest`: resilient bulk loading.
 *
 * Pipeline: the main thread reads records (ingest_readers.c) into batches of
 * --batch-size records and queues them; --parallel worker threads, each with
 * its own keep-alive connection, embed text records (embed.c) and POST the
 * batch to /collections/NAME/vectors/batch. A finished batch is retired in
 * input order: the checkpoint position moves to the end of the longest
 * prefix of finished batches, and finished batches beyond it are listed as
 * acknowledged ranges.
 *
 * Invariants:
 *  - every record carries a stable id (its own, else ckpt_derive_id), and the
 *    server upserts, so a batch sent twice never duplicates;
 *  - the checkpoint is saved atomically after every finished batch and never
 *    covers a record the server has not acknowledged (or that was not
 *    written to the failed file): after a kill at most the batches in flight
 *    (one with --parallel 1) are sent again;
 *  - connection errors, timeouts, 408, 429 and 5xx are retried with full-
 *    jitter exponential backoff, never earlier than Retry-After; when the
 *    retries run out the ingest stops (nothing is marked failed) and can be
 *    resumed; other 4xx are split in halves down to the offending records,
 *    which are reported and written to the failed file;
 *  - a dimension mismatch (records or embedding model vs the collection) is
 *    found before anything is written for embeddings (a probe), and per
 *    record for vectors.
 */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <limits.h>
#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

typedef struct item {
    uint64_t recno, line;
    char *id;
    float *vec;
    uint32_t dim;
    char *text;
    json_t *metadata;
    char *fail; /* why this record failed (locally or by the server) */
} item;

typedef struct batch {
    uint64_t seq;
    uint64_t rec_start, rec_end; /* input records [start, end) covered */
    uint64_t off_end, line_end;  /* reader position after the batch */
    item *items;
    size_t n, cap;
    char *body; /* request body built by the reader thread, or NULL */
    size_t body_len;
    int done;
    struct batch *qnext; /* work queue */
    struct batch *lnext; /* unretired batches, in input order */
} batch;

typedef struct ingest {
    const cli_ctx *ctx;
    const char *input, *coll;
    size_t batch_size, embed_batch;
    unsigned parallel, max_retries;
    double base_s, cap_s;
    embed_cfg emb;
    int embed_on;
    uint32_t dim;
    char url[4096];
    char ckpt_path[PATH_MAX];
    ckpt_state ck;    /* the checkpoint being written (g->mu) */
    ckpt_range *skip; /* ranges acknowledged by an earlier run (main thread) */
    size_t n_skip;
    uint64_t base_sent, base_failed, base_retried;
    char failed_path[PATH_MAX];
    FILE *failed_f;
    FILE *retry_log;

    pthread_mutex_t mu;
    pthread_cond_t cv_q, cv_space;
    /* Checkpoint writes happen outside mu (their fsyncs would stall every
     * worker and the reader) but under ck_mu, newest version only. */
    pthread_mutex_t ck_mu;
    uint64_t ck_ver;     /* versions rendered (g->mu) */
    uint64_t ck_written; /* newest version on disk (ck_mu) */
    batch *q_head, *q_tail;
    size_t q_len;
    int q_closed;
    batch *l_head, *l_tail;

    uint64_t sent, failed, retried, skipped, done_records;
    uint64_t start_record, start_offset, total;
    int fatal;
    char fatal_msg[1024];
    out_progress prog;
    double t0;
} ingest;

typedef struct worker {
    ingest *g;
    http_conn *conn;
    uint64_t rng;
    pthread_t th;
} worker;

static void set_fatal(ingest *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_fatal(ingest *g, const char *fmt, ...)
{
    va_list ap;
    pthread_mutex_lock(&g->mu);
    if (!g->fatal) {
        va_start(ap, fmt);
        vsnprintf(g->fatal_msg, sizeof g->fatal_msg, fmt, ap);
        va_end(ap);
        __atomic_store_n(&g->fatal, 1, __ATOMIC_RELEASE); /* stopping() reads it unlocked */
    }
    pthread_cond_broadcast(&g->cv_space);
    pthread_cond_broadcast(&g->cv_q);
    pthread_mutex_unlock(&g->mu);
}

static int stopping(ingest *g)
{
    return __atomic_load_n(&g->fatal, __ATOMIC_ACQUIRE) || cli_interrupted;
}

static void item_free(item *it)
{
    free(it->id);
    free(it->vec);
    free(it->text);
    free(it->fail);
    json_decref(it->metadata);
}

static void batch_free(batch *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->n; i++)
        item_free(&b->items[i]);
    free(b->items);
    free(b->body);
    free(b);
}

/* ---- request bodies ------------------------------------------------- */

typedef struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

/* Room for n more bytes and a NUL; 0, or -1 (s->oom set). */
static int sb_reserve(sbuf *s, size_t n)
{
    if (s->oom)
        return -1;
    if (s->n + n + 1 > s->cap) {
        size_t nc = s->cap ? s->cap : 65536;
        while (nc < s->n + n + 1)
            nc *= 2;
        char *np = realloc(s->p, nc);
        if (!np) {
            s->oom = 1;
            return -1;
        }
        s->p = np;
        s->cap = nc;
    }
    return 0;
}

static void sb_put(sbuf *s, const char *p, size_t n)
{
    if (sb_reserve(s, n))
        return;
    memcpy(s->p + s->n, p, n);
    s->n += n;
    s->p[s->n] = '\0';
}

static void sb_puts(sbuf *s, const char *p)
{
    sb_put(s, p, strlen(p));
}

static void sb_json_string(sbuf *s, const char *str)
{
    static const char hex[] = "0123456789abcdef";
    sb_put(s, "\"", 1);
    const char *run = str;
    for (const unsigned char *p = (const unsigned char *)str; *p; p++) {
        if (*p >= 0x20 && *p != '"' && *p != '\\')
            continue;
        sb_put(s, run, (size_t)((const char *)p - run));
        char e[7] = {'\\', 'u', '0', '0', hex[*p >> 4], hex[*p & 15], 0};
        if (*p == '"' || *p == '\\') {
            e[1] = (char)*p;
            e[2] = 0;
        }
        sb_puts(s, e);
        run = (const char *)p + 1;
    }
    sb_puts(s, run);
    sb_put(s, "\"", 1);
}

/* Bytes reserved per vector component: out_f32's widest text (16), a comma,
 * and slack for the 24 bytes it may touch (at the last component). */
#define F32_ROOM 17
#define F32_SLACK 24

/* {"vectors":[{"id":..,"data":[..],"metadata":{..}}, ...]}. Floats are
 * written by out_f32 (at most 9 significant digits, which round-trips every
 * float32, ~8x faster than printf) straight into the buffer: this is the
 * client's hot loop, and the client must not be the bottleneck. The buffer
 * is sized up front for the widest floats, so it is not copied while it
 * grows (untouched pages of the slack cost nothing). */
static char *build_body(item **v, size_t n, size_t *len)
{
    sbuf s = {0};
    size_t want = 64;
    for (size_t i = 0; i < n; i++)
        want += 128 + (size_t)v[i]->dim * F32_ROOM + F32_SLACK;
    s.p = malloc(want);
    s.cap = s.p ? want : 0;
    sb_puts(&s, "{\"vectors\":[");
    for (size_t i = 0; i < n; i++) {
        item *it = v[i];
        sb_puts(&s, i ? ",{\"id\":" : "{\"id\":");
        sb_json_string(&s, it->id);
        sb_puts(&s, ",\"data\":[");
        if (sb_reserve(&s, (size_t)it->dim * F32_ROOM + F32_SLACK))
            break;
        char *o = s.p + s.n;
        for (uint32_t j = 0; j < it->dim; j++) {
            if (j)
                *o++ = ',';
            o += out_f32(o, it->vec[j]);
        }
        s.n = (size_t)(o - s.p);
        sb_puts(&s, "]");
        if (it->metadata) {
            char *m = json_dumps(it->metadata, JSON_COMPACT);
            if (!m) {
                s.oom = 1;
                break;
            }
            sb_puts(&s, ",\"metadata\":");
            sb_puts(&s, m);
            free(m);
        }
        sb_puts(&s, "}");
    }
    sb_puts(&s, "]}");
    if (s.oom) {
        free(s.p);
        return NULL;
    }
    *len = s.n;
    return s.p;
}

/* ---- retries -------------------------------------------------------- */

static void log_retry(ingest *g, const char *kind, uint64_t r0, uint64_t r1, unsigned attempt, const http_resp *r,
                      double delay)
{
    char why[300];
    http_describe(r, why, sizeof why);
    pthread_mutex_lock(&g->mu);
    g->retried++;
    if (g->retry_log) {
        json_t *o = json_pack("{s:I, s:s, s:[I,I], s:i, s:s, s:i, s:o, s:f}", "t_ms", (json_int_t)dv_now_ms(), "kind",
                              kind, "records", (json_int_t)r0, (json_int_t)r1, "attempt", (int)attempt + 1, "reason",
                              why, "status", (int)r->status, "retry_after_s",
                              r->retry_after_s >= 0 ? json_real(r->retry_after_s) : json_null(), "delay_s", delay);
        char *t = json_dumps(o, JSON_COMPACT);
        if (t) {
            fprintf(g->retry_log, "%s\n", t);
            fflush(g->retry_log);
            free(t);
        }
        json_decref(o);
    }
    if (g->ctx->verbose)
        fprintf(stderr, "\nretry %s records %llu..%llu: %s, attempt %u, waiting %.3f s\n", kind, (unsigned long long)r0,
                (unsigned long long)(r1 ? r1 - 1 : 0), why, attempt + 1, delay);
    pthread_mutex_unlock(&g->mu);
}

/* Sleep d seconds in slices so a fatal error or Ctrl-C ends the wait. */
static void wait_s(ingest *g, double d)
{
    double end = dv_mono_s() + d;
    for (double now = dv_mono_s(); now < end && !stopping(g); now = dv_mono_s())
        http_sleep_s(end - now > 0.05 ? 0.05 : end - now);
}

/* ---- embeddings ----------------------------------------------------- */

/* Embed n texts with retries. 0 ok (vecs filled), 1 permanently refused
 * (msg set: the records fail), -1 the ingest must stop (fatal set). */
static int embed_retry(worker *w, const char *const *texts, size_t n, float **vecs, uint64_t r0, uint64_t r1, char *msg,
                       size_t msg_cap)
{
    ingest *g = w->g;
    http_resp r = {0};
    for (unsigned attempt = 0;; attempt++) {
        if (stopping(g)) {
            http_resp_free(&r);
            return -1;
        }
        dv_err err = {0};
        uint32_t d = 0;
        dv_code rc = embed_once(w->conn, &g->emb, texts, n, vecs, &d, &r, &err);
        if (rc == DV_OK) {
            http_resp_free(&r);
            if (d != g->dim) {
                for (size_t i = 0; i < n; i++) {
                    free(vecs[i]);
                    vecs[i] = NULL;
                }
                set_fatal(g,
                          "the embedding model returns %u dimensions but collection '%s' has %u; "
                          "use a model with %u dimensions or a collection with %u",
                          d, g->coll, g->dim, g->dim, d);
                return -1;
            }
            return 0;
        }
        int transient = rc == DV_EINVAL || (rc == DV_EIO && (http_retryable(&r) || r.status == 408));
        if (!transient) {
            if (r.status == 401 || r.status == 403 || r.status == 404) {
                set_fatal(g, "%s; check --embed-url, --embed-model and the key in --embed-key-env", err.msg);
                http_resp_free(&r);
                return -1;
            }
            snprintf(msg, msg_cap, "%s", err.msg);
            http_resp_free(&r);
            return 1;
        }
        if (attempt >= g->max_retries) {
            set_fatal(g, "%s; gave up after %u retries (resume later with --resume)", err.msg, g->max_retries);
            http_resp_free(&r);
            return -1;
        }
        double delay = http_backoff_s(attempt, g->base_s, g->cap_s, r.retry_after_s, &w->rng);
        log_retry(g, "embed", r0, r1, attempt, &r, delay);
        wait_s(g, delay);
    }
}

/* Embed every text record of b that has no vector yet. 0, or -1 to stop. */
static int embed_batch(worker *w, batch *b)
{
    ingest *g = w->g;
    size_t m = 0;
    item **todo = malloc(b->n * sizeof *todo);
    const char **texts = malloc(b->n * sizeof *texts);
    float **vecs = calloc(b->n, sizeof *vecs);
    int rc = 0;
    if (!todo || !texts || !vecs) {
        set_fatal(g, "out of memory");
        rc = -1;
        goto done;
    }
    for (size_t i = 0; i < b->n; i++)
        if (!b->items[i].fail && !b->items[i].vec && b->items[i].text)
            todo[m++] = &b->items[i];
    for (size_t s = 0; s < m && rc == 0; s += g->embed_batch) {
        size_t k = m - s < g->embed_batch ? m - s : g->embed_batch;
        for (size_t i = 0; i < k; i++)
            texts[i] = todo[s + i]->text;
        char msg[600];
        int e = embed_retry(w, texts, k, vecs, todo[s]->recno, todo[s + k - 1]->recno + 1, msg, sizeof msg);
        if (e < 0) {
            rc = -1;
            break;
        }
        for (size_t i = 0; i < k; i++) {
            item *it = todo[s + i];
            if (e == 1) {
                it->fail = strdup(msg);
                continue;
            }
            it->vec = vecs[i];
            it->dim = g->dim;
            vecs[i] = NULL;
        }
    }
done:
    free(todo);
    free(texts);
    free(vecs);
    return rc;
}

/* ---- sending -------------------------------------------------------- */

/* POST the records v[0..n) with retries. A non-retryable 4xx splits the set
 * in halves until the offending records are alone; those get ->fail.
 * body/len: their request body if already built (taken over), else NULL.
 * 0 when every record is acknowledged or failed, -1 to stop the ingest. */
static int send_items(worker *w, item **v, size_t n, char *body, size_t len)
{
    ingest *g = w->g;
    if (n == 0) {
        free(body);
        return 0;
    }
    if (!body)
        body = build_body(v, n, &len);
    if (!body) {
        set_fatal(g, "out of memory building a request");
        return -1;
    }
    http_resp r = {0};
    int rc = 0;
    for (unsigned attempt = 0;; attempt++) {
        if (stopping(g)) {
            rc = -1;
            break;
        }
        dv_err err = {0};
        http_do(w->conn, "POST", g->url, g->ctx->api_key, body, len, g->ctx->timeout_s, &r, &err);
        json_t *doc = r.status ? json_loadb(r.body, r.body_len, 0, NULL) : NULL;
        const char *emsg = json_string_value(json_object_get(doc, "error"));
        const char *ecode = json_string_value(json_object_get(doc, "code"));
        char smsg[600];
        snprintf(smsg, sizeof smsg, "HTTP %ld%s%s%s%s", r.status, ecode ? " " : "", ecode ? ecode : "",
                 emsg ? ": " : "", emsg ? emsg : "");
        int ok = r.status >= 200 && r.status <= 299 && !json_is_false(json_object_get(doc, "success"));
        json_decref(doc);
        if (ok)
            break;
        if (r.status == 0 || http_retryable(&r) || r.status == 408) {
            if (attempt >= g->max_retries) {
                char why[300];
                http_describe(&r, why, sizeof why);
                set_fatal(g,
                          "records %llu..%llu: gave up after %u retries, last: %s%s%s; "
                          "nothing was lost: resume with --resume",
                          (unsigned long long)v[0]->recno, (unsigned long long)v[n - 1]->recno, g->max_retries, why,
                          r.status ? " " : "", r.status ? smsg : "");
                rc = -1;
                break;
            }
            double delay = http_backoff_s(attempt, g->base_s, g->cap_s, r.retry_after_s, &w->rng);
            log_retry(g, "batch", v[0]->recno, v[n - 1]->recno + 1, attempt, &r, delay);
            wait_s(g, delay);
            continue;
        }
        if (r.status == 401 || r.status == 403 || r.status == 404) {
            set_fatal(g, "server refused the batch: %s%s", smsg,
                      r.status == 404 ? " (was the collection deleted?)" : " (check --api-key / DVECDB_API_KEY)");
            rc = -1;
            break;
        }
        /* A bad record (or too large a request): find the culprits. */
        if (n > 1) {
            free(body);
            body = NULL;
            http_resp_free(&r);
            size_t h = n / 2;
            if (send_items(w, v, h, NULL, 0) < 0)
                return -1;
            return send_items(w, v + h, n - h, NULL, 0);
        }
        free(v[0]->fail);
        v[0]->fail = strdup(smsg);
        break;
    }
    free(body);
    http_resp_free(&r);
    return rc;
}

/* ---- retiring batches and the checkpoint ---------------------------- */

/* Append b's failed records to the failed file. Called with g->mu held.
 * XXX: the file is appended before the checkpoint moves past the batch, so a
 * kill in between lists those records again on --resume (duplicated lines,
 * never missing ones). */
static void write_failed(ingest *g, const batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        const item *it = &b->items[i];
        if (!it->fail)
            continue;
        if (!g->failed_f) {
            g->failed_f = fopen(g->failed_path, "a");
            if (!g->failed_f) {
                fprintf(stderr, "vectordb-cli: ingest: cannot open %s: %s\n", g->failed_path, strerror(errno));
                return;
            }
        }
        fprintf(g->failed_f, "%llu\t%llu\t%s\t%s\n", (unsigned long long)it->recno, (unsigned long long)it->line,
                it->id ? it->id : "-", it->fail);
    }
    if (g->failed_f)
        fflush(g->failed_f);
}

/* Called with g->mu held: move the checkpoint over every finished prefix
 * batch, list finished batches beyond it, render the document into *text
 * (write it with save_checkpoint after releasing g->mu); *ver is its
 * version. *text is NULL after an error (fatal set). */
static void advance_checkpoint(ingest *g, char **text, uint64_t *ver)
{
    while (g->l_head && g->l_head->done) {
        batch *b = g->l_head;
        g->ck.record = b->rec_end;
        g->ck.offset = b->off_end;
        g->ck.line = b->line_end;
        g->l_head = b->lnext;
        if (!g->l_head)
            g->l_tail = NULL;
        batch_free(b);
    }
    size_t n = 0;
    for (batch *b = g->l_head; b; b = b->lnext)
        n += b->done;
    free(g->ck.acked);
    g->ck.acked = n ? calloc(n, sizeof *g->ck.acked) : NULL;
    g->ck.n_acked = 0;
    for (batch *b = g->l_head; b && g->ck.acked; b = b->lnext)
        if (b->done)
            g->ck.acked[g->ck.n_acked++] = (ckpt_range){b->rec_start, b->rec_end};
    g->ck.sent = g->base_sent + g->sent;
    g->ck.failed = g->base_failed + g->failed;
    g->ck.retried = g->base_retried + g->retried;
    dv_err err = {0};
    *text = NULL;
    *ver = ++g->ck_ver;
    if (ckpt_render(&g->ck, text, &err) && !g->fatal) {
        snprintf(g->fatal_msg, sizeof g->fatal_msg, "%s", err.msg);
        __atomic_store_n(&g->fatal, 1, __ATOMIC_RELEASE);
    }
}

/* Write checkpoint version ver (from advance_checkpoint; g->mu not held)
 * unless a newer one is already on disk: versions are rendered in order
 * under g->mu, so a newer one covers every batch this one does. The caller
 * goes on only after this returns, so a batch is never followed by another
 * from the same worker before a checkpoint covering it is durable: a kill
 * re-sends at most the batches in flight. Takes over text. */
static void save_checkpoint(ingest *g, char *text, uint64_t ver)
{
    if (!text)
        return;
    dv_err err = {0};
    dv_code rc = DV_OK;
    pthread_mutex_lock(&g->ck_mu);
    if (ver > g->ck_written) {
        rc = ckpt_write(g->ckpt_path, text, &err);
        if (rc == DV_OK)
            g->ck_written = ver;
    }
    pthread_mutex_unlock(&g->ck_mu);
    free(text);
    if (rc != DV_OK)
        set_fatal(g, "%s", err.msg);
}

static void show_progress(ingest *g, int force)
{
    char extra[96];
    snprintf(extra, sizeof extra, "retries %llu, failed %llu", (unsigned long long)g->retried,
             (unsigned long long)g->failed);
    uint64_t size = g->ck.ident.size;
    double frac =
        size > g->start_offset ? (double)(g->ck.offset - g->start_offset) / (double)(size - g->start_offset) : 1.0;
    uint64_t total = g->total > g->start_record ? g->total - g->start_record : 0;
    out_progress_show(&g->prog, g->done_records, total, frac, extra, force);
}

static void finish_batch(ingest *g, batch *b)
{
    char *text;
    uint64_t ver;
    pthread_mutex_lock(&g->mu);
    b->done = 1;
    for (size_t i = 0; i < b->n; i++) {
        if (b->items[i].fail)
            g->failed++;
        else
            g->sent++;
    }
    g->done_records += b->rec_end - b->rec_start;
    write_failed(g, b);
    advance_checkpoint(g, &text, &ver);
    show_progress(g, 0);
    pthread_mutex_unlock(&g->mu);
    save_checkpoint(g, text, ver);
}

static int process_batch(worker *w, batch *b)
{
    ingest *g = w->g;
    if (g->embed_on && embed_batch(w, b) < 0)
        return -1;
    item **v = malloc((b->n ? b->n : 1) * sizeof *v);
    if (!v) {
        set_fatal(g, "out of memory");
        return -1;
    }
    size_t m = 0;
    for (size_t i = 0; i < b->n; i++)
        if (!b->items[i].fail)
            v[m++] = &b->items[i];
    int rc = send_items(w, v, m, b->body, b->body_len);
    b->body = NULL;
    free(v);
    return rc;
}

/* Without embeddings every record's vector is known when the reader closes
 * the batch: build the request body there, so the workers' time between a
 * response and the next request is not spent formatting floats (the reader
 * works while they wait on the server). On failure the worker builds it. */
static void prebuild_body(ingest *g, batch *b)
{
    if (g->embed_on)
        return;
    item **v = malloc((b->n ? b->n : 1) * sizeof *v);
    if (!v)
        return;
    size_t m = 0;
    for (size_t i = 0; i < b->n; i++)
        if (!b->items[i].fail)
            v[m++] = &b->items[i];
    if (m)
        b->body = build_body(v, m, &b->body_len);
    free(v);
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    ingest *g = w->g;
    for (;;) {
        pthread_mutex_lock(&g->mu);
        while (!g->q_head && !g->q_closed)
            pthread_cond_wait(&g->cv_q, &g->mu);
        batch *b = g->q_head;
        if (!b) {
            pthread_mutex_unlock(&g->mu);
            return NULL;
        }
        g->q_head = b->qnext;
        if (!g->q_head)
            g->q_tail = NULL;
        g->q_len--;
        pthread_cond_signal(&g->cv_space);
        pthread_mutex_unlock(&g->mu);
        /* After a fatal error the queue is drained without sending: those
         * batches stay unacknowledged and are sent again on --resume. */
        if (stopping(g) || process_batch(w, b) < 0)
            continue;
        finish_batch(g, b);
    }
}

/* Queue b (blocks while --parallel batches wait). 0, or -1 when stopping. */
static int enqueue(ingest *g, batch *b)
{
    pthread_mutex_lock(&g->mu);
    while (g->q_len >= g->parallel && !g->fatal && !cli_interrupted)
        pthread_cond_wait(&g->cv_space, &g->mu);
    if (g->fatal || cli_interrupted) {
        pthread_mutex_unlock(&g->mu);
        batch_free(b);
        return -1;
    }
    if (g->l_tail)
        g->l_tail->lnext = b;
    else
        g->l_head = b;
    g->l_tail = b;
    if (g->q_tail)
        g->q_tail->qnext = b;
    else
        g->q_head = b;
    g->q_tail = b;
    g->q_len++;
    pthread_cond_signal(&g->cv_q);
    pthread_mutex_unlock(&g->mu);
    return 0;
}

static int in_skip(const ingest *g, uint64_t recno)
{
    for (size_t i = 0; i < g->n_skip; i++)
        if (recno >= g->skip[i].start && recno < g->skip[i].end)
            return 1;
    return 0;
}

static char *xfmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xfmt(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return strdup(buf);
}

/* Turn a reader record into a batch item; decides local failures. */
static void take_record(ingest *g, rd_record *rec, item *it)
{
    memset(it, 0, sizeof *it);
    it->recno = rec->recno;
    it->line = rec->line;
    if (rec->id) {
        it->id = rec->id;
        rec->id = NULL;
    } else {
        char uuid[37];
        ckpt_derive_id(&g->ck.ident, rec->recno, uuid);
        it->id = strdup(uuid);
    }
    if (rec->error) {
        it->fail = rec->error;
        rec->error = NULL;
        return;
    }
    it->vec = rec->vec;
    it->dim = rec->dim;
    it->text = rec->text;
    it->metadata = rec->metadata;
    rec->vec = NULL;
    rec->text = NULL;
    rec->metadata = NULL;
    if (strlen(it->id) == 0 || strlen(it->id) > DV_ID_MAX)
        it->fail = xfmt("id must be 1..%d bytes", DV_ID_MAX);
    else if (it->vec && it->dim != g->dim)
        it->fail = xfmt("vector has %u dimensions, collection '%s' has %u", it->dim, g->coll, g->dim);
    else if (!it->vec && it->text && !g->embed_on)
        it->fail = xfmt("text record without a vector: pass --embed-url to embed it");
    if (!it->fail && it->text) {
        /* The text is kept with its vector, under metadata "text". */
        if (!it->metadata)
            it->metadata = json_object();
        json_object_set_new(it->metadata, "text", json_string(it->text));
    }
}

static batch *batch_new(uint64_t seq, uint64_t rec_start, size_t cap)
{
    batch *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->items = calloc(cap, sizeof *b->items);
    if (!b->items) {
        free(b);
        return NULL;
    }
    b->cap = cap;
    b->seq = seq;
    b->rec_start = b->rec_end = rec_start;
    return b;
}

/* Collection dimension from GET /collections/NAME. */
static int fetch_dim(ingest *g)
{
    char path[512] = "/collections/", what[160];
    http_escape(g->coll, path, sizeof path);
    snprintf(what, sizeof what, "ingest into '%s'", g->coll);
    api_res res;
    if (api_request(g->ctx, "GET", path, NULL, &res) != DV_OK) {
        if (res.status == 404)
            fprintf(stderr,
                    "vectordb-cli: %s: collection '%s' does not exist\n"
                    "  next: create it first: vectordb-cli collections create %s --dim N\n",
                    what, g->coll, g->coll);
        else
            api_report(g->ctx, what, &res);
        api_res_free(&res);
        return CLI_FAIL;
    }
    json_t *d = out_get(res.data, "dimension|config.dimension|dim|config.dim");
    if (!json_is_integer(d) || json_integer_value(d) <= 0) {
        fprintf(stderr, "vectordb-cli: %s: the server's collection info has no dimension\n", what);
        api_res_free(&res);
        return CLI_FAIL;
    }
    g->dim = (uint32_t)json_integer_value(d);
    api_res_free(&res);
    return CLI_OK;
}

static void report(ingest *g, int complete)
{
    double el = dv_mono_s() - g->t0;
    if (g->ctx->json) {
        json_t *o =
            json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:b, s:f, s:s, s:s, s:I}", "input", g->input, "collection",
                      g->coll, "sent", (json_int_t)g->sent, "skipped", (json_int_t)g->skipped, "retried",
                      (json_int_t)g->retried, "failed", (json_int_t)g->failed, "complete", complete, "elapsed_s", el,
                      "checkpoint", g->ckpt_path, "failed_file", g->failed_path, "position", (json_int_t)g->ck.record);
        if (g->fatal)
            json_object_set_new(o, "error", json_string(g->fatal_msg));
        out_json(o);
        json_decref(o);
    }
    char a[32], b[32], c[32], d[32];
    out_commas(g->sent, a, sizeof a);
    out_commas(g->skipped, b, sizeof b);
    out_commas(g->retried, c, sizeof c);
    out_commas(g->failed, d, sizeof d);
    fprintf(stderr, "ingest %s: %s sent, %s skipped, %s retried, %s failed in %.1f s (%.0f vectors/s)\n",
            complete ? "complete" : "stopped", a, b, c, d, el, el > 0 ? (double)g->sent / el : 0.0);
    if (g->failed)
        fprintf(stderr, "  failed record numbers (record, line, id, reason) are in %s\n", g->failed_path);
}

int cmd_ingest(const cli_ctx *ctx, const cli_cmd *self, int argc, char **argv)
{
    const char *coll = NULL, *fmt_s = NULL, *bs = NULL, *par = NULL, *mr = NULL, *rb = NULL, *rcap = NULL, *ckpt = NULL,
               *failed = NULL, *rlog = NULL, *eurl = NULL, *emodel = NULL, *ekey = NULL, *ebs = NULL;
    int resume = 0, fresh = 0;
    char *pos[1];
    cli_opt opts[] = {{"--collection", "-c", OPT_STR, &coll},
                      {"--format", NULL, OPT_STR, &fmt_s},
                      {"--batch-size", NULL, OPT_STR, &bs},
                      {"--parallel", "-p", OPT_STR, &par},
                      {"--max-retries", NULL, OPT_STR, &mr},
                      {"--retry-base", NULL, OPT_STR, &rb},
                      {"--retry-cap", NULL, OPT_STR, &rcap},
                      {"--checkpoint", NULL, OPT_STR, &ckpt},
                      {"--resume", NULL, OPT_FLAG, &resume},
                      {"--fresh", NULL, OPT_FLAG, &fresh},
                      {"--failed-file", NULL, OPT_STR, &failed},
                      {"--retry-log", NULL, OPT_STR, &rlog},
                      {"--embed-url", NULL, OPT_STR, &eurl},
                      {"--embed-model", NULL, OPT_STR, &emodel},
                      {"--embed-key-env", NULL, OPT_STR, &ekey},
                      {"--embed-batch-size", NULL, OPT_STR, &ebs},
                      {0}};
    int rc = cli_parse(self, argc, argv, opts, pos, 1, 1, NULL);
    if (rc)
        return rc;
    ingest *g = calloc(1, sizeof *g);
    if (!g)
        return CLI_FAIL;
    g->ctx = ctx;
    g->input = pos[0];
    g->coll = coll;
    uint64_t v;
    g->batch_size = 256;
    g->parallel = 2;
    g->max_retries = 8;
    g->base_s = 0.1;
    g->cap_s = 10;
    rd_format fmt = RD_AUTO;
    rd_reader *rd = NULL;
    int lock_fd = -1;
    worker *ws = NULL;
    unsigned n_started = 0;
    rd_record rec = {0};
    batch *cur = NULL;
    dv_err err = {0};
    pthread_mutex_init(&g->mu, NULL);
    pthread_mutex_init(&g->ck_mu, NULL);
    pthread_cond_init(&g->cv_q, NULL);
    pthread_cond_init(&g->cv_space, NULL);

    if (!coll) {
        rc = cli_usage_error(self, "missing --collection");
        goto out;
    }
    if (resume && fresh) {
        rc = cli_usage_error(self, "--resume and --fresh exclude each other");
        goto out;
    }
    if (fmt_s && (int)(fmt = rd_format_parse(fmt_s)) < 0) {
        rc = cli_usage_error(self, "--format: expected auto, jsonl, csv, npy or fvecs");
        goto out;
    }
    if (bs && (rc = cli_u64(self, "--batch-size", bs, 1, 100000, &v)))
        goto out;
    if (bs)
        g->batch_size = v;
    if (par && (rc = cli_u64(self, "--parallel", par, 1, 64, &v)))
        goto out;
    if (par)
        g->parallel = (unsigned)v;
    if (mr && (rc = cli_u64(self, "--max-retries", mr, 0, 1000, &v)))
        goto out;
    if (mr)
        g->max_retries = (unsigned)v;
    if (rb && (rc = cli_double(self, "--retry-base", rb, 0.0, 60, &g->base_s)))
        goto out;
    if (rcap && (rc = cli_double(self, "--retry-cap", rcap, 0.0, 3600, &g->cap_s)))
        goto out;
    g->embed_batch = g->batch_size;
    if (ebs && (rc = cli_u64(self, "--embed-batch-size", ebs, 1, 100000, &v)))
        goto out;
    if (ebs)
        g->embed_batch = v;
    if ((emodel || ekey || ebs) && !eurl) {
        rc = cli_usage_error(self, "--embed-model/--embed-key-env/--embed-batch-size need "
                                   "--embed-url");
        goto out;
    }
    if (eurl) {
        g->embed_on = 1;
        g->emb.url = embed_endpoint(eurl);
        g->emb.model = emodel;
        g->emb.timeout_s = ctx->timeout_s;
        if (ekey) {
            g->emb.key = getenv(ekey);
            if (!g->emb.key || !*g->emb.key) {
                rc = cli_usage_error(self, "--embed-key-env %s: the variable is not set", ekey);
                goto out;
            }
        }
    }
    snprintf(g->ckpt_path, sizeof g->ckpt_path, "%s", ckpt ? ckpt : "");
    if (!ckpt)
        snprintf(g->ckpt_path, sizeof g->ckpt_path, "%s.dvecdb-ckpt", g->input);
    if (failed)
        snprintf(g->failed_path, sizeof g->failed_path, "%s", failed);
    else
        snprintf(g->failed_path, sizeof g->failed_path, "%s.dvecdb-failed", g->input);
    rc = CLI_FAIL;

    if (rd_open(g->input, fmt, &rd, &err)) {
        fprintf(stderr, "vectordb-cli: %s\n", err.msg);
        goto out;
    }
    ckpt_ident now;
    if (ckpt_ident_of(g->input, &now, &err)) {
        fprintf(stderr, "vectordb-cli: %s\n", err.msg);
        goto out;
    }

    /* One ingest per checkpoint at a time: two would interleave their
     * positions. The lock dies with the process (kill -9 included). */
    {
        char lp[PATH_MAX + 8];
        snprintf(lp, sizeof lp, "%s.lock", g->ckpt_path);
        lock_fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (lock_fd < 0 || flock(lock_fd, LOCK_EX | LOCK_NB)) {
            fprintf(stderr,
                    "vectordb-cli: ingest: %s: %s\n  next: another ingest uses this checkpoint; wait "
                    "for it or pass --checkpoint\n",
                    lp, lock_fd < 0 ? strerror(errno) : "locked");
            goto out;
        }
        /* Temp files of runs killed in the middle of a checkpoint write. */
        char pat[PATH_MAX + 16];
        snprintf(pat, sizeof pat, "%s.tmp.*", g->ckpt_path);
        glob_t gl;
        if (glob(pat, GLOB_NOSORT, NULL, &gl) == 0) {
            for (size_t i = 0; i < gl.gl_pathc; i++)
                unlink(gl.gl_pathv[i]);
            globfree(&gl);
        }
    }

    /* The checkpoint decides where to start. */
    dv_code lc = ckpt_load(g->ckpt_path, &g->ck, &err);
    if (lc == DV_OK && !resume && !fresh) {
        fprintf(stderr,
                "vectordb-cli: ingest: a checkpoint from an earlier run exists: %s\n"
                "  next: add --resume to continue where it stopped, or --fresh to start over\n",
                g->ckpt_path);
        ckpt_state_free(&g->ck);
        goto out;
    }
    if (lc == DV_ECORRUPT && !fresh) {
        fprintf(stderr, "vectordb-cli: %s\n  next: remove it or pass --fresh to start over\n", err.msg);
        goto out;
    }
    if (lc == DV_OK && resume) {
        if (ckpt_check(&g->ck, &now, g->coll, &err)) {
            fprintf(stderr,
                    "vectordb-cli: %s\n  next: pass the same input and collection, or "
                    "--checkpoint another file, or --fresh to start over\n",
                    err.msg);
            ckpt_state_free(&g->ck);
            goto out;
        }
        g->ck.ident = now; /* the same content; the path may have moved */
        if (g->ck.complete) {
            fprintf(stderr, "ingest: %s was already ingested completely into '%s' (checkpoint %s)\n", g->input, g->coll,
                    g->ckpt_path);
            if (ctx->json)
                report(g, 1);
            rc = CLI_OK;
            goto out;
        }
        if (rd_seek(rd, g->ck.offset, g->ck.record, g->ck.line, &err)) {
            fprintf(stderr, "vectordb-cli: %s\n", err.msg);
            goto out;
        }
        /* The workers rewrite g->ck.acked under g->mu; the reader keeps its
         * own copy of the ranges to skip. */
        if (g->ck.n_acked) {
            g->skip = malloc(g->ck.n_acked * sizeof *g->skip);
            if (!g->skip)
                goto out;
            memcpy(g->skip, g->ck.acked, g->ck.n_acked * sizeof *g->skip);
            g->n_skip = g->ck.n_acked;
        }
        g->base_sent = g->ck.sent;
        g->base_failed = g->ck.failed;
        g->base_retried = g->ck.retried;
        g->skipped = g->ck.record;
        fprintf(stderr, "ingest: resuming at record %llu (%zu acknowledged ranges beyond it)\n",
                (unsigned long long)g->ck.record, g->ck.n_acked);
    } else {
        if (lc == DV_OK)
            ckpt_state_free(&g->ck);
        memset(&g->ck, 0, sizeof g->ck);
        g->ck.ident = now;
        snprintf(g->ck.collection, sizeof g->ck.collection, "%s", g->coll);
        g->ck.offset = rd_tell(rd);
        g->ck.line = rd_line(rd);
        if (resume)
            fprintf(stderr, "ingest: no checkpoint at %s: starting from the beginning\n", g->ckpt_path);
        /* A stale failed-records file from an earlier run would mislead. */
        unlink(g->failed_path);
    }
    g->start_record = g->ck.record;
    g->start_offset = g->ck.offset;
    g->total = rd_total(rd);

    if (fetch_dim(g))
        goto out;
    {
        char path[512] = "/collections/";
        http_escape(g->coll, path, sizeof path);
        snprintf(g->url, sizeof g->url, "%s%s/vectors/batch", ctx->url, path);
    }
    if (rlog) {
        g->retry_log = fopen(rlog, "a");
        if (!g->retry_log) {
            fprintf(stderr, "vectordb-cli: ingest: cannot open --retry-log %s: %s\n", rlog, strerror(errno));
            goto out;
        }
    }

    /* Request bodies (MiBs each) are built by the reader and freed by the
     * workers: keep such blocks in the heap for reuse instead of an mmap and
     * munmap per body, whose page faults cost more than the formatting. */
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
    ws = calloc(g->parallel, sizeof *ws);
    if (!ws)
        goto out;
    uint64_t seed = (uint64_t)dv_now_ms() ^ ((uint64_t)getpid() << 32);
    for (unsigned i = 0; i < g->parallel; i++) {
        ws[i].g = g;
        ws[i].rng = seed + 0x9E3779B97F4A7C15ull * (i + 1);
        if (http_conn_create(&ws[i].conn, &err)) {
            fprintf(stderr, "vectordb-cli: %s\n", err.msg);
            goto out;
        }
        /* Keep-alive: with a fresh connection per batch the server (a
         * thread per connection) ran at 0.7x the throughput it reached with
         * keep-alive (docs/cli.md, Performance). Every re-send stays ours
         * (see http.c). */
        http_conn_no_resend(ws[i].conn);
    }

    /* Before anything is written: does the model's dimension fit? */
    if (g->embed_on) {
        const char *probe = "dimension probe";
        float *pv = NULL;
        char msg[600] = "";
        int e = embed_retry(&ws[0], &probe, 1, &pv, 0, 0, msg, sizeof msg);
        free(pv);
        if (e != 0) {
            fprintf(stderr, "vectordb-cli: ingest: embeddings endpoint %s: %s\n", g->emb.url,
                    e > 0 ? msg : g->fatal_msg);
            goto out;
        }
    }

    cli_catch_signals();
    g->t0 = dv_mono_s();
    out_progress_init(&g->prog, ctx, "ingest", "records");
    for (unsigned i = 0; i < g->parallel; i++) {
        if (pthread_create(&ws[i].th, NULL, worker_main, &ws[i])) {
            set_fatal(g, "cannot start worker threads");
            break;
        }
        n_started++;
    }

    uint64_t seq = 0;
    int eof = 0;
    while (!stopping(g)) {
        int k = rd_next(rd, &rec, &err);
        if (k < 0) {
            set_fatal(g, "%s", err.msg);
            break;
        }
        if (k == 0) {
            eof = 1;
            break;
        }
        if (!cur && !(cur = batch_new(seq++, rec.recno, g->batch_size))) {
            set_fatal(g, "out of memory");
            break;
        }
        if (in_skip(g, rec.recno)) {
            __atomic_fetch_add(&g->skipped, 1, __ATOMIC_RELAXED);
        } else {
            take_record(g, &rec, &cur->items[cur->n++]);
        }
        cur->rec_end = rec.recno + 1;
        cur->off_end = rd_tell(rd);
        cur->line_end = rd_line(rd);
        if (cur->n >= g->batch_size || cur->rec_end - cur->rec_start >= 4 * g->batch_size) {
            batch *b = cur;
            cur = NULL;
            prebuild_body(g, b);
            if (enqueue(g, b) < 0)
                break;
        }
    }
    if (eof && cur && !stopping(g)) {
        batch *b = cur;
        cur = NULL;
        prebuild_body(g, b);
        enqueue(g, b);
    }
    pthread_mutex_lock(&g->mu);
    g->q_closed = 1;
    pthread_cond_broadcast(&g->cv_q);
    pthread_mutex_unlock(&g->mu);
    for (unsigned i = 0; i < n_started; i++)
        pthread_join(ws[i].th, NULL);
    n_started = 0;

    pthread_mutex_lock(&g->mu);
    show_progress(g, 1);
    out_progress_end(&g->prog);
    int complete = eof && !g->fatal && !cli_interrupted && !g->l_head;
    char *ck_text = NULL;
    uint64_t ck_ver = 0;
    if (complete) {
        g->ck.complete = 1;
        advance_checkpoint(g, &ck_text, &ck_ver);
    }
    pthread_mutex_unlock(&g->mu);
    save_checkpoint(g, ck_text, ck_ver);
    report(g, complete && !g->fatal);
    if (g->fatal) {
        fprintf(stderr, "vectordb-cli: ingest stopped: %s\n", g->fatal_msg);
        fprintf(stderr, "  next: fix the cause, then resume: vectordb-cli ingest %s --collection %s --resume\n",
                g->input, g->coll);
        rc = CLI_FAIL;
    } else if (!complete) {
        fprintf(stderr,
                "vectordb-cli: ingest interrupted at record %llu\n"
                "  next: resume: vectordb-cli ingest %s --collection %s --resume\n",
                (unsigned long long)g->ck.record, g->input, g->coll);
        rc = CLI_FAIL;
    } else if (g->failed) {
        fprintf(stderr,
                "vectordb-cli: ingest: %llu records failed (listed in %s)\n"
                "  next: fix those records and ingest them again\n",
                (unsigned long long)g->failed, g->failed_path);
        rc = CLI_FAIL;
    } else {
        rc = CLI_OK;
    }

out:
    if (n_started) {
        set_fatal(g, "stopped");
        pthread_mutex_lock(&g->mu);
        g->q_closed = 1;
        pthread_cond_broadcast(&g->cv_q);
        pthread_mutex_unlock(&g->mu);
        for (unsigned i = 0; i < n_started; i++)
            pthread_join(ws[i].th, NULL);
    }
    batch_free(cur);
    while (g->l_head) {
        batch *b = g->l_head;
        g->l_head = b->lnext;
        batch_free(b);
    }
    for (unsigned i = 0; ws && i < g->parallel; i++)
        http_conn_destroy(ws[i].conn);
    free(ws);
    rd_record_clear(&rec);
    rd_close(rd);
    ckpt_state_free(&g->ck);
    free(g->skip);
    if (g->failed_f)
        fclose(g->failed_f);
    if (g->retry_log)
        fclose(g->retry_log);
    free((char *)g->emb.url);
    if (lock_fd >= 0)
        close(lock_fd);
    pthread_mutex_destroy(&g->mu);
    pthread_mutex_destroy(&g->ck_mu);
    pthread_cond_destroy(&g->cv_q);
    pthread_cond_destroy(&g->cv_space);
    free(g);
    return rc;
}

const cli_cmd cmds_ingest[] = {
    {NULL, "ingest", cmd_ingest, "bulk-load vectors or texts, resumable", "ingest FILE --collection NAME [options]",
     "Reads JSONL, CSV, .npy (2-D float32/float64) or .fvecs and upserts the records\n"
     "in batches. Retries connection errors, timeouts, 429 and 5xx with exponential\n"
     "backoff and full jitter (honouring Retry-After); writes a checkpoint after every\n"
     "acknowledged batch, so an interrupted ingest continues with --resume and never\n"
     "duplicates (records without an id get a stable id derived from the input).\n\n"
     "input formats (see docs/cli.md):\n"
     "  JSONL   one object per line: {\"id\"?, \"vector\": [..] | \"text\": \"..\", \"metadata\"?: {..}}\n"
     "  CSV     header 'id,vector,text,metadata' (any subset) or 'id,x1,x2,..'; no header:\n"
     "          all columns are floats (first column is the id if it is not a number)\n"
     "  .npy    2-D float32/float64; .fvecs (int32 dim + floats per record)\n\n"
     "options:\n"
     "  -c, --collection NAME     target collection (must exist) (required)\n"
     "  --format F                auto (default, from the extension), jsonl, csv, npy, fvecs\n"
     "  --batch-size N            records per request (default 256)\n"
     "  -p, --parallel N          requests in flight (default 2)\n"
     "  --max-retries N           retries per request (default 8)\n"
     "  --retry-base SEC          backoff base (default 0.1)\n"
     "  --retry-cap SEC           backoff cap (default 10)\n"
     "  --checkpoint PATH         checkpoint file (default FILE.dvecdb-ckpt)\n"
     "  --resume                  continue from the checkpoint\n"
     "  --fresh                   ignore an existing checkpoint and start over\n"
     "  --failed-file PATH        failed record numbers (default FILE.dvecdb-failed)\n"
     "  --retry-log PATH          append one JSON line per retry (delay, reason)\n"
     "  --embed-url URL           OpenAI-compatible embeddings endpoint for text records\n"
     "  --embed-model NAME        model name sent to the endpoint\n"
     "  --embed-key-env VAR       environment variable holding the endpoint's API key\n"
     "  --embed-batch-size N      texts per embeddings request (default: --batch-size)\n"
     "exit code 0 when every record was stored; 1 when some failed (see the failed\n"
     "file) or the ingest stopped (resume with --resume).\n\n"
     "examples:\n"
     "  vectordb-cli ingest vectors.npy --collection docs --parallel 4\n"
     "  vectordb-cli ingest docs.jsonl -c docs --embed-url http://127.0.0.1:11434 \\\n"
     "      --embed-model nomic-embed-text --resume\n"},
    {0},
};
