//! Persistence of jobs in the index (tables `job` and `job_study` in `store/schema.sql`).
//! Every state change is written before it is acted on, so a restarted gateway resumes
//! where it stopped: studies left `running` are queued again at start-up.

use rusqlite::{params, OptionalExtension, Row};

use super::model::{JobState, StudyState};
use crate::store::Index;

/// A `job` row.
#[derive(Debug, Clone)]
pub struct JobRow {
    pub id: i64,
    pub spec_json: String,
    pub due: Option<i64>,
    pub priority: i32,
    pub state: JobState,
    pub message: String,
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

/// A `job_study` row, with what the cache holds of the study now.
#[derive(Debug, Clone)]
pub struct StudyRow {
    pub study_uid: String,
    pub upstream: String,
    pub state: StudyState,
    pub instances_total: Option<i64>,
    pub instances_done: i64,
    pub bytes_done: i64,
    pub attempts: u32,
    pub next_try_at: i64,
    pub error: String,
    /// Instances and bytes of the study in the cache right now.
    pub cached_instances: i64,
    pub cached_bytes: i64,
}

/// A study ready to be retrieved, in scheduling order.
#[derive(Debug, Clone)]
pub struct Ready {
    pub job_id: i64,
    pub study_uid: String,
    pub upstream: String,
    pub due: Option<i64>,
    pub attempts: u32,
}

/// A study found by resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub study_uid: String,
    pub upstream: String,
    pub instances: Option<i64>,
    /// StudyDate + StudyTime, for "the last N".
    pub when: String,
}

const JOB_COLUMNS: &str = "id, spec_json, due, priority, state, message, created_at, finished_at";

fn job_row(r: &Row<'_>) -> rusqlite::Result<JobRow> {
    Ok(JobRow {
        id: r.get(0)?,
        spec_json: r.get(1)?,
        due: r.get(2)?,
        priority: r.get(3)?,
        state: JobState::parse(&r.get::<_, String>(4)?),
        message: r.get(5)?,
        created_at: r.get(6)?,
        finished_at: r.get(7)?,
    })
}

pub fn insert_job(
    index: &Index,
    spec_json: &str,
    due: Option<i64>,
    priority: i32,
    now: i64,
) -> rusqlite::Result<i64> {
    index.write(|c| {
        c.execute(
            "INSERT INTO job (spec_json, due, priority, state, created_at, updated_at)
             VALUES (?1, ?2, ?3, 'resolving', ?4, ?4)",
            params![spec_json, due, priority, now],
        )?;
        Ok(c.last_insert_rowid())
    })
}

pub fn job(index: &Index, id: i64) -> rusqlite::Result<Option<JobRow>> {
    index.read(|c| {
        c.query_row(
            &format!("SELECT {JOB_COLUMNS} FROM job WHERE id = ?1"),
            [id],
            job_row,
        )
        .optional()
    })
}

/// Jobs, newest first; `state` filters; at most `limit`.
pub fn jobs(index: &Index, state: Option<JobState>, limit: usize) -> rusqlite::Result<Vec<JobRow>> {
    index.read(|c| {
        let mut st = c.prepare_cached(&format!(
            "SELECT {JOB_COLUMNS} FROM job WHERE (?1 IS NULL OR state = ?1)
             ORDER BY id DESC LIMIT ?2"
        ))?;
        let rows = st.query_map(params![state.map(JobState::as_str), limit as i64], job_row)?;
        rows.collect()
    })
}

pub fn studies(index: &Index, job_id: i64) -> rusqlite::Result<Vec<StudyRow>> {
    index.read(|c| {
        let mut st = c.prepare_cached(
            "SELECT j.study_uid, j.upstream, j.state, j.instances_total, j.instances_done,
                    j.bytes_done, j.attempts, j.next_try_at, j.error,
                    (SELECT count(*) FROM instance i WHERE i.study_uid = j.study_uid),
                    (SELECT coalesce(sum(file_size), 0) FROM instance i WHERE i.study_uid = j.study_uid)
             FROM job_study j WHERE j.job_id = ?1 ORDER BY j.rowid",
        )?;
        let rows = st.query_map([job_id], |r| {
            Ok(StudyRow {
                study_uid: r.get(0)?,
                upstream: r.get(1)?,
                state: StudyState::parse(&r.get::<_, String>(2)?),
                instances_total: r.get(3)?,
                instances_done: r.get(4)?,
                bytes_done: r.get(5)?,
                attempts: r.get(6)?,
                next_try_at: r.get(7)?,
                error: r.get(8)?,
                cached_instances: r.get(9)?,
                cached_bytes: r.get(10)?,
            })
        })?;
        rows.collect()
    })
}

