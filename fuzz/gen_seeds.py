#!/usr/bin/env python3
"""Writes the hand-made seed corpus: fuzz/seeds/{framer,walker,subscribe,config,pcapng}/*.

Run from anywhere: python3 fuzz/gen_seeds.py. Framer seeds start with the 2-byte
little-endian max_message_size the `framer` target reads first; walker seeds are payloads;
subscribe seeds are Subscribe (116) values; config seeds are TOML files: copies of
config/*.toml and tests/legacy/**/*.toml (rerun after changing those) and a few broken ones.
"""
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
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



def sub(role, options, filters, count=None):
    """A Subscribe value: role u8, options u8, n u16 (the filter count unless given), filters."""
    n = len(filters) if count is None else count
    return bytes([role, options]) + struct.pack("<H", n) + b"".join(filters)


def filt(kind, *fields):
    """A 16-byte filter: kind, then (offset, bytes) fields; every other byte 0."""
    raw = bytearray(16)
    raw[0] = kind
    for at, value in fields:
        raw[at:at + len(value)] = value
    return bytes(raw)


type_range = filt(1, (1, bytes([1, 3])))                      # types 1..=3
source = filt(2, (1, bytes([3])))                              # source 3 (KrakenCollector)
instrument = filt(3, (2, struct.pack("<HB", 101, 51)),         # Kraken, Coin, BTC/USD
                  (8, struct.pack("<Q", 0x4254432F55534400)))
venue = filt(4, (2, struct.pack("<H", 102)))                   # Coinbase
range_venue = filt(5, (1, bytes([1, 2])), (4, struct.pack("<H", 101)))
assert instrument.hex() == "030065003300000000445355" "2f435442"
seeds["subscribe"] = {
    "n0": sub(1, 0, []),
    "n1_type_range": sub(1, 1, [type_range]),
    "source": sub(2, 2, [source]),
    "instrument": sub(1, 3, [instrument]),
    "venue": sub(0, 1, [venue]),
    "type_range_venue": sub(2, 0, [range_venue]),
    "every_kind": sub(2, 3, [type_range, source, instrument, venue, range_venue]),
    "n64": sub(1, 0, [venue] * 64),
    # Each breaks one rule of PROTOCOL.md section 6.
    "bad_n65": sub(1, 0, [venue] * 65),
    "bad_n65_short": sub(1, 0, [venue], count=65),
    "bad_length": sub(1, 0, [venue], count=2),
    "bad_length_extra": sub(1, 0, [venue, venue], count=1),
    "bad_too_short": bytes([1, 0, 0]),
    "bad_role": sub(3, 0, []),
    "bad_options": sub(1, 4, []),
    "bad_kind": sub(1, 0, [filt(6)]),
    "bad_range": sub(1, 0, [filt(1, (1, bytes([5, 4])))]),
    "bad_range_venue": sub(1, 0, [filt(5, (1, bytes([5, 4])), (4, b"\x01\x00"))]),
    "bad_unused": sub(1, 0, [source, filt(2, (1, b"\x09"), (15, b"\x01"))]),
    "bad_reserved": sub(1, 0, [filt(3, (5, b"\x01"))]),  # the instrument's reserved byte @5
}
assert len(seeds["subscribe"]["bad_n65"]) == 4 + 16 * 65

seeds["config"] = {}
for folder, prefix in (
    ("config", "example_"),
    (os.path.join("tests", "legacy"), "legacy_"),
    (os.path.join("tests", "legacy", "development"), "legacy_development_"),
):
    for name in sorted(os.listdir(os.path.join(ROOT, folder))):
        # config/bridge.toml configures torq-bridge, not a relay.
        if name.endswith(".toml") and name != "bridge.toml":
            with open(os.path.join(ROOT, folder, name), "rb") as f:
                seeds["config"][prefix + name] = f.read()
