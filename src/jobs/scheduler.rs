//! The scheduler: one task that resolves new jobs and starts study retrieves, most urgent
//! first (earliest due, then highest priority, then oldest job). For each upstream it
//! starts at most `jobs.per_upstream` studies at once (never more than its
//! `max_associations`), only inside its `window`, and, with a `bandwidth` cap, paces studies
//! so that the average rate stays under it (after a study of B bytes that started at t, the
//! next one from that PACS starts no earlier than t + B / cap; viewer retrievals are never
//! capped). Retrieves go through `Pull::prefetch`, so a viewer asking for the same study
//! joins it and promotes it ahead of other background work. A failed study is retried after
//! `jobs.backoff`, doubled per attempt up to `jobs.max_backoff`, `jobs.attempts` times. A
//! job not finished by its due time, or that cannot start before it, says so.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinSet;

use super::db::{self, Attempt, Found, Ready};
use super::model::{JobSpec, JobState, StudyState};
use super::resolve::{self, ResolveError};
use super::{blocking, holder, JobError, Jobs};
use crate::config::{parse_bandwidth, DailyWindow};
use crate::dimse::retrieve_scu::RetrieveTarget;
use crate::metrics::Metrics;
use crate::pull::retrieve::Finished;
use crate::pull::RetrieveError;

/// How often the scheduler looks again when nothing wakes it.
const TICK: Duration = Duration::from_secs(1);

/// What a finished background task reports.
enum Report {
    Resolved(i64, Result<Vec<Found>, ResolveError>),
    Study(StudyReport),
}

struct StudyReport {
    ready: Ready,
    finished: Finished,
    arrived: i64,
    bytes: i64,
    started: Instant,
}

/// Per-upstream policy and state.
struct Lane {
    window: Option<DailyWindow>,
    window_text: String,
    rate: Option<u64>,
    limit: usize,
    running: usize,
    paced_until: Instant,
}

struct Scheduler {
    jobs: Arc<Jobs>,
    lanes: HashMap<String, Lane>,
    resolving: HashSet<i64>,
    /// Failed resolutions: job → (attempts, not before).
    resolve_retry: HashMap<i64, (u32, i64)>,
    late_noted: HashSet<i64>,
    tasks: JoinSet<Report>,
}

/// Run until `shutdown` turns true; unfinished retrieves resume at the next start.
pub async fn run(jobs: Arc<Jobs>, mut shutdown: watch::Receiver<bool>) {
    let index = Arc::clone(jobs.store.index());
    match blocking(move || db::requeue_running(&index)).await {
        Ok(n) if n > 0 => tracing::info!(studies = n, "prefetch resumed after a restart"),
        Ok(_) => {}
        Err(e) => tracing::error!(error = %e, "cannot requeue prefetch studies"),
    }
    let mut s = Scheduler::new(jobs);
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = s.jobs.wake.notified() => {}
            Some(done) = s.tasks.join_next(), if !s.tasks.is_empty() => {
                if let Ok(report) = done {
                    s.handle(report).await;
                }
            }
            _ = tokio::time::sleep(TICK) => {}
        }
        if *shutdown.borrow() {
            break;
        }
        if let Err(e) = s.tick().await {
            tracing::error!(error = %e, "prefetch scheduling failed");
        }
    }
    s.tasks.abort_all();
}

impl Scheduler {
    fn new(jobs: Arc<Jobs>) -> Self {
        let lanes = jobs
            .config
            .upstreams
            .iter()
            .map(|u| {
                let lane = Lane {
                    window: u.window.as_deref().and_then(|w| DailyWindow::parse(w).ok()),
                    window_text: u.window.clone().unwrap_or_default(),
                    rate: u.bandwidth.as_deref().and_then(|b| parse_bandwidth(b).ok()),
                    limit: jobs.config.jobs.per_upstream.min(u.max_associations).max(1),
                    running: 0,
                    paced_until: Instant::now(),
                };
                (u.name.clone(), lane)
            })
            .collect();
        Scheduler {
            jobs,
            lanes,
            resolving: HashSet::new(),
            resolve_retry: HashMap::new(),
            late_noted: HashSet::new(),
            tasks: JoinSet::new(),
        }
    }

