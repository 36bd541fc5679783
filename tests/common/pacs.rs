//! Two real hospital PACS on loopback for the pull-through tests, each on ephemeral ports with
//! its own temp directory, loaded from `tests/dicom-samples/pacs/` (made by
//! `tests/pacs/make_pacs_data.py`):
//!
//! - [`DcmQrScp`]: hospital A, DCMTK `dcmqrscp` as `HOSPA`; uncompressed files; names in
//!   `\ISO 2022 IR 87` (it cannot convert them, so it matches raw bytes: query it in that set).
//! - [`Orthanc`]: hospital B, Debian's Orthanc 1.10 as `HOSPB`; UTF-8 names and JPEG 2000.
//!   [`Orthanc::start_tls`] serves DICOM TLS only on its DICOM port ([`OrthancTls`]).
//!
//! Both are killed (with every process they forked) on drop or [`Pacs::stop`], count the
//! C-FIND, C-MOVE and C-GET requests they receive (from their own logs, read on demand, so a
//! count taken after a request's final response includes it), and learn a C-MOVE destination
//! after they start ([`Pacs::allow_move_to`]). A missing peer skips loudly through
//! [`super::peer`] (a failure under `CI=true`). The order that resolves "each needs the
//! other's port":
//!
//! ```ignore
//! let (Some(mut a), Some(mut b)) = (DcmQrScp::hospital_a(), Orthanc::hospital_b()) else {
//!     return; // skipped loudly
//! };
//! let toml = [a.upstream_toml("hospa", "c-move"), b.upstream_toml("hospb", "c-get")].concat();
//! let gw = Gateway::start_with_config(&toml);
//! a.allow_move_to("TSUNAGI", gw.dimse);
//! b.allow_move_to("TSUNAGI", gw.dimse);
//! // ... pull through the gateway, then e.g. assert_eq!(a.retrieves_of(&series_uid), 1);
//! ```

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{find, peer, samples_dir, Gateway};

pub const DCMQRSCP: &str = "/usr/bin/dcmqrscp";
pub const DCMQRIDX: &str = "/usr/bin/dcmqridx";
pub const ORTHANC: &str = "/usr/sbin/Orthanc";
pub const ECHOSCU: &str = "/usr/bin/echoscu";
const READY_TIMEOUT: Duration = Duration::from_secs(30);

// --------------------------------------------------------------------------- data

/// `tests/dicom-samples/pacs/`: the two hospitals' files and their manifest.
pub fn pacs_samples_dir() -> PathBuf {
    samples_dir().join("pacs")
}

/// Manifest entries (same keys as the main samples manifest) whose path starts with `prefix`
/// (`"hospa/"`, `"hospb/"`, `"hospb/jp-0001/j2k"`, or `""` for all).
pub fn pacs_entries(prefix: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(pacs_samples_dir().join("manifest.json")).expect("manifest");
    let all: Vec<Value> = serde_json::from_str(&text).expect("manifest json");
    all.into_iter()
        .filter(|e| e["path"].as_str().is_some_and(|p| p.starts_with(prefix)))
        .collect()
}

/// A multipart body of instances holds, byte for byte, the data sets of the PACS's files
/// under `prefix`, no more and no fewer (`context` ends the failure message).
pub fn assert_served_as_stored(ct: &str, body: &[u8], prefix: &str, context: &str) {
    let served = crate::common::parts_by_sop(ct, body);
    let entries = pacs_entries(prefix);
    assert_eq!(served.len(), entries.len(), "{prefix}");
    for e in &entries {
        let source = std::fs::read(pacs_samples_dir().join(e["path"].as_str().unwrap())).unwrap();
        let sop = e["sop_instance_uid"].as_str().unwrap();
        assert!(
            served[sop] == crate::common::data_set_bytes(&source),
            "{} differs {context}",
            e["path"]
        );
    }
}

/// The values of `tag` ("0020000D") in DICOM JSON rows.
pub fn uids(rows: &Value, tag: &str) -> std::collections::BTreeSet<String> {
    rows.as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r[tag]["Value"][0].as_str().map(str::to_string))
        .collect()
}

pub fn pacs_files(prefix: &str) -> Vec<PathBuf> {
    pacs_entries(prefix)
        .iter()
        .map(|e| pacs_samples_dir().join(e["path"].as_str().expect("path")))
        .collect()
}

