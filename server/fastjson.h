/* fastjson.h - fast path for point and search bodies (fastjson.c). Both
 * parsers return 1 with *out filled, or 0 when the body is not in the simple
 * shape they read: the caller then uses the general jansson path, which gives
 * the precise error. They never answer errors themselves. */
#ifndef SRV_FASTJSON_H
#define SRV_FASTJSON_H
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "server.h"

#define FJ_DEPTH_MAX SRV_JSON_DEPTH_MAX
#define FJ_ID_MAX DV_ID_MAX
#define FJ_METADATA_MAX DV_METADATA_MAX
#define FJ_DIM_MAX DV_DIM_MAX

typedef struct fj_point {
    char *id;         /* NULL: absent or null (generate one) */
    size_t float_off; /* first float in fj_points.floats */
    size_t dim;       /* floats given */
    char *metadata;   /* compact JSON object text, NULL if absent/null */
} fj_point;

typedef struct fj_points {
    fj_point *pts;
    size_t n, cap;
    float *floats;
    size_t n_floats, floats_cap;
} fj_points;

typedef struct fj_search {
    fj_points vec; /* the query: vec.floats[0..dim) */
    size_t dim;
    int has_vector, has_limit, has_ef;
    uint64_t limit, ef;
    int include_vectors, exact;
    char *filter; /* compact JSON object text or NULL */
} fj_search;

/* batch: {"vectors": [point, ...]}; else one point object. */
int fj_parse_points(const char *body, size_t len, int batch, fj_points *out);
void fj_points_free(fj_points *fp);
int fj_parse_search(const char *body, size_t len, fj_search *out);
void fj_search_free(fj_search *q);
#endif
