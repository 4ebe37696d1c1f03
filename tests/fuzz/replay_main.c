/* replay_main.c - runs a libFuzzer target without libFuzzer: calls
 * LLVMFuzzerTestOneInput once on every file named on the command line or
 * found (non-recursively) in a directory named there. Used by
 * `make fuzz-replay` (part of `make test`) to replay the committed corpus,
 * including every crasher ever found, under gcc's ASan + UBSan.
 *
 * Each input is copied into a buffer of exactly its size, as libFuzzer does,
 * so that a read past the end is caught by ASan. Exit status 0 when every
 * input ran; a crash aborts through the sanitizer with the input's name
 * printed just before it ran. An input running longer than REPLAY_TIMEOUT
 * seconds (default 60) is a hang: it is named and the process aborts, so a
 * deadlock fails `make test` instead of stalling it. */
#include <dirent.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

/* Sanitizer runtime hook (ASan/UBSan): called just before the process dies. */
void __sanitizer_set_death_callback(void (*callback)(void)) __attribute__((weak));

static int verbose;
static const char *current; /* the input being run, named if it crashes */

static void say_current(void)
{
    if (current) {
        static const char pre[] = "\nreplay: crashed on input: ";
        (void)!write(2, pre, sizeof pre - 1);
        (void)!write(2, current, strlen(current));
        (void)!write(2, "\n", 1);
    }
}

static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "\nreplay: input still running after REPLAY_TIMEOUT seconds (a hang)";
    (void)!write(2, msg, sizeof msg - 1);
    say_current();
    signal(SIGABRT, SIG_DFL);
    abort();
}

static unsigned timeout_s = 60;

static void on_abort(int sig)
{
    say_current();
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Read path whole and run the target on it; -1 if unreadable. */
static int run_file(const char *path)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        perror(path);
        return -1;
    }
    size_t cap = 4096, n = 0;
    uint8_t *buf = malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + n, 1, cap - n, fp)) > 0) {
        n += got;
        if (n == cap) {
            uint8_t *nb = realloc(buf, cap *= 2);
            if (!nb) {
                free(buf);
                buf = NULL;
            }
            buf = nb;
        }
    }
    fclose(fp);
    if (!buf) {
        fprintf(stderr, "replay: out of memory reading %s\n", path);
        return -1;
    }
    /* Exactly-sized copy: ASan then flags any read past the input. */
    uint8_t *exact = malloc(n ? n : 1);
    if (!exact) {
        free(buf);
        return -1;
    }
    memcpy(exact, buf, n);
    free(buf);
    if (verbose)
        fprintf(stderr, "replay: %s (%zu bytes)\n", path, n);
    current = path;
    alarm(timeout_s);
    LLVMFuzzerTestOneInput(exact, n);
    alarm(0);
    current = NULL;
    free(exact);
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Run every regular file of dir, in name order (reproducible). */
static int run_dir(const char *dir, size_t *count)
{
    DIR *d = opendir(dir);
    if (!d) {
        perror(dir);
        return -1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        if (n == cap) {
            char **nn = realloc(names, (cap = cap ? cap * 2 : 64) * sizeof *names);
            if (!nn)
                break;
            names = nn;
        }
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    if (n)
        qsort(names, n, sizeof *names, cmp_str);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
            if (run_file(path) != 0)
                rc = -1;
            else
                (*count)++;
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

int main(int argc, char **argv)
{
    if (LLVMFuzzerInitialize)
        LLVMFuzzerInitialize(&argc, &argv);
    verbose = getenv("REPLAY_VERBOSE") != NULL;
    if (__sanitizer_set_death_callback)
        __sanitizer_set_death_callback(say_current);
    /* SIGSEGV/SIGBUS stay with the sanitizer (it reports them, stack
     * overflows included, and then runs the death callback); abort() is
     * not its business. */
    signal(SIGABRT, on_abort);
    signal(SIGALRM, on_alarm);
    if (getenv("REPLAY_TIMEOUT") && atoi(getenv("REPLAY_TIMEOUT")) > 0)
        timeout_s = (unsigned)atoi(getenv("REPLAY_TIMEOUT"));
    size_t count = 0;
    int rc = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            perror(argv[i]);
            rc = 1;
        } else if (S_ISDIR(st.st_mode)) {
            if (run_dir(argv[i], &count) != 0)
                rc = 1;
        } else if (run_file(argv[i]) != 0) {
            rc = 1;
        } else {
            count++;
        }
    }
    fprintf(stderr, "%s: replayed %zu inputs%s\n", argv[0], count, rc ? " (some unreadable)" : "");
    return rc;
}
