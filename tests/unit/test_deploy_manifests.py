"""docker-compose.yml and infra/k8s give every service its own credentials and signing key."""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from yaml.constructor import ConstructorError

from modelbus.bus.acls import SERVICES as ACL_PRINCIPALS
from modelbus.bus.acls import acl_table
from modelbus.bus.security import ENV_PREFIX, SecuritySettings, client_config
from modelbus.trust import (
    ROLES,
    TRUST_FILE,
    TrustSettings,
    generate_keys,
    load_signer,
    load_trusted,
)
from modelbus.trust.keys import private_key_path

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "infra" / "k8s"
SERVICES = ("registry", "trainer", "inference", "monitor", "deployer")
COMPOSE_KEYS = PurePosixPath("/secrets/keys")
COMPOSE_CREDENTIALS = PurePosixPath("/secrets/kafka-19092/credentials")
SECRETS_VOLUME = "modelbus-secrets"


class UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a mapping naming a key twice, as `docker compose` does."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` may be overridden by the keys beside it
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found the key {key!r} twice",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _compose() -> dict[str, Any]:
    return yaml.load((REPO / "docker-compose.yml").read_text(), Loader=UniqueKeyLoader)


def _compose_service(name: str) -> dict[str, Any]:
    return _compose()["services"][name]


def _command(service: dict[str, Any]) -> str:
    command = service["command"]
    return command if isinstance(command, str) else " ".join(command)


def _workloads() -> dict[str, dict[str, Any]]:
    workloads = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.load_all(path.read_text(), Loader=UniqueKeyLoader):
            if doc and doc["kind"] in ("Deployment", "StatefulSet"):
                workloads[doc["metadata"]["name"]] = doc
    return workloads


def _pod(service: str) -> dict[str, Any]:
    return _workloads()[service]["spec"]["template"]["spec"]


def _k8s_env(service: str) -> dict[str, str]:
    (container,) = _pod(service)["containers"]
    return {entry["name"]: entry["value"] for entry in container["env"] if "value" in entry}


def _documents(kind: str) -> list[dict[str, Any]]:
    return [
        doc
        for path in sorted(K8S.glob("*.yaml"))
        for doc in yaml.load_all(path.read_text(), Loader=UniqueKeyLoader)
        if doc and doc["kind"] == kind
    ]


def _shared_config() -> dict[str, str]:
    (config,) = _documents("ConfigMap")
    return config["data"]


def _secret_refs(service: str) -> dict[str, tuple[str, str]]:
    """Env name -> (Secret, key) of every ``valueFrom.secretKeyRef`` in the workload."""
    (container,) = _pod(service)["containers"]
    refs = {}
    for entry in container["env"]:
        ref = entry.get("valueFrom", {}).get("secretKeyRef")
        if ref is not None:
            assert not ref.get("optional", False)  # a missing Secret must stop the pod
            refs[entry["name"]] = (ref["name"], ref["key"])
    return refs


