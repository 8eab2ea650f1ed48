// corewal.hpp must compile on its own as C++17 with -Wall -Wextra -pedantic
// -Werror. Built by the ctest case header_hpp_cxx17.
#include "corewal.hpp"

int corewal_hpp_probe();
int corewal_hpp_probe() {
  corewal::Options options;
  options.num_cores(2);
  return static_cast<int>(options.raw().num_cores);
}
