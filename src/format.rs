//! On-disk format, version 1: segment headers, frames, checksums and the rkyv
//! record payload. Pure byte manipulation; no I/O happens here.
//!
//! A segment file is a 64-byte header followed by frames. A frame is
//! `[length: u32 LE][crc32c: u32 LE][payload][zero padding to 8 bytes]`; the
//! payload is the rkyv archive of a [`RecordRef`]. Frames start on 8-byte
//! boundaries so that mapped payloads are aligned for zero-copy access.

use rkyv::place::Place;
use rkyv::rancor::{Failure, Strategy};
use rkyv::ser::allocator::Arena;
use rkyv::ser::{Serializer, WriterExt};
use rkyv::with::InlineAsBox;
use rkyv::{Archive, Serialize};

mod checksum;

/// Version of the on-disk layout written by this library.
pub const FORMAT_VERSION: u32 = 1;
/// First bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"CWALSEG\x01";
/// Size of the segment header; frames start right after it.
pub const SEGMENT_HEADER_LEN: usize = 64;
/// `[length][crc32c]` in front of every payload.
pub const FRAME_HEADER_LEN: usize = 8;
/// Frames start on this boundary.
pub const FRAME_ALIGN: usize = 8;

const _: () = assert!(SEGMENT_HEADER_LEN.is_multiple_of(FRAME_ALIGN));
const _: () = assert!(FRAME_HEADER_LEN.is_multiple_of(FRAME_ALIGN));
const _: () = assert!(FRAME_ALIGN.is_power_of_two());

/// Bytes a frame with a payload of `payload_len` bytes occupies on disk.
#[inline]
pub const fn frame_len(payload_len: usize) -> usize {
    FRAME_HEADER_LEN + payload_len.div_ceil(FRAME_ALIGN) * FRAME_ALIGN
}

/// The identity of a segment, written in its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    pub core_id: u32,
    pub segment_index: u64,
    /// Lane position of the first frame in the segment.
    pub base_position: u64,
}

/// Why a segment header could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderProblem {
    /// Every byte is zero: a prepared segment that was never started.
    Unused,
    /// Fewer bytes than a header.
    Short,
    BadMagic,
    BadChecksum,
    UnsupportedVersion(u32),
}

impl std::fmt::Display for HeaderProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderProblem::Unused => f.write_str("segment header is all zeros"),
            HeaderProblem::Short => f.write_str("segment is shorter than its header"),
            HeaderProblem::BadMagic => f.write_str("segment header has a bad magic number"),
            HeaderProblem::BadChecksum => f.write_str("segment header checksum mismatch"),
            HeaderProblem::UnsupportedVersion(v) => {
                write!(f, "segment format version {v} is not supported")
            }
        }
    }
}

