"""The spofkit terminal dashboard: watch requests flow through a balancer, and break instances by key.

Run it with ``spofkit tui`` (a lab of its own) or ``spofkit tui --connect http://127.0.0.1:8081`` (a lab that
``spofkit serve`` runs). It is only a *view*: everything it shows comes from the lab's event stream and status
snapshots (:mod:`tui.sources`), folded into rates by :mod:`tui.model`; every key sends the lab a command
(:mod:`spofkit.commands`).
"""
