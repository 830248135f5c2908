//! `make dev` as a new user meets it (scripts/dev.sh, which `make dev` runs
//! after starting the stack and building): on a stack with none of its
//! topics, index or tables, it sets them up, seeds demo data once, runs ingest
//! beside the gateway, and prints curl commands that answer with real orders.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Runs scripts/dev.sh until it prints its banner; the curl lines, and the
/// whole of what it printed. Stopped with SIGINT (Ctrl-C) afterwards.
fn run_dev(env: &[(String, String)], state: &std::path::Path, listen: &str) -> (Vec<String>, String) {
    let mut child = Command::new(repo_root().join("scripts/dev.sh"))
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("BIN", env!("CARGO_BIN_EXE_order-gateway"))
        .env("DEV_STATE_DIR", state)
        .env("DEV_ORDERS", "150")
        .env("GATEWAY_LISTEN", listen)
        .env("ORDER_GATEWAY__LOG__LEVEL", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("scripts/dev.sh");
    let stderr = child.stderr.take().unwrap();
    let errors =
        std::thread::spawn(move || BufReader::new(stderr).lines().map_while(Result::ok).collect::<Vec<_>>().join("\n"));
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(240);
    let (mut curls, mut printed) = (Vec::new(), String::new());
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                printed.push_str(&line);
                printed.push('\n');
                if let Some(cmd) = line.trim().strip_prefix("curl ") {
                    curls.push(format!("curl {cmd}"));
                }
                if line.contains("Swagger UI") {
                    break;
                }
            }
            Err(_) => {
                signal_group(&child, libc::SIGKILL);
                panic!("no banner within 240 s; printed:\n{printed}\nstderr:\n{}", errors.join().unwrap());
            }
        }
    }
    // Ctrl-C: SIGINT to the whole process group, as a terminal sends it.
    let result = std::panic::catch_unwind(|| {
        for cmd in &curls {
            let out = Command::new("sh").args(["-c", &format!("{cmd} -sS -w '\\n%{{http_code}}'")]).output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(text.ends_with("\n200"), "{cmd}: {text}");
            let body = text.trim_end_matches("200").trim();
            assert!(serde_json::from_str::<serde_json::Value>(body).is_ok(), "{cmd}: not JSON: {body}");
        }
    });
    signal_group(&child, libc::SIGINT);
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "scripts/dev.sh did not stop on Ctrl-C");
        std::thread::sleep(Duration::from_millis(100));
    };
    let stderr = errors.join().unwrap();
    if let Err(p) = result {
        eprintln!("scripts/dev.sh stderr:\n{stderr}");
        std::panic::resume_unwind(p);
    }
    assert!(!status.success(), "interrupted, so not a success: {status:?}");
    assert!(std::net::TcpStream::connect(listen).is_err(), "the gateway stopped with the script");
    (curls, format!("{printed}\n{stderr}"))
}

/// Sends `signal` to the child's process group (it leads one of its own).
fn signal_group(child: &std::process::Child, signal: i32) {
    let pgid = i32::try_from(child.id()).expect("a pid fits in pid_t");
    assert!(pgid > 1, "never signal every process");
    // SAFETY: kill(2) with a negative id signals that process group only.
    unsafe { libc::kill(-pgid, signal) };
}

#[test]
fn make_dev_on_a_fresh_stack_prints_commands_that_answer() {
    let id = unique("it_dev");
    let env = isolated_env(&id, false);
    let state = std::env::temp_dir().join(unique("dev-state"));
    let listen = format!("127.0.0.1:{}", free_port());

    let (curls, printed) = run_dev(&env, &state, &listen);
    assert_eq!(curls.len(), 3, "an order, a customer's orders, KPIs: {printed}");
    assert!(printed.contains(&format!("http://{listen}/docs")), "{printed}");
    assert!(printed.contains("seeding 150 demo orders"), "{printed}");

    // A second run seeds nothing new.
    let (_, printed) = run_dev(&env, &state, &listen);
    assert!(printed.contains("demo data already seeded"), "{printed}");
    let _ = std::fs::remove_dir_all(&state);
}
