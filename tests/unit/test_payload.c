/* test_payload.c - metadata parsing and the filter language (payload.c). */
#include <pthread.h>
#include <stdio.h>

#include "err.h"
#include "payload.h"
#include "t.h"

/* Parse s (NUL-terminated) or return NULL. */
static payload *P(const char *s)
{
    payload *p = NULL;
    dv_err e = {0};
    if (payload_parse(s, strlen(s), &p, &e) != DV_OK) {
        fprintf(stderr, "  payload_parse(%s): %s\n", s, e.msg);
        return NULL;
    }
    return p;
}

static filter *F(const char *s)
{
    filter *f = NULL;
    dv_err e = {0};
    if (filter_compile(s, strlen(s), &f, &e) != DV_OK) {
        fprintf(stderr, "  filter_compile(%s): %s\n", s, e.msg);
        return NULL;
    }
    return f;
}

/* One row: filter, metadata (NULL = no metadata), expected result. */
struct mcase {
    const char *filter;
    const char *meta;
    int want;
};

static const char *DOC =
    "{\"color\": \"red\", \"size\": 3, \"price\": 9.5, \"ok\": true, \"bad\": false, \"none\": null,"
    " \"tags\": [\"a\", \"b\", 7], \"nested\": {\"deep\": {\"x\": 1}, \"arr\": [{\"y\": 2}, {\"y\": 5}]},"
    " \"a.b\": \"literal\", \"big\": 9007199254740993, \"neg\": -4, \"grid\": [[1, 2], [3]]}";