assert len(seeds["config"]) == 10, sorted(seeds["config"])
MINIMAL = b"[relay]\ndomain = 1\n"
seeds["config"].update({
    "broken_empty.toml": b"",
    "broken_not_toml.toml": b"[relay\ndomain = 1\n",
    "broken_duplicate.toml": MINIMAL + b"domain = 2\n",
    "broken_not_utf8.toml": MINIMAL + b"name = \"\xff\xfe\"\n",
    "broken_unknown_key.toml": MINIMAL + b"colour = \"blue\"\n",
    "broken_unknown_quoted_key.toml": b"[relay]\ndomain = 1\n\"a.b\" = 1\n",
    "broken_unknown_table.toml": MINIMAL + b"[extra]\nkey = 1\n",
    "broken_missing_domain.toml": b"[relay]\nname = \"x\"\n",
    "broken_domain.toml": b"[relay]\ndomain = 4\n",
    "broken_wrong_type.toml": MINIMAL + b"queue_bytes = \"big\"\n",
    "broken_queue_bytes.toml": MINIMAL + b"queue_bytes = 1000\n",
    "broken_message_size.toml": MINIMAL + b"[validation]\nmax_message_size = 1064\n",
    "broken_legacy_disagree.toml": MINIMAL + b"max_connections = 5\n[performance]\nmax_connections = 6\n",
    "broken_cores.toml": MINIMAL + b"[engine]\ncores = [0, 0]\n",
    "broken_metrics_addr.toml": MINIMAL + b"[engine]\nmetrics_addr = \"10.0.0.1:9100\"\n",
    "broken_mode.toml": MINIMAL + b"socket_mode = 0o1777\n",
    "broken_relay_not_table.toml": b"relay = 5\n",
    "broken_dotted.toml": b"relay.domain = \"signal\"\nrelay.queue_bytes = -1\n",
})



# pcapng recordings (what torq-record writes) and their near misses, plus a raw capture:
# the pcapng target reads either, as torq-decode does.
def block(kind, body, order="<"):
    length = 12 + len(body)
    return struct.pack(order + "II", kind, length) + body + struct.pack(order + "I", length)


def option(code, value, order="<"):
    pad = bytes(-len(value) % 4)
    return struct.pack(order + "HH", code, len(value)) + value + pad


def shb(order="<"):
    return block(0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1)
                 + option(4, b"torq-record", order) + option(0, b"", order), order)


def idb(link=147, tsresol=9, order="<"):
    opts = option(9, bytes([tsresol]), order) if tsresol is not None else b""
    return block(1, struct.pack(order + "HHI", link, 0, 0) + opts + option(0, b"", order), order)


def epb(data, ts=1_700_000_000_000_000_000, interface=0, order="<"):
    body = struct.pack(order + "IIIII", interface, ts >> 32, ts & 0xFFFFFFFF, len(data), len(data))
    return block(6, body + data + bytes(-len(data) % 4), order)


recording = shb() + idb() + b"".join(epb(f, 1_700_000_000_000_000_000 + i)
                                     for i, f in enumerate(frames.values()))
seeds["pcapng"] = {
    "recording": recording,
    "empty_recording": shb() + idb(),
    "big_endian_micro": shb(">") + idb(tsresol=None, order=">") + epb(frames["trade"], 5, order=">"),
    "two_sections": shb() + idb() + epb(frames["trade"]) + shb() + idb(tsresol=0x8A) + epb(hello),
    "simple_packet": shb() + idb() + block(3, struct.pack("<I", len(hello)) + hello),
    "name_resolution": shb() + idb() + block(4, bytes(4)) + epb(frames["signal_crc0"]),
    "two_frames_one_packet": shb() + idb() + epb(streams["two_frames"]),
    "torn": recording[:-3],
    "torn_frame": shb() + idb() + epb(frames["trade"][:40]),
    "bad_link_type": shb() + idb(link=1) + epb(frames["trade"]),
    "bad_interface": shb() + idb() + epb(frames["trade"], interface=2),
    "bad_trailer": recording[:-1] + b"\xff",
    "raw_capture": streams["two_frames"],
}
assert recording[:4] == bytes.fromhex("0A0D0D0A")

for target, files in seeds.items():
    directory = os.path.join(HERE, "seeds", target)
    os.makedirs(directory, exist_ok=True)
    for name, data in files.items():
        with open(os.path.join(directory, name), "wb") as f:
            f.write(data)
