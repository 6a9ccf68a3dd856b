"""The simplified E-model (ITU-T G.107) the quality reports use: known points of the curve
and the interval arithmetic over the session's cumulative counters."""

from __future__ import annotations

import pytest

from softphone.agent.quality import (
    QualityMeter,
    delay_impairment,
    mos_from_r,
    one_way_delay_ms,
    r_factor,
)


def test_a_clean_call_on_loopback_scores_4_4() -> None:
    r = r_factor(0.0, one_way_delay_ms(0.3, 0.5), "pcma")
    assert r == pytest.approx(93.2 - 0.024 * (0.15 + 20 + 20), abs=0.01)
    assert mos_from_r(r) == pytest.approx(4.4, abs=0.05)


def test_g107_reference_points() -> None:
    # G.107 Annex B: R = 93.2 is MOS 4.41; R = 50 is 2.58; the ends are clamped
    assert mos_from_r(93.2) == pytest.approx(4.41, abs=0.01)
    assert mos_from_r(50.0) == pytest.approx(2.58, abs=0.01)
    assert mos_from_r(-5) == 1.0 and mos_from_r(120) == 4.5
    # Id: linear below 177.3 ms, steeper above
    assert delay_impairment(100) == pytest.approx(2.4)
    assert delay_impairment(300) == pytest.approx(0.024 * 300 + 0.11 * (300 - 177.3))


def test_loss_lowers_the_score_as_ie_eff_says() -> None:
    # Ie,eff = 95 * Ppl / (Ppl + 25.1): 5 % loss costs 15.8 R points
    clean = r_factor(0.0, 60.0)
    lossy = r_factor(5.0, 60.0)
    assert clean - lossy == pytest.approx(95 * 5 / 30.1, abs=0.01)
    assert mos_from_r(lossy) < 4.0 < mos_from_r(clean)


def test_each_sample_covers_only_its_interval() -> None:
    meter = QualityMeter("opus")
    first = meter.sample(interval_s=5, received=250, expected=250, lost=0, jitter_ms=1.0,
                         rtt_ms=None, remote_fraction_lost=None)
    assert first.loss_percent == 0 and first.packets_received == 250
    second = meter.sample(interval_s=5, received=475, expected=500, lost=25, jitter_ms=4.0,
                          rtt_ms=40.0, remote_fraction_lost=0.0)
    assert second.packets_expected == 250 and second.lost == 25
    assert second.loss_percent == pytest.approx(10.0)
    # the peer's report about our stream counts when it is the worse direction
    third = meter.sample(interval_s=5, received=725, expected=750, lost=25, jitter_ms=4.0,
                         rtt_ms=40.0, remote_fraction_lost=0.2)
    assert third.loss_percent == 0.0 and third.remote_loss_percent == pytest.approx(20.0)
    assert third.mos < second.mos < first.mos
    assert third.as_dict()["mos"] == round(third.mos, 2)
