/*
 * Damage to acknowledged data is refused, not cut as a torn tail.
 *
 * Case A: batch 1 (synced), batch 2 (synced, so its frames carry a durable
 * mark past batch 1). One byte inside record 3 of batch 1 is flipped. Opening
 * the manager and cw_recovery_open both fail with CW_ERR_CORRUPT naming
 * "lane 0", the segment file and the frame's offset; the refused open leaves
 * the files alone (flipping the byte back restores a fully readable WAL);
 * CW_RECOVER_POINT_IN_TIME reads the three records before the damage.
 *
 * Case B: the same across a segment rotation on lane 1 of 2: damage in
 * segment 0, the vouching frames in segment 1.
 *
 * Case C (documented limitation): with a single sync at the end, no frame
 * after the damage vouches for it, so the library treats it as a torn tail:
 * the open succeeds and keeps the records before the damage. Corruption is
 * not asserted there.
 */
#include "harness.h"

static void put_batch(cw_writer *w, uint32_t from, uint32_t count, uint64_t *positions) {
  for (uint32_t i = from; i < from + count; i++) {
    char key[32], value[64];
    snprintf(key, sizeof key, "key-%u", i);
    snprintf(value, sizeof value, "value-%u-%030u", i, i);
    CHECK_OK(cwt_put_str(w, key, value, positions ? &positions[i] : NULL));
  }
}

static void case_a(void) {
  char dir[4096], seg[4096], needle[128];
  cw_options opts = cwt_options(1, 1 << 20);
  cw_manager *m = NULL;
  cw_manager *out = (cw_manager *)(uintptr_t)0x77;
  cw_recovery *r = (cw_recovery *)(uintptr_t)0x78;
  cw_writer *w;
  uint64_t pos[20];
  uint64_t damaged_offset;

  cwt_path(dir, sizeof dir, "a");
  CHECK_OK(cw_manager_open(dir, &opts, &m));
  w = cwt_writer(m, 0);
  put_batch(w, 0, 10, pos);
  CHECK_OK(cw_writer_sync(w));
  put_batch(w, 10, 10, pos);
  CHECK_OK(cw_writer_sync(w));
  CHECK_OK(cw_manager_close(m));

  cwt_segment_path(seg, sizeof seg, dir, 0, 0);
  damaged_offset = CWT_SEGMENT_HEADER + pos[3];
  cwt_flip_byte(seg, damaged_offset + 20);

  opts.num_cores = 0;
  CHECK_STATUS(cw_manager_open(dir, &opts, &out), CW_ERR_CORRUPT);
  CHECK(out == (cw_manager *)(uintptr_t)0x77);
  CHECK_CONTAINS(cw_last_error(), "lane 0");
  CHECK_CONTAINS(cw_last_error(), "wal-00000-0000000000.log");
  snprintf(needle, sizeof needle, "offset %" PRIu64, damaged_offset);
  CHECK_CONTAINS(cw_last_error(), needle);

  CHECK_STATUS(cw_recovery_open(dir, NULL, &r), CW_ERR_CORRUPT);
  CHECK(r == (cw_recovery *)(uintptr_t)0x78);
  CHECK_CONTAINS(cw_last_error(), "lane 0");
  CHECK_CONTAINS(cw_last_error(), "wal-00000-0000000000.log");
  CHECK_CONTAINS(cw_last_error(), "offset");

  /* Point-in-time reads up to the damage. */
  {
    cw_recovery_options ro;
    cw_recovery_options_init(&ro, sizeof ro);
    ro.mode = CW_RECOVER_POINT_IN_TIME;
    CHECK_EQ(cwt_count_records(dir, &ro), 3);
  }

  /* The refused opens changed nothing: undo the damage and all 20 are back. */
  cwt_flip_byte(seg, damaged_offset + 20);
  CHECK_EQ(cwt_count_records(dir, NULL), 20);
  CHECK_OK(cw_manager_open(dir, &opts, &m));
  CHECK_EQ(cw_writer_sequence(cwt_writer(m, 0)), 20);
  CHECK_EQ(cw_writer_position(cwt_writer(m, 0)), cw_writer_synced_position(cwt_writer(m, 0)));
  CHECK_OK(cw_manager_close(m));
}

static void case_b(void) {
  char dir[4096], seg[4096];
  cw_options opts = cwt_options(2, 65536);
  cw_manager *m = NULL;
  cw_writer *w;
  uint64_t pos[1200];
  uint32_t first_batch = 600;
  uint64_t index = 0, base = 0;

  cwt_path(dir, sizeof dir, "b");
  CHECK_OK(cw_manager_open(dir, &opts, &m));
  put_batch(cwt_writer(m, 0), 0, 5, NULL);
  w = cwt_writer(m, 1);
  put_batch(w, 0, first_batch, pos);
  CHECK_OK(cw_writer_sync(w));
  put_batch(w, first_batch, 600, pos);
  CHECK_OK(cw_writer_sync(w));
  CHECK_OK(cw_manager_close(m));

  /* The second batch reached segment 1 or later. */
  cwt_last_segment(dir, 1, &index, &base);
  CHECK(index >= 1);
  CHECK(pos[5] + 200 < base);

  cwt_segment_path(seg, sizeof seg, dir, 1, 0);
  cwt_flip_byte(seg, CWT_SEGMENT_HEADER + pos[5] + 12);
  opts.num_cores = 0;
  CHECK_STATUS(cw_manager_open(dir, &opts, &m), CW_ERR_CORRUPT);
  CHECK_CONTAINS(cw_last_error(), "lane 1");
  CHECK_CONTAINS(cw_last_error(), "wal-00001-0000000000.log");
  CHECK_CONTAINS(cw_last_error(), "offset");
  {
    cw_recovery *r = NULL;
    CHECK_STATUS(cw_recovery_open(dir, NULL, &r), CW_ERR_CORRUPT);
    CHECK_CONTAINS(cw_last_error(), "lane 1");
    CHECK_CONTAINS(cw_last_error(), "wal-00001-0000000000.log");
  }
}

static void case_c(void) {
  char dir[4096], seg[4096];
  cw_options opts = cwt_options(1, 1 << 20);
  cw_manager *m = NULL;
  cw_writer *w;
  uint64_t pos[20];

  cwt_path(dir, sizeof dir, "c");
  CHECK_OK(cw_manager_open(dir, &opts, &m));
  w = cwt_writer(m, 0);
  put_batch(w, 0, 20, pos);
  CHECK_OK(cw_writer_sync(w)); /* the only sync */
  CHECK_OK(cw_manager_close(m));

  cwt_segment_path(seg, sizeof seg, dir, 0, 0);
  cwt_flip_byte(seg, CWT_SEGMENT_HEADER + pos[8] + 20);
  opts.num_cores = 0;
  CHECK_OK(cw_manager_open(dir, &opts, &m));
  CHECK_EQ(cw_writer_sequence(cwt_writer(m, 0)), 8);
  CHECK_EQ(cw_writer_position(cwt_writer(m, 0)), pos[8]);
  CHECK_OK(cw_manager_close(m));
  CHECK_EQ(cwt_count_records(dir, NULL), 8);
}

int main(void) {
  case_a();
  case_b();
  case_c();
  printf("corruption: acknowledged damage refused with lane, file and offset\n");
  return 0;
}
