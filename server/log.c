/*
 * log.c - structured log lines on stderr.
 *
 * Owns the log format: one line per event, logfmt style
 *   ts=2026-11-25T20:00:00.123Z level=info event=request method=GET route=/collections/:name status=200
 * duration_ms=0.412 Invariants: a line is written with one write(2) so lines from different threads never interleave;
 * API keys are never passed here (callers log key ids such as "admin", never key text).
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "server.h"

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int srv_log_level_parse(const char *s, int *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, level_names[i]) == 0) {
            *out = i;
            return 0;
        }
    }
    if (strcasecmp(s, "warning") == 0) {
        *out = SRV_LOG_WARN;
        return 0;
    }
    if (strcasecmp(s, "trace") == 0) {
        *out = SRV_LOG_DEBUG;
        return 0;
    }
    return -1;
}

const char *srv_iso_time(int64_t ms, char *buf, size_t cap)
{
    time_t sec = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    /* The modulos bound every field (and tell the compiler the text fits). */
    snprintf(buf, cap, "%04u-%02u-%02uT%02u:%02u:%02u.%03uZ", (unsigned)(tm.tm_year + 1900) % 10000u,
             (unsigned)(tm.tm_mon + 1) % 100u, (unsigned)tm.tm_mday % 100u, (unsigned)tm.tm_hour % 100u,
             (unsigned)tm.tm_min % 100u, (unsigned)tm.tm_sec % 100u, (unsigned)(ms % 1000 + 1000) % 1000u);
    return buf;
}

int64_t srv_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

double srv_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

const char *srv_log_quote(const char *s, char *buf, size_t cap)
{
    size_t o = 0;
    if (cap < 3) {
        if (cap)
            buf[0] = '\0';
        return buf;
    }
    buf[o++] = '"';
    for (; s && *s && o + 3 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c == 0x7f)
            continue; /* a newline would forge a second log line */
        if (c == '"' || c == '\\')
            buf[o++] = '\\';
        buf[o++] = (char)c;
    }
    buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}

void srv_log(int level, const char *event, const char *fmt, ...)
{
    if (level > g_srv.cfg.log_level)
        return;
    char line[2048], ts[40];
    int n = snprintf(line, sizeof line, "ts=%s level=%s event=%s", srv_iso_time(srv_now_ms(), ts, sizeof ts),
                     level_names[level < 0   ? 0
                                 : level > 3 ? 3
                                             : level],
                     event);
    if (n < 0)
        return;
    if (fmt && *fmt && (size_t)n < sizeof line - 2) {
        line[n++] = ' ';
        va_list ap;
        va_start(ap, fmt);
        int m = vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
        va_end(ap);
        if (m > 0)
            n += m;
    }
    if ((size_t)n > sizeof line - 2)
        n = (int)sizeof line - 2;
    line[n++] = '\n';
    /* One write per line: no interleaving between threads. */
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
}
