/*
 * cmd_recovery.c - the recovery commands: trash list|restore|cleanup,
 * backup create|list|verify|delete, restore, hard-delete, import (orphaned
 * files, with job polling and a progress bar) and audit.
 *
 * Invariants: hard-delete and backup delete ask for the collection name to be
 * typed back unless --yes (no terminal and no --yes: exit 2, nothing sent);
 * long operations (import, backup verify) report progress on stderr.
 */
#include "cli.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void show_trash(const cli_ctx *ctx, json_t *data)
{
    (void)ctx;
    static const out_col cols[] = {{"NAME", "name"},
                                   {"DELETED_AT", "deleted_at"},
                                   {"EXPIRES_AT", "expires_at"},
                                   {"VECTORS", "vector_count"},
                                   {"SIZE_BYTES", "size_bytes"}};
    out_table(json_is_array(data) ? data : out_get(data, "entries"), cols, 5);
}

static int cmd_trash_list(const cli_ctx *ctx, const cli_cmd *self, int argc, char **argv)
{
    int rc = cli_parse(self, argc, argv, NULL, NULL, 0, 0, NULL);
    if (rc)
        return rc;
    return api_run(ctx, "list trash", "GET", "/collections/deleted", NULL, show_trash);
}

/* POST /collections/NAME/restore with the given body; prints the outcome. */
static int do_restore(const cli_ctx *ctx, const char *name, json_t *body)
{
    char path[512] = "/collections/", what[160];
    http_escape(name, path, sizeof path);
    strcat(path, "/restore");
    snprintf(what, sizeof what, "restore '%s'", name);
    api_res res;
    int rc = CLI_OK;
    if (api_request(ctx, "POST", path, body, &res) != DV_OK) {
        rc = api_report(ctx, what, &res);
    } else if (ctx->json) {
        out_json(res.data ? res.data : json_null());
    } else {
        json_t *nn = json_object_get(body, "new_name");
        json_t *cnt = out_get(res.data, "vector_count|stats.vector_count");
        json_t *from = out_get(res.data, "restored_from");
        printf("restored '%s'%s%s", name, nn ? " as " : "", nn ? json_string_value(nn) : "");
        if (json_is_integer(cnt))
            printf(": %" JSON_INTEGER_FORMAT " vectors", json_integer_value(cnt));
        if (json_is_string(from))
            printf(" (from %s)", json_string_value(from));
        printf("\ninspect with: vectordb-cli collections info %s\n", nn ? json_string_value(nn) : name);
    }
    api_res_free(&res);
    return rc;
}

static int cmd_trash_restore(const cli_ctx *ctx, const cli_cmd *self, int argc, char **argv)
{
    const char *new_name = NULL;
    char *pos[1];
    cli_opt opts[] = {{"--new-name", NULL, OPT_STR, &new_name}, {0}};
    int rc = cli_parse(self, argc, argv, opts, pos, 1, 1, NULL);
    if (rc)
        return rc;
    json_t *body = json_pack("{s:s}", "source", "deleted");
    if (new_name)
        json_object_set_new(body, "new_name", json_string(new_name));
    rc = do_restore(ctx, pos[0], body);
    json_decref(body);
    return rc;
}

static int cmd_trash_cleanup(const cli_ctx *ctx, const cli_cmd *self, int argc, char **argv)
{
    int rc = cli_parse(self, argc, argv, NULL, NULL, 0, 0, NULL);
    if (rc)
        return rc;
    return api_run(ctx, "purge expired trash", "POST", "/collections/deleted/cleanup", NULL, NULL);
}

static int cmd_backup_create(const cli_ctx *ctx, const cli_cmd *self, int argc, char **argv)
{
    char *pos[1];
    int rc = cli_parse(self, argc, argv, NULL, pos, 1, 1, NULL);
    if (rc)
        return rc;
    char path[512] = "/collections/", what[160];
    http_escape(pos[0], path, sizeof path);
    strcat(path, "/backup");
    snprintf(what, sizeof what, "back up '%s'", pos[0]);
    return api_run(ctx, what, "POST", path, NULL, NULL);
}

