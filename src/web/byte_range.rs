//! HTTP byte ranges (RFC 9110 §14) over a representation held whole in memory: a single
//! frame's codestream, which progressive viewers (cornerstone3D with HTJ2K RPCL) fetch in
//! pieces: first a prefix that decodes to a low resolution, then the rest. `206` with
//! `Content-Range` for one range, `multipart/byteranges` for several, `416` when none can be
//! satisfied; `If-Range` with a stale validator gets the whole representation.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};

/// More ranges than this in one request is abuse (RFC 9110 §14.2 lets us ignore it).
const MAX_RANGES: usize = 16;

/// An inclusive byte span `first..=last` of the representation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub first: u64,
    pub last: u64,
}

impl Span {
    fn len(&self) -> u64 {
        self.last - self.first + 1
    }
}

/// What a `Range` header asks of a representation of `total` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Wanted {
    /// No usable Range header (absent, another unit, malformed, too many): send it all.
    Whole,
    Spans(Vec<Span>),
    /// Well formed, but no range overlaps the representation.
    Unsatisfiable,
}

pub fn parse(header: Option<&str>, total: u64) -> Wanted {
    let Some(specs) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Wanted::Whole;
    };
    let mut spans = Vec::new();
    for spec in specs.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match parse_spec(spec, total) {
            Some(Some(span)) => spans.push(span),
            Some(None) => {} // valid but outside the representation
            None => return Wanted::Whole,
        }
    }
    if spans.len() > MAX_RANGES {
        return Wanted::Whole;
    }
    if spans.is_empty() {
        return Wanted::Unsatisfiable;
    }
    Wanted::Spans(spans)
}

/// One `first-last`, `first-` or `-suffix`: None if malformed, Some(None) if unsatisfiable.
fn parse_spec(spec: &str, total: u64) -> Option<Option<Span>> {
    let (first, last) = spec.split_once('-')?;
    let number = |s: &str| s.trim().parse::<u64>().ok();
    if first.trim().is_empty() {
        let suffix = number(last)?;
        return Some((suffix > 0 && total > 0).then(|| Span {
            first: total.saturating_sub(suffix),
            last: total - 1,
        }));
    }
    let first = number(first)?;
    let last = match last.trim() {
        "" => u64::MAX,
        l => number(l)?,
    };
    if last < first {
        return None;
    }
    Some((first < total).then(|| Span {
        first,
        last: last.min(total - 1),
    }))
}

/// The response for `body` (of `content_type`, identified by the strong `etag`) to a request
/// with `headers`: 200 with it all, or 206/416 as the Range header asks. Headers other than
/// Content-Type, Content-Range and Accept-Ranges are the caller's.
pub fn respond(headers: &HeaderMap, etag: &str, body: Bytes, content_type: &str) -> Response {
    let total = body.len() as u64;
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let wanted = if if_range_allows(headers, etag) {
        parse(range, total)
    } else {
        Wanted::Whole
    };
    let mut resp = match wanted {
        Wanted::Whole => {
            let mut r = (StatusCode::OK, body).into_response();
            set(&mut r, header::CONTENT_TYPE, content_type);
            r
        }
        Wanted::Unsatisfiable => {
            let mut r = (
                StatusCode::RANGE_NOT_SATISFIABLE,
                format!("no requested byte range overlaps the {total} bytes of this resource\n"),
            )
                .into_response();
            set(&mut r, header::CONTENT_RANGE, &format!("bytes */{total}"));
            r
        }
        Wanted::Spans(spans) if spans.len() == 1 => {
            let s = spans[0];
            let part = body.slice(s.first as usize..=s.last as usize);
            let mut r = (StatusCode::PARTIAL_CONTENT, part).into_response();
            set(&mut r, header::CONTENT_TYPE, content_type);
            set(&mut r, header::CONTENT_RANGE, &content_range(s, total));
            r
        }
        Wanted::Spans(spans) => byteranges(&body, &spans, content_type),
    };
    set(&mut resp, header::ACCEPT_RANGES, "bytes");
    resp
}

/// `If-Range` (RFC 9110 §13.1.5): ranges apply only if the validator is the current strong
/// ETag; a date validator never matches (we send no Last-Modified).
fn if_range_allows(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_RANGE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|validator| validator.trim() == etag)
}

