//! Running probe and hook actions.

use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use nix::sys::signal::Signal;

use super::action::Action;
use crate::runtime::{signal_group, spawn_beside};

/// Where an exec action runs: beside the container's process, in its mount
/// namespace, with its environment and working directory.
#[derive(Debug, Clone)]
pub struct ExecContext {
    pub pid: u32,
    pub env: Vec<(String, String)>,
    pub working_dir: PathBuf,
}

/// Runs actions; one per node (it holds the HTTP connection pool).
#[derive(Clone)]
pub struct Checker {
    http: Client<HttpConnector, Empty<Bytes>>,
    bin_dir: PathBuf,
}

impl Checker {
    pub fn new(bin_dir: &Path) -> Self {
        Self {
            http: Client::builder(TokioExecutor::new()).build_http(),
            bin_dir: bin_dir.to_path_buf(),
        }
    }

    /// Runs `action` within `timeout`; the error says why it failed.
    pub async fn run(
        &self,
        action: &Action,
        timeout: Duration,
        exec: Option<&ExecContext>,
    ) -> Result<(), String> {
        match tokio::time::timeout(timeout, self.attempt(action, exec)).await {
            Ok(result) => result,
            Err(_) => Err(format!("timed out after {timeout:?}")),
        }
    }

    async fn attempt(&self, action: &Action, exec: Option<&ExecContext>) -> Result<(), String> {
        match action {
            Action::Http {
                host,
                port,
                path,
                headers,
            } => {
                let mut request = http::Request::get(format!("http://{host}:{port}{path}"));
                for (name, value) in headers {
                    request = request.header(name, value);
                }
                let request = request.body(Empty::new()).map_err(|e| e.to_string())?;
                let response = self
                    .http
                    .request(request)
                    .await
                    .map_err(|e| e.to_string())?;
                let status = response.status().as_u16();
                if (200..400).contains(&status) {
                    Ok(())
                } else {
                    Err(format!("HTTP probe failed with statuscode: {status}"))
                }
            }
            Action::Tcp { host, port } => tokio::net::TcpStream::connect((host.as_str(), *port))
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
            Action::Exec { command } => {
                let exec = exec.ok_or("the container is not running")?;
                self.exec(command, exec).await
            }
        }
    }

    async fn exec(&self, command: &[String], exec: &ExecContext) -> Result<(), String> {
        let (first, args) = command.split_first().ok_or("empty exec command")?;
        // Eddy binaries run from the bin directory, anything else from PATH.
        let local = Path::new(first)
            .file_name()
            .map(|name| self.bin_dir.join(name))
            .filter(|path| path.is_file());
        let program = local.unwrap_or_else(|| PathBuf::from(first));
        let mut child = spawn_beside(exec.pid, &program, args, &exec.env, &exec.working_dir)
            .map_err(|e| format!("cannot run {first:?}: {e}"))?;
        let pid = child.id();
        // Dropped on timeout: kill the command's whole group too.
        let _group = KillGroupOnDrop(pid);
        let status = child.wait().await.map_err(|e| e.to_string())?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("command {command:?} exited with {status}"))
        }
    }
}

struct KillGroupOnDrop(Option<u32>);

impl Drop for KillGroupOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            signal_group(pid, Signal::SIGKILL);
        }
    }
}
