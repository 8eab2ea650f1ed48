/*
 * Two threads entering one writer: thread A appends 1 MiB values in a loop on
 * writer 0 while thread B hammers small appends on the same writer. Within
 * 10 s B must see CW_ERR_BUSY at least once; every status either thread sees
 * is CW_OK or CW_ERR_BUSY; afterwards exactly the CW_OK appends are
 * recovered, with contiguous sequences (a refused call consumes nothing).
 *
 * Then the same for a recovery iterator: two threads calling
 * cw_recovery_next on one iterator; one of them sees CW_ERR_BUSY, every
 * status is CW_OK, CW_DONE or CW_ERR_BUSY, and together they get every
 * record exactly once.
 */
#include "harness.h"

#include <pthread.h>
#include <stdatomic.h>

#define BIG (1u << 20)
#define MAX_BIG_APPENDS 200 /* bounds the disk use: 200 MiB */
#define TIME_LIMIT_S 10.0

typedef struct {
  cw_writer *writer;
  atomic_int *stop;
  atomic_int *busy_seen_by_b;
  atomic_int *a_done; /* B stops with A: alone it could fill the disk */
  const uint8_t *big;
  uint64_t ok;
  uint64_t busy;
  cw_status unexpected; /* first status that is neither CW_OK nor CW_ERR_BUSY */
  char unexpected_msg[256];
} worker;

static void note(worker *wk, cw_status s) {
  if (s == CW_OK) {
    wk->ok++;
  } else if (s == CW_ERR_BUSY) {
    wk->busy++;
  } else if (wk->unexpected == CW_OK) {
    wk->unexpected = s;
    snprintf(wk->unexpected_msg, sizeof wk->unexpected_msg, "%s", cw_last_error());
  }
}

static void *big_appender(void *arg) {
  worker *wk = (worker *)arg;
  uint32_t i = 0;
  while (!atomic_load(wk->stop) && wk->ok < MAX_BIG_APPENDS && wk->unexpected == CW_OK) {
    uint8_t key[8];
    memcpy(key, &i, sizeof i);
    memcpy(key + 4, "big!", 4);
    note(wk, cw_writer_append_put(wk->writer, key, sizeof key, wk->big, BIG, NULL));
    i++;
    /* A short gap now and then lets B in, so both threads get appends
     * through and the lane interleaves them. */
    if (i % 4 == 0) cwt_sleep_ms(1);
  }
  atomic_store(wk->a_done, 1);
  return NULL;
}

static void *small_appender(void *arg) {
  worker *wk = (worker *)arg;
  uint32_t i = 0;
  /* Until A is done or told to stop; but never before B's own first append
   * went through (on a loaded machine the scheduler may not have let B in
   * while A ran; once A stops, B gets the writer). */
  while (((!atomic_load(wk->stop) && !atomic_load(wk->a_done)) || wk->ok == 0) &&
         wk->unexpected == CW_OK) {
    uint8_t key[8];
    cw_status s;
    memcpy(key, &i, sizeof i);
    memcpy(key + 4, "sml!", 4);
    s = cw_writer_append_put(wk->writer, key, sizeof key, (const uint8_t *)"v", 1, NULL);
    if (s == CW_ERR_BUSY) {
      CHECK_CONTAINS(cw_last_error(), "in use");
      atomic_store(wk->busy_seen_by_b, 1);
    }
    note(wk, s);
    i++;
  }
  return NULL;
}

typedef struct {
  cw_recovery *recovery;
  atomic_int *go;
  uint64_t ok, busy, done;
  uint64_t seq_sum; /* sum of yielded sequences, to check nothing repeats */
  cw_status unexpected;
} reader;

static void *read_all(void *arg) {
  reader *rd = (reader *)arg;
  cw_entry e;
  while (!atomic_load(rd->go)) {
  }
  for (;;) {
    cw_status s = cw_recovery_next(rd->recovery, &e);
    if (s == CW_OK) {
      rd->ok++;
      rd->seq_sum += e.sequence;
    } else if (s == CW_ERR_BUSY) {
      rd->busy++;
    } else if (s == CW_DONE) {
      rd->done++;
      break;
    } else {
      rd->unexpected = s;
      break;
    }
  }
  return NULL;
}

/* Returns how many CW_ERR_BUSY the two readers saw in one pass over `dir`. */
static uint64_t shared_iterator_pass(const char *dir, uint64_t records) {
  cw_recovery *r = NULL;
  atomic_int go = 0;
  reader a, b;
  pthread_t ta, tb;
  CHECK_OK(cw_recovery_open(dir, NULL, &r));
  memset(&a, 0, sizeof a);
  a.recovery = r;
  a.go = &go;
  b = a;
  CHECK(pthread_create(&ta, NULL, read_all, &a) == 0);
  CHECK(pthread_create(&tb, NULL, read_all, &b) == 0);
  atomic_store(&go, 1);
  CHECK(pthread_join(ta, NULL) == 0);
  CHECK(pthread_join(tb, NULL) == 0);
  cw_recovery_close(r);
  CHECK_MSG(a.unexpected == CW_OK && b.unexpected == CW_OK,
            "readers saw " CWT_STATUS_FMT " / " CWT_STATUS_FMT, CWT_STATUS_ARG(a.unexpected),
            CWT_STATUS_ARG(b.unexpected));
  CHECK_EQ(a.ok + b.ok, records);
  CHECK_EQ(a.seq_sum + b.seq_sum, records * (records - 1) / 2);
  return a.busy + b.busy;
}

