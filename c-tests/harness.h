/*
 * A tiny test harness for corewal's C and C++ tests. No framework: a failed
 * check prints `file:line`, what was expected and what came back (status
 * names via cw_status_name, the thread's cw_last_error()), then exits with 1.
 *
 * Include it first in a test (it sets the POSIX feature macros it needs).
 * Every test works in its own temporary directory, made by cwt_tmpdir() under
 * $TMPDIR (or /tmp) and removed when the process exits, failed or not; set
 * COREWAL_TEST_KEEP=1 to keep it for a look.
 */
#ifndef COREWAL_TEST_HARNESS_H
#define COREWAL_TEST_HARNESS_H

#if !defined(_GNU_SOURCE) && !defined(_XOPEN_SOURCE)
#define _XOPEN_SOURCE 700
#endif

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "corewal.h"

#ifdef __cplusplus
#define CWT_INLINE inline
#else
#define CWT_INLINE static inline
#endif

#if defined(__GNUC__)
#define CWT_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define CWT_PRINTF(a, b)
#endif

/* ------------------------------------------------------------------------ */
/* Failing                                                                   */
/* ------------------------------------------------------------------------ */

CWT_INLINE const char *cwt_tmpdir(void);

CWT_INLINE int *cwt_failing_(void) {
  static int failing;
  return &failing;
}

/* Reports a failure and exits with 1. When several threads fail at once,
 * the first one reports and exits; the others wait for the process to end
 * (exit() must not run twice at the same time). */
CWT_PRINTF(3, 4)
CWT_INLINE void cwt_fail(const char *file, int line, const char *fmt, ...) {
  va_list ap;
  if (__atomic_exchange_n(cwt_failing_(), 1, __ATOMIC_SEQ_CST)) {
    for (;;) pause();
  }
  fprintf(stderr, "%s:%d: FAILED: ", file, line);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\n");
  fflush(stderr);
  exit(1);
}

/* Statuses print as "CW_ERR_CORRUPT (-3)". */
#define CWT_STATUS_FMT "%s (%d)"
#define CWT_STATUS_ARG(s) cw_status_name(s), (int)(s)

