/*
 * cmd_vectors.c - the vectors command group: insert (upsert one vector),
 * get, delete (one id, or several through the batch-delete route) and
 * search.
 *
 * Vectors are given on the command line as "0.1,0.2,0.3" or as a JSON array;
 * metadata and filters as JSON objects. Ids are percent-encoded in paths.
 */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

static void coll_path(char *buf, size_t cap, const char *coll, const char *suffix)
{
    snprintf(buf, cap, "/collections/");
    http_escape(coll, buf, cap);
    strncat(buf, suffix, cap - strlen(buf) - 1);
}

static int cmd_insert(const cli_ctx *ctx, const cli_cmd *self, int argc, char **argv)
{
    const char *vec = NULL, *id = NULL, *meta = NULL;
    char *pos[1];
    cli_opt opts[] = {
        {"--vector", NULL, OPT_STR, &vec}, {"--id", NULL, OPT_STR, &id}, {"--metadata", NULL, OPT_STR, &meta}, {0}};
    int rc = cli_parse(self, argc, argv, opts, pos, 1, 1, NULL);
    if (rc)
        return rc;
    if (!vec)
        return cli_usage_error(self, "missing --vector");
    json_t *data = NULL, *md = NULL;
    if ((rc = cli_vector(self, "--vector", vec, &data)))
        return rc;
    if (meta && (rc = cli_json_object(self, "--metadata", meta, &md))) {
        json_decref(data);
        return rc;
    }
    json_t *body = json_object();
    if (id)
        json_object_set_new(body, "id", json_string(id));
    json_object_set_new(body, "data", data);
    if (md)
        json_object_set_new(body, "metadata", md);
    char path[512], what[160];
    coll_path(path, sizeof path, pos[0], "/vectors");
    snprintf(what, sizeof what, "insert into '%s'", pos[0]);
    api_res res;
    if (api_request(ctx, "POST", path, body, &res) != DV_OK) {
        rc = api_report(ctx, what, &res);
    } else {
        rc = CLI_OK;
        if (ctx->json) {
            out_json(res.data ? res.data : json_null());
        } else {
            json_t *got = json_is_string(res.data) ? res.data : out_get(res.data, "id");
            char b[300];
            if (got)
                out_value(got, b, sizeof b);
            else
                snprintf(b, sizeof b, "%s", id ? id : "?");
            printf("inserted vector '%s' into '%s'\n", b, pos[0]);
        }
    }
    api_res_free(&res);
    json_decref(body);
    return rc;
}

static void show_vector(const cli_ctx *ctx, json_t *data)
{
    (void)ctx;
    out_kv(data);
}

static int cmd_get(const cli_ctx *ctx, const cli_cmd *self, int argc, char **argv)
{
    char *pos[2];
    int rc = cli_parse(self, argc, argv, NULL, pos, 2, 2, NULL);
    if (rc)
        return rc;
    char path[1024], what[400];
    coll_path(path, sizeof path, pos[0], "/vectors/");
    http_escape(pos[1], path, sizeof path);
    snprintf(what, sizeof what, "get vector '%s' from '%s'", pos[1], pos[0]);
    return api_run(ctx, what, "GET", path, NULL, show_vector);
}

static int cmd_delete(const cli_ctx *ctx, const cli_cmd *self, int argc, char **argv)
{
    char *pos[1024];
    int n = 0;
    int rc = cli_parse(self, argc, argv, NULL, pos, 2, 1024, &n);
    if (rc)
        return rc;
    char path[1024], what[400];
    api_res res;
    json_t *body = NULL;
    if (n == 2) {
        coll_path(path, sizeof path, pos[0], "/vectors/");
        http_escape(pos[1], path, sizeof path);
        snprintf(what, sizeof what, "delete vector '%s' from '%s'", pos[1], pos[0]);
        rc = api_request(ctx, "DELETE", path, NULL, &res);
    } else {
        coll_path(path, sizeof path, pos[0], "/vectors/delete");
        snprintf(what, sizeof what, "delete %d vectors from '%s'", n - 1, pos[0]);
        json_t *ids = json_array();
        for (int i = 1; i < n; i++)
            json_array_append_new(ids, json_string(pos[i]));
        body = json_pack("{s:o}", "ids", ids);
        rc = api_request(ctx, "POST", path, body, &res);
    }
    json_decref(body);
    if (rc != DV_OK) {
        rc = api_report(ctx, what, &res);
        api_res_free(&res);
        return rc;
    }
    if (ctx->json)
        out_json(res.data ? res.data : json_null());
    else
        printf("deleted %d vector%s from '%s'\n", n - 1, n > 2 ? "s" : "", pos[0]);
    api_res_free(&res);
    return CLI_OK;
}

static void show_hits(const cli_ctx *ctx, json_t *data)
{
    (void)ctx;
    json_t *arr = json_is_array(data) ? data : out_get(data, "results|hits");
    static const out_col cols[] = {{"ID", "id"}, {"DISTANCE", "distance|score"}, {"METADATA", "metadata|payload"}};
    out_table(arr, cols, 3);
}

