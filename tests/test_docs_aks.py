"""docs/aks.md is executable: every bash block parses, every command is checked, and the steps that
can run on this machine run for real.

Each bash block in the doc follows a `<!-- step: NAME -->` marker. Every command in a block is
checked by the tool it calls:
- `az`: the subcommand and its flags (and a few values) against AZ_REFERENCE, taken from the Azure
  CLI sources that generate the reference docs (see the doc's "Checked against").
- `helm`, `kubectl`, `curl`: every flag must appear in the pinned tool's own `--help`.
- `rmodelpack`: the project's argparse parser must accept the arguments.
- `export`, `cp`, `sed`, `cat`: allowed only in steps that this test runs.

Steps run for real, with these substitutions for Azure:
- ACR → the local registry: ACR_LOGIN_SERVER=127.0.0.1:5000 (what `az acr show` prints on Azure).
- AKS → the offline control plane of testbed/cluster.sh (kube-apiserver + kwok). Namespace
  `models` → a fresh namespace per run, deleted afterwards. `kubectl apply` of the
  ClusterIssuers gets `--dry-run=server`, so the shared cluster keeps no cluster-scoped objects.
- https://$HOST → the pushed image, run hardened in docker on 127.0.0.1 over plain HTTP. TLS and
  basic auth live in Traefik; tests/chart covers those objects.
Not run here (flags checked only): `az` (no Azure), the Traefik/cert-manager installs and
`helm repo` (chart repositories are on the internet), `kubectl wait` for certificates (no
cert-manager controller), `kubectl logs` (kwok has no kubelet), and the DNS lookup (no Traefik).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest
import yaml
from chart.k8s_schemas import run_kubeconform, shared_crds_dir, write_kubeconform_copy
from cluster.kube import CLUSTER_BINARIES, CLUSTER_SCRIPT
from cluster.lifecycle import CLUSTER, in_use
from conftest import BIN_DIR, EXAMPLES_DIR, REGISTRY, REPO_ROOT, require_tool
from image.containers import hardened_container, wait_ready

DOC = REPO_ROOT / "docs" / "aks.md"
STEP_BLOCK = re.compile(r"<!-- step: ([a-z-]+) -->\n```bash\n(.*?)\n```", re.S)
ANY_BASH_BLOCK = re.compile(r"```bash\n(.*?)\n```", re.S)
KUBE_VERSION = "1.35.0"
DOC_NAMESPACE = "models"

# Steps that run here (see the module docstring); every other step is checked, not run.
RUN_STEPS = {
    "variables", "issuers", "model", "deploy", "production", "call", "watch", "monitoring",
}  # fmt: skip
NOT_RUN_STEPS = {
    "azure": "needs an Azure subscription",
    "gpu": "needs an Azure subscription",
    "container-insights": "needs an Azure subscription",
    "cleanup": "needs an Azure subscription",
    "ingress": "the Traefik and cert-manager chart repositories are on the internet",
    "dns": "no Traefik Service (and no cloud load balancer) on the offline cluster",
    "certificate": "no cert-manager controller on the offline cluster",
    "logs": "kwok fakes pods without a kubelet, so there are no logs to read",
}
SHELL_UTILITIES = {"export", "cp", "sed", "cat"}

# --- the Azure CLI reference -----------------------------------------------------------------
# Source: Azure/azure-cli, the argument registrations that generate
# https://learn.microsoft.com/cli/azure/ (read 2026-11-25):
#   acs/_params.py at 0088c878b2ee9514b99eda3da2912257494cb3ee ('aks', 'aks create', 'aks update',
#     'aks get-credentials', 'aks enable-addons', 'aks nodepool', 'aks nodepool add'; the value
#     lists network_plugins, network_plugin_modes, network_dataplanes);
#   acr/_params.py ('acr': --name/-n, --sku choices MANAGED_REGISTRY_SKU; 'acr login':
#     --expose-token, --resource-group deprecated and hidden);
#   resource/_params.py ('group create' --name/--resource-group/-n/-g; 'group delete').
# Arguments without a registration take their flag from the Python parameter name
# (resource_group_name → --resource-group/-g, location → --location/-l, yes → --yes/-y).
# Only flags that were read in those sources are listed; add a flag here with its source first.
AZ_GLOBAL_FLAGS = frozenset({"--output", "-o", "--query", "--only-show-errors", "--subscription"})
RESOURCE_GROUP = ("--resource-group", "-g")
NAME = ("--name", "-n")


@dataclass(frozen=True)
class AzCommand:
    flags: frozenset[str]
    required: tuple[tuple[str, ...], ...] = ()
    choices: Mapping[str, frozenset[str]] = field(default_factory=dict)


def az(flags: str, required: tuple[tuple[str, ...], ...] = (), **choices: str) -> AzCommand:
    values = {f"--{k.replace('_', '-')}": frozenset(v.split()) for k, v in choices.items()}
    return AzCommand(frozenset(flags.split()), required, values)


AZ_REFERENCE: dict[str, AzCommand] = {
    "login": az(""),
    "group create": az(
        "--name -n --resource-group -g --location -l --tags --managed-by",
        (NAME + RESOURCE_GROUP, ("--location", "-l")),
    ),
    "group delete": az(
        "--name -n --resource-group -g --yes -y --no-wait", (NAME + RESOURCE_GROUP,)
    ),
    "acr create": az(
        "--resource-group -g --name -n --sku --location -l --admin-enabled --tags",
        (RESOURCE_GROUP, NAME, ("--sku",)),
        sku="Basic Standard Premium",
    ),
    "acr login": az("--name -n --expose-token -t --username -u --password -p", (NAME,)),
    "acr show": az("--name -n --resource-group -g", (NAME,)),
    "aks create": az(
        "--resource-group -g --name -n --location -l --kubernetes-version -k --tags"
        " --node-count -c --node-vm-size -s --zones -z --nodepool-name --max-pods -m"
        " --enable-cluster-autoscaler --min-count --max-count --cluster-autoscaler-profile"
        " --attach-acr --generate-ssh-keys --ssh-key-value --no-ssh-key -x"
        " --network-plugin --network-plugin-mode --network-dataplane --network-policy --pod-cidr"
        " --enable-azure-monitor-metrics --azure-monitor-workspace-resource-id"
        " --grafana-resource-id --enable-addons -a --workspace-resource-id"
        " --enable-oidc-issuer --enable-workload-identity --tier --yes -y",
        (RESOURCE_GROUP, NAME),
        network_plugin="azure kubenet none",
        network_plugin_mode="overlay",
        network_dataplane="azure cilium",
        network_policy="azure calico cilium none",
        tier="free standard premium",
    ),
    "aks update": az(
        "--resource-group -g --name -n --attach-acr --detach-acr"
        " --enable-cluster-autoscaler -e --disable-cluster-autoscaler -d"
        " --update-cluster-autoscaler -u --min-count --max-count"
        " --enable-azure-monitor-metrics --disable-azure-monitor-metrics",
        (RESOURCE_GROUP, NAME),
    ),
    "aks get-credentials": az(
        "--resource-group -g --name -n --admin -a --context --file -f --public-fqdn --format",
        (RESOURCE_GROUP, NAME),
    ),
    "aks enable-addons": az(
        "--resource-group -g --name -n --addons -a --workspace-resource-id",
        (RESOURCE_GROUP, NAME, ("--addons", "-a")),
        addons="monitoring azure-keyvault-secrets-provider",
    ),
    "aks nodepool add": az(
        "--resource-group -g --cluster-name --name -n --nodepool-name --node-vm-size -s"
        " --node-count -c --node-taints --labels --mode --zones -z --max-pods -m"
        " --enable-cluster-autoscaler -e --min-count --max-count --os-sku --priority",
        (RESOURCE_GROUP, ("--cluster-name",), ("--name", "-n", "--nodepool-name")),
    ),
}


def az_problems(argv: list[str]) -> list[str]:
    """What is wrong with an `az ...` command according to AZ_REFERENCE (empty = fine)."""
    words = [w for w in argv[1:] if not w.startswith("-")]
    for length in (3, 2, 1):
        subcommand = " ".join(words[:length])
        if subcommand in AZ_REFERENCE and argv[1 : 1 + length] == words[:length]:
            break
    else:
        return [f"`az {' '.join(words[:3])}` is not in AZ_REFERENCE"]
    reference = AZ_REFERENCE[subcommand]
    flags = flag_values(argv[1 + length :])
    problems = [
        f"az {subcommand}: unknown flag {flag}"
        for flag in flags
        if flag not in reference.flags | AZ_GLOBAL_FLAGS
    ]
    problems += [
        f"az {subcommand}: needs {aliases[0]}"
        for aliases in reference.required
        if not set(aliases) & set(flags)
    ]
    for flag, allowed in reference.choices.items():
        for value in flags.get(flag, []):
            for item in value.split(","):
                if item not in allowed:
                    problems.append(
                        f"az {subcommand}: {flag} {item} is not one of {sorted(allowed)}"
                    )
    return problems


def flag_values(args: list[str]) -> dict[str, list[str]]:
    """flag → the words after it up to the next flag (`--zones 1 2 3` → ["1", "2", "3"])."""
    flags: dict[str, list[str]] = {}
    current: list[str] = []
    for arg in args:
        if arg.startswith("-") and len(arg) > 1:
            name, _, value = arg.partition("=")
            current = flags.setdefault(name, [])
            if value:
                current.append(value)
        else:
            current.append(arg)
    return flags


# --- the doc's commands ----------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    step: str
    argv: list[str]

    @property
    def program(self) -> str:
        return self.argv[0]

    def __str__(self) -> str:
        return f"[{self.step}] {shlex.join(self.argv)}"


@cache
def doc_text() -> str:
    return DOC.read_text(encoding="utf-8")


def doc_steps() -> dict[str, str]:
    steps: dict[str, str] = {}
    for name, body in STEP_BLOCK.findall(doc_text()):
        assert name not in steps, f"step {name} appears twice in {DOC.name}"
        steps[name] = body
    return steps


def split_commands(block: str) -> list[list[str]]:
    """The block's commands as argv lists: continuations joined, comments and heredoc bodies
    dropped, `VAR=$(cmd ...)` reduced to `cmd ...`."""
    lines = block.splitlines()
    commands, index = [], 0
    while index < len(lines):
        logical = lines[index]
        while logical.endswith("\\"):
            index += 1
            logical = logical[:-1] + " " + lines[index]
        heredoc = re.search(r"<<-?'?(\w+)'?", logical)
        if heredoc:
            while lines[index].strip() != heredoc.group(1):
                index += 1
            logical = logical[: heredoc.start()]
        index += 1
        argv = shlex.split(logical, comments=True)
        if argv:
            commands.append(unwrap_substitution(argv))
    return commands


def unwrap_substitution(argv: list[str]) -> list[str]:
    match = re.fullmatch(r"\w+=\$\((.*)", argv[0])
    if not match:
        return argv
    assert argv[-1].endswith(")"), f"unclosed $( in {argv}"
    return [match.group(1), *argv[1:-1], argv[-1][:-1]]


def doc_commands() -> list[Command]:
    return [
        Command(step, argv) for step, block in doc_steps().items() for argv in split_commands(block)
    ]


# --- flag checks against the real tools ------------------------------------------------------


@cache
def help_text(tool: str, *args: str) -> tuple[int, str]:
    """(exit status, help) for the subcommand that `args` select: cobra (helm, kubectl) parses the
    whole command, skips flag values, rejects unknown flags and prints the subcommand's help."""
    command = [tool, "--help", "all"] if tool == "curl" else [tool, *args, "--help"]
    proc = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)
    if tool == "kubectl":  # kubectl lists its global flags apart
        return proc.returncode, proc.stdout + proc.stderr + kubectl_global_flags()
    return proc.returncode, proc.stdout + proc.stderr


