//! Outbound DICOM TLS against a real PACS: Debian's Orthanc 1.10 (DCMTK's TLS layer) speaking
//! DICOM TLS only on its DICOM port, with certificates made per test (a CA, a server
//! certificate for the IP address 127.0.0.1, our client certificate). Through `[[upstream]]`
//! tables with `tls = true`:
//!
//! - C-ECHO (`tsunagi echo`), a federated QIDO-RS (C-FIND) and a cold WADO-RS read (C-GET)
//!   byte for byte, the certificate verified for its IP address; a wrong `tls_server_name` fails;
//! - a PACS whose certificate comes from a CA we do not trust fails with a clear TLS error (502
//!   to the viewer, a Warning on the search, the reason in the log) and the gateway stays up;
//! - mutual TLS: a PACS that requires a client certificate accepts ours (`tls_cert`,
//!   `tls_key`) and refuses us without one or with an untrusted one;
//! - C-MOVE over a TLS association (the instances come back on Orthanc's own association).

mod common;

use std::collections::BTreeSet;

use common::pacs::*;
use common::pki::Pki;
use common::*;
use serde_json::Value;

const AS_STORED: &str = "multipart/related; type=\"application/dicom\"; transfer-syntax=*";
/// Patient JP-0001's study at hospital B: 6 CT slices and 2 JPEG 2000 instances.
const STUDY: &str = "hospb/jp-0001/";

/// An Orthanc speaking DICOM TLS with `{server}.pem` (`server`: from our CA; `rogue-server`:
/// from another CA), loaded with [`STUDY`]; with the PKI and the directory holding it.
fn tls_pacs(server: &str, require_client_cert: bool) -> Option<(Orthanc, Pki, tempfile::TempDir)> {
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = Pki::new(dir.path());
    let tls = OrthancTls {
        cert: pki.path(&format!("{server}.pem")),
        key: pki.path(&format!("{server}.key")),
        trusted: pki.path("ca.pem"),
        require_client_cert,
        // the readiness check: our client certificate, the server's not checked (rogue-server)
        echo_args: [
            "+tls",
            &pki.path("client.key"),
            &pki.path("client.pem"),
            "-ic",
        ]
        .map(String::from)
        .to_vec(),
    };
    let pacs = Orthanc::start_tls("HOSPB", &pacs_files(STUDY), &tls)?;
    Some((pacs, pki, dir))
}

/// An `[[upstream]]` table for `pacs` (C-GET) with `tls = true` and `extra` TLS keys.
fn upstream(pacs: &Orthanc, name: &str, extra: &[String]) -> String {
    upstream_retrieving(pacs, name, "c-get", extra)
}

/// [`upstream`] retrieving by `retrieve` (`"c-get"` or `"c-move"`).
fn upstream_retrieving(pacs: &Orthanc, name: &str, retrieve: &str, extra: &[String]) -> String {
    let mut table = pacs.upstream_toml(name, retrieve).trim_end().to_string();
    table.push_str("\ntls = true\n");
    for line in extra {
        table.push_str(line);
        table.push('\n');
    }
    table + "\n"
}

/// `key = 'path'` for a file of the PKI.
fn key(pki: &Pki, key: &str, file: &str) -> String {
    format!("{key} = '{}'", pki.path(file))
}

/// `tsunagi echo` on a configuration of `[[upstream]]` tables: success and each upstream's
/// line of the table.
fn echo_all(tables: &[String]) -> (bool, Vec<String>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("echo.toml");
    std::fs::write(&path, tables.concat()).expect("write echo.toml");
    let (ok, out) = tsunagi(&["echo", "--config", path.to_str().expect("utf-8 path")]);
    eprintln!("tsunagi echo:\n{out}");
    (ok, out.lines().skip(1).map(str::to_string).collect())
}