impl SegmentHeader {
    /// Layout: magic[0..8], version[8..12], core[12..16], index[16..24],
    /// base[24..32], zeros[32..60], crc32c of bytes 0..60 at [60..64].
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut out = [0u8; SEGMENT_HEADER_LEN];
        out[0..8].copy_from_slice(&SEGMENT_MAGIC);
        out[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        out[12..16].copy_from_slice(&self.core_id.to_le_bytes());
        out[16..24].copy_from_slice(&self.segment_index.to_le_bytes());
        out[24..32].copy_from_slice(&self.base_position.to_le_bytes());
        let crc = crc32c::crc32c(&out[..60]);
        out[60..64].copy_from_slice(&crc.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<SegmentHeader, HeaderProblem> {
        let Some(bytes) = bytes.get(..SEGMENT_HEADER_LEN) else {
            return Err(HeaderProblem::Short);
        };
        if bytes.iter().all(|&b| b == 0) {
            return Err(HeaderProblem::Unused);
        }
        if bytes[0..8] != SEGMENT_MAGIC {
            return Err(HeaderProblem::BadMagic);
        }
        if crc32c::crc32c(&bytes[..60]) != read_u32(bytes, 60) {
            return Err(HeaderProblem::BadChecksum);
        }
        let version = read_u32(bytes, 8);
        if version != FORMAT_VERSION {
            return Err(HeaderProblem::UnsupportedVersion(version));
        }
        Ok(SegmentHeader {
            core_id: read_u32(bytes, 12),
            segment_index: read_u64(bytes, 16),
            base_position: read_u64(bytes, 24),
        })
    }
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// Checksum seed for frames of one segment of one lane. A frame copied into
/// another lane or segment (a misdirected or stale write) fails its check.
pub fn frame_seed(core_id: u32, segment_index: u64) -> u32 {
    let mut id = [0u8; 12];
    id[..4].copy_from_slice(&core_id.to_le_bytes());
    id[4..].copy_from_slice(&segment_index.to_le_bytes());
    // A non-zero starting value keeps an all-zero frame from validating even
    // for a seed that happened to be zero.
    crc32c::crc32c_append(0x5EED_C0DE, &id)
}

pub use checksum::frame_crc;

/// Writes the frame header for `padded_payload` (which must already hold the
/// payload followed by its zero padding) into `header`.
#[inline]
pub fn seal_frame(seed: u32, payload_len: usize, padded_payload: &[u8]) -> [u8; FRAME_HEADER_LEN] {
    debug_assert_eq!(
        frame_len(payload_len),
        FRAME_HEADER_LEN + padded_payload.len()
    );
    let len_field = (payload_len as u32).to_le_bytes();
    let crc = frame_crc(seed, len_field, padded_payload);
    let mut header = [0u8; FRAME_HEADER_LEN];
    header[..4].copy_from_slice(&len_field);
    header[4..].copy_from_slice(&crc.to_le_bytes());
    header
}

/// A frame that passed its checksum.
#[derive(Debug, Clone, Copy)]
pub struct ValidFrame<'a> {
    pub payload: &'a [u8],
    /// Bytes the frame occupies, padding included.
    pub frame_len: usize,
}

/// Checks the frame starting at `bytes[0]`. `bytes` runs to the end of the
/// readable segment; `max_payload` bounds the length before it is trusted.
/// Returns `None` for anything that is not a whole, valid frame, including
/// the zeros after the last frame.
#[inline]
pub fn check_frame(bytes: &[u8], seed: u32, max_payload: usize) -> Option<ValidFrame<'_>> {
    Unchecked::at(bytes, max_payload)?.check(seed)
}

/// [`check_frame`] for the frame at `bytes[0]` and the frame right after
/// it, both checksums computed side by side (see `checksum`): what a reader
/// walking a run of frames calls. The second is `None` when the first is.
#[inline]
pub fn check_frame_pair(
    bytes: &[u8],
    seed: u32,
    max_payload: usize,
) -> (Option<ValidFrame<'_>>, Option<ValidFrame<'_>>) {
    let Some(first) = Unchecked::at(bytes, max_payload) else {
        return (None, None);
    };
    let Some(second) = Unchecked::at(&bytes[first.frame_len..], max_payload) else {
        return (first.check(seed), None);
    };
    let (crc_first, crc_second) = checksum::frame_crc_pair(
        seed,
        (first.len_field, first.body),
        (second.len_field, second.body),
    );
    if crc_first != first.stored {
        return (None, None);
    }
    (
        Some(first.valid()),
        (crc_second == second.stored).then(|| second.valid()),
    )
}

/// A frame whose length is plausible and whose bytes are all there, before
/// its checksum is compared.
struct Unchecked<'a> {
    len_field: [u8; 4],
    stored: u32,
    /// Payload and padding.
    body: &'a [u8],
    payload_len: usize,
    frame_len: usize,
}

