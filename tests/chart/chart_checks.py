"""Checks shared by the chart tests: Pod Security "restricted", Traefik/ingress-nginx/cert-manager
references, kubeconform reports. Scenario tests and rendered-example tests share them."""

from __future__ import annotations

import jmespath

from chart.helm_template import NAMESPACE, by_kind

MIDDLEWARES_ANNOTATION = "traefik.ingress.kubernetes.io/router.middlewares"
TLS_OPTIONS_ANNOTATION = "traefik.ingress.kubernetes.io/router.tls.options"
NGINX = "nginx.ingress.kubernetes.io/"
TRAEFIK_KINDS = {"IngressRoute", "Middleware", "TLSOption"}
RESTRICTED_VOLUME_TYPES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
    "projected", "secret",
}  # fmt: skip


def restricted_violations(pod: dict) -> list[str]:
    """The Pod Security Standards "restricted" profile (v1.32), checked field by field."""
    problems = []
    pod_ctx = pod.get("securityContext", {})
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(flag):
            problems.append(flag)
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUME_TYPES:
            problems.append(f"volume {volume['name']} is {kinds}")
    for container in pod.get("initContainers", []) + pod["containers"]:
        name = container["name"]
        ctx = container.get("securityContext", {})
        if ctx.get("privileged"):
            problems.append(f"{name}: privileged")
        if ctx.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation is not false")
        if "ALL" not in ctx.get("capabilities", {}).get("drop", []):
            problems.append(f"{name}: capabilities.drop lacks ALL")
        if set(ctx.get("capabilities", {}).get("add", [])) - {"NET_BIND_SERVICE"}:
            problems.append(f"{name}: adds capabilities")
        if not ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot")):
            problems.append(f"{name}: runAsNonRoot not set")
        if ctx.get("runAsUser", pod_ctx.get("runAsUser")) == 0:
            problems.append(f"{name}: runAsUser 0")
        seccomp = ctx.get("seccompProfile", pod_ctx.get("seccompProfile", {})).get("type")
        if seccomp not in {"RuntimeDefault", "Localhost"}:
            problems.append(f"{name}: seccomp {seccomp}")
        if any(port.get("hostPort") for port in container.get("ports", [])):
            problems.append(f"{name}: hostPort")
    return problems


def hardening_gaps(pod: dict) -> list[str]:
    """Beyond "restricted": read-only root with a writable /tmp, and no API token."""
    problems = []
    if pod.get("automountServiceAccountToken") is not False:
        problems.append("automountServiceAccountToken is not false")
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for container in pod.get("initContainers", []) + pod["containers"]:
        if container["securityContext"].get("readOnlyRootFilesystem") is not True:
            problems.append(f"{container['name']}: root filesystem is writable")
        tmp = [m for m in container.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
        if not tmp or "emptyDir" not in volumes[tmp[0]["name"]]:
            problems.append(f"{container['name']}: no emptyDir at /tmp")
    return problems


def crd_refs(annotation: str) -> list[str]:
    """'<ns>-<name>@kubernetescrd,…' → names, checking the namespace prefix of each."""
    names = []
    for ref in filter(None, annotation.split(",")):
        assert ref.endswith("@kubernetescrd"), ref
        qualified = ref.removesuffix("@kubernetescrd")
        assert qualified.startswith(f"{NAMESPACE}-"), ref
        names.append(qualified.removeprefix(f"{NAMESPACE}-"))
    return names


def assert_router_references_resolve(docs: list[dict]) -> None:
    """Every Middleware and TLSOption a router names is in the render, and nothing else is."""
    middlewares = {m["metadata"]["name"] for m in by_kind(docs, "Middleware")}
    tls_options = {t["metadata"]["name"] for t in by_kind(docs, "TLSOption")}
    referenced_middlewares, referenced_options = set(), set()
    for ingress in by_kind(docs, "Ingress"):
        annotations = ingress["metadata"].get("annotations", {})
        referenced_middlewares |= set(crd_refs(annotations.get(MIDDLEWARES_ANNOTATION, "")))
        referenced_options |= set(crd_refs(annotations.get(TLS_OPTIONS_ANNOTATION, "")))
    for route in by_kind(docs, "IngressRoute"):
        referenced_middlewares |= set(jmespath.search("spec.routes[].middlewares[].name", route))
        referenced_options |= {jmespath.search("spec.tls.options.name", route)} - {None}
    assert referenced_middlewares <= middlewares
    assert referenced_options <= tls_options
    assert middlewares == referenced_middlewares
    assert tls_options == referenced_options


def assert_certificate_secret_is_served(docs: list[dict]) -> None:
    """Each Certificate writes the Secret an Ingress/IngressRoute serves TLS from."""
    served = set(jmespath.search("[?kind=='Ingress'].spec.tls[].secretName", docs))
    served |= set(jmespath.search("[?kind=='IngressRoute'].spec.tls.secretName", docs))
    certificates = by_kind(docs, "Certificate")
    if certificates:
        assert served == {c["spec"]["secretName"] for c in certificates}


def auth_secret_references(docs: list[dict]) -> list[tuple[str, str]]:
    """(Secret name, htpasswd key) for every basic-auth Secret a router names: ingress-nginx reads
    the key `auth` (auth-secret-type auth-file), Traefik's basicAuth middleware the key `users`."""
    references = []
    for ingress in by_kind(docs, "Ingress"):
        annotations = ingress["metadata"].get("annotations", {})
        if name := annotations.get(f"{NGINX}auth-secret"):
            assert annotations[f"{NGINX}auth-type"] == "basic"
            assert annotations.get(f"{NGINX}auth-secret-type", "auth-file") == "auth-file"
            references.append((name, "auth"))
    for middleware in by_kind(docs, "Middleware"):
        if basic := middleware["spec"].get("basicAuth"):
            references.append((basic["secret"], "users"))
    return references


def assert_auth_secrets_resolve(docs: list[dict], existing: set[str] = frozenset()) -> None:
    """Every auth Secret a router names is rendered holding exactly the key its controller reads,
    unless it is an existing Secret the values point at (made outside the chart)."""
    secrets = {s["metadata"]["name"]: s for s in by_kind(docs, "Secret")}
    for name, key in auth_secret_references(docs):
        if name in existing:
            assert name not in secrets, f"{name} is an existing Secret but the chart renders it"
            continue
        assert name in secrets, f"auth Secret {name} is not in the render"
        assert list(secrets[name]["data"]) == [key], (name, list(secrets[name]["data"]))


def assert_one_flavor(docs: list[dict]) -> None:
    """A render routes through Traefik or ingress-nginx, never a mix of both."""
    annotations = [
        key
        for ingress in by_kind(docs, "Ingress")
        for key in ingress["metadata"].get("annotations", {})
    ]
    nginx = any(key.startswith(NGINX) for key in annotations)
    traefik = any(key.startswith("traefik.") for key in annotations) or any(
        doc["kind"] in TRAEFIK_KINDS for doc in docs
    )
    assert not (nginx and traefik)
    classes = {ingress["spec"]["ingressClassName"] for ingress in by_kind(docs, "Ingress")}
    assert "traefik" not in classes if nginx else "nginx" not in classes


def assert_all_valid(report: dict, manifests: str) -> None:
    summary = report["summary"]
    problems = [r for r in report["resources"] if r["status"] != "statusValid"]
    assert problems == [], problems
    assert summary["invalid"] == summary["errors"] == summary["skipped"] == 0
    assert summary["valid"] == manifests.count("\nkind: ") + manifests.startswith("kind: ")
    assert report["returncode"] == 0
