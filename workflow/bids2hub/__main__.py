"""``python -m bids2hub`` runs the command line."""

from bids2hub.cli import main

raise SystemExit(main())
