#!/usr/bin/env python3
"""Writes the hand-made seed corpus: fuzz/seeds/framer/* and fuzz/seeds/walker/*.

Run from anywhere: python3 fuzz/gen_seeds.py. Framer seeds start with the 2-byte
little-endian max_message_size the `framer` target reads first; walker seeds are payloads.
"""
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
MAGIC = bytes.fromhex("EFBEADDE")


def frame(domain, source, seq, payload, crc=True, ts=1_700_000_000_000_000_000):
    head = MAGIC + struct.pack("<BBBBQQI", domain, 1, source, 0, seq, ts, len(payload))
    checksum = zlib.crc32(head + payload) if crc else 0  # CRC-32/ISO-HDLC over 0..28 + payload
    return head + struct.pack("<I", checksum) + payload


def tlv(t, value):
    if len(value) > 255:
        return bytes([255, 0, t]) + struct.pack("<H", len(value)) + value
    return bytes([t, len(value)]) + value


# Trade (1), 40 B: BTC/USD on Kraken (101), Coin (51), buy.
trade = struct.pack("<QqqQHBBB3x", 0x4254432F55534400, 45_000_00000000, 1_50000000,
                    1_700_000_000_000_000_000, 101, 51, 0, 0)
# SignalIdentity (20), 16 B.
signal = struct.pack("<QHBBI", 7, 3, 1, 90, 5000)
# Subscribe (116): role 1, options 0, one TypeRange 1..=3 filter.
subscribe = bytes([1, 0, 1, 0]) + bytes([1, 1, 3]) + bytes(13)
# OrderBook (3): one bid, one ask.
book = struct.pack("<QHBBHHQQ", 0x4254432F55534400, 101, 51, 0, 1, 1, 1, 2)
book += struct.pack("<qqII", 44_999_00000000, 2_00000000, 3, 0)
book += struct.pack("<qqII", 45_001_00000000, 1_00000000, 0, 0)

payloads = {
    "trade": tlv(1, trade),
    "signal": tlv(20, signal),
    "control": tlv(116, bytes([1, 0, 0, 0])),
    "extended": tlv(200, bytes(range(256)) + bytes(44)),  # FF 00 C8 2C 01 + 300 B
}
assert payloads["extended"][:5] == bytes.fromhex("FF00C82C01")
assert payloads["trade"][:2] == bytes.fromhex("0128")

hello = MAGIC + bytes([1, 1, 2, 0]) + bytes(24)
frames = {
    "hello": hello,
    "trade": frame(0, 3, 1, payloads["trade"]),
    "signal_crc0": frame(1, 10, 1, payloads["signal"], crc=False),
    "control": frame(3, 99, 0, payloads["control"]),
    "extended": frame(0, 3, 2, payloads["extended"]),
}
streams = dict(frames)
streams["two_frames"] = frames["trade"] + frames["signal_crc0"]
streams["bad_magic"] = bytes.fromhex("DEADBEEF") + hello[4:] + frames["trade"]

MAX = struct.pack("<H", 1024)  # max_message_size prefix of the framer target
seeds = {"framer": {k: MAX + v for k, v in streams.items()},
         "walker": dict(payloads, subscribe=subscribe, order_book=book)}
# One framer seed whose max (64) is below the trade frame's 74 bytes: FrameTooLarge.
seeds["framer"]["too_large"] = struct.pack("<H", 64) + frames["trade"]

for target, files in seeds.items():
    directory = os.path.join(HERE, "seeds", target)
    os.makedirs(directory, exist_ok=True)
    for name, data in files.items():
        with open(os.path.join(directory, name), "wb") as f:
            f.write(data)
