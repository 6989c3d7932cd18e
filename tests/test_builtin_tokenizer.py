"""The built-in tokenizer: no download, exact round trip of the paper's prompts, deterministic vocabulary."""

from llm_adapters.data.builtin_tokenizer import build_tokenizer
from llm_adapters.data.templates import evaluation_prompt, training_prompt


def test_round_trip_and_special_ids():
    tok = build_tokenizer(512)
    assert len(tok) == 512
    assert (tok.convert_tokens_to_ids(["<unk>", "<s>", "</s>"])) == [0, 1, 2]
    assert tok.pad_token_id == 0 and tok.eos_token_id == 2
    for text in [
        training_prompt("Ali has 1,205 coins.", "\nA: 1205 - 5 = 1200. The answer is 1200."),
        evaluation_prompt("Ünïcödé and tabs\tare fine?"),
    ]:
        ids = tok(text)["input_ids"]
        assert ids[0] == tok.bos_token_id
        assert tok.decode(ids, skip_special_tokens=True) == text


def test_digits_are_single_tokens_and_vocab_is_deterministic():
    tok = build_tokenizer(512)
    pieces = tok.convert_ids_to_tokens(tok("1205", add_special_tokens=False)["input_ids"])
    assert pieces == ["1", "2", "0", "5"]
    assert build_tokenizer(512).get_vocab() == tok.get_vocab()
