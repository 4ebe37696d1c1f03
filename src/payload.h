/* payload.h - metadata (a JSON object per vector) and filters over it.
 *
 * The only engine module that parses JSON (jansson). Metadata text is kept
 * byte-exact for retrieval; a parsed, flattened form is kept for filtering so
 * that searches never re-parse JSON.
 *
 * Filter forms (docs/api.md):
 *   {"key": value, ...}                       equality on every key (original d-vecDB)
 *   {"must": [cond...], "should": [cond...], "must_not": [cond...]}
 *   cond: {"key": "a.b", "match": {"value": v}} | {"key": k, "match": {"any": [v...]}}
 *         | {"key": k, "range": {"gt"|"gte"|"lt"|"lte": number}} | nested {"must":...}
 * Keys may be dotted paths into nested objects.
 */
#ifndef DV_PAYLOAD_H
#define DV_PAYLOAD_H
#include <stddef.h>
#include <stdint.h>
#include "dvecdb.h"

typedef struct payload payload; /* parsed, immutable, thread-safe to read */
typedef struct filter filter;   /* compiled, immutable */

/* Validate that text is a JSON object of <= DV_METADATA_MAX bytes and parse
 * it. DV_EINVAL with position on malformed JSON or a non-object. */
dv_code payload_parse(const char *text, size_t len, payload **out, dv_err *err);
void payload_free(payload *p);
size_t payload_mem_bytes(const payload *p);

dv_code filter_compile(const char *text, size_t len, filter **out, dv_err *err);
void filter_free(filter *f);
/* 1 if p (may be NULL = no metadata) satisfies f. */
int filter_match(const filter *f, const payload *p);
#endif
