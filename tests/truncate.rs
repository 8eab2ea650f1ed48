//! Truncation (`cw_writer_truncate`) and reset (`cw_manager_reset`) of SPEC
//! §5: what they keep and discard, their argument checks, in-flight syncs,
//! poisoning, and crashes right after and in the middle of them. Scenarios
//! run on the fault-injecting backend and on real files through both
//! backends; crashes only on the fault-injecting one.

mod common;

use std::path::Path;

use common::*;
use corewal::checkpoint::{MANIFEST_FILE, RESET_FILE};
use corewal::format::SegmentHeader;
use corewal::io::{FaultOp, Io};
use corewal::segment::{list_segments, segment_path};
use corewal::{
    Backend, Error, FileIo, Manager, MemIo, Options, Recovery, RecoveryMode, RecoveryOptions,
};

const BACKENDS: [Backend; 2] = [Backend::Sync, Backend::IoUring];

/// Opens the WAL of a scenario with this many lanes.
type Open<'a, I> = &'a dyn Fn(u32) -> Manager<I>;

/// Runs `scenario` on the in-memory backend, then on real files through the
/// sync and the io_uring backend, each through the page cache and with
/// direct I/O.
macro_rules! on_every_backend {
    ($scenario:ident) => {{
        let io = MemIo::new();
        $scenario(&io, dir(), &|lanes| open(&io, lanes));
        for (backend, direct_io) in BACKENDS.into_iter().flat_map(|b| [(b, false), (b, true)]) {
            let tmp = tempfile::tempdir().unwrap();
            let wal = tmp.path().join("wal");
            $scenario(&FileIo::default(), &wal, &|lanes| {
                let m = Manager::open(
                    &wal,
                    &Options {
                        backend,
                        direct_io,
                        ..options(lanes)
                    },
                )
                .unwrap();
                assert_eq!(m.backend().backend, backend, "{backend:?} was not used");
                assert_eq!(m.backend().direct_io, direct_io);
                m
            });
        }
    }};
}

/// Lane, sequence, timestamp and op of each record, in recovery order.
type Entries = Vec<(u32, u64, i64, String)>;

fn entries<I: Io>(io: &I, dir: &Path, from_checkpoint: bool) -> Entries {
    let opts = RecoveryOptions {
        from_checkpoint,
        ..Default::default()
    };
    let mut recovery = Recovery::open(io.clone(), dir, &opts).unwrap();
    let mut out = Vec::new();
    while let Some(e) = recovery.next().unwrap() {
        // Short enough for a readable failure; keys tell records apart.
        let mut op = describe(&e.op);
        op.truncate(24);
        out.push((e.core_id, e.sequence, e.timestamp_ns, op));
    }
    out
}

fn ops(entries: &[(u32, u64, i64, String)]) -> Vec<&str> {
    entries.iter().map(|e| e.3.as_str()).collect()
}

/// Base position of segment `index` of `core`; `None` for an unused one.
fn segment_base<I: Io>(io: &I, dir: &Path, core: u32, index: u64) -> Option<u64> {
    let bytes = io.read_all(&segment_path(dir, core, index)).unwrap();
    SegmentHeader::decode(&bytes).ok().map(|h| h.base_position)
}

fn segments<I: Io>(io: &I, dir: &Path, core: u32) -> Vec<u64> {
    list_segments(io, dir, core + 1)
        .unwrap()
        .0
        .swap_remove(core as usize)
}

/// Started segments of lane `core`: (index, base).
fn started<I: Io>(io: &I, dir: &Path, core: u32) -> Vec<(u64, u64)> {
    segments(io, dir, core)
        .into_iter()
        .filter_map(|i| segment_base(io, dir, core, i).map(|b| (i, b)))
        .collect()
}

fn put_all(w: &corewal::Writer<impl Io>, tag: &str, n: usize, value: &[u8]) -> Vec<u64> {
    (0..n)
        .map(|i| w.append_put(format!("{tag}{i}").as_bytes(), value).unwrap())
        .collect()
}

