"""``python -m bids2hub`` runs the command line."""

from .cli import main

raise SystemExit(main())
