"""The Alpaca-style prompts exactly as the LLM-Adapters code built them.

The paper's training script (finetune.py) and evaluation scripts (evaluate.py, commonsense_evaluate.py) write the
same template with different whitespace: two trailing spaces after "request." and a blank line of 16 spaces when
training, one trailing space and an empty line when evaluating. The 16-space indentation is an artefact of an
indented f-string in the original code, and is part of what the model saw. We reproduce both byte for byte, because
a model fine-tuned on one and evaluated on the other is exactly what the paper's numbers measure.

Only the no-input variant exists here: every record of the paper's datasets has an empty ``input``, and the data
loader rejects a record whose ``input`` is not empty rather than format it with a template we cannot verify.
"""

from __future__ import annotations

_INDENT = " " * 16
_HEADER = "Below is an instruction that describes a task. Write a response that appropriately completes the request."


def training_prompt(instruction: str, output: str = "") -> str:
    """The prompt finetune.py trained on; ``output=""`` gives the user prompt whose tokens are masked
    when ``train_on_inputs`` is off."""
    return (
        f"{_HEADER}  \n\n"
        f"{_INDENT}### Instruction:\n{_INDENT}{instruction}\n{_INDENT}\n"
        f"{_INDENT}### Response:\n{_INDENT}{output}"
    )


def evaluation_prompt(instruction: str) -> str:
    """The prompt evaluate.py and commonsense_evaluate.py generated from (ends with a newline and 16 spaces)."""
    return f"{_HEADER} \n\n{_INDENT}### Instruction:\n{_INDENT}{instruction}\n\n{_INDENT}### Response:\n{_INDENT}"


def response_text(generation: str) -> str:
    """The answer part of a generation, as evaluate.py took it.

    evaluate.py decoded prompt + generation and kept ``split("### Response:")[1].strip()``: everything after the
    prompt's marker up to a second marker the model may have generated. On the generated text alone that is the
    text before the first marker, stripped.
    """
    return generation.split("### Response:")[0].strip()
