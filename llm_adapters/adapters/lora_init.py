"""``adapter.init`` for LoRA and DoRA (PEFT's ``init_lora_weights``): ``default``, A Kaiming-uniform (a = √5) and B
at zero, so the wrapped layer is unchanged at step 0; ``gaussian``, A ~ N(0, 1/r²) instead; ``pissa`` (Meng et al.,
2024), A and B the r principal singular directions of W (√σ on each side, over the scaling s), W replaced by the
residual W − s·B A; ``olora`` (Büyükakyüz, 2024), B and A the first r columns of Q and rows of R of W = QR, W − s·B A
the residual. The last two compute what the base did at step 0 only without dropout (it acts on the part moved into
B A): a warning says so once.

Their initial factors (A₀, B₀) are kept as buffers (``BASE_BUFFERS``) and saved with the adapter: the residual base
is part of what it learned, and a fresh base is made that residual from them (``LoRALinear.restore_base``), not from
a decomposition of its own, which another machine's LAPACK may give otherwise (signs, near-equal singular values).
"""

from __future__ import annotations

import functools
import logging

import torch

INITS = ("default", "gaussian", "pissa", "olora")
FROM_THE_BASE = ("pissa", "olora")  # the inits that move part of W into B A
BASE_BUFFERS = ("lora_A0", "lora_B0")
log = logging.getLogger(__name__)


def factors(weight: torch.Tensor, init: str, r: int, scaling: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(A₀, B₀) of ``init`` from the adapted rows ``weight`` (out × in), in fp32 as PEFT computes them; on a meta
    weight (plan mode) empty tensors of their shapes."""
    rows, columns = weight.shape
    if weight.is_meta:
        return torch.empty(r, columns, device="meta"), torch.empty(rows, r, device="meta")
    if init == "pissa":
        u, sigma, vh = torch.linalg.svd(weight.float(), full_matrices=False)
        root = torch.sqrt(sigma[:r] / scaling)
        return root[:, None] * vh[:r], u[:, :r] * root
    q, upper = torch.linalg.qr(weight.float())  # olora
    return upper[:r].contiguous(), q[:, :r].contiguous()


@functools.cache
def warn_dropout(init: str, dropout: float) -> None:
    """Once per setting: dropout on a PiSSA/OLoRA layer perturbs the base's function while training."""
    log.warning(
        "adapter.init=%s with adapter.dropout=%s: dropout acts on the principal part moved into B A, so training "
        "does not start from the base's function (PiSSA's paper trains with dropout 0)",
        init,
        dropout,
    )
