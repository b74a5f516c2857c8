"""Danmaku rooms across two chat nodes on real Kafka: one order per room, recovery after a
node dies, history afterwards."""

from __future__ import annotations

import asyncio

import httpx

from livecart_core.db import Database

from .conftest import NodeFactory, Viewer, join, new_room, token


async def test_every_viewer_on_both_nodes_sees_one_order(chat_nodes: NodeFactory) -> None:
    a, b = chat_nodes(), chat_nodes()
    room = new_room()
    viewers = [
        await join(node, room, token("shop", f"v{i}", "play")) for i, node in enumerate([a, b] * 3)
    ]
    senders = [await join(node, room, token("shop", f"s{i}")) for i, node in enumerate([a, b])]
    for i in range(30):
        await senders[i % 2].send(type="comment", text=f"c{i}", ref=f"r{i}")
    await asyncio.gather(*(v.until(lambda v: len(v.comments()) == 30) for v in viewers))
    orders = {tuple(v.comments()) for v in viewers}
    assert len(orders) == 1, orders  # the same order everywhere
    assert sorted(next(iter(orders)), key=lambda t: int(t[1:])) == [f"c{i}" for i in range(30)]
    seqs = [e["seq"] for e in viewers[0].events]
    assert seqs == sorted(seqs) and len(set(seqs)) == 30
    assert all(len(s.of("ack")) == 15 for s in senders)


async def test_a_node_dies_and_its_viewers_recover_on_the_other(chat_nodes: NodeFactory) -> None:
    a, b = chat_nodes(), chat_nodes()
    room = new_room()
    on_a = [await join(a, room, token("shop", f"a{i}", "play")) for i in range(3)]
    on_b = await join(b, room, token("shop", "b0", "play"))
    sender = await join(b, room, token("shop", "sender"))
    for i in range(20):
        await sender.send(type="comment", text=f"before-{i}")
    await asyncio.gather(*(v.until(lambda v: len(v.comments()) == 20) for v in on_a))
    assert a.process is not None
    a.process.kill()  # SIGKILL: no goodbye to anyone
    a.process.wait()
    for i in range(20):
        await sender.send(type="comment", text=f"during-{i}")
    recovered: list[Viewer] = []
    for i, gone in enumerate(on_a):
        await gone.until(lambda v: v.closed is not None)
        last = gone.events[-1]["seq"]
        recovered.append(await join(b, room, token("shop", f"a{i}", "play"), last_seq=last))
    for i in range(10):
        await sender.send(type="comment", text=f"after-{i}")
    await on_b.until(lambda v: len(v.comments()) == 50)
    everything = on_b.comments()
    for before, after in zip(on_a, recovered, strict=True):
        seen = len(before.comments())
        await after.until(lambda v, seen=seen: seen + len(v.comments()) >= 50)
        assert after.welcome["recovered"] is True
        assert before.comments() + after.comments() == everything  # no gap, nothing twice
        seqs = [e["seq"] for e in before.events + after.events]
        assert seqs == sorted(set(seqs))


async def test_a_viewer_that_saw_more_than_its_new_node_has_read_gets_nothing_twice(
    chat_nodes: NodeFactory,
) -> None:
    # A node that lags behind the viewer's last one: the viewer says it has seen seqs this
    # node has not read yet. Those must not reach it a second time when the node reads them.
    node = chat_nodes()
    room = new_room()
    sender = await join(node, room, token("shop", "s"))
    await sender.send(type="comment", text="c0")
    await sender.until(lambda v: len(v.comments()) == 1)
    seen = sender.events[0]["seq"] + 2  # the next two events of the partition
    ahead = await join(node, room, token("shop", "ahead", "play"), last_seq=seen)
    assert ahead.welcome["recovered"] is True
    for i in range(1, 6):
        await sender.send(type="comment", text=f"c{i}")
    await sender.until(lambda v: len(v.comments()) == 6)
    await ahead.until(lambda v: "c5" in v.comments())
    unseen = [e["text"] for e in sender.events if e["seq"] > seen]
    assert ahead.comments() == unseen and len(unseen) < 5
    await sender.send(type="comment", text="c6")  # caught up: the room's own frames again
    await ahead.until(lambda v: "c6" in v.comments())
    assert ahead.comments() == [*unseen, "c6"]


