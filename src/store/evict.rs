//! Cache management: the disk cache stays within `store.max_size` on its own. Owns size
//! accounting (the sum of indexed file sizes), the last access of each study (recorded in
//! memory on every read and ingest, written to `study_access` in batches), pins (a study a
//! prefetch job holds until its due time plus `store.pin_retention`), leases (a study a
//! response is streaming or a retrieve is filling, never evicted meanwhile), the eviction
//! pass (least recently used unpinned studies first) and purge by study or patient.
//!
//! A study that received an instance in the last [`QUIET_SECS`] is not evicted, so an
//! arriving study is never removed under its sender; files are removed one by one after
//! their index rows, and emptied directories only when empty.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rusqlite::params;
use serde::Serialize;

use super::index::Index;
use super::{Store, StoreError};

/// Seconds after its last arrival before a study can be evicted.
pub const QUIET_SECS: i64 = 5;

/// Studies held by running responses and retrieves, with a count per study.
#[derive(Default)]
pub struct Leases(Mutex<HashMap<String, usize>>);

/// While alive, the study is not evicted or purged.
pub struct StudyLease {
    leases: Arc<Leases>,
    study: String,
}

impl Leases {
    fn take(self: &Arc<Self>, study: &str) -> StudyLease {
        if let Ok(mut m) = self.0.lock() {
            *m.entry(study.to_string()).or_default() += 1;
        }
        StudyLease {
            leases: Arc::clone(self),
            study: study.to_string(),
        }
    }

    pub fn is_leased(&self, study: &str) -> bool {
        self.0.lock().map(|m| m.contains_key(study)).unwrap_or(true)
    }
}

impl Drop for StudyLease {
    fn drop(&mut self) {
        if let Ok(mut m) = self.leases.0.lock() {
            if let Some(n) = m.get_mut(&self.study) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&self.study);
                }
            }
        }
    }
}

/// Last accesses not yet written to the index (study → unix ms).
#[derive(Default)]
pub struct AccessLog(Mutex<HashMap<String, i64>>);

impl AccessLog {
    fn note(&self, study: &str) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(study.to_string(), crate::clock::now_ms());
        }
    }

    fn drain(&self) -> Vec<(String, i64)> {
        self.0
            .lock()
            .map(|mut m| m.drain().collect())
            .unwrap_or_default()
    }
}

/// What `/admin/cache` and `tsunagi cache stats` show.
#[derive(Debug, Clone, Serialize, Default)]
pub struct CacheStats {
    pub size_bytes: u64,
    pub max_size_bytes: u64,
    pub studies: u64,
    pub series: u64,
    pub instances: u64,
    pub pinned_studies: u64,
    pub pinned_bytes: u64,
    /// Unix ms of the least recent access of any study.
    pub oldest_access_ms: Option<i64>,
}

/// One study evicted or purged.
#[derive(Debug, Clone, Serialize)]
pub struct Removed {
    pub study_uid: String,
    pub instances: u64,
    pub bytes: u64,
}

