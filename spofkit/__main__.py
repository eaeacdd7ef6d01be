"""``python -m spofkit``: the same as the ``spofkit`` command."""

from spofkit.cli import main

raise SystemExit(main())
