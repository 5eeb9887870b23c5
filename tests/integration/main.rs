//! The one integration-test binary: real files, the real `hashsieve` binary.

mod conformance;
mod hash_cli;
mod util;
