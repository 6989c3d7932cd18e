"""A KV cache for beam search that neither re-copies itself on every token nor reorders the prompt.

transformers' dynamic cache appends each new token by concatenation (the whole cache copied per token) and beam
search reorders it by gathering every row (copied again). Profiled on the evaluation benchmark, those two copies
were 63% of generation time. Here each layer keeps keys and values in a buffer with room for the new tokens, written
in place; and since every beam of a prompt starts from the same prompt, and beam search only ever moves a beam
within its own prompt's beams, the prompt positions are the same in all of a prompt's rows: a reorder only needs
to gather the generated positions. A reorder that would move a beam across prompts falls back to gathering all.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer


class SharedPromptLayer(DynamicLayer):
    """One layer's keys and values, (prompts · beams, heads, positions, head_dim), in a buffer grown in place."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, beams: int, room: int) -> None:
        super().__init__()
        self.device, self.is_initialized, self.beams = keys.device, True, beams
        self.prompt = self.length = keys.shape[-2]
        self._keys = self._allocate(keys, beams, self.prompt + room)
        self._values = self._allocate(values, beams, self.prompt + room)
        self._expose()

    @staticmethod
    def _allocate(states: torch.Tensor, beams: int, capacity: int) -> torch.Tensor:
        """A buffer holding each prompt's states once per beam, with ``capacity`` positions."""
        prompts, heads, length, dim = states.shape
        buffer = states.new_empty(prompts * beams, heads, capacity, dim)
        buffer.view(prompts, beams, heads, capacity, dim)[..., :length, :] = states.unsqueeze(1)
        return buffer

    def _expose(self) -> None:
        self.keys = self._keys[..., : self.length, :]
        self.values = self._values[..., : self.length, :]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        new = key_states.shape[-2]
        if self.length + new > self._keys.shape[-2]:  # out of room: double it
            grow = max(new, self._keys.shape[-2])
            self._keys = torch.cat(
                [self._keys, self._keys.new_empty(*self._keys.shape[:2], grow, self._keys.shape[-1])], -2
            )
            self._values = torch.cat(
                [self._values, self._values.new_empty(*self._values.shape[:2], grow, self._values.shape[-1])], -2
            )
        self._keys[..., self.length : self.length + new, :] = key_states
        self._values[..., self.length : self.length + new, :] = value_states
        self.length += new
        self._expose()
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        beam_idx = beam_idx.to(self.device)
        rows = torch.arange(len(beam_idx), device=self.device)
        if not torch.equal(beam_idx // self.beams, rows // self.beams):
            self.prompt = 0  # rows moved across prompts: the prompt parts differ within a group from now on
        for buffer in (self._keys, self._values):
            kept = buffer[..., self.prompt : self.length, :]
            buffer[..., self.prompt : self.length, :] = kept.index_select(0, beam_idx)
        self._expose()

    def batch_repeat_interleave(self, repeats: int) -> None:
        raise NotImplementedError("a SharedPromptLayer is built already repeated for its beams")

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        raise NotImplementedError("a SharedPromptLayer holds whole beam groups")


def for_beams(cache: DynamicCache, beams: int, room: int) -> DynamicCache:
    """``cache`` (one row per prompt) turned into one for ``beams`` beams per prompt, with room for ``room`` tokens.
    Layers of another kind than the plain dynamic one (sliding-window attention) are only repeated per beam."""
    layers = []
    for layer in cache.layers:
        if type(layer) is DynamicLayer:
            layers.append(SharedPromptLayer(layer.keys, layer.values, beams, room))
        else:
            layer.batch_repeat_interleave(beams)
            layers.append(layer)
    cache.layers = layers
    return cache
