// corewal.hpp: C++17 RAII wrapper over the corewal C API (corewal.h).
//
// Header-only, no exceptions: every fallible call returns a `Status` (code
// plus the message cw_last_error() held right after the failing call) or a
// `Result<T>` (a value or a Status). Both are [[nodiscard]].
//
//   corewal::Options options;
//   options.num_cores(4).segment_bytes(64 << 20);
//   auto manager = corewal::Manager::open("/var/lib/app/wal", options);
//   if (!manager) { log(manager.status().message()); return; }
//   auto writer = manager->writer(core_id);          // Result<Writer>
//   if (auto pos = writer->put("key", "value"); !pos) { ... }
//   if (auto st = writer->sync(); !st.ok()) { ... }
//
//   auto recovery = corewal::Recovery::open("/var/lib/app/wal");
//   corewal::Entry entry;
//   corewal::Status st;
//   while ((st = recovery->next(entry)).ok()) { replay(entry); }
//   if (!st.done()) { ... st.message() ... }
//
// Ownership
//  - `Manager` and `Recovery` own their C handle (std::unique_ptr with a
//    deleter calling cw_manager_close / cw_recovery_close); they are
//    move-only. Their destructors close and ignore the status; call close()
//    first to see it (cw_manager_close syncs every lane).
//  - `Writer` is a non-owning, copyable view of a lane borrowed from its
//    Manager. Once the Manager is closed (close() or its destructor), calls
//    through the view return CW_ERR_INVALID_ARGUMENT: the C library keeps
//    closed handles addressable for that (see "Thread safety" in corewal.h).
//    Do not close the Manager while another thread still uses a Writer.
//  - `Entry::key`/`Entry::value` and `SourceOffset::name` yielded by a
//    Recovery are views into the library's mapping, valid until the next call
//    on that Recovery or its destruction. Copy what must live longer.
//  - Append payloads are copied by the library before the call returns.
//
// Thread safety (mirrors corewal.h)
//  - A Manager may be used from any thread: writer(), epoch(),
//    advance_epoch(), sync_all() and recover() may be called concurrently
//    with each other and with appends. close() (and the destructor) only once
//    no other thread uses the manager or its writers.
//  - A Writer (lane) is used by one thread at a time; different lanes run
//    fully in parallel. A second thread entering the same lane gets
//    CW_ERR_BUSY, not undefined behaviour. position(), synced_position(),
//    sequence() and core_id() may be read from any thread at any time.
//  - A Recovery is used by one thread at a time (else CW_ERR_BUSY).
//  - Status messages come from the calling thread's cw_last_error(), read
//    immediately after the failing call, so they are never another thread's.
#ifndef COREWAL_HPP
#define COREWAL_HPP

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "corewal.h"

namespace corewal {

// The library version the header was generated for; compare with version().
inline constexpr int kVersionMajor = CW_VERSION_MAJOR;
inline constexpr int kVersionMinor = CW_VERSION_MINOR;
inline constexpr int kVersionPatch = CW_VERSION_PATCH;

// The version of the library linked at run time ("0.1.0").
[[nodiscard]] inline std::string_view version() noexcept { return cw_version(); }

// The name of a status code ("CW_ERR_CORRUPT"; "CW_UNKNOWN_STATUS" otherwise).
[[nodiscard]] inline std::string_view status_name(cw_status code) noexcept {
  return cw_status_name(code);
}

// ---------------------------------------------------------------------------
// Status and Result
// ---------------------------------------------------------------------------

// The outcome of a call: a cw_status code and, for a failure (code < 0), the
// message cw_last_error() gave right after it. CW_OK and CW_DONE carry no
// message. A value type: copy it, keep it, compare codes.
class [[nodiscard]] Status {
 public:
  Status() noexcept = default;  // CW_OK

  // A status for `code`; for a failure, captures this thread's
  // cw_last_error(). Call it right after the C call that returned `code`.
  static Status from(cw_status code) {
    if (code >= 0) return Status(code, std::string());
    return Status(code, std::string(cw_last_error()));
  }

  // A status with an explicit message (for code that fails on its own).
  static Status with_message(cw_status code, std::string message) {
    return Status(code, std::move(message));
  }

