//! `eddy-kubelet`: registers a Node, binds pending pods to it and runs
//! them as local processes (see the crate README).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use eddy_kubelet::pod::ips::IpRange;
use eddy_kubelet::settings::{self, Settings};
use kube::config::{KubeConfigOptions, Kubeconfig};

#[derive(Parser, Debug)]
#[command(
    name = "eddy-kubelet",
    version,
    about = "A Kubernetes node that runs pods as local processes (for tests)"
)]
struct Cli {
    /// Kubeconfig with the node's credentials; its server URL is also what
    /// pods get as KUBERNETES_SERVICE_HOST/PORT.
    #[arg(long, env = "EDDY_KUBELET_KUBECONFIG")]
    kubeconfig: PathBuf,
    /// The Node's name.
    #[arg(long, env = "EDDY_KUBELET_NODE_NAME")]
    node_name: String,
    /// Pod directories (volumes, logs, pid files) and claim directories.
    #[arg(long, env = "EDDY_KUBELET_ROOT_DIR")]
    root_dir: PathBuf,
    /// Where the binaries that images stand for are (`eddy-processor:1.0`
    /// runs `<bin-dir>/eddy-processor`).
    #[arg(long, env = "EDDY_KUBELET_BIN_DIR")]
    bin_dir: PathBuf,
    /// `libeddy_bindshim.so`, preloaded into every process so it binds its
    /// pod IP.
    #[arg(long, env = "EDDY_KUBELET_BIND_SHIM")]
    bind_shim: PathBuf,
    /// Loopback addresses handed out as pod IPs.
    #[arg(
        long,
        env = "EDDY_KUBELET_POD_IPS",
        default_value = "127.0.0.2-127.0.0.250"
    )]
    pod_ips: IpRange,
    /// Bind, run and provision for this namespace only (default: all).
    #[arg(long, env = "EDDY_KUBELET_NAMESPACE")]
    namespace: Option<String>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    // Fails only when a provider is installed already, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let kubeconfig = Kubeconfig::read_from(&cli.kubeconfig)
        .with_context(|| format!("cannot read {}", cli.kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .context("invalid kubeconfig")?;
    let (api_host, api_port) =
        settings::api_endpoint(&config.cluster_url).map_err(anyhow::Error::msg)?;
    std::fs::create_dir_all(&cli.root_dir)
        .with_context(|| format!("cannot create {}", cli.root_dir.display()))?;
    let settings = Settings {
        node_name: cli.node_name,
        root_dir: absolute(&cli.root_dir)?,
        bin_dir: absolute(&cli.bin_dir)?,
        bind_shim: absolute(&cli.bind_shim)?,
        pod_ips: cli.pod_ips,
        api_host,
        api_port,
        namespace: cli.namespace,
        capacity: settings::capacity(cli.pod_ips.size()),
    };
    let client = kube::Client::try_from(config).context("cannot build the API client")?;
    let leftovers = settings.clone();
    let outcome = tokio::select! {
        result = eddy_kubelet::run(client, settings) => result,
        result = shutdown_signal() => {
            tracing::info!("stopping: killing the pods' processes");
            result
        }
    };
    // Pods' processes do not outlive the node (they also get SIGKILL from
    // the kernel when the kubelet dies).
    eddy_kubelet::pod::manager::kill_leftovers(&leftovers);
    outcome
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::fs::canonicalize(path).with_context(|| format!("{} does not exist", path.display()))
}

async fn shutdown_signal() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result?,
        _ = terminate.recv() => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_valid() {
        super::Cli::command().debug_assert();
    }
}
