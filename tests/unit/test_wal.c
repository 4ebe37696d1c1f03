/* test_wal.c - write-ahead log: round trips, torn tails, corruption, group
 * commit, poisoning, and crash at every I/O call. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <unistd.h>

#include "t.h"
#include "io.h"
#include "wal.h"

#include <xxhash.h>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define QUICK 1
#else
#define QUICK 0
#endif

/* Replay collector: what the apply callback saw. */
typedef struct seen {
    size_t n, cap;
    uint64_t *seq;
    uint8_t *type;
    char **payload;
    size_t *len;
} seen;

static dv_code collect(void *ctx, uint64_t seq, uint8_t type, const uint8_t *p, size_t len, dv_err *err)
{
    (void)err;
    seen *s = ctx;
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 64;
        s->seq = realloc(s->seq, s->cap * sizeof *s->seq);
        s->type = realloc(s->type, s->cap);
        s->payload = realloc(s->payload, s->cap * sizeof *s->payload);
        s->len = realloc(s->len, s->cap * sizeof *s->len);
    }
    s->seq[s->n] = seq;
    s->type[s->n] = type;
    s->payload[s->n] = malloc(len + 1);
    memcpy(s->payload[s->n], p, len);
    s->payload[s->n][len] = 0;
    s->len[s->n] = len;
    s->n++;
    return DV_OK;
}

static void seen_free(seen *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->payload[i]);
    free(s->seq);
    free(s->type);
    free(s->payload);
    free(s->len);
    memset(s, 0, sizeof *s);
}

/* A fresh test directory path (not created). Tests that loop over many
 * simulated crashes use tmpfs when there is one: the power-loss model is
 * io.c's, so a real fsync would only cost time. */
static void fresh_dir_on(char *buf, size_t n, const char *tag, int real_disk)
{
    struct stat st;
    const char *base = !real_disk && stat("/dev/shm", &st) == 0 && access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(buf, n, "%s/dv_test_wal_%d_%s", base, (int)getpid(), tag);
    io_remove_tree(buf, NULL);
}

static void fresh_dir(char *buf, size_t n, const char *tag)
{
    fresh_dir_on(buf, n, tag, 0);
}

/* Payload of record i of the test workloads: variable length, recognisable. */
static size_t make_payload(char *buf, size_t cap, uint64_t i)
{
    size_t len = (size_t)(i * 37 % 300);
    if (len + 32 > cap)
        len = cap - 32;
    int k = snprintf(buf, cap, "rec-%" PRIu64 ":", i);
    for (size_t j = (size_t)k; j < (size_t)k + len; j++)
        buf[j] = (char)('a' + (i + j) % 26);
    return (size_t)k + len;
}

static int payload_ok(const seen *s, size_t idx, uint64_t i)
{
    char buf[512];
    size_t len = make_payload(buf, sizeof buf, i);
    return s->len[idx] == len && memcmp(s->payload[idx], buf, len) == 0;
}

static int count_segments(const char *dir)
{
    char **v;
    size_t n;
    if (io_list_dir(dir, &v, &n, NULL) != DV_OK)
        return -1;
    int c = 0;
    for (size_t i = 0; i < n; i++)
        c += strstr(v[i], ".log") != NULL;
    io_list_free(v, n);
    return c;
}

/* Path of the newest segment of dir (the last in sorted order). */
static void last_segment(const char *dir, char *out, size_t cap)
{
    char **v;
    size_t n;
    out[0] = 0;
    if (io_list_dir(dir, &v, &n, NULL) != DV_OK)
        return;
    for (size_t i = 0; i < n; i++)
        if (strstr(v[i], ".log"))
            snprintf(out, cap, "%s/%s", dir, v[i]);
    io_list_free(v, n);
}

static long fsize(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 ? (long)st.st_size : -1;
}

TEST(append_and_replay_round_trip_across_rotations_and_reopens)
{
    char d[256];
    fresh_dir(d, sizeof d, "rt");
    dv_err e = {0};
    uint64_t total = 0;
    for (int round = 0; round < 4; round++) {
        seen s = {0};
        wal *w;
        int64_t torn;
        CHECKF(wal_open(d, DV_FSYNC_ALWAYS, 0, 0, 0, collect, &s, &torn, &w, &e) == DV_OK, "%s", e.msg);
        CHECK(torn == -1);
        CHECKF(s.n == total, "round %d: replayed %zu, expected %" PRIu64, round, s.n, total);
        for (size_t i = 0; i < s.n; i++) {
            CHECK(s.seq[i] == i + 1);
            CHECK(s.type[i] == (uint8_t)(s.seq[i] % 7));
            CHECK(payload_ok(&s, i, s.seq[i]));
        }
        CHECK(wal_last_seq(w) == total);
        wal_set_segment_bytes(w, 2000);
        for (int k = 0; k < 50; k++) {
            char buf[512];
            uint64_t seq;
            uint64_t i = total + 1;
            size_t len = make_payload(buf, sizeof buf, i);
            CHECKF(wal_append(w, (uint8_t)(i % 7), buf, len, &seq, &e) == DV_OK, "%s", e.msg);
            CHECK(seq == i);
            total++;
        }
        if (round == 2)
            CHECK(wal_rotate(w, &e) == DV_OK);
        CHECK(wal_close(w, &e) == DV_OK);
        seen_free(&s);
    }
    CHECKF(count_segments(d) > 3, "segments=%d", count_segments(d));
    io_remove_tree(d, NULL);
}

TEST(empty_payload_records_round_trip)
{
    char d[256];
    fresh_dir(d, sizeof d, "empty");
    dv_err e = {0};
    wal *w;
    CHECK(wal_open(d, DV_FSYNC_ALWAYS, 0, 0, 0, NULL, NULL, NULL, &w, &e) == DV_OK);
    CHECK(wal_append(w, 9, NULL, 0, NULL, &e) == DV_OK);
    CHECK(wal_append(w, 8, "x", 1, NULL, &e) == DV_OK);
    CHECK(wal_close(w, &e) == DV_OK);
    seen s = {0};
    CHECK(wal_open(d, DV_FSYNC_ALWAYS, 0, 0, 1, collect, &s, NULL, &w, &e) == DV_OK);
    CHECK(s.n == 2 && s.len[0] == 0 && s.type[0] == 9 && s.len[1] == 1 && s.type[1] == 8);
    CHECK(wal_append(w, 1, "y", 1, NULL, &e) == DV_EREADONLY);
    CHECK(wal_close(w, &e) == DV_OK);
    seen_free(&s);
    io_remove_tree(d, NULL);
}

TEST(replay_skips_records_up_to_after_seq)
{
    char d[256];
    fresh_dir(d, sizeof d, "after");
    dv_err e = {0};
    wal *w;
    CHECK(wal_open(d, DV_FSYNC_NEVER, 0, 0, 0, NULL, NULL, NULL, &w, &e) == DV_OK);
    wal_set_segment_bytes(w, 300);
    for (uint64_t i = 1; i <= 40; i++) {
        char buf[512];
        size_t len = make_payload(buf, sizeof buf, i);
        CHECK(wal_append(w, 1, buf, len, NULL, &e) == DV_OK);
    }
    CHECK(wal_close(w, &e) == DV_OK);
    seen s = {0};
    CHECKF(wal_open(d, DV_FSYNC_ALWAYS, 0, 25, 0, collect, &s, NULL, &w, &e) == DV_OK, "%s", e.msg);
    CHECK(s.n == 15);
    for (size_t i = 0; i < s.n; i++)
        CHECK(s.seq[i] == 26 + i && payload_ok(&s, i, s.seq[i]));
    CHECK(wal_last_seq(w) == 40);
    CHECK(wal_close(w, &e) == DV_OK);
    seen_free(&s);
    io_remove_tree(d, NULL);
}

