//! hashsieve: match content against vetted lists of known abuse imagery by hash alone.
//!
//! Partners hash their content locally and send only hashes; list maintainers publish signed,
//! versioned hash sets; the service verifies them, builds an immutable index and answers match
//! queries. `docs/architecture.md` describes the design, the formats and the trust model;
//! the README the CLI, HTTP and configuration contract.
//!
//! Module map. Dependencies only point down this list (a module uses those below it, never
//! one above):
//!
//! | module | what |
//! |---|---|
//! | [`cli`] | the `hashsieve` command line (clap); the only module that touches clap/anyhow |
//! | [`server`] | the HTTP service (axum): endpoints, auth, updates, metrics, audit log |
//! | [`client`] | the partner's HTTP client for `POST /v1/match` (`hashsieve match --server`) |
//! | [`config`] | the service configuration (`hashsieve.toml`), parsed strictly and validated |
//! | [`wire`] | the JSON of match requests and verdicts, shared by server, CLI and client |
//! | [`index`] | the match index: exact tables and filters, Hamming search, persisted indexes |
//! | [`hashset`] | signed, versioned hash sets: format, deltas, signatures, trust state |
//! | [`hashing`] | client-side hashing: streaming digests, decoding, PDQ, aHash/dHash/pHash |
//! | [`urls`] | URL canonicalisation and lookup expressions (Safe Browsing's rules) |
//! | [`kinds`] | hash kinds and values: parsing, display, Hamming distance |
//! | [`objstore`] | S3-compatible object storage: list, get (capped), put |
//! | [`clock`], [`fsutil`], `prefetch`, [`hugepages`] | leaves: time formats, atomic file writes, CPU prefetch and cache facts, large blocks on huge pages |

pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod fsutil;
pub mod hashing;
pub mod hashset;
pub mod hugepages;
pub mod index;
pub mod kinds;
pub mod objstore;
pub(crate) mod prefetch;
pub mod server;
pub mod urls;
pub mod wire;
