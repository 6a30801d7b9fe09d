#!/usr/bin/env bash
# Real links (issue 10): the two parties of `suf bench model --processes 2` in two Linux network
# namespaces joined by a shaped link, beside the projection
#   compute (the same bench on loopback) + bytes / bandwidth + rounds x latency.
#
#   sudo bench/netem.sh SUF OUTDIR CASE...        CASE = MODEL:SEQ:MODE, e.g. bert-tiny:128:private
#
# Needs root, iproute2 and python3. Environment: RUNS (timed runs after one warm-up, fresh keys
# each; default 3), PASSES (sweeps over all links, interleaving them against a machine whose
# load drifts; default 1), LINKS (default "loopback lan wan"; also "tun0": the delay line with no delay
# and no rate limit, its own overhead), NICE (niceness of the benches; default 0), BACKEND
# (default cpu), EXTRA (more `suf bench model` flags, e.g. "--cache DIR"), SHAPER (below),
# MTU (of the delay line's TUN devices; default 64000).
# Links: lan = 1 GB/s (8 Gbit/s) and 0.5 ms one way; wan = 400 MB/s (3.2 Gbit/s) and 4 ms one
# way, each direction shaped on its own. loopback = both parties in this namespace over
# 127.0.0.1 (the compute baseline).
# SHAPER=netem: a veth pair, `tc qdisc … netem delay D rate R limit L` on both ends (kernel
# module sch_netem). SHAPER=delayline: two TUN devices joined by bench/delayline.py, the same
# rate and delay in user space (for kernels without sch_netem). auto (default): netem when the
# kernel has it, else the delay line.
# Every link uses the parties' mutually authenticated TLS (--peer-tls), so the baseline pays
# the same TLS work as the shaped runs.
#
# Writes OUTDIR/MODEL-SEQ-MODE-LINK-pN.json (the bench's JSON of pass N), OUTDIR/link-LINK.txt
# (the shaping check: TCP round trip and bulk throughput between the namespaces),
# OUTDIR/delayline-LINK-pN.json (the delay line's counters), OUTDIR/netem.jsonl (one line per
# case and link: measured, projected, load; bench/netem_summary.py) and OUTDIR/summary.txt.
# It deletes the namespaces (and with them the veth pair) on exit, failure included; it
# refuses to start if namespaces of these names exist (they are not its own).
set -euo pipefail
if [ $# -lt 3 ]; then
  sed -n '2,22p' "$0" >&2
  exit 2
fi
SUF=$(realpath "$1") OUT=$2
shift 2
MTU=${MTU:-64000} RUNS=${RUNS:-3} PASSES=${PASSES:-1} LINKS=${LINKS:-loopback lan wan} NICE=${NICE:-0} BACKEND=${BACKEND:-cpu}
EXTRA=${EXTRA:-}
SHAPER=${SHAPER:-auto}
NS0=suf-p0 NS1=suf-p1 IF0=suf-v0 IF1=suf-v1 IP0=10.77.0.1 IP1=10.77.0.2
HERE=$(cd "$(dirname "$0")" && pwd)
# netem's queue limit in packets: far above the bandwidth-delay product of either link
# (WAN: 400 MB/s x 4 ms = 1.6 MB in flight per direction, about 1100 full-size packets; the
# default limit of 1000 would drop), so shaping never drops.
LIMIT=100000

[ "$(id -u)" = 0 ] || { echo "netem.sh: needs root (network namespaces, tc)" >&2; exit 1; }
for t in ip tc python3; do command -v $t > /dev/null || { echo "netem.sh: $t not found" >&2; exit 1; }; done
[ -x "$SUF" ] || { echo "netem.sh: $SUF is not an executable" >&2; exit 1; }
for ns in $NS0 $NS1; do
  if ip netns list | grep -qw "^$ns"; then
    echo "netem.sh: network namespace $ns exists already (not ours: delete it with 'ip netns del $ns')" >&2
    exit 1
  fi
done

W=$(mktemp -d)
MADE=0 DL=
stop_delayline() {
  if [ -n "$DL" ]; then
    kill -TERM "$DL" 2> /dev/null || true
    wait "$DL" 2> /dev/null || true
    DL=
  fi
}
cleanup() {
  stop_delayline
  if [ "$MADE" = 1 ]; then
    ip netns del $NS0 2> /dev/null || true
    ip netns del $NS1 2> /dev/null || true
    ip link del $IF0 2> /dev/null || true
  fi
  rm -rf "$W"
}
trap cleanup EXIT
mkdir -p "$OUT"

# Two namespaces (loopback up in each).
MADE=1
ip netns add $NS0
ip netns add $NS1
for ns in $NS0 $NS1; do ip -n $ns link set lo up; done

if [ "$SHAPER" = auto ] || [ "$SHAPER" = netem ]; then
  # A veth pair between them; netem on it, if the kernel has it.
  ip link add $IF0 type veth peer name $IF1
  ip link set $IF0 netns $NS0
  ip link set $IF1 netns $NS1
  ip -n $NS0 addr add $IP0/24 dev $IF0
  ip -n $NS1 addr add $IP1/24 dev $IF1
  ip -n $NS0 link set $IF0 up
  ip -n $NS1 link set $IF1 up
  if ip netns exec $NS0 tc qdisc replace dev $IF0 root netem delay 1ms 2> /dev/null; then
    SHAPER=netem
  elif [ "$SHAPER" = netem ]; then
    echo "netem.sh: this kernel has no netem qdisc (sch_netem); use SHAPER=delayline" >&2
    exit 1
  else
    SHAPER=delayline
    ip -n $NS0 link del $IF0
  fi
fi
echo "shaper: $SHAPER" | tee "$OUT/shaper.txt"

# shape LINK DELAY_MS RATE_BITS: the link's rate and one-way delay in each direction.
shape() {
  if [ $SHAPER = netem ]; then
    ip netns exec $NS0 tc qdisc replace dev $IF0 root netem delay "$2"ms rate "$3"bit limit $LIMIT
    ip netns exec $NS1 tc qdisc replace dev $IF1 root netem delay "$2"ms rate "$3"bit limit $LIMIT
    return
  fi
  # The delay line: a fresh pair of TUN devices per link, moved into the namespaces (the
  # delay line's descriptors stay attached), a point-to-point address on each.
  stop_delayline
  rm -f "$W/ready"
  python3 "$HERE/delayline.py" $IF0 $IF1 $(($3 / 8)) "$2" "$W/ready" > "$OUT/delayline-$1-p$pass.json" & DL=$!
  for _ in $(seq 100); do [ -e "$W/ready" ] && break; sleep 0.05; done
  [ -e "$W/ready" ] || { echo "netem.sh: the delay line did not start" >&2; exit 1; }
  ip link set $IF0 netns $NS0
  ip link set $IF1 netns $NS1
  ip -n $NS0 addr add $IP0 peer $IP1 dev $IF0
  ip -n $NS1 addr add $IP1 peer $IP0 dev $IF1
  # By default packets up to 64 KB, as TSO/GSO hand them to a real NIC: fewer packets for the
  # user-space forwarder; the rate is charged per byte either way. TCP's initial window is
  # 10 segments, so a large MTU shortens slow start (MTU=1500 for a plain Ethernet path).
  ip -n $NS0 link set $IF0 mtu "$MTU" up
  ip -n $NS1 link set $IF1 mtu "$MTU" up
}

# The shaping check: median TCP round trip of 1-byte ping-pongs (TCP_NODELAY) and the
# throughput of one 256 MB bulk transfer, party 1's namespace to party 0's.
cat > "$W/check.py" << 'PY'
import socket, statistics, sys, time
role, host = sys.argv[1], sys.argv[2]
PORT, BULK = 7799, 256 << 20
if role == "server":
    l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind((host, PORT)); l.listen(1)
    c, _ = l.accept(); c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while (b := c.recv(1)) != b"q":
        c.sendall(b)
    got = 0
    while got < BULK:
        got += len(c.recv(1 << 20))
    c.sendall(b"k")
else:
    for _ in range(200):
        try:
            c = socket.create_connection((host, PORT)); break
        except OSError:
            time.sleep(0.05)
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    rtt = []
    for _ in range(30):
        t = time.perf_counter(); c.sendall(b"p"); c.recv(1); rtt.append(time.perf_counter() - t)
    c.sendall(b"q")
    buf = b"\0" * (4 << 20)
    t = time.perf_counter()
    for _ in range(BULK // len(buf)):
        c.sendall(buf)
    c.recv(1)
    dt = time.perf_counter() - t
    print(f"tcp round trip: median {statistics.median(rtt)*1e3:.3f} ms (min {min(rtt)*1e3:.3f}, max {max(rtt)*1e3:.3f}, n=30)")
    print(f"bulk {BULK >> 20} MiB one way: {BULK/dt/1e6:.0f} MB/s ({dt*1e3:.0f} ms, slow start included)")
PY
check() {
  ip netns exec $NS0 python3 "$W/check.py" server $IP0 & local sp=$!
  ip netns exec $NS1 python3 "$W/check.py" client $IP0 | tee -a "$OUT/link-$1.txt"
  wait $sp
  if [ $SHAPER = netem ]; then
    ip netns exec $NS0 tc -s qdisc show dev $IF0 >> "$OUT/link-$1.txt"
    ip netns exec $NS1 tc -s qdisc show dev $IF1 >> "$OUT/link-$1.txt"
    if grep -q "dropped [1-9]" "$OUT/link-$1.txt"; then echo "netem.sh: netem dropped packets on $1 (raise LIMIT)" >&2; fi
  fi
}

# One-way delay (ms) and rate (bit/s; 0: none) of each link.
declare -A DELAY=([lan]=0.5 [wan]=4 [tun0]=0) RATE=([lan]=8000000000 [wan]=3200000000 [tun0]=0)
for pass in $(seq "$PASSES"); do
for link in $LINKS; do
  case $link in
    loopback) ;;
    lan | wan | tun0)
      if [ $link = tun0 ] && [ $SHAPER = netem ]; then continue; fi
      shape "$link" "${DELAY[$link]}" "${RATE[$link]}"
      echo "== $link: ${DELAY[$link]} ms one way, ${RATE[$link]} bit/s ($SHAPER)"
      check "$link" ;;
    *) echo "netem.sh: unknown link $link (loopback, tun0, lan, wan)" >&2; exit 1 ;;
  esac
  for case in "$@"; do
    IFS=: read -r model seq mode <<< "$case"
    [ -n "$model" ] && [ -n "$seq" ] && [ -n "$mode" ] || { echo "netem.sh: CASE is MODEL:SEQ:MODE, got $case" >&2; exit 1; }
    f="$OUT/$model-$seq-$mode-$link-p$pass.json"
    flags=(--peer-tls)
    [ "$link" != loopback ] && flags+=(--netns $NS0,$NS1 --peer-ip $IP0)
    load0=$(cut -d' ' -f1-3 /proc/loadavg)
    rm -f "$W/trace.jsonl"
    # shellcheck disable=SC2086 # EXTRA is a list of flags
    nice -n "$NICE" "$SUF" bench model --model "$model" --seq "$seq" --mode "$mode" --processes 2 \
      --backend "$BACKEND" --runs "$RUNS" "${flags[@]}" $EXTRA --trace "$W/trace.jsonl" --json --json-out "$f" > /dev/null
    load1=$(cut -d' ' -f1-3 /proc/loadavg)
    python3 - "$f" "$link" "$load0" "$load1" "$W/trace.jsonl" "$MTU" "$SHAPER" << 'PY'
