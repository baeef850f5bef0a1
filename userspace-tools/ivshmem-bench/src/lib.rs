// SPDX-License-Identifier: GPL-2.0

//! Shared pieces of the `ivnet-rr` and `ring-bench` binaries: self-checking test frames and
//! latency summaries.

pub mod frame;
pub mod stats;

/// Parses the value of command-line option `name` (`None`: it had none).
pub fn num<T: std::str::FromStr>(name: &str, v: Option<String>) -> Result<T, String> {
    let v = v.ok_or_else(|| format!("{name} needs a value"))?;
    v.parse().map_err(|_| format!("bad value {v:?} for {name}"))
}
