//! Golden files: compare rendered text with a checked-in file, or rewrite
//! the file when `EDDY_BLESS=1`.

use std::path::Path;

/// `Ok` when `path` holds exactly `actual` (or was rewritten to it under
/// `EDDY_BLESS=1`); otherwise a line diff saying how to update it.
pub fn check(path: &Path, actual: &str) -> Result<(), String> {
    if std::env::var_os("EDDY_BLESS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, actual).unwrap();
        return Ok(());
    }
    let Ok(expected) = std::fs::read_to_string(path) else {
        return Err(format!(
            "{} is missing; create it with EDDY_BLESS=1 cargo test -p eddy-operator --test build",
            path.display()
        ));
    };
    if expected == actual {
        return Ok(());
    }
    Err(format!(
        "--- {} (expected)\n+++ built\n{}\nIf the change is intended: EDDY_BLESS=1 cargo test -p eddy-operator --test build",
        path.display(),
        diff(&expected, actual)
    ))
}

/// A line diff (longest common subsequence) showing changed lines with
/// two lines of context, `-` expected and `+` built.
pub fn diff(expected: &str, actual: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    // lcs[i][j]: longest common subsequence of a[i..] and b[j..].
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut ops: Vec<(char, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            ops.push((' ', a[i]));
            (i, j) = (i + 1, j + 1);
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(('-', a[i]));
            i += 1;
        } else {
            ops.push(('+', b[j]));
            j += 1;
        }
    }
    const CONTEXT: usize = 2;
    let near_change = |k: usize| {
        let lo = k.saturating_sub(CONTEXT);
        let hi = (k + CONTEXT + 1).min(ops.len());
        ops[lo..hi].iter().any(|(op, _)| *op != ' ')
    };
    let mut out = Vec::new();
    let mut skipped = false;
    for (k, (op, line)) in ops.iter().enumerate() {
        if near_change(k) {
            if skipped {
                out.push("@@".to_string());
                skipped = false;
            }
            out.push(format!("{op}{line}"));
        } else {
            skipped = true;
        }
    }
    out.join("\n")
}

#[test]
fn diff_shows_changes_with_context() {
    let d = diff("a\nb\nc\nd\ne\nf\ng\n", "a\nb\nc\nD\ne\nf\ng\nh\n");
    assert_eq!(d, "@@\n b\n c\n-d\n+D\n e\n f\n g\n+h");
}
