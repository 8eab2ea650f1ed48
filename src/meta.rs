//! The metadata file: format version and lane count, fixed at creation.

use std::path::Path;

use crate::error::{Error, IoContext, Result};
use crate::format::FORMAT_VERSION;
use crate::io::Io;

/// Name of the metadata file inside a WAL directory.
pub const META_FILE: &str = "corewal.meta";
/// Name of the lock file inside a WAL directory.
pub const LOCK_FILE: &str = "corewal.lock";

/// Closes `body` (text lines) with a line holding its crc32c, the framing
/// of the metadata file and the manifest.
pub(crate) fn seal_lines(body: String) -> String {
    let crc = crc32c::crc32c(body.as_bytes());
    format!("{body}crc32c={crc:08x}\n")
}

/// The error for damage in the sealed text file `file`.
pub(crate) fn corrupt(file: &str, why: &str) -> Error {
    Error::CorruptMeta(format!("{file}: {why}"))
}

/// One `key=value` line of a sealed text.
pub(crate) struct Field<'a> {
    pub key: &'a str,
    pub value: &'a str,
    pub file: &'a str,
}

impl Field<'_> {
    /// The value as a number.
    pub fn number(&self) -> Result<u64> {
        self.value
            .parse()
            .map_err(|_| corrupt(self.file, &format!("{} is not a number", self.key)))
    }
}

/// The `key=value` lines of a sealed text after its first line, which must
/// be `header`, once the text is checked against its crc32c line. `file`
/// names the file in errors.
pub(crate) fn open_fields<'a>(
    text: &'a [u8],
    file: &'a str,
    header: &str,
) -> Result<Vec<Field<'a>>> {
    let bad = |why: &str| corrupt(file, why);
    let text = std::str::from_utf8(text).map_err(|_| bad("not UTF-8"))?;
    let split = text
        .rfind("crc32c=")
        .ok_or_else(|| bad("no checksum line"))?;
    let (body, crc_line) = text.split_at(split);
    let stored = u32::from_str_radix(crc_line.trim_start_matches("crc32c=").trim(), 16)
        .map_err(|_| bad("unreadable checksum"))?;
    if crc32c::crc32c(body.as_bytes()) != stored {
        return Err(bad("checksum mismatch"));
    }
    let mut lines = body.lines();
    if lines.next() != Some(header) {
        return Err(bad(&format!("not a {header} file")));
    }
    lines
        .map(|line| {
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| bad("line without '='"))?;
            Ok(Field { key, value, file })
        })
        .collect()
}

/// Reads and decodes `dir/name`; `None` when it does not exist.
pub(crate) fn read_sealed<I: Io, T>(
    io: &I,
    dir: &Path,
    name: &str,
    decode: impl FnOnce(&[u8]) -> Result<T>,
) -> Result<Option<T>> {
    let path = dir.join(name);
    match io.read_all(&path) {
        Ok(bytes) => decode(&bytes).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}

/// Replaces `dir/name` with `text` atomically and durably.
pub(crate) fn write_sealed<I: Io>(io: &I, dir: &Path, name: &str, text: &str) -> Result<()> {
    io.write_atomic(dir, name, text.as_bytes())
        .context(|| format!("writing {}", dir.join(name).display()))
}

/// What the metadata file records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub format_version: u32,
    pub num_cores: u32,
    /// Fixed at creation: every later open uses these.
    pub segment_bytes: u64,
    pub preallocate: bool,
    /// The limit at creation, for tools; each open sets its own.
    pub max_record_bytes: u64,
}

impl Meta {
    /// Text, one `key=value` a line, closed by a checksum of the lines above.
    pub fn encode(&self) -> String {
        let body = format!(
            "corewal-meta\nformat_version={}\nnum_cores={}\nsegment_bytes={}\nmax_record_bytes={}\npreallocate={}\n",
            self.format_version,
            self.num_cores,
            self.segment_bytes,
            self.max_record_bytes,
            self.preallocate as u8
        );
        seal_lines(body)
    }

    pub fn decode(text: &[u8]) -> Result<Meta> {
        let bad = |why: &str| corrupt(META_FILE, why);
        let mut meta = Meta {
            format_version: 0,
            num_cores: 0,
            segment_bytes: 0,
            max_record_bytes: 0,
            preallocate: true,
        };
        for field in open_fields(text, META_FILE, "corewal-meta")? {
            match field.key {
                "format_version" => meta.format_version = field.number()? as u32,
                "num_cores" => {
                    meta.num_cores =
                        u32::try_from(field.number()?).map_err(|_| bad("num_cores too large"))?
                }
                "segment_bytes" => meta.segment_bytes = field.number()?,
                "max_record_bytes" => meta.max_record_bytes = field.number()?,
                "preallocate" => meta.preallocate = field.number()? != 0,
                _ => {} // written by a newer version; not needed to read this one
            }
        }
        if meta.format_version != FORMAT_VERSION {
            return Err(bad(&format!(
                "format version {} is not supported",
                meta.format_version
            )));
        }
        if meta.num_cores == 0 || meta.num_cores > crate::options::MAX_CORES {
            return Err(bad(&format!(
                "num_cores {} is out of range",
                meta.num_cores
            )));
        }
        Ok(meta)
    }

    /// Reads the metadata of `dir`; `None` when there is none.
    pub fn read<I: Io>(io: &I, dir: &Path) -> Result<Option<Meta>> {
        read_sealed(io, dir, META_FILE, Meta::decode)
    }

    /// Writes the metadata of `dir` atomically.
    pub fn write<I: Io>(&self, io: &I, dir: &Path) -> Result<()> {
        write_sealed(io, dir, META_FILE, &self.encode())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Meta {
        Meta {
            format_version: FORMAT_VERSION,
            num_cores: 4,
            segment_bytes: 1 << 26,
            max_record_bytes: 1 << 24,
            preallocate: true,
        }
    }

    #[test]
    fn round_trips() {
        assert_eq!(
            Meta::decode(sample().encode().as_bytes()).unwrap(),
            sample()
        );
    }

    #[test]
    fn damage_and_nonsense_are_refused() {
        let text = sample().encode();
        let flipped = text.replace("num_cores=4", "num_cores=5");
        assert!(Meta::decode(flipped.as_bytes()).is_err());
        assert!(Meta::decode(b"").is_err());
        assert!(Meta::decode(&[0xff, 0xfe]).is_err());
        let body = "corewal-meta\nformat_version=1\nnum_cores=0\n";
        let zero = format!("{body}crc32c={:08x}\n", crc32c::crc32c(body.as_bytes()));
        assert!(Meta::decode(zero.as_bytes()).is_err(), "zero lanes");
    }
}