  [[nodiscard]] cw_status code() const noexcept { return code_; }
  [[nodiscard]] bool ok() const noexcept { return code_ == CW_OK; }
  [[nodiscard]] bool done() const noexcept { return code_ == CW_DONE; }
  [[nodiscard]] bool failed() const noexcept { return code_ < 0; }
  [[nodiscard]] bool is(cw_status code) const noexcept { return code_ == code; }
  [[nodiscard]] std::string_view name() const noexcept { return cw_status_name(code_); }
  [[nodiscard]] const std::string &message() const noexcept { return message_; }

  // "CW_ERR_CORRUPT: corrupt WAL: lane 0, ..." (just the name when there is
  // no message).
  [[nodiscard]] std::string to_string() const {
    std::string out(name());
    if (!message_.empty()) {
      out += ": ";
      out += message_;
    }
    return out;
  }

  friend bool operator==(const Status &a, const Status &b) noexcept { return a.code_ == b.code_; }
  friend bool operator!=(const Status &a, const Status &b) noexcept { return a.code_ != b.code_; }

 private:
  Status(cw_status code, std::string message) noexcept
      : code_(code), message_(std::move(message)) {}

  cw_status code_ = CW_OK;
  std::string message_;
};

// The same type under the name used for failures.
using Error = Status;

// A T or the Status of why there is none. `if (result)` tests for a value;
// `*result` / `result->` / `value()` reach it, and only when there is one
// (like std::optional's operator*, they do not check: no exceptions here).
template <typename T>
class [[nodiscard]] Result {
 public:
  static_assert(!std::is_reference<T>::value, "Result<T&> is not supported");

  Result(T value) noexcept(std::is_nothrow_move_constructible<T>::value)  // NOLINT: implicit
      : value_(std::move(value)) {}
  Result(Status status) : status_(std::move(status)) {  // NOLINT: implicit
    if (status_.ok()) status_ = Status::with_message(CW_ERR_INVALID_ARGUMENT, "empty Result");
  }

  [[nodiscard]] bool ok() const noexcept { return value_.has_value(); }
  explicit operator bool() const noexcept { return ok(); }

  // CW_OK when there is a value, else why not.
  [[nodiscard]] const Status &status() const noexcept { return status_; }

  [[nodiscard]] T &value() & noexcept { return *value_; }
  [[nodiscard]] const T &value() const & noexcept { return *value_; }
  [[nodiscard]] T &&value() && noexcept { return std::move(*value_); }
  [[nodiscard]] T value_or(T fallback) const & {
    return value_ ? *value_ : std::move(fallback);
  }

  T &operator*() & noexcept { return *value_; }
  const T &operator*() const & noexcept { return *value_; }
  T &&operator*() && noexcept { return std::move(*value_); }
  T *operator->() noexcept { return &*value_; }
  const T *operator->() const noexcept { return &*value_; }

 private:
  std::optional<T> value_;
  Status status_;
};

// ---------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------

enum class Backend : int32_t {
  Auto = CW_BACKEND_AUTO,
  Sync = CW_BACKEND_SYNC,
};

enum class RecoveryMode : int32_t {
  TolerateTornTail = CW_RECOVER_TOLERATE_TORN_TAIL,
  Absolute = CW_RECOVER_ABSOLUTE,
  PointInTime = CW_RECOVER_POINT_IN_TIME,
  SkipCorrupt = CW_RECOVER_SKIP_CORRUPT,
};

enum class Op : int32_t {
  Put = CW_OP_PUT,
  Delete = CW_OP_DELETE,
  Commit = CW_OP_COMMIT,
  Checkpoint = CW_OP_CHECKPOINT,
  EpochBarrier = CW_OP_EPOCH_BARRIER,
};

// cw_options with the library's defaults (cw_options_init) and chainable
// setters. See corewal.h for what each field means.
class Options {
 public:
  Options() noexcept { cw_options_init(&raw_, sizeof raw_); }