static int cmd_search(const cli_ctx *ctx, const cli_cmd *self, int argc, char **argv)
{
    const char *vec = NULL, *limit = NULL, *ef = NULL, *filter = NULL;
    int incl = 0;
    char *pos[1];
    cli_opt opts[] = {{"--vector", NULL, OPT_STR, &vec},
                      {"--limit", "-k", OPT_STR, &limit},
                      {"--ef", NULL, OPT_STR, &ef},
                      {"--filter", NULL, OPT_STR, &filter},
                      {"--include-vectors", NULL, OPT_FLAG, &incl},
                      {0}};
    int rc = cli_parse(self, argc, argv, opts, pos, 1, 1, NULL);
    if (rc)
        return rc;
    if (!vec)
        return cli_usage_error(self, "missing --vector");
    uint64_t k = 10, e = 0;
    if (limit && (rc = cli_u64(self, "--limit", limit, 1, 10000, &k)))
        return rc;
    if (ef && (rc = cli_u64(self, "--ef", ef, 1, 10000, &e)))
        return rc;
    json_t *q = NULL, *f = NULL;
    if ((rc = cli_vector(self, "--vector", vec, &q)))
        return rc;
    if (filter && (rc = cli_json_object(self, "--filter", filter, &f))) {
        json_decref(q);
        return rc;
    }
    json_t *body = json_pack("{s:o, s:I}", "vector", q, "limit", (json_int_t)k);
    if (ef)
        json_object_set_new(body, "ef_search", json_integer((json_int_t)e));
    if (f)
        json_object_set_new(body, "filter", f);
    if (incl)
        json_object_set_new(body, "include_vectors", json_true());
    char path[512], what[160];
    coll_path(path, sizeof path, pos[0], "/search");
    snprintf(what, sizeof what, "search '%s'", pos[0]);
    rc = api_run(ctx, what, "POST", path, body, show_hits);
    json_decref(body);
    return rc;
}

static void show_page(const cli_ctx *ctx, json_t *data)
{
    (void)ctx;
    static const out_col cols[] = {{"ID", "id"}, {"METADATA", "metadata"}, {"VECTOR", "vector"}};
    json_t *arr = out_get(data, "vectors");
    out_table(arr, cols, json_array_size(arr) && out_get(json_array_get(arr, 0), "vector") ? 3 : 2);
    json_t *next = out_get(data, "next_offset");
    if (json_is_integer(next))
        printf("more: --offset %" JSON_INTEGER_FORMAT "\n", json_integer_value(next));
}

static int cmd_list(const cli_ctx *ctx, const cli_cmd *self, int argc, char **argv)
{
    const char *offset = NULL, *limit = NULL;
    int incl = 0;
    char *pos[1];
    cli_opt opts[] = {{"--offset", NULL, OPT_STR, &offset},
                      {"--limit", "-n", OPT_STR, &limit},
                      {"--include-vectors", NULL, OPT_FLAG, &incl},
                      {0}};
    int rc = cli_parse(self, argc, argv, opts, pos, 1, 1, NULL);
    if (rc)
        return rc;
    uint64_t off = 0, lim = 20;
    if (offset && (rc = cli_u64(self, "--offset", offset, 0, UINT64_MAX / 2, &off)))
        return rc;
    if (limit && (rc = cli_u64(self, "--limit", limit, 1, 10000, &lim)))
        return rc;
    char path[640], q[128], what[160];
    coll_path(path, sizeof path, pos[0], "/vectors");
    snprintf(q, sizeof q, "?offset=%llu&limit=%llu%s", (unsigned long long)off, (unsigned long long)lim,
             incl ? "&include_vectors=true" : "");
    strncat(path, q, sizeof path - strlen(path) - 1);
    snprintf(what, sizeof what, "list vectors of '%s'", pos[0]);
    return api_run(ctx, what, "GET", path, NULL, show_page);
}

const cli_cmd cmds_vectors[] = {
    {"vectors", "insert", cmd_insert, "insert or replace one vector",
     "vectors insert COLLECTION --vector V [--id ID] [--metadata JSON]",
     "options:\n"
     "  --vector V        the vector: 0.1,0.2,0.3 or [0.1, 0.2, 0.3] (required)\n"
     "  --id ID           its id (any string up to 256 bytes); the server makes a UUID if absent\n"
     "  --metadata JSON   a JSON object stored with the vector\n"
     "An existing id is replaced (upsert).\n\n"
     "example:\n  vectordb-cli vectors insert docs --id doc-1 --vector 0.1,0.2,0.3 "
     "--metadata '{\"title\": \"hello\"}'\n"},
    {"vectors", "list", cmd_list, "page through the vectors of a collection",
     "vectors list COLLECTION [--offset N] [--limit N] [--include-vectors]",
     "options:\n"
     "  --offset N          start at this position (default 0; see 'more:' at the end)\n"
     "  -n, --limit N       vectors per page (default 20)\n"
     "  --include-vectors   show the vectors too\n\n"
     "example:\n  vectordb-cli vectors list docs --limit 50 --offset 100\n"},
    {"vectors", "get", cmd_get, "show one vector and its metadata", "vectors get COLLECTION ID",
     "example:\n  vectordb-cli vectors get docs doc-1\n"},
    {"vectors", "delete", cmd_delete, "delete vectors by id", "vectors delete COLLECTION ID [ID...]",
     "One id uses DELETE /collections/NAME/vectors/ID; several use the batch route.\n\n"
     "example:\n  vectordb-cli vectors delete docs doc-1 doc-2\n"},
    {"vectors", "search", cmd_search, "nearest neighbours of a query vector",
     "vectors search COLLECTION --vector V [--limit K] [--ef N] [--filter JSON] "
     "[--include-vectors]",
     "options:\n"
     "  --vector V            the query: 0.1,0.2,0.3 or [0.1, 0.2, 0.3] (required)\n"
     "  -k, --limit K         number of results (default 10)\n"
     "  --ef N                search beam width (default: the collection's)\n"
     "  --filter JSON         metadata filter: {\"key\": value} equality or the must/should/\n"
     "                        must_not form of the server\n"
     "  --include-vectors     return the stored vectors too\n\n"
     "example:\n  vectordb-cli vectors search docs --vector 0.1,0.2,0.3 -k 5 "
     "--filter '{\"lang\": \"en\"}'\n"},
    {0},
};
