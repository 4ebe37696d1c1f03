/*
 * err.c - error codes, messages and small shared utilities.
 *
 * Owns the code -> text tables (dv_strerror, dv_code_name) and the
 * formatting of dv_err. Never allocates: a dv_err is a fixed buffer so that
 * reporting an out-of-memory condition cannot itself fail.
 */
#include "err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static const struct {
    dv_code code;
    const char *name;
    const char *text;
} code_table[] = {
    {DV_OK, "ok", "DV_OK: success"},
    {DV_EINVAL, "invalid_argument", "DV_EINVAL: invalid argument"},
    {DV_EDIM, "dimension_mismatch", "DV_EDIM: dimension mismatch"},
    {DV_ENOTFOUND, "not_found", "DV_ENOTFOUND: not found"},
    {DV_EEXIST, "already_exists", "DV_EEXIST: already exists"},
    {DV_ECORRUPT, "corrupt", "DV_ECORRUPT: data failed validation"},
    {DV_EIO, "io_error", "DV_EIO: input/output error"},
    {DV_ENOSPC, "disk_full", "DV_ENOSPC: no space left on device"},
    {DV_EFATAL, "read_only_after_failure", "DV_EFATAL: handle poisoned after a failed write; reopen"},
    {DV_ENOMEM, "out_of_memory", "DV_ENOMEM: out of memory"},
    {DV_ENOTSUP, "not_supported", "DV_ENOTSUP: not supported yet"},
    {DV_EBUSY, "busy", "DV_EBUSY: conflicting operation in progress"},
    {DV_EPERM, "forbidden", "DV_EPERM: operation not permitted"},
    {DV_EDAMAGED, "collection_damaged", "DV_EDAMAGED: collection is damaged; restore it from a backup"},
    {DV_ELIMIT, "limit_exceeded", "DV_ELIMIT: limit exceeded"},
    {DV_EREADONLY, "read_only", "DV_EREADONLY: database is read-only"},
};

const char *dv_strerror(dv_code code)
{
    for (size_t i = 0; i < sizeof code_table / sizeof code_table[0]; i++)
        if (code_table[i].code == code)
            return code_table[i].text;
    return "DV_E?: unknown error code";
}

const char *dv_code_name(dv_code code)
{
    for (size_t i = 0; i < sizeof code_table / sizeof code_table[0]; i++)
        if (code_table[i].code == code)
            return code_table[i].name;
    return "unknown";
}

dv_code dv_errorf(dv_err *err, dv_code code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->code = code;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

dv_code dv_err_wrap(dv_err *err, dv_code code, const char *fmt, ...)
{
    if (err) {
        char prefix[256], old[sizeof err->msg];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(prefix, sizeof prefix, fmt, ap);
        va_end(ap);
        memcpy(old, err->msg, sizeof old);
        err->code = code;
        /* Truncation is acceptable: the message is for humans. */
        size_t pl = strlen(prefix);
        if (pl > sizeof err->msg - 3)
            pl = sizeof err->msg - 3;
        memcpy(err->msg, prefix, pl);
        memcpy(err->msg + pl, ": ", 2);
        size_t room = sizeof err->msg - pl - 3;
        size_t ol = strnlen(old, sizeof old);
        if (ol > room)
            ol = room;
        memcpy(err->msg + pl + 2, old, ol);
        err->msg[pl + 2 + ol] = '\0';
    }
    return code;
}

dv_code dv_code_from_errno(int e)
{
    switch (e) {
    case ENOSPC:
    case EDQUOT:
        return DV_ENOSPC;
    case ENOENT:
        return DV_ENOTFOUND;
    case EEXIST:
    case ENOTEMPTY:
        return DV_EEXIST;
    case ENOMEM:
        return DV_ENOMEM;
    case EACCES:
    case EPERM:
        return DV_EPERM;
    case EROFS:
        return DV_EREADONLY;
    default:
        return DV_EIO;
    }
}

int64_t dv_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

double dv_mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}
