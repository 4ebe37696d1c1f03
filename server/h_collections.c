/*
 * h_collections.c - handlers for health, readiness, stats, metrics, the
 * OpenAPI document and the collection routes (create, list, info, stats,
 * soft delete).
 *
 * Each handler: parse, call the engine, map the code, write JSON. Bodies
 * reject unknown fields (a typo such as "distance" must not silently create
 * a Cosine collection) and wrong types; metric and vector type names are
 * case-insensitive; distance_metric defaults to Cosine and vector_type to
 * Float32 (docs/api.md).
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "server.h"

void h_health(srv_req *r)
{
    srv_reply_ok(r, 200,
                 json_pack("{s:s, s:s, s:b, s:f}", "status", "healthy", "version", DV_VERSION_STRING, "ready",
                           srv_db() != NULL, "uptime_seconds", srv_mono() - g_srv.started_mono));
}

void h_livez(srv_req *r)
{
    srv_reply_ok(r, 200, json_pack("{s:s}", "status", "alive"));
}

void h_readyz(srv_req *r)
{
    if (srv_db()) {
        srv_reply_ok(r, 200, json_pack("{s:s}", "status", "ready"));
        return;
    }
    if (__atomic_load_n(&g_srv.open_failed, __ATOMIC_ACQUIRE))
        srv_reply_err(r, 503, "not_ready", "server: the database failed to open: %s", g_srv.open_error);
    else
        srv_reply_err(r, 503, "not_ready", "server: the database is still opening (recovery in progress)");
}

void h_stats(srv_req *r)
{
    dv_db_stats st;
    dv_err err = {0};
    if (dv_db_stats_get(srv_db(), &st, &err) != DV_OK) {
        srv_reply_dv(r, &err);
        return;
    }
    srv_reply_ok(r, 200,
                 json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:b, s:s, s:f}", "collections",
                           (json_int_t)st.n_collections, "damaged_collections", (json_int_t)st.n_damaged,
                           "total_vectors", (json_int_t)st.n_vectors, "disk_bytes", (json_int_t)st.disk_bytes,
                           "memory_bytes", (json_int_t)st.mem_bytes, "disk_free_bytes", (json_int_t)st.disk_free_bytes,
                           "wal_fsyncs", (json_int_t)st.wal_fsyncs, "wal_fsync_seconds", st.wal_fsync_seconds,
                           "read_only", st.poisoned != 0, "version", DV_VERSION_STRING, "uptime_seconds",
                           srv_mono() - g_srv.started_mono));
}

void h_metrics(srv_req *r)
{
    size_t n = 0;
    char *text = srv_metrics_render(&n);
    srv_reply_text(r, 200, "text/plain; version=0.0.4; charset=utf-8", text, n);
}

void h_openapi(srv_req *r)
{
    json_t *doc = srv_openapi();
    char *s = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    /* The document itself, not wrapped in the envelope: tools read it as is. */
    srv_reply_text(r, 200, "application/json", s, s ? strlen(s) : 0);
}

json_t *srv_coll_info_json(const dv_coll_info *ci)
{
    const dv_coll_config *c = &ci->config;
    char created[40];
    json_t *index = json_pack("{s:I, s:I, s:I, s:I}", "max_connections", (json_int_t)c->m, "ef_construction",
                              (json_int_t)c->ef_construction, "ef_search", (json_int_t)c->ef_search, "max_layer",
                              (json_int_t)c->max_layer);
    json_t *config =
        json_pack("{s:s, s:I, s:s, s:s, s:O}", "name", c->name, "dimension", (json_int_t)c->dim, "distance_metric",
                  dv_metric_name(c->metric), "vector_type", dv_vtype_name(c->vtype), "index_config", index);
    json_t *stats = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "vector_count", (json_int_t)ci->n_vectors,
                              "deleted_count", (json_int_t)ci->n_deleted, "disk_bytes", (json_int_t)ci->disk_bytes,
                              "memory_bytes", (json_int_t)ci->mem_bytes, "wal_bytes", (json_int_t)ci->wal_bytes,
                              "last_seq", (json_int_t)ci->last_seq);
    json_t *o =
        json_pack("{s:s, s:I, s:s, s:s, s:o, s:I, s:o, s:o, s:s, s:I, s:b}", "name", c->name, "dimension",
                  (json_int_t)c->dim, "distance_metric", dv_metric_name(c->metric), "vector_type",
                  dv_vtype_name(c->vtype), "index_config", index, "vector_count", (json_int_t)ci->n_vectors, "config",
                  config, "stats", stats, "created_at", srv_iso_time(ci->created_at_ms, created, sizeof created),
                  "created_at_ms", (json_int_t)ci->created_at_ms, "damaged", ci->damaged != 0);
    if (o && ci->damaged)
        json_object_set_new(o, "damage", json_string(ci->damage));
    return o;
}

