"""``python -m ferry`` runs the CLI."""

from ferry.cli.main import main

main()
