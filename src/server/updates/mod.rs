//! Hash-set updates: the one writer. A dedicated thread owns the trust state and every list's
//! current set; it restores the last good sets from the state dir at start ([`state`]), polls
//! each list's [`source`] (a directory, or an HTTPS base URL with a listing), takes admin
//! uploads, and for each file runs the full verification (signature by a configured key,
//! trusted comment, structure, expiry, version above the accepted one) before anything is
//! indexed. A new index is built off the request path and published with one atomic swap; a
//! refused or broken file leaves the previous version serving and is recorded as the list's
//! last refusal.

mod source;
mod state;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::clock::{now_unix, rfc3339};
use crate::config::{Config, ListConfig, Source as SourceConfig};
use crate::hashset::FormatError;
use crate::hashset::delta::DeltaError;
use crate::hashset::format::HashSetFile;
use crate::hashset::signing::Published;
use crate::hashset::trust::{self, Policy, Refusal, StateError};
use crate::index::store;
use crate::index::{IndexError, ListIndex};
use crate::kinds::hex_lower;
use source::{DirSource, HttpsSource, Listed, S3Source, Source, Stamp};
use state::StateDir;

use super::{ListStatus, Refused, Shared, Snapshot};

/// Why an offered set or delta was not taken.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(
        "{path}: delta from version {base} but this service has {}",
        have.map_or("no version".to_owned(), |v| format!("version {v}"))
    )]
    NoBase {
        path: String,
        base: u64,
        have: Option<u64>,
    },
    #[error("{path}: {source}")]
    Delta {
        path: String,
        #[source]
        source: DeltaError,
    },
    #[error("{path}: delta result: {source}")]
    Result {
        path: String,
        #[source]
        source: FormatError,
    },
    #[error("{path}: delta result digest {got} differs from the signed {expected}")]
    ResultDigest {
        path: String,
        got: String,
        expected: String,
    },
    #[error("{path}: {list:?} is not a configured list")]
    UnknownList { path: String, list: String },
    #[error("building the index: {0}")]
    Index(#[from] IndexError),
    #[error("saving state: {0}")]
    State(#[from] StateError),
    #[error(
        "{path}: the trust state is damaged ({detail}). It is what refuses rolled-back lists, so \
         the service does not start without it: restore it from a backup, or move it aside to \
         start afresh (each list then accepts the newest verified version its source offers, \
         and refuses rollbacks from there)"
    )]
    DamagedTrust { path: String, detail: String },
    #[error("saving state: {0}")]
    Io(#[from] std::io::Error),
}

/// How long a file may be seen without its signature before it is refused for that (at
/// least this, and at least one poll interval).
const SIGNATURE_PATIENCE: Duration = Duration::from_secs(10);

/// How often the updater looks for expired lists when nothing else wakes it.
const EXPIRY_CHECK: Duration = Duration::from_secs(5);

/// A message to the updater thread.
pub enum Command {
    /// A signed set or delta uploaded by an admin, with a reply channel.
    Offer {
        list: String,
        bytes: Vec<u8>,
        /// Its signatures (one, or one per maintainer for a threshold list).
        signatures: Vec<String>,
        reply: tokio::sync::oneshot::Sender<Result<u64, String>>,
    },
    /// Poll every source now (`hashsieve serve` sends it on SIGHUP).
    PollNow,
    Stop,
}

struct ListState {
    config: ListConfig,
    /// Where its files come from; `None` for a list that takes uploads only.
    source: Option<Box<dyn Source>>,
    current: Option<Arc<HashSetFile>>,
    /// The index of `current`, kept so that publishing another list's update reuses it.
    index: Option<Arc<ListIndex>>,
    /// Files already refused, with their stamp then: not offered again until it changes.
    refused: HashMap<PathBuf, Stamp>,
    /// Files seen without their signature, and since when. Publishers write the signature
    /// first, but one that is merely late is waited for (`SIGNATURE_PATIENCE`) before the
    /// file is refused, so that a publish in progress raises no alarm.
    unsigned: HashMap<PathBuf, Instant>,
    next_poll: Instant,
}

