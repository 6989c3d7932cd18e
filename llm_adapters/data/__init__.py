"""Everything between a data file and a training batch, one role per module:

- ``sets``: the registry of the paper's datasets (where each file lives, what its answers look like) and reading a
  file's records with their one-line errors; decontamination.
- ``templates``: the paper's prompt templates, byte for byte.
- ``download`` and ``checksums``: fetching a file that is not on disk, and the size and SHA-256 it must have.
- ``arrow_cache``: files as memory-mapped Arrow tables, validated once per digest, and the tokenized training set
  cached once per sweep.
- ``training_examples``: records → token ids and labels → padded batches, as the paper's finetune.py made them.
- ``options``: the question and option texts inside a commonsense record, and responses that name the option's
  text (``dataset.answer_format=text``), with the options left out of the instruction (``cloze``).
- ``loading``: the data phase of one job (locate, read, mix, decontaminate), before any model loads.
- ``synthetic_math`` and ``builtin_tokenizer``: the offline stand-ins (arithmetic word problems, a byte-level BPE).

Nothing here imports a model, an adapter or an evaluation method: only the leaf helpers ``errors``, ``files``
and ``hub`` from outside the package (a test holds it to that).
"""
