"""sdkd.evaluate.format: the writer, and each section parser on good and broken sections
(the whole-file check runs on real files in test_evaluate.py)."""

from __future__ import annotations

import copy
import json
import math

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
    assert evalfile.read_evaluation(path) == written
    assert leftovers(tmp_path) == ["eval/run.json"]
    with pytest.raises(evalfile.InvalidEvaluation, match=rf"{path}: metrics\.psnr is None"):
        evalfile.metrics(written, path)


def test_sections(doc):
    assert evalfile.metrics(doc, "x.json") == {k: doc["metrics"][k] for k in evalfile.METRICS}
    assert evalfile.per_lead_time(doc).tolist() == doc["per_lead_time"]["mse"]
    assert evalfile.per_lead_time(doc, "ssim").tolist() == doc["per_lead_time"]["ssim"]
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


@pytest.mark.parametrize("section, broken", [
    ("per_lead_time", {"mse": [1.0, None]}),
    ("per_lead_time", [1.0]),
    ("spectrum", {"k": [0, 1], "prediction": [1, 2], "truth": [1, 2], "error": [1]}),
    ("spectrum", None),
    ("band_errors", {"cutoffs": [4.0, 8.0], "mse": [1.0, 2.0]}),  # K = len(cutoffs) + 1
    ("band_errors", {"cutoffs": "4", "mse": [1.0, 2.0]}),
    ("sample", {"truth": [[[1.0]]], "prediction": [[[1.0, 2.0]]]}),
    ("sample", {"truth": [[1.0]], "prediction": [[1.0]]}),  # not (L, H, W)
])
def test_a_broken_section_is_none(doc, section, broken):
    parse = getattr(evalfile, section)
    assert parse(doc | {section: broken}) is None


def test_lenient_parts_of_sections(doc):
    bands = dict(doc["band_errors"], truth_energy=[1.0])
    assert evalfile.band_errors(doc | {"band_errors": bands}).truth_energy is None
    sample = dict(doc["sample"], lead_times="first and last", channel=3)
    parsed = evalfile.sample(doc | {"sample": sample})
    assert parsed.lead_times == [1, 2] and parsed.channel is None
    values, lacking = evalfile.efficiency(doc | {"efficiency": {"parameters": 5}})
    assert values["parameters"] == 5.0 and values["latency_ms"] is None
    assert "efficiency.inference.latency_ms" in lacking and len(lacking) == 8


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