TEST(checkpoint_past_the_log_jumps_seq_and_stays_replayable)
{
    char d[256];
    fresh_dir(d, sizeof d, "jump");
    dv_err e = {0};
    wal *w;
    CHECK(wal_open(d, DV_FSYNC_ALWAYS, 0, 0, 0, NULL, NULL, NULL, &w, &e) == DV_OK);
    CHECK(wal_append(w, 1, "a", 1, NULL, &e) == DV_OK);
    CHECK(wal_close(w, &e) == DV_OK);
    /* The snapshot claims seq 10: new records must get seqs > 10. */
    CHECKF(wal_open(d, DV_FSYNC_ALWAYS, 0, 10, 0, NULL, NULL, NULL, &w, &e) == DV_OK, "%s", e.msg);
    uint64_t seq;
    CHECK(wal_append(w, 1, "b", 1, &seq, &e) == DV_OK);
    CHECK(seq == 11);
    CHECK(wal_close(w, &e) == DV_OK);
    seen s = {0};
    CHECKF(wal_open(d, DV_FSYNC_ALWAYS, 0, 10, 0, collect, &s, NULL, &w, &e) == DV_OK, "%s", e.msg);
    CHECK(s.n == 1 && s.seq[0] == 11);
    CHECK(wal_close(w, &e) == DV_OK);
    seen_free(&s);
    /* With a lower after_seq the gap (2..10) would be lost data: refused. */
    CHECK(wal_open(d, DV_FSYNC_ALWAYS, 0, 0, 1, NULL, NULL, NULL, &w, &e) == DV_ECORRUPT);
    CHECK(strstr(e.msg, "expected") != NULL);
    /* A fresh wal under a checkpoint starts after it. */
    io_remove_tree(d, NULL);
    CHECK(wal_open(d, DV_FSYNC_ALWAYS, 0, 500, 0, NULL, NULL, NULL, &w, &e) == DV_OK);
    CHECK(wal_last_seq(w) == 500);
    CHECK(wal_append(w, 1, "c", 1, &seq, &e) == DV_OK && seq == 501);
    CHECK(wal_close(w, &e) == DV_OK);
    io_remove_tree(d, NULL);
}

TEST(torn_tail_at_every_cut_of_last_record_opens_and_truncates)
{
    char d[256], seg[512];
    fresh_dir(d, sizeof d, "torn");
    dv_err e = {0};
    wal *w;
    CHECK(wal_open(d, DV_FSYNC_ALWAYS, 0, 0, 0, NULL, NULL, NULL, &w, &e) == DV_OK);
    for (uint64_t i = 1; i <= 5; i++) {
        char buf[512];
        size_t len = make_payload(buf, sizeof buf, i);
        CHECK(wal_append(w, 2, buf, len, NULL, &e) == DV_OK);
    }
    CHECK(wal_close(w, &e) == DV_OK);
    last_segment(d, seg, sizeof seg);
    uint8_t *full;
    size_t full_len;
    CHECK(io_read_file(seg, &full, &full_len, NULL) == DV_OK);
    char p5[512];
    size_t l5 = make_payload(p5, sizeof p5, 5);
    size_t start5 = full_len - 21 - l5;
    for (size_t cut = start5; cut < full_len; cut++) {
        int fd = open(seg, O_WRONLY | O_TRUNC);
        CHECK(fd >= 0);
        CHECK(write(fd, full, cut) == (ssize_t)cut);
        close(fd);
        seen s = {0};
        int64_t torn;
        CHECKF(wal_open(d, DV_FSYNC_ALWAYS, 0, 0, 0, collect, &s, &torn, &w, &e) == DV_OK, "cut %zu: %s", cut, e.msg);
        CHECKF(s.n == 4, "cut %zu: %zu records", cut, s.n);
        for (size_t i = 0; i < 4; i++)
            CHECK(s.seq[i] == i + 1 && payload_ok(&s, i, i + 1));
        CHECKF(torn == (cut == start5 ? -1 : (int64_t)start5), "cut %zu: torn %" PRId64, cut, torn);
        CHECK(fsize(seg) == (long)start5);
        /* The log continues at seq 5 after the cut. */
        uint64_t seq;
        CHECK(wal_append(w, 2, p5, l5, &seq, &e) == DV_OK && seq == 5);
        CHECK(wal_close(w, &e) == DV_OK);
        seen_free(&s);
        CHECK(fsize(seg) == (long)full_len);
    }
    /* Garbage (zeros) after the last record is a torn tail as well. */
    int fd = open(seg, O_WRONLY | O_APPEND);
    uint8_t zeros[100] = {0};
    CHECK(write(fd, zeros, sizeof zeros) == (ssize_t)sizeof zeros);
    close(fd);
    int64_t torn;
    CHECK(wal_open(d, DV_FSYNC_ALWAYS, 0, 0, 0, NULL, NULL, &torn, &w, &e) == DV_OK);
    CHECK(torn == (int64_t)full_len);
    CHECK(wal_close(w, &e) == DV_OK);
    free(full);
    io_remove_tree(d, NULL);
}

TEST(bit_flip_in_middle_record_is_corruption_naming_file_and_offset)
{
    char d[256], seg[512];
    fresh_dir(d, sizeof d, "flip");
    dv_err e = {0};
    wal *w;
    CHECK(wal_open(d, DV_FSYNC_ALWAYS, 0, 0, 0, NULL, NULL, NULL, &w, &e) == DV_OK);
    for (uint64_t i = 1; i <= 5; i++)
        CHECK(wal_append(w, 2, "0123456789", 10, NULL, &e) == DV_OK);
    CHECK(wal_close(w, &e) == DV_OK);
    last_segment(d, seg, sizeof seg);
    uint8_t *orig;
    size_t len;
    CHECK(io_read_file(seg, &orig, &len, NULL) == DV_OK);
    /* Record 3 starts at 32 + 2*31; flip a bit in each of its bytes in turn
     * (length, checksum, seq, type, payload): never silently truncated. */
    size_t rec3 = 32 + 2 * 31;
    for (size_t b = rec3; b < rec3 + 31; b++) {
        uint8_t *copy = malloc(len);
        memcpy(copy, orig, len);
        copy[b] ^= 0x10;
        int fd = open(seg, O_WRONLY | O_TRUNC);
        CHECK(write(fd, copy, len) == (ssize_t)len);
        close(fd);
        free(copy);
        seen s = {0};
        w = NULL;
        dv_code rc = wal_open(d, DV_FSYNC_ALWAYS, 0, 0, 0, collect, &s, NULL, &w, &e);
        CHECKF(rc == DV_ECORRUPT, "byte %zu: rc %d", b, rc);
        CHECK(w == NULL);
        char want[64];
        snprintf(want, sizeof want, "offset %zu", rec3);
        CHECKF(strstr(e.msg, seg) && strstr(e.msg, want), "byte %zu: %s", b, e.msg);
        seen_free(&s);
        CHECK(fsize(seg) == (long)len); /* nothing truncated */
    }
    free(orig);
    io_remove_tree(d, NULL);
}