/// Indexes built by a publish and not yet written to the state dir.
#[must_use]
struct Unsaved(Vec<(String, Arc<ListIndex>, PathBuf)>);

/// The updater: create with [`Updater::new`] (restores the state dir), then [`Updater::run`]
/// on its own thread.
pub struct Updater {
    lists: Vec<ListState>,
    state: StateDir,
    max_set_bytes: u64,
    shared: Arc<Shared>,
}

impl Updater {
    /// Loads the trust state and the last good sets, builds (or maps) their indexes and
    /// publishes the first snapshot. A last good set that no longer checks out (wrong
    /// digest, expired, unreadable) is reported as the list's refusal and not served.
    pub fn new(config: &Config, shared: Arc<Shared>) -> Result<Updater, UpdateError> {
        let state = StateDir::open(&config.state_dir)?;
        // One client for every HTTPS source (rustls, the platform's roots), if any.
        let mut http = None;
        let mut lists = Vec::new();
        for c in &config.lists {
            let source: Option<Box<dyn Source>> = match &c.source {
                SourceConfig::Upload => None,
                SourceConfig::Dir(dir) => Some(Box::new(DirSource { dir: dir.clone() })),
                SourceConfig::Http(base) => {
                    let client = match &http {
                        Some(client) => reqwest::blocking::Client::clone(client),
                        None => {
                            let client = reqwest::blocking::Client::builder()
                                .timeout(Duration::from_millis(config.limits.fetch_timeout_ms))
                                .connect_timeout(Duration::from_secs(10))
                                .redirect(source::same_origin_redirects())
                                .user_agent(concat!("hashsieve/", env!("CARGO_PKG_VERSION")))
                                .build()
                                .map_err(|e| UpdateError::Io(std::io::Error::other(e)))?;
                            http.insert(client).clone()
                        }
                    };
                    let timeout = Duration::from_millis(config.limits.fetch_timeout_ms);
                    Some(Box::new(HttpsSource::new(base.clone(), client, timeout)))
                }
                SourceConfig::S3 { url, endpoint } => {
                    let bucket = crate::objstore::Bucket::open(url, endpoint.as_deref())
                        .map_err(|e| UpdateError::Io(std::io::Error::other(e)))?;
                    Some(Box::new(S3Source::new(bucket)))
                }
            };
            lists.push(ListState {
                config: c.clone(),
                source,
                current: None,
                index: None,
                refused: HashMap::new(),
                unsigned: HashMap::new(),
                next_poll: Instant::now(),
            });
        }
        let mut updater = Updater {
            lists,
            state,
            max_set_bytes: config.limits.max_set_bytes,
            shared,
        };
        for i in 0..updater.lists.len() {
            updater.restore(i);
        }
        let unsaved = updater.publish()?;
        updater.save_indexes(unsaved);
        Ok(updater)
    }

    /// Restores list `i` from the state dir, if the trust state has it.
    fn restore(&mut self, i: usize) {
        let name = self.lists[i].config.name.clone();
        match self.state.restore(&name) {
            Ok(None) => {}
            Ok(Some((set, accepted))) => {
                let set = Arc::new(set);
                self.lists[i].current = Some(Arc::clone(&set));
                self.shared.with_status(&name, |s| {
                    s.describe(&set, accepted.signing_key.clone());
                    s.last_update = Some(accepted.accepted_at.clone());
                });
                tracing::info!(list = %name, version = accepted.version, "restored from the state dir");
            }
            Err(reason) => {
                tracing::warn!(list = %name, %reason, "last good set not restored");
                self.shared.refusal(&name, reason);
            }
        }
    }

