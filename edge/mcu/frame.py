"""The UART link's frames: sync, length, sequence, kind, payload, CRC-16 (MicroPython and CPython).

    0x7E 0xA5 | len (1) | seq (2, big-endian) | kind (1) | payload (len ≤ 200) | CRC-16 (2)

The CRC is CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF) over len..payload. It is computed by
hand because MicroPython's binascii has no crc_hqx (CPython's tests use it as the oracle).
`Decoder.feed` takes bytes as they arrive and returns the frames that are whole, correct and
new; garbage between frames, bad CRCs, frames cut short (`expire`), oversize lengths and replayed
sequence numbers are refused and counted. A HELLO frame (kind 1) carrying a boot id the decoder
has not seen starts a new session: the peer rebooted and counts from anywhere.
"""

SYNC0 = 0x7E
SYNC1 = 0xA5
MAX_PAYLOAD = 200
HEADER = 6  # sync (2), len, seq (2), kind
OVERHEAD = HEADER + 2
KIND_HELLO = 1


def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def encode(kind: int, seq: int, payload: bytes = b"") -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise ValueError("payload too long")
    if not 0 <= kind <= 255 or not 0 <= seq <= 0xFFFF:
        raise ValueError("kind or seq out of range")
    body = bytes([len(payload), seq >> 8, seq & 0xFF, kind]) + payload
    crc = crc16(body)
    return bytes([SYNC0, SYNC1]) + body + bytes([crc >> 8, crc & 0xFF])


class Decoder:
    """Frames out of a byte stream; every refused byte or frame is counted."""

    def __init__(self, timeout_ms: int = 200) -> None:
        self.timeout_ms = timeout_ms
        self._buffer = bytearray()
        self._partial_since: int | None = None
        self.last_seq: int | None = None
        self.peer_boot: int | None = None
        self.accepted = 0
        self.garbage_bytes = 0
        self.bad_crc = 0
        self.truncated = 0
        self.oversize = 0
        self.replayed = 0

    def counters(self) -> dict[str, int]:
        return {"accepted": self.accepted, "garbage_bytes": self.garbage_bytes, "bad_crc": self.bad_crc,
                "truncated": self.truncated, "oversize": self.oversize, "replayed": self.replayed}

    def feed(self, data: bytes, now_ms: int = 0) -> list[tuple[int, int, bytes]]:
        """(kind, seq, payload) of each new whole frame in the stream so far."""
        self._buffer.extend(data)
        out: list[tuple[int, int, bytes]] = []
        buf = self._buffer
        while True:
            start = self._find_sync(buf)
            if start < 0:
                keep = 1 if buf and buf[-1] == SYNC0 else 0
                self.garbage_bytes += len(buf) - keep
                self._buffer = buf = bytearray(buf[len(buf) - keep:])
                break
            if start:
                self.garbage_bytes += start
                buf = bytearray(buf[start:])
            if len(buf) < HEADER:
                break
            length = buf[2]
            if length > MAX_PAYLOAD:
                self.oversize += 1
                buf = bytearray(buf[1:])  # not a frame start after all: rescan
                continue
            if len(buf) < HEADER + length + 2:
                break
            body = bytes(buf[2:HEADER + length])
            crc = (buf[HEADER + length] << 8) | buf[HEADER + length + 1]
            if crc16(body) != crc:
                self.bad_crc += 1
                buf = bytearray(buf[1:])  # a frame may start inside the bad one
                continue
            buf = bytearray(buf[HEADER + length + 2:])
            seq = (body[1] << 8) | body[2]
            kind = body[3]
            payload = body[4:]
            if self._fresh(kind, seq, payload):
                self.accepted += 1
                out.append((kind, seq, payload))
            else:
                self.replayed += 1
        self._buffer = buf
        self._partial_since = (self._partial_since if self._partial_since is not None else now_ms) \
            if buf else None
        return out

    def expire(self, now_ms: int) -> None:
        """Drop a frame that stopped arriving more than `timeout_ms` ago (counted as truncated)."""
        since = self._partial_since
        if self._buffer and since is not None and now_ms - since > self.timeout_ms:
            self.truncated += 1
            self._buffer = bytearray()
            self._partial_since = None

    @staticmethod
    def _find_sync(buf: bytearray) -> int:
        for i in range(len(buf) - 1):
            if buf[i] == SYNC0 and buf[i + 1] == SYNC1:
                return i
        return -1

    def _fresh(self, kind: int, seq: int, payload: bytes) -> bool:
        if kind == KIND_HELLO and len(payload) >= 4:
            boot = int.from_bytes(payload[:4], "big")
            if boot != self.peer_boot:
                self.peer_boot = boot
                self.last_seq = seq
                return True
        if self.last_seq is None:
            self.last_seq = seq
            return True
        if 0 < ((seq - self.last_seq) & 0xFFFF) < 0x8000:
            self.last_seq = seq
            return True
        return False


class Sender:
    """Numbers outgoing frames."""

    def __init__(self, seq: int = 0) -> None:
        self.seq = seq & 0xFFFF

    def frame(self, kind: int, payload: bytes = b"") -> bytes:
        self.seq = (self.seq + 1) & 0xFFFF
        return encode(kind, self.seq, payload)
