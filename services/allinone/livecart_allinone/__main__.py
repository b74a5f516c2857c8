"""``python -m livecart_allinone`` (what ``make dev`` runs): start-up only."""

from __future__ import annotations

from livecart_allinone.runner import run
from livecart_allinone.settings import DevSettings
from livecart_core.errors import ConfigError, StartupError
from livecart_core.logs import setup_logging
from livecart_core.service import fail, run_loop


def main() -> None:
    setup_logging("INFO", "text")
    try:
        run_loop(run(DevSettings()))
    except (ConfigError, StartupError) as exc:
        fail("livecart-dev", exc)


if __name__ == "__main__":
    main()
