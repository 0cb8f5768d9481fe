"""Choice of compute device and dtype: CUDA, then Apple MPS, then CPU."""

from __future__ import annotations

import torch

from core import paths

VALID_DEVICES = ("cuda", "mps", "cpu")


def pick_device(override: str | None = None) -> torch.device:
    """Return the device to run on.

    `override` (or the ALIGNMENT_LAB_DEVICE variable) forces one of `cuda`, `mps`, `cpu`;
    otherwise the first available of those is used.
    """
    requested = override or paths.device_override()
    if requested:
        kind = requested.split(":")[0]
        if kind not in VALID_DEVICES:
            raise ValueError(
                f"Invalid device {requested!r}: use one of {', '.join(VALID_DEVICES)}."
            )
        if kind == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"Device {requested!r} requested but CUDA is not available.")
        if kind == "mps" and not torch.backends.mps.is_available():
            raise ValueError(f"Device {requested!r} requested but Apple MPS is not available.")
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def default_dtype(device: torch.device) -> torch.dtype:
    """Return the weight dtype for a device: bf16 on CUDA, fp32 elsewhere.

    Log-probabilities are always computed in fp32 whatever the weights are.
    """
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def describe(device: torch.device) -> str:
    """Return a short human-readable name of the device, such as "CPU (2 threads)"."""
    if device.type == "cuda":
        return f"GPU: {torch.cuda.get_device_name(device)}"
    if device.type == "mps":
        return "Apple GPU (MPS)"
    return f"CPU ({torch.get_num_threads()} threads)"
