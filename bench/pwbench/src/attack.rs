//! An unauthenticated attack on a running API, measured from a bystander: `half`
//! connections from one address each send half a request head and hold it, and
//! `wrong` attempts from another address each present a known token id with a
//! wrong secret; meanwhile a third address asks `/healthz` and a valid request
//! (`/api/v1/whoami` with a real token) every `interval` and times each answer.
//! Afterwards the caller reads how the scans fared (the jobs) from the API.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// What the attack is (the command line of `pwbench attack`).
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Attack {
    /// The API's address (IP:PORT).
    #[arg(long)]
    pub(crate) api: SocketAddr,
    /// A valid token (its id is the one guessed at).
    #[arg(long)]
    pub(crate) token: String,
    /// Half-sent requests held open.
    #[arg(long, default_value_t = 3000)]
    pub(crate) half: usize,
    /// Wrong secrets sent.
    #[arg(long, default_value_t = 1000)]
    pub(crate) wrong: usize,
    /// How long the bystander measures.
    #[arg(long, default_value_t = 30)]
    pub(crate) seconds: u64,
    /// The half-sent requests' source address.
    #[arg(long, default_value = "127.0.0.66")]
    pub(crate) attacker: IpAddr,
    /// The wrong secrets' source address.
    #[arg(long, default_value = "127.0.0.77")]
    pub(crate) guesser: IpAddr,
    /// The bystander's source address.
    #[arg(long, default_value = "127.0.0.1")]
    pub(crate) bystander: IpAddr,
}

async fn connect_from(from: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = if to.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(to).await
}

/// One request on a fresh connection from `from`; its status and how long it took,
/// or `None` when no answer came within 5 s.
async fn request(from: IpAddr, api: SocketAddr, head: &str) -> (Option<u16>, Duration) {
    let started = Instant::now();
    let exchange = async {
        let mut s = connect_from(from, api).await.ok()?;
        s.write_all(head.as_bytes()).await.ok()?;
        let mut buf = vec![0u8; 4096];
        let mut got = Vec::new();
        loop {
            let n = s.read(&mut buf).await.ok()?;
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
            if got.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
        let text = String::from_utf8_lossy(&got);
        text.split_whitespace().nth(1)?.parse::<u16>().ok()
    };
    let status = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .ok()
        .flatten();
    (status, started.elapsed())
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

/// Run it; one JSON object of results.
pub(crate) async fn run(a: Attack) -> anyhow::Result<serde_json::Value> {
    let health = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_string();
    let valid = format!(
        "GET /api/v1/whoami HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        a.token
    );
    // The bystander has used its token before, as a working client has.
    let (status, _) = request(a.bystander, a.api, &valid).await;
    anyhow::ensure!(
        status == Some(200),
        "the valid token does not work before the attack: {status:?}"
    );
    let started = Instant::now();
    let deadline = started + Duration::from_secs(a.seconds);
    // 1. Half-sent heads, held open until the end.
    let holders = {
        let a = a.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            let (mut opened, mut failed) = (0usize, 0usize);
            // 100 at a time, and never past the deadline (a server out of
            // descriptors leaves connects hanging in its full backlog).
            let one = || async {
                let mut s = tokio::time::timeout(Duration::from_secs(2), connect_from(a.attacker, a.api))
                    .await
                    .ok()?
                    .ok()?;
                s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: aaaa")
                    .await
                    .ok()?;
                Some(s)
            };
            while opened + failed < a.half && Instant::now() < deadline {
                let batch = (a.half - opened - failed).min(100);
                for s in futures::future::join_all((0..batch).map(|_| one())).await {
                    match s {
                        Some(s) => {
                            opened += 1;
                            held.push(s);
                        }
                        None => failed += 1,
                    }
                }
            }
            // How many the server still holds open at the end (it closed the rest).
            tokio::time::sleep_until(deadline.into()).await;
            let mut still_open = 0usize;
            for s in &mut held {
                let mut b = [0u8; 1];
                match tokio::time::timeout(Duration::from_millis(1), s.read(&mut b)).await {
                    Err(_) => still_open += 1, // nothing to read: still open
                    Ok(Ok(0)) | Ok(Err(_)) => {}
                    Ok(Ok(_)) => {}
                }
            }
            (opened, failed, still_open)
        })
    };
    // 2. Wrong secrets for a known id, 20 at a time.
    let guessers = {
        let a = a.clone();
        tokio::spawn(async move {
            let id = a.token.split('_').nth(1).unwrap_or_default().to_string();
            let wrong = format!("pwt_{id}_{}", "0".repeat(64));
            let head = format!(
                "GET /api/v1/whoami HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {wrong}\r\nConnection: close\r\n\r\n"
            );
            let mut by_status = std::collections::BTreeMap::<String, usize>::new();
            let mut sent = 0;
            while sent < a.wrong {
                let batch = (a.wrong - sent).min(20);
                let answers =
                    futures::future::join_all((0..batch).map(|_| request(a.guesser, a.api, &head))).await;
                for (status, _) in answers {
                    *by_status
                        .entry(status.map_or("none".into(), |s| s.to_string()))
                        .or_default() += 1;
                }
                sent += batch;
            }
            by_status
        })
    };
    // 3. The bystander.
    let (mut health_ms, mut valid_ms) = (Vec::new(), Vec::new());
    let (mut health_bad, mut valid_bad) = (0usize, 0usize);
    while Instant::now() < deadline {
        let (s, t) = request(a.bystander, a.api, &health).await;
        if s == Some(200) {
            health_ms.push(t)
        } else {
            health_bad += 1
        }
        let (s, t) = request(a.bystander, a.api, &valid).await;
        if s == Some(200) {
            valid_ms.push(t)
        } else {
            valid_bad += 1
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (opened, refused, still_open) = holders.await?;
    let guesses = guessers.await?;
    health_ms.sort_unstable();
    valid_ms.sort_unstable();
    Ok(serde_json::json!({
        "measure": "attack",
        "seconds": started.elapsed().as_secs_f64(),
        "half_sent_opened": opened,
        "half_sent_not_connected": refused,
        "half_sent_still_open_at_end": still_open,
        "wrong_secret_answers": guesses,
        "healthz_ok": health_ms.len(),
        "healthz_failed": health_bad,
        "healthz_p50_ms": percentile(&health_ms, 0.5),
        "healthz_p99_ms": percentile(&health_ms, 0.99),
        "valid_ok": valid_ms.len(),
        "valid_failed": valid_bad,
        "valid_p50_ms": percentile(&valid_ms, 0.5),
        "valid_p99_ms": percentile(&valid_ms, 0.99),
    }))
}
