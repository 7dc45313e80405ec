"""Model artifacts are data, not code: a directory with `manifest.json` and one `.npy` per array.

Arrays load with `allow_pickle=False` and memory-mapped, so processes share one copy. The
manifest names the format and its version, each component's class and parameters, the blend
weights, and whatever the trainer records (event weights, data window, metrics, times).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.base import Recommender
from models.blend import Blend
from models.content import ContentSimilarity
from models.factorization import ALS, BPR
from models.neighbours import CoPurchase, ItemKNN
from models.popularity import BuyAgain, Popularity

FORMAT = "shopcast-model"
FORMAT_VERSION = 1
SERVING = "serving."
MODEL_CLASSES: dict[str, type[Recommender]] = {
    cls.__name__: cls for cls in (ALS, BPR, ItemKNN, CoPurchase, Popularity, BuyAgain, ContentSimilarity)
}


class ArtifactError(ValueError):
    """The directory is not a shopcast model this code can read."""


@dataclass
class ModelBundle:
    """A fitted blend with its id maps (row number -> id), the trainer's metadata, and the
    arrays serving answers from (precomputed candidates, histories; see training/serving.py)."""

    blend: Blend
    user_ids: np.ndarray
    item_ids: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)
    serving: dict[str, np.ndarray] = field(default_factory=dict)


def save(bundle: ModelBundle, directory: Path) -> None:
    """Write the bundle into `directory` (which must not exist yet)."""
    arrays_dir = directory / "arrays"
    arrays_dir.mkdir(parents=True)
    arrays = {
        "user_ids": np.asarray(bundle.user_ids, dtype=str),
        "item_ids": np.asarray(bundle.item_ids, dtype=str),
        **bundle.blend.arrays(),
        **{f"{SERVING}{name}": array for name, array in bundle.serving.items()},
    }
    for name, array in arrays.items():
        np.save(arrays_dir / f"{name}.npy", np.ascontiguousarray(array), allow_pickle=False)
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "class": "Blend",
        "weights": bundle.blend.weights,
        "components": {
            name: {"class": type(c).__name__, "params": c.get_params()}
            for name, c in bundle.blend.components.items()
        },
        "arrays": sorted(arrays),
        **bundle.metadata,
    }
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))


def read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / "manifest.json"
    try:
        manifest: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        raise ArtifactError(f"{directory} has no manifest.json: not a shopcast model") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArtifactError(f"{path} is not a shopcast model manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            f"{path} has format version {manifest.get('format_version')}; this code reads {FORMAT_VERSION}"
        )
    return manifest


def load(directory: Path, *, mmap: bool = True) -> ModelBundle:
    """Read a bundle; arrays are memory-mapped unless `mmap` is false. Never unpickles."""
    manifest = read_manifest(directory)
    arrays: dict[str, np.ndarray] = {}
    for name in manifest.get("arrays", []):
        path = directory / "arrays" / f"{name}.npy"
        try:
            arrays[name] = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"cannot read array {name!r} of {directory}: {exc}") from None
    components: dict[str, Recommender] = {}
    try:
        for name, spec in manifest["components"].items():
            cls = MODEL_CLASSES.get(spec["class"])
            if cls is None:
                raise ArtifactError(f"unknown model class {spec['class']!r} in {directory}")
            prefix = f"{name}."
            own = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
            components[name] = cls.from_arrays(spec["params"], own)
        blend = Blend(components, weights=manifest["weights"])
        blend.n_items_ = int(arrays["n_items"][0])
        user_ids, item_ids = arrays["user_ids"], arrays["item_ids"]
    except (KeyError, TypeError) as exc:
        raise ArtifactError(f"{directory} is incomplete or foreign: missing {exc}") from None
    known = {"format", "format_version", "class", "weights", "components", "arrays"}
    metadata = {k: v for k, v in manifest.items() if k not in known}
    serving = {k[len(SERVING) :]: v for k, v in arrays.items() if k.startswith(SERVING)}
    return ModelBundle(blend, user_ids, item_ids, metadata, serving)