/// `n` records of 700 bytes, each synced before the next is appended, so
/// their frames carry rising durable marks. Returns their positions.
fn put_each_synced(w: &corewal::Writer<impl Io>, n: u32) -> Vec<u64> {
    (0..n)
        .map(|i| {
            let p = w
                .append_put(format!("k{i}").as_bytes(), &[b'v'; 700])
                .unwrap();
            w.sync().unwrap();
            p
        })
        .collect()
}

fn middle_record_then_append<I: Io>(io: &I, dir: &Path, open: Open<'_, I>) {
    let m = open(1);
    let w = m.writer(0).unwrap();
    let positions = put_all(w, "k", 10, b"old");
    w.sync().unwrap();
    w.truncate(positions[4]).unwrap();
    assert_eq!(w.position(), positions[4]);
    assert_eq!(
        w.sequence(),
        4,
        "the next record takes the first discarded sequence"
    );
    assert_eq!(w.synced_position(), positions[4], "min(synced, position)");
    let new = put_all(w, "n", 3, b"new");
    assert_eq!(new[0], positions[4], "the next record takes its position");
    m.close().unwrap();
    drop(m);
    let got = entries(io, dir, true);
    assert_eq!(
        ops(&got),
        [
            "put k0 old",
            "put k1 old",
            "put k2 old",
            "put k3 old",
            "put n0 new",
            "put n1 new",
            "put n2 new"
        ]
    );
    assert_eq!(
        got.iter().map(|e| e.1).collect::<Vec<_>>(),
        (0..7).collect::<Vec<_>>()
    );
    assert!(
        got.windows(2).all(|p| p[0].2 <= p[1].2),
        "timestamps never go backwards"
    );
    let m = open(1);
    assert_eq!(
        m.writer(0).unwrap().sequence(),
        7,
        "the sequence continues after reopen"
    );
}

#[test]
fn truncate_to_a_middle_record_then_append_continues_the_sequence() {
    on_every_backend!(middle_record_then_append);
}

fn across_segments<I: Io>(io: &I, dir: &Path, open: Open<'_, I>) {
    let m = open(1);
    let w = m.writer(0).unwrap();
    // About 4 KiB a record: three to a 16 KiB segment.
    let big = vec![b'x'; 4000];
    let positions = put_all(w, "k", 15, &big);
    w.sync().unwrap();
    let before = started(io, dir, 0);
    assert!(before.len() >= 5, "{before:?}");
    // A record inside segment 1, not its first.
    let (_, base1) = before[1];
    let cut = positions
        .iter()
        .position(|&p| p > base1)
        .expect("segment 1 holds records");
    w.truncate(positions[cut]).unwrap();
    assert_eq!((w.position(), w.sequence()), (positions[cut], cut as u64));
    for index in segments(io, dir, 0).into_iter().filter(|&i| i > 1) {
        // Only an unused, prepared next segment may stay.
        assert_eq!(index, 2, "segment {index} survived");
        let bytes = io.read_all(&segment_path(dir, 0, 2)).unwrap();
        assert!(bytes.iter().all(|&b| b == 0), "segment 2 is not unused");
    }
    let again = put_all(w, "n", 7, &big);
    w.sync().unwrap();
    // Now exactly at a segment's first record: the segment stays, empty.
    let (index, base) = *started(io, dir, 0).last().unwrap();
    assert!(index >= 2);
    let at = again
        .iter()
        .position(|&p| p == base)
        .expect("a record starts it");
    let current_epoch = m.epoch();
    w.truncate(base).unwrap();
    assert_eq!(w.sequence(), (cut + at) as u64);
    assert_eq!(started(io, dir, 0).last().unwrap().0, index);
    // The last record kept ends the previous segment: its epoch is known,
    // so the next epoch still gets its barrier.
    assert_eq!(m.advance_epoch().unwrap(), current_epoch + 1);
    w.append_put(b"last", b"in a new epoch").unwrap();
    m.close().unwrap();
    drop(m);
    let got = entries(io, dir, false);
    let mut want: Vec<String> = (0..cut).map(|i| format!("put k{i} ")).collect();
    want.extend((0..at).map(|i| format!("put n{i} ")));
    want.push("barrier".into());
    want.push("put last in a new epoch".into());
    assert_eq!(got.len(), want.len(), "{:?}", ops(&got));
    for (e, w) in got.iter().zip(&want) {
        assert!(e.3.starts_with(w.as_str()), "{} is not {w}", e.3);
    }
    assert_eq!(
        got.iter().map(|e| e.1).collect::<Vec<_>>(),
        (0..want.len() as u64).collect::<Vec<_>>()
    );
}

