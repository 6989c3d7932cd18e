"""A tokenizer that needs no download, for the tiny built-in models.

A byte-level BPE (so any text round-trips exactly, the 16-space prompt indentation included) with digits split one
by one (so numbers are spelled digit by digit, which a small model learns arithmetic from far more easily), trained
in well under a second on a fixed corpus: the paper's prompt templates plus problems from the synthetic generator
with a fixed seed. The corpus never depends on the run's data or seed, so every run gets the same vocabulary.
Special tokens follow LLaMA's ids (<unk>=0, <s>=1, </s>=2) and, as the paper's code did, padding uses id 0.
"""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from llm_adapters.data.synthetic_math import generate
from llm_adapters.data.templates import evaluation_prompt, training_prompt

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>"]
_CORPUS_SEED = 1234
_CORPUS_SIZE = 3000


def _corpus() -> list[str]:
    records, _ = generate(_CORPUS_SIZE, 0, seed=_CORPUS_SEED)
    texts = [training_prompt(r["instruction"], r["output"]) for r in records]
    texts += [evaluation_prompt(r["instruction"]) for r in records[:200]]
    return texts


def build_tokenizer(vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """Train the built-in byte-level BPE; deterministic for a given ``vocab_size``."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", tok.token_to_id("<s>"))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<unk>"
    )
