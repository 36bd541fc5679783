//! Configuration: the typed tree of `proxy.toml`, its defaults, human units
//! (`"50GiB"`, `"30s"`), environment overrides (`TSUNAGI_SECTION__KEY`) and validation.
//!
//! Every key has a default, so the gateway runs with no file at all (embedded defaults).
//! Unknown keys are rejected so a typo never silently falls back to a default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Prefix of environment variables that override configuration keys.
pub const ENV_PREFIX: &str = "TSUNAGI_";

/// Errors while loading or validating the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid configuration in {origin}: {message}")]
    Parse { origin: String, message: String },
    #[error("invalid environment override {var}: {message}")]
    Env { var: String, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The whole configuration tree.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub dimse: DimseConfig,
    pub http: HttpConfig,
    pub store: StoreConfig,
    pub pull: PullConfig,
    pub transcode: TranscodeConfig,
    pub jobs: JobsConfig,
    pub auth: crate::auth::AuthConfig,
    pub audit: crate::audit::AuditConfig,
    /// Per-facility read access (see `auth::access`).
    #[serde(rename = "facility")]
    pub facilities: Vec<crate::auth::access::FacilityConfig>,
    #[serde(rename = "upstream")]
    pub upstreams: Vec<UpstreamConfig>,
}

/// The DIMSE side: our application entity and its listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DimseConfig {
    /// Our AE title, as PACS know us.
    pub ae_title: String,
    /// Where the C-STORE / C-ECHO SCP listens. Port 0 binds an ephemeral port.
    pub listen: SocketAddr,
    /// Largest P-DATA PDU we accept.
    pub max_pdu_length: u32,
    /// Associations served at once; further ones are rejected (transient).
    pub max_associations: usize,
    /// How long a peer may stay silent within an association.
    #[serde(with = "human_duration")]
    pub timeout: Duration,
    /// Accept associations whatever Called AE title the peer uses.
    pub accept_any_called_ae: bool,
    /// Calling AE titles (each optionally from an address or CIDR block) allowed to open an
    /// association; empty: any caller. Upstream PACS that C-MOVE to us must be listed.
    pub allowed_callers: Vec<crate::dimse::access::AllowedCaller>,
    /// A second listener speaking DICOM TLS (PS3.15 B.1); needs `tls_cert` and `tls_key`.
    pub tls_listen: Option<SocketAddr>,
    /// PEM certificate chain (leaf first) of the DICOM TLS listener.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificates: when set, TLS callers must present a certificate issued by one.
    pub tls_client_ca: Option<PathBuf>,
}

impl Default for DimseConfig {
    fn default() -> Self {
        Self {
            ae_title: "TSUNAGI".into(),
            listen: SocketAddr::from(([0, 0, 0, 0], 11112)),
            max_pdu_length: 256 * 1024,
            max_associations: 64,
            timeout: Duration::from_secs(60),
            accept_any_called_ae: true,
            allowed_callers: Vec::new(),
            tls_listen: None,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
        }
    }
}

/// The HTTP side: DICOMweb and the admin endpoints.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Where the HTTP server listens. Port 0 binds an ephemeral port.
    pub listen: SocketAddr,
    /// The DICOMweb root: `{base_path}/studies`, ...
    pub base_path: String,
    /// The gateway's public URL (`https://pacs.example.jp`), used in BulkDataURIs and
    /// RetrieveURLs instead of the request's `Host`/`X-Forwarded-*` headers when set.
    pub public_url: Option<String>,
    /// Origins allowed by CORS (`["*"]` for any); empty disables CORS headers.
    pub cors_allow_origins: Vec<String>,
    /// Default QIDO-RS page size when the client gives no `limit`.
    pub qido_default_limit: usize,
    /// Largest QIDO-RS page a client may ask for.
    pub qido_max_limit: usize,
    /// Compress uncompressed (Explicit VR Little Endian) pixel data with gzip, Brotli or
    /// zstd when the client accepts it, as JSON always is: about half the bytes on a slow
    /// link for some CPU. Byte-range responses are never compressed.
    pub compress_pixel_data: bool,
    /// PEM certificate chain (leaf first): with `tls_key`, the listener speaks HTTPS only,
    /// offering HTTP/2 and HTTP/1.1 by ALPN.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Requests handled at once (DICOMweb, admin, metrics); more are answered 503 at once.
    pub max_concurrent_requests: usize,
    /// Largest request body (only admin job creation takes one); more is answered 413.
    #[serde(with = "human_bytes")]
    pub max_request_body: u64,
    /// Header fields a request may carry (HTTP/1.1); more is answered 431.
    pub max_headers: usize,
    /// Largest request head (HTTP/1.1 read buffer) and HTTP/2 header list.
    #[serde(with = "human_bytes")]
    pub max_header_bytes: u64,
    /// A client must send its whole request head within this (then the connection is closed).
    #[serde(with = "human_duration")]
    pub header_read_timeout: Duration,
}

