//! The disk tier: where instance files live, how an incoming instance is written (a temp file
//! streamed to disk and hashed as it arrives, fsynced, then renamed into place), and the
//! DICOM Part 10 file meta header we put in front of the data set exactly as received.

use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::types::Uid;

/// Our Implementation Class UID (0002,0012) and Version Name (0002,0013).
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.30596168291503451854049269478309616521";
pub const IMPLEMENTATION_VERSION_NAME: &str = "TSUNAGI_01";

/// Layout of the cache directory.
#[derive(Debug, Clone)]
pub struct Disk {
    root: PathBuf,
}

impl Disk {
    pub fn new(root: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(root.join("tmp"))?;
        std::fs::create_dir_all(root.join("files"))?;
        Ok(Disk {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    pub fn files_dir(&self) -> PathBuf {
        self.root.join("files")
    }

    /// Relative path of an instance file: `files/{study}/{series}/{sop}.dcm`.
    /// UIDs are validated, so they cannot escape the directory.
    pub fn relative_path(study: &Uid, series: &Uid, sop: &Uid) -> PathBuf {
        PathBuf::from("files")
            .join(study.as_str())
            .join(series.as_str())
            .join(format!("{}.dcm", sop.as_str()))
    }

    pub fn absolute(&self, relative: &Path) -> PathBuf {
        self.root.join(relative)
    }

    /// Remove leftovers of interrupted writes (called at start-up, before serving).
    pub fn clear_tmp(&self) -> io::Result<usize> {
        let mut removed = 0;
        for entry in std::fs::read_dir(self.tmp_dir())? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                std::fs::remove_file(entry.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Start a temp file for an incoming instance, with the Part 10 header already written.
    pub async fn create_pending(&self, meta: &FileMeta) -> io::Result<PendingFile> {
        let name = format!(
            "{}.{}.part",
            meta.sop_instance_uid,
            std::process::id() as u64 * 1_000_000 + next_counter()
        );
        let path = self.tmp_dir().join(name);
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await?;
        let mut pending = PendingFile {
            path,
            file: Some(tokio::io::BufWriter::with_capacity(256 * 1024, file)),
            hasher: Sha256::new(),
            len: 0,
        };
        pending.write(&part10_header(meta)).await?;
        Ok(pending)
    }

    /// Move a durable temp file to its final place, replacing an older copy atomically,
    /// and make the rename itself durable.
    pub fn install(&self, tmp: &Path, relative: &Path) -> io::Result<()> {
        let dest = self.absolute(relative);
        let dir = dest
            .parent()
            .ok_or_else(|| io::Error::other("instance path has no parent"))?;
        std::fs::create_dir_all(dir)?;
        std::fs::rename(tmp, &dest)?;
        sync_dir(dir)
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// A number no other temporary file of this process has used.
pub(crate) fn next_counter() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// What the file meta group says about an instance.
#[derive(Debug, Clone)]
pub struct FileMeta {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub transfer_syntax_uid: String,
    pub source_ae_title: String,
}

/// A temp file being written. Dropping it without `finish` removes the file, so an aborted
/// transfer never leaves a partial instance behind.
pub struct PendingFile {
    path: PathBuf,
    file: Option<tokio::io::BufWriter<tokio::fs::File>>,
    hasher: Sha256,
    len: u64,
}

impl PendingFile {
    pub async fn write(&mut self, data: &[u8]) -> io::Result<()> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("pending file already finished"))?;
        file.write_all(data).await?;
        self.hasher.update(data);
        self.len += data.len() as u64;
        Ok(())
    }

    /// Flush and fsync; returns the temp path, the file's SHA-256 (hex) and its length.
    /// The temp file stays owned by the returned guard until installed.
    pub async fn finish(mut self) -> io::Result<FinishedFile> {
        let mut file = self
            .file
            .take()
            .ok_or_else(|| io::Error::other("pending file already finished"))?;
        file.flush().await?;
        file.get_mut().sync_all().await?;
        drop(file);
        let sha256 = hex::encode(std::mem::take(&mut self.hasher).finalize());
        Ok(FinishedFile {
            path: std::mem::take(&mut self.path),
            sha256,
            len: self.len,
        })
    }
}

impl Drop for PendingFile {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A complete, durable temp file not yet installed. Dropping it removes the file.
pub struct FinishedFile {
    pub path: PathBuf,
    pub sha256: String,
    pub len: u64,
}

impl FinishedFile {
    /// Hand the file over (it was renamed away); nothing is removed on drop.
    pub fn disarm(mut self) {
        self.path = PathBuf::new();
    }
}

impl Drop for FinishedFile {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Preamble, "DICM" and the file meta group (Explicit VR Little Endian, PS3.10 §7.1).
pub fn part10_header(meta: &FileMeta) -> Vec<u8> {
    let mut group = Vec::with_capacity(256);
    put_element(&mut group, 0x0001, b"OB", &[0x00, 0x01]);
    put_element(&mut group, 0x0002, b"UI", &uid_bytes(&meta.sop_class_uid));
    put_element(
        &mut group,
        0x0003,
        b"UI",
        &uid_bytes(&meta.sop_instance_uid),
    );
    put_element(
        &mut group,
        0x0010,
        b"UI",
        &uid_bytes(&meta.transfer_syntax_uid),
    );
    put_element(
        &mut group,
        0x0012,
        b"UI",
        &uid_bytes(IMPLEMENTATION_CLASS_UID),
    );
    put_element(
        &mut group,
        0x0013,
        b"SH",
        &text_bytes(IMPLEMENTATION_VERSION_NAME),
    );
    if !meta.source_ae_title.is_empty() {
        put_element(
            &mut group,
            0x0016,
            b"AE",
            &text_bytes(&meta.source_ae_title),
        );
    }
    let mut out = vec![0u8; 128];
    out.extend_from_slice(b"DICM");
    put_element(&mut out, 0x0000, b"UL", &(group.len() as u32).to_le_bytes());
    out.extend_from_slice(&group);
    out
}

fn uid_bytes(uid: &str) -> Vec<u8> {
    let mut v = uid.as_bytes().to_vec();
    if v.len() % 2 == 1 {
        v.push(0);
    }
    v
}

fn text_bytes(text: &str) -> Vec<u8> {
    let mut v = text.as_bytes().to_vec();
    if v.len() % 2 == 1 {
        v.push(b' ');
    }
    v
}

fn put_element(out: &mut Vec<u8>, element: u16, vr: &[u8; 2], value: &[u8]) {
    out.extend_from_slice(&0x0002u16.to_le_bytes());
    out.extend_from_slice(&element.to_le_bytes());
    out.extend_from_slice(vr);
    if vr == b"OB" {
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    } else {
        out.extend_from_slice(&(value.len() as u16).to_le_bytes());
    }
    out.extend_from_slice(value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dropped_pending_file_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::new(dir.path()).unwrap();
        let meta = FileMeta {
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
            sop_instance_uid: "1.2.3".into(),
            transfer_syntax_uid: "1.2.840.10008.1.2.1".into(),
            source_ae_title: "STORESCU".into(),
        };
        let mut p = disk.create_pending(&meta).await.unwrap();
        p.write(b"partial").await.unwrap();
        drop(p);
        assert_eq!(std::fs::read_dir(disk.tmp_dir()).unwrap().count(), 0);
    }

    #[test]
    fn header_is_readable_by_dicom_rs() {
        let meta = FileMeta {
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
            sop_instance_uid: "1.2.3".into(),
            transfer_syntax_uid: "1.2.840.10008.1.2.1".into(),
            source_ae_title: "A".into(),
        };
        let bytes = part10_header(&meta);
        let m = dicom_object::FileMetaTable::from_reader(&bytes[128..]).unwrap();
        assert_eq!(m.transfer_syntax(), "1.2.840.10008.1.2.1");
        assert_eq!(m.media_storage_sop_instance_uid(), "1.2.3");
    }
}
