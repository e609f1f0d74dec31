"""infra/k8s and infra/grafana name only what exists: services, settings, ports, metrics, topics."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelbus.bus import data_topic
from modelbus.bus.security import ENV_PREFIX, SecuritySettings
from modelbus.config import KafkaSettings
from modelbus.trust import TrustSettings

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "infra" / "k8s"
SERVICES = ("registry", "trainer", "inference", "monitor", "deployer")


def _documents() -> list[dict[str, Any]]:
    documents = []
    for path in sorted(K8S.glob("*.yaml")):
        documents += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return documents


def _workloads() -> dict[str, dict[str, Any]]:
    return {
        doc["metadata"]["name"]: doc
        for doc in _documents()
        if doc["kind"] in ("Deployment", "StatefulSet")
    }


def _container(workload: dict[str, Any]) -> dict[str, Any]:
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    return container


def _env_names(settings_class: type, prefix: str) -> set[str]:
    names = set()
    for name, info in settings_class.model_fields.items():  # type: ignore[attr-defined]
        names.add(f"{prefix}{name}".upper())
        alias = info.validation_alias
        for choice in getattr(alias, "choices", [alias] if isinstance(alias, str) else []):
            if isinstance(choice, str) and choice.isupper():
                names.add(choice)
    return names


def _settings_of(service: str) -> type:
    return importlib.import_module(f"modelbus_{service}.config").Settings  # type: ignore[no-any-return]


def test_kustomization_lists_every_manifest_and_every_service_runs() -> None:
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(p.name for p in K8S.glob("*.yaml") if p.stem != "kustomization")
    assert sorted(_workloads()) == sorted(SERVICES)


@pytest.mark.parametrize("service", SERVICES)
def test_each_workload_runs_its_service_with_settings_that_exist(service: str) -> None:
    container = _container(_workloads()[service])
    assert container["command"] == ["python", "-m", f"modelbus_{service}", "run"]
    cli = importlib.import_module(f"modelbus_{service}.__main__").app
    assert "run" in {
        command.name or command.callback.__name__ for command in cli.registered_commands
    }
    known = (
        _env_names(_settings_of(service), f"MODELBUS_{service.upper()}_")
        | _env_names(KafkaSettings, "MODELBUS_")
        | _env_names(TrustSettings, "MODELBUS_")
        | _env_names(SecuritySettings, ENV_PREFIX)
    )
    config = next(doc for doc in _documents() if doc["kind"] == "ConfigMap")
    named = {entry["name"] for entry in container.get("env", [])}
    shared = set(config["data"]) - {"MLFLOW_TRACKING_URI"}  # read by trainer and registry
    assert named - known == set()
    every_service_reads = _env_names(KafkaSettings, "MODELBUS_") | _env_names(
        SecuritySettings, ENV_PREFIX
    )
    assert shared - every_service_reads == set()


@pytest.mark.parametrize(
    ("service", "port_field"), [("inference", "http_port"), ("registry", "port")]
)
def test_container_ports_are_the_services_ports(service: str, port_field: str) -> None:
    container = _container(_workloads()[service])
    default = _settings_of(service).model_fields[port_field].default  # type: ignore[attr-defined]
    assert [port["containerPort"] for port in container["ports"]] == [default]


def test_inference_scales_on_the_lag_of_its_own_group_and_topic() -> None:
    (scaled,) = [doc for doc in _documents() if doc["kind"] == "ScaledObject"]
    trigger = scaled["spec"]["triggers"][0]["metadata"]
    model = next(
        entry["value"]
        for entry in _container(_workloads()["inference"])["env"]
        if entry["name"] == "MODELBUS_INFERENCE_MODEL"
    )
    settings = _settings_of("inference")(model=model)
    assert trigger["consumerGroup"] == settings.consumer_group
    assert trigger["topic"] == data_topic(model, "requests")
    assert scaled["spec"]["scaleTargetRef"]["name"] == "inference"


def test_the_dashboard_queries_only_metrics_the_services_export() -> None:
    dashboard = json.loads((REPO / "infra" / "grafana" / "modelbus-inference.json").read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    used = {
        re.sub(r"_(total|bucket|sum|count)$", "", name)
        for expr in expressions
        for name in re.findall(r"modelbus_[a-z_]+", expr)
    }
    sources = "".join(p.read_text() for p in (REPO / "services").rglob("*.py"))
    exported = set(re.findall(r'"(modelbus_[a-z_]+)"', sources))
    assert used
    assert used - exported == set()
