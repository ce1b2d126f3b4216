//! `eddy-operator`: the Eddy control plane.
//!
//! - `eddy-operator run`: the controller. With `--leader-election` several
//!   replicas can run: one holds a Lease and reconciles, the others wait to
//!   take over (two would both schedule checkpoints).
//! - `eddy-operator crd`: prints the StreamJob CustomResourceDefinition,
//!   which is how `crds/streamjob.yaml` is made.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "eddy-operator",
    version,
    about = "The Eddy Kubernetes operator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the StreamJob CustomResourceDefinition as YAML.
    Crd,
    /// Reconcile StreamJobs until stopped (uses the in-cluster or
    /// kubeconfig credentials).
    Run {
        /// Watch StreamJobs in this namespace only (default: all).
        #[arg(long, env = "EDDY_WATCH_NAMESPACE")]
        namespace: Option<String>,
        /// Processor image for jobs that set no `spec.image`.
        #[arg(long, env = "EDDY_PROCESSOR_IMAGE", default_value = eddy_operator::build::DEFAULT_IMAGE)]
        processor_image: String,
        /// Address of `/metrics`, `/healthz` and `/readyz`.
        #[arg(long, env = "EDDY_HTTP_ADDR", default_value = "0.0.0.0:8080")]
        http_addr: std::net::SocketAddr,
        /// This operator's name in Events and the Lease (the pod name in
        /// a cluster).
        #[arg(long, env = "POD_NAME", default_value = "eddy-operator")]
        instance: String,
        /// The namespace the operator runs in (for its Lease and the jobs'
        /// NetworkPolicies).
        #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
        own_namespace: String,
        /// Reconcile only while holding the Lease (run more than one
        /// replica with it).
        #[arg(long, env = "EDDY_LEADER_ELECTION")]
        leader_election: bool,
        /// Name of the Lease.
        #[arg(long, env = "EDDY_LEASE_NAME", default_value = "eddy-operator")]
        lease_name: String,
        /// Give each job a NetworkPolicy that lets only the operator's
        /// pods (`app.kubernetes.io/name=eddy-operator` in this namespace)
        /// reach the processors' admin port.
        #[arg(long, env = "EDDY_NETWORK_POLICY")]
        network_policy: bool,
    },
}

fn main() -> ExitCode {
    // Held until main returns: dropping it flushes the spans not yet sent.
    let _telemetry = match eddy_telemetry::init("info", "eddy-operator") {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("error: telemetry: {e}");
            return ExitCode::from(2);
        }
    };
    // With both ring and aws-lc-rs in the build rustls picks neither: name
    // one for kube's TLS (an error only says one is installed already).
    let _ = rustls::crypto::ring::default_provider().install_default();
    match Cli::parse().command {
        Command::Run {
            namespace,
            processor_image,
            http_addr,
            instance,
            own_namespace,
            leader_election,
            lease_name,
            network_policy,
        } => {
            let settings = eddy_operator::controller::run::Settings {
                namespace,
                default_image: processor_image,
                http: http_addr.into(),
                instance,
                own_namespace,
                leader_election,
                lease_name,
                network_policy,
            };
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(eddy_operator::controller::run::run(settings)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Crd => match eddy_operator::crd::render() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_valid() {
        super::Cli::command().debug_assert();
    }
}
