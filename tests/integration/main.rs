//! The one integration-test binary: real files, the real `hashsieve` binary.

mod conformance;
mod deploy;
mod examples;
mod hash_cli;
mod hashset_props;
mod hashset_trust;
mod hostile;
mod index_match;
mod s3;
mod server;
mod survive;
mod urls;
mod util;
mod video;
mod video_lists;
