"""Who may do what on the bus: one table of Kafka ACLs, derived from what each service
reads and writes. Pure: applying it is ``modelbus acls apply`` (``acls_admin``).

Every principal is ``User:<name>``; ``admin`` is the broker's super user and needs no row.
A service reads the topics of the events it consumes and writes those of the events it
produces (the unit tests check this against the services' own handler tables); every writer
also writes the schemas it uses to ``modelbus.schemas`` and dead letters to a DLQ.
"""

from __future__ import annotations

from dataclasses import dataclass

from modelbus.bus.topics import (
    HEALTH_TOPIC,
    LIFECYCLE_TOPIC,
    SCHEMAS_TOPIC,
    SHARED_DLQ_TOPIC,
    data_topic,
)

SERVICES = ("registry", "trainer", "deployer", "inference", "monitor")
CLIENT = "client"
"""The principal of producers: they send requests and feedback and read predictions."""

# Topic access per principal. ``{model}`` stands for each model the table is built for.
READS: dict[str, tuple[str, ...]] = {
    "registry": (LIFECYCLE_TOPIC, SCHEMAS_TOPIC),
    "trainer": (LIFECYCLE_TOPIC, SCHEMAS_TOPIC, "{model}.requests", "{model}.feedback"),
    "deployer": (LIFECYCLE_TOPIC, SCHEMAS_TOPIC, HEALTH_TOPIC),
    "inference": (LIFECYCLE_TOPIC, SCHEMAS_TOPIC, "{model}.requests"),
    "monitor": (
        LIFECYCLE_TOPIC,
        SCHEMAS_TOPIC,
        HEALTH_TOPIC,
        "{model}.requests",
        "{model}.predictions",
        "{model}.feedback",
    ),
    CLIENT: (SCHEMAS_TOPIC, "{model}.predictions"),
}
WRITES: dict[str, tuple[str, ...]] = {
    "registry": (LIFECYCLE_TOPIC, SCHEMAS_TOPIC, SHARED_DLQ_TOPIC),
    "trainer": (LIFECYCLE_TOPIC, SCHEMAS_TOPIC, SHARED_DLQ_TOPIC),
    "deployer": (LIFECYCLE_TOPIC, SCHEMAS_TOPIC, SHARED_DLQ_TOPIC),
    "inference": (
        LIFECYCLE_TOPIC,
        SCHEMAS_TOPIC,
        SHARED_DLQ_TOPIC,
        "{model}.predictions",
        "{model}.shadow",
        "{model}.dlq",
    ),
    "monitor": (LIFECYCLE_TOPIC, SCHEMAS_TOPIC, HEALTH_TOPIC, SHARED_DLQ_TOPIC, "{model}.dlq"),
    CLIENT: ("{model}.requests", "{model}.feedback"),
}
TRANSACTIONAL = ("deployer", "inference")
"""Services that write in Kafka transactions (ids ``modelbus-<service>...``)."""


@dataclass(frozen=True, order=True)
class Grant:
    """ALLOW ``operation`` on a resource to a principal (host ``*``)."""

    principal: str
    resource: str  # TOPIC, GROUP or TRANSACTIONAL_ID
    pattern: str  # LITERAL or PREFIXED
    name: str
    operation: str  # READ, WRITE or DESCRIBE

    def __str__(self) -> str:
        return (
            f"{self.principal:<16} {self.operation:<8} {self.resource:<16} "
            f"{self.name}{'*' if self.pattern == 'PREFIXED' else ''}"
        )


def _topic(entry: str, model: str) -> str:
    if not entry.startswith("{model}."):
        return entry
    return data_topic(model, entry.removeprefix("{model}."))


def topics_of(entries: tuple[str, ...], models: list[str]) -> set[str]:
    """The topics ``entries`` name for ``models``.

    >>> sorted(topics_of(("modelbus.lifecycle", "{model}.requests"), ["credit", "fraud"]))
    ['modelbus.credit.requests', 'modelbus.fraud.requests', 'modelbus.lifecycle']
    """
    return {_topic(entry, model) for entry in entries for model in models}


def acl_table(models: list[str]) -> list[Grant]:
    """Every grant a deployment serving ``models`` needs, sorted.

    Groups and transactional ids are granted by prefix ``modelbus-<service>``: each service's
    default group, its read-only readers (``modelbus-<service>-<purpose>-<uuid>``) and its
    transactional ids all start so. Every principal may use the throwaway groups of schema
    readers (``modelbus-schemas-``). Services may DESCRIBE every ``modelbus.`` topic, so
    finding that a topic exists never needs the right to create it.

    >>> for grant in acl_table(["credit"]):
    ...     if grant.principal == "User:client":
    ...         print(grant)
    User:client      READ     GROUP            modelbus-client-*
    User:client      READ     GROUP            modelbus-schemas-*
    User:client      READ     TOPIC            modelbus.credit.predictions
    User:client      READ     TOPIC            modelbus.schemas
    User:client      WRITE    TOPIC            modelbus.credit.feedback
    User:client      WRITE    TOPIC            modelbus.credit.requests
    """
    grants: set[Grant] = set()
    for name in (*SERVICES, CLIENT):
        principal = f"User:{name}"
        for topic in topics_of(READS[name], models):
            grants.add(Grant(principal, "TOPIC", "LITERAL", topic, "READ"))
        for topic in topics_of(WRITES[name], models):
            grants.add(Grant(principal, "TOPIC", "LITERAL", topic, "WRITE"))
        grants.add(Grant(principal, "GROUP", "PREFIXED", f"modelbus-{name}-", "READ"))
        grants.add(Grant(principal, "GROUP", "PREFIXED", "modelbus-schemas-", "READ"))
        if name in SERVICES:
            grants.add(Grant(principal, "GROUP", "LITERAL", f"modelbus-{name}", "READ"))
            grants.add(Grant(principal, "TOPIC", "PREFIXED", "modelbus.", "DESCRIBE"))
        if name in TRANSACTIONAL:
            for operation in ("WRITE", "DESCRIBE"):
                grants.add(
                    Grant(principal, "TRANSACTIONAL_ID", "PREFIXED", f"modelbus-{name}-", operation)
                )
    return sorted(grants, key=lambda g: (g.principal, g.operation, g.resource, g.name))


def may(table: list[Grant], principal: str, operation: str, topic: str) -> bool:
    """Whether ``table`` lets ``principal`` (``User:x``) do ``operation`` on ``topic``."""
    for grant in table:
        if grant.principal != principal or grant.resource != "TOPIC":
            continue
        if grant.operation != operation:
            continue
        if grant.name == topic or (grant.pattern == "PREFIXED" and topic.startswith(grant.name)):
            return True
    return False