impl<'a> Unchecked<'a> {
    #[inline]
    fn at(bytes: &'a [u8], max_payload: usize) -> Option<Unchecked<'a>> {
        let header = bytes.get(..FRAME_HEADER_LEN)?;
        let payload_len = read_u32(header, 0) as usize;
        if payload_len == 0 || payload_len > max_payload {
            return None;
        }
        let frame_len = frame_len(payload_len);
        Some(Unchecked {
            len_field: header[..4].try_into().expect("4 bytes"),
            stored: read_u32(header, 4),
            body: bytes.get(FRAME_HEADER_LEN..frame_len)?,
            payload_len,
            frame_len,
        })
    }

    /// The frame, if its checksum holds.
    #[inline]
    fn check(&self, seed: u32) -> Option<ValidFrame<'a>> {
        (frame_crc(seed, self.len_field, self.body) == self.stored).then(|| self.valid())
    }

    #[inline]
    fn valid(&self) -> ValidFrame<'a> {
        ValidFrame {
            payload: &self.body[..self.payload_len],
            frame_len: self.frame_len,
        }
    }
}

/// One `(source name, offset)` pair carried by a COMMIT record.
#[derive(Archive, Serialize, Debug, Clone, Copy)]
pub struct SourceOffsetRef<'a> {
    #[rkyv(with = InlineAsBox)]
    pub name: &'a [u8],
    pub offset: u64,
}

/// The operation a record carries.
#[derive(Archive, Serialize, Debug, Clone, Copy)]
pub enum OpRef<'a> {
    Put {
        #[rkyv(with = InlineAsBox)]
        key: &'a [u8],
        #[rkyv(with = InlineAsBox)]
        value: &'a [u8],
    },
    Delete {
        #[rkyv(with = InlineAsBox)]
        key: &'a [u8],
    },
    Commit {
        #[rkyv(with = InlineAsBox)]
        offsets: &'a [SourceOffsetRef<'a>],
        watermark: Option<i64>,
    },
    Checkpoint {
        checkpoint_id: u64,
    },
    EpochBarrier,
}

/// A record as it is archived in a frame payload. Borrowed, so that encoding
/// never copies the caller's key and value into an owned record first.
#[derive(Archive, Serialize, Debug, Clone, Copy)]
pub struct RecordRef<'a> {
    pub epoch: u64,
    pub timestamp_ns: i64,
    pub sequence: u64,
    /// The lane's synced position when this frame was written.
    pub durable_mark: u64,
    pub core_id: u32,
    pub op: OpRef<'a>,
}

/// Operation codes shared with the C ABI (`cw_op`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum OpKind {
    Put = 1,
    Delete = 2,
    Commit = 3,
    Checkpoint = 4,
    EpochBarrier = 5,
}

impl OpRef<'_> {
    pub fn kind(&self) -> OpKind {
        match self {
            OpRef::Put { .. } => OpKind::Put,
            OpRef::Delete { .. } => OpKind::Delete,
            OpRef::Commit { .. } => OpKind::Commit,
            OpRef::Checkpoint { .. } => OpKind::Checkpoint,
            OpRef::EpochBarrier => OpKind::EpochBarrier,
        }
    }
}

/// Serializes records without allocating once its buffers have grown to the
/// working size.
#[derive(Default)]
pub struct Encoder {
    scratch: Vec<u8>,
    arena: Arena,
}

impl Encoder {
    /// Appends the payload of `record` to `out`, zero-padded to the frame
    /// alignment, and returns its unpadded length. `out.len()` must be a
    /// multiple of [`FRAME_ALIGN`]: rkyv aligns fields relative to the start
    /// of `out`, and its pointers are relative, so the bytes are the same
    /// wherever they land and can later be moved as they are.
    pub fn encode_into(&mut self, record: &RecordRef<'_>, out: &mut Vec<u8>) -> usize {
        self.encode_into_with(record, out, true)
    }