fn content_range(s: Span, total: u64) -> String {
    format!("bytes {}-{}/{total}", s.first, s.last)
}

fn byteranges(body: &Bytes, spans: &[Span], content_type: &str) -> Response {
    let boundary = super::multipart::new_boundary();
    let total = body.len() as u64;
    let size: u64 = spans.iter().map(|s| s.len() + 128).sum();
    let mut out = BytesMut::with_capacity(size as usize);
    for s in spans {
        out.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Type: {content_type}\r\nContent-Range: {}\r\n\r\n",
                content_range(*s, total)
            )
            .as_bytes(),
        );
        out.extend_from_slice(&body[s.first as usize..=s.last as usize]);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    let mut r = (StatusCode::PARTIAL_CONTENT, Body::from(out.freeze())).into_response();
    set(
        &mut r,
        header::CONTENT_TYPE,
        &format!("multipart/byteranges; boundary={boundary}"),
    );
    r
}

fn set(resp: &mut Response, name: header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spans(h: &str, total: u64) -> Vec<(u64, u64)> {
        match parse(Some(h), total) {
            Wanted::Spans(s) => s.iter().map(|s| (s.first, s.last)).collect(),
            other => panic!("{h}: {other:?}"),
        }
    }

    #[test]
    fn range_forms() {
        assert_eq!(spans("bytes=0-99", 1000), vec![(0, 99)]);
        assert_eq!(spans("bytes=900-", 1000), vec![(900, 999)]);
        assert_eq!(spans("bytes=-100", 1000), vec![(900, 999)]);
        assert_eq!(spans("bytes=-5000", 1000), vec![(0, 999)]);
        assert_eq!(spans("bytes=990-2000", 1000), vec![(990, 999)]);
        assert_eq!(spans("bytes=0-0, 10-19", 1000), vec![(0, 0), (10, 19)]);
        // cornerstone3D asks for [0, initialBytes] and later [loaded, end]
        assert_eq!(spans("bytes=0-65536", 20_000), vec![(0, 19_999)]);
    }

    #[test]
    fn whole_or_unsatisfiable() {
        assert_eq!(parse(None, 10), Wanted::Whole);
        assert_eq!(parse(Some("items=0-1"), 10), Wanted::Whole);
        assert_eq!(parse(Some("bytes=5-1"), 10), Wanted::Whole);
        assert_eq!(parse(Some("bytes=a-"), 10), Wanted::Whole);
        assert_eq!(parse(Some("bytes=10-"), 10), Wanted::Unsatisfiable);
        assert_eq!(parse(Some("bytes=-0"), 10), Wanted::Unsatisfiable);
        let many = format!("bytes={}", vec!["0-0"; 17].join(","));
        assert_eq!(parse(Some(&many), 10), Wanted::Whole);
    }

    #[tokio::test]
    async fn responses() {
        let body = Bytes::from((0..=255u8).collect::<Vec<_>>());
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, HeaderValue::from_static("bytes=10-19"));
        let r = respond(&h, "\"e\"", body.clone(), "image/jphc");
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(r.headers()[header::CONTENT_RANGE], "bytes 10-19/256");
        let got = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        assert_eq!(&got[..], &body[10..20]);

        h.insert(header::IF_RANGE, HeaderValue::from_static("\"old\""));
        let stale = respond(&h, "\"new\"", body.clone(), "x/y");
        assert_eq!(stale.status(), StatusCode::OK);
        let current = respond(&h, "\"old\"", body.clone(), "x/y");
        assert_eq!(current.status(), StatusCode::PARTIAL_CONTENT);

        let mut h = HeaderMap::new();
        h.insert(header::RANGE, HeaderValue::from_static("bytes=0-1,-2"));
        let r = respond(&h, "\"e\"", body.clone(), "image/jphc");
        let ct = r.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_string();
        assert!(ct.starts_with("multipart/byteranges; boundary="), "{ct}");
        let got = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        let text = String::from_utf8_lossy(&got);
        assert!(text.contains("Content-Range: bytes 0-1/256"), "{text}");
        assert!(text.contains("Content-Range: bytes 254-255/256"), "{text}");

        h.insert(header::RANGE, HeaderValue::from_static("bytes=300-"));
        let r = respond(&h, "\"e\"", body, "image/jphc");
        assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(r.headers()[header::CONTENT_RANGE], "bytes */256");
    }
}
