// Second translation unit of the two-unit link test (see two_units_a.cpp).
#include "harness.h"

#include <string>

#include "corewal.hpp"

corewal::Result<uint64_t> append_and_count(corewal::Manager &manager, const std::string &dir);

corewal::Result<uint64_t> append_and_count(corewal::Manager &manager, const std::string &dir) {
  auto writer = manager.writer(0);
  if (!writer) return writer.status();
  for (const char *key : {"a", "b", "c"}) {
    auto pos = writer->put(key, "value");
    if (!pos) return pos.status();
  }
  if (corewal::Status st = manager.close(); !st.ok()) return st;
  auto recovery = corewal::Recovery::open(dir);
  if (!recovery) return recovery.status();
  corewal::Entry entry;
  uint64_t n = 0;
  corewal::Status st;
  while ((st = recovery->next(entry)).ok()) n++;
  if (!st.done()) return st;
  return n;
}
