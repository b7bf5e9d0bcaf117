"""A protocol-true OpenClaw gateway simulator: both versions' behaviour, many gateways per process.

Used by the tests, the demo fleet of `lane-supervisor up` and the benchmarks. It counts every
mutating call it receives, so tests can prove what was (and was not) sent.
"""

from supervisor.simulator.gateway import FaultMode, SimGateway, SimSession, Version
from supervisor.simulator.server import SimulatorServer

__all__ = ["FaultMode", "SimGateway", "SimSession", "SimulatorServer", "Version"]
