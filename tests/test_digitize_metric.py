"""The Challenge 2024 SNR metric on hand-made cases with known answers."""

import numpy as np
import pytest

import ecgcore
from ecgcore.digitization.metric import align_lead, challenge_score, challenge_snr, snr_lead


@pytest.fixture(scope="module")
def ecg():
    rec = ecgcore.simulate(n=1, fs=500, duration=10, seed=11)
    rec = rec[0] if isinstance(rec, list) else rec
    return rec


def test_gain_error_gives_closed_form_db(rng):
    x = rng.standard_normal(3000)
    for g in (0.9, 0.95, 1.2):
        assert snr_lead(x, g * x) == pytest.approx(-20 * np.log10(abs(1 - g)), abs=1e-9)


def test_gain_09_on_ecg_with_alignment_is_20db(ecg):
    x = ecg["II"].astype(float)
    # the baseline dominates the 2-D correlation, so no spurious offset is removed
    assert challenge_snr(x[None], 0.9 * x[None], ecg.fs)[0] == pytest.approx(20.0, abs=0.3)


@pytest.mark.parametrize("lag", [37, -60])
def test_shifted_copies_are_realigned(ecg, lag):
    x = ecg["V2"].astype(float)
    y = np.full_like(x, np.nan)
    if lag > 0:
        y[lag:] = x[:-lag]
    else:
        y[:lag] = x[-lag:]
    y = y + 0.4
    aligned, shift, offset = align_lead(x, y, ecg.fs)
    assert shift == -lag
    assert offset == pytest.approx(0.4, abs=(np.nanmax(x) - np.nanmin(x) + 0.4) / 255)
    raw = challenge_snr(x[None], y[None], ecg.fs, align=False)[0]
    fixed = challenge_snr(x[None], y[None], ecg.fs)[0]
    assert fixed > 30 and raw < 10


def test_shift_beyond_half_second_is_not_removed(ecg):
    x = ecg["V2"].astype(float)
    lag = int(0.7 * ecg.fs)
    y = np.full_like(x, np.nan)
    y[lag:] = x[:-lag]
    assert align_lead(x, y, ecg.fs)[1] == 0


def test_nan_penalty_scales_db(rng):
    x = rng.standard_normal(1000)
    y = 1.1 * x
    full = snr_lead(x, y)
    y[:250] = np.nan                       # 75 % recovered
    assert snr_lead(x, y) == pytest.approx(0.75 * full)
    assert snr_lead(x, np.full(1000, np.nan)) == 0.0
    assert np.isnan(snr_lead(np.full(10, np.nan), np.ones(10)))
    assert np.isnan(snr_lead(x, x))        # perfect -> NaN, as in the scorer


def test_score_is_nanmean_and_records_match_by_name(ecg, rng):
    ref = ecg
    noisy = ref.copy(signal=ref.signal * 0.9)
    perm = [11 - i for i in range(12)]
    shuffled = ecgcore.Record(noisy.signal[perm], ref.fs, [ref.leads[i] for i in perm])
    per = challenge_snr(ref, shuffled, None, align=False)
    assert np.allclose(per, 20.0)
    assert challenge_score([ref, ref], [shuffled, None], align=False) == pytest.approx(10.0)