/* CHECK(cond): cond must hold. */
#define CHECK(cond)                                                           \
  do {                                                                        \
    if (!(cond)) cwt_fail(__FILE__, __LINE__, "CHECK(%s)", #cond);            \
  } while (0)

/* CHECK_MSG(cond, fmt, ...): cond must hold; the message says why. */
#define CHECK_MSG(cond, ...)                                                  \
  do {                                                                        \
    if (!(cond)) {                                                            \
      char cwt_msg_[1024];                                                    \
      snprintf(cwt_msg_, sizeof cwt_msg_, __VA_ARGS__);                       \
      cwt_fail(__FILE__, __LINE__, "CHECK(%s): %s", #cond, cwt_msg_);         \
    }                                                                         \
  } while (0)

/* CHECK_EQ(a, b): integers (signed or unsigned, up to 64 bits) are equal. */
#define CHECK_EQ(a, b)                                                        \
  do {                                                                        \
    unsigned long long cwt_a_ = (unsigned long long)(a);                      \
    unsigned long long cwt_b_ = (unsigned long long)(b);                      \
    if (cwt_a_ != cwt_b_)                                                     \
      cwt_fail(__FILE__, __LINE__,                                            \
               "CHECK_EQ(%s, %s): %llu (%lld) != %llu (%lld)", #a, #b,        \
               cwt_a_, (long long)cwt_a_, cwt_b_, (long long)cwt_b_);         \
  } while (0)

/* CHECK_STR_EQ(a, b): C strings are equal (NULL is a failure). */
#define CHECK_STR_EQ(a, b)                                                    \
  do {                                                                        \
    const char *cwt_sa_ = (a), *cwt_sb_ = (b);                                \
    if (!cwt_sa_ || !cwt_sb_ || strcmp(cwt_sa_, cwt_sb_) != 0)                \
      cwt_fail(__FILE__, __LINE__, "CHECK_STR_EQ(%s, %s): \"%s\" != \"%s\"",  \
               #a, #b, cwt_sa_ ? cwt_sa_ : "(null)",                          \
               cwt_sb_ ? cwt_sb_ : "(null)");                                 \
  } while (0)

/* CHECK_CONTAINS(haystack, needle): a C string contains another. */
#define CHECK_CONTAINS(haystack, needle)                                      \
  do {                                                                        \
    const char *cwt_h_ = (haystack), *cwt_n_ = (needle);                      \
    if (!cwt_h_ || !strstr(cwt_h_, cwt_n_))                                   \
      cwt_fail(__FILE__, __LINE__, "CHECK_CONTAINS(%s, %s): \"%s\" lacks \"%s\"", \
               #haystack, #needle, cwt_h_ ? cwt_h_ : "(null)", cwt_n_);       \
  } while (0)

/* CHECK_BYTES(ptr, len, expected, expected_len): byte strings are equal. */
#define CHECK_BYTES(ptr, len, exp, exp_len)                                   \
  do {                                                                        \
    size_t cwt_l_ = (size_t)(len), cwt_el_ = (size_t)(exp_len);               \
    const void *cwt_p_ = (ptr), *cwt_e_ = (exp);                              \
    if (cwt_l_ != cwt_el_)                                                    \
      cwt_fail(__FILE__, __LINE__, "CHECK_BYTES(%s): length %zu != %zu",      \
               #ptr, cwt_l_, cwt_el_);                                        \
    if (cwt_l_ != 0 && (!cwt_p_ || memcmp(cwt_p_, cwt_e_, cwt_l_) != 0))      \
      cwt_fail(__FILE__, __LINE__, "CHECK_BYTES(%s): %zu bytes differ%s",     \
               #ptr, cwt_l_, cwt_p_ ? "" : " (pointer is NULL)");             \
  } while (0)

/* CHECK_STATUS(call, expected): the call returns `expected`. On failure the
 * message names both statuses and quotes cw_last_error(), read right after
 * the call on the same thread. */
#define CHECK_STATUS(call, expected)                                          \
  do {                                                                        \
    cw_status cwt_s_ = (call);                                                \
    cw_status cwt_e_ = (expected);                                            \
    if (cwt_s_ != cwt_e_) {                                                   \
      const char *cwt_m_ = cw_last_error();                                   \
      cwt_fail(__FILE__, __LINE__,                                            \
               "%s returned " CWT_STATUS_FMT ", expected " CWT_STATUS_FMT     \
               "; cw_last_error(): \"%s\"",                                   \
               #call, CWT_STATUS_ARG(cwt_s_), CWT_STATUS_ARG(cwt_e_),         \
               cwt_m_ ? cwt_m_ : "(NULL!)");                                  \
    }                                                                         \
  } while (0)

#define CHECK_OK(call) CHECK_STATUS(call, CW_OK)

/* ------------------------------------------------------------------------ */
/* Temporary directory                                                       */
/* ------------------------------------------------------------------------ */

CWT_INLINE char *cwt_tmpdir_buf_(void) {
  static char path[4096];
  return path;
}

CWT_INLINE int cwt_rm_entry_(const char *path, const struct stat *sb, int flag,
                             struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  remove(path);
  return 0;
}

/* Removes a directory tree (errors ignored). */
CWT_INLINE void cwt_rm_rf(const char *path) {
  nftw(path, cwt_rm_entry_, 16, FTW_DEPTH | FTW_PHYS);
}

CWT_INLINE void cwt_tmpdir_cleanup_(void) {
  char *path = cwt_tmpdir_buf_();
  const char *keep = getenv("COREWAL_TEST_KEEP");
  if (path[0] == '\0') return;
  if (keep && keep[0] && strcmp(keep, "0") != 0) {
    fprintf(stderr, "kept test directory %s\n", path);
    return;
  }
  cwt_rm_rf(path);
  path[0] = '\0';
}

/* This process's private temporary directory, made on first use and removed
 * at exit. */
CWT_INLINE const char *cwt_tmpdir(void) {
  char *path = cwt_tmpdir_buf_();
  if (path[0] == '\0') {
    const char *base = getenv("TMPDIR");
    if (!base || !base[0]) base = "/tmp";
    snprintf(path, 4096, "%s/corewal-test-XXXXXX", base);
    if (!mkdtemp(path)) {
      fprintf(stderr, "mkdtemp(%s): %s\n", path, strerror(errno));
      exit(2);
    }
    atexit(cwt_tmpdir_cleanup_);
  }
  return path;
}

/* Writes "<tmpdir>/<name>" into out (a buffer of `cap` bytes). */
CWT_INLINE char *cwt_path(char *out, size_t cap, const char *name) {
  int n = snprintf(out, cap, "%s/%s", cwt_tmpdir(), name);
  if (n < 0 || (size_t)n >= cap) cwt_fail(__FILE__, __LINE__, "path too long");
  return out;
}

/* ------------------------------------------------------------------------ */
/* Time                                                                      */
/* ------------------------------------------------------------------------ */

CWT_INLINE double cwt_now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

CWT_INLINE void cwt_sleep_ms(unsigned ms) {
  struct timespec ts;
  ts.tv_sec = (time_t)(ms / 1000);
  ts.tv_nsec = (long)(ms % 1000) * 1000000L;
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* ------------------------------------------------------------------------ */
/* WAL files on disk (SPEC §2): wal-<core %05u>-<segment %010u>.log, each     */
/* starting with a 64-byte header (base position at bytes 24..32, LE); lane  */
/* position P lives at file offset 64 + (P - base).                          */
/* ------------------------------------------------------------------------ */

#define CWT_SEGMENT_HEADER 64u

CWT_INLINE char *cwt_segment_path(char *out, size_t cap, const char *dir,
                                  uint32_t core, uint64_t index) {
  int n = snprintf(out, cap, "%s/wal-%05" PRIu32 "-%010" PRIu64 ".log", dir, core, index);
  if (n < 0 || (size_t)n >= cap) cwt_fail(__FILE__, __LINE__, "path too long");
  return out;
}

CWT_INLINE int cwt_file_exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

CWT_INLINE uint64_t cwt_file_size(const char *path) {
  struct stat st;
  if (stat(path, &st) != 0) cwt_fail(__FILE__, __LINE__, "stat(%s): %s", path, strerror(errno));
  return (uint64_t)st.st_size;
}

CWT_INLINE void cwt_read_at(const char *path, uint64_t offset, void *buf, size_t len) {
  int fd = open(path, O_RDONLY);
  ssize_t n;
  if (fd < 0) cwt_fail(__FILE__, __LINE__, "open(%s): %s", path, strerror(errno));
  n = pread(fd, buf, len, (off_t)offset);
  close(fd);
  if (n != (ssize_t)len)
    cwt_fail(__FILE__, __LINE__, "pread(%s, %zu at %" PRIu64 ") read %zd", path, len, offset, n);
}

CWT_INLINE void cwt_write_at(const char *path, uint64_t offset, const void *buf, size_t len) {
  int fd = open(path, O_WRONLY);
  ssize_t n;
  if (fd < 0) cwt_fail(__FILE__, __LINE__, "open(%s): %s", path, strerror(errno));
  n = pwrite(fd, buf, len, (off_t)offset);
  if (n != (ssize_t)len)
    cwt_fail(__FILE__, __LINE__, "pwrite(%s, %zu at %" PRIu64 ") wrote %zd", path, len, offset, n);
  if (fsync(fd) != 0) cwt_fail(__FILE__, __LINE__, "fsync(%s): %s", path, strerror(errno));
  close(fd);
}

/* Flips every bit of one byte. */
CWT_INLINE void cwt_flip_byte(const char *path, uint64_t offset) {
  unsigned char b;
  cwt_read_at(path, offset, &b, 1);
  b = (unsigned char)~b;
  cwt_write_at(path, offset, &b, 1);
}

/* Finds the lane's last started segment (the highest index whose header is
 * not all zeros; a prepared, unused segment is all zeros) and returns its
 * index and base position. Fails the test when the lane has none. */
CWT_INLINE void cwt_last_segment(const char *dir, uint32_t core, uint64_t *index_out,
                                 uint64_t *base_out) {
  char path[4096];
  unsigned char header[CWT_SEGMENT_HEADER];
  uint64_t index;
  int found = 0;
  for (index = 0; index < 100000; index++) {
    size_t i;
    int zero = 1;
    cwt_segment_path(path, sizeof path, dir, core, index);
    if (!cwt_file_exists(path)) break;
    if (cwt_file_size(path) < CWT_SEGMENT_HEADER) continue;
    cwt_read_at(path, 0, header, sizeof header);
    for (i = 0; i < sizeof header; i++) zero &= header[i] == 0;
    if (zero) continue;
    if (memcmp(header, "CWALSEG\x01", 8) != 0)
      cwt_fail(__FILE__, __LINE__, "%s: bad segment magic", path);
    *index_out = index;
    *base_out = 0;
    for (i = 0; i < 8; i++) *base_out |= (uint64_t)header[24 + i] << (8 * i);
    found = 1;
  }
  if (!found) cwt_fail(__FILE__, __LINE__, "lane %" PRIu32 " of %s has no segment", core, dir);
}

/* ------------------------------------------------------------------------ */
/* corewal shortcuts                                                         */
/* ------------------------------------------------------------------------ */

/* Options for `cores` lanes of `segment_bytes`, on the backend named by
 * COREWAL_TEST_BACKEND ("sync" or "io_uring"; unset: CW_BACKEND_AUTO), with
 * segment writes direct as COREWAL_TEST_DIRECT says ("every": direct_io;
 * "off": direct_sync 0, everything through the page cache; unset: the
 * defaults, direct writes before syncs), so ctest runs each test on both
 * backends in all three ways. */
CWT_INLINE cw_options cwt_options(uint32_t cores, uint64_t segment_bytes) {
  cw_options o;
  const char *backend = getenv("COREWAL_TEST_BACKEND");
  const char *direct = getenv("COREWAL_TEST_DIRECT");
  cw_options_init(&o, sizeof o);
  o.num_cores = cores;
  o.segment_bytes = segment_bytes;
  if (backend && strcmp(backend, "sync") == 0) o.backend = CW_BACKEND_SYNC;
  if (backend && strcmp(backend, "io_uring") == 0) o.backend = CW_BACKEND_IO_URING;
  if (direct && strcmp(direct, "every") == 0) o.direct_io = 1;
  if (direct && strcmp(direct, "off") == 0) o.direct_sync = 0;
  return o;
}

CWT_INLINE cw_writer *cwt_writer(cw_manager *m, uint32_t core) {
  cw_writer *w = NULL;
  CHECK_OK(cw_manager_writer(m, core, &w));
  CHECK(w != NULL);
  return w;
}

CWT_INLINE cw_status cwt_put_str(cw_writer *w, const char *key, const char *value,
                                 uint64_t *position_out) {
  return cw_writer_append_put(w, (const uint8_t *)key, strlen(key), (const uint8_t *)value,
                              strlen(value), position_out);
}

/* Appends `n` PUTs of `value` keyed "<prefix>-0", "<prefix>-1", ...; the
 * position of record i goes to positions[i] unless `positions` is NULL. */
CWT_INLINE void cwt_put_numbered(cw_writer *w, const char *prefix, const char *value, int n,
                                 uint64_t *positions) {
  for (int i = 0; i < n; i++) {
    char key[64];
    snprintf(key, sizeof key, "%s-%d", prefix, i);
    CHECK_OK(cwt_put_str(w, key, value, positions ? &positions[i] : NULL));
  }
}

/* Number of records cw_recovery_open yields for `dir` with `opts` (NULL for
 * defaults); every status on the way must be CW_OK, then CW_DONE. */
CWT_INLINE uint64_t cwt_count_records(const char *dir, const cw_recovery_options *opts) {
  cw_recovery *r = NULL;
  cw_entry e;
  uint64_t n = 0;
  cw_status s;
  CHECK_OK(cw_recovery_open(dir, opts, &r));
  while ((s = cw_recovery_next(r, &e)) == CW_OK) n++;
  CHECK_STATUS(s, CW_DONE);
  cw_recovery_close(r);
  return n;
}

/* The order key of SPEC §1: (epoch, timestamp_ns, core_id, sequence). */
CWT_INLINE int cwt_entry_cmp(const cw_entry *a, const cw_entry *b) {
  if (a->epoch != b->epoch) return a->epoch < b->epoch ? -1 : 1;
  if (a->timestamp_ns != b->timestamp_ns) return a->timestamp_ns < b->timestamp_ns ? -1 : 1;
  if (a->core_id != b->core_id) return a->core_id < b->core_id ? -1 : 1;
  if (a->sequence != b->sequence) return a->sequence < b->sequence ? -1 : 1;
  return 0;
}

#endif /* COREWAL_TEST_HARNESS_H */