@cache
def kubectl_global_flags() -> str:
    return subprocess.run(
        ["kubectl", "options"], capture_output=True, text=True, check=True, timeout=60
    ).stdout


def flags_missing_from_help(argv: list[str]) -> list[str]:
    status, text = help_text(argv[0], *argv[1:])
    if status != 0:
        return [f"`{shlex.join(argv)} --help` fails: {text.splitlines()[0]}"]
    missing = []
    for flag in flag_values(argv[1:]):
        if not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text):
            missing.append(f"{argv[0]}: {flag} is not in `{argv[0]} ... --help`")
    return missing


def rmodelpack_problems(argv: list[str]) -> list[str]:
    from rmodelpack.cli import build_parser

    try:
        build_parser().parse_args(argv[1:])
    except SystemExit as exc:
        return [f"rmodelpack's parser rejects {shlex.join(argv)} (exit {exc.code})"]
    return []


def command_problems(command: Command) -> list[str]:
    program = command.program
    if program == "az":
        return az_problems(command.argv)
    if program in ("helm", "kubectl", "curl"):
        require_tool(program)
        return flags_missing_from_help(command.argv)
    if program == "rmodelpack":
        return rmodelpack_problems(command.argv)
    if program in SHELL_UTILITIES:
        if command.step not in RUN_STEPS:
            return [f"{program} in step {command.step}, which this test does not run"]
        return []
    return [f"no check knows `{program}`; add one to tests/test_docs_aks.py"]