int main(void) {
  char dir[4096];
  cw_options opts = cwt_options(1, 8u << 20);
  cw_manager *m = NULL;
  atomic_int stop = 0, busy_seen = 0, a_done = 0;
  worker a, b;
  pthread_t ta, tb;
  uint8_t *big;
  double start;
  uint64_t total_ok, big_found = 0, small_found = 0, next_seq = 0;

  big = (uint8_t *)malloc(BIG);
  CHECK(big != NULL);
  for (uint32_t i = 0; i < BIG; i++) big[i] = (uint8_t)(i * 7u);

  cwt_path(dir, sizeof dir, "wal");
  opts.preallocate = 0;
  CHECK_OK(cw_manager_open(dir, &opts, &m));

  memset(&a, 0, sizeof a);
  a.writer = cwt_writer(m, 0);
  a.stop = &stop;
  a.busy_seen_by_b = &busy_seen;
  a.a_done = &a_done;
  a.big = big;
  b = a;

  start = cwt_now_s();
  CHECK(pthread_create(&ta, NULL, big_appender, &a) == 0);
  CHECK(pthread_create(&tb, NULL, small_appender, &b) == 0);
  while (!atomic_load(&busy_seen) && !atomic_load(&a_done) && cwt_now_s() - start < TIME_LIMIT_S)
    cwt_sleep_ms(1);
  /* Let both run a little longer, then stop. */
  cwt_sleep_ms(50);
  atomic_store(&stop, 1);
  CHECK(pthread_join(ta, NULL) == 0);
  CHECK(pthread_join(tb, NULL) == 0);

  CHECK_MSG(a.unexpected == CW_OK, "thread A saw " CWT_STATUS_FMT ": %s",
            CWT_STATUS_ARG(a.unexpected), a.unexpected_msg);
  CHECK_MSG(b.unexpected == CW_OK, "thread B saw " CWT_STATUS_FMT ": %s",
            CWT_STATUS_ARG(b.unexpected), b.unexpected_msg);
  CHECK_MSG(b.busy > 0, "B never saw CW_ERR_BUSY in %.1f s (A: %" PRIu64 " ok, B: %" PRIu64 " ok)",
            cwt_now_s() - start, a.ok, b.ok);
  CHECK(a.ok > 0);
  CHECK(b.ok > 0);
  total_ok = a.ok + b.ok;
  CHECK_EQ(cw_writer_sequence(a.writer), total_ok);
  CHECK_OK(cw_manager_close(m));

  {
    cw_recovery *r = NULL;
    cw_entry e;
    cw_status s;
    CHECK_OK(cw_recovery_open(dir, NULL, &r));
    while ((s = cw_recovery_next(r, &e)) == CW_OK) {
      CHECK_EQ(e.sequence, next_seq);
      next_seq++;
      CHECK_EQ(e.key_len, 8);
      if (memcmp(e.key + 4, "big!", 4) == 0) {
        CHECK_BYTES(e.value, e.value_len, big, BIG);
        big_found++;
      } else {
        CHECK(memcmp(e.key + 4, "sml!", 4) == 0);
        CHECK_BYTES(e.value, e.value_len, "v", 1);
        small_found++;
      }
    }
    CHECK_STATUS(s, CW_DONE);
    cw_recovery_close(r);
  }
  CHECK_EQ(next_seq, total_ok);
  CHECK_EQ(big_found, a.ok);
  CHECK_EQ(small_found, b.ok);

  printf("busy: A %" PRIu64 " ok / %" PRIu64 " busy, B %" PRIu64 " ok / %" PRIu64
         " busy; %" PRIu64 " recovered\n",
         a.ok, a.busy, b.ok, b.busy, next_seq);

  {
    /* Whether the two readers overlap is up to the scheduler (under load one
     * may finish before the other starts): keep trying for up to 10 s. */
    uint64_t busy = 0;
    int pass;
    double deadline = cwt_now_s() + 10.0;
    for (pass = 0; busy == 0 && (pass < 10 || cwt_now_s() < deadline); pass++)
      busy += shared_iterator_pass(dir, next_seq);
    CHECK_MSG(busy > 0, "two threads on one iterator never saw CW_ERR_BUSY in %d passes", pass);
    printf("busy: shared iterator saw %" PRIu64 " CW_ERR_BUSY in %d pass(es)\n", busy, pass);
  }
  free(big);
  return 0;
}
