/* fuzz_filter.c - libFuzzer target for filter_compile + filter_match (filter
 * text comes from search requests).
 *
 * Each input is compiled; when it compiles it is matched against a fixed set
 * of metadata documents (nested objects, arrays, every scalar type, missing
 * keys, no metadata at all), and two algebraic properties are checked:
 * {"must_not": [F]} matches exactly where F does not, and {"should": [F]}
 * exactly where F does. Errors must set a message and leave *out alone. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "payload.h"

static const char *const DOCS[] = {
    "{}",
    "{\"a\": 1, \"b\": \"x\", \"c\": true, \"d\": null, \"e\": 2.5, \"f\": false}",
    "{\"a\": {\"b\": {\"c\": [1, 2, {\"d\": \"e\"}]}}, \"a.b\": 3}",
    "{\"tags\": [\"red\", \"blue\", 7, [8, [9]]], \"n\": -9223372036854775808, \"m\": 9223372036854775807}",
    "{\"k\": \"\\u0000\", \"\": 0, \"x\": [], \"y\": {}, \"z\": 1e300, \"w\": -0.0}",
    "{\"must\": \"m\", \"key\": \"k\", \"match\": 1, \"range\": [1, 2], \"should\": {\"x\": 1}}",
    "{\"a\": [{\"b\": 1}, {\"b\": \"1\"}, {\"b\": [true, null]}], \"big\": 100000000000000000000}",
};
#define N_DOCS (sizeof DOCS / sizeof DOCS[0])
static payload *docs[N_DOCS + 1]; /* the last one stays NULL: no metadata */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    for (size_t i = 0; i < N_DOCS; i++)
        if (payload_parse(DOCS[i], strlen(DOCS[i]), &docs[i], NULL) != DV_OK)
            abort();
    return 0;
}

/* Compile "<pre><data><post>"; NULL if it does not compile. */
static filter *wrap(const uint8_t *data, size_t size, const char *pre, const char *post)
{
    size_t np = strlen(pre), nq = strlen(post);
    char *t = malloc(np + size + nq);
    memcpy(t, pre, np);
    if (size)
        memcpy(t + np, data, size);
    memcpy(t + np + size, post, nq);
    filter *f = NULL;
    if (filter_compile(t, np + size + nq, &f, NULL) != DV_OK)
        f = NULL;
    free(t);
    return f;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    filter *f = (filter *)(uintptr_t)0x1;
    dv_err err = {0};
    dv_code rc = filter_compile((const char *)data, size, &f, &err);
    if (rc != DV_OK) {
        if (f != (filter *)(uintptr_t)0x1 || err.code != rc || !err.msg[0])
            abort();
        if (rc != DV_EINVAL && rc != DV_ELIMIT && rc != DV_ENOMEM)
            abort();
        return 0;
    }
    int got[N_DOCS + 1];
    for (size_t i = 0; i <= N_DOCS; i++)
        got[i] = filter_match(f, docs[i]);
    if (filter_matches_all(f))
        for (size_t i = 0; i <= N_DOCS; i++)
            if (!got[i])
                abort();
    filter_free(f);

    /* The wrapped forms add two nesting levels and a few bytes, so they may
     * hit a limit; when they compile, they must agree. A top-level single
     * condition object stays a condition inside a clause list; an object
     * with a "key" member but no match/range is an equality map at the top
     * and an (invalid) condition inside a list, so it does not compile. */
    filter *neg = wrap(data, size, "{\"must_not\": [", "]}");
    if (neg) {
        for (size_t i = 0; i <= N_DOCS; i++)
            if (filter_match(neg, docs[i]) == got[i])
                abort();
        filter_free(neg);
    }
    filter *any = wrap(data, size, "{\"should\": [", "]}");
    if (any) {
        for (size_t i = 0; i <= N_DOCS; i++)
            if (filter_match(any, docs[i]) != got[i])
                abort();
        filter_free(any);
    }
    return 0;
}
