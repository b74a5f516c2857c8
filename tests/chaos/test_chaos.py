"""The chaos suite, small enough for every run: Postgres and Kafka SIGKILLed and restarted
under a flash sale and under a chat show, with the invariants checked afterwards
(``scenarios.py``; ``bench/chaos.py`` runs the same longer)."""

from __future__ import annotations

import pytest

from .scenarios import Outage, chat_scenario, commerce_scenario


@pytest.mark.timeout(240)
async def test_a_flash_sale_through_a_postgres_crash_and_a_kafka_crash() -> None:
    report = await commerce_scenario(
        [Outage("postgres", 4.0), Outage("kafka", 4.0)], buyers=300, units=200, arrival_s=35
    )
    print(*report.figures(), sep="\n")
    assert not report.unexpected, report.unexpected
    assert report.reserved == report.units and report.sold_out == report.buyers - report.units
    assert report.orders_lost == 0 and report.orders_duplicated == 0
    assert report.oversold == 0 and report.over_limit == 0
    assert report.events_missing == 0 and report.events_duplicated == 0
    assert report.answers_5xx_non_503 == 0
    assert report.answers_503 > 0  # the outage was felt, and answered as it should be
    assert report.unready_s == 0 and report.degraded_seen
    assert report.recovery_s <= 5.0, report.recovery_s
    assert report.outbox_drained_s <= 5.0, report.outbox_drained_s


@pytest.mark.timeout(240)
async def test_a_chat_show_through_a_kafka_crash_and_a_postgres_crash() -> None:
    report = await chat_scenario(
        [Outage("kafka", 3.0), Outage("postgres", 3.0)], viewers=40, senders=8
    )
    print(*report.figures(), sep="\n")
    assert report.acked > 0
    assert report.comments_lost == 0 and report.comments_duplicated == 0
    assert report.viewers_disconnected == 0
    assert report.answers_late == 0, report.answer_max_s
    assert report.unavailable_answers > 0  # senders heard of the outage, in time
    assert report.unready_s == 0
    assert report.recovery_s <= 5.0, report.recovery_s
