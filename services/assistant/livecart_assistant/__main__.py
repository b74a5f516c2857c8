"""``python -m livecart_assistant [serve|migrate]``: start-up only."""

from __future__ import annotations

from livecart_assistant.app import SERVICE
from livecart_core.service import run_cli


def main() -> None:
    run_cli(SERVICE)


if __name__ == "__main__":
    main()
