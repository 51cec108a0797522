#!/usr/bin/env python3
"""Writes the hand-made seed corpus: fuzz/seeds/{framer,walker,subscribe,config,pcapng,shm_reader}/*.

Run from anywhere: python3 fuzz/gen_seeds.py. Framer seeds start with the 2-byte
little-endian max_message_size the `framer` target reads first; walker seeds are payloads;
subscribe seeds are Subscribe (116) values; config seeds are TOML files: copies of
config/*.toml and tests/legacy/**/*.toml (rerun after changing those) and a few broken ones;
shm_reader seeds are scripts that build, corrupt and read a broadcast log.
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



# shm_reader: scripts (see fuzz_targets/shm_reader.rs). Byte 0 picks a real log (1) or a forged
# one (0), 4 bytes give max_frame - 32, then operations.
def shm(real, max_frame, *ops):
    return bytes([1 if real else 0]) + struct.pack("<I", max_frame - 32) + b"".join(ops)


def le(value, n):
    return value.to_bytes(n, "little")


def count_byte(count):
    """A count: 1..=128, or 256 k + 1 for k = 1..=127."""
    c = count - 1 if count <= 128 else 0x80 | ((count - 1) // 256)
    assert count == (c + 1 if c < 0x80 else (c & 0x7F) * 256 + 1), count
    return c


def append(op, length, origin=1, count=1):
    """Append `count` frames of `length` bytes, one by one."""
    return bytes([op]) + le(length - 32, 3) + bytes([origin, count_byte(count)])


def nexts(op, n):
    return bytes([op, n - 1])


# Real log ops.
r_append = lambda length, origin=1, count=1: append(0, length, origin, count)
r_next = lambda n: nexts(1, n)
R_ATTACH, R_CLOSE, R_WAKE, R_FORK = b"\x02", b"\x03", b"\x04", b"\x05"


def r_append_all(lengths, origin=1, count=None):
    """append_all of `count` frames (default: one per length), the 1..=4 lengths in turn."""
    count = len(lengths) if count is None else count
    return bytes([6, count_byte(count), origin, len(lengths) - 1]) + b"".join(le(n, 3) for n in lengths)


def run(op, limit, room):
    """A read of up to `limit` frames into max_frame + `room` bytes."""
    return bytes([op, limit - 1]) + le(room, 3)


r_read = lambda limit, room: run(7, limit, room)
# Forged log ops. Header words by index: published, intent tail, intent frames, closed, wake,
# magic, version, capacity, slots, max frame. Values: (0, u64) raw, (1, n) plus n+1,
# (2, n) minus n+1, (3, b) small, (4, u16) plus u16 records of 16 bytes, (5, b) u64::MAX - b.
(PUBLISHED, INTENT_TAIL, INTENT_FRAMES, CLOSED, WAKE,
 MAGIC_W, VERSION_W, CAPACITY_W, SLOTS_W, MAX_FRAME_W) = range(10)
raw = lambda v: bytes([0]) + le(v, 8)
plus = lambda n: bytes([1, n - 1])
minus = lambda n: bytes([2, n - 1])
small = lambda b: bytes([3, b])
f_word = lambda which, value: bytes([0, which]) + value
f_slot = lambda slot, pos, seq: bytes([1]) + le(slot, 2) + pos + seq
f_ring = lambda offset, data: bytes([2]) + le(offset, 4) + bytes([len(data)]) + data
f_head = lambda offset, length, origin=1: bytes([3]) + le(offset, 4) + length + bytes([origin])
f_append = lambda length, origin=1, count=1: append(4, length, origin, count)
F_ATTACH = b"\x05"
f_next = lambda n: nexts(6, n)
f_resize_smaller = lambda words: bytes([7, 1]) + le(words, 2)
f_resize_larger = lambda words: bytes([7, 0]) + le(words, 2)
f_read = lambda limit, room: run(8, limit, room)
MAX_FRAME_BOUND = (1 << 20) // 4 - 16
seeds["shm_reader"] = {
    "real_read": shm(1, 4096, r_append(100, 1, 10), r_next(20)),
    "real_attach_later": shm(1, 4096, r_append(64, 2, 5), R_ATTACH, r_append(4096, 3, 3), r_next(10)),
    # 32 513 records of 48 bytes: 1.5 rings, the reader is overrun.
    "real_overrun": shm(1, 4096, r_append(32, 1, 127 * 256 + 1), r_next(255), r_next(255)),
    "real_wrap": shm(1, MAX_FRAME_BOUND, *[r_append(200_000, 1) + r_next(2) for _ in range(8)]),
    # Runs: 128 frames of 100 bytes read 64 at a time into 4 × 1024 bytes (40 fit).
    "real_read_runs": shm(1, 1024, r_append(100, 1, 128), r_read(64, 3072), r_read(64, 3072),
                          r_read(256, 1000)),
    # append_all: a frame too short (20) and one too long (1030) are skipped, the others taken.
    "real_append_all": shm(1, 1024, r_append_all([40, 20, 1024, 1030]), r_read(8, 3072), r_next(3)),
    # append_all of 30 000 frames: runs of a quarter ring each, the reader overrun.
    "real_append_all_overrun": shm(1, 1024, r_append_all([32, 100], 2, 117 * 256 + 1), r_read(64, 3072),
                                   r_next(10)),
    "real_close": shm(1, 1024, r_append(40, 1, 2), R_CLOSE, R_WAKE, r_next(5)),
    "real_fork": shm(1, 1024, r_append(64, 1, 10), r_next(10), R_FORK, f_append(64, 2, 4), f_next(10)),
    # Ten records of 80 bytes, then the forged copy's next record says max_frame + 1 bytes.
    "real_fork_bad_length": shm(1, 1024, r_append(64, 1, 10), R_FORK, f_append(64, 2),
                                f_head(800, raw(1025)), f_next(3)),
    "forged_read": shm(0, 1024, f_append(100, 1, 5), f_next(10)),
    "forged_read_runs": shm(0, 1024, f_append(100, 1, 50), f_read(16, 3072), f_read(64, 500), f_next(3)),
    # Two paddings in a row: a zero length at the cursor (240) and at the ring's start.
    "forged_two_pads": shm(0, 1024, f_append(64, 1, 3), F_ATTACH, f_head(0, small(0)),
                           f_word(PUBLISHED, plus(1)), f_read(4, 0)),
    "forged_bad_magic": shm(0, 1024, f_word(MAGIC_W, raw(0)), F_ATTACH, f_next(1)),
    "forged_bad_capacity": shm(0, 1024, f_word(CAPACITY_W, plus(1)), F_ATTACH, f_next(1)),
    "forged_bad_max_frame": shm(0, 1024, f_word(MAX_FRAME_W, raw(1 << 20)), F_ATTACH, f_next(1)),
    "forged_short_file": shm(0, 1024, f_resize_smaller(1), F_ATTACH, f_next(1)),
    "forged_long_file": shm(0, 1024, f_resize_larger(4), f_append(64), F_ATTACH, f_append(64), f_next(2)),
    "forged_record_too_long": shm(0, 1024, f_append(64), f_head(0, raw(1025)), f_next(1)),
    "forged_record_too_short": shm(0, 1024, f_append(64), f_head(0, small(31)), f_next(1)),
    # Three frames (records of 80 bytes); a reader attached after them; one more published
    # than written: the reader meets a zero length (padding) at 240 and goes to the ring's start.
    "forged_published_ahead": shm(0, 1024, f_append(64, 1, 3), F_ATTACH, f_word(PUBLISHED, plus(1)),
                                  f_next(2)),
    "forged_slot_moved": shm(0, 1024, f_append(64, 1, 3), f_slot(2, small(80), small(9)), F_ATTACH,
                             f_append(64), f_next(2)),
    "forged_ring_bytes": shm(0, 1024, f_append(64, 1, 2), f_ring(100, bytes(range(64))), f_next(3)),
    "forged_closed": shm(0, 1024, f_append(64), f_word(CLOSED, small(1)), f_next(3)),
}

for target, files in seeds.items():
    directory = os.path.join(HERE, "seeds", target)
    os.makedirs(directory, exist_ok=True)
    for name, data in files.items():
        with open(os.path.join(directory, name), "wb") as f:
            f.write(data)
