//! The SQLite index of the cache (schema in `schema.sql`): one writer connection and a small
//! pool of readers (WAL lets them run alongside the writer). Calls are blocking; the store
//! facade runs them on the blocking pool.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};

use super::ingest::IndexedInstance;

const SCHEMA: &str = include_str!("schema.sql");

/// One instance as the retrieve side needs it.
#[derive(Debug, Clone)]
pub struct InstanceRecord {
    pub study_uid: String,
    pub series_uid: String,
    pub sop_instance_uid: String,
    pub sop_class_uid: String,
    pub transfer_syntax_uid: String,
    pub file_path: PathBuf,
    pub file_size: u64,
    pub sha256: String,
    pub rows: Option<i64>,
    pub columns: Option<i64>,
    pub bits_allocated: Option<i64>,
    pub samples_per_pixel: Option<i64>,
    pub number_of_frames: Option<i64>,
}

/// How a retrieve from a PACS ended (table `retrieval`).
#[derive(Debug, Clone)]
pub struct RetrievalRecord {
    pub target: String,
    pub study_uid: String,
    pub upstream: String,
    pub complete: bool,
    pub arrived: i64,
    pub message: String,
    pub finished_at: i64,
}

/// Which instances a WADO-RS request addresses.
#[derive(Debug, Clone)]
pub struct Selector<'a> {
    pub study: &'a str,
    pub series: Option<&'a str>,
    pub instance: Option<&'a str>,
}

pub struct Index {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
}

impl Index {
    pub fn open(path: &Path) -> rusqlite::Result<Self> {
        let writer = Connection::open(path)?;
        writer.busy_timeout(std::time::Duration::from_secs(30))?;
        writer.execute_batch(SCHEMA)?;
        Ok(Index {
            path: path.to_path_buf(),
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
        })
    }

