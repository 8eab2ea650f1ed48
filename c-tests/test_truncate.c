/*
 * cw_writer_truncate and cw_manager_reset through the C ABI:
 *  1. append 10 records, sync, truncate to the 5th, append 3, close; a
 *     reopen and cw_recovery_open yield the 4 kept records then the 3 new
 *     ones, sequences 0..6, the first new one at the truncated position;
 *     the reopened writer goes on at sequence 7;
 *  2. with 4 KiB segments, truncating into the first segment removes the
 *     later segment files;
 *  3. argument errors (NULL writer, a position inside a record, beyond the
 *     end) return CW_ERR_INVALID_ARGUMENT and change nothing;
 *  4. reset empties both lanes and removes the checkpoint; positions and
 *     sequences go on through the same writer handles; NULL and closed
 *     managers are refused.
 */
#include "harness.h"

/* Lane 0's records of `dir` must be `keys` in order, with sequences 0.. and
 * rising positions. */
static void expect_lane0(const char *dir, const char *const *keys, size_t n) {
  cw_recovery *r = NULL;
  cw_entry e;
  cw_status s;
  size_t i = 0;
  uint64_t last_position = 0;
  CHECK_OK(cw_recovery_open(dir, NULL, &r));
  while ((s = cw_recovery_next(r, &e)) == CW_OK) {
    CHECK_EQ(e.core_id, 0);
    CHECK_MSG(i < n, "record %zu beyond the %zu expected", i, n);
    CHECK_EQ(e.op, CW_OP_PUT);
    CHECK_BYTES(e.key, e.key_len, keys[i], strlen(keys[i]));
    CHECK_EQ(e.sequence, i);
    CHECK(i == 0 || e.position > last_position);
    last_position = e.position;
    i++;
  }
  CHECK_STATUS(s, CW_DONE);
  CHECK_EQ(i, n);
  cw_recovery_close(r);
}

static void truncate_then_append(void) {
  char dir[4096];
  cw_options o = cwt_options(1, 65536);
  cw_manager *m;
  cw_writer *w;
  uint64_t pos[10], added[3];
  static const char *const want[] = {"old-0", "old-1", "old-2", "old-3",
                                     "new-0", "new-1", "new-2"};

  cwt_path(dir, sizeof dir, "wal");
  CHECK_OK(cw_manager_open(dir, &o, &m));
  w = cwt_writer(m, 0);
  cwt_put_numbered(w, "old", "value", 10, pos);
  CHECK_OK(cw_writer_sync(w));
  CHECK_OK(cw_writer_truncate(w, pos[4]));
  CHECK_EQ(cw_writer_position(w), pos[4]);
  CHECK_EQ(cw_writer_sequence(w), 4);
  CHECK(cw_writer_synced_position(w) <= pos[4]);
  cwt_put_numbered(w, "new", "value", 3, added);
  CHECK_EQ(added[0], pos[4]);
  CHECK_OK(cw_manager_close(m));

  expect_lane0(dir, want, sizeof want / sizeof want[0]);
  CHECK_OK(cw_manager_open(dir, &o, &m));
  CHECK_EQ(cw_writer_sequence(cwt_writer(m, 0)), 7);
  CHECK_OK(cw_manager_close(m));
}

static void truncate_across_segments(void) {
  char dir[4096], path[4096];
  cw_options o = cwt_options(1, 4096);
  cw_manager *m;
  cw_writer *w;
  uint64_t pos[12], index, base;
  char value[1001];
  static const char *const want[] = {"k-0", "after"};

  memset(value, 'v', sizeof value - 1);
  value[sizeof value - 1] = '\0';
  cwt_path(dir, sizeof dir, "segments");
  CHECK_OK(cw_manager_open(dir, &o, &m));
  w = cwt_writer(m, 0);
  cwt_put_numbered(w, "k", value, 12, pos);
  CHECK_OK(cw_writer_sync(w));
  cwt_last_segment(dir, 0, &index, &base);
  CHECK_MSG(index >= 3, "only %" PRIu64 " segments", index + 1);
  CHECK_OK(cw_writer_truncate(w, pos[1]));
  /* Segment 1 may be back already as the prepared (unused) next segment;
   * nothing after it exists, and no segment after 0 is started. */
  cwt_last_segment(dir, 0, &index, &base);
  CHECK_EQ(index, 0);
  for (uint64_t i = 2; i < 6; i++)
    CHECK_MSG(!cwt_file_exists(cwt_segment_path(path, sizeof path, dir, 0, i)),
              "segment %" PRIu64 " still exists", i);
  CHECK_OK(cwt_put_str(w, "after", "truncation", NULL));
  CHECK_OK(cw_manager_close(m));
  expect_lane0(dir, want, 2);
}

