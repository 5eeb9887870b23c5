//! hashsieve: match content against vetted lists of known abuse imagery by hash alone.
//!
//! Partners hash their content locally and send only hashes; list maintainers publish signed,
//! versioned hash sets; the service verifies them, builds an immutable index and answers match
//! queries. See `../shared/DESIGN.md` for the architecture and the CLI / HTTP contract.
//!
//! Module map (dependencies only point down this list):
//!
//! | module | what |
//! |---|---|
//! | [`cli`] | the `hashsieve` command line (clap); the only module that touches clap/anyhow |
//! | [`hashing`] | client-side hashing: streaming digests, decoding, PDQ, aHash/dHash/pHash |
//! | [`kinds`] | hash kinds and values: parsing, display, Hamming distance |

pub mod cli;
pub mod hashing;
pub mod kinds;
