"""sdkd.evaluate.format: the writer, and each section parser on good and broken sections
(the whole-file check runs on real files in test_evaluate.py)."""

from __future__ import annotations

import copy
import json
import math
import re

import numpy as np
import pytest
from fake_results import fake_evaluation, tiny_config
from helpers import leftovers

from sdkd.evaluate import format as evalfile
from sdkd.plan import expected_runs


@pytest.fixture(scope="module")
def doc():
    config = tiny_config()
    run = next(r for r in expected_runs(config) if r["bands"] == "dual")
    return fake_evaluation(run, config, np.random.default_rng(0))


def test_write_then_read(doc, tmp_path):
    doc = copy.deepcopy(doc)
    doc["metrics"]["psnr"] = math.inf  # a perfect forecast
    path = tmp_path / "eval" / "run.json"
    written = evalfile.write_evaluation(path, doc)
    assert written["metrics"]["psnr"] is None
    assert json.loads(path.read_text()) == written  # strict JSON: no Infinity token
    assert leftovers(tmp_path) == ["eval/run.json"]
    with pytest.raises(evalfile.InvalidEvaluation, match=r"^metrics\.psnr is None"):
        evalfile.metrics(written)
    # the whole-file check runs every section's parser and names the file
    with pytest.raises(evalfile.InvalidEvaluation, match=rf"^{path}: metrics\.psnr is None"):
        evalfile.read_evaluation(path)
    written["metrics"]["psnr"] = 30.0
    evalfile.write_evaluation(path, written)
    assert evalfile.read_evaluation(path) == written


def test_sections(doc):
    assert evalfile.metrics(doc) == {k: doc["metrics"][k] for k in evalfile.METRICS}
    per_lead = evalfile.per_lead_time(doc)
    assert set(per_lead) == set(evalfile.METRICS)
    assert per_lead["mse"].tolist() == doc["per_lead_time"]["mse"]
    assert per_lead["ssim"].tolist() == doc["per_lead_time"]["ssim"]
    spectrum = evalfile.spectrum(doc)
    assert spectrum.k.tolist() == doc["spectrum"]["k"]
    assert spectrum.error.tolist() == doc["spectrum"]["error"]
    bands = evalfile.band_errors(doc)
    assert bands.cutoffs == (4.0, 8.0) and len(bands.mse) == len(bands.truth_energy) == 3
    sample = evalfile.sample(doc)
    assert sample.channel == "u" and sample.lead_times == [1, 4]
    assert sample.truth.shape == sample.prediction.shape == (2, 8, 8)
    identity = evalfile.identity(doc)
    assert identity.run_id == doc["run_id"] and identity.weights == doc["weights_sha256"]
    assert identity.teacher == doc["identity"]["inputs"]["teacher"] is not None
    values, lacking = evalfile.efficiency(doc)
    assert lacking == [] and values["train_seconds"] == doc["efficiency"]["training"]["seconds"]
    assert values["inference_device"] == "cpu (2 threads)"


@pytest.mark.parametrize("section", ["per_lead_time", "spectrum", "band_errors", "sample"])
def test_a_null_section_is_absent(doc, section):
    assert getattr(evalfile, section)(doc | {section: None}) is None


def test_values_that_may_be_null(doc):
    """A lead time may lack a PSNR, SSIM or relative L2 (NaN here), never an MSE; costs
    and devices may be null or absent (listed as lacking)."""
    per_lead = copy.deepcopy(doc["per_lead_time"])
    per_lead["psnr"][1] = None
    assert math.isnan(evalfile.per_lead_time(doc | {"per_lead_time": per_lead})["psnr"][1])
    per_lead["mse"][1] = None
    with pytest.raises(evalfile.InvalidEvaluation, match=r"per_lead_time\.mse\[1\] is None"):
        evalfile.per_lead_time(doc | {"per_lead_time": per_lead})
    values, lacking = evalfile.efficiency(doc | {"efficiency": {"parameters": 5,
                                                                "inference": None}})
    assert values["parameters"] == 5.0 and values["latency_ms"] is None
    assert "efficiency.inference.latency_ms" in lacking and len(lacking) == 8
    assert evalfile.efficiency(doc | {"efficiency": None})[1] == [
        ".".join(keys) for keys in (*evalfile.EFFICIENCY.values(), *evalfile.DEVICES.values())]


@pytest.mark.parametrize("grid", [(8, 8), (16, 16), (7, 9), (64, 32), (1, 5), (33, 2)])
def test_spectrum_shells_are_those_of_the_accumulator(grid):
    from sdkd.evaluate.spectra import shell_count  # torch: only here, not in the format

    assert evalfile.spectrum_shells(*grid) == shell_count(*grid)


