/*
 * cli.h - shared declarations of vectordb-cli, the command-line client of
 * vectordb-server.
 *
 * The CLI speaks only HTTP (libcurl) and JSON (jansson) to the server; it
 * never calls the engine. From the engine's tree it borrows only the dv_err /
 * dv_code error carrier (src/err.c), so its messages follow the house style.
 *
 * Exit codes, everywhere: 0 ok, 1 the operation failed (the message says what
 * and what to do next), 2 usage error.
 */
#ifndef DVC_CLI_H
#define DVC_CLI_H

#include <signal.h>
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "err.h"

#define CLI_OK 0
#define CLI_FAIL 1
#define CLI_USAGE 2
#define CLI_HELP_SHOWN 3 /* cli_parse printed --help: the command exits 0 */

#define CLI_DEFAULT_URL "http://127.0.0.1:8080"

/* Global options, parsed once in main.c and read-only afterwards. */
typedef struct cli_ctx {
    const char *url;     /* base URL, no trailing slash */
    const char *api_key; /* NULL: no Authorization header */
    double timeout_s;    /* per HTTP request */
    int json;            /* --json: print the server's data as JSON */
    int verbose;         /* -v: log requests and retries on stderr */
    int stderr_tty;      /* progress bars only when stderr is a terminal */
} cli_ctx;

/* ---- command table and argument parsing (main.c) ---------------------- */
struct cli_cmd;
typedef int (*cli_cmd_fn)(const cli_ctx *ctx, const struct cli_cmd *self, int argc, char **argv);

typedef struct cli_cmd {
    const char *group; /* "collections", ... or NULL for a top-level command */
    const char *name;  /* "create" */
    cli_cmd_fn fn;
    const char *summary; /* one line for the command list */
    const char *usage;   /* "collections create NAME --dim N [options]" */
    const char *help;    /* options and at least one example */
} cli_cmd;

extern const cli_cmd cmds_collections[]; /* each table ends with {0} */
extern const cli_cmd cmds_vectors[];
extern const cli_cmd cmds_recovery[];
extern const cli_cmd cmds_ingest[];

enum { OPT_FLAG, OPT_STR };
typedef struct cli_opt {
    const char *name;  /* "--dim" */
    const char *alias; /* "-d" or NULL */
    int kind;          /* OPT_FLAG: *(int *)dst = 1; OPT_STR: *(const char **)dst */
    void *dst;
} cli_opt;

/* Parse a command's own arguments (after the command words): options from
 * opts, positionals into pos[0..max_pos). Returns 0, CLI_USAGE (message and
 * usage printed) or CLI_HELP_SHOWN (--help printed). */
int cli_parse(const cli_cmd *cmd, int argc, char **argv, const cli_opt *opts, char **pos, int min_pos, int max_pos,
              int *n_pos);
