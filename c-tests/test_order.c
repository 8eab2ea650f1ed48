/*
 * Merged order and epochs.
 *
 * Part 1 (one thread, exact): three lanes append across epochs e1..e4, each
 * lane skipping some epochs. Recovery yields strictly increasing
 * (epoch, timestamp_ns, core_id, sequence); each record carries the epoch
 * current at its append; a lane that appends in a newer epoch than its last
 * record starts with exactly one EPOCH_BARRIER stamped with the new epoch;
 * appends report the position of the record (after the barrier);
 * cw_writer_epoch_barrier writes one on demand. max_epoch and the lane filter
 * select what they say; a filter naming a missing lane is refused.
 *
 * Part 2 (threads): three writers append while the main thread advances the
 * epoch concurrently; the same invariants hold.
 */
#include "harness.h"

#include <pthread.h>
#include <stdatomic.h>

#define LANES 3

/* Appends PUT("<lane>:<tag>") and returns its position. */
static uint64_t put(cw_manager *m, uint32_t lane, unsigned tag) {
  char key[32];
  uint64_t pos = UINT64_MAX;
  snprintf(key, sizeof key, "%u:%u", lane, tag);
  CHECK_OK(cwt_put_str(cwt_writer(m, lane), key, "v", &pos));
  return pos;
}

typedef struct {
  uint64_t records; /* all records, barriers included */
  uint64_t per_lane[LANES];
  uint64_t barriers[LANES];
  uint64_t epoch_changes[LANES];
  uint64_t max_epoch_seen;
} walk_result;

/* Reads `dir` with `opts` and checks the invariants every recovery must hold:
 * strict global order, contiguous sequences from the first one seen, epochs
 * never decreasing within a lane, and a barrier (stamped with the new epoch)
 * as the first record of each newer epoch of a lane. */
static walk_result walk(const char *dir, const cw_recovery_options *opts) {
  walk_result res;
  cw_recovery *r = NULL;
  cw_entry e, prev;
  cw_entry last[LANES];
  int seen[LANES] = {0};
  cw_status s;
  memset(&res, 0, sizeof res);
  memset(&prev, 0, sizeof prev);
  CHECK_OK(cw_recovery_open(dir, opts, &r));
  while ((s = cw_recovery_next(r, &e)) == CW_OK) {
    uint32_t lane = e.core_id;
    CHECK(lane < LANES);
    if (res.records > 0)
      CHECK_MSG(cwt_entry_cmp(&prev, &e) < 0,
                "order broken at record %" PRIu64 ": (%" PRIu64 ",%" PRId64 ",%u,%" PRIu64
                ") then (%" PRIu64 ",%" PRId64 ",%u,%" PRIu64 ")",
                res.records, prev.epoch, prev.timestamp_ns, prev.core_id, prev.sequence, e.epoch,
                e.timestamp_ns, e.core_id, e.sequence);
    if (seen[lane]) {
      CHECK_EQ(e.sequence, last[lane].sequence + 1);
      CHECK(e.position > last[lane].position);
      CHECK(e.epoch >= last[lane].epoch);
      CHECK(e.timestamp_ns >= last[lane].timestamp_ns);
      if (e.epoch > last[lane].epoch) {
        CHECK_MSG(e.op == CW_OP_EPOCH_BARRIER,
                  "lane %u: first record of epoch %" PRIu64 " (seq %" PRIu64
                  ") is op %d, not a barrier",
                  lane, e.epoch, e.sequence, e.op);
        res.epoch_changes[lane]++;
      }
    }
    if (e.op == CW_OP_EPOCH_BARRIER) {
      res.barriers[lane]++;
      CHECK(e.key == NULL);
    }
    if (e.epoch > res.max_epoch_seen) res.max_epoch_seen = e.epoch;
    last[lane] = e;
    seen[lane] = 1;
    prev = e;
    res.per_lane[lane]++;
    res.records++;
  }
  CHECK_STATUS(s, CW_DONE);
  cw_recovery_close(r);
  return res;
}

