"""``python -m livecart_ingest [serve|migrate]``: start-up only."""

from __future__ import annotations

from livecart_core.service import run_cli
from livecart_ingest.app import SERVICE


def main() -> None:
    run_cli(SERVICE)


if __name__ == "__main__":
    main()