TEST(bad_record_in_non_last_segment_is_corruption)
{
    char d[256], first[512];
    fresh_dir(d, sizeof d, "nonlast");
    dv_err e = {0};
    wal *w;
    CHECK(wal_open(d, DV_FSYNC_ALWAYS, 0, 0, 0, NULL, NULL, NULL, &w, &e) == DV_OK);
    for (uint64_t i = 1; i <= 3; i++)
        CHECK(wal_append(w, 2, "abc", 3, NULL, &e) == DV_OK);
    CHECK(wal_rotate(w, &e) == DV_OK);
    CHECK(wal_append(w, 2, "def", 3, NULL, &e) == DV_OK);
    CHECK(wal_close(w, &e) == DV_OK);
    snprintf(first, sizeof first, "%s/%020d.log", d, 1);
    /* Cut the last record of the first segment: a torn tail there is not
     * possible (it was fsynced before rotating), so it is corruption. */
    CHECK(truncate(first, fsize(first) - 2) == 0);
    CHECK(wal_open(d, DV_FSYNC_ALWAYS, 0, 0, 0, NULL, NULL, NULL, &w, &e) == DV_ECORRUPT);
    CHECKF(strstr(e.msg, first) && strstr(e.msg, "non-last"), "%s", e.msg);
    io_remove_tree(d, NULL);
}

TEST(torn_segment_creation_is_dropped)
{
    char d[256], seg[512];
    fresh_dir(d, sizeof d, "tornseg");
    dv_err e = {0};
    wal *w;
    CHECK(wal_open(d, DV_FSYNC_ALWAYS, 0, 0, 0, NULL, NULL, NULL, &w, &e) == DV_OK);
    CHECK(wal_append(w, 2, "abc", 3, NULL, &e) == DV_OK);
    CHECK(wal_close(w, &e) == DV_OK);
    /* A new segment whose header never made it to disk. */
    snprintf(seg, sizeof seg, "%s/%020d.log", d, 2);
    int fd = open(seg, O_WRONLY | O_CREAT, 0644);
    CHECK(write(fd, "DVW", 3) == 3);
    close(fd);
    seen s = {0};
    int64_t torn;
    CHECKF(wal_open(d, DV_FSYNC_ALWAYS, 0, 0, 0, collect, &s, &torn, &w, &e) == DV_OK, "%s", e.msg);
    CHECK(s.n == 1 && torn == 0);
    uint64_t seq;
    CHECK(wal_append(w, 2, "x", 1, &seq, &e) == DV_OK && seq == 2);
    CHECK(wal_close(w, &e) == DV_OK);
    seen_free(&s);
    CHECK(wal_open(d, DV_FSYNC_ALWAYS, 0, 0, 0, collect, &s, &torn, &w, &e) == DV_OK);
    CHECK(s.n == 2 && torn == -1);
    CHECK(wal_close(w, &e) == DV_OK);
    seen_free(&s);
    io_remove_tree(d, NULL);
}

TEST(oversized_record_is_rejected_without_poisoning)
{
    char d[256];
    fresh_dir(d, sizeof d, "limit");
    dv_err e = {0};
    wal *w;
    CHECK(wal_open(d, DV_FSYNC_ALWAYS, 0, 0, 0, NULL, NULL, NULL, &w, &e) == DV_OK);
    char small[4] = "abc";
    /* The length is checked before the payload is touched. */
    CHECK(wal_append(w, 1, small, (size_t)WAL_RECORD_MAX + 1, NULL, &e) == DV_ELIMIT);
    CHECK(!wal_poisoned(w));
    CHECK(wal_append(w, 1, small, 3, NULL, &e) == DV_OK);
    CHECK(wal_close(w, &e) == DV_OK);
    io_remove_tree(d, NULL);
}

TEST(truncate_upto_removes_only_covered_segments_and_copy_replays)
{
    char d[256], bk[256];
    fresh_dir(d, sizeof d, "trunc");
    fresh_dir(bk, sizeof bk, "trunc_bk");
    dv_err e = {0};
    wal *w;
    CHECK(wal_open(d, DV_FSYNC_ALWAYS, 0, 0, 0, NULL, NULL, NULL, &w, &e) == DV_OK);
    for (uint64_t i = 1; i <= 30; i++) {
        CHECK(wal_append(w, 1, "payload", 7, NULL, &e) == DV_OK);
        if (i % 10 == 0)
            CHECK(wal_rotate(w, &e) == DV_OK);
    }
    /* segments: 1..10, 11..20, 21..30, 31.. (empty active) */
    CHECK(count_segments(d) == 4);
    wal_stats st;
    wal_stats_get(w, &st);
    CHECK(st.bytes == (uint64_t)(4 * 32 + 30 * (21 + 7)));
    CHECK(wal_truncate_upto(w, 15, &e) == DV_OK);
    CHECK(count_segments(d) == 3);
    CHECK(wal_truncate_upto(w, 30, &e) == DV_OK);
    CHECK(count_segments(d) == 1); /* the active segment always stays */
    CHECK(wal_append(w, 1, "more", 4, NULL, &e) == DV_OK);
    CHECK(wal_copy_to(w, bk, &e) == DV_OK);
    CHECK(wal_close(w, &e) == DV_OK);
    seen s = {0};
    CHECKF(wal_open(bk, DV_FSYNC_ALWAYS, 0, 30, 1, collect, &s, NULL, &w, &e) == DV_OK, "%s", e.msg);
    CHECK(s.n == 1 && s.seq[0] == 31 && s.len[0] == 4);
    CHECK(wal_close(w, &e) == DV_OK);
    seen_free(&s);
    io_remove_tree(d, NULL);
    io_remove_tree(bk, NULL);
}

typedef struct thr_arg {
    wal *w;
    int id, n;
    uint64_t *seqs;
    int fails;
} thr_arg;

static void *appender(void *p)
{
    thr_arg *a = p;
    for (int i = 0; i < a->n; i++) {
        char buf[64];
        int len = snprintf(buf, sizeof buf, "t%d-%d", a->id, i);
        if (wal_append(a->w, (uint8_t)a->id, buf, (size_t)len, &a->seqs[i], NULL) != DV_OK)
            a->fails++;
    }
    return NULL;
}

TEST(concurrent_appenders_share_fsyncs_and_replay_in_order)
{
    char d[256];
    fresh_dir_on(d, sizeof d, "conc", 1); /* real fsyncs: group commit needs them to take time */
    dv_err e = {0};
    wal *w;
    CHECK(wal_open(d, DV_FSYNC_ALWAYS, 0, 0, 0, NULL, NULL, NULL, &w, &e) == DV_OK);
    wal_set_segment_bytes(w, 16384);
    enum { T = 4 };
    int per = QUICK ? 100 : 300;
    pthread_t th[T];
    thr_arg args[T];
    for (int t = 0; t < T; t++) {
        args[t] = (thr_arg){w, t, per, calloc((size_t)per, sizeof(uint64_t)), 0};
        pthread_create(&th[t], NULL, appender, &args[t]);
    }
    for (int t = 0; t < T; t++)
        pthread_join(th[t], NULL);
    wal_stats st;
    wal_stats_get(w, &st);
    CHECK(wal_close(w, &e) == DV_OK);
    for (int t = 0; t < T; t++) {
        CHECK(args[t].fails == 0);
        for (int i = 1; i < per; i++)
            CHECK(args[t].seqs[i] > args[t].seqs[i - 1]);
    }
    int n_appends = T * per;
    fprintf(stderr, "  %d appends, %" PRIu64 " fsyncs\n", n_appends, st.fsyncs);
    CHECKF(st.fsyncs < (uint64_t)n_appends, "fsyncs %" PRIu64 " appends %d", st.fsyncs, n_appends);
    uint64_t hsum = 0;
    for (int b = 0; b < 12; b++)
        hsum += st.fsync_hist[b];
    CHECK(hsum == st.fsyncs && st.fsync_seconds > 0);

    seen s = {0};
    CHECK(wal_open(d, DV_FSYNC_ALWAYS, 0, 0, 1, collect, &s, NULL, &w, &e) == DV_OK);
    CHECK(s.n == (size_t)n_appends);
    int next_i[T] = {0};
    for (size_t k = 0; k < s.n; k++) {
        CHECK(s.seq[k] == k + 1);
        int t = s.type[k];
        CHECK(t >= 0 && t < T);
        char want[64];
        snprintf(want, sizeof want, "t%d-%d", t, next_i[t]);
        CHECKF(strcmp(s.payload[k], want) == 0, "seq %" PRIu64 ": %s vs %s", s.seq[k], s.payload[k], want);
        CHECK(args[t].seqs[next_i[t]] == s.seq[k]);
        next_i[t]++;
    }
    CHECK(wal_close(w, &e) == DV_OK);
    seen_free(&s);
    for (int t = 0; t < T; t++)
        free(args[t].seqs);
    io_remove_tree(d, NULL);
}

