/*
 * Every NULL, out-of-range or stale argument is answered with a status, never
 * a crash, and a failing call writes no output:
 *  - NULL handles and outputs for every function; out-of-range core ids;
 *    NULL data with a non-zero length; bad enum values and options;
 *  - sized structs: struct_size 0 is refused; cw_options_init /
 *    cw_recovery_options_init never write past the size they are given, and a
 *    caller's shorter struct gets defaults for the missing fields;
 *  - missing directories (CW_ERR_NOT_FOUND), creating with 0 lanes;
 *  - calls on a closed manager, its writers and a closed iterator;
 *  - cw_status_name for every status and unknown values; cw_last_error()
 *    never NULL, per thread, untouched by successful calls.
 */
#include "harness.h"

#include <limits.h>
#include <pthread.h>
#include <stddef.h>

#define BAD_MANAGER ((cw_manager *)(uintptr_t)0x5151)
#define BAD_WRITER ((cw_writer *)(uintptr_t)0x5252)
#define BAD_RECOVERY ((cw_recovery *)(uintptr_t)0x5353)

static const uint8_t K[] = {'k', 'e', 'y'};

static void status_names(void) {
  static const struct {
    cw_status status;
    const char *name;
  } names[] = {
      {CW_OK, "CW_OK"},
      {CW_DONE, "CW_DONE"},
      {CW_ERR_INVALID_ARGUMENT, "CW_ERR_INVALID_ARGUMENT"},
      {CW_ERR_IO, "CW_ERR_IO"},
      {CW_ERR_CORRUPT, "CW_ERR_CORRUPT"},
      {CW_ERR_LOCKED, "CW_ERR_LOCKED"},
      {CW_ERR_POISONED, "CW_ERR_POISONED"},
      {CW_ERR_BUSY, "CW_ERR_BUSY"},
      {CW_ERR_TOO_LARGE, "CW_ERR_TOO_LARGE"},
      {CW_ERR_UNSUPPORTED, "CW_ERR_UNSUPPORTED"},
      {CW_ERR_NOT_FOUND, "CW_ERR_NOT_FOUND"},
      {CW_ERR_PANIC, "CW_ERR_PANIC"},
  };
  static const cw_status unknown[] = {2, 3, -11, -100, 12345, INT32_MAX, INT32_MIN};
  size_t i;
  for (i = 0; i < sizeof names / sizeof names[0]; i++)
    CHECK_STR_EQ(cw_status_name(names[i].status), names[i].name);
  for (i = 0; i < sizeof unknown / sizeof unknown[0]; i++)
    CHECK_STR_EQ(cw_status_name(unknown[i]), "CW_UNKNOWN_STATUS");
  /* The values are part of the ABI. */
  CHECK_EQ(CW_OK, 0);
  CHECK_EQ(CW_DONE, 1);
  CHECK_EQ(CW_ERR_INVALID_ARGUMENT, -1);
  CHECK_EQ(CW_ERR_PANIC, -10);
}

static void *fresh_thread_error(void *arg) {
  const char *msg = cw_last_error();
  (void)arg;
  /* A thread that never failed has "" (never NULL). */
  CHECK(msg != NULL);
  CHECK_STR_EQ(msg, "");
  /* Its own failure does not touch other threads' messages. */
  CHECK_STATUS(cw_manager_open(NULL, NULL, NULL), CW_ERR_INVALID_ARGUMENT);
  CHECK(strlen(cw_last_error()) > 0);
  return NULL;
}

static void last_error(void) {
  pthread_t t;
  char saved[512];
  cw_manager *m = NULL;
  CHECK(cw_last_error() != NULL);
  CHECK_STATUS(cw_manager_writer(NULL, 0, NULL), CW_ERR_INVALID_ARGUMENT);
  CHECK(strlen(cw_last_error()) > 0);
  snprintf(saved, sizeof saved, "%s", cw_last_error());
  CHECK(pthread_create(&t, NULL, fresh_thread_error, NULL) == 0);
  CHECK(pthread_join(t, NULL) == 0);
  CHECK_STR_EQ(cw_last_error(), saved);
  /* Successful calls leave it unchanged. */
  {
    char dir[4096];
    cw_options o = cwt_options(1, 65536);
    cwt_path(dir, sizeof dir, "last_error");
    CHECK_OK(cw_manager_open(dir, &o, &m));
    CHECK_OK(cw_manager_close(m));
  }
  CHECK_STR_EQ(cw_last_error(), saved);
}

