// corewal.hpp end to end: open a Manager, append on two threads through two
// Writers (PUT, DELETE, COMMIT with offsets and watermark, CHECKPOINT), sync,
// then recover with Recovery and check the global order and every field.
// Also: Status/Result carry the failing call's code and message; Manager and
// Recovery are move-only owners; a closed manager's writer reports
// CW_ERR_INVALID_ARGUMENT; RecoveryOptions lanes/max_epoch; Recovery stats.
#include "harness.h"

#include <atomic>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <vector>

#include "corewal.hpp"

static_assert(!std::is_copy_assignable<corewal::Manager>::value, "move-only");
static_assert(std::is_move_assignable<corewal::Recovery>::value, "movable");

namespace {

constexpr int kPerLane = 2000;

std::string key_of(uint32_t lane, int i) {
  return "lane" + std::to_string(lane) + "/" + std::to_string(i);
}

std::string value_of(uint32_t lane, int i) {
  std::string v(static_cast<size_t>(i % 97), static_cast<char>('a' + lane));
  v.push_back('\0');  // binary-safe: views carry lengths, not terminators
  v += std::to_string(i);
  return v;
}

std::atomic<int> g_ready{0};

void append_lane(corewal::Writer w) {
  const uint32_t lane = w.core_id();
  // Start both lanes together so their records interleave in time.
  g_ready.fetch_add(1);
  while (g_ready.load() < 2) std::this_thread::yield();
  for (int i = 0; i < kPerLane; ++i) {
    const uint64_t before = w.position();
    corewal::Result<uint64_t> pos = w.put("x", "y");  // a scratch PUT before each record
    CHECK_MSG(pos.ok() && *pos == before, "scratch append %d on lane %u", i, lane);
    switch (i % 10) {
      case 3:
        pos = w.del(key_of(lane, i));
        break;
      case 5:
        pos = w.commit({{"topic", static_cast<uint64_t>(i)}, {key_of(lane, i), 7}},
                       i % 20 == 5 ? std::optional<int64_t>(-i) : std::nullopt);
        break;
      case 9:
        pos = w.checkpoint(static_cast<uint64_t>(i));
        break;
      default:
        pos = w.put(key_of(lane, i), value_of(lane, i));
    }
    CHECK_MSG(pos.ok(), "append %d on lane %u: %s", i, lane, pos.status().to_string().c_str());
    CHECK(*pos > before);  // after the scratch PUT
  }
  corewal::Status st = w.sync();
  CHECK_MSG(st.ok(), "sync: %s", st.to_string().c_str());
  CHECK_EQ(w.synced_position(), w.position());

}

// The asynchronous path on its own WAL: submit, poll until the token shows
// up with its boundary, then submit and wait.
void check_async(const std::string &dir) {
  corewal::Options options;
  options.num_cores(1).segment_bytes(65536);
  corewal::Result<corewal::Manager> opened = corewal::Manager::open(dir, options);
  CHECK_MSG(opened.ok(), "%s", opened.status().to_string().c_str());
  corewal::Result<corewal::Writer> writer = opened->writer(0);
  CHECK(writer.ok());
  corewal::Writer w = *writer;
  CHECK(w.event_fd() >= 0);
  CHECK(w.put("async", "tail").ok());
  uint64_t boundary = w.position();
  corewal::Result<uint64_t> token = w.sync_submit();
  CHECK_MSG(token.ok(), "%s", token.status().to_string().c_str());
  std::vector<cw_completion> done;
  for (int round = 0; round < 5000 && done.empty(); round++) {
    CHECK(w.poll(done).ok());
    if (done.empty()) cwt_sleep_ms(1);
  }
  CHECK_EQ(done.size(), 1u);
  CHECK_EQ(done[0].token, *token);
  CHECK_EQ(done[0].synced_position, boundary);
  CHECK_EQ(done[0].status, CW_OK);
  corewal::Result<uint64_t> second = w.sync_submit();
  CHECK(second.ok());
  corewal::Result<cw_completion> waited = w.wait(*second);
  CHECK_MSG(waited.ok(), "%s", waited.status().to_string().c_str());
  CHECK_EQ(waited->token, *second);
  CHECK(opened->close().ok());
}

// Truncate and reset through the wrapper, on their own WAL.
void check_truncate_and_reset(const std::string &dir) {
  corewal::Options options;
  options.num_cores(1).segment_bytes(65536);
  corewal::Result<corewal::Manager> opened = corewal::Manager::open(dir, options);
  CHECK_MSG(opened.ok(), "%s", opened.status().to_string().c_str());
  corewal::Writer w = opened->writer(0).value_or(corewal::Writer());
  CHECK(w.put("a", "kept").ok());
  corewal::Result<uint64_t> b = w.put("b", "discarded");
  CHECK(b.ok());
  CHECK(w.put("c", "discarded").ok());
  CHECK(w.truncate(*b + 1).is(CW_ERR_INVALID_ARGUMENT));
  corewal::Status st = w.truncate(*b);
  CHECK_MSG(st.ok(), "%s", st.to_string().c_str());
  CHECK_EQ(w.position(), *b);
  CHECK_EQ(w.sequence(), 1);
  CHECK(w.put("d", "after").value_or(0) == *b);
  st = opened->reset();
  CHECK_MSG(st.ok(), "%s", st.to_string().c_str());
  CHECK_EQ(w.sequence(), 2);
  {
    auto live = opened->recover();
    CHECK(live.ok());
    corewal::Entry e;
    CHECK(live->next(e).done());
  }
  CHECK(opened->close().ok());
}

}  // namespace

