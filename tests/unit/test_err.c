/* test_err.c - error table and formatting. */
#include "t.h"
#include "err.h"

TEST(errorf_records_code_and_message)
{
    dv_err e = {0};
    CHECK(dv_errorf(&e, DV_EDIM, "coll: upsert: expected %u dimensions, got %u", 4u, 3u) == DV_EDIM);
    CHECK(e.code == DV_EDIM);
    CHECK(strcmp(e.msg, "coll: upsert: expected 4 dimensions, got 3") == 0);
    CHECK(dv_errorf(NULL, DV_EIO, "x") == DV_EIO);
}

TEST(wrap_prefixes_context)
{
    dv_err e = {0};
    dv_errorf(&e, DV_ECORRUPT, "wal: bad checksum at offset 12");
    dv_err_wrap(&e, DV_ECORRUPT, "coll %s", "docs");
    CHECK(strcmp(e.msg, "coll docs: wal: bad checksum at offset 12") == 0);
}

TEST(every_code_has_a_distinct_name)
{
    for (int a = 0; a >= DV_EREADONLY; a--) {
        CHECK(strcmp(dv_code_name((dv_code)a), "unknown") != 0);
        for (int b = a - 1; b >= DV_EREADONLY; b--)
            CHECK(strcmp(dv_code_name((dv_code)a), dv_code_name((dv_code)b)) != 0);
    }
    CHECK(strcmp(dv_code_name((dv_code)-999), "unknown") == 0);
}

T_MAIN()