# --- static checks ---------------------------------------------------------------------------


def test_every_bash_block_is_a_named_step_with_a_known_check():
    assert len(ANY_BASH_BLOCK.findall(doc_text())) == len(doc_steps())
    assert set(doc_steps()) == RUN_STEPS | set(NOT_RUN_STEPS)


@pytest.mark.parametrize("step", sorted(RUN_STEPS | set(NOT_RUN_STEPS)))
def test_bash_block_parses(step, tmp_path):
    script = tmp_path / f"{step}.sh"
    script.write_text(doc_steps()[step])
    proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_every_command_passes_its_check():
    problems = [f"{command}: {p}" for command in doc_commands() for p in command_problems(command)]
    assert problems == []


def test_the_az_check_rejects_a_renamed_flag_and_a_bad_value():
    """Control: the table really constrains the doc (a renamed flag or a wrong SKU fails)."""
    good = [
        "az",
        "aks",
        "create",
        "-g",
        "rg",
        "-n",
        "aks",
        "--attach-acr",
        "r",
        "--node-count",
        "2",
    ]
    assert az_problems(good) == []
    renamed = [("--attach-registry" if a == "--attach-acr" else a) for a in good]
    assert az_problems(renamed) == ["az aks create: unknown flag --attach-registry"]
    assert az_problems(["az", "acr", "create", "-g", "rg", "-n", "r", "--sku", "Gold"]) == [
        "az acr create: --sku Gold is not one of ['Basic', 'Premium', 'Standard']"
    ]
    assert az_problems(["az", "aks", "get-credentials", "--name", "aks"]) == [
        "az aks get-credentials: needs --resource-group"
    ]