dv_coll *srv_open_coll(srv_req *r)
{
    dv_err err = {0};
    const char *name = r->params[0];
    if (dv_name_validate(name, &err) != DV_OK) {
        srv_reply_dv(r, &err);
        return NULL;
    }
    dv_coll *coll = NULL;
    if (dv_coll_open(srv_db(), name, &coll, &err) != DV_OK) {
        srv_reply_dv(r, &err);
        return NULL;
    }
    return coll;
}

void h_coll_list(srv_req *r)
{
    int detail = 0;
    if (srv_query_bool(r, "detail", &detail) < 0)
        return;
    dv_coll_info *infos = NULL;
    size_t n = 0;
    dv_err err = {0};
    if (dv_db_list(srv_db(), &infos, &n, &err) != DV_OK) {
        srv_reply_dv(r, &err);
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, detail ? srv_coll_info_json(&infos[i]) : json_string(infos[i].config.name));
    dv_free(infos);
    srv_reply_ok(r, 200, arr);
}

void h_coll_create(srv_req *r)
{
    static const char *const fields[] = {"name", "dimension", "distance_metric", "vector_type", "index_config", NULL};
    static const char *const idx_fields[] = {"max_connections", "ef_construction", "ef_search", "max_layer", NULL};
    const srv_config *sc = &g_srv.cfg;
    json_t *b = srv_body_object(r, 0);
    if (!b)
        return;
    dv_coll_config cfg;
    memset(&cfg, 0, sizeof cfg);
    const char *name = NULL, *metric = NULL, *vtype = NULL;
    uint64_t dim = 0, m = sc->m, efc = sc->ef_construction, efs = sc->ef_search, ml = sc->max_layer;
    dv_err err = {0};
    if (srv_check_fields(r, b, fields, "create collection") < 0)
        goto out;
    int rc = srv_get_str(r, b, "name", &name);
    if (rc < 0)
        goto out;
    if (rc == 0) {
        srv_reply_err(r, 400, "invalid_body", "create collection: field \"name\" is required");
        goto out;
    }
    if (dv_name_validate(name, &err) != DV_OK) {
        srv_reply_dv(r, &err);
        goto out;
    }
    rc = srv_get_uint(r, b, "dimension", 1, DV_DIM_MAX, &dim);
    if (rc < 0)
        goto out;
    if (rc == 0) {
        srv_reply_err(r, 400, "invalid_body", "create collection: field \"dimension\" is required");
        goto out;
    }
    if (srv_get_str(r, b, "distance_metric", &metric) < 0 || srv_get_str(r, b, "vector_type", &vtype) < 0)
        goto out;
    cfg.metric = DV_METRIC_COSINE;
    cfg.vtype = DV_VTYPE_F32;
    if (metric && dv_metric_parse(metric, &cfg.metric, &err) != DV_OK) {
        srv_reply_dv(r, &err);
        goto out;
    }
    if (vtype && dv_vtype_parse(vtype, &cfg.vtype, &err) != DV_OK) {
        srv_reply_dv(r, &err);
        goto out;
    }
    json_t *ic = json_object_get(b, "index_config");
    if (ic && !json_is_null(ic)) {
        if (!json_is_object(ic)) {
            srv_reply_err(r, 400, "invalid_type", "create collection: \"index_config\" must be an object");
            goto out;
        }
        if (srv_check_fields(r, ic, idx_fields, "index_config") < 0 ||
            srv_get_uint(r, ic, "max_connections", DV_HNSW_M_MIN, DV_HNSW_M_MAX, &m) < 0 ||
            srv_get_uint(r, ic, "ef_construction", DV_HNSW_EF_CONSTRUCTION_MIN, DV_HNSW_EF_CONSTRUCTION_MAX, &efc) <
                0 ||
            srv_get_uint(r, ic, "ef_search", DV_HNSW_EF_SEARCH_MIN, DV_HNSW_EF_SEARCH_MAX, &efs) < 0 ||
            srv_get_uint(r, ic, "max_layer", DV_HNSW_MAX_LAYER_MIN, DV_HNSW_MAX_LAYER_MAX, &ml) < 0)
            goto out;
    }
    snprintf(cfg.name, sizeof cfg.name, "%s", name);
    cfg.dim = (uint32_t)dim;
    cfg.m = (uint32_t)m;
    cfg.ef_construction = (uint32_t)efc;
    cfg.ef_search = (uint32_t)efs;
    cfg.max_layer = (uint32_t)ml;
    dv_code c = dv_coll_create(srv_db(), &cfg, &err);
    srv_audit(r, "create", cfg.name, dv_code_name(c), NULL);
    if (c != DV_OK) {
        srv_reply_dv(r, &err);
        goto out;
    }
    /* Answer with the stored config (defaults filled in by the engine). */
    dv_coll *coll = NULL;
    dv_coll_info ci;
    if (dv_coll_open(srv_db(), cfg.name, &coll, &err) == DV_OK && dv_coll_info_get(coll, &ci, &err) == DV_OK)
        srv_reply_ok(r, 200, srv_coll_info_json(&ci));
    else
        srv_reply_ok(r, 200, json_pack("{s:s}", "name", cfg.name));
    if (coll)
        dv_coll_close(coll);
out:
    json_decref(b);
}

