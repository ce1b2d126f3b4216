//! The operator against the real control plane `scripts/test-servers`
//! starts: each test gets a namespace of its own, an operator running
//! in-process and watching only that namespace, and processor pods that
//! the test node runs as real `eddy-processor` processes, checkpointing to
//! the real S3 store. Nothing is mocked.

#![allow(dead_code)] // each test uses part of this

use std::time::Duration;

use eddy_api::StreamJob;
use eddy_operator::{
    controller::run::Http,
    scheduler::{AdminClient, Listing},
};
use k8s_openapi::{
    api::core::v1::{Namespace, Pod, Secret},
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
    Api, Client, ResourceExt,
};
use serde_json::{json, Value};
use tokio::task::JoinHandle;

/// Bucket every test's checkpoints go to (under `jobs/<namespace>/<job>`).
pub const BUCKET: &str = "eddy-operator-tests";
/// The processor image the operator renders by default; the test node
/// runs `target/debug/eddy-processor` for it.
pub const IMAGE: &str = "ghcr.io/eddy-dev/eddy-processor:test";

pub fn repo() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn apply_params() -> PatchParams {
    PatchParams::apply("eddy-tests").force()
}

pub use eddy_testkit::eventually;

/// One test's namespace, with an operator of its own.
pub struct Cluster {
    pub client: Client,
    pub ns: String,
    operator: Option<JoinHandle<()>>,
    /// The operator's `/metrics` socket, bound for the whole test so that
    /// nothing else takes its port while the operator is stopped (every
    /// operator started here serves on a clone of it).
    metrics: std::net::TcpListener,
}

impl Cluster {
    /// A fresh namespace holding the S3 credentials Secret `s3`, with the
    /// CRD installed and the checkpoint bucket created.
    pub async fn new(prefix: &str) -> Self {
        let client = eddy_testkit::kube::client().await;
        install_crd(&client).await;
        eddy_testkit::s3::create_bucket(BUCKET).await;
        let ns = eddy_testkit::unique_name(prefix);
        let namespaces: Api<Namespace> = Api::all(client.clone());
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
            )
            .await
            .unwrap();
        let s3 = eddy_testkit::s3();
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
        secrets
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "metadata": {"name": "s3"},
                    "stringData": {
                        "AWS_ACCESS_KEY_ID": s3.access_key,
                        "AWS_SECRET_ACCESS_KEY": s3.secret_key,
                    }
                }))
                .unwrap(),
            )
            .await
            .unwrap();
        let metrics = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        Self {
            client,
            ns,
            operator: None,
            metrics,
        }
    }

    /// The value of an unlabelled sample of the operator's `/metrics`.
    pub async fn operator_metric(&self, name: &str) -> f64 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(self.metrics.local_addr().unwrap())
            .await
            .expect("the operator's metrics port");
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: operator\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        let text = String::from_utf8_lossy(&raw).into_owned();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    }

    /// Starts an operator watching this namespace, rendering `image` for
    /// jobs without one.
    pub async fn start_operator(&mut self, image: &str) {
        self.stop_operator().await;
        let settings = eddy_operator::controller::run::Settings {
            namespace: Some(self.ns.clone()),
            default_image: image.into(),
            http: Http::Listener(self.metrics.try_clone().unwrap()),
            instance: format!("operator-{}", self.ns),
            own_namespace: self.ns.clone(),
            leader_election: false,
            lease_name: "eddy-operator".into(),
            network_policy: true,
        };
        let client = self.client.clone();
        self.operator = Some(tokio::spawn(async move {
            if let Err(e) = eddy_operator::controller::run::run_with(client, settings).await {
                eprintln!("operator stopped: {e:#}");
            }
        }));
    }

    /// Stops the operator at once, wherever it is (as a killed pod would),
    /// and waits until it is gone.
    pub async fn stop_operator(&mut self) {
        if let Some(task) = self.operator.take() {
            task.abort();
            let _ = task.await;
        }
    }

    pub fn jobs(&self) -> Api<StreamJob> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// A job `name` running the generator in real time, checkpointing to
    /// S3 every `interval`; `extra` is merged into the spec.
    pub fn job(&self, name: &str, extra: Value) -> Value {
        let s3 = eddy_testkit::s3();
        let mut spec = json!({
            "source": {"generator": {"seed": 7, "rate": 20, "realtime": true, "keys": 20}},
            "keyField": "key",
            "eventTime": {"field": "ts", "maxOutOfOrderness": "1s"},
            "window": {"tumbling": {"size": "10s"}},
            "partitions": 4,
            "parallelism": 2,
            "sinks": [{"stdout": {}}],
            "checkpoints": {
                "interval": "4s",
                "timeout": "30s",
                "store": format!("s3://{BUCKET}/jobs"),
                "endpoint": s3.endpoint,
                "credentialsSecret": {"name": "s3"}
            },
            "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}}
        });
        merge(&mut spec, &extra);
        json!({
            "apiVersion": "eddy.dev/v1alpha1",
            "kind": "StreamJob",
            "metadata": {"name": name, "namespace": self.ns},
            "spec": spec,
        })
    }

    /// Server-side applies `job` (as `kubectl apply --server-side`).
    pub async fn apply(&self, job: &Value) -> StreamJob {
        let name = job["metadata"]["name"].as_str().unwrap();
        self.jobs()
            .patch(name, &apply_params(), &Patch::Apply(job))
            .await
            .unwrap_or_else(|e| panic!("applying {name}: {e}"))
    }

    /// Merge-patches the job's spec.
    pub async fn patch_spec(&self, name: &str, spec: Value) -> StreamJob {
        self.jobs()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": spec})),
            )
            .await
            .unwrap()
    }

    /// `kubectl scale streamjob/<name> --replicas <n>`: through the scale
    /// subresource.
    pub async fn scale(&self, name: &str, replicas: i32) {
        self.jobs()
            .patch_scale(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": replicas}})),
            )
            .await
            .unwrap();
    }

    /// Waits until `check` holds for job `name`; returns it.
    pub async fn wait_job(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        check: impl Fn(&StreamJob) -> Result<(), String>,
    ) -> StreamJob {
        let jobs = self.jobs();
        eventually(what, timeout, || async {
            let job = jobs.get(name).await.map_err(|e| e.to_string())?;
            check(&job).map(|()| job.clone()).map_err(|e| {
                format!(
                    "{e}; status {}",
                    serde_json::to_string(&job.status).unwrap_or_default()
                )
            })
        })
        .await
    }

    /// Waits until the job is Ready with every pod up (the rollout done).
    pub async fn wait_ready(&self, name: &str) -> StreamJob {
        self.wait_job(
            name,
            "the job to be Ready",
            Duration::from_secs(180),
            |job| {
                let ready = condition(job, "Ready").map(|c| c.0.clone());
                if ready.as_deref() == Some("True") {
                    Ok(())
                } else {
                    Err(format!("Ready is {ready:?}"))
                }
            },
        )
        .await
    }

    /// Reasons and notes of the Events recorded about job `name`, oldest
    /// first.
    pub async fn events(&self, name: &str) -> Vec<(String, String)> {
        eddy_testkit::kube::stream_job_events(&self.client, &self.ns, name)
            .await
            .into_iter()
            .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
            .collect()
    }

    /// Waits for an Event with `reason` about job `name`; returns its note.
    pub async fn wait_event(&self, name: &str, reason: &str, timeout: Duration) -> String {
        eventually(&format!("Event {reason}"), timeout, || async {
            let events = self.events(name).await;
            events
                .iter()
                .find(|(r, _)| r == reason)
                .map(|(_, note)| note.clone())
                .ok_or_else(|| format!("events so far: {events:?}"))
        })
        .await
    }

    /// The job's pods by name, with their uids.
    pub async fn pods(&self, name: &str) -> Vec<Pod> {
        let pods: Api<Pod> = self.api();
        let selector = format!("app.kubernetes.io/instance={name}");
        let mut list = pods
            .list(&ListParams::default().labels(&selector))
            .await
            .unwrap()
            .items;
        list.sort_by_key(ResourceExt::name_any);
        list
    }

    /// `GET /checkpoints` of a pod's admin API, at its pod IP.
    pub async fn admin(&self, pod: &Pod) -> Result<Listing, String> {
        let ip = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .ok_or("no pod IP")?;
        AdminClient::default()
            .list(&format!("http://{ip}:9090"))
            .await
            .map_err(|e| e.to_string())
    }

    /// Deletes the namespace and stops the operator.
    pub async fn finish(mut self) {
        self.stop_operator().await;
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let _ = namespaces.delete(&self.ns, &DeleteParams::default()).await;
    }
}

