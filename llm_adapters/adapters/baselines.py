"""The two baselines every adapter is measured against; neither adds a module and neither takes a placement.

``none`` evaluates the frozen base model zero-shot (nothing trains); ``full`` fine-tunes every parameter.
"""

from __future__ import annotations

from llm_adapters.adapters.registry import AdapterSpec, register

register(AdapterSpec("none", trains="nothing", placed=False))
register(AdapterSpec("full", trains="all", placed=False))
