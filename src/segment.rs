//! Segment files of a lane: names, discovery, and preparing the next file
//! (zero-filled and synced) before the writer needs it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, IoContext, Result};
use crate::io::{Io, IoFile, OpenMode};

/// `wal-<core>-<segment>.log`, zero-padded so that names sort.
pub fn segment_name(core_id: u32, index: u64) -> String {
    format!("wal-{core_id:05}-{index:010}.log")
}

pub fn segment_path(dir: &Path, core_id: u32, index: u64) -> PathBuf {
    dir.join(segment_name(core_id, index))
}

/// Parses a segment file name back into `(core, index)`.
pub fn parse_segment_name(name: &str) -> Option<(u32, u64)> {
    let rest = name.strip_prefix("wal-")?.strip_suffix(".log")?;
    let (core, index) = rest.split_once('-')?;
    if core.len() != 5 || index.len() != 10 {
        return None;
    }
    if !core
        .bytes()
        .chain(index.bytes())
        .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    Some((core.parse().ok()?, index.parse().ok()?))
}

/// The segment indexes of every lane found in `dir`, sorted, for lanes
/// `0..lanes`. Segments of lanes at or beyond `lanes` are returned apart.
pub fn list_segments<I: Io>(
    io: &I,
    dir: &Path,
    lanes: u32,
) -> Result<(Vec<Vec<u64>>, Vec<String>)> {
    let mut per_lane = vec![Vec::new(); lanes as usize];
    let mut foreign = Vec::new();
    for name in io
        .list(dir)
        .context(|| format!("listing {}", dir.display()))?
    {
        if let Some((core, index)) = parse_segment_name(&name) {
            match per_lane.get_mut(core as usize) {
                Some(list) => list.push(index),
                None => foreign.push(name),
            }
        }
    }
    for list in &mut per_lane {
        list.sort_unstable();
    }
    Ok((per_lane, foreign))
}

/// Chunk of zeros written while preallocating. Small on purpose: the page
/// cache keeps a file in folios as large as the writes that filled it, and a
/// later fdatasync writes back each dirty folio whole. Zero-filled in 1 MiB
/// writes, a segment's small appends cost about 4 µs more per fdatasync
/// (here: 33 against 29 µs for a 200-byte append); from 64 KiB down they
/// cost what appends to a never-cached file do.
const ZERO_CHUNK: usize = 64 << 10;

/// Suffix of a segment being prepared under a temporary name.
pub const PREPARING_SUFFIX: &str = ".prep";

/// Prepares segment `index` of `core_id` ahead of need, on a background
/// thread. With `preallocate`, the file is built under a temporary name:
/// blocks reserved at full size, zero-filled and synced, so later fdatasyncs
/// never have to record a size change or an extent conversion. It is then
/// published under its segment name with a link that never replaces: if the
/// writer needed the segment first and made it itself ([`create_now`]), the
/// preparation is dropped. A set `cancel` stops the zero-fill early.
///
/// Since the writer never writes to the temporary file, no zero can ever
/// land on its data, and it never has to wait for this thread.
pub fn prepare<I: Io>(
    io: &I,
    dir: &Path,
    core_id: u32,
    index: u64,
    segment_bytes: u64,
    preallocate: bool,
    cancel: &AtomicBool,
) -> Result<I::File> {
    if !preallocate {
        return create_now(io, dir, core_id, index, segment_bytes, false);
    }
    let path = segment_path(dir, core_id, index);
    let temp = dir.join(format!(
        "{}{PREPARING_SUFFIX}",
        segment_name(core_id, index)
    ));
    let what = || format!("preparing {}", path.display());
    let cancelled = || {
        Error::io(
            what(),
            std::io::Error::other("cancelled: the writer made the segment itself"),
        )
    };
    let _ = io.remove(&temp);
    let file = io.open(&temp, OpenMode::CreateNew).context(what)?;
    let built = (|| {
        file.allocate(segment_bytes).context(what)?;
        let zeros = vec![0u8; ZERO_CHUNK];
        let mut off = 0u64;
        while off < segment_bytes {
            if cancel.load(Ordering::Relaxed) {
                return Err(cancelled());
            }
            let n = (segment_bytes - off).min(ZERO_CHUNK as u64) as usize;
            file.write_at(&zeros[..n], off).context(what)?;
            off += n as u64;
        }
        file.sync_all().context(what)?;
        match io.link(&temp, &path) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(cancelled()),
            other => other.context(what),
        }
    })();
    let _ = io.remove(&temp);
    built?;
    io.sync_dir(dir).context(what)?;
    Ok(file)
}

