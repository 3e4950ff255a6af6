"""The supervisor's checks that run under real MicroPython (and on CPython): `run()` → "N passed".

tests/edge_mcu/ runs this file in MicroPython's WebAssembly port under Node.js, and the same
checks (plus CPython-only ones) under pytest.
"""

from . import eventlog, frame
from .hal import SimHal
from .supervisor import ACK, EVENTS, HELLO, READ_EVENTS, SET_CONFIG, SLEEP, SYNC_TIME, Config, Supervisor


def _frames(hal: SimHal) -> list[tuple[int, int, bytes]]:
    decoder = frame.Decoder()
    out = decoder.feed(bytes(hal.tx))
    hal.tx = bytearray()
    return out


def _run_for(hal: SimHal, sup: Supervisor, ms: int, step_ms: int = 100) -> None:
    for _ in range(ms // step_ms):
        hal.advance(step_ms)
        sup.step()


def check_crc_known_answer() -> None:
    assert frame.crc16(b"123456789") == 0x29B1  # CRC-16/CCITT-FALSE check value


def check_frames_round_trip_and_garbage_is_counted() -> None:
    sender = frame.Sender()
    stream = b"\x00\xffjunk" + sender.frame(7, b"abc") + b"\x7e" + sender.frame(8, b"")
    decoder = frame.Decoder()
    got = decoder.feed(stream)
    assert [(k, p) for k, _, p in got] == [(7, b"abc"), (8, b"")], got
    assert decoder.garbage_bytes == 7 and decoder.accepted == 2


def check_bad_crc_truncated_oversize_and_replay_are_refused() -> None:
    sender = frame.Sender()
    good = sender.frame(7, b"hello")
    bad = bytearray(good)
    bad[7] ^= 0x01
    decoder = frame.Decoder(timeout_ms=50)
    assert decoder.feed(bytes(bad)) == [] and decoder.bad_crc == 1
    assert decoder.feed(good) != []
    assert decoder.feed(good) == [] and decoder.replayed == 1  # the same frame again
    decoder.feed(sender.frame(7, b"cut")[:6], now_ms=1000)
    decoder.expire(1100)
    assert decoder.truncated == 1
    decoder.feed(bytes([0x7E, 0xA5, 250, 0, 9, 1]))
    assert decoder.oversize == 1
    assert decoder.feed(sender.frame(7, b"after")) != []  # the link recovers


def check_a_new_boot_id_starts_a_new_session() -> None:
    decoder = frame.Decoder()
    assert decoder.feed(frame.encode(HELLO, 500, b"\x00\x00\x00\x01")) != []
    assert decoder.feed(frame.encode(7, 400)) == []  # older: a replay
    assert decoder.feed(frame.encode(HELLO, 3, b"\x00\x00\x00\x02")) != []  # the peer rebooted
    assert decoder.feed(frame.encode(7, 4)) != []


def check_event_log_ring_and_store() -> None:
    log = eventlog.EventLog(capacity=3)
    for i in range(5):
        log.append(1000 + i, eventlog.BUMP, i)
    assert log.dropped == 2 and [r[0] for r in log.since(0)] == [2, 3, 4]
    again = eventlog.EventLog.from_bytes(log.to_bytes(), capacity=3)
    assert again.since(0) == log.since(0) and again.next_index == 5
    assert eventlog.EventLog.from_bytes(b"\x01\x02garbage").since(0) == []


def check_bump_is_dismissed_and_motion_wakes_the_soc() -> None:
    hal = SimHal()
    sup = Supervisor(hal)
    hal.vibration_mg = 300
    _run_for(hal, sup, 1000)  # one second of jolt, then still
    hal.vibration_mg = 0
    _run_for(hal, sup, 12_000)
    assert hal.wakes == 0 and sup.log.count(eventlog.BUMP) == 1
    hal.vibration_mg = 300  # a tow: the shaking goes on
    _run_for(hal, sup, 12_000)
    assert hal.wakes == 1 and sup.log.count(eventlog.MOTION) == 1


def check_tilt_wakes_the_soc() -> None:
    hal = SimHal()
    sup = Supervisor(hal)
    hal.gravity = (0, 260, 966)  # about 15 degrees: a wheel lift
    hal.vibration_mg = 100
    _run_for(hal, sup, 11_000)
    assert sup.log.count(eventlog.TILT) == 1 and hal.wakes >= 1


def check_unplug_needs_two_low_samples() -> None:
    hal = SimHal()
    sup = Supervisor(hal)
    config = Config()
    hal.supply = 0
    _run_for(hal, sup, config.sample_ms, step_ms=1000)
    assert sup.log.count(eventlog.UNPLUG) == 0  # one low sample could be a crank dip
    _run_for(hal, sup, config.sample_ms, step_ms=1000)
    assert sup.log.count(eventlog.UNPLUG) == 1 and hal.wakes == 1
    hal.supply = 12_500
    _run_for(hal, sup, config.sample_ms, step_ms=1000)
    assert sup.log.count(eventlog.PLUG) == 1


def check_link_commands() -> None:
    hal = SimHal()
    sup = Supervisor(hal)
    assert _frames(hal)[0][0] == HELLO
    soc = frame.Sender(100)
    hal.rx.extend(soc.frame(SYNC_TIME, (1_767_225_600_000).to_bytes(8, "big")))
    bad = Config()
    bad.unplug_mv = 20_000  # above the low threshold: refused
    hal.rx.extend(soc.frame(SET_CONFIG, bad.pack()))
    hal.rx.extend(soc.frame(SET_CONFIG, b"\x01"))
    hal.rx.extend(soc.frame(99, b""))
    sup.step()
    acks = [p for k, _, p in _frames(hal) if k == ACK]
    assert [a[2] for a in acks] == [0, 1, 1, 1], acks
    assert sup.clock_offset_ms is not None and sup.refused_commands == 3
    hal.vibration_mg = 300
    _run_for(hal, sup, 11_000)
    hal.tx = bytearray()
    hal.rx.extend(soc.frame(READ_EVENTS, (0).to_bytes(4, "big")))
    hal.rx.extend(soc.frame(SLEEP))
    sup.step()
    frames = _frames(hal)
    records = [r for k, _, p in frames if k == EVENTS for r in eventlog.unpack_many(p)]
    kinds = [r[2] for r in records]
    assert kinds[0] == eventlog.BOOT and eventlog.MOTION in kinds
    motion = next(r for r in records if r[2] == eventlog.MOTION)
    assert motion[1] >= 1_767_225_600_000  # synced: Unix ms
    assert records[0][1] <= 0  # the boot record predates the sync: minus uptime
    assert [k for k, _, _ in frames][-3:] == [EVENTS, ACK, ACK]  # the events, then both commands acked


def check_the_log_survives_a_restart_of_the_supervisor() -> None:
    hal = SimHal()
    sup = Supervisor(hal)
    hal.supply = 0
    _run_for(hal, sup, 2 * Config().sample_ms + 1000, step_ms=1000)
    again = Supervisor(hal)  # the MCU restarted; backup RAM kept the log
    kinds = [r[2] for r in again.log.since(0)]
    assert kinds.count(eventlog.BOOT) == 2 and eventlog.UNPLUG in kinds


CHECKS = [check_crc_known_answer, check_frames_round_trip_and_garbage_is_counted,
          check_bad_crc_truncated_oversize_and_replay_are_refused, check_a_new_boot_id_starts_a_new_session,
          check_event_log_ring_and_store, check_bump_is_dismissed_and_motion_wakes_the_soc,
          check_tilt_wakes_the_soc, check_unplug_needs_two_low_samples, check_link_commands,
          check_the_log_survives_a_restart_of_the_supervisor]


def run() -> int:
    for check in CHECKS:
        check()
    print("mcu selftest:", len(CHECKS), "passed")
    return len(CHECKS)
