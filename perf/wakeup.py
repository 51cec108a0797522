#!/usr/bin/env python3
"""What waking a thread costs on this machine: two processes pinned to cores A and B bounce a
byte over pipes N times; half the median round trip is the one-way hop. Three placements:
both on core B (a context switch, no idle core to wake), on cores A and B both blocking (each
hop wakes a core that went idle), and on A and B with the one on B polling instead of blocking
(what a spinning reactor saves).

    python3 perf/wakeup.py [ROUND_TRIPS] [CORE_A] [CORE_B]      # default 20000 1 0

Python adds about a microsecond per hop; compare the placements with each other.
"""
import os
import sys
import time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
A = int(sys.argv[2]) if len(sys.argv) > 2 else 1
B = int(sys.argv[3]) if len(sys.argv) > 3 else 0
WARM = 100


def hop(core_a, core_b, b_polls):
    """Median and p99 of half a round trip, in µs."""
    to_b, from_a = os.pipe()
    to_a, from_b = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.sched_setaffinity(0, {core_b})
        os.set_blocking(to_b, not b_polls)
        for _ in range(N + WARM):
            while True:
                try:
                    byte = os.read(to_b, 1)
                    break
                except BlockingIOError:
                    pass
            os.write(from_b, byte)
        os._exit(0)
    os.sched_setaffinity(0, {core_a})
    trips = []
    for _ in range(N + WARM):
        start = time.perf_counter_ns()
        os.write(from_a, b"x")
        os.read(to_a, 1)
        trips.append(time.perf_counter_ns() - start)
    os.waitpid(pid, 0)
    trips = sorted(trips[WARM:])
    return trips[len(trips) // 2] / 2000, trips[len(trips) * 99 // 100] / 2000


for name, a, b, polls in [
    (f"same core ({B}), both block", B, B, False),
    (f"cores {A} and {B}, both block", A, B, False),
    (f"cores {A} and {B}, the one on {B} polls", A, B, True),
]:
    p50, p99 = hop(a, b, polls)
    print(f"{name}: one way p50 {p50:.1f} µs, p99 {p99:.1f} µs")
