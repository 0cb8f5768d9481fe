"""Representation collapse of a model on a prompt set: pooled hidden states, metrics, caching.

`model_geometry(lm, prompts, settings)` runs the prompts through the model once, keeps the
pooled hidden state of every layer, scores every layer with `core.geometry`, and adds
bootstrap intervals at the chosen layer. Results are cached on disk under
`$ALIGNMENT_LAB_HOME/cache/collapse/`, keyed by a fingerprint of the weights, the prompts and
the settings, so a second request with the same inputs only reads a small JSON file.

The prompts go in as plain text, without a chat template, so every model reads the same
tokens whatever template it has.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import uuid
import weakref
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from core import geometry, inference, paths
from core.models import LoadedModel

POOLINGS = {
    "last": "the last prompt token",
    "mean": "the mean over the prompt's tokens, leaving out position 0",
}
CACHE_VERSION = 1  # bump when the stored format or a metric's definition changes
_FINGERPRINTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> weights hash


@dataclass(frozen=True)
class CollapseSettings:
    """Settings of one geometry measurement. Every field but `batch_size` is in the cache key."""

    pooling: str = "last"  # a key of POOLINGS
    depth: float = 1.0  # layer as a share of the model's depth: 0 embeddings, 1 final layer
    n_boot: int = 200  # bootstrap resamples over prompts for the intervals
    seed: int = 0  # seeds the bootstrap and the Gaussian null
    batch_size: int = 32  # prompts per forward pass; does not change the results
    # Run the forward pass under bfloat16 autocast: about 40% less time on CPUs with bf16 units.
    # Off by default because it moves some metrics by more than their intervals: on SmolLM2
    # with mean pooling, the participation ratio at layer 29 went from 17.0 to 20.0.
    bf16: bool = False

    def validate(self) -> None:
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling={self.pooling!r} is invalid; use one of {list(POOLINGS)}.")
        if not 0.0 <= self.depth <= 1.0:
            raise ValueError(f"depth={self.depth} is invalid; use a share from 0.0 to 1.0.")
        if self.n_boot < 2:
            raise ValueError(f"n_boot={self.n_boot} is invalid; use 2 or more (200 is usual).")
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size} is invalid; use 1 or more.")

    def layer_for(self, n_layer: int) -> int:
        """Return the hidden-state index (0 embeddings .. n_layer final) for this depth."""
        return int(round(self.depth * n_layer))


@dataclass
class ModelGeometry:
    """Geometry of one model's pooled hidden states on N prompts.

    `table` has one row per metric (`metric`, `value`, `low`, `high`) at `layer`;
    `layer_curve` has `layer`, `depth`, `metric`, `value` for every layer, without intervals;
    `spectrum` is the normalised singular values at `layer`. `states_path` is a .npy file of
    shape (n_layer + 1, N, D) with the pooled states, read lazily by `points`.
    """

    model: str
    n_layer: int
    dim: int
    n_prompts: int
    layer: int
    pooling: str
    table: pd.DataFrame
    layer_curve: pd.DataFrame
    spectrum: np.ndarray
    states_path: Path | None = None

    def points(self, layer: int | None = None) -> np.ndarray:
        """Return the pooled states at `layer` (default: the measured layer), shape (N, D)."""
        if self.states_path is None:
            raise ValueError(f"No stored hidden states for {self.model}; measure it with caching.")
        states = np.load(self.states_path, mmap_mode="r")  # (L+1, N, D), read on demand
        return np.asarray(states[self.layer if layer is None else layer])

    def to_dict(self) -> dict:
        return {
            "model": self.model, "n_layer": self.n_layer, "dim": self.dim,
            "n_prompts": self.n_prompts, "layer": self.layer, "pooling": self.pooling,
            "table": self.table.to_dict(orient="records"),
            "layer_curve": self.layer_curve.to_dict(orient="records"),
            "spectrum": self.spectrum.tolist(),
            "states_path": str(self.states_path) if self.states_path else None,
        }

    @classmethod
    def from_dict(cls, data: dict) -> ModelGeometry:
        return cls(
            model=data["model"], n_layer=data["n_layer"], dim=data["dim"],
            n_prompts=data["n_prompts"], layer=data["layer"], pooling=data["pooling"],
            table=pd.DataFrame(data["table"]), layer_curve=pd.DataFrame(data["layer_curve"]),
            spectrum=np.asarray(data["spectrum"]),
            states_path=Path(data["states_path"]) if data["states_path"] else None,
        )


# Cache keys and files

def model_fingerprint(lm: LoadedModel) -> str:
    """Return a hash of the model's config and weights, so a retrained model gets a new key.

    Each parameter contributes its name, shape and fp32 sum, which costs one pass over the
    weights and changes with any training step. The hash is remembered per model object:
    loaded models are never changed in place (training works on a copy), so it stays valid.
    """
    known = _FINGERPRINTS.get(lm.model)
    if known is None:
        known = _FINGERPRINTS[lm.model] = _hash_weights(lm)
    return known


def _hash_weights(lm: LoadedModel) -> str:
    digest = hashlib.sha256()
    digest.update(type(lm.model).__name__.encode())
    digest.update(lm.model.config.to_json_string(use_diff=False).encode())
    digest.update(str(len(lm.tokenizer)).encode())
    with torch.no_grad():
        for name, param in lm.model.named_parameters():
            total = float(param.float().sum())
            digest.update(f"{name}{tuple(param.shape)}{total:.8e}".encode())
    return digest.hexdigest()


def cache_key(data) -> str:
    """Return a 24-character hash of JSON-ready data, used in cache file names."""
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:24]


def cache_root() -> Path:
    """Return the folder of collapse and diversity results, creating it when missing."""
    root = paths.cache_dir() / "collapse"
    root.mkdir(parents=True, exist_ok=True)
    return root


def write_atomic(path: Path, write) -> None:
    """Call `write(handle)` on a temporary file beside `path`, then rename it over `path`."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as handle:
            write(handle)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# Hidden states

