/*
 * main.c - vectordb-cli entry point: global flags, command dispatch, help,
 * argument parsing helpers and the typed-name confirmation.
 *
 * Global flags (--url, --api-key, --timeout, --json, -v) may appear anywhere
 * before a "--"; they are removed from argv before the command sees it.
 * Invariant: every command returns CLI_OK, CLI_FAIL or CLI_USAGE, which is
 * the process exit code; nothing else calls exit().
 */
#include "cli.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

volatile sig_atomic_t cli_interrupted;

static const cli_cmd *const cmd_groups[] = {cmds_collections, cmds_vectors, cmds_recovery, cmds_ingest};
#define N_GROUPS (sizeof cmd_groups / sizeof cmd_groups[0])

static const char *group_summary(const char *g)
{
    if (!strcmp(g, "collections"))
        return "create, list, inspect and (soft-)delete collections";
    if (!strcmp(g, "vectors"))
        return "insert, get, delete and search vectors";
    if (!strcmp(g, "trash"))
        return "list and restore soft-deleted collections, purge expired ones";
    if (!strcmp(g, "backup"))
        return "create, list, verify and delete backups";
    return "";
}

static void print_main_help(FILE *f)
{
    fprintf(f, "vectordb-cli - command-line client of vectordb-server (d-vecDB)\n\n"
               "usage: vectordb-cli [global options] COMMAND [SUBCOMMAND] [options]\n\n"
               "global options (anywhere on the line):\n"
               "  --url URL         server address (default " CLI_DEFAULT_URL ", env DVECDB_URL)\n"
               "  --api-key KEY     API key, sent as Authorization: Bearer (env DVECDB_API_KEY)\n"
               "  --timeout SEC     per-request timeout in seconds (default 30)\n"
               "  --json            print the server's data as JSON instead of tables\n"
               "  -v, --verbose     log requests and retries on stderr\n\n"
               "commands:\n");
    const char *last_group = NULL;
    for (size_t g = 0; g < N_GROUPS; g++)
        for (const cli_cmd *c = cmd_groups[g]; c->name; c++) {
            if (c->group) {
                if (!last_group || strcmp(last_group, c->group))
                    fprintf(f, "  %-22s %s\n", c->group, group_summary(c->group));
                last_group = c->group;
                fprintf(f, "    %-20s %s\n", c->name, c->summary);
            } else {
                last_group = NULL;
                fprintf(f, "  %-22s %s\n", c->name, c->summary);
            }
        }
    fprintf(f, "\nexit codes: 0 ok, 1 the operation failed, 2 usage error\n"
               "run 'vectordb-cli COMMAND --help' for a command's options and an example.\n"
               "example: vectordb-cli --url http://127.0.0.1:8080 collections list\n");
}

static void print_group_help(FILE *f, const char *group)
{
    fprintf(f, "usage: vectordb-cli %s SUBCOMMAND [options]\n\n%s\n\nsubcommands:\n", group, group_summary(group));
    for (size_t g = 0; g < N_GROUPS; g++)
        for (const cli_cmd *c = cmd_groups[g]; c->name; c++)
            if (c->group && !strcmp(c->group, group))
                fprintf(f, "  %-10s %s\n", c->name, c->summary);
    fprintf(f, "\nrun 'vectordb-cli %s SUBCOMMAND --help' for options and an example.\n", group);
}

static void print_cmd_help(FILE *f, const cli_cmd *c)
{
    fprintf(f, "usage: vectordb-cli %s\n\n%s\n\n%s", c->usage, c->summary, c->help);
    if (c->help[0] && c->help[strlen(c->help) - 1] != '\n')
        fputc('\n', f);
}

int cli_usage_error(const cli_cmd *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "vectordb-cli: ");
    if (cmd)
        fprintf(stderr, "%s%s%s: ", cmd->group ? cmd->group : "", cmd->group ? " " : "", cmd->name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    if (cmd)
        fprintf(stderr, "usage: vectordb-cli %s\nrun 'vectordb-cli %s%s%s --help' for an example\n", cmd->usage,
                cmd->group ? cmd->group : "", cmd->group ? " " : "", cmd->name);
    else
        fprintf(stderr, "run 'vectordb-cli --help' for the list of commands\n");
    return CLI_USAGE;
}

