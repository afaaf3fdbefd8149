//! Test support: network namespaces the tests create and always remove, the real
//! `portwatch` binary run inside them, listeners and HTTP requests made from inside.
//!
//! Scanning safety: every probe a test causes goes to 127.0.0.0/8 *inside a fresh
//! namespace*, whose loopback holds only the test's own listeners and which has no
//! other interface or route, so nothing can leave the machine and the machine's own
//! services are never probed.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::print_stderr)]

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sched::{setns, CloneFlags};

pub mod receivers;
pub mod scaleout;
pub mod sweep;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_portwatch")
}

/// A network namespace that is deleted (with every process in it) on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Self {
        assert!(
            nix::unistd::geteuid().is_root(),
            "these tests create network namespaces and must run as root (CI does)"
        );
        let name = format!(
            "pwt-{tag}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        run_ok(Command::new("ip").args(["netns", "add", &name]));
        let ns = Self { name };
        run_ok(Command::new("ip").args(["-n", &ns.name, "link", "set", "lo", "up"]));
        ns
    }

    fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    /// Run `f` on a thread that has joined this namespace; sockets it creates live
    /// in the namespace for their whole life, whichever thread uses them later.
    pub fn within<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let file = File::open(self.path()).expect("open netns");
        std::thread::spawn(move || {
            setns(&file, CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
        .join()
        .expect("netns thread")
    }

    /// A TCP listener on `addr` inside the namespace, with a deep accept backlog
    /// (4096, the namespace's somaxconn): a scan at 200k probes/s completes many
    /// handshakes at once, and an accepting thread briefly starved of CPU must not
    /// make the kernel drop SYNs (a connect scan would rightly report the port
    /// filtered).
    pub fn listen(&self, addr: &str) -> TcpListener {
        let addr: SocketAddr = addr.parse().expect("addr");
        self.within(move || {
            let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
            let backlog = nix::sys::socket::Backlog::new(4096).expect("backlog");
            nix::sys::socket::listen(&listener, backlog).expect("listen backlog");
            listener
        })
    }

    /// A listener that accepts (and drops) connections on a thread, like a real
    /// service. A listener that never accepts fills its backlog after ~128 probes
    /// and then the kernel drops SYNs: the port really does stop answering.
    pub fn serve(&self, addr: &str) -> Server {
        let listener = self.listen(addr);
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => drop(conn),
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Server {
            stop,
            thread: Some(thread),
        }
    }

    /// A command run inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Run portwatch with `args` inside the namespace to completion; its output and
    /// its own peak resident memory in MB. A python3 wrapper reads the peak with
    /// getrusage(RUSAGE_CHILDREN) of its one child, so that the children of other
    /// tests running meanwhile in this process do not count.
    pub fn portwatch_peak_rss(&self, args: &[&str]) -> (Output, u64) {
        const WRAPPER: &str = "import resource, subprocess, sys\n\
r = subprocess.run(sys.argv[1:])\n\
sys.stderr.write('\\npeak_rss_kb=%d\\n' % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n\
sys.exit(r.returncode)\n";
        let out = self
            .command("python3")
            .args(["-c", WRAPPER, bin()])
            .args(args)
            .output()
            .expect("run portwatch under python3");
        let text = String::from_utf8_lossy(&out.stderr).to_string();
        let kb: u64 = text
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("peak_rss_kb=")?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no peak_rss_kb line: {text}"));
        (out, kb / 1024)
    }

    /// Run portwatch inside the namespace to completion.
    pub fn portwatch(&self, args: &[&str]) -> Output {
        self.command(bin()).args(args).output().expect("run portwatch")
    }

    /// Start a long-running portwatch inside the namespace.
    pub fn spawn_portwatch(&self, args: &[&str], log: &Path) -> Child {
        let log = File::create(log).expect("log file");
        self.command(bin())
            .args(args)
            .env("PORTWATCH_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn portwatch")
    }

    /// GET `path` from an HTTP server at `addr` inside the namespace.
    pub fn http_get(&self, addr: &str, path: &str) -> Option<(u16, String)> {
        self.http_get_full(addr, path).map(|a| (a.status, a.body))
    }

    /// GET `path`: status, headers (names in lower case) and body.
    pub fn http_get_full(&self, addr: &str, path: &str) -> Option<HttpAnswer> {
        self.http("GET", addr, path, &[], "")
    }

    /// Any request: `method path` with `headers` and `body`; status, headers, body.
    pub fn http(
        &self,
        method: &str,
        addr: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Option<HttpAnswer> {
        let addr: SocketAddr = addr.parse().expect("addr");
        let mut request = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n");
        for (k, v) in headers {
            request.push_str(&format!("{k}: {v}\r\n"));
        }
        if !body.is_empty() {
            request.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        request.push_str("\r\n");
        request.push_str(body);
        self.within(move || {
            let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
            stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
            stream.write_all(request.as_bytes()).ok()?;
            let mut response = String::new();
            stream.read_to_string(&mut response).ok()?;
            let (head, body) = response.split_once("\r\n\r\n")?;
            let mut lines = head.lines();
            let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
            let headers = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                .collect();
            Some(HttpAnswer {
                status,
                headers,
                body: body.to_string(),
            })
        })
    }

    /// `method path` on the API at `api` as the holder of `token`: the status and
    /// the body as JSON (null when it is not JSON). It must answer.
    pub fn api(
        &self,
        api: &str,
        method: &str,
        path: &str,
        token: &str,
        body: &str,
    ) -> (u16, serde_json::Value) {
        self.try_api(api, method, path, token, body)
            .unwrap_or_else(|| panic!("{method} {path}: no answer"))
    }

    /// Like [`Netns::api`], but `None` while nothing answers (for waits).
    pub fn try_api(
        &self,
        api: &str,
        method: &str,
        path: &str,
        token: &str,
        body: &str,
    ) -> Option<(u16, serde_json::Value)> {
        let bearer = format!("Bearer {token}");
        let answer = self.http(method, api, path, &[("Authorization", bearer.as_str())], body)?;
        Some((
            answer.status,
            serde_json::from_str(&answer.body).unwrap_or(serde_json::Value::Null),
        ))
    }

    /// GET `path` with `token`: its JSON once the API answers 200.
    pub fn get_json_as(&self, api: &str, path: &str, token: &str) -> Option<serde_json::Value> {
        self.try_api(api, "GET", path, token, "")
            .and_then(|(status, body)| (status == 200).then_some(body))
    }

    /// A new token for `user` with `role`, made with `portwatch token create`
    /// against the config `cfg`.
    pub fn token(&self, cfg: &str, user: &str, role: &str) -> String {
        let out = self.portwatch(&["--config", cfg, "token", "create", "--user", user, "--role", role]);
        assert!(out.status.success(), "token create: {}", stderr(&out));
        let token = stdout(&out).trim().to_string();
        assert!(token.starts_with("pwt_"), "{token}");
        token
    }

    /// Start a long-running portwatch inside the namespace, its stdout to `out`.
    pub fn spawn_portwatch_stdout(&self, args: &[&str], log: &Path, out: &Path) -> Child {
        let log = File::create(log).expect("log file");
        let out = File::create(out).expect("stdout file");
        self.command(bin())
            .args(args)
            .env("PORTWATCH_LOG", "info")
            .stdout(out)
            .stderr(log)
            .spawn()
            .expect("spawn portwatch")
    }

    /// Sign in to the console at `api` with `token`: the session cookie (`name=value`)
    /// and its CSRF token.
    pub fn sign_in(&self, api: &str, token: &str) -> (String, String) {
        let login = self
            .http(
                "POST",
                api,
                "/api/v1/session",
                &[("Content-Type", "application/json")],
                &format!(r#"{{"token":"{token}"}}"#),
            )
            .expect("sign-in answer");
        assert_eq!(login.status, 200, "sign in: {}", login.body);
        let cookie = login
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .and_then(|(_, c)| c.split(';').next().map(str::to_string))
            .expect("a session cookie");
        let view: serde_json::Value = serde_json::from_str(&login.body).expect("session view");
        let csrf = view["csrf"].as_str().expect("csrf").to_string();
        (cookie, csrf)
    }

    /// GET and parse JSON, expecting 200.
    pub fn get_json(&self, addr: &str, path: &str) -> Option<serde_json::Value> {
        let (status, body) = self.http_get(addr, path)?;
        if status != 200 {
            return None;
        }
        serde_json::from_str(&body).ok()
    }

    /// PIDs of every process inside the namespace.
    pub fn pids(&self) -> Vec<i32> {
        let out = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
            .expect("ip netns pids");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for pid in self.pids() {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.pids().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// An HTTP answer: status, headers (names in lower case), body.
pub struct HttpAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// An accepting listener; closed on drop.
pub struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A child process killed on drop (in addition to the namespace cleanup).
pub struct Proc(pub Child);

impl Proc {
    pub fn signal(&mut self, sig: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.0.id() as i32), sig);
    }

    /// SIGTERM and wait (bounded) for a clean exit; returns the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.0.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        None
    }

    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Poll `f` every 100 ms until it returns `Some`, for at most `limit`.
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn run_ok(cmd: &mut Command) {
    let out = cmd.output().expect("run command");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// stdout as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A temporary directory for one test.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// Write a config file.
/// `[schedule]` lines that turn every task off.
pub const EVERY_TASK_OFF: &str = r#"liveness = "off"
full_ports = "off"
high_risk_ports = "off"
port_recheck = "off"
offline_high_risk_ports = "off"
all_assets_full_ports = "off"
service_detection = "off"
admin_panels = "off""#;

/// The config of a `portwatch up` watching a loopback fleet in a test's namespace:
/// `assets` (its `[[assets]]` tables), fast scans (300 ms timeout), the `schedule`
/// lines, its data in `dir/data`, its API on `api`, and `extra` TOML after those.
/// Written into `dir`; its path.
pub fn loopback_up_config(dir: &Path, assets: &str, schedule: &str, api: &str, extra: &str) -> PathBuf {
    write_config(
        dir,
        &format!(
            r#"[scope]
allow_reserved = true

{assets}

[scan]
rate = 100000
timeout = "300ms"

[schedule]
{schedule}

[store]
path = "{}"

[api]
listen = "{api}"

{extra}
"#,
            dir.join("data").display()
        ),
    )
}

pub fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("portwatch.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// The served state (`portwatch snapshot`) and a fresh fold of the whole log
/// (`portwatch rebuild` into `scratch`, then its snapshot), as JSON.
pub fn served_and_rebuilt(ns: &Netns, cfg: &str, scratch: &Path) -> (serde_json::Value, serde_json::Value) {
    let served = ns.portwatch(&["--config", cfg, "snapshot"]);
    assert!(served.status.success(), "{}", stderr(&served));
    let rebuilt_path = scratch.to_str().expect("utf8");
    let rebuild = ns.portwatch(&["--config", cfg, "rebuild", "--to", rebuilt_path]);
    assert!(rebuild.status.success(), "{}", stderr(&rebuild));
    let rebuilt = ns.portwatch(&["--config", cfg, "--data", rebuilt_path, "snapshot"]);
    assert!(rebuilt.status.success(), "{}", stderr(&rebuilt));
    (
        serde_json::from_slice(&served.stdout).expect("snapshot json"),
        serde_json::from_slice(&rebuilt.stdout).expect("rebuilt json"),
    )
}

/// The hosts `scan --json` reported unverified (wildcard or untrusted answers).
pub fn unverified_hosts(out: &Output) -> Vec<serde_json::Value> {
    stdout(out)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["state"] == "unverified")
        .collect()
}

/// The (ip, port) pairs in `scan --json` output: one JSON object per line (lines
/// about unverified hosts carry no port and are left out).
pub fn open_ports(out: &Output) -> std::collections::BTreeSet<(String, u64)> {
    stdout(out)
        .lines()
        .filter(|l| !l.contains("\"state\":\"unverified\""))
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}"));
            (
                v["ip"].as_str().expect("ip").to_string(),
                v["port"].as_u64().expect("port"),
            )
        })
        .collect()
}

/// Append `(id, body)` decision records to an embedded journal as another writer
/// would (the table `decisions` of `events.db`, with Python's sqlite3), bypassing
/// portwatch and its seal.
#[allow(dead_code)]
pub fn write_into_journal(events_db: &Path, records: &[(String, String)]) {
    let script = r#"
import json, sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=10)
with db:
    for id, body in json.loads(sys.argv[2]):
        db.execute("INSERT INTO decisions (id, body) VALUES (?, ?)", (id, body))
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script, events_db.to_str().expect("utf8")])
        .arg(serde_json::to_string(records).expect("json"))
        .output()
        .expect("python3");
    assert!(out.status.success(), "{}", stderr(&out));
}

/// A liveness event for `ip` from a test's own origin (node `node`, an ad-hoc job).
pub fn liveness_event(node: &str, ip: std::net::IpAddr, alive: bool) -> portwatch_events::Event {
    portwatch_events::Event::new(
        &portwatch_events::Origin {
            node: node.into(),
            job: portwatch_events::JobId::new(),
            task: portwatch_events::Task::Adhoc,
        },
        chrono::Utc::now(),
        portwatch_events::Observation::HostLiveness(portwatch_events::HostLiveness {
            ip,
            alive,
            probes: Vec::new(),
        }),
    )
}
