"""Pod Security "restricted" on every pod template, and no plaintext password in any render."""

from __future__ import annotations

import base64

import bcrypt
import pytest

from chart.chart_checks import hardening_gaps, restricted_violations
from chart.helm_template import (
    SCENARIOS,
    HelmFailedError,
    one,
    parse_docs,
    pod_specs,
    render_chart,
    render_text,
)

# The passwords whose bcrypt hashes chart/ci/everything-values.yaml and nginx-values.yaml hold.
SCENARIO_PASSWORDS = [
    "ci-alice-Example-Passw0rd",
    "ci-bob-Example-Passw0rd",
    "ci-carol-Example-Passw0rd",
]
pytestmark = pytest.mark.helm


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_pod_template_passes_restricted(scenario_docs, scenario):
    specs = pod_specs(scenario_docs(scenario))
    assert {name.split("/")[0] for name, _ in specs} >= {"Deployment", "Pod"}
    for name, pod in specs:
        assert restricted_violations(pod) == [], name
        assert hardening_gaps(pod) == [], name


def test_restricted_check_catches_a_weakened_context(helm):
    """Control: the checker above fails when a value weakens the pod (past the schema, which
    refuses such values: test_hostile_values.py)."""
    text = render_text(
        {
            "containerSecurityContext": {
                "allowPrivilegeEscalation": True,
                "capabilities": {"drop": []},
            }
        },
        show_only=["templates/deployment.yaml"],
        helm=helm,
        extra_args=["--skip-schema-validation"],
    )
    docs = parse_docs(text)
    assert restricted_violations(pod_specs(docs)[0][1]) == [
        "model-server: allowPrivilegeEscalation is not false",
        "model-server: capabilities.drop lacks ALL",
    ]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_no_plaintext_password_in_any_render(scenario_text, scenario):
    text = scenario_text(scenario)
    for password in SCENARIO_PASSWORDS:
        assert password not in text
        assert base64.b64encode(password.encode()).decode() not in text


def test_auth_secret_holds_exactly_the_given_hashes(helm):
    password = "fresh-Test-Password-42"
    line = f"carol:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()}"
    values = {"auth": {"enabled": True, "users": [line]}}
    text = render_text(values, helm=helm)
    assert password not in text
    assert base64.b64encode(password.encode()).decode() not in text
    secret = one(parse_docs(text), "Secret")
    users = base64.b64decode(secret["data"]["users"]).decode()
    assert users == line
    assert bcrypt.checkpw(password.encode(), users.split(":", 1)[1].encode())


def test_a_plaintext_user_line_is_refused_without_echoing_it(helm):
    values = {"auth": {"enabled": True, "users": ["dave:hunter2-Plain"]}}
    with pytest.raises(HelmFailedError) as failure:
        render_chart(values, helm=helm)
    message = str(failure.value)
    assert "auth.users[0] is not an htpasswd line with a bcrypt hash" in message
    assert "hunter2-Plain" not in failure.value.stderr
