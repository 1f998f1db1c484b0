"""The models vapsr-video knows by name, the per-user cache, and turning a name into a file.

Two kinds of known model:

* **bundled**: trained by this project, shipped in ``vapsr_video/bundled_weights``
  (``vapsr-x2``, ``vapsr-x3``, ``vapsr-x4``, ``vapsr-s-x4``);
* **authors'**: the VapSR authors' checkpoints (``VapSR_X2``, ``VapSR_X3``,
  ``VapSR_X4``, ``VapSR-S``). They state no licence, so they are not shipped;
  ``vapsr-video weights fetch`` downloads them from the authors' repository,
  pinned to a commit and to each file's SHA-256, into the cache.

Everywhere a weights file is accepted, a known name is accepted too
(:func:`resolve_weights`); an existing file of that name wins over the name.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from vapsr_video.errors import WeightsError
from vapsr_video.user_cache import cache_dir

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "bundled_weights"
AUTHORS_REPOSITORY = "zhoumumu/VapSR"
AUTHORS_COMMIT = "404c584e21ed92b3c9ddc3da8272d366c978148f"  # 2022-11-14, the newest; files unchanged since
AUTHORS_LICENCE = "none stated; taken from the authors"
BUNDLED_LICENCE = "MIT (this project)"

Quality = dict[str, tuple[float, float]]  # benchmark set -> (PSNR dB, SSIM), Y channel, border = scale


@dataclass(frozen=True)
class KnownModel:
    """A model a user can name instead of passing a file."""

    name: str
    variant: str
    scale: int
    file_name: str
    bundled: bool
    sha256: str = ""  # pinned digest (authors' files only)
    size: int = 0  # bytes (authors' files only)
    quality: Quality = field(default_factory=dict)  # authors' only; bundled ones keep theirs in metadata

    @property
    def licence(self) -> str:
        return BUNDLED_LICENCE if self.bundled else AUTHORS_LICENCE


# The authors' numbers as this project measures them (MATLAB-bicubic LR, Y channel,
# border = scale); they are within 0.03 dB of the x4 figures the authors published.
AUTHORS_MODELS: tuple[KnownModel, ...] = (
    KnownModel("VapSR_X2", "vapsr", 2, "VapSR_X2.pth", False,
               "6cbe6af3c18c16c8a2c9b83f484761693884f972e29a4a20e84f64b84d0a10cc", 2785249,
               {"Set5": (38.1069, 0.96087), "Set14": (33.7315, 0.91958), "B100": (32.2890, 0.90115)}),
    KnownModel("VapSR_X3", "vapsr", 3, "VapSR_X3.pth", False,
               "5c0052ea719174ea43e55f337655196fa1564ba2e0b04c3220a1312a18405a09", 2845793,
               {"Set5": (34.5251, 0.92809), "Set14": (30.5151, 0.84535), "B100": (29.2041, 0.80819)}),
    KnownModel("VapSR_X4", "vapsr", 4, "VapSR_X4.pth", False,
               "fa6b84a174d8994eaaaa38156c9d751109b27c833bceeeb6018523e4d8a48ea0", 2896561,
               {"Set5": (32.3997, 0.89736), "Set14": (28.7707, 0.78521), "B100": (27.6799, 0.73971)}),
    KnownModel("VapSR-S", "vapsr-s", 4, "VapSR-S.pth", False,
               "4ca434fcdd4abb327e281b3f7930fe9802b36d3d6acfbe785843fee5db7e0cfe", 1324433,
               {"Set5": (32.1662, 0.89468), "Set14": (28.6446, 0.78260), "B100": (27.6001, 0.73718)}),
)

BUNDLED_MODELS: tuple[KnownModel, ...] = tuple(
    KnownModel(f"{variant}-x{scale}", variant, scale, f"{variant}-x{scale}.safetensors", True)
    for variant, scale in (("vapsr", 2), ("vapsr", 3), ("vapsr", 4), ("vapsr-s", 4))
)

KNOWN_MODELS: tuple[KnownModel, ...] = BUNDLED_MODELS + AUTHORS_MODELS


def find_model(name: str) -> KnownModel | None:
    """The known model called ``name`` (any case, with or without its file extension)."""
    wanted = name.strip().lower()
    for model in KNOWN_MODELS:
        if wanted in (model.name.lower(), model.file_name.lower()):
            return model
    return None


def model_path(model: KnownModel) -> Path:
    """Where ``model``'s file is (bundled) or belongs (authors': in the cache, whether present or not)."""
    if model.bundled:
        return BUNDLED_DIR / model.file_name
    return cache_dir() / "weights" / model.file_name


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def cache_state(model: KnownModel) -> str:
    """``"bundled"``, ``"cached"``, ``"missing"`` or ``"corrupt"`` (present but not the pinned file)."""
    path = model_path(model)
    if model.bundled:
        return "bundled" if path.is_file() else "missing"
    if not path.is_file():
        return "missing"
    try:
        matches = path.stat().st_size == model.size and file_sha256(path) == model.sha256
    except OSError:
        return "corrupt"
    return "cached" if matches else "corrupt"


def fetch_hint(model: KnownModel) -> str:
    return f"run 'vapsr-video weights fetch {model.name}' (or pass --weights FILE)"


def resolve_weights(spec: str | Path, label: str | None = None) -> Path:
    """The file ``spec`` means: an existing file as is, else a known model's file.

    A known name whose file is not in the cache, or whose cached file is not the
    pinned one, is a :class:`WeightsError` saying how to fetch it. Anything else
    comes back unchanged, for the loader to report as a missing file.
    ``label`` names where the spec came from in messages (e.g. an environment variable).
    """
    path = Path(spec)
    if path.is_file():
        return path
    text = str(spec)
    model = find_model(text) if os.sep not in text and "/" not in text else None
    if model is None:
        if not path.suffix and "/" not in text and os.sep not in text and not path.exists():
            raise WeightsError(f"{text}: no such weights file, nor a known model name "
                               "(see 'vapsr-video weights list')")
        return path
    label = label or text
    state = cache_state(model)
    location = model_path(model)
    if state == "missing" and model.bundled:
        raise WeightsError(f"{label}: no bundled weights {model.file_name} in this installation; "
                           "pass --weights FILE")
    if state == "missing":
        raise WeightsError(f"{label}: the authors' checkpoint {model.name} is not downloaded yet; "
                           f"{fetch_hint(model)}; it goes to {location}")
    if state == "corrupt":
        raise WeightsError(f"{label}: {location} is not the pinned {model.file_name} (size or SHA-256 differs); "
                           f"delete it and {fetch_hint(model)}")
    return location
