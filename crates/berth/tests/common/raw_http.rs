//! A hand-written HTTP/1.1 client: the request target and body go out
//! exactly as given (`..`, `%2e%2e`, a Content-Length that disagrees with the
//! body, a body the server refuses before reading it), which no URL or HTTP
//! library would send. Only the malformed-input tests (`bad_input.rs`) need
//! it; everything else goes through reqwest ([`super::api`]).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::assertions::check_envelope;
use super::server::TestServer;

#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// Lowercased names.
    pub headers: Vec<(String, String)>,
    /// The bytes after the header block, de-chunked if chunked.
    pub body: Vec<u8>,
    /// The bytes after the header block exactly as received.
    pub raw_body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts status and the spec envelope; returns the message.
    pub fn expect_error(&self, what: &str, status: u16, code: &str) -> String {
        assert_eq!(
            self.status,
            status,
            "{what}: expected {status} {code}, got {}: {}",
            self.status,
            self.text()
        );
        check_envelope(
            what,
            self.header("content-type").unwrap_or(""),
            &self.text(),
            code,
        )
    }
}

impl TestServer {
    /// A raw request as the owner (see [`raw_request`]).
    pub fn raw(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> RawResponse {
        self.raw_framed(method, target, headers, body, false)
    }

    /// A raw request as the owner (see [`raw_request_framed`]).
    pub fn raw_framed(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        chunked: bool,
    ) -> RawResponse {
        let auth = self.authorization();
        let mut all = vec![("Authorization", auth.as_str())];
        all.extend_from_slice(headers);
        raw_request_framed(self.addr(), method, target, &all, body, chunked)
    }
}

/// Sends one request with the target exactly as given and reads the whole
/// response (`Connection: close`).
pub fn raw_request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> RawResponse {
    raw_request_framed(addr, method, target, headers, body, false)
}

/// Like [`raw_request`], optionally with a chunked body. The body is
/// written from another thread while the response is read, and write errors
/// are ignored: a server may answer (413, 400) before it has read the body
/// and close the connection, and the answer must still be seen.
pub fn raw_request_framed(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    chunked: bool,
) -> RawResponse {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if chunked {
        head.push_str("Transfer-Encoding: chunked\r\n");
    } else if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut payload = head.into_bytes();
    if chunked {
        for chunk in body.chunks(64 * 1024) {
            payload.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            payload.extend_from_slice(chunk);
            payload.extend_from_slice(b"\r\n");
        }
        payload.extend_from_slice(b"0\r\n\r\n");
    } else {
        payload.extend_from_slice(body);
    }
    let mut writer = stream.try_clone().expect("clone stream");
    let sender = std::thread::spawn(move || {
        let _ = writer.write_all(&payload);
    });
    let mut raw = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
    let _ = sender.join();
    assert!(!raw.is_empty(), "{method} {target}: no response at all");
    parse_raw(&raw)
}

fn parse_raw(raw: &[u8]) -> RawResponse {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header block in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let raw_body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        dechunk(&raw_body)
    } else {
        raw_body.clone()
    };
    RawResponse {
        status,
        headers,
        body,
        raw_body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size_line = String::from_utf8_lossy(&data[..eol]);
        let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or(0);
        data = &data[eol + 2..];
        if size == 0 || data.len() < size {
            break;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[(size + 2).min(data.len())..];
    }
    out
}
