//! The audit trail: one JSON line per access, append-only, in the vocabulary of DICOM audit
//! messages (PS3.15 A.5): `EventID` (DCM 110112 Query, 110103 DICOM Instances Accessed,
//! 110100 Application Activity, ...), `EventActionCode`, `EventOutcomeIndicator` (0 success,
//! 4 minor failure, 8 serious failure, 12 major failure), the `ActiveParticipant` (user id and
//! network address) and the `ParticipantObject` (study UID). Requests hand records to a single
//! writer task through a bounded channel and never wait for it: when the queue is full the
//! record is dropped and counted (`audit_dropped_total`). With `[audit.syslog]` the writer
//! also hands each record to the `syslog` sink (RFC 5424 over TCP or TLS).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::metrics::Metrics;

pub mod syslog;

/// `[audit]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Write the audit trail.
    pub enabled: bool,
    /// The JSON-lines file; unset: `audit.jsonl` in `store.path`.
    pub path: Option<PathBuf>,
    /// Records waiting for the writer at most; more are dropped and counted.
    pub queue: usize,
    /// Also send every record to a syslog collector.
    pub syslog: Option<syslog::SyslogConfig>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            path: None,
            queue: 4096,
            syslog: None,
        }
    }
}

/// DICOM audit event ids (PS3.16 CID 400) we emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// DCM 110112: a search.
    Query,
    /// DCM 110103: instances (or their metadata, frames, renderings) read.
    InstancesAccessed,
    /// DCM 110107: instances received (C-STORE).
    Import,
    /// DCM 110100: the admin API (prefetch jobs, cache management, metrics).
    ApplicationActivity,
    /// DCM 110113: a refused node (e.g. an association from an unknown calling AE title).
    SecurityAlert,
}

impl Event {
    fn code(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Event::Query => ("110112", "Query", "E"),
            Event::InstancesAccessed => ("110103", "DICOM Instances Accessed", "R"),
            Event::Import => ("110107", "Import", "C"),
            Event::ApplicationActivity => ("110100", "Application Activity", "E"),
            Event::SecurityAlert => ("110113", "Security Alert", "E"),
        }
    }
}

/// A coded value, as in PS3.15 A.5 (`csd-code`, `codeSystemName`, `originalText`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Code {
    #[serde(rename = "csd-code")]
    pub code: String,
    #[serde(rename = "codeSystemName")]
    pub system: String,
    #[serde(rename = "originalText")]
    pub text: String,
}

