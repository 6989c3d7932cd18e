"""Size and SHA-256 of the LLM-Adapters data files, as its repository held them (the snapshot of commit 8166572).

A download is accepted only when it matches; files outside this table (the large training sets, HellaSwag)
are checked against the digest recorded when they were first downloaded. ``fingerprint``: the same two facts of
every file a job reads, which its config hash includes (a changed file is a different experiment)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from llm_adapters.files import sha256

Fingerprint = dict[str, dict[str, Any]]  # per data file: {"size": bytes, "sha256": hex digest}


def fingerprint(located: Mapping[str, Path]) -> Fingerprint:
    """Size and SHA-256 of each data file a job reads: what its numbers depend on, wherever the files are."""
    return {name: {"size": path.stat().st_size, "sha256": sha256(path)} for name, path in located.items()}


MANIFEST: dict[str, tuple[int, str]] = {
    "dataset/AQuA/test.json": (152063, "de677f5f0139340009eb01f17c0db781b4161912cd1f4efa77292f2fcf3478ee"),
    "dataset/ARC-Challenge/test.json": (622510, "4a89ce368ae01a71d268d9851686738b2a0a1d84271116bab49a1dd2b48ecad7"),
    "dataset/ARC-Challenge/train.json": (585556, "a9debff28aafed86a08211dc3584a3b6cb38edca8c56bb34cd5002ed54aeebfb"),
    "dataset/ARC-Easy/test.json": (1157216, "3f32a84716ca6d57d38728bf80cc8117aecd17445c2cf29a68b571b810eb82dc"),
    "dataset/ARC-Easy/train.json": (1092324, "6a06cece3dec32f4fb1c1b0fc29dab14be7cf3053b417290dbc6cd845359f5ff"),
    "dataset/AddSub/test.json": (170411, "62a8662b1ad40879953c4df0e61883a749d03aa3fc5e71f1cdb842b816e139ff"),
    "dataset/MultiArith/test.json": (275458, "a40f426807c8a563802c2a5b66bda3bcd1eba9c099038fd1199f0dd57de5fd28"),
    "dataset/SVAMP/test.json": (459713, "ffed015784f738f317c5603177861d044c4fc94e09211d78b25e96d46c656e2c"),
    "dataset/SingleEq/test.json": (212001, "712b15edb851c97aab42a5de106d94008f94d917366c92537ed5400a8aacb207"),
    "dataset/boolq/test.json": (899151, "89df2397cbca81dc31adcc6f7f5b635821aa0565aafde46725b2b4bd39b4dfa9"),
    "dataset/boolq/train.json": (2599507, "5ccbaceebaddc69765e1c4a363632196b81851d303696672165ab59ec4e48c83"),
    "dataset/gsm8k/test.json": (824475, "2cc616a1e0b23ea1df29370476365cde71c4e0aa823fb06cc194c5a8a9381abe"),
    "dataset/mathqa/test.json": (1018708, "58715cb7aaccc7f3f2994586073800a57a3e44f77d22e62bee7fd7ff8315172c"),
    "dataset/mawps/test.json": (60202, "c1a708979cbf2b3df9ac4020baacf3e8e73fcf089e1de7dd1b305b810bfaa15f"),
    "dataset/openbookqa/test.json": (202545, "8479930f7b8a26052c78250280b5465a4016ca7fc806af440d0f37e243f3099e"),
    "dataset/openbookqa/train.json": (1987446, "a1e094eeea01f70c0baa880f37497b26700ae99b243927b9c529984de9b1fe90"),
    "dataset/piqa/test.json": (913157, "3860d11b9b42e590b6b4bbc1643214d373ed0b0d4ac62fcc7bdceb8e044ad141"),
    "dataset/social_i_qa/test.json": (843748, "71543f41127451945379d106ffedaef502f1c8770dff6d2f543aca85e3080b1d"),
    "dataset/winogrande/test.json": (497409, "6946f5209e7114c65c6d04f8f644c5a061af20d730b1cfe158fff3dc44076fb9"),
    "ft-training_set/math_data.json": (1673207, "1d06633b4db748b7cfa38f2891f8d7b17b3636717b3188dd382045b94cf999a7"),
}