impl HttpConfig {
    /// `https` when the listener speaks TLS.
    pub fn scheme(&self) -> &'static str {
        if self.tls_cert.is_some() {
            "https"
        } else {
            "http"
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            base_path: "/dicom-web".into(),
            public_url: None,
            cors_allow_origins: vec!["*".into()],
            qido_default_limit: 1000,
            qido_max_limit: 10_000,
            compress_pixel_data: true,
            tls_cert: None,
            tls_key: None,
            max_concurrent_requests: 512,
            max_request_body: 1 << 20,
            max_headers: 100,
            max_header_bytes: 64 << 10,
            header_read_timeout: Duration::from_secs(30),
        }
    }
}

/// The cache: files on disk plus the SQLite index, and the in-memory hot tier.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Directory of the disk cache and the index.
    pub path: PathBuf,
    /// Size limit of the disk cache.
    #[serde(with = "human_bytes")]
    pub max_size: u64,
    /// Size of the in-memory hot tier, weighed by bytes.
    #[serde(with = "human_bytes")]
    pub memory: u64,
    /// How long a study pinned by a prefetch job stays after the job's due time (or after
    /// the job finished, for a job without a due time).
    #[serde(with = "human_duration")]
    pub pin_retention: Duration,
    /// How often the size limit is checked when nothing arrives (arrivals check at once).
    #[serde(with = "human_duration")]
    pub evict_interval: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("./tsunagi-data"),
            max_size: 50 * (1 << 30),
            memory: 512 * (1 << 20),
            pin_retention: Duration::from_secs(24 * 3600),
            evict_interval: Duration::from_secs(60),
        }
    }
}

/// What to do with a federated search that has too few criteria to send to every PACS.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum TooBroad {
    /// Answer from the cache only, with a `Warning` saying the PACS were not asked.
    #[default]
    CacheOnly,
    /// Answer 400 with a message saying which criteria to add.
    Reject,
}

/// Federated search and pull-through retrieval across the upstream PACS.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PullConfig {
    /// How long C-FIND results from a PACS are reused for identical searches.
    #[serde(with = "human_duration")]
    pub query_cache_ttl: Duration,
    /// Matching keys a search needs before it is sent to the PACS.
    pub min_criteria: usize,
    /// What to do with a search below `min_criteria`.
    pub too_broad: TooBroad,
    /// Matches taken from one PACS for one search (then C-CANCEL).
    pub max_results: usize,
    /// Further attempts after a transient retrieve failure (with backoff).
    pub retries: u32,
    /// How long a WADO-RS request waits for a retrieve before answering 504.
    #[serde(with = "human_duration")]
    pub wait: Duration,
}

impl Default for PullConfig {
    fn default() -> Self {
        Self {
            query_cache_ttl: Duration::from_secs(30),
            min_criteria: 1,
            too_broad: TooBroad::CacheOnly,
            max_results: 1000,
            retries: 2,
            wait: Duration::from_secs(120),
        }
    }
}

/// On-the-fly conversion: quality of the lossy syntaxes (used only when a client names one).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TranscodeConfig {
    /// JPEG baseline (.50) quality, 1-100.
    pub jpeg_quality: u8,
    /// JPEG-LS near-lossless (.81) NEAR: largest error per sample.
    pub near_lossless: u8,
    /// Lossy HTJ2K (.203) strength: quantisation step of `htj2k_ratio / 2` stored units.
    pub htj2k_ratio: f32,
    /// JPEG quality of `/rendered` when the request gives none.
    pub rendered_quality: u8,
    /// Largest side of a `/thumbnail` when the request gives no viewport.
    pub thumbnail_size: u32,
    /// Transfer syntax to send frames in whenever the client lets the server choose
    /// (`transfer-syntax=*`) or lists it among its preferred ones, and the stored pixels are
    /// native or lossless: e.g. `1.2.840.10008.1.2.4.202` (HTJ2K RPCL, lossless) so that
    /// cornerstone3D viewers display a low resolution from the first bytes. Unset: as stored.
    pub preferred_frame_syntax: Option<String>,
}