static const struct mcase CASES[] = {
    /* empty filter */
    {"{}", "DOC", 1},
    {"{}", NULL, 1},
    {"{}", "{}", 1},
    /* legacy equality map */
    {"{\"color\": \"red\"}", "DOC", 1},
    {"{\"color\": \"blue\"}", "DOC", 0},
    {"{\"color\": \"Red\"}", "DOC", 0},
    {"{\"color\": \"red\", \"size\": 3}", "DOC", 1},
    {"{\"color\": \"red\", \"size\": 4}", "DOC", 0},
    {"{\"size\": 3.0}", "DOC", 1},
    {"{\"price\": 9.5}", "DOC", 1},
    {"{\"price\": 9}", "DOC", 0},
    {"{\"ok\": true}", "DOC", 1},
    {"{\"ok\": false}", "DOC", 0},
    {"{\"bad\": false}", "DOC", 1},
    {"{\"ok\": 1}", "DOC", 0},
    {"{\"none\": null}", "DOC", 1},
    {"{\"missing\": null}", "DOC", 0},
    {"{\"color\": null}", "DOC", 0},
    {"{\"size\": \"3\"}", "DOC", 0},
    {"{\"missing\": \"x\"}", "DOC", 0},
    {"{\"color\": \"red\"}", NULL, 0},
    {"{\"color\": \"red\"}", "{}", 0},
    {"{\"tags\": \"a\"}", "DOC", 1},
    {"{\"tags\": \"b\"}", "DOC", 1},
    {"{\"tags\": 7}", "DOC", 1},
    {"{\"tags\": \"c\"}", "DOC", 0},
    {"{\"nested.deep.x\": 1}", "DOC", 1},
    {"{\"nested.deep.x\": 2}", "DOC", 0},
    {"{\"nested.deep\": 1}", "DOC", 0},
    {"{\"nested.arr.y\": 5}", "DOC", 1},
    {"{\"nested.arr.y\": 3}", "DOC", 0},
    {"{\"a.b\": \"literal\"}", "DOC", 1},
    {"{\"grid\": 3}", "DOC", 1},
    {"{\"grid\": 4}", "DOC", 0},
    {"{\"big\": 9007199254740993}", "DOC", 1},
    {"{\"big\": 9007199254740992}", "DOC", 0},
    {"{\"color.x\": \"red\"}", "DOC", 0},
    /* a metadata field literally named "must" with a scalar value */
    {"{\"must\": \"x\"}", "{\"must\": \"x\"}", 1},
    {"{\"must\": \"x\"}", "{\"must\": \"y\"}", 0},
    /* match.value */
    {"{\"must\": [{\"key\": \"color\", \"match\": {\"value\": \"red\"}}]}", "DOC", 1},
    {"{\"must\": [{\"key\": \"color\", \"match\": {\"value\": \"green\"}}]}", "DOC", 0},
    {"{\"must\": [{\"key\": \"nested.deep.x\", \"match\": {\"value\": 1.0}}]}", "DOC", 1},
    {"{\"must\": [{\"key\": \"ok\", \"match\": {\"value\": true}}]}", "DOC", 1},
    {"{\"must\": [{\"key\": \"none\", \"match\": {\"value\": null}}]}", "DOC", 1},
    {"{\"must\": [{\"key\": \"tags\", \"match\": {\"value\": \"b\"}}]}", "DOC", 1},
    /* a top-level single condition */
    {"{\"key\": \"color\", \"match\": {\"value\": \"red\"}}", "DOC", 1},
    {"{\"key\": \"color\", \"match\": {\"value\": \"blue\"}}", "DOC", 0},
    /* match.any */
    {"{\"must\": [{\"key\": \"color\", \"match\": {\"any\": [\"blue\", \"red\"]}}]}", "DOC", 1},
    {"{\"must\": [{\"key\": \"color\", \"match\": {\"any\": [\"blue\", \"green\"]}}]}", "DOC", 0},
    {"{\"must\": [{\"key\": \"size\", \"match\": {\"any\": [1, 2, 3.0]}}]}", "DOC", 1},
    {"{\"must\": [{\"key\": \"size\", \"match\": {\"any\": [1, 2, 4]}}]}", "DOC", 0},
    {"{\"must\": [{\"key\": \"tags\", \"match\": {\"any\": [\"z\", 7]}}]}", "DOC", 1},
    {"{\"must\": [{\"key\": \"tags\", \"match\": {\"any\": [\"z\", 8]}}]}", "DOC", 0},
    {"{\"must\": [{\"key\": \"ok\", \"match\": {\"any\": [false, null]}}]}", "DOC", 0},
    {"{\"must\": [{\"key\": \"ok\", \"match\": {\"any\": [true, null]}}]}", "DOC", 1},
    {"{\"must\": [{\"key\": \"missing\", \"match\": {\"any\": [1, \"x\", null]}}]}", "DOC", 0},
    /* range */
    {"{\"must\": [{\"key\": \"size\", \"range\": {\"gte\": 3}}]}", "DOC", 1},
    {"{\"must\": [{\"key\": \"size\", \"range\": {\"gt\": 3}}]}", "DOC", 0},
    {"{\"must\": [{\"key\": \"size\", \"range\": {\"lte\": 3}}]}", "DOC", 1},
    {"{\"must\": [{\"key\": \"size\", \"range\": {\"lt\": 3}}]}", "DOC", 0},
    {"{\"must\": [{\"key\": \"size\", \"range\": {\"gt\": 2.5, \"lt\": 3.5}}]}", "DOC", 1},
    {"{\"must\": [{\"key\": \"price\", \"range\": {\"gt\": 9, \"lte\": 9.5}}]}", "DOC", 1},
    {"{\"must\": [{\"key\": \"price\", \"range\": {\"gt\": 9.5}}]}", "DOC", 0},
    {"{\"must\": [{\"key\": \"neg\", \"range\": {\"lt\": 0}}]}", "DOC", 1},
    {"{\"must\": [{\"key\": \"color\", \"range\": {\"gte\": 0}}]}", "DOC", 0},
    {"{\"must\": [{\"key\": \"ok\", \"range\": {\"gte\": 0}}]}", "DOC", 0},
    {"{\"must\": [{\"key\": \"missing\", \"range\": {\"gte\": 0}}]}", "DOC", 0},
    {"{\"must\": [{\"key\": \"tags\", \"range\": {\"gt\": 6, \"lt\": 8}}]}", "DOC", 1},
    {"{\"must\": [{\"key\": \"nested.arr.y\", \"range\": {\"gt\": 4}}]}", "DOC", 1},
    {"{\"must\": [{\"key\": \"nested.arr.y\", \"range\": {\"gt\": 5}}]}", "DOC", 0},
    {"{\"must\": [{\"key\": \"big\", \"range\": {\"gt\": 9007199254740992}}]}", "DOC", 1},
    {"{\"key\": \"size\", \"range\": {\"lt\": 10}}", "DOC", 1},
    /* must: all */
    {"{\"must\": [{\"key\": \"color\", \"match\": {\"value\": \"red\"}}, {\"key\": \"size\", \"range\": {\"lt\": 5}}]}",
     "DOC", 1},
    {"{\"must\": [{\"key\": \"color\", \"match\": {\"value\": \"red\"}}, {\"key\": \"size\", \"range\": {\"gt\": 5}}]}",
     "DOC", 0},
    {"{\"must\": []}", "DOC", 1},
    /* should: at least one */
    {"{\"should\": [{\"key\": \"color\", \"match\": {\"value\": \"blue\"}}, {\"key\": \"size\", \"match\": {\"value\": 3}}]}",
     "DOC", 1},
    {"{\"should\": [{\"key\": \"color\", \"match\": {\"value\": \"blue\"}}, {\"key\": \"size\", \"match\": {\"value\": 4}}]}",
     "DOC", 0},
    {"{\"should\": []}", "DOC", 1},
    {"{\"should\": [{\"key\": \"x\", \"match\": {\"value\": 1}}]}", NULL, 0},
    /* must_not: none */
    {"{\"must_not\": [{\"key\": \"color\", \"match\": {\"value\": \"blue\"}}]}", "DOC", 1},
    {"{\"must_not\": [{\"key\": \"color\", \"match\": {\"value\": \"red\"}}]}", "DOC", 0},
    {"{\"must_not\": [{\"key\": \"tags\", \"match\": {\"value\": \"a\"}}]}", "DOC", 0},
    {"{\"must_not\": [{\"key\": \"missing\", \"match\": {\"value\": 1}}]}", "DOC", 1},
    {"{\"must_not\": [{\"key\": \"color\", \"match\": {\"value\": \"red\"}}]}", NULL, 1},
    /* combined */
    {"{\"must\": [{\"key\": \"ok\", \"match\": {\"value\": true}}],"
     " \"should\": [{\"key\": \"color\", \"match\": {\"value\": \"red\"}}],"
     " \"must_not\": [{\"key\": \"size\", \"range\": {\"gt\": 10}}]}",
     "DOC", 1},
    {"{\"must\": [{\"key\": \"ok\", \"match\": {\"value\": true}}],"
     " \"should\": [{\"key\": \"color\", \"match\": {\"value\": \"red\"}}],"
     " \"must_not\": [{\"key\": \"size\", \"range\": {\"gt\": 1}}]}",
     "DOC", 0},
    /* legacy members join must */
    {"{\"color\": \"red\", \"must\": [{\"key\": \"size\", \"range\": {\"gte\": 3}}]}", "DOC", 1},
    {"{\"color\": \"blue\", \"must\": [{\"key\": \"size\", \"range\": {\"gte\": 3}}]}", "DOC", 0},
    /* nested clauses: (color=blue OR size in [2,4]) AND NOT (ok=false) */
    {"{\"must\": [{\"should\": [{\"key\": \"color\", \"match\": {\"value\": \"blue\"}},"
     " {\"key\": \"size\", \"range\": {\"gte\": 2, \"lte\": 4}}]}],"
     " \"must_not\": [{\"must\": [{\"key\": \"ok\", \"match\": {\"value\": false}}]}]}",
     "DOC", 1},
    {"{\"must\": [{\"should\": [{\"key\": \"color\", \"match\": {\"value\": \"blue\"}},"
     " {\"key\": \"size\", \"range\": {\"gte\": 5}}]}]}",
     "DOC", 0},
    /* a nested filter may use the equality map */
    {"{\"should\": [{\"color\": \"blue\"}, {\"color\": \"red\", \"size\": 3}]}", "DOC", 1},
    {"{\"should\": [{\"color\": \"blue\"}, {\"color\": \"red\", \"size\": 2}]}", "DOC", 0},
    {"{\"must_not\": [{\"must_not\": [{\"key\": \"color\", \"match\": {\"value\": \"red\"}}]}]}", "DOC", 1},
    /* strings with NUL bytes and unicode compare as bytes */
    {"{\"s\": \"a\\u0000b\"}", "{\"s\": \"a\\u0000b\"}", 1},
    {"{\"s\": \"a\\u0000c\"}", "{\"s\": \"a\\u0000b\"}", 0},
    {"{\"s\": \"a\"}", "{\"s\": \"a\\u0000b\"}", 0},
    {"{\"s\": \"\\u00e9\"}", "{\"s\": \"\xc3\xa9\"}", 1},
    /* integers beyond int64 are kept as doubles */
    {"{\"h\": 1e20}", "{\"h\": 100000000000000000000}", 1},
};

