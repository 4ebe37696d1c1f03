/* payload.h - metadata (a JSON object per vector) and filters over it.
 *
 * The only engine module that parses JSON (jansson). Metadata text is kept
 * byte-exact for retrieval; a parsed, flattened form is kept for filtering so
 * that searches never re-parse JSON.
 *
 * Filter forms (docs/filters.md):
 *   {"key": value, ...}                       equality on every key (original d-vecDB)
 *   {"must": [cond...], "should": [cond...], "must_not": [cond...]}
 *   cond: {"key": "a.b", "match": {"value": v}} | {"key": k, "match": {"any": [v...]}}
 *         | {"key": k, "range": {"gt"|"gte"|"lt"|"lte": number}} | nested {"must":...}
 * Keys may be dotted paths into nested objects.
 *
 * The full filter language, its semantics (arrays, missing keys, numbers) and
 * its error messages are documented in docs/filters.md.
 *
 * Representation (payload.c): a payload is one malloc'd block holding a
 * compact tree of typed nodes (objects keep their members sorted by key, so a
 * lookup is a binary search); a filter is a small tree of typed nodes with
 * pre-split key paths and sorted value sets. Both are immutable after
 * creation: any number of threads may call filter_match on the same filter
 * and payloads at once, with no locks and no allocation.
 */
#ifndef DV_PAYLOAD_H
#define DV_PAYLOAD_H
#include <stddef.h>
#include <stdint.h>
#include "dvecdb.h"

/* Nesting depth limit (objects/arrays, the outermost object counts as 1) for
 * metadata and filter text: DV_ELIMIT beyond it. Bounds the recursion of the
 * parser, of the compiler and of filter_match. */
#define PAYLOAD_DEPTH_MAX 32
/* Filter text size limit (bytes): DV_ELIMIT beyond it. */
#define FILTER_TEXT_MAX (64 * 1024)

typedef struct payload payload; /* parsed, immutable, thread-safe to read */
typedef struct filter filter;   /* compiled, immutable */

/* Validate that text is a JSON object of <= DV_METADATA_MAX bytes and parse
 * it. DV_EINVAL with position on malformed JSON or a non-object. */
dv_code payload_parse(const char *text, size_t len, payload **out, dv_err *err);
void payload_free(payload *p);
/* Tests: payload_parse's two paths alone. The direct parser (short
 * metadata, a strict subset of JSON) returns 1 with *out set, 0 for text it
 * leaves to jansson, -1 out of memory; the jansson path takes any metadata.
 * payload_same: 1 if two payloads are the same bytes. */
int payload_parse_direct(const char *text, size_t len, payload **out);
dv_code payload_parse_jansson(const char *text, size_t len, payload **out, dv_err *err);
int payload_same(const payload *a, const payload *b);
size_t payload_mem_bytes(const payload *p);

dv_code filter_compile(const char *text, size_t len, filter **out, dv_err *err);
void filter_free(filter *f);
/* 1 if p (may be NULL = no metadata) satisfies f. */
int filter_match(const filter *f, const payload *p);

/* 1 if f has no condition at all (the empty filter {}): it matches every
 * point, so a search may skip filtering. */
int filter_matches_all(const filter *f);
/* Bytes held by the compiled filter (for stats and limits). */
size_t filter_mem_bytes(const filter *f);
#endif
