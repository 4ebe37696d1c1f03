/*
 * cmd_collections.c - health, stats and the collections command group:
 * create, list, info, delete (soft delete to the trash).
 *
 * Invariant: `collections delete` of a collection holding vectors asks for
 * its name to be typed back unless --yes; with no terminal and no --yes it
 * refuses (exit 2) before sending anything.
 */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

/* Vector count in a collection info object, whatever its nesting. */
static const char *const COUNT_PATHS =
    "vector_count|stats.vector_count|count|stats.count|vectors|stats.vectors|num_vectors";

static int cmd_health(const cli_ctx *ctx, const cli_cmd *self, int argc, char **argv)
{
    int rc = cli_parse(self, argc, argv, NULL, NULL, 0, 0, NULL);
    if (rc)
        return rc;
    return api_run(ctx, "health", "GET", "/health", NULL, NULL);
}

static int cmd_stats(const cli_ctx *ctx, const cli_cmd *self, int argc, char **argv)
{
    int rc = cli_parse(self, argc, argv, NULL, NULL, 0, 0, NULL);
    if (rc)
        return rc;
    return api_run(ctx, "stats", "GET", "/stats", NULL, NULL);
}

static int cmd_create(const cli_ctx *ctx, const cli_cmd *self, int argc, char **argv)
{
    const char *dim = NULL, *metric = "Cosine", *vtype = "Float32", *m = NULL, *efc = NULL, *efs = NULL;
    char *pos[1];
    cli_opt opts[] = {{"--dim", "-d", OPT_STR, &dim},
                      {"--metric", NULL, OPT_STR, &metric},
                      {"--type", NULL, OPT_STR, &vtype},
                      {"--m", NULL, OPT_STR, &m},
                      {"--ef-construction", NULL, OPT_STR, &efc},
                      {"--ef-search", NULL, OPT_STR, &efs},
                      {0}};
    int rc = cli_parse(self, argc, argv, opts, pos, 1, 1, NULL);
    if (rc)
        return rc;
    uint64_t d, v;
    if (!dim)
        return cli_usage_error(self, "missing --dim");
    if ((rc = cli_u64(self, "--dim", dim, 1, 65536, &d)))
        return rc;
    json_t *body = json_pack("{s:s, s:I, s:s, s:s}", "name", pos[0], "dimension", (json_int_t)d, "distance_metric",
                             metric, "vector_type", vtype);
    json_t *ic = json_object();
    if (m) {
        if ((rc = cli_u64(self, "--m", m, 2, 128, &v)))
            goto done;
        json_object_set_new(ic, "max_connections", json_integer((json_int_t)v));
    }
    if (efc) {
        if ((rc = cli_u64(self, "--ef-construction", efc, 4, 4096, &v)))
            goto done;
        json_object_set_new(ic, "ef_construction", json_integer((json_int_t)v));
    }
    if (efs) {
        if ((rc = cli_u64(self, "--ef-search", efs, 1, 10000, &v)))
            goto done;
        json_object_set_new(ic, "ef_search", json_integer((json_int_t)v));
    }
    if (json_object_size(ic))
        json_object_set(body, "index_config", ic);
    api_res res;
    char what[160];
    snprintf(what, sizeof what, "create collection '%s'", pos[0]);
    if (api_request(ctx, "POST", "/collections", body, &res) != DV_OK) {
        rc = api_report(ctx, what, &res);
    } else {
        if (ctx->json)
            out_json(res.data ? res.data : json_null());
        else
            printf("created collection '%s' (%llu dimensions, %s, %s)\n", pos[0], (unsigned long long)d, metric, vtype);
        rc = CLI_OK;
    }
    api_res_free(&res);
done:
    json_decref(ic);
    json_decref(body);
    return rc;
}

static void show_list(const cli_ctx *ctx, json_t *data)
{
    (void)ctx;
    json_t *arr = json_is_array(data) ? data : out_get(data, "collections");
    if (json_array_size(arr) && json_is_string(json_array_get(arr, 0))) {
        printf("NAME\n");
        size_t i;
        json_t *v;
        json_array_foreach(arr, i, v) printf("%s\n", json_string_value(v));
        return;
    }
    static const out_col cols[] = {
        {"NAME", "name"},
        {"DIM", "dimension|config.dimension|dim"},
        {"METRIC", "distance_metric|config.distance_metric|metric"},
        {"TYPE", "vector_type|config.vector_type"},
        {"VECTORS", "vector_count|stats.vector_count|count|stats.count"},
    };
    out_table(arr, cols, sizeof cols / sizeof cols[0]);
}

