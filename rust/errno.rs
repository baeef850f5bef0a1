// SPDX-License-Identifier: GPL-2.0

//! Error codes that 6.12's `kernel::error::code` does not name.

use super::bindings;
use kernel::error::Error;

/// `EPROTO`: the peer speaks another protocol (layout version or geometry).
pub fn eproto() -> Error {
    Error::from_errno(-(bindings::EPROTO as i32))
}

/// `EOPNOTSUPP`: the operation is not supported (ethtool prints it as such; `ENOTSUPP` is
/// kernel-internal and shows as "Unknown error 524").
pub fn eopnotsupp() -> Error {
    Error::from_errno(-(bindings::EOPNOTSUPP as i32))
}
