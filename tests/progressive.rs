//! Fast reads over slow links: HTJ2K RPCL frames with HTTP byte ranges, the preferred-syntax
//! switch, strong ETags, compression of uncompressed pixel data and HTTP/2, checked against
//! DCMTK (pushes the sample) and OpenJPEG's `opj_decompress` (an independent decoder proves
//! that a prefix of the served codestream decodes to the lower resolutions exactly).

mod common;

use std::io::Read;
use std::path::Path;
use std::process::Command;

use common::*;
use reqwest::header::{HeaderMap, HeaderValue};

const RPCL: &str = "1.2.840.10008.1.2.4.202";
const OHIF_FRAMES: &str = "multipart/related; type=application/octet-stream; transfer-syntax=*";

/// A gateway that sends HTJ2K RPCL whenever the client lets it choose, holding one
/// 128x128 signed 16-bit CT slice stored in Explicit VR Little Endian.
fn gateway_with_ct() -> Option<(Gateway, String)> {
    let dcmtk = peer("/usr/bin/storescu", "DCMTK pushes the CT slice")?;
    let gw = Gateway::start_with_env(&[("TSUNAGI_TRANSCODE__PREFERRED_FRAME_SYNTAX", RPCL)]);
    let entry = manifest()
        .into_iter()
        .find(|e| e["modality"] == "CT" && e["transfer_syntax"] == "1.2.840.10008.1.2.1")
        .expect("an uncompressed CT sample");
    let (ok, out) = storescu(&dcmtk, gw.dimse, "-xe", &[sample_path(&entry)]);
    assert!(ok, "{out}");
    let s = |k: &str| entry[k].as_str().expect(k).to_string();
    let frame = format!(
        "{}/studies/{}/series/{}/instances/{}/frames/1",
        gw.base(),
        s("study_uid"),
        s("series_uid"),
        s("sop_instance_uid")
    );
    Some((gw, frame))
}

async fn fetch(url: &str, headers: &[(&str, &str)]) -> (u16, HeaderMap, Vec<u8>) {
    let mut req = reqwest::Client::new().get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("http request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.bytes().await.expect("body").to_vec())
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name)
        .map(HeaderValue::to_str)
        .and_then(Result::ok)
        .unwrap_or("")
}

#[tokio::test(flavor = "multi_thread")]
async fn byte_ranges_address_the_same_codestream() {
    let Some((_gw, frame)) = gateway_with_ct() else {
        return;
    };
    let jphc = format!("image/jphc; transfer-syntax={RPCL}");
    let (status, h, full) = fetch(&frame, &[("Accept", &jphc)]).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&full));
    assert_eq!(header(&h, "content-type"), jphc);
    assert_eq!(header(&h, "accept-ranges"), "bytes");
    assert_eq!(
        &full[..2],
        [0xFF, 0x4F],
        "an HTJ2K codestream starts with SOC"
    );
    let etag = header(&h, "etag").to_string();
    let n = full.len();

    for (range, want) in [
        ("bytes=0-99", 0..100),
        ("bytes=100-", 100..n),
        ("bytes=-50", n - 50..n),
        (&format!("bytes=10-{}", n + 1000) as &str, 10..n),
    ] {
        let (status, h, part) = fetch(&frame, &[("Accept", &jphc), ("Range", range)]).await;
        assert_eq!(status, 206, "{range}");
        let expected = format!("bytes {}-{}/{n}", want.start, want.end - 1);
        assert_eq!(header(&h, "content-range"), expected, "{range}");
        assert_eq!(part, full[want].to_vec(), "{range}");
    }

    // several ranges at once: multipart/byteranges
    let (status, h, body) = fetch(&frame, &[("Accept", &jphc), ("Range", "bytes=0-9,20-29")]).await;
    assert_eq!(status, 206);
    let parts = multipart_parts(header(&h, "content-type"), &body);
    assert_eq!(parts.len(), 2);
    assert!(parts[1]
        .0
        .contains(&format!("Content-Range: bytes 20-29/{n}")));
    assert_eq!(parts[0].1, full[0..10]);
    assert_eq!(parts[1].1, full[20..30]);

    // nothing to satisfy; a stale If-Range; a matching If-None-Match
    let past = format!("bytes={n}-");
    let (status, h, _) = fetch(&frame, &[("Accept", &jphc), ("Range", &past)]).await;
    assert_eq!(status, 416);
    assert_eq!(header(&h, "content-range"), format!("bytes */{n}"));
    let stale = [
        ("Accept", jphc.as_str()),
        ("Range", "bytes=0-9"),
        ("If-Range", "\"x\""),
    ];
    let (status, _, body) = fetch(&frame, &stale).await;
    assert_eq!((status, body.len()), (200, n));
    let (status, h, body) = fetch(&frame, &[("Accept", &jphc), ("If-None-Match", &etag)]).await;
    assert_eq!((status, body.len()), (304, 0));
    assert_eq!(header(&h, "etag"), etag);

    // two frames cannot travel in one single-part body
    let two = frame.replace("/frames/1", "/frames/1,1");
    assert_eq!(fetch(&two, &[("Accept", &jphc)]).await.0, 406);

    // OHIF's Accept lets the server choose: the same RPCL codestream in one multipart part,
    // and a range of that multipart body is exactly those bytes of the full response
    let (status, h, whole) = fetch(&frame, &[("Accept", OHIF_FRAMES)]).await;
    assert_eq!(status, 200);
    let ct = header(&h, "content-type").to_string();
    assert!(ct.contains(&format!("transfer-syntax={RPCL}")), "{ct}");
    let parts = multipart_parts(&ct, &whole);
    assert_eq!(parts.len(), 1);
    assert_eq!(parts[0].1, full, "the part is the single-part codestream");
    let (status, h, head) =
        fetch(&frame, &[("Accept", OHIF_FRAMES), ("Range", "bytes=0-199")]).await;
    assert_eq!(status, 206);
    assert_eq!(header(&h, "content-type"), ct);
    assert_eq!(head, whole[..200]);
}

