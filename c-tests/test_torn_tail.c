/*
 * A torn tail is repaired: records are written and synced across a segment
 * rotation, the manager is closed, and garbage is written right after the
 * lane's last valid frame (file offset 64 + (end - base) of the last started
 * segment). Then:
 *  - CW_RECOVER_ABSOLUTE refuses it (cw_recovery_open and cw_manager_open),
 *    and that refused open leaves the directory as it was;
 *  - the default mode recovers every synced record (read-only, and through
 *    cw_manager_open which cuts the tail);
 *  - appending works after the repair, and a second reopen sees old + new.
 * Done with 20 bytes of 0xAB, with a plausible frame header (small length,
 * bad checksum), and with 4 KiB of 0xAB (more than is appended afterwards).
 */
#include "harness.h"

#define SEGMENT_BYTES 65536
#define RECORDS 600
#define MORE 5

static void fill(cw_writer *w, uint32_t from, uint32_t count) {
  for (uint32_t i = from; i < from + count; i++) {
    char key[32], value[128];
    snprintf(key, sizeof key, "key-%u", i);
    snprintf(value, sizeof value, "value-%u-%080u", i, i);
    CHECK_OK(cwt_put_str(w, key, value, NULL));
  }
}

/* Every record of lane 0, in order, with keys key-0 .. key-(n-1). */
static void check_contents(const char *dir, uint32_t n) {
  cw_recovery *r = NULL;
  cw_entry e;
  uint32_t i = 0;
  cw_status s;
  CHECK_OK(cw_recovery_open(dir, NULL, &r));
  while ((s = cw_recovery_next(r, &e)) == CW_OK) {
    char key[32];
    CHECK(i < n);
    snprintf(key, sizeof key, "key-%u", i);
    CHECK_EQ(e.sequence, i);
    CHECK_BYTES(e.key, e.key_len, key, strlen(key));
    i++;
  }
  CHECK_STATUS(s, CW_DONE);
  CHECK_EQ(i, n);
  cw_recovery_close(r);
}

static void run(const char *name, const unsigned char *garbage, size_t garbage_len) {
  char dir[4096], seg[4096];
  cw_options opts = cwt_options(1, SEGMENT_BYTES);
  cw_manager *m = NULL;
  cw_writer *w;
  uint64_t end, synced, index = 0, base = 0, offset;

  cwt_path(dir, sizeof dir, name);
  CHECK_OK(cw_manager_open(dir, &opts, &m));
  w = cwt_writer(m, 0);
  fill(w, 0, RECORDS);
  CHECK_OK(cw_writer_sync(w));
  end = cw_writer_position(w);
  synced = cw_writer_synced_position(w);
  CHECK_EQ(synced, end);
  CHECK_OK(cw_manager_close(m));

  /* The tail: right after the last frame of the last started segment. */
  cwt_last_segment(dir, 0, &index, &base);
  CHECK_MSG(index >= 1, "expected a rotation, last segment is %" PRIu64, index);
  cwt_segment_path(seg, sizeof seg, dir, 0, index);
  offset = CWT_SEGMENT_HEADER + (end - base);
  CHECK_MSG(offset + garbage_len <= cwt_file_size(seg), "offset %" PRIu64 " + %zu past %" PRIu64 " (segment %" PRIu64 ", base %" PRIu64 ", end %" PRIu64 ")", offset, garbage_len, cwt_file_size(seg), index, base, end);
  {
    unsigned char before[64];
    size_t i;
    cwt_read_at(seg, offset, before, sizeof before);
    for (i = 0; i < sizeof before; i++) CHECK_EQ(before[i], 0); /* nothing there yet */
  }
  cwt_write_at(seg, offset, garbage, garbage_len);

  /* ABSOLUTE refuses any damage, and its refusal changes nothing. */
  {
    cw_recovery_options ro;
    cw_recovery *r = NULL;
    cw_options strict = opts;
    unsigned char after[8];
    cw_recovery_options_init(&ro, sizeof ro);
    ro.mode = CW_RECOVER_ABSOLUTE;
    CHECK_STATUS(cw_recovery_open(dir, &ro, &r), CW_ERR_CORRUPT);
    CHECK_CONTAINS(cw_last_error(), "torn tail");
    strict.num_cores = 0;
    strict.recovery_mode = CW_RECOVER_ABSOLUTE;
    CHECK_STATUS(cw_manager_open(dir, &strict, &m), CW_ERR_CORRUPT);
    cwt_read_at(seg, offset, after, sizeof after);
    CHECK_BYTES(after, sizeof after, garbage, sizeof after);
  }

  /* Read-only recovery in the default mode: every synced record. */
  check_contents(dir, RECORDS);

  /* Reopen repairs: the lane ends where the last sync left it. */
  opts.num_cores = 0;
  CHECK_OK(cw_manager_open(dir, &opts, &m));
  w = cwt_writer(m, 0);
  CHECK_EQ(cw_writer_position(w), end);
  CHECK_EQ(cw_writer_sequence(w), RECORDS);
  {
    uint64_t pos = 0;
    char key[32];
    snprintf(key, sizeof key, "key-%u", RECORDS);
    CHECK_OK(cwt_put_str(w, key, "after the repair", &pos));
    CHECK_EQ(pos, end); /* the new record overwrites the cut tail */
  }
  fill(w, RECORDS + 1, MORE - 1);
  CHECK_OK(cw_writer_sync(w));
  CHECK_OK(cw_manager_close(m));

  /* Nothing damaged is left: even ABSOLUTE accepts the lane now. */
  {
    cw_recovery_options ro;
    cw_recovery_options_init(&ro, sizeof ro);
    ro.mode = CW_RECOVER_ABSOLUTE;
    CHECK_EQ(cwt_count_records(dir, &ro), RECORDS + MORE);
  }
  check_contents(dir, RECORDS + MORE);

  CHECK_OK(cw_manager_open(dir, &opts, &m));
  CHECK_EQ(cw_writer_sequence(cwt_writer(m, 0)), RECORDS + MORE);
  CHECK_OK(cw_manager_close(m));
}

int main(void) {
  unsigned char ab[20];
  /* A frame header that claims a 16-byte payload, followed by junk: the
   * length is plausible, the checksum is not. */
  unsigned char frame[32] = {16, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8,
                             9, 10, 11, 12, 13, 14, 15, 16, 0, 0, 0, 0, 0, 0, 0, 0};
  /* Longer than what is appended after the repair: only a repair that
   * clears the whole tail leaves a lane that CW_RECOVER_ABSOLUTE accepts. */
  static unsigned char long_garbage[4096];
  memset(ab, 0xAB, sizeof ab);
  memset(long_garbage, 0xAB, sizeof long_garbage);
  run("ab", ab, sizeof ab);
  run("frame", frame, sizeof frame);
  run("long", long_garbage, sizeof long_garbage);
  printf("torn tail: cut on reopen, appends continue, both sessions recovered\n");
  return 0;
}