#[test]
fn truncate_across_a_segment_boundary_removes_later_segments() {
    on_every_backend!(across_segments);
}

#[test]
fn truncate_to_the_lane_start_empties_the_lane() {
    let io = MemIo::new();
    let m = open(&io, 1);
    let w = m.writer(0).unwrap();
    put_all(w, "k", 30, &[b'x'; 1000]);
    w.truncate(0).unwrap();
    assert_eq!((w.position(), w.sequence()), (0, 0));
    assert_eq!(segments(&io, dir(), 0).first(), Some(&0));
    w.append_put(b"a", b"fresh").unwrap();
    m.close().unwrap();
    assert_eq!(ops(&entries(&io, dir(), true)), ["put a fresh"]);
}

#[test]
fn invalid_positions_are_refused_and_nothing_changes() {
    let io = MemIo::new();
    let m = open(&io, 1);
    let w = m.writer(0).unwrap();
    let positions = put_all(w, "k", 10, b"v");
    w.sync().unwrap();
    let state = |w: &corewal::Writer<MemIo>| (w.position(), w.sequence(), w.synced_position());
    let before = state(w);
    let refused = |position: u64, why: &str| match w.truncate(position) {
        Err(Error::InvalidArgument(msg)) => assert!(msg.contains(why), "{position}: {msg}"),
        other => panic!("{position}: {other:?}"),
    };
    refused(positions[3] + 8, "not a record boundary");
    refused(positions[3] + 1, "not a record boundary");
    refused(w.position() + 8, "beyond the end");
    refused(u64::MAX, "beyond the end");
    assert_eq!(state(w), before);
    w.truncate(w.position())
        .expect("the current position is a no-op");
    assert_eq!(state(w), before);

    m.checkpoint(1, b"").unwrap();
    let start = m.latest_checkpoint().unwrap().lane_start(0);
    put_all(w, "after", 3, b"v");
    w.sync().unwrap();
    let before = state(w);
    refused(positions[5], "checkpoint 1");
    refused(start - 1, "checkpoint 1");
    assert_eq!(state(w), before);
    let all = entries(&io, dir(), false);
    assert_eq!(all.iter().filter(|e| e.3.starts_with("put")).count(), 13);

    m.reset().unwrap();
    w.append_put(b"x", b"after reset").unwrap();
    refused(positions[9], "below the start");
    refused(before.0 - 8, "below the start");
    w.truncate(before.0)
        .expect("the reset position is the lane's start");
    m.close().unwrap();
    assert!(entries(&io, dir(), false).is_empty());
}

#[test]
fn discarded_records_never_come_back_after_a_crash() {
    for torn in [
        None,
        Some(1u64),
        Some(2),
        Some(3),
        Some(4),
        Some(5),
        Some(6),
    ] {
        let io = MemIo::new();
        let m = open(&io, 1);
        let w = m.writer(0).unwrap();
        // Synced one by one: the discarded frames carry rising durable marks.
        let positions = put_each_synced(w, 40);
        put_all(w, "unsynced", 5, b"v");
        w.truncate(positions[10]).unwrap();
        match torn {
            None => io.crash(),
            Some(seed) => io.crash_torn(seed),
        }
        drop(m);
        io.restart();
        let want: Vec<String> = (0..10).map(|i| format!("k{i}")).collect();
        let got = entries(&io, dir(), true);
        let keys: Vec<String> = got
            .iter()
            .map(|e| e.3.split(' ').nth(1).unwrap().to_string())
            .collect();
        assert_eq!(keys, want, "{torn:?}");
        // Nothing damaged is left behind either.
        let m = Manager::open_with(
            io.clone(),
            dir(),
            &Options {
                recovery_mode: RecoveryMode::Absolute,
                ..options(1)
            },
        )
        .unwrap();
        assert_eq!(m.writer(0).unwrap().sequence(), 10);
    }
}