static void coll_info_reply(srv_req *r, int stats_only)
{
    dv_coll *coll = srv_open_coll(r);
    if (!coll)
        return;
    dv_coll_info ci;
    dv_err err = {0};
    if (dv_coll_info_get(coll, &ci, &err) != DV_OK) {
        srv_reply_dv(r, &err);
    } else {
        json_t *o = srv_coll_info_json(&ci);
        if (stats_only && o) {
            json_t *st = json_incref(json_object_get(o, "stats"));
            json_object_set_new(st, "name", json_string(ci.config.name));
            json_decref(o);
            o = st;
        }
        srv_reply_ok(r, 200, o);
    }
    dv_coll_close(coll);
}

void h_coll_get(srv_req *r)
{
    coll_info_reply(r, 0);
}

void h_coll_stats(srv_req *r)
{
    coll_info_reply(r, 1);
}

/* A trash entry as JSON (also used by the recovery handlers' lists). */
json_t *srv_trash_json(const dv_trash_entry *t)
{
    char d[40], e[40];
    return json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I}", "name", t->name, "trash_id", t->trash_id, "deleted_at",
                     srv_iso_time(t->deleted_at_ms, d, sizeof d), "expires_at",
                     srv_iso_time(t->expires_at_ms, e, sizeof e), "deleted_at_ms", (json_int_t)t->deleted_at_ms,
                     "expires_at_ms", (json_int_t)t->expires_at_ms, "vector_count", (json_int_t)t->vector_count,
                     "size_bytes", (json_int_t)t->size_bytes);
}

void h_coll_delete(srv_req *r)
{
    dv_err err = {0};
    const char *name = r->params[0];
    if (dv_name_validate(name, &err) != DV_OK) {
        srv_reply_dv(r, &err);
        return;
    }
    dv_trash_entry t;
    memset(&t, 0, sizeof t);
    dv_code c = dv_coll_drop(srv_db(), name, &t, &err);
    srv_audit(r, "delete", name, dv_code_name(c), c == DV_OK ? t.trash_id : NULL);
    if (c != DV_OK) {
        srv_reply_dv(r, &err);
        return;
    }
    srv_reply_ok(r, 200, srv_trash_json(&t));
}