/// One audit record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Record {
    pub event_date_time: String,
    #[serde(rename = "EventID")]
    pub event_id: Code,
    /// Refines the event, e.g. DCM 110126 Node Authentication for a Security Alert.
    #[serde(
        rename = "EventTypeCode",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub event_type_code: Option<Code>,
    pub event_action_code: String,
    /// 0, 4, 8 or 12.
    pub event_outcome_indicator: u8,
    pub event_outcome_description: String,
    pub active_participant: Participant,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub participant_object: Vec<ParticipantObject>,
    /// What was asked: method and path (no query string: it may name patients).
    pub request: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Participant {
    #[serde(rename = "UserID")]
    pub user_id: String,
    pub user_is_requestor: bool,
    #[serde(rename = "NetworkAccessPointID")]
    pub network_access_point_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct ParticipantObject {
    /// "2" (system object); role "3" (report) for a study.
    pub participant_object_type_code: u8,
    #[serde(rename = "ParticipantObjectIDTypeCode")]
    pub id_type: Code,
    #[serde(rename = "ParticipantObjectID")]
    pub id: String,
}

impl Record {
    pub fn new(event: Event, outcome: u8, description: String, user: &str, from: &str) -> Record {
        let (code, text, action) = event.code();
        Record {
            event_date_time: crate::clock::format_datetime(crate::clock::now(), 0),
            event_id: Code {
                code: code.into(),
                system: "DCM".into(),
                text: text.into(),
            },
            event_type_code: None,
            event_action_code: action.into(),
            event_outcome_indicator: outcome,
            event_outcome_description: description,
            active_participant: Participant {
                user_id: user.into(),
                user_is_requestor: true,
                network_access_point_id: from.into(),
            },
            participant_object: Vec::new(),
            request: String::new(),
        }
    }

    /// Refine the event with a DCM event type code.
    pub fn event_type(mut self, code: &str, text: &str) -> Record {
        self.event_type_code = Some(Code {
            code: code.into(),
            system: "DCM".into(),
            text: text.into(),
        });
        self
    }

    /// Say what was asked (method and path, or the DIMSE service).
    pub fn request(mut self, request: &str) -> Record {
        self.request = request.into();
        self
    }

    /// Name the study concerned (DCM 110180 Study Instance UID).
    pub fn study(mut self, uid: &str) -> Record {
        self.participant_object.push(ParticipantObject {
            participant_object_type_code: 2,
            id_type: Code {
                code: "110180".into(),
                system: "DCM".into(),
                text: "Study Instance UID".into(),
            },
            id: uid.into(),
        });
        self
    }
}

/// The outcome indicator of an HTTP status.
pub fn outcome_of_status(status: u16) -> u8 {
    match status {
        200..=399 => 0,
        400..=499 => 4,
        500..=502 | 504.. => 8,
        _ => 12,
    }
}

/// The sending side, cloned into every request.
#[derive(Clone)]
pub struct Auditor {
    tx: Option<mpsc::Sender<Record>>,
    metrics: Arc<Metrics>,
}

impl Auditor {
    /// An auditor that records nothing (`audit.enabled = false`).
    pub fn off(metrics: Arc<Metrics>) -> Auditor {
        Auditor { tx: None, metrics }
    }

    /// Start the writer on `path` (detached; it flushes after every batch and ends when every
    /// `Auditor` is dropped).
    pub async fn start(
        path: &Path,
        queue: usize,
        syslog: Option<syslog::SyslogSink>,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Auditor> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir).await?;
        }
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await?;
        let (tx, rx) = mpsc::channel(queue.max(1));
        tokio::spawn(write_all(file, rx, syslog));
        Ok(Auditor {
            tx: Some(tx),
            metrics,
        })
    }

    /// Queue a record; never waits.
    pub fn record(&self, record: Record) {
        let Some(tx) = &self.tx else { return };
        if tx.try_send(record).is_err() {
            Metrics::inc(&self.metrics.audit_dropped_total);
        } else {
            Metrics::inc(&self.metrics.audit_records_total);
        }
    }
}

async fn write_all(
    file: tokio::fs::File,
    mut rx: mpsc::Receiver<Record>,
    syslog: Option<syslog::SyslogSink>,
) {
    let mut out = tokio::io::BufWriter::new(file);
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        // Write what is queued, then flush once.
        while let Some(record) = next {
            match serde_json::to_vec(&record) {
                Ok(mut line) => {
                    if let Some(sink) = &syslog {
                        sink.send(syslog::Message {
                            event_code: record.event_id.code.clone(),
                            failed: record.event_outcome_indicator != 0,
                            json: line.clone(),
                        });
                    }
                    line.push(b'\n');
                    if let Err(e) = out.write_all(&line).await {
                        tracing::error!(error = %e, "cannot write the audit trail");
                    }
                }
                Err(e) => tracing::error!(error = %e, "cannot encode an audit record"),
            }
            next = rx.try_recv().ok();
        }
        if let Err(e) = out.flush().await {
            tracing::error!(error = %e, "cannot write the audit trail");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_and_shape() {
        assert_eq!(outcome_of_status(200), 0);
        assert_eq!(outcome_of_status(404), 4);
        assert_eq!(outcome_of_status(502), 8);
        assert_eq!(outcome_of_status(503), 12);
        let r = Record::new(Event::Query, 0, "ok".into(), "dr", "10.0.0.1").study("1.2.3");
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["EventID"]["csd-code"], "110112");
        assert_eq!(v["ActiveParticipant"]["UserID"], "dr");
        assert_eq!(v["ParticipantObject"][0]["ParticipantObjectID"], "1.2.3");
    }
}
