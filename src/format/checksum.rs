//! Frame checksums: crc32c over a frame's length field and padded payload.
//!
//! The crc32c crate is the reference and the fallback. On x86-64 the frames
//! are summed here with the SSE 4.2 instruction directly, for two reasons:
//! - for a ~200-byte buffer the crate's general path (alignment split, empty
//!   passes of its long-buffer code) runs about 200 instructions where a
//!   frame needs about 30;
//! - one frame is one chain of `crc32` instructions, each waiting for the
//!   one before it, and the crate has no way to run two buffers side by
//!   side: a reader walking frames checks two at a time, in about the time
//!   of one.
//!
//! The tests below check every result against the crate.

/// A frame's checksum: the crc32c, from `seed`, of `len_field` followed by
/// `padded_payload`, so a flipped bit anywhere in the frame (length, payload
/// or padding) is caught.
#[inline]
pub fn frame_crc(seed: u32, len_field: [u8; 4], padded_payload: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("sse4.2") {
        // SAFETY: the function only needs SSE 4.2, detected just above.
        return unsafe { one_sse42(seed, len_field, padded_payload) };
    }
    with_crate(seed, len_field, padded_payload)
}

/// [`frame_crc`] for each of two frames, both under `seed`.
#[inline]
pub fn frame_crc_pair(seed: u32, first: ([u8; 4], &[u8]), second: ([u8; 4], &[u8])) -> (u32, u32) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("sse4.2") {
        // SAFETY: the function only needs SSE 4.2, detected just above.
        return unsafe { pair_sse42(seed, first, second) };
    }
    (
        with_crate(seed, first.0, first.1),
        with_crate(seed, second.0, second.1),
    )
}

fn with_crate(seed: u32, len_field: [u8; 4], padded_payload: &[u8]) -> u32 {
    let crc = crc32c::crc32c_append(seed, &len_field);
    crc32c::crc32c_append(crc, padded_payload)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
fn one_sse42(seed: u32, len_field: [u8; 4], padded_payload: &[u8]) -> u32 {
    use std::arch::x86_64::_mm_crc32_u32;
    // The crc32c convention: the register holds the complement of the value.
    let crc = _mm_crc32_u32(!seed, u32::from_le_bytes(len_field));
    !chain_sse42(u64::from(crc), padded_payload)
}

/// Both chains in lockstep over the words the frames have in common, then
/// whatever is left of the longer one.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
fn pair_sse42(seed: u32, first: ([u8; 4], &[u8]), second: ([u8; 4], &[u8])) -> (u32, u32) {
    use std::arch::x86_64::{_mm_crc32_u32, _mm_crc32_u64};
    // The crc32c convention: the register holds the complement of the value.
    let mut a = u64::from(_mm_crc32_u32(!seed, u32::from_le_bytes(first.0)));
    let mut b = u64::from(_mm_crc32_u32(!seed, u32::from_le_bytes(second.0)));
    let common = first.1.len().min(second.1.len()) / 8 * 8;
    let (both_a, rest_a) = first.1.split_at(common);
    let (both_b, rest_b) = second.1.split_at(common);
    for (x, y) in both_a.chunks_exact(8).zip(both_b.chunks_exact(8)) {
        a = _mm_crc32_u64(a, word(x));
        b = _mm_crc32_u64(b, word(y));
    }
    (!chain_sse42(a, rest_a), !chain_sse42(b, rest_b))
}

/// One chain over `bytes`, from the register value `crc`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
fn chain_sse42(mut crc: u64, bytes: &[u8]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u8, _mm_crc32_u64};
    let words = bytes.chunks_exact(8);
    let tail = words.remainder();
    for x in words {
        crc = _mm_crc32_u64(crc, word(x));
    }
    let mut crc = crc as u32;
    for &byte in tail {
        crc = _mm_crc32_u8(crc, byte);
    }
    crc
}

#[inline]
fn word(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes.try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes that differ from call to call without a random source.
    fn filled(len: usize, salt: u32) -> Vec<u8> {
        (0..len)
            .map(|i| {
                (i as u32).wrapping_mul(2_654_435_761).wrapping_add(salt) as u8 ^ (i >> 3) as u8
            })
            .collect()
    }

    #[test]
    fn single_and_paired_sums_agree_with_the_crate_for_every_length_mix() {
        for len_a in [0usize, 1, 7, 8, 9, 63, 64, 192, 200, 777, 4096] {
            for len_b in [0usize, 3, 8, 16, 192, 199, 1000] {
                let (a, b) = (filled(len_a, 1), filled(len_b, 2));
                let (field_a, field_b) =
                    ((len_a as u32).to_le_bytes(), (len_b as u32).to_le_bytes());
                for seed in [0u32, 0x5EED_C0DE, u32::MAX] {
                    let expected = (with_crate(seed, field_a, &a), with_crate(seed, field_b, &b));
                    assert_eq!(frame_crc(seed, field_a, &a), expected.0);
                    assert_eq!(
                        frame_crc_pair(seed, (field_a, &a), (field_b, &b)),
                        expected,
                        "lengths {len_a} and {len_b}, seed {seed:#x}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_flipped_bit_changes_only_its_own_frame() {
        let (a, b) = (filled(192, 3), filled(192, 4));
        let field = 192u32.to_le_bytes();
        let clean = frame_crc_pair(7, (field, &a), (field, &b));
        for bit in 0..192 * 8 {
            let mut damaged = b.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            let (first, second) = frame_crc_pair(7, (field, &a), (field, &damaged));
            assert_eq!(first, clean.0);
            assert_ne!(second, clean.1, "bit {bit}");
        }
    }
}