impl Default for TranscodeConfig {
    fn default() -> Self {
        Self {
            jpeg_quality: 90,
            near_lossless: 2,
            htj2k_ratio: 10.0,
            rendered_quality: 90,
            thumbnail_size: 128,
            preferred_frame_syntax: None,
        }
    }
}

/// Prefetch jobs (cache warming for scheduled referrals) and their scheduler.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    /// Run the scheduler (jobs can still be created and listed when it is off).
    pub enabled: bool,
    /// UTC offset of times written without one (due times, upstream windows): "+09:00", "Z".
    #[serde(with = "human_offset")]
    pub utc_offset: i32,
    /// Studies retrieved at once per upstream by prefetch (never more than its
    /// `max_associations`; keep it below so a viewer always finds a free association).
    pub per_upstream: usize,
    /// Attempts per study before it is reported failed.
    pub attempts: u32,
    /// Delay before the first retry of a study; doubled for each further attempt.
    #[serde(with = "human_duration")]
    pub backoff: Duration,
    /// Largest delay between two attempts.
    #[serde(with = "human_duration")]
    pub max_backoff: Duration,
    /// After a study arrives, precompute what a viewer asks for first (series thumbnails and
    /// the frame index of every instance) into the memory tier.
    pub prepare: bool,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            utc_offset: 0,
            per_upstream: 1,
            attempts: 5,
            backoff: Duration::from_secs(30),
            max_backoff: Duration::from_secs(3600),
            prepare: true,
        }
    }
}

/// How we retrieve from an upstream PACS.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RetrieveMethod {
    #[default]
    CMove,
    CGet,
}

/// A hospital PACS we query and retrieve from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Short name used in logs, metrics, warnings and the CLI.
    pub name: String,
    /// The PACS's AE title.
    pub ae_title: String,
    /// host:port of the PACS.
    pub address: String,
    #[serde(default)]
    pub retrieve: RetrieveMethod,
    /// The AE title the PACS knows us by for C-MOVE; defaults to `dimse.ae_title`.
    #[serde(default)]
    pub move_destination: Option<String>,
    /// Associations we open to this PACS at most.
    #[serde(default = "default_upstream_associations")]
    pub max_associations: usize,
    /// Connect and DIMSE timeout.
    #[serde(default = "default_upstream_timeout", with = "human_duration")]
    pub timeout: Duration,
    /// Specific Character Set used in C-FIND identifiers sent to this PACS.
    #[serde(default = "default_upstream_charset")]
    pub character_set: String,
    /// Daily time window for prefetch ("19:00-07:00", in `jobs.utc_offset`); viewer
    /// retrievals are never held back by it. Unset: any time.
    #[serde(default)]
    pub window: Option<String>,
    /// Approximate bandwidth cap for prefetch ("5Mbit", "2MB"): after each prefetched study
    /// the next one from this PACS waits until the average stays under it. Unset: no cap.
    #[serde(default)]
    pub bandwidth: Option<String>,
    /// Speak DICOM TLS (PS3.15 B.1) to this PACS instead of plain DICOM.
    #[serde(default)]
    pub tls: bool,
    /// PEM CA certificates that verify the PACS's certificate. Unset: the system roots
    /// ([`SYSTEM_CA_BUNDLE`]).
    #[serde(default)]
    pub tls_ca: Option<PathBuf>,
    /// PEM certificate chain (leaf first) we present for mutual TLS; needs `tls_key`.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// The DNS name or IP address the PACS's certificate must be valid for. Unset: the host
    /// part of `address`.
    #[serde(default)]
    pub tls_server_name: Option<String>,
}