def test_identity_problem(doc):
    identity = doc["identity"]
    assert evalfile.identity_problem(identity, doc["run_id"]) is None
    assert "no `spec`" in evalfile.identity_problem({"inputs": identity["inputs"]}, "x")
    teacher = {**identity, "inputs": {**identity["inputs"], "teacher": 5}}
    assert "teacher is 5" in evalfile.identity_problem(teacher, doc["run_id"])
    assert "does not name its identity" in evalfile.identity_problem(identity, "abc")


def test_band_labels():
    assert evalfile.band_labels([4, 8]) == ["k < 4", "4 ≤ k < 8", "k ≥ 8"]
    assert evalfile.band_labels([2.5]) == ["k < 2.5", "k ≥ 2.5"]


def test_version_2_files_are_read_without_mask_or_channels(doc, tmp_path):
    """A file written before version 3 lacks `mask` and `channel_metrics`: it reads, every
    pixel counted and no per-channel block; a version 3 file must have both."""
    old = {k: v for k, v in doc.items() if k not in evalfile.ADDED_IN_3}
    path = tmp_path / "old.json"
    evalfile.write_evaluation(path, old | {"schema_version": 2})
    read = evalfile.read_evaluation(path)
    assert evalfile.channel_metrics(read) is None and evalfile.mask(read) is None
    assert evalfile.sample(read).valid is None
    assert evalfile.metrics(read) == evalfile.metrics(doc)
    evalfile.write_evaluation(path, old)
    with pytest.raises(evalfile.InvalidEvaluation, match=r"lacks key\(s\) mask, channel_metrics"):
        evalfile.read_evaluation(path)
    for version in (1, 4, True, "3"):
        evalfile.write_evaluation(path, doc | {"schema_version": version})
        with pytest.raises(evalfile.InvalidEvaluation, match=r"expected 2 or 3; rerun"):
            evalfile.read_evaluation(path)


def test_channel_metrics_section(doc):
    assert evalfile.channel_metrics(doc) == {"u": {"data_range": doc["data_range"],
                                                   **doc["metrics"]}}
    assert evalfile.channel_metrics(doc | {"channel_metrics": None}) is None
    entry = doc["channel_metrics"]["u"]
    # a perfect or constant channel has no PSNR (null → NaN), never no MSE
    assert math.isnan(evalfile.channel_metrics(
        doc | {"channel_metrics": {"u": entry | {"psnr": None}}})["u"]["psnr"])
    two = doc | {"channels": ["u", "<v>"]}
    cases = [
        (two, re.escape("channel_metrics has the keys ['u'], expected the channels "
                        "['u', '<v>'], in order")),
        (doc | {"channel_metrics": {"u": [1]}}, r"channel_metrics\.u is \[1\], expected an "
                                                "object"),
        (doc | {"channel_metrics": {"u": {k: v for k, v in entry.items() if k != "mae"}}},
         "channel_metrics.u lacks `mae`"),
        (doc | {"channel_metrics": {"u": entry | {"mse": -1.0}}},
         r"channel_metrics\.u\.mse is -1\.0, expected a finite number ≥ 0$"),
        (doc | {"channel_metrics": {"u": entry | {"mse": None}}},
         r"channel_metrics\.u\.mse is None"),
        (doc | {"channel_metrics": {"u": entry | {"ssim": "1"}}},
         r"channel_metrics\.u\.ssim is '1', expected a finite number or null"),
        (doc | {"channel_metrics": "u"}, "channel_metrics is 'u', expected an object or null"),
    ]
    for changed, message in cases:
        with pytest.raises(evalfile.InvalidEvaluation, match=message):
            evalfile.channel_metrics(changed)


def test_mask_section(doc):
    valid = np.ones((8, 8), dtype=int)
    valid[-1] = 0
    padded = doc | {"mask": valid.tolist()}
    assert np.array_equal(evalfile.mask(padded), valid.astype(bool))
    assert np.array_equal(evalfile.sample(padded).valid, valid.astype(bool))
    for bad, message in ((valid[:4].tolist(), r"mask has 4 entries, expected a 8 × 8 array"),
                         ((valid * 2).tolist(), "mask holds other values than 0 and 1"),
                         ((valid * 0).tolist(), "or no 1"),
                         ("all", "mask is 'all'")):
        with pytest.raises(evalfile.InvalidEvaluation, match=message):
            evalfile.mask(doc | {"mask": bad})
