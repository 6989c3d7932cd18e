"""``train.compile``: torch.compile with an inductor cache that cannot hand one CPU's kernels to another.

Inductor names its cached kernels by their source and reuses them across processes, but the source depends on the
vector width ATen dispatches to (``ATEN_CPU_CAPABILITY``), which the cache lookup does not check. Measured on torch
2.13 (AMD EPYC, avx512): a training graph compiled under ``ATEN_CPU_CAPABILITY=avx2`` and loaded by a later process at
the default capability kills that process (segmentation fault or glibc heap corruption), from the first step. One
cache folder per capability keeps each process on kernels built for the vector width it runs."""

import os

import torch

CACHE_VARIABLE = "TORCHINDUCTOR_CACHE_DIR"


def cache_dir_for_this_cpu() -> str:
    """Point inductor's cache at ``<its default>_<capability>`` unless the user chose a folder (any value other than
    inductor's own default, which inductor writes back into the environment once it has compiled)."""
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir  # imports the inductor package

    default = os.path.abspath(default_cache_dir())
    chosen = os.environ.get(CACHE_VARIABLE)
    if chosen is None or os.path.abspath(chosen) == default:
        capability = torch.backends.cpu.get_cpu_capability().lower()
        os.environ[CACHE_VARIABLE] = f"{default}_{capability}"
    return os.environ[CACHE_VARIABLE]


def compile_module(module: torch.nn.Module) -> torch.nn.Module:
    """torch.compile with the cache chosen as above; the first steps pay for compilation."""
    cache_dir_for_this_cpu()
    return torch.compile(module)
