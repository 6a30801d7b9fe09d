"""Sentiment of a sentence, computed by two servers that never see it.

    suf models fetch minilm-l6        # once (or: cargo run --release -- models fetch minilm-l6)
    python python/examples/classify.py "The plot was dull and the acting worse."
"""

import sys

import suf

text = sys.argv[1] if len(sys.argv) > 1 else "I loved every minute of it, the acting was superb!"
label, p, report = suf.classify(text)
print(f"{text!r}: {label} (p(positive) = {p:.3f})")
print(
    f"secure == fixed-point reference: {report['matches_plain']}; "
    f"online {report['online_ms']:.0f} ms, {report['rounds']} rounds, "
    f"{report['comm_bytes'] / 1e6:.1f} MB per party, keys {report['key_bytes'] / 1e6:.0f} MB per party"
)
