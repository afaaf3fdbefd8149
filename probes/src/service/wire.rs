//! Bounded conversations with a server that may be hostile: every read has a
//! deadline and a byte budget, so a server that sends garbage, sends 100 MB, never
//! closes or closes at once ends the conversation with a reason, never a hang.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

/// Limits of one conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connect timeout.
    pub connect: Duration,
    /// Longest wait for the bytes a probe asks for.
    pub read: Duration,
    /// Most bytes kept from the server over the whole conversation.
    pub max_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(2),
            read: Duration::from_millis(1500),
            max_bytes: 64 * 1024,
        }
    }
}

/// Why a conversation ended without an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The connection could not be made.
    #[error("connect failed: {0}")]
    Connect(String),
    /// The server said nothing in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The server closed the connection before answering.
    #[error("closed by the server")]
    Closed,
    /// The server sent more than the byte budget.
    #[error("more than {0} bytes")]
    TooMuch(usize),
    /// Another I/O error.
    #[error("i/o error: {0}")]
    Io(String),
}

/// A connection with its budget.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    limits: Limits,
    received: usize,
    /// Everything received so far (at most `max_bytes`).
    pub buf: Vec<u8>,
}

impl Conn {
    /// Connect to `addr` within the connect timeout.
    pub async fn open(addr: SocketAddr, limits: Limits) -> Result<Conn, WireError> {
        let stream = tokio::time::timeout(limits.connect, TcpStream::connect(addr))
            .await
            .map_err(|_| WireError::Timeout(limits.connect))?
            .map_err(|e| WireError::Connect(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        Ok(Conn {
            stream,
            limits,
            received: 0,
            buf: Vec::new(),
        })
    }

    /// Send bytes.
    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), WireError> {
        tokio::time::timeout(self.limits.read, self.stream.write_all(bytes))
            .await
            .map_err(|_| WireError::Timeout(self.limits.read))?
            .map_err(|e| WireError::Io(e.to_string()))
    }

    /// Read until `done(&buf)` holds, the deadline passes, the server closes, or the
    /// budget is spent. Returns the bytes received by this call's end (all of `buf`).
    pub async fn read_until(&mut self, done: impl Fn(&[u8]) -> bool) -> Result<&[u8], WireError> {
        let deadline = Instant::now() + self.limits.read;
        let mut chunk = [0u8; 4096];
        while !done(&self.buf) {
            let n = match timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) if self.buf.is_empty() => return Err(WireError::Timeout(self.limits.read)),
                Err(_) => break,
                Ok(Err(e)) => return Err(WireError::Io(e.to_string())),
                Ok(Ok(0)) if self.buf.is_empty() => return Err(WireError::Closed),
                Ok(Ok(0)) => break,
                Ok(Ok(n)) => n,
            };
            self.received += n;
            if self.received > self.limits.max_bytes {
                return Err(WireError::TooMuch(self.limits.max_bytes));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
        Ok(&self.buf)
    }

    /// Read whatever the server sends first (a banner), up to a line end or the
    /// deadline.
    pub async fn banner(&mut self) -> Result<&[u8], WireError> {
        self.read_until(|b| b.contains(&b'\n')).await
    }

    /// Forget what was received (before the next exchange).
    pub fn clear(&mut self) {
        self.buf.clear();
    }
}

/// The first line of `bytes`, printable and trimmed, at most 200 characters.
pub fn first_line(bytes: &[u8]) -> String {
    let line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    String::from_utf8_lossy(line)
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect::<String>()
        .trim()
        .to_string()
}