import collections, json, sys
f, link, l0, l1, trace, mtu, shaper = sys.argv[1:]
d = json.load(open(f))
d["netem"] = {"link": link, "loadavg_before": l0, "loadavg_after": l1,
              "mtu": int(mtu) if shaper == "delayline" and link != "loopback" else None}
# From the per-round trace of every timed run: the critical compute, the sum over rounds of the
# slower party's round time less its wait for the peer, and the rest of the online time, which
# is the link's (latency, transfer, TCP) plus what no round accounts for. Machine load inflates
# the first and hardly the second.
rounds = collections.defaultdict(dict)
for line in open(trace):
    v = json.loads(line)
    if "wait_ms" in v:
        rounds[v["run"]].setdefault(v["round"], {})[v["party"]] = v["ms"] - v["wait_ms"]
crit = [sum(max(p.values()) for p in rounds[r].values()) for r in sorted(rounds)]
if len(crit) == len(d["online_ms_runs"]):
    d["netem"]["critical_compute_ms_runs"] = crit
    d["netem"]["rest_ms_runs"] = [o - c for o, c in zip(d["online_ms_runs"], crit)]
json.dump(d, open(f, "w"), indent=1)
if str(d["seq"]) != f.split("-")[-4]:
    print(f"note: {d['model']} ran {d['seq']} tokens (a real model's bench text), not the case's", file=sys.stderr)
print(f"{d['model']} seq {d['seq']} {d['mode']} on {link}: online {d['online_ms']:.0f} ms (runs {[round(x) for x in d['online_ms_runs']]}; "
      f"not compute {[round(x) for x in d['netem'].get('rest_ms_runs', [])]}), load {l0} -> {l1}")
PY
  done
  # The delay line's statistics of this link (packets, lateness, CPU) go to its JSON file.
  stop_delayline
  if [ -n "$(ip -n $NS0 link show $IF0 2> /dev/null)" ] && [ $SHAPER = delayline ]; then
    echo "netem.sh: $IF0 outlived its delay line" >&2
  fi
done
done

# The table: measured beside compute (loopback) + bytes / bandwidth + rounds x latency.
python3 "$HERE/netem_summary.py" "$OUT" "$@" | tee "$OUT/summary.txt"
