//! Pid files, so a restarted kubelet can kill what its previous run left.
//!
//! Each file holds the pid and the process's start time (from
//! `/proc/<pid>/stat`): a recycled pid is never mistaken for ours.

use std::path::Path;

use nix::sys::signal::Signal;

use super::process::signal_group;

/// The start time of `pid` in clock ticks since boot (field 22 of
/// `/proc/<pid>/stat`), if it runs.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&stat)
}

fn parse_start_time(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may hold spaces.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

pub fn write(path: &Path, pid: u32) -> std::io::Result<()> {
    let started = start_time(pid).unwrap_or(0);
    std::fs::write(path, format!("{pid} {started}\n"))
}

/// SIGKILLs the process group recorded in `path` if that very process still
/// runs, then removes the file.
pub fn kill_leftover(path: &Path) {
    if let Ok(text) = std::fs::read_to_string(path) {
        let mut fields = text.split_whitespace().map(str::parse::<u64>);
        if let (Some(Ok(pid)), Some(Ok(started))) = (fields.next(), fields.next()) {
            if let Ok(pid) = u32::try_from(pid) {
                if start_time(pid) == Some(started) {
                    tracing::info!(pid, file = %path.display(), "killing a process left by a previous run");
                    signal_group(pid, Signal::SIGKILL);
                }
            }
        }
    }
    let _ = std::fs::remove_file(path);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_start_time_after_a_name_with_spaces() {
        let stat = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_start_time(stat), Some(987654));
        assert!(start_time(std::process::id()).is_some());
    }
}
