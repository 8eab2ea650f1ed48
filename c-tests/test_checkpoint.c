/*
 * The checkpoint protocol of SPEC §5 across threads:
 *  1. the coordinator advances the epoch (E -> E+1) while two worker threads
 *     append on their own lanes;
 *  2. each worker, on its own thread, writes an EPOCH_BARRIER and syncs;
 *  3. the coordinator commits the checkpoint for E with meta bytes.
 * A commit before every lane's barrier is durable is refused. After more
 * appends and a purge, recovery starting from the checkpoint reports id,
 * epoch and meta, and yields exactly the records of epochs after E (those a
 * full read finds; records appended after step 1 belong to E+1 whatever
 * their key), and every record appended after the barriers.
 */
#include "harness.h"

#include <pthread.h>
#include <stdatomic.h>

#define PER_PHASE 400

typedef struct {
  cw_writer *w;
  atomic_int *phase; /* 0: append; 1: barrier + sync requested; 2: append more */
  atomic_int *barrier_done;
  uint64_t after_barrier; /* PUTs appended after this lane's barrier */
} worker;

static void put_some(cw_writer *w, const char *tag, int n) {
  cwt_put_numbered(w, tag, "0123456789012345678901234567890123456789012345678901234567", n, NULL);
}

static void *run(void *arg) {
  worker *wk = (worker *)arg;
  put_some(wk->w, "before", PER_PHASE);
  while (atomic_load(wk->phase) < 1) put_some(wk->w, "before-more", 1);
  CHECK_OK(cw_writer_epoch_barrier(wk->w, NULL));
  CHECK_OK(cw_writer_sync(wk->w));
  atomic_fetch_add(wk->barrier_done, 1);
  while (atomic_load(wk->phase) < 2) cwt_sleep_ms(1);
  put_some(wk->w, "after", PER_PHASE);
  wk->after_barrier = PER_PHASE;
  CHECK_OK(cw_writer_sync(wk->w));
  return NULL;
}

int main(void) {
  char dir[4096];
  cw_options o = cwt_options(2, 65536);
  cw_manager *m;
  atomic_int phase = 0, barrier_done = 0;
  worker wk[2];
  pthread_t t[2];
  uint64_t epoch, covered;
  static const char meta[] = "snapshot-5";

  cwt_path(dir, sizeof dir, "wal");
  CHECK_OK(cw_manager_open(dir, &o, &m));
  for (int i = 0; i < 2; i++) {
    wk[i].w = cwt_writer(m, (uint32_t)i);
    wk[i].phase = &phase;
    wk[i].barrier_done = &barrier_done;
    wk[i].after_barrier = 0;
    CHECK(pthread_create(&t[i], NULL, run, &wk[i]) == 0);
  }
  cwt_sleep_ms(5);

  /* 1. the coordinator advances the epoch while the workers append. */
  covered = cw_manager_epoch(m);
  CHECK_OK(cw_manager_advance_epoch(m, &epoch));
  CHECK_EQ(epoch, covered + 1);
  /* Nothing vouches for the lanes yet. */
  CHECK_STATUS(cw_manager_checkpoint_commit(m, 5, covered, (const uint8_t *)meta, sizeof meta - 1),
               CW_ERR_INVALID_ARGUMENT);
  CHECK_CONTAINS(cw_last_error(), "EPOCH_BARRIER");

  /* 2. each core writes its barrier and syncs, on its own thread. */
  atomic_store(&phase, 1);
  while (atomic_load(&barrier_done) < 2) cwt_sleep_ms(1);

  /* 3. commit. */
  CHECK_OK(cw_manager_checkpoint_commit(m, 5, covered, (const uint8_t *)meta, sizeof meta - 1));
  atomic_store(&phase, 2);
  for (int i = 0; i < 2; i++) CHECK(pthread_join(t[i], NULL) == 0);
  CHECK_OK(cw_manager_purge(m));
  CHECK_OK(cw_manager_close(m));

  {
    cw_recovery *r;
    cw_entry e;
    cw_status s;
    uint64_t id = 0, cp_epoch = 0, later = 0, after_puts = 0, barriers = 0, full_later = 0;
    const uint8_t *cp_meta = NULL;
    size_t cp_meta_len = 0;
    CHECK_OK(cw_recovery_open(dir, NULL, &r));
    CHECK_OK(cw_recovery_checkpoint(r, &id, &cp_epoch, &cp_meta, &cp_meta_len));
    CHECK_EQ(id, 5);
    CHECK_EQ(cp_epoch, covered);
    CHECK_BYTES(cp_meta, cp_meta_len, meta, sizeof meta - 1);
    while ((s = cw_recovery_next(r, &e)) == CW_OK) {
      CHECK(e.epoch > covered);
      later++;
      if (e.op == CW_OP_PUT && e.key_len >= 6 && memcmp(e.key, "after-", 6) == 0) after_puts++;
      if (e.op == CW_OP_EPOCH_BARRIER) barriers++;
    }
    CHECK_STATUS(s, CW_DONE);
    CHECK_EQ(after_puts, wk[0].after_barrier + wk[1].after_barrier);
    CHECK(barriers >= 2); /* each lane starts at its barrier */
    cw_recovery_close(r);

    /* A full read (what purge left) has the same records of later epochs;
     * without from_checkpoint, the accessor says there is no checkpoint. */
    {
      cw_recovery_options ro;
      cw_recovery_options_init(&ro, sizeof ro);
      ro.from_checkpoint = 0;
      CHECK_OK(cw_recovery_open(dir, &ro, &r));
      CHECK_STATUS(cw_recovery_checkpoint(r, NULL, NULL, NULL, NULL), CW_ERR_NOT_FOUND);
      while ((s = cw_recovery_next(r, &e)) == CW_OK)
        if (e.epoch > covered) full_later++;
      CHECK_STATUS(s, CW_DONE);
      cw_recovery_close(r);
    }
    CHECK_EQ(later, full_later);
  }
  CHECK_STATUS(cw_manager_checkpoint(NULL, 1, NULL, 0), CW_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(cw_manager_purge(NULL), CW_ERR_INVALID_ARGUMENT);
  return 0;
}
