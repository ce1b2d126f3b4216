//! The Helm chart (`charts/eddy`): its CRD is the generated one, `helm lint
//! --strict` passes and its values schema refuses bad values, every
//! rendered object passes the real API server's strict validation and,
//! offline, the Kubernetes OpenAPI schemas, the RBAC it grants is exactly
//! what the operator uses, and the operator pod runs non-root on a
//! read-only root with the settings the values ask for.
//!
//! Needs helm (`EDDY_TEST_HELM`); the server dry runs also need the test
//! API server and kubectl (`EDDY_TEST_KUBECONFIG`, `EDDY_TEST_KUBECTL`),
//! and the offline check the k8s.io/kubernetes module in Go's module cache,
//! all from `scripts/test-servers`. A missing one fails the test and says
//! what to run.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

use eddy_testkit::kube::{kubeconfig, kubectl};
use serde::Deserialize;
use serde_json::{json, Value};

/// The rules of the operator's (Cluster)Role: the verbs its code uses, by
/// API group and resource. `eddy.rules` in charts/eddy/templates/_helpers.tpl
/// renders the same list; a change to either side must change both.
const OPERATOR_RULES: &[(&str, &str, &[&str])] = &[
    (
        "eddy.dev",
        "streamjobs",
        &["get", "list", "watch", "patch", "update"],
    ),
    ("eddy.dev", "streamjobs/status", &["get", "patch", "update"]),
    ("eddy.dev", "streamjobs/finalizers", &["update"]),
    (
        "apps",
        "statefulsets",
        &["get", "list", "watch", "create", "patch", "delete"],
    ),
    (
        "",
        "configmaps",
        &["get", "list", "watch", "create", "patch", "delete"],
    ),
    (
        "",
        "services",
        &["get", "list", "watch", "create", "patch", "delete"],
    ),
    ("", "pods", &["get", "list", "watch", "delete"]),
    (
        "policy",
        "poddisruptionbudgets",
        &["get", "list", "watch", "create", "patch", "delete"],
    ),
    (
        "networking.k8s.io",
        "networkpolicies",
        &["get", "list", "watch", "create", "patch", "delete"],
    ),
    ("batch", "jobs", &["get", "create", "delete"]),
    ("events.k8s.io", "events", &["create", "patch"]),
];

/// The leader-election Role in the release namespace.
const LEASE_RULES: &[(&str, &str, &[&str])] = &[(
    "coordination.k8s.io",
    "leases",
    &["get", "create", "update"],
)];

