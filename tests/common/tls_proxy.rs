//! A real nginx as a TLS terminator in front of one plain-HTTP backend of the
//! stack, for the tests of TLS and credentials: the backend is reached through
//! `https://localhost:PORT` with one of the stack's throwaway server
//! certificates (scripts/stack/tls.sh, under [`tls_dir`]), optionally asking for
//! a client certificate signed by `ca.pem`, optionally accepting only given
//! `Authorization` headers.
//!
//! What nginx answers when the client falls short: without a client
//! certificate, or with one it does not trust (`other-client.pem`), the TLS
//! handshake completes and nginx answers `400`; a missing or unknown
//! `Authorization` gets `401` with `WWW-Authenticate: Basic`. An accepted
//! `Authorization` is passed on to the backend with the rest of the request.
//!
//! nginx runs in the foreground, one process, with its configuration, logs
//! and temporary files in a fresh directory under the system's temporary
//! directory; dropping the [`TlsProxy`] kills it and removes that directory.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Which of the stack's server certificates nginx presents (all signed by `ca.pem`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerCert {
    /// `server.pem`: `localhost` and `127.0.0.1`, valid.
    Good,
    /// `wrong-name.pem`: only `wrong-name.invalid`.
    WrongName,
    /// `expired.pem`: `localhost` and `127.0.0.1`, expired.
    Expired,
}

impl ServerCert {
    fn stem(self) -> &'static str {
        match self {
            ServerCert::Good => "server",
            ServerCert::WrongName => "wrong-name",
            ServerCert::Expired => "expired",
        }
    }
}

/// What the proxy fronts and what it asks of clients.
#[derive(Clone, Debug)]
pub struct ProxySpec {
    /// The plain-HTTP backend, `host:port` (e.g. `127.0.0.1:9200`).
    pub upstream: String,
    pub cert: ServerCert,
    /// Require a client certificate signed by `ca.pem`.
    pub require_client_cert: bool,
    /// Exact `Authorization` header values accepted; empty: no check.
    pub accept_authorization: Vec<String>,
}

impl ProxySpec {
    /// The good certificate, no client certificate, no `Authorization` check.
    pub fn new(upstream: impl Into<String>) -> ProxySpec {
        ProxySpec {
            upstream: upstream.into(),
            cert: ServerCert::Good,
            require_client_cert: false,
            accept_authorization: Vec::new(),
        }
    }
}

/// A running nginx; killed, and its directory removed, on drop.
pub struct TlsProxy {
    pub port: u16,
    child: Child,
    dir: PathBuf,
}

/// The stack's certificates: `STACK_TLS_DIR` (`eval "$(scripts/stack/env)"`
/// sets it), else `$STACK_DIR/tls`, else the checkout's `.stack/tls`.
pub fn tls_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("STACK_TLS_DIR") {
        return PathBuf::from(dir);
    }
    std::env::var_os("STACK_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".stack"))
        .join("tls")
}

impl TlsProxy {
    /// Starts nginx for `spec` and waits (up to 10 s) until its port accepts
    /// connections; panics with nginx's error log when it does not.
    pub fn start(spec: ProxySpec) -> TlsProxy {
        let tls = tls_dir();
        for file in [format!("{}.pem", spec.cert.stem()), format!("{}.key", spec.cert.stem()), "ca.pem".into()] {
            assert!(
                tls.join(&file).is_file(),
                "{} is missing: scripts/stack/start makes the stack's certificates",
                tls.join(&file).display()
            );
        }
        let nginx = nginx_binary();
        let dir = fresh_dir();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, config(&spec, &tls, &dir, port))
            .unwrap_or_else(|e| panic!("writing {}: {e}", conf.display()));
        let stderr = std::fs::File::create(dir.join("stderr.log")).unwrap();
        let child = Command::new(&nginx)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", nginx.display()));
        let mut proxy = TlsProxy { port, child, dir };

        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = proxy.child.try_wait().unwrap() {
                panic!("nginx exited ({status}) during start-up:\n{}", proxy.logs());
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return proxy;
            }
            if Instant::now() > deadline {
                panic!("nginx did not listen on {addr} within 10s:\n{}", proxy.logs());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `https://localhost:PORT` (the name the good certificate carries).
    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.port)
    }

    /// nginx's error log so far (handshake failures are logged at `info`).
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }

    fn logs(&self) -> String {
        let stderr = std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default();
        format!("--- {}/error.log\n{}--- stderr\n{stderr}", self.dir.display(), self.error_log())
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// nginx from Debian's /usr/sbin (often not on PATH), else from PATH.
fn nginx_binary() -> PathBuf {
    let sbin = PathBuf::from("/usr/sbin/nginx");
    if sbin.is_file() {
        return sbin;
    }
    std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).map(|d| d.join("nginx")).find(|p| p.is_file()))
        .unwrap_or_else(|| panic!("nginx not found in /usr/sbin or on PATH: scripts/prereqs.sh installs it"))
}

/// A new directory no other proxy (of this or another test process) uses.
fn fresh_dir() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    loop {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("tls-proxy-{}-{n}-{nanos:08x}", std::process::id()));
        match std::fs::create_dir(&dir) {
            Ok(()) => return dir,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => panic!("creating {}: {e}", dir.display()),
        }
    }
}

/// A string in nginx's configuration syntax, double-quoted.
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn config(spec: &ProxySpec, tls: &Path, dir: &Path, port: u16) -> String {
    let path = |p: &Path| quoted(&p.display().to_string());
    let cert = spec.cert.stem();
    let mut http = String::new();
    for temp in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"] {
        http += &format!("    {temp}_temp_path {};\n", path(&dir.join(temp)));
    }
    let mut check = String::new();
    if !spec.accept_authorization.is_empty() {
        http += "    map $http_authorization $tls_proxy_authorized {\n        default 0;\n";
        for value in &spec.accept_authorization {
            // A leading backslash makes the value literal even when it reads
            // as a keyword ("default") or a regular expression ("~...").
            http += &format!("        {} 1;\n", quoted(&format!("\\{value}")));
        }
        http += "    }\n";
        check = "            if ($tls_proxy_authorized = 0) {\n                \
                 add_header WWW-Authenticate 'Basic realm=\"tls-proxy\"' always;\n                \
                 return 401;\n            }\n"
            .to_string();
    }
    let client_cert = if spec.require_client_cert {
        format!("        ssl_client_certificate {};\n        ssl_verify_client on;\n", path(&tls.join("ca.pem")))
    } else {
        String::new()
    };
    format!(
        "# Written by tests/common/tls_proxy.rs.
daemon off;
master_process off;
worker_processes 1;
pid {pid};
error_log {error_log} info;
events {{
    worker_connections 512;
}}
http {{
    access_log off;
    client_max_body_size 64m;
{http}    upstream backend {{
        server {upstream};
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name localhost;
        ssl_certificate {cert_pem};
        ssl_certificate_key {cert_key};
        ssl_protocols TLSv1.2 TLSv1.3;
{client_cert}        location / {{
{check}            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_set_header Host {host};
            proxy_connect_timeout 10s;
            proxy_send_timeout 120s;
            proxy_read_timeout 120s;
        }}
    }}
}}
",
        pid = path(&dir.join("nginx.pid")),
        error_log = path(&dir.join("error.log")),
        upstream = spec.upstream,
        cert_pem = path(&tls.join(format!("{cert}.pem"))),
        cert_key = path(&tls.join(format!("{cert}.key"))),
        host = quoted(&spec.upstream),
    )
}