TEST(filter_cases_match_as_documented)
{
    payload *doc = P(DOC);
    CHECK(doc != NULL);
    int bad = 0;
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        const struct mcase *c = &CASES[i];
        filter *f = F(c->filter);
        if (!f) {
            bad++;
            continue;
        }
        payload *p = NULL;
        if (c->meta && strcmp(c->meta, "DOC") == 0)
            p = doc;
        else if (c->meta && !(p = P(c->meta))) {
            bad++;
            filter_free(f);
            continue;
        }
        int got = filter_match(f, p);
        if (got != c->want) {
            fprintf(stderr, "  case %zu: filter %s on %s: got %d, want %d\n", i, c->filter,
                    c->meta ? c->meta : "(none)", got, c->want);
            bad++;
        }
        if (p != doc)
            payload_free(p);
        filter_free(f);
    }
    payload_free(doc);
    CHECKF(bad == 0, "%d of %zu cases wrong", bad, sizeof CASES / sizeof CASES[0]);
}

/* One row: text, expected code, a substring the message must contain. */
struct ecase {
    const char *text;
    dv_code code;
    const char *msg;
};

static const struct ecase FILTER_ERRORS[] = {
    {"", DV_EINVAL, "invalid JSON at line 1"},
    {"{\"a\": }", DV_EINVAL, "invalid JSON at line 1, column 7 (byte 7)"},
    {"{\"a\": 1,\n \"b\" 2}", DV_EINVAL, "line 2"},
    {"[1]", DV_EINVAL, "filter must be a JSON object (got an array)"},
    {"\"x\"", DV_EINVAL, "filter must be a JSON object (got a string)"},
    {"{\"tags\": [\"a\"]}", DV_EINVAL, "filter: key \"tags\": value must be a string, number, boolean or null, not an array"},
    {"{\"a\": {\"b\": 1}}", DV_EINVAL, "key \"a\": value must be a string, number, boolean or null, not an object"},
    {"{\"must\": {\"key\": \"a\"}}", DV_EINVAL, "filter: must: must be an array of conditions"},
    {"{\"must\": [1]}", DV_EINVAL, "filter: must[0]: must be an object"},
    {"{\"must\": [{\"key\": 5, \"match\": {\"value\": 1}}]}", DV_EINVAL, "must[0]: \"key\" must be a string, not a number"},
    {"{\"must\": [{\"key\": \"a\"}]}", DV_EINVAL, "must[0]: a condition needs \"match\" or \"range\""},
    {"{\"must\": [{\"key\": \"a\", \"match\": {\"value\": 1}, \"range\": {\"gt\": 1}}]}", DV_EINVAL, "either \"match\" or \"range\""},
    {"{\"must\": [{\"key\": \"a\", \"mtch\": {\"value\": 1}}]}", DV_EINVAL, "must[0]: unknown member \"mtch\""},
    {"{\"must\": [{\"key\": \"a\", \"match\": {\"valu\": 1}}]}", DV_EINVAL, "must[0].match: unknown operator \"valu\""},
    {"{\"must\": [{\"key\": \"a\", \"match\": {}}]}", DV_EINVAL, "must[0].match: needs \"value\" or \"any\""},
    {"{\"must\": [{\"key\": \"a\", \"match\": 3}]}", DV_EINVAL, "must[0].match: must be an object"},
    {"{\"must\": [{\"key\": \"a\", \"match\": {\"value\": [1]}}]}", DV_EINVAL, "must[0].match.value: value must be a string, number, boolean or null, not an array"},
    {"{\"must\": [{\"key\": \"a\", \"match\": {\"value\": 1, \"any\": [1]}}]}", DV_EINVAL, "has both \"value\" and \"any\""},
    {"{\"must\": [{\"key\": \"a\", \"match\": {\"any\": []}}]}", DV_EINVAL, "must[0].match.any: empty list"},
    {"{\"must\": [{\"key\": \"a\", \"match\": {\"any\": 1}}]}", DV_EINVAL, "must[0].match.any: must be an array, not a number"},
    {"{\"must\": [{\"key\": \"a\", \"match\": {\"any\": [1, {}]}}]}", DV_EINVAL, "must[0].match.any[1]: value must be"},
    {"{\"must\": [{\"key\": \"a\", \"range\": {}}]}", DV_EINVAL, "must[0].range: needs at least one of gt, gte, lt, lte"},
    {"{\"must\": [{\"key\": \"a\", \"range\": {\"gtt\": 1}}]}", DV_EINVAL, "must[0].range: unknown operator \"gtt\""},
    {"{\"must\": [{\"key\": \"a\", \"range\": {\"gt\": \"1\"}}]}", DV_EINVAL, "must[0].range: \"gt\" must be a number, not a string"},
    {"{\"must\": [{\"key\": \"a\", \"range\": {\"gt\": 1, \"gte\": 2}}]}", DV_EINVAL, "both gt and gte"},
    {"{\"must\": [{\"key\": \"a\", \"range\": {\"lt\": 1, \"lte\": 2}}]}", DV_EINVAL, "both lt and lte"},
    {"{\"must\": [{\"key\": \"a\", \"range\": [1]}]}", DV_EINVAL, "must[0].range: must be an object"},
    {"{\"must\": [{\"key\": \"\", \"match\": {\"value\": 1}}]}", DV_EINVAL, "must[0]: key is empty"},
    {"{\"must\": [{\"key\": \"a..b\", \"match\": {\"value\": 1}}]}", DV_EINVAL, "empty path segment"},
    {"{\"must\": [{\"key\": \"a.\", \"match\": {\"value\": 1}}]}", DV_EINVAL, "empty path segment"},
    {"{\"should\": [{\"must\": [{\"key\": \"a\", \"range\": {\"lt\": null}}]}]}", DV_EINVAL, "filter: should[0].must[0].range: \"lt\" must be a number, not null"},
    {"{\"must_not\": [{\"x\": [1]}]}", DV_EINVAL, "must_not[0].key \"x\": value must be"},
};

