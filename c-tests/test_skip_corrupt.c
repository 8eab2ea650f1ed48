/*
 * CW_RECOVER_SKIP_CORRUPT and the statistics API.
 *
 * Case A: lane 0 holds 20 equal-sized records in two synced batches; a byte
 * inside record 3 is flipped on disk. The default mode refuses the WAL
 * (acknowledged data is damaged); SKIP_CORRUPT yields the 19 others in
 * order, and before the first record cw_recovery_stats reports exactly one
 * damaged range, which cw_recovery_damaged_range places at record 3's frame.
 *
 * Case B: a manager opened with SKIP_CORRUPT on that WAL resumes after the
 * last valid record; records appended then follow the old ones, and the
 * damaged range stays where it was.
 *
 * Case C: statistics of a torn tail in one of two lanes, a lane filter,
 * and a `cap` smaller than the number of lanes.
 */
#include "harness.h"

#define RECORDS 20u

static void put_batch(cw_writer *w, uint32_t from, uint32_t count, uint64_t *positions) {
  for (uint32_t i = from; i < from + count; i++) {
    char key[32], value[64];
    /* Equal sizes: every frame has the same length. */
    snprintf(key, sizeof key, "key-%02u", i);
    snprintf(value, sizeof value, "value-%02u-%030u", i, i);
    CHECK_OK(cwt_put_str(w, key, value, &positions[i]));
  }
}

static cw_recovery_options skip_options(void) {
  cw_recovery_options ro;
  cw_recovery_options_init(&ro, sizeof ro);
  ro.mode = CW_RECOVER_SKIP_CORRUPT;
  return ro;
}

/* Lane 0's only statistics element. */
static cw_lane_stats lane0_stats(cw_recovery *r) {
  cw_lane_stats st[2];
  size_t n = 99;
  CHECK_OK(cw_recovery_stats(r, st, 2, &n));
  CHECK_EQ(n, 1);
  CHECK_EQ(st[0].core_id, 0);
  return st[0];
}

