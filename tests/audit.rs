//! The audit trail: each HTTP access yields exactly one well-formed JSON line (PS3.15 A.5
//! vocabulary) with the right event, outcome, user, address and study; `/healthz` none.

mod common;

use std::time::{Duration, Instant};

use common::pki::Pki;
use common::*;
use serde_json::Value;

const KEY: &str = "auditor-key-0123456789";

async fn get_as(url: &str, key: Option<&str>) -> u16 {
    let mut req = reqwest::Client::new().get(url);
    if let Some(k) = key {
        req = req.header("Authorization", format!("Bearer {k}"));
    }
    req.send().await.expect("request").status().as_u16()
}

fn records(path: &std::path::Path, want: usize) -> Vec<Value> {
    audit_records(path, |r| r.len() >= want)
}

#[tokio::test]
async fn one_record_per_access() {
    let keys = format!("[{{name = \"svc-viewer\", key = \"{KEY}\", roles = [\"tsunagi-admin\"]}}]");
    let env = [
        ("TSUNAGI_AUTH__MODE", "api-key"),
        ("TSUNAGI_AUTH__API_KEY", keys.as_str()),
    ];
    let gw = Gateway::start_with_env(&env);
    let base = gw.base();
    let missing = "1.2.392.200036.9999.1";
    let asks = [
        (
            format!("{base}/studies?PatientID=JP-0001"),
            Some(KEY),
            200,
            "110112",
            0,
        ),
        (format!("{base}/studies"), None, 401, "110112", 4),
        (
            format!("{base}/studies/{missing}/metadata"),
            Some(KEY),
            404,
            "110103",
            4,
        ),
        (
            format!("http://{}/admin/cache", gw.http),
            Some(KEY),
            200,
            "110100",
            0,
        ),
    ];
    for (url, key, status, _, _) in &asks {
        assert_eq!(get_as(url, *key).await, *status, "{url}");
    }
    assert_eq!(
        get_as(&format!("http://{}/healthz", gw.http), None).await,
        200
    );
    let path = gw.dir.join("audit.jsonl");
    let recs = records(&path, asks.len());
    std::thread::sleep(Duration::from_millis(300));
    let recs_later = records(&path, asks.len());
    assert_eq!(recs.len(), asks.len(), "{recs:#?}");
    assert_eq!(recs_later.len(), asks.len(), "healthz is not audited");
    for (rec, (url, key, _, event, outcome)) in recs.iter().zip(&asks) {
        assert_eq!(rec["EventID"]["csd-code"], *event, "{url}: {rec}");
        assert_eq!(rec["EventID"]["codeSystemName"], "DCM");
        assert_eq!(rec["EventOutcomeIndicator"], *outcome, "{url}: {rec}");
        let user = if key.is_some() {
            "svc-viewer"
        } else {
            "unauthenticated"
        };
        assert_eq!(rec["ActiveParticipant"]["UserID"], user);
        assert_eq!(
            rec["ActiveParticipant"]["NetworkAccessPointID"],
            "127.0.0.1"
        );
        assert!(rec["EventDateTime"].as_str().unwrap().ends_with('Z'));
        assert!(
            !rec.to_string().contains("JP-0001"),
            "no query strings: {rec}"
        );
    }
    assert_eq!(
        recs[2]["ParticipantObject"][0]["ParticipantObjectID"],
        missing
    );
    assert_eq!(
        recs[2]["ParticipantObject"][0]["ParticipantObjectIDTypeCode"]["csd-code"],
        "110180"
    );
}

/// rsyslogd in the foreground on a free port, receiving syslog over TLS (gtls) and writing
/// each message's fields, one line per message, to `out.log`.
struct Rsyslog {
    child: std::process::Child,
    port: u16,
    out: std::path::PathBuf,
}