TEST(filter_errors_name_the_wrong_part)
{
    int bad = 0;
    for (size_t i = 0; i < sizeof FILTER_ERRORS / sizeof FILTER_ERRORS[0]; i++) {
        const struct ecase *c = &FILTER_ERRORS[i];
        filter *f = (filter *)0x1;
        dv_err e = {0};
        dv_code rc = filter_compile(c->text, strlen(c->text), &f, &e);
        if (rc != c->code || e.code != c->code || !strstr(e.msg, c->msg) || f != (filter *)0x1) {
            fprintf(stderr, "  error case %zu: %s: rc %d, msg \"%s\", want %d and \"%s\"\n", i, c->text, rc, e.msg,
                    c->code, c->msg);
            bad++;
        }
    }
    CHECKF(bad == 0, "%d error cases wrong", bad);
}

static const struct ecase PAYLOAD_ERRORS[] = {
    {"", DV_EINVAL, "metadata: invalid JSON at line 1"},
    {"{\"a\": 1", DV_EINVAL, "metadata: invalid JSON at line 1"},
    {"{\"a\": 1}x", DV_EINVAL, "end of file expected"},
    {"{\"a\":\n\n  tru}", DV_EINVAL, "line 3, column"},
    {"[1, 2]", DV_EINVAL, "metadata must be a JSON object (got an array)"},
    {"42", DV_EINVAL, "metadata must be a JSON object (got a number)"},
    {"null", DV_EINVAL, "metadata must be a JSON object (got null)"},
    {"\"s\"", DV_EINVAL, "metadata must be a JSON object (got a string)"},
    {"{\"a\": \"\xff\"}", DV_EINVAL, "invalid JSON"},
    {"{\"a\": NaN}", DV_EINVAL, "invalid JSON"},
};

