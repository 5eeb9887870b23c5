//! The state dir: what survives a restart. `trust.json` (per list, the highest accepted
//! version, its digest and signing key), `sets/<list>.hset` (the last good set; on restart it
//! must have exactly the digest the trust state records) and `index/` (persisted indexes,
//! [`crate::index::store`]). Every write is atomic, and a set is written before the trust
//! state that vouches for it, so after a crash the dir holds either the old pair or the new.

use std::path::{Path, PathBuf};

use super::UpdateError;
use crate::clock::{now_unix, rfc3339};
use crate::hashset::format::HashSetFile;
use crate::hashset::trust::{Accepted, TrustState};
use crate::kinds::hex_lower;

pub(super) struct StateDir {
    root: PathBuf,
    trust: TrustState,
}

impl StateDir {
    /// Opens (creating) the state dir at `root` and loads its trust state.
    pub fn open(root: &Path) -> Result<StateDir, UpdateError> {
        std::fs::create_dir_all(root.join("sets"))?;
        std::fs::create_dir_all(root.join("index"))?;
        let trust = TrustState::load(&root.join("trust.json"))?;
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

    fn set_path(&self, list: &str) -> PathBuf {
        self.root.join("sets").join(format!("{list}.hset"))
    }

    /// The last good set of `list` and what the trust state recorded of it: `Ok(None)` when
    /// none was ever accepted, `Err` (naming the file) when the saved set is unreadable,
    /// is not the one the trust state accepted, or has expired.
    pub fn restore(&self, list: &str) -> Result<Option<(HashSetFile, Accepted)>, String> {
        let Some(accepted) = self.trust.accepted(list).cloned() else {
            return Ok(None);
        };
        let path = self.set_path(list);
        let check = || -> Result<HashSetFile, String> {
            let bytes = std::fs::read(&path).map_err(|e| format!("cannot read: {e}"))?;
            let set = HashSetFile::parse(bytes).map_err(|e| e.to_string())?;
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
        check()
            .map(|set| Some((set, accepted)))
            .map_err(|reason| format!("{}: {reason}", path.display()))
    }

    /// Makes `set` the last good version of `list` (signed by `signing_key`): the set, then
    /// the trust state. On failure the trust state in memory stays as it was.
    pub fn persist(
        &mut self,
        list: &str,
        set: &HashSetFile,
        signing_key: Option<String>,
    ) -> Result<(), UpdateError> {
        crate::fsutil::write_atomic(&self.set_path(list), set.bytes())?;
        let previous = self.trust.clone();
        self.trust
            .record(list, set.header().version, set.digest(), now_unix());
        if let Some(accepted) = self.trust.lists.get_mut(list) {
            accepted.signing_key = signing_key;
        }
        if let Err(e) = self.trust.save(&self.root.join("trust.json")) {
            self.trust = previous;
            return Err(e.into());
        }
        Ok(())
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