static void part1(void) {
  char dir[4096];
  cw_options opts = cwt_options(LANES, 65536);
  cw_manager *m = NULL;
  uint64_t e1, e2, e3, e4, out = 0;
  uint64_t pos_before, pos;
  uint64_t positions[LANES][8];
  int n[LANES] = {0};

  cwt_path(dir, sizeof dir, "part1");
  CHECK_OK(cw_manager_open(dir, &opts, &m));
  e1 = cw_manager_epoch(m);

  /* e1: every lane. */
  for (uint32_t lane = 0; lane < LANES; lane++) positions[lane][n[lane]++] = put(m, lane, 1);
  positions[0][n[0]++] = put(m, 0, 2);

  /* e2: lanes 0 and 1. The first append of a lane in a new epoch writes a
   * barrier first, so the record lands after it. */
  CHECK_OK(cw_manager_advance_epoch(m, &e2));
  CHECK_EQ(e2, e1 + 1);
  CHECK_EQ(cw_manager_epoch(m), e2);
  pos_before = cw_writer_position(cwt_writer(m, 0));
  pos = put(m, 0, 3);
  CHECK(pos > pos_before);
  positions[0][n[0]++] = pos;
  pos_before = cw_writer_position(cwt_writer(m, 0));
  pos = put(m, 0, 4);
  CHECK_EQ(pos, pos_before); /* no second barrier in the same epoch */
  positions[0][n[0]++] = pos;
  positions[1][n[1]++] = put(m, 1, 3);

  /* e3: lanes 0 and 2 (lane 2 skipped e2: one barrier for e3). */
  CHECK_OK(cw_manager_advance_epoch(m, &e3));
  CHECK_EQ(e3, e2 + 1);
  positions[0][n[0]++] = put(m, 0, 5);
  positions[2][n[2]++] = put(m, 2, 5);
  /* An explicit barrier on lane 2 in the same epoch. */
  CHECK_OK(cw_writer_epoch_barrier(cwt_writer(m, 2), &out));
  CHECK(out > positions[2][n[2] - 1]);

  /* e4 (epoch_out may be NULL): lane 1 only. */
  CHECK_OK(cw_manager_advance_epoch(m, NULL));
  e4 = cw_manager_epoch(m);
  CHECK_EQ(e4, e3 + 1);
  positions[1][n[1]++] = put(m, 1, 7);

  CHECK_OK(cw_manager_sync_all(m));

  /* cw_manager_recover sees the same as cw_recovery_open, beside the manager. */
  {
    cw_recovery *r = NULL;
    cw_entry e;
    uint64_t count = 0;
    cw_status s;
    CHECK_OK(cw_manager_recover(m, NULL, &r));
    while ((s = cw_recovery_next(r, &e)) == CW_OK) count++;
    CHECK_STATUS(s, CW_DONE);
    cw_recovery_close(r);
    CHECK_EQ(count, cwt_count_records(dir, NULL));
  }
  CHECK_OK(cw_manager_close(m));

  /* Exact contents. Lane 0: 1,2 (e1) | B 3,4 (e2) | B 5 (e3).
   * Lane 1: 1 (e1) | B 3 (e2) | B 7 (e4). Lane 2: 1 (e1) | B 5 B(explicit) (e3). */
  {
    static const struct {
      uint32_t lane;
      int op;
      unsigned tag;
      int epoch; /* 1..4 */
    } want[] = {
        {0, CW_OP_PUT, 1, 1},           {0, CW_OP_PUT, 2, 1},
        {0, CW_OP_EPOCH_BARRIER, 0, 2}, {0, CW_OP_PUT, 3, 2},
        {0, CW_OP_PUT, 4, 2},           {0, CW_OP_EPOCH_BARRIER, 0, 3},
        {0, CW_OP_PUT, 5, 3},           {1, CW_OP_PUT, 1, 1},
        {1, CW_OP_EPOCH_BARRIER, 0, 2}, {1, CW_OP_PUT, 3, 2},
        {1, CW_OP_EPOCH_BARRIER, 0, 4}, {1, CW_OP_PUT, 7, 4},
        {2, CW_OP_PUT, 1, 1},           {2, CW_OP_EPOCH_BARRIER, 0, 3},
        {2, CW_OP_PUT, 5, 3},           {2, CW_OP_EPOCH_BARRIER, 0, 3},
    };
    const size_t nwant = sizeof want / sizeof want[0];
    uint64_t epochs[5];
    int seen_put[LANES] = {0};
    size_t next_in_lane[LANES] = {0, 7, 12}; /* index in want[] of each lane's next record */
    cw_recovery *r = NULL;
    cw_entry e;
    size_t total = 0;
    cw_status s;
    walk_result all;
    epochs[1] = e1;
    epochs[2] = e2;
    epochs[3] = e3;
    epochs[4] = e4;

    all = walk(dir, NULL);
    CHECK_EQ(all.records, nwant);
    CHECK_EQ(all.barriers[0], 2);
    CHECK_EQ(all.barriers[1], 2);
    CHECK_EQ(all.barriers[2], 2);
    CHECK_EQ(all.epoch_changes[0], 2);
    CHECK_EQ(all.epoch_changes[1], 2);
    CHECK_EQ(all.epoch_changes[2], 1);
    CHECK_EQ(all.max_epoch_seen, e4);

    CHECK_OK(cw_recovery_open(dir, NULL, &r));
    while ((s = cw_recovery_next(r, &e)) == CW_OK) {
      size_t i;
      CHECK(e.core_id < LANES);
      i = next_in_lane[e.core_id]++;
      CHECK(i < nwant && want[i].lane == e.core_id);
      CHECK_EQ(e.op, want[i].op);
      CHECK_EQ(e.epoch, epochs[want[i].epoch]);
      if (e.op == CW_OP_PUT) {
        char key[32];
        snprintf(key, sizeof key, "%u:%u", e.core_id, want[i].tag);
        CHECK_BYTES(e.key, e.key_len, key, strlen(key));
        CHECK_EQ(e.position, positions[e.core_id][seen_put[e.core_id]]);
        seen_put[e.core_id]++;
      }
      total++;
    }
    CHECK_STATUS(s, CW_DONE);
    CHECK_EQ(total, nwant);
    cw_recovery_close(r);
  }

  /* max_epoch: nothing later than e2 (lanes stop at their first later record). */
  {
    cw_recovery_options ro;
    walk_result w;
    cw_recovery_options_init(&ro, sizeof ro);
    ro.max_epoch = e2;
    w = walk(dir, &ro);
    CHECK_EQ(w.records, 5 + 3 + 1); /* lane 0: 1,2,B,3,4; lane 1: 1,B,3; lane 2: 1 */
    CHECK_EQ(w.per_lane[0], 5);
    CHECK_EQ(w.per_lane[1], 3);
    CHECK_EQ(w.per_lane[2], 1);
    CHECK_EQ(w.max_epoch_seen, e2);
    ro.max_epoch = e1;
    w = walk(dir, &ro);
    CHECK_EQ(w.records, 4);
    ro.max_epoch = 0;
    CHECK_EQ(walk(dir, &ro).records, 0);
  }

  /* Lane filter. */
  {
    cw_recovery_options ro;
    cw_recovery *r = (cw_recovery *)(uintptr_t)0x99;
    uint32_t only1[] = {1};
    uint32_t lanes02[] = {2, 0};
    uint32_t missing[] = {0, LANES};
    walk_result w;
    cw_recovery_options_init(&ro, sizeof ro);
    ro.lanes = only1;
    ro.lanes_len = 1;
    w = walk(dir, &ro);
    CHECK_EQ(w.records, 5);
    CHECK_EQ(w.per_lane[1], 5);
    ro.lanes = lanes02;
    ro.lanes_len = 2;
    w = walk(dir, &ro);
    CHECK_EQ(w.records, 7 + 4);
    CHECK_EQ(w.per_lane[1], 0);
    /* Filter and max_epoch together. */
    ro.max_epoch = e1;
    CHECK_EQ(walk(dir, &ro).records, 3);
    ro.max_epoch = UINT64_MAX;
    ro.lanes = missing;
    CHECK_STATUS(cw_recovery_open(dir, &ro, &r), CW_ERR_INVALID_ARGUMENT);
    CHECK(r == (cw_recovery *)(uintptr_t)0x99);
    ro.lanes = NULL;
    ro.lanes_len = 1;
    CHECK_STATUS(cw_recovery_open(dir, &ro, &r), CW_ERR_INVALID_ARGUMENT);
  }
}