    /// [`Encoder::encode_into`]; `in_place`: resolve the record's root
    /// straight into `out` where its memory is aligned for it. rkyv's own
    /// path builds the root on the stack from narrow stores and copies it
    /// with wide loads, a store-forwarding stall on every record. Both ways
    /// give the same bytes.
    fn encode_into_with(
        &mut self,
        record: &RecordRef<'_>,
        out: &mut Vec<u8>,
        in_place: bool,
    ) -> usize {
        debug_assert!(out.len().is_multiple_of(FRAME_ALIGN));
        let start = out.len();
        if !in_place || !self.resolve_in_place(record, out) {
            // Through a reference: moving the `Vec` in and out by value cost
            // another stall.
            rkyv::api::low::to_bytes_in_with_alloc::<_, _, Failure>(
                record,
                &mut *out,
                self.arena.acquire(),
            )
            .expect("serializing into memory cannot fail");
        }
        let len = out.len() - start;
        out.resize(start + frame_len(len) - FRAME_HEADER_LEN, 0);
        len
    }

    /// Writes the record's out-of-line parts, then resolves its root into
    /// zeroed bytes after them, as rkyv's serializer would. Leaves `out`
    /// as it was and returns false where that memory is not aligned for the
    /// root (a global allocator may hand a byte vector any address).
    fn resolve_in_place(&mut self, record: &RecordRef<'_>, out: &mut Vec<u8>) -> bool {
        type Root = ArchivedRecordRef<'static>;
        let start = out.len();
        let (resolver, root) = {
            let mut serializer = Serializer::new(&mut *out, self.arena.acquire(), ());
            let strategy = Strategy::<_, Failure>::wrap(&mut serializer);
            let resolver = record
                .serialize(strategy)
                .expect("serializing into memory cannot fail");
            let root = strategy
                .align_for::<Root>()
                .expect("padding in memory cannot fail");
            (resolver, root)
        };
        out.resize(root + std::mem::size_of::<Root>(), 0);
        let slot = out[root..].as_mut_ptr().cast::<ArchivedRecordRef<'_>>();
        if !slot.is_aligned() {
            out.truncate(start);
            return false;
        }
        // SAFETY: `slot` points at `size_of::<Root>()` zeroed, initialised
        // bytes inside `out`, aligned for the root (checked above), and at
        // position `root` of the archive that starts at `out[0]` (rkyv's
        // relative pointers are computed from that position); `out` is not
        // touched while `place` lives.
        let place = unsafe { Place::new_unchecked(root, slot) };
        record.resolve(resolver, place);
        true
    }

    /// Encodes `record` into the encoder's own buffer and returns the payload
    /// followed by its zero padding, plus the unpadded payload length.
    pub fn encode(&mut self, record: &RecordRef<'_>) -> (&[u8], usize) {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        let len = self.encode_into(record, &mut scratch);
        self.scratch = scratch;
        (&self.scratch, len)
    }
}

/// A decoded record borrowing from the payload it came from.
#[derive(Debug, Clone, Copy)]
pub struct RecordView<'a> {
    pub epoch: u64,
    pub timestamp_ns: i64,
    pub sequence: u64,
    pub durable_mark: u64,
    pub core_id: u32,
    pub op: OpView<'a>,
}

/// A decoded operation. COMMIT offsets stay archived; read them with
/// [`OffsetsView::get`].
#[derive(Debug, Clone, Copy)]
pub enum OpView<'a> {
    Put {
        key: &'a [u8],
        value: &'a [u8],
    },
    Delete {
        key: &'a [u8],
    },
    Commit {
        offsets: OffsetsView<'a>,
        watermark: Option<i64>,
    },
    Checkpoint {
        checkpoint_id: u64,
    },
    EpochBarrier,
}

impl OpView<'_> {
    pub fn kind(&self) -> OpKind {
        match self {
            OpView::Put { .. } => OpKind::Put,
            OpView::Delete { .. } => OpKind::Delete,
            OpView::Commit { .. } => OpKind::Commit,
            OpView::Checkpoint { .. } => OpKind::Checkpoint,
            OpView::EpochBarrier => OpKind::EpochBarrier,
        }
    }
}

