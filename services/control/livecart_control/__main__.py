"""``python -m livecart_control [serve|migrate]``: start-up only."""

from __future__ import annotations

from livecart_control.app import SERVICE
from livecart_core.service import run_cli


def main() -> None:
    run_cli(SERVICE)


if __name__ == "__main__":
    main()