pub fn set_job_state(
    index: &Index,
    id: i64,
    state: JobState,
    message: &str,
    now: i64,
) -> rusqlite::Result<()> {
    let finished = state.is_final().then_some(now);
    index.write(|c| {
        c.execute(
            "UPDATE job SET state = ?2, message = ?3, updated_at = ?4,
                finished_at = coalesce(?5, finished_at)
             WHERE id = ?1 AND state IN ('resolving', 'queued')",
            params![id, state.as_str(), message, now, finished],
        )
        .map(drop)
    })
}

/// Set the message of several jobs in one transaction (the scheduler's notes of each tick);
/// unchanged messages are not rewritten.
pub fn set_job_messages(index: &Index, messages: &[(i64, String)]) -> rusqlite::Result<()> {
    index.write(|c| {
        let tx = c.transaction()?;
        {
            let mut st =
                tx.prepare_cached("UPDATE job SET message = ?2 WHERE id = ?1 AND message != ?2")?;
            for (id, message) in messages {
                st.execute(params![id, message])?;
            }
        }
        tx.commit()
    })
}

pub fn set_job_message(index: &Index, id: i64, message: &str) -> rusqlite::Result<bool> {
    index.write(|c| {
        let n = c.execute(
            "UPDATE job SET message = ?2 WHERE id = ?1 AND message != ?2",
            params![id, message],
        )?;
        Ok(n > 0)
    })
}

/// Record what resolution found, pin those studies (holder `job:{id}`, until `pin_until`) and
/// queue the job, all in one transaction; false (and nothing written) when the job is no
/// longer resolving (cancelled meanwhile), so a cancelled job never leaves pins behind.
pub fn add_studies(
    index: &Index,
    id: i64,
    found: &[Found],
    pin_until: Option<i64>,
    now: i64,
) -> rusqlite::Result<bool> {
    index.write(|c| {
        let tx = c.transaction()?;
        let queued = tx.execute(
            "UPDATE job SET state = 'queued', message = '', updated_at = ?2
             WHERE id = ?1 AND state = 'resolving'",
            params![id, now],
        )?;
        if queued == 0 {
            return Ok(false);
        }
        let holder = super::holder(id);
        for f in found {
            tx.execute(
                "INSERT OR IGNORE INTO job_study (job_id, study_uid, upstream, state, instances_total)
                 VALUES (?1, ?2, ?3, 'queued', ?4)",
                params![id, f.study_uid, f.upstream, f.instances],
            )?;
            crate::store::evict::pin_in(&tx, &f.study_uid, &holder, pin_until)?;
        }
        tx.commit()?;
        Ok(true)
    })
}

/// Studies that may start now, most urgent first: earliest due (jobs without one last),
/// then highest priority, then oldest job.
pub fn ready(index: &Index, now: i64, limit: usize) -> rusqlite::Result<Vec<Ready>> {
    index.read(|c| {
        let mut st = c.prepare_cached(
            "SELECT s.job_id, s.study_uid, s.upstream, j.due, s.attempts
             FROM job_study s JOIN job j ON j.id = s.job_id
             WHERE j.state = 'queued' AND s.state = 'queued' AND s.next_try_at <= ?1
             ORDER BY j.due IS NULL, j.due, j.priority DESC, j.id, s.rowid
             LIMIT ?2",
        )?;
        let rows = st.query_map(params![now, limit as i64], |r| {
            Ok(Ready {
                job_id: r.get(0)?,
                study_uid: r.get(1)?,
                upstream: r.get(2)?,
                due: r.get(3)?,
                attempts: r.get(4)?,
            })
        })?;
        rows.collect()
    })
}

/// Move a queued study of a queued job to `state`; false when it is no longer queued (its
/// job was cancelled meanwhile), so a cancelled study is never started.
pub fn set_study_state(
    index: &Index,
    job_id: i64,
    study: &str,
    state: StudyState,
) -> rusqlite::Result<bool> {
    index.write(|c| {
        let n = c.execute(
            "UPDATE job_study SET state = ?3
             WHERE job_id = ?1 AND study_uid = ?2 AND state = 'queued'
               AND EXISTS (SELECT 1 FROM job WHERE id = ?1 AND state = 'queued')",
            params![job_id, study, state.as_str()],
        )?;
        Ok(n > 0)
    })
}

/// Live counts of a running study (a total learnt from the PACS's sub-operation counts
/// replaces an unknown one).
pub fn study_progress(
    index: &Index,
    job_id: i64,
    study: &str,
    done: i64,
    total: Option<i64>,
) -> rusqlite::Result<()> {
    index.write(|c| {
        c.execute(
            "UPDATE job_study SET instances_done = max(instances_done, ?3),
                instances_total = coalesce(instances_total, ?4)
             WHERE job_id = ?1 AND study_uid = ?2",
            params![job_id, study, done, total],
        )
        .map(drop)
    })
}

