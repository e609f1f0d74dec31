"""Applying the ACL table to a broker with Kafka's Admin API (run as the super user)."""

from __future__ import annotations

from typing import Any

from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

from modelbus.bus.acls import Grant
from modelbus.bus.security import client_config


def _binding(grant: Grant) -> AclBinding:
    return AclBinding(
        ResourceType[grant.resource],
        grant.name,
        ResourcePatternType[grant.pattern],
        grant.principal,
        "*",
        AclOperation[grant.operation],
        AclPermissionType.ALLOW,
    )


def apply_acls(bootstrap_servers: str, grants: list[Grant], timeout_s: float = 30.0) -> int:
    """Create every grant (existing ones are kept); returns how many were asked for.

    Raises the broker's error (e.g. CLUSTER_AUTHORIZATION_FAILED for a principal that is not
    the super user, SECURITY_DISABLED on a broker without an authorizer).
    """
    admin = AdminClient(client_config(bootstrap_servers))
    futures = admin.create_acls([_binding(grant) for grant in grants], request_timeout=timeout_s)
    for future in futures.values():
        future.result()
    return len(grants)


def current_acls(bootstrap_servers: str, timeout_s: float = 30.0) -> list[Grant]:
    """Every ALLOW ACL the broker holds now, as grants."""
    admin = AdminClient(client_config(bootstrap_servers))
    # None matches any name, principal and host (confluent-kafka's stubs say str).
    anything: Any = None
    every = AclBindingFilter(
        ResourceType.ANY, anything, ResourcePatternType.ANY, anything, anything,
        AclOperation.ANY, AclPermissionType.ANY,
    )  # fmt: skip
    bindings = admin.describe_acls(every, request_timeout=timeout_s).result()
    return sorted(
        Grant(
            binding.principal,
            binding.restype.name,
            binding.resource_pattern_type.name,
            binding.name,
            binding.operation.name,
        )
        for binding in bindings
        if binding.permission_type == AclPermissionType.ALLOW
    )