/// The CA bundle that verifies an upstream's certificate when it sets no `tls_ca`.
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The host of `host:port` (`10.0.0.5`, `pacs.example.jp`, `::1` from `[::1]:104`).
pub fn host_of(address: &str) -> &str {
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

impl UpstreamConfig {
    /// The name the PACS's TLS certificate must be valid for: `tls_server_name`, else the
    /// host of `address` (`10.0.0.5`, `pacs.example.jp`, `::1` from `[::1]:104`).
    pub fn tls_server_name(&self) -> &str {
        match &self.tls_server_name {
            Some(name) => name,
            None => host_of(&self.address),
        }
    }

    /// TLS keys that only make sense together (checked by [`Config::validate`]).
    fn validate_tls(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| ConfigError::Invalid(format!("upstream {:?}: {m}", self.name));
        let any_tls_key = self.tls_ca.is_some()
            || self.tls_cert.is_some()
            || self.tls_key.is_some()
            || self.tls_server_name.is_some();
        if !self.tls && any_tls_key {
            return Err(invalid(
                "tls_ca, tls_cert, tls_key and tls_server_name need tls = true".into(),
            ));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(invalid(
                "tls_cert and tls_key go together (our client certificate for mutual TLS): \
                 set both, or neither"
                    .into(),
            ));
        }
        if self.tls {
            let name = self.tls_server_name();
            rustls::pki_types::ServerName::try_from(name).map_err(|_| {
                invalid(format!(
                    "{name:?} is neither a DNS name nor an IP address to verify the PACS's \
                     certificate against (set tls_server_name)"
                ))
            })?;
        }
        Ok(())
    }
}

fn default_upstream_associations() -> usize {
    2
}
fn default_upstream_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_upstream_charset() -> String {
    "ISO_IR 192".into()
}

impl Config {
    /// Load `path` if given (it must exist), else `./proxy.toml` if present, else the embedded
    /// defaults; then apply environment overrides and validate.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let (text, origin) = match path {
            Some(p) => (read(p)?, p.display().to_string()),
            None if Path::new("proxy.toml").exists() => {
                (read(Path::new("proxy.toml"))?, "proxy.toml".into())
            }
            None => (String::new(), "embedded defaults".into()),
        };
        // Only `TSUNAGI_SECTION__KEY`: other `TSUNAGI_*` variables (e.g. a test harness's
        // own) are not configuration.
        let vars = std::env::vars().filter(|(k, _)| k.starts_with(ENV_PREFIX) && k.contains("__"));
        Self::from_toml_with_env(&text, &origin, vars)
    }

    /// Parse a TOML document, apply `(name, value)` overrides, and validate.
    pub fn from_toml_with_env(
        text: &str,
        origin: &str,
        env: impl Iterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let parse_err = |e: toml::de::Error| ConfigError::Parse {
            origin: origin.to_string(),
            message: e.to_string(),
        };
        let mut tree: toml::Value = toml::from_str(text).map_err(parse_err)?;
        for (var, value) in env {
            apply_env_override(&mut tree, &var, &value)?;
        }
        let config: Config = tree.try_into().map_err(parse_err)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks that serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_ae_title("dimse.ae_title", &self.dimse.ae_title)?;
        let base = &self.http.base_path;
        if !base.is_empty() && (!base.starts_with('/') || base.ends_with('/')) {
            return Err(ConfigError::Invalid(format!(
                "http.base_path {base:?} must start with '/' and not end with '/' (or be empty)"
            )));
        }
        if let Some(url) = &self.http.public_url {
            let ok = (url.starts_with("http://") || url.starts_with("https://"))
                && !url.ends_with('/')
                && url.chars().all(|c| c.is_ascii_graphic());
            if !ok {
                return Err(ConfigError::Invalid(format!(
                    "http.public_url {url:?} must be an http(s) URL without a trailing '/'"
                )));
            }
        }
        if self.http.max_headers < 16 || self.http.max_header_bytes < 4096 {
            return Err(ConfigError::Invalid(
                "http.max_headers must be at least 16 and http.max_header_bytes at least 4KiB \
                 (browsers and viewers send a dozen headers and a bearer token)"
                    .into(),
            ));
        }
        if self.http.max_concurrent_requests == 0 {
            return Err(ConfigError::Invalid(
                "http.max_concurrent_requests must be at least 1".into(),
            ));
        }
        if self.jobs.per_upstream == 0 || self.jobs.attempts == 0 {
            return Err(ConfigError::Invalid(
                "jobs.per_upstream and jobs.attempts must be at least 1".into(),
            ));
        }
        if self.dimse.max_pdu_length < 4096 {
            return Err(ConfigError::Invalid(
                "dimse.max_pdu_length must be at least 4096".into(),
            ));
        }
        self.validate_dimse_access()?;
        if self.http.tls_cert.is_some() != self.http.tls_key.is_some() {
            return Err(ConfigError::Invalid(
                "http.tls_cert and http.tls_key go together: set both for HTTPS, or neither".into(),
            ));
        }
        if let Some(uid) = &self.transcode.preferred_frame_syntax {
            const LOSSLESS_TARGETS: [&str; 6] = [
                "1.2.840.10008.1.2.1",
                "1.2.840.10008.1.2.5",
                "1.2.840.10008.1.2.4.70",
                "1.2.840.10008.1.2.4.80",
                "1.2.840.10008.1.2.4.201",
                "1.2.840.10008.1.2.4.202",
            ];
            if !LOSSLESS_TARGETS.contains(&uid.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "transcode.preferred_frame_syntax {uid:?} must be a lossless syntax we encode: {}",
                    LOSSLESS_TARGETS.join(", ")
                )));
            }
        }
        self.auth.validate()?;
        self.validate_facilities()?;
        if let Some(syslog) = &self.audit.syslog {
            crate::audit::syslog::check(syslog).map_err(ConfigError::Invalid)?;
        }
        let mut names = std::collections::HashSet::new();
        for up in &self.upstreams {
            if !names.insert(up.name.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "upstream name {:?} is used twice",
                    up.name
                )));
            }
            check_ae_title(&format!("upstream {:?} ae_title", up.name), &up.ae_title)?;
            if let Some(dest) = &up.move_destination {
                check_ae_title(&format!("upstream {:?} move_destination", up.name), dest)?;
            }
            if up.max_associations == 0 {
                return Err(ConfigError::Invalid(format!(
                    "upstream {:?}: max_associations must be at least 1",
                    up.name
                )));
            }
            if let Some(w) = &up.window {
                DailyWindow::parse(w).map_err(|e| {
                    ConfigError::Invalid(format!("upstream {:?}: window {e}", up.name))
                })?;
            }
            if let Some(b) = &up.bandwidth {
                parse_bandwidth(b).map_err(|e| {
                    ConfigError::Invalid(format!("upstream {:?}: bandwidth {e}", up.name))
                })?;
            }
            if !up.address.contains(':') {
                return Err(ConfigError::Invalid(format!(
                    "upstream {:?}: address {:?} must be host:port",
                    up.name, up.address
                )));
            }
            up.validate_tls()?;
        }
        Ok(())
    }

    fn validate_dimse_access(&self) -> Result<(), ConfigError> {
        let d = &self.dimse;
        for c in &d.allowed_callers {
            check_ae_title("dimse.allowed_callers ae_title", &c.ae_title)?;
        }
        crate::dimse::access::CallerPolicy::new(&d.allowed_callers)
            .map_err(|e| ConfigError::Invalid(format!("dimse.allowed_callers: address {e}")))?;
        let tls_files = d.tls_cert.is_some() && d.tls_key.is_some();
        if d.tls_listen.is_some() != tls_files
            || d.tls_cert.is_some() != d.tls_key.is_some()
            || (d.tls_client_ca.is_some() && d.tls_listen.is_none())
        {
            return Err(ConfigError::Invalid(
                "dimse.tls_listen, dimse.tls_cert and dimse.tls_key go together (and \
                 dimse.tls_client_ca needs them): set all three for DICOM TLS, or none"
                    .into(),
            ));
        }
        Ok(())
    }

    fn validate_facilities(&self) -> Result<(), ConfigError> {
        let mut names = std::collections::HashSet::new();
        for f in &self.facilities {
            if !names.insert(f.name.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "facility name {:?} is used twice",
                    f.name
                )));
            }
            for source in &f.upstreams {
                if !self.is_source(source) {
                    return Err(ConfigError::Invalid(format!(
                        "facility {:?}: {source:?} is neither an [[upstream]] name nor \"local\"",
                        f.name
                    )));
                }
            }
        }
        Ok(())
    }

    /// Is `name` a source of studies: an `[[upstream]]` name, or `"local"` (pushed to us)?
    pub fn is_source(&self, name: &str) -> bool {
        name == crate::auth::access::LOCAL || self.upstreams.iter().any(|u| u.name == name)
    }

    /// The AE title a given upstream should C-MOVE to.
    pub fn move_destination<'a>(&'a self, up: &'a UpstreamConfig) -> &'a str {
        up.move_destination
            .as_deref()
            .unwrap_or(&self.dimse.ae_title)
    }
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn check_ae_title(what: &str, ae: &str) -> Result<(), ConfigError> {
    let ok = !ae.trim().is_empty()
        && ae.len() <= 16
        && ae.chars().all(|c| c.is_ascii_graphic() || c == ' ')
        && !ae.contains('\\');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Invalid(format!(
            "{what} {ae:?} must be 1 to 16 printable ASCII characters without '\\'"
        )))
    }
}

