//! Retrieval on a cache miss: find the PACS that holds the data, C-MOVE (to our own SCP) or
//! C-GET it at the narrowest level that serves the request, and publish every instance the
//! moment it is durable. One retrieve per key: a request covered by a running retrieve
//! (same study, or the study/series around it) joins it instead of moving anything again.
//! Transient failures are retried with backoff; the outcome says exactly what is missing.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use tokio::sync::{broadcast, watch};

use super::Pull;
use crate::config::RetrieveMethod;
use crate::dimse::audit::ImportTally;
use crate::dimse::find_scu::{self, Key, QueryLevel};
use crate::dimse::retrieve_scu::{self, RetrieveOutcome, RetrieveTarget, SubOps};
use crate::dimse::scp::StoreEvent;
use crate::dimse::scu::{ScuError, Upstream, Urgency};
use crate::store::StudyLease;

/// Why a retrieve produced nothing usable.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RetrieveError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Upstream(String),
    #[error("{0}")]
    Timeout(String),
}

/// How a retrieve ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finished {
    /// Every sub-operation succeeded.
    Complete,
    /// Some instances arrived, some did not; the message says what is missing and why.
    Partial(String),
    Failed(RetrieveError),
}

/// What a retrieve has done so far; watchers are woken on every change.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// SOP Instance UIDs durable in the cache, in arrival order.
    pub arrived: Vec<String>,
    pub counts: SubOps,
    pub upstream: Option<String>,
    pub done: Option<Finished>,
}

/// A running retrieve.
pub struct Retrieval {
    pub target: RetrieveTarget,
    state: watch::Sender<Progress>,
    /// Background (prefetch) until a viewer joins.
    urgency: Urgency,
    /// Keeps the study from eviction while instances land.
    _lease: StudyLease,
}

/// Does a running retrieve of `running` bring everything `wanted` needs?
fn covers(running: &RetrieveTarget, wanted: &RetrieveTarget) -> bool {
    running.study == wanted.study
        && (running.series.is_none() || running.series == wanted.series)
        && (running.instance.is_none() || running.instance == wanted.instance)
}

impl Pull {
    /// Start the retrieve of `target` for a viewer, or join a running one that covers it
    /// (a prefetch it joins becomes interactive).
    pub fn retrieve(self: &Arc<Self>, target: RetrieveTarget) -> watch::Receiver<Progress> {
        self.retrieve_as(target, Urgency::Interactive)
    }

    /// Start or join the retrieve of `target` for background work (prefetch): it takes an
    /// association only while no viewer waits for one, and sends DIMSE priority LOW.
    pub fn prefetch(self: &Arc<Self>, target: RetrieveTarget) -> watch::Receiver<Progress> {
        self.retrieve_as(target, Urgency::background())
    }

