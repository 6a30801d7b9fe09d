#!/usr/bin/env python3
"""The table of bench/netem.sh: each case's measured online time on each link beside the
projection compute + bytes / bandwidth + rounds x latency, where compute is the same bench on
loopback. Rewrites OUTDIR/netem.jsonl (one JSON line per case and link) and prints the table.
The timed runs of all passes (files CASE-LINK-pN.json) are pooled: the median and the minimum
(the least disturbed run on a shared machine) of each are shown, each against the projection
from the loopback median (resp. minimum).

    netem_summary.py OUTDIR CASE...      (CASE = MODEL:SEQ:MODE as given to netem.sh)

bytes = the larger of the two parties' bytes sent (each direction of the link carries one
party's messages, at the same time as the other's). latency: both parties send at once in
every round, so a round costs one one-way delay on the wire; the RTT column charges a full
round trip per round, the pessimistic reading.

Where the benches were traced (netem.sh does), each run is also split into its critical compute
(per round the slower party's time less its wait for the peer, summed) and the rest; the rest's
median on a link, less its median on loopback, is set beside the link terms of the projection
(bytes / bandwidth + rounds x one-way delay). Load from other jobs inflates the compute and
hardly the rest, so this comparison holds on a busy machine where the totals do not.
"""
import glob
import json
import os
import statistics
import sys
import time

