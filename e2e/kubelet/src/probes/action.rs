//! What a probe or lifecycle hook does, with named ports resolved (pure).

use k8s_openapi::api::core::v1::{
    Container, ExecAction, HTTPGetAction, LifecycleHandler, Probe, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// GET `http://host:port/path`; 200–399 passes.
    Http {
        host: String,
        port: u16,
        path: String,
        headers: Vec<(String, String)>,
    },
    /// A TCP connection that opens passes. HTTPS and gRPC probes are run
    /// as this too (see the README).
    Tcp { host: String, port: u16 },
    /// The command exits 0.
    Exec { command: Vec<String> },
}

/// The action of a probe; `pod_ip` is the default host.
pub fn of_probe(probe: &Probe, container: &Container, pod_ip: &str) -> Result<Action, String> {
    if let Some(exec) = &probe.exec {
        return Ok(exec_action(exec));
    }
    if let Some(http) = &probe.http_get {
        return http_action(http, container, pod_ip);
    }
    if let Some(tcp) = &probe.tcp_socket {
        return tcp_action(tcp, container, pod_ip);
    }
    if let Some(grpc) = &probe.grpc {
        let port = u16::try_from(grpc.port).map_err(|_| format!("bad gRPC port {}", grpc.port))?;
        return Ok(Action::Tcp {
            host: pod_ip.to_string(),
            port,
        });
    }
    Err("the probe has no action".to_string())
}

/// The action of a lifecycle hook (`sleep` hooks have none: the caller
/// sleeps).
pub fn of_hook(
    hook: &LifecycleHandler,
    container: &Container,
    pod_ip: &str,
) -> Option<Result<Action, String>> {
    if let Some(exec) = &hook.exec {
        return Some(Ok(exec_action(exec)));
    }
    if let Some(http) = &hook.http_get {
        return Some(http_action(http, container, pod_ip));
    }
    hook.tcp_socket
        .as_ref()
        .map(|tcp| tcp_action(tcp, container, pod_ip))
}

fn exec_action(exec: &ExecAction) -> Action {
    Action::Exec {
        command: exec.command.clone().unwrap_or_default(),
    }
}

fn http_action(
    http: &HTTPGetAction,
    container: &Container,
    pod_ip: &str,
) -> Result<Action, String> {
    let host = http.host.clone().unwrap_or_else(|| pod_ip.to_string());
    let port = port(&http.port, container)?;
    if http.scheme.as_deref() == Some("HTTPS") {
        return Ok(Action::Tcp { host, port });
    }
    let path = match http.path.as_deref() {
        None | Some("") => "/".to_string(),
        Some(p) if p.starts_with('/') => p.to_string(),
        Some(p) => format!("/{p}"),
    };
    Ok(Action::Http {
        host,
        port,
        path,
        headers: http
            .http_headers
            .iter()
            .flatten()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect(),
    })
}

fn tcp_action(
    tcp: &TCPSocketAction,
    container: &Container,
    pod_ip: &str,
) -> Result<Action, String> {
    Ok(Action::Tcp {
        host: tcp.host.clone().unwrap_or_else(|| pod_ip.to_string()),
        port: port(&tcp.port, container)?,
    })
}

/// A port by number, or by the name of one of the container's ports.
pub fn port(port: &IntOrString, container: &Container) -> Result<u16, String> {
    let number = match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => match name.parse::<i32>() {
            Ok(n) => n,
            Err(_) => container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| p.container_port)
                .ok_or_else(|| {
                    format!("container {:?} has no port named {name:?}", container.name)
                })?,
        },
    };
    u16::try_from(number).map_err(|_| format!("port {number} is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn container() -> Container {
        serde_json::from_value(json!({
            "name": "main", "ports": [{"name": "admin", "containerPort": 9090}]
        }))
        .expect("container")
    }

    fn probe(spec: serde_json::Value) -> Probe {
        serde_json::from_value(spec).expect("probe")
    }

    #[test]
    fn http_probe_by_port_name_on_the_pod_ip() {
        let action = of_probe(
            &probe(json!({"httpGet": {"port": "admin", "path": "readyz",
                "httpHeaders": [{"name": "X", "value": "1"}]}})),
            &container(),
            "127.0.0.9",
        );
        assert_eq!(
            action,
            Ok(Action::Http {
                host: "127.0.0.9".into(),
                port: 9090,
                path: "/readyz".into(),
                headers: vec![("X".into(), "1".into())],
            })
        );
    }

    #[test]
    fn tcp_exec_and_bad_ports() {
        assert_eq!(
            of_probe(
                &probe(json!({"tcpSocket": {"port": 81}})),
                &container(),
                "127.0.0.9"
            ),
            Ok(Action::Tcp {
                host: "127.0.0.9".into(),
                port: 81
            })
        );
        assert_eq!(
            of_probe(
                &probe(json!({"exec": {"command": ["true"]}})),
                &container(),
                "x"
            ),
            Ok(Action::Exec {
                command: vec!["true".into()]
            })
        );
        assert!(of_probe(
            &probe(json!({"tcpSocket": {"port": "nope"}})),
            &container(),
            "x"
        )
        .is_err());
        assert!(of_probe(
            &probe(json!({"tcpSocket": {"port": 70000}})),
            &container(),
            "x"
        )
        .is_err());
        assert!(of_probe(&probe(json!({})), &container(), "x").is_err());
    }
}
