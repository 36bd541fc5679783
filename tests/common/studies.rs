//! More studies for the prefetch and cache tests: copies of sample files made into a new
//! study (fresh Study, Series and SOP Instance UIDs; a given patient, date and accession)
//! with DCMTK `dcmodify`, so one PACS can hold several studies of one patient.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;

pub const DCMODIFY: &str = "/usr/bin/dcmodify";

/// A fresh `2.25.` UID.
pub fn new_uid() -> String {
    let mut n: u128 = 0;
    for _ in 0..2 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos(),
        );
        n = (n << 64) | h.finish() as u128;
    }
    format!("2.25.{}", n >> 2)
}

/// A study made of copies of `files` in `dir`: returns its files and Study Instance UID.
pub fn clone_study(
    files: &[PathBuf],
    dir: &Path,
    patient_id: &str,
    study_date: &str,
    accession: &str,
) -> (Vec<PathBuf>, String) {
    std::fs::create_dir_all(dir).expect("study dir");
    let study = new_uid();
    let mut series: HashMap<String, String> = HashMap::new();
    let mut out = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let old_series = series_of(f);
        let se = series.entry(old_series).or_insert_with(new_uid).clone();
        let to = dir.join(format!("{i:04}.dcm"));
        std::fs::copy(f, &to).expect("copy sample");
        let status = Command::new(DCMODIFY)
            .arg("-nb")
            .args(["-m", &format!("(0020,000d)={study}")])
            .args(["-m", &format!("(0020,000e)={se}")])
            .args(["-m", &format!("(0008,0018)={}", new_uid())])
            .args(["-m", &format!("(0010,0020)={patient_id}")])
            .args(["-m", &format!("(0008,0020)={study_date}")])
            .args(["-m", &format!("(0008,0050)={accession}")])
            .arg(&to)
            .output()
            .expect("run dcmodify");
        assert!(status.status.success(), "dcmodify: {status:?}");
        out.push(to);
    }
    (out, study)
}

fn series_of(file: &Path) -> String {
    let out = Command::new("/usr/bin/dcmdump")
        .args(["+P", "0020,000e", "-q"])
        .arg(file)
        .output()
        .expect("run dcmdump");
    String::from_utf8_lossy(&out.stdout).to_string()
}
