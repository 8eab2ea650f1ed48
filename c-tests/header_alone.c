/*
 * corewal.h must compile on its own (nothing included before it) as C99 and
 * C11 with -Wall -Wextra -pedantic -Werror -Wstrict-prototypes
 * -Wmissing-prototypes. Built by the ctest cases header_c99 and header_c11.
 */
#include "corewal.h"

/* C99 has no _Static_assert: a negative array size fails instead. */
#define HEADER_ASSERT(name, cond) typedef char header_assert_##name[(cond) ? 1 : -1]

HEADER_ASSERT(status_is_32_bits, sizeof(cw_status) == 4);
HEADER_ASSERT(done_is_positive, CW_DONE > 0 && CW_OK == 0);
HEADER_ASSERT(errors_are_negative, CW_ERR_INVALID_ARGUMENT < 0 && CW_ERR_PANIC < 0);
HEADER_ASSERT(backend_is_32_bits, sizeof(cw_backend) == 4);
HEADER_ASSERT(struct_size_comes_first, offsetof(cw_options, struct_size) == 0);
HEADER_ASSERT(recovery_struct_size_comes_first, offsetof(cw_recovery_options, struct_size) == 0);
HEADER_ASSERT(version_number, CW_VERSION_NUMBER == CW_VERSION_MAJOR * 10000 +
                                                       CW_VERSION_MINOR * 100 + CW_VERSION_PATCH);

int corewal_header_probe(void);

/* Names every type and takes the address of a few functions (no call, so no
 * link is needed). */
int corewal_header_probe(void) {
  cw_options o;
  cw_recovery_options ro;
  cw_entry e;
  cw_source_offset so;
  cw_manager *m = 0;
  cw_writer *w = 0;
  cw_recovery *r = 0;
  cw_op op = CW_OP_EPOCH_BARRIER;
  cw_recovery_mode mode = CW_RECOVER_POINT_IN_TIME;
  cw_backend backend = CW_BACKEND_SYNC;
  cw_status (*open_fn)(const char *, const cw_options *, cw_manager **) = cw_manager_open;
  const char *(*name_fn)(cw_status) = cw_status_name;
  (void)o;
  (void)ro;
  (void)e;
  (void)so;
  (void)open_fn;
  (void)name_fn;
  return (m == 0) + (w == 0) + (r == 0) + (int)op + (int)mode + (int)backend;
}
