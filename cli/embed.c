/*
 * embed.c - text -> vector through an OpenAI-compatible embeddings endpoint
 * (OpenAI, Ollama, llama.cpp server, vLLM): POST {model, input: [texts]} ->
 * {data: [{embedding: [...], index: i}, ...]}.
 *
 * One attempt per call; the caller (cmd_ingest.c) owns retries, so the same
 * backoff, idempotency and checkpoint rules apply as for the server.
 * Invariant: on DV_OK every text has exactly one finite vector, all of the
 * same dimension, returned in input order whatever order `data` came in.
 */
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

char *embed_endpoint(const char *url)
{
    size_t n = strlen(url);
    while (n && url[n - 1] == '/')
        n--;
    const char *suffix = "";
    if (!(n >= 11 && !strncmp(url + n - 11, "/embeddings", 11)))
        suffix = (n >= 3 && !strncmp(url + n - 3, "/v1", 3)) ? "/embeddings" : "/v1/embeddings";
    char *out = malloc(n + strlen(suffix) + 1);
    if (!out)
        return NULL;
    memcpy(out, url, n);
    strcpy(out + n, suffix);
    return out;
}

dv_code embed_once(http_conn *c, const embed_cfg *cfg, const char *const *texts, size_t n, float **out, uint32_t *dim,
                   http_resp *r, dv_err *err)
{
    json_t *input = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(input, json_string(texts[i]));
    json_t *body = json_pack("{s:o}", "input", input);
    if (cfg->model)
        json_object_set_new(body, "model", json_string(cfg->model));
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (!text)
        return dv_errorf(err, DV_EINVAL, "embed: texts are not valid UTF-8");
    dv_code rc = http_do(c, "POST", cfg->url, cfg->key, text, strlen(text), cfg->timeout_s, r, err);
    free(text);
    if (rc)
        return rc;
    if (r->status < 200 || r->status > 299) {
        /* OpenAI-style errors: {"error": {"message": ...}} or a string. */
        json_t *doc = json_loadb(r->body, r->body_len, 0, NULL);
        json_t *e = json_object_get(doc, "error");
        const char *msg = json_is_string(e) ? json_string_value(e) : json_string_value(json_object_get(e, "message"));
        dv_errorf(err, DV_EIO, "embed: %s: HTTP %ld%s%.200s", cfg->url, r->status, msg ? ": " : "", msg ? msg : "");
        json_decref(doc);
        return DV_EIO;
    }
    json_error_t je;
    json_t *doc = json_loadb(r->body, r->body_len, 0, &je);
    json_t *data = json_object_get(doc, "data");
    float **vecs = NULL;
    uint32_t d = 0;
    if (!json_is_array(data) || json_array_size(data) != n) {
        rc = dv_errorf(err, DV_EINVAL, "embed: %s: expected data[] with %zu embeddings, got %s", cfg->url, n,
                       doc ? "a different shape" : je.text);
        goto done;
    }
    vecs = calloc(n, sizeof *vecs);
    if (!vecs) {
        rc = dv_errorf(err, DV_ENOMEM, "embed: out of memory");
        goto done;
    }
    size_t i;
    json_t *item;
    json_array_foreach(data, i, item)
    {
        json_t *idx = json_object_get(item, "index");
        json_t *emb = json_object_get(item, "embedding");
        size_t at = json_is_integer(idx) ? (size_t)json_integer_value(idx) : i;
        size_t en = json_array_size(emb);
        if (at >= n || vecs[at] || en == 0 || (d && en != d)) {
            rc = dv_errorf(err, DV_EINVAL,
                           "embed: %s: item %zu has a bad index or embedding (index %zu, %zu "
                           "dimensions)",
                           cfg->url, i, at, en);
            goto done;
        }
        d = (uint32_t)en;
        vecs[at] = malloc(en * sizeof **vecs);
        if (!vecs[at]) {
            rc = dv_errorf(err, DV_ENOMEM, "embed: out of memory");
            goto done;
        }
        for (size_t j = 0; j < en; j++) {
            json_t *x = json_array_get(emb, j);
            double v = json_number_value(x);
            if (!json_is_number(x) || !isfinite((float)v)) {
                rc = dv_errorf(err, DV_EINVAL,
                               "embed: %s: embedding %zu component %zu is not a "
                               "finite number",
                               cfg->url, at, j);
                goto done;
            }
            vecs[at][j] = (float)v;
        }
    }
    for (i = 0; i < n; i++)
        out[i] = vecs[i];
    *dim = d;
    free(vecs);
    vecs = NULL;
done:
    if (vecs) {
        for (i = 0; i < n; i++)
            free(vecs[i]);
        free(vecs);
    }
    json_decref(doc);
    return rc;
}
