// Two translation units that both include corewal.hpp, linked into one
// program: a non-inline definition in the header would be a duplicate symbol
// here. The Manager is made in this unit and used in the other.
#include "harness.h"

#include <string>

#include "corewal.hpp"

// Defined in two_units_b.cpp.
corewal::Result<uint64_t> append_and_count(corewal::Manager &manager, const std::string &dir);

int main() {
  const std::string dir = std::string(cwt_tmpdir()) + "/wal";
  auto manager = corewal::Manager::open(dir, corewal::Options().num_cores(1).segment_bytes(65536));
  CHECK_MSG(manager.ok(), "%s", manager.status().to_string().c_str());
  corewal::Result<uint64_t> count = append_and_count(*manager, dir);
  CHECK_MSG(count.ok(), "%s", count.status().to_string().c_str());
  CHECK_EQ(*count, 3);
  CHECK(corewal::version() == CW_VERSION_STRING);
  std::printf("two units: corewal.hpp links from two translation units\n");
  return 0;
}