TEST(fsync_eio_poisons_until_reopen)
{
    char d[256];
    fresh_dir(d, sizeof d, "eio");
    dv_err e = {0};
    wal *w;
    CHECK(wal_open(d, DV_FSYNC_ALWAYS, 0, 0, 0, NULL, NULL, NULL, &w, &e) == DV_OK);
    CHECK(wal_append(w, 1, "ok1", 3, NULL, &e) == DV_OK);
    /* Each ALWAYS append: write header, write payload, fsync -> call 3 = fsync. */
    io_fault_arm(IO_FAULT_EIO, 3, 0);
    CHECK(wal_append(w, 1, "bad", 3, NULL, &e) == DV_EFATAL);
    CHECK(io_calls() == 3);
    io_fault_disarm();
    CHECK(wal_poisoned(w));
    /* The fault is gone, but the page cache is not trusted any more. */
    CHECK(wal_append(w, 1, "ok2", 3, NULL, &e) == DV_EFATAL);
    CHECK(wal_sync(w, &e) == DV_EFATAL);
    CHECK(wal_rotate(w, &e) == DV_EFATAL);
    CHECK(wal_close(w, &e) == DV_EFATAL);
    seen s = {0};
    CHECK(wal_open(d, DV_FSYNC_ALWAYS, 0, 0, 0, collect, &s, NULL, &w, &e) == DV_OK);
    CHECK(s.n >= 1 && strcmp(s.payload[0], "ok1") == 0);
    CHECK(!wal_poisoned(w));
    CHECK(wal_append(w, 1, "ok3", 3, NULL, &e) == DV_OK);
    CHECK(wal_close(w, &e) == DV_OK);
    seen_free(&s);
    io_remove_tree(d, NULL);
}

TEST(write_enospc_errors_then_reopen_replays_every_acknowledged)
{
    char d[256];
    fresh_dir(d, sizeof d, "nospc");
    dv_err e = {0};
    wal *w;
    CHECK(wal_open(d, DV_FSYNC_ALWAYS, 0, 0, 0, NULL, NULL, NULL, &w, &e) == DV_OK);
    int acked = 0;
    for (int i = 0; i < 5; i++)
        acked += wal_append(w, 1, "before", 6, NULL, &e) == DV_OK;
    CHECK(acked == 5);
    /* The disk fills in the middle of a payload write (call 2 of an append). */
    io_fault_arm(IO_FAULT_ENOSPC, 2, 1);
    CHECK(wal_append(w, 1, "full!", 5, NULL, &e) == DV_ENOSPC);
    CHECK(strstr(e.msg, "No space") != NULL);
    CHECK(wal_append(w, 1, "full!", 5, NULL, &e) == DV_EFATAL);
    wal_close(w, NULL);
    io_fault_disarm();
    seen s = {0};
    int64_t torn;
    CHECKF(wal_open(d, DV_FSYNC_ALWAYS, 0, 0, 0, collect, &s, &torn, &w, &e) == DV_OK, "%s", e.msg);
    CHECK(s.n == 5);
    CHECK(torn >= 0); /* the half-written record was cut */
    uint64_t seq;
    CHECK(wal_append(w, 1, "after", 5, &seq, &e) == DV_OK && seq == 6);
    CHECK(wal_close(w, &e) == DV_OK);
    seen_free(&s);
    io_remove_tree(d, NULL);
}

/* The crash workload: open, appends with rotations, a "checkpoint" at seq 6
 * (rotate, then truncate_upto(6) as the engine does once its snapshot is
 * durable), close. *acked_out: last acknowledged seq (1..acked all were);
 * *ckpt_out: 6 once the checkpoint was reached (replay must then pass
 * after_seq = 6, as the engine would from its manifest), else 0. */
static void crash_workload(const char *d, uint64_t *acked_out, uint64_t *ckpt_out)
{
    wal *w;
    uint64_t acked = 0;
    *ckpt_out = 0;
    if (wal_open(d, DV_FSYNC_ALWAYS, 0, 0, 0, NULL, NULL, NULL, &w, NULL) != DV_OK) {
        *acked_out = 0;
        return;
    }
    wal_set_segment_bytes(w, 200);
    for (uint64_t i = 1; i <= 12; i++) {
        char buf[512];
        size_t len = make_payload(buf, sizeof buf, i);
        uint64_t seq;
        if (wal_append(w, 3, buf, len, &seq, NULL) != DV_OK)
            break;
        if (seq != i)
            break;
        acked = i;
        if (i == 6) {
            if (wal_rotate(w, NULL) != DV_OK)
                break;
            *ckpt_out = 6;
            wal_truncate_upto(w, 6, NULL);
        }
    }
    wal_close(w, NULL);
    *acked_out = acked;
}

TEST(crash_at_every_io_call_keeps_a_prefix_with_every_acknowledged)
{
    char d[256];
    fresh_dir(d, sizeof d, "crash");
    uint64_t acked, ckpt;
    io_fault_arm(IO_FAULT_NONE, 0, 0);
    crash_workload(d, &acked, &ckpt);
    uint64_t n_calls = io_calls();
    io_fault_disarm();
    CHECK(acked == 12 && ckpt == 6);
    CHECK(n_calls > 30);
    int n_lost_unacked = 0;
    for (uint64_t k = 1; k <= n_calls + 1; k++) {
        /* torn: nothing, part of a record, or everything unsynced survives */
        static const size_t torns[] = {0, 20, 4096};
        for (size_t ti = 0; ti < 3; ti++) {
            size_t torn = torns[ti];
            io_remove_tree(d, NULL);
            io_fault_arm(IO_FAULT_CRASH, k, 0);
            crash_workload(d, &acked, &ckpt);
            io_crash_apply(torn);
            seen s = {0};
            wal *w;
            dv_err e = {0};
            dv_code rc = wal_open(d, DV_FSYNC_ALWAYS, 0, ckpt, 0, collect, &s, NULL, &w, &e);
            CHECKF(rc == DV_OK, "crash at call %" PRIu64 " torn %zu: %s", k, torn, e.msg);
            uint64_t last = ckpt + s.n;
            CHECKF(last >= acked, "crash at %" PRIu64 " torn %zu: replayed up to %" PRIu64 " < %" PRIu64
                   " acknowledged", k, torn, last, acked);
            CHECK(last <= 12);
            n_lost_unacked += last > acked;
            for (size_t i = 0; i < s.n; i++)
                CHECKF(s.seq[i] == ckpt + i + 1 && payload_ok(&s, i, ckpt + i + 1), "crash at %" PRIu64 ": record %zu",
                       k, i);
            /* And the log keeps working after recovery. */
            uint64_t seq;
            CHECK(wal_append(w, 3, "z", 1, &seq, &e) == DV_OK && seq == last + 1);
            CHECK(wal_close(w, &e) == DV_OK);
            seen_free(&s);
        }
    }
    /* With torn = 4096 a record written but never fsynced survives whole:
     * replay must accept it (a prefix), and it must happen for some k. */
    fprintf(stderr, "  %" PRIu64 " crash points x 3 torn sizes; %d runs kept an unacknowledged record\n", n_calls + 1,
            n_lost_unacked);
    CHECK(n_lost_unacked > 0);
    io_remove_tree(d, NULL);
}