/// The line of `upstream` in `tsunagi echo`'s table.
fn row<'a>(rows: &'a [String], upstream: &str) -> &'a str {
    rows.iter()
        .find(|l| l.starts_with(&format!("{upstream} ")))
        .unwrap_or_else(|| panic!("no row for {upstream} in {rows:?}"))
}

/// QIDO-RS for JP-0001 finds hospital B's study (and nothing is missing: no Warning).
async fn search_finds_the_study(gw: &Gateway) {
    let url = format!("{}/studies?PatientID=JP-0001", gw.base());
    let (status, _, headers, body) = get(&url, "application/dicom+json").await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(
        headers.get("warning").is_none(),
        "{headers:?}\n{}",
        gw.log()
    );
    let rows: Value = serde_json::from_slice(&body).expect("json");
    let expected: BTreeSet<String> = [pacs_uid(STUDY, "study_uid")].into();
    assert_eq!(uids(&rows, "0020000D"), expected);
    assert_eq!(rows[0]["00080054"]["Value"][0], "HOSPB", "{rows}");
}

/// A cold WADO-RS read of `prefix` (study or series) pulls it with one `op`: every instance,
/// each data set byte for byte as stored in the PACS.
async fn retrieve_is_byte_for_byte(gw: &Gateway, pacs: &Orthanc, prefix: &str, op: RetrieveOp) {
    let study = pacs_uid(prefix, "study_uid");
    let mut url = format!("{}/studies/{study}", gw.base());
    if prefix != STUDY {
        url = format!("{url}/series/{}", pacs_uid(prefix, "series_uid"));
    }
    let (status, ct, _, body) = get(&url, AS_STORED).await;
    assert_eq!(
        status,
        200,
        "{}\n{}",
        String::from_utf8_lossy(&body),
        gw.log()
    );
    assert_served_as_stored(&ct, &body, prefix, "after the pull over TLS");
    let gets = pacs.retrieves();
    assert_eq!(gets.len(), 1, "one retrieve: {gets:?}");
    assert_eq!(gets[0].op, op);
}