    /// Builds (or maps) the index of every list whose current set has none yet, then swaps
    /// in a snapshot of all lists that have an unexpired version. Returns the indexes built
    /// now, for [`Updater::save_indexes`] once the lists' status says what is served.
    fn publish(&mut self) -> Result<Unsaved, UpdateError> {
        let index_dir = self.state.index_dir();
        let now = now_unix();
        // Indexes built now, saved once they serve (the file only speeds up the next start).
        let mut unsaved: Vec<(String, Arc<ListIndex>, PathBuf)> = Vec::new();
        for l in &mut self.lists {
            let Some(set) = &l.current else { continue };
            if !set.header().serving(now) {
                continue; // not served (see `retire_expired`); nothing to build
            }
            let stale = l
                .index
                .as_ref()
                .is_none_or(|ix| ix.set().digest() != set.digest());
            if stale {
                let opened = store::open_or_build_unsaved(Arc::clone(set), &index_dir)?;
                if let Some(problem) = opened.problem {
                    tracing::warn!(list = %l.config.name, %problem, "saved index not used; rebuilt");
                }
                let list = Arc::new(opened.list);
                if let Some(path) = opened.save_to {
                    unsaved.push((l.config.name.clone(), Arc::clone(&list), path));
                }
                l.index = Some(list);
            }
        }
        let serving: Vec<Arc<ListIndex>> = self
            .lists
            .iter()
            .filter_map(|l| l.index.clone())
            .filter(|ix| ix.set().header().serving(now))
            .collect();
        let keep: Vec<String> = serving
            .iter()
            .map(|ix| store::file_name(ix.set()))
            .collect();
        self.shared.swap(serving);
        self.state.remove_indexes_except(&keep);
        Ok(Unsaved(unsaved))
    }

    /// Writes indexes built by [`Updater::publish`] to the state dir: only a cache for the
    /// next start, so it comes after the swap and the status (writing 10 M entries' index
    /// takes seconds).
    fn save_indexes(&self, unsaved: Unsaved) {
        for (name, list, path) in unsaved.0 {
            if let Err(e) = store::save(&list, &path) {
                tracing::warn!(list = %name, path = %path.display(), error = %e,
                    "index not saved; the next start builds it again");
            }
        }
    }