async def test_a_gap_beyond_history_says_so(chat_nodes: NodeFactory) -> None:
    node = chat_nodes(LIVECART_HISTORY_SIZE="10", LIVECART_RECOVER_MAX="10")
    room = new_room()
    sender = await join(node, room, token("shop", "s"))
    for i in range(30):
        await sender.send(type="comment", text=f"c{i}")
    await sender.until(lambda v: len(v.comments()) == 30)
    first = sender.events[0]["seq"]
    late = await join(node, room, token("shop", "late", "play"), last_seq=first)
    assert late.welcome["recovered"] is False
    fresh = await join(node, room, token("shop", "fresh", "play"))
    assert "recovered" not in fresh.welcome
    assert fresh.welcome["seq"] == sender.events[-1]["seq"]
    recent = await join(
        node, room, token("shop", "recent", "play"), last_seq=sender.events[-3]["seq"]
    )
    await recent.until(lambda v: len(v.comments()) == 2)
    assert recent.welcome["recovered"] is True and recent.comments() == ["c28", "c29"]


async def test_history_is_kept_for_replay(chat_nodes: NodeFactory) -> None:
    node = chat_nodes()
    room = new_room()
    sender = await join(node, room, token("shop", "s"))
    for i in range(5):
        await sender.send(type="comment", text=f"h{i}")
    await sender.until(lambda v: len(v.comments()) == 5)
    headers = {"Authorization": f"Bearer {token('shop', 'viewer', 'play')}"}
    async with httpx.AsyncClient(base_url=node.url) as client:
        for _ in range(100):  # the history writer is its own consumer group: a moment behind
            page = (await client.get(f"/v1/rooms/{room}/history", headers=headers)).json()
            if len(page["events"]) == 5:
                break
            await asyncio.sleep(0.1)
        assert [e["text"] for e in page["events"]] == [f"h{i}" for i in range(5)]
        assert page["last_seq"] == sender.events[-1]["seq"]
        rest = await client.get(
            f"/v1/rooms/{room}/history",
            params={"after_seq": page["events"][2]["seq"]},
            headers=headers,
        )
        assert [e["text"] for e in rest.json()["events"]] == ["h3", "h4"]
        other = {"Authorization": f"Bearer {token('other-shop', 'viewer', 'play')}"}
        theirs = await client.get(f"/v1/rooms/{room}/history", headers=other)
        assert theirs.json() == {"events": [], "last_seq": 0}
        bad = await client.get("/v1/rooms/no spaces/history", headers=headers)
        assert bad.status_code == 400
        anonymous = await client.get(f"/v1/rooms/{room}/history")
        assert anonymous.status_code == 401


async def test_likes_are_summed_across_nodes(chat_nodes: NodeFactory, chat_db: Database) -> None:
    a, b = chat_nodes(), chat_nodes()
    room = new_room()
    fans = [await join(node, room, token("shop", f"fan{i}")) for i, node in enumerate([a, b])]
    watcher = await join(b, room, token("shop", "watcher", "play"))
    for _ in range(10):
        await fans[0].send(type="like", count=3)
        await fans[1].send(type="like", count=2)
    await watcher.until(lambda v: bool(v.of("batch")) and v.of("batch")[-1]["total_likes"] == 50)
    assert sum(f["likes"] for f in watcher.of("batch")) == 50
    # Aggregated: far fewer frames than likes sent, and no like is an event of its own.
    assert len(watcher.of("batch")) < 20 and not watcher.events
    # The history writer keeps the total, for a node that opens the room later.
    for _ in range(100):
        stored = await chat_db.pool.fetchval(
            "select total_likes from room_state where tenant_id = 'shop' and room_id = $1", room
        )
        if stored == 50:
            break
        await asyncio.sleep(0.1)
    late = await join(chat_nodes(), room, token("shop", "late", "play"))
    assert late.welcome["total_likes"] == 50
