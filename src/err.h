/* err.h - error helpers shared by every engine module. */
#ifndef DV_ERR_H
#define DV_ERR_H
#include "dvecdb.h"

/* Record code and a printf-style message in *err (if not NULL); returns code.
 * Message style: "module: what: detail", lowercase, with the values. */
dv_code dv_errorf(dv_err *err, dv_code code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Prefix an existing message in *err with "prefix: " (context on unwinding). */
dv_code dv_err_wrap(dv_err *err, dv_code code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Map an errno value from a failed syscall to a dv_code (ENOSPC -> DV_ENOSPC, ...). */
dv_code dv_code_from_errno(int e);

/* Milliseconds since the Unix epoch (CLOCK_REALTIME) and monotonic seconds. */
int64_t dv_now_ms(void);
double dv_mono_s(void);

#endif
