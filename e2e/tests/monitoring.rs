//! The chart's monitoring (`monitoring.*` in charts/eddy/values.yaml): off
//! by default; when on, PodMonitors that select the processor and operator
//! pods, a PrometheusRule whose rules pass `promtool check rules` and the
//! unit tests of `e2e/monitoring/alerts.test.yaml` (`promtool test rules`:
//! every alert fires on a synthetic series and stays quiet on a healthy
//! one), a runbook section per alert, and a Grafana dashboard whose queries
//! parse. Every metric the rules and the dashboard query must be one the
//! binaries export: for now the catalogue in docs/metrics.md.
//!
//! Needs helm (`EDDY_TEST_HELM`) and promtool (`EDDY_TEST_PROMTOOL`, from
//! Debian's prometheus package), both from `scripts/test-servers`; a
//! missing one fails the test and says what to run.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::{Command, Output},
};

use serde::Deserialize;
use serde_json::{json, Value};

/// Every monitoring object on.
const ALL_ON: &[&str] = &[
    "--set",
    "monitoring.podMonitor.enabled=true,monitoring.prometheusRule.enabled=true",
    "--set",
    "monitoring.grafanaDashboard.enabled=true",
];

/// The alerts the chart ships, by name (each has a section of
/// docs/runbook.md).
const ALERTS: &[&str] = &[
    "EddyCheckpointLag",
    "EddyHotKey",
    "EddyHotPartition",
    "EddyLateEventsDropped",
    "EddyInvalidRecords",
    "EddyRestoreFallback",
    "EddyBacklogGrowing",
    "EddyWatermarkStalled",
];

const RUNBOOK_URL: &str = "https://github.com/eddy-dev/eddy/blob/main/docs/runbook.md";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn chart() -> PathBuf {
    repo().join("charts/eddy")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn helm(args: &[&str]) -> Output {
    Command::new(eddy_testkit::helm())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running helm {args:?}: {e}"))
}

fn promtool(args: &[&str]) -> Output {
    Command::new(eddy_testkit::promtool())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running promtool {args:?}: {e}"))
}

/// `helm template` of the chart as release `eddy` in `eddy-system`.
fn template(values: &[&str]) -> String {
    let chart = chart();
    let mut args = vec![
        "template",
        "eddy",
        chart.to_str().unwrap(),
        "--namespace",
        "eddy-system",
    ];
    args.extend_from_slice(values);
    let out = helm(&args);
    assert!(out.status.success(), "helm {args:?}: {}", text(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// The objects of a multi-document YAML stream.
fn objects(yaml: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|doc| Value::deserialize(doc).expect("rendered YAML parses"))
        .filter(|v| !v.is_null())
        .collect()
}

fn render(values: &[&str]) -> Vec<Value> {
    objects(&template(values))
}

fn the<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| {
            let have: Vec<String> = objects
                .iter()
                .map(|o| format!("{}/{}", o["kind"], o["metadata"]["name"]))
                .collect();
            panic!("no {kind} {name} rendered; have {have:?}")
        })
}

fn keys(value: &Value) -> BTreeSet<String> {
    value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .cloned()
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// A fresh directory under the test target's scratch space.
fn scratch(prefix: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(eddy_testkit::unique_name(prefix));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The PrometheusRule rendered with `values` (and prometheusRule on).
fn prometheus_rule(values: &[&str]) -> Value {
    let mut args = vec![
        "--set",
        "monitoring.prometheusRule.enabled=true",
        "--show-only",
        "templates/prometheusrule.yaml",
    ];
    args.extend_from_slice(values);
    let rendered = render(&args);
    assert_eq!(rendered.len(), 1, "{rendered:?}");
    rendered.into_iter().next().unwrap()
}

/// The rules of a PrometheusRule's (or a rule file's) groups.
fn rules(groups: &Value) -> Vec<&Value> {
    groups["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules").iter())
        .collect()
}

/// `spec` of a PrometheusRule written as a plain Prometheus rule file
/// (`groups:`), the file promtool and Prometheus read.
fn write_rule_file(dir: &Path, name: &str, spec: &Value) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, serde_yaml_ng::to_string(spec).unwrap()).unwrap();
    path
}

