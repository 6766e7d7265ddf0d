"""DICOM waveform reader: pydicom as the scaling oracle, modified datasets, fuzz."""

from __future__ import annotations

import time

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")
from pydicom.waveforms import multiplex_array  # noqa: E402

import ecgcore  # noqa: E402
from ecgcore.errors import ReadError  # noqa: E402
from ecgcore.record import STANDARD_12  # noqa: E402

DCM = ("dicom", "pydicom_waveform_ecg.dcm")


def _need(root, *parts):
    p = root.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"reference file {p} is absent")
    return p


@pytest.fixture
def dcm_path(shared_data):
    return _need(shared_data, *DCM)


def test_rhythm_and_median_match_pydicom(dcm_path):
    rec = ecgcore.read(dcm_path)
    ds = pydicom.dcmread(dcm_path)
    assert rec.meta["format"] == "dicom"
    assert rec.signal.shape == (12, 10000) and rec.fs == 1000.0
    assert rec.leads == STANDARD_12 and rec.meta["is_12_lead"]
    # pydicom applies sensitivity x correction + baseline, in the channel units (uV here)
    np.testing.assert_allclose(rec.signal, ds.waveform_array(0).T * 1e-3, atol=1e-6)
    assert rec.median is not None and rec.median.signal.shape == (12, 1200)
    np.testing.assert_allclose(rec.median.signal, ds.waveform_array(1).T * 1e-3, atol=1e-6)
    # 1.25 uV per count
    raw = multiplex_array(ds, 0, as_raw=True).T
    np.testing.assert_allclose(rec.signal, raw * 0.00125, atol=1e-6)
    ptp = np.ptp(rec.signal, axis=1)
    assert np.all((ptp > 0.3) & (ptp < 5.0))
    assert rec.meta["measurements"]["QT Interval"] == {"value": 368.0, "unit": "ms"}
    assert "RITMO SINUSALE" in rec.meta["statements"]
    assert len(rec.annotations["dicom"]["code"]) == len(ds.WaveformAnnotationSequence)
    assert rec.meta["filters"]["low_pass_hz"] == 300.0


def _save(ds, tmp_path, name="m.dcm"):
    p = tmp_path / name
    ds.save_as(p, enforce_file_format=True)
    return p


def _set_group(ds, gi, raw_sc, bits, interp, dtype):
    """Replace group gi's samples with raw (samples, channels) of a dtype."""
    item = ds.WaveformSequence[gi]
    item.WaveformBitsAllocated = bits
    item.WaveformSampleInterpretation = interp
    item.WaveformData = np.ascontiguousarray(raw_sc.astype(dtype)).tobytes()
    for ch in item.ChannelDefinitionSequence:
        ch.WaveformBitsStored = bits


@pytest.mark.parametrize("bits, interp, dtype, lo, hi", [
    (8, "SB", "<i1", -100, 100), (8, "UB", "<u1", 0, 255), (16, "US", "<u2", 0, 60000),
    (32, "SL", "<i4", -200000, 200000)])