static void options_init_sizes(void) {
  /* A bigger buffer with a canary after a truncated cw_options. */
  struct {
    cw_options o;
    unsigned char tail[32];
  } big;
  unsigned char *bytes = (unsigned char *)&big;
  const size_t small = offsetof(cw_options, sync_every_records);
  size_t i;
  cw_options full;

  memset(&big, 0xCC, sizeof big);
  cw_options_init(&big.o, small);
  CHECK_EQ(big.o.struct_size, small);
  for (i = small; i < sizeof big; i++)
    CHECK_MSG(bytes[i] == 0xCC, "cw_options_init(size %zu) wrote byte %zu", small, i);
  /* The written part holds the defaults. */
  cw_options_init(&full, sizeof full);
  CHECK_EQ(full.struct_size, sizeof full);
  CHECK_BYTES(bytes + 4, small - 4, (const unsigned char *)&full + 4, small - 4);
  CHECK_EQ(full.create_if_missing, 1);
  CHECK_EQ(full.preallocate, 1);
  CHECK_EQ(full.num_cores, 0);
  CHECK_EQ(full.segment_bytes, 64u << 20);
  CHECK_EQ(full.max_record_bytes, 16u << 20);
  CHECK_EQ(full.backend, CW_BACKEND_AUTO);
  CHECK_EQ(full.recovery_mode, CW_RECOVER_TOLERATE_TORN_TAIL);
  CHECK_EQ(full.sync_every_records, 0);
  CHECK_EQ(full.flusher_interval_us, 0);
  CHECK_EQ(full.direct_io, 0);
  CHECK_EQ(full.direct_sync, 1);

  /* Sizes below the struct_size field, and NULL, write nothing. */
  memset(&big, 0xCC, sizeof big);
  cw_options_init(&big.o, 3);
  cw_options_init(&big.o, 0);
  cw_options_init(NULL, sizeof full);
  for (i = 0; i < sizeof big; i++) CHECK_EQ(bytes[i], 0xCC);

  /* The library reads only struct_size bytes: beyond them lie values that
   * would sync on every append, yet the defaults (no group commit) apply. */
  {
    char dir[4096];
    cw_manager *m = NULL;
    cw_writer *w;
    cw_options poison;
    cw_options_init(&poison, sizeof poison);
    poison.sync_every_records = 1;
    poison.sync_every_bytes = 1;
    poison.sync_interval_us = 1;
    poison.flusher_interval_us = 1000;
    memcpy(&big.o, &poison, sizeof poison);
    cw_options_init(&big.o, small);
    big.o.num_cores = 1;
    big.o.segment_bytes = 65536;
    CHECK_EQ(big.o.sync_every_records, 1); /* still the poison, past struct_size */
    cwt_path(dir, sizeof dir, "small_options");
    CHECK_OK(cw_manager_open(dir, &big.o, &m));
    w = cwt_writer(m, 0);
    CHECK_OK(cwt_put_str(w, "a", "b", NULL));
    CHECK_OK(cwt_put_str(w, "c", "d", NULL));
    cwt_sleep_ms(20);
    CHECK(cw_writer_position(w) > 0);
    CHECK_EQ(cw_writer_synced_position(w), 0);
    CHECK_OK(cw_writer_sync(w));
    CHECK_EQ(cw_writer_synced_position(w), cw_writer_position(w));
    CHECK_OK(cw_manager_close(m));
  }

  /* Same for cw_recovery_options. */
  {
    struct {
      cw_recovery_options o;
      unsigned char tail[32];
    } rbig;
    unsigned char *rbytes = (unsigned char *)&rbig;
    const size_t rsmall = offsetof(cw_recovery_options, max_epoch);
    cw_recovery_options rfull;
    memset(&rbig, 0xCC, sizeof rbig);
    cw_recovery_options_init(&rbig.o, rsmall);
    CHECK_EQ(rbig.o.struct_size, rsmall);
    for (i = rsmall; i < sizeof rbig; i++) CHECK_EQ(rbytes[i], 0xCC);
    cw_recovery_options_init(&rfull, sizeof rfull);
    CHECK_EQ(rfull.struct_size, sizeof rfull);
    CHECK_EQ(rfull.mode, CW_RECOVER_TOLERATE_TORN_TAIL);
    CHECK_EQ(rfull.from_checkpoint, 1);
    CHECK_EQ(rfull.max_epoch, UINT64_MAX);
    CHECK(rfull.lanes == NULL);
    CHECK_EQ(rfull.lanes_len, 0);
    cw_recovery_options_init(NULL, sizeof rfull);
  }
}

