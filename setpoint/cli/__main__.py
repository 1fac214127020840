"""``python -m setpoint.cli``: the same as the ``setpoint`` command."""

from setpoint.cli import main

__all__: list[str] = []

raise SystemExit(main())
