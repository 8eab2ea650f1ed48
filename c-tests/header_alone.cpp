// corewal.h must compile on its own as C++17 with -Wall -Wextra -pedantic
// -Werror, with its declarations inside extern "C". Built by the ctest case
// header_cxx17.
#include "corewal.h"

#include <type_traits>

static_assert(std::is_same<cw_status, int32_t>::value, "cw_status is int32_t");
static_assert(std::is_same<std::underlying_type<cw_backend>::type, int32_t>::value,
              "enums cross the ABI as int32_t");
static_assert(std::is_same<std::underlying_type<cw_op>::type, int32_t>::value, "cw_op is int32_t");
static_assert(std::is_same<std::underlying_type<cw_recovery_mode>::type, int32_t>::value,
              "cw_recovery_mode is int32_t");
static_assert(std::is_standard_layout<cw_options>::value && std::is_trivial<cw_options>::value,
              "cw_options is a plain C struct");
static_assert(std::is_standard_layout<cw_entry>::value && std::is_trivial<cw_entry>::value,
              "cw_entry is a plain C struct");
static_assert(CW_VERSION_NUMBER ==
                  CW_VERSION_MAJOR * 10000 + CW_VERSION_MINOR * 100 + CW_VERSION_PATCH,
              "version number");

// A C++ function pointer to an extern "C" function: the declarations carry C
// linkage, so a C++ caller links against the C symbols.
extern "C" typedef cw_status open_fn_t(const char *, const cw_options *, cw_manager **);
int corewal_header_probe();
int corewal_header_probe() {
  open_fn_t *open_fn = &cw_manager_open;
  const char *(*name_fn)(cw_status) = &cw_status_name;
  return (open_fn != nullptr) + (name_fn != nullptr);
}
