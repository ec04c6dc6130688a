//! `deploy/kubernetes/production-server.yaml` agrees with this crate: it parses, its probes use
//! the default paths on the server's port, its grace period covers the drain sequence, and its
//! probe timings make sense together.

use std::time::Duration;

use palisade_health::{
    DEFAULT_LIVE_PATH, DEFAULT_READY_PATH, DEFAULT_STARTUP_PATH, DEFAULT_TIMEOUT, DrainConfig,
};
use yaml_rust2::{Yaml, YamlLoader};

const MANIFEST: &str = "../../deploy/kubernetes/production-server.yaml";

fn documents() -> Vec<Yaml> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(MANIFEST);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    YamlLoader::load_from_str(&text).expect("valid YAML")
}

fn of_kind<'a>(docs: &'a [Yaml], kind: &str) -> &'a Yaml {
    let found: Vec<&Yaml> = docs
        .iter()
        .filter(|d| d["kind"].as_str() == Some(kind))
        .collect();
    assert_eq!(found.len(), 1, "exactly one {kind}");
    found[0]
}

fn int(yaml: &Yaml, what: &str) -> i64 {
    yaml.as_i64()
        .unwrap_or_else(|| panic!("{what} is not an integer: {yaml:?}"))
}

fn str_of<'a>(yaml: &'a Yaml, what: &str) -> &'a str {
    yaml.as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {yaml:?}"))
}

fn container(docs: &[Yaml]) -> &Yaml {
    let spec = &of_kind(docs, "Deployment")["spec"]["template"]["spec"];
    let containers = spec["containers"].as_vec().expect("containers");
    assert_eq!(containers.len(), 1);
    &containers[0]
}

/// Seconds a probe tolerates failure: `periodSeconds × failureThreshold`.
fn tolerance(probe: &Yaml, name: &str) -> i64 {
    int(&probe["periodSeconds"], name) * int(&probe["failureThreshold"], name)
}

#[test]
fn documents_are_a_deployment_and_a_service_with_matching_labels() {
    let docs = documents();
    assert_eq!(docs.len(), 2);
    let deployment = of_kind(&docs, "Deployment");
    assert_eq!(str_of(&deployment["apiVersion"], "apiVersion"), "apps/v1");
    let selector = &deployment["spec"]["selector"]["matchLabels"];
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    let selector = selector.as_hash().expect("matchLabels");
    assert!(!selector.is_empty());
    for (key, value) in selector {
        assert_eq!(
            &pod_labels[str_of(key, "label")],
            value,
            "pod labels match the selector"
        );
    }
    let service = of_kind(&docs, "Service");
    for (key, value) in service["spec"]["selector"]
        .as_hash()
        .expect("service selector")
    {
        assert_eq!(
            &pod_labels[str_of(key, "label")],
            value,
            "the Service selects the pods"
        );
    }
    assert!(
        int(&deployment["spec"]["replicas"], "replicas") >= 2,
        "a drain needs peers"
    );
}

#[test]
fn probes_use_the_default_paths_on_the_operations_port() {
    let docs = documents();
    let c = container(&docs);
    let ports = c["ports"].as_vec().expect("ports");
    let http = ports
        .iter()
        .find(|p| p["name"].as_str() == Some("http"))
        .expect("a port named http");
    assert_eq!(int(&http["containerPort"], "containerPort"), 8080);
    let ops = ports
        .iter()
        .find(|p| p["name"].as_str() == Some("ops"))
        .expect("a port named ops");
    assert_eq!(int(&ops["containerPort"], "containerPort"), 9090);
    for (probe, path) in [
        ("livenessProbe", DEFAULT_LIVE_PATH),
        ("readinessProbe", DEFAULT_READY_PATH),
        ("startupProbe", DEFAULT_STARTUP_PATH),
    ] {
        let get = &c[probe]["httpGet"];
        assert_eq!(str_of(&get["path"], probe), path, "{probe}");
        // Off the public port: a flood there must not fail the kubelet's probes.
        assert_eq!(str_of(&get["port"], probe), "ops", "{probe}");
    }
    let env = c["env"].as_vec().expect("env");
    let addr = env
        .iter()
        .find(|e| e["name"].as_str() == Some("PALISADE_ADDR"))
        .expect("PALISADE_ADDR set");
    assert_eq!(
        str_of(&addr["value"], "PALISADE_ADDR"),
        "0.0.0.0:8080",
        "the kubelet probes the pod IP, so the server listens on every interface, port 8080"
    );
    let ops_addr = env
        .iter()
        .find(|e| e["name"].as_str() == Some("PALISADE_OPS_ADDR"))
        .expect("PALISADE_OPS_ADDR set");
    assert_eq!(
        str_of(&ops_addr["value"], "PALISADE_OPS_ADDR"),
        "0.0.0.0:9090"
    );
    let service_port = &of_kind(&docs, "Service")["spec"]["ports"][0];
    assert_eq!(str_of(&service_port["targetPort"], "targetPort"), "http");
}

#[test]
fn the_grace_period_covers_the_drain_sequence() {
    let docs = documents();
    let spec = &of_kind(&docs, "Deployment")["spec"]["template"]["spec"];
    let grace = int(
        &spec["terminationGracePeriodSeconds"],
        "terminationGracePeriodSeconds",
    );
    let drain = DrainConfig::default();
    let needed = drain.min_termination_grace_period();
    assert_eq!(needed, Duration::from_secs(25));
    let grace = Duration::from_secs(u64::try_from(grace).expect("positive grace period"));
    assert!(
        grace >= needed + Duration::from_secs(2),
        "terminationGracePeriodSeconds {grace:?} must cover propagation delay + deadline \
         ({needed:?}) and leave a margin to exit"
    );
    assert!(
        container(&docs)["lifecycle"]["preStop"].is_badvalue(),
        "no preStop sleep: it would add to the server's own propagation delay"
    );
}

#[test]
fn probe_timings_fit_together() {
    let docs = documents();
    let c = container(&docs);
    let (live, ready, startup) = (
        &c["livenessProbe"],
        &c["readinessProbe"],
        &c["startupProbe"],
    );
    // On-demand checks (500 ms by default) must fit in the readiness timeout.
    let timeout_ms = int(&ready["timeoutSeconds"], "readiness timeoutSeconds") * 1000;
    assert!(u128::try_from(timeout_ms).unwrap() > DEFAULT_TIMEOUT.as_millis());
    // Liveness is the most patient: a busy pod leaves rotation long before it is restarted.
    assert!(tolerance(live, "liveness") > tolerance(ready, "readiness"));
    assert!(int(&live["timeoutSeconds"], "liveness timeoutSeconds") >= 1);
    // A slow start has a minute before the kubelet gives up.
    assert!(tolerance(startup, "startup") >= 60);
    assert_eq!(int(&ready["successThreshold"], "successThreshold"), 1);
}

#[test]
fn resources_are_requested() {
    let docs = documents();
    let resources = &container(&docs)["resources"];
    assert!(
        resources["requests"]["cpu"].as_str().is_some(),
        "cpu request"
    );
    assert!(
        resources["requests"]["memory"].as_str().is_some(),
        "memory request"
    );
    assert!(
        resources["limits"]["memory"].as_str().is_some(),
        "memory limit"
    );
    assert!(
        resources["limits"]["cpu"].is_badvalue(),
        "no CPU limit: throttling makes probes time out under load"
    );
}
