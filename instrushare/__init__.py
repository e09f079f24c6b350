"""instrushare: shared pieces used by every service (wire protocol, settings, database schema)."""

from instrushare.protocol import (
    PROTOCOL_VERSION,
    DataMessage,
    Event,
    EventType,
    GatewayState,
    IngestState,
    Sample,
    State,
    Topics,
)

__all__ = [
    "PROTOCOL_VERSION",
    "DataMessage",
    "Event",
    "EventType",
    "GatewayState",
    "IngestState",
    "Sample",
    "State",
    "Topics",
]
