/*
 * Round trip on four lanes: each lane's writer runs on its own thread and
 * appends PUT, DELETE, COMMIT (source offsets, with and without watermark)
 * and CHECKPOINT records across several small segments; after sync and close,
 * cw_recovery_open must give every record back exactly (op, key, value, lane,
 * sequence, position, offsets, watermark) in the global order, then CW_DONE.
 *
 * Built twice: against libcorewal.so and against libcorewal.a.
 */
#include "harness.h"

#include <pthread.h>

#define LANES 4
#define RECORDS 400
#define SEGMENT_BYTES 65536

/* What record `j` of lane `lane` is. */
typedef struct {
  int op;
  char key[64];
  size_t key_len;
  char value[512];
  size_t value_len;
  uint64_t checkpoint_id;
  int has_watermark;
  int64_t watermark;
  size_t offsets_len;
  char names[2][32];
  uint64_t offsets[2];
} expected_record;

static void expect(uint32_t lane, uint32_t j, expected_record *x) {
  memset(x, 0, sizeof *x);
  if (j % 50 == 49) {
    x->op = CW_OP_CHECKPOINT;
    x->checkpoint_id = (uint64_t)lane * 1000000u + j;
  } else if (j % 7 == 3) {
    x->op = CW_OP_COMMIT;
    x->offsets_len = (j % 3 == 0) ? 0 : 2;
    snprintf(x->names[0], sizeof x->names[0], "topic-%u", lane);
    snprintf(x->names[1], sizeof x->names[1], "partition-%u", j);
    x->offsets[0] = (uint64_t)j * 10u;
    x->offsets[1] = UINT64_MAX - j;
    x->has_watermark = j % 2 == 0;
    x->watermark = x->has_watermark ? -(int64_t)j * 1000 - 1 : 0;
  } else if (j % 5 == 1) {
    x->op = CW_OP_DELETE;
    x->key_len = (size_t)snprintf(x->key, sizeof x->key, "key-%u-%u", lane, j / 2);
  } else {
    size_t i;
    x->op = CW_OP_PUT;
    x->key_len = (size_t)snprintf(x->key, sizeof x->key, "key-%u-%u", lane, j);
    /* 0..399 bytes, binary (includes NUL bytes) so nothing relies on C strings. */
    x->value_len = (j * 37u + lane * 11u) % 400u;
    for (i = 0; i < x->value_len; i++) x->value[i] = (char)((i * 31u + j + lane) & 0xff);
  }
}

typedef struct {
  cw_writer *writer;
  uint32_t lane;
  uint64_t positions[RECORDS];
  uint64_t end_position;
} lane_job;

static void *run_lane(void *arg) {
  lane_job *job = (lane_job *)arg;
  cw_writer *w = job->writer;
  uint32_t j;
  CHECK_EQ(cw_writer_core_id(w), job->lane);
  for (j = 0; j < RECORDS; j++) {
    expected_record x;
    uint64_t pos = UINT64_MAX;
    uint64_t before = cw_writer_position(w);
    CHECK_EQ(cw_writer_sequence(w), j);
    expect(job->lane, j, &x);
    switch (x.op) {
      case CW_OP_PUT:
        CHECK_OK(cw_writer_append_put(w, (const uint8_t *)x.key, x.key_len,
                                      (const uint8_t *)x.value, x.value_len, &pos));
        break;
      case CW_OP_DELETE:
        CHECK_OK(cw_writer_append_delete(w, (const uint8_t *)x.key, x.key_len, &pos));
        break;
      case CW_OP_COMMIT: {
        cw_source_offset offs[2];
        offs[0].name = x.names[0];
        offs[0].name_len = strlen(x.names[0]);
        offs[0].offset = x.offsets[0];
        offs[1].name = x.names[1];
        offs[1].name_len = strlen(x.names[1]);
        offs[1].offset = x.offsets[1];
        CHECK_OK(cw_writer_append_commit(w, x.offsets_len ? offs : NULL, x.offsets_len,
                                         x.has_watermark ? &x.watermark : NULL, &pos));
        break;
      }
      case CW_OP_CHECKPOINT:
        CHECK_OK(cw_writer_append_checkpoint(w, x.checkpoint_id, &pos));
        break;
      default:
        CHECK(0);
    }
    /* No epoch change: the record starts where the lane ended; it may start
     * a new segment, which keeps positions continuous. */
    CHECK_EQ(pos, before);
    CHECK(cw_writer_position(w) > pos);
    job->positions[j] = pos;
    if (j == RECORDS / 2) CHECK_OK(cw_writer_sync(w));
  }
  CHECK_EQ(cw_writer_sequence(w), RECORDS);
  CHECK_OK(cw_writer_sync(w));
  CHECK_EQ(cw_writer_synced_position(w), cw_writer_position(w));
  job->end_position = cw_writer_position(w);
  return NULL;
}

