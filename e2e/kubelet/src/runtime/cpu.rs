//! CPU limits as a kubelet with the cgroupfs driver sets them: each limited
//! container process goes into a cgroup of its own whose CFS quota is the
//! limit times the period (`limits.cpu: 500m` is 50 ms of CPU in every
//! 100 ms). cgroup v2 (`cpu.max`) where the unified hierarchy has the cpu
//! controller, else v1 (`cpu.cfs_quota_us`). Where neither can be written
//! the limit is not enforced, and the kubelet says so.

use std::io;
use std::path::{Path, PathBuf};

/// The CFS period, in microseconds (the kernel's and the kubelet's).
const PERIOD_US: u64 = 100_000;

/// Where the kubelet's cgroups live, and which interface they have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hierarchy {
    /// cgroup v2: `cpu.max`.
    Unified(PathBuf),
    /// cgroup v1's cpu controller: `cpu.cfs_quota_us`.
    Legacy(PathBuf),
}

impl Hierarchy {
    /// The first usable one under `root` (normally `/sys/fs/cgroup`).
    pub fn find(root: &Path) -> Option<Self> {
        let controllers = std::fs::read_to_string(root.join("cgroup.controllers"));
        if controllers.is_ok_and(|c| c.split_whitespace().any(|c| c == "cpu")) {
            return Some(Self::Unified(root.join("eddy-kubelet")));
        }
        let legacy = root.join("cpu");
        legacy
            .join("cpu.cfs_quota_us")
            .is_file()
            .then(|| Self::Legacy(legacy.join("eddy-kubelet")))
    }

    fn base(&self) -> &Path {
        match self {
            Self::Unified(p) | Self::Legacy(p) => p,
        }
    }

    /// Puts process `pid` into the cgroup `name`, limited to `millicores`
    /// thousandths of a CPU; returns the cgroup's directory.
    pub fn confine(&self, pid: u32, name: &str, millicores: u64) -> io::Result<PathBuf> {
        let base = self.base();
        if !base.is_dir() {
            std::fs::create_dir_all(base)?;
            if let Self::Unified(_) = self {
                // Children of the kubelet's cgroup may use the cpu controller.
                std::fs::write(base.join("cgroup.subtree_control"), "+cpu")?;
            }
        }
        sweep(base);
        let dir = base.join(name);
        std::fs::create_dir_all(&dir)?;
        let quota = quota_us(millicores);
        match self {
            Self::Unified(_) => {
                std::fs::write(dir.join("cpu.max"), format!("{quota} {PERIOD_US}"))?
            }
            Self::Legacy(_) => {
                std::fs::write(dir.join("cpu.cfs_period_us"), PERIOD_US.to_string())?;
                std::fs::write(dir.join("cpu.cfs_quota_us"), quota.to_string())?;
            }
        }
        // The whole process, with every thread it has and will have.
        std::fs::write(dir.join("cgroup.procs"), pid.to_string())?;
        Ok(dir)
    }
}

/// The quota per period for a limit: at least the kernel's 1 ms.
pub fn quota_us(millicores: u64) -> u64 {
    (millicores * PERIOD_US / 1000).max(1000)
}

/// Removes the cgroups of containers that ended (no process left in them).
fn sweep(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        let empty = std::fs::read_to_string(dir.join("cgroup.procs"))
            .is_ok_and(|procs| procs.trim().is_empty());
        if dir.is_dir() && empty {
            // A cgroup directory goes with rmdir, its files with it.
            let _ = std::fs::remove_dir(&dir);
        }
    }
}

/// A container's CPU limit in millicores, if it has one.
pub fn limit_millicores(container: &k8s_openapi::api::core::v1::Container) -> Option<u64> {
    let quantity = container.resources.as_ref()?.limits.as_ref()?.get("cpu")?;
    let text = quantity.0.trim();
    let millicores = match text.strip_suffix('m') {
        Some(m) => m.parse::<f64>().ok()?,
        None => text.parse::<f64>().ok()? * 1000.0,
    };
    (millicores > 0.0).then(|| millicores.ceil() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::{api::core::v1::Container, apimachinery::pkg::api::resource::Quantity};

    fn limited(cpu: &str) -> Container {
        Container {
            resources: Some(k8s_openapi::api::core::v1::ResourceRequirements {
                limits: Some([("cpu".to_string(), Quantity(cpu.into()))].into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn limits_read_as_millicores() {
        assert_eq!(limit_millicores(&limited("500m")), Some(500));
        assert_eq!(limit_millicores(&limited("2")), Some(2000));
        assert_eq!(limit_millicores(&limited("0.25")), Some(250));
        assert_eq!(limit_millicores(&Container::default()), None);
        assert_eq!(quota_us(450), 45_000);
        assert_eq!(quota_us(1), 1_000, "the kernel's least quota");
    }

    #[test]
    fn a_legacy_hierarchy_gets_a_quota_and_the_process() {
        let root = tempfile::tempdir().unwrap();
        let cpu = root.path().join("cpu");
        std::fs::create_dir_all(&cpu).unwrap();
        std::fs::write(cpu.join("cpu.cfs_quota_us"), "-1").unwrap();
        let hierarchy = Hierarchy::find(root.path()).unwrap();
        assert_eq!(hierarchy, Hierarchy::Legacy(cpu.join("eddy-kubelet")));
        // A plain directory stands in for cgroupfs: files are written as is.
        let dir = hierarchy.confine(42, "uid-1-processor", 450).unwrap();
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
        assert_eq!(read("cpu.cfs_quota_us"), "45000");
        assert_eq!(read("cpu.cfs_period_us"), "100000");
        assert_eq!(read("cgroup.procs"), "42");
    }

    #[test]
    fn a_unified_hierarchy_gets_cpu_max() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(
            root.path().join("cgroup.controllers"),
            "cpuset cpu io memory",
        )
        .unwrap();
        let hierarchy = Hierarchy::find(root.path()).unwrap();
        let dir = hierarchy.confine(7, "c", 1500).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("cpu.max")).unwrap(),
            "150000 100000"
        );
        assert_eq!(
            std::fs::read_to_string(root.path().join("eddy-kubelet/cgroup.subtree_control"))
                .unwrap(),
            "+cpu"
        );
    }
}
