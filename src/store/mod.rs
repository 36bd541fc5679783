//! The cache: instance files on disk (written durably before anything else knows about them),
//! the SQLite index of their attributes, and a small in-memory hot tier (moka, weighed by
//! bytes) for what viewers ask for again and again. Owns ingest, lookup and start-up repair;
//! `evict` keeps the disk cache within its size (LRU, pins, leases, purge).
//! All blocking work (fsync, parsing, SQLite) runs on the blocking pool.

pub mod bounds;
pub mod derived;
pub mod disk;
pub mod evict;
pub mod index;
pub mod ingest;
pub mod layout;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::config::StoreConfig;
use crate::types::Uid;
pub use disk::FileMeta;
use disk::{Disk, PendingFile};
pub use evict::{CacheStats, PurgeError, Removed, StudyLease};
pub use index::{Index, InstanceRecord, RetrievalRecord, Selector};
use ingest::IndexedInstance;

/// Store errors, with who is to blame.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("disk I/O while {context}: {source}")]
    Io {
        context: &'static str,
        source: std::io::Error,
    },
    #[error("the data set cannot be understood: {0}")]
    Invalid(String),
    #[error("the data set does not match the request: {0}")]
    Mismatch(String),
    #[error("index: {0}")]
    Index(#[from] rusqlite::Error),
    #[error("background task failed: {0}")]
    Task(String),
}

impl StoreError {
    fn io(context: &'static str) -> impl FnOnce(std::io::Error) -> StoreError {
        move |source| StoreError::Io { context, source }
    }

    /// True when the sender's data is at fault (not our disk or index).
    pub fn is_client_error(&self) -> bool {
        matches!(self, StoreError::Invalid(_) | StoreError::Mismatch(_))
    }
}

/// The result of a committed ingest.
#[derive(Debug, Clone)]
pub struct StoredInstance {
    pub study_uid: Uid,
    pub series_uid: Uid,
    pub sop_instance_uid: Uid,
    pub file_size: u64,
}

/// The cache facade.
pub struct Store {
    disk: Disk,
    index: Arc<Index>,
    hot: moka::future::Cache<String, Bytes>,
    frame_indexes: moka::future::Cache<String, Arc<layout::FrameIndex>>,
    derived: derived::Derived,
    access: evict::AccessLog,
    leases: Arc<evict::Leases>,
    arrived: tokio::sync::Notify,
}

/// An instance being received: bytes go straight to a temp file.
pub struct PendingInstance {
    store: Arc<Store>,
    meta: FileMeta,
    file: PendingFile,
}

impl Store {
    /// Open (or create) the cache at `config.path`, remove leftovers of interrupted writes and
    /// reconcile the index with the files on disk.
    pub async fn open(config: &StoreConfig) -> Result<Arc<Store>, StoreError> {
        let root = config.path.clone();
        let memory = config.memory;
        tokio::task::spawn_blocking(move || {
            let disk = Disk::new(&root).map_err(StoreError::io("creating the cache directory"))?;
            let index = Arc::new(Index::open(&root.join("index.sqlite"))?);
            let store = Store {
                disk,
                index,
                hot: moka::future::Cache::builder()
                    .weigher(|k: &String, v: &Bytes| {
                        (k.len() + v.len()).try_into().unwrap_or(u32::MAX)
                    })
                    .max_capacity(memory)
                    .build(),
                frame_indexes: moka::future::Cache::builder()
                    .weigher(|k: &String, v: &Arc<layout::FrameIndex>| {
                        let ranges: usize = v.frames.iter().map(Vec::len).sum();
                        (k.len() + 32 + ranges * 16).try_into().unwrap_or(u32::MAX)
                    })
                    .max_capacity((memory / 16).max(1 << 20))
                    .build(),
                derived: derived::Derived::new(&root),
                access: Default::default(),
                leases: Default::default(),
                arrived: tokio::sync::Notify::new(),
            };
            store.repair()?;
            Ok(Arc::new(store))
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }

    pub fn root(&self) -> &Path {
        self.disk.root()
    }

    pub fn index(&self) -> &Arc<Index> {
        &self.index
    }

    pub fn absolute(&self, relative: &Path) -> PathBuf {
        self.disk.absolute(relative)
    }

    /// The disk tier of converted frames (what prefetch prepared for reading).
    pub fn derived(&self) -> &derived::Derived {
        &self.derived
    }

    /// The in-memory hot tier (keys are namespaced by the caller, e.g. `frame:...`).
    pub fn hot(&self) -> &moka::future::Cache<String, Bytes> {
        &self.hot
    }

    /// Where each frame of an instance lies in its file, located once (by walking element
    /// headers, never decoding) and kept in memory; concurrent callers share one lookup.
    pub async fn frame_index(
        &self,
        record: &InstanceRecord,
        geometry: layout::PixelGeometry,
    ) -> Result<Arc<layout::FrameIndex>, Arc<layout::LayoutError>> {
        let key = format!("{}:{}", record.sop_instance_uid, record.sha256);
        let path = self.absolute(&record.file_path);
        let ts_uid = record.transfer_syntax_uid.clone();
        self.frame_indexes
            .try_get_with(key, async move {
                let located = tokio::task::spawn_blocking(move || {
                    let pixel = layout::locate_pixel_data(&path, &ts_uid)?;
                    layout::frame_index(&pixel, &geometry)
                })
                .await
                .map_err(|e| layout::LayoutError::Malformed(e.to_string()))?;
                located.map(Arc::new)
            })
            .await
    }

    /// Start receiving an instance.
    pub async fn begin(self: &Arc<Self>, meta: FileMeta) -> Result<PendingInstance, StoreError> {
        let file = self
            .disk
            .create_pending(&meta)
            .await
            .map_err(StoreError::io("creating a temp file"))?;
        Ok(PendingInstance {
            store: Arc::clone(self),
            meta,
            file,
        })
    }

    /// Reconcile index and files after a crash: drop temp files, drop index rows whose file
    /// is gone, and index files that are on disk but not in the index.
    fn repair(&self) -> Result<(), StoreError> {
        let removed = self
            .disk
            .clear_tmp()
            .map_err(StoreError::io("clearing temp files"))?;
        let known = self.index.all_files()?;
        let mut known_paths = std::collections::HashSet::new();
        let mut dropped = 0;
        for (sop, rel, size) in known {
            let abs = self.disk.absolute(Path::new(&rel));
            match std::fs::metadata(&abs) {
                Ok(m) if m.len() == size => {
                    known_paths.insert(abs);
                }
                _ => {
                    self.index.delete_instance(&sop)?;
                    dropped += 1;
                }
            }
        }
        let mut adopted = 0;
        for path in walk_files(&self.disk.files_dir()) {
            if known_paths.contains(&path) {
                continue;
            }
            match self.adopt(&path) {
                Ok(()) => adopted += 1,
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "removing unreadable cache file");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        if removed + dropped + adopted > 0 {
            tracing::info!(
                temp_files_removed = removed,
                index_rows_dropped = dropped,
                files_reindexed = adopted,
                "cache repaired"
            );
        }
        Ok(())
    }

    /// Index a file that is on disk but missing from the index.
    fn adopt(&self, path: &Path) -> Result<(), StoreError> {
        let bytes = std::fs::read(path).map_err(StoreError::io("reading a cache file"))?;
        let sha = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(&bytes))
        };
        let indexed = ingest::index_file(path, bulk_prefix)
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
        let rel = Disk::relative_path(
            &indexed.study_uid,
            &indexed.series_uid,
            &indexed.sop_instance_uid,
        );
        if self.disk.absolute(&rel) != path {
            return Err(StoreError::Invalid("file is not where its UIDs say".into()));
        }
        self.index.upsert(
            &indexed,
            &rel,
            bytes.len() as u64,
            &sha,
            crate::clock::now(),
        )?;
        Ok(())
    }
}

impl PendingInstance {
    /// Append received bytes of the data set.
    pub async fn write(&mut self, data: &[u8]) -> Result<(), StoreError> {
        self.file
            .write(data)
            .await
            .map_err(StoreError::io("writing a temp file"))
    }

