//! What to start for a container: its binary, arguments, environment,
//! mounts, working directory and log file, or why it cannot start yet.

use std::path::PathBuf;

use k8s_openapi::api::core::v1::Container;

use super::context::PodShared;
use crate::env::{self, expand};
use crate::runtime::{mounts, Launch};

/// The launch, or the waiting reason and message that prevent it.
pub async fn prepare(
    shared: &PodShared,
    spec: &Container,
) -> Result<Launch, (&'static str, String)> {
    let pod = shared.pod();
    let settings = &shared.node.settings;
    let exists = |name: &str| settings.bin_dir.join(name).is_file();
    let invocation = crate::image::invocation(
        spec.image.as_deref().unwrap_or_default(),
        spec.command.as_deref().unwrap_or_default(),
        spec.args.as_deref().unwrap_or_default(),
        &settings.bin_dir,
        &exists,
    )
    .map_err(|message| ("ErrImageNeverPull", message))?;

    let config_error = |message: String| ("CreateContainerConfigError", message);
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let objects = env::fetch::objects(
        &shared.node.client,
        namespace,
        &env::resolve::references(spec),
    )
    .await
    .map_err(|e| config_error(format!("cannot read the environment's sources: {e}")))?;
    let facts = shared.facts();
    let vars = env::resolve::resolve(spec, &pod, &facts, &base_env(shared), &objects)
        .map_err(config_error)?;
    let lookup = |name: &str| {
        vars.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let args = invocation
        .args
        .iter()
        .map(|arg| expand(arg, lookup))
        .collect();

    let volumes = shared
        .volumes
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let mounts = mounts::plan(
        spec.volume_mounts.as_deref().unwrap_or_default(),
        &volumes,
        &vars,
    )
    .map_err(config_error)?;
    for mount in &mounts {
        // Like Kubernetes, a missing subPath is created as a directory.
        if !mount.source.exists() {
            std::fs::create_dir_all(&mount.source).map_err(|e| {
                config_error(format!("cannot create {}: {e}", mount.source.display()))
            })?;
        }
    }
    let logs = shared.dir.join("logs");
    std::fs::create_dir_all(&logs)
        .map_err(|e| config_error(format!("cannot create {}: {e}", logs.display())))?;
    let working_dir = spec
        .working_dir
        .as_deref()
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| shared.dir.join("work").join(&spec.name));

    let mut vars = vars;
    vars.retain(|(name, _)| name != "LD_PRELOAD" && name != "EDDY_POD_IP");
    vars.push((
        "LD_PRELOAD".into(),
        settings.bind_shim.display().to_string(),
    ));
    vars.push(("EDDY_POD_IP".into(), shared.pod_ip.to_string()));
    Ok(Launch {
        program: invocation.program,
        args,
        env: vars,
        working_dir,
        mounts,
        log: logs.join(format!("{}.log", spec.name)),
        cpu_limit: crate::runtime::cpu::limit_millicores(spec).map(|millicores| {
            let uid = pod.metadata.uid.as_deref().unwrap_or_default();
            (format!("{uid}-{}", spec.name), millicores)
        }),
    })
}

/// What every container gets before its own `env`.
fn base_env(shared: &PodShared) -> Vec<(String, String)> {
    let pod = shared.pod();
    let settings = &shared.node.settings;
    let hostname = pod
        .spec
        .as_ref()
        .and_then(|s| s.hostname.clone())
        .or_else(|| pod.metadata.name.clone())
        .unwrap_or_default();
    let path = std::env::var("PATH")
        .unwrap_or_else(|_| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    let port = settings.api_port.to_string();
    vec![
        ("PATH".into(), path),
        ("HOME".into(), "/root".into()),
        ("HOSTNAME".into(), hostname),
        ("KUBERNETES_SERVICE_HOST".into(), settings.api_host.clone()),
        ("KUBERNETES_SERVICE_PORT".into(), port.clone()),
        ("KUBERNETES_SERVICE_PORT_HTTPS".into(), port),
    ]
}
