//! Smoke tests: the Kubernetes control plane `scripts/test-servers` starts
//! (etcd, kube-apiserver, kube-controller-manager) and its test node, which
//! runs pods as local processes, through kube-rs as the operator uses it.

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use eddy_testkit::kube::{client, kubeconfig, kubectl, node_name};
use k8s_openapi::{
    api::{
        apps::v1::StatefulSet,
        core::v1::{ConfigMap, Namespace, Pod, ServiceAccount},
        rbac::v1::RoleBinding,
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams},
    core::{ApiResource, GroupVersionKind},
    runtime::wait::{await_condition, conditions},
    Api, Client, ResourceExt,
};
use serde_json::{json, Value};

const MANAGER: &str = "eddy-smoke-test";
const TIMEOUT: Duration = Duration::from_secs(90);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn apply() -> PatchParams {
    PatchParams::apply(MANAGER).force()
}

/// Polls `check` every 200 ms until it returns `Some`, failing after
/// [`TIMEOUT`] with `what` and the last state `describe` gives.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(state) if Instant::now() > deadline => {
                panic!("timed out after {TIMEOUT:?} waiting for {what}; last: {state}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Installs the checked-in CRD by server-side apply (as `helm install` and
/// `kubectl apply --server-side` do) and waits until it is established.
async fn install_crd(client: &Client) {
    let crd: CustomResourceDefinition = serde_yaml_ng::from_str(
        &std::fs::read_to_string(repo().join("crds/streamjob.yaml")).unwrap(),
    )
    .unwrap();
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = crd.name_any();
    api.patch(&name, &apply(), &Patch::Apply(&crd))
        .await
        .unwrap_or_else(|e| panic!("the API server refused crds/streamjob.yaml: {e}"));
    tokio::time::timeout(
        TIMEOUT,
        await_condition(api, &name, conditions::is_crd_established()),
    )
    .await
    .expect("the CRD is established in time")
    .unwrap();
}

/// A namespace of the test's own, deleted (with everything in it) by the
/// namespace controller when the test ends well.
async fn namespace(client: &Client, prefix: &str) -> String {
    let name = eddy_testkit::unique_name(prefix);
    create_namespace(client, &name).await;
    // Pods need the namespace's `default` service account (the
    // ServiceAccount admission plugin), made by its controller.
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &name);
    eventually("the namespace's default service account", || async {
        accounts
            .get_opt("default")
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "not yet".to_string())
    })
    .await;
    name
}

async fn create_namespace(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    api.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
    )
    .await
    .unwrap();
}

async fn delete_namespace(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    api.delete(name, &DeleteParams::background()).await.unwrap();
}

fn stream_jobs(client: &Client, ns: &str) -> Api<DynamicObject> {
    let resource =
        ApiResource::from_gvk(&GroupVersionKind::gvk("eddy.dev", "v1alpha1", "StreamJob"));
    Api::namespaced_with(client.clone(), ns, &resource)
}

fn example(name: &str) -> DynamicObject {
    serde_yaml_ng::from_str(&std::fs::read_to_string(repo().join("examples").join(name)).unwrap())
        .unwrap()
}

