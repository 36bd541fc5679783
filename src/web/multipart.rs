//! Streaming `multipart/related` bodies (RFC 2387, PS3.18 §8.7.3): a producer task writes
//! parts into a small bounded channel, the HTTP body drains it. Memory holds a few chunks,
//! never a whole study; a client that goes away stops the producer.

use std::path::Path;

use axum::body::Body;
use bytes::Bytes;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

/// Chunk size for file parts.
const CHUNK: usize = 256 * 1024;

/// A fresh boundary that cannot occur in DICOM part bodies by chance.
pub fn new_boundary() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("tsunagi-{t:x}-{n:x}")
}

/// The response Content-Type for parts of `part_type` (with its transfer syntax).
pub fn content_type(part_type: &str, transfer_syntax: Option<&str>, boundary: &str) -> String {
    match transfer_syntax {
        Some(ts) => format!(
            "multipart/related; type=\"{part_type}\"; transfer-syntax={ts}; boundary={boundary}"
        ),
        None => format!("multipart/related; type=\"{part_type}\"; boundary={boundary}"),
    }
}

fn part_header(boundary: &str, content_type: &str, len: Option<u64>) -> String {
    let mut h = format!("--{boundary}\r\nContent-Type: {content_type}\r\n");
    if let Some(len) = len {
        h.push_str(&format!("Content-Length: {len}\r\n"));
    }
    h.push_str("\r\n");
    h
}

/// A whole one-part multipart body in memory, byte for byte what [`PartWriter`] would stream:
/// for a representation that byte ranges address (a single frame).
pub fn one_part_body(boundary: &str, content_type: &str, body: &[u8]) -> Bytes {
    let mut out = part_header(boundary, content_type, Some(body.len() as u64)).into_bytes();
    out.extend_from_slice(body);
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    Bytes::from(out)
}

/// The client went away; stop producing.
#[derive(Debug)]
pub struct Closed;

/// Writes parts into the response body.
pub struct PartWriter {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    boundary: String,
    parts: usize,
}

/// A streaming multipart body and the writer that feeds it.
pub fn channel(boundary: String) -> (PartWriter, Body) {
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    (
        PartWriter {
            tx,
            boundary,
            parts: 0,
        },
        Body::from_stream(stream),
    )
}

impl PartWriter {
    async fn send(&self, b: Bytes) -> Result<(), Closed> {
        self.tx.send(Ok(b)).await.map_err(|_| Closed)
    }

    /// Abort the body with an error (the client sees a truncated response, never a
    /// well-formed one missing data).
    pub async fn fail(&self, e: std::io::Error) {
        let _ = self.tx.send(Err(e)).await;
    }

    pub fn parts(&self) -> usize {
        self.parts
    }

    async fn part_header(&mut self, content_type: &str, len: Option<u64>) -> Result<(), Closed> {
        self.parts += 1;
        let h = part_header(&self.boundary, content_type, len);
        self.send(Bytes::from(h)).await
    }

    /// A part from memory.
    pub async fn bytes_part(&mut self, content_type: &str, body: Bytes) -> Result<(), Closed> {
        self.part_header(content_type, Some(body.len() as u64))
            .await?;
        self.send(body).await?;
        self.send(Bytes::from_static(b"\r\n")).await
    }

    /// A part streamed from a file, `CHUNK` bytes at a time.
    pub async fn file_part(&mut self, content_type: &str, path: &Path) -> Result<u64, PartError> {
        let mut file = tokio::fs::File::open(path).await.map_err(PartError::Io)?;
        let len = file.metadata().await.map_err(PartError::Io)?.len();
        self.part_header(content_type, Some(len))
            .await
            .map_err(|_| PartError::Closed)?;
        let mut sent = 0u64;
        loop {
            let mut buf = Vec::with_capacity(CHUNK);
            let n = (&mut file)
                .take(CHUNK as u64)
                .read_to_end(&mut buf)
                .await
                .map_err(PartError::Io)?;
            if n == 0 {
                break;
            }
            sent += n as u64;
            self.send(Bytes::from(buf))
                .await
                .map_err(|_| PartError::Closed)?;
        }
        if sent != len {
            return Err(PartError::Io(std::io::Error::other(
                "file changed while it was being sent",
            )));
        }
        self.send(Bytes::from_static(b"\r\n"))
            .await
            .map_err(|_| PartError::Closed)?;
        Ok(len)
    }

    /// A part made of byte ranges of a file (a frame's fragments), streamed.
    pub async fn ranges_part(
        &mut self,
        content_type: &str,
        path: &Path,
        ranges: &[crate::store::layout::Range],
    ) -> Result<u64, PartError> {
        use tokio::io::AsyncSeekExt;
        let total: u64 = ranges.iter().map(|r| r.len).sum();
        let mut file = tokio::fs::File::open(path).await.map_err(PartError::Io)?;
        self.part_header(content_type, Some(total))
            .await
            .map_err(|_| PartError::Closed)?;
        for r in ranges {
            file.seek(std::io::SeekFrom::Start(r.offset))
                .await
                .map_err(PartError::Io)?;
            let mut left = r.len;
            while left > 0 {
                let want = left.min(CHUNK as u64);
                let mut buf = Vec::with_capacity(want as usize);
                let n = (&mut file)
                    .take(want)
                    .read_to_end(&mut buf)
                    .await
                    .map_err(PartError::Io)?;
                if n == 0 {
                    return Err(PartError::Io(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "file shorter than its pixel data",
                    )));
                }
                left -= n as u64;
                self.send(Bytes::from(buf))
                    .await
                    .map_err(|_| PartError::Closed)?;
            }
        }
        self.send(Bytes::from_static(b"\r\n"))
            .await
            .map_err(|_| PartError::Closed)?;
        Ok(total)
    }

    /// The closing delimiter.
    pub async fn finish(self) -> Result<(), Closed> {
        let end = format!("--{}--\r\n", self.boundary);
        self.send(Bytes::from(end)).await
    }
}

#[derive(Debug)]
pub enum PartError {
    Closed,
    Io(std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn parts_are_framed() {
        let (mut w, body) = channel("B".into());
        tokio::spawn(async move {
            w.bytes_part("application/octet-stream", Bytes::from_static(b"abc"))
                .await
                .unwrap();
            w.finish().await.unwrap();
        });
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(
            &bytes[..],
            b"--B\r\nContent-Type: application/octet-stream\r\nContent-Length: 3\r\n\r\nabc\r\n--B--\r\n"
        );
        assert_eq!(
            one_part_body("B", "application/octet-stream", b"abc"),
            bytes
        );
    }
}