LINKS = {"lan": (1e9, 0.5e-3), "wan": (0.4e9, 4e-3), "tun0": (float("inf"), 0.0)}


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    out, cases = sys.argv[1], sys.argv[2:]
    shaper_file = os.path.join(out, "shaper.txt")
    shaper = open(shaper_file).read().split()[-1] if os.path.exists(shaper_file) else "?"
    rows = []
    for case in cases:
        model, seq, mode = case.split(":")

        def load(link):
            files = sorted(glob.glob(os.path.join(out, f"{model}-{seq}-{mode}-{link}-p*.json")))
            if not files:
                return None
            ds = [json.load(open(f)) for f in files]
            d = ds[0]
            d["online_ms_runs"] = [x for e in ds for x in e["online_ms_runs"]]
            d["online_ms"] = statistics.median(d["online_ms_runs"])
            d["online_ms_min"] = min(d["online_ms_runs"])
            d["matches_plain"] = all(e["matches_plain"] for e in ds)
            d["loads"] = [e.get("netem") for e in ds]
            d["passes"] = len(ds)
            rest = [x for e in ds for x in e.get("netem", {}).get("rest_ms_runs", [])]
            d["rest_ms"] = statistics.median(rest) if rest else None
            crit = [x for e in ds for x in e.get("netem", {}).get("critical_compute_ms_runs", [])]
            d["critical_compute_ms"] = statistics.median(crit) if crit else None
            d["mtime"] = max(os.path.getmtime(f) for f in files)
            return d

        base = load("loopback")
        for link in ["loopback", "tun0", "lan", "wan"]:
            d = load(link)
            if d is None:
                continue
            sent = max(p["bytes_sent"] for p in d["per_party"])
            line = {
                "model": model, "seq": d["seq"], "mode": mode, "link": link,
                "online_ms": d["online_ms"], "online_ms_min": d["online_ms_min"],
                "online_ms_runs": d["online_ms_runs"], "runs": len(d["online_ms_runs"]),
                "passes": d["passes"], "rest_ms": d["rest_ms"],
                "critical_compute_ms": d["critical_compute_ms"],
                "rounds": d["rounds"], "bytes_sent_per_direction": sent,
                "comm_bytes": d["comm_bytes"], "key_bytes": d["key_bytes"],
                "matches_plain": d["matches_plain"],
                "wait_ms": [p["wait_ms"] for p in d["per_party"]],
                "connect_ms": [p["connect_ms"] for p in d["per_party"]],
                "load": d["loads"], "peer_link": d["peer_link"],
                "shaper": shaper if link != "loopback" else None,
                "backend": d["backend"], "threads": d["per_party"][0].get("threads"),
                "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(d["mtime"])),
            }
            if shaper == "delayline":
                line["delayline"] = [json.loads(open(f).read().strip().splitlines()[-1])
                                     for f in sorted(glob.glob(os.path.join(out, f"delayline-{link}-p*.json")))
                                     if os.path.getsize(f) > 0]
            if link in LINKS and base is not None:
                bw, lat = LINKS[link]
                compute = base["online_ms"]
                wire = sent / bw * 1e3
                one_way = d["rounds"] * lat * 1e3
                line["projection"] = {
                    "compute_ms": compute, "bytes_ms": wire, "latency_ms_one_way": one_way,
                    "projected_ms_one_way": compute + wire + one_way,
                    "projected_ms_rtt": compute + wire + 2 * one_way,
                    "formula": "compute (loopback online_ms) + bytes_sent_per_direction / bandwidth + rounds x latency (one way; rtt: a round trip per round)",
                }
                line["projection"]["projected_min_ms_one_way"] = base["online_ms_min"] + wire + one_way
                line["measured_over_projected_one_way"] = d["online_ms"] / (compute + wire + one_way)
                if d["rest_ms"] is not None and base["rest_ms"] is not None:
                    line["link_ms_measured"] = d["rest_ms"] - base["rest_ms"]
                    line["link_ms_projected"] = wire + one_way
                line["min_over_projected_min_one_way"] = d["online_ms_min"] / (base["online_ms_min"] + wire + one_way)
            rows.append(line)
    with open(os.path.join(out, "netem.jsonl"), "w") as jl:
        for r in rows:
            jl.write(json.dumps(r) + "\n")
    print(f"online ms after a warm-up, fresh keys each run; TLS on every link; shaper: {shaper}; "
          "proj = loopback + bytes/bandwidth + rounds x one-way delay (RTT column: x round trip); "
          "link = median non-compute time less loopback's, vs bytes/bandwidth + rounds x one-way delay")
    print(f"{'case':<24} {'link':<8} {'median':>7} {'proj':>6} {'ratio':>5} {'min':>6} {'proj':>6} {'ratio':>5} "
          f"{'RTT proj':>8} {'link':>6} {'proj':>6} {'ratio':>5} {'bytes':>6} {'rounds':>6} {'runs':>4}  load (1-min avg per pass)")
    for r in rows:
        p = r.get("projection")
        name = f"{r['model']}-{r['seq']}-{r['mode']}"
        load = " ".join(str(x["loadavg_before"]).split()[0] for x in r["load"] if x)
        head = f"{name:<24} {r['link']:<8} {r['online_ms']:7.0f}"
        if p:
            lm, lp = r.get("link_ms_measured"), r.get("link_ms_projected")
            link = (f"{lm:6.0f} {lp:6.0f} {lm / lp:5.2f}" if lm is not None and lp else
                    f"{lm:6.0f} {lp:6.0f} {'':>5}" if lm is not None else f"{'':>6} {'':>6} {'':>5}")
            print(f"{head} {p['projected_ms_one_way']:6.0f} {r['measured_over_projected_one_way']:5.2f} "
                  f"{r['online_ms_min']:6.0f} {p['projected_min_ms_one_way']:6.0f} {r['min_over_projected_min_one_way']:5.2f} "
                  f"{p['projected_ms_rtt']:8.0f} {link} {p['bytes_ms']:6.1f} {r['rounds']:6d} {r['runs']:4d}  {load}")
        else:
            rest = f"{r['rest_ms']:6.0f}" if r["rest_ms"] is not None else ""
            print(f"{head} {'':>6} {'':>5} {r['online_ms_min']:6.0f} {'':>6} {'':>5} {'':>8} {rest:>6} {'':>6} {'':>5} "
                  f"{'':>6} {r['rounds']:6d} {r['runs']:4d}  {load}")

if __name__ == "__main__":
    main()