#[tokio::test]
async fn the_crd_is_accepted_with_its_schema_rules_and_subresources() {
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, "crd").await;
    let jobs = stream_jobs(&client, &ns);

    // A valid job is stored, with the schema's defaults filled in.
    let job = example("quickstart.yaml");
    let stored = jobs
        .patch("quickstart", &apply(), &Patch::Apply(&job))
        .await
        .unwrap();
    let parallelism = stored.data["spec"]["parallelism"].as_i64();
    assert!(
        parallelism.is_some(),
        "the schema defaults parallelism: {:?}",
        stored.data
    );

    // The CEL rules refuse what the types cannot express, and the schema
    // refuses wrong types.
    let refused = |name: &'static str, edit: fn(&mut Value)| {
        let mut bad = job.clone();
        bad.metadata.name = Some(name.into());
        edit(&mut bad.data["spec"]);
        let jobs = jobs.clone();
        async move {
            jobs.patch(name, &apply(), &Patch::Apply(&bad))
                .await
                .expect_err(name)
                .to_string()
        }
    };
    let message = refused("too-parallel", |spec| {
        spec["partitions"] = json!(2);
        spec["parallelism"] = json!(3);
    })
    .await;
    assert!(
        message.contains("parallelism must not exceed partitions"),
        "{message}"
    );
    let message = refused("two-windows", |spec| {
        spec["window"]["session"] = json!({"gap": "30s"});
    })
    .await;
    assert!(
        message.contains("set exactly one of tumbling, sliding, session or calendar"),
        "{message}"
    );
    refused("wrong-type", |spec| spec["partitions"] = json!("many")).await;

    // The status subresource: status is written apart from the spec, and a
    // status write does not bump the generation.
    let generation = stored.metadata.generation;
    let patched = jobs
        .patch_status(
            "quickstart",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Running", "replicas": 1}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.data["status"]["phase"], "Running");
    assert_eq!(patched.metadata.generation, generation);
    let mut with_status = job.clone();
    with_status.data["status"] = json!({"phase": "Failed"});
    let updated = jobs
        .patch("quickstart", &apply(), &Patch::Apply(&with_status))
        .await
        .unwrap();
    assert_eq!(
        updated.data["status"]["phase"], "Running",
        "the main resource ignores status"
    );

    // The scale subresource maps replicas to spec.parallelism, so
    // `kubectl scale streamjob/x --replicas N` works.
    let scale = jobs.get_scale("quickstart").await.unwrap();
    assert_eq!(
        scale.spec.and_then(|s| s.replicas).map(i64::from),
        parallelism
    );
    jobs.patch_scale(
        "quickstart",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 1}})),
    )
    .await
    .unwrap();
    let job = jobs.get("quickstart").await.unwrap();
    assert_eq!(job.data["spec"]["parallelism"], 1);

    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn every_example_passes_server_side_dry_run() {
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, "examples").await;
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for file in &files {
        // A file that names its namespace is applied there, as `kubectl
        // apply -f` would; the namespace must exist for the dry run.
        let named = example(file.file_name().unwrap().to_str().unwrap())
            .metadata
            .namespace;
        let target = match &named {
            Some(own) => {
                if namespaces.get_opt(own).await.unwrap().is_none() {
                    create_namespace(&client, own).await;
                }
                own.clone()
            }
            None => ns.clone(),
        };
        let out = Command::new(kubectl())
            .args(["--kubeconfig", &kubeconfig(), "--namespace", &target])
            .args(["apply", "--dry-run=server", "-f"])
            .arg(file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(said.contains("(server dry run)"), "{said}");
        let stored = stream_jobs(&client, &target)
            .list(&ListParams::default())
            .await
            .unwrap();
        assert!(stored.items.is_empty(), "a dry run stores nothing");
    }
    delete_namespace(&client, &ns).await;
}
/// An endless, slow job: the pods stay up until they are deleted.
const POD_JOB: &str = "apiVersion: eddy.dev/v1alpha1
kind: StreamJob
metadata: {name: smoke}
spec:
  source: {generator: {realtime: true, rate: 50, keys: 5}}
  keyField: key
  eventTime: {field: ts, format: rfc3339}
  window: {tumbling: {size: 1s}}
  aggregations: [{op: count, name: n}]
  sinks: [{stdout: {}}]
";

/// A StatefulSet of two processors, each serving its admin API on port
/// 9090 (of its own pod IP), state on a claim from volumeClaimTemplates.
fn statefulset(name: &str) -> Value {
    let labels = json!({"app": name});
    json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": 2,
            "serviceName": name,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "terminationGracePeriodSeconds": 10,
                    "containers": [{
                        "name": "processor",
                        "image": "ghcr.io/eddy-dev/eddy-processor:test",
                        "args": ["run", "/etc/eddy/job.yaml", "--admin-addr", "0.0.0.0:9090",
                                 "--state-dir", "/var/lib/eddy/state"],
                        "workingDir": "/var/lib/eddy",
                        "env": [{"name": "RUST_LOG", "value": "info"}],
                        "ports": [{"name": "admin", "containerPort": 9090}],
                        "readinessProbe": {
                            "httpGet": {"path": "/readyz", "port": "admin"},
                            "periodSeconds": 1
                        },
                        "livenessProbe": {
                            "httpGet": {"path": "/healthz", "port": 9090},
                            "periodSeconds": 2
                        },
                        "volumeMounts": [
                            {"name": "job", "mountPath": "/etc/eddy", "readOnly": true},
                            {"name": "state", "mountPath": "/var/lib/eddy"}
                        ]
                    }],
                    "volumes": [{"name": "job", "configMap": {"name": name}}]
                }
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "state"},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "1Gi"}}
                }
            }]
        }
    })
}

fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn pod_ip(pod: &Pod) -> Option<String> {
    pod.status.as_ref().and_then(|s| s.pod_ip.clone())
}

/// The status code of `GET http://ip:port/path`, or `None` when nothing
/// answers.
fn http_status(ip: &str, port: u16, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(
        &format!("{ip}:{port}").parse().ok()?,
        Duration::from_secs(2),
    )
    .ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {ip}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}

/// Waits until the StatefulSet's pods are the given ordinals, all Ready on
/// the test node; returns them by name.
async fn ready_pods(pods: &Api<Pod>, app: &str, replicas: usize) -> BTreeMap<String, Pod> {
    eventually(&format!("{replicas} ready pods of {app}"), || async {
        let list = pods
            .list(&ListParams::default().labels(&format!("app={app}")))
            .await
            .map_err(|e| e.to_string())?;
        let live: BTreeMap<String, Pod> = list
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .map(|p| (p.name_any(), p))
            .collect();
        let states: Vec<String> = live
            .values()
            .map(|p| format!("{} ready={} ip={:?}", p.name_any(), ready(p), pod_ip(p)))
            .collect();
        if live.len() == replicas && live.values().all(ready) {
            Ok(live)
        } else {
            Err(format!("{states:?}"))
        }
    })
    .await
}

#[tokio::test]
async fn a_statefulset_runs_on_the_test_node_is_repaired_and_collected() {
    let client = client().await;
    let ns = namespace(&client, "sts").await;
    let app = "smoke";
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);

    // Server-side apply of the StatefulSet; its ConfigMap is owned by it,
    // so garbage collection removes both.
    let set = sets
        .patch(app, &apply(), &Patch::Apply(statefulset(app)))
        .await
        .unwrap();
    let owner = json!([{
        "apiVersion": "apps/v1", "kind": "StatefulSet", "name": app,
        "uid": set.uid().unwrap(), "controller": true, "blockOwnerDeletion": true
    }]);
    config_maps
        .patch(
            app,
            &apply(),
            &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": app, "ownerReferences": owner},
                "data": {"job.yaml": POD_JOB}
            })),
        )
        .await
        .unwrap();

    // Both pods run on the test node, each on an address of its own, and
    // both serve port 9090 there.
    let running = ready_pods(&pods, app, 2).await;
    let ips: Vec<String> = running.values().map(|p| pod_ip(p).unwrap()).collect();
    assert_ne!(ips[0], ips[1], "each pod has its own IP");
    for pod in running.values() {
        assert_eq!(
            pod.spec.as_ref().unwrap().node_name.as_deref(),
            Some(node_name().as_str())
        );
        let ip = pod_ip(pod).unwrap();
        assert_eq!(
            http_status(&ip, 9090, "/healthz"),
            Some(200),
            "{}",
            pod.name_any()
        );
    }

    // A deleted pod is recreated by the StatefulSet controller (same name,
    // new UID) and its process started again; the old one is stopped.
    let victim = &running[&format!("{app}-0")];
    let old_uid = victim.uid().unwrap();
    pods.delete(&victim.name_any(), &DeleteParams::default())
        .await
        .unwrap();
    let replaced = eventually("pod smoke-0 recreated and ready", || async {
        let pod = pods
            .get_opt(&format!("{app}-0"))
            .await
            .map_err(|e| e.to_string())?;
        match pod {
            Some(p) if p.uid().as_deref() != Some(old_uid.as_str()) && ready(&p) => Ok(p),
            other => Err(format!("{:?}", other.map(|p| (p.uid(), ready(&p))))),
        }
    })
    .await;
    let ip = pod_ip(&replaced).unwrap();
    assert_eq!(http_status(&ip, 9090, "/healthz"), Some(200));
    let restarted = replaced
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap();
    assert_eq!(restarted[0].restart_count, 0, "a new pod, not a restart");

    // Deleting the StatefulSet in the background: the garbage collector
    // deletes its pods and the ConfigMap it owns; the node stops the
    // processes.
    sets.delete(app, &DeleteParams::background()).await.unwrap();
    eventually("pods and ConfigMap collected", || async {
        let left = pods
            .list(&ListParams::default().labels(&format!("app={app}")))
            .await
            .map_err(|e| e.to_string())?;
        let cm = config_maps.get_opt(app).await.map_err(|e| e.to_string())?;
        if left.items.is_empty() && cm.is_none() {
            Ok(())
        } else {
            Err(format!(
                "{} pods, config map {}",
                left.items.len(),
                cm.is_some()
            ))
        }
    })
    .await;
    assert_eq!(
        http_status(&ip, 9090, "/healthz"),
        None,
        "the process stopped"
    );
    delete_namespace(&client, &ns).await;
}

