"""Loading weights: the authors' checkpoints exactly, our safetensors, and a clear refusal of anything else."""

from __future__ import annotations

import json
import os
import pickle
import resource
import struct
import subprocess
import sys
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


# --- hostile files: refused before anything large is allocated (issue #9) ------------------------------


def write_raw_safetensors(path: Path, entries: dict[str, tuple[str, tuple[int, ...], bytes]]) -> Path:
    """A safetensors file written by hand, so it can declare what no library would write."""
    header, data, offset = {}, b"", 0
    for key, (dtype, shape, payload) in entries.items():
        header[key] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(payload)]}
        data += payload
        offset += len(payload)
    blob = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + data)
    return path


def huge_zero_size_file(path: Path, num_feat: int = 20_000) -> Path:
    """The issue's attack: a 2 MB file whose declared shapes make the network ask for 14 GB.

    conv_first carries real data (so the width is believable); every other tensor
    is zero-size, so it costs nothing in the file but still declares its shape.
    """
    return write_raw_safetensors(path, {
        "conv_first.weight": ("F32", (num_feat, 3, 3, 3), bytes(num_feat * 27 * 4)),
        "body.0.proj_1.weight": ("F32", (64, num_feat, 1, 0), b""),
        "conv_body.weight": ("F32", (num_feat, num_feat, 3, 0), b""),
        "upsampler.2.weight": ("F32", (12, 56, 3, 0), b""),
    })


