"""Chaos, the long runs: the scenarios of ``tests/chaos`` (a flash sale on two commerce
processes, a chat show on two nodes) through several SIGKILLs of a real Postgres and a real
Kafka broker each, with more load. Prints, per scenario, ``name=value unit`` lines; the goals:
``*_orders_lost``, ``*_events_missing``, ``*_events_duplicated``, ``*_comments_lost``,
``*_comments_duplicated``, ``*_answers_5xx_non_503`` and ``*_unready_s`` 0, ``*_recovery_s``
(the dependency back → requests at their pre-outage latency) at most 5 s.

    uv run python bench/chaos.py [--rounds 3] [--down-s 10] [--buyers 3000] [--viewers 300]
        [--senders 50] [--scenarios commerce_postgres,commerce_kafka,chat_kafka,chat_postgres]

About 2 minutes per scenario and round on 2 cores (a Kafka restart alone takes 12-14 s here).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "chaos"))

from scenarios import Outage, chat_scenario, commerce_scenario

KAFKA_RESTART_S = 14.0  # what a broker takes to come back after SIGKILL here


async def main(args: argparse.Namespace) -> None:
    for scenario in args.scenarios.split(","):
        service, dependency = scenario.split("_")
        outages = [Outage(dependency, args.down_s) for _ in range(args.rounds)]
        gap_s = 5.0
        outage_s = args.down_s + (KAFKA_RESTART_S if dependency == "kafka" else 1.0)
        span_s = args.rounds * (outage_s + gap_s) + gap_s
        if service == "commerce":
            report = await commerce_scenario(
                outages,
                buyers=args.buyers,
                units=args.buyers * 2 // 3,
                arrival_s=span_s,
                gap_s=gap_s,
            )
            lines = report.figures(scenario)
            if report.unexpected:
                lines.append(
                    f"{scenario}_unexpected_answers={sum(report.unexpected.values())} answers"
                )
        elif service == "chat":
            chat = await chat_scenario(
                outages, viewers=args.viewers, senders=args.senders, gap_s=gap_s
            )
            lines = chat.figures(scenario)
        else:
            raise SystemExit(f"unknown scenario {scenario!r}")
        print(*lines, sep="\n", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="outages per scenario")
    parser.add_argument("--down-s", type=float, default=10.0, help="how long each outage lasts")
    parser.add_argument("--buyers", type=int, default=3000)
    parser.add_argument("--viewers", type=int, default=300)
    parser.add_argument("--senders", type=int, default=50)
    parser.add_argument(
        "--scenarios", default="commerce_postgres,commerce_kafka,chat_kafka,chat_postgres"
    )
    asyncio.run(main(parser.parse_args()))