/// A prefix of the resolution-ordered codestream decodes, with an independent decoder, to
/// exactly the reduced-resolution image the whole codestream gives.
#[tokio::test(flavor = "multi_thread")]
async fn a_prefix_of_rpcl_decodes_to_a_lower_resolution() {
    let Some(opj) = peer(
        "/usr/bin/opj_decompress",
        "OpenJPEG decodes prefixes of the RPCL codestream (apt-get install libopenjp2-tools)",
    ) else {
        return;
    };
    let Some((_gw, frame)) = gateway_with_ct() else {
        return;
    };
    let jphc = format!("image/jphc; transfer-syntax={RPCL}");
    let (status, _, full) = fetch(&frame, &[("Accept", &jphc)]).await;
    assert_eq!(status, 200);
    let prefix_len = full.len() * 2 / 5;
    let range = format!("bytes=0-{}", prefix_len - 1);
    let (status, _, prefix) = fetch(&frame, &[("Accept", &jphc), ("Range", &range)]).await;
    assert_eq!((status, prefix.len()), (206, prefix_len));

    let dir = tempfile::tempdir().expect("temp dir");
    let decode = |name: &str, bytes: &[u8], reduce: u32| {
        let input = dir.path().join(format!("{name}.j2c"));
        let output = dir.path().join(format!("{name}-r{reduce}.raw"));
        std::fs::write(&input, bytes).expect("write codestream");
        let out = Command::new(&opj)
            .args(["-allow-partial", "-quiet", "-r", &reduce.to_string(), "-i"])
            .arg(&input)
            .arg("-o")
            .arg(&output)
            .output()
            .expect("run opj_decompress");
        assert!(
            out.status.success(),
            "opj_decompress {name} -r {reduce}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        read_all(&output)
    };
    // 128x128 16-bit: 1/4 and 1/8 of each side
    for (reduce, side) in [(2u32, 32usize), (3, 16)] {
        let from_full = decode("full", &full, reduce);
        assert_eq!(from_full.len(), side * side * 2, "-r {reduce}");
        assert_eq!(
            decode("prefix", &prefix, reduce),
            from_full,
            "the first {prefix_len} of {} bytes decode to the same {side}x{side} image",
            full.len()
        );
    }
}

fn read_all(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut out))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    out
}

/// Uncompressed frames are gzip-compressed when the client accepts it; the bytes inflate
/// to exactly what an uncompressed request returns. HTTP/2 (h2c) serves the same bytes.
#[tokio::test(flavor = "multi_thread")]
async fn compressed_native_frames_and_http2() {
    let Some((_gw, frame)) = gateway_with_ct() else {
        return;
    };
    let native =
        "multipart/related; type=application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1";
    let (status, h, plain) = fetch(&frame, &[("Accept", native)]).await;
    assert_eq!(status, 200);
    assert_eq!(header(&h, "content-encoding"), "");
    let (status, h, gz) = fetch(&frame, &[("Accept", native), ("Accept-Encoding", "gzip")]).await;
    assert_eq!(status, 200);
    assert_eq!(header(&h, "content-encoding"), "gzip");
    assert!(gz.len() < plain.len(), "{} !< {}", gz.len(), plain.len());
    let mut inflated = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut inflated)
        .expect("gunzip");
    assert_eq!(inflated, plain);

    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("h2 client");
    let resp = h2
        .get(&frame)
        .header("Accept", native)
        .send()
        .await
        .expect("h2 request");
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.bytes().await.expect("body").to_vec(), plain);
}

/// With `http.tls_cert`/`tls_key` the listener speaks HTTPS and a standard client gets HTTP/2
/// by ALPN; plain HTTP to that port gets no answer.
#[tokio::test(flavor = "multi_thread")]
async fn https_offers_http2_by_alpn() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let signed = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
    let (cert, key) = (tmp.path().join("cert.pem"), tmp.path().join("key.pem"));
    std::fs::write(&cert, signed.cert.pem()).expect("write cert");
    std::fs::write(&key, signed.key_pair.serialize_pem()).expect("write key");
    let (cert_s, key_s) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let gw = Gateway::start_in(
        &tmp.path().join("cache"),
        &[
            ("TSUNAGI_HTTP__TLS_CERT", cert_s),
            ("TSUNAGI_HTTP__TLS_KEY", key_s),
        ],
    );
    let root = reqwest::Certificate::from_pem(signed.cert.pem().as_bytes()).expect("root");
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(root)
        .resolve("localhost", gw.http)
        .build()
        .expect("https client");
    let url = format!("https://localhost:{}/dicom-web/studies", gw.http.port());
    let resp = client.get(&url).send().await.expect("https request");
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.text().await.expect("body"), "[]");

    let plain = format!("http://{}/dicom-web/studies", gw.http);
    assert!(
        reqwest::get(&plain).await.is_err(),
        "plain HTTP to the HTTPS port"
    );
}
