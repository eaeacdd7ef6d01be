"""Workers, queue and work time of an instance: :mod:`spofkit.capacity`, the one definition for both drivers.

The live instances (:mod:`spofkit.instance`) and the simulator's (:mod:`spofkit.sim.instance`) read the same
:class:`Capacity` and draw their work times from the same :class:`ServiceTime`, so "2 workers, 10 ms, a queue
of 20" means the same in a live lab and a simulated one. This module only keeps the simulator's old import path.
"""

from spofkit.capacity import (
    MAX_CONCURRENCY,
    MAX_WORK_MS,
    SERVICE_DISTRIBUTIONS,
    Capacity,
    ModelError,
    ServiceTime,
    quantized,
)

__all__ = [
    "MAX_CONCURRENCY",
    "MAX_WORK_MS",
    "SERVICE_DISTRIBUTIONS",
    "Capacity",
    "ModelError",
    "ServiceTime",
    "quantized",
]