/// Removes segment `index` of lane `core_id`. Not durable by itself: sync
/// the directory after the removals that must stick.
pub fn remove_segment<I: Io>(io: &I, dir: &Path, core_id: u32, index: u64) -> Result<()> {
    let path = segment_path(dir, core_id, index);
    io.remove(&path)
        .context(|| format!("removing {}", path.display()))
}

/// Makes segment `index` of `core_id` at once: created (or opened, if a
/// preparation published it meanwhile), blocks reserved with `preallocate`,
/// its name durable. Not zero-filled: its first syncs may cost a little more.
pub fn create_now<I: Io>(
    io: &I,
    dir: &Path,
    core_id: u32,
    index: u64,
    segment_bytes: u64,
    preallocate: bool,
) -> Result<I::File> {
    let path = segment_path(dir, core_id, index);
    let what = || format!("creating {}", path.display());
    let file = match io.open(&path, OpenMode::CreateNew) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            io.open(&path, OpenMode::Existing)
        }
        other => other,
    }
    .context(what)?;
    if preallocate {
        file.allocate(segment_bytes).context(what)?;
    }
    io.sync_dir(dir).context(what)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::MemIo;

    #[test]
    fn names_sort_and_parse_back() {
        let a = segment_name(3, 9);
        let b = segment_name(3, 10);
        assert!(a < b);
        assert_eq!(parse_segment_name(&a), Some((3, 9)));
        assert_eq!(
            parse_segment_name(&segment_name(u32::from(u16::MAX), 1 << 33)),
            Some((65535, 1 << 33))
        );
        for bad in [
            "wal-1-2.log",
            "wal-00001-000000000x.log",
            "wal-00001-0000000001.log.tmp",
            "x",
        ] {
            assert_eq!(parse_segment_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn prepare_zero_fills_and_makes_the_name_durable() {
        let io = MemIo::new();
        let dir = Path::new("/wal");
        io.create_dir(dir).unwrap();
        prepare(
            &io,
            dir,
            0,
            1,
            3 * ZERO_CHUNK as u64 / 2,
            true,
            &AtomicBool::new(false),
        )
        .unwrap();
        io.crash();
        let bytes = io
            .contents(&segment_path(dir, 0, 1))
            .expect("survives a crash");
        assert_eq!(bytes.len(), 3 * ZERO_CHUNK / 2);
        assert!(bytes.iter().all(|&b| b == 0));
        assert!(
            prepare(&io, dir, 0, 1, 4096, true, &AtomicBool::new(false)).is_err(),
            "never reuses a name"
        );
    }

    #[test]
    fn a_cancelled_preparation_leaves_nothing_behind() {
        let io = MemIo::new();
        let dir = Path::new("/wal");
        io.create_dir(dir).unwrap();
        let size = 4 * ZERO_CHUNK as u64;
        assert!(prepare(&io, dir, 0, 0, size, true, &AtomicBool::new(true)).is_err());
        assert!(io.list(dir).unwrap().is_empty(), "{:?}", io.list(dir));
    }

    #[test]
    fn a_preparation_never_replaces_a_segment_the_writer_made() {
        let io = MemIo::new();
        let dir = Path::new("/wal");
        io.create_dir(dir).unwrap();
        let made = create_now(&io, dir, 0, 3, 4096, true).unwrap();
        made.write_at(b"data", 64).unwrap();
        assert!(prepare(&io, dir, 0, 3, 4096, true, &AtomicBool::new(false)).is_err());
        assert_eq!(
            &io.contents(&segment_path(dir, 0, 3)).unwrap()[64..68],
            b"data"
        );
        assert_eq!(
            io.list(dir).unwrap(),
            vec![segment_name(0, 3)],
            "no temporary file left"
        );
        // And the other way round: create_now takes a published preparation.
        prepare(&io, dir, 0, 4, 4096, true, &AtomicBool::new(false)).unwrap();
        assert_eq!(
            create_now(&io, dir, 0, 4, 4096, true)
                .unwrap()
                .size()
                .unwrap(),
            4096
        );
    }

    #[test]
    fn list_splits_known_and_foreign_lanes() {
        let io = MemIo::new();
        let dir = Path::new("/wal");
        io.create_dir(dir).unwrap();
        for (core, index) in [(0, 2), (0, 1), (1, 0), (4, 0)] {
            prepare(&io, dir, core, index, 0, false, &AtomicBool::new(false)).unwrap();
        }
        let (lanes, foreign) = list_segments(&io, dir, 2).unwrap();
        assert_eq!(lanes, vec![vec![1, 2], vec![0]]);
        assert_eq!(foreign, vec![segment_name(4, 0)]);
    }
}