def _forward_pooled(lm: LoadedModel, prompts: list[str], settings: CollapseSettings):
    # The transformer body alone gives the same hidden states without the LM head, which
    # costs about a fifth of SmolLM2's forward pass. The copy leaves the shared model as is.
    body = dataclasses.replace(lm, model=lm.model.base_model)
    device_type = lm.device.type if lm.device.type in ("cpu", "cuda") else "cpu"
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=settings.bf16):
        pooled = inference.hidden_states(body, prompts, batch_size=settings.batch_size)
    return {key: value.float().numpy() for key, value in pooled.items()}


def pooled_states(lm: LoadedModel, prompts: list[str], settings: CollapseSettings,
                  fingerprint: str | None = None) -> dict[str, Path]:
    """Compute (or find on disk) the pooled states of every layer; return their .npy paths.

    Each file holds an array of shape (n_layer + 1, N, D) in fp32, one per pooling.
    """
    fingerprint = fingerprint or model_fingerprint(lm)
    key = cache_key([CACHE_VERSION, fingerprint, prompts, settings.bf16])
    files = {pooling: cache_root() / f"states-{key}-{pooling}.npy" for pooling in POOLINGS}
    if all(path.is_file() for path in files.values()):
        return files
    pooled = _forward_pooled(lm, prompts, settings)
    for pooling, path in files.items():
        write_atomic(path, lambda handle, array=pooled[pooling]: np.save(handle, array))
    return files


def _layer_curve(states: np.ndarray) -> pd.DataFrame:
    n_layer = states.shape[0] - 1
    per_layer = geometry.map_clouds(geometry.compute_metrics, list(states))
    rows = []
    for layer, metrics in enumerate(per_layer):
        for metric, value in metrics.items():
            rows.append({"layer": layer, "depth": layer / max(n_layer, 1), "metric": metric,
                         "value": value})
    return pd.DataFrame(rows)


# Measurements

def _check_prompts(prompts: list[str]) -> None:
    if len(prompts) < 2:
        raise ValueError(f"Got {len(prompts)} prompts; geometry needs at least 2 (256 is usual).")
    empty = [i for i, text in enumerate(prompts) if not text.strip()]
    if empty:
        raise ValueError(f"Prompts at positions {empty[:5]} are empty; remove them.")