    fn open_reader(&self) -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        crate::web::qido::register_functions(&conn)?;
        Ok(conn)
    }

    /// Run `f` on a pooled read-only connection.
    pub fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, rusqlite::Error>,
    ) -> Result<T, rusqlite::Error> {
        self.read_with(f)
    }

    /// Run `f` on the read-only pool with a generic error type (e.g. QIDO's).
    pub fn read_with<T, E: From<rusqlite::Error>>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, E>,
    ) -> Result<T, E> {
        let pooled = self.readers.lock().ok().and_then(|mut p| p.pop());
        let conn = match pooled {
            Some(c) => c,
            None => self.open_reader()?,
        };
        let out = f(&conn);
        if let Ok(mut pool) = self.readers.lock() {
            if pool.len() < 16 {
                pool.push(conn);
            }
        }
        out
    }

    pub(crate) fn write<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        let mut conn = self
            .writer
            .lock()
            .map_err(|_| rusqlite::Error::InvalidQuery)?;
        f(&mut conn)
    }

    /// Insert or replace an instance and refresh the computed study/series attributes.
    /// Returns the previous file path of that instance if it moved.
    pub fn upsert(
        &self,
        inst: &IndexedInstance,
        file_path: &Path,
        file_size: u64,
        sha256: &str,
        now: i64,
    ) -> rusqlite::Result<Option<PathBuf>> {
        let rel = file_path.to_string_lossy().to_string();
        self.write(|conn| {
            let tx = conn.transaction()?;
            let previous: Option<(String, String)> = tx
                .query_row(
                    "SELECT file_path, series_uid FROM instance WHERE sop_instance_uid = ?1",
                    [inst.sop_instance_uid.as_str()],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            upsert_study(&tx, inst, now)?;
            upsert_series(&tx, inst, now)?;
            upsert_instance(&tx, inst, &rel, file_size, sha256, now)?;
            if let Some((_, old_series)) = &previous {
                if old_series != inst.series_uid.as_str() {
                    refresh_series(&tx, old_series)?;
                }
            }
            refresh_series(&tx, inst.series_uid.as_str())?;
            refresh_study(&tx, inst.study_uid.as_str())?;
            tx.commit()?;
            Ok(previous
                .map(|(p, _)| PathBuf::from(p))
                .filter(|p| p.as_path() != file_path))
        })
    }

    /// Remove an instance (e.g. its file vanished) and empty series/studies with it.
    pub fn delete_instance(&self, sop: &str) -> rusqlite::Result<()> {
        self.write(|conn| {
            let tx = conn.transaction()?;
            let keys: Option<(String, String)> = tx
                .query_row(
                    "SELECT series_uid, study_uid FROM instance WHERE sop_instance_uid = ?1",
                    [sop],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            if let Some((series, study)) = keys {
                tx.execute("DELETE FROM instance WHERE sop_instance_uid = ?1", [sop])?;
                refresh_series(&tx, &series)?;
                refresh_study(&tx, &study)?;
            }
            tx.commit()
        })
    }

    /// Every (SOP Instance UID, relative file path, size) in the index.
    pub fn all_files(&self) -> rusqlite::Result<Vec<(String, String, u64)>> {
        self.read(|c| {
            let mut st =
                c.prepare("SELECT sop_instance_uid, file_path, file_size FROM instance")?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            rows.collect()
        })
    }

    /// Instances addressed by a WADO-RS request, in series then instance order.
    pub fn instances(&self, sel: &Selector<'_>) -> rusqlite::Result<Vec<InstanceRecord>> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT i.study_uid, i.series_uid, i.sop_instance_uid, i.sop_class_uid,
                        i.transfer_syntax_uid, i.file_path, i.file_size, i.sha256,
                        i.rows, i.columns, i.bits_allocated, i.number_of_frames,
                        i.samples_per_pixel
                 FROM instance i JOIN series s ON s.series_uid = i.series_uid
                 WHERE i.study_uid = ?1
                   AND (?2 IS NULL OR i.series_uid = ?2)
                   AND (?3 IS NULL OR i.sop_instance_uid = ?3)
                 ORDER BY s.series_number, s.series_uid, i.instance_number, i.sop_instance_uid",
            )?;
            let rows = st.query_map(params![sel.study, sel.series, sel.instance], |r| {
                Ok(InstanceRecord {
                    study_uid: r.get(0)?,
                    series_uid: r.get(1)?,
                    sop_instance_uid: r.get(2)?,
                    sop_class_uid: r.get(3)?,
                    transfer_syntax_uid: r.get(4)?,
                    file_path: PathBuf::from(r.get::<_, String>(5)?),
                    file_size: r.get(6)?,
                    sha256: r.get(7)?,
                    rows: r.get(8)?,
                    columns: r.get(9)?,
                    bits_allocated: r.get(10)?,
                    number_of_frames: r.get(11)?,
                    samples_per_pixel: r.get(12)?,
                })
            })?;
            rows.collect()
        })
    }

    /// The precomputed metadata JSON objects of the addressed instances.
    pub fn metadata(&self, sel: &Selector<'_>) -> rusqlite::Result<Vec<String>> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT i.meta_json
                 FROM instance i JOIN series s ON s.series_uid = i.series_uid
                 WHERE i.study_uid = ?1
                   AND (?2 IS NULL OR i.series_uid = ?2)
                   AND (?3 IS NULL OR i.sop_instance_uid = ?3)
                 ORDER BY s.series_number, s.series_uid, i.instance_number, i.sop_instance_uid",
            )?;
            let rows = st.query_map(params![sel.study, sel.series, sel.instance], |r| r.get(0))?;
            rows.collect()
        })
    }

    /// Record how a retrieve from a PACS ended.
    pub fn record_retrieval(&self, r: &RetrievalRecord) -> rusqlite::Result<()> {
        self.write(|c| {
            c.execute(
                "INSERT OR REPLACE INTO retrieval
                    (target, study_uid, upstream, complete, arrived, message, finished_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    r.target,
                    r.study_uid,
                    r.upstream,
                    r.complete,
                    r.arrived,
                    r.message,
                    r.finished_at
                ],
            )?;
            Ok(())
        })
    }

    /// The message of the latest incomplete retrieve that covers `target` (the study, or the
    /// series under it), if the latest retrieve for it was incomplete.
    pub fn incomplete_retrieval(
        &self,
        study: &str,
        series: Option<&str>,
    ) -> rusqlite::Result<Option<String>> {
        let series_key = series.map(|s| format!("{study}/{s}"));
        self.read(|c| {
            c.query_row(
                "SELECT complete, message FROM retrieval
                 WHERE target = ?1 OR target = ?2
                 ORDER BY finished_at DESC LIMIT 1",
                params![study, series_key],
                |r| Ok((r.get::<_, bool>(0)?, r.get::<_, String>(1)?)),
            )
            .optional()
            .map(|row| row.filter(|(complete, _)| !complete).map(|(_, m)| m))
        })
    }

    /// (studies, series, instances) in the index.
    pub fn counts(&self) -> rusqlite::Result<(u64, u64, u64)> {
        self.read(|c| {
            c.query_row(
                "SELECT (SELECT count(*) FROM study), (SELECT count(*) FROM series),
                        (SELECT count(*) FROM instance)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
        })
    }
}