TEST(payload_parse_rejects_malformed_and_non_objects_with_position)
{
    int bad = 0;
    for (size_t i = 0; i < sizeof PAYLOAD_ERRORS / sizeof PAYLOAD_ERRORS[0]; i++) {
        const struct ecase *c = &PAYLOAD_ERRORS[i];
        payload *p = (payload *)0x1;
        dv_err e = {0};
        dv_code rc = payload_parse(c->text, strlen(c->text), &p, &e);
        if (rc != c->code || e.code != c->code || !strstr(e.msg, c->msg) || p != (payload *)0x1) {
            fprintf(stderr, "  error case %zu: %s: rc %d, msg \"%s\", want %d and \"%s\"\n", i, c->text, rc, e.msg,
                    c->code, c->msg);
            bad++;
        }
    }
    CHECKF(bad == 0, "%d error cases wrong", bad);
}

TEST(payload_parse_uses_len_not_nul)
{
    /* Only the first len bytes are JSON; what follows must be ignored. */
    const char *text = "{\"a\": 1}garbage";
    payload *p = NULL;
    CHECK_OK(payload_parse(text, 8, &p, NULL));
    filter *f = F("{\"a\": 1}");
    CHECK(f != NULL);
    CHECK(filter_match(f, p) == 1);
    filter_free(f);
    payload_free(p);
    CHECK(filter_compile("{\"a\": 1}}}", 8, &f, NULL) == DV_OK);
    filter_free(f);
}