// The direct-write setters reach the C struct; the defaults are direct
// writes before syncs, and no direct_io.
void check_direct_setters() {
  corewal::Options options;
  CHECK_EQ(options.raw().direct_sync, 1u);
  CHECK_EQ(options.raw().direct_io, 0u);
  options.direct_sync(false).direct_io(true);
  CHECK_EQ(options.raw().direct_sync, 0u);
  CHECK_EQ(options.raw().direct_io, 1u);
}

int main() {
  const std::string dir = std::string(cwt_tmpdir()) + "/wal";
  check_direct_setters();
  corewal::Options options;
  options.num_cores(2).segment_bytes(65536).preallocate(true);

  // Open, and a second open of the same directory fails with its message.
  corewal::Result<corewal::Manager> opened = corewal::Manager::open(dir, options);
  CHECK_MSG(opened.ok(), "%s", opened.status().to_string().c_str());
  corewal::Manager manager = std::move(*opened);
  CHECK(manager);
  CHECK(manager.backend() == CW_BACKEND_SYNC || manager.backend() == CW_BACKEND_IO_URING);
  CHECK(manager.backend() == CW_BACKEND_IO_URING || !manager.backend_reason().empty());
  CHECK_EQ(manager.num_cores(), 2);
  {
    auto again = corewal::Manager::open(dir, options);
    CHECK(!again);
    CHECK(again.status().is(CW_ERR_LOCKED));
    CHECK(again.status().failed());
    CHECK(again.status().name() == "CW_ERR_LOCKED");
    CHECK(again.status().message().find("locked") != std::string::npos);
    CHECK(again.status().to_string().rfind("CW_ERR_LOCKED: ", 0) == 0);
  }
  {
    auto bad = manager.writer(2);
    CHECK(!bad);
    CHECK(bad.status().is(CW_ERR_INVALID_ARGUMENT));
    CHECK(!bad.status().message().empty());
  }

  const uint64_t epoch = manager.epoch();
  {
    auto w0 = manager.writer(0);
    auto w1 = manager.writer(1);
    CHECK(w0.ok() && w1.ok());
    CHECK_EQ(w0->core_id(), 0);
    std::thread t0(append_lane, *w0);
    std::thread t1(append_lane, *w1);
    t0.join();
    t1.join();
    // Each lane: kPerLane scratch PUTs plus kPerLane real records.
    CHECK_EQ(w0->sequence(), 2 * kPerLane);
    CHECK_EQ(w1->sequence(), 2 * kPerLane);
  }

  // A Manager moves; the moved-from one is empty and closes as CW_OK.
  corewal::Manager moved = std::move(manager);
  CHECK(!manager);  // NOLINT: checking the moved-from state on purpose
  CHECK(manager.close().ok());
  corewal::Writer w0 = moved.writer(0).value_or(corewal::Writer());
  CHECK(w0);
  corewal::Status closed = moved.close();
  CHECK_MSG(closed.ok(), "%s", closed.to_string().c_str());
  CHECK(!moved);
  {
    auto late = w0.put("k", "v");
    CHECK(!late);
    CHECK(late.status().is(CW_ERR_INVALID_ARGUMENT));
  }

  // Recover everything and check order and contents.
  auto recovery = corewal::Recovery::open(dir);
  CHECK_MSG(recovery.ok(), "%s", recovery.status().to_string().c_str());
  corewal::Entry e;
  corewal::Status st;
  std::tuple<uint64_t, int64_t, uint32_t, uint64_t> prev{0, 0, 0, 0};
  uint64_t next_seq[2] = {0, 0};
  uint64_t count = 0;
  while ((st = recovery->next(e)).ok()) {
    auto key = std::make_tuple(e.epoch, e.timestamp_ns, e.core_id, e.sequence);
    if (count > 0) CHECK(prev < key);
    prev = key;
    CHECK(e.core_id < 2);
    CHECK_EQ(e.epoch, epoch);
    CHECK_EQ(e.sequence, next_seq[e.core_id]);
    next_seq[e.core_id]++;
    const int i = static_cast<int>(e.sequence / 2);
    if (e.sequence % 2 == 0) {  // scratch PUT
      CHECK(e.op == corewal::Op::Put);
      CHECK(e.key == "x" && e.value == "y");
    } else {
      switch (i % 10) {
        case 3:
          CHECK(e.op == corewal::Op::Delete);
          CHECK(e.key == key_of(e.core_id, i));
          CHECK(e.value.empty());
          break;
        case 5: {
          CHECK(e.op == corewal::Op::Commit);
          CHECK_EQ(e.offsets_len, 2);
          auto o0 = recovery->offset(0);
          auto o1 = recovery->offset(1);
          CHECK(o0.ok() && o1.ok());
          CHECK(o0->name == "topic" && o0->offset == static_cast<uint64_t>(i));
          CHECK(o1->name == key_of(e.core_id, i) && o1->offset == 7);
          CHECK(recovery->offset(2).status().is(CW_ERR_NOT_FOUND));
          if (i % 20 == 5) {
            CHECK(e.watermark.has_value() && *e.watermark == -i);
          } else {
            CHECK(!e.watermark.has_value());
          }
          break;
        }
        case 9:
          CHECK(e.op == corewal::Op::Checkpoint);
          CHECK_EQ(e.checkpoint_id, i);
          break;
        default:
          CHECK(e.op == corewal::Op::Put);
          CHECK(e.key == key_of(e.core_id, i));
          CHECK(e.value == value_of(e.core_id, i));
      }
    }
    count++;
  }
  CHECK_MSG(st.done(), "recovery ended with %s", st.to_string().c_str());
  CHECK_EQ(count, 4 * kPerLane);
  CHECK(recovery->next(e).done());

  // Statistics: per lane, in lane order; a clean WAL has no damage.
  {
    auto stats = recovery->stats();
    CHECK_MSG(stats.ok(), "%s", stats.status().to_string().c_str());
    CHECK_EQ(stats->size(), 2);
    for (uint32_t lane = 0; lane < 2; ++lane) {
      const cw_lane_stats &s = (*stats)[lane];
      CHECK_EQ(s.core_id, lane);
      CHECK_EQ(s.records, 2 * kPerLane);
      CHECK_EQ(s.has_records, 1);
      CHECK_EQ(s.first_epoch, epoch);
      CHECK_EQ(s.torn_tail, 0);
      CHECK_EQ(s.damaged_ranges, 0);
      auto ranges = recovery->damaged_ranges(lane);
      CHECK(ranges.ok() && ranges->empty());
    }
    CHECK(recovery->damaged_ranges(5).status().is(CW_ERR_NOT_FOUND));
    auto skipping = corewal::Recovery::open(
        dir, corewal::RecoveryOptions().mode(corewal::RecoveryMode::SkipCorrupt));
    CHECK(skipping.ok());
    auto skipped = skipping->stats();
    CHECK(skipped.ok() && skipped->size() == 2 && (*skipped)[1].records == 2 * kPerLane);
  }

  // Options: only lane 1; nothing past epoch 0.
  {
    auto only1 = corewal::Recovery::open(dir, corewal::RecoveryOptions().lanes({1}));
    CHECK(only1.ok());
    uint64_t n = 0;
    while ((st = only1->next(e)).ok()) {
      CHECK_EQ(e.core_id, 1);
      n++;
    }
    CHECK(st.done());
    CHECK_EQ(n, 2 * kPerLane);
    auto none = corewal::Recovery::open(dir, corewal::RecoveryOptions().max_epoch(epoch - 1));
    CHECK(none.ok());
    CHECK(none->next(e).done());
    auto missing = corewal::Recovery::open(dir, corewal::RecoveryOptions().lanes({0, 5}));
    CHECK(missing.status().is(CW_ERR_INVALID_ARGUMENT));
  }

  // A moved Recovery keeps iterating; closing is idempotent.
  corewal::Recovery r2 = std::move(*corewal::Recovery::open(dir));
  CHECK(r2.next(e).ok());
  corewal::Recovery r3 = std::move(r2);
  CHECK(r3.next(e).ok());
  r3.close();
  r3.close();
  CHECK(!r3);

  // Reopen through the wrapper: sequences continue.
  {
    auto again = corewal::Manager::open(dir, corewal::Options());
    CHECK_MSG(again.ok(), "%s", again.status().to_string().c_str());
    CHECK_EQ(again->writer(1)->sequence(), 2 * kPerLane);
    CHECK(again->advance_epoch().value_or(0) == epoch + 1);
    CHECK(again->sync_all().ok());
    auto live = again->recover();
    CHECK(live.ok());
    CHECK(live->next(e).ok());
  }  // Recovery, then Manager, destroyed in that order

  check_async(std::string(cwt_tmpdir()) + "/async");
  check_truncate_and_reset(std::string(cwt_tmpdir()) + "/truncate");

  CHECK(corewal::version() == CW_VERSION_STRING);
  CHECK(corewal::status_name(CW_ERR_BUSY) == "CW_ERR_BUSY");
  std::printf("cxx wrapper: %llu records in order through corewal.hpp\n",
              static_cast<unsigned long long>(count));
  return 0;
}