/// Why a purge did not happen.
#[derive(Debug, thiserror::Error)]
pub enum PurgeError {
    #[error("study {0} is being streamed or retrieved; try again when that has finished")]
    Busy(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Store {
    /// Note a read or write of `study` (cheap: memory only; flushed in batches).
    pub fn touch(&self, study: &str) {
        self.access.note(study);
    }

    /// Keep `study` from eviction and purge while the lease lives.
    pub fn lease(&self, study: &str) -> StudyLease {
        self.leases.take(study)
    }

    /// Write the batched last accesses to the index.
    pub async fn flush_access(&self) -> Result<(), StoreError> {
        let batch = self.access.drain();
        if batch.is_empty() {
            return Ok(());
        }
        let index = Arc::clone(self.index());
        blocking(move || index.record_access(&batch)).await
    }

    /// Set the end of every pin of `holder` (None: release them now).
    pub async fn repin_holder(&self, holder: &str, until: Option<i64>) -> Result<(), StoreError> {
        let (index, h) = (Arc::clone(self.index()), holder.to_string());
        blocking(move || index.repin_holder(&h, until)).await
    }

    pub async fn stats(&self, max_size: u64) -> Result<CacheStats, StoreError> {
        self.flush_access().await?;
        let index = Arc::clone(self.index());
        let mut s = blocking(move || index.cache_stats(crate::clock::now())).await?;
        s.max_size_bytes = max_size;
        Ok(s)
    }

    /// Evict least recently used unpinned, unleased studies until the cache holds at most
    /// `max_size` bytes.
    pub async fn evict_to(&self, max_size: u64) -> Result<Vec<Removed>, StoreError> {
        self.flush_access().await?;
        let index = Arc::clone(self.index());
        let mut size = blocking(move || index.total_size()).await?;
        let mut removed = Vec::new();
        while size > max_size {
            let index = Arc::clone(self.index());
            let now = crate::clock::now();
            let quiet = now - QUIET_SECS;
            let candidates = blocking(move || index.eviction_candidates(now, quiet, 64)).await?;
            let mut progressed = false;
            for study in candidates {
                if size <= max_size {
                    break;
                }
                if self.leases.is_leased(&study) {
                    continue;
                }
                let r = self.remove_study(&study).await?;
                size = size.saturating_sub(r.bytes);
                progressed = true;
                removed.push(r);
            }
            if !progressed {
                tracing::debug!(
                    size,
                    max_size,
                    "cache over its size limit, but every study is pinned, in use or just arrived"
                );
                break;
            }
        }
        Ok(removed)
    }

    /// Remove a study now (pins included), unless a response or retrieve holds it.
    pub async fn purge_study(&self, study: &str) -> Result<Removed, PurgeError> {
        if self.leases.is_leased(study) {
            return Err(PurgeError::Busy(study.to_string()));
        }
        Ok(self.remove_study(study).await?)
    }

    /// Remove every study of a patient (ID, and issuer when given).
    pub async fn purge_patient(
        &self,
        patient_id: &str,
        issuer: Option<&str>,
    ) -> Result<Vec<Removed>, PurgeError> {
        let index = Arc::clone(self.index());
        let (p, i) = (patient_id.to_string(), issuer.map(str::to_string));
        let studies = blocking(move || index.studies_of_patient(&p, i.as_deref())).await?;
        if let Some(busy) = studies.iter().find(|s| self.leases.is_leased(s)) {
            return Err(PurgeError::Busy(busy.clone()));
        }
        let mut out = Vec::new();
        for s in studies {
            out.push(self.remove_study(&s).await?);
        }
        Ok(out)
    }

    async fn remove_study(&self, study: &str) -> Result<Removed, StoreError> {
        let index = Arc::clone(self.index());
        let s = study.to_string();
        let files = blocking(move || index.delete_study(&s)).await?;
        let removed = Removed {
            study_uid: study.to_string(),
            instances: files.len() as u64,
            bytes: files.iter().map(|(_, n)| n).sum(),
        };
        let paths: Vec<PathBuf> = files.into_iter().map(|(p, _)| self.absolute(&p)).collect();
        let root = self.absolute(std::path::Path::new("files"));
        let derived = self.derived().clone();
        let s = study.to_string();
        tokio::task::spawn_blocking(move || {
            remove_files(&paths, &root);
            derived.remove_study(&s);
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?;
        Ok(removed)
    }
}

/// The eviction task: a pass after arrivals (at most one per second) and every `interval`,
/// until `shutdown` turns true.
pub async fn run(
    store: Arc<Store>,
    metrics: Arc<crate::metrics::Metrics>,
    max_size: u64,
    interval: std::time::Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    use crate::metrics::Metrics;
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = store.arrived.notified() => {}
            _ = tokio::time::sleep(interval) => {}
        }
        if *shutdown.borrow() {
            break;
        }
        match store.evict_to(max_size).await {
            Ok(removed) => {
                for r in &removed {
                    tracing::info!(study = %r.study_uid, instances = r.instances, bytes = r.bytes, "evicted");
                    Metrics::inc(&metrics.evicted_studies_total);
                    Metrics::add(&metrics.evicted_bytes_total, r.bytes);
                }
            }
            Err(e) => tracing::error!(error = %e, "eviction pass failed"),
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    let _ = store.flush_access().await;
}

/// Remove files, then their directories up to (not including) `root` when they are empty.
fn remove_files(paths: &[PathBuf], root: &std::path::Path) {
    let mut dirs = std::collections::BTreeSet::new();
    for p in paths {
        if let Err(e) = std::fs::remove_file(p) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(file = %p.display(), error = %e, "cannot remove an evicted file");
            }
        }
        let mut d = p.parent();
        while let Some(dir) = d.filter(|d| d.starts_with(root) && *d != root) {
            dirs.insert(dir.to_path_buf());
            d = dir.parent();
        }
    }
    // deepest first; remove_dir fails (harmlessly) on a directory something new landed in
    for d in dirs.iter().rev() {
        let _ = std::fs::remove_dir(d);
    }
}

/// Run an index operation on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> rusqlite::Result<T> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
        .map_err(StoreError::from)
}

impl Index {
    fn record_access(&self, batch: &[(String, i64)]) -> rusqlite::Result<()> {
        self.write(|c| {
            let tx = c.transaction()?;
            {
                let mut st = tx.prepare_cached(
                    "INSERT INTO study_access (study_uid, last_access) VALUES (?1, ?2)
                     ON CONFLICT(study_uid) DO UPDATE SET
                        last_access = max(last_access, excluded.last_access)",
                )?;
                for (study, ms) in batch {
                    st.execute(params![study, ms])?;
                }
            }
            tx.commit()
        })
    }