/// The one value of `key` shared by the entries under `prefix` (e.g. a series UID).
pub fn pacs_uid(prefix: &str, key: &str) -> String {
    let values: std::collections::BTreeSet<String> = pacs_entries(prefix)
        .iter()
        .map(|e| e[key].as_str().expect(key).to_string())
        .collect();
    assert_eq!(values.len(), 1, "{prefix}: {key} is not unique: {values:?}");
    values.into_iter().next().expect("one value")
}

// --------------------------------------------------------------------------- the interface

/// A C-MOVE or C-GET request as the PACS logged it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retrieve {
    pub op: RetrieveOp,
    /// The move destination AE title (C-MOVE only).
    pub destination: Option<String>,
    /// QueryRetrieveLevel of the identifier.
    pub level: String,
    /// Study, series and SOP instance UIDs in the identifier (lists split).
    pub uids: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetrieveOp {
    Move,
    Get,
}

/// What the pull-through tests need from a hospital PACS, whichever product it is.
pub trait Pacs {
    fn ae_title(&self) -> &str;
    /// The DIMSE address (127.0.0.1 and an ephemeral port).
    fn addr(&self) -> SocketAddr;
    /// The Specific Character Set the gateway should use in C-FIND identifiers for it.
    fn character_set(&self) -> &str;
    /// Let it C-MOVE to `ae_title` at `addr` (e.g. `("TSUNAGI", gateway.dimse)`).
    /// dcmqrscp restarts on the same port for this; Orthanc learns it over REST.
    fn allow_move_to(&mut self, ae_title: &str, addr: SocketAddr);
    /// Kill it (and everything it forked) now: further associations are refused.
    fn stop(&mut self);
    /// The running server's process id, which is also its process group id.
    fn pid(&self) -> Option<u32>;
    /// Its temp directory (config, storage, log), removed on drop.
    fn dir(&self) -> &Path;
    /// Its log so far (for failure messages).
    fn log(&self) -> String;
    /// Every C-MOVE and C-GET request received so far, in order.
    fn retrieves(&self) -> Vec<Retrieve>;
    /// Number of C-FIND requests received so far.
    fn find_count(&self) -> usize;

    fn retrieve_count(&self) -> usize {
        self.retrieves().len()
    }

    /// Retrieve requests whose identifier names `uid` (study, series or instance).
    fn retrieves_of(&self, uid: &str) -> usize {
        self.retrieves()
            .iter()
            .filter(|r| r.uids.iter().any(|u| u == uid))
            .count()
    }

    /// A `[[upstream]]` table for the gateway's proxy.toml.
    fn upstream_toml(&self, name: &str, retrieve: &str) -> String {
        format!(
            "[[upstream]]\nname = \"{name}\"\nae_title = \"{}\"\naddress = \"{}\"\n\
             retrieve = \"{retrieve}\"\ncharacter_set = '{}'\n\n",
            self.ae_title(),
            self.addr(),
            self.character_set()
        )
    }
}

impl Gateway {
    /// Start on a fresh temp cache with `toml` as its configuration (e.g. the concatenated
    /// [`Pacs::upstream_toml`] tables).
    pub fn start_with_config(toml: &str) -> Gateway {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().join("cache");
        let mut g = Gateway::start_with_config_in(&dir, toml, &[]);
        g._tmp = Some(tmp);
        g
    }

    /// [`Gateway::start_in`] with `toml` as its configuration. The file is written as
    /// `proxy.toml` in `dir`'s parent (which must belong to the test): the gateway runs there
    /// and, without `--config`, reads `./proxy.toml`. Listen addresses and the store path still
    /// come from `start_in`'s environment overrides.
    pub fn start_with_config_in(dir: &Path, toml: &str, env: &[(&str, &str)]) -> Gateway {
        let parent = dir.parent().expect("cache dir has a parent");
        std::fs::create_dir_all(parent).expect("config dir");
        std::fs::write(parent.join("proxy.toml"), toml).expect("write proxy.toml");
        // `tsunagi config` from the same directory: a rejected file fails here with its reason.
        let check = Command::new(env!("CARGO_BIN_EXE_tsunagi"))
            .arg("config")
            .current_dir(parent)
            .output()
            .expect("run tsunagi config");
        assert!(
            check.status.success(),
            "proxy.toml rejected: {}\n{toml}",
            String::from_utf8_lossy(&check.stderr)
        );
        Gateway::start_in(dir, env)
    }
}

