/*
 * The directory lock: a second cw_manager_open of an open directory fails
 * with CW_ERR_LOCKED (nothing written to the output) until the first manager
 * is closed, both in this process and from a forked child process. A
 * read-only cw_recovery_open works beside the open manager.
 */
#include "harness.h"

#include <sys/types.h>
#include <sys/wait.h>

/* Forks a child that tries to open `dir` (and closes it on success); returns
 * the status the child saw. The child exits with -status (0 for CW_OK) and
 * uses _exit so it runs no atexit handler of the parent's. */
static cw_status open_in_child(const char *dir) {
  pid_t pid;
  int wstatus = 0;
  fflush(NULL);
  pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    cw_options opts;
    cw_manager *m = NULL;
    cw_status s;
    cw_options_init(&opts, sizeof opts);
    s = cw_manager_open(dir, &opts, &m);
    if (s == CW_OK) {
      s = cw_manager_close(m);
      _exit(s == CW_OK ? 0 : 100);
    }
    if (s == CW_ERR_LOCKED && !strstr(cw_last_error(), "locked")) _exit(101);
    _exit(s < 0 && s > -100 ? -s : 102);
  }
  CHECK(waitpid(pid, &wstatus, 0) == pid);
  CHECK_MSG(WIFEXITED(wstatus), "child did not exit normally (wait status %d)", wstatus);
  CHECK_MSG(WEXITSTATUS(wstatus) < 100, "child failed with code %d", WEXITSTATUS(wstatus));
  return -(cw_status)WEXITSTATUS(wstatus);
}

int main(void) {
  char dir[4096];
  cw_options opts = cwt_options(2, 65536);
  cw_manager *first = NULL, *second = (cw_manager *)(uintptr_t)0x42;

  cwt_path(dir, sizeof dir, "wal");
  opts.preallocate = 0;
  CHECK_OK(cw_manager_open(dir, &opts, &first));
  CHECK_OK(cwt_put_str(cwt_writer(first, 0), "k", "v", NULL));
  CHECK_OK(cw_writer_sync(cwt_writer(first, 0)));

  /* Same process. */
  CHECK_STATUS(cw_manager_open(dir, &opts, &second), CW_ERR_LOCKED);
  CHECK(second == (cw_manager *)(uintptr_t)0x42);
  CHECK_CONTAINS(cw_last_error(), "locked");
  opts.num_cores = 0;
  CHECK_STATUS(cw_manager_open(dir, &opts, &second), CW_ERR_LOCKED);
  CHECK_STATUS(cw_manager_open(dir, NULL, &second), CW_ERR_LOCKED);

  /* Another process. */
  CHECK_STATUS(open_in_child(dir), CW_ERR_LOCKED);

  /* Reading needs no lock. */
  CHECK_EQ(cwt_count_records(dir, NULL), 1);

  /* The first manager still works after the refused attempts. */
  CHECK_OK(cwt_put_str(cwt_writer(first, 1), "k2", "v2", NULL));
  CHECK_OK(cw_manager_close(first));

  /* Released: another process can take it, and then this one again. */
  CHECK_STATUS(open_in_child(dir), CW_OK);
  second = NULL;
  CHECK_OK(cw_manager_open(dir, &opts, &second));
  CHECK(second != NULL);
  CHECK_STATUS(open_in_child(dir), CW_ERR_LOCKED);
  CHECK_OK(cw_manager_close(second));
  CHECK_EQ(cwt_count_records(dir, NULL), 2);

  printf("lock: exclusive within and across processes, released on close\n");
  return 0;
}
