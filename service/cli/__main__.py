"""``python -m service.cli``: the ``xent`` command (the container runs it so)."""

from service.cli import main

raise SystemExit(main())