/// The source offsets of a COMMIT record, still in archived form.
#[derive(Clone, Copy)]
pub struct OffsetsView<'a>(&'a [ArchivedSourceOffsetRef<'a>]);

impl<'a> OffsetsView<'a> {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The `index`-th `(name, offset)` pair.
    pub fn get(&self, index: usize) -> Option<(&'a [u8], u64)> {
        self.0
            .get(index)
            .map(|o| (o.name.get(), o.offset.to_native()))
    }
}

impl std::fmt::Debug for OffsetsView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries((0..self.len()).filter_map(|i| self.get(i)))
            .finish()
    }
}

/// Decodes a payload that passed its frame checksum. The archive is still
/// validated: a checksum proves the bytes are the ones written, not that
/// whoever wrote them was this library.
pub fn decode(payload: &[u8]) -> Option<RecordView<'_>> {
    // The low-level validator: records hold no shared pointers, so the
    // high-level one's shared-pointer table would be pure overhead.
    let archived = rkyv::api::low::access::<ArchivedRecordRef<'_>, Failure>(payload).ok()?;
    let op = match &archived.op {
        ArchivedOpRef::Put { key, value } => OpView::Put {
            key: key.get(),
            value: value.get(),
        },
        ArchivedOpRef::Delete { key } => OpView::Delete { key: key.get() },
        ArchivedOpRef::Commit { offsets, watermark } => OpView::Commit {
            offsets: OffsetsView(offsets.get()),
            watermark: watermark.as_ref().map(|w| w.to_native()),
        },
        ArchivedOpRef::Checkpoint { checkpoint_id } => OpView::Checkpoint {
            checkpoint_id: checkpoint_id.to_native(),
        },
        ArchivedOpRef::EpochBarrier => OpView::EpochBarrier,
    };
    Some(RecordView {
        epoch: archived.epoch.to_native(),
        timestamp_ns: archived.timestamp_ns.to_native(),
        sequence: archived.sequence.to_native(),
        durable_mark: archived.durable_mark.to_native(),
        core_id: archived.core_id.to_native(),
        op,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample<'a>(op: OpRef<'a>) -> RecordRef<'a> {
        RecordRef {
            epoch: 3,
            timestamp_ns: 1_700_000_000_000_000_000,
            sequence: 42,
            durable_mark: 4096,
            core_id: 1,
            op,
        }
    }

    /// A PUT of the size the benchmarks write.
    fn usual_put() -> OpRef<'static> {
        OpRef::Put {
            key: b"0123456789abcdef",
            value: &[7u8; 100],
        }
    }

    fn framed(seed: u32, record: &RecordRef<'_>) -> Vec<u8> {
        let mut enc = Encoder::default();
        let (padded, len) = enc.encode(record);
        let mut out = seal_frame(seed, len, padded).to_vec();
        out.extend_from_slice(padded);
        out
    }

    #[test]
    fn header_round_trips_and_rejects_damage() {
        let h = SegmentHeader {
            core_id: 7,
            segment_index: 12,
            base_position: 1 << 40,
        };
        let bytes = h.encode();
        assert_eq!(SegmentHeader::decode(&bytes), Ok(h));
        for bit in 0..SEGMENT_HEADER_LEN * 8 {
            let mut damaged = bytes;
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(SegmentHeader::decode(&damaged).is_err(), "bit {bit}");
        }
        assert_eq!(
            SegmentHeader::decode(&[0u8; 64]),
            Err(HeaderProblem::Unused)
        );
        assert_eq!(
            SegmentHeader::decode(&bytes[..63]),
            Err(HeaderProblem::Short)
        );
    }

    /// The encoder uses rkyv's low-level serializer (no shared-pointer
    /// table); the bytes on disk must be what the high-level API writes.
    #[test]
    fn encoding_matches_rkyvs_high_level_api() {
        let offsets = [SourceOffsetRef {
            name: b"orders-0",
            offset: 17,
        }];
        let ops = [
            usual_put(),
            OpRef::Delete { key: b"gone" },
            OpRef::Commit {
                offsets: &offsets,
                watermark: Some(-5),
            },
            OpRef::Checkpoint { checkpoint_id: 9 },
            OpRef::EpochBarrier,
        ];
        let mut enc = Encoder::default();
        for op in ops {
            let record = sample(op);
            let expected = rkyv::to_bytes::<Failure>(&record).expect("serializes");
            let (padded, len) = enc.encode(&record);
            assert_eq!(&padded[..len], expected.as_slice(), "{:?}", op.kind());
            // Behind other frames, resolved in place or through rkyv's own
            // path: the same bytes (its pointers are relative).
            for in_place in [true, false] {
                let mut out = vec![0xAA; 24];
                let len = enc.encode_into_with(&record, &mut out, in_place);
                assert_eq!(&out[24..24 + len], expected.as_slice(), "{:?}", op.kind());
                assert!(out[24 + len..].iter().all(|&b| b == 0));
                assert!(out.len().is_multiple_of(FRAME_ALIGN));
            }
        }
    }

    /// The fast path is the one taken: the system allocator aligns every
    /// block to at least 16 bytes, more than the record root needs.
    #[test]
    fn the_root_is_resolved_in_place_in_an_allocated_buffer() {
        let mut enc = Encoder::default();
        let mut out = Vec::with_capacity(4096);
        out.extend_from_slice(&[0u8; 16]);
        assert!(enc.resolve_in_place(&sample(usual_put()), &mut out));
    }

    #[test]
    fn every_op_round_trips() {
        let offsets = [
            SourceOffsetRef {
                name: b"orders-0",
                offset: 17,
            },
            SourceOffsetRef {
                name: b"",
                offset: u64::MAX,
            },
        ];
        let ops = [
            OpRef::Put {
                key: b"k",
                value: b"value",
            },
            OpRef::Delete { key: b"gone" },
            OpRef::Commit {
                offsets: &offsets,
                watermark: Some(-5),
            },
            OpRef::Commit {
                offsets: &[],
                watermark: None,
            },
            OpRef::Checkpoint { checkpoint_id: 9 },
            OpRef::EpochBarrier,
        ];
        let seed = frame_seed(1, 0);
        for op in ops {
            let bytes = framed(seed, &sample(op));
            assert_eq!(bytes.len() % FRAME_ALIGN, 0);
            let frame = check_frame(&bytes, seed, 1 << 20).expect("valid frame");
            assert_eq!(frame.frame_len, bytes.len());
            let view = decode(frame.payload).expect("decodes");
            assert_eq!(view.epoch, 3);
            assert_eq!(view.sequence, 42);
            assert_eq!(view.durable_mark, 4096);
            assert_eq!(view.core_id, 1);
            assert_eq!(view.op.kind(), op.kind());
            match (op, view.op) {
                (OpRef::Put { key, value }, OpView::Put { key: k, value: v }) => {
                    assert_eq!((key, value), (k, v));
                }
                (OpRef::Delete { key }, OpView::Delete { key: k }) => assert_eq!(key, k),
                (
                    OpRef::Commit { offsets, watermark },
                    OpView::Commit {
                        offsets: o,
                        watermark: w,
                    },
                ) => {
                    assert_eq!(watermark, w);
                    assert_eq!(offsets.len(), o.len());
                    for (i, want) in offsets.iter().enumerate() {
                        assert_eq!(o.get(i), Some((want.name, want.offset)));
                    }
                    assert_eq!(o.get(offsets.len()), None);
                }
                (OpRef::Checkpoint { checkpoint_id }, OpView::Checkpoint { checkpoint_id: c }) => {
                    assert_eq!(checkpoint_id, c);
                }
                (OpRef::EpochBarrier, OpView::EpochBarrier) => {}
                (a, b) => panic!("{a:?} decoded as {b:?}"),
            }
        }
    }

    #[test]
    fn any_flipped_bit_fails_the_frame() {
        let seed = frame_seed(0, 3);
        let bytes = framed(seed, &sample(usual_put()));
        for bit in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(check_frame(&damaged, seed, 1 << 20).is_none(), "bit {bit}");
        }
    }

    #[test]
    fn a_pair_check_agrees_with_checking_each_frame() {
        let seed = frame_seed(2, 9);
        let put = framed(seed, &sample(usual_put()));
        let barrier = framed(seed, &sample(OpRef::EpochBarrier));
        let flipped = |frame: &[u8], at: usize| {
            let mut frame = frame.to_vec();
            frame[at] ^= 0x10;
            frame
        };
        let seconds = [
            barrier.clone(),
            put.clone(),
            flipped(&put, 40),
            flipped(&barrier, 2),
            vec![0u8; 64],
            put[..put.len() - 8].to_vec(),
            Vec::new(),
        ];
        for first in [
            put.clone(),
            barrier.clone(),
            flipped(&put, 9),
            vec![0u8; 16],
        ] {
            for second in &seconds {
                let bytes = [first.as_slice(), second].concat();
                let one = check_frame(&bytes, seed, 1 << 20);
                let two = one.and_then(|f| check_frame(&bytes[f.frame_len..], seed, 1 << 20));
                let (pair_one, pair_two) = check_frame_pair(&bytes, seed, 1 << 20);
                let seen = |f: Option<ValidFrame<'_>>| {
                    f.map(|f| (f.payload.as_ptr(), f.payload.len(), f.frame_len))
                };
                assert_eq!(seen(pair_one), seen(one));
                assert_eq!(seen(pair_two), seen(two));
            }
        }
        // The cases above include both outcomes for each frame.
        let bytes = [put.as_slice(), &barrier].concat();
        assert!(matches!(
            check_frame_pair(&bytes, seed, 1 << 20),
            (Some(_), Some(_))
        ));
        let bytes = [put.as_slice(), &flipped(&barrier, 2)].concat();
        assert!(matches!(
            check_frame_pair(&bytes, seed, 1 << 20),
            (Some(_), None)
        ));
    }

    #[test]
    fn frame_from_another_lane_or_segment_fails() {
        let bytes = framed(frame_seed(0, 3), &sample(OpRef::EpochBarrier));
        assert!(check_frame(&bytes, frame_seed(0, 3), 1 << 20).is_some());
        assert!(check_frame(&bytes, frame_seed(1, 3), 1 << 20).is_none());
        assert!(check_frame(&bytes, frame_seed(0, 4), 1 << 20).is_none());
    }

    #[test]
    fn zeros_and_short_or_oversized_frames_never_validate() {
        let seed = frame_seed(0, 0);
        assert!(check_frame(&[0u8; 256], seed, 1 << 20).is_none());
        let bytes = framed(seed, &sample(OpRef::Delete { key: b"abc" }));
        assert!(check_frame(&bytes[..bytes.len() - 1], seed, 1 << 20).is_none());
        assert!(
            check_frame(&bytes, seed, 8).is_none(),
            "length above the limit"
        );
        let mut huge = bytes.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(check_frame(&huge, seed, usize::MAX).is_none());
    }

    #[test]
    fn garbage_with_a_matching_checksum_is_refused_by_decode() {
        let seed = frame_seed(0, 0);
        let payload = [0xABu8; 24];
        let header = seal_frame(seed, payload.len(), &payload);
        let mut bytes = header.to_vec();
        bytes.extend_from_slice(&payload);
        let frame = check_frame(&bytes, seed, 1 << 20).expect("checksum matches");
        assert!(decode(frame.payload).is_none());
    }
}
