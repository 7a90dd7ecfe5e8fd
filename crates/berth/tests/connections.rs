//! Connection limits, against the real server with small limits: a flood
//! of idle connections from one address is capped (the rest are closed at
//! once) while another address is still answered; the total cap holds
//! across addresses; connections that never finish their headers are
//! closed after the header timeout while idle keep-alive ones last until
//! the idle timeout; and the memory a flood took is given back.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;

/// How long the server may take to deal with what the test did: generous,
/// the machine is shared.
const SETTLE: Duration = Duration::from_secs(30);

/// Enough descriptors for the floods below, whatever the shell gave us.
fn raise_fd_limit() {
    #[cfg(unix)]
    {
        use rustix::process::{getrlimit, setrlimit, Resource};
        let mut limit = getrlimit(Resource::Nofile);
        let want = limit.maximum.map_or(8192, |max| max.min(8192));
        if limit.current.is_some_and(|c| c < want) {
            limit.current = Some(want);
            setrlimit(Resource::Nofile, limit).expect("raise the open-files limit");
        }
    }
}

/// A blocking TCP connection from `from` (any 127.x address).
fn connect_from(from: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let mut one = flood(from, to, 1);
    let stream = one.pop().expect("one connection");
    stream.set_nonblocking(false).expect("blocking");
    stream
}

/// Many connections from `from`, opened at once.
fn flood(from: Ipv4Addr, to: SocketAddr, n: usize) -> Vec<TcpStream> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let socket = tokio::net::TcpSocket::new_v4().expect("socket");
            socket
                .bind(SocketAddr::new(IpAddr::V4(from), 0))
                .expect("bind source address");
            let stream = tokio::time::timeout(Duration::from_secs(30), socket.connect(to))
                .await
                .expect("connect within 30s")
                .expect("connect");
            let stream = stream.into_std().expect("std stream");
            stream.set_nonblocking(true).expect("nonblocking");
            out.push(stream);
        }
        out
    })
}

/// Whether the server has closed this (non-blocking) connection.
fn is_closed(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    match stream.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) if e.kind() == ErrorKind::WouldBlock => false,
        Err(_) => true,
    }
}