    /// Runs until [`Command::Stop`] or the sender is dropped: polls sources when due and
    /// handles offers.
    pub fn run(mut self, commands: mpsc::Receiver<Command>) {
        loop {
            self.poll_due(false);
            self.retire_expired();
            self.shared
                .first_poll_done
                .store(true, std::sync::atomic::Ordering::Release);
            // Wake for the next poll, and at least every few seconds to notice expiry.
            let wait = self
                .lists
                .iter()
                .filter(|l| l.source.is_some())
                .map(|l| l.next_poll.saturating_duration_since(Instant::now()))
                .min()
                .unwrap_or(EXPIRY_CHECK)
                .min(EXPIRY_CHECK);
            match commands.recv_timeout(wait) {
                Ok(Command::Offer {
                    list,
                    bytes,
                    signatures,
                    reply,
                }) => {
                    let result = self
                        .offer_by_name(&list, bytes, &signatures)
                        .map_err(|e| e.to_string());
                    let _ = reply.send(result);
                }
                Ok(Command::PollNow) => self.poll_due(true),
                Ok(Command::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
        }
    }

    /// Stops serving every list whose version has expired (a set is used only while its
    /// expiry checks out: a list whose updates stop arriving must not be served forever),
    /// and records why. `/readyz` reports it until a newer version arrives.
    fn retire_expired(&mut self) {
        let now = now_unix();
        let mut changed = false;
        for l in &mut self.lists {
            let expired = l
                .index
                .as_ref()
                .is_some_and(|ix| !ix.set().header().serving(now));
            if expired && let Some(ix) = l.index.take() {
                let h = ix.set().header();
                let reason = format!(
                    "version {} expired at {} and is no longer served; publish a newer version",
                    h.version,
                    rfc3339(h.expires)
                );
                tracing::warn!(list = %l.config.name, %reason, "list expired");
                self.shared.refusal(&l.config.name, reason);
                changed = true;
            }
        }
        if changed {
            let serving: Vec<Arc<ListIndex>> =
                self.lists.iter().filter_map(|l| l.index.clone()).collect();
            self.shared.swap(serving);
        }
    }

    fn poll_due(&mut self, all: bool) {
        let now = Instant::now();
        for i in 0..self.lists.len() {
            if all || self.lists[i].next_poll <= now {
                self.poll(i);
                let every = Duration::from_secs(self.lists[i].config.poll_seconds);
                self.lists[i].next_poll = Instant::now() + every;
            }
        }
    }

    fn offer_by_name(
        &mut self,
        list: &str,
        bytes: Vec<u8>,
        signatures: &[String],
    ) -> Result<u64, UpdateError> {
        let i = self
            .lists
            .iter()
            .position(|l| l.config.name == list)
            .ok_or_else(|| UpdateError::UnknownList {
                path: "upload".into(),
                list: list.to_owned(),
            })?;
        let label = format!("upload to {list}");
        let result = self.offer(i, Path::new(&label), bytes, signatures);
        if let Err(e) = &result {
            self.shared.refusal(list, e.to_string());
        }
        result
    }

    /// Polls list `i`'s source: applies, in version order, every file above the current
    /// version (deltas chain from the current version; a full set may jump ahead), and
    /// records a refusal for the others. Files refused once are skipped until they change.
    fn poll(&mut self, i: usize) {
        let name = self.lists[i].config.name.clone();
        let Some(source) = self.lists[i].source.as_mut() else {
            return;
        };
        let files: Vec<Listed> = match source.list(&name) {
            Ok(files) => files,
            Err(reason) => {
                self.shared.refusal(&name, reason);
                return;
            }
        };
        let mut candidates: Vec<(u64, bool, Listed)> = files
            .into_iter()
            .filter_map(|f| {
                let (version, is_delta) = crate::hashset::parse_file_name(&name, &f.name)?;
                Some((version, is_delta, f))
            })
            .collect();
        // Oldest first; at one version a delta (small) before a full set.
        candidates.sort_by_key(|(v, is_delta, _)| (*v, !*is_delta));
        // Older files beside newer ones are normal history and are skipped. But a source
        // whose newest file is older than the version served has been rolled back: offer
        // that file, so the trust state refuses it and the refusal shows.
        let have = self.floor(i);
        let newest = candidates.last().map(|(v, _, _)| *v);
        let rolled_back = matches!((have, newest), (Some(h), Some(n)) if n < h);
        for (version, _, file) in candidates {
            let have = self.floor(i);
            if have.is_some_and(|h| version <= h) && !(rolled_back && Some(version) == newest) {
                continue;
            }
            let Some(source) = self.lists[i].source.as_ref() else {
                return;
            };
            let config = &self.lists[i].config;
            let wanted = trust::signatures_wanted(config.public_keys.len());
            let threshold = config.threshold;
            let stamp = source.stamp(&file, wanted);
            if self.lists[i].refused.get(&file.location) == Some(&stamp) {
                continue;
            }
            let fetched = source.fetch(&file, self.max_set_bytes, wanted);
            // A download that failed (a reset, a 500, a timeout) is tried again on the next
            // poll; a file that was fetched and refused waits until it changes.
            let transient = matches!(&fetched, Err(Refusal::Io { .. }));
            if matches!(&fetched, Ok((_, signatures)) if signatures.len() < threshold) {
                let patience =
                    SIGNATURE_PATIENCE.max(Duration::from_secs(self.lists[i].config.poll_seconds));
                let since = *self.lists[i]
                    .unsigned
                    .entry(file.location.clone())
                    .or_insert_with(Instant::now);
                if since.elapsed() < patience {
                    tracing::debug!(list = %name, file = %file.location.display(), "signatures not all there yet; looking again on the next poll");
                    continue;
                }
            } else {
                self.lists[i].unsigned.remove(&file.location);
            }
            let outcome = fetched
                .map_err(UpdateError::from)
                .and_then(|(bytes, signatures)| self.offer(i, &file.location, bytes, &signatures));
            if let Err(e) = outcome {
                tracing::warn!(list = %name, refusal = %e, "update refused");
                self.shared.refusal(&name, e.to_string());
                if !transient {
                    self.lists[i].refused.insert(file.location, stamp);
                }
            }
        }
    }

    /// The version below which list `i`'s source files are history: the one serving, or,
    /// when its saved copy could not be restored, the one before the accepted version (so
    /// that the accepted set itself can come back from the source).
    fn floor(&self, i: usize) -> Option<u64> {
        let l = &self.lists[i];
        match &l.current {
            Some(set) => Some(set.header().version),
            None => self
                .state
                .accepted(&l.config.name)
                .map(|a| a.version.saturating_sub(1)),
        }
    }

    /// Verifies one file for list `i` and, if it checks out, makes it the list's version.
    fn offer(
        &mut self,
        i: usize,
        path: &Path,
        bytes: Vec<u8>,
        signatures: &[String],
    ) -> Result<u64, UpdateError> {
        let name = self.lists[i].config.name.clone();
        let mut policy = Policy::new(self.lists[i].config.public_keys.clone());
        policy.threshold = self.lists[i].config.threshold;
        policy.max_bytes = self.max_set_bytes;
        policy.list = Some(name.clone());
        policy.max_version_step = Some(self.lists[i].config.max_version_step);
        // Nothing serving although the trust state accepted a version: its saved copy was
        // lost, so that very set may come back from the source.
        policy.reaccept = self.lists[i].current.is_none();
        let verified =
            trust::verify_signed(path, bytes, signatures, &policy, Some(self.state.trust()))?;
        let (published, key) = (verified.published, Some(verified.signed_by.join(", ")));
        let label = path.display().to_string();
        let set = match published {
            Published::Set(set) => set,
            Published::Delta(delta) => {
                let current = self.lists[i]
                    .current
                    .clone()
                    .filter(|c| c.header().version == delta.base_version())
                    .ok_or_else(|| UpdateError::NoBase {
                        path: label.clone(),
                        base: delta.base_version(),
                        have: self.lists[i].current.as_ref().map(|c| c.header().version),
                    })?;
                let bytes = delta.apply(&current).map_err(|source| UpdateError::Delta {
                    path: label.clone(),
                    source,
                })?;
                let set = HashSetFile::parse(bytes).map_err(|source| UpdateError::Result {
                    path: label.clone(),
                    source,
                })?;
                if set.digest() != delta.result_digest() {
                    return Err(UpdateError::ResultDigest {
                        path: label,
                        got: hex_lower(&set.digest()),
                        expected: hex_lower(&delta.result_digest()),
                    });
                }
                set
            }
        };
        let version = set.header().version;
        let set = Arc::new(set);
        // Durable first (set, then trust state), then served: after a crash the state dir
        // holds either the old pair or the new one.
        self.state.persist(&name, &set, key.clone())?;
        let old = self.lists[i].current.replace(Arc::clone(&set));
        let unsaved = match self.publish() {
            Ok(unsaved) => unsaved,
            Err(e) => {
                self.lists[i].current = old;
                return Err(e);
            }
        };
        let accepted_at = self.state.accepted(&name).map(|a| a.accepted_at.clone());
        self.shared.with_status(&name, |s| {
            s.describe(&set, key);
            s.last_update = accepted_at;
        });
        self.shared.metrics.index_version(&name, version);
        // After the status, so that `/v1/lists` names the version as soon as it serves.
        self.save_indexes(unsaved);
        tracing::info!(list = %name, version, file = %label, "update accepted and serving");
        Ok(version)
    }
}

impl ListStatus {
    fn describe(&mut self, set: &HashSetFile, signing_key: Option<String>) {
        let h = set.header();
        self.version = Some(h.version);
        self.digest = Some(hex_lower(&set.digest()));
        self.created = Some(rfc3339(h.created));
        self.expires = Some(rfc3339(h.expires));
        self.expires_unix = Some(h.expires);
        self.counts = set
            .counts()
            .into_iter()
            .map(|(k, n)| (k.name().to_owned(), n))
            .collect::<BTreeMap<_, _>>();
        self.signing_key = signing_key;
        // Counted once per version here (it walks the frames), not per request.
        self.videos = Some(set.videos()).filter(|&n| n > 0);
    }
}

impl Shared {
    /// Records a refusal for `list` (shown in `/v1/lists`, counted in the metrics).
    pub fn refusal(&self, list: &str, reason: String) {
        self.metrics.update_refused(list);
        self.with_status(list, |s| {
            s.last_refusal = Some(Refused {
                at: rfc3339(now_unix()),
                reason,
            });
        });
    }

    /// Publishes a new snapshot over `lists`.
    fn swap(&self, lists: Vec<Arc<ListIndex>>) {
        self.snapshot
            .store(Arc::new(Snapshot::new(lists, &self.policies)));
    }
}
