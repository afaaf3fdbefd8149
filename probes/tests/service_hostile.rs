//! Service detection against hostile and silent servers: garbage, 100 MB, never
//! closing, closing at once. Each must end in "unknown" with a reason, within the
//! limits, never a hang or a false name. The servers are this test's own listeners
//! on 127.0.0.1 (ephemeral ports); nothing else is contacted.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use portwatch_probes::service::{identify, Limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

async fn server<F, Fut>(behave: F) -> SocketAddr
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            tokio::spawn(behave(conn));
        }
    });
    addr
}

fn limits() -> Limits {
    Limits {
        connect: Duration::from_secs(1),
        read: Duration::from_millis(400),
        max_bytes: 64 * 1024,
    }
}

/// Identify, asserting it ends well within the worst case of its limits.
async fn bounded(addr: SocketAddr) -> portwatch_probes::service::Identification {
    let started = Instant::now();
    let id = tokio::time::timeout(Duration::from_secs(10), identify(addr, limits()))
        .await
        .expect("identify must not hang");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    id
}

#[tokio::test]
async fn garbage_is_unknown_with_its_banner() {
    let addr = server(|mut c| async move {
        let _ = c.write_all(b"\x00\x13\xffgarbage\x07\r\n").await;
        tokio::time::sleep(Duration::from_secs(3)).await;
    })
    .await;
    let id = bounded(addr).await;
    assert_eq!(id.found, None);
    assert_eq!(id.reason.as_deref(), Some("banner not recognised"));
}

#[tokio::test]
async fn a_hundred_megabytes_is_cut_off() {
    let addr = server(|mut c| async move {
        let chunk = vec![b'A'; 1 << 20];
        for _ in 0..100 {
            if c.write_all(&chunk).await.is_err() {
                return;
            }
        }
    })
    .await;
    let id = bounded(addr).await;
    assert_eq!(id.found, None);
    assert!(
        id.reason.unwrap().contains("more than"),
        "the byte budget ended it"
    );
}

#[tokio::test]
async fn silent_server_that_never_closes_is_unknown() {
    let addr = server(|mut c| async move {
        let mut buf = [0u8; 1024];
        // Read whatever comes, answer nothing, keep the connection open.
        loop {
            match tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
                Ok(Ok(_)) => {}
            }
        }
    })
    .await;
    let id = bounded(addr).await;
    assert_eq!(id.found, None);
    let reason = id.reason.unwrap();
    assert!(reason.contains("no answer"), "{reason}");
}

#[tokio::test]
async fn closing_at_once_is_unknown() {
    let addr = server(|c| async move { drop(c) }).await;
    let id = bounded(addr).await;
    assert_eq!(id.found, None);
    assert!(id.reason.unwrap().contains("closed"));
}

#[tokio::test]
async fn nothing_listening_is_a_connect_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let id = bounded(addr).await;
    assert_eq!(id.found, None);
    assert!(id.reason.unwrap().contains("connect failed"));
}
