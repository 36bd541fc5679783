//! What `tsunagi prefetch --wait` prints: a live progress bar (rewritten in place on a
//! terminal, one line per change otherwise) and a closing summary per job.

use std::io::Write;
use std::time::Instant;

use crate::jobs::{JobProgress, JobView};

/// Human bytes: `812 B`, `3.4 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The progress of several jobs as one.
pub fn combined(jobs: &[JobView]) -> JobProgress {
    let studies: Vec<_> = jobs
        .iter()
        .flat_map(|j| j.studies.iter().cloned())
        .collect();
    JobProgress::from_studies(&studies)
}

/// One line: `[#########-----------]  45.0%  studies 1/3  instances 12/27  144.0 KiB  1.1 MiB/s  running`.
pub fn line(p: &JobProgress, state: &str, started: Instant) -> String {
    let secs = started.elapsed().as_secs_f64().max(0.001);
    let rate = bytes((p.bytes_done as f64 / secs) as u64);
    format!("{}  {rate}/s  {state}", head(p))
}

/// The line up to the bytes done: what changes with progress, not with time.
fn head(p: &JobProgress) -> String {
    const WIDTH: usize = 24;
    let filled = ((p.percent / 100.0) * WIDTH as f64).round() as usize;
    let bar: String = "#".repeat(filled.min(WIDTH)) + &"-".repeat(WIDTH - filled.min(WIDTH));
    let instances = match p.instances_total {
        Some(t) => format!("{}/{t}", p.instances_done),
        None => format!("{}/?", p.instances_done),
    };
    format!(
        "[{bar}] {:5.1}%  studies {}/{}  instances {instances}  {}",
        p.percent,
        p.studies_done,
        p.studies_total,
        bytes(p.bytes_done),
    )
}

/// Prints progress lines without repeating itself.
pub struct Bar {
    tty: bool,
    last: String,
    started: Instant,
}

impl Bar {
    pub fn new() -> Bar {
        use std::io::IsTerminal;
        Bar {
            tty: std::io::stdout().is_terminal(),
            last: String::new(),
            started: Instant::now(),
        }
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    pub fn show(&mut self, p: &JobProgress, state: &str) {
        let text = line(p, state, self.started);
        // on a pipe, print only when something but the rate changed
        let key = format!("{}  {state}", head(p));
        let mut out = std::io::stdout();
        if self.tty {
            let _ = write!(out, "\r\x1b[2K{text}");
        } else if key != self.last {
            let _ = writeln!(out, "{text}");
        }
        self.last = key;
        let _ = out.flush();
    }

    pub fn end(&mut self) {
        if self.tty {
            println!();
        }
    }
}

impl Default for Bar {
    fn default() -> Self {
        Bar::new()
    }
}

/// The closing summary of one job.
pub fn summary(job: &JobView, started: Instant) -> String {
    let p = &job.progress;
    let secs = started.elapsed().as_secs_f64().max(0.001);
    let mut out = format!(
        "job {} {}{}: {}/{} studies, {}/{} instances, {} in {secs:.1} s ({}/s)",
        job.id,
        job.state.as_str(),
        if job.late { " (late)" } else { "" },
        p.studies_done,
        p.studies_total,
        p.instances_done,
        p.instances_total.map_or("?".into(), |t| t.to_string()),
        bytes(p.bytes_done),
        bytes((p.bytes_done as f64 / secs) as u64),
    );
    if !job.message.is_empty() {
        out.push_str(&format!("\n  {}", job.message));
    }
    for s in &job.studies {
        let state = s.state.as_str();
        out.push_str(&format!(
            "\n  {:<64} {:<12} {:<9} {:>5}/{:<5} {:>10}{}",
            s.study_uid,
            s.upstream,
            state,
            s.instances_done,
            s.instances_total.map_or("?".into(), |t| t.to_string()),
            bytes(s.bytes_done),
            if s.error.is_empty() {
                String::new()
            } else {
                format!("  {}", s.error)
            }
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_units() {
        assert_eq!(bytes(812), "812 B");
        assert_eq!(bytes(3 * 1024 * 1024 + 400 * 1024), "3.4 MiB");
        let p = JobProgress {
            studies_done: 1,
            studies_total: 2,
            instances_done: 6,
            instances_total: Some(12),
            bytes_done: 2048,
            percent: 50.0,
            ..Default::default()
        };
        let l = line(&p, "queued", Instant::now());
        assert!(
            l.starts_with(
                "[############------------]  50.0%  studies 1/2  instances 6/12  2.0 KiB"
            ),
            "{l}"
        );
    }
}