#[tokio::test(flavor = "multi_thread")]
async fn search_and_retrieve_over_tls_with_the_certificate_verified_for_its_ip_address() {
    let Some((pacs, pki, _dir)) = tls_pacs("server", false) else {
        return;
    };
    assert!(
        !echo(pacs.ae_title(), pacs.addr()),
        "plain DICOM reaches a PACS that should speak TLS only"
    );
    let ca = key(&pki, "tls_ca", "ca.pem");
    let wrong_name = "tls_server_name = 'pacs.example.jp'".to_string();
    let (ok, rows) = echo_all(&[
        upstream(&pacs, "hospital-b", std::slice::from_ref(&ca)),
        upstream(&pacs, "wrong-name", &[ca.clone(), wrong_name]),
    ]);
    assert!(!ok, "one upstream failed, so echo fails");
    assert!(row(&rows, "hospital-b").ends_with(" ms)"), "{rows:?}");
    let failed = row(&rows, "wrong-name");
    let expected = format!(
        "FAILED: wrong-name: TLS handshake with {} failed",
        pacs.addr()
    );
    assert!(failed.contains(&expected), "{failed}");
    assert!(
        failed.contains("certificate not valid for name \"pacs.example.jp\""),
        "{failed}"
    );

    let gw = Gateway::start_with_config(&upstream(&pacs, "hospital-b", &[ca]));
    search_finds_the_study(&gw).await;
    retrieve_is_byte_for_byte(&gw, &pacs, STUDY, RetrieveOp::Get).await;
    assert_eq!(pacs.find_count(), 1, "{}", pacs.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pacs_certificate_from_an_untrusted_ca_fails_clearly_and_the_gateway_stays_up() {
    let Some((pacs, pki, _dir)) = tls_pacs("rogue-server", false) else {
        return;
    };
    let table = upstream(&pacs, "hospital-b", &[key(&pki, "tls_ca", "ca.pem")]);
    let reason = format!(
        "hospital-b: TLS handshake with {} failed: its certificate is not issued by a CA we trust",
        pacs.addr()
    );
    let (ok, rows) = echo_all(std::slice::from_ref(&table));
    assert!(!ok);
    assert!(row(&rows, "hospital-b").contains(&reason), "{rows:?}");

    let gw = Gateway::start_with_config(&table);
    let url = format!("{}/studies?PatientID=JP-0001", gw.base());
    let (status, _, headers, _) = get(&url, "application/dicom+json").await;
    assert_eq!(status, 200, "the search is answered from the cache");
    let warning = headers
        .get("warning")
        .and_then(|w| w.to_str().ok())
        .unwrap_or_default();
    assert!(warning.contains(&reason), "{headers:?}");

    let study = pacs_uid(STUDY, "study_uid");
    let (status, _, _, body) = get(&format!("{}/studies/{study}", gw.base()), AS_STORED).await;
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 502, "{body}");
    assert!(body.contains(&reason), "{body}");
    assert!(
        gw.log().contains(&reason),
        "the reason is logged:\n{}",
        gw.log()
    );

    let health = get_json(&format!("http://{}/healthz", gw.http)).await;
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(pacs.find_count(), 0, "no C-FIND got through");
}

#[tokio::test(flavor = "multi_thread")]
async fn mutual_tls_with_a_pacs_that_requires_our_certificate() {
    let Some((pacs, pki, _dir)) = tls_pacs("server", true) else {
        return;
    };
    let ca = key(&pki, "tls_ca", "ca.pem");
    let ours = vec![
        ca.clone(),
        key(&pki, "tls_cert", "client.pem"),
        key(&pki, "tls_key", "client.key"),
    ];
    let rogue = [
        ca.clone(),
        key(&pki, "tls_cert", "rogue.pem"),
        key(&pki, "tls_key", "rogue.key"),
    ];
    let (ok, rows) = echo_all(&[
        upstream(&pacs, "with-cert", &ours),
        upstream(&pacs, "without-cert", &[ca]),
        upstream(&pacs, "rogue-cert", &rogue),
    ]);
    assert!(!ok);
    assert!(row(&rows, "with-cert").ends_with(" ms)"), "{rows:?}");
    for refused in ["without-cert", "rogue-cert"] {
        let expected = format!(
            "FAILED: {refused}: TLS handshake with {} failed",
            pacs.addr()
        );
        let failed = row(&rows, refused);
        assert!(failed.contains(&expected), "{failed}");
        assert!(failed.contains("client certificate"), "{failed}");
    }
    // what Orthanc (OpenSSL inside DCMTK) says about the two it refused
    let log = pacs.log();
    assert!(log.contains("peer did not return a certificate"), "{log}");
    assert!(log.contains("certificate verify failed"), "{log}");

    let gw = Gateway::start_with_config(&upstream(&pacs, "hospital-b", &ours));
    search_finds_the_study(&gw).await;
    retrieve_is_byte_for_byte(&gw, &pacs, "hospb/jp-0001/ct", RetrieveOp::Get).await;
}

/// C-MOVE over a TLS association: the request goes over TLS; Orthanc's C-STOREs come back on
/// the association it opens to our plain listener (its modality entry has no `UseDicomTls`).
#[tokio::test(flavor = "multi_thread")]
async fn c_move_over_tls() {
    let Some((mut pacs, pki, _dir)) = tls_pacs("server", false) else {
        return;
    };
    let ca = key(&pki, "tls_ca", "ca.pem");
    let gw = Gateway::start_with_config(&upstream_retrieving(&pacs, "hospital-b", "c-move", &[ca]));
    pacs.allow_move_to("TSUNAGI", gw.dimse);
    retrieve_is_byte_for_byte(&gw, &pacs, "hospb/jp-0001/ct", RetrieveOp::Move).await;
}