def test_the_tool_check_rejects_a_flag_the_tool_does_not_have():
    require_tool("helm")
    require_tool("kubectl")
    for argv in (
        ["helm", "upgrade", "--install", "x", "c", "--atomicc"],
        ["kubectl", "--namespace", "m", "get", "hpa", "--label-column", "x"],
        ["curl", "--fail-with-bodies", "https://example.com"],
    ):
        problems = flags_missing_from_help(argv)
        assert len(problems) == 1 and argv[-2 if argv[0] != "curl" else 1] in problems[0]
    assert rmodelpack_problems(["rmodelpack", "deploy", "boston", "--namespaces", "m"]) != []


def test_the_doc_covers_the_issue_checklist():
    az_commands = {" ".join(c.argv[:3]) for c in doc_commands() if c.program == "az"}
    assert {"az group create", "az acr create", "az aks create", "az aks get-credentials"} <= (
        az_commands
    )
    create = next(c.argv for c in doc_commands() if c.argv[:3] == ["az", "aks", "create"])
    for flag in ("--attach-acr", "--enable-cluster-autoscaler", "--min-count", "--max-count"):
        assert flag in create
    programs = [shlex.join(c.argv) for c in doc_commands()]
    assert any(p.startswith("rmodelpack build boston --push") for p in programs)
    assert any(p.startswith("rmodelpack deploy boston") for p in programs)
    assert any(c.program == "curl" and "--user" in c.argv for c in doc_commands())