fn upsert_study(
    tx: &rusqlite::Transaction<'_>,
    i: &IndexedInstance,
    now: i64,
) -> rusqlite::Result<()> {
    let s = &i.study;
    tx.execute(
        "INSERT INTO study (study_uid, patient_id, issuer_of_patient_id, patient_name,
            patient_birth_date, patient_sex, study_date, study_time, accession_number, study_id,
            study_description, referring_physician_name, meta_json, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
         ON CONFLICT(study_uid) DO UPDATE SET
            patient_id = excluded.patient_id, issuer_of_patient_id = excluded.issuer_of_patient_id,
            patient_name = excluded.patient_name, patient_birth_date = excluded.patient_birth_date,
            patient_sex = excluded.patient_sex, study_date = excluded.study_date,
            study_time = excluded.study_time, accession_number = excluded.accession_number,
            study_id = excluded.study_id, study_description = excluded.study_description,
            referring_physician_name = excluded.referring_physician_name,
            meta_json = excluded.meta_json, updated_at = excluded.updated_at",
        params![
            i.study_uid.as_str(),
            s.patient_id,
            s.issuer_of_patient_id,
            s.patient_name,
            s.patient_birth_date,
            s.patient_sex,
            s.study_date,
            s.study_time,
            s.accession_number,
            s.study_id,
            s.study_description,
            s.referring_physician_name,
            s.meta_json,
            now
        ],
    )?;
    Ok(())
}

fn upsert_series(
    tx: &rusqlite::Transaction<'_>,
    i: &IndexedInstance,
    now: i64,
) -> rusqlite::Result<()> {
    let s = &i.series;
    tx.execute(
        "INSERT INTO series (series_uid, study_uid, modality, series_number, series_description,
            series_date, series_time, body_part_examined, performed_procedure_step_start_date,
            performed_procedure_step_start_time, meta_json, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
         ON CONFLICT(series_uid) DO UPDATE SET
            study_uid = excluded.study_uid, modality = excluded.modality,
            series_number = excluded.series_number, series_description = excluded.series_description,
            series_date = excluded.series_date, series_time = excluded.series_time,
            body_part_examined = excluded.body_part_examined,
            performed_procedure_step_start_date = excluded.performed_procedure_step_start_date,
            performed_procedure_step_start_time = excluded.performed_procedure_step_start_time,
            meta_json = excluded.meta_json, updated_at = excluded.updated_at",
        params![
            i.series_uid.as_str(),
            i.study_uid.as_str(),
            s.modality,
            s.series_number,
            s.series_description,
            s.series_date,
            s.series_time,
            s.body_part_examined,
            s.pps_start_date,
            s.pps_start_time,
            s.meta_json,
            now
        ],
    )?;
    Ok(())
}

fn upsert_instance(
    tx: &rusqlite::Transaction<'_>,
    i: &IndexedInstance,
    rel: &str,
    size: u64,
    sha256: &str,
    now: i64,
) -> rusqlite::Result<()> {
    let f = &i.instance;
    tx.execute(
        "INSERT OR REPLACE INTO instance (sop_instance_uid, series_uid, study_uid, sop_class_uid,
            instance_number, transfer_syntax_uid, rows, columns, bits_allocated, number_of_frames,
            file_path, file_size, sha256, meta_json, received_at, samples_per_pixel)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
        params![
            i.sop_instance_uid.as_str(),
            i.series_uid.as_str(),
            i.study_uid.as_str(),
            f.sop_class_uid,
            f.instance_number,
            i.transfer_syntax_uid,
            f.rows,
            f.columns,
            f.bits_allocated,
            f.number_of_frames,
            rel,
            size,
            sha256,
            f.meta_json,
            now,
            f.samples_per_pixel
        ],
    )?;
    Ok(())
}

/// Recount a series; remove it when empty.
fn refresh_series(tx: &rusqlite::Transaction<'_>, series: &str) -> rusqlite::Result<()> {
    let n: i64 = tx.query_row(
        "SELECT count(*) FROM instance WHERE series_uid = ?1",
        [series],
        |r| r.get(0),
    )?;
    if n == 0 {
        tx.execute("DELETE FROM series WHERE series_uid = ?1", [series])?;
    } else {
        tx.execute(
            "UPDATE series SET num_instances = ?2 WHERE series_uid = ?1",
            params![series, n],
        )?;
    }
    Ok(())
}

/// Recompute ModalitiesInStudy and the study's series/instance counts; remove it when empty.
fn refresh_study(tx: &rusqlite::Transaction<'_>, study: &str) -> rusqlite::Result<()> {
    let (series, instances): (i64, i64) = tx.query_row(
        "SELECT count(*), coalesce(sum(num_instances), 0) FROM series WHERE study_uid = ?1",
        [study],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    if series == 0 {
        tx.execute("DELETE FROM study WHERE study_uid = ?1", [study])?;
        return Ok(());
    }
    let mut st = tx.prepare_cached(
        "SELECT DISTINCT modality FROM series WHERE study_uid = ?1 AND modality != '' ORDER BY modality",
    )?;
    let modalities: Vec<String> = st
        .query_map([study], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    tx.execute(
        "UPDATE study SET num_series = ?2, num_instances = ?3, modalities_in_study = ?4
         WHERE study_uid = ?1",
        params![study, series, instances, modalities.join("\\")],
    )?;
    Ok(())
}
