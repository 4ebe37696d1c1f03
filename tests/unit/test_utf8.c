/* test_utf8.c - the shared strict UTF-8 validator (src/utf8.c), against the
 * RFC 3629 boundaries and an independent decoder over every 1..3-byte input. */
#include <stdint.h>
#include <string.h>

#include "t.h"
#include "utf8.h"

#define U(s) ((const unsigned char *)(s))

TEST(valid_characters_at_every_length_boundary_are_accepted)
{
    const char *ok[] = {"a", "\x7f", "\xc2\x80", "\xdf\xbf", "\xe0\xa0\x80", "\xed\x9f\xbf", "\xee\x80\x80",
                        "\xef\xbf\xbf", "\xf0\x90\x80\x80", "\xf4\x8f\xbf\xbf"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        size_t n = strlen(ok[i]);
        CHECKF(utf8_char_len(U(ok[i]), n) == n, "case %zu", i);
        CHECKF(utf8_valid_prefix(U(ok[i]), n) == n, "case %zu", i);
    }
    CHECK(utf8_char_len(U("\0"), 1) == 1);
    CHECK(utf8_char_len(U(""), 0) == 0);
}

TEST(overlongs_surrogates_out_of_range_and_truncated_sequences_are_refused)
{
    const char *bad[] = {"\x80", "\xbf", "\xc0\x80", "\xc1\xbf", "\xe0\x80\x80", "\xe0\x9f\xbf", "\xed\xa0\x80",
                         "\xed\xbf\xbf", "\xf0\x80\x80\x80", "\xf0\x8f\xbf\xbf", "\xf4\x90\x80\x80", "\xf5\x80\x80\x80",
                         "\xff", "\xc2", "\xe2\x82", "\xf0\x9f\x98", "\xc2\x41", "\xe2\x28\xa1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t n = strlen(bad[i]);
        CHECKF(utf8_char_len(U(bad[i]), n) == 0, "case %zu", i);
        CHECKF(utf8_valid_prefix(U(bad[i]), n) == 0, "case %zu", i);
    }
    /* the offset of the first bad byte, after valid text */
    CHECK(utf8_valid_prefix(U("ab\xc3\xa9" "cd\xed\xa0\x80x"), 10) == 6);
    CHECK(utf8_valid_prefix(U("caf\xc3"), 4) == 3);
}

/* An independent decoder: the code point of a 1..4-byte sequence, or -1. */
static long ref_decode(const unsigned char *s, size_t n)
{
    size_t len = s[0] < 0x80 ? 1 : (s[0] >> 5) == 6 ? 2 : (s[0] >> 4) == 14 ? 3 : (s[0] >> 3) == 30 ? 4 : 0;
    if (!len || len != n)
        return -1;
    long cp = len == 1 ? s[0] : s[0] & (0x7f >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return -1;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    long min = len == 1 ? 0 : len == 2 ? 0x80 : len == 3 ? 0x800 : 0x10000;
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return -1;
    return cp;
}

TEST(every_one_two_and_three_byte_input_agrees_with_an_independent_decoder)
{
    unsigned char b[3];
    size_t checked = 0;
    for (unsigned x = 0; x < 256; x++) {
        b[0] = (unsigned char)x;
        CHECKF((utf8_char_len(b, 1) == 1) == (ref_decode(b, 1) >= 0), "%02x", x);
        for (unsigned y = 0; y < 256; y++) {
            b[1] = (unsigned char)y;
            size_t l2 = utf8_char_len(b, 2);
            /* a full 2-byte character, or a 1-byte one followed by anything */
            int want2 = ref_decode(b, 2) >= 0 ? 2 : ref_decode(b, 1) >= 0 ? 1 : 0;
            CHECKF(l2 == (size_t)want2, "%02x %02x: %zu vs %d", x, y, l2, want2);
            if (x < 0xe0 || x > 0xef)
                continue;
            for (unsigned z = 0; z < 256; z++) {
                b[2] = (unsigned char)z;
                CHECKF((utf8_char_len(b, 3) == 3) == (ref_decode(b, 3) >= 0), "%02x %02x %02x", x, y, z);
                checked++;
            }
        }
    }
    CHECK(checked == 16u * 256 * 256);
}

T_MAIN()