TEST(interval_policy_syncs_in_background_and_never_policy_only_at_close)
{
    char d[256];
    fresh_dir(d, sizeof d, "interval");
    dv_err e = {0};
    wal *w;
    wal_stats st;
    CHECK(wal_open(d, DV_FSYNC_INTERVAL, 10, 0, 0, NULL, NULL, NULL, &w, &e) == DV_OK);
    wal_stats_get(w, &st);
    uint64_t base = st.fsyncs;
    for (int i = 0; i < 20; i++)
        CHECK(wal_append(w, 1, "i", 1, NULL, &e) == DV_OK);
    wal_stats_get(w, &st);
    uint64_t after_appends = st.fsyncs;
    usleep(100 * 1000);
    wal_stats_get(w, &st);
    CHECKF(st.fsyncs > base, "no background fsync: %" PRIu64, st.fsyncs);
    CHECK(after_appends - base <= 20);
    CHECK(wal_close(w, &e) == DV_OK);
    io_remove_tree(d, NULL);

    CHECK(wal_open(d, DV_FSYNC_NEVER, 0, 0, 0, NULL, NULL, NULL, &w, &e) == DV_OK);
    wal_stats_get(w, &st);
    base = st.fsyncs;
    for (int i = 0; i < 20; i++)
        CHECK(wal_append(w, 1, "n", 1, NULL, &e) == DV_OK);
    wal_stats_get(w, &st);
    CHECK(st.fsyncs == base);
    CHECK(wal_sync(w, &e) == DV_OK);
    wal_stats_get(w, &st);
    CHECK(st.fsyncs == base + 1);
    CHECK(wal_close(w, &e) == DV_OK);
    seen s = {0};
    CHECK(wal_open(d, DV_FSYNC_ALWAYS, 0, 0, 1, collect, &s, NULL, &w, &e) == DV_OK);
    CHECK(s.n == 20);
    CHECK(wal_close(w, &e) == DV_OK);
    seen_free(&s);
    io_remove_tree(d, NULL);
}

/* ---- concurrency under faults ------------------------------------------ */

typedef struct cthr {
    wal *w;
    int id, n;
    uint64_t *acked; /* seq of each acknowledged append, 0 if not */
    int first_fail;  /* index of the first failed append, n if none */
    int ok_after_fail;
} cthr;

static void *c_appender(void *p)
{
    cthr *a = p;
    a->first_fail = a->n;
    for (int i = 0; i < a->n; i++) {
        char buf[64];
        int len = snprintf(buf, sizeof buf, "t%d-%d", a->id, i);
        uint64_t seq = 0;
        if (wal_append(a->w, (uint8_t)a->id, buf, (size_t)len, &seq, NULL) == DV_OK) {
            a->acked[i] = seq;
            if (a->first_fail < a->n)
                a->ok_after_fail = 1;
        } else if (a->first_fail == a->n) {
            a->first_fail = i;
        }
    }
    return NULL;
}

/* Run T threads x per appends on an open wal; fills th[]. */
static void run_appenders(wal *w, cthr *th, int T, int per)
{
    pthread_t pt[8];
    for (int t = 0; t < T; t++) {
        th[t] = (cthr){w, t, per, calloc((size_t)per, sizeof(uint64_t)), 0, 0};
        pthread_create(&pt[t], NULL, c_appender, &th[t]);
    }
    for (int t = 0; t < T; t++)
        pthread_join(pt[t], NULL);
}

/* Every acknowledged append of th[] is in s with its own payload. */
static int all_acked_replayed(const seen *s, const cthr *th, int T, char *why, size_t why_cap)
{
    for (int t = 0; t < T; t++)
        for (int i = 0; i < th[t].n; i++) {
            uint64_t seq = th[t].acked[i];
            if (!seq)
                continue;
            char want[64];
            snprintf(want, sizeof want, "t%d-%d", t, i);
            if (seq > s->n || strcmp(s->payload[seq - 1], want) != 0) {
                snprintf(why, why_cap, "acknowledged seq %" PRIu64 " (%s) missing or wrong (replayed %zu)", seq, want,
                         s->n);
                return 0;
            }
        }
    return 1;
}

TEST(concurrent_crash_keeps_every_acknowledged_append_of_every_thread)
{
    char d[256], why[256];
    fresh_dir(d, sizeof d, "ccrash");
    enum { T = 4 };
    int per = QUICK ? 8 : 15;
    /* Sample crash points across the workload (its call count varies with
     * how the groups form, so sample up to a generous bound). */
    for (uint64_t k = 1; k <= (uint64_t)(T * per * 3); k += QUICK ? 7 : 3) {
        io_remove_tree(d, NULL);
        wal *w;
        dv_err e = {0};
        CHECK(wal_open(d, DV_FSYNC_ALWAYS, 0, 0, 0, NULL, NULL, NULL, &w, &e) == DV_OK);
        wal_set_segment_bytes(w, 256);
        io_fault_arm(IO_FAULT_CRASH, k, 0);
        cthr th[T];
        run_appenders(w, th, T, per);
        wal_close(w, NULL);
        io_crash_apply(k % 2 ? 4096 : 0);
        seen s = {0};
        CHECKF(wal_open(d, DV_FSYNC_ALWAYS, 0, 0, 0, collect, &s, NULL, &w, &e) == DV_OK, "k=%" PRIu64 ": %s", k,
               e.msg);
        for (size_t i = 0; i < s.n; i++)
            CHECK(s.seq[i] == i + 1);
        int ok = all_acked_replayed(&s, th, T, why, sizeof why);
        CHECKF(ok, "crash at %" PRIu64 ": %s", k, why);
        for (int t = 0; t < T; t++) {
            CHECK(!th[t].ok_after_fail);
            free(th[t].acked);
        }
        CHECK(wal_close(w, &e) == DV_OK);
        seen_free(&s);
    }
    io_remove_tree(d, NULL);
}

TEST(concurrent_fsync_failure_fails_its_whole_group_and_loses_no_acknowledged)
{
    char d[256], why[256];
    fresh_dir(d, sizeof d, "cfail");
    enum { T = 4 };
    int per = 40;
    for (uint64_t k = 10; k <= 200; k += 19) {
        io_remove_tree(d, NULL);
        wal *w;
        dv_err e = {0};
        CHECK(wal_open(d, DV_FSYNC_ALWAYS, 0, 0, 0, NULL, NULL, NULL, &w, &e) == DV_OK);
        io_fault_arm(IO_FAULT_EIO, k, 0); /* one-shot: only poisoning stops later appends */
        cthr th[T];
        run_appenders(w, th, T, per);
        io_fault_disarm();
        int poisoned = wal_poisoned(w);
        wal_close(w, NULL);
        int n_fail = 0;
        for (int t = 0; t < T; t++) {
            CHECKF(!th[t].ok_after_fail, "k=%" PRIu64 ": thread %d acknowledged after a failure", k, t);
            n_fail += th[t].first_fail < per;
        }
        CHECK(poisoned == (n_fail > 0));
        CHECK(n_fail > 0); /* the failed call is always a wal write or fsync */
        seen s = {0};
        CHECKF(wal_open(d, DV_FSYNC_ALWAYS, 0, 0, 0, collect, &s, NULL, &w, &e) == DV_OK, "%s", e.msg);
        int ok = all_acked_replayed(&s, th, T, why, sizeof why);
        CHECKF(ok, "k=%" PRIu64 ": %s", k, why);
        CHECK(wal_close(w, &e) == DV_OK);
        seen_free(&s);
        for (int t = 0; t < T; t++)
            free(th[t].acked);
    }
    io_remove_tree(d, NULL);
}

