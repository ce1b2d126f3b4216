//! Smoke test: the helm binary installed by `scripts/test-servers` lints and
//! renders a chart offline (the chart tests build on this).

use std::process::Command;

fn helm(args: &[&str], dir: &std::path::Path) -> String {
    let out = Command::new(eddy_testkit::helm())
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "helm {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn helm_lints_and_renders_a_chart_offline() {
    let dir = tempfile::tempdir().unwrap();
    let version = helm(&["version", "--short"], dir.path());
    assert!(version.starts_with('v'), "{version}");
    helm(&["create", "demo"], dir.path());
    let lint = helm(&["lint", "demo"], dir.path());
    assert!(
        lint.contains("1 chart(s) linted, 0 chart(s) failed"),
        "{lint}"
    );
    let rendered = helm(&["template", "smoke", "demo"], dir.path());
    assert!(rendered.contains("kind: Deployment"), "{rendered}");
    assert!(rendered.contains("name: smoke-demo"), "{rendered}");
}