impl Rsyslog {
    fn start(bin: &std::path::Path, dir: &std::path::Path, pki: &Pki) -> Rsyslog {
        let p = |f: &str| dir.join(f).display().to_string();
        let conf = format!(
            "global(workDirectory=\"{dir}\" defaultNetstreamDriver=\"gtls\" \
               defaultNetstreamDriverCAFile=\"{ca}\" defaultNetstreamDriverCertFile=\"{cert}\" \
               defaultNetstreamDriverKeyFile=\"{key}\")\n\
             module(load=\"imtcp\" streamDriver.name=\"gtls\" streamDriver.mode=\"1\" streamDriver.authMode=\"anon\")\n\
             input(type=\"imtcp\" port=\"0\" listenPortFileName=\"{port}\")\n\
             template(name=\"fields\" type=\"string\" \
               string=\"%pri%|%protocol-version%|%timereported:::date-rfc3339%|%hostname%|%app-name%|%procid%|%msgid%|%msg%\\n\")\n\
             action(type=\"omfile\" file=\"{out}\" template=\"fields\")\n",
            dir = dir.display(),
            ca = pki.path("ca.pem"),
            cert = pki.path("server.pem"),
            key = pki.path("server.key"),
            port = p("port"),
            out = p("out.log"),
        );
        std::fs::write(dir.join("rsyslog.conf"), conf).unwrap();
        let child = std::process::Command::new(bin)
            .args(["-n", "-f", &p("rsyslog.conf"), "-i", &p("rsyslog.pid")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start rsyslogd");
        let deadline = Instant::now() + Duration::from_secs(20);
        let port = loop {
            let text = std::fs::read_to_string(dir.join("port")).unwrap_or_default();
            if let Ok(port) = text.trim().parse::<u16>() {
                break port;
            }
            assert!(Instant::now() < deadline, "rsyslogd did not listen");
            std::thread::sleep(Duration::from_millis(50));
        };
        Rsyslog {
            child,
            port,
            out: dir.join("out.log"),
        }
    }

    fn lines(&self, want: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = std::fs::read_to_string(&self.out).unwrap_or_default();
            let lines: Vec<String> = text.lines().map(String::from).collect();
            if lines.len() >= want || Instant::now() > deadline {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `[audit.syslog]`: the same records reach a real collector (rsyslog over TLS, RFC 5425) as
/// RFC 5424 messages: facility authpriv, severity by outcome, APP-NAME tsunagi, MSGID the
/// DICOM event code, MSG the JSON record that the file holds.
#[tokio::test]
async fn records_reach_rsyslog_over_tls() {
    let Some(rsyslogd) = peer(
        "/usr/sbin/rsyslogd",
        "it is the syslog collector (apt-get install rsyslog rsyslog-gnutls)",
    ) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(tmp.path());
    let collector = Rsyslog::start(&rsyslogd, tmp.path(), &pki);
    let keys = format!("[{{name = \"svc-viewer\", key = \"{KEY}\", roles = [\"tsunagi-admin\"]}}]");
    let address = format!("127.0.0.1:{}", collector.port);
    let ca = pki.path("ca.pem");
    let env = [
        ("TSUNAGI_AUTH__MODE", "api-key"),
        ("TSUNAGI_AUTH__API_KEY", keys.as_str()),
        ("TSUNAGI_AUDIT__SYSLOG__ADDRESS", address.as_str()),
        ("TSUNAGI_AUDIT__SYSLOG__CA", ca.as_str()),
        ("TSUNAGI_AUDIT__SYSLOG__HOSTNAME", "gw-test"),
    ];
    let gw = Gateway::start_with_env(&env);
    let base = gw.base();
    assert_eq!(
        get_as(&format!("{base}/studies?PatientID=X"), Some(KEY)).await,
        200
    );
    assert_eq!(get_as(&format!("{base}/studies"), None).await, 401);

    let lines = collector.lines(2);
    assert_eq!(lines.len(), 2, "{lines:?}");
    let file = records(&gw.dir.join("audit.jsonl"), 2);
    for ((line, rec), (pri, code)) in lines
        .iter()
        .zip(&file)
        .zip([("85", "110112"), ("84", "110112")])
    {
        let f: Vec<&str> = line.splitn(8, '|').collect();
        assert_eq!(f[0], pri, "authpriv.notice / authpriv.warning: {line}");
        assert_eq!(f[1], "1", "RFC 5424 version: {line}");
        assert!(
            f[2].starts_with("20") && f[2].contains('T'),
            "timestamp: {line}"
        );
        assert_eq!(
            &f[3..7],
            &["gw-test", "tsunagi", &gw.child.id().to_string(), code]
        );
        let msg = f[7].trim_start_matches('\u{FEFF}');
        let sent: Value = serde_json::from_str(msg).expect("MSG is the JSON record");
        assert_eq!(&sent, rec, "the collector gets what the file holds");
    }

    // A collector that goes away holds nothing up: requests and the file go on.
    drop(collector);
    assert_eq!(
        get_as(&format!("{base}/studies?PatientID=Y"), Some(KEY)).await,
        200
    );
    assert_eq!(records(&gw.dir.join("audit.jsonl"), 3).len(), 3);
}