typedef struct maint_arg {
    wal *w;
    const char *bk;
    atomic_int stop;
    int errors, n_backups;
} maint_arg;

/* A backup copy taken at seq `before` replays consistently up to at least
 * `before` (it may hold later records too). */
static int backup_ok(const char *bk, uint64_t before)
{
    char **v;
    size_t n;
    if (io_list_dir(bk, &v, &n, NULL) != DV_OK || n == 0)
        return 0;
    uint64_t first = strtoull(v[0], NULL, 10);
    io_list_free(v, n);
    seen s = {0};
    wal *w;
    int ok = first >= 1 && wal_open(bk, DV_FSYNC_ALWAYS, 0, first - 1, 1, collect, &s, NULL, &w, NULL) == DV_OK;
    if (ok) {
        for (size_t i = 0; i < s.n; i++)
            ok &= s.seq[i] == first + i;
        ok &= first - 1 + s.n >= before;
        wal_close(w, NULL);
    }
    seen_free(&s);
    return ok;
}

/* Rotate, truncate, copy and read stats while appenders run (for TSan). */
static void *maintainer(void *p)
{
    maint_arg *m = p;
    int round = 0;
    do { /* at least one round, however fast the appenders are */
        wal_stats st;
        wal_stats_get(m->w, &st);
        if (wal_rotate(m->w, NULL) != DV_OK)
            m->errors++;
        uint64_t last = wal_last_seq(m->w);
        if (last > 10 && wal_truncate_upto(m->w, last - 10, NULL) != DV_OK)
            m->errors++;
        if (++round % 2 == 1) {
            io_remove_tree(m->bk, NULL);
            uint64_t before = wal_last_seq(m->w);
            if (wal_copy_to(m->w, m->bk, NULL) != DV_OK || !backup_ok(m->bk, before))
                m->errors++;
            else
                m->n_backups++;
        }
        if (wal_sync(m->w, NULL) != DV_OK)
            m->errors++;
        usleep(500);
    } while (!atomic_load(&m->stop));
    return NULL;
}

TEST(appends_race_rotate_truncate_copy_and_stats_safely)
{
    char d[256], bk[256];
    fresh_dir(d, sizeof d, "race");
    fresh_dir(bk, sizeof bk, "race_bk");
    dv_err e = {0};
    for (int pol = 0; pol < 3; pol++) {
        io_remove_tree(d, NULL);
        wal *w;
        CHECK(wal_open(d, (dv_fsync_policy)pol, 2, 0, 0, NULL, NULL, NULL, &w, &e) == DV_OK);
        maint_arg m = {w, bk, 0, 0, 0};
        pthread_t mt;
        pthread_create(&mt, NULL, maintainer, &m);
        enum { T = 4 };
        cthr th[T];
        run_appenders(w, th, T, QUICK ? 50 : 200);
        atomic_store(&m.stop, 1);
        pthread_join(mt, NULL);
        CHECKF(m.errors == 0, "policy %d: %d errors", pol, m.errors);
        CHECK(m.n_backups > 0);
        uint64_t last = wal_last_seq(w);
        CHECK(last == (uint64_t)(T * th[0].n));
        CHECK(wal_close(w, &e) == DV_OK);
        for (int t = 0; t < T; t++) {
            CHECK(th[t].first_fail == th[t].n);
            free(th[t].acked);
        }
        /* The truncated log replays from any point it still covers. */
        seen s = {0};
        CHECKF(wal_open(d, DV_FSYNC_ALWAYS, 0, last - 10, 1, collect, &s, NULL, &w, &e) == DV_OK, "%s", e.msg);
        CHECK(s.n == 10 && s.seq[9] == last);
        CHECK(wal_close(w, &e) == DV_OK);
        seen_free(&s);
    }
    io_remove_tree(d, NULL);
    io_remove_tree(bk, NULL);
}

/* Exact outcome of one flipped byte anywhere in a 3-segment log: in an
 * earlier segment, or a record of the last segment that is not its last
 * record, or the last segment's header -> DV_ECORRUPT with that file and
 * nothing truncated; in the last record -> opens with every other record. */
TEST(every_single_byte_flip_is_detected_exactly)
{
    char d[256];
    fresh_dir(d, sizeof d, "flipall");
    dv_err e = {0};
    wal *w;
    CHECK(wal_open(d, DV_FSYNC_NEVER, 0, 0, 0, NULL, NULL, NULL, &w, &e) == DV_OK);
    enum { N = 9 };
    uint64_t rec_off[N + 1];
    int rec_seg[N + 1];
    for (uint64_t i = 1; i <= N; i++) {
        char buf[512];
        size_t len = make_payload(buf, sizeof buf, i * 5);
        CHECK(wal_append(w, 4, buf, len, NULL, &e) == DV_OK);
        if (i % 3 == 0 && i < N)
            CHECK(wal_rotate(w, &e) == DV_OK);
    }
    CHECK(wal_close(w, &e) == DV_OK);
    /* Layout: segments start at seqs 1, 4, 7; record offsets follow. */
    char seg[3][512];
    uint8_t *orig[3];
    size_t olen[3];
    for (int k = 0; k < 3; k++) {
        snprintf(seg[k], sizeof seg[k], "%s/%020d.log", d, 1 + 3 * k);
        CHECK(io_read_file(seg[k], &orig[k], &olen[k], NULL) == DV_OK);
        uint64_t off = 32;
        for (int r = 0; r < 3; r++) {
            uint64_t i = (uint64_t)(1 + 3 * k + r);
            char buf[512];
            rec_off[i] = off;
            rec_seg[i] = k;
            off += 21 + make_payload(buf, sizeof buf, i * 5);
        }
        CHECK(off == olen[k]);
    }
    int step = QUICK ? 7 : 1;
    for (int k = 0; k < 3; k++) {
        for (size_t b = 0; b < olen[k]; b += (size_t)step) {
            orig[k][b] ^= 0x01;
            int fd = open(seg[k], O_WRONLY | O_TRUNC);
            CHECK(fd >= 0 && write(fd, orig[k], olen[k]) == (ssize_t)olen[k]);
            close(fd);
            orig[k][b] ^= 0x01;
            /* Which record holds byte b (0 = the segment header). */
            uint64_t in_rec = 0;
            for (uint64_t i = 1; i <= N; i++)
                if (rec_seg[i] == k && b >= rec_off[i])
                    in_rec = i;
            seen s = {0};
            int64_t torn;
            w = NULL;
            dv_code rc = wal_open(d, DV_FSYNC_ALWAYS, 0, 0, 0, collect, &s, &torn, &w, &e);
            if (in_rec == N) {
                CHECKF(rc == DV_OK, "seg %d byte %zu: %s", k, b, e.msg);
                CHECKF(s.n == N - 1 && torn == (int64_t)rec_off[N], "seg %d byte %zu: n %zu torn %" PRId64, k, b, s.n,
                       torn);
                for (size_t i = 0; i < s.n; i++)
                    CHECK(s.seq[i] == i + 1 && payload_ok(&s, i, (i + 1) * 5));
                CHECK(wal_close(w, &e) == DV_OK);
                /* restore the full last segment for the next round */
                fd = open(seg[k], O_WRONLY | O_TRUNC);
                CHECK(fd >= 0 && write(fd, orig[k], olen[k]) == (ssize_t)olen[k]);
                close(fd);
            } else {
                CHECKF(rc == DV_ECORRUPT, "seg %d byte %zu (record %" PRIu64 "): rc %d", k, b, in_rec, rc);
                CHECKF(strstr(e.msg, seg[k]) != NULL, "seg %d byte %zu: %s", k, b, e.msg);
                CHECK(fsize(seg[k]) == (long)olen[k]);
            }
            seen_free(&s);
        }
        int fd = open(seg[k], O_WRONLY | O_TRUNC);
        CHECK(fd >= 0 && write(fd, orig[k], olen[k]) == (ssize_t)olen[k]);
        close(fd);
    }
    for (int k = 0; k < 3; k++)
        free(orig[k]);
    io_remove_tree(d, NULL);
}