static void argument_errors(void) {
  char dir[4096];
  cw_options o = cwt_options(1, 65536);
  cw_manager *m;
  cw_writer *w;
  uint64_t pos[3], position, sequence;

  cwt_path(dir, sizeof dir, "arguments");
  CHECK_OK(cw_manager_open(dir, &o, &m));
  w = cwt_writer(m, 0);
  for (int i = 0; i < 3; i++) CHECK_OK(cwt_put_str(w, "key", "value", &pos[i]));
  position = cw_writer_position(w);
  sequence = cw_writer_sequence(w);

  CHECK_STATUS(cw_writer_truncate(NULL, 0), CW_ERR_INVALID_ARGUMENT);
  CHECK_CONTAINS(cw_last_error(), "NULL");
  CHECK_STATUS(cw_writer_truncate(w, pos[1] + 8), CW_ERR_INVALID_ARGUMENT);
  CHECK_CONTAINS(cw_last_error(), "not a record boundary");
  CHECK_STATUS(cw_writer_truncate(w, position + 8), CW_ERR_INVALID_ARGUMENT);
  CHECK_CONTAINS(cw_last_error(), "beyond the end");
  CHECK_EQ(cw_writer_position(w), position);
  CHECK_EQ(cw_writer_sequence(w), sequence);
  CHECK_OK(cw_writer_truncate(w, position)); /* the end itself: nothing happens */
  CHECK_EQ(cw_writer_sequence(w), sequence);
  CHECK_OK(cw_manager_close(m));
  CHECK_EQ(cwt_count_records(dir, NULL), 3);
  CHECK_STATUS(cw_writer_truncate(w, pos[0]), CW_ERR_INVALID_ARGUMENT); /* closed */
}

static void reset_every_lane(void) {
  char dir[4096], manifest[4096];
  cw_options o = cwt_options(2, 65536);
  cw_manager *m;
  cw_writer *w[2];
  uint64_t position[2], sequence[2], at;
  cw_recovery *r;
  cw_recovery_options ro;

  cwt_path(dir, sizeof dir, "reset");
  cwt_path(manifest, sizeof manifest, "reset/corewal.manifest");
  CHECK_OK(cw_manager_open(dir, &o, &m));
  for (uint32_t c = 0; c < 2; c++) {
    w[c] = cwt_writer(m, c);
    for (int i = 0; i < 5; i++) CHECK_OK(cwt_put_str(w[c], "before", "checkpoint", NULL));
  }
  CHECK_OK(cw_manager_checkpoint(m, 9, (const uint8_t *)"meta", 4));
  CHECK(cwt_file_exists(manifest));
  for (uint32_t c = 0; c < 2; c++) {
    CHECK_OK(cwt_put_str(w[c], "after", "checkpoint", NULL));
    position[c] = cw_writer_position(w[c]);
    sequence[c] = cw_writer_sequence(w[c]);
  }

  CHECK_OK(cw_manager_reset(m));
  CHECK(!cwt_file_exists(manifest));
  cw_recovery_options_init(&ro, sizeof ro);
  ro.from_checkpoint = 0;
  CHECK_EQ(cwt_count_records(dir, &ro), 0);
  for (uint32_t c = 0; c < 2; c++) {
    CHECK_EQ(cw_writer_position(w[c]), position[c]);
    CHECK_EQ(cw_writer_sequence(w[c]), sequence[c]);
  }
  CHECK_OK(cwt_put_str(w[1], "new", "record", &at));
  CHECK_EQ(at, position[1]);
  CHECK_OK(cw_manager_close(m));

  CHECK_OK(cw_recovery_open(dir, NULL, &r));
  CHECK_STATUS(cw_recovery_checkpoint(r, NULL, NULL, NULL, NULL), CW_ERR_NOT_FOUND);
  {
    cw_entry e;
    CHECK_OK(cw_recovery_next(r, &e));
    CHECK_EQ(e.core_id, 1);
    CHECK_EQ(e.sequence, sequence[1]);
    CHECK_EQ(e.position, position[1]);
    CHECK_STATUS(cw_recovery_next(r, &e), CW_DONE);
  }
  cw_recovery_close(r);
  CHECK_STATUS(cw_manager_reset(NULL), CW_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(cw_manager_reset(m), CW_ERR_INVALID_ARGUMENT); /* closed */
}

int main(void) {
  truncate_then_append();
  truncate_across_segments();
  argument_errors();
  reset_every_lane();
  return 0;
}
