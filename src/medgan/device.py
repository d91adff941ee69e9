"""Where a run computes and in which precision: ``--device`` and ``--precision`` resolved for this machine."""

from __future__ import annotations

import torch

from medgan import MedganError


def resolve_device(name: str) -> torch.device:
    """``auto`` = CUDA when present, else the CPU; asking for CUDA without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise MedganError("--device cuda was asked for but no CUDA GPU is available; use --device cpu or auto")
    return device


def resolve_precision(name: str, device: torch.device) -> str:
    """``auto``: bf16 where the device computes bf16 natively (CPUs with AMX or AVX512-BF16, CUDA GPUs with native
    bf16), else fp32 (chosen by measurement: benchmarks/RESULTS.md "precision"). ``bf16`` on a GPU without bf16
    support is an error."""
    if name == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise MedganError(
            f"--precision bf16 needs a GPU with bfloat16 support; {torch.cuda.get_device_name(device)} has none: "
            "use --precision fp32"
        )
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp32"
    return "bf16" if device.type == "cpu" and native_bf16_cpu() else "fp32"


def native_bf16_cpu() -> bool:
    """Whether this CPU has bf16 instructions (AMX tiles or AVX512-BF16) rather than emulating bf16 in fp32."""
    # private in torch 2.x; absent = no
    return any(getattr(torch.cpu, f"_is_{isa}_supported", lambda: False)() for isa in ("amx_tile", "avx512_bf16"))


def memory_format(device: torch.device) -> torch.memory_format:
    """The layout of the nets' conv weights (and so of their activations), GAN and domain extractor alike:
    channels_last (NHWC) on the CPU, where oneDNN convolves it without reordering (chosen by measurement:
    benchmarks/RESULTS.md "precision", "channels_last on the CPU", and "eval_speed"); torch's default elsewhere,
    where it has not been measured."""
    return torch.channels_last if device.type == "cpu" else torch.contiguous_format


def autocast(device: torch.device, precision: str):
    """Forward passes in bfloat16 when ``precision`` is bf16 (backward and optimiser steps stay outside)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