// --------------------------------------------------------------------------- processes

/// A PACS process in its own process group, its output appended to a log file.
struct Proc {
    child: Child,
}

impl Proc {
    fn spawn(cmd: &mut Command, log: &Path) -> Proc {
        use std::os::unix::process::CommandExt;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let child = cmd
            .env("TCP_NODELAY", "1") // DCMTK inside both PACS: no Nagle on C-STORE sub-operations
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log fd"))
            .stderr(file)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        Proc { child }
    }

    fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL the whole group (dcmqrscp forks a child per association), then reap the leader
    /// (the children, reparented, are reaped by init).
    fn kill(&mut self) {
        if !self.exited() {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.child.id())])
                .stderr(Stdio::null())
                .status();
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port that was free a moment ago (a restart on it may race; callers retry).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// A C-ECHO with DCMTK's echoscu: does `ae_title` at `addr` accept associations?
pub fn echo(ae_title: &str, addr: SocketAddr) -> bool {
    echo_as("FIXTURE", ae_title, addr, &[])
}

/// Is the server at `addr` the process writing `log`? A C-ECHO from a calling AE title used
/// nowhere else must show up in that log (a port raced away could answer for another PACS).
/// `extra` are further echoscu arguments (DICOM TLS).
fn echo_reaches(log: &Path, ae_title: &str, addr: SocketAddr, extra: &[String]) -> bool {
    static PROBES: AtomicUsize = AtomicUsize::new(0);
    let probe = format!("PROBE{}", PROBES.fetch_add(1, Ordering::Relaxed));
    echo_as(&probe, ae_title, addr, extra) && read_log(log).contains(&probe)
}

