//! Embeds the source revision for the `build_info` metric and `--version`:
//! `ORDER_GATEWAY_REVISION` when set (the image build passes its REVISION
//! argument, having no `.git`), else `git rev-parse HEAD`, else "unknown".

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let s = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-env-changed=ORDER_GATEWAY_REVISION");
    let revision = std::env::var("ORDER_GATEWAY_REVISION")
        .ok()
        .filter(|r| !r.trim().is_empty())
        .or_else(|| git(&["rev-parse", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_owned());
    // A new commit moves the branch's ref (or packed-refs), a checkout moves
    // HEAD. Only files that exist are named: cargo reruns the script on every
    // build for a missing one, and the crate would be rebuilt each time.
    let branch = git(&["symbolic-ref", "-q", "HEAD"]);
    for path in ["HEAD", "packed-refs"].into_iter().map(str::to_owned).chain(branch) {
        if let Some(p) = git(&["rev-parse", "--git-path", &path]).filter(|p| std::path::Path::new(p).exists()) {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    println!("cargo:rustc-env=ORDER_GATEWAY_REVISION={revision}");
}