/// How an attempt at a study ended.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub state: StudyState,
    pub instances_done: i64,
    pub bytes_done: i64,
    pub attempts: u32,
    pub next_try_at: i64,
    pub error: String,
}

pub fn study_attempted(
    index: &Index,
    job_id: i64,
    study: &str,
    a: &Attempt,
) -> rusqlite::Result<()> {
    index.write(|c| {
        c.execute(
            "UPDATE job_study SET state = ?3, instances_done = max(instances_done, ?4),
                bytes_done = ?5, attempts = ?6, next_try_at = ?7, error = ?8,
                instances_total = CASE WHEN ?3 = 'done' THEN max(coalesce(instances_total, 0), ?4)
                                       ELSE instances_total END
             WHERE job_id = ?1 AND study_uid = ?2 AND state = 'running'",
            params![
                job_id,
                study,
                a.state.as_str(),
                a.instances_done,
                a.bytes_done,
                a.attempts,
                a.next_try_at,
                a.error
            ],
        )
        .map(drop)
    })
}

/// At start-up: what was running when the gateway stopped is queued again.
pub fn requeue_running(index: &Index) -> rusqlite::Result<usize> {
    index.write(|c| {
        c.execute(
            "UPDATE job_study SET state = 'queued' WHERE state = 'running'",
            [],
        )
    })
}

/// Queued jobs whose studies have all ended: (id, failed studies, total studies).
pub fn finished_jobs(index: &Index) -> rusqlite::Result<Vec<(i64, i64, i64)>> {
    index.read(|c| {
        let mut st = c.prepare_cached(
            "SELECT j.id,
                    (SELECT count(*) FROM job_study s WHERE s.job_id = j.id AND s.state = 'failed'),
                    (SELECT count(*) FROM job_study s WHERE s.job_id = j.id)
             FROM job j WHERE j.state = 'queued' AND NOT EXISTS
                (SELECT 1 FROM job_study s WHERE s.job_id = j.id AND s.state IN ('queued', 'running'))",
        )?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect()
    })
}

/// Cancel a job and its unfinished studies; false when it had already ended.
pub fn cancel(index: &Index, id: i64, now: i64) -> rusqlite::Result<bool> {
    index.write(|c| {
        let tx = c.transaction()?;
        let n = tx.execute(
            "UPDATE job SET state = 'cancelled', updated_at = ?2, finished_at = ?2
             WHERE id = ?1 AND state IN ('resolving', 'queued')",
            params![id, now],
        )?;
        tx.execute(
            "UPDATE job_study SET state = 'cancelled'
             WHERE job_id = ?1 AND state IN ('queued', 'running')",
            [id],
        )?;
        tx.commit()?;
        Ok(n > 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduling_order_and_lifecycle() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(&dir.path().join("i.sqlite")).unwrap();
        let late = insert_job(&index, "{}", Some(2_000), 0, 1).unwrap();
        let soon_low = insert_job(&index, "{}", Some(1_000), 0, 1).unwrap();
        let soon_high = insert_job(&index, "{}", Some(1_000), 5, 1).unwrap();
        let undated = insert_job(&index, "{}", None, 9, 1).unwrap();
        let f = |s: &str| Found {
            study_uid: s.into(),
            upstream: "a".into(),
            instances: Some(3),
            when: String::new(),
        };
        for (id, s) in [
            (late, "1"),
            (soon_low, "2"),
            (soon_high, "3"),
            (undated, "4"),
        ] {
            add_studies(&index, id, &[f(s)], None, 1).unwrap();
        }
        let order: Vec<String> = ready(&index, 10, 10)
            .unwrap()
            .into_iter()
            .map(|r| r.study_uid)
            .collect();
        assert_eq!(order, vec!["3", "2", "1", "4"]);

        set_study_state(&index, soon_high, "3", StudyState::Running).unwrap();
        assert_eq!(requeue_running(&index).unwrap(), 1);
        set_study_state(&index, soon_high, "3", StudyState::Running).unwrap();
        let done = Attempt {
            state: StudyState::Done,
            instances_done: 3,
            bytes_done: 99,
            attempts: 1,
            next_try_at: 0,
            error: String::new(),
        };
        study_attempted(&index, soon_high, "3", &done).unwrap();
        assert_eq!(finished_jobs(&index).unwrap(), vec![(soon_high, 0, 1)]);
        assert!(cancel(&index, late, 5).unwrap());
        assert!(!cancel(&index, late, 6).unwrap());
        assert_eq!(
            studies(&index, late).unwrap()[0].state,
            StudyState::Cancelled
        );
    }
}