/* Text of a JSON object nested `depth` levels deep ({"a":{"a":...1...}}). */
static char *nested_text(int depth, char open_ch)
{
    char *s = malloc((size_t)depth * 8 + 16);
    size_t n = 0;
    for (int i = 0; i < depth; i++) {
        if (i == 0 || open_ch == '{')
            n += (size_t)sprintf(s + n, "{\"a\":");
        else
            n += (size_t)sprintf(s + n, "[");
    }
    n += (size_t)sprintf(s + n, "1");
    for (int i = depth - 1; i >= 0; i--)
        s[n++] = (i == 0 || open_ch == '{') ? '}' : ']';
    s[n] = '\0';
    return s;
}

TEST(limits_on_size_and_depth_return_elimit)
{
    dv_err e = {0};
    payload *p = NULL;
    filter *f = NULL;

    /* Exactly DV_METADATA_MAX bytes is accepted, one more is DV_ELIMIT. */
    char *big = malloc(DV_METADATA_MAX + 2);
    CHECK(big != NULL);
    size_t n = DV_METADATA_MAX;
    memcpy(big, "{\"s\": \"", 7);
    memset(big + 7, 'x', n - 9);
    memcpy(big + n - 2, "\"}", 2);
    CHECK_OK(payload_parse(big, n, &p, &e));
    CHECK(payload_mem_bytes(p) >= n - 9);
    payload_free(p);
    p = NULL;
    big[n - 2] = 'x';
    memcpy(big + n - 1, "\"}", 2);
    CHECK(payload_parse(big, n + 1, &p, &e) == DV_ELIMIT);
    CHECK(strstr(e.msg, "exceeds the limit of 65536 bytes") != NULL);
    CHECK(p == NULL);
    CHECK(filter_compile(big, FILTER_TEXT_MAX + 1, &f, &e) == DV_ELIMIT);
    free(big);

    /* Depth PAYLOAD_DEPTH_MAX is accepted, one more level is refused. */
    char *ok = nested_text(PAYLOAD_DEPTH_MAX, '{');
    char *deep = nested_text(PAYLOAD_DEPTH_MAX + 1, '{');
    char *deep_arr = nested_text(PAYLOAD_DEPTH_MAX + 1, '[');
    char *very_deep = nested_text(5000, '[');
    CHECK_OK(payload_parse(ok, strlen(ok), &p, &e));
    payload_free(p);
    p = NULL;
    CHECK(payload_parse(deep, strlen(deep), &p, &e) == DV_ELIMIT);
    CHECK(strstr(e.msg, "nesting deeper than 32 levels") != NULL);
    CHECK(payload_parse(deep_arr, strlen(deep_arr), &p, &e) == DV_ELIMIT);
    CHECK(payload_parse(very_deep, strlen(very_deep), &p, &e) == DV_ELIMIT);
    CHECK(filter_compile(deep, strlen(deep), &f, &e) == DV_ELIMIT);
    CHECK(strstr(e.msg, "filter: nesting deeper than 32 levels") != NULL);
    CHECK(p == NULL && f == NULL);

    /* Brackets inside strings do not count as nesting. */
    char strtext[200];
    snprintf(strtext, sizeof strtext, "{\"s\": \"%.*s\\\"[[[\"}", 100,
             "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[");
    CHECK_OK(payload_parse(strtext, strlen(strtext), &p, &e));
    payload_free(p);
    free(ok);
    free(deep);
    free(deep_arr);
    free(very_deep);
}