/// Values that set every optional value of the chart, so a render with
/// them covers every branch of the templates.
const EVERY_OPTION: &[&str] = &[
    "--set",
    "replicaCount=2,logLevel=info\\,kube=debug,fullnameOverride=eddy-full",
    "--set",
    "image.tag=test,image.pullPolicy=Always,processorImage.tag=test",
    "--set",
    "leaderElection.enabled=true,leaderElection.leaseName=eddy-leader",
    "--set",
    "serviceAccount.name=eddy-operator-sa,serviceAccount.annotations.team=streams",
    "--set-string",
    "service.annotations.prometheus\\.io/scrape=true",
    "--set",
    "podAnnotations.team=streams,nodeSelector.disk=ssd,priorityClassName=eddy-critical",
    "--set-json",
    "imagePullSecrets=[{\"name\":\"registry\"}]",
    "--set-json",
    "tolerations=[{\"key\":\"dedicated\",\"operator\":\"Equal\",\"value\":\"eddy\",\"effect\":\"NoSchedule\"}]",
    "--set-json",
    "affinity={\"nodeAffinity\":{\"requiredDuringSchedulingIgnoredDuringExecution\":{\"nodeSelectorTerms\":[{\"matchExpressions\":[{\"key\":\"kubernetes.io/os\",\"operator\":\"In\",\"values\":[\"linux\"]}]}]}}}",
    "--set-json",
    "networkPolicy.metricsFrom=[{\"namespaceSelector\":{\"matchLabels\":{\"kubernetes.io/metadata.name\":\"monitoring\"}}},{\"ipBlock\":{\"cidr\":\"10.0.0.0/8\"}}]",
    "--set",
    "resources.requests.cpu=100m,resources.limits.memory=1Gi",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn chart() -> PathBuf {
    repo().join("charts/eddy")
}

fn helm(args: &[&str]) -> Output {
    Command::new(eddy_testkit::helm())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running helm {args:?}: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `helm template` of the chart as release `eddy` in `namespace`.
fn template(namespace: &str, values: &[&str], include_crds: bool) -> String {
    let chart = chart();
    let mut args = vec![
        "template",
        "eddy",
        chart.to_str().unwrap(),
        "--namespace",
        namespace,
    ];
    if include_crds {
        args.push("--include-crds");
    }
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

fn render(namespace: &str, values: &[&str]) -> Vec<Value> {
    objects(&template(namespace, values, false))
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

fn kinds(objects: &[Value]) -> Vec<String> {
    objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap().to_string())
        .collect()
}

type Rules = BTreeSet<(String, String, BTreeSet<String>)>;

/// Rules as (group, resource, verbs), one entry per group and resource, so
/// the grouping inside the YAML does not matter.
fn rules_of(role: &Value) -> Rules {
    let mut by_resource: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for rule in role["rules"].as_array().expect("rules") {
        let list = |field: &str| -> Vec<String> {
            rule[field]
                .as_array()
                .unwrap_or_else(|| panic!("rule without {field}: {rule}"))
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect()
        };
        assert!(
            rule.get("resourceNames").is_none() && rule.get("nonResourceURLs").is_none(),
            "unexpected rule shape: {rule}"
        );
        for group in list("apiGroups") {
            for resource in list("resources") {
                by_resource
                    .entry((group.clone(), resource))
                    .or_default()
                    .extend(list("verbs"));
            }
        }
    }
    by_resource
        .into_iter()
        .map(|((group, resource), verbs)| (group, resource, verbs))
        .collect()
}

fn expected(rules: &[(&str, &str, &[&str])]) -> Rules {
    rules
        .iter()
        .map(|(group, resource, verbs)| {
            (
                group.to_string(),
                resource.to_string(),
                verbs.iter().map(|v| v.to_string()).collect(),
            )
        })
        .collect()
}

fn env_of(container: &Value) -> BTreeMap<String, Value> {
    container["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_string(), e.clone()))
        .collect()
}

fn env_value(env: &BTreeMap<String, Value>, name: &str) -> Option<String> {
    env.get(name)
        .map(|e| e["value"].as_str().unwrap_or_default().to_string())
}

#[test]
fn the_chart_crd_is_the_generated_one() {
    let generated = std::fs::read(repo().join("crds/streamjob.yaml")).unwrap();
    let in_chart = std::fs::read(chart().join("crds/streamjob.yaml")).unwrap();
    if generated != in_chart {
        let generated = String::from_utf8_lossy(&generated);
        let in_chart = String::from_utf8_lossy(&in_chart);
        let first = generated
            .lines()
            .zip(in_chart.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| generated.lines().count().min(in_chart.lines().count()));
        panic!(
            "charts/eddy/crds/streamjob.yaml differs from crds/streamjob.yaml (first at line {}): \
             run scripts/gen-crd, which writes both, and commit them together",
            first + 1
        );
    }
}

#[test]
fn helm_lint_strict_passes() {
    let chart = chart();
    let chart = chart.to_str().unwrap();
    let ok: &[&[&str]] = &[
        &[],
        &["--set", "watchNamespace=jobs,replicaCount=2"],
        EVERY_OPTION,
        &[
            "--set",
            "networkPolicy.enabled=false,serviceAccount.create=false",
        ],
    ];
    for values in ok {
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
    // The schema bites: each of these is refused, naming the value.
    let refused: &[(&[&str], &str)] = &[
        (&["--set", "replicaCount=-1"], "/replicaCount"),
        (&["--set", "replicaCount=one"], "/replicaCount"),
        (&["--set", "noSuchValue=1"], "noSuchValue"),
        (
            &["--set", "image.pullPolicy=Sometimes"],
            "/image/pullPolicy",
        ),
        (&["--set", "image.registry=ghcr.io"], "registry"),
        (&["--set", "watchNamespace=Jobs_A"], "/watchNamespace"),
        (&["--set", "logFormat=xml"], "/logFormat"),
        (
            &["--set", "networkPolicy.enabled=yes"],
            "/networkPolicy/enabled",
        ),
        (
            &[
                "--set-json",
                "networkPolicy.metricsFrom=[{\"namespace\":\"x\"}]",
            ],
            "/networkPolicy/metricsFrom/0",
        ),
        (
            &["--set", "resources.limits.memory=lots"],
            "/resources/limits/memory",
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

/// Runs kubectl against the test API server with `stdin` as input.
fn kubectl_with(args: &[&str], stdin: &str) -> Output {
    let kubeconfig = kubeconfig();
    let mut child = Command::new(kubectl())
        .args(["--kubeconfig", &kubeconfig])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running kubectl {args:?}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// `kubectl apply --server-side --dry-run=server --validate=strict`: the API
/// server runs admission and validation (strict field validation: unknown
/// or duplicate fields are errors) and stores nothing.
fn dry_run(yaml: &str) -> Output {
    kubectl_with(
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=eddy-chart-test",
            "--dry-run=server",
            "--validate=strict",
            "-f",
            "-",
        ],
        yaml,
    )
}

fn create_namespace(prefix: &str) -> String {
    let name = eddy_testkit::unique_name(prefix);
    let out = kubectl_with(&["create", "namespace", &name], "");
    assert!(out.status.success(), "creating {name}: {}", text(&out));
    name
}

fn delete_namespace(name: &str) {
    let out = kubectl_with(&["delete", "namespace", name, "--wait=false"], "");
    assert!(out.status.success(), "deleting {name}: {}", text(&out));
}

/// Installs the StreamJob CRD when the cluster has none (other tests
/// install theirs from crds/streamjob.yaml, which this one equals: see
/// `the_chart_crd_is_the_generated_one`).
fn ensure_crd() {
    let crd = std::fs::read_to_string(chart().join("crds/streamjob.yaml")).unwrap();
    let out = kubectl_with(&["create", "-f", "-"], &crd);
    assert!(
        out.status.success() || text(&out).contains("AlreadyExists"),
        "installing the StreamJob CRD: {}",
        text(&out)
    );
    let out = kubectl_with(
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/streamjobs.eddy.dev",
        ],
        "",
    );
    assert!(out.status.success(), "{}", text(&out));
}

/// Every object of `yaml` passes a strict server-side dry run.
fn assert_server_accepts(what: &str, yaml: &str) {
    let rendered = objects(yaml).len();
    let out = dry_run(yaml);
    assert!(
        out.status.success(),
        "the API server refused the chart rendered {what}:\n{}",
        text(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let accepted = stdout.matches("(server dry run)").count();
    assert_eq!(
        accepted, rendered,
        "{what}: {rendered} objects rendered, but the server dry run reported:\n{stdout}"
    );
}

#[test]
fn rendered_manifests_pass_strict_server_validation() {
    // Fail early, naming what to run, when a tool or the server is missing.
    let _ = (eddy_testkit::helm(), kubectl(), kubeconfig());
    ensure_crd();
    let release = create_namespace("chart");
    let jobs = create_namespace("chart-jobs");

    // Cluster-wide with the defaults, CRD included.
    let yaml = template(&release, &[], true);
    let found = kinds(&objects(&yaml));
    for kind in [
        "CustomResourceDefinition",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "ServiceAccount",
        "Deployment",
        "Service",
        "NetworkPolicy",
    ] {
        assert!(
            found.iter().any(|k| k == kind),
            "no {kind} rendered: {found:?}"
        );
    }
    assert_server_accepts("with the default values", &yaml);

    // One namespace, with every optional value set.
    let watch = format!("watchNamespace={jobs}");
    let mut values = EVERY_OPTION.to_vec();
    values.extend(["--set", watch.as_str()]);
    let yaml = template(&release, &values, false);
    let found = kinds(&objects(&yaml));
    assert!(!found.iter().any(|k| k == "ClusterRole"), "{found:?}");
    assert_server_accepts("for one namespace with every option", &yaml);

    // Strict validation does bite: an unknown field is refused.
    let mut deployment = render(&release, &[])
        .into_iter()
        .find(|o| o["kind"] == "Deployment")
        .unwrap();
    deployment["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFS"] = json!(true);
    let out = dry_run(&serde_json::to_string(&deployment).unwrap());
    assert!(
        !out.status.success() && text(&out).contains("readOnlyRootFS"),
        "a Deployment with an unknown field passed the strict dry run: {}",
        text(&out)
    );

    delete_namespace(&release);
    delete_namespace(&jobs);
}

#[test]
fn the_rbac_role_grants_exactly_what_the_operator_uses() {
    // Cluster-wide: a ClusterRole bound to the operator's ServiceAccount.
    let rendered = render("eddy-system", &[]);
    let role = the(&rendered, "ClusterRole", "eddy");
    assert_eq!(
        rules_of(role),
        expected(OPERATOR_RULES),
        "the ClusterRole's rules differ from what the operator uses"
    );
    let binding = the(&rendered, "ClusterRoleBinding", "eddy");
    assert_eq!(
        binding["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "eddy"})
    );
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": "eddy", "namespace": "eddy-system"}])
    );
    // The only namespaced Role is the leader election's.
    let roles: Vec<&Value> = rendered.iter().filter(|o| o["kind"] == "Role").collect();
    assert_eq!(roles.len(), 1, "{roles:?}");
    assert_eq!(roles[0]["metadata"]["name"], "eddy-leader-election");

    // One namespace: the same rules in a Role there, nothing cluster-wide.
    let rendered = render("eddy-system", &["--set", "watchNamespace=jobs"]);
    assert!(
        !kinds(&rendered)
            .iter()
            .any(|k| k == "ClusterRole" || k == "ClusterRoleBinding"),
        "{:?}",
        kinds(&rendered)
    );
    let role = the(&rendered, "Role", "eddy");
    assert_eq!(role["metadata"]["namespace"], "jobs");
    assert_eq!(rules_of(role), expected(OPERATOR_RULES));
    let binding = the(&rendered, "RoleBinding", "eddy");
    assert_eq!(binding["metadata"]["namespace"], "jobs");
    assert_eq!(
        binding["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "eddy"})
    );
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": "eddy", "namespace": "eddy-system"}])
    );

    // Leader election, in either mode: leases in the release namespace.
    for values in [&[][..], &["--set", "watchNamespace=jobs"][..]] {
        let rendered = render("eddy-system", values);
        let lease = the(&rendered, "Role", "eddy-leader-election");
        assert_eq!(lease["metadata"]["namespace"], "eddy-system");
        assert_eq!(rules_of(lease), expected(LEASE_RULES));
        let binding = the(&rendered, "RoleBinding", "eddy-leader-election");
        assert_eq!(binding["metadata"]["namespace"], "eddy-system");
        assert_eq!(binding["roleRef"]["name"], "eddy-leader-election");
        assert_eq!(binding["subjects"][0]["name"], "eddy");
    }
}

#[test]
fn the_operator_pod_is_non_root_with_a_read_only_root_filesystem() {
    for values in [&[][..], EVERY_OPTION] {
        let rendered = render("eddy-system", values);
        let deployment = rendered
            .iter()
            .find(|o| o["kind"] == "Deployment")
            .expect("a Deployment");
        let pod = &deployment["spec"]["template"]["spec"];
        let context = &pod["securityContext"];
        assert_eq!(context["runAsNonRoot"], true, "{context}");
        assert_eq!(context["runAsUser"], 65532, "{context}");
        assert_eq!(context["runAsGroup"], 65532, "{context}");
        assert_eq!(context["seccompProfile"]["type"], "RuntimeDefault");
        let containers = pod["containers"].as_array().unwrap();
        assert_eq!(containers.len(), 1);
        let container = &containers[0];
        let context = &container["securityContext"];
        assert_eq!(context["runAsNonRoot"], true, "{context}");
        assert_eq!(context["runAsUser"], 65532, "{context}");
        assert_eq!(context["readOnlyRootFilesystem"], true, "{context}");
        assert_eq!(context["allowPrivilegeEscalation"], false, "{context}");
        assert_eq!(context["capabilities"]["drop"], json!(["ALL"]), "{context}");
        assert_eq!(context["seccompProfile"]["type"], "RuntimeDefault");
        assert!(
            context.get("privileged").is_none_or(|p| p == false),
            "{context}"
        );
        // The only writable place is the /tmp emptyDir.
        assert_eq!(
            container["volumeMounts"],
            json!([{"name": "tmp", "mountPath": "/tmp"}])
        );
        assert_eq!(pod["volumes"], json!([{"name": "tmp", "emptyDir": {}}]));
        // The operator's per-job NetworkPolicy admits pods by this label,
        // whatever the release or fullnameOverride.
        assert_eq!(
            deployment["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"],
            "eddy-operator"
        );
        assert_eq!(pod["terminationGracePeriodSeconds"], 30);
        assert_eq!(container["args"], json!(["run"]));
        assert_eq!(
            container["ports"],
            json!([{"name": "http", "containerPort": 8080, "protocol": "TCP"}])
        );
    }
}

#[test]
fn the_operator_settings_follow_the_values() {
    let deployment = |values: &[&str]| -> (Value, BTreeMap<String, Value>) {
        let rendered = render("eddy-system", values);
        let deployment = rendered
            .into_iter()
            .find(|o| o["kind"] == "Deployment")
            .expect("a Deployment");
        let env = env_of(&deployment["spec"]["template"]["spec"]["containers"][0]);
        (deployment, env)
    };

    let (defaults, env) = deployment(&[]);
    let container = &defaults["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        container["image"], "ghcr.io/eddy-dev/eddy-operator:0.1.0",
        "the tag defaults to the appVersion"
    );
    assert_eq!(defaults["spec"]["replicas"], 1);
    assert_eq!(defaults["spec"]["strategy"]["type"], "Recreate");
    assert!(!env.contains_key("EDDY_WATCH_NAMESPACE"), "{env:?}");
    let expect = [
        (
            "EDDY_PROCESSOR_IMAGE",
            "ghcr.io/eddy-dev/eddy-processor:0.1.0",
        ),
        ("EDDY_HTTP_ADDR", "0.0.0.0:8080"),
        ("EDDY_LEADER_ELECTION", "false"),
        ("EDDY_LEASE_NAME", "eddy"),
        ("EDDY_NETWORK_POLICY", "true"),
        ("RUST_LOG", "info"),
        ("EDDY_LOG_FORMAT", "text"),
    ];
    for (name, value) in expect {
        assert_eq!(env_value(&env, name).as_deref(), Some(value), "{name}");
    }
    for (name, field) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ] {
        assert_eq!(
            env[name]["valueFrom"],
            json!({"fieldRef": {"fieldPath": field}}),
            "{name}"
        );
    }

    // Two replicas: leader election and a rolling update.
    let (two, env) = deployment(&["--set", "replicaCount=2,watchNamespace=jobs"]);
    assert_eq!(two["spec"]["replicas"], 2);
    assert_eq!(two["spec"]["strategy"]["type"], "RollingUpdate");
    assert_eq!(
        env_value(&env, "EDDY_LEADER_ELECTION").as_deref(),
        Some("true")
    );
    assert_eq!(
        env_value(&env, "EDDY_WATCH_NAMESPACE").as_deref(),
        Some("jobs")
    );

    // One replica asking for leader election, tags, no network policies.
    let (_, env) = deployment(&[
        "--set",
        "leaderElection.enabled=true,leaderElection.leaseName=lead",
        "--set",
        "processorImage.tag=e2e,networkPolicy.enabled=false,logLevel=debug",
        "--set",
        "logFormat=json",
    ]);
    for (name, value) in [
        ("EDDY_LEADER_ELECTION", "true"),
        ("EDDY_LEASE_NAME", "lead"),
        (
            "EDDY_PROCESSOR_IMAGE",
            "ghcr.io/eddy-dev/eddy-processor:e2e",
        ),
        ("EDDY_NETWORK_POLICY", "false"),
        ("RUST_LOG", "debug"),
        ("EDDY_LOG_FORMAT", "json"),
    ] {
        assert_eq!(env_value(&env, name).as_deref(), Some(value), "{name}");
    }
    let rendered = render("eddy-system", &["--set", "networkPolicy.enabled=false"]);
    assert!(!kinds(&rendered).iter().any(|k| k == "NetworkPolicy"));

    // The chart's NetworkPolicy: ingress to 8080 only, egress open.
    let rendered = render("eddy-system", &[]);
    let policy = the(&rendered, "NetworkPolicy", "eddy");
    assert_eq!(
        policy["spec"]["podSelector"]["matchLabels"],
        json!({"app.kubernetes.io/name": "eddy-operator", "app.kubernetes.io/instance": "eddy"})
    );
    assert_eq!(
        policy["spec"]["ingress"],
        json!([{"ports": [{"port": 8080, "protocol": "TCP"}]}])
    );
    assert_eq!(policy["spec"]["egress"], json!([{}]));
    let service = the(&rendered, "Service", "eddy-metrics");
    assert_eq!(
        service["spec"]["ports"],
        json!([{"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}])
    );
}

/// Offline validation against the OpenAPI document of the Kubernetes the
/// test control plane is built from (api/openapi-spec/swagger.json of the
/// k8s.io/kubernetes module pinned in e2e/controlplane/go.mod), made into a
/// strict JSON Schema per kind the way kubeconform's openapi2jsonschema
/// does: objects accept no fields they do not list, int-or-string and
/// quantities take either form. Needs no server, only the Go module cache.
mod offline {
    use std::{collections::BTreeMap, path::PathBuf, process::Command};

    use serde_json::{json, Value};

    pub struct Schemas {
        definitions: Value,
        /// (apiVersion, kind) to the definition's name.
        kinds: BTreeMap<(String, String), String>,
    }

    /// The pinned version of k8s.io/kubernetes.
    fn kubernetes_version() -> String {
        let go_mod = super::repo().join("e2e/controlplane/go.mod");
        let text = std::fs::read_to_string(&go_mod).unwrap();
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix("k8s.io/kubernetes v"))
            .map(|v| format!("v{}", v.split_whitespace().next().unwrap()))
            .unwrap_or_else(|| panic!("no k8s.io/kubernetes requirement in {}", go_mod.display()))
    }

    fn swagger() -> PathBuf {
        let version = kubernetes_version();
        let how = "`scripts/test-servers install` downloads it when it builds the control plane, \
                   or run `go mod download k8s.io/kubernetes` in e2e/controlplane";
        let out = Command::new("go")
            .args(["env", "GOMODCACHE"])
            .output()
            .unwrap_or_else(|e| {
                panic!("running `go env GOMODCACHE` to find the k8s.io/kubernetes {version} module: {e}; {how}")
            });
        assert!(out.status.success(), "go env GOMODCACHE failed");
        let cache = String::from_utf8(out.stdout).unwrap();
        let path = PathBuf::from(cache.trim())
            .join(format!("k8s.io/kubernetes@{version}"))
            .join("api/openapi-spec/swagger.json");
        assert!(
            path.exists(),
            "{} is missing: the k8s.io/kubernetes {version} module is not in the Go module cache; {how}",
            path.display()
        );
        path
    }

    /// One schema node made strict (recursively through its inline parts;
    /// `$ref`s point at definitions made strict on their own).
    fn strict(schema: &mut Value) {
        let Some(object) = schema.as_object_mut() else {
            return;
        };
        if object.get("format").is_some_and(|f| f == "int-or-string") {
            *schema = json!({"anyOf": [{"type": "string"}, {"type": "integer"}]});
            return;
        }
        // int32, int64, byte, date-time...: the API server's business.
        object.remove("format");
        let preserves = object
            .get("x-kubernetes-preserve-unknown-fields")
            .is_some_and(|v| v == true);
        if let Some(Value::Object(properties)) = object.get_mut("properties") {
            properties.values_mut().for_each(strict);
            if !preserves && !object.contains_key("additionalProperties") {
                object.insert("additionalProperties".into(), Value::Bool(false));
            }
        }
        if let Some(items) = object.get_mut("items") {
            strict(items);
        }
        if let Some(additional @ Value::Object(_)) = object.get_mut("additionalProperties") {
            strict(additional);
        }
    }

    impl Schemas {
        pub fn load() -> Self {
            let path = swagger();
            let text = std::fs::read_to_string(&path).unwrap();
            let mut document: Value = serde_json::from_str(&text).unwrap();
            let mut definitions = document["definitions"].take();
            let mut kinds = BTreeMap::new();
            for (name, definition) in definitions.as_object_mut().expect("definitions") {
                for gvk in definition["x-kubernetes-group-version-kind"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    let (group, version) = (
                        gvk["group"].as_str().unwrap(),
                        gvk["version"].as_str().unwrap(),
                    );
                    let api_version = if group.is_empty() {
                        version.to_string()
                    } else {
                        format!("{group}/{version}")
                    };
                    kinds.insert(
                        (api_version, gvk["kind"].as_str().unwrap().to_string()),
                        name.clone(),
                    );
                }
                strict(definition);
            }
            definitions["io.k8s.apimachinery.pkg.api.resource.Quantity"] =
                json!({"anyOf": [{"type": "string"}, {"type": "number"}]});
            assert!(
                kinds.len() > 100,
                "only {} kinds in {}",
                kinds.len(),
                path.display()
            );
            Schemas { definitions, kinds }
        }

        /// What is wrong with `object`, one line per problem.
        pub fn problems(&self, object: &Value) -> Vec<String> {
            let api_version = object["apiVersion"].as_str().unwrap_or_default();
            let kind = object["kind"].as_str().unwrap_or_default();
            let Some(name) = self.kinds.get(&(api_version.to_string(), kind.to_string())) else {
                return vec![format!(
                    "{api_version} {kind} is not a kind of this Kubernetes"
                )];
            };
            let schema = json!({
                "$ref": format!("#/definitions/{name}"),
                "definitions": self.definitions,
            });
            let validator = jsonschema::draft7::new(&schema)
                .unwrap_or_else(|e| panic!("the schema of {name}: {e}"));
            validator
                .iter_errors(object)
                .map(|e| {
                    format!(
                        "{kind} {}: {e} at {}",
                        object["metadata"]["name"],
                        e.instance_path()
                    )
                })
                .collect()
        }
    }
}

#[test]
fn rendered_manifests_pass_offline_schema_validation() {
    let schemas = offline::Schemas::load();
    let mut checked = 0;
    let watch = ["--set", "watchNamespace=jobs"];
    let every_option_in_one_namespace = [EVERY_OPTION, &watch[..]].concat();
    for values in [&[][..], &every_option_in_one_namespace[..]] {
        let yaml = template("eddy-system", values, true);
        for object in objects(&yaml) {
            let problems = schemas.problems(&object);
            assert!(
                problems.is_empty(),
                "the chart with {values:?}: {problems:#?}"
            );
            checked += 1;
        }
    }
    // The kind cluster's servers (e2e/kind/manifests), which no test applies.
    let dir = repo().join("e2e/kind/manifests");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 3, "{files:?}");
    for file in &files {
        for object in objects(&std::fs::read_to_string(file).unwrap()) {
            let problems = schemas.problems(&object);
            assert!(problems.is_empty(), "{}: {problems:#?}", file.display());
            checked += 1;
        }
    }
    assert!(checked > 30, "only {checked} objects checked");

    // The check bites: an unknown field, a wrong type, a missing required
    // field and an unknown kind are each reported.
    let mut deployment = render("eddy-system", &[])
        .into_iter()
        .find(|o| o["kind"] == "Deployment")
        .unwrap();
    let container = &mut deployment["spec"]["template"]["spec"]["containers"][0];
    container["readOnlyRootFS"] = json!(true);
    container["ports"][0]["containerPort"] = json!("http");
    deployment["spec"]
        .as_object_mut()
        .unwrap()
        .remove("selector");
    let problems = schemas.problems(&deployment).join("\n");
    for expected in [
        "readOnlyRootFS",
        "\"http\" is not of type \"integer\"",
        "selector",
    ] {
        assert!(
            problems.contains(expected),
            "{expected} not reported: {problems}"
        );
    }
    let unknown = json!({"apiVersion": "apps/v1", "kind": "Deploymnet", "metadata": {"name": "x"}});
    assert_eq!(schemas.problems(&unknown).len(), 1);
}