    async fn tick(&mut self) -> Result<(), JobError> {
        let now = crate::clock::now();
        let index = Arc::clone(self.jobs.store.index());
        let resolving = blocking(move || db::jobs(&index, Some(JobState::Resolving), 1000)).await?;
        for job in resolving {
            self.maybe_resolve(job, now);
        }
        let mut notes: HashMap<i64, Vec<String>> = HashMap::new();
        let index = Arc::clone(self.jobs.store.index());
        let ready = blocking(move || db::ready(&index, now, 500)).await?;
        for r in ready {
            match self.gate(&r, now) {
                Ok(()) => self.start(r).await?,
                Err(note) => {
                    let list = notes.entry(r.job_id).or_default();
                    if !list.contains(&note) {
                        list.push(note);
                    }
                }
            }
        }
        self.finish_jobs(now).await?;
        self.note_jobs(now, notes).await
    }

    fn maybe_resolve(&mut self, job: db::JobRow, now: i64) {
        if self.resolving.contains(&job.id)
            || self
                .resolve_retry
                .get(&job.id)
                .is_some_and(|(_, t)| *t > now)
        {
            return;
        }
        let Ok(spec) = serde_json::from_str::<JobSpec>(&job.spec_json) else {
            tracing::error!(job = job.id, "unreadable job specification");
            return;
        };
        self.resolving.insert(job.id);
        let jobs = Arc::clone(&self.jobs);
        self.tasks.spawn(async move {
            let names = spec.upstream_names(&jobs.config);
            let ups: Vec<_> = names
                .iter()
                .filter_map(|n| jobs.pull.upstream(n).map(Arc::as_ref))
                .collect();
            let found = resolve::resolve(&spec, &ups).await;
            Report::Resolved(job.id, found)
        });
    }

    /// May `r` start now? Err says why not (for the job's message).
    fn gate(&self, r: &Ready, now: i64) -> Result<(), String> {
        let Some(lane) = self.lanes.get(&r.upstream) else {
            return Err(format!("upstream {:?} is no longer configured", r.upstream));
        };
        if let Some(w) = lane.window {
            let minute = crate::clock::minute_of_day(now, self.jobs.config.jobs.utc_offset);
            let wait = w.minutes_until_open(minute);
            if wait > 0 {
                let opens = now - now % 60 + wait as i64 * 60;
                let at = crate::clock::format_datetime(opens, self.jobs.config.jobs.utc_offset);
                let mut note = format!(
                    "waiting for {}'s window {} (opens {at})",
                    r.upstream, lane.window_text
                );
                if r.due.is_some_and(|due| opens > due) {
                    note.push_str("; it cannot finish by its due time");
                }
                return Err(note);
            }
        }
        if lane.running >= lane.limit {
            return Err(format!("waiting for a free slot at {}", r.upstream));
        }
        if lane.paced_until > Instant::now() {
            return Err(format!("paced by {}'s bandwidth cap", r.upstream));
        }
        Ok(())
    }

    async fn start(&mut self, r: Ready) -> Result<(), JobError> {
        let index = Arc::clone(self.jobs.store.index());
        let (id, study) = (r.job_id, r.study_uid.clone());
        let started =
            blocking(move || db::set_study_state(&index, id, &study, StudyState::Running)).await?;
        if !started {
            return Ok(()); // its job was cancelled meanwhile
        }
        if let Some(lane) = self.lanes.get_mut(&r.upstream) {
            lane.running += 1;
        }
        self.jobs.pull.note_location(&r.study_uid, &r.upstream);
        tracing::info!(job = r.job_id, study = %r.study_uid, upstream = %r.upstream, attempt = r.attempts + 1, "prefetch study started");
        let jobs = Arc::clone(&self.jobs);
        self.tasks
            .spawn(async move { Report::Study(retrieve_study(jobs, r).await) });
        Ok(())
    }