static void show_backups(const cli_ctx *ctx, json_t *data)
{
    (void)ctx;
    static const out_col cols[] = {{"COLLECTION", "collection|name|collection_name"},
                                   {"BACKUP_ID", "backup_id|id"},
                                   {"CREATED_AT", "created_at"},
                                   {"REASON", "reason"},
                                   {"VECTORS", "vector_count"},
                                   {"SIZE_BYTES", "size_bytes"}};
    out_table(json_is_array(data) ? data : out_get(data, "backups"), cols, 6);
}

static int cmd_backup_list(const cli_ctx *ctx, const cli_cmd *self, int argc, char **argv)
{
    char *pos[1];
    int n = 0;
    int rc = cli_parse(self, argc, argv, NULL, pos, 0, 1, &n);
    if (rc)
        return rc;
    char path[512] = "/backups";
    if (n) {
        snprintf(path, sizeof path, "/collections/");
        http_escape(pos[0], path, sizeof path);
        strcat(path, "/backups");
    }
    return api_run(ctx, "list backups", "GET", path, NULL, show_backups);
}

/* A ticker thread draws elapsed-time progress while one blocking request
 * runs (backup verify has no job to poll). */
struct ticker {
    out_progress p;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
};

static void *ticker_main(void *arg)
{
    struct ticker *t = arg;
    pthread_mutex_lock(&t->mu);
    while (!t->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 200 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&t->cv, &t->mu, &ts);
        if (!t->stop && dv_mono_s() - t->p.start_s > 0.5)
            out_progress_show(&t->p, 0, 0, -1, "waiting for the server", 0);
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

static int cmd_backup_verify(const cli_ctx *ctx, const cli_cmd *self, int argc, char **argv)
{
    char *pos[2];
    int rc = cli_parse(self, argc, argv, NULL, pos, 2, 2, NULL);
    if (rc)
        return rc;
    char path[1024] = "/backups/", what[400];
    http_escape(pos[0], path, sizeof path);
    strcat(path, "/");
    http_escape(pos[1], path, sizeof path);
    strcat(path, "/verify");
    snprintf(what, sizeof what, "verify backup '%s' of '%s'", pos[1], pos[0]);
    struct ticker t;
    memset(&t, 0, sizeof t);
    out_progress_init(&t.p, ctx, "verifying", "files");
    pthread_mutex_init(&t.mu, NULL);
    pthread_cond_init(&t.cv, NULL);
    pthread_t th;
    int started = pthread_create(&th, NULL, ticker_main, &t) == 0;
    api_res res;
    dv_code c = api_request(ctx, "POST", path, NULL, &res);
    if (started) {
        pthread_mutex_lock(&t.mu);
        t.stop = 1;
        pthread_cond_signal(&t.cv);
        pthread_mutex_unlock(&t.mu);
        pthread_join(th, NULL);
    }
    out_progress_end(&t.p);
    pthread_mutex_destroy(&t.mu);
    pthread_cond_destroy(&t.cv);
    json_t *ok = c == DV_OK ? out_get(res.data, "ok|valid|verified") : NULL;
    if (c != DV_OK) {
        rc = api_report(ctx, what, &res);
    } else {
        if (ctx->json)
            out_json(res.data ? res.data : json_null());
        else {
            if (json_is_object(res.data))
                out_kv(res.data);
            printf("backup '%s' of '%s': %s\n", pos[1], pos[0],
                   json_is_false(ok) ? "DAMAGED" : "verified, every file and count checks out");
        }
        /* A 200 whose body says the backup is not valid is still a failure. */
        rc = json_is_false(ok) ? CLI_FAIL : CLI_OK;
        if (rc)
            fprintf(stderr,
                    "vectordb-cli: %s: the backup failed verification\n"
                    "  next: do not restore from it; use another backup "
                    "('vectordb-cli backup list %s')\n",
                    what, pos[0]);
    }
    api_res_free(&res);
    return rc;
}

static int cmd_backup_delete(const cli_ctx *ctx, const cli_cmd *self, int argc, char **argv)
{
    int yes = 0;
    char *pos[2];
    cli_opt opts[] = {{"--yes", "-y", OPT_FLAG, &yes}, {0}};
    int rc = cli_parse(self, argc, argv, opts, pos, 2, 2, NULL);
    if (rc)
        return rc;
    if (!yes) {
        char q[400];
        snprintf(q, sizeof q, "Backup '%s' of collection '%s' will be deleted permanently.", pos[1], pos[0]);
        if ((rc = cli_confirm(q, pos[0])))
            return rc;
    }
    char path[1024] = "/backups/", what[400];
    http_escape(pos[0], path, sizeof path);
    strcat(path, "/");
    http_escape(pos[1], path, sizeof path);
    snprintf(what, sizeof what, "delete backup '%s' of '%s'", pos[1], pos[0]);
    api_res res;
    if (api_request(ctx, "DELETE", path, NULL, &res) != DV_OK) {
        rc = api_report(ctx, what, &res);
    } else {
        rc = CLI_OK;
        if (ctx->json)
            out_json(res.data ? res.data : json_null());
        else
            printf("deleted backup '%s' of '%s'\n", pos[1], pos[0]);
    }
    api_res_free(&res);
    return rc;
}

static int cmd_restore(const cli_ctx *ctx, const cli_cmd *self, int argc, char **argv)
{
    const char *backup = NULL, *new_name = NULL;
    int from_trash = 0, overwrite = 0, skip_backup = 0;
    char *pos[1];
    cli_opt opts[] = {{"--backup", NULL, OPT_STR, &backup},
                      {"--from-trash", NULL, OPT_FLAG, &from_trash},
                      {"--new-name", NULL, OPT_STR, &new_name},
                      {"--overwrite", NULL, OPT_FLAG, &overwrite},
                      {"--skip-backup", NULL, OPT_FLAG, &skip_backup},
                      {0}};
    int rc = cli_parse(self, argc, argv, opts, pos, 1, 1, NULL);
    if (rc)
        return rc;
    if (backup && from_trash)
        return cli_usage_error(self, "give either --backup ID or --from-trash, not both");
    if (skip_backup && !overwrite)
        return cli_usage_error(self, "--skip-backup only goes with --overwrite");
    json_t *body = json_object();
    if (backup) {
        json_object_set_new(body, "source", json_string("backup"));
        json_object_set_new(body, "backup_id", json_string(backup));
    } else {
        json_object_set_new(body, "source", json_string("deleted"));
    }
    if (new_name)
        json_object_set_new(body, "new_name", json_string(new_name));
    if (overwrite)
        json_object_set_new(body, "overwrite", json_true());
    if (skip_backup)
        json_object_set_new(body, "skip_backup", json_true());
    rc = do_restore(ctx, pos[0], body);
    json_decref(body);
    if (rc == CLI_OK && overwrite && !ctx->json) {
        const char *t = new_name ? new_name : pos[0];
        printf("a live '%s', if there was one, is in the trash%s: vectordb-cli trash list%s%s\n", t,
               skip_backup ? "" : " and backed up first (reason pre-restore-overwrite)",
               skip_backup ? "" : "; vectordb-cli backup list ", skip_backup ? "" : t);
    }
    return rc;
}

static int cmd_hard_delete(const cli_ctx *ctx, const cli_cmd *self, int argc, char **argv)
{
    int yes = 0, skip = 0;
    char *pos[1];
    cli_opt opts[] = {{"--yes", "-y", OPT_FLAG, &yes}, {"--skip-backup", NULL, OPT_FLAG, &skip}, {0}};
    int rc = cli_parse(self, argc, argv, opts, pos, 1, 1, NULL);
    if (rc)
        return rc;
    if (!yes) {
        char q[400];
        snprintf(q, sizeof q, "Collection '%s' will be removed PERMANENTLY (not to the trash)%s.", pos[0],
                 skip ? " and WITHOUT a backup" : "; a backup is taken first");
        if ((rc = cli_confirm(q, pos[0])))
            return rc;
    }
    char path[512] = "/collections/", what[160];
    http_escape(pos[0], path, sizeof path);
    strcat(path, skip ? "/hard-delete?skip_backup=true" : "/hard-delete");
    snprintf(what, sizeof what, "hard-delete '%s'", pos[0]);
    api_res res;
    if (api_request(ctx, "DELETE", path, NULL, &res) != DV_OK) {
        rc = api_report(ctx, what, &res);
    } else {
        rc = CLI_OK;
        if (ctx->json) {
            out_json(res.data ? res.data : json_null());
        } else {
            printf("hard-deleted collection '%s'\n", pos[0]);
            json_t *b = out_get(res.data, "backup_id|backup.backup_id");
            if (b)
                printf("a backup was taken first: %s\nundo with: vectordb-cli restore %s --backup %s\n",
                       json_string_value(b) ? json_string_value(b) : "?", pos[0],
                       json_string_value(b) ? json_string_value(b) : "ID");
        }
    }
    api_res_free(&res);
    return rc;
}

static int job_state_is(const char *s, const char *const *set)
{
    for (; *set; set++)
        if (!strcasecmp(s, *set))
            return 1;
    return 0;
}

/* Poll GET /jobs/ID until it finishes, drawing progress; *final receives the
 * last job document. 0 when the job succeeded. */
static int poll_job(const cli_ctx *ctx, const char *job_id, json_t **final)
{
    static const char *const done_set[] = {"done", "completed", "complete", "succeeded", "success", "finished", NULL};
    static const char *const fail_set[] = {"failed", "error", "cancelled", "canceled", "interrupted", NULL};
    char path[512] = "/jobs/";
    http_escape(job_id, path, sizeof path);
    out_progress p;
    char phase_name[64] = "", label[96] = "importing";
    double t_start = dv_mono_s();
    out_progress_init(&p, ctx, label, "vectors");
    int transient = 0;
    for (;;) {
        api_res res;
        if (api_request(ctx, "GET", path, NULL, &res) != DV_OK) {
            /* The server restarting mid-import must not lose the operator's
             * view: a few transport failures are tolerated. */
            if (res.status == 0 && ++transient < 10) {
                api_res_free(&res);
                http_sleep_s(1.0);
                continue;
            }
            out_progress_end(&p);
            char what[160];
            snprintf(what, sizeof what, "follow import job '%s'", job_id);
            int rc = api_report(ctx, what, &res);
            api_res_free(&res);
            return rc;
        }
        transient = 0;
        json_t *d = res.data;
        json_t *st = out_get(d, "state|status");
        json_t *phase = out_get(d, "phase");
        const char *s = json_string_value(st);
        const char *ph = json_string_value(phase);
        json_t *done = out_get(d, "done|processed|progress.done|imported|current");
        json_t *total = out_get(d, "total|progress.total");
        json_t *prog = out_get(d, "progress|fraction|percent");
        double frac = -1;
        if (json_is_number(prog)) {
            frac = json_number_value(prog);
            if (frac > 1.0)
                frac /= 100.0;
        }
        uint64_t nd = json_is_integer(done) ? (uint64_t)json_integer_value(done) : 0;
        uint64_t nt = json_is_integer(total) ? (uint64_t)json_integer_value(total) : 0;
        int finished = (s && job_state_is(s, done_set)) || (ph && job_state_is(ph, done_set)) ||
                       json_is_true(out_get(d, "done|finished"));
        int failed = (s && job_state_is(s, fail_set)) || (ph && job_state_is(ph, fail_set));
        /* Each phase has its own counts and unit (bytes while reading the
         * files, vectors while indexing): a new line and rate per phase. */
        const char *cur = ph ? ph : s ? s : "?";
        if (finished || failed) {
            out_progress_end(&p);
            char c1[32];
            out_commas(nd, c1, sizeof c1);
            fprintf(stderr, "import %s: %s vectors, %.1f s\n", failed ? "failed" : "done", c1, dv_mono_s() - t_start);
        } else if (strcmp(cur, phase_name)) {
            if (phase_name[0])
                out_progress_end(&p);
            snprintf(phase_name, sizeof phase_name, "%s", cur);
            snprintf(label, sizeof label, "import: %s", phase_name);
            int bytes = !strcmp(cur, "read") || !strcmp(cur, "scan") || !strcmp(cur, "copy");
            out_progress_init(&p, ctx, label, bytes ? "bytes" : "vectors");
        }
        if (!finished && !failed)
            out_progress_show(&p, nd, nt, frac, NULL, 0);
        if (finished || failed || cli_interrupted) {
            out_progress_end(&p);
            *final = json_incref(d);
            api_res_free(&res);
            if (cli_interrupted && !finished && !failed) {
                fprintf(stderr,
                        "vectordb-cli: stopped following job '%s'; it continues on the "
                        "server\n  next: vectordb-cli --json import --job %s\n",
                        job_id, job_id);
                return CLI_FAIL;
            }
            return failed ? CLI_FAIL : CLI_OK;
        }
        api_res_free(&res);
        http_sleep_s(0.25);
    }
}

static int cmd_import(const cli_ctx *ctx, const cli_cmd *self, int argc, char **argv)
{
    const char *src = NULL, *name = NULL, *dim = NULL, *metric = NULL, *vtype = NULL, *format = NULL, *job = NULL;
    int wait_sync = 0, overwrite = 0, skip_backup = 0;
    cli_opt opts[] = {{"--path", NULL, OPT_STR, &src},
                      {"--name", NULL, OPT_STR, &name},
                      {"--dim", "-d", OPT_STR, &dim},
                      {"--metric", NULL, OPT_STR, &metric},
                      {"--type", NULL, OPT_STR, &vtype},
                      {"--format", NULL, OPT_STR, &format},
                      {"--sync", NULL, OPT_FLAG, &wait_sync},
                      {"--job", NULL, OPT_STR, &job},
                      {"--overwrite", NULL, OPT_FLAG, &overwrite},
                      {"--skip-backup", NULL, OPT_FLAG, &skip_backup},
                      {0}};
    int rc = cli_parse(self, argc, argv, opts, NULL, 0, 0, NULL);
    if (rc)
        return rc;
    json_t *final = NULL;
    char job_err[700] = "";
    if (job) {
        cli_catch_signals();
        rc = poll_job(ctx, job, &final);
        goto show;
    }
    if (!src || !name)
        return cli_usage_error(self, "--path and --name are required");
    json_t *body = json_pack("{s:s, s:s}", "orphaned_path", src, "collection_name", name);
    if (dim) {
        uint64_t d;
        if ((rc = cli_u64(self, "--dim", dim, 1, 65536, &d))) {
            json_decref(body);
            return rc;
        }
        json_object_set_new(body, "dimension", json_integer((json_int_t)d));
    }
    if (metric)
        json_object_set_new(body, "distance_metric", json_string(metric));
    if (vtype)
        json_object_set_new(body, "vector_type", json_string(vtype));
    if (format)
        json_object_set_new(body, "format", json_string(format));
    if (overwrite)
        json_object_set_new(body, "overwrite", json_true());
    if (skip_backup)
        json_object_set_new(body, "skip_backup", json_true());
    char what[300];
    snprintf(what, sizeof what, "import '%s' as '%s'", src, name);
    api_res res;
    dv_code c =
        api_request(ctx, "POST", wait_sync ? "/collections/import" : "/collections/import?wait=false", body, &res);
    json_decref(body);
    if (c != DV_OK) {
        rc = api_report(ctx, what, &res);
        api_res_free(&res);
        return rc;
    }
    json_t *jid = res.status == 202 ? out_get(res.data, "job_id|id|job.id") : NULL;
    if (!jid || !json_is_string(jid)) {
        /* Answered synchronously: the data is the import result. */
        final = json_incref(res.data);
        api_res_free(&res);
        rc = CLI_OK;
        goto show;
    }
    char job_id[256];
    snprintf(job_id, sizeof job_id, "%s", json_string_value(jid));
    api_res_free(&res);
    if (!ctx->json)
        fprintf(stderr, "import job %s started\n", job_id);
    cli_catch_signals();
    rc = poll_job(ctx, job_id, &final);
show:
    if (final) {
        json_t *je = out_get(final, "error");
        json_t *jc = out_get(final, "code");
        if (json_is_string(je))
            snprintf(job_err, sizeof job_err, "%s%s%s%s", json_string_value(je), json_is_string(jc) ? " (code " : "",
                     json_is_string(jc) ? json_string_value(jc) : "", json_is_string(jc) ? ")" : "");
        if (ctx->json)
            out_json(final);
        else if (json_is_object(final))
            out_kv(final);
        json_decref(final);
    }
    if (rc == CLI_FAIL && !cli_interrupted && job_err[0])
        fprintf(stderr,
                "vectordb-cli: import failed: %s\n"
                "  next: fix the cause and import again; the source files were not "
                "modified\n",
                job_err);
    return rc;
}

static void show_audit(const cli_ctx *ctx, json_t *data)
{
    (void)ctx;
    static const out_col cols[] = {{"TIME", "time"},       {"ACTION", "action"}, {"COLLECTION", "collection"},
                                   {"OUTCOME", "outcome"}, {"ACTOR", "actor"},   {"REMOTE", "remote"},
                                   {"DETAIL", "detail"}};
    out_table(json_is_array(data) ? data : out_get(data, "entries|events"), cols, 7);
}

static int cmd_audit(const cli_ctx *ctx, const cli_cmd *self, int argc, char **argv)
{
    const char *limit = NULL;
    cli_opt opts[] = {{"--limit", "-n", OPT_STR, &limit}, {0}};
    int rc = cli_parse(self, argc, argv, opts, NULL, 0, 0, NULL);
    if (rc)
        return rc;
    uint64_t n = 50;
    if (limit && (rc = cli_u64(self, "--limit", limit, 1, 1000000, &n)))
        return rc;
    char path[64];
    snprintf(path, sizeof path, "/audit?limit=%llu", (unsigned long long)n);
    return api_run(ctx, "read the audit log", "GET", path, NULL, show_audit);
}

const cli_cmd cmds_recovery[] = {
    {"trash", "list", cmd_trash_list, "soft-deleted collections and when they expire", "trash list",
     "example:\n  vectordb-cli trash list\n"},
    {"trash", "restore", cmd_trash_restore, "bring a collection back from the trash",
     "trash restore NAME [--new-name NEW]",
     "Restores the newest trash entry of NAME. If a live collection already has\n"
     "the name, the server refuses (409): give --new-name.\n\n"
     "options:\n  --new-name NEW   restore under another name\n\n"
     "example:\n  vectordb-cli trash restore docs --new-name docs_recovered\n"},
    {"trash", "cleanup", cmd_trash_cleanup, "purge expired trash entries now", "trash cleanup",
     "Only entries past their retention are purged.\n\nexample:\n  vectordb-cli trash cleanup\n"},
    {"backup", "create", cmd_backup_create, "take a backup of a collection", "backup create COLLECTION",
     "example:\n  vectordb-cli backup create docs\n"},
    {"backup", "list", cmd_backup_list, "list backups (all, or of one collection)", "backup list [COLLECTION]",
     "example:\n  vectordb-cli backup list docs\n"},
    {"backup", "verify", cmd_backup_verify, "re-read and check every file of a backup",
     "backup verify COLLECTION BACKUP_ID",
     "Exit code 1 when the backup is damaged.\n\n"
     "example:\n  vectordb-cli backup verify docs 20261125T210000Z-manual\n"},
    {"backup", "delete", cmd_backup_delete, "delete a backup permanently", "backup delete COLLECTION BACKUP_ID [--yes]",
     "Asks for the collection name to be typed back unless --yes.\n\n"
     "options:\n  -y, --yes   do not ask for confirmation\n\n"
     "example:\n  vectordb-cli backup delete docs 20261125T210000Z-manual\n"},
    {NULL, "restore", cmd_restore, "restore a collection from the trash or a backup",
     "restore NAME [--backup BACKUP_ID | --from-trash] [--new-name NEW] [--overwrite [--skip-backup]]",
     "Without --backup the newest trash entry of NAME is restored. The index is\n"
     "rebuilt by the server when needed. If a live collection has the target\n"
     "name the server refuses (409) unless --new-name or --overwrite is given.\n\n"
     "options:\n"
     "  --backup ID      restore this backup (see 'vectordb-cli backup list NAME')\n"
     "  --from-trash     restore from the trash (the default)\n"
     "  --new-name NEW   restore under another name\n"
     "  --overwrite      replace the live collection: it is backed up (reason\n"
     "                   pre-restore-overwrite) and moved to the trash first\n"
     "  --skip-backup    with --overwrite: no backup (the old one is still in the trash)\n\n"
     "example:\n  vectordb-cli restore docs --backup 20261125T210000Z-pre-hard-delete\n"
     "  vectordb-cli restore docs --backup 20261125T210000Z-manual --overwrite\n"},
    {NULL, "hard-delete", cmd_hard_delete, "remove a collection permanently (backup first)",
     "hard-delete NAME [--yes] [--skip-backup]",
     "The server takes a backup first (reason pre-hard-delete) unless --skip-backup.\n"
     "Asks for the collection name to be typed back unless --yes.\n\n"
     "options:\n  -y, --yes        do not ask for confirmation\n"
     "  --skip-backup    do not take the automatic backup (the data is gone for good)\n\n"
     "example:\n  vectordb-cli hard-delete old_docs\n"},
    {NULL, "import", cmd_import, "import orphaned collection files as a new collection",
     "import --path DIR --name NAME [--dim N --metric M --type T] [--format F] [--sync]\n"
     "       [--overwrite [--skip-backup]] | --job JOB_ID",
     "Imports our own collection directories, the original d-vecDB's vectors.bin\n"
     "(which needs --dim and --metric) and .fvecs/.npy files. The path must lie\n"
     "under one of the server's --import-root directories. The source is never\n"
     "modified. The import runs as a server job; progress is shown until it ends.\n\n"
     "options:\n"
     "  --path DIR       the orphaned directory or file (on the server's machine)\n"
     "  --name NAME      the collection to create\n"
     "  -d, --dim N      dimension (needed when the files carry no config)\n"
     "  --metric M       Cosine, Euclidean, DotProduct or Manhattan\n"
     "  --type T         Float32 (default), Float16, Int8\n"
     "  --format F       auto (default)\n"
     "  --sync           wait in one request instead of polling a job\n"
     "  --overwrite      replace a live collection of that name: it is backed up\n"
     "                   (reason pre-import) and moved to the trash, both ids shown\n"
     "  --skip-backup    with --overwrite: no backup (the old one is still in the trash)\n"
     "  --job JOB_ID     follow an import job started earlier\n\n"
     "example:\n  vectordb-cli import --path /srv/orphans/incidents --name incidents "
     "--dim 1536 --metric cosine\n"},
    {NULL, "audit", cmd_audit, "recent entries of the audit log (admin key)", "audit [--limit N]",
     "options:\n  -n, --limit N   number of entries (default 50)\n\n"
     "example:\n  vectordb-cli audit --limit 20\n"},
    {0},
};
