/*
 * Syncs without calling sync:
 *  - sync_every_records = 10: nothing is synced after 9 appends; after 25,
 *    synced_position is above 0 and never above position;
 *  - sync_every_bytes = 4096: synced_position moves once that much was
 *    appended;
 *  - sync_interval_us = 1000: an append 20 ms after the last sync syncs;
 *  - flusher_interval_us = 2000: an idle writer's synced_position reaches its
 *    position within 2 s, without any further call on it.
 * Every record is recovered afterwards.
 */
#include "harness.h"

static cw_manager *open_with(const char *name, cw_options *opts) {
  char dir[4096];
  cw_manager *m = NULL;
  cwt_path(dir, sizeof dir, name);
  CHECK_OK(cw_manager_open(dir, opts, &m));
  return m;
}

static void put_n(cw_writer *w, int n) {
  cwt_put_numbered(w, "key", "0123456789012345678901234567890123456789", n, NULL);
}

/* A due sync is submitted by the append; on io_uring it finishes a little
 * later and is reaped by a later call. Polls until synced_position passes
 * `floor` or 5 s pass. */
static uint64_t synced_after_polling(cw_writer *w, uint64_t floor) {
  double deadline = cwt_now_s() + 5.0;
  size_t count;
  while (cw_writer_synced_position(w) <= floor && cwt_now_s() < deadline) {
    CHECK_OK(cw_writer_poll(w, NULL, 0, &count));
    cwt_sleep_ms(1);
  }
  return cw_writer_synced_position(w);
}

int main(void) {
  char dir[4096];

  /* sync_every_records */
  {
    cw_options o = cwt_options(1, 65536);
    cw_manager *m;
    cw_writer *w;
    o.sync_every_records = 10;
    m = open_with("records", &o);
    w = cwt_writer(m, 0);
    put_n(w, 9);
    CHECK_EQ(cw_writer_synced_position(w), 0);
    put_n(w, 16);
    CHECK(synced_after_polling(w, 0) > 0);
    CHECK(cw_writer_synced_position(w) <= cw_writer_position(w));
    CHECK_OK(cw_manager_close(m));
    CHECK_EQ(cwt_count_records(cwt_path(dir, sizeof dir, "records"), NULL), 25);
  }

  /* sync_every_bytes */
  {
    cw_options o = cwt_options(1, 65536);
    cw_manager *m;
    cw_writer *w;
    uint64_t crossed;
    o.sync_every_bytes = 4096;
    m = open_with("bytes", &o);
    w = cwt_writer(m, 0);
    /* The append that crosses 4096 bytes submits a sync covering exactly
     * what was appended until then. */
    while (cw_writer_position(w) < 4096) put_n(w, 1);
    crossed = cw_writer_position(w);
    CHECK_EQ(synced_after_polling(w, 0), crossed);
    CHECK_OK(cw_manager_close(m));
  }

  /* sync_interval_us */
  {
    cw_options o = cwt_options(1, 65536);
    cw_manager *m;
    cw_writer *w;
    o.sync_interval_us = 1000;
    m = open_with("interval", &o);
    w = cwt_writer(m, 0);
    cwt_sleep_ms(20);
    put_n(w, 1);
    CHECK(synced_after_polling(w, 0) > 0);
    CHECK_OK(cw_manager_close(m));
  }

  /* flusher_interval_us */
  {
    cw_options o = cwt_options(2, 65536);
    cw_manager *m;
    cw_writer *w0, *w1;
    double start;
    o.flusher_interval_us = 2000;
    m = open_with("flusher", &o);
    w0 = cwt_writer(m, 0);
    w1 = cwt_writer(m, 1);
    put_n(w0, 30);
    put_n(w1, 3);
    start = cwt_now_s();
    while ((cw_writer_synced_position(w0) < cw_writer_position(w0) ||
            cw_writer_synced_position(w1) < cw_writer_position(w1)) &&
           cwt_now_s() - start < 2.0)
      cwt_sleep_ms(1);
    CHECK_MSG(cw_writer_synced_position(w0) == cw_writer_position(w0),
              "lane 0 synced %" PRIu64 " of %" PRIu64 " after 2 s", cw_writer_synced_position(w0),
              cw_writer_position(w0));
    CHECK_EQ(cw_writer_synced_position(w1), cw_writer_position(w1));
    CHECK_OK(cw_manager_close(m));
    CHECK_EQ(cwt_count_records(cwt_path(dir, sizeof dir, "flusher"), NULL), 33);
  }

  printf("group commit: record, byte, interval and flusher triggers sync\n");
  return 0;
}