static void case_a_and_b(void) {
  char dir[4096], seg[4096];
  cw_options opts = cwt_options(1, 1 << 20);
  cw_recovery_options ro = skip_options();
  cw_manager *m = NULL;
  cw_recovery *r = NULL;
  cw_writer *w;
  cw_entry e;
  cw_status s;
  uint64_t pos[RECORDS + 2], end, frame, epoch;
  size_t n = 99;
  uint32_t yielded = 0;

  cwt_path(dir, sizeof dir, "skip");
  CHECK_OK(cw_manager_open(dir, &opts, &m));
  epoch = cw_manager_epoch(m);
  w = cwt_writer(m, 0);
  put_batch(w, 0, RECORDS / 2, pos);
  CHECK_OK(cw_writer_sync(w));
  put_batch(w, RECORDS / 2, RECORDS / 2, pos);
  CHECK_OK(cw_writer_sync(w));
  end = cw_writer_position(w);
  CHECK_OK(cw_manager_close(m));
  frame = pos[4] - pos[3];
  CHECK_EQ(pos[3] - pos[2], frame);

  cwt_segment_path(seg, sizeof seg, dir, 0, 0);
  cwt_flip_byte(seg, CWT_SEGMENT_HEADER + pos[3] + 20);
  CHECK_STATUS(cw_recovery_open(dir, NULL, &r), CW_ERR_CORRUPT);

  /* Case A: the statistics are there before the first record. */
  r = NULL;
  CHECK_OK(cw_recovery_open(dir, &ro, &r));
  CHECK_OK(cw_recovery_stats(r, NULL, 0, &n));
  CHECK_EQ(n, 1);
  {
    cw_lane_stats st = lane0_stats(r);
    cw_damaged_range d;
    CHECK_EQ(st.records, RECORDS - 1);
    CHECK_EQ(st.has_records, 1);
    CHECK_EQ(st.bytes, end - frame);
    CHECK_EQ(st.segments, 1);
    CHECK_EQ(st.first_epoch, epoch);
    CHECK_EQ(st.last_epoch, epoch);
    CHECK_EQ(st.torn_tail, 0);
    CHECK_EQ(st.damaged_ranges, 1);
    CHECK_EQ(st.damaged_bytes, frame);

    CHECK_OK(cw_recovery_damaged_range(r, 0, 0, &d));
    CHECK_EQ(d.segment_index, 0);
    CHECK_EQ(d.offset, CWT_SEGMENT_HEADER + pos[3]);
    CHECK_EQ(d.length, frame);
    CHECK_STATUS(cw_recovery_damaged_range(r, 0, 1, &d), CW_ERR_NOT_FOUND);
    CHECK_STATUS(cw_recovery_damaged_range(r, 7, 0, &d), CW_ERR_NOT_FOUND);
    CHECK_CONTAINS(cw_last_error(), "lane 7");
    CHECK_STATUS(cw_recovery_damaged_range(r, 0, 0, NULL), CW_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(cw_recovery_damaged_range(NULL, 0, 0, &d), CW_ERR_INVALID_ARGUMENT);
  }
  CHECK_STATUS(cw_recovery_stats(r, NULL, 1, &n), CW_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(cw_recovery_stats(r, NULL, 0, NULL), CW_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(cw_recovery_stats(NULL, NULL, 0, &n), CW_ERR_INVALID_ARGUMENT);

  while ((s = cw_recovery_next(r, &e)) == CW_OK) {
    char key[32];
    uint32_t i = yielded < 3 ? yielded : yielded + 1;
    snprintf(key, sizeof key, "key-%02u", i);
    CHECK_BYTES(e.key, e.key_len, key, strlen(key));
    CHECK_EQ(e.sequence, i);
    CHECK_EQ(e.position, pos[i]);
    yielded++;
  }
  CHECK_STATUS(s, CW_DONE);
  CHECK_EQ(yielded, RECORDS - 1);
  cw_recovery_close(r);
  {
    cw_damaged_range d;
    CHECK_STATUS(cw_recovery_damaged_range(r, 0, 0, &d), CW_ERR_INVALID_ARGUMENT);
  }

  /* Case B: repair with SKIP_CORRUPT keeps every valid record. */
  opts.num_cores = 0;
  opts.recovery_mode = CW_RECOVER_SKIP_CORRUPT;
  CHECK_OK(cw_manager_open(dir, &opts, &m));
  w = cwt_writer(m, 0);
  CHECK_EQ(cw_writer_sequence(w), RECORDS);
  CHECK_EQ(cw_writer_position(w), end);
  put_batch(w, RECORDS, 2, pos);
  CHECK_EQ(pos[RECORDS], end);
  CHECK_OK(cw_writer_sync(w));
  CHECK_OK(cw_manager_close(m));

  CHECK_STATUS(cw_recovery_open(dir, NULL, &r), CW_ERR_CORRUPT);
  CHECK_EQ(cwt_count_records(dir, &ro), RECORDS + 1);
  r = NULL;
  CHECK_OK(cw_recovery_open(dir, &ro, &r));
  {
    cw_lane_stats st = lane0_stats(r);
    cw_damaged_range d;
    CHECK_EQ(st.records, RECORDS + 1);
    CHECK_EQ(st.damaged_ranges, 1);
    CHECK_OK(cw_recovery_damaged_range(r, 0, 0, &d));
    CHECK_EQ(d.offset, CWT_SEGMENT_HEADER + pos[3]);
  }
  cw_recovery_close(r);
}

static void case_c(void) {
  char dir[4096], seg[4096];
  cw_options opts = cwt_options(2, 1 << 20);
  cw_manager *m = NULL;
  cw_recovery *r = NULL;
  cw_writer *w;
  uint64_t pos[8], end1;
  uint8_t garbage[24];
  cw_lane_stats st[2];
  size_t n = 0;

  cwt_path(dir, sizeof dir, "tail");
  CHECK_OK(cw_manager_open(dir, &opts, &m));
  put_batch(cwt_writer(m, 0), 0, 3, pos);
  w = cwt_writer(m, 1);
  put_batch(w, 0, 5, pos);
  end1 = cw_writer_position(w);
  CHECK_OK(cw_manager_sync_all(m));
  CHECK_OK(cw_manager_close(m));
  memset(garbage, 0xA5, sizeof garbage);
  cwt_segment_path(seg, sizeof seg, dir, 1, 0);
  cwt_write_at(seg, CWT_SEGMENT_HEADER + end1, garbage, sizeof garbage);

  /* cap below the lane count: one element written, the count is 2. */
  CHECK_OK(cw_recovery_open(dir, NULL, &r));
  memset(st, 0x5A, sizeof st);
  CHECK_OK(cw_recovery_stats(r, st, 1, &n));
  CHECK_EQ(n, 2);
  CHECK_EQ(st[0].core_id, 0);
  CHECK_EQ(st[0].records, 3);
  CHECK_EQ(st[0].torn_tail, 0);
  CHECK_EQ(st[1].core_id, 0x5A5A5A5Au);
  CHECK_OK(cw_recovery_stats(r, st, 2, &n));
  CHECK_EQ(st[1].core_id, 1);
  CHECK_EQ(st[1].records, 5);
  CHECK_EQ(st[1].bytes, end1);
  CHECK_EQ(st[1].torn_tail, 1);
  CHECK_EQ(st[1].torn_tail_segment, 0);
  CHECK_EQ(st[1].torn_tail_offset, CWT_SEGMENT_HEADER + end1);
  CHECK_EQ(st[1].torn_tail_position, end1);
  CHECK_EQ(st[1].damaged_ranges, 0);
  cw_recovery_close(r);

  /* A lane filter: only the lanes read have statistics. */
  {
    cw_recovery_options ro;
    uint32_t lanes[1] = {1};
    cw_recovery_options_init(&ro, sizeof ro);
    ro.lanes = lanes;
    ro.lanes_len = 1;
    r = NULL;
    CHECK_OK(cw_recovery_open(dir, &ro, &r));
    CHECK_OK(cw_recovery_stats(r, st, 2, &n));
    CHECK_EQ(n, 1);
    CHECK_EQ(st[0].core_id, 1);
    CHECK_EQ(st[0].torn_tail, 1);
    cw_recovery_close(r);
  }
}

int main(void) {
  case_a_and_b();
  case_c();
  printf("skip_corrupt: records around the damage read, damaged range reported\n");
  return 0;
}
