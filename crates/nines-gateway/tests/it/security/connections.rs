//! Finding 2: connection exhaustion without a key. No header, body or idle timeout and no cap:
//! slowloris connections were held forever, a 1 TB `Content-Length` was waited on.
//!
//! Timer tests run on a paused clock (tokio advances it whenever everything waits), so a 75 s
//! idle timeout takes no wall time and is measured exactly.

use crate::harness::{Harness, chain, hello};
use crate::metrics::{Exposition, scrape};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Reads until the server closes the connection; what it sent. Fails (rather than hang) if it
/// is still open after 10 minutes (of the paused clock, in the timer tests).
async fn until_closed(tcp: &mut TcpStream) -> String {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(600), read)
        .await
        .expect("the connection was never closed");
    String::from_utf8_lossy(&all).into_owned()
}

/// Reads one HTTP/1 response head and its `content-length` body.
async fn one_response(tcp: &mut TcpStream) -> String {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tcp.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before a response");
        all.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&all).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_owned)
                })
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if body.len() >= length {
                return text;
            }
        }
    }
}

fn closed(m: &Exposition, reason: &str) -> f64 {
    m.get("nines_connections_closed_total", &[("reason", reason)])
}

#[tokio::test(start_paused = true)]
async fn connections_that_send_nothing_or_a_slow_head_close_after_the_header_timeout() {
    let h = Harness::start(1, &chain(1)).await;
    // Connected, nothing sent: closed 30 s (header_read_timeout) after accept.
    let mut silent = TcpStream::connect(h.addr).await.unwrap();
    let opened = Instant::now();
    assert_eq!(until_closed(&mut silent).await, "");
    let held = opened.elapsed();
    assert!(
        (Duration::from_secs(30)..Duration::from_secs(31)).contains(&held),
        "{held:?}"
    );

    // Slowloris: a head that trickles in, one header line every 10 s, never finished. The
    // timer runs from its first byte, not from the last.
    let mut slow = TcpStream::connect(h.addr).await.unwrap();
    let started = Instant::now();
    slow.write_all(b"GET /health HTTP/1.1\r\n").await.unwrap();
    let trickle = async {
        for i in 0..10 {
            tokio::time::sleep(Duration::from_secs(10)).await;
            if slow
                .write_all(format!("x-pad-{i}: 1\r\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
        }
    };
    trickle.await;
    assert_eq!(until_closed(&mut slow).await, "");
    let held = started.elapsed();
    assert!(held < Duration::from_secs(41), "held for {held:?}");

    let m = scrape(&h).await;
    assert_eq!(closed(&m, "header_timeout"), 2.0);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_idle_keep_alive_connection_closes_after_the_idle_timeout() {
    let h = Harness::start(1, &chain(1)).await;
    let mut tcp = TcpStream::connect(h.addr).await.unwrap();
    tcp.write_all(b"GET /health HTTP/1.1\r\nhost: nines\r\n\r\n")
        .await
        .unwrap();
    let response = one_response(&mut tcp).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let answered = Instant::now();
    // Kept alive for 75 s (idle_timeout: longer than a balancer's 60 s), then closed.
    assert_eq!(until_closed(&mut tcp).await, "");
    let idle = answered.elapsed();
    assert!(
        (Duration::from_secs(75)..Duration::from_secs(76)).contains(&idle),
        "{idle:?}"
    );
    let m = scrape(&h).await;
    assert_eq!(closed(&m, "idle_timeout"), 1.0);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_body_that_stops_arriving_is_answered_408_after_the_body_timeout() {
    let h = Harness::start(1, &chain(1)).await;
    let mut tcp = TcpStream::connect(h.addr).await.unwrap();
    tcp.write_all(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: nines\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"model\":",
    )
    .await
    .unwrap();
    let started = Instant::now();
    let response = one_response(&mut tcp).await;
    let waited = started.elapsed();
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(
        response.to_ascii_lowercase().contains("connection: close"),
        "{response}"
    );
    assert!(
        (Duration::from_secs(60)..Duration::from_secs(61)).contains(&waited),
        "{waited:?}"
    );
    let m = scrape(&h).await;
    assert_eq!(closed(&m, "body_timeout"), 1.0);
    h.stop().await;
}

#[tokio::test]
async fn a_declared_body_over_the_limit_is_refused_before_it_is_sent() {
    let h = Harness::start(1, &chain(1)).await;
    let mut tcp = TcpStream::connect(h.addr).await.unwrap();
    tcp.write_all(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: nines\r\ncontent-type: application/json\r\ncontent-length: 1000000000000\r\n\r\n",
    )
    .await
    .unwrap();
    // Answered without a byte of the body sent (a guard against a hang, not a timing).
    let response = tokio::time::timeout(Duration::from_secs(10), one_response(&mut tcp))
        .await
        .expect("the gateway waited for the body");
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.contains("request_too_large"), "{response}");
    assert_eq!(h.chat_hits(0), 0);
    h.stop().await;
}

fn capped_at_20() -> String {
    chain(1).replace(
        "max_body_bytes = 65536",
        "max_body_bytes = 65536\nmax_connections = 20",
    )
}

#[tokio::test]
async fn at_the_cap_the_oldest_idle_connection_makes_room() {
    let h = Harness::start(1, &capped_at_20()).await;
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(TcpStream::connect(h.addr).await.unwrap());
    }
    // The 21st client is served: the oldest idle socket was closed for it.
    let served = h.chat(&hello("chat")).await;
    assert_eq!(served.status(), 200);
    assert_eq!(until_closed(&mut idle[0]).await, "");
    let m = scrape(&h).await;
    assert!(closed(&m, "evicted_at_limit") >= 1.0);
    assert_eq!(closed(&m, "refused_at_limit"), 0.0);
    assert_eq!(m.get("nines_connections_limit", &[]), 20.0);
    h.stop().await;
}

#[tokio::test]
async fn at_the_cap_with_every_connection_busy_a_client_gets_a_fast_503() {
    let h = Harness::start(1, &capped_at_20()).await;
    // 20 requests in flight: heads sent, bodies still coming.
    let mut busy = Vec::new();
    for _ in 0..20 {
        let mut tcp = TcpStream::connect(h.addr).await.unwrap();
        tcp.write_all(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: nines\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{",
        )
        .await
        .unwrap();
        busy.push(tcp);
    }
    // Until the 20 reach the service they are not in flight; then nothing is idle.
    let mut answer = String::new();
    for _ in 0..100 {
        let mut over = TcpStream::connect(h.addr).await.unwrap();
        over.write_all(b"GET /health HTTP/1.1\r\nhost: nines\r\n\r\n")
            .await
            .unwrap();
        answer = until_closed(&mut over).await;
        if answer.starts_with("HTTP/1.1 503") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("retry-after: 1"), "{answer}");
    assert!(answer.contains("too_many_connections"), "{answer}");
    // An SDK's request gets the same, and may retry after a second.
    let refused = h.chat(&hello("chat")).await;
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    drop(busy);
    let mut status = 0;
    for _ in 0..100 {
        status = h.chat(&hello("chat")).await.status().as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        status, 200,
        "never served again after the busy connections closed"
    );
    let m = scrape(&h).await;
    assert!(closed(&m, "refused_at_limit") >= 2.0);
    h.stop().await;
}

/// 500 slowloris and 500 idle connections open while a normal client sends requests one after
/// another: every request is served, and the median under attack stays within the p99 of the
/// same client without it (measured in the same run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_connections_do_not_slow_a_normal_client() {
    let h = Harness::start(1, &chain(1)).await;
    let client = reqwest::Client::new();
    let latencies = |n: usize| {
        let client = client.clone();
        let url = h.url("/v1/chat/completions");
        async move {
            let mut out = Vec::with_capacity(n);
            for _ in 0..n {
                let started = Instant::now();
                let response = client.post(&url).json(&hello("chat")).send().await.unwrap();
                assert_eq!(response.status(), 200);
                let _ = response.bytes().await.unwrap();
                out.push(started.elapsed());
            }
            out.sort();
            out
        }
    };
    let _warm = latencies(50).await;
    let baseline = latencies(300).await;

    let mut attackers = Vec::new();
    for i in 0..1000 {
        let mut tcp = TcpStream::connect(h.addr).await.unwrap();
        if i % 2 == 0 {
            // Slowloris: a head begun, never finished.
            tcp.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n")
                .await
                .unwrap();
        }
        attackers.push(tcp);
    }
    let under_attack = latencies(300).await;
    let quantile = |v: &[Duration], q: f64| v[((v.len() - 1) as f64 * q) as usize];
    let (base_p50, base_p99) = (quantile(&baseline, 0.5), quantile(&baseline, 0.99));
    let attack_p50 = quantile(&under_attack, 0.5);
    println!(
        "baseline p50 {base_p50:?} p99 {base_p99:?}; under attack p50 {attack_p50:?} p99 {:?}",
        quantile(&under_attack, 0.99)
    );
    assert!(
        attack_p50 <= base_p99,
        "under attack p50 {attack_p50:?} > baseline p99 {base_p99:?}"
    );
    let m = scrape(&h).await;
    assert!(m.get("nines_connections_open", &[]) >= 1000.0);
    drop(attackers);
    h.stop().await;
}

#[tokio::test]
async fn http2_limits_are_advertised_and_enforced() {
    let h = Harness::start(1, &chain(1)).await;
    let tcp = TcpStream::connect(h.addr).await.unwrap();
    let (send, mut connection) = h2::client::handshake(tcp).await.unwrap();
    let request = |extra: Option<String>| {
        let mut request = http::Request::get(format!("http://{}/health", h.addr));
        if let Some(value) = extra {
            request = request.header("x-padding", value);
        }
        request.body(()).unwrap()
    };
    let mut ready = send.clone().ready().await.unwrap();
    let (response, _) = ready.send_request(request(None), true).unwrap();
    let response = tokio::select! {
        r = response => r.unwrap(),
        _ = &mut connection => panic!("the connection ended"),
    };
    assert_eq!(response.status(), 200);
    // The server's SETTINGS have arrived: at most 128 streams at once.
    assert_eq!(connection.max_concurrent_send_streams(), 128);

    // A header list over 64 KiB: refused (431, or the stream reset), never served.
    let mut ready = send.ready().await.unwrap();
    let outcome = match ready.send_request(request(Some("a".repeat(70 * 1024))), true) {
        Ok((response, _)) => tokio::select! {
            r = response => r.map(|r| r.status().as_u16()).ok(),
            _ = &mut connection => None,
        },
        Err(_) => None,
    };
    assert!(matches!(outcome, None | Some(431)), "{outcome:?}");
    drop((ready, connection));
    h.stop().await;
}
