//! Prefetch jobs: cache warming for scheduled referrals. Owns the job model (`model`), its
//! persistence in the SQLite index (`db`; tables `job` and `job_study` in
//! `store/schema.sql`, created with `CREATE TABLE IF NOT EXISTS` so older caches gain them),
//! resolution of a request into studies by C-FIND (`resolve`), the referrals CSV (`csv`)
//! and the scheduler task (`scheduler`) that `app` starts and stops with the gateway.
//!
//! A job's studies are pinned in the cache (holder `job:{id}`) until its due time plus
//! `store.pin_retention`; cancelling a job releases them.

pub mod csv;
pub mod db;
pub mod model;
pub mod resolve;
pub mod scheduler;

use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::sync::Notify;

use crate::auth::referral::{self, Patient};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::pull::Pull;
use crate::store::evict::blocking;
use crate::store::{Store, StoreError};
pub use model::{
    InvalidJob, JobProgress, JobSpec, JobState, JobView, NewJob, StudyState, StudyView,
};

/// Precomputes what a viewer asks for first, once a study has arrived (set by `app`).
pub type Preparer = Arc<dyn Fn(String) -> BoxFuture<'static, ()> + Send + Sync>;

/// Errors of the jobs API.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Invalid(#[from] InvalidJob),
    #[error("no job {0}")]
    NotFound(i64),
    #[error("job {0} has already ended")]
    Ended(i64),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for JobError {
    fn from(e: rusqlite::Error) -> Self {
        JobError::Store(StoreError::Index(e))
    }
}

/// The jobs facade shared by the admin API and the scheduler.
pub struct Jobs {
    pub config: Arc<Config>,
    pub store: Arc<Store>,
    pub pull: Arc<Pull>,
    pub metrics: Arc<Metrics>,
    wake: Notify,
    preparer: std::sync::OnceLock<Preparer>,
}

/// The pin holder name of a job.
pub fn holder(id: i64) -> String {
    format!("job:{id}")
}

impl Jobs {
    pub fn new(
        config: Arc<Config>,
        store: Arc<Store>,
        pull: Arc<Pull>,
        metrics: Arc<Metrics>,
    ) -> Arc<Jobs> {
        Arc::new(Jobs {
            config,
            store,
            pull,
            metrics,
            wake: Notify::new(),
            preparer: std::sync::OnceLock::new(),
        })
    }

    /// Set what "prepare for reading" runs after a study arrives.
    pub fn set_preparer(&self, p: Preparer) {
        let _ = self.preparer.set(p);
    }

    fn preparer(&self) -> Option<&Preparer> {
        self.preparer.get()
    }

    /// Validate and store a job; the scheduler resolves and runs it.
    pub async fn create(&self, spec: JobSpec) -> Result<JobView, JobError> {
        let job = spec.validate(&self.config)?;
        let json = serde_json::to_string(&job.spec).map_err(|e| InvalidJob(e.to_string()))?;
        let (index, due, priority) = (Arc::clone(self.store.index()), job.due, job.spec.priority);
        let id =
            blocking(move || db::insert_job(&index, &json, due, priority, crate::clock::now()))
                .await?;
        Metrics::inc(&self.metrics.jobs_created_total);
        tracing::info!(job = id, due = ?due, "prefetch job created");
        self.refer(id, &job).await?;
        self.wake.notify_one();
        self.view(id).await
    }

    /// A job naming `referred_to` refers its patient to that facility, from now until its due
    /// time (or now) plus the facility's `referral_validity`.
    async fn refer(&self, id: i64, job: &NewJob) -> Result<(), JobError> {
        let spec = &job.spec;
        let (Some(facility), Some(patient_id)) = (&spec.referred_to, &spec.patient_id) else {
            return Ok(());
        };
        let Some(rule) = self.config.facilities.iter().find(|f| &f.name == facility) else {
            return Ok(());
        };
        let now = crate::clock::now();
        let until = job.due.unwrap_or(now) + rule.referral_validity.as_secs() as i64;
        let draft = referral::Draft {
            facility: facility.clone(),
            patient: Patient {
                id: patient_id.clone(),
                issuer: spec.issuer.clone().unwrap_or_default(),
            },
            upstream: match spec.upstreams.as_slice() {
                [one] => one.clone(),
                _ => String::new(),
            },
            until: Some(until),
            source: holder(id),
        };
        let index = Arc::clone(self.store.index());
        let r = blocking(move || referral::insert(&index, draft, now)).await?;
        tracing::info!(job = id, referral = r.id, facility = %r.facility, "patient referred");
        Ok(())
    }

