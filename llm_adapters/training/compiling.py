"""``train.compile``: torch.compile with an inductor cache that cannot hand one CPU's kernels to another.

Inductor names its cached kernels by their source and compile command and reuses them across processes, but the
source depends on the vector width ATen dispatches to (``ATEN_CPU_CAPABILITY``) and the command says
``-march=native``, neither of which the cache lookup resolves. Measured on torch 2.13 (AMD EPYC, avx512): a training
graph compiled under ``ATEN_CPU_CAPABILITY=avx2`` and loaded by a later process at the default capability kills that
process (segmentation fault or glibc heap corruption) at its first step; a cache folder shared by two machines (a
common /tmp) would hand one CPU's native code to another the same way. One cache folder per capability and CPU
(its feature flags) keeps each process on kernels built for what it runs on.
"""

import hashlib
import os

import torch

from llm_adapters.model.loading import cpu_flags

CACHE_VARIABLE = "TORCHINDUCTOR_CACHE_DIR"


def cache_dir_for_this_cpu() -> str:
    """Point inductor's cache at ``<its default>_<capability>_<CPU flags' digest>`` unless the user chose a folder
    (any value other than inductor's own default, which inductor writes back into the environment once it has
    compiled)."""
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir  # imports the inductor package

    default = os.path.abspath(default_cache_dir())
    chosen = os.environ.get(CACHE_VARIABLE)
    if chosen is None or os.path.abspath(chosen) == default:
        capability = torch.backends.cpu.get_cpu_capability().lower()
        cpu = hashlib.sha256(" ".join(sorted(cpu_flags())).encode()).hexdigest()[:8]
        os.environ[CACHE_VARIABLE] = f"{default}_{capability}_{cpu}"
    return os.environ[CACHE_VARIABLE]


def compile_module(module: torch.nn.Module) -> torch.nn.Module:
    """torch.compile with the cache chosen as above; the first steps pay for compilation."""
    cache_dir_for_this_cpu()
    return torch.compile(module)