static int cmd_list(const cli_ctx *ctx, const cli_cmd *self, int argc, char **argv)
{
    int rc = cli_parse(self, argc, argv, NULL, NULL, 0, 0, NULL);
    if (rc)
        return rc;
    /* ?detail=true gives objects (dimension, metric, count) for the table;
     * with --json the plain route's data (names) is printed as the server
     * sends it. */
    return api_run(ctx, "list collections", "GET", ctx->json ? "/collections" : "/collections?detail=true", NULL,
                   show_list);
}

static int cmd_info(const cli_ctx *ctx, const cli_cmd *self, int argc, char **argv)
{
    char *pos[1];
    int rc = cli_parse(self, argc, argv, NULL, pos, 1, 1, NULL);
    if (rc)
        return rc;
    char path[512] = "/collections/", what[160];
    http_escape(pos[0], path, sizeof path);
    snprintf(what, sizeof what, "collection '%s'", pos[0]);
    return api_run(ctx, what, "GET", path, NULL, NULL);
}

static int cmd_delete(const cli_ctx *ctx, const cli_cmd *self, int argc, char **argv)
{
    int yes = 0;
    char *pos[1];
    cli_opt opts[] = {{"--yes", "-y", OPT_FLAG, &yes}, {0}};
    int rc = cli_parse(self, argc, argv, opts, pos, 1, 1, NULL);
    if (rc)
        return rc;
    char path[512] = "/collections/", what[160];
    http_escape(pos[0], path, sizeof path);
    snprintf(what, sizeof what, "delete collection '%s'", pos[0]);
    api_res res;
    if (api_request(ctx, "GET", path, NULL, &res) != DV_OK) {
        rc = api_report(ctx, what, &res);
        api_res_free(&res);
        return rc;
    }
    json_t *cnt = out_get(res.data, COUNT_PATHS);
    json_int_t n = json_is_integer(cnt) ? json_integer_value(cnt) : -1;
    api_res_free(&res);
    if (n != 0 && !yes) {
        char q[256];
        if (n > 0)
            snprintf(q, sizeof q, "Collection '%s' holds %lld vectors; it will be moved to the trash.", pos[0],
                     (long long)n);
        else
            snprintf(q, sizeof q, "Collection '%s' will be moved to the trash.", pos[0]);
        if ((rc = cli_confirm(q, pos[0])))
            return rc;
    }
    if (api_request(ctx, "DELETE", path, NULL, &res) != DV_OK) {
        rc = api_report(ctx, what, &res);
        api_res_free(&res);
        return rc;
    }
    if (ctx->json) {
        out_json(res.data ? res.data : json_null());
    } else {
        printf("moved collection '%s' to the trash", pos[0]);
        json_t *exp = out_get(res.data, "expires_at");
        if (exp) {
            char b[64];
            out_value(exp, b, sizeof b);
            printf(" (restorable until %s)", b);
        }
        printf("\nundo with: vectordb-cli trash restore %s\n", pos[0]);
    }
    api_res_free(&res);
    return CLI_OK;
}

const cli_cmd cmds_collections[] = {
    {NULL, "health", cmd_health, "check that the server is up", "health",
     "Prints the server's health document.\n\nexample:\n  vectordb-cli health\n"},
    {NULL, "stats", cmd_stats, "server-wide statistics", "stats",
     "Prints the server's statistics (collections, vectors, memory, ...).\n\n"
     "example:\n  vectordb-cli --json stats\n"},
    {"collections", "create", cmd_create, "create a collection",
     "collections create NAME --dim N [--metric M] [--type T] [--m M] [--ef-construction N] "
     "[--ef-search N]",
     "options:\n"
     "  -d, --dim N            dimension of the vectors (required)\n"
     "  --metric M             Cosine (default), Euclidean, DotProduct or Manhattan\n"
     "  --type T               Float32 (default), Float16 or Int8\n"
     "  --m M                  HNSW max connections (default 16)\n"
     "  --ef-construction N    HNSW build beam width (default 200)\n"
     "  --ef-search N          default search beam width (default 50)\n"
     "A collection whose name exists is never re-created: the server answers 409.\n\n"
     "example:\n  vectordb-cli collections create docs --dim 1536 --metric cosine\n"},
    {"collections", "list", cmd_list, "list live collections", "collections list",
     "example:\n  vectordb-cli collections list\n  vectordb-cli --json collections list\n"},
    {"collections", "info", cmd_info, "configuration and statistics of a collection", "collections info NAME",
     "example:\n  vectordb-cli collections info docs\n"},
    {"collections", "delete", cmd_delete, "move a collection to the trash (restorable)",
     "collections delete NAME [--yes]",
     "The collection is moved to the trash (soft delete), restorable with\n"
     "'vectordb-cli trash restore NAME' until the trash retention expires.\n"
     "A collection holding vectors asks for its name to be typed back.\n\n"
     "options:\n  -y, --yes   do not ask for confirmation\n\n"
     "example:\n  vectordb-cli collections delete docs\n"},
    {0},
};
