//! The job model: what an administrator asks for ([`JobSpec`], validated into a [`NewJob`]),
//! the states a job and each of its studies go through, and the views the admin API answers
//! with ([`JobView`], [`StudyView`], [`JobProgress`]).

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::types::Uid;

/// A prefetch request as the admin API accepts it (JSON). At least one of `patient_id`,
/// `accession_number` or `study_uids` is required; the rest narrow the search.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient_id: Option<String>,
    /// Issuer of Patient ID (0010,0021), sent along with the patient ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accession_number: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub study_uids: Vec<String>,
    /// Only studies with one of these modalities (ModalitiesInStudy).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modalities: Vec<String>,
    /// Study Date range, inclusive: `YYYYMMDD` or `YYYY-MM-DD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_to: Option<String>,
    /// Only the most recent N matching studies (by Study Date and Time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<u32>,
    /// Upstream names to search; all when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstreams: Vec<String>,
    /// When the patient will be seen: `2026-12-01T09:00` (in `jobs.utc_offset` unless it
    /// carries an offset). Work is ordered by it, and pins last until it plus retention.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due: Option<String>,
    /// Higher runs first among jobs with the same due time.
    #[serde(default)]
    pub priority: i32,
    /// The `[[facility]]` the patient is referred to: the job also refers the patient to it
    /// (`auth::referral`) until its due time plus the facility's `referral_validity`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referred_to: Option<String>,
}

/// A validated job, ready to be stored.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub spec: JobSpec,
    pub due: Option<i64>,
}

/// Why a job request was refused (answered 400 with the message).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct InvalidJob(pub String);

impl JobSpec {
    /// Check the request against the configuration and normalise it (dates as `YYYYMMDD`,
    /// modalities upper case, UIDs trimmed).
    pub fn validate(mut self, config: &Config) -> Result<NewJob, InvalidJob> {
        let bad = |m: String| Err(InvalidJob(m));
        trim_opt(&mut self.patient_id);
        trim_opt(&mut self.issuer);
        trim_opt(&mut self.accession_number);
        trim_opt(&mut self.referred_to);
        if let Some(f) = &self.referred_to {
            if !config.facilities.iter().any(|c| &c.name == f) {
                return bad(format!("referred_to: no [[facility]] is named {f:?}"));
            }
            if self.patient_id.is_none() {
                return bad("referred_to needs patient_id: a referral names a patient".into());
            }
        }
        if self.patient_id.is_none()
            && self.accession_number.is_none()
            && self.study_uids.is_empty()
        {
            return bad("a job needs patient_id, accession_number or study_uids".into());
        }
        for v in [&self.patient_id, &self.issuer, &self.accession_number]
            .into_iter()
            .flatten()
        {
            if !is_plain_identifier(v) {
                return bad(format!(
                    "{v:?} is not a plain identifier (no wildcards, at most 64 characters)"
                ));
            }
        }
        self.study_uids = self
            .study_uids
            .iter()
            .map(|u| Uid::parse("study UID", u).map(|u| u.to_string()))
            .collect::<Result<_, _>>()
            .map_err(|e| InvalidJob(e.to_string()))?;
        for m in &mut self.modalities {
            *m = m.trim().to_ascii_uppercase();
            if m.is_empty() || m.len() > 16 || !m.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return bad(format!("{m:?} is not a modality"));
            }
        }
        self.date_from = self.date_from.as_deref().map(da).transpose()?;
        self.date_to = self.date_to.as_deref().map(da).transpose()?;
        if self.last == Some(0) {
            return bad("last must be at least 1".into());
        }
        for u in &self.upstreams {
            if !config.upstreams.iter().any(|c| &c.name == u) {
                return bad(format!("no [[upstream]] is named {u:?}"));
            }
        }
        if config.upstreams.is_empty() {
            return bad("no [[upstream]] is configured: there is nothing to prefetch from".into());
        }
        let due = self
            .due
            .as_deref()
            .map(|d| crate::clock::parse_datetime(d, config.jobs.utc_offset))
            .transpose()
            .map_err(InvalidJob)?;
        Ok(NewJob { spec: self, due })
    }

    /// The upstreams to search, by name.
    pub fn upstream_names(&self, config: &Config) -> Vec<String> {
        if self.upstreams.is_empty() {
            config.upstreams.iter().map(|u| u.name.clone()).collect()
        } else {
            self.upstreams.clone()
        }
    }
}

/// A patient ID, issuer or accession number as a job or referral names one: at most 64
/// characters, no wildcards or backslash, no control characters.
pub fn is_plain_identifier(v: &str) -> bool {
    v.len() <= 64 && !v.contains(['\\', '*', '?']) && !v.chars().any(char::is_control)
}

fn trim_opt(v: &mut Option<String>) {
    *v = v
        .take()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
}

/// `2026-01-31` or `20260131` → `20260131`.
fn da(text: &str) -> Result<String, InvalidJob> {
    let digits: String = text.trim().chars().filter(|c| *c != '-').collect();
    let ok = digits.len() == 8
        && digits.bytes().all(|b| b.is_ascii_digit())
        && crate::clock::parse_datetime(
            &format!("{}-{}-{}", &digits[..4], &digits[4..6], &digits[6..]),
            0,
        )
        .is_ok();
    if ok {
        Ok(digits)
    } else {
        Err(InvalidJob(format!(
            "{text:?} is not a date like 2026-01-31"
        )))
    }
}

/// Where a job is. `Resolving`: its studies are being searched for; `Queued`: studies known,
/// work waiting or running; the rest are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Resolving,
    Queued,
    Done,
    Failed,
    Cancelled,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Resolving => "resolving",
            JobState::Queued => "queued",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> JobState {
        match s {
            "resolving" => JobState::Resolving,
            "queued" => JobState::Queued,
            "done" => JobState::Done,
            "cancelled" => JobState::Cancelled,
            _ => JobState::Failed,
        }
    }

    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Done | JobState::Failed | JobState::Cancelled
        )
    }
}

