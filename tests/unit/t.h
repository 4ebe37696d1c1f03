/* t.h - minimal unit-test runner: TEST(name) { ... CHECK(cond); ... }
 * main() comes from T_MAIN(): runs every registered test, prints
 * "N passed, N failed" and exits nonzero on any failure. A CHECK failure
 * reports file:line and the expression and ends that test. */
#ifndef DV_T_H
#define DV_T_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*t_fn)(int *failed);
struct t_case { const char *name; t_fn fn; };
static struct t_case t_cases[512];
static int t_n_cases;

#define TEST(tname)                                                        \
    static void tname(int *t_failed_);                                     \
    __attribute__((constructor)) static void t_reg_##tname(void)           \
    {                                                                     \
        t_cases[t_n_cases].name = #tname;                                  \
        t_cases[t_n_cases++].fn = tname;                                   \
    }                                                                     \
    static void tname(int *t_failed_)

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "  %s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            *t_failed_ = 1;                                                    \
            return;                                                            \
        }                                                                      \
    } while (0)

#define CHECKF(cond, ...)                                                      \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "  %s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                      \
            fputc('\n', stderr);                                               \
            *t_failed_ = 1;                                                    \
            return;                                                            \
        }                                                                      \
    } while (0)

#define CHECK_OK(expr)                                                         \
    do {                                                                       \
        dv_err t_e_ = {0};                                                     \
        (void)t_e_;                                                            \
        int t_rc_ = (expr);                                                    \
        if (t_rc_ != 0) {                                                      \
            fprintf(stderr, "  %s:%d: %s returned %d\n", __FILE__, __LINE__, #expr, t_rc_); \
            *t_failed_ = 1;                                                    \
            return;                                                            \
        }                                                                      \
    } while (0)

#define T_MAIN()                                                               \
    int main(int argc, char **argv)                                            \
    {                                                                          \
        int passed = 0, failed = 0;                                            \
        for (int i = 0; i < t_n_cases; i++) {                                  \
            if (argc > 1 && !strstr(t_cases[i].name, argv[1]))                 \
                continue;                                                      \
            int f = 0;                                                         \
            t_cases[i].fn(&f);                                                 \
            fprintf(stderr, "%s %s\n", f ? "FAIL" : "ok  ", t_cases[i].name);  \
            if (f) failed++; else passed++;                                    \
        }                                                                      \
        fprintf(stderr, "%s: %d passed, %d failed\n", argv[0], passed, failed);\
        return failed ? 1 : 0;                                                 \
    }
#endif
