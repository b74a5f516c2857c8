"""``python -m livecart_transcode [serve|migrate]``: start-up only."""

from __future__ import annotations

from livecart_core.service import run_cli
from livecart_transcode.app import SERVICE


def main() -> None:
    run_cli(SERVICE)


if __name__ == "__main__":
    main()
