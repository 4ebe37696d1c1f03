/*
 * utf8.h - strict UTF-8 validation, shared by every module that takes text
 * from outside (ids, metadata strings of imported files, audit fields).
 *
 * Strict means RFC 3629: no overlong forms, no UTF-16 surrogates
 * (U+D800..U+DFFF), nothing above U+10FFFF, no stray continuation bytes.
 * NUL is a valid one-byte character here; callers working on C strings
 * bound their input with strlen/strnlen.
 */
#ifndef DV_UTF8_H
#define DV_UTF8_H

#include <stddef.h>

/* Length (1..4) of the valid UTF-8 character at s[0..n), or 0 if s does not
 * start with one (n == 0 included). */
size_t utf8_char_len(const unsigned char *s, size_t n);

/* Offset of the first byte of s[0..n) that does not start a valid
 * character: n when all of s is valid UTF-8. */
size_t utf8_valid_prefix(const unsigned char *s, size_t n);

#endif