/// Set `TSUNAGI_HTTP__LISTEN=...` as `http.listen`; `TSUNAGI_UPSTREAM__0__ADDRESS` indexes arrays.
fn apply_env_override(tree: &mut toml::Value, var: &str, value: &str) -> Result<(), ConfigError> {
    let env_err = |message: String| ConfigError::Env {
        var: var.to_string(),
        message,
    };
    let path: Vec<String> = var[ENV_PREFIX.len()..]
        .split("__")
        .map(|s| s.to_ascii_lowercase())
        .collect();
    if path.iter().any(String::is_empty) {
        return Err(env_err("empty key segment".into()));
    }
    let mut node = tree;
    for (i, key) in path.iter().enumerate() {
        let last = i + 1 == path.len();
        node = match node {
            toml::Value::Table(t) if last => {
                t.insert(key.clone(), env_value(value));
                return Ok(());
            }
            toml::Value::Table(t) => t
                .entry(key.clone())
                .or_insert_with(|| toml::Value::Table(Default::default())),
            toml::Value::Array(a) => {
                let idx: usize = key
                    .parse()
                    .map_err(|_| env_err(format!("{key:?} is not an array index")))?;
                let len = a.len();
                let slot = a
                    .get_mut(idx)
                    .ok_or_else(|| env_err(format!("index {idx} out of range ({len})")))?;
                if last {
                    *slot = env_value(value);
                    return Ok(());
                }
                slot
            }
            _ => return Err(env_err(format!("{key:?} is not a section"))),
        };
    }
    Ok(())
}