static void check_entry(const cw_recovery *r, const cw_entry *e, const expected_record *x,
                        uint64_t position) {
  cw_source_offset so;
  size_t i;
  CHECK_EQ(e->op, x->op);
  CHECK_EQ(e->position, position);
  CHECK(e->timestamp_ns > 0);
  switch (x->op) {
    case CW_OP_PUT:
      CHECK_BYTES(e->key, e->key_len, x->key, x->key_len);
      CHECK_BYTES(e->value, e->value_len, x->value, x->value_len);
      break;
    case CW_OP_DELETE:
      CHECK_BYTES(e->key, e->key_len, x->key, x->key_len);
      CHECK(e->value == NULL);
      CHECK_EQ(e->value_len, 0);
      break;
    case CW_OP_COMMIT:
      CHECK(e->key == NULL);
      CHECK_EQ(e->offsets_len, x->offsets_len);
      CHECK_EQ(e->has_watermark, x->has_watermark);
      if (x->has_watermark) CHECK_EQ(e->watermark, x->watermark);
      for (i = 0; i < x->offsets_len; i++) {
        memset(&so, 0, sizeof so);
        CHECK_OK(cw_recovery_entry_offset(r, i, &so));
        CHECK_BYTES(so.name, so.name_len, x->names[i], strlen(x->names[i]));
        CHECK_EQ(so.offset, x->offsets[i]);
      }
      CHECK_STATUS(cw_recovery_entry_offset(r, x->offsets_len, &so), CW_ERR_NOT_FOUND);
      break;
    case CW_OP_CHECKPOINT:
      CHECK_EQ(e->checkpoint_id, x->checkpoint_id);
      CHECK(e->key == NULL);
      CHECK_STATUS(cw_recovery_entry_offset(r, 0, &so), CW_ERR_NOT_FOUND);
      break;
    default:
      CHECK(0);
  }
}

int main(void) {
  char dir[4096];
  cw_options opts = cwt_options(LANES, SEGMENT_BYTES);
  cw_manager *m = NULL;
  static lane_job jobs[LANES];
  pthread_t threads[LANES];
  uint64_t epoch;
  uint32_t lane;

  cwt_path(dir, sizeof dir, "wal");
  CHECK_OK(cw_manager_open(dir, &opts, &m));
  CHECK(m != NULL);
  CHECK_EQ(cw_manager_num_cores(m), LANES);
  epoch = cw_manager_epoch(m);
  for (lane = 0; lane < LANES; lane++) {
    jobs[lane].writer = cwt_writer(m, lane);
    jobs[lane].lane = lane;
    CHECK_EQ(cw_writer_position(jobs[lane].writer), 0);
    CHECK_EQ(cw_writer_sequence(jobs[lane].writer), 0);
    CHECK(pthread_create(&threads[lane], NULL, run_lane, &jobs[lane]) == 0);
  }
  for (lane = 0; lane < LANES; lane++) CHECK(pthread_join(threads[lane], NULL) == 0);
  CHECK_OK(cw_manager_close(m));

  /* Every lane wrote more than a segment's worth: rotation happened. */
  for (lane = 0; lane < LANES; lane++) {
    uint64_t index = 0, base = 0;
    cwt_last_segment(dir, lane, &index, &base);
    CHECK_MSG(index >= 1, "lane %u never rotated (end position %" PRIu64 ")", lane,
              jobs[lane].end_position);
    CHECK(base > 0 && base < jobs[lane].end_position);
  }

  {
    cw_recovery *r = NULL;
    cw_entry e, prev;
    uint64_t next_seq[LANES] = {0};
    uint64_t total = 0;
    cw_status s;
    memset(&prev, 0, sizeof prev);
    CHECK_OK(cw_recovery_open(dir, NULL, &r));
    CHECK(r != NULL);
    while ((s = cw_recovery_next(r, &e)) == CW_OK) {
      expected_record x;
      CHECK(e.core_id < LANES);
      CHECK_EQ(e.sequence, next_seq[e.core_id]);
      CHECK(e.sequence < RECORDS);
      CHECK_EQ(e.epoch, epoch);
      if (total > 0) CHECK_MSG(cwt_entry_cmp(&prev, &e) < 0, "entries out of order at %" PRIu64, total);
      expect(e.core_id, (uint32_t)e.sequence, &x);
      check_entry(r, &e, &x, jobs[e.core_id].positions[e.sequence]);
      next_seq[e.core_id]++;
      prev = e;
      total++;
    }
    CHECK_STATUS(s, CW_DONE);
    /* An exhausted iterator stays exhausted. */
    CHECK_STATUS(cw_recovery_next(r, &e), CW_DONE);
    CHECK_EQ(total, (uint64_t)LANES * RECORDS);
    for (lane = 0; lane < LANES; lane++) CHECK_EQ(next_seq[lane], RECORDS);
    cw_recovery_close(r);
  }

  /* Reopening sees every lane where it ended. */
  opts.num_cores = 0;
  CHECK_OK(cw_manager_open(dir, &opts, &m));
  for (lane = 0; lane < LANES; lane++) {
    cw_writer *w = cwt_writer(m, lane);
    CHECK_EQ(cw_writer_position(w), jobs[lane].end_position);
    CHECK_EQ(cw_writer_sequence(w), RECORDS);
  }
  CHECK_OK(cw_manager_close(m));

  printf("roundtrip: %d lanes x %d records recovered\n", LANES, RECORDS);
  return 0;
}
