/*
 * Reopen and continue: positions, sequences and the epoch continue after
 * close + reopen; records of every session come back; num_cores = 0 opens
 * with the directory's count; a smaller count is refused with
 * CW_ERR_INVALID_ARGUMENT, leaves the output alone and releases the lock;
 * segment_bytes stays what the directory was created with.
 */
#include "harness.h"

#define SEGMENT_BYTES 65536

static void append_session(cw_manager *m, uint32_t lane, int session, uint32_t count,
                           uint64_t *end_position) {
  cw_writer *w = cwt_writer(m, lane);
  uint32_t i;
  for (i = 0; i < count; i++) {
    char key[64], value[200];
    uint64_t pos = UINT64_MAX;
    uint64_t before = cw_writer_position(w);
    snprintf(key, sizeof key, "s%d-lane%u-%u", session, lane, i);
    /* ~200-byte values so the lanes cross segment boundaries. */
    snprintf(value, sizeof value, "%0190u", i);
    CHECK_OK(cwt_put_str(w, key, value, &pos));
    CHECK_EQ(pos, before);
  }
  *end_position = cw_writer_position(w);
}

int main(void) {
  char dir[4096];
  cw_options opts = cwt_options(2, SEGMENT_BYTES);
  cw_manager *m = NULL;
  cw_manager *sentinel = (cw_manager *)(uintptr_t)0x1234;
  cw_manager *out;
  uint64_t end0 = 0, end1 = 0, end0b = 0, end1b = 0;
  uint64_t epoch_s1;

  cwt_path(dir, sizeof dir, "wal");

  /* Session 1: 300 records on lane 0 (rotates), 5 on lane 1, in a later epoch. */
  CHECK_OK(cw_manager_open(dir, &opts, &m));
  CHECK_OK(cw_manager_advance_epoch(m, NULL));
  CHECK_OK(cw_manager_advance_epoch(m, &epoch_s1));
  CHECK_EQ(cw_manager_epoch(m), epoch_s1);
  append_session(m, 0, 1, 300, &end0);
  append_session(m, 1, 1, 5, &end1);
  CHECK_EQ(cw_writer_sequence(cwt_writer(m, 0)), 300);
  CHECK_EQ(cw_writer_sequence(cwt_writer(m, 1)), 5);
  /* No sync: close syncs every lane. */
  CHECK_OK(cw_manager_close(m));

  /* Session 2: num_cores = 0 takes the directory's count. */
  opts.num_cores = 0;
  m = NULL;
  CHECK_OK(cw_manager_open(dir, &opts, &m));
  CHECK_EQ(cw_manager_num_cores(m), 2);
  CHECK(cw_manager_epoch(m) >= epoch_s1);
  {
    cw_writer *w0 = cwt_writer(m, 0), *w1 = cwt_writer(m, 1);
    CHECK_EQ(cw_writer_position(w0), end0);
    CHECK_EQ(cw_writer_synced_position(w0), end0);
    CHECK_EQ(cw_writer_sequence(w0), 300);
    CHECK_EQ(cw_writer_position(w1), end1);
    CHECK_EQ(cw_writer_sequence(w1), 5);
  }
  append_session(m, 0, 2, 20, &end0b);
  append_session(m, 1, 2, 7, &end1b);
  CHECK(end0b > end0 && end1b > end1);
  CHECK_EQ(cw_writer_sequence(cwt_writer(m, 0)), 320);
  CHECK_EQ(cw_writer_sequence(cwt_writer(m, 1)), 12);
  CHECK_OK(cw_manager_sync_all(m));
  CHECK_EQ(cw_writer_synced_position(cwt_writer(m, 0)), end0b);
  CHECK_OK(cw_manager_close(m));

  /* The same count is fine; a smaller one is refused and writes no output. */
  opts.num_cores = 2;
  CHECK_OK(cw_manager_open(dir, &opts, &m));
  CHECK_OK(cw_manager_close(m));
  opts.num_cores = 1;
  out = sentinel;
  CHECK_STATUS(cw_manager_open(dir, &opts, &out), CW_ERR_INVALID_ARGUMENT);
  CHECK(out == sentinel);
  CHECK(strlen(cw_last_error()) > 0);

  /* The refused open released the lock, and changed nothing. */
  opts.num_cores = 0;
  CHECK_OK(cw_manager_open(dir, &opts, &m));
  CHECK_EQ(cw_writer_position(cwt_writer(m, 0)), end0b);
  CHECK_EQ(cw_writer_sequence(cwt_writer(m, 1)), 12);
  CHECK_OK(cw_manager_close(m));

  /* segment_bytes is fixed at creation: a reopen asking for 1 MiB segments
   * still rotates at 64 KiB (each preallocated segment is exactly that). */
  opts.segment_bytes = 1 << 20;
  CHECK_OK(cw_manager_open(dir, &opts, &m));
  {
    uint64_t end = 0, index = 0, base = 0, i;
    char seg[4096];
    append_session(m, 1, 3, 400, &end); /* ~85 KB on lane 1 */
    CHECK_OK(cw_manager_close(m));
    cwt_last_segment(dir, 1, &index, &base);
    CHECK(index >= 1);
    for (i = 0; i <= index + 1; i++) {
      cwt_segment_path(seg, sizeof seg, dir, 1, i);
      if (i <= index || cwt_file_exists(seg))
        CHECK_EQ(cwt_file_size(seg), SEGMENT_BYTES);
    }
  }

  /* Both sessions are recovered, each lane's sequences contiguous. */
  {
    cw_recovery *r = NULL;
    cw_entry e;
    uint64_t next_seq[2] = {0, 0};
    uint64_t total = 0;
    cw_status s;
    CHECK_OK(cw_recovery_open(dir, NULL, &r));
    while ((s = cw_recovery_next(r, &e)) == CW_OK) {
      char key[64];
      uint64_t seq = e.sequence;
      int session;
      uint64_t i;
      CHECK(e.core_id < 2);
      CHECK_EQ(e.op, CW_OP_PUT);
      CHECK_EQ(seq, next_seq[e.core_id]);
      next_seq[e.core_id]++;
      if (e.core_id == 0) {
        session = seq < 300 ? 1 : 2;
        i = seq < 300 ? seq : seq - 300;
      } else {
        session = seq < 5 ? 1 : seq < 12 ? 2 : 3;
        i = seq < 5 ? seq : seq < 12 ? seq - 5 : seq - 12;
      }
      snprintf(key, sizeof key, "s%d-lane%u-%u", session, e.core_id, (unsigned)i);
      CHECK_BYTES(e.key, e.key_len, key, strlen(key));
      CHECK_EQ(e.value_len, 190);
      CHECK(e.epoch >= epoch_s1);
      total++;
    }
    CHECK_STATUS(s, CW_DONE);
    CHECK_EQ(next_seq[0], 320);
    CHECK_EQ(next_seq[1], 412);
    CHECK_EQ(total, 732);
    cw_recovery_close(r);
  }

  printf("reopen: sequences and positions continue across sessions\n");
  return 0;
}
