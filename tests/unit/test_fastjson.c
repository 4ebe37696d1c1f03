/* test_fastjson.c - the server's fast body scanner (server/fastjson.c) reads
 * every number to the same float32 bits as the general path, which is
 * jansson's double narrowed to float: (float)strtod(text), or for integer
 * text (float)(double)(int64). Checked on float32 round trips, on random
 * decimals of every shape, and on decimals built to sit within a hair of a
 * float32 rounding midpoint (where reading through a wider type and then
 * narrowing once can land one ulp off). Malformed numbers must be declined
 * (0: the caller's jansson path answers the 400), never read.
 * The scanner is compiled into this test directly (it is a server file, not
 * part of libdvecdb). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../server/fastjson.c"
#include "t.h"

#if defined(__SANITIZE_ADDRESS__)
#define SCALE 10 /* the sanitized run: a tenth of the cases, same shapes */
#else
#define SCALE 1
#endif

static uint64_t rs = 0x9e3779b97f4a7c15u;
static uint64_t rnd(void)
{
    rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17;
    return rs;
}

static uint32_t bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* What the general path stores for one number's text. */
static float general(const char *t)
{
    json_error_t je;
    char body[512];
    snprintf(body, sizeof body, "[%s]", t);
    json_t *j = json_loads(body, 0, &je);
    if (!j)
        return NAN;
    float f = (float)json_number_value(json_array_get(j, 0));
    json_decref(j);
    return f;
}

/* Parse {"vector":[t]} with the fast path: 1 and *out, or 0 declined. */
static int fast1(const char *t, float *out)
{
    char body[512];
    int n = snprintf(body, sizeof body, "{\"vector\": [%s], \"limit\": 10}", t);
    fj_search q;
    if (!fj_parse_search(body, (size_t)n, &q))
        return 0;
    int ok = q.dim == 1;
    *out = q.vec.floats[0];
    fj_search_free(&q);
    return ok;
}

/* fast accepts t and agrees with the general path bit for bit. */
static int agrees(const char *t)
{
    float f, g = general(t);
    if (!fast1(t, &f)) {
        fprintf(stderr, "  declined %s\n", t);
        return 0;
    }
    if (bits(f) != bits(g)) {
        fprintf(stderr, "  %s: fast %08x (%.9g), general %08x (%.9g)\n", t, bits(f), f, bits(g), g);
        return 0;
    }
    return 1;
}

TEST(every_float32_printed_with_9_or_17_digits_reads_back_to_its_own_bits)
{
    char t[64];
    for (int i = 0; i < 300000 / SCALE; i++) {
        uint32_t u = (uint32_t)rnd();
        float f;
        memcpy(&f, &u, sizeof f);
        if (!isfinite(f))
            continue;
        snprintf(t, sizeof t, i & 1 ? "%.9g" : "%.17g", (double)f);
        float g = NAN; /* set by fast1 on success; gcc -O3 cannot tell */
        CHECKF(fast1(t, &g) && bits(g) == u, "%s -> %08x, want %08x", t, bits(g), u);
        CHECKF(agrees(t), "%s", t);
    }
}

TEST(random_decimals_of_every_shape_read_as_the_general_path_does)
{
    char t[96];
    for (int i = 0; i < 300000 / SCALE; i++) {
        int n = 0, nd = 1 + (int)(rnd() % 24), pt = (int)(rnd() % (nd + 1));
        if (rnd() & 1)
            t[n++] = '-';
        for (int k = 0; k < nd; k++) {
            if (k == pt && k > 0)
                t[n++] = '.';
            /* no leading zero before more integer digits (JSON grammar) */
            int d = (int)(rnd() % 10);
            if (k == 0 && pt != 1 && d == 0)
                d = 1 + (int)(rnd() % 9);
            t[n++] = (char)('0' + d);
        }
        if (rnd() % 3 == 0)
            n += snprintf(t + n, sizeof t - (size_t)n, "e%d", (int)(rnd() % 90) - 45);
        t[n] = '\0';
        float g = general(t);
        if (!isfinite(g)) { /* beyond float32: both paths must refuse */
            float f;
            CHECKF(!fast1(t, &f), "%s read as %g", t, f);
            continue;
        }
        CHECKF(agrees(t), "%s", t);
    }
}

/* The exact decimal expansion of a double in [1e-30, 1e30] (glibc prints
 * it exactly), cut to nd significant digits, then the last digit moved by
 * delta: decimals next to a float32 midpoint, the double-rounding cases. */