    #[cfg(test)]
    fn pin(&self, study: &str, holder: &str, until: Option<i64>) -> rusqlite::Result<()> {
        self.write(|c| pin_in(c, study, holder, until))
    }

    fn repin_holder(&self, holder: &str, until: Option<i64>) -> rusqlite::Result<()> {
        self.write(|c| match until {
            Some(t) => c
                .execute(
                    "UPDATE pin SET until = ?2 WHERE holder = ?1",
                    params![holder, t],
                )
                .map(drop),
            None => c
                .execute("DELETE FROM pin WHERE holder = ?1", [holder])
                .map(drop),
        })
    }

    pub fn total_size(&self) -> rusqlite::Result<u64> {
        self.read(|c| {
            c.query_row(
                "SELECT coalesce(sum(file_size), 0) FROM instance",
                [],
                |r| r.get(0),
            )
        })
    }

    /// Unpinned studies quiet since `quiet`, least recently used first.
    fn eviction_candidates(
        &self,
        now: i64,
        quiet: i64,
        limit: usize,
    ) -> rusqlite::Result<Vec<String>> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT s.study_uid FROM study s
                 LEFT JOIN study_access a ON a.study_uid = s.study_uid
                 WHERE s.updated_at < ?2
                   AND NOT EXISTS (SELECT 1 FROM pin p WHERE p.study_uid = s.study_uid
                                   AND (p.until IS NULL OR p.until > ?1))
                 ORDER BY coalesce(a.last_access, s.updated_at * 1000), s.study_uid
                 LIMIT ?3",
            )?;
            let rows = st.query_map(params![now, quiet, limit as i64], |r| r.get(0))?;
            rows.collect()
        })
    }

    /// Delete a study's rows (instances, series, study, retrieve outcomes, access, pins);
    /// returns its files (relative path, size).
    fn delete_study(&self, study: &str) -> rusqlite::Result<Vec<(PathBuf, u64)>> {
        self.write(|c| {
            let tx = c.transaction()?;
            let files = {
                let mut st =
                    tx.prepare("SELECT file_path, file_size FROM instance WHERE study_uid = ?1")?;
                let rows = st.query_map([study], |r| {
                    Ok((PathBuf::from(r.get::<_, String>(0)?), r.get(1)?))
                })?;
                rows.collect::<rusqlite::Result<Vec<_>>>()?
            };
            for table in [
                "instance",
                "series",
                "study",
                "retrieval",
                "study_access",
                "pin",
            ] {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE study_uid = ?1"),
                    [study],
                )?;
            }
            tx.commit()?;
            Ok(files)
        })
    }

    fn studies_of_patient(
        &self,
        patient: &str,
        issuer: Option<&str>,
    ) -> rusqlite::Result<Vec<String>> {
        self.read(|c| {
            let mut st = c.prepare(
                "SELECT study_uid FROM study WHERE patient_id = ?1
                 AND (?2 IS NULL OR issuer_of_patient_id = ?2)",
            )?;
            let rows = st.query_map(params![patient, issuer], |r| r.get(0))?;
            rows.collect()
        })
    }

    fn cache_stats(&self, now: i64) -> rusqlite::Result<CacheStats> {
        let (studies, series, instances) = self.counts()?;
        let size_bytes = self.total_size()?;
        self.read(|c| {
            let (pinned_studies, pinned_bytes) = c.query_row(
                "WITH p AS (SELECT DISTINCT study_uid FROM pin WHERE until IS NULL OR until > ?1)
                 SELECT (SELECT count(*) FROM p JOIN study s ON s.study_uid = p.study_uid),
                        (SELECT coalesce(sum(i.file_size), 0) FROM instance i
                         WHERE i.study_uid IN (SELECT study_uid FROM p))",
                [now],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            // an aggregate: always one row, NULL for an empty cache
            let oldest_access_ms = c.query_row(
                "SELECT min(coalesce(a.last_access, s.updated_at * 1000)) FROM study s
                 LEFT JOIN study_access a ON a.study_uid = s.study_uid",
                [],
                |r| r.get::<_, Option<i64>>(0),
            )?;
            Ok(CacheStats {
                size_bytes,
                max_size_bytes: 0,
                studies,
                series,
                instances,
                pinned_studies,
                pinned_bytes,
                oldest_access_ms,
            })
        })
    }
}

