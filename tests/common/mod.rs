//! Shared test support: the real `tsunagi` binary on ephemeral ports with a temp cache,
//! the committed samples and their manifest, and real peers (DCMTK) with loud skips.
#![allow(dead_code)]
pub mod pacs;
pub mod pki;
pub mod studies;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A gateway process; killed on drop.
pub struct Gateway {
    pub child: Child,
    pub http: SocketAddr,
    pub dimse: SocketAddr,
    pub dir: PathBuf,
    /// The `tsunagi ready` log line (every bound address is in it).
    pub ready: String,
    /// Everything it logged so far (stderr), one line each.
    log: Arc<Mutex<Vec<String>>>,
    _tmp: Option<tempfile::TempDir>,
}

impl Gateway {
    /// Start on a fresh temp cache.
    pub fn start() -> Gateway {
        Gateway::start_with_env(&[])
    }

    /// Start on a fresh temporary cache (removed with the gateway) with extra `TSUNAGI_*`
    /// overrides.
    pub fn start_with_env(env: &[(&str, &str)]) -> Gateway {
        let tmp = tempfile::tempdir().expect("temp dir");
        let mut g = Gateway::start_in(&tmp.path().join("cache"), env);
        g._tmp = Some(tmp);
        g
    }

    /// Start on a given cache directory with extra `TSUNAGI_*` overrides.
    pub fn start_in(dir: &Path, env: &[(&str, &str)]) -> Gateway {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tsunagi"));
        cmd.arg("serve")
            .env("TSUNAGI_HTTP__LISTEN", "127.0.0.1:0")
            .env("TSUNAGI_DIMSE__LISTEN", "127.0.0.1:0")
            .env("TSUNAGI_STORE__PATH", dir)
            .env("RUST_LOG", "info,dicom_parser=error")
            .current_dir(dir.parent().unwrap_or(dir))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn tsunagi");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let lines = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent && line.contains("tsunagi ready") {
                    let _ = tx.send(line.clone());
                    sent = true;
                }
                if std::env::var_os("TSUNAGI_TEST_LOG").is_some() {
                    eprintln!("[gateway] {line}");
                }
                if let Ok(mut l) = lines.lock() {
                    l.push(line);
                }
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("gateway did not become ready");
        Gateway {
            child,
            http: field(&line, "http").parse().expect("http addr"),
            dimse: field(&line, "dimse").parse().expect("dimse addr"),
            dir: dir.to_path_buf(),
            ready: line.clone(),
            log,
            _tmp: None,
        }
    }

    /// Its log (stderr) so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    /// Keep `tmp` (holding the cache) until the gateway is dropped.
    pub fn hold(&mut self, tmp: tempfile::TempDir) {
        self._tmp = Some(tmp);
    }

    /// A `name=value` field of the ready line (e.g. `dimse_tls`).
    pub fn ready_field(&self, name: &str) -> String {
        field(&self.ready, name)
    }

    pub fn base(&self) -> String {
        format!("http://{}/dicom-web", self.http)
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill();
    }
}

fn field(line: &str, name: &str) -> String {
    let key = format!("{name}=");
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&key))
        .unwrap_or_else(|| panic!("no {name}= in {line:?}"))
        .trim_matches('"')
        .to_string()
}

/// Run the `tsunagi` CLI (quiet logs); success and its stdout + stderr.
pub fn tsunagi(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tsunagi"))
        .args(args)
        .env("RUST_LOG", "error")
        .output()
        .expect("run tsunagi");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Every file below `dir` (none if it does not exist).
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The committed samples folder.
pub fn samples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/dicom-samples")
}

/// The samples manifest: one object per file.
pub fn manifest() -> Vec<Value> {
    let text = std::fs::read_to_string(samples_dir().join("manifest.json")).expect("manifest");
    serde_json::from_str(&text).expect("manifest json")
}

pub fn sample_path(entry: &Value) -> PathBuf {
    samples_dir().join(entry["path"].as_str().expect("path"))
}

/// A real peer tool, or a loud skip (a failure under CI=true).
pub fn peer(tool: &str, why: &str) -> Option<PathBuf> {
    let path = PathBuf::from(tool);
    if path.exists() {
        return Some(path);
    }
    let msg = format!(
        "SKIPPED: {tool} is not installed; {why}. Install it (see README) to run this test."
    );
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{msg} (CI=true: a missing peer is a failure)");
    }
    eprintln!("\n*** {msg} ***\n");
    None
}

/// DCMTK storescu proposal flag for a file's transfer syntax.
pub fn storescu_flag(ts: &str) -> &'static str {
    match ts {
        "1.2.840.10008.1.2.4.90" | "1.2.840.10008.1.2.4.91" => "-xv",
        "1.2.840.10008.1.2.4.80" | "1.2.840.10008.1.2.4.81" => "-xt",
        "1.2.840.10008.1.2.5" => "-xr",
        "1.2.840.10008.1.2.4.70" | "1.2.840.10008.1.2.4.57" => "-xs",
        "1.2.840.10008.1.2.1.99" => "-xd",
        "1.2.840.10008.1.2" => "-xi",
        _ => "-x=",
    }
}