#[test]
fn a_crash_in_the_middle_of_a_truncation_leaves_a_prefix_of_the_old_lane() {
    let mut interrupted = 0;
    for (op, path) in [
        (FaultOp::SyncData, "wal-00000-"),
        (FaultOp::Write, "wal-00000-"),
        (FaultOp::SyncDir, ""),
        (FaultOp::Remove, "wal-00000-"),
    ] {
        for skip in 0..10 {
            // A torn crash keeps a pseudo-random half of the unsynced
            // sectors: several draws per step.
            for torn in [None]
                .into_iter()
                .chain((1..=4).map(|k| Some(skip * 7 + k)))
            {
                let io = MemIo::new();
                let m = open(&io, 1);
                let w = m.writer(0).unwrap();
                let positions = put_each_synced(w, 60);
                let old = entries(&io, dir(), true);
                assert!(started(&io, dir(), 0).len() >= 3);
                io.fail(op, path, skip, Some(1), libc::EIO);
                let result = w.truncate(positions[7]);
                if result.is_err() {
                    interrupted += 1;
                    assert!(matches!(result, Err(Error::Poisoned(_))), "{result:?}");
                    assert!(matches!(w.append_put(b"k", b"v"), Err(Error::Poisoned(_))));
                }
                match torn {
                    None => io.crash(),
                    Some(seed) => io.crash_torn(seed),
                }
                drop(m);
                io.restart();
                io.clear_faults();
                let what = format!("{op:?} after {skip}, torn {torn:?}");
                let got = entries(&io, dir(), true);
                assert!(
                    got.len() >= 7 && got.len() <= old.len(),
                    "{what}: {}",
                    got.len()
                );
                assert_eq!(got[..], old[..got.len()], "{what}: not a prefix");
                if result.is_ok() {
                    assert_eq!(got.len(), 7, "{what}");
                }
                let m = open(&io, 1);
                let w = m.writer(0).unwrap();
                assert_eq!(w.sequence(), got.len() as u64, "{what}");
                w.append_put(b"after", b"reopen").unwrap();
            }
        }
    }
    assert!(
        interrupted > 20,
        "the faults hit truncations only {interrupted} times"
    );
}

fn drains_syncs<I: Io>(_io: &I, _dir: &Path, open: Open<'_, I>) {
    let m = open(1);
    let w = m.writer(0).unwrap();
    // Rotations hand their fdatasyncs to background threads the syncs wait for.
    let positions = put_all(w, "k", 30, &[b'x'; 700]);
    let t1 = w.sync_submit().unwrap();
    let b1 = w.position();
    put_all(w, "m", 10, &[b'y'; 700]);
    let t2 = w.sync_submit().unwrap();
    let b2 = w.position();
    put_all(w, "u", 3, b"unsynced");
    w.truncate(positions[20]).unwrap();
    // Both syncs finished inside truncate: a poll (which never blocks)
    // reports them at once, with the boundaries they made durable.
    let done: Vec<(u64, u64, bool)> = w
        .poll(16)
        .unwrap()
        .into_iter()
        .map(|c| (c.token, c.synced_position, c.result.is_ok()))
        .collect();
    assert_eq!(done, [(t1, b1, true), (t2, b2, true)]);
    assert_eq!(w.synced_position(), positions[20]);
    assert!(matches!(w.wait(t2), Err(Error::NotFound(_))));
    w.sync().unwrap();
    m.close().unwrap();
}

#[test]
fn truncate_drains_in_flight_syncs() {
    on_every_backend!(drains_syncs);
}