/// An override value is a TOML literal when it parses as one (numbers, booleans, arrays),
/// otherwise a plain string.
fn env_value(value: &str) -> toml::Value {
    let doc = format!("v = {value}");
    match toml::from_str::<toml::Table>(&doc) {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(value.into())),
        Err(_) => toml::Value::String(value.into()),
    }
}

/// Parse "512MiB", "50GiB", "1.5GB", "1048576" into bytes.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{text:?} is not a size like \"512MiB\""))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        "t" | "tb" => 1_000_000_000_000,
        "tib" => 1 << 40,
        other => return Err(format!("unknown size unit {other:?} in {text:?}")),
    };
    Ok((n * mult as f64) as u64)
}

/// Parse "30s", "500ms", "2m", "1h", "90d" into a duration.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like \"30s\""))?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        other => return Err(format!("unknown duration unit {other:?} in {text:?}")),
    };
    Ok(Duration::from_secs_f64(secs))
}

/// A daily window of minutes since midnight, `start..end`, wrapping past midnight when
/// `end <= start` ("19:00-07:00").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DailyWindow {
    pub start: u32,
    pub end: u32,
}

impl DailyWindow {
    pub fn parse(text: &str) -> Result<Self, String> {
        let (a, b) = text
            .split_once('-')
            .ok_or_else(|| format!("{text:?} is not a window like \"19:00-07:00\""))?;
        Ok(DailyWindow {
            start: parse_hhmm(a)?,
            end: parse_hhmm(b)?,
        })
    }

    /// Is `minute` (minutes since local midnight) inside the window?
    pub fn contains(&self, minute: u32) -> bool {
        if self.start < self.end {
            (self.start..self.end).contains(&minute)
        } else {
            minute >= self.start || minute < self.end
        }
    }

    /// Minutes from `minute` until the window opens (0 when open).
    pub fn minutes_until_open(&self, minute: u32) -> u32 {
        if self.contains(minute) {
            0
        } else {
            (self.start + 1440 - minute) % 1440
        }
    }
}

fn parse_hhmm(text: &str) -> Result<u32, String> {
    let (h, m) = text
        .trim()
        .split_once(':')
        .ok_or_else(|| format!("{text:?} is not a time like \"19:00\""))?;
    let h: u32 = h.parse().map_err(|_| format!("bad hour in {text:?}"))?;
    let m: u32 = m.parse().map_err(|_| format!("bad minute in {text:?}"))?;
    if h > 24 || m > 59 || (h == 24 && m > 0) {
        return Err(format!("{text:?} is not a time of day"));
    }
    Ok(h * 60 + m)
}

