//! Real receivers for the notification tests, each started inside the test's
//! namespace and stopped with it: an HTTP receiver (Python's http.server,
//! `receiver.py`), rsyslog (RFC 5424 parsed by a real syslog server), aiosmtpd (an
//! SMTP server writing a Maildir) and Prometheus Alertmanager.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{wait_for, Netns, Proc};

/// The secret every test channel signs with.
pub const SECRET: &str = "change-me";

/// The HTTP receiver at `addr` inside `ns`, logging to `log`, answering 500 to the
/// first `fail_first` requests.
pub fn http(ns: &Netns, addr: &str, log: &Path, fail_first: u32) -> Proc {
    http_tls(ns, addr, log, fail_first, None)
}

/// The same receiver, speaking HTTPS with `(cert, key)` when given.
pub fn http_tls(ns: &Netns, addr: &str, log: &Path, fail_first: u32, tls: Option<(&Path, &Path)>) -> Proc {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/receiver.py");
    let (host, port) = addr.split_once(':').expect("addr");
    let child = ns
        .command("python3")
        .args([
            script,
            host,
            port,
            log.to_str().expect("utf8"),
            SECRET,
            &fail_first.to_string(),
        ])
        .args(
            tls.iter()
                .flat_map(|(c, k)| [c.to_str().expect("utf8"), k.to_str().expect("utf8")]),
        )
        .spawn()
        .expect("start receiver");
    let proc = Proc(child);
    wait_listening(ns, addr, "receiver listening");
    proc
}

/// Wait until something accepts TCP connections at `addr` inside `ns`.
fn wait_listening(ns: &Netns, addr: &str, what: &str) {
    let addr = addr.to_string();
    wait_for(Duration::from_secs(10), || {
        let addr = addr.clone();
        ns.within(move || std::net::TcpStream::connect(addr.as_str()).ok().map(|_| ()))
    })
    .unwrap_or_else(|| panic!("{what}: nothing accepts connections at {addr}"));
}

/// What the HTTP receiver got, in order.
pub fn received(log: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("receiver line"))
        .collect()
}

/// A received request's body as JSON.
pub fn body(request: &serde_json::Value) -> serde_json::Value {
    serde_json::from_str(request["body"].as_str().expect("body")).expect("json body")
}

/// rsyslog listening on UDP `port` and TCP `port + 1` of 127.0.0.1, writing each message's parsed
/// RFC 5424 fields as `timestamp|hostname|app-name|procid|msgid|structured-data|msg`
/// lines to `dir/syslog.out` (returned).
pub fn rsyslog(ns: &Netns, dir: &Path, port: u16) -> (Proc, PathBuf) {
    let out = dir.join("syslog.out");
    let conf = dir.join("rsyslog.conf");
    std::fs::write(
        &conf,
        format!(
            r#"global(workDirectory="{dir}")
module(load="imudp")
input(type="imudp" address="127.0.0.1" port="{port}")
module(load="imtcp")
input(type="imtcp" address="127.0.0.1" port="{tcp}")
template(name="fields" type="list") {{
  property(name="timereported" dateFormat="rfc3339") constant(value="|")
  property(name="hostname") constant(value="|")
  property(name="app-name") constant(value="|")
  property(name="procid") constant(value="|")
  property(name="msgid") constant(value="|")
  property(name="structured-data") constant(value="|")
  property(name="msg" droplastlf="on") constant(value="\n")
}}
*.* action(type="omfile" file="{out}" template="fields")
"#,
            dir = dir.display(),
            out = out.display(),
            tcp = port + 1
        ),
    )
    .expect("rsyslog.conf");
    let child = ns
        .command("rsyslogd")
        .args([
            "-n",
            "-f",
            conf.to_str().expect("utf8"),
            "-i",
            dir.join("rsyslog.pid").to_str().expect("utf8"),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("rsyslog.log")).expect("log"))
        .spawn()
        .expect("start rsyslogd (Debian package rsyslog)");
    // UDP has no handshake to wait for: wait for rsyslog to have read its config.
    std::thread::sleep(Duration::from_millis(1500));
    (Proc(child), out)
}