/* Power loss while the wal is open, after a pause longer than the interval:
 * ALWAYS and INTERVAL keep every record (INTERVAL through its background
 * fsync), NEVER loses the unsynced ones, as documented. */
TEST(power_loss_after_an_interval_keeps_records_except_under_never)
{
    char d[256];
    fresh_dir(d, sizeof d, "pl");
    for (int pol = 0; pol < 3; pol++) {
        io_remove_tree(d, NULL);
        dv_err e = {0};
        wal *w;
        CHECK(wal_open(d, (dv_fsync_policy)pol, 5, 0, 0, NULL, NULL, NULL, &w, &e) == DV_OK);
        io_fault_arm(IO_FAULT_CRASH, 0, 0); /* track, never fire by count */
        for (int i = 1; i <= 10; i++) {
            char buf[512];
            size_t len = make_payload(buf, sizeof buf, (uint64_t)i);
            CHECK(wal_append(w, 1, buf, len, NULL, &e) == DV_OK);
        }
        usleep(100 * 1000);
        io_crash_now();
        CHECK(wal_append(w, 1, "late", 4, NULL, &e) != DV_OK);
        wal_close(w, NULL); /* its final fsync fails: the power is out */
        io_crash_apply(0);
        seen s = {0};
        CHECKF(wal_open(d, DV_FSYNC_ALWAYS, 0, 0, 0, collect, &s, NULL, &w, &e) == DV_OK, "%s", e.msg);
        size_t want = pol == DV_FSYNC_NEVER ? 0 : 10;
        CHECKF(s.n == want, "policy %d: %zu records survived, expected %zu", pol, s.n, want);
        for (size_t i = 0; i < s.n; i++)
            CHECK(payload_ok(&s, i, i + 1));
        CHECK(wal_close(w, &e) == DV_OK);
        seen_free(&s);
    }
    io_remove_tree(d, NULL);
}

typedef struct split_arg {
    wal *w;
    pthread_mutex_t *writer_lock;
    int id, n, fails;
    uint64_t *acked;
} split_arg;

/* Like the engine: writes serialized by the caller's own lock, durability
 * waited for outside it. */
static void *split_appender(void *p)
{
    split_arg *a = p;
    for (int i = 0; i < a->n; i++) {
        char buf[64];
        int len = snprintf(buf, sizeof buf, "t%d-%d", a->id, i);
        uint64_t seq = 0;
        pthread_mutex_lock(a->writer_lock);
        dv_code rc = wal_append_nowait(a->w, (uint8_t)a->id, buf, (size_t)len, &seq, NULL);
        pthread_mutex_unlock(a->writer_lock);
        if (rc == DV_OK)
            rc = wal_wait_durable(a->w, seq, NULL);
        if (rc == DV_OK)
            a->acked[i] = seq;
        else
            a->fails++;
    }
    return NULL;
}

TEST(split_append_under_caller_lock_still_groups_fsyncs_and_survives_crash)
{
    char d[256];
    fresh_dir_on(d, sizeof d, "split", 1);
    dv_err e = {0};
    wal *w;
    CHECK(wal_open(d, DV_FSYNC_ALWAYS, 0, 0, 0, NULL, NULL, NULL, &w, &e) == DV_OK);
    enum { T = 4 };
    int per = QUICK ? 50 : 150;
    pthread_mutex_t lk = PTHREAD_MUTEX_INITIALIZER;
    split_arg a[T];
    pthread_t th[T];
    io_fault_arm(IO_FAULT_CRASH, 0, 0); /* track everything; power loss at the end */
    for (int t = 0; t < T; t++) {
        a[t] = (split_arg){w, &lk, t, per, 0, calloc((size_t)per, sizeof(uint64_t))};
        pthread_create(&th[t], NULL, split_appender, &a[t]);
    }
    for (int t = 0; t < T; t++)
        pthread_join(th[t], NULL);
    /* One more record written but never waited for: may be lost. */
    uint64_t extra;
    CHECK(wal_append_nowait(w, 9, "unacked", 7, &extra, &e) == DV_OK);
    CHECK(wal_wait_durable(w, extra + 1, &e) == DV_EINVAL);
    wal_stats st;
    wal_stats_get(w, &st);
    io_crash_now();
    wal_close(w, NULL);
    io_crash_apply(0);
    fprintf(stderr, "  %d appends, %" PRIu64 " fsyncs\n", T * per, st.fsyncs);
    CHECKF(st.fsyncs < (uint64_t)(T * per), "fsyncs %" PRIu64, st.fsyncs);
    seen s = {0};
    CHECK(wal_open(d, DV_FSYNC_ALWAYS, 0, 0, 0, collect, &s, NULL, &w, &e) == DV_OK);
    CHECK(s.n == (size_t)(T * per)); /* the unwaited record was not fsynced */
    for (int t = 0; t < T; t++) {
        CHECK(a[t].fails == 0);
        for (int i = 0; i < per; i++) {
            uint64_t seq = a[t].acked[i];
            char want[64];
            snprintf(want, sizeof want, "t%d-%d", t, i);
            CHECK(seq >= 1 && seq <= s.n && strcmp(s.payload[seq - 1], want) == 0);
        }
        free(a[t].acked);
    }
    CHECK(wal_close(w, &e) == DV_OK);
    seen_free(&s);
    io_remove_tree(d, NULL);
}

TEST(segment_of_an_unknown_version_is_refused_never_dropped)
{
    char d[256], seg[512];
    fresh_dir(d, sizeof d, "ver");
    dv_err e = {0};
    wal *w;
    CHECK(wal_open(d, DV_FSYNC_ALWAYS, 0, 0, 0, NULL, NULL, NULL, &w, &e) == DV_OK);
    CHECK(wal_append(w, 2, "abc", 3, NULL, &e) == DV_OK);
    CHECK(wal_close(w, &e) == DV_OK);
    last_segment(d, seg, sizeof seg);
    uint8_t *buf;
    size_t len;
    CHECK(io_read_file(seg, &buf, &len, NULL) == DV_OK);
    buf[8] = 2; /* version 2, with a correct header checksum */
    uint64_t h = XXH3_64bits(buf, 24);
    for (int i = 0; i < 8; i++)
        buf[24 + i] = (uint8_t)(h >> (8 * i));
    int fd = open(seg, O_WRONLY | O_TRUNC);
    CHECK(fd >= 0 && write(fd, buf, len) == (ssize_t)len);
    close(fd);
    free(buf);
    CHECK(wal_open(d, DV_FSYNC_ALWAYS, 0, 0, 0, NULL, NULL, NULL, &w, &e) == DV_ECORRUPT);
    CHECKF(strstr(e.msg, "version") && strstr(e.msg, seg), "%s", e.msg);
    CHECK(fsize(seg) == (long)len);
    io_remove_tree(d, NULL);
}

