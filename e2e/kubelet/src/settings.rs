//! What the whole node needs to know, fixed at start.

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::pod::ips::IpRange;

#[derive(Debug, Clone)]
pub struct Settings {
    pub node_name: String,
    /// Absolute: pod directories, logs, pid files and claim directories.
    pub root_dir: PathBuf,
    /// Absolute: where images' binaries are looked up.
    pub bin_dir: PathBuf,
    /// Absolute path of `libeddy_bindshim.so`.
    pub bind_shim: PathBuf,
    pub pod_ips: IpRange,
    /// KUBERNETES_SERVICE_HOST/PORT for pods: the API server's address.
    pub api_host: String,
    pub api_port: u16,
    /// Bind, run and provision for this namespace only (default: all).
    pub namespace: Option<String>,
    /// The node's capacity (and allocatable): `cpu`, `memory`, `pods`.
    pub capacity: BTreeMap<String, Quantity>,
}

impl Settings {
    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.root_dir.join("pods").join(uid)
    }

    pub fn claim_dir(&self, namespace: &str, claim: &str) -> PathBuf {
        self.root_dir.join("volumes").join(namespace).join(claim)
    }

    pub fn wants_namespace(&self, namespace: Option<&str>) -> bool {
        self.namespace
            .as_deref()
            .is_none_or(|only| Some(only) == namespace)
    }
}

/// Host and port of the API server from its URL (`https://127.0.0.1:6443`).
pub fn api_endpoint(url: &http::Uri) -> Result<(String, u16), String> {
    let host = url
        .host()
        .ok_or_else(|| format!("the API server URL {url} has no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = url.port_u16().unwrap_or(match url.scheme_str() {
        Some("http") => 80,
        _ => 443,
    });
    Ok((host, port))
}

/// This machine's CPUs, memory (from `/proc/meminfo`) and pod slots.
pub fn capacity(pods: u32) -> BTreeMap<String, Quantity> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let memory_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
        })
        .unwrap_or(1024 * 1024);
    [
        ("cpu".to_string(), Quantity(cpus.to_string())),
        ("memory".to_string(), Quantity(format!("{memory_kib}Ki"))),
        ("pods".to_string(), Quantity(pods.to_string())),
    ]
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_from_urls() {
        let url: http::Uri = "https://127.0.0.1:36443".parse().unwrap();
        assert_eq!(api_endpoint(&url), Ok(("127.0.0.1".to_string(), 36443)));
        let url: http::Uri = "https://[::1]".parse().unwrap();
        assert_eq!(api_endpoint(&url), Ok(("::1".to_string(), 443)));
    }

    #[test]
    fn capacity_has_the_three_resources() {
        let capacity = capacity(249);
        assert_eq!(capacity["pods"].0, "249");
        assert!(capacity.contains_key("cpu") && capacity.contains_key("memory"));
    }
}