    /// Jobs, newest first (without their study lists).
    pub async fn list(
        &self,
        state: Option<JobState>,
        limit: usize,
    ) -> Result<Vec<JobView>, JobError> {
        let index = Arc::clone(self.store.index());
        let rows = blocking(move || {
            let jobs = db::jobs(&index, state, limit)?;
            jobs.into_iter()
                .map(|j| db::studies(&index, j.id).map(|s| (j, s)))
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .await?;
        Ok(rows
            .into_iter()
            .map(|(job, studies)| {
                let mut v = self.make_view(job, studies);
                v.studies.clear();
                v
            })
            .collect())
    }

    /// One job with its studies.
    pub async fn view(&self, id: i64) -> Result<JobView, JobError> {
        let index = Arc::clone(self.store.index());
        let row = blocking(move || db::job(&index, id)).await?;
        self.view_of(row.ok_or(JobError::NotFound(id))?).await
    }

    /// Cancel a job: its queued studies are dropped, its pins released.
    pub async fn cancel(&self, id: i64) -> Result<JobView, JobError> {
        let index = Arc::clone(self.store.index());
        let cancelled = blocking(move || db::cancel(&index, id, crate::clock::now())).await?;
        if !cancelled {
            self.view(id).await?; // NotFound when there is no such job
            return Err(JobError::Ended(id));
        }
        self.store.repin_holder(&holder(id), None).await?;
        tracing::info!(job = id, "prefetch job cancelled");
        self.wake.notify_one();
        self.view(id).await
    }

    async fn view_of(&self, row: db::JobRow) -> Result<JobView, JobError> {
        let index = Arc::clone(self.store.index());
        let id = row.id;
        let studies = blocking(move || db::studies(&index, id)).await?;
        Ok(self.make_view(row, studies))
    }

    /// A job as the admin API shows it: its row, its studies and the progress they add up to.
    fn make_view(&self, row: db::JobRow, rows: Vec<db::StudyRow>) -> JobView {
        let offset = self.config.jobs.utc_offset;
        let fmt = |t: i64| crate::clock::format_datetime(t, offset);
        let studies: Vec<StudyView> = rows.into_iter().map(|s| study_view(s, offset)).collect();
        let progress = JobProgress::from_studies(&studies);
        let now = crate::clock::now();
        let late = row.due.is_some_and(|due| match row.finished_at {
            Some(f) => row.state == JobState::Done && f > due,
            None => now > due,
        });
        JobView {
            id: row.id,
            state: row.state,
            late,
            message: row.message,
            spec: serde_json::from_str(&row.spec_json).unwrap_or_default(),
            due: row.due.map(fmt),
            priority: row.priority,
            created: fmt(row.created_at),
            finished: row.finished_at.map(fmt),
            progress,
            studies,
        }
    }
}

fn study_view(s: db::StudyRow, offset: i32) -> StudyView {
    // while a study is in the cache, what it holds is the truth; after an eviction or
    // purge the job still shows what it brought
    let (done, bytes) = if s.cached_instances > 0 {
        (s.cached_instances.max(0), s.cached_bytes.max(0))
    } else {
        (s.instances_done.max(0), s.bytes_done.max(0))
    };
    let done = match s.instances_total {
        Some(t) if s.state != StudyState::Done => done.min(t),
        _ => done,
    };
    let waiting = s.state == StudyState::Queued && s.next_try_at > crate::clock::now();
    StudyView {
        study_uid: s.study_uid,
        upstream: s.upstream,
        state: s.state,
        instances_done: done as u64,
        instances_total: s.instances_total.map(|t| t.max(0) as u64),
        bytes_done: bytes as u64,
        attempts: s.attempts,
        next_try: waiting.then(|| crate::clock::format_datetime(s.next_try_at, offset)),
        error: s.error,
    }
}
