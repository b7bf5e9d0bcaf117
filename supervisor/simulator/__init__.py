"""A protocol-true OpenClaw gateway simulator: every served release line, many gateways per
process (each gateway speaks the line of its `Version`: see `LINES`).

Used by the tests, the demo fleet of `lane-supervisor up` and the benchmarks. It counts every
mutating call it receives, so tests can prove what was (and was not) sent.
"""

from supervisor.simulator.gateway import (
    LINES,
    SESSION_FAULTS,
    FaultMode,
    Line,
    SimGateway,
    SimSession,
    Version,
)
from supervisor.simulator.server import SimulatorServer

__all__ = [
    "LINES",
    "SESSION_FAULTS",
    "FaultMode",
    "Line",
    "SimGateway",
    "SimSession",
    "SimulatorServer",
    "Version",
]