/// Whether RBAC lets `user` do `verb` on `resource` (of `group`) in `ns`,
/// as the API server's authorizer decides it.
async fn allowed(
    client: &Client,
    user: &str,
    verb: &str,
    group: &str,
    resource: &str,
    ns: &str,
) -> bool {
    use k8s_openapi::api::authorization::v1::SubjectAccessReview;
    let review: SubjectAccessReview = serde_json::from_value(json!({
        "spec": {
            "user": user,
            "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{ns}"), "system:authenticated"],
            "resourceAttributes": {"namespace": ns, "verb": verb, "group": group, "resource": resource}
        }
    }))
    .unwrap();
    let api: Api<SubjectAccessReview> = Api::all(client.clone());
    let answer = api.create(&PostParams::default(), &review).await.unwrap();
    answer.status.unwrap().allowed
}

/// The operator as a pod: an in-cluster client with the projected
/// service-account token (TokenRequest), the cluster's CA and
/// `KUBERNETES_SERVICE_HOST`, authorized by RBAC only once its account is
/// bound to a role; it then reconciles a StreamJob into its children.
#[tokio::test]
async fn an_in_cluster_client_is_authorized_by_rbac_and_works() {
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, "incluster").await;
    let account = format!("system:serviceaccount:{ns}:eddy-operator");
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);

    accounts
        .patch(
            "eddy-operator",
            &apply(),
            &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "eddy-operator"}
            })),
        )
        .await
        .unwrap();
    assert!(
        !allowed(&client, &account, "list", "eddy.dev", "streamjobs", &ns).await,
        "RBAC denies an account no role is bound to"
    );
    bindings
        .patch("eddy-operator", &apply(), &Patch::Apply(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "eddy-operator"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"kind": "ServiceAccount", "name": "eddy-operator", "namespace": ns}]
        })))
        .await
        .unwrap();
    // The authorizer reads bindings from its watch cache, so a new binding
    // takes effect shortly after it is written, not at once.
    eventually("RBAC to allow the account once it is bound", || async {
        allowed(&client, &account, "list", "eddy.dev", "streamjobs", &ns)
            .await
            .then_some(())
            .ok_or_else(|| "still denied".to_string())
    })
    .await;
    assert!(
        !allowed(
            &client,
            &account,
            "list",
            "eddy.dev",
            "streamjobs",
            "default"
        )
        .await,
        "a RoleBinding grants nothing outside its namespace"
    );

    pods
        .patch("eddy-operator", &apply(), &Patch::Apply(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "eddy-operator", "labels": {"app": "eddy-operator"}},
            "spec": {
                "serviceAccountName": "eddy-operator",
                "containers": [{
                    "name": "operator",
                    "image": "ghcr.io/eddy-dev/eddy-operator:test",
                    "args": ["run"],
                    "env": [{
                        "name": "EDDY_WATCH_NAMESPACE",
                        "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}
                    }],
                    "ports": [{"name": "http", "containerPort": 8080}],
                    "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 1}
                }]
            }
        })))
        .await
        .unwrap();
    ready_pods(&pods, "eddy-operator", 1).await;

    // The operator reads the job and writes its status: every call it
    // made went through the API server's authentication (the pod's token)
    // and authorization (the binding above). The quickstart keeps its
    // checkpoints on the pod's own volume, which a cluster refuses.
    let jobs = stream_jobs(&client, &ns);
    jobs.patch(
        "quickstart",
        &apply(),
        &Patch::Apply(example("quickstart.yaml")),
    )
    .await
    .unwrap();
    let message = eventually("the operator to report on the job", || async {
        let job = jobs.get("quickstart").await.map_err(|e| e.to_string())?;
        job.data["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "SpecValid" && c["status"] == "False")
            .and_then(|c| c["message"].as_str().map(String::from))
            .ok_or_else(|| format!("status {}", job.data["status"]))
    })
    .await;
    assert!(message.contains("object store"), "{message}");
    delete_namespace(&client, &ns).await;
}
