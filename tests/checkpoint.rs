//! Checkpoints (SPEC §5): the commit's checks, recovery from the manifest,
//! the meta bytes, purge, and reopening a purged WAL.

mod common;

use common::*;
use corewal::io::FaultOp;
use corewal::{Error, Manager, MemIo, RecoveryOptions};

fn put(m: &Manager<MemIo>, core: u32, key: &str) {
    m.writer(core)
        .unwrap()
        .append_put(key.as_bytes(), &[b'v'; 600])
        .unwrap();
}

#[test]
fn commit_needs_a_durable_barrier_on_every_lane_and_a_closed_epoch() {
    let io = MemIo::new();
    let m = open(&io, 2);
    put(&m, 0, "a");
    put(&m, 1, "b");
    let err = m.checkpoint_commit(1, 1, b"").unwrap_err();
    assert!(err.to_string().contains("still open"), "{err}");
    let covered = m.advance_epoch().unwrap() - 1;
    let err = m.checkpoint_commit(1, covered, b"").unwrap_err();
    assert!(
        err.to_string()
            .contains("lane 0 has no durable EPOCH_BARRIER"),
        "{err}"
    );
    m.writer(0).unwrap().epoch_barrier().unwrap();
    m.writer(1).unwrap().epoch_barrier().unwrap();
    m.writer(0).unwrap().sync().unwrap();
    let err = m.checkpoint_commit(1, covered, b"").unwrap_err();
    assert!(
        err.to_string().contains("lane 1"),
        "a barrier not yet synced does not count: {err}"
    );
    m.writer(1).unwrap().sync().unwrap();
    m.checkpoint_commit(1, covered, b"state").unwrap();
    assert_eq!(m.latest_checkpoint().unwrap().epoch, covered);
    let err = m.checkpoint_commit(2, covered - 1, b"").unwrap_err();
    assert!(
        err.to_string().contains("already covers"),
        "never backwards: {err}"
    );
}

#[test]
fn recovery_from_a_checkpoint_yields_only_later_epochs_and_reads_the_meta() {
    let io = MemIo::new();
    let m = open(&io, 2);
    for i in 0..10 {
        put(&m, i % 2, &format!("before-{i}"));
    }
    m.checkpoint(41, b"snapshot at 41").unwrap();
    for i in 0..6 {
        put(&m, i % 2, &format!("after-{i}"));
    }
    m.close().unwrap();
    let recs = read_all(&io, dir()).unwrap();
    assert!(recs.iter().all(|r| r.epoch > 1), "{recs:?}");
    let puts: Vec<&str> = recs
        .iter()
        .filter(|r| r.op.starts_with("put"))
        .map(|r| r.op.as_str())
        .collect();
    assert_eq!(puts.len(), 6);
    assert!(puts.iter().all(|p| p.contains("after-")));
    assert_eq!(
        recs.iter().filter(|r| r.op == "barrier").count(),
        2,
        "each lane starts at its barrier"
    );
    let everything = read_with(
        &io,
        dir(),
        &RecoveryOptions {
            from_checkpoint: false,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        everything
            .iter()
            .filter(|r| r.op.starts_with("put"))
            .count(),
        16
    );
    let r = corewal::Recovery::open(io.clone(), dir(), &RecoveryOptions::default()).unwrap();
    let c = r.checkpoint().unwrap();
    assert_eq!(
        (c.checkpoint_id, c.epoch, c.meta.as_slice()),
        (41, 1, &b"snapshot at 41"[..])
    );
}

#[test]
fn a_failed_manifest_write_keeps_the_previous_checkpoint() {
    let io = MemIo::new();
    let m = open(&io, 1);
    put(&m, 0, "a");
    m.checkpoint(1, b"one").unwrap();
    put(&m, 0, "b");
    io.fail(FaultOp::Rename, "corewal.manifest", 0, Some(1), libc::EIO);
    assert!(matches!(m.checkpoint(2, b"two"), Err(Error::Io { .. })));
    assert_eq!(m.latest_checkpoint().unwrap().checkpoint_id, 1);
    m.close().unwrap();
    let r = corewal::Recovery::open(io.clone(), dir(), &RecoveryOptions::default()).unwrap();
    assert_eq!(r.checkpoint().unwrap().meta, b"one");
}

#[test]
fn purge_deletes_covered_segments_and_the_wal_reopens_and_continues() {
    let io = MemIo::new();
    let m = open(&io, 2);
    // About 70 KB per lane: four to five 16 KiB segments each.
    for i in 0..200 {
        put(&m, i % 2, &format!("old-{i}"));
    }
    assert_eq!(
        m.purge().unwrap(),
        0,
        "nothing to purge without a checkpoint"
    );
    m.checkpoint(7, b"").unwrap();
    for i in 0..4 {
        put(&m, i % 2, &format!("new-{i}"));
    }
    let removed = m.purge().unwrap();
    assert!(removed >= 6, "removed {removed}");
    assert!(io.contents(&segment(0, 0)).is_none() && io.contents(&segment(1, 2)).is_none());
    let sequence = m.writer(0).unwrap().sequence();
    m.close().unwrap();
    drop(m);
    let m = open(&io, 2);
    assert_eq!(
        m.writer(0).unwrap().sequence(),
        sequence,
        "sequence continues after purge"
    );
    put(&m, 0, "later");
    m.close().unwrap();
    let recs = read_all(&io, dir()).unwrap();
    let puts: Vec<&str> = recs
        .iter()
        .filter(|r| r.op.starts_with("put"))
        .map(|r| r.op.as_str())
        .collect();
    assert_eq!(puts.len(), 5, "{puts:?}");
    let all = read_with(
        &io,
        dir(),
        &RecoveryOptions {
            from_checkpoint: false,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(all.len() < 100, "purged records are gone: {}", all.len());
}

/// A lane whose first record comes after the epoch advanced has no automatic
/// barrier before it; replay from the checkpoint must still include it.
#[test]
fn records_of_the_new_epoch_before_a_lanes_barrier_are_replayed() {
    let io = MemIo::new();
    let m = open(&io, 2);
    put(&m, 0, "old");
    let covered = m.advance_epoch().unwrap() - 1;
    put(&m, 1, "new-before-barrier");
    for core in 0..2 {
        m.writer(core).unwrap().epoch_barrier().unwrap();
        m.writer(core).unwrap().sync().unwrap();
    }
    m.checkpoint_commit(3, covered, b"").unwrap();
    m.close().unwrap();
    let puts: Vec<String> = read_all(&io, dir())
        .unwrap()
        .into_iter()
        .map(|r| r.op)
        .filter(|op| op.starts_with("put"))
        .collect();
    assert_eq!(puts.len(), 1);
    assert!(puts[0].contains("new-before-barrier"), "{puts:?}");
}

#[test]
fn a_reopened_lane_with_later_records_cannot_checkpoint_an_older_epoch() {
    let io = MemIo::new();
    let m = open(&io, 1);
    m.advance_epoch().unwrap();
    m.advance_epoch().unwrap();
    put(&m, 0, "epoch-3");
    m.close().unwrap();
    drop(m);
    let m = open(&io, 1);
    m.writer(0).unwrap().epoch_barrier().unwrap();
    m.writer(0).unwrap().sync().unwrap();
    let err = m.checkpoint_commit(1, 1, b"").unwrap_err();
    assert!(err.to_string().contains("before it was reopened"), "{err}");
    m.checkpoint(2, b"")
        .expect("a checkpoint of the current epoch works");
}