/// Pin `study` for `holder` until `until` (unix s; None: until released), within the caller's
/// transaction (prefetch jobs pin their studies as they queue them).
pub(crate) fn pin_in(
    c: &rusqlite::Connection,
    study: &str,
    holder: &str,
    until: Option<i64>,
) -> rusqlite::Result<()> {
    c.execute(
        "INSERT INTO pin (study_uid, holder, until) VALUES (?1, ?2, ?3)
         ON CONFLICT(study_uid, holder) DO UPDATE SET until = excluded.until",
        params![study, holder, until],
    )
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> (tempfile::TempDir, Index) {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(&dir.path().join("index.sqlite")).unwrap();
        (dir, index)
    }

    fn add_study(index: &Index, study: &str, updated_at: i64, bytes: u64) {
        index
            .write(|c| {
                c.execute(
                    "INSERT INTO study (study_uid, meta_json, updated_at) VALUES (?1, '{}', ?2)",
                    params![study, updated_at],
                )?;
                c.execute(
                    "INSERT INTO series (series_uid, study_uid, meta_json, updated_at)
                     VALUES (?1 || '.1', ?1, '{}', ?2)",
                    params![study, updated_at],
                )?;
                c.execute(
                    "INSERT INTO instance (sop_instance_uid, series_uid, study_uid,
                        transfer_syntax_uid, file_path, file_size, sha256, meta_json, received_at)
                     VALUES (?1 || '.1.1', ?1 || '.1', ?1, '1.2.840.10008.1.2.1', 'f/' || ?1, ?2, '', '{}', 0)",
                    params![study, bytes],
                )
                .map(drop)
            })
            .unwrap();
    }

    #[test]
    fn least_recently_used_unpinned_first() {
        let (_d, index) = index();
        for (s, t) in [("1", 100), ("2", 200), ("3", 300), ("4", 400)] {
            add_study(&index, s, t, 10);
        }
        // "1" was read after everything else arrived; "2" is pinned; "4" just arrived
        index.record_access(&[("1".into(), 500_000)]).unwrap();
        index.pin("2", "job:1", Some(1_000)).unwrap();
        let order = index.eviction_candidates(900, 350, 10).unwrap();
        assert_eq!(order, vec!["3", "1"]);
        // the pin expires
        let order = index.eviction_candidates(1_001, 350, 10).unwrap();
        assert_eq!(order, vec!["2", "3", "1"]);
        let stats = index.cache_stats(900).unwrap();
        assert_eq!(
            (stats.size_bytes, stats.pinned_studies, stats.pinned_bytes),
            (40, 1, 10)
        );
        assert_eq!(stats.oldest_access_ms, Some(200_000));
    }

    #[tokio::test]
    async fn a_leased_study_is_neither_purged_nor_evicted() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::config::StoreConfig {
            path: dir.path().join("cache"),
            ..Default::default()
        };
        let store = Store::open(&config).await.unwrap();
        add_study(store.index(), "9", 0, 100);
        let lease = store.lease("9");
        assert!(matches!(
            store.purge_study("9").await,
            Err(PurgeError::Busy(_))
        ));
        assert!(store.evict_to(0).await.unwrap().is_empty());
        drop(lease);
        let removed = store.evict_to(0).await.unwrap();
        assert_eq!(removed.len(), 1);
        assert_eq!(removed[0].bytes, 100);
    }

    #[test]
    fn deleting_a_study_returns_its_files_and_releases_its_pins() {
        let (_d, index) = index();
        add_study(&index, "7", 1, 42);
        index.pin("7", "job:3", None).unwrap();
        let files = index.delete_study("7").unwrap();
        assert_eq!(files, vec![(PathBuf::from("f/7"), 42)]);
        assert_eq!(index.counts().unwrap(), (0, 0, 0));
        assert_eq!(index.cache_stats(0).unwrap().pinned_studies, 0);
    }
}
