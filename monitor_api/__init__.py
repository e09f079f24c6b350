"""monitor_api: the HTTP API over the registry, live status, bookings and metrics."""

from monitor_api.app import create_app
from monitor_api.settings import ApiSettings, EvaluationRules

__all__ = ["ApiSettings", "EvaluationRules", "create_app"]
