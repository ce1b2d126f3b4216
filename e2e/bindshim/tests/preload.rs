//! Runs this test binary again as a child with the shim preloaded and
//! checks where its wildcard and loopback listeners ended up.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Command;

const CHILD_ENV: &str = "EDDY_BINDSHIM_TEST_CHILD";

/// The shim built for this test run: `target/<profile>/libeddy_bindshim.so`
/// (or its copy in `deps/`, next to this test binary).
fn shim_path() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("test binary directory");
    [deps, deps.parent().unwrap_or(deps)]
        .iter()
        .map(|dir| dir.join("libeddy_bindshim.so"))
        .find(|path| path.exists())
        .expect("libeddy_bindshim.so next to the test binary; build the crate first")
}

/// In the child: bind the given addresses and print where each went.
#[test]
fn child_binds() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    for requested in ["0.0.0.0:0", "127.0.0.1:0", "127.0.0.3:0"] {
        let listener = TcpListener::bind(requested).expect("bind");
        println!(
            "BOUND {requested} {}",
            listener.local_addr().expect("local_addr")
        );
    }
}

fn run_child(pod_ip: Option<&str>) -> Vec<(String, SocketAddr)> {
    let mut command = Command::new(std::env::current_exe().expect("current_exe"));
    command
        .args(["--exact", "child_binds", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .env("LD_PRELOAD", shim_path());
    match pod_ip {
        Some(ip) => command.env("EDDY_POD_IP", ip),
        None => command.env_remove("EDDY_POD_IP"),
    };
    let output = command.output().expect("run the child");
    assert!(output.status.success(), "child failed: {output:?}");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        // libtest prints "test child_binds ... " without a newline first.
        .filter_map(|line| line.split_once("BOUND ").map(|(_, rest)| rest))
        .map(|rest| {
            let (requested, bound) = rest.split_once(' ').expect("two fields");
            (
                requested.to_string(),
                bound.parse().expect("socket address"),
            )
        })
        .collect()
}

#[test]
fn wildcard_and_loopback_binds_land_on_the_pod_ip() {
    let bound = run_child(Some("127.0.0.42"));
    assert_eq!(bound.len(), 3, "{bound:?}");
    let pod_ip = Ipv4Addr::new(127, 0, 0, 42);
    assert_eq!(bound[0].1.ip(), pod_ip, "0.0.0.0 → pod IP");
    assert_eq!(bound[1].1.ip(), pod_ip, "127.0.0.1 → pod IP");
    assert_eq!(
        bound[2].1.ip(),
        Ipv4Addr::new(127, 0, 0, 3),
        "other addresses kept"
    );
    assert_ne!(
        bound[0].1.port(),
        0,
        "the port is still chosen by the kernel"
    );
}

#[test]
fn without_a_pod_ip_binds_are_unchanged() {
    let bound = run_child(None);
    assert_eq!(bound.len(), 3, "{bound:?}");
    assert_eq!(bound[0].1.ip(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(bound[1].1.ip(), Ipv4Addr::LOCALHOST);
}
