//! Debian's haproxy in front of gateway replicas, health-checking `/readyz`
//! as a load balancer or a mesh would, for the drain tests.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};

use super::{unique, Gateway};

/// haproxy in the foreground; killed on drop.
pub struct Haproxy {
    child: Child,
    dir: std::path::PathBuf,
}

impl Haproxy {
    /// Listens on `port` and balances round-robin over `servers`. As a
    /// balancer is set up in front of a drain: `/readyz` every 500 ms, no
    /// retries, so any request sent to a replica that is not serving fails
    /// visibly. Two failed checks take a server out, each given 2 s: a busy
    /// machine must not take out the replica that stays.
    pub fn start(port: u16, servers: &[&Gateway]) -> Haproxy {
        let dir = std::env::temp_dir().join(unique("haproxy"));
        std::fs::create_dir_all(&dir).unwrap();
        let lines: Vec<String> =
            servers.iter().enumerate().map(|(i, g)| format!("  server g{i} {} check\n", g.addr)).collect();
        let config = format!(
            "global\n  maxconn 4096\n\
             defaults\n  mode http\n  timeout connect 2s\n  timeout client 15s\n  timeout server 15s\n  retries 0\n\
             frontend fe\n  bind 127.0.0.1:{port}\n  default_backend be\n\
             backend be\n  balance roundrobin\n  option httpchk GET /readyz\n  http-check expect status 200\n\
             \x20 timeout check 2s\n  default-server inter 500ms fall 2 rise 2\n{}",
            lines.concat()
        );
        let file = dir.join("haproxy.cfg");
        std::fs::write(&file, config).unwrap();
        let bin = ["/usr/sbin/haproxy", "haproxy"].into_iter().find(|b| Command::new(b).arg("-v").output().is_ok());
        let child = Command::new(bin.expect("haproxy is installed (scripts/prereqs.sh)"))
            .args(["-db", "-f", file.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn haproxy");
        Haproxy { child, dir }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