TEST(deepest_allowed_path_matches)
{
    /* A 32-level document and a 32-segment dotted key reaching its leaf. */
    char *doc = nested_text(PAYLOAD_DEPTH_MAX, '{');
    char key[128] = "a";
    for (int i = 1; i < PAYLOAD_DEPTH_MAX; i++)
        strcat(key, ".a");
    char ftext[256];
    snprintf(ftext, sizeof ftext, "{\"must\": [{\"key\": \"%s\", \"match\": {\"value\": 1}}]}", key);
    payload *p = P(doc);
    filter *f = F(ftext);
    CHECK(p && f);
    CHECK(filter_match(f, p) == 1);
    filter_free(f);
    snprintf(ftext, sizeof ftext, "{\"must\": [{\"key\": \"%s.a\", \"match\": {\"value\": 1}}]}", key);
    f = F(ftext);
    CHECK(f != NULL);
    CHECK(filter_match(f, p) == 0);
    filter_free(f);
    payload_free(p);
    free(doc);
}

TEST(big_any_list_uses_every_value)
{
    /* 500 accepted strings and numbers: each one matches, neighbours do not. */
    size_t cap = 64 * 1024;
    char *t = malloc(cap);
    size_t n = (size_t)sprintf(t, "{\"must\": [{\"key\": \"v\", \"match\": {\"any\": [");
    for (int i = 0; i < 500; i++)
        n += (size_t)sprintf(t + n, "%s\"s%d\", %d", i ? ", " : "", i * 2, i * 2);
    sprintf(t + n, "]}}]}");
    filter *f = F(t);
    CHECK(f != NULL);
    int bad = 0;
    for (int i = 0; i < 1000; i++) {
        char m[64];
        snprintf(m, sizeof m, "{\"v\": \"s%d\"}", i);
        payload *ps = P(m);
        snprintf(m, sizeof m, "{\"v\": %d.0}", i);
        payload *pn = P(m);
        if (!ps || !pn || filter_match(f, ps) != (i % 2 == 0) || filter_match(f, pn) != (i % 2 == 0))
            bad++;
        payload_free(ps);
        payload_free(pn);
    }
    filter_free(f);
    free(t);
    CHECKF(bad == 0, "%d values wrong", bad);
}

TEST(matches_all_only_for_empty_filters)
{
    filter *f = F("{}");
    CHECK(f && filter_matches_all(f));
    filter_free(f);
    f = F("{\"must\": [], \"should\": []}");
    CHECK(f && filter_matches_all(f));
    filter_free(f);
    f = F("{\"a\": 1}");
    CHECK(f && !filter_matches_all(f));
    CHECK(filter_mem_bytes(f) > 0);
    filter_free(f);
}

