//! DIMSE access control and DICOM TLS against real DCMTK peers: `dimse.allowed_callers`
//! refuses unknown calling AE titles (and listed ones from the wrong address) with
//! A-ASSOCIATE-RJ, counts and audits them, and audits C-STORE imports; the TLS listener
//! serves `echoscu +tls`/`storescu +tls`, refuses plain DICOM, and with `tls_client_ca`
//! refuses clients without a certificate from that CA.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::pki::Pki;
use common::*;
use serde_json::Value;

const CALLERS: &str = "[{ ae_title = \"HOSPA\", address = \"127.0.0.0/8\" }, \
                       { ae_title = \"REMOTE\", address = \"10.0.0.0/8\" }]";

fn run(tool: &Path, args: &[&str], addr: SocketAddr, files: &[PathBuf]) -> (bool, String) {
    let out = Command::new(tool)
        .args(args)
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string())
        .args(files)
        .output()
        .expect("run DCMTK tool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn event(r: &Value) -> &str {
    r["EventID"]["csd-code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn allowed_callers_refuse_and_audit() {
    let (Some(echoscu), Some(storescu)) = (
        peer("/usr/bin/echoscu", "echoscu opens the associations"),
        peer("/usr/bin/storescu", "storescu pushes an instance"),
    ) else {
        return;
    };
    let gw = Gateway::start_with_env(&[("TSUNAGI_DIMSE__ALLOWED_CALLERS", CALLERS)]);

    let (ok, text) = run(&echoscu, &["-aet", "HOSPA"], gw.dimse, &[]);
    assert!(ok, "HOSPA from 127.0.0.1 is allowed:\n{text}");
    let (ok, text) = run(&echoscu, &["-aet", "UNKNOWN"], gw.dimse, &[]);
    assert!(!ok, "an unknown AE is refused:\n{text}");
    assert!(text.contains("Calling AE Title Not Recognized"), "{text}");
    let (ok, text) = run(&echoscu, &["-aet", "REMOTE"], gw.dimse, &[]);
    assert!(
        !ok,
        "a listed AE from the wrong address is refused:\n{text}"
    );

    let sample = manifest().into_iter().next().expect("a sample");
    let flag = storescu_flag(sample["transfer_syntax"].as_str().unwrap_or(""));
    let files = [sample_path(&sample)];
    let (ok, text) = run(&storescu, &["-aet", "INTRUDER", flag], gw.dimse, &files);
    assert!(!ok, "storescu from an unknown AE is refused:\n{text}");
    let (ok, text) = run(&storescu, &["-aet", "HOSPA", flag], gw.dimse, &files);
    assert!(ok, "storescu from HOSPA stores:\n{text}");

    let metrics = reqwest::get(format!("http://{}/metrics", gw.http))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("tsunagi_associations_rejected_total 3"),
        "{metrics}"
    );

    let audit = gw.dir.join("audit.jsonl");
    let records = audit_records(&audit, |r| {
        r.iter().filter(|x| event(x) == "110113").count() >= 3
            && r.iter().any(|x| event(x) == "110107")
    });
    let alerts: Vec<&Value> = records.iter().filter(|r| event(r) == "110113").collect();
    assert_eq!(alerts.len(), 3, "{records:?}");
    let users: Vec<&str> = alerts
        .iter()
        .map(|r| r["ActiveParticipant"]["UserID"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(users, ["UNKNOWN", "REMOTE", "INTRUDER"]);
    assert_eq!(alerts[0]["EventTypeCode"]["csd-code"], "110126");
    let import = records
        .iter()
        .find(|r| event(r) == "110107")
        .expect("an Import record");
    assert_eq!(import["ActiveParticipant"]["UserID"], "HOSPA");
    assert_eq!(
        import["ActiveParticipant"]["NetworkAccessPointID"],
        "127.0.0.1"
    );
    assert_eq!(import["EventOutcomeIndicator"], 0);
    assert_eq!(
        import["ParticipantObject"][0]["ParticipantObjectID"],
        sample["study_uid"]
    );
}

fn tls_gateway(client_ca: bool) -> (Gateway, Pki, SocketAddr) {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(tmp.path());
    let (cert, key, ca) = (
        pki.path("server.pem"),
        pki.path("server.key"),
        pki.path("ca.pem"),
    );
    let mut env = vec![
        ("TSUNAGI_DIMSE__TLS_LISTEN", "127.0.0.1:0"),
        ("TSUNAGI_DIMSE__TLS_CERT", cert.as_str()),
        ("TSUNAGI_DIMSE__TLS_KEY", key.as_str()),
    ];
    if client_ca {
        env.push(("TSUNAGI_DIMSE__TLS_CLIENT_CA", ca.as_str()));
    }
    let mut gw = Gateway::start_in(&tmp.path().join("cache"), &env);
    gw.hold(tmp);
    let tls: SocketAddr = gw.ready_field("dimse_tls").parse().expect("dimse_tls addr");
    (gw, pki, tls)
}

#[tokio::test]
async fn dicom_tls_listener() {
    let (Some(echoscu), Some(storescu)) = (
        peer("/usr/bin/echoscu", "echoscu +tls opens the associations"),
        peer("/usr/bin/storescu", "storescu +tls pushes an instance"),
    ) else {
        return;
    };
    let (gw, pki, tls) = tls_gateway(false);
    let (key, cert, ca) = (
        pki.path("client.key"),
        pki.path("client.pem"),
        pki.path("ca.pem"),
    );
    let ignore = ["+tls", key.as_str(), cert.as_str(), "-ic"];
    let (ok, text) = run(&echoscu, &ignore, tls, &[]);
    assert!(ok, "echoscu +tls -ic:\n{text}");
    let verify = ["+tls", key.as_str(), cert.as_str(), "+cf", ca.as_str()];
    let (ok, text) = run(&echoscu, &verify, tls, &[]);
    assert!(
        ok,
        "echoscu +tls verifying the server against the CA:\n{text}"
    );
    let (ok, text) = run(&echoscu, &["-to", "5"], tls, &[]);
    assert!(!ok, "plain DICOM to the TLS port fails:\n{text}");
    let (ok, text) = run(&echoscu, &[], gw.dimse, &[]);
    assert!(ok, "the plain listener still serves:\n{text}");

    let sample = manifest().into_iter().next().expect("a sample");
    let flag = storescu_flag(sample["transfer_syntax"].as_str().unwrap_or(""));
    let mut args = verify.to_vec();
    args.push(flag);
    let (ok, text) = run(&storescu, &args, tls, &[sample_path(&sample)]);
    assert!(ok, "storescu +tls:\n{text}");
    let study = sample["study_uid"].as_str().expect("study uid");
    let (status, _, _, _) = get(
        &format!("{}/studies/{study}/metadata", gw.base()),
        "application/dicom+json",
    )
    .await;
    assert_eq!(status, 200, "the instance stored over TLS is served");
}

#[tokio::test]
async fn dicom_tls_client_certificates() {
    let Some(echoscu) = peer("/usr/bin/echoscu", "echoscu +tls opens the associations") else {
        return;
    };
    let (_gw, pki, tls) = tls_gateway(true);
    let ca = pki.path("ca.pem");
    let with = |name: &str| {
        let (key, cert) = (
            pki.path(&format!("{name}.key")),
            pki.path(&format!("{name}.pem")),
        );
        run(&echoscu, &["+tls", &key, &cert, "+cf", &ca], tls, &[])
    };
    let (ok, text) = with("client");
    assert!(ok, "a client certificate from the CA is accepted:\n{text}");
    let (ok, text) = with("rogue");
    assert!(!ok, "a self-signed client certificate is refused:\n{text}");
    let (ok, text) = run(&echoscu, &["+tla", "+cf", &ca], tls, &[]);
    assert!(!ok, "no client certificate is refused:\n{text}");
}
