//! The administrator's commands that talk to a running gateway over its admin API:
//! `tsunagi prefetch` (one job, or one per line of a referrals CSV; `--wait` shows live
//! progress and a summary), `tsunagi jobs` (list, show, cancel) and `tsunagi cache`
//! (stats, purge). The gateway is `--gateway URL`, else `TSUNAGI_GATEWAY`, else the
//! configuration's `http.listen`.

pub mod client;
pub mod progress;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::Value;

use crate::config::Config;
use crate::jobs::{JobSpec, JobView};
pub use client::{Client, ClientError};

/// Failures of a command (printed as `tsunagi: ...`, exit status 1 or 2).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{0}")]
    Usage(String),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where the gateway is.
#[derive(Args, Debug, Clone)]
pub struct GatewayArgs {
    /// Admin URL of the running gateway (default: http.listen of the configuration).
    #[arg(long, env = "TSUNAGI_GATEWAY", value_name = "URL")]
    pub gateway: Option<String>,
    /// API key with the admin role (an `[[auth.api_key]]` of the gateway); needed unless the
    /// gateway runs with `auth.mode = "none"`.
    #[arg(
        long,
        env = "TSUNAGI_API_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    pub api_key: Option<String>,
}

impl GatewayArgs {
    pub fn client(&self, cfg: &Config) -> Result<Client, ClientError> {
        let client = match &self.gateway {
            Some(url) => Client::new(url),
            None => {
                let mut addr = cfg.http.listen;
                if addr.ip().is_unspecified() {
                    addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                }
                Client::new(&format!("http://{addr}"))
            }
        }?;
        Ok(client.with_api_key(self.api_key.clone()))
    }
}

/// `tsunagi prefetch`.
#[derive(Args, Debug, Clone)]
pub struct PrefetchArgs {
    /// Patient ID whose studies to prefetch.
    #[arg(long, value_name = "ID")]
    pub patient: Option<String>,
    /// Issuer of Patient ID.
    #[arg(long, value_name = "ISSUER")]
    pub issuer: Option<String>,
    /// Search only this [[upstream]] (repeatable; default: all).
    #[arg(long, value_name = "NAME")]
    pub upstream: Vec<String>,
    /// Accession number.
    #[arg(long, value_name = "ACCESSION")]
    pub accession: Option<String>,
    /// Study Instance UID (repeatable).
    #[arg(long, value_name = "UID")]
    pub study: Vec<String>,
    /// Only studies with this modality (repeatable).
    #[arg(long, value_name = "MODALITY")]
    pub modality: Vec<String>,
    /// Studies from this date on (2024-01-31).
    #[arg(long, value_name = "DATE")]
    pub since: Option<String>,
    /// Studies up to this date.
    #[arg(long, value_name = "DATE")]
    pub until: Option<String>,
    /// Only the most recent N studies.
    #[arg(long, value_name = "N")]
    pub last: Option<u32>,
    /// When the patient will be seen: 2026-12-01T09:00 (jobs.utc_offset unless given).
    #[arg(long, value_name = "TIME")]
    pub due: Option<String>,
    /// Higher runs first among jobs due at the same time.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub priority: i32,
    /// The [[facility]] the patient is referred to: also lets a `referred_only` facility see
    /// the patient's studies (until the due time plus its referral_validity).
    #[arg(long, value_name = "FACILITY", requires = "patient")]
    pub referred_to: Option<String>,
    /// One job per line of a referrals CSV (see the README for its columns).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["patient", "accession", "study"])]
    pub from: Option<PathBuf>,
    /// Show live progress until the job(s) end, then a summary; exit 1 if a study failed.
    #[arg(long)]
    pub wait: bool,
    #[command(flatten)]
    pub gateway: GatewayArgs,
}

/// `tsunagi jobs`.
#[derive(Args, Debug, Clone)]
pub struct JobsArgs {
    /// Show one job with its studies.
    pub id: Option<i64>,
    /// Cancel that job.
    #[arg(long, requires = "id")]
    pub cancel: bool,
    /// Follow that job's progress until it ends.
    #[arg(long, requires = "id", conflicts_with = "cancel")]
    pub wait: bool,
    /// Only jobs in this state (resolving, queued, done, failed, cancelled).
    #[arg(long)]
    pub state: Option<String>,
    #[command(flatten)]
    pub gateway: GatewayArgs,
}