/// Push files with DCMTK storescu (one association); returns its exit status and output.
pub fn storescu(
    storescu: &Path,
    dimse: SocketAddr,
    flag: &str,
    files: &[PathBuf],
) -> (bool, String) {
    let out = Command::new(storescu)
        .env("TCP_NODELAY", "1")
        .args(["-aet", "TESTSCU", "-aec", "TSUNAGI", flag])
        .arg(dimse.ip().to_string())
        .arg(dimse.port().to_string())
        .args(files)
        .output()
        .expect("run storescu");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Push every sample, grouped by transfer syntax, several associations at once.
pub fn push_all_samples(storescu_path: &Path, dimse: SocketAddr) {
    let mut groups: std::collections::BTreeMap<&'static str, Vec<PathBuf>> = Default::default();
    for e in manifest() {
        let flag = storescu_flag(e["transfer_syntax"].as_str().unwrap_or(""));
        groups.entry(flag).or_default().push(sample_path(&e));
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = groups
            .iter()
            .map(|(flag, files)| s.spawn(move || storescu(storescu_path, dimse, flag, files)))
            .collect();
        for h in handles {
            let (ok, text) = h.join().expect("storescu thread");
            assert!(ok, "storescu failed:\n{text}");
        }
    });
}

/// Split a multipart/related body into (headers, body) parts.
pub fn multipart_parts(content_type: &str, body: &[u8]) -> Vec<(String, Vec<u8>)> {
    let boundary = content_type
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))
        .expect("boundary")
        .trim_matches('"')
        .to_string();
    let delim = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut pos = find(body, delim.as_bytes(), 0).expect("first delimiter") + delim.len();
    loop {
        if body[pos..].starts_with(b"--") {
            break;
        }
        pos += 2; // CRLF after delimiter
        let header_end = find(body, b"\r\n\r\n", pos).expect("part headers");
        let headers = String::from_utf8_lossy(&body[pos..header_end]).to_string();
        let start = header_end + 4;
        let next = find(body, format!("\r\n{delim}").as_bytes(), start).expect("next delimiter");
        parts.push((headers, body[start..next].to_vec()));
        pos = next + 2 + delim.len();
    }
    parts
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// The data set bytes of a Part 10 file (after preamble, DICM and the meta group).
pub fn data_set_bytes(file: &[u8]) -> &[u8] {
    assert_eq!(&file[128..132], b"DICM");
    let gl = u32::from_le_bytes([file[140], file[141], file[142], file[143]]) as usize;
    &file[144 + gl..]
}

/// The data set of every instance in a multipart body, by SOP Instance UID.
pub fn parts_by_sop(ct: &str, body: &[u8]) -> std::collections::BTreeMap<String, Vec<u8>> {
    multipart_parts(ct, body)
        .into_iter()
        .map(|(_, bytes)| {
            let obj = dicom_object::from_reader(&bytes[128..]).expect("part parses");
            let sop = obj
                .meta()
                .media_storage_sop_instance_uid()
                .trim_end_matches('\0')
                .to_string();
            (sop, data_set_bytes(&bytes).to_vec())
        })
        .collect()
}

/// GET with an Accept header; returns status, content type, headers and body.
pub async fn get(url: &str, accept: &str) -> (u16, String, reqwest::header::HeaderMap, Vec<u8>) {
    let resp = reqwest::Client::new()
        .get(url)
        .header("Accept", accept)
        .send()
        .await
        .expect("http request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = resp.bytes().await.expect("body").to_vec();
    (status, ct, headers, body)
}

pub async fn get_json(url: &str) -> Value {
    let (status, _, _, body) = get(url, "application/dicom+json").await;
    assert_eq!(status, 200, "{url}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).expect("json")
}

/// Whether python3 can import `modules` (comma-separated); a loud skip otherwise, and a
/// failure under CI=true. `why` says what the Python peer checks.
pub fn python_modules(modules: &str, why: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        let msg = format!(
            "SKIPPED: python3 with {modules} is not available; {why}. Install them with \
             `python3 -m pip install -r tests/interop/requirements.txt` to run this test."
        );
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{msg} (CI=true: a missing peer is a failure)");
        }
        eprintln!("\n*** {msg} ***\n");
    }
    ok
}

/// Run `tests/interop/{script}` against a gateway's DICOMweb root and the samples, within
/// `limit`; panics with the script's whole output when it fails or overruns.
pub fn run_interop_script(script: &str, gw: &Gateway, limit: Duration) {
    use std::io::Read;
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(script);
    let mut child = Command::new("python3")
        .arg(path)
        .arg("--url")
        .arg(gw.base())
        .arg("--samples")
        .arg(samples_dir())
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout")));
    let err = drain(Box::new(child.stderr.take().expect("stderr")));
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for python3") {
            break Some(status);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = format!(
        "{}{}",
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default()
    );
    match status {
        Some(s) if s.success() => eprintln!("{text}"),
        Some(s) => panic!("{script} failed ({s}):\n{text}"),
        None => panic!("{script} still running after {limit:?}; killed:\n{text}"),
    }
}

/// The audit trail's records once `want` holds for them (or after 10 s). The writer may be
/// mid-line while we read: only complete lines count.
pub fn audit_records(path: &Path, want: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
        let records: Vec<Value> = complete
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is one JSON record"))
            .collect();
        if want(&records) || std::time::Instant::now() > deadline {
            return records;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The gateway's origin, for `/admin` URLs.
pub fn admin(gw: &Gateway) -> String {
    format!("http://{}", gw.http)
}

/// POST a JSON body; the status and the answer (JSON, or the text as a JSON string).
pub async fn post_json(url: &str, body: Value) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .expect("post");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Poll a job until `done(job)` holds, at most `limit`.
pub async fn wait_job(
    gw: &Gateway,
    id: i64,
    limit: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let job = get_json(&format!("{}/admin/jobs/{id}", admin(gw))).await;
        if done(&job) {
            return job;
        }
        assert!(
            Instant::now() < deadline,
            "job {id} not there after {limit:?}: {job:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
