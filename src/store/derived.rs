//! The disk tier of converted frames (`{store.path}/derived/{study}/{sop}/{frame}-{syntax}-{version}`,
//! the version being the stored file's content hash, so a replaced instance never serves a
//! stale conversion):
//! what prefetch prepared for reading, e.g. the HTJ2K RPCL codestream of every frame, kept so
//! that a viewer's first look and every byte-range request after it is a file read, not an
//! encode, even after the memory tier forgot it or the gateway restarted. Written through a
//! temp file and a rename (never a half-written frame; no fsync: it can always be recomputed);
//! removed with its study by eviction and purge.

use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;

/// One converted frame: of which stored instance (and content version), which frame, which
/// transfer syntax.
pub struct FrameKey<'a> {
    pub study: &'a str,
    pub sop: &'a str,
    pub version: &'a str,
    pub frame: u32,
    pub ts: &'a str,
}

impl FrameKey<'_> {
    fn file_name(&self) -> String {
        let version = self.version.get(..16).unwrap_or(self.version);
        format!("{}-{}-{version}", self.frame, self.ts)
    }
}

/// Where converted frames of `root`'s cache live.
#[derive(Clone)]
pub struct Derived {
    dir: PathBuf,
}

impl Derived {
    pub fn new(root: &Path) -> Self {
        Derived {
            dir: root.join("derived"),
        }
    }

    /// UIDs are validated before they reach the store, so they are safe path components.
    fn path(&self, k: &FrameKey) -> PathBuf {
        self.dir.join(k.study).join(k.sop).join(k.file_name())
    }

    /// The converted frame, if it was kept.
    pub async fn read(&self, k: &FrameKey<'_>) -> Option<Bytes> {
        tokio::fs::read(self.path(k)).await.ok().map(Bytes::from)
    }

    pub async fn contains(&self, k: &FrameKey<'_>) -> bool {
        tokio::fs::try_exists(self.path(k)).await.unwrap_or(false)
    }

    pub async fn write(&self, k: &FrameKey<'_>, bytes: &[u8]) -> io::Result<()> {
        let path = self.path(k);
        let dir = path.parent().unwrap_or(&self.dir).to_path_buf();
        tokio::fs::create_dir_all(&dir).await?;
        // one temporary file per writer: two prepares of a study may write the same frame
        let unique = std::process::id() as u64 * 1_000_000 + super::disk::next_counter();
        let tmp = dir.join(format!(".{}.{unique}.tmp", k.file_name()));
        tokio::fs::write(&tmp, bytes).await?;
        tokio::fs::rename(&tmp, &path).await
    }

    /// Forget everything kept for a study (blocking: called from eviction's blocking task).
    pub fn remove_study(&self, study: &str) {
        match std::fs::remove_dir_all(self.dir.join(study)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(error = %e, "cannot remove a study's converted frames"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn kept_read_back_and_removed_with_the_study() {
        let dir = tempfile::tempdir().unwrap();
        let d = Derived::new(dir.path());
        let k = FrameKey {
            study: "1.2",
            sop: "1.2.3",
            version: "0123456789abcdef0123",
            frame: 1,
            ts: "1.2.840.10008.1.2.4.202",
        };
        assert!(d.read(&k).await.is_none() && !d.contains(&k).await);
        d.write(&k, b"codestream").await.unwrap();
        assert!(d.contains(&k).await);
        assert_eq!(d.read(&k).await.as_deref(), Some(&b"codestream"[..]));
        let replaced = FrameKey {
            version: "fedcba9876543210",
            ..k
        };
        assert!(
            d.read(&replaced).await.is_none(),
            "another version of the instance"
        );
        d.remove_study("1.2");
        assert!(d.read(&replaced).await.is_none());
        d.remove_study("1.2"); // nothing left: not an error
    }
}