/* Many threads share one compiled filter and a set of payloads; each must see
 * exactly the single-threaded answers. */
#define N_DOCS 200
#define N_THREADS 8
struct shared {
    const filter *f;
    payload *docs[N_DOCS];
    int want[N_DOCS];
    int errors;
    pthread_mutex_t mu;
};

static void *match_thread(void *arg)
{
    struct shared *s = arg;
    int errors = 0;
    for (int round = 0; round < 200; round++)
        for (int i = 0; i < N_DOCS; i++)
            if (filter_match(s->f, s->docs[i]) != s->want[i])
                errors++;
    pthread_mutex_lock(&s->mu);
    s->errors += errors;
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

TEST(many_threads_match_one_filter)
{
    static struct shared s;
    memset(&s, 0, sizeof s);
    pthread_mutex_init(&s.mu, NULL);
    filter *f = F("{\"must\": [{\"key\": \"cat\", \"match\": {\"any\": [\"a\", \"c\"]}}],"
                  " \"must_not\": [{\"key\": \"meta.n\", \"range\": {\"gte\": 150}}],"
                  " \"should\": [{\"key\": \"tags\", \"match\": {\"value\": \"x\"}}, {\"key\": \"meta.n\", \"range\": {\"lt\": 20}}]}");
    CHECK(f != NULL);
    s.f = f;
    int n_true = 0;
    for (int i = 0; i < N_DOCS; i++) {
        char m[160];
        const char *cat = (const char *[]){"a", "b", "c", "d"}[i % 4];
        snprintf(m, sizeof m, "{\"cat\": \"%s\", \"meta\": {\"n\": %d}, \"tags\": [\"%s\", \"y\"]}", cat, i,
                 i % 3 == 0 ? "x" : "z");
        s.docs[i] = P(m);
        CHECK(s.docs[i] != NULL);
        /* The expected answer, computed independently of the filter code. */
        s.want[i] = (i % 4 == 0 || i % 4 == 2) && i < 150 && (i % 3 == 0 || i < 20);
        CHECK(filter_match(f, s.docs[i]) == s.want[i]);
        n_true += s.want[i];
    }
    CHECK(n_true > 10 && n_true < N_DOCS - 10);
    pthread_t th[N_THREADS];
    for (int i = 0; i < N_THREADS; i++)
        CHECK(pthread_create(&th[i], NULL, match_thread, &s) == 0);
    for (int i = 0; i < N_THREADS; i++)
        pthread_join(th[i], NULL);
    CHECK(s.errors == 0);
    for (int i = 0; i < N_DOCS; i++)
        payload_free(s.docs[i]);
    filter_free(f);
}

TEST(parsed_form_is_a_small_multiple_of_the_text)
{
    /* The parsed form lives beside the text for every point: keep it small
     * (16-byte nodes, 12-byte members, one string pool, one allocation). */
    const char *m = "{\"title\": \"a short product title\", \"category\": \"shoes\", \"price\": 49.99,"
                    " \"in_stock\": true, \"tags\": [\"running\", \"blue\"], \"brand\": {\"name\": \"acme\"}}";
    payload *p = P(m);
    CHECK(p != NULL);
    size_t mem = payload_mem_bytes(p), len = strlen(m);
    CHECKF(mem <= 3 * len, "%zu bytes kept for %zu bytes of text", mem, len);
    payload_free(p);
}

TEST(duplicate_metadata_keys_keep_the_last_value)
{
    payload *p = P("{\"a\": 1, \"a\": 2}");
    filter *f1 = F("{\"a\": 1}"), *f2 = F("{\"a\": 2}");
    CHECK(p && f1 && f2);
    CHECK(filter_match(f1, p) == 0);
    CHECK(filter_match(f2, p) == 1);
    filter_free(f1);
    filter_free(f2);
    payload_free(p);
}

T_MAIN()