int cli_parse(const cli_cmd *cmd, int argc, char **argv, const cli_opt *opts, char **pos, int min_pos, int max_pos,
              int *n_pos)
{
    int np = 0, only_pos = 0;
    for (int i = 0; i < argc; i++) {
        char *a = argv[i];
        if (!only_pos && !strcmp(a, "--")) {
            only_pos = 1;
            continue;
        }
        if (!only_pos && (!strcmp(a, "--help") || !strcmp(a, "-h"))) {
            print_cmd_help(stdout, cmd);
            return CLI_HELP_SHOWN;
        }
        if (!only_pos && a[0] == '-' && a[1] != '\0' && !isdigit((unsigned char)a[1]) && a[1] != '.') {
            const char *eq = strchr(a, '=');
            size_t nlen = eq ? (size_t)(eq - a) : strlen(a);
            const cli_opt *o = NULL;
            for (const cli_opt *p = opts; p && p->name; p++)
                if ((strlen(p->name) == nlen && !strncmp(p->name, a, nlen)) ||
                    (p->alias && strlen(p->alias) == nlen && !strncmp(p->alias, a, nlen))) {
                    o = p;
                    break;
                }
            if (!o)
                return cli_usage_error(cmd, "unknown option '%.*s'", (int)nlen, a);
            if (o->kind == OPT_FLAG) {
                if (eq)
                    return cli_usage_error(cmd, "option %s takes no value", o->name);
                *(int *)o->dst = 1;
            } else {
                const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
                if (!v)
                    return cli_usage_error(cmd, "option %s needs a value", o->name);
                *(const char **)o->dst = v;
            }
            continue;
        }
        if (np >= max_pos)
            return cli_usage_error(cmd, "unexpected argument '%s'", a);
        pos[np++] = a;
    }
    if (np < min_pos)
        return cli_usage_error(cmd, "missing argument%s", min_pos - np > 1 ? "s" : "");
    if (n_pos)
        *n_pos = np;
    return 0;
}

int cli_u64(const cli_cmd *cmd, const char *opt, const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    char *end;
    errno = 0;
    if (!s || !*s || *s == '-')
        return cli_usage_error(cmd, "%s: expected a whole number, got '%s'", opt, s ? s : "");
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v < lo || v > hi)
        return cli_usage_error(cmd, "%s: expected a whole number in %llu..%llu, got '%s'", opt, (unsigned long long)lo,
                               (unsigned long long)hi, s);
    *out = v;
    return 0;
}

int cli_double(const cli_cmd *cmd, const char *opt, const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = s ? strtod(s, &end) : NAN;
    if (!s || !*s || errno || *end || !isfinite(v) || v < lo || v > hi)
        return cli_usage_error(cmd, "%s: expected a number in %g..%g, got '%s'", opt, lo, hi, s ? s : "");
    *out = v;
    return 0;
}

int cli_vector(const cli_cmd *cmd, const char *opt, const char *s, json_t **out)
{
    json_t *arr = json_array();
    const char *p = s;
    while (isspace((unsigned char)*p))
        p++;
    int bracket = *p == '[';
    if (bracket)
        p++;
    for (;;) {
        while (isspace((unsigned char)*p) || *p == ',')
            p++;
        if (!*p || (bracket && *p == ']'))
            break;
        char *end;
        errno = 0;
        double v = strtod(p, &end);
        if (end == p || errno || !isfinite(v)) {
            json_decref(arr);
            return cli_usage_error(cmd, "%s: not a finite number at '%.20s'", opt, p);
        }
        json_array_append_new(arr, json_real(v));
        p = end;
    }
    if (json_array_size(arr) == 0) {
        json_decref(arr);
        return cli_usage_error(cmd, "%s: empty vector (give numbers like 0.1,0.2,0.3)", opt);
    }
    *out = arr;
    return 0;
}

int cli_json_object(const cli_cmd *cmd, const char *opt, const char *s, json_t **out)
{
    json_error_t je;
    json_t *v = json_loads(s, 0, &je);
    if (!v)
        return cli_usage_error(cmd, "%s: invalid JSON at column %d: %s", opt, je.column, je.text);
    if (!json_is_object(v)) {
        json_decref(v);
        return cli_usage_error(cmd, "%s: expected a JSON object like {\"k\": \"v\"}", opt);
    }
    *out = v;
    return 0;
}

/* Read one line from fd into buf (no newline). -1 on EOF/error before any. */
static int read_line_fd(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    for (;;) {
        char ch;
        ssize_t k = read(fd, &ch, 1);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return n ? 0 : -1;
        if (ch == '\n')
            break;
        if (n + 1 < cap)
            buf[n++] = ch;
    }
    while (n && (buf[n - 1] == '\r' || buf[n - 1] == ' '))
        n--;
    buf[n] = '\0';
    return 0;
}

int cli_confirm(const char *what, const char *expect)
{
    int fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
    int in_fd = fd, out_fd = fd, own = fd >= 0;
    if (fd < 0) {
        if (!isatty(STDIN_FILENO)) {
            fprintf(stderr,
                    "vectordb-cli: %s needs confirmation, but there is no terminal to ask on.\n"
                    "  re-run with --yes to confirm non-interactively.\n",
                    what);
            return CLI_USAGE;
        }
        in_fd = STDIN_FILENO;
        out_fd = STDERR_FILENO;
    }
    dprintf(out_fd, "%s\nType the collection name '%s' to confirm: ", what, expect);
    char line[512];
    int rc = read_line_fd(in_fd, line, sizeof line);
    if (own)
        close(fd);
    if (rc < 0 || strcmp(line, expect)) {
        fprintf(stderr, "vectordb-cli: confirmation did not match '%s': nothing was done.\n", expect);
        return CLI_FAIL;
    }
    return 0;
}

static void on_signal(int sig)
{
    (void)sig;
    cli_interrupted = 1;
}