static void near(double x, int nd, int delta, char *t, size_t cap)
{
    char e[128];
    snprintf(e, sizeof e, "%.60e", x);
    char *ex = strchr(e, 'e');
    char m[80];
    int n = 0;
    for (const char *p = e; p < ex && n < nd + 1; p++)
        if (*p != '.')
            m[n++] = *p;
    m[n] = '\0';
    /* m: nd digits (first of them before the point); add delta to the last */
    long long carry = delta;
    for (int k = n - 1; k >= 0 && carry; k--) {
        int d = m[k] - '0' + (int)carry;
        carry = 0;
        while (d < 0)
            d += 10, carry--;
        while (d > 9)
            d -= 10, carry++;
        m[k] = (char)('0' + d);
    }
    snprintf(t, cap, "%c.%se%s", m[0], m + 1, ex + 1);
}

TEST(decimals_within_a_hair_of_a_float32_midpoint_read_as_the_general_path_does)
{
    char t[128];
    int differs_from_correct = 0;
    for (int i = 0; i < 40000 / SCALE; i++) {
        uint32_t u = (uint32_t)(rnd() % 0x7f000000u);
        float f;
        memcpy(&f, &u, sizeof f);
        if (!(f > 1e-30f && f < 1e30f))
            continue;
        double mid = ((double)f + (double)nextafterf(f, INFINITY)) / 2; /* exact: 25 bits */
        for (int nd = 15; nd <= 19; nd++)
            for (int delta = -1; delta <= 1; delta++) {
                near(mid, nd, delta, t, sizeof t);
                CHECKF(agrees(t), "%s", t);
                /* count the cases where (float)strtod differs from strtof:
                 * the general path's own double rounding, kept on purpose */
                if (bits(general(t)) != bits(strtof(t, NULL)))
                    differs_from_correct++;
            }
    }
    /* the construction does reach double-rounding cases (else this test
     * would not test the midpoint handling at all) */
    CHECKF(differs_from_correct > 0, "%d", differs_from_correct);
}

TEST(a_decimal_just_above_a_float32_midpoint_narrows_like_jansson)
{
    /* 1 + 2^-24 is the midpoint between 1.0f and its successor; this decimal
     * is 6e-19 above it: its nearest double IS the midpoint, which narrows
     * (ties to even) to 1.0f - the general path's answer, although the
     * decimal is nearer the successor. */
    float f;
    CHECK(fast1("1.000000059604644776", &f));
    CHECK(bits(f) == bits(1.0f));
    CHECK(bits(general("1.000000059604644776")) == bits(1.0f));
    CHECK(strtof("1.000000059604644776", NULL) == nextafterf(1.0f, 2.0f));
}

TEST(zero_keeps_its_sign_exactly_as_jansson_reads_it)
{
    static const char *const z[] = {"0", "-0", "0.0", "-0.0", "0e5", "-0e-5", "-0.000", "0E+0"};
    for (size_t i = 0; i < sizeof z / sizeof z[0]; i++)
        CHECKF(agrees(z[i]), "%s", z[i]);
    float f;
    CHECK(fast1("-0", &f) && bits(f) == 0);               /* integer 0 */
    CHECK(fast1("-0.0", &f) && bits(f) == 0x80000000u);   /* real -0.0 */
}

TEST(integers_and_hard_doubles_read_as_the_general_path_does)
{
    static const char *const v[] = {"7", "-7", "16777217", "9007199254740993", "-9007199254740993",
                                    "9223372036854775807", "-9223372036854775808", "123456789012345678",
                                    "0.1", "0.30000000000000004", "3.4028234663852886e38", "3.4028235e38",
                                    "1e-40", "1.4e-45", "7e-46", "1e-400", "2.2250738585072014e-308",
                                    "1.17549435e-38", "4.9406564584124654e-324", "1.0000000000000002",
                                    "12345678901234567890.5", "0.000000000000000000000000000001234567",
                                    "123456789e-27", "123456789e27", "9999999999999999999e-27", "5e-324"};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        CHECKF(agrees(v[i]), "%s", v[i]);
}

TEST(malformed_and_non_finite_numbers_are_declined_not_read)
{
    static const char *const bad[] = {"NaN", "nan", "Infinity", "-Infinity", "inf", "1e39", "-3.5e38", "1e400",
                                      "-1e400", "01", "-01", "1.", ".5", "+1", "1e", "1e+", "1e-", "--1", "0x10",
                                      "1.5.5", "1e5e5", "- 1", "1 2", "", "-", "1,", "\"1\"", "true", "null",
                                      "123456789012345678901", "-9223372036854775809"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        float f;
        CHECKF(!fast1(bad[i], &f), "%s read as %g", bad[i], f);
    }
}

T_MAIN()
