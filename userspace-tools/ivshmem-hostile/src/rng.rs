// SPDX-License-Identifier: GPL-2.0

//! A small, fast, seedable generator (SplitMix64), so that a storm is reproducible from the seed
//! it prints and the tool needs no random-number crate. Not for cryptography.

/// SplitMix64 (Steele, Lea, Flood 2014): a 64-bit counter run through a mixing function. Every
/// seed, 0 included, gives a full-period stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// The stream of `seed`.
    pub fn new(seed: u64) -> Self {
        Rng { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// The next 32 random bits (the high half, the better mixed one).
    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// A value in `0..n`, or 0 if `n` is 0 (multiply-shift: a bias of at most `n / 2^64`).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// [`Rng::below`] for `u32` bounds.
    pub fn below32(&mut self, n: u32) -> u32 {
        self.below(u64::from(n)) as u32
    }

    /// A value in `0..n`, or 0 if `n` is 0, for indexing.
    pub fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    /// True `num` times in `den`.
    pub fn chance(&mut self, num: u32, den: u32) -> bool {
        self.below32(den) < num
    }

    /// One element of `xs`, which must not be empty (every caller passes a literal array).
    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.index(xs.len())]
    }

    /// One of `edges` three times in four, otherwise a random word: values chosen to sit on a
    /// validation boundary, with noise around them.
    pub fn edge(&mut self, edges: &[u32]) -> u32 {
        if edges.is_empty() || self.chance(1, 4) {
            self.next_u32()
        } else {
            self.pick(edges)
        }
    }

    /// Fills `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_other_seed_other_stream() {
        let (mut a, mut b, mut c) = (Rng::new(7), Rng::new(7), Rng::new(8));
        let xs: Vec<u64> = (0..100).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..100).map(|_| b.next_u64()).collect();
        let zs: Vec<u64> = (0..100).map(|_| c.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
    }

    #[test]
    fn known_first_output() {
        // The reference implementation's first output for seed 0.
        assert_eq!(Rng::new(0).next_u64(), 0xe220_a839_7b1d_cdaf);
    }

    #[test]
    fn bounded_values_stay_in_range_and_cover_it() {
        let mut r = Rng::new(1);
        let mut seen = [0u32; 10];
        for _ in 0..10_000 {
            let v = r.below(10);
            assert!(v < 10);
            seen[v as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 800), "{seen:?}");
        assert_eq!(r.below(0), 0);
        assert_eq!(r.below32(1), 0);
    }

    #[test]
    fn fill_covers_odd_lengths() {
        let mut r = Rng::new(3);
        let mut buf = [0u8; 13];
        r.fill(&mut buf);
        assert!(buf.iter().filter(|&&b| b != 0).count() > 8);
    }
}