fn check_rules(path: &Path, expected_rules: usize) {
    let out = promtool(&["check", "rules", path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "promtool check rules {}:\n{}",
        path.display(),
        text(&out)
    );
    let found = format!("SUCCESS: {expected_rules} rules found");
    assert!(
        text(&out).contains(&found),
        "expected {found:?}:\n{}",
        text(&out)
    );
}

// ---------------------------------------------------------------------------
// Metric names: what the binaries export, and what a query uses.

/// The series names a family of `kind` exports: counters are named with
/// `_total` already, a histogram `x` exports `x_bucket`, `x_sum` and
/// `x_count`, anything else its own name.
fn series_names(family: &str, kind: &str) -> Vec<String> {
    match kind {
        "histogram" => ["_bucket", "_sum", "_count"]
            .iter()
            .map(|suffix| format!("{family}{suffix}"))
            .collect(),
        "counter" if !family.ends_with("_total") => vec![format!("{family}_total")],
        _ => vec![family.to_string()],
    }
}

/// Exported series names from the metric catalogue (docs/metrics.md): the
/// rows of its tables, the name in backticks in the first column and the
/// type in the second.
fn catalogue_names(markdown: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in markdown.lines() {
        let cells: Vec<&str> = line.trim().split('|').map(str::trim).collect();
        // "| `name` | type | labels | what |" splits into ["", name, type, ...].
        if cells.len() < 4 || !cells[0].is_empty() {
            continue;
        }
        let Some(name) = cells[1].strip_prefix('`').and_then(|c| c.strip_suffix('`')) else {
            continue;
        };
        names.extend(series_names(name, cells[2]));
    }
    names
}

/// Exported series names from a live `/metrics` exposition (Prometheus text
/// or OpenMetrics): the families of its `# TYPE` lines and the names of
/// its samples.
fn exposition_names(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut words = rest.split_whitespace();
            if let (Some(family), Some(kind)) = (words.next(), words.next()) {
                names.extend(series_names(family, kind));
            }
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_string());
        }
    }
    names
}

/// The metric names (identifiers starting with `eddy_`) a PromQL query
/// uses. Label names and values never start with `eddy_` in Eddy's
/// queries, and recording rules are not used.
fn queried_names(promql: &str) -> BTreeSet<String> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut names = BTreeSet::new();
    let mut rest = promql;
    while let Some(at) = rest.find("eddy_") {
        let before = rest[..at].chars().next_back();
        let tail = &rest[at..];
        let end = tail.find(|c: char| !ident(c)).unwrap_or(tail.len());
        if !before.is_some_and(ident) {
            names.insert(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    names
}

/// Names in `queries` (what, query) that `exported` lacks, one line each.
fn unknown_names(queries: &[(String, String)], exported: &BTreeSet<String>) -> Vec<String> {
    queries
        .iter()
        .flat_map(|(what, query)| {
            queried_names(query)
                .into_iter()
                .filter(|name| !exported.contains(name))
                .map(move |name| format!("{what}: {name}"))
        })
        .collect()
}

fn catalogue() -> BTreeSet<String> {
    catalogue_names(&read(&repo().join("docs/metrics.md")))
}

// ---------------------------------------------------------------------------
// The dashboard.

fn dashboard() -> Value {
    let path = chart().join("dashboards/eddy.json");
    serde_json::from_str(&read(&path))
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Every panel, those inside collapsed rows included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut all = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        all.push(panel);
        if let Some(inner) = panel["panels"].as_array() {
            all.extend(inner);
        }
    }
    all
}

/// (panel title and refId, expr) of every query of the dashboard, and the
/// template variables' queries.
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut queries = Vec::new();
    for panel in panels(dashboard) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            queries.push((
                format!("panel {:?} {}", panel["title"], target["refId"]),
                target["expr"].as_str().unwrap_or_default().to_string(),
            ));
        }
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .expect("templating")
    {
        if variable["type"] == "query" {
            queries.push((
                format!("variable {}", variable["name"]),
                variable["definition"].as_str().unwrap().to_string(),
            ));
        }
    }
    queries
}

