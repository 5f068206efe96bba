//! Gzip of the `/metrics` body, prepared once per collection. Each
//! collection's text is compressed when it is published into a raw deflate
//! segment that ends on a byte boundary with non-final blocks (a sync
//! flush) and refers to nothing before it; a scrape sends a gzip header,
//! those segments as they are, a final segment of its own small part, and a
//! trailer whose CRC-32 is combined from the segments'. The result is one
//! ordinary gzip member: a scrape compresses only its own few kilobytes.

use std::cell::RefCell;

use bytes::Bytes;
use flate2::{Compress, Compression, Crc, FlushCompress};

/// A gzip header without a file name or time, so that equal text gives equal
/// bytes.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];

/// Text as a raw deflate segment that a gzip stream can include as it is.
#[derive(Debug, Default)]
pub(crate) struct Segment {
    pub(crate) deflate: Bytes,
    pub(crate) crc: Crc,
}

/// Compresses `text` with `compress` (reset first), ending with `flush`.
fn deflate(text: &[u8], compress: &mut Compress, flush: FlushCompress) -> Vec<u8> {
    compress.reset();
    let mut out = Vec::with_capacity(text.len() / 8 + 64);
    loop {
        let consumed = compress.total_in() as usize;
        compress
            .compress_vec(&text[consumed..], &mut out, flush)
            .expect("deflate of an in-memory buffer cannot fail");
        // Done when all input is in and the output was not cut short.
        if compress.total_in() as usize == text.len() && out.len() < out.capacity() {
            return out;
        }
        out.reserve(out.capacity().max(1024));
    }
}

/// `text` as a segment, for text prepared once per collection. A
/// compressor is large, so the caller keeps one.
pub(crate) fn segment(text: &[u8], compress: &mut Compress) -> Segment {
    let mut crc = Crc::new();
    crc.update(text);
    Segment {
        deflate: deflate(text, compress, FlushCompress::Sync).into(),
        crc,
    }
}

/// The best compression, for text prepared once per collection.
pub(crate) fn best() -> Compress {
    Compress::new(Compression::best(), false)
}

/// A whole gzip stream: `segments`, then `tail` (the part of a scrape made
/// per request, compressed quickly with a compressor kept per thread).
pub(crate) fn gzip(segments: &[&Segment], tail: &[u8]) -> Vec<Bytes> {
    thread_local! {
        static FAST: RefCell<Compress> = RefCell::new(Compress::new(Compression::fast(), false));
    }
    let last = FAST.with(|c| deflate(tail, &mut c.borrow_mut(), FlushCompress::Finish));
    let mut crc = Crc::new();
    let mut chunks = Vec::with_capacity(segments.len() + 3);
    chunks.push(Bytes::from_static(&HEADER));
    for segment in segments {
        crc.combine(&segment.crc);
        chunks.push(segment.deflate.clone());
    }
    let mut tail_crc = Crc::new();
    tail_crc.update(tail);
    crc.combine(&tail_crc);
    chunks.push(last.into());
    let mut trailer = Vec::with_capacity(8);
    trailer.extend_from_slice(&crc.sum().to_le_bytes());
    trailer.extend_from_slice(&crc.amount().to_le_bytes());
    chunks.push(trailer.into());
    chunks
}

/// Whether an `Accept-Encoding` header value accepts gzip (`gzip` or `*`
/// with a q-value above 0).
pub(crate) fn accepts_gzip(accept_encoding: &str) -> bool {
    accept_encoding.split(',').any(|coding| {
        let mut parts = coding.split(';');
        let name = parts.next().unwrap_or_default().trim();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .filter_map(|q| q.trim().parse::<f32>().ok())
            .next()
            .unwrap_or(1.0);
        (name.eq_ignore_ascii_case("gzip") || name == "*") && q > 0.0
    })
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn segments_and_a_tail_are_one_gzip_member() {
        let mut compress = best();
        let big = "c 3\n".repeat(50_000);
        let segments = [
            segment(b"a 1\n", &mut compress),
            segment(b"", &mut compress),
            segment(big.as_bytes(), &mut compress),
        ];
        let segments: Vec<&Segment> = segments.iter().collect();
        let tail = "b 2\n".repeat(5000);
        let body: Vec<u8> = gzip(&segments, tail.as_bytes()).concat();
        // A single-member decoder reads it all (curl, browsers).
        let mut text = String::new();
        flate2::read::GzDecoder::new(body.as_slice())
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, format!("a 1\n{big}{tail}"));
    }

    #[test]
    fn reads_accept_encoding() {
        assert!(accepts_gzip("gzip"));
        assert!(accepts_gzip("deflate, GZIP;q=0.5"));
        assert!(accepts_gzip("*"));
        assert!(!accepts_gzip("gzip;q=0"));
        assert!(!accepts_gzip("identity"));
        assert!(!accepts_gzip("br, x-gzip2"));
    }
}
