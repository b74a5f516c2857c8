"""LossDetector: which upstream packets to NACK, and when to give up."""

from __future__ import annotations

from livecart_media.rtp.loss import LossDetector


def test_a_gap_is_nacked_at_once_and_again_until_it_arrives() -> None:
    loss = LossDetector(retry_s=0.1, attempts=3, give_up_s=1.0)
    assert loss.on_packet(10, 0.0) == []
    assert loss.on_packet(11, 0.0) == []
    assert loss.on_packet(14, 0.01) == [12, 13]
    assert loss.due(0.05) == []
    assert loss.due(0.12) == [12, 13]
    assert loss.on_packet(12, 0.13) == []  # the retransmission
    assert loss.due(0.25) == [13]
    assert loss.due(0.36) == []  # asked three times
    assert loss.due(0.5) == []
    assert loss.lost == 1 and loss.pending == 0


def test_wraparound_and_reordering_are_not_loss() -> None:
    loss = LossDetector()
    loss.on_packet(0xFFFE, 0.0)
    assert loss.on_packet(0xFFFF, 0.0) == []
    assert loss.on_packet(0x0001, 0.0) == [0x0000]
    assert loss.on_packet(0x0000, 0.0) == []  # late, not new
    assert loss.pending == 0
    assert loss.on_packet(0x0001, 0.0) == []  # duplicate


def test_a_jump_restarts_instead_of_nacking_hundreds() -> None:
    loss = LossDetector()
    loss.on_packet(100, 0.0)
    assert loss.on_packet(5000, 0.0) == []
    assert loss.on_packet(5002, 0.0) == [5001]
    loss.reset()
    assert loss.on_packet(7, 0.0) == []
