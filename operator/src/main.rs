//! `eddy-operator`: the Eddy control plane.
//!
//! Today it prints the StreamJob CustomResourceDefinition (`eddy-operator
//! crd`), which is how `crds/streamjob.yaml` and the Helm chart's copy are
//! produced. The reconciler (`eddy-operator run`) follows.

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
}

fn main() -> ExitCode {
    match Cli::parse().command {
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