/// aiosmtpd on 127.0.0.1:`port`, delivering into the Maildir `dir/maildir` (returned).
pub fn smtp(ns: &Netns, dir: &Path, port: u16) -> (Proc, PathBuf) {
    let maildir = dir.join("maildir");
    // Debian's python3-aiosmtpd lives beside Debian's python, whatever `python3` is.
    let child = ns
        .command("/usr/bin/python3")
        .args([
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            &format!("127.0.0.1:{port}"),
            "-c",
            "aiosmtpd.handlers.Mailbox",
            maildir.to_str().expect("utf8"),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("smtp.log")).expect("log"))
        .spawn()
        .expect("start aiosmtpd (Debian package python3-aiosmtpd)");
    wait_listening(ns, &format!("127.0.0.1:{port}"), "aiosmtpd listening");
    (Proc(child), maildir)
}

/// A private CA and a server certificate it signed for 127.0.0.1 and localhost
/// (openssl; also good as a client certificate, as a Kafka broker presents it to
/// its own listeners): `(ca.pem, server.pem, server.key)` in `dir`, `ca.key` beside.
pub fn private_ca(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let script = r#"set -e
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=portwatch-test-ca 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key -out server.csr -subj /CN=localhost 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost
basicConstraints=CA:FALSE
keyUsage=digitalSignature
extendedKeyUsage=serverAuth,clientAuth
' > server.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile server.ext 2>/dev/null
"#;
    let status = std::process::Command::new("bash")
        .args(["-c", script])
        .current_dir(dir)
        .status()
        .expect("openssl (Debian package openssl)");
    assert!(status.success(), "making the test CA failed");
    (dir.join("ca.pem"), dir.join("server.pem"), dir.join("server.key"))
}

/// aiosmtpd on 127.0.0.1:`port` that takes mail only after STARTTLS (with `cert`
/// and `key`) and AUTH as `user`/`password`, into `dir/maildir-tls` (returned).
pub fn smtp_tls(
    ns: &Netns,
    dir: &Path,
    port: u16,
    cert: &Path,
    key: &Path,
    user: &str,
    password: &str,
) -> (Proc, PathBuf) {
    let maildir = dir.join("maildir-tls");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/smtp_tls.py");
    let child = ns
        .command("/usr/bin/python3")
        .args([
            script,
            "127.0.0.1",
            &port.to_string(),
            maildir.to_str().expect("utf8"),
            cert.to_str().expect("utf8"),
            key.to_str().expect("utf8"),
            user,
            password,
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("smtp-tls.log")).expect("log"))
        .spawn()
        .expect("start the STARTTLS SMTP server");
    wait_listening(ns, &format!("127.0.0.1:{port}"), "STARTTLS SMTP server listening");
    (Proc(child), maildir)
}

/// Every message in a Maildir's `new/`.
pub fn mails(maildir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(maildir.join("new")) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .collect()
}

/// Prometheus Alertmanager on 127.0.0.1:`port` (no clustering), routing everything
/// to a receiver that sends nothing.
pub fn alertmanager(ns: &Netns, dir: &Path, port: u16) -> Proc {
    let conf = dir.join("alertmanager.yml");
    std::fs::write(
        &conf,
        "route:\n  receiver: 'none'\nreceivers:\n  - name: 'none'\n",
    )
    .expect("am config");
    let child = ns
        .command("prometheus-alertmanager")
        .args([
            &format!("--config.file={}", conf.display()),
            &format!("--storage.path={}", dir.join("am-data").display()),
            &format!("--web.listen-address=127.0.0.1:{port}"),
            "--cluster.listen-address=",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("alertmanager.log")).expect("log"))
        .spawn()
        .expect("start prometheus-alertmanager (Debian package)");
    let addr = format!("127.0.0.1:{port}");
    wait_for(Duration::from_secs(20), || {
        ns.http_get(&addr, "/-/ready")
            .and_then(|(s, _)| (s == 200).then_some(()))
    })
    .expect("alertmanager ready");
    Proc(child)
}