void cli_catch_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* Remove the global flags from argv (anywhere before "--"); returns the new
 * argc, or -1 after printing a usage error. */
static int take_globals(cli_ctx *ctx, int argc, char **argv, const char **timeout_s)
{
    int out = 1;
    for (int i = 1; i < argc; i++) {
        char *a = argv[i];
        if (!strcmp(a, "--")) {
            while (i < argc)
                argv[out++] = argv[i++];
            break;
        }
        const char *val = NULL;
        const char **dst = NULL;
        static const char *const names[] = {"--url", "--api-key", "--timeout"};
        for (int k = 0; k < 3; k++) {
            size_t n = strlen(names[k]);
            if (!strncmp(a, names[k], n) && (a[n] == '\0' || a[n] == '=')) {
                dst = k == 0 ? &ctx->url : k == 1 ? &ctx->api_key : timeout_s;
                if (a[n] == '=')
                    val = a + n + 1;
                else if (i + 1 < argc)
                    val = argv[++i];
                else {
                    cli_usage_error(NULL, "option %s needs a value", names[k]);
                    return -1;
                }
            }
        }
        if (dst) {
            *dst = val;
            continue;
        }
        if (!strcmp(a, "--json")) {
            ctx->json = 1;
            continue;
        }
        if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            ctx->verbose = 1;
            continue;
        }
        argv[out++] = a;
    }
    argv[out] = NULL;
    return out;
}

static const cli_cmd *find_cmd(const char *group, const char *name)
{
    for (size_t g = 0; g < N_GROUPS; g++)
        for (const cli_cmd *c = cmd_groups[g]; c->name; c++) {
            if (group && c->group && !strcmp(c->group, group) && name && !strcmp(c->name, name))
                return c;
            if (!group && !c->group && !strcmp(c->name, name))
                return c;
        }
    return NULL;
}

static int is_group(const char *s)
{
    for (size_t g = 0; g < N_GROUPS; g++)
        for (const cli_cmd *c = cmd_groups[g]; c->name; c++)
            if (c->group && !strcmp(c->group, s))
                return 1;
    return 0;
}

int main(int argc, char **argv)
{
    cli_ctx ctx = {0};
    const char *timeout = NULL;
    ctx.url = getenv("DVECDB_URL");
    ctx.api_key = getenv("DVECDB_API_KEY");
    argc = take_globals(&ctx, argc, argv, &timeout);
    if (argc < 0)
        return CLI_USAGE;
    if (!ctx.url || !*ctx.url)
        ctx.url = CLI_DEFAULT_URL;
    if (ctx.api_key && !*ctx.api_key)
        ctx.api_key = NULL;
    ctx.timeout_s = 30;
    if (timeout && cli_double(NULL, "--timeout", timeout, 0.001, 86400, &ctx.timeout_s))
        return CLI_USAGE;
    ctx.stderr_tty = isatty(STDERR_FILENO);

    /* The base URL is joined with "/route": drop trailing slashes once. */
    static char url_buf[2048];
    snprintf(url_buf, sizeof url_buf, "%s", ctx.url);
    for (size_t n = strlen(url_buf); n > 0 && url_buf[n - 1] == '/'; n--)
        url_buf[n - 1] = '\0';
    ctx.url = url_buf;

    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        if (argc >= 3 && !strcmp(argv[1], "help")) {
            const cli_cmd *c = find_cmd(NULL, argv[2]);
            if (c) {
                print_cmd_help(stdout, c);
                return CLI_OK;
            }
            if (is_group(argv[2])) {
                c = argc >= 4 ? find_cmd(argv[2], argv[3]) : NULL;
                if (c)
                    print_cmd_help(stdout, c);
                else
                    print_group_help(stdout, argv[2]);
                return CLI_OK;
            }
        }
        print_main_help(argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_USAGE : CLI_OK;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        printf("vectordb-cli %s\n", DV_VERSION_STRING);
        return CLI_OK;
    }

    const cli_cmd *cmd = NULL;
    int skip = 2;
    if (is_group(argv[1])) {
        if (argc < 3 || !strcmp(argv[2], "--help") || !strcmp(argv[2], "-h")) {
            print_group_help(argc < 3 ? stderr : stdout, argv[1]);
            return argc < 3 ? CLI_USAGE : CLI_OK;
        }
        cmd = find_cmd(argv[1], argv[2]);
        if (!cmd) {
            fprintf(stderr, "vectordb-cli: unknown subcommand '%s %s'\n", argv[1], argv[2]);
            print_group_help(stderr, argv[1]);
            return CLI_USAGE;
        }
        skip = 3;
    } else {
        cmd = find_cmd(NULL, argv[1]);
        if (!cmd)
            return cli_usage_error(NULL, "unknown command '%s'", argv[1]);
    }

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "vectordb-cli: libcurl failed to initialise\n");
        return CLI_FAIL;
    }
    int rc = cmd->fn(&ctx, cmd, argc - skip, argv + skip);
    curl_global_cleanup();
    if (rc == CLI_HELP_SHOWN)
        rc = CLI_OK;
    fflush(stdout);
    return rc;
}
