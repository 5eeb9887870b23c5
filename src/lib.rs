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
//! | [`server`] | the HTTP service (axum): endpoints, auth, updates, metrics, audit log |
//! | [`client`] | the partner's HTTP client for `POST /v1/match` (`hashsieve match --server`) |
//! | [`config`] | the service configuration (`hashsieve.toml`), parsed strictly and validated |
//! | [`hashset`] | signed, versioned hash sets: format, deltas, signatures, trust state |
//! | [`hashing`] | client-side hashing: streaming digests, decoding, PDQ, aHash/dHash/pHash |
//! | [`kinds`] | hash kinds and values: parsing, display, Hamming distance |
//! | [`index`] | the match index: exact tables and filters, Hamming search, persisted indexes |
//! | [`fsutil`] | atomic file writes |

pub mod cli;
pub mod client;
pub mod config;
pub mod fsutil;
pub mod hashing;
pub mod hashset;
pub mod index;
pub mod kinds;
pub mod server;
