// SPDX-License-Identifier: GPL-2.0

//! Latency summaries.

use std::time::Duration;

/// Percentiles of a set of samples, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub count: usize,
    pub min_us: f64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

/// Nearest-rank percentile `q` (0 < q <= 1) of sorted `v`, which is not empty.
fn rank(v: &[u64], q: f64) -> u64 {
    let k = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[k - 1]
}

impl Summary {
    /// Summarises `samples` (nanoseconds; reordered). `None` when there are none.
    pub fn of_ns(samples: &mut [u64]) -> Option<Summary> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let sum: u128 = samples.iter().map(|&v| u128::from(v)).sum();
        Some(Summary {
            count: samples.len(),
            min_us: us(samples[0]),
            mean_us: sum as f64 / samples.len() as f64 / 1000.0,
            p50_us: us(rank(samples, 0.50)),
            p90_us: us(rank(samples, 0.90)),
            p99_us: us(rank(samples, 0.99)),
            max_us: us(samples[samples.len() - 1]),
        })
    }
}

/// Nanoseconds of `d`, saturating.
pub fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let mut v: Vec<u64> = (1..=100).rev().map(|i| i * 1000).collect();
        let s = Summary::of_ns(&mut v).unwrap();
        assert_eq!(s.count, 100);
        assert_eq!(s.min_us, 1.0);
        assert_eq!(s.p50_us, 50.0);
        assert_eq!(s.p90_us, 90.0);
        assert_eq!(s.p99_us, 99.0);
        assert_eq!(s.max_us, 100.0);
        assert_eq!(s.mean_us, 50.5);
        let s = Summary::of_ns(&mut [7000]).unwrap();
        assert_eq!((s.p50_us, s.p99_us, s.max_us), (7.0, 7.0, 7.0));
        assert!(Summary::of_ns(&mut []).is_none());
    }
}