def _state_dict_as(model: VapSR, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    return {key: tensor.detach().to(dtype).contiguous() for key, tensor in model.state_dict().items()}


def _hostile_files(folder: Path, tiny_model: VapSR) -> dict[str, tuple[Path, str]]:
    """name -> (file, a phrase the refusal must contain)."""
    files: dict[str, tuple[Path, str]] = {}
    files["huge zero-size shapes"] = (huge_zero_size_file(folder / "huge.safetensors"), "zero-size dimension")
    full = {key: tensor.contiguous() for key, tensor in VapSR(ModelConfig(scale=2)).state_dict().items()}
    full["conv_body.weight"] = torch.empty(48, 0, 3, 3)
    for suffix in ("safetensors", "pth"):
        path = folder / f"zero-dim.{suffix}"
        save_file(full, str(path)) if suffix == "safetensors" else torch.save(full, path)
        files[f"(48,0,3,3) {suffix}"] = (path, "zero-size dimension")
    for dtype, phrase in ((torch.int32, "dtype I32"), (torch.bool, "dtype BOOL"), (torch.float64, "dtype F64")):
        tensors = _state_dict_as(tiny_model, dtype)
        save_file(tensors, str(folder / f"{dtype}.safetensors"))
        files[f"{dtype} safetensors"] = (folder / f"{dtype}.safetensors", phrase)
        torch.save({"params_ema": tensors}, folder / f"{dtype}.pth")
        torch_name = str(dtype).removeprefix("torch.")
        files[f"{dtype} pth"] = (folder / f"{dtype}.pth", f"dtype {torch_name}")
    with_nan = _state_dict_as(tiny_model, torch.float32)
    with_nan["body.0.proj_2.weight"][0, 0, 0, 0] = float("nan")
    save_file(with_nan, str(folder / "nan.safetensors"))
    files["NaN safetensors"] = (folder / "nan.safetensors", "NaN or infinite")
    with_nan["body.0.proj_2.weight"][0, 0, 0, 0] = float("inf")
    torch.save(with_nan, folder / "inf.pth")
    files["infinity pth"] = (folder / "inf.pth", "NaN or infinite")
    header_bomb = folder / "header.safetensors"
    header_bomb.write_bytes(struct.pack("<Q", 2**40) + b"{}")
    files["absurd header length"] = (header_bomb, "safetensors header of")
    lying = write_raw_safetensors(folder / "lying.safetensors",
                                  {"conv_first.weight": ("F32", (2**31, 2**31, 3, 3), bytes(16))})
    files["shape larger than its bytes"] = (lying, "declares shape")
    return files


HOSTILE_KINDS = ["huge zero-size shapes", "(48,0,3,3) safetensors", "(48,0,3,3) pth", "torch.int32 safetensors",
                 "torch.int32 pth", "torch.bool safetensors", "torch.bool pth", "torch.float64 safetensors",
                 "torch.float64 pth", "NaN safetensors", "infinity pth", "absurd header length",
                 "shape larger than its bytes"]


@pytest.mark.parametrize("kind", HOSTILE_KINDS)
def test_cli_refuses_hostile_weights_in_one_line_with_exit_code_5(
    tmp_path: Path, tiny_model: VapSR, small_png: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    path, phrase = _hostile_files(tmp_path, tiny_model)[kind]
    output = tmp_path / "out.png"
    code = cli_main([str(small_png), str(output), "--weights", str(path)])  # any traceback would fail the test
    err = capsys.readouterr().err
    assert code == ExitCode.BAD_WEIGHTS == 5
    assert err.count("\n") == 1 and err.startswith("vapsr-video: error: "), err
    assert str(path) in err and phrase in err, err
    assert not output.exists()


def test_huge_declared_shapes_allocate_nothing(tmp_path: Path, small_png: Path) -> None:
    """In a child limited to 4 GB of address space (torch itself maps about 3), the file must be refused,
    not run out of memory: the network it declares would need 14 GB."""
    path = huge_zero_size_file(tmp_path / "huge.safetensors")
    assert path.stat().st_size < 3 * 1024 * 1024
    limit = 4 * 1024**3

    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    result = subprocess.run([sys.executable, "-m", "vapsr_video", str(small_png), str(tmp_path / "out.png"),
                             "--weights", str(path)], capture_output=True, text=True, timeout=300,
                            preexec_fn=limit_memory, cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 5, result.stderr
    assert "Traceback" not in result.stderr and "MemoryError" not in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "zero-size dimension" in result.stderr


def test_a_network_wider_than_any_vapsr_is_refused_from_its_declared_shapes() -> None:
    from vapsr_video.model.validation import check_declared_shapes, expected_shapes

    shapes = expected_shapes(ModelConfig(scale=2, num_feat=512, num_blocks=2))  # built on the meta device
    with pytest.raises(WeightsError, match="num_feat 512 is more than any VapSR uses"):
        check_declared_shapes(shapes, "wide.safetensors")
    shapes = expected_shapes(ModelConfig(scale=2, num_feat=16, num_blocks=65))
    with pytest.raises(WeightsError, match="num_blocks 65"):
        check_declared_shapes(shapes, "deep.safetensors")
    shapes = dict(expected_shapes(ModelConfig(scale=2, num_feat=16, num_blocks=2)))
    shapes["body.1.proj_2.weight"] = (16, 4096, 1, 1)  # one tensor off: would make load_state_dict fail late
    with pytest.raises(WeightsError, match=r"body.1.proj_2.weight has shape \(16, 4096, 1, 1\)"):
        check_declared_shapes(shapes, "odd.safetensors")


def test_pth_archive_that_unpacks_past_the_bound_is_refused(tmp_path: Path, tiny_model: VapSR) -> None:
    """Zip records can be compressed: a small file holding a record that unpacks to 260 MB never reaches
    torch.load (the bound is on what the archive's directory says it unpacks to)."""
    import zipfile

    bomb = tmp_path / "bomb.pth"
    torch.save(tiny_model.state_dict(), bomb)
    with zipfile.ZipFile(bomb) as archive:
        prefix = archive.infolist()[0].filename.split("/")[0]
    with (zipfile.ZipFile(bomb, "a", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive,
          archive.open(f"{prefix}/data/999", "w", force_zip64=True) as record):
        zeros = bytes(1 << 20)
        for _ in range(260):
            record.write(zeros)
    assert bomb.stat().st_size < 2 * 1024 * 1024
    with pytest.raises(WeightsError, match="the archive unpacks to"):
        load_model(bomb)
