"""The Python module: secure == fixed-point reference on tiny checkpoints it writes itself."""

import os

import pytest

import suf


@pytest.mark.parametrize("arch", ["bert", "gpt2", "llama"])
def test_run_matches_the_reference(tmp_path, arch):
    folder = tmp_path / arch
    suf.write_tiny_checkpoint(folder, arch, seed=4)
    out = suf.run(folder, "I loved every minute of it!")
    rep = out["report"]
    assert rep["matches_plain"] is True
    assert list(out["secure"]) == list(out["plain"])
    assert rep["rounds"] > 0 and rep["comm_bytes"] > 0 and rep["key_bytes"] > 0
    assert len(rep["layers"]) > 0
    n = 16 if arch == "bert" else 40
    assert len(out["secure"]) == n
    # Close to the float model.
    dot = sum(a * b for a, b in zip(out["secure"], out["float"]))
    na = sum(a * a for a in out["secure"]) ** 0.5
    nb = sum(b * b for b in out["float"]) ** 0.5
    assert dot / (na * nb) > 0.99


def test_embed_and_next_token(tmp_path):
    suf.write_tiny_checkpoint(tmp_path / "b", "bert")
    emb, rep = suf.embed(tmp_path / "b", "good film")
    assert len(emb) == 16 and rep["matches_plain"]
    suf.write_tiny_checkpoint(tmp_path / "g", "gpt2")
    top, rep = suf.next_token(tmp_path / "g", "the movie was", k=3)
    assert len(top) == 3 and top[0][1] >= top[1][1] >= top[2][1]
    with pytest.raises(ValueError):
        suf.embed(tmp_path / "g", "the movie")


def test_errors_are_exceptions(tmp_path):
    with pytest.raises(RuntimeError, match="unknown name"):
        suf.run("no-such-model", "x")
    with pytest.raises(ValueError):
        suf.run("bert-tiny", "x", mode="secret")
    with pytest.raises(RuntimeError):
        suf.write_tiny_checkpoint(tmp_path / "t", "t5")


@pytest.mark.skipif(
    not os.path.isfile(os.path.join(suf.default_cache_dir(), "minilm-l6", ".complete")),
    reason="minilm-l6 not fetched (suf models fetch minilm-l6)",
)
def test_classify_with_minilm():
    label, p, rep = suf.classify("I loved every minute of it, the acting was superb!")
    assert label == "positive" and p > 0.5 and rep["matches_plain"]
