//! Slices of the id space: `hash(id) % total`, with SipHash-2-4 under a zero key over the id's
//! canonical bytes (8 little-endian bytes for an integer, the 16 RFC 4122 bytes for a UUID), so
//! every engine and client assigns a point to the same slice.

use index_core::PointId;

/// Which of `total` slices `id` belongs to. `total` must be at least 1.
pub(crate) fn point_slice(id: PointId, total: u32) -> u32 {
    let hash = match id {
        PointId::Num(n) => siphash24(0, 0, &n.to_le_bytes()),
        PointId::Uuid(u) => siphash24(0, 0, &u.to_be_bytes()),
    };
    // The remainder is below `total`, which fits in u32.
    (hash % u64::from(total.max(1))) as u32
}

fn sip_round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13) ^ v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16) ^ v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21) ^ v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17) ^ v[2];
    v[2] = v[2].rotate_left(32);
}

/// SipHash-2-4 under the key `(k0, k1)`.
fn siphash24(k0: u64, k1: u64, data: &[u8]) -> u64 {
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    let compress = |v: &mut [u64; 4], block: u64| {
        v[3] ^= block;
        sip_round(v);
        sip_round(v);
        v[0] ^= block;
    };
    let chunks = data.chunks_exact(8);
    let tail = chunks.remainder();
    for chunk in chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        compress(&mut v, u64::from_le_bytes(word));
    }
    // The last block holds the remaining bytes, zero-padded, and the length in its top byte.
    let mut last = [0u8; 8];
    last[..tail.len()].copy_from_slice(tail);
    let block = u64::from_le_bytes(last) | ((data.len() as u64 & 0xff) << 56);
    compress(&mut v, block);
    v[2] ^= 0xff;
    for _ in 0..4 {
        sip_round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    /// The reference vectors of the SipHash paper: key 00..0f, messages of 0, 1, 8 and 15
    /// bytes 00 01 02 ….
    fn reference_vectors() {
        let k0 = u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]);
        let k1 = u64::from_le_bytes([8, 9, 10, 11, 12, 13, 14, 15]);
        let msg: Vec<u8> = (0..15).collect();
        assert_eq!(siphash24(k0, k1, &[]), 0x726f_db47_dd0e_0e31);
        assert_eq!(siphash24(k0, k1, &msg[..1]), 0x74f8_39c5_93dc_67fd);
        assert_eq!(siphash24(k0, k1, &msg[..8]), 0x93f5_f579_9a93_2462);
        assert_eq!(siphash24(k0, k1, &msg), 0xa129_ca61_49be_45e5);
    }

    #[test]
    fn slices_partition_ids() {
        for n in 0..200u64 {
            let id = PointId::Num(n);
            assert!(point_slice(id, 7) < 7);
            // Slice 0 of 4 is inside slice 0 of 2: same hash, no salt.
            if point_slice(id, 4) == 0 {
                assert_eq!(point_slice(id, 2), 0);
            }
        }
    }
}