fn echo_as(calling: &str, ae_title: &str, addr: SocketAddr, extra: &[String]) -> bool {
    Command::new(ECHOSCU)
        .env("TCP_NODELAY", "1")
        .args(["-to", "5", "-ta", "5", "-aet", calling, "-aec", ae_title])
        .args(extra)
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Wait until `ready()` or the process exits (false) or the time is up (panic).
fn wait_ready(proc: &mut Proc, log: &Path, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if proc.exited() {
            return false;
        }
        if ready() {
            return true;
        }
        if Instant::now() > deadline {
            panic!("PACS not ready after {READY_TIMEOUT:?}:\n{}", read_log(log));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn read_log(log: &Path) -> String {
    let mut bytes = Vec::new();
    let _ = File::open(log).and_then(|mut f| f.read_to_end(&mut bytes));
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The value of a DICOM dump line: `[...]` (DCMTK) or after ` = ` (Orthanc).
fn dump_value(line: &str) -> Option<String> {
    if let Some((_, v)) = line.split_once(" = ") {
        return Some(v.trim().to_string());
    }
    let start = line.find('[')? + 1;
    let end = start + line[start..].find(']')?;
    Some(line[start..end].trim().to_string())
}

/// The tag of a data set dump line: `(0020,000e)` in `I: (0020,000e) UI [...]` (DCMTK) or
/// `(dicom)   (0020,000e)  SeriesInstanceUID = ...` (Orthanc).
fn dump_tag(line: &str) -> Option<String> {
    let bytes = line.as_bytes();
    bytes.windows(11).find_map(|t| {
        let hex = |s: &[u8]| s.iter().all(u8::is_ascii_hexdigit);
        (t[0] == b'(' && hex(&t[1..5]) && t[5] == b',' && hex(&t[6..10]) && t[10] == b')')
            .then(|| String::from_utf8_lossy(t).to_ascii_lowercase())
    })
}

/// Take the level and UIDs from a dump line of `r`'s identifier; false if it is no dump line.
fn add_identifier(r: &mut Retrieve, line: &str) -> bool {
    let Some(tag) = dump_tag(line) else {
        return false;
    };
    let value = dump_value(line).unwrap_or_default();
    match tag.as_str() {
        "(0008,0052)" => r.level = value,
        "(0020,000d)" | "(0020,000e)" | "(0008,0018)" => r.uids.extend(
            value
                .split('\\')
                .map(|u| u.trim_end_matches('\0').trim().to_string()),
        ),
        _ => {}
    }
    true
}

// --------------------------------------------------------------------------- hospital A

/// log4cplus configuration for dcmqrscp: `-v` (INFO) output, each line prefixed by the
/// process id, because the children dcmqrscp forks per association share one log, and
/// flushed per line so the log is current when a request has been answered.
const LOG_CONFIG_WITH_PID: &str = "log4cplus.rootLogger = INFO, console\n\
    log4cplus.appender.console = log4cplus::ConsoleAppender\n\
    log4cplus.appender.console.ImmediateFlush = true\n\
    log4cplus.appender.console.layout = log4cplus::PatternLayout\n\
    log4cplus.appender.console.layout.ConversionPattern = %i %P: %m%n\n";

/// DCMTK `dcmqrscp` (forking, `-v`): a PACS that does not transcode, cannot convert
/// `ISO 2022 IR 87` (it compares such values byte for byte) and only C-MOVEs to destinations
/// listed in its config's HostTable.
pub struct DcmQrScp {
    ae_title: String,
    port: u16,
    destinations: Vec<(String, SocketAddr)>,
    proc: Option<Proc>, // dropped (killed) before `tmp` is removed
    tmp: tempfile::TempDir,
}

impl DcmQrScp {
    /// Hospital A: `HOSPA` with every file under `hospa/`.
    pub fn hospital_a() -> Option<DcmQrScp> {
        DcmQrScp::start("HOSPA", &pacs_files("hospa/"))
    }

    /// `ae_title` serving `files` (uncompressed only), indexed with `dcmqridx` before start.
    pub fn start(ae_title: &str, files: &[PathBuf]) -> Option<DcmQrScp> {
        peer(DCMQRSCP, "the DCMTK hospital PACS (dcmqrscp) is needed")?;
        peer(DCMQRIDX, "dcmqrscp's indexer is needed")?;
        peer(ECHOSCU, "echoscu checks that the PACS is up")?;
        let tmp = tempfile::tempdir().expect("temp dir");
        let storage = tmp.path().join("storage");
        std::fs::create_dir(&storage).expect("storage dir");
        // dcmqridx records the paths it is given: absolute ones, inside the storage area.
        let copies: Vec<PathBuf> = files
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let to = storage.join(format!("{i:05}.dcm"));
                std::fs::copy(f, &to).unwrap_or_else(|e| panic!("copy {f:?}: {e}"));
                to
            })
            .collect();
        if !copies.is_empty() {
            let out = Command::new(DCMQRIDX)
                .arg(&storage)
                .args(&copies)
                .output()
                .expect("run dcmqridx");
            assert!(out.status.success(), "dcmqridx: {out:?}");
        }
        let mut pacs = DcmQrScp {
            ae_title: ae_title.to_string(),
            port: 0,
            destinations: Vec::new(),
            proc: None,
            tmp,
        };
        for _ in 0..5 {
            pacs.port = free_port();
            if pacs.launch() {
                return Some(pacs);
            }
        }
        panic!("dcmqrscp did not start:\n{}", pacs.log());
    }

    fn log_path(&self) -> PathBuf {
        self.tmp.path().join("dcmqrscp.log")
    }

    /// Write the config for the current port and destinations and start; false if it exited
    /// (port taken).
    fn launch(&mut self) -> bool {
        let storage = self.tmp.path().join("storage");
        let hosts: String = self
            .destinations
            .iter()
            .enumerate()
            .map(|(i, (ae, addr))| format!("dest{i} = ({ae}, {}, {})\n", addr.ip(), addr.port()))
            .collect();
        // AETable: title, storage area, access, quota (max studies, max bytes per study),
        // peers. RW lets tests C-STORE more data into it; ANY lets any calling AE query.
        let config = format!(
            "NetworkTCPPort = {port}\nMaxPDUSize = 65536\nMaxAssociations = 64\n\n\
             HostTable BEGIN\n{hosts}HostTable END\n\nVendorTable BEGIN\nVendorTable END\n\n\
             AETable BEGIN\n{ae} {storage} RW (1000, 1024mb) ANY\nAETable END\n",
            port = self.port,
            ae = self.ae_title,
            storage = storage.display(),
        );
        let cfg = self.tmp.path().join("dcmqrscp.cfg");
        std::fs::write(&cfg, config).expect("write dcmqrscp.cfg");
        let log = self.log_path();
        let log_config = self.tmp.path().join("log.cfg");
        std::fs::write(&log_config, LOG_CONFIG_WITH_PID).expect("write log.cfg");
        let mut proc = Proc::spawn(
            Command::new(DCMQRSCP)
                .arg("--log-config")
                .arg(&log_config)
                .arg("-c")
                .arg(&cfg)
                .arg(self.port.to_string())
                .current_dir(self.tmp.path()),
            &log,
        );
        let (ae, addr) = (self.ae_title.clone(), self.addr());
        let up = wait_ready(&mut proc, &log, || echo_reaches(&log, &ae, addr, &[]));
        if up {
            self.proc = Some(proc);
        }
        up
    }
}

impl Pacs for DcmQrScp {
    fn ae_title(&self) -> &str {
        &self.ae_title
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn character_set(&self) -> &str {
        "\\ISO 2022 IR 87"
    }

    fn allow_move_to(&mut self, ae_title: &str, addr: SocketAddr) {
        self.destinations.retain(|(ae, _)| ae != ae_title);
        self.destinations.push((ae_title.to_string(), addr));
        self.stop();
        assert!(
            self.launch(),
            "dcmqrscp did not restart on port {}:\n{}",
            self.port,
            self.log()
        );
    }

    fn stop(&mut self) {
        self.proc = None; // Proc's drop kills the group
    }

    fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(|p| p.child.id())
    }

    fn dir(&self) -> &Path {
        self.tmp.path()
    }

    fn log(&self) -> String {
        read_log(&self.log_path())
    }

    /// Each request logs `Move Destination : DEST` (C-MOVE) in its DIMSE dump, then
    /// `I: Move SCP Request Identifiers:` (or `Get`) and a data set dump ended by an empty
    /// `I: ` line. Forked children interleave their lines in the one log, so every line
    /// starts with the process id of the child that wrote it and is read in that child's
    /// thread of lines.
    fn retrieves(&self) -> Vec<Retrieve> {
        /// One forked child's place in its own log lines.
        #[derive(Default)]
        struct ChildLog {
            current: Option<usize>, // index into `out` of the identifier being dumped
            seen: bool,             // met a tag line of that identifier
            destination: Option<String>,
        }
        let mut out: Vec<Retrieve> = Vec::new();
        let mut children: HashMap<&str, ChildLog> = HashMap::new();
        let log = self.log();
        for (pid, line) in log.lines().filter_map(|l| l.split_once(' ')) {
            let child = children.entry(pid).or_default();
            let op = if line.contains("Move SCP Request Identifiers:") {
                Some(RetrieveOp::Move)
            } else if line.contains("Get SCP Request Identifiers:") {
                Some(RetrieveOp::Get)
            } else {
                None
            };
            if let Some(op) = op {
                let destination = match op {
                    RetrieveOp::Move => child.destination.take(),
                    RetrieveOp::Get => None,
                };
                out.push(Retrieve {
                    op,
                    destination,
                    level: String::new(),
                    uids: Vec::new(),
                });
                (child.current, child.seen) = (Some(out.len() - 1), false);
            } else if line.contains("Move Destination") {
                child.destination = Some(line.rsplit(':').next().unwrap_or("").trim().to_string());
            } else if let Some(i) = child.current {
                if add_identifier(&mut out[i], line) {
                    child.seen = true;
                } else if child.seen {
                    child.current = None; // the empty `I: ` after the tag lines
                }
            }
        }
        out
    }

    fn find_count(&self) -> usize {
        self.log().matches("Received Find SCP").count()
    }
}

// --------------------------------------------------------------------------- hospital B

/// DICOM TLS for an [`Orthanc`] (its DICOM port then speaks TLS only): PEM files, and the
/// DCMTK `echoscu` arguments that get through it (the readiness check).
pub struct OrthancTls {
    /// Its certificate and private key.
    pub cert: String,
    pub key: String,
    /// The certificates (CAs) it trusts for client certificates.
    pub trusted: String,
    /// Refuse clients without a certificate (`DicomTlsRemoteCertificateRequired`).
    pub require_client_cert: bool,
    /// e.g. `["+tls", client.key, client.pem, "-ic"]`.
    pub echo_args: Vec<String>,
}

impl OrthancTls {
    /// The `DicomTls*` configuration keys.
    fn config(&self) -> Value {
        json!({
            "DicomTlsEnabled": true,
            "DicomTlsCertificate": self.cert,
            "DicomTlsPrivateKey": self.key,
            "DicomTlsTrustedCertificates": self.trusted,
            "DicomTlsRemoteCertificateRequired": self.require_client_cert,
        })
    }
}

/// Debian's Orthanc 1.10 (no plugins, `--verbose`): a PACS that answers in UTF-8, serves C-GET
/// and stores JPEG 2000 as received. Loaded over its REST API.
pub struct Orthanc {
    ae_title: String,
    dicom: SocketAddr,
    http: SocketAddr,
    proc: Option<Proc>, // dropped (killed) before `tmp` is removed
    tmp: tempfile::TempDir,
}

impl Orthanc {
    /// Hospital B: `HOSPB` with every file under `hospb/`.
    pub fn hospital_b() -> Option<Orthanc> {
        Orthanc::start("HOSPB", &pacs_files("hospb/"))
    }

    /// `ae_title` with `files` uploaded (`POST /instances`).
    pub fn start(ae_title: &str, files: &[PathBuf]) -> Option<Orthanc> {
        Orthanc::start_with(ae_title, files, None)
    }

    /// [`Orthanc::start`] speaking DICOM TLS only on its DICOM port.
    pub fn start_tls(ae_title: &str, files: &[PathBuf], tls: &OrthancTls) -> Option<Orthanc> {
        Orthanc::start_with(ae_title, files, Some(tls))
    }

    fn start_with(ae_title: &str, files: &[PathBuf], tls: Option<&OrthancTls>) -> Option<Orthanc> {
        peer(
            ORTHANC,
            "the Orthanc hospital PACS is needed (apt-get install orthanc)",
        )?;
        peer(ECHOSCU, "echoscu checks that the PACS is up")?;
        let tmp = tempfile::tempdir().expect("temp dir");
        let log = tmp.path().join("orthanc.log");
        for _ in 0..5 {
            let dicom = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let storage = tmp.path().join("db");
            let mut config = json!({
                "Name": ae_title,
                "DicomAet": ae_title,
                "DicomPort": dicom.port(),
                "HttpPort": http.port(),
                "StorageDirectory": storage,
                "IndexDirectory": storage,
                "Plugins": [],
                "RemoteAccessAllowed": false,
                "AuthenticationEnabled": false,
                "DicomCheckCalledAet": true,
                // The gateway is not a registered modality for queries and C-GET; only as a
                // C-MOVE destination (allow_move_to), which must be a known modality.
                "DicomAlwaysAllowEcho": true,
                "DicomAlwaysAllowStore": true,
                "DicomAlwaysAllowFind": true,
                "DicomAlwaysAllowGet": true,
                "DicomAlwaysAllowMove": true,
                "DicomCheckModalityHost": false,
                "UnknownSopClassAccepted": true,
                "DefaultEncoding": "Utf8",
                "DeidentifyLogs": false, // the retrieve counter reads identifiers from the log
                "SaveJobs": false,
                "DicomModalities": {},
            });
            if let (Some(tls), Value::Object(c)) = (tls, &mut config) {
                c.extend(tls.config().as_object().cloned().unwrap_or_default());
            }
            let echo_args = tls.map(|t| t.echo_args.as_slice()).unwrap_or_default();
            let cfg = tmp.path().join("orthanc.json");
            std::fs::write(&cfg, config.to_string()).expect("write orthanc.json");
            let mut proc = Proc::spawn(
                Command::new(ORTHANC)
                    .args(["--verbose", "--no-jobs"])
                    .arg(&cfg)
                    .current_dir(tmp.path()),
                &log,
            );
            let up = wait_ready(&mut proc, &log, || {
                // Ours, not a server that raced us to a port: /system names our DICOM port.
                let ours = format!("\"DicomPort\" : {}", dicom.port());
                http_request(http, "GET", "/system", b"").is_ok_and(|(s, body)| {
                    s == 200 && String::from_utf8_lossy(&body).contains(&ours)
                }) && echo_reaches(&log, ae_title, dicom, echo_args)
            });
            if !up {
                continue;
            }
            let pacs = Orthanc {
                ae_title: ae_title.to_string(),
                dicom,
                http,
                proc: Some(proc),
                tmp,
            };
            for f in files {
                let bytes = std::fs::read(f).unwrap_or_else(|e| panic!("read {f:?}: {e}"));
                let (status, body) = pacs.rest("POST", "/instances", &bytes);
                assert_eq!(status, 200, "upload {f:?}: {body}");
            }
            return Some(pacs);
        }
        panic!("Orthanc did not start:\n{}", read_log(&log));
    }

    /// Its REST API (loopback only, no authentication).
    pub fn http(&self) -> SocketAddr {
        self.http
    }

    /// One REST call; returns status and body.
    pub fn rest(&self, method: &str, path: &str, body: &[u8]) -> (u16, String) {
        let (status, bytes) = http_request(self.http, method, path, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }
}

impl Pacs for Orthanc {
    fn ae_title(&self) -> &str {
        &self.ae_title
    }

    fn addr(&self) -> SocketAddr {
        self.dicom
    }

    fn character_set(&self) -> &str {
        "ISO_IR 192"
    }

    fn allow_move_to(&mut self, ae_title: &str, addr: SocketAddr) {
        let body = json!({"AET": ae_title, "Host": addr.ip().to_string(), "Port": addr.port()});
        let path = format!("/modalities/{}", ae_title.to_ascii_lowercase());
        let (status, text) = self.rest("PUT", &path, body.to_string().as_bytes());
        assert_eq!(status, 200, "PUT {path}: {text}");
    }

    fn stop(&mut self) {
        self.proc = None; // Proc's drop kills the group
    }

    fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(|p| p.child.id())
    }

    fn dir(&self) -> &Path {
        self.tmp.path()
    }

    fn log(&self) -> String {
        read_log(&self.tmp.path().join("orthanc.log"))
    }

    /// `Move-SCU request received for AET "DEST"` / `C-GET-SCU request received from AET ...`,
    /// each followed by `(dicom)   (0020,000e)  SeriesInstanceUID = ...` lines.
    fn retrieves(&self) -> Vec<Retrieve> {
        let mut out: Vec<Retrieve> = Vec::new();
        let mut open = false;
        for line in self.log().lines() {
            if let Some((_, rest)) = line.split_once("Move-SCU request received for AET") {
                out.push(Retrieve {
                    op: RetrieveOp::Move,
                    destination: Some(rest.trim().trim_matches('"').to_string()),
                    level: String::new(),
                    uids: Vec::new(),
                });
                open = true;
            } else if line.contains("C-GET-SCU request received") {
                out.push(Retrieve {
                    op: RetrieveOp::Get,
                    destination: None,
                    level: String::new(),
                    uids: Vec::new(),
                });
                open = true;
            } else if open {
                open = out.last_mut().is_some_and(|r| add_identifier(r, line));
            }
        }
        out
    }

    fn find_count(&self) -> usize {
        self.log().matches("Incoming Find request").count()
    }
}

/// A minimal HTTP/1.1 exchange (`Connection: close`), usable from sync and async tests alike.
fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> std::io::Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "bad HTTP response");
    let head_end = find(&buf, b"\r\n\r\n", 0).ok_or_else(bad)?;
    let status = String::from_utf8_lossy(&buf[..head_end])
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    Ok((status, buf[head_end + 4..].to_vec()))
}

/// Whether any process of group `pgid` still exists (zombies included), polling for up to
/// 10 s: SIGKILLed children of a forking server are reaped by init shortly after.
pub fn process_group_alive(pgid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let alive = Command::new("kill")
            .args(["-0", "--", &format!("-{pgid}")])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !alive || Instant::now() > deadline {
            return alive;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `OsString` argument from raw bytes (ISO 2022 escapes in findscu `-k` values).
pub fn raw_arg(bytes: &[u8]) -> OsString {
    use std::os::unix::ffi::OsStringExt;
    OsString::from_vec(bytes.to_vec())
}