def _secrets_named(service: str) -> set[str]:
    """Every Secret the workload's pod reads, however it reads it."""
    pod = _pod(service)
    (container,) = pod["containers"]
    named = {secret for secret, _ in _secret_refs(service).values()}
    named |= {e["secretRef"]["name"] for e in container.get("envFrom", []) if "secretRef" in e}
    named |= {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    for volume in pod["volumes"]:
        for source in volume.get("projected", {}).get("sources", []):
            if "secret" in source:
                named.add(source["secret"]["name"])
    return named


def _k8s_file_source(service: str, path: str) -> tuple[dict[str, Any], str]:
    """The pod volume that ``path`` lies in, and the key of the Secret/ConfigMap behind it."""
    pod = _pod(service)
    (container,) = pod["containers"]
    file = PurePosixPath(path)
    (mount,) = [
        m for m in container["volumeMounts"] if file.parent == PurePosixPath(m["mountPath"])
    ]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    source = volume.get("secret") or volume.get("configMap") or {}
    (key,) = [item["key"] for item in source.get("items", []) if item["path"] == file.name]
    return volume, key


def test_docker_compose_names_no_key_twice() -> None:
    with pytest.raises(ConstructorError, match="found the key 'volumes' twice"):
        yaml.load("topics:\n  volumes: [a]\n  volumes: [b]\n", Loader=UniqueKeyLoader)
    assert set(SERVICES) | {"credentials", "topics", "kafka"} <= set(_compose()["services"])


def test_the_credentials_service_makes_the_signing_keys_in_the_secrets_volume() -> None:
    credentials = _compose_service("credentials")
    assert f"modelbus keys generate --dir {COMPOSE_KEYS} &&" in _command(credentials)
    assert f"{SECRETS_VOLUME}:/secrets" in credentials["volumes"]


@pytest.mark.parametrize("service", SERVICES)
def test_each_compose_service_runs_as_its_own_principal_with_its_own_roles_key(
    service: str,
) -> None:
    compose = _compose_service(service)
    command = _command(compose)
    sourced = re.findall(rf"\. {COMPOSE_CREDENTIALS}/([a-z]+)\.env", command)
    assert sourced == [service]
    assert command.endswith(f"exec python -m modelbus_{service} run")
    own_key = private_key_path(Path(COMPOSE_KEYS), service).as_posix()
    assert compose["environment"]["MODELBUS_SIGNING_KEY"] == own_key
    assert compose["environment"]["MODELBUS_TRUSTED_KEYS"] == str(COMPOSE_KEYS / TRUST_FILE)
    assert f"{SECRETS_VOLUME}:/secrets:ro" in compose["volumes"]


@pytest.mark.parametrize("service", SERVICES)
def test_each_k8s_workload_mounts_its_own_roles_key_alone_and_the_trust_file(
    service: str,
) -> None:
    env = _k8s_env(service)
    key_volume, key = _k8s_file_source(service, env["MODELBUS_SIGNING_KEY"])
    assert key_volume["secret"]["secretName"] == f"modelbus-keys-{service}"
    assert key == f"{service}.key.pem"
    assert key_volume["secret"]["defaultMode"] == 0o400  # load_signer refuses a readable key
    trust_volume, trust_key = _k8s_file_source(service, env["MODELBUS_TRUSTED_KEYS"])
    assert trust_volume["configMap"]["name"] == "modelbus-trusted-keys"
    assert trust_key == TRUST_FILE
    mounted_secrets = [v["secret"] for v in _pod(service)["volumes"] if "secret" in v]
    assert [s["secretName"] for s in mounted_secrets] == [f"modelbus-keys-{service}"]
    assert [item["key"] for s in mounted_secrets for item in s["items"]] == [f"{service}.key.pem"]


@pytest.mark.parametrize("service", SERVICES)
def test_the_files_both_deployments_name_are_the_ones_generate_writes_and_services_accept(
    service: str, tmp_path: Path
) -> None:
    generate_keys(tmp_path)  # as `modelbus keys generate --dir keys` makes them
    compose_env = _compose_service(service)["environment"]
    k8s_env = _k8s_env(service)
    k8s_key = tmp_path / _k8s_file_source(service, k8s_env["MODELBUS_SIGNING_KEY"])[1]
    k8s_trust = tmp_path / _k8s_file_source(service, k8s_env["MODELBUS_TRUSTED_KEYS"])[1]
    for signing_key, trusted_keys in (
        (
            tmp_path / PurePosixPath(compose_env["MODELBUS_SIGNING_KEY"]).relative_to(COMPOSE_KEYS),
            tmp_path
            / PurePosixPath(compose_env["MODELBUS_TRUSTED_KEYS"]).relative_to(COMPOSE_KEYS),
        ),
        (k8s_key, k8s_trust),
    ):
        settings = TrustSettings(signing_key=signing_key, trusted_keys=trusted_keys)
        assert load_signer(service, settings).identity.startswith(f"{service}:")
        assert set(load_trusted(settings, required=(service,)).keys) == set(ROLES)


@pytest.mark.parametrize("service", SERVICES)
def test_each_k8s_workload_connects_as_its_own_kafka_principal_and_reads_no_other_secret(
    service: str,
) -> None:
    assert _secret_refs(service) == {
        f"{ENV_PREFIX}SASL_USERNAME": (f"modelbus-kafka-{service}", "username"),
        f"{ENV_PREFIX}SASL_PASSWORD": (f"modelbus-kafka-{service}", "password"),
    }
    own = {f"modelbus-kafka-{service}", f"modelbus-keys-{service}", f"modelbus-{service}"}
    assert _secrets_named(service) <= own
    (container,) = _pod(service)["containers"]
    assert {"configMapRef": {"name": "modelbus"}} in container["envFrom"]


def test_the_documented_secrets_name_each_service_as_the_principal_the_acl_table_grants() -> None:
    comments = (K8S / "config.yaml").read_text()
    loops = re.findall(
        r"for service in ([a-z ]+); do\n#\s+kubectl -n modelbus create secret "
        r"generic modelbus-kafka-\$service \\\n#\s+--from-literal=username=\$service",
        comments,
    )
    assert len(loops) == 2  # from kafka.sh's credentials, and from your own Kafka's users
    principals = {grant.principal for grant in acl_table(["credit"])}
    for loop in loops:
        assert sorted(loop.split()) == sorted(SERVICES) == sorted(ACL_PRINCIPALS)
        assert {f"User:{service}" for service in loop.split()} <= principals
    assert "modelbus acls apply --dry-run" in comments


@pytest.mark.parametrize("service", SERVICES)
def test_each_k8s_workload_speaks_sasl_ssl_with_the_mounted_ca_and_its_settings_are_accepted(
    service: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = _shared_config()
    assert shared[f"{ENV_PREFIX}SECURITY_PROTOCOL"] == "SASL_SSL"
    assert shared[f"{ENV_PREFIX}SASL_MECHANISM"] == "SCRAM-SHA-512"
    ca_volume, ca_key = _k8s_file_source(service, shared[f"{ENV_PREFIX}SSL_CA_LOCATION"])
    assert (ca_volume["configMap"]["name"], ca_key) == ("modelbus-kafka-ca", "ca.crt")
    # The pod's environment: the ConfigMap, its own Secret (as config.yaml makes it), and the
    # CA file where the pod mounts it.
    secret = {"username": service, "password": "from the Secret"}
    for name in [name for name in os.environ if name.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(name)
    for name, value in shared.items():
        if name.startswith(ENV_PREFIX):
            monkeypatch.setenv(name, value)
    for name, (_, key) in _secret_refs(service).items():
        monkeypatch.setenv(name, secret[key])
    (tmp_path / ca_key).write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setenv(f"{ENV_PREFIX}SSL_CA_LOCATION", str(tmp_path / ca_key))
    assert client_config(shared["MODELBUS_BOOTSTRAP_SERVERS"]) == {
        "bootstrap.servers": "kafka-bootstrap.kafka.svc:9093",
        "security.protocol": "sasl_ssl",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": service,
        "sasl.password": "from the Secret",
        "ssl.ca.location": str(tmp_path / "ca.crt"),
    }
    assert SecuritySettings().principal == f"User:{service}"


def test_keda_reads_inference_lag_as_inference_over_the_same_listener_and_ca() -> None:
    shared = _shared_config()
    ((scaled,),) = [_documents("ScaledObject")]
    (trigger,) = scaled["spec"]["triggers"]
    mechanism = shared[f"{ENV_PREFIX}SASL_MECHANISM"]  # SCRAM-SHA-512 -> scram_sha512
    assert trigger["metadata"]["bootstrapServers"] == shared["MODELBUS_BOOTSTRAP_SERVERS"]
    assert trigger["metadata"]["sasl"] == mechanism.lower().replace("-", "_", 1).replace("-", "")
    assert trigger["metadata"]["tls"] == "enable"
    (auth,) = [
        doc
        for doc in _documents("TriggerAuthentication")
        if doc["metadata"]["name"] == trigger["authenticationRef"]["name"]
    ]
    secret_refs = {
        ref["parameter"]: (ref["name"], ref["key"]) for ref in auth["spec"]["secretTargetRef"]
    }
    assert secret_refs == {
        "username": ("modelbus-kafka-inference", "username"),
        "password": ("modelbus-kafka-inference", "password"),
    }
    ca_volume, ca_key = _k8s_file_source("inference", shared[f"{ENV_PREFIX}SSL_CA_LOCATION"])
    assert auth["spec"]["configMapTargetRef"] == [
        {"parameter": "ca", "name": ca_volume["configMap"]["name"], "key": ca_key}
    ]
