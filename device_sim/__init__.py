"""Simulated fleets of instruments and their users, driving the real gateway agent."""

from device_sim.fleet import Fleet, build_fleet
from device_sim.registry import register_fleet
from device_sim.runner import Simulation, SimulationResult, SimulationSpec
from device_sim.truth import TruthSession, load_sessions, write_truth

__all__ = [
    "Fleet",
    "Simulation",
    "SimulationResult",
    "SimulationSpec",
    "TruthSession",
    "build_fleet",
    "load_sessions",
    "register_fleet",
    "write_truth",
]