#[test]
fn truncate_on_a_poisoned_writer_is_poisoned() {
    let io = MemIo::new();
    let m = open(&io, 1);
    let w = m.writer(0).unwrap();
    let first = w.append_put(b"a", b"1").unwrap();
    w.sync().unwrap();
    w.append_put(b"b", b"2").unwrap();
    io.fail(FaultOp::SyncData, "wal-00000-", 0, Some(1), libc::EIO);
    assert!(w.sync().is_err());
    let position = w.position();
    assert!(matches!(w.truncate(first), Err(Error::Poisoned(_))));
    assert!(matches!(w.truncate(position), Err(Error::Poisoned(_))));
    assert_eq!(w.position(), position);
}

#[test]
fn a_discarded_barrier_is_forgotten_and_written_again() {
    let io = MemIo::new();
    let m = open(&io, 1);
    let w = m.writer(0).unwrap();
    w.append_put(b"a", b"epoch 1").unwrap();
    let covered = m.advance_epoch().unwrap() - 1;
    let barrier = w.position();
    w.append_put(b"b", b"epoch 2").unwrap();
    w.sync().unwrap();
    w.truncate(barrier).unwrap();
    let err = m.checkpoint_commit(1, covered, b"").unwrap_err();
    assert!(
        err.to_string().contains("no durable EPOCH_BARRIER"),
        "a checkpoint must not trust a discarded barrier: {err}"
    );
    w.append_put(b"c", b"epoch 2 again").unwrap();
    w.sync().unwrap();
    m.checkpoint_commit(1, covered, b"").unwrap();
    m.close().unwrap();
    assert_eq!(
        ops(&entries(&io, dir(), false)),
        ["put a epoch 1", "barrier", "put c epoch 2 again"]
    );
}

fn reset_then_append<I: Io>(io: &I, dir: &Path, open: Open<'_, I>) {
    let m = open(2);
    let (w0, w1) = (m.writer(0).unwrap(), m.writer(1).unwrap());
    for w in [w0, w1] {
        put_all(w, "old", 20, &[b'x'; 2000]);
    }
    m.checkpoint(7, b"meta").unwrap();
    for w in [w0, w1] {
        put_all(w, "later", 3, b"v");
    }
    m.purge().unwrap();
    let positions = [w0.position(), w1.position()];
    let sequences = [w0.sequence(), w1.sequence()];
    let last_index: Vec<u64> = (0..2)
        .map(|c| started(io, dir, c).last().unwrap().0)
        .collect();
    let epoch = m.epoch();

    m.reset().unwrap();
    assert!(entries(io, dir, true).is_empty());
    assert!(entries(io, dir, false).is_empty());
    assert_eq!(m.latest_checkpoint(), None);
    assert!(!io.exists(&dir.join(MANIFEST_FILE)).unwrap());
    assert!(!io.exists(&dir.join(RESET_FILE)).unwrap());
    assert_eq!([w0.position(), w1.position()], positions);
    assert_eq!([w0.sequence(), w1.sequence()], sequences);
    assert_eq!(m.epoch(), epoch);
    for core in 0..2u32 {
        let left = started(io, dir, core);
        assert_eq!(left.len(), 1, "lane {core}: {left:?}");
        assert!(
            left[0].0 > last_index[core as usize],
            "a segment index was used again"
        );
        assert_eq!(left[0].1, positions[core as usize]);
    }

    // The writers from before go on where they were.
    assert_eq!(w0.append_put(b"new", b"zero").unwrap(), positions[0]);
    assert_eq!(w1.append_put(b"new", b"one").unwrap(), positions[1]);
    m.checkpoint(8, b"after").unwrap();
    w0.append_put(b"newer", b"zero").unwrap();
    m.close().unwrap();
    drop(m);
    let all = entries(io, dir, false);
    let puts: Vec<(u32, u64, &str)> = all
        .iter()
        .filter(|e| e.3.starts_with("put"))
        .map(|e| (e.0, e.1, e.3.as_str()))
        .collect();
    assert_eq!(
        puts,
        [
            (0, sequences[0], "put new zero"),
            (1, sequences[1], "put new one"),
            (0, sequences[0] + 2, "put newer zero")
        ]
    );
    let replayed = entries(io, dir, true);
    let replayed: Vec<&str> = ops(&replayed)
        .into_iter()
        .filter(|op| op.starts_with("put"))
        .collect();
    assert_eq!(
        replayed,
        ["put newer zero"],
        "the checkpoint after the reset works"
    );
    let m = open(2);
    assert!(m.writer(0).unwrap().position() > positions[0]);
}