/* ---------------------------------------------------------------------- */

#define MAX_PER_LANE 200000
#define ADVANCES 20

typedef struct {
  cw_writer *writer;
  atomic_int *started;
  atomic_int *stop;
  uint64_t appended;
} job;

/* Appends until told to stop, so epochs change while every lane is busy. */
static void *append_many(void *arg) {
  job *j = (job *)arg;
  atomic_fetch_add(j->started, 1);
  while (!atomic_load(j->stop) && j->appended < MAX_PER_LANE) {
    char key[32];
    snprintf(key, sizeof key, "k%" PRIu64, j->appended);
    CHECK_OK(cwt_put_str(j->writer, key, "value", NULL));
    j->appended++;
  }
  CHECK_OK(cw_writer_sync(j->writer));
  return NULL;
}

static void part2(void) {
  char dir[4096];
  cw_options opts = cwt_options(LANES, 1 << 20);
  cw_manager *m = NULL;
  pthread_t threads[LANES];
  job jobs[LANES];
  atomic_int started = 0, stop = 0;
  uint64_t first_epoch, last_epoch = 0;
  int advances;
  walk_result w;

  cwt_path(dir, sizeof dir, "part2");
  CHECK_OK(cw_manager_open(dir, &opts, &m));
  first_epoch = cw_manager_epoch(m);
  for (uint32_t lane = 0; lane < LANES; lane++) {
    jobs[lane].writer = cwt_writer(m, lane);
    jobs[lane].started = &started;
    jobs[lane].stop = &stop;
    jobs[lane].appended = 0;
    CHECK(pthread_create(&threads[lane], NULL, append_many, &jobs[lane]) == 0);
  }
  while (atomic_load(&started) < LANES) cwt_sleep_ms(1);
  for (advances = 0; advances < ADVANCES; advances++) {
    cwt_sleep_ms(2);
    CHECK_OK(cw_manager_advance_epoch(m, &last_epoch));
  }
  cwt_sleep_ms(2);
  atomic_store(&stop, 1);
  for (uint32_t lane = 0; lane < LANES; lane++) CHECK(pthread_join(threads[lane], NULL) == 0);
  CHECK_EQ(last_epoch, first_epoch + ADVANCES);
  CHECK_OK(cw_manager_close(m));

  w = walk(dir, NULL);
  for (uint32_t lane = 0; lane < LANES; lane++) {
    /* Every PUT plus one barrier per epoch change the lane saw. */
    CHECK_EQ(w.per_lane[lane], jobs[lane].appended + w.barriers[lane]);
    CHECK_EQ(w.barriers[lane], w.epoch_changes[lane]);
    CHECK(w.barriers[lane] <= ADVANCES);
  }
  CHECK(w.max_epoch_seen <= last_epoch);
  /* With every lane appending throughout, epochs were crossed mid-stream. */
  CHECK(w.barriers[0] + w.barriers[1] + w.barriers[2] > 0);
  printf("order: concurrent part: %" PRIu64 "/%" PRIu64 "/%" PRIu64 " records, %" PRIu64
         "/%" PRIu64 "/%" PRIu64 " barriers\n",
         w.per_lane[0], w.per_lane[1], w.per_lane[2], w.barriers[0], w.barriers[1],
         w.barriers[2]);
}

int main(void) {
  part1();
  part2();
  printf("order: merged order, epochs, barriers, max_epoch and lane filter hold\n");
  return 0;
}
