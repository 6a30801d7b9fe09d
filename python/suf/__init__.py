"""SUF from Python: private transformer inference with function secret sharing.

Each call runs the whole protocol locally (the dealer makes one-time keys, two parties
evaluate over an in-memory link on the CPU, the client reconstructs) and returns the secure
output beside the fixed-point reference and the float model, with the cost report.

    import suf
    emb, report = suf.embed("minilm-l6", "A man is eating food.")
    label, p, report = suf.classify("I loved it!")
    top5, report = suf.next_token("path/to/gpt2-folder", "The capital of France is")

`model` is a pinned model name (fetch it first with `suf models fetch NAME`) or a folder
holding a Hugging Face checkpoint (config.json, safetensors, tokenizer.json).
Arrays are numpy arrays when numpy is installed, else lists.
"""

import json as _json

from . import _suf

__all__ = ["run", "embed", "classify", "next_token", "write_tiny_checkpoint", "default_cache_dir"]

try:  # numpy is optional
    import numpy as _np
except ImportError:  # pragma: no cover - exercised only without numpy
    _np = None


def _array(v):
    return _np.asarray(v, dtype=_np.float64) if _np is not None else list(v)


def run(model, text, cache=None, mode="public", layers=None):
    """One secure run. Returns a dict: `secure`, `plain` (the fixed-point reference) and
    `float` outputs (arrays: the pooled embedding of an encoder, or a decoder's last-token
    logits), `kind` ("embedding" or "logits"), `tokens`, and `report` (matches_plain,
    online_ms, rounds, comm_bytes, key_bytes, keygen_ms, layers)."""
    out = _json.loads(_suf.run(str(model), text, None if cache is None else str(cache), mode, layers))
    for k in ("secure", "plain", "float"):
        out[k] = _array(out[k])
    return out


def embed(model, text, **kw):
    """The secure embedding of `text` and the cost report (encoders: BERT, MPNet, ...)."""
    out = run(model, text, **kw)
    if out["kind"] != "embedding":
        raise ValueError(f"{model} is a decoder: use next_token")
    return out["secure"], out["report"]


def classify(text, model="minilm-l6", **kw):
    """Sentiment of `text` from the secure MiniLM-L6 embedding and the committed head:
    ("positive" | "negative", p_positive, report)."""
    out = run(model, text, **kw)
    if "p_positive" not in out:
        raise ValueError("classify needs minilm-l6 (the sentiment head is trained on it)")
    p = out["p_positive"]["secure"]
    return ("positive" if p > 0.5 else "negative"), p, out["report"]


def next_token(model, text, k=5, **kw):
    """The k most likely next tokens by the secure logits: ([(token, logit), ...], report)."""
    out = run(model, text, **kw)
    if out["kind"] != "logits":
        raise ValueError(f"{model} is an encoder: use embed")
    logits = list(out["secure"])
    vocab = out.get("vocab") or [str(i) for i in range(len(logits))]
    order = sorted(range(len(logits)), key=lambda i: -logits[i])[:k]
    return [(vocab[i], float(logits[i])) for i in order], out["report"]


def write_tiny_checkpoint(folder, arch, seed=1):
    """Write a tiny checkpoint (bert, roberta, mpnet, gpt2, llama, mistral) to try the API."""
    _suf.write_tiny_checkpoint(str(folder), arch, seed)


def default_cache_dir():
    """Where pinned models are cached ($SUF_CACHE, else ~/.cache/suf)."""
    return str(_suf.default_cache_dir())