/// Parse "5Mbit", "100kbit", "2MB" (bytes per second) into bytes per second.
pub fn parse_bandwidth(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let lower = t.to_ascii_lowercase();
    let bits = ["gbit", "mbit", "kbit", "bit"]
        .iter()
        .find(|u| lower.ends_with(*u))
        .map(|u| (t.len() - u.len(), *u));
    let rate = match bits {
        Some((at, unit)) => {
            let n: f64 = t[..at]
                .trim()
                .parse()
                .map_err(|_| format!("{text:?} is not a rate like \"5Mbit\""))?;
            let mult = match unit {
                "gbit" => 1e9,
                "mbit" => 1e6,
                "kbit" => 1e3,
                _ => 1.0,
            };
            (n * mult / 8.0) as u64
        }
        None => parse_bytes(t.trim_end_matches("/s"))?,
    };
    if rate == 0 {
        return Err(format!("{text:?} is zero"));
    }
    Ok(rate)
}

/// Parse a UTC offset: "Z", "+09:00", "-05:30", "+0900" into seconds east of UTC.
pub fn parse_offset(text: &str) -> Result<i32, String> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("z") || t.eq_ignore_ascii_case("utc") {
        return Ok(0);
    }
    let bad = || format!("{text:?} is not a UTC offset like \"+09:00\"");
    let (sign, rest) = match t.as_bytes().first() {
        Some(b'+') => (1, &t[1..]),
        Some(b'-') => (-1, &t[1..]),
        _ => return Err(bad()),
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let h: i32 = digits[..2].parse().map_err(|_| bad())?;
    let m: i32 = digits[2..].parse().map_err(|_| bad())?;
    if h > 14 || m > 59 {
        return Err(bad());
    }
    Ok(sign * (h * 3600 + m * 60))
}

mod human_offset {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_offset(&s).map_err(serde::de::Error::custom)
    }
}

mod human_bytes {
    use serde::{Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Int(u64),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(n),
            Raw::Text(s) => super::parse_bytes(&s).map_err(serde::de::Error::custom),
        }
    }
}

pub(crate) mod human_duration {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        match Raw::deserialize(d)? {
            Raw::Secs(n) => Ok(Duration::from_secs(n)),
            Raw::Text(s) => super::parse_duration(&s).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_proxy_toml_parses() {
        let text = include_str!("../proxy.toml");
        let cfg = Config::from_toml_with_env(text, "proxy.toml", std::iter::empty()).unwrap();
        assert_eq!(cfg.dimse.ae_title, "TSUNAGI");
        assert_eq!(cfg.http.base_path, "/dicom-web");
    }

    #[test]
    fn embedded_defaults_are_valid() {
        let cfg = Config::from_toml_with_env("", "defaults", std::iter::empty()).unwrap();
        assert_eq!(cfg.store.max_size, 50 << 30);
        assert_eq!(cfg.store.memory, 512 << 20);
        assert!(cfg.upstreams.is_empty());
    }

    #[test]
    fn env_overrides_sections_and_arrays() {
        let text = "[[upstream]]\nname = \"a\"\nae_title = \"A\"\naddress = \"h:1\"\n";
        let env = vec![
            (
                "TSUNAGI_HTTP__LISTEN".to_string(),
                "127.0.0.1:0".to_string(),
            ),
            ("TSUNAGI_STORE__MEMORY".to_string(), "1MiB".to_string()),
            (
                "TSUNAGI_UPSTREAM__0__MAX_ASSOCIATIONS".to_string(),
                "4".to_string(),
            ),
        ];
        let cfg = Config::from_toml_with_env(text, "t", env.into_iter()).unwrap();
        assert_eq!(cfg.http.listen.port(), 0);
        assert_eq!(cfg.store.memory, 1 << 20);
        assert_eq!(cfg.upstreams[0].max_associations, 4);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = Config::from_toml_with_env("[http]\nlisten_on = 1", "t", std::iter::empty())
            .unwrap_err();
        assert!(err.to_string().contains("listen_on"), "{err}");
    }

    #[test]
    fn human_units() {
        assert_eq!(parse_bytes("50GiB").unwrap(), 50 << 30);
        assert_eq!(parse_bytes("1.5 KiB").unwrap(), 1536);
        assert!(parse_bytes("12 parsecs").is_err());
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
    }

