"""Loading weights: the authors' checkpoints exactly, our safetensors, and a clear refusal of anything else."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from vapsr_video.cli.main import main as cli_main
from vapsr_video.errors import ExitCode, WeightsError
from vapsr_video.imaging.image_files import StillImage, write_image
from vapsr_video.model.vapsr import ModelConfig, VapSR
from vapsr_video.model.weights import build_model, load_model, read_metadata, read_state_dict, save_weights

# name -> (scale, num_feat, num_blocks, conv_groups, variant, parameter count)
REFERENCE = {
    "VapSR_X2.pth": (2, 48, 20, 1, "vapsr", 329_236),
    "VapSR_X3.pth": (3, 48, 20, 1, "vapsr", 336_811),
    "VapSR_X4.pth": (4, 48, 21, 1, "vapsr", 342_220),
    "VapSR-S.pth": (4, 32, 11, 2, "vapsr-s", 154_956),
}


def same_weights(model: torch.nn.Module, state_dict: dict[str, torch.Tensor]) -> bool:
    loaded = model.state_dict()
    return loaded.keys() == state_dict.keys() and all(torch.equal(loaded[k], state_dict[k]) for k in state_dict)


@pytest.mark.parametrize("name", list(REFERENCE))
def test_reference_checkpoint_loads_strictly_with_its_own_configuration(reference_weights_dir: Path, name: str) -> None:
    scale, num_feat, num_blocks, groups, variant, parameters = REFERENCE[name]
    path = reference_weights_dir / name
    model = load_model(path)
    assert model.config == ModelConfig(scale=scale, num_feat=num_feat, num_blocks=num_blocks, conv_groups=groups)
    assert model.config.variant == variant
    assert sum(p.numel() for p in model.parameters()) == parameters
    # Strict: every tensor of params_ema is used and nothing is left at its initial value.
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert same_weights(model, raw["params_ema"])


def test_params_ema_is_preferred_over_params(reference_weights_dir: Path) -> None:
    raw = torch.load(reference_weights_dir / "VapSR_X2.pth", map_location="cpu", weights_only=True)
    assert not same_weights(build_model(raw["params"]), raw["params_ema"]), "the checkpoint's two sets should differ"
    model = load_model(reference_weights_dir / "VapSR_X2.pth")
    assert same_weights(model, raw["params_ema"])


def test_params_ema_preferred_in_a_file_where_they_differ(tmp_path: Path, tiny_model_factory) -> None:
    ema, plain = tiny_model_factory(seed=1).state_dict(), tiny_model_factory(seed=2).state_dict()
    path = tmp_path / "both.pth"
    torch.save({"params": plain, "params_ema": ema}, path)
    assert same_weights(load_model(path), ema)
    torch.save({"params": plain}, path)  # no EMA: the plain set is used
    assert same_weights(load_model(path), plain)


def test_bare_state_dict_loads(tmp_path: Path, tiny_model: VapSR) -> None:
    path = tmp_path / "bare.pth"
    torch.save(tiny_model.state_dict(), path)
    model = load_model(path)
    assert model.config == tiny_model.config
    assert same_weights(model, tiny_model.state_dict())


def test_safetensors_round_trip_keeps_weights_and_metadata(tmp_path: Path, tiny_model: VapSR) -> None:
    path = tmp_path / "mine.safetensors"
    save_weights(tiny_model, path, {"trained_on": "T91+BSD200", "iterations": 1000})
    metadata = read_metadata(path)
    assert metadata["format"] == "vapsr-video"
    assert metadata["scale"] == "2"
    assert metadata["trained_on"] == "T91+BSD200"
    assert metadata["iterations"] == "1000"
    model = load_model(path)
    assert model.config == tiny_model.config
    assert same_weights(model, tiny_model.state_dict())
    x = torch.rand(1, 3, 12, 10)
    with torch.inference_mode():
        assert torch.equal(model(x), tiny_model(x))


def test_safetensors_without_metadata_loads_from_shapes(tmp_path: Path, tiny_model_factory) -> None:
    model = tiny_model_factory(scale=3)
    path = tmp_path / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    assert load_model(path).scale == 3


def test_scale_that_contradicts_the_file_is_an_error(tmp_path: Path, tiny_model: VapSR) -> None:
    path = tmp_path / "x2.pth"
    torch.save(tiny_model.state_dict(), path)
    assert load_model(path, scale=2).scale == 2
    with pytest.raises(WeightsError, match=r"x2.pth: these weights upscale x2, but x4 was asked for"):
        load_model(path, scale=4)


class _Payload:
    """Unpickling this would create a marker file (if the loader executed code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def _bad_files(folder: Path, tiny_model: VapSR) -> dict[str, tuple[Path, str]]:
    """name -> (file, a phrase the error must contain)."""
    files: dict[str, tuple[Path, str]] = {}
    random_bytes = folder / "random.pth"
    random_bytes.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    files["random bytes"] = (random_bytes, "expected a VapSR checkpoint")
    empty = folder / "empty.pth"
    empty.write_bytes(b"")
    files["empty"] = (empty, "empty file")
    marker = folder / "code-was-executed"
    torch_pickle = folder / "evil.pth"
    torch.save({"params": _Payload(marker)}, torch_pickle)
    files["torch.save with code"] = (torch_pickle, "refused")
    plain_pickle = folder / "evil-legacy.pth"
    with plain_pickle.open("wb") as handle:
        pickle.dump(_Payload(marker), handle)
    files["plain pickle with code"] = (plain_pickle, "refused")
    other = folder / "resnet-ish.pth"
    torch.save({"conv1.weight": torch.zeros(8, 3, 7, 7), "fc.weight": torch.zeros(10, 8), "fc.bias": torch.zeros(10)},
               other)
    files["another architecture"] = (other, "another architecture")
    whole = folder / "whole.pth"
    torch.save({"params_ema": tiny_model.state_dict()}, whole)
    truncated = folder / "truncated.pth"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    files["truncated .pth"] = (truncated, "truncated")
    good_safetensors = folder / "whole.safetensors"
    save_weights(tiny_model, good_safetensors)
    truncated_st = folder / "truncated.safetensors"
    truncated_st.write_bytes(good_safetensors.read_bytes()[:-200])
    files["truncated .safetensors"] = (truncated_st, "not a readable safetensors file")
    not_tensors = folder / "numbers.pth"
    torch.save({"params_ema": {"conv_first.weight": 3}}, not_tensors)
    files["dict of non-tensors"] = (not_tensors, "not a dict of tensors")
    return files


BAD_KINDS = ["random bytes", "empty", "torch.save with code", "plain pickle with code", "another architecture",
             "truncated .pth", "truncated .safetensors", "dict of non-tensors"]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_weights_file_is_a_clear_weights_error(tmp_path: Path, tiny_model: VapSR, kind: str) -> None:
    path, phrase = _bad_files(tmp_path, tiny_model)[kind]
    with pytest.raises(WeightsError) as caught:
        load_model(path)
    message = str(caught.value)
    assert str(path) in message
    assert phrase in message
    assert "\n" not in message
    assert not (tmp_path / "code-was-executed").exists(), "the checkpoint's code was executed"


def test_code_carrying_pickle_is_refused_not_run(tmp_path: Path, tiny_model: VapSR) -> None:
    files = _bad_files(tmp_path, tiny_model)
    marker = tmp_path / "code-was-executed"
    for kind in ("torch.save with code", "plain pickle with code"):
        with pytest.raises(WeightsError, match=r"refused.*nothing in it was executed"):
            read_state_dict(files[kind][0])
    assert not marker.exists()
    # The payload is real: a plain unpickler runs it (harmlessly: it touches the marker).
    pickle.loads(files["plain pickle with code"][0].read_bytes())
    assert marker.exists()


def test_missing_weights_file(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="no such weights file"):
        load_model(tmp_path / "nothing.pth")


@pytest.fixture
def small_png(tmp_path: Path) -> Path:
    path = tmp_path / "in.png"
    write_image(path, StillImage(rgb=np.full((8, 10, 3), 128, np.uint8)))
    return path


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_cli_reports_bad_weights_in_one_line_with_exit_code_5(
    tmp_path: Path, tiny_model: VapSR, small_png: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    path, phrase = _bad_files(tmp_path, tiny_model)[kind]
    output = tmp_path / "out.png"
    code = cli_main([str(small_png), str(output), "--weights", str(path)])
    err = capsys.readouterr().err
    assert code == ExitCode.BAD_WEIGHTS == 5
    assert err.count("\n") == 1 and err.startswith("vapsr-video: error: ")
    assert str(path) in err and phrase in err
    assert not output.exists()
    assert not (tmp_path / "code-was-executed").exists()


def test_cli_in_a_real_process_prints_no_traceback(tmp_path: Path, tiny_model: VapSR, small_png: Path,
                                                   run_cli) -> None:
    path, _ = _bad_files(tmp_path, tiny_model)["torch.save with code"]
    result = run_cli(small_png, tmp_path / "out.png", "--weights", path)
    assert result.returncode == 5
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0
    assert "refused" in result.stderr
    assert not (tmp_path / "code-was-executed").exists()
    assert not (tmp_path / "out.png").exists()