/* Print "vectordb-cli: <cmd>: <message>" and the usage line; returns CLI_USAGE. */
int cli_usage_error(const cli_cmd *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Strict number parsing for option values; on error print a usage error. */
int cli_u64(const cli_cmd *cmd, const char *opt, const char *s, uint64_t lo, uint64_t hi, uint64_t *out);
int cli_double(const cli_cmd *cmd, const char *opt, const char *s, double lo, double hi, double *out);
/* Parse a vector given as "0.1,0.2" or "[0.1, 0.2]" into a JSON array. */
int cli_vector(const cli_cmd *cmd, const char *opt, const char *s, json_t **out);
/* Parse a JSON object given on the command line. */
int cli_json_object(const cli_cmd *cmd, const char *opt, const char *s, json_t **out);
/* Ask the operator to type `expect` back (from /dev/tty, else a terminal on
 * stdin). 0 confirmed, CLI_FAIL on mismatch, CLI_USAGE with no terminal. */
int cli_confirm(const char *what, const char *expect);
/* Set by SIGINT/SIGTERM during long operations. */
extern volatile sig_atomic_t cli_interrupted; /* set by the SIGINT/SIGTERM handler */
void cli_catch_signals(void);

/* ---- HTTP (http.c) ---------------------------------------------------- */
typedef struct http_conn http_conn; /* one keep-alive curl handle, one thread */

typedef struct http_resp {
    long status;          /* HTTP status; 0 when no response arrived */
    int curl_code;        /* CURLE_OK or the transport error */
    char curl_msg[256];   /* transport error text */
    double retry_after_s; /* Retry-After in seconds; -1 when absent */
    char *body;           /* NUL-terminated response body */
    size_t body_len;
} http_resp;

dv_code http_conn_create(http_conn **out, dv_err *err);
void http_conn_destroy(http_conn *c);
/* Open a new connection for every request (see http.c). */
void http_conn_no_reuse(http_conn *c);
/* Keep the connection alive, but never let libcurl re-send a body by itself
 * after a reused connection died: the attempt fails and the caller decides
 * (see http.c). */
void http_conn_no_resend(http_conn *c);
/* One attempt of method url with an optional JSON body. DV_OK when an HTTP
 * response arrived (any status); DV_EIO on a transport error (r->curl_code,
 * r->curl_msg). r is reset first; free it with http_resp_free. */
dv_code http_do(http_conn *c, const char *method, const char *url, const char *bearer, const char *body,
                size_t body_len, double timeout_s, http_resp *r, dv_err *err);
void http_resp_free(http_resp *r);
/* A transport error, 429 or any 5xx: the request may be sent again. */
int http_retryable(const http_resp *r);
/* Full-jitter exponential backoff: uniform in [0, min(cap, base * 2^attempt)],
 * raised to retry_after_s when the server sent Retry-After (>= 0). */
double http_backoff_s(unsigned attempt, double base_s, double cap_s, double retry_after_s, uint64_t *rng);
uint64_t http_rng_next(uint64_t *rng);
void http_sleep_s(double s);
/* "what happened" text of an attempt: "HTTP 503" or "connection: <curl msg>". */
void http_describe(const http_resp *r, char *buf, size_t cap);
/* Append s percent-encoded (RFC 3986 unreserved kept) to buf. */
void http_escape(const char *s, char *buf, size_t cap);

/* The server's JSON envelope {"success","data","error","code"}. */
typedef struct api_res {
    long status;         /* HTTP status; 0 = no response */
    json_t *root;        /* the parsed body, or NULL */
    json_t *data;        /* borrowed from root; NULL when absent */
    const char *error;   /* borrowed: the envelope's error message */
    const char *code;    /* borrowed: the envelope's stable error code */
    char transport[600]; /* transport error when status == 0 */
} api_res;

/* Send a request to ctx->url + path; GETs are retried on transport errors,
 * 429 and 503. DV_OK iff the status is 2xx and success is not false. */
dv_code api_request(const cli_ctx *ctx, const char *method, const char *path, json_t *body, api_res *res);
void api_res_free(api_res *res);
/* Print "vectordb-cli: <what>: <server error> (HTTP s, code c)" and a hint
 * saying what to do next; returns CLI_FAIL. */
int api_report(const cli_ctx *ctx, const char *what, const api_res *res);
/* Common pattern: request, then print data as a table/kv/JSON via show(). */
typedef void (*api_show_fn)(const cli_ctx *ctx, json_t *data);
int api_run(const cli_ctx *ctx, const char *what, const char *method, const char *path, json_t *body, api_show_fn show);

/* ---- output (out.c) --------------------------------------------------- */
typedef struct out_col {
    const char *header;
    const char *path; /* dotted key path; alternatives separated by '|' */
} out_col;

/* Print v as indented JSON on stdout (values round-trip exactly). */
void out_json(const json_t *v);
/* Look up a dotted path ("config.dimension", alternatives "dim|dimension"). */
json_t *out_get(const json_t *obj, const char *path);
/* Render a scalar (or compact JSON of a container, shortened) into buf. */
void out_value(const json_t *v, char *buf, size_t cap);
/* An aligned table of an array of objects; "(none)" when empty. */
void out_table(const json_t *rows, const out_col *cols, size_t n_cols);
/* "key: value" lines of an object (nested objects indented). */
void out_kv(const json_t *obj);
/* Print data the generic way: table of arrays of objects, kv of objects. */
void out_auto(const cli_ctx *ctx, json_t *data);

/* Progress of a long operation on stderr: a redrawn bar with counts, rate
 * and ETA on a terminal; one plain line every interval_s otherwise. */
typedef struct out_progress {
    const char *label;
    const char *unit; /* "vectors", ... */
    int tty;
    double start_s, last_s, interval_s;
    int shown;
} out_progress;
void out_progress_init(out_progress *p, const cli_ctx *ctx, const char *label, const char *unit);
/* count done so far; frac in [0,1] or < 0 if unknown; total (0 unknown);
 * extra appended ("retries 3"). force: print even if recently printed. */
void out_progress_show(out_progress *p, uint64_t count, uint64_t total, double frac, const char *extra, int force);
void out_progress_end(out_progress *p);
/* Shortest-ish decimal of a finite float32 (at most 9 significant digits,
 * JSON syntax) into buf; returns the length (<= 16). It may write bytes
 * beyond the text, up to buf + 24: buf must have 24 bytes. No NUL. strtof
 * of the text gives f back exactly. */
size_t out_f32(char *buf, float f);
/* 12345678 -> "12,345,678" */
void out_commas(uint64_t v, char *buf, size_t cap);

/* ---- ingest input readers (ingest_readers.c) -------------------------- */
typedef enum rd_format { RD_AUTO = 0, RD_JSONL, RD_CSV, RD_NPY, RD_FVECS } rd_format;

typedef struct rd_record {
    uint64_t recno; /* 0-based index of the record in the input */
    uint64_t line;  /* 1-based line (JSONL/CSV), else 0 */
    char *id;       /* the record's own id or NULL */
    float *vec;     /* dim floats or NULL */
    uint32_t dim;
    char *text;       /* text to embed or NULL */
    json_t *metadata; /* object or NULL (owned) */
    char *error;      /* malformed record: why (then the rest is empty) */
} rd_record;

typedef struct rd_reader rd_reader;

rd_format rd_format_parse(const char *s); /* -1 cast on unknown */
const char *rd_format_name(rd_format f);
/* Open path; RD_AUTO guesses from the extension, then the first bytes. */
dv_code rd_open(const char *path, rd_format fmt, rd_reader **out, dv_err *err);
void rd_close(rd_reader *r);
rd_format rd_get_format(const rd_reader *r);
/* Next record into *rec (previous contents freed). 1 = a record, 0 = end of
 * input, < 0 = an I/O error that ends the input (err set). A malformed record
 * is returned with rec->error set: the caller reports it and goes on. */
int rd_next(rd_reader *r, rd_record *rec, dv_err *err);
void rd_record_clear(rd_record *rec);
/* Byte offset of the next record, for checkpoints. */
uint64_t rd_tell(const rd_reader *r);
/* Continue at a position saved from rd_tell and the matching record number. */
dv_code rd_seek(rd_reader *r, uint64_t offset, uint64_t recno, uint64_t line, dv_err *err);
uint64_t rd_line(const rd_reader *r); /* line number of the next record */
/* Total records when known from the header (npy, fvecs), else 0. */
uint64_t rd_total(const rd_reader *r);
uint64_t rd_size(const rd_reader *r); /* input size in bytes */

/* ---- checkpoint (ingest_ckpt.c) --------------------------------------- */
#define CKPT_HEAD_BYTES (1u << 20)

typedef struct ckpt_ident {
    char path[4096]; /* realpath of the input */
    uint64_t size;   /* bytes */
    char head[33];   /* XXH3-128 of the first CKPT_HEAD_BYTES, hex */
} ckpt_ident;

typedef struct ckpt_range {
    uint64_t start, end; /* records [start, end) acknowledged */
} ckpt_range;

typedef struct ckpt_state {
    ckpt_ident ident;
    char collection[128];
    uint64_t record;   /* every record below this one is acknowledged or failed */
    uint64_t offset;   /* byte offset of record `record` */
    uint64_t line;     /* line number of record `record` (JSONL/CSV) */
    ckpt_range *acked; /* acknowledged ranges above `record` (parallel ingest) */
    size_t n_acked;
    uint64_t sent, failed, retried; /* totals over every run */
    int complete;
} ckpt_state;

/* Identity of an input file: realpath, size, hash of the first MiB. */
dv_code ckpt_ident_of(const char *path, ckpt_ident *out, dv_err *err);
/* Derive a stable id for record recno of the input identified by id:
 * a UUIDv8 built from XXH3-128 of ("dvecdb-ingest-v1", head hash, size,
 * recno). The same input and record always give the same id. */
void ckpt_derive_id(const ckpt_ident *id, uint64_t recno, char out[37]);
/* Write st to path atomically: temp file, fsync, rename, fsync directory
 * (ckpt_render + ckpt_write). */
dv_code ckpt_save(const char *path, const ckpt_state *st, dv_err *err);
/* The checkpoint document of st as one line of JSON (*out malloc'd). */
dv_code ckpt_render(const ckpt_state *st, char **out, dv_err *err);
/* Write a rendered document to path atomically, as ckpt_save. The temp file
 * is named after the process: callers serialize their writes. */
dv_code ckpt_write(const char *path, const char *text, dv_err *err);
/* Load path into *st (st->acked allocated). DV_ENOTFOUND if absent,
 * DV_ECORRUPT if unparseable. */
dv_code ckpt_load(const char *path, ckpt_state *st, dv_err *err);
void ckpt_state_free(ckpt_state *st);
/* DV_OK if the checkpoint belongs to this input, else DV_EINVAL saying why. */
dv_code ckpt_check(const ckpt_state *st, const ckpt_ident *now, const char *collection, dv_err *err);

/* ---- embeddings (embed.c) --------------------------------------------- */
typedef struct embed_cfg {
    const char *url; /* full URL of POST .../v1/embeddings */
    const char *model;
    const char *key; /* bearer token or NULL */
    double timeout_s;
} embed_cfg;

/* Build the endpoint URL from --embed-url: kept when it ends in
 * "/embeddings", else "/v1/embeddings" (or "/embeddings" after "/v1") is
 * appended. Returns a malloc'd string. */
char *embed_endpoint(const char *url);
/* One attempt: embed n texts; on success out[i] (malloc'd, *dim floats) in
 * input order. r receives the raw response for retry decisions. DV_OK;
 * DV_EIO transport/HTTP error (see r); DV_EINVAL malformed answer. */
dv_code embed_once(http_conn *c, const embed_cfg *cfg, const char *const *texts, size_t n, float **out, uint32_t *dim,
                   http_resp *r, dv_err *err);

/* ---- ingest (cmd_ingest.c) -------------------------------------------- */
int cmd_ingest(const cli_ctx *ctx, const cli_cmd *self, int argc, char **argv);

#endif
