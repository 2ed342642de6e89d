"""The Deployment: replicas vs autoscaling, runtime env, probes, shutdown timing, model sources."""

from __future__ import annotations

import jmespath
import pytest

from chart.helm_template import one, render_chart

DEPLOYMENT = ["templates/deployment.yaml"]

pytestmark = pytest.mark.helm


def deployment(helm: str, values: dict | None = None) -> dict:
    return render_chart(values, show_only=DEPLOYMENT, helm=helm)[0]


def container(doc: dict, name: str = "model-server") -> dict:
    return jmespath.search(f"spec.template.spec.containers[?name=='{name}'] | [0]", doc)


def env(doc: dict) -> dict:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(doc)["env"]}


@pytest.mark.parametrize(
    ("values", "replicas"),
    [
        ({}, None),
        ({"autoscaling": {"enabled": False}}, 2),
        ({"autoscaling": {"enabled": False}, "replicaCount": 4}, 4),
        ({"autoscaling": {"enabled": False}, "keda": {"enabled": True}}, None),
    ],
)
def test_replicas_absent_while_an_autoscaler_owns_them(helm, values, replicas):
    assert deployment(helm, values)["spec"].get("replicas") == replicas


def test_selector_is_name_and_instance_and_labels_are_standard(helm):
    doc = deployment(helm)
    selector = {"app.kubernetes.io/name": "rmodelpack", "app.kubernetes.io/instance": "release"}
    assert doc["spec"]["selector"]["matchLabels"] == selector
    labels = doc["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= labels.items()
    assert labels["app.kubernetes.io/managed-by"] == "Helm"


def test_rollout_never_drops_below_the_desired_count(helm):
    strategy = deployment(helm)["spec"]["strategy"]
    assert strategy == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0},
    }


def test_workers_follow_the_cpu_request_unless_set(helm):
    from_request = env(deployment(helm))["RMP_WORKERS"]
    assert from_request == {
        "resourceFieldRef": {
            "containerName": "model-server",
            "resource": "requests.cpu",
            "divisor": "1",
        }
    }
    assert env(deployment(helm, {"runtime": {"workers": 3}}))["RMP_WORKERS"] == "3"


def test_runtime_settings_reach_the_runtime_env(helm):
    values = {
        "runtime": {
            "threads": 2,
            "timeoutSeconds": 12,
            "drainSeconds": 4,
            "port": 8000,
            "maxBodyBytes": 5242880,
        }
    }
    variables = env(deployment(helm, values))
    assert variables["RMP_THREADS"] == "2"
    assert variables["RMP_TIMEOUT_SECONDS"] == "12"
    assert variables["RMP_DRAIN_SECONDS"] == "4"
    assert variables["RMP_MAX_BODY_BYTES"] == "5242880"
    assert variables["RMP_TMPDIR"] == "/tmp"
    assert variables["RMP_PORT"] == "8000"
    assert "RMP_MODEL_PATH" not in variables  # the baked-in model needs no override


def test_batching_is_on_by_default_and_reaches_the_runtime_env(helm):
    defaults = env(deployment(helm))
    assert (defaults["RMP_BATCHING"], defaults["RMP_BATCH_MAX_ROWS"]) == ("true", "256")
    values = {"runtime": {"batching": {"enabled": False, "maxRows": 100000}}}
    variables = env(deployment(helm, values))
    assert (variables["RMP_BATCHING"], variables["RMP_BATCH_MAX_ROWS"]) == ("false", "100000")


def test_probes_hit_healthz_and_readyz_with_a_startup_budget(helm):
    main = container(deployment(helm))
    assert main["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    startup = main["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300
    assert "enabled" not in startup and "path" not in startup


def test_a_probe_can_be_switched_off(helm):
    assert "startupProbe" not in container(deployment(helm, {"startupProbe": {"enabled": False}}))


def test_grace_period_covers_prestop_drain_and_the_longest_request(helm):
    values = {"preStopSleepSeconds": 3, "runtime": {"drainSeconds": 7, "timeoutSeconds": 40}}
    doc = deployment(helm, values)
    assert container(doc)["lifecycle"] == {"preStop": {"sleep": {"seconds": 3}}}
    assert doc["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 3 + 7 + 40 + 10
    explicit = deployment(helm, {"terminationGracePeriodSeconds": 120})
    assert explicit["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 120


def test_config_checksum_rolls_pods_when_the_model_changes(helm):
    def checksum(sha: str) -> str:
        doc = deployment(helm, {"model": {"sha256": sha}})
        return doc["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    assert checksum("a" * 64) != checksum("b" * 64)
    assert checksum("a" * 64) == checksum("a" * 64)


def test_image_digest_wins_over_the_tag(helm):
    assert container(deployment(helm, {"image": {"tag": "1.2.3"}}))["image"].endswith(":1.2.3")
    digest = "sha256:" + "c" * 64
    image = container(deployment(helm, {"image": {"tag": "1.2.3", "digest": digest}}))["image"]
    assert image == f"127.0.0.1:5000/models/example@{digest}"


def test_spread_over_zones_and_nodes_by_default(helm):
    constraints = deployment(helm)["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert [c["topologyKey"] for c in constraints] == [
        "topology.kubernetes.io/zone",
        "kubernetes.io/hostname",
    ]
    assert all(c["whenUnsatisfiable"] == "ScheduleAnyway" for c in constraints)


def test_extension_points_are_passed_through(scenario_docs):
    doc = one(scenario_docs("everything"), "Deployment")
    pod = doc["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "acr-pull"}]
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["tolerations"][0]["key"] == "workload"
    assert "nodeAffinity" in pod["affinity"]
    assert pod["priorityClassName"] == "model-serving"
    assert {"name": "TZ", "value": "UTC"} in container(doc)["env"]
    assert {"name": "lookup-tables", "configMap": {"name": "boston-lookup"}} in pod["volumes"]
    assert doc["spec"]["template"]["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    assert doc["metadata"]["labels"]["team"] == "data-science"
    assert doc["metadata"]["annotations"] == {"owner": "ml-platform"}


def test_url_source_downloads_into_an_emptydir_before_the_server_starts(scenario_docs):
    doc = one(scenario_docs("model-url"), "Deployment")
    pod = doc["spec"]["template"]["spec"]
    fetch = pod["initContainers"][0]
    assert fetch["image"] == container(doc)["image"]
    fetch_env = {e["name"]: e for e in fetch["env"]}
    assert fetch_env["MODEL_URL"]["valueFrom"] == {
        "secretKeyRef": {"name": "boston-model-url", "key": "url"}
    }
    assert (
        fetch_env["MODEL_SHA256"]["value"]
        == "5e884898" + "da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"
    )
    model_volume = jmespath.search("volumes[?name=='model'] | [0]", pod)
    assert "emptyDir" in model_volume
    assert env(doc)["RMP_MODEL_PATH"] == "/var/lib/rmodelpack/model/model.rds"
    mount = jmespath.search("volumeMounts[?name=='model'] | [0]", container(doc))
    assert mount == {"name": "model", "mountPath": "/var/lib/rmodelpack/model", "readOnly": True}


def test_pvc_source_mounts_the_claim_read_only(scenario_docs):
    doc = one(scenario_docs("model-pvc"), "Deployment")
    pod = doc["spec"]["template"]["spec"]
    assert "initContainers" not in pod
    assert jmespath.search("volumes[?name=='model'] | [0]", pod) == {
        "name": "model",
        "persistentVolumeClaim": {"claimName": "models", "readOnly": True},
    }
    assert env(doc)["RMP_MODEL_PATH"] == "/var/lib/rmodelpack/model/boston/model.rds"