  Options &num_cores(uint32_t v) noexcept { raw_.num_cores = v; return *this; }
  Options &segment_bytes(uint64_t v) noexcept { raw_.segment_bytes = v; return *this; }
  Options &max_record_bytes(uint64_t v) noexcept { raw_.max_record_bytes = v; return *this; }
  Options &backend(Backend v) noexcept { raw_.backend = static_cast<int32_t>(v); return *this; }
  Options &recovery_mode(RecoveryMode v) noexcept {
    raw_.recovery_mode = static_cast<int32_t>(v);
    return *this;
  }
  Options &create_if_missing(bool v) noexcept { raw_.create_if_missing = v ? 1u : 0u; return *this; }
  Options &preallocate(bool v) noexcept { raw_.preallocate = v ? 1u : 0u; return *this; }
  Options &sync_every_records(uint64_t v) noexcept { raw_.sync_every_records = v; return *this; }
  Options &sync_every_bytes(uint64_t v) noexcept { raw_.sync_every_bytes = v; return *this; }
  Options &sync_interval_us(uint64_t v) noexcept { raw_.sync_interval_us = v; return *this; }
  Options &flusher_interval_us(uint64_t v) noexcept { raw_.flusher_interval_us = v; return *this; }
  Options &direct_io(bool v) noexcept { raw_.direct_io = v ? 1u : 0u; return *this; }
  Options &direct_sync(bool v) noexcept { raw_.direct_sync = v ? 1u : 0u; return *this; }

  // The C struct, for fields without a setter.
  [[nodiscard]] cw_options &raw() noexcept { return raw_; }
  [[nodiscard]] const cw_options &raw() const noexcept { return raw_; }

 private:
  cw_options raw_;
};

// cw_recovery_options with defaults (every lane, tolerate torn tails, from
// the latest checkpoint, no epoch limit). Owns its lane list.
class RecoveryOptions {
 public:
  RecoveryOptions() noexcept { cw_recovery_options_init(&raw_, sizeof raw_); }

  RecoveryOptions &mode(RecoveryMode v) noexcept { raw_.mode = static_cast<int32_t>(v); return *this; }
  RecoveryOptions &from_checkpoint(bool v) noexcept { raw_.from_checkpoint = v ? 1u : 0u; return *this; }
  RecoveryOptions &max_epoch(uint64_t v) noexcept { raw_.max_epoch = v; return *this; }
  // Only these lanes; an empty list means every lane.
  RecoveryOptions &lanes(std::vector<uint32_t> v) {
    lanes_ = std::move(v);
    return *this;
  }

  // The C struct; its `lanes` points into this object, so it is valid while
  // this object lives and is not modified.
  [[nodiscard]] cw_recovery_options c_options() const noexcept {
    cw_recovery_options out = raw_;
    out.lanes = lanes_.empty() ? nullptr : lanes_.data();
    out.lanes_len = lanes_.size();
    return out;
  }

 private:
  cw_recovery_options raw_;
  std::vector<uint32_t> lanes_;
};

// One (source name, offset) pair of a COMMIT.
struct SourceOffset {
  std::string_view name;
  uint64_t offset = 0;
};

// ---------------------------------------------------------------------------
// Writer
// ---------------------------------------------------------------------------

// The writer of one lane: a non-owning view borrowed from a Manager. Copyable;
// used by one thread at a time (see the thread-safety notes at the top).
// Appends return the record's lane position.
class Writer {
 public:
  Writer() noexcept = default;
  explicit Writer(cw_writer *raw) noexcept : raw_(raw) {}

  [[nodiscard]] Result<uint64_t> put(std::string_view key, std::string_view value) const {
    uint64_t position = 0;
    cw_status s = cw_writer_append_put(raw_, bytes(key), key.size(), bytes(value), value.size(),
                                       &position);
    return finish(s, position);
  }

  [[nodiscard]] Result<uint64_t> del(std::string_view key) const {
    uint64_t position = 0;
    cw_status s = cw_writer_append_delete(raw_, bytes(key), key.size(), &position);
    return finish(s, position);
  }

  // COMMIT(offsets, watermark); std::nullopt for no watermark.
  [[nodiscard]] Result<uint64_t> commit(const SourceOffset *offsets, std::size_t count,
                                        std::optional<int64_t> watermark = std::nullopt) const {
    constexpr std::size_t kInline = 8;
    cw_source_offset small[kInline];
    std::vector<cw_source_offset> large;
    cw_source_offset *c = small;
    if (count > kInline) {
      large.resize(count);
      c = large.data();
    }
    for (std::size_t i = 0; i < count; ++i) {
      c[i].name = offsets[i].name.data();
      c[i].name_len = offsets[i].name.size();
      c[i].offset = offsets[i].offset;
    }
    const int64_t *wm = watermark ? &*watermark : nullptr;
    uint64_t position = 0;
    cw_status s = cw_writer_append_commit(raw_, count ? c : nullptr, count, wm, &position);
    return finish(s, position);
  }
  [[nodiscard]] Result<uint64_t> commit(const std::vector<SourceOffset> &offsets,
                                        std::optional<int64_t> watermark = std::nullopt) const {
    return commit(offsets.data(), offsets.size(), watermark);
  }
  [[nodiscard]] Result<uint64_t> commit(std::initializer_list<SourceOffset> offsets,
                                        std::optional<int64_t> watermark = std::nullopt) const {
    return commit(offsets.begin(), offsets.size(), watermark);
  }

