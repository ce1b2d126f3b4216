//! Which trace export the standard OpenTelemetry environment asks for, and
//! which log format `EDDY_LOG_FORMAT` asks for.
//!
//! Pure: reads variables through a lookup function, so tests need not touch
//! the process environment.

/// How spans travel to the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP over gRPC (collector port 4317).
    Grpc,
    /// OTLP over HTTP with protobuf bodies (collector port 4318), the
    /// specification's default.
    HttpProtobuf,
    /// OTLP over HTTP with JSON bodies.
    HttpJson,
}

/// Trace export settings; `None` from [`from_env`] means no export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    pub protocol: Protocol,
    /// The `service.name` to set; `None` when `OTEL_SERVICE_NAME` or
    /// `OTEL_RESOURCE_ATTRIBUTES` give one, which the SDK then reads.
    pub service_name: Option<String>,
}

/// A setting that cannot be honoured; the binary refuses to start rather
/// than run without the traces or the log format the operator of the
/// cluster asked for.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{var}={value:?} is not supported: use one of {supported}")]
    Unsupported {
        var: &'static str,
        value: String,
        supported: &'static str,
    },
}

/// Reads the OpenTelemetry variables that decide whether and how spans are
/// exported.
///
/// Export is on when an endpoint is given (`OTEL_EXPORTER_OTLP_ENDPOINT` or
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) or `OTEL_TRACES_EXPORTER=otlp` asks
/// for the default one; `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`
/// turn it off. Unlike the specification's default, nothing is exported
/// when nothing is set: a job run on a laptop has no collector to talk to.
/// Endpoint, headers, timeout and compression are read by the exporter
/// itself from the same variables.
pub fn from_env(
    var: impl Fn(&str) -> Option<String>,
    default_service_name: &str,
) -> Result<Option<Export>, ConfigError> {
    let set = |name: &str| {
        var(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    if set("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    let asked = match set("OTEL_TRACES_EXPORTER").map(|v| v.to_ascii_lowercase()) {
        None => false,
        Some(v) if v == "none" => return Ok(None),
        Some(v) if v == "otlp" => true,
        Some(value) => {
            return Err(ConfigError::Unsupported {
                var: "OTEL_TRACES_EXPORTER",
                value,
                supported: "otlp, none",
            })
        }
    };
    let endpoint = set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .or_else(|| set("OTEL_EXPORTER_OTLP_ENDPOINT"))
        .is_some();
    if !asked && !endpoint {
        return Ok(None);
    }
    let (name, value) = match set("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") {
        Some(v) => ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", Some(v)),
        None => (
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            set("OTEL_EXPORTER_OTLP_PROTOCOL"),
        ),
    };
    let protocol = match value.as_deref() {
        None | Some("http/protobuf") => Protocol::HttpProtobuf,
        Some("http/json") => Protocol::HttpJson,
        Some("grpc") => Protocol::Grpc,
        Some(other) => {
            return Err(ConfigError::Unsupported {
                var: name,
                value: other.to_string(),
                supported: "grpc, http/protobuf, http/json",
            })
        }
    };
    let named = set("OTEL_SERVICE_NAME").is_some()
        || set("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|attrs| {
            attrs
                .split(',')
                .any(|pair| pair.split('=').next().map(str::trim) == Some("service.name"))
        });
    Ok(Some(Export {
        protocol,
        service_name: (!named).then(|| default_service_name.to_string()),
    }))
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// tracing-subscriber's human-readable lines, the default.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, the
    /// event's `message` and fields, and the enclosing spans with theirs.
    Json,
}

/// Reads `EDDY_LOG_FORMAT`: `text` (also when unset or empty) or `json`,
/// in any case; anything else is refused rather than guessed at.
pub fn log_format(var: impl Fn(&str) -> Option<String>) -> Result<LogFormat, ConfigError> {
    let value = var("EDDY_LOG_FORMAT").unwrap_or_default();
    match value.trim().to_ascii_lowercase().as_str() {
        "" | "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err(ConfigError::Unsupported {
            var: "EDDY_LOG_FORMAT",
            value,
            supported: "text, json",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(vars: &[(&str, &str)]) -> Result<Option<Export>, ConfigError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        from_env(
            |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()),
            "eddy-test",
        )
    }

    fn protocol(vars: &[(&str, &str)]) -> Option<Protocol> {
        read(vars).unwrap().map(|e| e.protocol)
    }

    #[test]
    fn nothing_set_exports_nothing() {
        assert_eq!(read(&[]), Ok(None));
        assert_eq!(read(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "  ")]), Ok(None));
    }

    #[test]
    fn an_endpoint_turns_export_on_with_the_default_protocol() {
        let on = read(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")]);
        assert_eq!(
            on,
            Ok(Some(Export {
                protocol: Protocol::HttpProtobuf,
                service_name: Some("eddy-test".into())
            }))
        );
        assert_eq!(
            protocol(&[(
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://c:4318/v1/traces"
            )]),
            Some(Protocol::HttpProtobuf)
        );
        assert_eq!(
            protocol(&[("OTEL_TRACES_EXPORTER", "OTLP")]),
            Some(Protocol::HttpProtobuf)
        );
    }

    #[test]
    fn the_traces_protocol_wins_over_the_general_one() {
        let vars = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ];
        assert_eq!(protocol(&vars), Some(Protocol::HttpJson));
        let mut both = vars.to_vec();
        both.push(("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"));
        assert_eq!(protocol(&both), Some(Protocol::Grpc));
    }

    #[test]
    fn a_service_name_from_the_environment_is_left_to_the_sdk() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318");
        let name = |vars: &[(&str, &str)]| read(vars).unwrap().unwrap().service_name;
        assert_eq!(name(&[endpoint]).as_deref(), Some("eddy-test"));
        assert_eq!(name(&[endpoint, ("OTEL_SERVICE_NAME", "payments")]), None);
        let attrs = ("OTEL_RESOURCE_ATTRIBUTES", "team=a, service.name=payments");
        assert_eq!(name(&[endpoint, attrs]), None);
        let other = ("OTEL_RESOURCE_ATTRIBUTES", "service.namespace=prod");
        assert_eq!(name(&[endpoint, other]).as_deref(), Some("eddy-test"));
    }

    #[test]
    fn disabled_or_none_wins_over_an_endpoint() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318");
        assert_eq!(read(&[endpoint, ("OTEL_SDK_DISABLED", "TRUE")]), Ok(None));
        assert_eq!(
            read(&[endpoint, ("OTEL_TRACES_EXPORTER", "none")]),
            Ok(None)
        );
        assert!(read(&[endpoint, ("OTEL_SDK_DISABLED", "false")])
            .unwrap()
            .is_some());
    }

    #[test]
    fn unknown_exporters_and_protocols_are_refused_by_name() {
        let err = read(&[("OTEL_TRACES_EXPORTER", "zipkin")]).unwrap_err();
        assert!(
            err.to_string().contains("OTEL_TRACES_EXPORTER=\"zipkin\""),
            "{err}"
        );
        let err = read(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "thrift"),
        ])
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=\"thrift\""),
            "{err}"
        );
        // No endpoint and no exporter asked for: the protocol is not read.
        assert_eq!(read(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "thrift")]), Ok(None));
    }

    #[test]
    fn the_log_format_is_text_unless_json_is_asked_for() {
        let format = |value: Option<&str>| {
            log_format(|name| {
                assert_eq!(name, "EDDY_LOG_FORMAT");
                value.map(str::to_string)
            })
        };
        assert_eq!(format(None), Ok(LogFormat::Text));
        assert_eq!(format(Some("")), Ok(LogFormat::Text));
        assert_eq!(format(Some("text")), Ok(LogFormat::Text));
        assert_eq!(format(Some(" JSON ")), Ok(LogFormat::Json));
        assert_eq!(format(Some("json")), Ok(LogFormat::Json));
        let err = format(Some("logfmt")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "EDDY_LOG_FORMAT=\"logfmt\" is not supported: use one of text, json"
        );
    }
}