    fn retrieve_as(
        self: &Arc<Self>,
        target: RetrieveTarget,
        urgency: Urgency,
    ) -> watch::Receiver<Progress> {
        let mut running = match self.running.lock() {
            Ok(r) => r,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(r) = running.values().find(|r| covers(&r.target, &target)) {
            if urgency.is_interactive() {
                r.urgency.promote();
            }
            return r.state.subscribe();
        }
        let (state, rx) = watch::channel(Progress::default());
        let retrieval = Arc::new(Retrieval {
            target: target.clone(),
            state,
            _lease: self.store.lease(&target.study),
            urgency,
        });
        running.insert(target, Arc::clone(&retrieval));
        drop(running);
        // subscribe before any C-MOVE is sent, so no instance can be missed
        let events = self.events.subscribe();
        let me = Arc::clone(self);
        tokio::spawn(async move { me.run(retrieval, events).await });
        rx
    }

    /// Is a retrieve running that brings (part of) `target`?
    pub fn is_retrieving(&self, target: &RetrieveTarget) -> bool {
        self.running
            .lock()
            .map(|r| r.keys().any(|t| covers(t, target) || covers(target, t)))
            .unwrap_or(false)
    }

    async fn run(self: Arc<Self>, r: Arc<Retrieval>, mut events: broadcast::Receiver<StoreEvent>) {
        let t = &r.target;
        let span = tracing::info_span!("retrieve", study = %t.study, level = t.level().code());
        let _enter = span.enter();
        let fetch = self.fetch(&r);
        tokio::pin!(fetch);
        let result = loop {
            tokio::select! {
                result = &mut fetch => break result,
                event = events.recv() => match event {
                    Ok(e) => note_arrival(&r, &e),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "store events lagged");
                    }
                    Err(broadcast::error::RecvError::Closed) => {}
                },
            }
        };
        // instances stored before the final response are already in the channel
        while let Ok(e) = events.try_recv() {
            note_arrival(&r, &e);
        }
        let finished = self.verdict(&r, result);
        match &finished {
            Finished::Complete => tracing::info!(
                instances = r.state.borrow().arrived.len(),
                "retrieve complete"
            ),
            other => tracing::warn!(outcome = ?other, "retrieve incomplete"),
        }
        self.record(&r, &finished).await;
        r.state.send_modify(|p| p.done = Some(finished));
        if let Ok(mut running) = self.running.lock() {
            running.remove(&r.target);
        }
    }

    /// Persist the outcome, so partial data is retrieved again when next asked for.
    async fn record(&self, r: &Retrieval, finished: &Finished) {
        let t = &r.target;
        let target = [
            Some(t.study.as_str()),
            t.series.as_deref(),
            t.instance.as_deref(),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("/");
        let p = r.state.borrow().clone();
        let record = crate::store::RetrievalRecord {
            target,
            study_uid: t.study.clone(),
            upstream: p.upstream.unwrap_or_default(),
            complete: *finished == Finished::Complete,
            arrived: p.arrived.len() as i64,
            message: match finished {
                Finished::Complete => String::new(),
                Finished::Partial(m) => m.clone(),
                Finished::Failed(e) => e.to_string(),
            },
            finished_at: crate::clock::now(),
        };
        let index = Arc::clone(self.store.index());
        let saved = tokio::task::spawn_blocking(move || index.record_retrieval(&record)).await;
        if !matches!(saved, Ok(Ok(()))) {
            tracing::warn!("could not record the retrieve outcome");
        }
    }

    fn verdict(
        &self,
        r: &Retrieval,
        result: Result<(String, RetrieveOutcome), RetrieveError>,
    ) -> Finished {
        let arrived = r.state.borrow().arrived.len();
        match result {
            Err(e) => {
                if arrived > 0 {
                    Finished::Partial(format!("{e}; {arrived} instance(s) arrived before that"))
                } else {
                    Finished::Failed(e)
                }
            }
            Ok((up, o)) if o.is_complete() && arrived == 0 && o.counts.completed == 0 => {
                Finished::Failed(RetrieveError::NotFound(format!("{up} has no matching instances")))
            }
            Ok(_) if arrived == 0 => Finished::Failed(RetrieveError::Upstream(
                "the PACS reported success but no instance arrived (is our AE title known to it as a move destination?)".into(),
            )),
            Ok((_, o)) if o.is_complete() => Finished::Complete,
            Ok((up, o)) => Finished::Partial(format!(
                "{up} answered {} with {} failed sub-operation(s){}",
                o.status,
                o.counts.failed,
                o.error_comment.map(|c| format!(": {c}")).unwrap_or_default()
            )),
        }
    }

    /// Locate, then retrieve from the first PACS that can serve it, retrying transient
    /// failures with backoff.
    async fn fetch(&self, r: &Retrieval) -> Result<(String, RetrieveOutcome), RetrieveError> {
        let candidates = self.locate(&r.target).await?;
        let mut last = RetrieveError::NotFound("no PACS holds it".into());
        for up in candidates {
            r.state
                .send_modify(|p| p.upstream = Some(up.name().to_string()));
            for attempt in 0..=self.config.retries {
                match self.fetch_from(&up, r).await {
                    Ok(outcome) => return Ok((up.name().to_string(), outcome)),
                    Err(e) => {
                        tracing::warn!(upstream = up.name(), attempt, error = %e, "retrieve attempt failed");
                        let transient = e.is_transient();
                        last = match e {
                            ScuError::Timeout { .. } => RetrieveError::Timeout(e.to_string()),
                            _ => RetrieveError::Upstream(e.to_string()),
                        };
                        if !transient || attempt == self.config.retries {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(250 << attempt)).await;
                    }
                }
            }
        }
        Err(last)
    }

    async fn fetch_from(&self, up: &Upstream, r: &Retrieval) -> Result<RetrieveOutcome, ScuError> {
        let progress = |c: SubOps| r.state.send_modify(|p| p.counts = c);
        match up.config.retrieve {
            RetrieveMethod::CMove => {
                let arrived = || r.state.borrow().arrived.len();
                retrieve_scu::c_move(up, &r.target, &r.urgency, arrived, progress).await
            }
            RetrieveMethod::CGet => {
                let events = self.events.clone();
                let calling = up.config.ae_title.clone();
                let tally = std::sync::Mutex::new(ImportTally::default());
                let on_stored = |instance: &crate::store::StoredInstance| {
                    if let Ok(mut t) = tally.lock() {
                        t.stored(instance.study_uid.as_str());
                    }
                    let _ = events.send(StoreEvent {
                        instance: instance.clone(),
                        calling_ae: calling.clone(),
                        move_originator_ae: None,
                        move_originator_message_id: None,
                    });
                };
                let outcome = retrieve_scu::c_get(
                    up,
                    &self.store,
                    &r.target,
                    &r.urgency,
                    on_stored,
                    progress,
                )
                .await;
                let imported = tally.into_inner().ok().and_then(|mut t| {
                    // sub-operations that failed, ours (refused C-STOREs) or the PACS's
                    if let Ok(o) = &outcome {
                        t.failed(u64::from(o.counts.failed));
                    }
                    t.record_via(&up.config.ae_title, &up.config.address, "C-GET")
                });
                if let Some(record) = imported {
                    self.auditor.record(record);
                }
                outcome
            }
        }
    }

    /// The upstreams that hold the target's study: remembered from searches, else asked.
    async fn locate(&self, target: &RetrieveTarget) -> Result<Vec<Arc<Upstream>>, RetrieveError> {
        let known: Vec<Arc<Upstream>> = self
            .known_locations(&target.study)
            .iter()
            .filter_map(|n| self.upstream(n).cloned())
            .collect();
        if !known.is_empty() {
            return Ok(known);
        }
        let keys = vec![Key::new(
            dicom_dictionary_std::tags::STUDY_INSTANCE_UID,
            dicom_core::VR::UI,
            &target.study,
        )];
        let asks = self.upstreams.iter().map(|up| {
            let keys = keys.clone();
            async move {
                let r = tokio::time::timeout(
                    up.timeout(),
                    find_scu::find(up, QueryLevel::Study, &keys, 1),
                )
                .await;
                let answer = match r {
                    Ok(Ok((rows, _))) => Ok(!rows.is_empty()),
                    Ok(Err(e)) => {
                        tracing::warn!(upstream = up.name(), error = %e, "locating the study failed");
                        Err(e.to_string())
                    }
                    Err(_) => Err(format!(
                        "{} did not answer within {:?}",
                        up.name(),
                        up.timeout()
                    )),
                };
                (up, answer)
            }
        });
        let mut found = Vec::new();
        let mut unreachable = Vec::new();
        for (up, answer) in join_all(asks).await {
            match answer {
                Ok(true) => found.push(Arc::clone(up)),
                Ok(false) => {}
                Err(e) => unreachable.push(e),
            }
        }
        for up in &found {
            self.note_location(&target.study, up.name());
        }
        if found.is_empty() {
            let msg = format!(
                "study {} is neither in the cache nor at any reachable PACS",
                target.study
            );
            return Err(if unreachable.is_empty() {
                RetrieveError::NotFound(msg)
            } else {
                RetrieveError::Upstream(format!("{msg} ({})", unreachable.join("; ")))
            });
        }
        Ok(found)
    }
}

