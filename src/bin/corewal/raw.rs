//! The raw baseline of BENCH.md: the physical limit corewal is measured
//! against. The same records, framed exactly as corewal frames them, are
//! encoded before timing starts; timed work is only copying frames into a
//! 64 KiB buffer, `pwrite` and `fdatasync` into a file that was preallocated
//! by writing zeros and syncing once. Reading back is one pass over the file
//! that checks every frame's crc32c.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::slice::ChunksExact;

use io_uring::{IoUring, opcode, types};

use corewal::format::{Encoder, OpRef, RecordRef, check_frame, frame_len, frame_seed, seal_frame};

use crate::data;

/// Frames gathered before one `pwrite`.
pub const WRITE_BUF_BYTES: usize = 64 << 10;
/// Chunk of a buffered read.
const CHUNK_BYTES: usize = 1 << 20;
/// Chunk of the zeros written to preallocate: small, as corewal's own, since
/// a file zero-filled in large writes sits in large page-cache folios that
/// make every later fdatasync of a small append slower.
const ZERO_BYTES: usize = 64 << 10;
/// Largest payload the scan accepts (corewal's default `max_record_bytes`).
const MAX_PAYLOAD: usize = 16 << 20;
/// Timestamp of the first pre-encoded record; later ones count up from it.
const BASE_TIMESTAMP_NS: i64 = 1_700_000_000_000_000_000;

/// The checksum seed of the raw file of `lane`: corewal's seed for that
/// lane's first segment (the raw file is one big segment).
pub fn seed(lane: u32) -> u32 {
    frame_seed(lane, 0)
}

/// Records of one lane, encoded and framed ahead of time, back to back.
pub struct Frames {
    bytes: Vec<u8>,
    frame_len: usize,
}

impl Frames {
    /// Frames records `0..count` of `lane`, as corewal would frame them.
    pub fn encode(lane: u32, count: u64) -> Frames {
        let seed = seed(lane);
        let mut encoder = Encoder::default();
        let mut frames = Frames {
            bytes: Vec::new(),
            frame_len: 0,
        };
        for i in 0..count {
            let key = data::key(lane, i);
            let record = RecordRef {
                epoch: 1,
                timestamp_ns: BASE_TIMESTAMP_NS + i as i64,
                sequence: i,
                durable_mark: 0,
                core_id: lane,
                op: OpRef::Put {
                    key: &key,
                    value: &data::VALUE,
                },
            };
            let (padded, payload_len) = encoder.encode(&record);
            let header = seal_frame(seed, payload_len, padded);
            let len = header.len() + padded.len();
            if i == 0 {
                frames.frame_len = len;
                frames.bytes.reserve_exact(len * count as usize);
            }
            // Fixed-size keys and values give fixed-size frames.
            assert_eq!(len, frames.frame_len, "every frame has the same length");
            frames.bytes.extend_from_slice(&header);
            frames.bytes.extend_from_slice(padded);
        }
        frames
    }

    /// Frame `i`.
    pub fn get(&self, i: usize) -> &[u8] {
        &self.bytes[i * self.frame_len..(i + 1) * self.frame_len]
    }

    pub fn iter(&self) -> ChunksExact<'_, u8> {
        self.bytes.chunks_exact(self.frame_len.max(1))
    }

    /// Bytes of all frames together.
    pub fn byte_len(&self) -> u64 {
        self.bytes.len() as u64
    }
}

/// A file written with plain `pwrite` through a 64 KiB buffer.
pub struct RawLog {
    file: File,
    buf: Vec<u8>,
    offset: u64,
    /// Where [`RawLog::sync`] sends its fdatasync instead of calling it.
    ring: Option<IoUring>,
}

