//! Options of a manager, checked once at open.

use crate::direct::BLOCK;
use crate::error::{Error, Result};
use crate::format::{FRAME_ALIGN, FRAME_HEADER_LEN, SEGMENT_HEADER_LEN};
use crate::recovery::RecoveryMode;

/// Which I/O backend a manager uses (`cw_backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// The best backend this build and kernel offer.
    #[default]
    Auto,
    /// pwrite + fdatasync.
    Sync,
    /// One io_uring ring per writer.
    IoUring,
}

/// Largest number of lanes; core ids are written with five digits.
pub const MAX_CORES: u32 = 65_536;
/// Smallest segment accepted (tests use small segments to force rotation).
pub const MIN_SEGMENT_BYTES: u64 = 4096;
/// Largest segment accepted.
pub const MAX_SEGMENT_BYTES: u64 = 1 << 40;

/// Options of [`crate::Manager::open`] (`cw_options`).
#[derive(Debug, Clone)]
pub struct Options {
    /// Lanes to create; 0 means "whatever the directory has"; more than the
    /// directory has adds lanes; fewer is refused.
    pub num_cores: u32,
    /// Segment file size; fixed when the WAL is created.
    pub segment_bytes: u64,
    /// Largest encoded record (key, value and about 64 bytes of metadata);
    /// lowered to what fits in a segment.
    pub max_record_bytes: u64,
    pub backend: Backend,
    /// How damage found at open is treated.
    pub recovery_mode: RecoveryMode,
    pub create_if_missing: bool,
    /// Zero-fill and sync each segment before it is used; fixed when the
    /// WAL is created.
    pub preallocate: bool,
    /// Sync after this many records since the last sync; 0 = off.
    pub sync_every_records: u64,
    /// Sync after this many bytes since the last sync; 0 = off.
    pub sync_every_bytes: u64,
    /// Sync when an append comes this long after the last sync; 0 = off.
    pub sync_interval_us: u64,
    /// Background thread that syncs idle writers this often; 0 = none.
    pub flusher_interval_us: u64,
    /// io_uring: a kernel thread polls the submission queue (costs a core).
    pub uring_sqpoll: bool,
    /// io_uring: submission queue entries per writer's ring.
    pub uring_entries: u32,
    /// Write segments with direct I/O, each write durable on completion, so
    /// a sync needs no fdatasync (see [`crate::direct`]). Faster syncs,
    /// slower bulk appends (every write reaches the device); refused
    /// ([`crate::Error::Unsupported`]) where the file system does not
    /// support it. Needs `segment_bytes` to be a multiple of 4096.
    pub direct_io: bool,
    /// While the application waits for its syncs and nothing of the
    /// segment went through the page cache since its last fdatasync, the
    /// write a sync follows goes `O_DIRECT | O_DSYNC` and that sync needs
    /// no fdatasync (see [`crate::direct`]). Makes small, waited-for syncs
    /// faster; bulk appends and pipelined syncs stay buffered. Only where
    /// the file system supports direct I/O and `segment_bytes` is a
    /// multiple of 4096; elsewhere it is simply off. Default on; no effect
    /// with `direct_io`.
    pub direct_sync: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            num_cores: 0,
            segment_bytes: 64 << 20,
            max_record_bytes: 16 << 20,
            backend: Backend::Auto,
            recovery_mode: RecoveryMode::TolerateTornTail,
            create_if_missing: true,
            preallocate: true,
            sync_every_records: 0,
            sync_every_bytes: 0,
            sync_interval_us: 0,
            flusher_interval_us: 0,
            uring_sqpoll: false,
            uring_entries: 256,
            direct_io: false,
            direct_sync: true,
        }
    }
}

impl Options {
    /// Refuses values the engine cannot work with.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::InvalidArgument(msg));
        if self.num_cores > MAX_CORES {
            return bad(format!(
                "num_cores {} is above the limit of {MAX_CORES}",
                self.num_cores
            ));
        }
        if !(MIN_SEGMENT_BYTES..=MAX_SEGMENT_BYTES).contains(&self.segment_bytes)
            || !self.segment_bytes.is_multiple_of(FRAME_ALIGN as u64)
        {
            return bad(format!(
                "segment_bytes {} must be a multiple of {FRAME_ALIGN} between {MIN_SEGMENT_BYTES} and {MAX_SEGMENT_BYTES}",
                self.segment_bytes
            ));
        }
        if self.direct_io && !self.segment_bytes.is_multiple_of(BLOCK as u64) {
            return bad(format!(
                "segment_bytes {} must be a multiple of {BLOCK} for direct I/O",
                self.segment_bytes
            ));
        }
        if !(1..=32768).contains(&self.uring_entries) {
            return bad(format!(
                "uring_entries {} must be between 1 and 32768",
                self.uring_entries
            ));
        }
        if self.max_record_bytes == 0 {
            return bad("max_record_bytes must be above 0".into());
        }
        Ok(())
    }

    /// The io_uring settings of these options.
    pub fn uring(&self) -> crate::uring::UringOptions {
        crate::uring::UringOptions {
            entries: self.uring_entries,
            sqpoll: self.uring_sqpoll,
            ..Default::default()
        }
    }

    /// `max_record_bytes`, lowered to what fits in one segment (records never
    /// span segments).
    pub fn effective_max_record_bytes(&self) -> u64 {
        let fits = (self.segment_bytes - (SEGMENT_HEADER_LEN + FRAME_HEADER_LEN) as u64)
            .min(u64::from(u32::MAX))
            / FRAME_ALIGN as u64
            * FRAME_ALIGN as u64;
        self.max_record_bytes.min(fits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bounds_are_enforced() {
        assert!(Options::default().validate().is_ok());
        let with = |f: &dyn Fn(&mut Options)| {
            let mut o = Options::default();
            f(&mut o);
            o.validate()
        };
        assert!(with(&|o| o.num_cores = MAX_CORES + 1).is_err());
        assert!(with(&|o| o.segment_bytes = 4095).is_err());
        assert!(
            with(&|o| o.segment_bytes = 4100).is_err(),
            "not a multiple of 8"
        );
        assert!(with(&|o| o.max_record_bytes = 0).is_err());
        let direct = |segment_bytes| {
            with(&|o| {
                o.direct_io = true;
                o.segment_bytes = segment_bytes;
            })
        };
        assert!(direct(3 * 4096).is_ok());
        let err = direct(4104).unwrap_err().to_string();
        assert!(err.contains("multiple of 4096 for direct I/O"), "{err}");
        assert!(with(&|o| o.segment_bytes = 4104).is_ok(), "fine without");
    }

    #[test]
    fn max_record_is_clamped_to_what_fits_in_a_segment() {
        let o = Options {
            segment_bytes: 4096,
            ..Options::default()
        };
        assert!(o.validate().is_ok());
        assert_eq!(o.effective_max_record_bytes(), 4096 - 72);
        let small = Options {
            max_record_bytes: 100,
            ..o
        };
        assert_eq!(small.effective_max_record_bytes(), 100);
    }
}