/// `tsunagi cache`.
#[derive(Subcommand, Debug, Clone)]
pub enum CacheCommand {
    /// Size, counts, hit ratio, pinned studies and the oldest access.
    Stats {
        #[command(flatten)]
        gateway: GatewayArgs,
    },
    /// Remove a study, or every study of a patient, from the cache now (pins included).
    Purge {
        #[arg(
            long,
            value_name = "UID",
            required_unless_present = "patient",
            conflicts_with = "patient"
        )]
        study: Option<String>,
        #[arg(long, value_name = "ID")]
        patient: Option<String>,
        #[arg(long, value_name = "ISSUER", requires = "patient")]
        issuer: Option<String>,
        #[command(flatten)]
        gateway: GatewayArgs,
    },
}

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn job_of(v: Value) -> Result<JobView, CliError> {
    serde_json::from_value(v).map_err(|e| ClientError::Body(e.to_string()).into())
}

/// `tsunagi prefetch`: true when everything asked for succeeded.
pub async fn prefetch(cfg: &Config, args: PrefetchArgs) -> Result<bool, CliError> {
    let client = args.gateway.client(cfg)?;
    let created: Vec<JobView> = match &args.from {
        Some(path) => {
            let text = std::fs::read(path).map_err(|source| CliError::Read {
                path: path.clone(),
                source,
            })?;
            let answer = client
                .post("/admin/jobs/referrals", "text/csv; charset=utf-8", text)
                .await?;
            serde_json::from_value(answer).map_err(|e| ClientError::Body(e.to_string()))?
        }
        None => {
            let spec = JobSpec {
                patient_id: args.patient.clone(),
                issuer: args.issuer.clone(),
                accession_number: args.accession.clone(),
                study_uids: args.study.clone(),
                modalities: args.modality.clone(),
                date_from: args.since.clone(),
                date_to: args.until.clone(),
                last: args.last,
                upstreams: args.upstream.clone(),
                due: args.due.clone(),
                priority: args.priority,
                referred_to: args.referred_to.clone(),
            };
            if spec.patient_id.is_none()
                && spec.accession_number.is_none()
                && spec.study_uids.is_empty()
            {
                return Err(CliError::Usage(
                    "say what to prefetch: --patient, --accession, --study or --from FILE".into(),
                ));
            }
            let body = serde_json::to_vec(&spec).map_err(|e| CliError::Usage(e.to_string()))?;
            vec![job_of(
                client.post("/admin/jobs", "application/json", body).await?,
            )?]
        }
    };
    for j in &created {
        println!(
            "job {} created{}",
            j.id,
            j.due
                .as_ref()
                .map(|d| format!(", due {d}"))
                .unwrap_or_default()
        );
    }
    if !args.wait {
        return Ok(true);
    }
    let ids: Vec<i64> = created.iter().map(|j| j.id).collect();
    wait(&client, &ids).await
}

