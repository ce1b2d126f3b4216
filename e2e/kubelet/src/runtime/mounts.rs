//! Which host directories a container sees where (pure), and applying that
//! in the child process between fork and exec (allocation-free).

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::VolumeMount;
use nix::fcntl::OFlag;
use nix::mount::MsFlags;
use nix::sys::stat::Mode;

use crate::env::expand;

/// A prepared volume: its directory on the host and whether every mount of
/// it is read-only (ConfigMap, Secret, downward API, projected, read-only
/// claims).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeDir {
    pub path: PathBuf,
    pub read_only: bool,
}

/// A bind mount of `source` (host) onto `target` (the container's path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub source: PathBuf,
    pub target: PathBuf,
    pub read_only: bool,
}

/// The container's mounts, parents before children (a mount inside another
/// volume's mount path lands in that volume). `subPathExpr` is expanded
/// with `env`.
pub fn plan(
    mounts: &[VolumeMount],
    volumes: &BTreeMap<String, VolumeDir>,
    env: &[(String, String)],
) -> Result<Vec<Mount>, String> {
    let mut planned = Vec::new();
    for mount in mounts {
        let volume = volumes
            .get(&mount.name)
            .ok_or_else(|| format!("volumeMount {:?}: the pod has no such volume", mount.name))?;
        let sub_path = match (&mount.sub_path, &mount.sub_path_expr) {
            (Some(path), _) if !path.is_empty() => Some(path.clone()),
            (_, Some(expr)) if !expr.is_empty() => Some(expand(expr, |name| {
                env.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
            })),
            _ => None,
        };
        let source = match sub_path {
            None => volume.path.clone(),
            Some(sub) => {
                let relative = Path::new(&sub);
                if relative.is_absolute()
                    || relative.components().any(|c| c == Component::ParentDir)
                {
                    return Err(format!(
                        "volumeMount {:?}: subPath {sub:?} must be relative without '..'",
                        mount.name
                    ));
                }
                volume.path.join(relative)
            }
        };
        let target = PathBuf::from(&mount.mount_path);
        if !target.is_absolute() {
            return Err(format!(
                "volumeMount {:?}: mountPath {:?} must be absolute",
                mount.name, mount.mount_path
            ));
        }
        planned.push(Mount {
            source,
            target,
            read_only: volume.read_only || mount.read_only == Some(true),
        });
    }
    planned.sort_by_key(|m| m.target.components().count());
    Ok(planned)
}

/// A mount with everything the child needs precomputed: after fork only
/// async-signal-safe calls may run, so nothing is allocated there.
#[derive(Debug)]
pub struct Prepared {
    source: CString,
    target: CString,
    /// The target's ancestors, shortest first, to create if missing.
    parents: Vec<CString>,
    /// The source is a file: the mount point is an empty file.
    file: bool,
    read_only: bool,
}

pub fn prepare(mounts: &[Mount]) -> std::io::Result<Vec<Prepared>> {
    mounts
        .iter()
        .map(|m| {
            Ok(Prepared {
                source: c_path(&m.source)?,
                target: c_path(&m.target)?,
                parents: ancestors(&m.target)?,
                file: std::fs::metadata(&m.source)?.is_file(),
                read_only: m.read_only,
            })
        })
        .collect()
}

/// `path`'s ancestors as C strings, shortest first (without `/`).
pub fn ancestors(path: &Path) -> std::io::Result<Vec<CString>> {
    let mut list: Vec<CString> = path
        .ancestors()
        .skip(1)
        .filter(|p| p.parent().is_some())
        .map(c_path)
        .collect::<std::io::Result<_>>()?;
    list.reverse();
    Ok(list)
}

pub fn c_path(path: &Path) -> std::io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)
}

/// In the child: a private mount namespace with every mount applied.
pub fn apply_in_child(mounts: &[Prepared]) -> std::io::Result<()> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)?;
    nix::mount::mount(
        None::<&str>,
        c"/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )?;
    for m in mounts {
        make_dirs(&m.parents)?;
        if m.file {
            // An empty file to mount onto; it may exist already.
            let created = nix::fcntl::open(
                m.target.as_c_str(),
                OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o644),
            )?;
            drop(created);
        } else {
            make_dir(&m.target)?;
        }
        nix::mount::mount(
            Some(m.source.as_c_str()),
            m.target.as_c_str(),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )?;
        if m.read_only {
            nix::mount::mount(
                None::<&str>,
                m.target.as_c_str(),
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                None::<&str>,
            )?;
        }
    }
    Ok(())
}

/// `mkdir -p` of precomputed ancestors (in the child).
pub fn make_dirs(dirs: &[CString]) -> std::io::Result<()> {
    dirs.iter().try_for_each(make_dir)
}

fn make_dir(dir: &CString) -> std::io::Result<()> {
    match nix::unistd::mkdir(dir.as_c_str(), Mode::from_bits_truncate(0o755)) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn volume_mount(name: &str, path: &str, sub: Option<&str>, ro: bool) -> VolumeMount {
        VolumeMount {
            name: name.into(),
            mount_path: path.into(),
            sub_path: sub.map(str::to_string),
            read_only: Some(ro),
            ..VolumeMount::default()
        }
    }

    fn volumes() -> BTreeMap<String, VolumeDir> {
        [
            ("data", "/pods/u/volumes/data", false),
            ("config", "/pods/u/volumes/config", true),
        ]
        .into_iter()
        .map(|(name, path, read_only)| {
            (
                name.to_string(),
                VolumeDir {
                    path: path.into(),
                    read_only,
                },
            )
        })
        .collect()
    }

    #[test]
    fn parents_first_with_sub_paths_and_read_only() {
        let mounts = [
            volume_mount(
                "config",
                "/var/lib/eddy/config/job.yaml",
                Some("job.yaml"),
                false,
            ),
            volume_mount("data", "/var/lib/eddy", None, false),
            volume_mount("data", "/scratch", Some("tmp"), true),
        ];
        let plan = plan(&mounts, &volumes(), &[]).expect("valid");
        let targets: Vec<&str> = plan.iter().map(|m| m.target.to_str().unwrap()).collect();
        assert_eq!(
            targets,
            ["/scratch", "/var/lib/eddy", "/var/lib/eddy/config/job.yaml"]
        );
        assert_eq!(plan[0].source, PathBuf::from("/pods/u/volumes/data/tmp"));
        assert!(plan[0].read_only, "readOnly mount");
        assert!(!plan[1].read_only);
        assert!(plan[2].read_only, "config volumes are always read-only");
    }

    #[test]
    fn sub_path_expr_and_bad_paths() {
        let mut expr = volume_mount("data", "/d", None, false);
        expr.sub_path_expr = Some("$(POD_NAME)".into());
        let env = [("POD_NAME".to_string(), "job-1".to_string())];
        let plan = plan(&[expr], &volumes(), &env).expect("valid");
        assert_eq!(plan[0].source, PathBuf::from("/pods/u/volumes/data/job-1"));

        let escape = volume_mount("data", "/d", Some("../../etc"), false);
        assert!(super::plan(&[escape], &volumes(), &[]).is_err());
        let unknown = volume_mount("nope", "/d", None, false);
        assert!(super::plan(&[unknown], &volumes(), &[]).is_err());
        let relative = volume_mount("data", "d", None, false);
        assert!(super::plan(&[relative], &volumes(), &[]).is_err());
    }

    #[test]
    fn ancestors_shortest_first() {
        let list = ancestors(Path::new("/a/b/c")).expect("valid");
        assert_eq!(list, [c"/a".to_owned(), c"/a/b".to_owned()]);
    }
}
