"""The Service and Endpoints kinds: stable addresses for a Job's replicas across clusters."""

from __future__ import annotations

from enum import Enum
from typing import ClassVar, Literal

from pydantic import Field, StrictInt, field_validator, model_validator

from skyshift_core.objects.base import SkyModel
from skyshift_core.objects.meta import Condition, Object
from skyshift_core.objects.selectors import validate_label_key, validate_label_value


class ServiceType(str, Enum):
    CLUSTER_IP = "ClusterIP"
    NODE_PORT = "NodePort"
    LOAD_BALANCER = "LoadBalancer"


class ServicePort(SkyModel):
    name: str = ""
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"
    port: StrictInt = Field(ge=1, le=65535)
    target_port: StrictInt | None = Field(default=None, ge=1, le=65535)
    node_port: StrictInt | None = Field(default=None, ge=1, le=65535)


class ServiceSpec(SkyModel):
    type: ServiceType = ServiceType.CLUSTER_IP
    # Labels of the Job replicas this Service sends traffic to.
    selector: dict[str, str] = Field(default_factory=dict)
    ports: list[ServicePort] = Field(default_factory=list)
    # Cluster whose address fronts the Service; chosen by the controller when empty.
    primary_cluster: str | None = None

    @field_validator("selector")
    @classmethod
    def _check_selector(cls, selector: dict[str, str]) -> dict[str, str]:
        for key, value in selector.items():
            validate_label_key(key)
            validate_label_value(value)
        return selector

    @model_validator(mode="after")
    def _node_port_only_for_node_port(self) -> "ServiceSpec":
        if self.type is ServiceType.CLUSTER_IP and any(port.node_port for port in self.ports):
            raise ValueError("node_port is set but the Service type is ClusterIP; use type NodePort or LoadBalancer")
        return self


class ServiceStatus(SkyModel):
    # Cluster name -> addresses the Service is reachable at on that cluster.
    addresses: dict[str, list[str]] = Field(default_factory=dict)
    conditions: list[Condition] = Field(default_factory=list)


class Service(Object):
    plural: ClassVar[str] = "services"
    singular: ClassVar[str] = "service"
    short_names: ClassVar[tuple[str, ...]] = ("svc",)
    table_columns: ClassVar[tuple[str, ...]] = ("TYPE", "PORTS", "CLUSTERS", "AGE")

    kind: Literal["Service"] = "Service"
    spec: ServiceSpec = Field(default_factory=ServiceSpec)
    status: ServiceStatus = Field(default_factory=ServiceStatus)

    def table_row(self) -> dict[str, str]:
        ports = ",".join(f"{port.port}/{port.protocol}" for port in self.spec.ports)
        return {
            "TYPE": self.spec.type.value,
            "PORTS": ports or "<none>",
            "CLUSTERS": ",".join(sorted(self.status.addresses)) or "<none>",
        }


class EndpointSet(SkyModel):
    num_endpoints: int = Field(default=0, ge=0)
    # Whether the endpoints on this cluster are exported to the primary cluster.
    exposed_to_cluster: bool = False


class EndpointsSpec(SkyModel):
    selector: dict[str, str] = Field(default_factory=dict)
    endpoints: dict[str, EndpointSet] = Field(default_factory=dict)
    primary_cluster: str | None = None


class Endpoints(Object):
    plural: ClassVar[str] = "endpoints"
    singular: ClassVar[str] = "endpoints"
    short_names: ClassVar[tuple[str, ...]] = ("ep",)
    table_columns: ClassVar[tuple[str, ...]] = ("ENDPOINTS", "AGE")

    kind: Literal["Endpoints"] = "Endpoints"
    spec: EndpointsSpec = Field(default_factory=EndpointsSpec)
    status: dict = Field(default_factory=dict)

    def table_row(self) -> dict[str, str]:
        parts = [f"{cluster}:{entry.num_endpoints}" for cluster, entry in sorted(self.spec.endpoints.items())]
        return {"ENDPOINTS": ",".join(parts) or "<none>"}