/// Follow jobs until they all end; print the summary. True when none failed.
pub async fn wait(client: &Client, ids: &[i64]) -> Result<bool, CliError> {
    let mut bar = progress::Bar::new();
    loop {
        let mut jobs = Vec::with_capacity(ids.len());
        for id in ids {
            jobs.push(job_of(client.get(&format!("/admin/jobs/{id}")).await?)?);
        }
        let all_final = jobs.iter().all(|j| j.state.is_final());
        let state = if all_final {
            "finished".to_string()
        } else {
            describe(&jobs)
        };
        bar.show(&progress::combined(&jobs), &state);
        if all_final {
            bar.end();
            let mut ok = true;
            for j in &jobs {
                println!("{}", progress::summary(j, bar.started()));
                ok &= j.state == crate::jobs::JobState::Done && j.progress.studies_failed == 0;
            }
            return Ok(ok);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A short state for the progress line: running, or why the first unfinished job waits.
fn describe(jobs: &[JobView]) -> String {
    let running = jobs
        .iter()
        .flat_map(|j| &j.studies)
        .any(|s| s.state == crate::jobs::StudyState::Running);
    if running {
        return "running".into();
    }
    jobs.iter()
        .find(|j| !j.state.is_final())
        .map(|j| {
            if j.message.is_empty() {
                j.state.as_str().to_string()
            } else {
                j.message.clone()
            }
        })
        .unwrap_or_default()
}

/// `tsunagi jobs`.
pub async fn jobs(cfg: &Config, args: JobsArgs) -> Result<bool, CliError> {
    let client = args.gateway.client(cfg)?;
    match args.id {
        Some(id) if args.cancel => {
            let j = job_of(client.delete(&format!("/admin/jobs/{id}")).await?)?;
            println!("job {} {}", j.id, j.state.as_str());
            Ok(true)
        }
        Some(id) if args.wait => wait(&client, &[id]).await,
        Some(id) => {
            let j = job_of(client.get(&format!("/admin/jobs/{id}")).await?)?;
            println!("{}", progress::summary(&j, std::time::Instant::now()));
            Ok(true)
        }
        None => {
            let path = match &args.state {
                Some(s) => format!("/admin/jobs?state={}", enc(s)),
                None => "/admin/jobs".into(),
            };
            let list: Vec<JobView> = serde_json::from_value(client.get(&path).await?)
                .map_err(|e| ClientError::Body(e.to_string()))?;
            print_jobs(&list);
            Ok(true)
        }
    }
}

fn print_jobs(list: &[JobView]) {
    println!(
        "{:>5}  {:<10} {:>6}  {:>7}  {:>9}  {:>10}  {:<25}  {:<30}  MESSAGE",
        "ID", "STATE", "DONE", "STUDIES", "INSTANCES", "BYTES", "DUE", "WHAT"
    );
    for j in list {
        let p = &j.progress;
        let state = if j.late {
            format!("{}!", j.state.as_str())
        } else {
            j.state.as_str().to_string()
        };
        println!(
            "{:>5}  {:<10} {:>5.1}%  {:>3}/{:<3}  {:>9}  {:>10}  {:<25}  {:<30}  {}",
            j.id,
            state,
            p.percent,
            p.studies_done,
            p.studies_total,
            format!(
                "{}/{}",
                p.instances_done,
                p.instances_total.map_or("?".into(), |t| t.to_string())
            ),
            progress::bytes(p.bytes_done),
            j.due.as_deref().unwrap_or("-"),
            what(&j.spec),
            j.message
        );
    }
}

/// What a job asks for, briefly.
fn what(s: &JobSpec) -> String {
    let mut parts = Vec::new();
    if let Some(p) = &s.patient_id {
        parts.push(format!("patient {p}"));
    }
    if let Some(a) = &s.accession_number {
        parts.push(format!("accession {a}"));
    }
    if !s.study_uids.is_empty() {
        parts.push(format!("{} study UID(s)", s.study_uids.len()));
    }
    if !s.upstreams.is_empty() {
        parts.push(format!("@{}", s.upstreams.join(",")));
    }
    parts.join(" ")
}

/// `tsunagi cache ...`.
pub async fn cache(cfg: &Config, cmd: CacheCommand) -> Result<bool, CliError> {
    match cmd {
        CacheCommand::Stats { gateway } => {
            let s = gateway.client(cfg)?.get("/admin/cache").await?;
            print_stats(&s);
        }
        CacheCommand::Purge {
            study,
            patient,
            issuer,
            gateway,
        } => {
            let client = gateway.client(cfg)?;
            let path = match (study, patient) {
                (Some(s), _) => format!("/admin/cache/studies/{}", enc(&s)),
                (None, Some(p)) => match issuer {
                    Some(i) => format!("/admin/cache/patients/{}?issuer={}", enc(&p), enc(&i)),
                    None => format!("/admin/cache/patients/{}", enc(&p)),
                },
                (None, None) => return Err(CliError::Usage("--study or --patient".into())),
            };
            let answer = client.delete(&path).await?;
            let n = answer["removed"].as_array().map_or(0, Vec::len);
            let bytes = answer["bytes"].as_u64().unwrap_or(0);
            println!(
                "purged {n} stud{} ({})",
                if n == 1 { "y" } else { "ies" },
                progress::bytes(bytes)
            );
        }
    }
    Ok(true)
}

fn print_stats(s: &Value) {
    let n = |k: &str| s[k].as_u64().unwrap_or(0);
    println!(
        "size        {} of {} ({}%)",
        progress::bytes(n("size_bytes")),
        progress::bytes(n("max_size_bytes")),
        s["used_percent"]
    );
    println!(
        "content     {} studies, {} series, {} instances",
        n("studies"),
        n("series"),
        n("instances")
    );
    println!(
        "pinned      {} studies ({})",
        n("pinned_studies"),
        progress::bytes(n("pinned_bytes"))
    );
    let ratio = s["hit_ratio"]
        .as_f64()
        .map_or("-".to_string(), |r| format!("{:.1}%", r * 100.0));
    println!(
        "hit ratio   {ratio} ({} hits, {} misses)",
        n("hits"),
        n("misses")
    );
    println!(
        "evicted     {} studies ({})",
        n("evicted_studies"),
        progress::bytes(n("evicted_bytes"))
    );
    println!("oldest      {}", s["oldest_access"].as_str().unwrap_or("-"));
}