static void open_arguments(void) {
  char dir[4096], missing[4096], empty_dir[4096];
  cw_options o = cwt_options(2, 65536);
  cw_manager *m = BAD_MANAGER;
  cw_recovery *r = BAD_RECOVERY;
  cw_recovery_options ro;

  cwt_path(dir, sizeof dir, "args");
  cwt_path(missing, sizeof missing, "does/not/exist");
  cwt_path(empty_dir, sizeof empty_dir, "empty");

  CHECK_STATUS(cw_manager_open(NULL, &o, &m), CW_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(cw_manager_open("", &o, &m), CW_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(cw_manager_open(dir, &o, NULL), CW_ERR_INVALID_ARGUMENT);
  CHECK(m == BAD_MANAGER);

  /* Bad option values. */
  o.backend = 99;
  CHECK_STATUS(cw_manager_open(dir, &o, &m), CW_ERR_INVALID_ARGUMENT);
  CHECK_CONTAINS(cw_last_error(), "backend");
  o.backend = -1;
  CHECK_STATUS(cw_manager_open(dir, &o, &m), CW_ERR_INVALID_ARGUMENT);
  o.backend = CW_BACKEND_AUTO;
  o.recovery_mode = 99;
  CHECK_STATUS(cw_manager_open(dir, &o, &m), CW_ERR_INVALID_ARGUMENT);
  o.recovery_mode = -7;
  CHECK_STATUS(cw_manager_open(dir, &o, &m), CW_ERR_INVALID_ARGUMENT);
  o.recovery_mode = CW_RECOVER_TOLERATE_TORN_TAIL;
  o.segment_bytes = 100;
  CHECK_STATUS(cw_manager_open(dir, &o, &m), CW_ERR_INVALID_ARGUMENT);
  o.segment_bytes = 65536 + 1;
  CHECK_STATUS(cw_manager_open(dir, &o, &m), CW_ERR_INVALID_ARGUMENT);
  o.segment_bytes = 65536;
  /* Direct I/O needs whole blocks, and a file system that takes it. */
  {
    uint32_t direct_before = o.direct_io;
    o.direct_io = 1;
    o.segment_bytes = 65536 + 8;
    CHECK_STATUS(cw_manager_open(dir, &o, &m), CW_ERR_INVALID_ARGUMENT);
    CHECK_CONTAINS(cw_last_error(), "direct I/O");
    o.segment_bytes = 65536;
    CHECK_STATUS(cw_manager_open("/proc/self/corewal-wal", &o, &m), CW_ERR_UNSUPPORTED);
    CHECK_CONTAINS(cw_last_error(), "direct I/O is not available");
    o.direct_io = direct_before;
  }
  o.max_record_bytes = 0;
  CHECK_STATUS(cw_manager_open(dir, &o, &m), CW_ERR_INVALID_ARGUMENT);
  o.max_record_bytes = 1 << 20;
  o.struct_size = 0;
  CHECK_STATUS(cw_manager_open(dir, &o, &m), CW_ERR_INVALID_ARGUMENT);
  CHECK_CONTAINS(cw_last_error(), "struct_size");
  o.struct_size = sizeof o;
  CHECK(m == BAD_MANAGER);

  /* Creating needs lanes; NULL options mean defaults, which have none. */
  o.num_cores = 0;
  CHECK_STATUS(cw_manager_open(dir, &o, &m), CW_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(cw_manager_open(dir, NULL, &m), CW_ERR_INVALID_ARGUMENT);
  CHECK(m == BAD_MANAGER);

  /* Missing, and not to be created. */
  o.num_cores = 1;
  o.create_if_missing = 0;
  CHECK_STATUS(cw_manager_open(missing, &o, &m), CW_ERR_NOT_FOUND);
  CHECK(!cwt_file_exists(missing));
  CHECK(mkdir(empty_dir, 0700) == 0);
  CHECK_STATUS(cw_manager_open(empty_dir, &o, &m), CW_ERR_NOT_FOUND);
  CHECK(m == BAD_MANAGER);
  CHECK_STATUS(cw_recovery_open(missing, NULL, &r), CW_ERR_NOT_FOUND);
  CHECK_STATUS(cw_recovery_open(empty_dir, NULL, &r), CW_ERR_NOT_FOUND);

  /* Recovery arguments. */
  CHECK_STATUS(cw_recovery_open(NULL, NULL, &r), CW_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(cw_recovery_open(dir, NULL, NULL), CW_ERR_INVALID_ARGUMENT);
  cw_recovery_options_init(&ro, sizeof ro);
  ro.mode = 99;
  CHECK_STATUS(cw_recovery_open(dir, &ro, &r), CW_ERR_INVALID_ARGUMENT);
  ro.mode = CW_RECOVER_TOLERATE_TORN_TAIL;
  ro.struct_size = 0;
  CHECK_STATUS(cw_recovery_open(dir, &ro, &r), CW_ERR_INVALID_ARGUMENT);
  CHECK(r == BAD_RECOVERY);

  /* An existing WAL opens with NULL options (its own count). */
  o = cwt_options(2, 65536);
  m = NULL;
  CHECK_OK(cw_manager_open(dir, &o, &m));
  CHECK_OK(cw_manager_close(m));
  m = NULL;
  CHECK_OK(cw_manager_open(dir, NULL, &m));
  CHECK_EQ(cw_manager_num_cores(m), 2);
  CHECK_OK(cw_manager_close(m));
}

static void null_handles(void) {
  cw_writer *w = BAD_WRITER;
  cw_recovery *r = BAD_RECOVERY;
  cw_entry e;
  cw_source_offset so;
  uint64_t out = 777;
  int64_t wm = 1;

  /* Manager functions. */
  CHECK_EQ(cw_manager_num_cores(NULL), 0);
  CHECK_STATUS(cw_manager_writer(NULL, 0, &w), CW_ERR_INVALID_ARGUMENT);
  CHECK(w == BAD_WRITER);
  CHECK_EQ(cw_manager_epoch(NULL), 0);
  CHECK_STATUS(cw_manager_advance_epoch(NULL, &out), CW_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(cw_manager_advance_epoch(NULL, NULL), CW_ERR_INVALID_ARGUMENT);
  CHECK_EQ(out, 777);
  CHECK_STATUS(cw_manager_sync_all(NULL), CW_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(cw_manager_recover(NULL, NULL, &r), CW_ERR_INVALID_ARGUMENT);
  CHECK(r == BAD_RECOVERY);
  CHECK_STATUS(cw_manager_close(NULL), CW_OK);

  /* Writer functions. */
  CHECK_STATUS(cw_writer_append_put(NULL, K, 3, K, 3, &out), CW_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(cw_writer_append_delete(NULL, K, 3, &out), CW_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(cw_writer_append_commit(NULL, NULL, 0, &wm, &out), CW_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(cw_writer_append_checkpoint(NULL, 1, &out), CW_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(cw_writer_epoch_barrier(NULL, &out), CW_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(cw_writer_sync(NULL), CW_ERR_INVALID_ARGUMENT);
  CHECK_EQ(out, 777);
  CHECK_EQ(cw_writer_position(NULL), 0);
  CHECK_EQ(cw_writer_synced_position(NULL), 0);
  CHECK_EQ(cw_writer_sequence(NULL), 0);
  CHECK_EQ(cw_writer_core_id(NULL), UINT32_MAX);

  /* Recovery functions. */
  CHECK_STATUS(cw_recovery_next(NULL, &e), CW_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(cw_recovery_entry_offset(NULL, 0, &so), CW_ERR_INVALID_ARGUMENT);
  cw_recovery_close(NULL);
}

static void with_manager(void) {
  char dir[4096];
  cw_options o = cwt_options(2, 65536);
  cw_manager *m = NULL;
  cw_writer *w = BAD_WRITER, *w0;
  cw_recovery *r = BAD_RECOVERY;
  cw_recovery_options ro;
  cw_source_offset offs[1];
  cw_entry e;
  cw_source_offset so;
  uint64_t out = 777, pos0, seq0;
  uint32_t bad_lane[] = {2};

  cwt_path(dir, sizeof dir, "with_manager");
  CHECK_OK(cw_manager_open(dir, &o, &m));

  /* Out-of-range core ids; NULL outputs. */
  CHECK_STATUS(cw_manager_writer(m, 2, &w), CW_ERR_INVALID_ARGUMENT);
  CHECK_CONTAINS(cw_last_error(), "out of range");
  CHECK_STATUS(cw_manager_writer(m, UINT32_MAX, &w), CW_ERR_INVALID_ARGUMENT);
  CHECK(w == BAD_WRITER);
  CHECK_STATUS(cw_manager_writer(m, 0, NULL), CW_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(cw_manager_recover(m, NULL, NULL), CW_ERR_INVALID_ARGUMENT);
  cw_recovery_options_init(&ro, sizeof ro);
  ro.lanes = bad_lane;
  ro.lanes_len = 1;
  CHECK_STATUS(cw_manager_recover(m, &ro, &r), CW_ERR_INVALID_ARGUMENT);
  ro.lanes = NULL;
  ro.mode = 42;
  CHECK_STATUS(cw_manager_recover(m, &ro, &r), CW_ERR_INVALID_ARGUMENT);
  CHECK(r == BAD_RECOVERY);

  /* NULL data with a non-zero length is refused and writes nothing. */
  w0 = cwt_writer(m, 0);
  CHECK_OK(cw_writer_append_put(w0, K, 3, K, 3, NULL));
  pos0 = cw_writer_position(w0);
  seq0 = cw_writer_sequence(w0);
  CHECK_STATUS(cw_writer_append_put(w0, NULL, 5, K, 3, &out), CW_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(cw_writer_append_put(w0, K, 3, NULL, 5, &out), CW_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(cw_writer_append_delete(w0, NULL, 1, &out), CW_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(cw_writer_append_commit(w0, NULL, 2, NULL, &out), CW_ERR_INVALID_ARGUMENT);
  offs[0].name = NULL;
  offs[0].name_len = 4;
  offs[0].offset = 1;
  CHECK_STATUS(cw_writer_append_commit(w0, offs, 1, NULL, &out), CW_ERR_INVALID_ARGUMENT);
  CHECK_EQ(out, 777);
  CHECK_EQ(cw_writer_position(w0), pos0);
  CHECK_EQ(cw_writer_sequence(w0), seq0);

  /* Empty data is fine, with or without a pointer; outputs may be NULL. */
  CHECK_OK(cw_writer_append_put(w0, NULL, 0, NULL, 0, NULL));
  CHECK_OK(cw_writer_append_delete(w0, K, 0, NULL));
  offs[0].name_len = 0;
  CHECK_OK(cw_writer_append_commit(w0, offs, 1, NULL, NULL));
  CHECK_OK(cw_writer_append_commit(w0, NULL, 0, NULL, NULL));
  CHECK_OK(cw_writer_epoch_barrier(w0, NULL));
  CHECK_OK(cw_writer_append_checkpoint(w0, 0, NULL));
  CHECK_EQ(cw_writer_sequence(w0), seq0 + 6);
  CHECK_OK(cw_writer_sync(w0));

  /* Recovery argument checks on a live iterator. */
  CHECK_OK(cw_recovery_open(dir, NULL, &r));
  CHECK_STATUS(cw_recovery_next(r, NULL), CW_ERR_INVALID_ARGUMENT);
  CHECK_OK(cw_recovery_next(r, &e)); /* the first PUT */
  CHECK_EQ(e.op, CW_OP_PUT);
  CHECK_STATUS(cw_recovery_entry_offset(r, 0, NULL), CW_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(cw_recovery_entry_offset(r, 0, &so), CW_ERR_NOT_FOUND);
  CHECK_STATUS(cw_recovery_entry_offset(r, SIZE_MAX, &so), CW_ERR_NOT_FOUND);
  CHECK_OK(cw_recovery_next(r, &e)); /* the empty PUT */
  CHECK_EQ(e.key_len, 0);
  CHECK_EQ(e.value_len, 0);
  cw_recovery_close(r);
  /* A closed iterator answers with a status; closing twice is harmless. */
  memset(&e, 0x11, sizeof e);
  CHECK_STATUS(cw_recovery_next(r, &e), CW_ERR_INVALID_ARGUMENT);
  CHECK_EQ(e.epoch, 0x1111111111111111ull);
  CHECK_STATUS(cw_recovery_entry_offset(r, 0, &so), CW_ERR_INVALID_ARGUMENT);
  cw_recovery_close(r);

  /* A closed manager and its writers answer CW_ERR_INVALID_ARGUMENT. */
  CHECK_OK(cw_manager_close(m));
  w = BAD_WRITER;
  CHECK_STATUS(cw_manager_writer(m, 0, &w), CW_ERR_INVALID_ARGUMENT);
  CHECK(w == BAD_WRITER);
  CHECK_STATUS(cw_manager_advance_epoch(m, &out), CW_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(cw_manager_sync_all(m), CW_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(cw_manager_recover(m, NULL, &r), CW_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(cw_writer_append_put(w0, K, 3, K, 3, &out), CW_ERR_INVALID_ARGUMENT);
  CHECK_CONTAINS(cw_last_error(), "closed");
  CHECK_STATUS(cw_writer_append_delete(w0, K, 3, &out), CW_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(cw_writer_append_commit(w0, NULL, 0, NULL, &out), CW_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(cw_writer_append_checkpoint(w0, 9, &out), CW_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(cw_writer_epoch_barrier(w0, &out), CW_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(cw_writer_sync(w0), CW_ERR_INVALID_ARGUMENT);
  CHECK_EQ(out, 777);
  /* Reading counters of a closed writer is allowed (last published values). */
  CHECK_EQ(cw_writer_core_id(w0), 0);
  CHECK_EQ(cw_writer_sequence(w0), seq0 + 6);
  (void)cw_writer_position(w0);
  (void)cw_manager_epoch(m);
  (void)cw_manager_num_cores(m);
  CHECK_STATUS(cw_manager_close(m), CW_OK); /* twice */

  /* The directory was released: it opens again, with everything in it. */
  m = NULL;
  o.num_cores = 0;
  CHECK_OK(cw_manager_open(dir, &o, &m));
  CHECK_EQ(cw_writer_sequence(cwt_writer(m, 0)), seq0 + 6);
  CHECK_OK(cw_manager_close(m));
}

int main(void) {
  status_names();
  last_error();
  options_init_sizes();
  open_arguments();
  null_handles();
  with_manager();
  printf("arguments: every bad argument answered with a status\n");
  return 0;
}