def test_chart_pins_match_the_crds_the_chart_is_validated_against():
    readme = (shared_crds_dir().parent / "README.md").read_text()
    traefik_chart = re.search(r"Version: chart `([\d.]+)`", readme).group(1)
    cert_manager = re.search(r"Version: cert-manager `(v[\d.]+)`", readme).group(1)
    charts = ("traefik/traefik", "jetstack/cert-manager")
    installs = {
        chart: flag_values(c.argv) for c in commands_of("ingress", "helm") for chart in charts
        if chart in c.argv
    }  # fmt: skip
    assert installs["traefik/traefik"]["--version"] == [traefik_chart]
    assert installs["jetstack/cert-manager"]["--version"] == [cert_manager]
    assert "crds.enabled=true" in installs["jetstack/cert-manager"]["--set"]
    repos = {c.argv[3]: c.argv[4] for c in commands_of("ingress", "helm") if c.argv[1] == "repo"
             and c.argv[2] == "add"}  # fmt: skip
    assert repos == {"traefik": "https://traefik.github.io/charts",
                     "jetstack": "https://charts.jetstack.io"}  # fmt: skip
    # The chart's defaults expect Traefik as release `traefik` in namespace `traefik`.
    chart_values = yaml.safe_load((REPO_ROOT / "chart" / "values.yaml").read_text())
    traefik = next(c.argv for c in commands_of("ingress", "helm") if "traefik/traefik" in c.argv)
    assert flag_values(traefik)["--namespace"] == ["traefik"]
    assert chart_values["tests"]["ingress"]["service"] in ("", "traefik.traefik.svc.cluster.local")


def commands_of(step: str, program: str) -> list[Command]:
    return [c for c in doc_commands() if c.step == step and c.program == program]


def test_metrics_table_lists_what_the_runtime_exports():
    source = (REPO_ROOT / "rmodelpack" / "runtime" / "metrics.R").read_text()
    exported = set(re.findall(r'"(rmp_[a-z_]+)"', source))
    assert documented_metrics() == exported


def documented_metrics() -> set[str]:
    return set(re.findall(r"^\| `(rmp_[a-z_]+)", doc_text(), re.M))


# --- running the steps -----------------------------------------------------------------------


@dataclass
class Workspace:
    """A scratch checkout root: `examples` and `chart` link to the repository's."""

    root: Path
    env: dict[str, str]

    def run(self, script: str, timeout: float = 900) -> str:
        proc = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
        assert proc.returncode == 0, (
            f"{script}\nexit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
        return proc.stdout


def substitute(block: str, replacements: Mapping[str, str]) -> str:
    """Apply the documented substitutions; each must match, so doc drift fails loudly."""
    for old, new in replacements.items():
        assert old in block, f"substitution target {old!r} is gone from the doc; update the test"
        block = block.replace(old, new)
    return block


def variables_from_doc(base_env: dict[str, str]) -> dict[str, str]:
    script = doc_steps()["variables"] + "\nenv -0"
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        env=base_env,
        capture_output=True,
        text=True,
        check=True,
    )
    pairs = (item.split("=", 1) for item in proc.stdout.split("\0") if "=" in item)
    return dict(pairs)


def make_workspace(root: Path, **extra: str) -> Workspace:
    for name in ("examples", "chart"):
        (root / name).symlink_to(REPO_ROOT / name)
    path = f"{BIN_DIR}{os.pathsep}{REPO_ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}"
    env = variables_from_doc({**os.environ, "PATH": path})
    env.update({"ACR_LOGIN_SERVER": REGISTRY, **extra})
    return Workspace(root, env)


def test_variables_block_sets_what_the_later_steps_read(tmp_path):
    require_tool("openssl")
    env = make_workspace(tmp_path).env
    read_later = set(re.findall(r"\$\{?([A-Z][A-Z_]+)", doc_text())) - {"RANDOM"}
    assert read_later - {"ACR_LOGIN_SERVER"} <= set(env), read_later - set(env)
    assert re.fullmatch(r"rmodelpack\d+", env["ACR_NAME"])
    assert re.fullmatch(r"[0-9a-f]{32}", env["BOSTON_SCORER_PASSWORD"])


