/*
 * The version macros agree with each other and with cw_version().
 */
#include "harness.h"

#if CW_VERSION_NUMBER != CW_VERSION_MAJOR * 10000 + CW_VERSION_MINOR * 100 + CW_VERSION_PATCH
#error "CW_VERSION_NUMBER does not match MAJOR/MINOR/PATCH"
#endif

int main(void) {
  char expected[64];
  const char *v = cw_version();
  CHECK(v != NULL);
  CHECK_STR_EQ(v, CW_VERSION_STRING);
  snprintf(expected, sizeof expected, "%d.%d.%d", CW_VERSION_MAJOR, CW_VERSION_MINOR,
           CW_VERSION_PATCH);
  CHECK_STR_EQ(CW_VERSION_STRING, expected);
  CHECK_EQ(CW_VERSION_NUMBER, CW_VERSION_MAJOR * 10000 + CW_VERSION_MINOR * 100 + CW_VERSION_PATCH);
  CHECK(CW_VERSION_MINOR < 100 && CW_VERSION_PATCH < 100);
  /* A static string: the same pointer every time. */
  CHECK(cw_version() == v);
  printf("version: %s\n", v);
  return 0;
}
