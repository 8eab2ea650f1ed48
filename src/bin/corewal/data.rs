//! The records every workload writes: 16-byte keys, 100-byte values, the
//! same deterministic content for corewal and for the raw baseline.

pub const KEY_LEN: usize = 16;
pub const VALUE_LEN: usize = 100;

/// Key of record `index` of lane `lane`: the lane and the index, big-endian,
/// so keys sort in write order.
#[inline]
pub fn key(lane: u32, index: u64) -> [u8; KEY_LEN] {
    let mut key = [0u8; KEY_LEN];
    key[4..8].copy_from_slice(&lane.to_be_bytes());
    key[8..].copy_from_slice(&index.to_be_bytes());
    key
}

/// The value of every record: a fixed, non-trivial byte pattern.
pub const VALUE: [u8; VALUE_LEN] = {
    let mut value = [0u8; VALUE_LEN];
    let mut i = 0;
    while i < VALUE_LEN {
        value[i] = (i as u8).wrapping_mul(31).wrapping_add(7);
        i += 1;
    }
    value
};
