/*
 * Submit / poll / wait and the event fd (SPEC §3):
 *  - an epoll loop waits on cw_writer_event_fd and wakes once a submitted
 *    sync has finished; poll then reports it with the boundary recorded at
 *    submit, and the fd is quiet again;
 *  - appends made after a submit are not covered by it;
 *  - several syncs in flight complete once each, in token order;
 *  - poll with nothing finished answers CW_OK with zero completions;
 *  - wait takes one token and leaves the others for poll; an unknown or
 *    already reported token is CW_ERR_NOT_FOUND;
 *  - bad arguments get a status, and a closed writer has no event fd.
 */
#include "harness.h"

#include <sys/epoll.h>

static int wait_readable(int epfd, int timeout_ms) {
  struct epoll_event ev;
  int n;
  do {
    n = epoll_wait(epfd, &ev, 1, timeout_ms);
  } while (n < 0 && errno == EINTR);
  return n;
}

int main(void) {
  char dir[4096];
  cw_options o = cwt_options(1, 1 << 20);
  cw_manager *m;
  cw_writer *w;
  cw_completion done[8];
  size_t count = 99;
  uint64_t t1, t2, t3, boundary1, boundary2;
  int fd, epfd;
  struct epoll_event ev;

  cwt_path(dir, sizeof dir, "wal");
  CHECK_OK(cw_manager_open(dir, &o, &m));
  w = cwt_writer(m, 0);

  fd = cw_writer_event_fd(w);
  CHECK(fd >= 0);
  epfd = epoll_create1(EPOLL_CLOEXEC);
  CHECK(epfd >= 0);
  memset(&ev, 0, sizeof ev);
  ev.events = EPOLLIN;
  ev.data.fd = fd;
  CHECK(epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) == 0);

  /* Nothing submitted: poll answers zero completions, the fd is quiet. */
  CHECK_OK(cw_writer_poll(w, done, 8, &count));
  CHECK_EQ(count, 0);
  CHECK_EQ(wait_readable(epfd, 0), 0);

  /* One sync through the event loop. */
  CHECK_OK(cwt_put_str(w, "a", "first", NULL));
  boundary1 = cw_writer_position(w);
  CHECK_OK(cw_writer_sync_submit(w, &t1));
  CHECK_OK(cwt_put_str(w, "b", "after the submit", NULL));
  /* Readiness can come before the sync finished (a write completion also
   * signals): wait again until poll reports it. */
  count = 0;
  for (int round = 0; round < 100 && count == 0; round++) {
    CHECK_EQ(wait_readable(epfd, 5000), 1);
    CHECK_OK(cw_writer_poll(w, done, 8, &count));
  }
  CHECK_EQ(count, 1);
  CHECK_EQ(done[0].token, t1);
  CHECK_EQ(done[0].synced_position, boundary1);
  CHECK_EQ(done[0].status, CW_OK);
  CHECK_EQ(cw_writer_synced_position(w), boundary1);
  CHECK(cw_writer_position(w) > boundary1);
  CHECK_EQ(wait_readable(epfd, 0), 0);

  /* Several in flight: each once, in token order. */
  CHECK_OK(cw_writer_sync_submit(w, &t2));
  boundary2 = cw_writer_position(w);
  CHECK_OK(cwt_put_str(w, "c", "third", NULL));
  CHECK_OK(cw_writer_sync_submit(w, &t3));
  CHECK(t1 < t2 && t2 < t3);
  {
    /* Poll one at a time until both are in: each once, t2 first. */
    cw_completion got[2];
    size_t n = 0;
    double deadline = cwt_now_s() + 5.0;
    while (n < 2 && cwt_now_s() < deadline) {
      CHECK_OK(cw_writer_poll(w, &got[n], 1, &count));
      n += count;
      if (count == 0) wait_readable(epfd, 100);
    }
    CHECK_EQ(n, 2);
    CHECK_EQ(got[0].token, t2);
    CHECK_EQ(got[0].synced_position, boundary2);
    CHECK_EQ(got[1].token, t3);
    CHECK_EQ(got[1].synced_position, cw_writer_position(w));
  }

  /* wait takes its token; poll keeps the others. */
  {
    uint64_t ta, tb;
    cw_completion c;
    CHECK_OK(cwt_put_str(w, "d", "x", NULL));
    CHECK_OK(cw_writer_sync_submit(w, &ta));
    CHECK_OK(cwt_put_str(w, "e", "y", NULL));
    CHECK_OK(cw_writer_sync_submit(w, &tb));
    CHECK_OK(cw_writer_wait(w, tb, &c));
    CHECK_EQ(c.token, tb);
    CHECK_EQ(c.synced_position, cw_writer_position(w));
    /* ta finished before tb (token order), so poll has it at once. */
    CHECK_OK(cw_writer_poll(w, done, 8, &count));
    CHECK_EQ(count, 1);
    CHECK_EQ(done[0].token, ta);
    CHECK_STATUS(cw_writer_wait(w, tb, &c), CW_ERR_NOT_FOUND);
    CHECK_STATUS(cw_writer_wait(w, 123456, &c), CW_ERR_NOT_FOUND);
  }

  /* Arguments. */
  CHECK_STATUS(cw_writer_sync_submit(NULL, &t1), CW_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(cw_writer_sync_submit(w, NULL), CW_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(cw_writer_poll(w, NULL, 4, &count), CW_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(cw_writer_poll(w, done, 4, NULL), CW_ERR_INVALID_ARGUMENT);
  CHECK_OK(cw_writer_poll(w, NULL, 0, &count));
  CHECK_EQ(count, 0);
  CHECK_STATUS(cw_writer_wait(NULL, 1, done), CW_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(cw_writer_wait(w, 1, NULL), CW_ERR_INVALID_ARGUMENT);
  CHECK_EQ(cw_writer_event_fd(NULL), -1);

  close(epfd);
  CHECK_OK(cw_manager_close(m));
  CHECK_EQ(cw_writer_event_fd(w), -1);
  CHECK_STATUS(cw_writer_sync_submit(w, &t1), CW_ERR_INVALID_ARGUMENT);
  return 0;
}