def test_sample_formats_scaling_and_units(dcm_path, tmp_path, rng, bits, interp, dtype, lo, hi):
    ds = pydicom.dcmread(dcm_path)
    n_s = int(ds.WaveformSequence[0].NumberOfWaveformSamples)
    raw = rng.integers(lo, hi, size=(n_s, 12))
    _set_group(ds, 0, raw, bits, interp, dtype)
    chans = ds.WaveformSequence[0].ChannelDefinitionSequence
    chans[0].ChannelSensitivity = "0.002"
    chans[0].ChannelSensitivityUnitsSequence[0].CodeValue = "mV"
    chans[1].ChannelSensitivityCorrectionFactor = "1.5"
    chans[2].ChannelBaseline = "-30"
    chans[3].ChannelSensitivityUnitsSequence[0].CodeValue = "V"
    chans[3].ChannelSensitivity = "0.000001"
    rec = ecgcore.read(_save(ds, tmp_path))
    ref = pydicom.dcmread(tmp_path / "m.dcm").waveform_array(0).T
    to_mv = np.full(12, 1e-3)
    to_mv[0], to_mv[3] = 1.0, 1e3
    np.testing.assert_allclose(rec.signal, ref * to_mv[:, None], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(rec.signal[1], raw[:, 1] * 1.25 * 1.5e-3, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(rec.signal[2], (raw[:, 2] * 1.25 - 30) * 1e-3, rtol=1e-6, atol=1e-6)


def test_padding_declared_and_undeclared(dcm_path, tmp_path, rng):
    ds = pydicom.dcmread(dcm_path)
    n_s = int(ds.WaveformSequence[0].NumberOfWaveformSamples)
    raw = rng.integers(-2000, 2000, size=(n_s, 12))
    raw[100:110, 3] = 32767
    _set_group(ds, 0, raw, 16, "SS", "<i2")
    ds.WaveformSequence[0].add_new(0x5400100A, "OW", np.int16(32767).tobytes())  # padding value
    med = multiplex_array(ds, 1, as_raw=True).copy()
    med[-1, :] = -32768                      # the undeclared converter quirk
    ds.WaveformSequence[1].WaveformData = med.astype("<i2").tobytes()
    rec = ecgcore.read(_save(ds, tmp_path))
    assert np.isnan(rec.signal[3, 100:110]).all() and np.isnan(rec.signal).sum() == 10
    assert rec.meta["padding_value"] == 32767
    assert np.isnan(rec.median.signal[:, -1]).all()
    assert not np.isnan(rec.median.signal[:, :-1]).any()
    assert rec.median.meta["most_negative_as_missing"] == 12


def test_code_meaning_fallback_and_mdc_codes(dcm_path, tmp_path):
    ds = pydicom.dcmread(dcm_path)
    chans = ds.WaveformSequence[0].ChannelDefinitionSequence
    # reverse-order MDC codes on the first six channels; free-text meaning on V1
    for ch, n in zip(chans[:6], (1, 2, 61, 62, 63, 64)):
        src = ch.ChannelSourceSequence[0]
        src.CodingSchemeDesignator, src.CodeValue = "MDC", f"2:{n}"
    src = chans[6].ChannelSourceSequence[0]
    src.CodingSchemeDesignator, src.CodeValue, src.CodeMeaning = "99LOCAL", "X1", "Lead V1"
    # the hemodynamic SOP class still yields a 12-lead record: decided by content
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.9.2.1"
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    rec = ecgcore.read(_save(ds, tmp_path))
    assert rec.leads == STANDARD_12
    assert rec.meta["sop_class"] == "Hemodynamic" and rec.meta["is_12_lead"]


def test_non_voltage_channel_skipped(dcm_path, tmp_path):
    ds = pydicom.dcmread(dcm_path)
    ch = ds.WaveformSequence[0].ChannelDefinitionSequence[11]
    ch.ChannelSensitivityUnitsSequence[0].CodeValue = "mm[Hg]"
    rec = ecgcore.read(_save(ds, tmp_path))
    assert rec.n_leads == 11 and rec.meta["skipped_channels"] == 1
    assert not rec.meta["is_12_lead"]


@pytest.mark.parametrize("edit, why", [
    (lambda ds: delattr(ds, "WaveformSequence"), "WaveformSequence"),
    (lambda ds: delattr(ds.WaveformSequence[0], "NumberOfWaveformSamples"), "NumberOfWaveformSamples"),
    (lambda ds: delattr(ds.WaveformSequence[0], "WaveformData"), "WaveformData"),
    (lambda ds: delattr(ds.WaveformSequence[0], "ChannelDefinitionSequence"), "ChannelDefinitionSequence"),
    (lambda ds: setattr(ds.WaveformSequence[0], "WaveformData",
                        ds.WaveformSequence[0].WaveformData[:1000]), "truncated"),
    (lambda ds: setattr(ds.WaveformSequence[0], "SamplingFrequency", "0"), "SamplingFrequency"),
    (lambda ds: setattr(ds.WaveformSequence[0], "WaveformSampleInterpretation", "MB"), "unsupported"),
    (lambda ds: setattr(ds.WaveformSequence[0], "NumberOfWaveformChannels", 13), "definitions"),
])
def test_missing_or_bad_attributes(dcm_path, tmp_path, edit, why):
    ds = pydicom.dcmread(dcm_path)
    edit(ds)
    with pytest.raises(ReadError, match=why):
        ecgcore.read(_save(ds, tmp_path))


def test_truncated_files(dcm_path, tmp_path):
    data = dcm_path.read_bytes()
    for cut in (140, 2000, len(data) // 2, len(data) - 3000):  # the last cuts into WaveformData
        p = tmp_path / f"t{cut}.dcm"
        p.write_bytes(data[:cut])
        with pytest.raises(ReadError):
            ecgcore.read(p)


def test_fuzz_mutations(dcm_path, tmp_path, rng):
    data = dcm_path.read_bytes()
    t0 = time.perf_counter()
    n_err = 0
    for i in range(60):
        buf = bytearray(data)
        if i % 3 == 0:
            for pos in rng.integers(132, len(buf), size=int(rng.integers(1, 30))):
                buf[pos] = int(rng.integers(0, 256))
        elif i % 3 == 1:
            # hit the header region, where tags and lengths live
            for pos in rng.integers(132, 6000, size=int(rng.integers(1, 10))):
                buf[pos] = int(rng.integers(0, 256))
        else:
            buf = buf[:int(rng.integers(132, len(buf)))]
        p = tmp_path / f"f{i}.dcm"
        p.write_bytes(bytes(buf))
        try:
            rec = ecgcore.read(p, format="dicom")
            assert rec.signal.ndim == 2
        except ReadError:
            n_err += 1
    assert n_err > 0
    assert time.perf_counter() - t0 < 20


# -- the fast dataset walker against pydicom ----------------------------------------

def _read_both(path, monkeypatch):
    """(fast walker record, pydicom record) of one file."""
    from ecgcore.io import dicom
    fast = dicom.read(path)

    def refuse(_path):
        raise dicom._Unsupported("forced")
    monkeypatch.setattr(dicom, "_fast_dataset", refuse)
    slow = dicom.read(path)
    monkeypatch.undo()
    return fast, slow


def _assert_same(a, b):
    np.testing.assert_array_equal(a.signal, b.signal)
    assert a.leads == b.leads and a.fs == b.fs
    np.testing.assert_array_equal(a.median.signal, b.median.signal)
    assert a.meta == b.meta and a.median.meta == b.median.meta
    assert set(a.annotations) == set(b.annotations)
    for k, v in b.annotations.get("dicom", {}).items():
        w = a.annotations["dicom"][k]
        assert (np.array_equal(w, v) if isinstance(v, np.ndarray) else w == v), k


def test_walker_equals_pydicom(dcm_path, monkeypatch):
    from ecgcore.io import dicom
    ds, ts = dicom._fast_dataset(str(dcm_path))
    assert ts == "1.2.840.10008.1.2.1" and len(ds.WaveformAnnotationSequence) == 77
    _assert_same(*_read_both(dcm_path, monkeypatch))


def test_walker_implicit_vr_and_utf8(dcm_path, tmp_path, rng, monkeypatch):
    from pydicom.uid import ImplicitVRLittleEndian
    from ecgcore.io import dicom
    ds = pydicom.dcmread(dcm_path)
    n_s = int(ds.WaveformSequence[0].NumberOfWaveformSamples)
    _set_group(ds, 0, rng.integers(-3000, 3000, size=(n_s, 12)), 16, "SS", "<i2")
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = "Müller^Zoë"
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    p = tmp_path / "implicit.dcm"
    ds.save_as(p, implicit_vr=True, little_endian=True, enforce_file_format=True)
    assert dicom._fast_dataset(str(p))[1] == ImplicitVRLittleEndian
    fast, slow = _read_both(p, monkeypatch)
    _assert_same(fast, slow)
    assert fast.meta["patient"]["name"] == "Müller^Zoë"
    ref = pydicom.dcmread(p).waveform_array(0).T * 1e-3
    np.testing.assert_allclose(fast.signal, ref, atol=1e-6)


def test_walker_gives_way_on_other_charsets(dcm_path, tmp_path, monkeypatch):
    from ecgcore.io import dicom
    ds = pydicom.dcmread(dcm_path)
    ds.SpecificCharacterSet = "ISO_IR 144"        # Cyrillic: left to pydicom
    ds.PatientName = "Иванов^Иван"
    p = _save(ds, tmp_path)
    with pytest.raises(dicom._Unsupported):
        dicom._fast_dataset(str(p))
    rec = ecgcore.read(p)
    assert rec.meta["patient"]["name"] == "Иванов^Иван"