def test_model_step_points_the_copy_at_acr_and_the_host(tmp_path):
    """The sed lines rewrite the copy's image.repository and service.host (and nothing else)."""
    from rmodelpack.manifest import load_manifest

    workspace = make_workspace(tmp_path, ACR_LOGIN_SERVER="rmodelpack1234.azurecr.io")
    workspace.env["HOST"] = "scoring.contoso.test"
    prepare = doc_steps()["model"].split("rmodelpack validate")[0]
    workspace.run(prepare)
    manifest, _ = load_manifest(tmp_path / "boston")
    original, _ = load_manifest(EXAMPLES_DIR / "boston-rf")
    assert manifest.image.repository == "rmodelpack1234.azurecr.io/models/boston-rf"
    assert manifest.service.host == "scoring.contoso.test"
    unchanged = {"image", "service"}
    assert manifest.model_dump(exclude=unchanged) == original.model_dump(exclude=unchanged)


@pytest.fixture(scope="module")
def kubeconfig() -> Iterator[str]:
    """The offline control plane, taken down afterwards if this module started it."""
    for tool in ("openssl", "curl", "jq", "helm", "kubectl"):
        require_tool(tool)
    if not all((BIN_DIR / name).exists() for name in CLUSTER_BINARIES):
        require_tool("go")  # the first `up` builds the control plane from the Go module proxy
    with in_use(CLUSTER_SCRIPT, (CLUSTER,)) as exported:
        yield exported


@pytest.fixture(scope="module")
def k8s_schemas(tmp_path_factory) -> Path:
    require_tool("kubeconform")
    return write_kubeconform_copy(KUBE_VERSION, tmp_path_factory.mktemp("k8s-schemas"))


def assert_kubeconform_valid(k8s_schemas: Path, manifests: str) -> None:
    report = run_kubeconform(require_tool("kubeconform"), k8s_schemas, KUBE_VERSION, manifests)
    problems = [r for r in report["resources"] if r["status"] != "statusValid"]
    assert problems == [] and report["returncode"] == 0, problems
    summary = report["summary"]
    assert summary["invalid"] == summary["errors"] == summary["skipped"] == 0
    assert summary["valid"] == len([d for d in yaml.safe_load_all(manifests) if d])


def test_cluster_issuers_are_valid_cert_manager_objects(tmp_path, kubeconfig, k8s_schemas):
    workspace = make_workspace(tmp_path, KUBECONFIG=kubeconfig)
    workspace.run(
        substitute(
            doc_steps()["issuers"],
            {"kubectl apply -f": "kubectl apply --dry-run=server -f"},
        )
    )
    manifests = (tmp_path / "cluster-issuers.yaml").read_text()
    assert_kubeconform_valid(k8s_schemas, manifests)
    issuers = {d["metadata"]["name"]: d["spec"]["acme"] for d in yaml.safe_load_all(manifests)}
    assert issuers["letsencrypt-staging"]["server"] == (
        "https://acme-staging-v02.api.letsencrypt.org/directory"
    )
    assert issuers["letsencrypt-prod"]["server"] == "https://acme-v02.api.letsencrypt.org/directory"
    for acme in issuers.values():
        assert acme["email"] == workspace.env["ACME_EMAIL"]
        assert acme["solvers"] == [{"http01": {"ingress": {"ingressClassName": "traefik"}}}]
    # The example's manifest names the staging issuer that this step creates.
    example = yaml.safe_load((EXAMPLES_DIR / "boston-rf" / "rmodel.yaml").read_text())
    assert example["service"]["tls"]["issuer"]["name"] in issuers
    # Control: strict schemas reject a misspelt solver field.
    tampered = manifests.replace("ingressClassName", "ingressClassNmae", 1)
    report = run_kubeconform(require_tool("kubeconform"), k8s_schemas, KUBE_VERSION, tampered)
    assert report["summary"]["invalid"] == 1


@pytest.fixture
def namespace(kubeconfig) -> Iterator[str]:
    name = f"docs-aks-{uuid.uuid4().hex[:8]}"
    yield name
    subprocess.run(
        ["kubectl", "delete", "namespace", name, "--wait=false", "--ignore-not-found"],
        env={**os.environ, "KUBECONFIG": kubeconfig},
        capture_output=True,
        check=False,
    )