    /// Make the instance durable and visible: fsync, parse and check it, rename it into
    /// place, then index it. Only after this returns Ok may the sender be told "success".
    pub async fn commit(self) -> Result<StoredInstance, StoreError> {
        let finished = self
            .file
            .finish()
            .await
            .map_err(StoreError::io("syncing a temp file"))?;
        let store = Arc::clone(&self.store);
        let meta = self.meta;
        tokio::task::spawn_blocking(move || {
            let indexed = ingest::index_file(&finished.path, bulk_prefix)
                .map_err(|e| StoreError::Invalid(e.to_string()))?;
            check_matches(&meta, &indexed)?;
            let rel = Disk::relative_path(
                &indexed.study_uid,
                &indexed.series_uid,
                &indexed.sop_instance_uid,
            );
            store
                .disk
                .install(&finished.path, &rel)
                .map_err(StoreError::io("moving an instance into place"))?;
            let (size, sha) = (finished.len, finished.sha256.clone());
            finished.disarm();
            let moved_from = store
                .index
                .upsert(&indexed, &rel, size, &sha, crate::clock::now())?;
            if let Some(old) = moved_from {
                let _ = std::fs::remove_file(store.disk.absolute(&old));
            }
            store.touch(indexed.study_uid.as_str());
            store.arrived.notify_one();
            Ok(StoredInstance {
                study_uid: indexed.study_uid,
                series_uid: indexed.series_uid,
                sop_instance_uid: indexed.sop_instance_uid,
                file_size: size,
            })
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }
}

/// The data set must be the instance the command announced.
fn check_matches(meta: &FileMeta, indexed: &IndexedInstance) -> Result<(), StoreError> {
    if indexed.sop_instance_uid.as_str() != meta.sop_instance_uid {
        return Err(StoreError::Mismatch(format!(
            "SOP Instance UID in the data set ({}) differs from the command's ({})",
            indexed.sop_instance_uid, meta.sop_instance_uid
        )));
    }
    if !indexed.instance.sop_class_uid.is_empty()
        && indexed.instance.sop_class_uid != meta.sop_class_uid
    {
        return Err(StoreError::Mismatch(format!(
            "SOP Class UID in the data set ({}) differs from the command's ({})",
            indexed.instance.sop_class_uid, meta.sop_class_uid
        )));
    }
    Ok(())
}

/// Relative URI of an instance under the DICOMweb root, used for BulkDataURIs.
pub fn bulk_prefix(study: &Uid, series: &Uid, sop: &Uid) -> String {
    format!("studies/{study}/series/{series}/instances/{sop}")
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(p),
                Ok(t) if t.is_file() => out.push(p),
                _ => {}
            }
        }
    }
    out
}
