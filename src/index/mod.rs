//! The match index: built only from verified hash sets, immutable once built.
//!
//! - [`exact`]: sorted digests with a radix directory, and a binary-fuse prefilter.

pub mod exact;