/// Waits until `count_closed` says `expected` of `streams` are closed, or
/// `SETTLE` passes; returns how many are closed.
fn wait_closed(streams: &mut [TcpStream], expected: usize) -> usize {
    let deadline = Instant::now() + SETTLE;
    let mut closed = vec![false; streams.len()];
    loop {
        for (stream, done) in streams.iter_mut().zip(closed.iter_mut()) {
            if !*done && is_closed(stream) {
                *done = true;
            }
        }
        let n = closed.iter().filter(|c| **c).count();
        if n >= expected || Instant::now() > deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One `GET /v2/` on a blocking connection; the status, or None when the
/// server closed the connection without answering.
fn get_v2(stream: &mut TcpStream) -> Option<u16> {
    stream.set_nonblocking(false).expect("blocking");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    if stream
        .write_all(b"GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return None;
    }
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
        }
        let text = String::from_utf8_lossy(&response);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if body.len() >= length {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&response);
    text.strip_prefix("HTTP/1.1 ")?
        .get(..3)
        .and_then(|s| s.parse().ok())
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

const FLOODER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const NEIGHBOUR: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_from_one_address_is_capped_and_others_are_still_served() {
    raise_fd_limit();
    let dir = tempdir("conn-flood");
    let server = TestServer::start_with_env(
        &dir.path().join("data"),
        &[
            ("BERTH_SERVER__MAX_CONNECTIONS", "250"),
            ("BERTH_SERVER__MAX_CONNECTIONS_PER_IP", "100"),
            // Long: the flood's connections stay until the test lets go.
            ("BERTH_SERVER__HEADER_READ_TIMEOUT_SECONDS", "120"),
            ("BERTH_SERVER__IDLE_TIMEOUT_SECONDS", "120"),
        ],
    );
    let addr = server.addr();
    let pid = server.pid();
    let neighbour = reqwest::Client::builder()
        .local_address(IpAddr::V4(NEIGHBOUR))
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let v2 = format!("{}/v2/", server.url());
    let status = neighbour.get(&v2).send().await.expect("warm-up").status();
    assert_eq!(status, 401);
    let before = rss_kib(pid);

    // 2000 connections that never send a byte, from one address: 100 stay,
    // the rest are closed at once.
    let (mut flooded, open) = tokio::task::spawn_blocking(move || {
        let mut streams = flood(FLOODER, addr, 2000);
        let closed = wait_closed(&mut streams, 1900);
        (streams, 2000 - closed)
    })
    .await
    .expect("flood");
    assert_eq!(open, 100, "connections left open from the flooding address");

    // Another address is answered all the while ...
    let status = neighbour
        .get(&v2)
        .send()
        .await
        .expect("the neighbour is answered during the flood")
        .status();
    assert_eq!(status, 401);
    // ... and the flooding address is not.
    let refused = tokio::task::spawn_blocking(move || get_v2(&mut connect_from(FLOODER, addr)))
        .await
        .expect("probe");
    assert_eq!(
        refused, None,
        "a connection over the per-address cap was served"
    );

    // The total cap holds across addresses: 100 + 100 + 50 = 250.
    let (mut others, more_open) = tokio::task::spawn_blocking(move || {
        let mut others = flood(Ipv4Addr::new(127, 0, 0, 3), addr, 100);
        others.extend(flood(Ipv4Addr::new(127, 0, 0, 4), addr, 100));
        let closed = wait_closed(&mut others, 50);
        (others, 200 - closed)
    })
    .await
    .expect("second flood");
    assert!(
        // 149: the neighbour's last connection may not be gone yet.
        (149..=150).contains(&more_open),
        "{more_open} of 200 more connections admitted under a total cap of 250"
    );
    let refused = tokio::task::spawn_blocking(move || {
        get_v2(&mut connect_from(Ipv4Addr::new(127, 0, 0, 5), addr))
    })
    .await
    .expect("probe");
    assert_eq!(refused, None, "a connection over the total cap was served");

    // Letting go frees every place, and the memory.
    flooded.clear();
    others.clear();
    let deadline = Instant::now() + SETTLE;
    loop {
        let served = tokio::task::spawn_blocking(move || {
            get_v2(&mut connect_from(Ipv4Addr::new(127, 0, 0, 5), addr))
        })
        .await
        .expect("probe");
        if served == Some(401) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "places were not freed after the flood ended"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let after = rss_kib(pid);
    assert!(
        after < before + 64 * 1024,
        "RSS grew from {before} KiB to {after} KiB over a flood of 2200 connections"
    );
    drop(server);
}

#[tokio::test(flavor = "multi_thread")]
async fn silent_connections_are_closed_after_the_header_timeout_but_idle_ones_are_kept() {
    raise_fd_limit();
    let dir = tempdir("conn-header");
    let server = TestServer::start_with_env(
        &dir.path().join("data"),
        &[
            ("BERTH_SERVER__HEADER_READ_TIMEOUT_SECONDS", "1"),
            ("BERTH_SERVER__IDLE_TIMEOUT_SECONDS", "600"),
        ],
    );
    let addr = server.addr();
    tokio::task::spawn_blocking(move || {
        // A keep-alive connection that finished a request, then waits.
        let mut idle = connect_from(FLOODER, addr);
        assert_eq!(get_v2(&mut idle), Some(401));

        let mut silent = flood(FLOODER, addr, 50);
        // Slowloris: headers started, never finished.
        let mut partial = flood(NEIGHBOUR, addr, 10);
        for s in &mut partial {
            s.set_nonblocking(false).expect("blocking");
            s.write_all(b"GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                .expect("partial request");
            s.set_nonblocking(true).expect("nonblocking");
        }
        assert_eq!(wait_closed(&mut silent, 50), 50, "silent connections kept");
        assert_eq!(wait_closed(&mut partial, 10), 10, "half-sent headers kept");

        // The idle keep-alive connection outlived them (header timeout 1 s,
        // idle timeout 600 s) and still serves.
        idle.set_nonblocking(true).expect("nonblocking");
        assert!(!is_closed(&mut idle), "the idle connection was closed");
        assert_eq!(get_v2(&mut idle), Some(401));

        // A keep-alive connection that starts another request and stalls.
        idle.set_nonblocking(false).expect("blocking");
        idle.write_all(b"GET /v2/ HTTP/1.1\r\n").expect("partial");
        idle.set_nonblocking(true).expect("nonblocking");
        assert_eq!(wait_closed(std::slice::from_mut(&mut idle), 1), 1);
    })
    .await
    .expect("header timeouts");
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_keep_alive_connections_are_closed_after_the_idle_timeout() {
    let dir = tempdir("conn-idle");
    let server = TestServer::start_with_env(
        &dir.path().join("data"),
        &[
            ("BERTH_SERVER__HEADER_READ_TIMEOUT_SECONDS", "30"),
            ("BERTH_SERVER__IDLE_TIMEOUT_SECONDS", "2"),
        ],
    );
    let addr = server.addr();
    tokio::task::spawn_blocking(move || {
        let mut conn = connect_from(FLOODER, addr);
        assert_eq!(get_v2(&mut conn), Some(401));
        conn.set_nonblocking(true).expect("nonblocking");
        assert_eq!(
            wait_closed(std::slice::from_mut(&mut conn), 1),
            1,
            "an idle keep-alive connection was kept past the idle timeout"
        );
    })
    .await
    .expect("idle timeout");
}