    #[test]
    fn windows_rates_and_offsets() {
        let w = DailyWindow::parse("19:00-07:00").unwrap();
        assert!(w.contains(20 * 60) && w.contains(6 * 60) && !w.contains(12 * 60));
        assert_eq!(w.minutes_until_open(18 * 60), 60);
        let day = DailyWindow::parse("09:00-17:30").unwrap();
        assert!(day.contains(9 * 60) && !day.contains(17 * 60 + 30));
        assert!(DailyWindow::parse("25:00-01:00").is_err());
        assert_eq!(parse_bandwidth("5Mbit").unwrap(), 625_000);
        assert_eq!(parse_bandwidth("2MB").unwrap(), 2_000_000);
        assert!(parse_bandwidth("0bit").is_err());
        assert_eq!(parse_offset("+09:00").unwrap(), 9 * 3600);
        assert_eq!(parse_offset("-0530").unwrap(), -(5 * 3600 + 1800));
        assert_eq!(parse_offset("Z").unwrap(), 0);
        assert!(parse_offset("9").is_err());
        let bad =
            "[[upstream]]\nname = \"a\"\nae_title = \"A\"\naddress = \"h:1\"\nwindow = \"7pm\"\n";
        assert!(Config::from_toml_with_env(bad, "t", std::iter::empty()).is_err());
    }

    #[test]
    fn dimse_access_and_tls_keys() {
        let ok = "[dimse]\nallowed_callers = [{ ae_title = \"HOSPA\", address = \"10.0.0.0/8\" }, { ae_title = \"CT1\" }]\n";
        let cfg = Config::from_toml_with_env(ok, "t", std::iter::empty()).unwrap();
        assert_eq!(cfg.dimse.allowed_callers.len(), 2);
        let bad =
            "[dimse]\nallowed_callers = [{ ae_title = \"HOSPA\", address = \"10.0.0.0/40\" }]\n";
        assert!(Config::from_toml_with_env(bad, "t", std::iter::empty()).is_err());
        let half = "[dimse]\ntls_listen = \"0.0.0.0:2762\"\ntls_cert = \"c.pem\"\n";
        assert!(Config::from_toml_with_env(half, "t", std::iter::empty()).is_err());
        let full =
            "[dimse]\ntls_listen = \"0.0.0.0:2762\"\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n";
        assert!(Config::from_toml_with_env(full, "t", std::iter::empty()).is_ok());
    }

    #[test]
    fn upstream_tls_keys() {
        let up = |extra: &str| {
            format!("[[upstream]]\nname = \"a\"\nae_title = \"A\"\naddress = \"10.0.0.5:2762\"\n{extra}")
        };
        let parse = |extra: &str| Config::from_toml_with_env(&up(extra), "t", std::iter::empty());
        let cfg = parse("tls = true\n").unwrap();
        assert!(cfg.upstreams[0].tls);
        assert_eq!(cfg.upstreams[0].tls_server_name(), "10.0.0.5");
        let cfg = parse("tls = true\ntls_server_name = \"pacs.example.jp\"\n").unwrap();
        assert_eq!(cfg.upstreams[0].tls_server_name(), "pacs.example.jp");
        let mtls = "tls = true\ntls_ca = \"ca.pem\"\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n";
        assert!(parse(mtls).is_ok());
        let err = parse("tls_ca = \"ca.pem\"\n").unwrap_err().to_string();
        assert!(err.contains("need tls = true"), "{err}");
        let err = parse("tls = true\ntls_cert = \"c.pem\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("tls_cert and tls_key go together"), "{err}");
        let err = parse("tls = true\ntls_server_name = \"not a name\"\n").unwrap_err();
        assert!(err.to_string().contains("tls_server_name"), "{err}");
        let v6 = up("tls = true\n").replace("10.0.0.5:2762", "[::1]:2762");
        let cfg = Config::from_toml_with_env(&v6, "t", std::iter::empty()).unwrap();
        assert_eq!(cfg.upstreams[0].tls_server_name(), "::1");
    }

    #[test]
    fn bad_ae_title_is_rejected() {
        let err = Config::from_toml_with_env(
            "[dimse]\nae_title = \"WAY_TOO_LONG_AE_TITLE\"",
            "t",
            std::iter::empty(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("ae_title"));
    }
}
