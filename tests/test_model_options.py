"""``ModelOptions`` (the one record of the model choice every front end builds from) and
the parsing of a batch's device list."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from vapsr_video.batch.run import options_digest
from vapsr_video.errors import UsageError
from vapsr_video.inference.devices import parse_device_list
from vapsr_video.inference.options import ModelOptions
from vapsr_video.inference.upscaler import Upscaler
from vapsr_video.model.vapsr import VapSR
from vapsr_video.model.weights import save_weights
from vapsr_video.video.encoder import EncodeOptions

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def weights_file(tmp_path: Path, tiny_model: VapSR) -> Path:
    path = tmp_path / "tiny-x2.safetensors"
    save_weights(tiny_model, path)
    return path


def digest_in_a_fresh_interpreter(options: ModelOptions) -> str:
    code = ("import pickle, sys; options = pickle.loads(bytes.fromhex(sys.argv[1])); "
            "print(options.digest())")
    result = subprocess.run([sys.executable, "-c", code, pickle.dumps(options).hex()], capture_output=True,
                            text=True, cwd=REPO_ROOT, timeout=120, check=True,
                            env={**os.environ, "PYTHONHASHSEED": "12345"})
    return result.stdout.strip()


def test_digest_is_the_same_after_pickling_and_in_another_process(weights_file: Path) -> None:
    options = ModelOptions(weights=str(weights_file), scale=2, precision="fp32", tile=64, tile_overlap=16)
    copy = pickle.loads(pickle.dumps(options))
    assert copy == options
    assert copy.digest() == options.digest()
    assert digest_in_a_fresh_interpreter(options) == options.digest()


@pytest.mark.parametrize("change", [
    {"variant": "vapsr-s"}, {"scale": 4}, {"precision": "bf16"}, {"tile": 128}, {"tile_overlap": 8},
    {"engine": "compile"}, {"weights": "other.safetensors"},
])
def test_digest_changes_with_every_option_that_shapes_the_output(change: dict) -> None:
    options = ModelOptions(scale=2)
    assert replace(options, **change).digest() != options.digest()


def test_digest_ignores_the_device_and_the_spelling_of_the_weights_path(weights_file: Path) -> None:
    options = ModelOptions(weights=str(weights_file))
    assert replace(options, device="cpu").digest() == options.digest()
    assert replace(options, device="cuda:1").digest() == options.digest()
    assert ModelOptions(weights=weights_file) == options  # a Path and its string are the same choice


def test_digest_notices_a_weights_file_replaced_in_place(weights_file: Path, tiny_model_factory) -> None:
    options = ModelOptions(weights=str(weights_file))
    before = options.digest()
    save_weights(tiny_model_factory(scale=2, seed=1), weights_file)
    stat = weights_file.stat()
    os.utime(weights_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert options.digest() != before


def test_batch_fingerprints_of_earlier_versions_stay_valid() -> None:
    # Computed by the batch command before ModelOptions existed (default options; x3, bf16,
    # 64-pixel tiles, CRF 20, .mkv): a finished archive must not look changed after an upgrade.
    assert options_digest(ModelOptions(), EncodeOptions(), None) == "5a67b9726a8e6fe3"
    assert options_digest(ModelOptions(scale=3, precision="bf16", tile=64), EncodeOptions(crf=20),
                          "mkv") == "0b627266b6f08d21"


def test_build_gives_an_upscaler_with_these_settings(weights_file: Path, tiny_model: VapSR) -> None:
    options = ModelOptions(weights=str(weights_file), precision="bf16", tile=32, tile_overlap=8, device="cpu")
    upscaler = options.build()
    assert upscaler.scale == 2
    assert (upscaler.device, upscaler.dtype) == (torch.device("cpu"), torch.bfloat16)
    assert (upscaler.tile, upscaler.tile_overlap) == (32, 8)
    frames = torch.rand(1, 3, 40, 48)  # larger than a tile: the tiled path runs
    same_by_hand = Upscaler(model=tiny_model, device="cpu", precision="bf16", tile=32, tile_overlap=8)
    assert torch.equal(upscaler(frames), same_by_hand(frames))  # and the network is the one in the file


def test_build_on_another_device_than_the_record_names(weights_file: Path) -> None:
    options = ModelOptions(weights=str(weights_file), device="cuda:7")  # never used: build() is told
    assert options.build("cpu").device == torch.device("cpu")
    with pytest.raises(UsageError, match="cuda:7"):
        options.build()


def test_an_unknown_engine_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown engine 'jit'"):
        ModelOptions(engine="jit")


def test_build_refuses_weights_of_another_scale(weights_file: Path) -> None:
    from vapsr_video.errors import WeightsError

    with pytest.raises(WeightsError, match="x2"):
        ModelOptions(weights=str(weights_file), scale=4).build("cpu")


# ---- device lists (vapsr-video batch --devices) ----------------------------------------

def test_device_list_names_one_worker_per_entry() -> None:
    assert parse_device_list("cpu,cpu") == ["cpu", "cpu"]
    assert parse_device_list("cuda:0, cuda:1") == ["cuda:0", "cuda:1"]
    assert parse_device_list(" cpu , ") == ["cpu"]


def test_an_empty_device_list_falls_back_to_the_model_device_then_the_machine() -> None:
    assert parse_device_list(None, "cpu") == ["cpu"]
    assert parse_device_list("", "cuda:1") == ["cuda:1"]
    expected = [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else ["cpu"]
    assert parse_device_list(None) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("gpu", "unknown device 'gpu'"), ("cpu,tpu:0", "unknown device 'tpu:0'"), (" , ", "names no device"),
])
def test_bad_device_lists_are_usage_errors(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_device_list(text)


def test_cuda_means_every_visible_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    # No GPU on the test machines: the CUDA runtime's answers are faked, the parsing is real.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    assert parse_device_list("cuda") == ["cuda:0", "cuda:1", "cuda:2"]
    assert parse_device_list("cuda,cpu") == ["cuda:0", "cuda:1", "cuda:2", "cpu"]
    assert parse_device_list(None) == ["cuda:0", "cuda:1", "cuda:2"]


def test_cuda_without_a_gpu_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UsageError, match="no CUDA device"):
        parse_device_list("cuda")
