"""Edge gateway: reads instruments, detects their state, delivers it durably over MQTT."""

from gateway.agent import AgentStats, GatewayAgent
from gateway.config import (
    DetectorConfig,
    GatewayConfig,
    InstrumentConfig,
    ProbeConfig,
    load_config,
)
from gateway.errors import ConfigError, GatewayError, OutboxError, ProbeError
from gateway.opcua_probe import MACHINERY_ITEM_STATES, OpcUaProbe
from gateway.probes import ModbusPowerProbe, Probe, Reading, SimulatedProbe

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