def in_namespace(block: str, namespace: str) -> str:
    return substitute(block, {f"--namespace {DOC_NAMESPACE}": f"--namespace {namespace}"})


@dataclass(frozen=True)
class Pushed:
    workspace: Workspace
    image: str  # repository@sha256:… as `rmodelpack build --push` printed it


@pytest.fixture(scope="module")
def pushed(tmp_path_factory, docker_client, registry) -> Pushed:
    """The doc's model step, run once: copy, sed, validate, build, push to the stand-in ACR."""
    workspace = make_workspace(tmp_path_factory.mktemp("aks-walkthrough"))
    output = workspace.run(doc_steps()["model"])
    image = re.search(r"^pushed (\S+@sha256:[0-9a-f]{64})$", output, re.M).group(1)
    assert image.startswith(f"{REGISTRY}/models/boston-rf@")
    return Pushed(workspace, image)


@contextmanager
def running(image: str, docker_client) -> Iterator[str]:
    """The image, run hardened as `rmodelpack serve --docker` runs it; yields its base URL."""
    with hardened_container(docker_client, image) as container:
        wait_ready(container)
        yield container.url


def container_logs(docker_client, base: str) -> str:
    port = base.rsplit(":", 1)[1]
    for container in docker_client.containers.list():
        bindings = container.attrs["HostConfig"]["PortBindings"] or {}
        if any(b["HostPort"] == port for b in bindings.get("8000/tcp", [])):
            return container.logs().decode()
    raise AssertionError(f"no container publishes {base}")


@pytest.mark.docker
@pytest.mark.registry
@pytest.mark.helm
@pytest.mark.slow
def test_walkthrough_runs_against_the_stand_ins(
    pushed, docker_client, kubeconfig, namespace, k8s_schemas
):
    """deploy → call → production → watch → monitoring, in the doc's order."""
    workspace = pushed.workspace
    workspace.env["KUBECONFIG"] = kubeconfig
    steps = doc_steps()
    kubectl = kubectl_in(workspace)

    offline = workspace.run(f"rmodelpack deploy boston --namespace {namespace} --dry-run")
    assert_kubeconform_valid(k8s_schemas, offline)
    assert_rendered_objects_match_doc(offline, workspace.env["HOST"])

    listed = workspace.run(in_namespace(steps["deploy"], namespace))
    for kind in ("deployment.apps", "horizontalpodautoscaler.autoscaling",
                 "poddisruptionbudget.policy", "certificate.cert-manager.io"):  # fmt: skip
        assert f"{kind}/boston-rf" in listed, listed

    predictions = call_the_model(workspace, steps["call"], pushed.image, docker_client)
    rows = json.loads((EXAMPLES_DIR / "boston-rf/requests/predict.json").read_text())["data"]
    assert len(predictions) == len(rows)
    assert all(isinstance(p, float) and 5 <= p <= 50 for p in predictions)  # medv range, $1000s

    production = substitute(
        in_namespace(steps["production"], namespace),
        {f"kubectl --namespace {namespace} wait certificate": "# not run: kubectl wait"},
    )
    workspace.run(production)
    certificates = kubectl("get", "certificate", "-n", namespace, "-o", "json")["items"]
    assert [c["spec"]["issuerRef"]["name"] for c in certificates] == ["letsencrypt-prod"]

    watched = workspace.run(in_namespace(steps["watch"], namespace))
    assert "horizontalpodautoscaler.autoscaling/boston-rf" in watched
    assert "Min replicas" in watched and "kwok-node-0" in watched

    selector = flag_values(commands_of("logs", "kubectl")[0].argv)["--selector"][0]
    pods = kubectl("get", "pods", "-n", namespace, "--selector", selector, "-o", "json")["items"]
    assert len(pods) >= 1 and all(p["metadata"]["name"].startswith("boston-rf") for p in pods)

    monitored = workspace.run(in_namespace(steps["monitoring"], namespace))
    assert "boston-rf" in monitored
    monitors = kubectl("get", "servicemonitors.azmonitoring.coreos.com", "-n", namespace, "-o",
                       "json")["items"]  # fmt: skip
    assert [m["apiVersion"] for m in monitors] == ["azmonitoring.coreos.com/v1"]
    assert monitors[0]["spec"]["endpoints"][0]["path"] == "/metrics"


