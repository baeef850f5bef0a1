// SPDX-License-Identifier: GPL-2.0

//! Test frames that check themselves cheaply.
//!
//! A frame of `len >= MIN_LEN` bytes carries its sequence number (`u64` LE) at 0, its length
//! (`u32` LE) at 8, a mix of the two at 12, and the complement of the sequence number in its
//! last 8 bytes; every other byte `i` holds [`pattern`]`(i)`. [`check`] looks at the header,
//! the trailer and one payload byte whose position moves with the sequence number, so a frame
//! that is stale, truncated, shifted or torn is caught without reading all of it twice.

/// Smallest frame: header (16 bytes) and trailer (8 bytes).
pub const MIN_LEN: usize = 24;

/// Sequence number of the frame that ends a one-way run.
pub const END: u64 = u64::MAX;

/// Payload byte `i`.
pub fn pattern(i: usize) -> u8 {
    (i as u8).wrapping_mul(31).wrapping_add(7)
}

fn mix(seq: u64, len: u32) -> u32 {
    (seq as u32) ^ ((seq >> 32) as u32).rotate_left(7) ^ len.wrapping_mul(0x9e37_79b9)
}

/// A frame template of `len` bytes: the payload pattern, to be stamped by [`stamp`].
pub fn template(len: usize) -> Vec<u8> {
    assert!(len >= MIN_LEN, "frames are at least {MIN_LEN} bytes");
    (0..len).map(pattern).collect()
}

/// Writes `seq` (and the length) into the header and trailer of `buf`, a [`template`].
pub fn stamp(buf: &mut [u8], seq: u64) {
    let len = buf.len();
    buf[0..8].copy_from_slice(&seq.to_le_bytes());
    buf[8..12].copy_from_slice(&(len as u32).to_le_bytes());
    buf[12..16].copy_from_slice(&mix(seq, len as u32).to_le_bytes());
    buf[len - 8..].copy_from_slice(&(!seq).to_le_bytes());
}

/// Where [`check`] looks at the payload of frame `seq` with `payload` bytes between header and
/// trailer (`payload > 0`). Fibonacci hashing spreads consecutive numbers over the payload
/// without a division (a 64-bit one cost 64-byte ring runs some 3 %).
fn sample(seq: u64, payload: usize) -> usize {
    let spread = u64::from((seq as u32).wrapping_mul(0x9e37_79b9));
    16 + ((spread * payload as u64) >> 32) as usize
}

/// The sequence number of `buf` if it is a well-formed frame of its length, else `None`.
pub fn check(buf: &[u8]) -> Option<u64> {
    let len = buf.len();
    if len < MIN_LEN {
        return None;
    }
    let word = |at: usize| u64::from_le_bytes(buf[at..at + 8].try_into().unwrap_or([0; 8]));
    let half = |at: usize| u32::from_le_bytes(buf[at..at + 4].try_into().unwrap_or([0; 4]));
    let seq = word(0);
    if half(8) != len as u32 || half(12) != mix(seq, len as u32) || word(len - 8) != !seq {
        return None;
    }
    let payload = len - MIN_LEN;
    if payload > 0 {
        let i = sample(seq, payload);
        if buf[i] != pattern(i) {
            return None;
        }
    }
    Some(seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        for len in [MIN_LEN, 64, 1500, 65536] {
            let mut f = template(len);
            for seq in [0, 1, 77, END] {
                stamp(&mut f, seq);
                assert_eq!(check(&f), Some(seq));
            }
            stamp(&mut f, 5);
            assert_eq!(check(&f[..len - 1]), None, "truncated");
            let mut g = f.clone();
            g[len - 1] ^= 1;
            assert_eq!(check(&g), None, "trailer");
            let mut g = f.clone();
            g[3] ^= 1;
            assert_eq!(check(&g), None, "sequence number");
            if len > MIN_LEN {
                let i = sample(5, len - MIN_LEN);
                let mut g = f.clone();
                g[i] ^= 0x80;
                assert_eq!(check(&g), None, "payload sample");
            }
        }
        assert_eq!(check(&[0; 10]), None);
    }
}
