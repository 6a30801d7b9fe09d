#!/usr/bin/env python3
"""A point-to-point link with a rate and a one-way delay, in user space, between two TUN
devices (bench/netem.sh uses it where the kernel has no netem qdisc).

    delayline.py TUN0 TUN1 RATE_BYTES_PER_S DELAY_MS READY_FILE

Creates the TUN devices TUN0 and TUN1 (IP packets, no packet information header), writes
READY_FILE once they exist (the caller then moves each into a network namespace: the open
file descriptor stays attached to its device), and forwards every IP packet read from one to
the other: each direction is a FIFO with its own serialisation clock,

    departure = max(arrival, previous departure) + length / rate;  delivery = departure + delay,

so a burst is paced at the rate and every packet arrives one delay after it left the wire, as
on a link with netem's `delay D rate R`. TCP runs end to end through it (its handshake, slow
start and congestion window see the delay). RATE_BYTES_PER_S 0 means no rate limit.
SIGTERM or SIGINT stops it; on exit it prints one JSON line (packets and bytes per direction,
how late deliveries were, its own CPU seconds) on stdout.
"""
import collections
import fcntl
import json
import os
import select
import signal
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN, IFF_NO_PI = 0x0001, 0x1000
# Packets queued in one direction beyond this many bytes are dropped (and counted): far above
# what TCP keeps in flight on these links.
QUEUE_LIMIT = 256 << 20


def open_tun(name):
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    os.set_blocking(fd, False)
    return fd


def main():
    if len(sys.argv) != 6:
        sys.exit(__doc__)
    names = sys.argv[1:3]
    rate = float(sys.argv[3])
    delay = float(sys.argv[4]) * 1e-3
    fds = [open_tun(n) for n in names]
    with open(sys.argv[5], "w") as f:
        f.write("ready\n")
    stop = []
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, lambda *_: stop.append(1))
    queues = [collections.deque(), collections.deque()]
    queued = [0, 0]
    busy = [0.0, 0.0]
    stats = [{"packets": 0, "bytes": 0, "dropped": 0, "late_max_ms": 0.0, "late_sum_ms": 0.0}
             for _ in range(2)]
    clock = time.monotonic
    while not stop:
        now = clock()
        heads = [q[0][0] for q in queues if q]
        timeout = max(0.0, min(heads) - now) if heads else 0.5
        try:
            readable, _, _ = select.select(fds, [], [], timeout)
        except InterruptedError:
            continue
        now = clock()
        for d, fd in enumerate(fds):
            if fd not in readable:
                continue
            while True:
                try:
                    pkt = os.read(fd, 65536)
                except BlockingIOError:
                    break
                if queued[d] + len(pkt) > QUEUE_LIMIT:
                    stats[d]["dropped"] += 1
                    continue
                start = max(now, busy[d])
                busy[d] = start + (len(pkt) / rate if rate > 0 else 0.0)
                queues[d].append((busy[d] + delay, pkt))
                queued[d] += len(pkt)
        now = clock()
        for d in range(2):
            q = queues[d]
            while q and q[0][0] <= now:
                due, pkt = q.popleft()
                queued[d] -= len(pkt)
                try:
                    os.write(fds[1 - d], pkt)
                except OSError:
                    # The far device is down (its namespace is going away): drop.
                    stats[d]["dropped"] += 1
                    continue
                st = stats[d]
                st["packets"] += 1
                st["bytes"] += len(pkt)
                late = (now - due) * 1e3
                st["late_sum_ms"] += late
                st["late_max_ms"] = max(st["late_max_ms"], late)
    t = os.times()
    for st in stats:
        st["late_mean_ms"] = st["late_sum_ms"] / st["packets"] if st["packets"] else 0.0
    print(json.dumps({"directions": {f"{names[0]}->{names[1]}": stats[0],
                                     f"{names[1]}->{names[0]}": stats[1]},
                      "rate_bytes_per_s": rate, "delay_ms": delay * 1e3,
                      "cpu_s": round(t.user + t.system, 3)}), flush=True)


if __name__ == "__main__":
    main()
