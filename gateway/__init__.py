"""Edge gateway: reads instruments, detects their state, delivers it durably over MQTT."""

from typing import TYPE_CHECKING

from gateway.agent import AgentStats, GatewayAgent
from gateway.config import (
    DetectorConfig,
    GatewayConfig,
    InstrumentConfig,
    ProbeConfig,
    load_config,
)
from gateway.errors import ConfigError, GatewayError, OutboxError, ProbeError
from gateway.probes import ModbusPowerProbe, Probe, Reading, SimulatedProbe

if TYPE_CHECKING:
    from gateway.opcua_probe import MACHINERY_ITEM_STATES, OpcUaProbe

__all__ = [
    "MACHINERY_ITEM_STATES",
    "AgentStats",
    "ConfigError",
    "DetectorConfig",
    "GatewayAgent",
    "GatewayConfig",
    "GatewayError",
    "InstrumentConfig",
    "ModbusPowerProbe",
    "OpcUaProbe",
    "OutboxError",
    "Probe",
    "ProbeConfig",
    "ProbeError",
    "Reading",
    "SimulatedProbe",
    "load_config",
]


def __getattr__(name: str) -> object:
    """The OPC UA probe's names load the OPC UA library, which only gateways with OPC UA
    instruments need: on first use."""
    if name in ("MACHINERY_ITEM_STATES", "OpcUaProbe"):
        from gateway import opcua_probe

        return getattr(opcua_probe, name)
    raise AttributeError(f"module 'gateway' has no attribute {name!r}")