/// What a pod's processor wrote on stdout and stderr: the test node keeps
/// it under its root directory, beside the admin kubeconfig.
pub fn pod_log(pod: &Pod) -> String {
    let kubeconfig = std::env::var("EDDY_TEST_KUBECONFIG").expect("the test servers' env");
    let path = std::path::Path::new(&kubeconfig)
        .parent()
        .unwrap()
        .join("node/pods")
        .join(pod.uid().unwrap_or_default())
        .join("logs/processor.log");
    std::fs::read_to_string(&path).unwrap_or_default()
}

/// `(status, reason, message)` of condition `type_`.
pub fn condition(job: &StreamJob, type_: &str) -> Option<(String, String, String)> {
    job.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Installs (or updates) the StreamJob CRD from `crds/streamjob.yaml` and
/// waits until it is served.
pub async fn install_crd(client: &Client) {
    let path = repo().join("crds/streamjob.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let crd: CustomResourceDefinition = serde_yaml_ng::from_str(&text).unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(
        "streamjobs.eddy.dev",
        &PatchParams::apply("eddy-tests").force(),
        &Patch::Apply(&crd),
    )
    .await
    .unwrap();
    eventually(
        "the CRD to be established",
        Duration::from_secs(30),
        || async {
            let crd = crds
                .get("streamjobs.eddy.dev")
                .await
                .map_err(|e| e.to_string())?;
            let established = crd
                .status
                .iter()
                .flat_map(|s| s.conditions.iter().flatten())
                .any(|c| c.type_ == "Established" && c.status == "True");
            established.then_some(()).ok_or("not yet".into())
        },
    )
    .await;
}

/// JSON merge of `over` into `base` (objects merged, the rest replaced).
pub fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o.clone(),
    }
}
