"""Isolation: whether an instance runs inside this Python process or as an OS process of its own.

=========  ==========================================================================================
inprocess  :class:`~spofkit.instance.ServiceInstance`: fast, the default, fine in a notebook. A crash closes
           its socket and cuts its connections, which is what a client sees when a process dies.
process    :class:`~spofkit.process_instance.ProcessInstance`: the same server as a child process. A crash is
           a real ``kill -9``; a restart is a new PID on the same port.
=========  ==========================================================================================
"""

from __future__ import annotations

from typing import Any

from spofkit.instance import Instance, ServiceInstance
from spofkit.process_instance import ProcessInstance

ISOLATIONS = ("inprocess", "process")


def make_instance(name: str, isolation: str = "inprocess", **kwargs: Any) -> Instance:
    """A :class:`ServiceInstance` (``"inprocess"``) or a :class:`ProcessInstance` (``"process"``)."""
    if isolation == "inprocess":
        return ServiceInstance(name, **kwargs)
    if isolation == "process":
        return ProcessInstance(name, **kwargs)
    raise ValueError(f"isolation must be one of {ISOLATIONS}, got {isolation!r}")
