/*
 * A record larger than max_record_bytes is refused with CW_ERR_TOO_LARGE and
 * nothing is written: position, sequence and the position output stay as
 * they were, a following small append works, and after reopen only the small
 * records are there. After cw_manager_advance_epoch an oversized append
 * leaves no EPOCH_BARRIER behind; the next accepted append writes it.
 */
#include "harness.h"

#define LIMIT 1024

static void check_refused(cw_writer *w, uint64_t pos, uint64_t seq) {
  static uint8_t big[2000];
  cw_source_offset so;
  uint64_t out = 4242;
  memset(big, 'x', sizeof big);
  CHECK_STATUS(cw_writer_append_put(w, (const uint8_t *)"k", 1, big, sizeof big, &out),
               CW_ERR_TOO_LARGE);
  CHECK_CONTAINS(cw_last_error(), "max_record_bytes");
  CHECK_STATUS(cw_writer_append_put(w, big, sizeof big, NULL, 0, &out), CW_ERR_TOO_LARGE);
  CHECK_STATUS(cw_writer_append_delete(w, big, sizeof big, &out), CW_ERR_TOO_LARGE);
  so.name = (const char *)big;
  so.name_len = sizeof big;
  so.offset = 1;
  CHECK_STATUS(cw_writer_append_commit(w, &so, 1, NULL, &out), CW_ERR_TOO_LARGE);
  CHECK_EQ(out, 4242);
  CHECK_EQ(cw_writer_position(w), pos);
  CHECK_EQ(cw_writer_sequence(w), seq);
}

typedef struct {
  int op;
  uint64_t epoch;
  size_t value_len;
} seen_record;

static size_t read_all(const char *dir, seen_record *out, size_t cap) {
  cw_recovery *r = NULL;
  cw_entry e;
  size_t n = 0;
  cw_status s;
  CHECK_OK(cw_recovery_open(dir, NULL, &r));
  while ((s = cw_recovery_next(r, &e)) == CW_OK) {
    CHECK(n < cap);
    CHECK(e.value_len < 2000);
    CHECK(e.key_len < 2000);
    CHECK_EQ(e.sequence, n);
    out[n].op = e.op;
    out[n].epoch = e.epoch;
    out[n].value_len = e.value_len;
    n++;
  }
  CHECK_STATUS(s, CW_DONE);
  cw_recovery_close(r);
  return n;
}

int main(void) {
  char dir[4096];
  cw_options opts = cwt_options(1, 65536);
  cw_manager *m = NULL;
  cw_writer *w;
  uint64_t pos = 99, e1, e2, end1;
  seen_record recs[8];

  opts.max_record_bytes = LIMIT;
  cwt_path(dir, sizeof dir, "wal");

  /* Session 1: refused, then a small record. */
  CHECK_OK(cw_manager_open(dir, &opts, &m));
  w = cwt_writer(m, 0);
  e1 = cw_manager_epoch(m);
  check_refused(w, 0, 0);
  CHECK_OK(cwt_put_str(w, "small", "ok", &pos));
  CHECK_EQ(pos, 0);
  CHECK_EQ(cw_writer_sequence(w), 1);
  end1 = cw_writer_position(w);
  check_refused(w, end1, 1);
  CHECK_OK(cw_manager_close(m));

  opts.num_cores = 0;
  CHECK_EQ(read_all(dir, recs, 8), 1);
  CHECK_EQ(recs[0].op, CW_OP_PUT);
  CHECK_EQ(recs[0].value_len, 2);

  /* Session 2: a new epoch; the refused append must not emit its barrier. */
  CHECK_OK(cw_manager_open(dir, &opts, &m));
  w = cwt_writer(m, 0);
  CHECK_EQ(cw_writer_position(w), end1);
  CHECK_OK(cw_manager_advance_epoch(m, &e2));
  CHECK(e2 > e1);
  check_refused(w, end1, 1);
  CHECK_OK(cw_writer_sync(w));
  CHECK_EQ(read_all(dir, recs, 8), 1); /* still only the small record on disk */
  /* The next accepted append closes e1 with a barrier, then the record. */
  CHECK_OK(cwt_put_str(w, "small2", "ok2", &pos));
  CHECK(pos > end1);
  CHECK_EQ(cw_writer_sequence(w), 3);
  CHECK_OK(cw_manager_close(m));

  CHECK_EQ(read_all(dir, recs, 8), 3);
  CHECK_EQ(recs[0].op, CW_OP_PUT);
  CHECK_EQ(recs[0].epoch, e1);
  CHECK_EQ(recs[1].op, CW_OP_EPOCH_BARRIER);
  CHECK_EQ(recs[1].epoch, e2);
  CHECK_EQ(recs[2].op, CW_OP_PUT);
  CHECK_EQ(recs[2].epoch, e2);
  CHECK_EQ(recs[2].value_len, 3);

  printf("too large: refused with nothing written, no stray barrier\n");
  return 0;
}