  [[nodiscard]] Result<uint64_t> checkpoint(uint64_t checkpoint_id) const {
    uint64_t position = 0;
    cw_status s = cw_writer_append_checkpoint(raw_, checkpoint_id, &position);
    return finish(s, position);
  }

  [[nodiscard]] Result<uint64_t> epoch_barrier() const {
    uint64_t position = 0;
    cw_status s = cw_writer_epoch_barrier(raw_, &position);
    return finish(s, position);
  }

  // Flushes and fdatasyncs; on success synced_position() == position().
  [[nodiscard]] Status sync() const { return Status::from(cw_writer_sync(raw_)); }

  // Starts a sync of everything appended so far; returns its token at once.
  [[nodiscard]] Result<uint64_t> sync_submit() const {
    uint64_t token = 0;
    cw_status s = cw_writer_sync_submit(raw_, &token);
    if (s != CW_OK) return Status::from(s);
    return token;
  }

  // Finished syncs, oldest first, appended to `out` (at most `max`); never
  // blocks. A completion whose status is CW_ERR_POISONED failed.
  [[nodiscard]] Status poll(std::vector<cw_completion> &out, std::size_t max = 64) const {
    std::size_t start = out.size();
    std::size_t count = 0;
    out.resize(start + max);
    cw_status s = cw_writer_poll(raw_, max ? out.data() + start : nullptr, max, &count);
    out.resize(start + (s == CW_OK ? count : 0));
    return Status::from(s);
  }

  // Blocks until sync `token` has finished.
  [[nodiscard]] Result<cw_completion> wait(uint64_t token) const {
    cw_completion done{};
    cw_status s = cw_writer_wait(raw_, token, &done);
    if (s != CW_OK) return Status::from(s);
    return done;
  }

  // cw_writer_truncate: discards the lane's records from `position` (a
  // record's position, as an append returned it) on, durably; the next
  // record takes that position and the first discarded sequence.
  // CW_ERR_INVALID_ARGUMENT, changing nothing, for any other position.
  [[nodiscard]] Status truncate(uint64_t position) const {
    return Status::from(cw_writer_truncate(raw_, position));
  }

  // Readable when poll() may have completions (an eventfd owned by the
  // writer; never close it). -1 for an empty view or a closed writer.
  [[nodiscard]] int event_fd() const noexcept { return cw_writer_event_fd(raw_); }

  // Counters; any thread, any time. 0 (core_id: UINT32_MAX) for an empty view.
  [[nodiscard]] uint64_t position() const noexcept { return cw_writer_position(raw_); }
  [[nodiscard]] uint64_t synced_position() const noexcept {
    return cw_writer_synced_position(raw_);
  }
  [[nodiscard]] uint64_t sequence() const noexcept { return cw_writer_sequence(raw_); }
  [[nodiscard]] uint32_t core_id() const noexcept { return cw_writer_core_id(raw_); }

  [[nodiscard]] cw_writer *get() const noexcept { return raw_; }
  explicit operator bool() const noexcept { return raw_ != nullptr; }

 private:
  static const uint8_t *bytes(std::string_view s) noexcept {
    return reinterpret_cast<const uint8_t *>(s.data());
  }
  static Result<uint64_t> finish(cw_status s, uint64_t position) {
    if (s == CW_OK) return position;
    return Status::from(s);
  }

  cw_writer *raw_ = nullptr;
};

// ---------------------------------------------------------------------------
// Recovery
// ---------------------------------------------------------------------------

// One record yielded by Recovery::next. `key`, `value` (and the names of
// Recovery::offset) view the library's mapping: valid until the next call on
// the Recovery or its destruction.
struct Entry {
  uint64_t epoch = 0;
  int64_t timestamp_ns = 0;
  uint64_t sequence = 0;
  uint64_t position = 0;
  uint32_t core_id = 0;
  Op op = Op::Put;
  std::string_view key;    // PUT, DELETE
  std::string_view value;  // PUT
  uint64_t checkpoint_id = 0;            // CHECKPOINT
  std::optional<int64_t> watermark;      // COMMIT
  std::size_t offsets_len = 0;           // COMMIT: read with Recovery::offset
  cw_entry raw{};                        // the C entry, as returned
};

// A read-only iterator over a WAL in (epoch, timestamp_ns, core_id, sequence)
// order. Move-only owner of a cw_recovery; one thread at a time.
class Recovery {
 public:
  Recovery() noexcept = default;
  // Takes ownership of a handle from the C API.
  explicit Recovery(cw_recovery *raw) noexcept : handle_(raw) {}

