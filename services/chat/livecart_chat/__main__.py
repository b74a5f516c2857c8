"""``python -m livecart_chat [serve|migrate]``: start-up only."""

from __future__ import annotations

from livecart_chat.app import SERVICE
from livecart_core.service import run_cli


def main() -> None:
    run_cli(SERVICE)


if __name__ == "__main__":
    main()