/// Where one study of a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StudyState {
    Queued,
    Running,
    Done,
    Failed,
    Cancelled,
}

impl StudyState {
    pub fn as_str(self) -> &'static str {
        match self {
            StudyState::Queued => "queued",
            StudyState::Running => "running",
            StudyState::Done => "done",
            StudyState::Failed => "failed",
            StudyState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> StudyState {
        match s {
            "queued" => StudyState::Queued,
            "running" => StudyState::Running,
            "done" => StudyState::Done,
            "cancelled" => StudyState::Cancelled,
            _ => StudyState::Failed,
        }
    }
}

/// One study of a job, as the admin API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StudyView {
    pub study_uid: String,
    pub upstream: String,
    pub state: StudyState,
    pub instances_done: u64,
    pub instances_total: Option<u64>,
    pub bytes_done: u64,
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_try: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub error: String,
}

/// Totals of a job.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct JobProgress {
    pub studies_done: u64,
    pub studies_failed: u64,
    pub studies_total: u64,
    pub instances_done: u64,
    /// Known once every study's count is known (from C-FIND or the running retrieve).
    pub instances_total: Option<u64>,
    pub bytes_done: u64,
    /// Of instances when their total is known, else of studies.
    pub percent: f64,
}

/// A job, as the admin API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobView {
    pub id: i64,
    pub state: JobState,
    /// Not finished although its due time has passed, or finished after it.
    pub late: bool,
    /// Why it waits, what went wrong, or a warning (e.g. it cannot finish by its due time).
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub message: String,
    pub spec: JobSpec,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due: Option<String>,
    pub priority: i32,
    pub created: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
    pub progress: JobProgress,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub studies: Vec<StudyView>,
}

impl JobProgress {
    pub fn from_studies(studies: &[StudyView]) -> JobProgress {
        let mut p = JobProgress {
            studies_total: studies.len() as u64,
            instances_total: (!studies.is_empty()).then_some(0),
            ..Default::default()
        };
        for s in studies {
            match s.state {
                StudyState::Done => p.studies_done += 1,
                StudyState::Failed => p.studies_failed += 1,
                _ => {}
            }
            p.instances_done += s.instances_done;
            p.bytes_done += s.bytes_done;
            p.instances_total = match (p.instances_total, s.instances_total) {
                (Some(a), Some(b)) => Some(a + b),
                _ => None,
            };
        }
        p.percent = match p.instances_total {
            _ if p.studies_total > 0 && p.studies_done == p.studies_total => 100.0,
            Some(t) if t > 0 => (100.0 * p.instances_done as f64 / t as f64).min(100.0),
            _ if p.studies_total > 0 => 100.0 * p.studies_done as f64 / p.studies_total as f64,
            _ => 0.0,
        };
        p.percent = (p.percent * 10.0).round() / 10.0;
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let t = "[[upstream]]\nname = \"a\"\nae_title = \"A\"\naddress = \"h:1\"\n[jobs]\nutc_offset = \"+09:00\"\n";
        Config::from_toml_with_env(t, "t", std::iter::empty()).unwrap()
    }

    #[test]
    fn specs_are_validated_and_normalised() {
        let spec = JobSpec {
            patient_id: Some(" JP-0001 ".into()),
            modalities: vec!["ct".into()],
            date_from: Some("2024-01-31".into()),
            due: Some("2026-12-01T09:00".into()),
            ..Default::default()
        };
        let job = spec.validate(&config()).unwrap();
        assert_eq!(job.spec.patient_id.as_deref(), Some("JP-0001"));
        assert_eq!(job.spec.modalities, vec!["CT"]);
        assert_eq!(job.spec.date_from.as_deref(), Some("20240131"));
        assert_eq!(
            job.due,
            Some(crate::clock::parse_datetime("2026-12-01T00:00Z", 0).unwrap())
        );
        let err = |s: JobSpec| s.validate(&config()).unwrap_err().0;
        assert!(err(JobSpec::default()).contains("patient_id"));
        let wild = JobSpec {
            patient_id: Some("JP*".into()),
            ..Default::default()
        };
        assert!(err(wild).contains("wildcards"));
        let unknown = JobSpec {
            patient_id: Some("1".into()),
            upstreams: vec!["b".into()],
            ..Default::default()
        };
        assert!(err(unknown).contains("\"b\""));
        let json = r#"{"patient_id":"1","colour":"red"}"#;
        assert!(serde_json::from_str::<JobSpec>(json).is_err());
    }

    #[test]
    fn progress_counts_instances_when_known() {
        let s = |state, done, total| StudyView {
            study_uid: "1".into(),
            upstream: "a".into(),
            state,
            instances_done: done,
            instances_total: total,
            bytes_done: 10,
            attempts: 0,
            next_try: None,
            error: String::new(),
        };
        let p = JobProgress::from_studies(&[
            s(StudyState::Done, 3, Some(3)),
            s(StudyState::Running, 1, Some(5)),
        ]);
        assert_eq!((p.instances_done, p.instances_total), (4, Some(8)));
        assert_eq!(p.percent, 50.0);
        let p = JobProgress::from_studies(&[
            s(StudyState::Done, 3, None),
            s(StudyState::Queued, 0, None),
        ]);
        assert_eq!((p.instances_total, p.percent), (None, 50.0));
        let p = JobProgress::from_studies(&[s(StudyState::Done, 3, None)]);
        assert_eq!(p.percent, 100.0);
    }
}