  // cw_recovery_open: takes no lock, never modifies the directory.
  [[nodiscard]] static Result<Recovery> open(const std::string &dir,
                                             const RecoveryOptions &options = RecoveryOptions()) {
    cw_recovery_options c = options.c_options();
    cw_recovery *raw = nullptr;
    cw_status s = cw_recovery_open(dir.c_str(), &c, &raw);
    if (s != CW_OK) return Status::from(s);
    return Recovery(raw);
  }

  // The next record into `entry`: ok() (an entry), done() (no more; `entry`
  // untouched) or a failure (CW_ERR_CORRUPT, CW_ERR_IO, ...).
  [[nodiscard]] Status next(Entry &entry) {
    cw_entry e;
    cw_status s = cw_recovery_next(handle_.get(), &e);
    if (s != CW_OK) return Status::from(s);
    entry.epoch = e.epoch;
    entry.timestamp_ns = e.timestamp_ns;
    entry.sequence = e.sequence;
    entry.position = e.position;
    entry.core_id = e.core_id;
    entry.op = static_cast<Op>(e.op);
    entry.key = view(e.key, e.key_len);
    entry.value = view(e.value, e.value_len);
    entry.checkpoint_id = e.checkpoint_id;
    entry.watermark = e.has_watermark ? std::optional<int64_t>(e.watermark) : std::nullopt;
    entry.offsets_len = e.offsets_len;
    entry.raw = e;
    return Status();
  }

  // Source offset `index` of the COMMIT entry next() yielded last.
  [[nodiscard]] Result<SourceOffset> offset(std::size_t index) const {
    cw_source_offset o;
    cw_status s = cw_recovery_entry_offset(handle_.get(), index, &o);
    if (s != CW_OK) return Status::from(s);
    SourceOffset out;
    out.name = std::string_view(o.name, o.name_len);
    out.offset = o.offset;
    return out;
  }

  // What the iterator reads from each lane it reads, in lane order
  // (cw_recovery_stats): known from open, before the first record.
  [[nodiscard]] Result<std::vector<cw_lane_stats>> stats() const {
    std::size_t count = 0;
    cw_status s = cw_recovery_stats(handle_.get(), nullptr, 0, &count);
    if (s != CW_OK) return Status::from(s);
    std::vector<cw_lane_stats> out(count);
    s = cw_recovery_stats(handle_.get(), out.data(), out.size(), &count);
    if (s != CW_OK) return Status::from(s);
    return out;
  }

  // The ranges RecoveryMode::SkipCorrupt skipped in lane `core_id`, in lane
  // order (cw_recovery_damaged_range); CW_ERR_NOT_FOUND for a lane the
  // iterator does not read.
  [[nodiscard]] Result<std::vector<cw_damaged_range>> damaged_ranges(uint32_t core_id) const {
    Result<std::vector<cw_lane_stats>> lanes = stats();
    if (!lanes) return lanes.status();
    for (const cw_lane_stats &lane : *lanes) {
      if (lane.core_id != core_id) continue;
      std::vector<cw_damaged_range> out(static_cast<std::size_t>(lane.damaged_ranges));
      for (std::size_t i = 0; i < out.size(); ++i) {
        cw_status s = cw_recovery_damaged_range(handle_.get(), core_id, i, &out[i]);
        if (s != CW_OK) return Status::from(s);
      }
      return out;
    }
    cw_damaged_range none;
    return Status::from(cw_recovery_damaged_range(handle_.get(), core_id, 0, &none));
  }

  // Closes now (the destructor does it otherwise). Safe to call twice.
  void close() noexcept { handle_.reset(); }

  [[nodiscard]] cw_recovery *get() const noexcept { return handle_.get(); }
  explicit operator bool() const noexcept { return handle_ != nullptr; }