    async fn handle(&mut self, report: Report) {
        let result = match report {
            Report::Resolved(id, found) => self.resolved(id, found).await,
            Report::Study(s) => self.study_done(s).await,
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "recording a prefetch result failed");
        }
    }

    async fn resolved(
        &mut self,
        id: i64,
        found: Result<Vec<Found>, ResolveError>,
    ) -> Result<(), JobError> {
        self.resolving.remove(&id);
        let now = crate::clock::now();
        let found = match found {
            Ok(f) => f,
            Err(e) => return self.resolve_failed(id, e, now).await,
        };
        self.resolve_retry.remove(&id);
        let index = Arc::clone(self.jobs.store.index());
        let Some(job) = blocking(move || db::job(&index, id)).await? else {
            return Ok(());
        };
        let until = job
            .due
            .map(|d| d + self.jobs.config.store.pin_retention.as_secs() as i64);
        let studies = found.len();
        let index = Arc::clone(self.jobs.store.index());
        if blocking(move || db::add_studies(&index, id, &found, until, now)).await? {
            tracing::info!(job = id, studies, "prefetch job resolved");
        }
        Ok(())
    }

    async fn resolve_failed(&mut self, id: i64, e: ResolveError, now: i64) -> Result<(), JobError> {
        let attempts = self.resolve_retry.get(&id).map_or(0, |(n, _)| *n) + 1;
        let cfg = &self.jobs.config.jobs;
        let index = Arc::clone(self.jobs.store.index());
        tracing::warn!(job = id, attempt = attempts, error = %e, "prefetch job search failed");
        if attempts >= cfg.attempts {
            self.resolve_retry.remove(&id);
            let msg = format!("the search failed {attempts} times: {e}");
            blocking(move || db::set_job_state(&index, id, JobState::Failed, &msg, now)).await?;
            return Ok(());
        }
        let next = now + backoff(cfg, attempts).as_secs() as i64;
        self.resolve_retry.insert(id, (attempts, next));
        let msg = format!("search failed (attempt {attempts}), retrying: {e}");
        blocking(move || db::set_job_message(&index, id, &msg)).await?;
        Ok(())
    }

    async fn study_done(&mut self, s: StudyReport) -> Result<(), JobError> {
        let r = &s.ready;
        if let Some(lane) = self.lanes.get_mut(&r.upstream) {
            lane.running = lane.running.saturating_sub(1);
            if let Some(rate) = lane.rate {
                let spend = Duration::from_secs_f64(s.bytes.max(0) as f64 / rate as f64);
                lane.paced_until = lane.paced_until.max(s.started + spend);
            }
        }
        let cfg = &self.jobs.config.jobs;
        let attempts = r.attempts + 1;
        let m = &self.jobs.metrics;
        let attempt = match &s.finished {
            Finished::Complete => {
                Metrics::inc(&m.prefetch_studies_done_total);
                Metrics::add(&m.prefetch_instances_total, s.arrived.max(0) as u64);
                Metrics::add(&m.prefetch_bytes_total, s.bytes.max(0) as u64);
                tracing::info!(job = r.job_id, study = %r.study_uid, instances = s.arrived, bytes = s.bytes, "prefetch study done");
                self.prepare(&r.study_uid);
                attempt_of(StudyState::Done, &s, attempts, 0, String::new())
            }
            other => {
                let error = match other {
                    Finished::Partial(m) => m.clone(),
                    Finished::Failed(e) => e.to_string(),
                    Finished::Complete => String::new(),
                };
                let hopeless = matches!(other, Finished::Failed(RetrieveError::NotFound(_)));
                tracing::warn!(job = r.job_id, study = %r.study_uid, attempt = attempts, error = %error, "prefetch study attempt failed");
                if hopeless || attempts >= cfg.attempts {
                    Metrics::inc(&m.prefetch_studies_failed_total);
                    attempt_of(StudyState::Failed, &s, attempts, 0, error)
                } else {
                    Metrics::inc(&m.prefetch_retries_total);
                    let next = crate::clock::now() + backoff(cfg, attempts).as_secs() as i64;
                    attempt_of(StudyState::Queued, &s, attempts, next, error)
                }
            }
        };
        let index = Arc::clone(self.jobs.store.index());
        let (id, study) = (r.job_id, r.study_uid.clone());
        blocking(move || db::study_attempted(&index, id, &study, &attempt)).await?;
        self.jobs.wake.notify_one();
        Ok(())
    }

    fn prepare(&self, study: &str) {
        if !self.jobs.config.jobs.prepare {
            return;
        }
        if let Some(p) = self.jobs.preparer() {
            tokio::spawn(p(study.to_string()));
        }
    }

    /// Jobs whose studies have all ended become done (or failed, when every study failed).
    async fn finish_jobs(&mut self, now: i64) -> Result<(), JobError> {
        let index = Arc::clone(self.jobs.store.index());
        let finished = blocking(move || db::finished_jobs(&index)).await?;
        let retention = self.jobs.config.store.pin_retention.as_secs() as i64;
        for (id, failed, total) in finished {
            let (state, msg) = match (failed, total) {
                (_, 0) => (JobState::Done, "no study matched".to_string()),
                (f, t) if f == t => (JobState::Failed, format!("all {t} studies failed")),
                (0, _) => (JobState::Done, String::new()),
                (f, t) => (JobState::Done, format!("{f} of {t} studies failed")),
            };
            let index = Arc::clone(self.jobs.store.index());
            let job = blocking(move || db::job(&index, id)).await?;
            if job.as_ref().is_some_and(|j| j.due.is_none()) {
                self.jobs
                    .store
                    .repin_holder(&holder(id), Some(now + retention))
                    .await?;
            }
            let index = Arc::clone(self.jobs.store.index());
            let m = msg.clone();
            blocking(move || db::set_job_state(&index, id, state, &m, now)).await?;
            tracing::info!(
                job = id,
                state = state.as_str(),
                studies = total,
                failed,
                "prefetch job finished"
            );
        }
        Ok(())
    }

    /// Say why active jobs wait, and which ones are late.
    async fn note_jobs(
        &mut self,
        now: i64,
        mut notes: HashMap<i64, Vec<String>>,
    ) -> Result<(), JobError> {
        let index = Arc::clone(self.jobs.store.index());
        let active = blocking(move || db::jobs(&index, Some(JobState::Queued), 1000)).await?;
        let mut messages = Vec::with_capacity(active.len());
        for job in active {
            let mut list = notes.remove(&job.id).unwrap_or_default();
            if job.due.is_some_and(|due| now > due) {
                list.insert(0, "late: not finished by its due time".into());
                if self.late_noted.insert(job.id) {
                    Metrics::inc(&self.jobs.metrics.jobs_late_total);
                    tracing::warn!(job = job.id, "prefetch job missed its due time");
                }
            }
            messages.push((job.id, list.join("; ")));
        }
        let index = Arc::clone(self.jobs.store.index());
        blocking(move || db::set_job_messages(&index, &messages)).await?;
        Ok(())
    }
}

