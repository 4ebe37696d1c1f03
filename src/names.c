/*
 * names.c - the small vocabulary of the public API: metric and vector type
 * names, collection name validation, option defaults, dv_free.
 *
 * Invariants: parsing is case-insensitive and total (every input either maps
 * to exactly one enum value or is DV_EINVAL with the offending text); the
 * names returned are the canonical spellings of the original d-vecDB API
 * ("Cosine", "Float32", ...), used on disk in manifest.json as well.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "err.h"

static const struct {
    const char *name;
    dv_metric m;
} metric_names[] = {
    {"cosine", DV_METRIC_COSINE},    {"euclidean", DV_METRIC_EUCLIDEAN},
    {"l2", DV_METRIC_EUCLIDEAN},     {"dotproduct", DV_METRIC_DOT},
    {"dot", DV_METRIC_DOT},          {"ip", DV_METRIC_DOT},
    {"innerproduct", DV_METRIC_DOT}, {"manhattan", DV_METRIC_MANHATTAN},
    {"l1", DV_METRIC_MANHATTAN},
};

dv_code dv_metric_parse(const char *s, dv_metric *out, dv_err *err)
{
    if (!s)
        return dv_errorf(err, DV_EINVAL, "metric: missing");
    for (size_t i = 0; i < sizeof metric_names / sizeof metric_names[0]; i++) {
        if (strcasecmp(s, metric_names[i].name) == 0) {
            *out = metric_names[i].m;
            return DV_OK;
        }
    }
    return dv_errorf(err, DV_EINVAL,
                     "metric: unknown distance metric \"%.64s\" (expected Cosine, Euclidean, DotProduct or Manhattan)",
                     s);
}

const char *dv_metric_name(dv_metric m)
{
    switch (m) {
    case DV_METRIC_COSINE:
        return "Cosine";
    case DV_METRIC_EUCLIDEAN:
        return "Euclidean";
    case DV_METRIC_DOT:
        return "DotProduct";
    case DV_METRIC_MANHATTAN:
        return "Manhattan";
    }
    return "unknown";
}

dv_code dv_vtype_parse(const char *s, dv_vtype *out, dv_err *err)
{
    if (!s)
        return dv_errorf(err, DV_EINVAL, "vector type: missing");
    if (strcasecmp(s, "float32") == 0 || strcasecmp(s, "f32") == 0)
        *out = DV_VTYPE_F32;
    else if (strcasecmp(s, "float16") == 0 || strcasecmp(s, "f16") == 0)
        *out = DV_VTYPE_F16;
    else if (strcasecmp(s, "int8") == 0 || strcasecmp(s, "i8") == 0)
        *out = DV_VTYPE_I8;
    else
        return dv_errorf(err, DV_EINVAL,
                         "vector type: unknown vector type \"%.64s\" (expected Float32, Float16 or Int8)", s);
    return DV_OK;
}

const char *dv_vtype_name(dv_vtype t)
{
    switch (t) {
    case DV_VTYPE_F32:
        return "Float32";
    case DV_VTYPE_F16:
        return "Float16";
    case DV_VTYPE_I8:
        return "Int8";
    }
    return "unknown";
}

/* Names become directory names and URL path segments: a strict charset
 * keeps out "..", "/", dot files (our staging names start with '.') and
 * anything needing escaping; the route words would shadow REST routes. */
dv_code dv_name_validate(const char *name, dv_err *err)
{
    static const char *const reserved[] = {"deleted", "import", "backups"};
    if (!name || !name[0])
        return dv_errorf(err, DV_EINVAL, "name: collection name is empty");
    size_t n = strnlen(name, DV_NAME_MAX + 1);
    if (n > DV_NAME_MAX)
        return dv_errorf(err, DV_EINVAL, "name: collection name longer than %d characters", DV_NAME_MAX);
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        int ok =
            (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '-';
        if (!ok)
            return dv_errorf(err, DV_EINVAL,
                             "name: collection name \"%s\" has an invalid character at %zu (allowed: A-Z a-z 0-9 _ -)",
                             name, i);
    }
    for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++)
        if (strcmp(name, reserved[i]) == 0)
            return dv_errorf(err, DV_EINVAL, "name: \"%s\" is a reserved word", name);
    return DV_OK;
}

void dv_db_options_init(dv_db_options *opts)
{
    memset(opts, 0, sizeof *opts);
    opts->fsync = DV_FSYNC_ALWAYS;
    opts->fsync_interval_ms = 100;
    opts->checkpoint_wal_bytes = 64ull << 20;
    opts->n_threads = 0;
    opts->trash_retention_s = 86400;
    opts->backup_keep_auto = 5;
    opts->import_roots = NULL;
    opts->n_import_roots = 0;
    opts->read_only = 0;
}

void dv_free(void *p)
{
    free(p);
}