 private:
  static std::string_view view(const uint8_t *p, std::size_t n) noexcept {
    return p ? std::string_view(reinterpret_cast<const char *>(p), n) : std::string_view();
  }
  struct Close {
    void operator()(cw_recovery *r) const noexcept { cw_recovery_close(r); }
  };
  std::unique_ptr<cw_recovery, Close> handle_;
};

// ---------------------------------------------------------------------------
// Manager
// ---------------------------------------------------------------------------

// An open WAL directory: move-only owner of a cw_manager.
class Manager {
 public:
  Manager() noexcept = default;
  // Takes ownership of a handle from the C API.
  explicit Manager(cw_manager *raw) noexcept : handle_(raw) {}

  // cw_manager_open: opens or creates the WAL in `dir`, takes its lock and
  // repairs torn tails. CW_ERR_LOCKED if another manager has it open.
  [[nodiscard]] static Result<Manager> open(const std::string &dir,
                                            const Options &options = Options()) {
    cw_manager *raw = nullptr;
    cw_status s = cw_manager_open(dir.c_str(), &options.raw(), &raw);
    if (s != CW_OK) return Status::from(s);
    return Manager(raw);
  }

  // The writer of lane `core_id` (a view; it dies with this manager).
  [[nodiscard]] Result<Writer> writer(uint32_t core_id) const {
    cw_writer *w = nullptr;
    cw_status s = cw_manager_writer(handle_.get(), core_id, &w);
    if (s != CW_OK) return Status::from(s);
    return Writer(w);
  }

  [[nodiscard]] uint32_t num_cores() const noexcept { return cw_manager_num_cores(handle_.get()); }
  [[nodiscard]] uint64_t epoch() const noexcept { return cw_manager_epoch(handle_.get()); }

  // Starts the next epoch and returns it; safe concurrently with appends.
  [[nodiscard]] Result<uint64_t> advance_epoch() const {
    uint64_t epoch = 0;
    cw_status s = cw_manager_advance_epoch(handle_.get(), &epoch);
    if (s != CW_OK) return Status::from(s);
    return epoch;
  }

  [[nodiscard]] Status sync_all() const { return Status::from(cw_manager_sync_all(handle_.get())); }

  // cw_manager_reset: empties every lane and removes the checkpoint;
  // positions and sequences carry on and Writer views stay valid.
  // CW_ERR_BUSY, changing nothing, while another thread uses a writer.
  [[nodiscard]] Status reset() const { return Status::from(cw_manager_reset(handle_.get())); }

  // The backend in use (CW_BACKEND_SYNC or CW_BACKEND_IO_URING) and why
  // CW_BACKEND_AUTO fell back ("" when it did not).
  [[nodiscard]] cw_backend backend() const noexcept {
    return static_cast<cw_backend>(cw_manager_backend(handle_.get()));
  }
  [[nodiscard]] std::string_view backend_reason() const noexcept {
    return cw_manager_backend_reason(handle_.get());
  }

  // A recovery iterator over what the lanes hold on disk; close it before
  // the manager.
  [[nodiscard]] Result<Recovery> recover(const RecoveryOptions &options = RecoveryOptions()) const {
    cw_recovery_options c = options.c_options();
    cw_recovery *raw = nullptr;
    cw_status s = cw_manager_recover(handle_.get(), &c, &raw);
    if (s != CW_OK) return Status::from(s);
    return Recovery(raw);
  }

  // Syncs every lane and releases the manager; reports the first failure.
  // Afterwards this object is empty. Closing an empty Manager is CW_OK.
  [[nodiscard]] Status close() {
    cw_manager *raw = handle_.release();
    return Status::from(cw_manager_close(raw));
  }

  [[nodiscard]] cw_manager *get() const noexcept { return handle_.get(); }
  explicit operator bool() const noexcept { return handle_ != nullptr; }

 private:
  struct Close {
    void operator()(cw_manager *m) const noexcept { (void)cw_manager_close(m); }
  };
  std::unique_ptr<cw_manager, Close> handle_;
};

static_assert(!std::is_copy_constructible<Manager>::value, "Manager is move-only");
static_assert(std::is_nothrow_move_constructible<Manager>::value, "Manager moves cheaply");
static_assert(!std::is_copy_constructible<Recovery>::value, "Recovery is move-only");
static_assert(std::is_trivially_copyable<Writer>::value, "Writer is a plain view");

}  // namespace corewal

#endif  // COREWAL_HPP
