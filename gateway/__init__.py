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
from gateway.probes import (
    MACHINERY_ITEM_STATES,
    ModbusPowerProbe,
    OpcUaProbe,
    Probe,
    Reading,
    SimulatedProbe,
)

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
