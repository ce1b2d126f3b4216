//! Starting container processes: own session and process group, own mount
//! namespace with the pod's volumes, output appended to a log file.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use super::mounts::{self, Mount};

/// Everything needed to start one container process.
#[derive(Debug, Clone)]
pub struct Launch {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// The whole environment: nothing is inherited from the kubelet.
    pub env: Vec<(String, String)>,
    /// Created (`mkdir -p`) after the mounts, so it may lie in a volume.
    pub working_dir: PathBuf,
    pub mounts: Vec<Mount>,
    pub log: PathBuf,
    /// A CPU limit to enforce: the container's cgroup name and millicores.
    pub cpu_limit: Option<(String, u64)>,
}

/// Starts the process. It is a session leader (its pid is its process
/// group, so signals reach its children), gets SIGKILL if the kubelet
/// dies, and runs in a private mount namespace with `launch.mounts`.
pub fn spawn(launch: &Launch) -> io::Result<Child> {
    let mounts = mounts::prepare(&launch.mounts)?;
    let working_dir = mounts::c_path(&launch.working_dir)?;
    let working_dir_parents = mounts::ancestors(&launch.working_dir)?;
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&launch.log)?;
    let mut command = Command::new(&launch.program);
    command
        .args(&launch.args)
        .env_clear()
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: the closure only makes system calls on data prepared above
    // (no allocation, no locks), as required between fork and exec.
    unsafe {
        command.pre_exec(move || {
            nix::unistd::setsid()?;
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            mounts::apply_in_child(&mounts)?;
            mounts::make_dirs(&working_dir_parents)?;
            mounts::make_dirs(std::slice::from_ref(&working_dir))?;
            nix::unistd::chdir(working_dir.as_c_str())?;
            Ok(())
        });
    }
    let child = command.spawn()?;
    if let (Some((name, millicores)), Some(pid)) = (&launch.cpu_limit, child.id()) {
        confine(pid, name, *millicores);
    }
    Ok(child)
}

/// Enforces a CPU limit on a started process, if this host lets the
/// kubelet (see [`super::cpu`]); otherwise says once that it does not.
fn confine(pid: u32, name: &str, millicores: u64) {
    static WARNED: std::sync::Once = std::sync::Once::new();
    let hierarchy = super::cpu::Hierarchy::find(Path::new("/sys/fs/cgroup"));
    let outcome = match &hierarchy {
        Some(h) => h.confine(pid, name, millicores).map(|_| ()),
        None => Err(io::Error::other("no writable cgroup cpu controller")),
    };
    if let Err(e) = outcome {
        WARNED.call_once(|| tracing::warn!(error = %e, "CPU limits are not enforced on this host"));
    }
}

/// Starts `program` inside the mount namespace of the running container
/// process `pid` (for exec probes and hooks), in its own process group,
/// output discarded.
pub fn spawn_beside(
    pid: u32,
    program: &Path,
    args: &[String],
    env: &[(String, String)],
    working_dir: &Path,
) -> io::Result<Child> {
    let namespace = File::open(format!("/proc/{pid}/ns/mnt"))?;
    let working_dir = mounts::c_path(working_dir)?;
    let mut command = Command::new(program);
    command
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    // SAFETY: only system calls on data prepared above.
    unsafe {
        command.pre_exec(move || {
            nix::unistd::setsid()?;
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            nix::sched::setns(&namespace, CloneFlags::CLONE_NEWNS)?;
            // Entering a mount namespace resets the directory to its root.
            let _ = nix::unistd::chdir(working_dir.as_c_str());
            Ok(())
        });
    }
    command.spawn()
}

/// Sends `signal` to the process group `pid` leads; a group that is gone
/// already is not an error.
pub fn signal_group(pid: u32, signal: Signal) {
    let Ok(raw) = i32::try_from(pid) else { return };
    match nix::sys::signal::killpg(Pid::from_raw(raw), signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(e) => tracing::warn!(pid, %signal, error = %e, "cannot signal process group"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Needs root (for the mount namespace), as the kubelet itself does.
    #[tokio::test]
    async fn runs_in_its_own_mount_namespace_with_read_only_and_file_mounts() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let volume = dir.path().join("volume");
        std::fs::create_dir_all(&volume).expect("volume");
        std::fs::write(volume.join("data.txt"), "from the volume").expect("file");
        let target = dir.path().join("container/mnt");
        let file_target = dir.path().join("container/etc/one.txt");
        let log = dir.path().join("out.log");
        let launch = Launch {
            program: "/bin/sh".into(),
            args: vec![
                "-c".into(),
                "cat mnt/data.txt; echo; cat etc/one.txt; echo; \
                 touch mnt/new 2>/dev/null || echo read-only; echo $GREETING; pwd"
                    .into(),
            ],
            env: vec![("GREETING".into(), "hi".into())],
            working_dir: dir.path().join("container"),
            mounts: vec![
                Mount {
                    source: volume.clone(),
                    target: target.clone(),
                    read_only: true,
                },
                Mount {
                    source: volume.join("data.txt"),
                    target: file_target.clone(),
                    read_only: false,
                },
            ],
            log: log.clone(),
            cpu_limit: None,
        };
        let status = spawn(&launch).expect("spawn").wait().await.expect("wait");
        assert!(status.success(), "{status}");
        let output = std::fs::read_to_string(&log).expect("log");
        let container = dir.path().join("container");
        assert_eq!(
            output,
            format!(
                "from the volume\nfrom the volume\nread-only\nhi\n{}\n",
                container.display()
            )
        );
        // The host sees the mount points, not the mounts.
        assert!(target.is_dir() && std::fs::read_dir(&target).expect("dir").next().is_none());
        assert_eq!(std::fs::read_to_string(&file_target).expect("file"), "");
    }
}