impl RawLog {
    /// Creates `path` preallocated to `size` bytes: zeros written and
    /// synced once, so later fdatasyncs journal no size or extent change.
    pub fn create(path: &Path, size: u64) -> io::Result<RawLog> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        let zeros = vec![0u8; ZERO_BYTES];
        let mut off = 0u64;
        while off < size {
            let n = (size - off).min(ZERO_BYTES as u64) as usize;
            file.write_all_at(&zeros[..n], off)?;
            off += n as u64;
        }
        file.sync_all()?;
        Ok(RawLog {
            file,
            buf: Vec::with_capacity(WRITE_BUF_BYTES),
            offset: 0,
            ring: None,
        })
    }

    /// From now on, each fdatasync is an io_uring fsync on `ring` that
    /// [`RawLog::sync`] waits for: what any asynchronous sync on io_uring
    /// costs beyond an fdatasync, with no corewal code in the way.
    pub fn sync_on(&mut self, ring: IoUring) {
        self.ring = Some(ring);
    }

    /// Buffers one frame, writing the buffer out first if it would overflow.
    #[inline]
    pub fn append(&mut self, frame: &[u8]) -> io::Result<()> {
        if !self.buf.is_empty() && self.buf.len() + frame.len() > WRITE_BUF_BYTES {
            self.flush()?;
        }
        self.buf.extend_from_slice(frame);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.file.write_all_at(&self.buf, self.offset)?;
        self.offset += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Writes what is buffered and fdatasyncs.
    pub fn sync(&mut self) -> io::Result<()> {
        self.flush()?;
        match &mut self.ring {
            None => self.file.sync_data(),
            Some(ring) => fsync_on(ring, &self.file),
        }
    }
}

/// An io_uring fdatasync of `file` that this thread waits for.
fn fsync_on(ring: &mut IoUring, file: &File) -> io::Result<()> {
    let fsync = opcode::Fsync::new(types::Fd(file.as_raw_fd()))
        .flags(types::FsyncFlags::DATASYNC)
        .build();
    // SAFETY: the entry holds no pointer, only the descriptor of `file`,
    // which is borrowed for this whole call and so open until the
    // completion is reaped below.
    unsafe { ring.submission().push(&fsync) }
        .map_err(|_| io::Error::other("io_uring submission queue full"))?;
    ring.submit_and_wait(1)?;
    let done = ring
        .completion()
        .next()
        .ok_or_else(|| io::Error::other("io_uring fsync: no completion"))?;
    if done.result() < 0 {
        return Err(io::Error::from_raw_os_error(-done.result()));
    }
    Ok(())
}

/// What a scan found: valid frames and the bytes they occupy.
#[derive(Debug, Clone, Copy, Default)]
pub struct Scanned {
    pub frames: u64,
    pub bytes: u64,
}

/// Reads the raw file of `lane` in one buffered pass, checking every frame's
/// crc32c, up to the first frame that does not validate (the zeros after
/// the last one) or the end of the file.
pub fn scan(path: &Path, lane: u32) -> io::Result<Scanned> {
    let file = File::open(path)?;
    let seed = seed(lane);
    let mut buf = vec![0u8; CHUNK_BYTES];
    let (mut filled, mut at) = (0usize, 0u64);
    let mut found = Scanned::default();
    loop {
        let n = file.read_at(&mut buf[filled..], at)?;
        filled += n;
        at += n as u64;
        let mut pos = 0;
        while let Some(frame) = check_frame(&buf[pos..filled], seed, MAX_PAYLOAD) {
            found.frames += 1;
            pos += frame.frame_len;
        }
        found.bytes += pos as u64;
        if n == 0 || !cut_short(&buf[pos..filled], buf.len()) {
            return Ok(found);
        }
        buf.copy_within(pos..filled, 0);
        filled -= pos;
    }
}

/// Whether `bytes` start a frame that the read buffer (of `capacity` bytes)
/// only holds part of, as opposed to zeros or a frame that fails its check.
fn cut_short(bytes: &[u8], capacity: usize) -> bool {
    let Some(len) = bytes.get(..4) else {
        return true;
    };
    let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
    len > 0 && len <= MAX_PAYLOAD && frame_len(len) > bytes.len() && frame_len(len) <= capacity
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_corewal_frames_and_scan_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raw.log");
        // Enough frames that some straddle the 1 MiB read chunks.
        let frames = Frames::encode(1, 20_000);
        // The same frame size as corewal's own frame of the same record.
        let wal = crate::engine::open(&dir.path().join("wal"), 2, corewal::Backend::Auto).unwrap();
        let corewal_frame = crate::engine::append(wal.writer(1).unwrap(), 1, 0).unwrap();
        assert_eq!(corewal_frame, 0);
        assert_eq!(
            wal.writer(1).unwrap().position() as usize,
            frames.get(0).len()
        );
        wal.close().unwrap();
        let mut log = RawLog::create(&path, frames.byte_len() + 4096).unwrap();
        for frame in frames.iter() {
            log.append(frame).unwrap();
        }
        log.sync().unwrap();
        let found = scan(&path, 1).unwrap();
        assert_eq!(found.frames, 20_000);
        assert_eq!(found.bytes, frames.byte_len());
        assert_eq!(scan(&path, 0).unwrap().frames, 0, "another lane's seed");
    }
}
