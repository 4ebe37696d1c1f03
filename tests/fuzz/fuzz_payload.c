/* fuzz_payload.c - libFuzzer target for payload_parse (metadata text from
 * clients and from disk).
 *
 * Properties checked beyond "no crash, no sanitizer report":
 *  - payload_parse accepts exactly the JSON objects of <= DV_METADATA_MAX
 *    bytes and <= PAYLOAD_DEPTH_MAX levels, and on error leaves *out alone;
 *  - for each top-level scalar member (first 8) of an accepted object,
 *    the equality filter {"<key>": <value>} built by jansson compiles and
 *    matches (when the key is a valid filter key), and its must_not
 *    negation does not: the flattened form agrees with the JSON. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "payload.h"

/* Nesting depth of a parsed jansson value, counted like payload.c's limit:
 * each object or array is one level, scalars add none. */
static int depth_of(const json_t *j)
{
    int d = 0;
    if (json_is_object(j)) {
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)j, k, v) {
            int x = depth_of(v);
            if (x > d)
                d = x;
        }
        return d + 1;
    }
    if (json_is_array(j)) {
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v) {
            int x = depth_of(v);
            if (x > d)
                d = x;
        }
        return d + 1;
    }
    return 0;
}

static void check_member(const payload *p, const char *k, size_t klen, json_t *v)
{
    if (json_is_object(v) || json_is_array(v))
        return;
    json_t *f = json_object();
    json_object_setn_new_nocheck(f, k, klen, json_incref(v));
    char *text = json_dumps(f, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(f);
    if (!text)
        return;
    filter *flt = NULL;
    if (filter_compile(text, strlen(text), &flt, NULL) == DV_OK) {
        if (!filter_match(flt, p))
            abort(); /* a member's own value must match it */
        filter_free(flt);
        size_t n = strlen(text) + 32;
        char *neg = malloc(n);
        snprintf(neg, n, "{\"must_not\": [%s]}", text);
        if (filter_compile(neg, strlen(neg), &flt, NULL) == DV_OK) {
            if (filter_match(flt, p))
                abort();
            filter_free(flt);
        }
        free(neg);
    }
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    payload *p = (payload *)(uintptr_t)0x1;
    dv_err err = {0};
    dv_code rc = payload_parse((const char *)data, size, &p, &err);

    /* An independent parse decides what the answer must be. */
    json_error_t je;
    size_t flags = JSON_DECODE_ANY | JSON_ALLOW_NUL;
    json_t *j = json_loadb((const char *)data, size, flags, &je);
    if (!j && json_error_code(&je) == json_error_numeric_overflow)
        j = json_loadb((const char *)data, size, flags | JSON_DECODE_INT_AS_REAL, &je);
    int want_ok = j && json_is_object(j) && size <= DV_METADATA_MAX && depth_of(j) <= PAYLOAD_DEPTH_MAX;

    if (rc != DV_OK) {
        if (p != (payload *)(uintptr_t)0x1 || err.code != rc || !err.msg[0])
            abort(); /* errors leave *out alone and say why */
        if (want_ok)
            abort();
        json_decref(j);
        return 0;
    }
    if (!want_ok)
        abort();
    if (payload_mem_bytes(p) == 0)
        abort();
    const char *k;
    json_t *v;
    int n = 0;
    json_object_foreach(j, k, v) {
        if (n++ == 8)
            break;
        check_member(p, k, json_object_iter_key_len(json_object_key_to_iter(k)), v);
    }
    json_decref(j);
    payload_free(p);
    return 0;
}