/* xorshift64*: a fixed-seed generator for the randomized workloads. */
static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

/* Payload of record `seq` in a randomized run: size from the seed, bytes
 * derived from seq so replay can verify every byte. */
static size_t rand_payload(uint8_t *buf, uint64_t seed, uint64_t seq)
{
    uint64_t st = seed * 1000003u + seq;
    size_t len = (size_t)(rng_next(&st) % 20000);
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(seq * 31 + i * 7);
    return len;
}

/* Random appends, rotations and checkpoints (rotate + truncate_upto) with a
 * random segment size; returns acked seq, sets *ckpt to the last checkpoint
 * the workload completed (its manifest would say so). */
static uint64_t rand_workload(const char *d, uint64_t seed, uint64_t *ckpt)
{
    static uint8_t buf[20000];
    uint64_t st = seed, acked = 0;
    *ckpt = 0;
    wal *w;
    if (wal_open(d, DV_FSYNC_ALWAYS, 0, 0, 0, NULL, NULL, NULL, &w, NULL) != DV_OK)
        return 0;
    wal_set_segment_bytes(w, 4096 + rng_next(&st) % 60000);
    int n = 10 + (int)(rng_next(&st) % 20);
    for (int i = 0; i < n; i++) {
        uint64_t seq;
        size_t len = rand_payload(buf, seed, acked + 1);
        if (wal_append(w, 5, buf, len, &seq, NULL) != DV_OK || seq != acked + 1)
            break;
        acked = seq;
        uint64_t r = rng_next(&st) % 10;
        if (r == 0 && wal_rotate(w, NULL) != DV_OK)
            break;
        if (r == 1) {
            if (wal_rotate(w, NULL) != DV_OK)
                break;
            *ckpt = acked; /* "snapshot durable" before the cut */
            if (wal_truncate_upto(w, acked, NULL) != DV_OK)
                break;
        }
    }
    wal_close(w, NULL);
    return acked;
}

TEST(randomized_crash_workloads_keep_every_acknowledged_record)
{
    char d[256];
    fresh_dir(d, sizeof d, "rand");
    static uint8_t buf[20000];
    int seeds = QUICK ? 8 : 40, runs = 0;
    for (uint64_t seed = 1; seed <= (uint64_t)seeds; seed++) {
        uint64_t ckpt;
        io_remove_tree(d, NULL);
        io_fault_arm(IO_FAULT_NONE, 0, 0);
        rand_workload(d, seed, &ckpt);
        uint64_t n_calls = io_calls();
        io_fault_disarm();
        uint64_t st = seed ^ 0x9e3779b97f4a7c15ull;
        for (int trial = 0; trial < 12; trial++) {
            uint64_t k = 1 + rng_next(&st) % (n_calls + 1);
            size_t torn = (size_t)(rng_next(&st) % 3 == 0 ? 0 : rng_next(&st) % 30000);
            io_remove_tree(d, NULL);
            io_fault_arm(IO_FAULT_CRASH, k, 0);
            uint64_t acked = rand_workload(d, seed, &ckpt);
            io_crash_apply(torn);
            seen s = {0};
            wal *w;
            dv_err e = {0};
            dv_code rc = wal_open(d, DV_FSYNC_ALWAYS, 0, ckpt, 0, collect, &s, NULL, &w, &e);
            CHECKF(rc == DV_OK, "seed %" PRIu64 " crash %" PRIu64 " torn %zu: %s", seed, k, torn, e.msg);
            CHECKF(ckpt + s.n >= acked, "seed %" PRIu64 " crash %" PRIu64 ": lost acknowledged (%" PRIu64 " < %" PRIu64
                   ")", seed, k, ckpt + s.n, acked);
            for (size_t i = 0; i < s.n; i++) {
                uint64_t seq = ckpt + 1 + i;
                size_t len = rand_payload(buf, seed, seq);
                CHECKF(s.seq[i] == seq && s.len[i] == len && memcmp(s.payload[i], buf, len) == 0,
                       "seed %" PRIu64 " crash %" PRIu64 ": record %" PRIu64 " differs", seed, k, seq);
            }
            CHECK(wal_close(w, &e) == DV_OK);
            seen_free(&s);
            runs++;
        }
    }
    fprintf(stderr, "  %d randomized crash runs\n", runs);
    io_remove_tree(d, NULL);
}

/* An I/O error at any call of wal_open (listing, reading, truncating a torn
 * tail, creating a segment) is reported as an I/O error, never as corruption,
 * and loses nothing: the next open replays every record. */
TEST(eio_at_every_call_of_open_is_an_io_error_and_loses_nothing)
{
    char d[256], seg[512];
    fresh_dir(d, sizeof d, "openeio");
    dv_err e = {0};
    wal *w;
    CHECK(wal_open(d, DV_FSYNC_ALWAYS, 0, 0, 0, NULL, NULL, NULL, &w, &e) == DV_OK);
    wal_set_segment_bytes(w, 300);
    for (uint64_t i = 1; i <= 20; i++) {
        char buf[512];
        size_t len = make_payload(buf, sizeof buf, i);
        CHECK(wal_append(w, 1, buf, len, NULL, &e) == DV_OK);
    }
    CHECK(wal_close(w, &e) == DV_OK);
    last_segment(d, seg, sizeof seg);
    long full = fsize(seg);
    for (int with_torn = 0; with_torn < 2; with_torn++) {
        if (with_torn) {
            int fd = open(seg, O_WRONLY | O_APPEND);
            CHECK(fd >= 0 && write(fd, "garbage", 7) == 7);
            close(fd);
        }
        int64_t torn = -1;
        io_fault_arm(IO_FAULT_NONE, 0, 0);
        CHECK(wal_open(d, DV_FSYNC_ALWAYS, 0, 0, 0, NULL, NULL, &torn, &w, &e) == DV_OK);
        uint64_t n_calls = io_calls();
        io_fault_disarm();
        CHECK(torn == (with_torn ? full : -1));
        CHECK(wal_close(w, &e) == DV_OK);
        for (uint64_t k = 1; k <= n_calls; k++) {
            if (with_torn) {
                /* a torn tail to cut: 7 garbage bytes after the last record */
                int fd = open(seg, O_WRONLY | O_APPEND);
                CHECK(fd >= 0 && write(fd, "garbage", 7) == 7);
                close(fd);
            }
            io_fault_arm(IO_FAULT_EIO, k, 0);
            dv_code rc = wal_open(d, DV_FSYNC_ALWAYS, 0, 0, 0, NULL, NULL, NULL, &w, &e);
            io_fault_disarm();
            CHECKF(rc == DV_OK || rc == DV_EIO, "call %" PRIu64 ": rc %d: %s", k, rc, e.msg);
            if (rc == DV_OK)
                wal_close(w, NULL);
            seen s = {0};
            CHECKF(wal_open(d, DV_FSYNC_ALWAYS, 0, 0, 0, collect, &s, NULL, &w, &e) == DV_OK, "after call %" PRIu64
                   ": %s", k, e.msg);
            CHECKF(s.n == 20, "after EIO at call %" PRIu64 ": %zu records", k, s.n);
            CHECK(wal_close(w, &e) == DV_OK);
            seen_free(&s);
            CHECK(fsize(seg) == full);
        }
    }
    io_remove_tree(d, NULL);
}

T_MAIN()
