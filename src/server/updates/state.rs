//! The state dir: what survives a restart. `trust.json` (per list, the highest accepted
//! version, its digest and signing key), `sets/<list>-<version>.hset` (the last good set; on
//! restart it must have exactly the digest the trust state records) and `index/` (persisted
//! indexes, [`crate::index::store`]). Every write is atomic, and a new set is written under
//! its own name before the trust state that vouches for it, and the old one deleted only
//! after: a crash at any moment leaves the set the trust state names, old or new.

use std::path::{Path, PathBuf};

use super::UpdateError;
use crate::clock::{now_unix, rfc3339};
use crate::hashset::format::HashSetFile;
use crate::hashset::trust::{Accepted, StateError, TrustState};
use crate::kinds::hex_lower;

pub(super) struct StateDir {
    root: PathBuf,
    trust: TrustState,
}

impl StateDir {
    /// Opens (creating) the state dir at `root`, removes what a crash left half-written (the
    /// temporary files of atomic writes) and loads its trust state.
    pub fn open(root: &Path) -> Result<StateDir, UpdateError> {
        for dir in [root.to_owned(), root.join("sets"), root.join("index")] {
            std::fs::create_dir_all(&dir)?;
            remove_temporaries(&dir);
        }
        let path = root.join("trust.json");
        let trust = TrustState::load(&path).map_err(|e| match e {
            StateError::Parse { source, .. } => UpdateError::DamagedTrust {
                path: path.display().to_string(),
                detail: source.to_string(),
            },
            other => other.into(),
        })?;
        Ok(StateDir {
            root: root.to_owned(),
            trust,
        })
    }

    pub fn trust(&self) -> &TrustState {
        &self.trust
    }

    pub fn accepted(&self, list: &str) -> Option<&Accepted> {
        self.trust.accepted(list)
    }

    pub fn index_dir(&self) -> PathBuf {
        self.root.join("index")
    }

    fn set_path(&self, list: &str, version: u64) -> PathBuf {
        self.root
            .join("sets")
            .join(crate::hashset::file_name(list, version, false))
    }

    /// The last good set of `list` and what the trust state recorded of it: `Ok(None)` when
    /// none was ever accepted, `Err` (naming the file) when the saved set is unreadable,
    /// is not the one the trust state accepted, or has expired.
    pub fn restore(&self, list: &str) -> Result<Option<(HashSetFile, Accepted)>, String> {
        let Some(accepted) = self.trust.accepted(list).cloned() else {
            return Ok(None);
        };
        let mut path = self.set_path(list, accepted.version);
        // Earlier releases saved the set under the list's name alone.
        let unversioned = self.root.join("sets").join(format!("{list}.hset"));
        if !path.exists() && unversioned.exists() {
            path = unversioned;
        }
        let check = || -> Result<HashSetFile, String> {
            let set = HashSetFile::open_mapped(&path)
                .map_err(|e| format!("cannot read: {e}"))?
                .map_err(|e| e.to_string())?;
            let digest = hex_lower(&set.digest());
            if digest != accepted.digest || set.header().version != accepted.version {
                return Err(format!(
                    "holds version {} digest {digest}, but the trust state accepted version {} digest {}",
                    set.header().version,
                    accepted.version,
                    accepted.digest
                ));
            }
            if !set.header().serving(now_unix()) {
                return Err(format!(
                    "version {} expired at {}",
                    set.header().version,
                    rfc3339(set.header().expires)
                ));
            }
            Ok(set)
        };
        check().map(|set| Some((set, accepted))).map_err(|reason| {
            format!(
                "{}: {reason}; the list serves again once its source offers a verified version \
                 (the same version, or a newer one)",
                path.display()
            )
        })
    }

    /// Makes `set` the last good version of `list` (signed by `signing_key`): the set, then
    /// the trust state. On failure the trust state in memory stays as it was.
    pub fn persist(
        &mut self,
        list: &str,
        set: &HashSetFile,
        signing_key: Option<String>,
    ) -> Result<(), UpdateError> {
        let path = self.set_path(list, set.header().version);
        crate::fsutil::write_atomic(&path, set.bytes()).map_err(|source| StateError::Io {
            path: path.clone(),
            source,
        })?;
        let previous = self.trust.clone();
        self.trust
            .record(list, set.header().version, set.digest(), now_unix());
        if let Some(accepted) = self.trust.lists.get_mut(list) {
            accepted.signing_key = signing_key;
        }
        if let Err(e) = self.trust.save(&self.root.join("trust.json")) {
            self.trust = previous;
            let _ = std::fs::remove_file(&path);
            return Err(e.into());
        }
        self.remove_sets_except(list, &path);
        Ok(())
    }

    /// Deletes `list`'s saved sets other than `keep` (the versions it replaced).
    fn remove_sets_except(&self, list: &str, keep: &Path) {
        let Ok(entries) = std::fs::read_dir(self.root.join("sets")) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let ours = name == format!("{list}.hset")
                || crate::hashset::parse_file_name(list, &name).is_some_and(|(_, delta)| !delta);
            if ours && e.path() != keep {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    /// Deletes the persisted indexes not named in `keep` (replaced versions). Requests still
    /// holding an old snapshot keep their map: unlinking a mapped file is safe.
    pub fn remove_indexes_except(&self, keep: &[String]) {
        if let Ok(entries) = std::fs::read_dir(self.index_dir()) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.ends_with(".hidx") && !keep.contains(&name) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}

/// Removes the temporary files of atomic writes a crash interrupted (see
/// [`crate::fsutil::TEMP_PREFIX`]): never read, they would only fill the disk.
fn remove_temporaries(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(crate::fsutil::TEMP_PREFIX)
            && name.ends_with(crate::fsutil::TEMP_SUFFIX)
        {
            tracing::info!(file = %e.path().display(), "removing a temporary file left by a crash");
            let _ = std::fs::remove_file(e.path());
        }
    }
}