fn note_arrival(r: &Retrieval, e: &StoreEvent) {
    let i = &e.instance;
    if r.target.covers(
        i.study_uid.as_str(),
        i.series_uid.as_str(),
        i.sop_instance_uid.as_str(),
    ) {
        r.state.send_modify(|p| {
            let sop = i.sop_instance_uid.to_string();
            if !p.arrived.contains(&sop) {
                p.arrived.push(sop);
            }
        });
    }
}

/// Wait until `sop` has arrived (Ok) or the retrieve ended without it (Err), at most `wait`.
pub async fn wait_for_instance(
    mut rx: watch::Receiver<Progress>,
    sop: &str,
    wait: Duration,
) -> Result<(), RetrieveError> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        {
            let p = rx.borrow_and_update();
            if p.arrived.iter().any(|s| s == sop) {
                return Ok(());
            }
            match &p.done {
                Some(Finished::Failed(e)) => return Err(e.clone()),
                Some(Finished::Partial(m)) => {
                    return Err(RetrieveError::Upstream(format!(
                        "instance {sop} did not arrive: {m}"
                    )))
                }
                Some(Finished::Complete) => {
                    return Err(RetrieveError::NotFound(format!(
                        "instance {sop} is not at the PACS"
                    )))
                }
                None => {}
            }
        }
        wait_change(&mut rx, deadline).await?;
    }
}

/// Wait until the retrieve has ended, at most `wait`.
pub async fn wait_until_done(
    mut rx: watch::Receiver<Progress>,
    wait: Duration,
) -> Result<Progress, RetrieveError> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        {
            let p = rx.borrow_and_update();
            if p.done.is_some() {
                return Ok(p.clone());
            }
        }
        wait_change(&mut rx, deadline).await?;
    }
}

async fn wait_change(
    rx: &mut watch::Receiver<Progress>,
    deadline: tokio::time::Instant,
) -> Result<(), RetrieveError> {
    match tokio::time::timeout_at(deadline, rx.changed()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(RetrieveError::Upstream(
            "the retrieve stopped unexpectedly".into(),
        )),
        Err(_) => Err(RetrieveError::Timeout(
            "the PACS did not deliver in time; the retrieve goes on in the background".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(study: &str, series: Option<&str>, instance: Option<&str>) -> RetrieveTarget {
        RetrieveTarget {
            study: study.into(),
            series: series.map(Into::into),
            instance: instance.map(Into::into),
        }
    }

    #[test]
    fn wider_retrieves_cover_narrower_requests() {
        assert!(covers(&t("1", None, None), &t("1", Some("2"), Some("3"))));
        assert!(covers(
            &t("1", Some("2"), None),
            &t("1", Some("2"), Some("3"))
        ));
        assert!(!covers(&t("1", Some("2"), None), &t("1", Some("4"), None)));
        assert!(!covers(&t("1", Some("2"), None), &t("1", None, None)));
    }
}
