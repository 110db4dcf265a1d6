"""Which torch device a job runs on, from the config's ``device`` keys (training, evaluation and
the attacks read the same spelling)."""

from __future__ import annotations

import torch


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without one is an error, not a fallback."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("execution.train.device is 'cuda' but no CUDA device is visible")
    return dev