def model_geometry(lm: LoadedModel, prompts: list[str],
                   settings: CollapseSettings | None = None) -> ModelGeometry:
    """Measure the geometry of `lm`'s hidden states on `prompts`, using the disk cache.

    The forward pass runs once per model and prompt list; changing the pooling, depth or
    bootstrap settings afterwards only re-scores the stored states.
    """
    settings = settings or CollapseSettings()
    settings.validate()
    _check_prompts(prompts)
    fingerprint = model_fingerprint(lm)
    key = cache_key([CACHE_VERSION, fingerprint, prompts, asdict(settings) | {"batch_size": 0}])
    report_path = cache_root() / f"geometry-{key}.json"
    if report_path.is_file():
        cached = ModelGeometry.from_dict(json.loads(report_path.read_text(encoding="utf-8")))
        if cached.states_path is not None and cached.states_path.is_file():
            cached.model = lm.name
            return cached
    files = pooled_states(lm, prompts, settings, fingerprint)
    states = np.load(files[settings.pooling])  # (L+1, N, D)
    n_layer = states.shape[0] - 1
    layer = settings.layer_for(n_layer)
    result = ModelGeometry(
        model=lm.name, n_layer=n_layer, dim=states.shape[2], n_prompts=states.shape[1],
        layer=layer, pooling=settings.pooling,
        table=geometry.bootstrap_metrics(states[layer], settings.n_boot, settings.seed),
        layer_curve=_layer_curve(states),
        spectrum=geometry.normalized_singular_values(states[layer]),
        states_path=files[settings.pooling],
    )
    text = json.dumps(result.to_dict())
    write_atomic(report_path, lambda handle: handle.write(text.encode("utf-8")))
    return result


def null_geometry(n_prompts: int, dim: int, settings: CollapseSettings | None = None
                  ) -> ModelGeometry:
    """Measure an isotropic Gaussian cloud of the same shape (N, D): the no-structure null.

    Cached on disk like a model; its layer curve is one flat "layer" 0.
    """
    settings = settings or CollapseSettings()
    settings.validate()
    key = cache_key([CACHE_VERSION, "null", n_prompts, dim, settings.n_boot, settings.seed])
    report_path = cache_root() / f"null-{key}.json"
    if report_path.is_file():
        return ModelGeometry.from_dict(json.loads(report_path.read_text(encoding="utf-8")))
    points = geometry.gaussian_null(n_prompts, dim, seed=settings.seed)
    result = ModelGeometry(
        model=f"Gaussian null (D={dim})", n_layer=0, dim=dim, n_prompts=n_prompts,
        layer=0, pooling="none",
        table=geometry.bootstrap_metrics(points, settings.n_boot, settings.seed),
        layer_curve=_layer_curve(points[None]),
        spectrum=geometry.normalized_singular_values(points),
    )
    text = json.dumps(result.to_dict())
    write_atomic(report_path, lambda handle: handle.write(text.encode("utf-8")))
    return result


def metric_table(results: list[ModelGeometry]) -> pd.DataFrame:
    """Stack the per-model tables into one long table with readable metric labels."""
    frames = []
    for result in results:
        frame = result.table.copy()
        frame.insert(0, "model", result.model)
        frame["label"] = frame["metric"].map(lambda m: geometry.METRICS[m].label)
        frame["more_collapsed_when"] = frame["metric"].map(
            lambda m: geometry.METRICS[m].collapsed_when
        )
        frame["layer"], frame["n_prompts"], frame["dim"] = (
            result.layer, result.n_prompts, result.dim
        )
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def joint_pca(results: list[ModelGeometry], labels: pd.DataFrame | None = None
              ) -> tuple[pd.DataFrame, list[str]]:
    """Project every model's points at its measured layer onto one shared 2-D PCA.

    The PCA is fitted on all models' points stacked together, so a position means the same
    in every model's cloud. Only models whose width D matches the first model's can share
    one space; the names of the others are returned as the second value. `labels` (one row
    per prompt, e.g. `category` and `kind`) are joined onto each model's points.
    """
    if not results:
        raise ValueError("No models to project; pick at least one model.")
    dim = results[0].dim
    kept = [r for r in results if r.dim == dim]
    skipped = [r.model for r in results if r.dim != dim]
    stacked = np.concatenate([r.points() for r in kept])  # (M * N, D)
    coords, share = geometry.pca_fit_transform(stacked, n_components=2)
    frames, start = [], 0
    for result in kept:
        frame = pd.DataFrame({"model": result.model, "pc1": coords[start:start + result.n_prompts, 0],
                              "pc2": coords[start:start + result.n_prompts, 1]})
        if labels is not None:
            frame = pd.concat([frame, labels.iloc[: result.n_prompts].reset_index(drop=True)],
                              axis=1)
        frames.append(frame)
        start += result.n_prompts
    table = pd.concat(frames, ignore_index=True)
    table.attrs["explained"] = share.tolist()
    return table, skipped