/// A Grafana query as plain PromQL: its variables replaced by values.
fn plain_promql(expr: &str) -> String {
    expr.replace("$__rate_interval", "5m")
        .replace("$__range", "1h")
        .replace("$namespace", ".+")
        .replace("$job", ".+")
}

// ---------------------------------------------------------------------------

#[test]
fn nothing_monitoring_renders_by_default() {
    for values in [
        &[][..],
        &["--set", "watchNamespace=jobs"][..],
        &[
            "--set-json",
            "monitoring.labels={\"release\":\"prometheus\"}",
        ][..],
    ] {
        let rendered = render(values);
        let kinds: Vec<String> = rendered
            .iter()
            .map(|o| format!("{} {}", o["apiVersion"], o["kind"]))
            .collect();
        for object in &rendered {
            assert!(
                !object["apiVersion"]
                    .as_str()
                    .unwrap()
                    .starts_with("monitoring.coreos.com"),
                "{values:?} rendered {kinds:?}"
            );
            assert!(
                object["metadata"]["labels"]["grafana_dashboard"].is_null(),
                "{values:?} rendered a dashboard: {kinds:?}"
            );
        }
    }
    // Each switch renders its own objects only.
    let only = |switch: &str| -> BTreeSet<String> {
        render(&["--set", &format!("monitoring.{switch}.enabled=true")])
            .iter()
            .filter(|o| {
                o["apiVersion"]
                    .as_str()
                    .unwrap()
                    .starts_with("monitoring.coreos.com")
                    || !o["metadata"]["labels"]["grafana_dashboard"].is_null()
            })
            .map(|o| {
                format!(
                    "{}/{}",
                    o["kind"].as_str().unwrap(),
                    o["metadata"]["name"].as_str().unwrap()
                )
            })
            .collect()
    };
    assert_eq!(
        only("podMonitor"),
        set(&["PodMonitor/eddy-processors", "PodMonitor/eddy-operator"])
    );
    assert_eq!(only("prometheusRule"), set(&["PrometheusRule/eddy"]));
    assert_eq!(only("grafanaDashboard"), set(&["ConfigMap/eddy-dashboard"]));
}

#[test]
fn helm_lint_strict_passes_with_monitoring() {
    let chart = chart();
    let chart = chart.to_str().unwrap();
    let every_monitoring_option = [
        ALL_ON,
        &[
            "--set",
            "watchNamespace=jobs,monitoring.podMonitor.interval=15s,monitoring.podMonitor.scrapeTimeout=10s",
            "--set",
            "monitoring.labels.release=prometheus,monitoring.prometheusRule.alertLabels.team=streams",
            "--set",
            "monitoring.prometheusRule.runbookUrl=https://runbooks.example.com/eddy.md",
            "--set",
            "monitoring.prometheusRule.alerts.checkpointLag.thresholdSeconds=1800",
            "--set",
            "monitoring.prometheusRule.alerts.hotKey.for=1h30m",
            // Helm's --set keeps fractions as strings: numbers go as JSON.
            "--set-json",
            "monitoring.prometheusRule.alerts.hotKey.share=0.7",
            "--set",
            "monitoring.grafanaDashboard.namespace=grafana,monitoring.grafanaDashboard.annotations.grafana_folder=Eddy",
        ],
    ]
    .concat();
    for values in [ALL_ON, &every_monitoring_option[..]] {
        let mut args = vec!["lint", "--strict", chart];
        args.extend_from_slice(values);
        let out = helm(&args);
        assert!(
            out.status.success(),
            "helm {args:?} failed:\n{}",
            text(&out)
        );
        assert!(
            text(&out).contains("1 chart(s) linted, 0 chart(s) failed"),
            "{}",
            text(&out)
        );
    }
    // The values schema covers the new values: each of these is refused,
    // naming the value.
    let refused: &[(&[&str], &str)] = &[
        (&["--set", "monitoring.enabled=true"], "enabled"),
        (
            &["--set", "monitoring.podMonitor.enabled=yes"],
            "/monitoring/podMonitor/enabled",
        ),
        (
            &["--set", "monitoring.podMonitor.interval=soon"],
            "/monitoring/podMonitor/interval",
        ),
        (
            &["--set", "monitoring.prometheusRule.alerts.hotKey.share=2"],
            "/monitoring/prometheusRule/alerts/hotKey/share",
        ),
        (
            &[
                "--set",
                "monitoring.prometheusRule.alerts.hotPartition.factor=1",
            ],
            "/monitoring/prometheusRule/alerts/hotPartition/factor",
        ),
        (
            &[
                "--set",
                "monitoring.prometheusRule.alerts.checkpointLag.for=5 minutes",
            ],
            "/monitoring/prometheusRule/alerts/checkpointLag/for",
        ),
        (
            &[
                "--set",
                "monitoring.prometheusRule.alerts.noSuchAlert.for=5m",
            ],
            "noSuchAlert",
        ),
        (
            &[
                "--set",
                "monitoring.grafanaDashboard.namespace=Not_A_Namespace",
            ],
            "/monitoring/grafanaDashboard/namespace",
        ),
    ];
    for (values, names) in refused {
        let mut args = vec!["lint", "--strict", chart];
        args.extend_from_slice(values);
        let out = helm(&args);
        assert!(
            !out.status.success(),
            "helm {args:?} passed, but the values schema should refuse it:\n{}",
            text(&out)
        );
        assert!(
            text(&out).contains(names),
            "helm {args:?} failed without naming {names}:\n{}",
            text(&out)
        );
    }
}