def assert_rendered_objects_match_doc(manifests: str, host: str) -> None:
    """What steps 3, 7 and 9 say about the chart: Traefik's IngressClass and namespace, the
    scraper's namespace, the host, the staging issuer."""
    docs = [d for d in yaml.safe_load_all(manifests) if d]
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy",
            "Ingress", "Certificate", "Middleware", "TLSOption"} <= kinds  # fmt: skip
    ingresses = [d for d in docs if d["kind"] == "Ingress"]
    assert {i["spec"]["ingressClassName"] for i in ingresses} == {"traefik"}
    assert {r["host"] for i in ingresses for r in i["spec"]["rules"]} == {host}
    (policy,) = [d for d in docs if d["kind"] == "NetworkPolicy"]
    admitted = {
        peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for rule in policy["spec"]["ingress"]
        for peer in rule["from"]
        if "namespaceSelector" in peer
    }
    assert admitted == {"traefik", "kube-system"}
    (certificate,) = [d for d in docs if d["kind"] == "Certificate"]
    assert certificate["spec"]["issuerRef"] == {
        "kind": "ClusterIssuer", "name": "letsencrypt-staging", "group": "cert-manager.io"
    }  # fmt: skip
    (hpa,) = [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 10)


def kubectl_in(workspace: Workspace) -> Callable[..., dict]:
    def kubectl(*args: str) -> dict:
        proc = subprocess.run(
            ["kubectl", *args], env=workspace.env, capture_output=True, text=True, check=True
        )
        return json.loads(proc.stdout)

    return kubectl


def call_the_model(workspace: Workspace, call: str, image: str, docker_client) -> list[float]:
    """The doc's curl against the pushed image; the access log must carry the documented fields."""
    with running(image, docker_client) as base:
        answer = workspace.run(substitute(call, {'"https://$HOST/predict"': f'"{base}/predict"'}))
        # nginx buffers the access log and flushes it at least once a second
        deadline = time.monotonic() + 5
        while '"path":"/predict"' not in (logs := container_logs(docker_client, base)):
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert_access_log_matches_doc(logs)
    return json.loads(answer)["predictions"]


@pytest.mark.docker
@pytest.mark.registry
def test_fresh_pod_serves_the_documented_metrics(pushed, docker_client):
    """Prometheus scrapes a new pod before it has answered anything, then after a request."""
    import requests

    with running(pushed.image, docker_client) as base:
        first = requests.get(f"{base}/metrics", timeout=10)
        assert first.status_code == 200, f"first scrape of a fresh pod: {first.text}"
        assert metric_families(first.text) == documented_metrics()
        body = (EXAMPLES_DIR / "boston-rf/requests/predict.json").read_bytes()
        headers = {"Content-Type": "application/json"}
        requests.post(f"{base}/predict", data=body, headers=headers, timeout=30).raise_for_status()
        counted = re.compile(
            r'^rmp_requests_total\{route="/predict",method="POST",status="200"\} 1$', re.M
        )
        deadline = time.monotonic() + 10  # workers flush their counters shortly after a request
        while not counted.search(text := requests.get(f"{base}/metrics", timeout=10).text):
            assert time.monotonic() < deadline, text
            time.sleep(0.2)
        assert metric_families(text) == documented_metrics()


def metric_families(text: str) -> set[str]:
    return set(re.findall(r"^# TYPE (\S+) ", text, re.M))


def assert_access_log_matches_doc(logs: str) -> None:
    entries = [json.loads(line) for line in logs.splitlines() if line.startswith('{"time"')]
    predict = [e for e in entries if e["path"] == "/predict"]
    assert len(predict) == 1 and predict[0]["status"] == 200 and predict[0]["rows"] == 5, entries
    logs_section = doc_text().split("<!-- step: logs -->")[0].rsplit("## 9.", 1)[1]
    documented = set(re.findall(r"`([a-z_]+)`", logs_section.split("The fields are")[1]))
    assert set(predict[0]) == documented