#[test]
fn reset_empties_every_lane_and_writers_carry_on() {
    on_every_backend!(reset_then_append);
}

/// A WAL of two lanes over several segments with a purged checkpoint,
/// everything synced; returns what recovery yields from the checkpoint and
/// from the beginning.
fn reset_fixture(io: &MemIo) -> (Manager<MemIo>, Entries, Entries) {
    let m = open(io, 2);
    for core in 0..2 {
        put_all(m.writer(core).unwrap(), "old", 12, &[b'x'; 2000]);
    }
    m.checkpoint(3, b"snapshot").unwrap();
    for core in 0..2 {
        put_all(m.writer(core).unwrap(), "later", 10, &[b'y'; 2000]);
    }
    m.purge().unwrap();
    m.sync_all().unwrap();
    let from_checkpoint = entries(io, dir(), true);
    let from_start = entries(io, dir(), false);
    assert!(from_checkpoint.len() > 20 && from_start.len() > from_checkpoint.len());
    (m, from_checkpoint, from_start)
}

#[test]
fn a_crash_at_any_step_of_a_reset_leaves_all_old_records_or_none() {
    let (mut finished, mut interrupted) = (0, 0);
    for op in [
        FaultOp::SyncData,
        FaultOp::Write,
        FaultOp::SyncAll,
        FaultOp::Rename,
        FaultOp::SyncDir,
        FaultOp::Remove,
    ] {
        for skip in 0..14 {
            let io = MemIo::new();
            let (m, old, old_full) = reset_fixture(&io);
            io.fail(op, "", skip, Some(1), libc::EIO);
            let result = m.reset();
            match &result {
                Ok(()) => finished += 1,
                Err(_) => interrupted += 1,
            }
            if skip % 2 == 0 {
                io.crash();
            } else {
                io.crash_torn(skip);
            }
            drop(m);
            io.restart();
            io.clear_faults();
            let what = format!("{op:?} after {skip}: {result:?}");
            // Read-only, before any open could finish the reset.
            let got = entries(&io, dir(), true);
            let full = entries(&io, dir(), false);
            let reset = got.is_empty();
            if reset {
                assert!(full.is_empty(), "{what}: records before the reset show");
                assert!(
                    matches!(result, Ok(()) | Err(Error::Poisoned(_))),
                    "{what}: a reset past its commit point poisons"
                );
            } else {
                assert_eq!(got, old, "{what}");
                assert_eq!(full, old_full, "{what}");
                assert!(result.is_err(), "{what}: the reset returned OK");
            }
            let m = open(&io, 2);
            assert_eq!(entries(&io, dir(), true).is_empty(), reset, "{what}");
            assert!(
                !io.exists(&dir().join(RESET_FILE)).unwrap(),
                "{what}: open finishes a reset"
            );
            if reset {
                assert_eq!(m.latest_checkpoint(), None, "{what}");
                assert!(!io.exists(&dir().join(MANIFEST_FILE)).unwrap(), "{what}");
            } else {
                assert_eq!(m.latest_checkpoint().unwrap().checkpoint_id, 3, "{what}");
            }
            m.writer(1).unwrap().append_put(b"after", b"crash").unwrap();
            m.close().unwrap();
            let last = entries(&io, dir(), true);
            assert_eq!(last.last().unwrap().3, "put after crash", "{what}");
            assert_eq!(last.len(), if reset { 1 } else { old.len() + 1 }, "{what}");
        }
    }
    // Background preparations take some of the faults, so which steps fail
    // varies from run to run; enough of them always do.
    assert!(
        finished > 0 && interrupted >= 15,
        "{finished} finished, {interrupted} interrupted"
    );
}