/// The value of `pub const NAME: &str = "...";` in operator/src/build/names.rs:
/// the labels the operator puts on processor pods.
fn operator_constant(name: &str) -> String {
    let path = repo().join("operator/src/build/names.rs");
    let source = read(&path);
    let prefix = format!("pub const {name}: &str = \"");
    source
        .lines()
        .find_map(|l| l.trim().strip_prefix(prefix.as_str()))
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no {prefix}...\" in {}", path.display()))
        .to_string()
}

#[test]
fn the_pod_monitors_select_the_processors_and_the_operator() {
    let processor_labels = json!({
        "app.kubernetes.io/name": operator_constant("APP_NAME"),
        "app.kubernetes.io/component": operator_constant("COMPONENT"),
        "app.kubernetes.io/managed-by": operator_constant("MANAGER"),
    });
    // The contract (docs/metrics.md): the processor serves /metrics on a
    // port named `metrics`, the operator on its `http` port.
    let metrics_doc = read(&repo().join("docs/metrics.md"));
    assert!(
        metrics_doc.contains("port name `metrics`") && metrics_doc.contains("chart port `http`"),
        "docs/metrics.md no longer names the ports `metrics` and `http`"
    );

    let rendered = render(&[
        "--set",
        "monitoring.podMonitor.enabled=true,monitoring.labels.release=prometheus",
    ]);
    let processors = the(&rendered, "PodMonitor", "eddy-processors");
    let operator = the(&rendered, "PodMonitor", "eddy-operator");
    let deployment = the(&rendered, "Deployment", "eddy");
    for monitor in [processors, operator] {
        assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
        assert_eq!(monitor["metadata"]["namespace"], "eddy-system");
        let labels = &monitor["metadata"]["labels"];
        assert_eq!(labels["release"], "prometheus", "{labels}");
        assert_eq!(labels["app.kubernetes.io/part-of"], "eddy", "{labels}");
        assert_eq!(
            keys(&monitor["spec"]),
            set(&["namespaceSelector", "selector", "podMetricsEndpoints"])
        );
        let endpoints = monitor["spec"]["podMetricsEndpoints"].as_array().unwrap();
        assert_eq!(endpoints.len(), 1, "{endpoints:?}");
        let endpoint = &endpoints[0];
        assert_eq!(
            keys(endpoint),
            set(&["port", "path", "honorLabels", "interval"]),
            "{endpoint}"
        );
        assert_eq!(endpoint["path"], "/metrics");
        // The families' own `job` (the StreamJob) and `namespace` win.
        assert_eq!(endpoint["honorLabels"], true);
        assert_eq!(endpoint["interval"], "30s");
    }
    // Processor pods in every namespace, by the labels the operator sets.
    assert_eq!(
        processors["spec"]["namespaceSelector"],
        json!({"any": true})
    );
    assert_eq!(
        processors["spec"]["selector"],
        json!({"matchLabels": processor_labels})
    );
    assert_eq!(
        processors["spec"]["podMetricsEndpoints"][0]["port"],
        "metrics"
    );
    // The operator pods of this release, on the Deployment's port.
    assert_eq!(
        operator["spec"]["namespaceSelector"],
        json!({"matchNames": ["eddy-system"]})
    );
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    let selector = operator["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap();
    assert!(!selector.is_empty());
    for (k, v) in selector {
        assert_eq!(&pod_labels[k], v, "{k} of the operator pods");
    }
    assert_eq!(
        selector.get("app.kubernetes.io/name"),
        Some(&json!("eddy-operator"))
    );
    let port = &operator["spec"]["podMetricsEndpoints"][0]["port"];
    let ports = &deployment["spec"]["template"]["spec"]["containers"][0]["ports"];
    assert!(
        ports.as_array().unwrap().iter().any(|p| &p["name"] == port),
        "the operator's PodMonitor scrapes port {port}, the Deployment has {ports}"
    );

    // One namespace watched: processors there only; interval and timeout
    // follow the values, an empty interval leaves Prometheus' default.
    let rendered = render(&[
        "--set",
        "monitoring.podMonitor.enabled=true,watchNamespace=jobs",
        "--set",
        "monitoring.podMonitor.interval=,monitoring.podMonitor.scrapeTimeout=5s",
    ]);
    let processors = the(&rendered, "PodMonitor", "eddy-processors");
    assert_eq!(
        processors["spec"]["namespaceSelector"],
        json!({"matchNames": ["jobs"]})
    );
    for monitor in [processors, the(&rendered, "PodMonitor", "eddy-operator")] {
        let endpoint = &monitor["spec"]["podMetricsEndpoints"][0];
        assert_eq!(
            keys(endpoint),
            set(&["port", "path", "honorLabels", "scrapeTimeout"])
        );
        assert_eq!(endpoint["scrapeTimeout"], "5s");
    }
}

/// GitHub's anchor of a Markdown heading.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

#[test]
fn the_prometheus_rule_passes_promtool_and_its_unit_tests() {
    let _ = (eddy_testkit::helm(), eddy_testkit::promtool());
    let rule = prometheus_rule(&[]);
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rule["kind"], "PrometheusRule");
    assert_eq!(rule["metadata"]["namespace"], "eddy-system");
    assert_eq!(keys(&rule["spec"]), set(&["groups"]));
    let spec = &rule["spec"];
    for group in spec["groups"].as_array().unwrap() {
        assert_eq!(keys(group), set(&["name", "rules"]), "{group}");
    }

    // The shape of every alert, and its runbook section.
    let runbook = read(&repo().join("docs/runbook.md"));
    let sections: BTreeSet<String> = runbook
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(anchor)
        .collect();
    let mut names = Vec::new();
    for rule in rules(spec) {
        let name = rule["alert"].as_str().expect("only alerting rules");
        names.push(name);
        let allowed = set(&["alert", "expr", "for", "labels", "annotations"]);
        assert!(keys(rule).is_subset(&allowed), "{name}: {:?}", keys(rule));
        assert!(
            ["warning", "critical"].contains(&rule["labels"]["severity"].as_str().unwrap()),
            "{name}: {}",
            rule["labels"]
        );
        let annotations = &rule["annotations"];
        assert_eq!(
            keys(annotations),
            set(&["summary", "description", "runbook_url"]),
            "{name}"
        );
        for field in ["summary", "description"] {
            let value = annotations[field].as_str().unwrap();
            assert!(
                value.contains("{{ $labels.namespace }}/{{ $labels.job }}"),
                "{name}'s {field} does not name the StreamJob: {value}"
            );
        }
        let url = annotations["runbook_url"].as_str().unwrap();
        let expected = format!("{RUNBOOK_URL}#{}", name.to_lowercase());
        assert_eq!(url, expected, "{name}");
        assert!(
            sections.contains(&name.to_lowercase()),
            "docs/runbook.md has no section `## {name}` for {url}; it has {sections:?}"
        );
    }
    assert_eq!(names, ALERTS, "the alerts, in order");

    // promtool checks the very rules users get, then runs the unit tests
    // against them: each test file names eddy-alerts.yaml next to it.
    let dir = scratch("rules");
    let file = write_rule_file(&dir, "eddy-alerts.yaml", spec);
    check_rules(&file, ALERTS.len());
    let tests = repo().join("e2e/monitoring/alerts.test.yaml");
    let copy = dir.join("alerts.test.yaml");
    std::fs::copy(&tests, &copy).unwrap();
    let started = std::time::Instant::now();
    let out = promtool(&["test", "rules", copy.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "promtool test rules {} (with the chart's rules):\n{}",
        tests.display(),
        text(&out)
    );
    eprintln!("promtool test rules: {:?}", started.elapsed());

    // Every alert fires in some test and is expected quiet in another.
    let unit: Value = serde_yaml_ng::from_str(&read(&tests)).unwrap();
    assert_eq!(unit["rule_files"], json!(["eddy-alerts.yaml"]));
    let mut fires = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for test in unit["tests"].as_array().unwrap() {
        for case in test["alert_rule_test"].as_array().into_iter().flatten() {
            let name = case["alertname"].as_str().unwrap().to_string();
            let expected = case["exp_alerts"].as_array().map_or(0, Vec::len);
            if expected == 0 {
                quiet.insert(name);
            } else {
                fires.insert(name);
            }
        }
    }
    let all = set(ALERTS);
    assert_eq!(fires, all, "alerts with a test where they fire");
    assert_eq!(quiet, all, "alerts with a test where they stay quiet");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn thresholds_durations_and_labels_follow_the_values() {
    let _ = (eddy_testkit::helm(), eddy_testkit::promtool());
    let rule = prometheus_rule(&[
        "--set",
        "monitoring.prometheusRule.alerts.checkpointLag.thresholdSeconds=1800",
        "--set",
        "monitoring.prometheusRule.alerts.checkpointLag.for=10m,monitoring.prometheusRule.alerts.checkpointLag.severity=warning",
        "--set-json",
        "monitoring.prometheusRule.alerts.hotKey.share=0.7",
        "--set",
        "monitoring.prometheusRule.alerts.hotKey.window=2m",
        "--set",
        "monitoring.prometheusRule.alerts.backlogGrowing.records=2000000",
        "--set",
        "monitoring.prometheusRule.alerts.restoreFallback.window=3h",
        "--set",
        "monitoring.prometheusRule.alertLabels.team=streams,monitoring.prometheusRule.runbookUrl=https://wiki.example.com/eddy",
    ]);
    let by_name: BTreeMap<&str, &Value> = rules(&rule["spec"])
        .into_iter()
        .map(|r| (r["alert"].as_str().unwrap(), r))
        .collect();
    let lag = by_name["EddyCheckpointLag"];
    assert!(
        lag["expr"].as_str().unwrap().contains("> 1800"),
        "{}",
        lag["expr"]
    );
    assert!(lag["annotations"]["description"]
        .as_str()
        .unwrap()
        .contains("(threshold 1800s)"));
    assert_eq!(lag["for"], "10m");
    assert_eq!(
        lag["labels"],
        json!({"severity": "warning", "team": "streams"})
    );
    assert_eq!(
        lag["annotations"]["runbook_url"],
        "https://wiki.example.com/eddy#eddycheckpointlag"
    );
    let hot = by_name["EddyHotKey"]["expr"].as_str().unwrap();
    assert!(hot.contains("> 0.7") && hot.contains("[2m]"), "{hot}");
    // Large counts render as plain integers, in the query and the text.
    let backlog = by_name["EddyBacklogGrowing"];
    assert!(
        backlog["expr"].as_str().unwrap().contains("> 2000000"),
        "{}",
        backlog["expr"]
    );
    assert!(backlog["annotations"]["description"]
        .as_str()
        .unwrap()
        .contains("(threshold 2000000)"));
    let fallback = by_name["EddyRestoreFallback"]["expr"].as_str().unwrap();
    assert!(fallback.contains("offset 3h"), "{fallback}");
    for rule in by_name.values() {
        assert_eq!(rule["labels"]["team"], "streams");
    }
    // Still valid rules.
    let dir = scratch("custom-rules");
    let file = write_rule_file(&dir, "eddy-alerts.yaml", &rule["spec"]);
    check_rules(&file, ALERTS.len());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_dashboard_configmap_holds_a_dashboard_whose_queries_parse() {
    let _ = (eddy_testkit::helm(), eddy_testkit::promtool());
    let file = read(&chart().join("dashboards/eddy.json"));
    let dashboard = dashboard();

    // The ConfigMap carries the file as it is, for Grafana's sidecar.
    let rendered = render(ALL_ON);
    let config_map = the(&rendered, "ConfigMap", "eddy-dashboard");
    assert_eq!(config_map["metadata"]["namespace"], "eddy-system");
    assert_eq!(config_map["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(keys(&config_map["data"]), set(&["eddy.json"]));
    assert_eq!(
        config_map["data"]["eddy.json"].as_str().unwrap(),
        file.trim_end()
    );
    let rendered = render(&[
        "--set",
        "monitoring.grafanaDashboard.enabled=true,monitoring.grafanaDashboard.namespace=grafana",
        "--set",
        "monitoring.grafanaDashboard.annotations.grafana_folder=Eddy",
        "--set-string",
        "monitoring.labels.grafana_dashboard=0",
    ]);
    let config_map = the(&rendered, "ConfigMap", "eddy-dashboard");
    assert_eq!(config_map["metadata"]["namespace"], "grafana");
    assert_eq!(
        config_map["metadata"]["annotations"],
        json!({"grafana_folder": "Eddy"})
    );
    assert_eq!(
        config_map["metadata"]["labels"]["grafana_dashboard"], "1",
        "the sidecar's label is not overridden"
    );

    // Its shape: variables, unique ids, panels on the 24-column grid, every
    // query on the chosen data source.
    assert!(dashboard["uid"].as_str().is_some_and(|u| !u.is_empty()));
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(variables, ["datasource", "namespace", "job"]);
    let mut ids = BTreeSet::new();
    let mut queries = 0;
    for panel in panels(&dashboard) {
        let title = &panel["title"];
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "duplicate id: {title}"
        );
        let grid = &panel["gridPos"];
        let (x, w) = (grid["x"].as_u64().unwrap(), grid["w"].as_u64().unwrap());
        assert!(x + w <= 24 && w > 0, "{title}: {grid}");
        if panel["type"] == "row" {
            continue;
        }
        assert!(
            panel["description"].as_str().is_some_and(|d| !d.is_empty()),
            "{title} has no description"
        );
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title} has no query");
        let mut refs = BTreeSet::new();
        for target in targets {
            assert!(refs.insert(target["refId"].as_str().unwrap()), "{title}");
            assert_eq!(target["datasource"]["uid"], "${datasource}", "{title}");
            queries += 1;
        }
    }

    // Every selector of a processor family is narrowed to the chosen
    // namespaces and jobs (the operator's own families are not per job).
    let filter = "namespace=~\"$namespace\", job=~\"$job\"";
    for (what, expr) in dashboard_queries(&dashboard) {
        if what.starts_with("variable") {
            continue;
        }
        for name in queried_names(&expr) {
            if name.starts_with("eddy_operator_") {
                continue;
            }
            for (at, _) in expr.match_indices(name.as_str()) {
                let after = &expr[at + name.len()..];
                let longer = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
                if after.starts_with(longer) || expr[..at].ends_with(longer) {
                    continue; // Part of another name.
                }
                let selector = after
                    .strip_prefix('{')
                    .and_then(|s| s.split('}').next())
                    .unwrap_or_default();
                assert!(
                    selector.contains(filter),
                    "{what}: {name} is not filtered by {filter}: {expr}"
                );
            }
        }
    }

    // Every query parses as PromQL: promtool checks them as recording rules.
    let rules: Vec<Value> = dashboard_queries(&dashboard)
        .into_iter()
        .filter(|(what, _)| what.starts_with("panel"))
        .enumerate()
        .map(|(i, (_, expr))| json!({"record": format!("eddy_dashboard:query_{i}"), "expr": plain_promql(&expr)}))
        .collect();
    assert_eq!(rules.len(), queries);
    let dir = scratch("dashboard");
    let file = write_rule_file(
        &dir,
        "dashboard.yaml",
        &json!({"groups": [{"name": "dashboard", "rules": rules}]}),
    );
    check_rules(&file, queries);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_queried_metric_is_exported() {
    let exported = catalogue();
    // The catalogue parses: families of each kind, histograms expanded.
    for name in [
        "eddy_events_read_total",
        "eddy_watermark_lag_seconds",
        "eddy_lateness_seconds_bucket",
        "eddy_lateness_seconds_count",
        "eddy_operator_reconcile_duration_seconds_bucket",
        "eddy_operator_checkpoint_lag_seconds",
    ] {
        assert!(exported.contains(name), "{name} not in {exported:?}");
    }
    assert!(!exported.contains("eddy_lateness_seconds"));
    assert!(exported.len() > 50, "only {} names", exported.len());

    let rule = prometheus_rule(&[]);
    let mut queries: Vec<(String, String)> = rules(&rule["spec"])
        .into_iter()
        .map(|r| {
            (
                format!("alert {}", r["alert"].as_str().unwrap()),
                r["expr"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let rule_queries = queries.len();
    let dashboard = dashboard();
    queries.extend(dashboard_queries(&dashboard));
    assert!(rule_queries == ALERTS.len() && queries.len() > 50);
    let unknown = unknown_names(&queries, &exported);
    assert!(
        unknown.is_empty(),
        "queried but not in docs/metrics.md:\n{}",
        unknown.join("\n")
    );

    // The dashboard shows every family of the catalogue.
    let shown: BTreeSet<String> = dashboard_queries(&dashboard)
        .iter()
        .flat_map(|(_, q)| queried_names(q))
        .collect();
    let family = |series: &str| {
        ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| series.strip_suffix(s))
            .unwrap_or(series)
            .to_string()
    };
    let shown: BTreeSet<String> = shown.iter().map(|s| family(s)).collect();
    let missing: Vec<String> = exported
        .iter()
        .map(|s| family(s))
        .filter(|f| !shown.contains(f))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert!(
        missing.is_empty(),
        "families of docs/metrics.md the dashboard does not show: {missing:?}"
    );
}

#[test]
fn metric_names_are_read_from_queries_and_expositions() {
    assert_eq!(
        queried_names(
            "sum by (job) (rate(eddy_events_late_total{handling=\"dropped\"}[5m])) \
             / on (job) max(eddy_events_read_total) > 0 and not_eddy_x and eddy_a:b"
        ),
        set(&[
            "eddy_events_late_total",
            "eddy_events_read_total",
            "eddy_a:b"
        ])
    );
    let exported = catalogue_names(
        "| Name | Type | Labels | What |\n|---|---|---|---|\n\
         | `eddy_a_total` | counter | | A |\n| `eddy_b_seconds` | histogram | partition | B |\n\
         | `eddy_c` | gauge | | C |\n| not a row |\n",
    );
    assert_eq!(
        exported,
        set(&[
            "eddy_a_total",
            "eddy_b_seconds_bucket",
            "eddy_b_seconds_sum",
            "eddy_b_seconds_count",
            "eddy_c",
        ])
    );
    let unknown = unknown_names(
        &[("q".into(), "eddy_c + eddy_b_seconds + eddy_d_total".into())],
        &exported,
    );
    assert_eq!(unknown, ["q: eddy_b_seconds", "q: eddy_d_total"]);
    // OpenMetrics names a counter's family without _total.
    let live = exposition_names(
        "# HELP eddy_a Records.\n# TYPE eddy_a counter\neddy_a_total{job=\"x\"} 3\n\
         # TYPE eddy_b_seconds histogram\neddy_b_seconds_bucket{le=\"+Inf\"} 1\n\
         # TYPE eddy_c gauge\n# EOF\n",
    );
    assert!(
        exported.is_subset(&live),
        "{:?}",
        exported.difference(&live).collect::<Vec<_>>()
    );
}
