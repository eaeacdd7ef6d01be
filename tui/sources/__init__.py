"""Where the dashboard's picture comes from: a lab here, a lab behind an admin API, or a frozen scene.

One small interface, :class:`DataSource` (:mod:`tui.sources.base`): events, status snapshots, and
``apply(command)``. Three sources fulfil it, one module each:

- :class:`LabSource` (:mod:`tui.sources.lab`): a :class:`~spofkit.lab.Lab` started in this process
  (``spofkit tui``);
- :class:`RemoteSource` (:mod:`tui.sources.remote`): a lab run by ``spofkit serve``, through its admin API
  (``spofkit tui --connect http://127.0.0.1:8081``);
- :class:`FrozenSource` (:mod:`tui.sources.frozen`): a fixed status and events at a frozen time, for tests and
  screenshots.
"""

from tui.sources.base import DEFAULT_LOAD_RATE, ControlError, DataSource, Subscriber, Unsubscribe
from tui.sources.frozen import FrozenSource
from tui.sources.lab import LabSource
from tui.sources.remote import RemoteSource

__all__ = [
    "DEFAULT_LOAD_RATE",
    "ControlError",
    "DataSource",
    "FrozenSource",
    "LabSource",
    "RemoteSource",
    "Subscriber",
    "Unsubscribe",
]
