#!/usr/bin/env python3
"""Memory after a burst of slow subscribers: N subscribers each read 8 KiB every 50 ms while
one publisher sends 20 M frames, then all leave; prints the relay's resident size idle, at the
peak, and 2 s and 12 s after they left.

    python3 perf/burst.py target/release/market_data_relay [SUBSCRIBERS]   # default 200
"""
import socket, subprocess, time, sys, os
relay_bin = sys.argv[1]
n_subs = int(sys.argv[2]) if len(sys.argv) > 2 else 200
d = f"/tmp/torq-burst-{os.getpid()}"
os.makedirs(d, exist_ok=True)
sock = f"{d}/md.sock"
relay = subprocess.Popen([relay_bin, "--socket", sock, "--cores", "none:2", "-l", "warn"], stderr=open(f"{d}/log", "w"))
for _ in range(200):
    try:
        s = socket.socket(socket.AF_UNIX); s.connect(sock); s.close(); break
    except OSError:
        time.sleep(0.02)
def rss():
    for line in open(f"/proc/{relay.pid}/status"):
        if line.startswith("VmRSS"): return int(line.split()[1]) // 1024
subs = []
for _ in range(n_subs):
    s = socket.socket(socket.AF_UNIX); s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096); s.connect(sock); subs.append(s)
import threading
stop = False
def slow(s):
    while not stop:
        try:
            s.recv(8192)
        except OSError:
            return
        time.sleep(0.05)
threads = [threading.Thread(target=slow, args=(s,), daemon=True) for s in subs]
for t in threads: t.start()
time.sleep(0.3)
print("idle", rss(), "MB")
pub = subprocess.run([os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target", "release", "torq-perf"), "publish", "--socket", sock, "--frames", "20000000"], capture_output=True)
time.sleep(1)
print("peak (subscribers connected, queues full)", rss(), "MB")
stop = True
for s in subs: s.shutdown(socket.SHUT_RDWR); s.close()
time.sleep(2)
print("2 s after they left", rss(), "MB")
time.sleep(10)
print("12 s after they left", rss(), "MB")
relay.terminate(); relay.wait()
import shutil; shutil.rmtree(d, ignore_errors=True)