fn attempt_of(
    state: StudyState,
    s: &StudyReport,
    attempts: u32,
    next: i64,
    error: String,
) -> Attempt {
    Attempt {
        state,
        instances_done: s.arrived,
        bytes_done: s.bytes,
        attempts,
        next_try_at: next,
        error,
    }
}

fn backoff(cfg: &crate::config::JobsConfig, attempts: u32) -> Duration {
    let factor = 1u32 << attempts.saturating_sub(1).min(16);
    cfg.backoff.saturating_mul(factor).min(cfg.max_backoff)
}

/// Retrieve one study through the pull-through single flight, writing live counts to the
/// job every second; then measure what the cache holds of it.
async fn retrieve_study(jobs: Arc<Jobs>, ready: Ready) -> StudyReport {
    let started = Instant::now();
    let target = RetrieveTarget {
        study: ready.study_uid.clone(),
        series: None,
        instance: None,
    };
    let mut rx = jobs.pull.prefetch(target);
    let mut written = Instant::now();
    let (finished, arrived) = loop {
        let (arrived, total, done) = {
            let p = rx.borrow_and_update();
            let c = p.counts;
            let total =
                c.remaining as i64 + c.completed as i64 + c.failed as i64 + c.warning as i64;
            (
                p.arrived.len() as i64,
                (total > 0).then_some(total),
                p.done.clone(),
            )
        };
        if let Some(done) = done {
            break (done, arrived);
        }
        if written.elapsed() >= Duration::from_secs(1) {
            written = Instant::now();
            let index = Arc::clone(jobs.store.index());
            let (id, study) = (ready.job_id, ready.study_uid.clone());
            let _ = blocking(move || db::study_progress(&index, id, &study, arrived, total)).await;
        }
        let tick = tokio::time::timeout(Duration::from_secs(1), rx.changed()).await;
        if matches!(tick, Ok(Err(_))) {
            let e = RetrieveError::Upstream("the retrieve stopped unexpectedly".into());
            break (Finished::Failed(e), arrived);
        }
    };
    let index = Arc::clone(jobs.store.index());
    let study = ready.study_uid.clone();
    let bytes = blocking(move || {
        index.read(|c| {
            c.query_row(
                "SELECT coalesce(sum(file_size), 0) FROM instance WHERE study_uid = ?1",
                [study],
                |r| r.get(0),
            )
        })
    })
    .await
    .unwrap_or(0);
    StudyReport {
        ready,
        finished,
        arrived,
        bytes,
        started,
    }
}
