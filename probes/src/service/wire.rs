//! Bounded conversations with a server that may be hostile: every read has a
//! deadline and a byte budget, so a server that sends garbage, sends 100 MB, never
//! closes or closes at once ends the conversation with a reason, never a hang.
//! The same conversation runs over plain TCP or through TLS ([`Conn::open_tls`]).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

use super::tls::{self, TlsInfo};

/// A byte stream a conversation runs over (TCP, or TLS over TCP).
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

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
    /// The TLS handshake failed (the port does not speak TLS, or not a TLS we know).
    #[error("tls handshake failed: {0}")]
    Tls(String),
}

/// A connection with its budget.
pub struct Conn {
    addr: SocketAddr,
    stream: Box<dyn Stream>,
    limits: Limits,
    received: usize,
    /// Everything received so far (at most `max_bytes`).
    pub buf: Vec<u8>,
    /// The TLS session, when the conversation runs through TLS.
    pub tls: Option<TlsInfo>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("limits", &self.limits)
            .field("received", &self.received)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

async fn connect(addr: SocketAddr, limits: Limits) -> Result<TcpStream, WireError> {
    let stream = tokio::time::timeout(limits.connect, TcpStream::connect(addr))
        .await
        .map_err(|_| WireError::Timeout(limits.connect))?
        .map_err(|e| WireError::Connect(e.to_string()))?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

impl Conn {
    /// Connect to `addr` within the connect timeout.
    pub async fn open(addr: SocketAddr, limits: Limits) -> Result<Conn, WireError> {
        let stream = connect(addr, limits).await?;
        Ok(Conn {
            addr,
            stream: Box::new(stream),
            limits,
            received: 0,
            buf: Vec::new(),
            tls: None,
        })
    }

    /// Connect and complete a TLS handshake (any certificate is accepted: this is
    /// recognition, not trust), within the connect plus read timeouts.
    pub async fn open_tls(addr: SocketAddr, limits: Limits) -> Result<Conn, WireError> {
        let tcp = connect(addr, limits).await?;
        let (stream, info) = tokio::time::timeout(limits.read, tls::handshake(tcp, addr))
            .await
            .map_err(|_| WireError::Timeout(limits.read))??;
        Ok(Conn {
            addr,
            stream: Box::new(stream),
            limits,
            received: 0,
            buf: Vec::new(),
            tls: Some(info),
        })
    }

    /// Open plain or through TLS.
    pub async fn open_as(addr: SocketAddr, limits: Limits, tls: bool) -> Result<Conn, WireError> {
        if tls {
            Self::open_tls(addr, limits).await
        } else {
            Self::open(addr, limits).await
        }
    }

    /// A new connection to the same server, the same way (plain or TLS), with the
    /// budget that is left.
    pub async fn reconnect(&mut self) -> Result<(), WireError> {
        let fresh = Self::open_as(self.addr, self.limits, self.tls.is_some()).await?;
        self.stream = fresh.stream;
        self.buf.clear();
        Ok(())
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

    /// Send `request` and read the reply until `done` (what came before is forgotten).
    pub async fn exchange(
        &mut self,
        request: &[u8],
        done: impl Fn(&[u8]) -> bool,
    ) -> Result<&[u8], WireError> {
        self.clear();
        self.send(request).await?;
        self.read_until(done).await
    }

    /// What was received since the last [`Self::clear`].
    pub fn buffered(&self) -> &[u8] {
        &self.buf
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
