# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""The passive CAN frame path in C: frames read in batches, the on-change filter, DBC decoding.

`FrameBatch.read_datagrams` drains a python-can udp_multicast socket and unpacks each datagram
(python-can's msgpack map of a `can.Message`) into a C struct; `ChangeDecoder.process` then looks
each frame's id up in a table, compares its mapped bits with the last clean frame of that id and
decodes only what changed, with shifts and masks per signal — no Python object per frame, one
per emitted sample. The rules are edge/sources/dbc.py's (`DbcDecoder`), whose pure-Python
twin (edge/sources/dbc_reference.py) is the tests' oracle.

Why by hand: python-can has no batch read and builds a `can.Message` per frame, msgpack a dict
per datagram, cantools a dict per decode; at 2,000 frames/s those objects were 85 % of the
agent's instructions (docs/gateway.md). Anything this code is not sure of goes back to the
ecosystem: a datagram not in the exact form python-can's `pack_message` writes is unpacked by
python-can's own `unpack_message(check=True)`, and a message the C decoder does not take
(multiplexed, unsigned 64-bit integers, ranges that could overflow int64) is decoded by the
Python `FrameDecoder` through its fallback callable.

Compiled with -ffp-contract=off (setup.py): `raw * factor + offset` must round twice as
CPython's float arithmetic does, never fused into one FMA (the default on AArch64).
"""

from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.errno cimport EAGAIN, EINTR, errno
from libc.math cimport isfinite, trunc
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy, memset
from libc.string cimport strerror

cdef extern from "<errno.h>" nogil:
    int EWOULDBLOCK

cdef extern from "<sys/socket.h>" nogil:
    ssize_t recv(int fd, void* buf, size_t n, int flags)
    int MSG_DONTWAIT

cdef enum:
    DATAGRAM_BYTES = 4096  # python-can's udp_multicast `max_buffer`
    DATAGRAM_FRAME = 1     # unpacked into the frame
    DATAGRAM_UNSURE = 0    # not in pack_message's exact form, or invalid: python-can decides


# ------------------------------------------------------------------------------ datagrams

cdef inline uint64_t _be(const uint8_t* p, int n) noexcept nogil:
    cdef uint64_t v = 0
    cdef int i
    for i in range(n):
        v = (v << 8) | p[i]
    return v


cdef int _key(const uint8_t* k, Py_ssize_t n) noexcept nogil:
    """Which of pack_message's 11 keys `k` is (0..10), -1 for any other."""
    cdef const char* names[11]
    names[:] = [b"timestamp", b"arbitration_id", b"is_extended_id", b"is_remote_frame",
                b"is_error_frame", b"channel", b"dlc", b"data", b"is_fd", b"bitrate_switch",
                b"error_state_indicator"]
    cdef int i, j
    cdef const char* name
    for i in range(11):
        name = names[i]
        j = 0
        while j < n and name[j] != 0 and <char>k[j] == name[j]:
            j += 1
        if j == n and name[j] == 0:
            return i
    return -1


cdef int parse_datagram(const uint8_t* p, Py_ssize_t n, frame_t* out) noexcept nogil:
    """One udp_multicast datagram as `unpack_message(check=True)` reads it, or DATAGRAM_UNSURE.

    Takes only what pack_message writes: a fixmap of its keys with float/int/bool/nil/bin
    values, nothing after it, and a frame `can.Message(check=True)` accepts; anything else
    (another type, an unknown key, an invalid frame, garbage) is left to python-can.
    """
    cdef Py_ssize_t pos = 1, klen, dlen = -1
    cdef const uint8_t* data = NULL
    cdef int entries, e, key, tag
    cdef double timestamp = 0.0
    cdef float f32
    cdef uint64_t u, arbitration_id = 0
    cdef int64_t dlc = -1
    cdef bint flag[11]
    cdef uint32_t word
    memset(flag, 0, sizeof(flag))
    flag[2] = True  # is_extended_id defaults to True in can.Message
    if n < 1 or p[0] & 0xF0 != 0x80:
        return DATAGRAM_UNSURE
    entries = p[0] & 0x0F
    for e in range(entries):
        if pos >= n or p[pos] & 0xE0 != 0xA0:
            return DATAGRAM_UNSURE
        klen = p[pos] & 0x1F
        pos += 1
        if pos + klen >= n:
            return DATAGRAM_UNSURE
        key = _key(p + pos, klen)
        pos += klen
        tag = p[pos]
        pos += 1
        if key < 0:
            return DATAGRAM_UNSURE
        if key == 0:  # timestamp
            if tag == 0xCB and pos + 8 <= n:
                u = _be(p + pos, 8)
                memcpy(&timestamp, &u, 8)
                pos += 8
            elif tag == 0xCA and pos + 4 <= n:
                word = <uint32_t>_be(p + pos, 4)
                memcpy(&f32, &word, 4)
                timestamp = f32
                pos += 4
            else:
                return DATAGRAM_UNSURE
        elif key == 1 or key == 6:  # arbitration_id, dlc: non-negative integers (dlc also nil)
            if tag <= 0x7F:
                u = tag
            elif tag == 0xCC and pos + 1 <= n:
                u = p[pos]
                pos += 1
            elif tag == 0xCD and pos + 2 <= n:
                u = _be(p + pos, 2)
                pos += 2
            elif tag == 0xCE and pos + 4 <= n:
                u = _be(p + pos, 4)
                pos += 4
            elif tag == 0xC0 and key == 6:
                dlc = -1
                continue
            else:
                return DATAGRAM_UNSURE
            if key == 1:
                arbitration_id = u
            else:
                dlc = <int64_t>u
        elif key == 5:  # channel: None only (a str would need UTF-8 checking: python-can's job)
            if tag != 0xC0:
                return DATAGRAM_UNSURE
        elif key == 7:  # data: bin 8/16 or nil
            if tag == 0xC4 and pos + 1 <= n:
                dlen = p[pos]
                pos += 1
            elif tag == 0xC5 and pos + 2 <= n:
                dlen = <Py_ssize_t>_be(p + pos, 2)
                pos += 2
            elif tag == 0xC0:
                dlen = -1
                data = NULL
                continue
            else:
                return DATAGRAM_UNSURE
            if pos + dlen > n:
                return DATAGRAM_UNSURE
            data = p + pos
            pos += dlen
        else:  # the booleans
            if tag == 0xC2:
                flag[key] = False
            elif tag == 0xC3:
                flag[key] = True
            else:
                return DATAGRAM_UNSURE
    if pos != n:  # msgpack's ExtraData, or a value cut short
        return DATAGRAM_UNSURE
    # can.Message(check=True): data dropped for remote frames, dlc defaults to the data length
    cdef bint remote = flag[3], error = flag[4], fd = flag[8]
    if remote or data == NULL:
        dlen = 0
    if dlc < 0:
        dlc = dlen
    if not (timestamp >= 0.0 and isfinite(timestamp)):
        return DATAGRAM_UNSURE
    if remote and (error or fd):
        return DATAGRAM_UNSURE
    if arbitration_id >= (0x20000000 if flag[2] else 0x800):
        return DATAGRAM_UNSURE
    if dlc > (64 if fd else 8) or (not remote and dlc != dlen):
        return DATAGRAM_UNSURE
    if not fd and (flag[9] or flag[10]):
        return DATAGRAM_UNSURE
    out.timestamp = timestamp
    out.arbitration_id = <uint32_t>arbitration_id
    out.flags = ((FRAME_EXTENDED if flag[2] else 0) | (FRAME_REMOTE if remote else 0)
                 | (FRAME_ERROR if error else 0) | (FRAME_FD if fd else 0)
                 | (FRAME_BRS if flag[9] else 0) | (FRAME_ESI if flag[10] else 0))
    out.dlc = <uint8_t>dlc
    out.size = <uint8_t>dlen
    if dlen:
        memcpy(out.data, data, dlen)
    return DATAGRAM_FRAME


cdef object _integral(value):
    """`value` as an int if it is an integral number (5, 5.0, True), else -1."""
    if type(value) is int:
        return value
    try:
        as_int = int(value)
    except (TypeError, ValueError, OverflowError):
        return -1
    return as_int if as_int == value else -1


cdef class FrameBatch:
    """Frames received in one read, in order; reused from read to read (`clear`)."""

    def __cinit__(self, Py_ssize_t capacity=256):
        self.count = 0
        self.capacity = 0
        self.frames = NULL
        self._grow(max(capacity, 1))

    def __dealloc__(self):
        free(self.frames)

    cdef int _grow(self, Py_ssize_t needed) except -1:
        cdef Py_ssize_t capacity = max(needed, 2 * self.capacity)
        cdef frame_t* frames = <frame_t*>realloc(self.frames, capacity * sizeof(frame_t))
        if frames == NULL:
            raise MemoryError()
        self.frames = frames
        self.capacity = capacity
        return 0

    def __len__(self):
        return self.count

    def clear(self):
        """Forget the frames (the storage stays)."""
        self.count = 0

    def append_message(self, msg):
        """Copy one `can.Message` in (any bus's: virtual, SocketCAN through python-can, ...)."""
        if self.count == self.capacity:
            self._grow(self.count + 1)
        cdef frame_t* f = &self.frames[self.count]
        cdef const uint8_t[:] view
        data = msg.data
        # An id that is no 32-bit integer (a virtual bus carries any object; python-can's check
        # lets a NaN through) becomes one no CAN frame has: it matches no message.
        arbitration_id = _integral(msg.arbitration_id)
        f.timestamp = msg.timestamp
        f.arbitration_id = arbitration_id if 0 <= arbitration_id < 0xFFFFFFFF else 0xFFFFFFFF
        f.flags = ((FRAME_EXTENDED if msg.is_extended_id else 0) | (FRAME_REMOTE if msg.is_remote_frame else 0)
                   | (FRAME_ERROR if msg.is_error_frame else 0) | (FRAME_FD if msg.is_fd else 0)
                   | (FRAME_BRS if msg.bitrate_switch else 0) | (FRAME_ESI if msg.error_state_indicator else 0))
        f.dlc = min(max(_integral(msg.dlc), 0), 255)
        size = len(data) if data is not None else 0
        f.size = min(size, 255)
        if size:
            view = bytes(data[:FRAME_MAX_DATA])
            memcpy(f.data, &view[0], view.shape[0])
        self.count += 1

    def messages(self):
        """The frames as `can.Message`s (what python-can's `recv` would have returned)."""
        import can

        out = []
        cdef Py_ssize_t i
        cdef frame_t* f
        for i in range(self.count):
            f = &self.frames[i]
            out.append(can.Message(
                timestamp=f.timestamp, arbitration_id=f.arbitration_id,
                is_extended_id=bool(f.flags & FRAME_EXTENDED), is_remote_frame=bool(f.flags & FRAME_REMOTE),
                is_error_frame=bool(f.flags & FRAME_ERROR), dlc=f.dlc,
                data=PyBytes_FromStringAndSize(<char*>f.data, min(f.size, FRAME_MAX_DATA)),
                is_fd=bool(f.flags & FRAME_FD), bitrate_switch=bool(f.flags & FRAME_BRS),
                error_state_indicator=bool(f.flags & FRAME_ESI)))
        return out

    def read_datagrams(self, int fd, Py_ssize_t limit, unpack):
        """Append what a udp_multicast socket has queued, up to `limit` frames in the batch.

        Never waits (MSG_DONTWAIT). A datagram not in pack_message's exact form goes to
        `unpack(datagram, check=True)` (python-can's `unpack_message`); one that raises there is
        not a CAN frame and is counted. Returns that count; an error of the socket other than
        "nothing queued" raises `OSError`.
        """
        cdef uint8_t buf[DATAGRAM_BYTES]
        cdef ssize_t got = 0
        cdef int error = 0
        cdef bint unsure
        cdef Py_ssize_t malformed = 0
        while self.count < limit:
            if self.count == self.capacity:
                self._grow(self.count + 1)
            unsure = False
            with nogil:
                while self.count < limit and self.count < self.capacity:
                    got = recv(fd, buf, DATAGRAM_BYTES, MSG_DONTWAIT)
                    if got < 0:
                        error = errno
                        break
                    if parse_datagram(buf, got, &self.frames[self.count]) != DATAGRAM_FRAME:
                        unsure = True
                        break
                    self.count += 1
            if got < 0:
                if error == EAGAIN or error == EWOULDBLOCK or error == EINTR:
                    break
                raise OSError(error, strerror(error).decode("utf-8", "replace"))
            if unsure and not self._unpack_unsure(PyBytes_FromStringAndSize(<char*>buf, got), unpack):
                malformed += 1
        return malformed

    cdef bint _unpack_unsure(self, datagram, unpack) except -1:
        try:
            msg = unpack(datagram, check=True)
        except Exception:  # msgpack's errors, or fields can.Message refuses: not a CAN frame
            return False
        self.append_message(msg)
        return True

    def append_datagrams(self, datagrams, unpack):
        """`read_datagrams` for datagrams already read (bytes each); the count of malformed ones."""
        cdef const uint8_t[:] view
        cdef Py_ssize_t malformed = 0
        for datagram in datagrams:
            if self.count == self.capacity:
                self._grow(self.count + 1)
            view = datagram
            if view.shape[0] and parse_datagram(&view[0], view.shape[0], &self.frames[self.count]) == DATAGRAM_FRAME:
                self.count += 1
            elif not self._unpack_unsure(bytes(datagram), unpack):
                malformed += 1
        return malformed


# ------------------------------------------------------------------------------ decoding

cdef enum:
    VALUE_IDENTITY = 0   # factor int 1, offset 0: the raw value itself
    VALUE_INT = 1        # int factor and offset: exact integer arithmetic (range checked)
    VALUE_INT_FLOAT = 2  # int factor, float offset: exact product, then a float sum
    VALUE_FLOAT = 3      # float factor: raw * factor + offset in doubles

ctypedef struct entry_t:
    int64_t signal_id
    int slot                 # index of the message's first entry with this signal id
    int byte0                # payload byte holding the signal's least significant bit
    int bit0                 # that bit's position in the byte
    int step                 # +1 Intel, -1 Motorola: where the next more significant bits are
    int length
    bint is_signed
    int float_bits           # 0 integer, 32 or 64 IEEE
    int kind                 # VALUE_*
    int64_t ifactor
    int64_t ioffset
    double factor
    double offset
    double scale
    Py_ssize_t enum_start    # into ChangeDecoder.enum_keys/enum_values; enum_count -1: no map
    Py_ssize_t enum_count

ctypedef struct message_t:
    uint32_t frame_id
    int length
    bint native              # decoded here; else by the Python fallback
    int entry_start
    int entry_count
    bint has_key
    int norder               # slots that have a last value, in the order they first got one
    int64_t refresh_at_ns
    uint8_t mask[FRAME_MAX_DATA]
    uint8_t key[FRAME_MAX_DATA]


cdef inline uint64_t _extract(const uint8_t* d, int byte, int bit, int step, int length) noexcept nogil:
    cdef uint64_t out = 0, b
    cdef int got = 0, take
    while got < length:
        b = d[byte] >> bit
        take = 8 - bit
        if take > length - got:
            take = length - got
        out |= (b & ((<uint64_t>1 << take) - 1)) << got
        got += take
        byte += step
        bit = 0
    return out


cdef class ChangeDecoder:
    """The manifest's messages compiled for `process`: an id table, masks, signals, on-change state.

    `messages`: per mapped frame id (frame_id, length, mask, entries, fallback) — `mask` the
    payload bits the mapped signals read (bytes, up to 64), `entries` one tuple per manifest
    entry (signal_id, little_endian, shift, length, signed, float_bits, kind, int_factor,
    int_offset, factor, offset, scale, enum items or None; edge/sources/dbc.py builds them),
    `fallback` None when the message decodes here, else a callable data -> (((entry index,
    value), ...), rejected signals, decoded) that decodes it in Python. `refresh_ns` 0: every
    mapped frame is decoded and all its signals returned. Counters as `DbcDecoder`'s.
    """

    cdef message_t* messages
    cdef entry_t* entries
    cdef int nmessages
    cdef int nentries
    cdef short standard[0x800]   # frame id < 0x800 -> message index, -1: not mapped
    cdef uint32_t* large_ids     # the others, sorted, with their message index
    cdef int* large_index
    cdef int nlarge
    cdef list _fallbacks
    cdef int64_t* enum_keys
    cdef double* enum_values
    cdef double* last            # per entry slot: the value last emitted
    cdef bint* has_last
    cdef int* order              # per message, from entry_start: slots in the order they got a value
    cdef int* scratch_entry
    cdef double* scratch_value
    cdef int64_t* out_ids
    cdef double* out_values
    cdef Py_ssize_t nout
    cdef Py_ssize_t out_capacity
    cdef readonly int64_t refresh_ns
    cdef readonly Py_ssize_t decoded
    cdef readonly Py_ssize_t rejected
    cdef readonly Py_ssize_t ignored
    cdef readonly Py_ssize_t unchanged

    def __cinit__(self, messages, int64_t refresh_ns):
        cdef Py_ssize_t nenum = 0, i, j, k
        cdef message_t* m
        cdef entry_t* e
        messages = list(messages)
        self.refresh_ns = refresh_ns
        self.nmessages = len(messages)
        self.nentries = sum(len(spec[3]) for spec in messages)
        nenum = sum(len(entry[12]) for spec in messages for entry in spec[3] if entry[12] is not None)
        self.messages = <message_t*>malloc(max(self.nmessages, 1) * sizeof(message_t))
        self.entries = <entry_t*>malloc(max(self.nentries, 1) * sizeof(entry_t))
        self.enum_keys = <int64_t*>malloc(max(nenum, 1) * sizeof(int64_t))
        self.enum_values = <double*>malloc(max(nenum, 1) * sizeof(double))
        self.last = <double*>malloc(max(self.nentries, 1) * sizeof(double))
        self.has_last = <bint*>malloc(max(self.nentries, 1) * sizeof(bint))
        self.order = <int*>malloc(max(self.nentries, 1) * sizeof(int))
        self.scratch_entry = <int*>malloc(max(self.nentries, 1) * sizeof(int))
        self.scratch_value = <double*>malloc(max(self.nentries, 1) * sizeof(double))
        self.large_ids = <uint32_t*>malloc(max(self.nmessages, 1) * sizeof(uint32_t))
        self.large_index = <int*>malloc(max(self.nmessages, 1) * sizeof(int))
        self.out_capacity = 256
        self.out_ids = <int64_t*>malloc(self.out_capacity * sizeof(int64_t))
        self.out_values = <double*>malloc(self.out_capacity * sizeof(double))
        if (self.messages == NULL or self.entries == NULL or self.enum_keys == NULL or self.enum_values == NULL
                or self.last == NULL or self.has_last == NULL or self.order == NULL
                or self.scratch_entry == NULL or self.scratch_value == NULL or self.large_ids == NULL
                or self.large_index == NULL or self.out_ids == NULL or self.out_values == NULL):
            raise MemoryError()
        for i in range(0x800):
            self.standard[i] = -1
        self._fallbacks = []
        cdef Py_ssize_t entry_at = 0, enum_at = 0
        large = []
        for i, (frame_id, length, mask, entries, fallback) in enumerate(messages):
            if not 0 <= frame_id < 0x20000000 or not 0 <= length <= FRAME_MAX_DATA:
                raise ValueError(f"frame id {frame_id:#x} / length {length} is not a CAN message's")
            m = &self.messages[i]
            m.frame_id = frame_id
            m.length = length
            m.native = fallback is None
            m.entry_start = entry_at
            m.entry_count = len(entries)
            m.has_key = False
            m.norder = 0
            m.refresh_at_ns = 0
            memset(m.mask, 0, FRAME_MAX_DATA)
            memset(m.key, 0, FRAME_MAX_DATA)
            mask = bytes(mask)[:FRAME_MAX_DATA]
            for k in range(len(mask)):
                m.mask[k] = mask[k]
            self._fallbacks.append(fallback)
            if frame_id < 0x800:
                self.standard[frame_id] = i
            else:
                large.append((frame_id, i))
            ids = []
            for j, entry in enumerate(entries):
                (signal_id, little, shift, bits, signed, float_bits, kind, ifactor, ioffset, factor, offset,
                 scale, enum) = entry
                e = &self.entries[entry_at + j]
                e.signal_id = signal_id
                e.slot = entry_at + (ids.index(signal_id) if signal_id in ids else j)
                ids.append(signal_id)
                e.length = bits
                if m.native and not (1 <= bits <= 64 and 0 <= shift and shift + bits <= 8 * length):
                    raise ValueError(f"signal at bit {shift}, {bits} bits, is outside a {length}-byte payload")
                e.step = 1 if little else -1
                e.byte0 = (shift >> 3) if little else length - 1 - (shift >> 3)
                e.bit0 = shift & 7
                e.is_signed = signed
                e.float_bits = float_bits
                e.kind = kind
                e.ifactor = ifactor
                e.ioffset = ioffset
                e.factor = factor
                e.offset = offset
                e.scale = scale
                self.has_last[entry_at + j] = False
                if enum is None:
                    e.enum_start, e.enum_count = 0, -1
                else:
                    e.enum_start, e.enum_count = enum_at, len(enum)
                    for key, value in enum:
                        self.enum_keys[enum_at] = key
                        self.enum_values[enum_at] = value
                        enum_at += 1
            entry_at += len(entries)
        large.sort()
        self.nlarge = len(large)
        for k, (frame_id, i) in enumerate(large):
            self.large_ids[k] = frame_id
            self.large_index[k] = i

    def __dealloc__(self):
        free(self.messages)
        free(self.entries)
        free(self.enum_keys)
        free(self.enum_values)
        free(self.last)
        free(self.has_last)
        free(self.order)
        free(self.scratch_entry)
        free(self.scratch_value)
        free(self.large_ids)
        free(self.large_index)
        free(self.out_ids)
        free(self.out_values)

    cdef inline int _lookup(self, uint32_t frame_id) noexcept nogil:
        cdef int lo = 0, hi = self.nlarge, mid
        if frame_id < 0x800:
            return self.standard[frame_id]
        while lo < hi:
            mid = (lo + hi) >> 1
            if self.large_ids[mid] < frame_id:
                lo = mid + 1
            else:
                hi = mid
        if lo < self.nlarge and self.large_ids[lo] == frame_id:
            return self.large_index[lo]
        return -1

    cdef int _decode_native(self, message_t* m, const uint8_t* d, bint* clean) noexcept nogil:
        """Decode the message's entries into the scratch arrays; their count (`clean`: all of them)."""
        cdef int j, n = 0
        cdef bint is_int, found
        cdef entry_t* e
        cdef uint64_t bits
        cdef uint32_t word
        cdef float f32
        cdef double raw_f = 0.0, v = 0.0, key_f
        cdef int64_t raw_i = 0, vi = 0, key
        cdef Py_ssize_t k
        for j in range(m.entry_count):
            e = &self.entries[m.entry_start + j]
            bits = _extract(d, e.byte0, e.bit0, e.step, e.length)
            if e.float_bits == 32:
                word = <uint32_t>bits
                memcpy(&f32, &word, 4)
                raw_f = f32
            elif e.float_bits == 64:
                memcpy(&raw_f, &bits, 8)
            elif e.is_signed and e.length < 64 and (bits >> (e.length - 1)) & 1:
                raw_i = <int64_t>(bits | (~(<uint64_t>0) << e.length))
            else:
                raw_i = <int64_t>bits
            is_int = False
            if e.kind == VALUE_IDENTITY:
                if e.float_bits:
                    v = raw_f
                else:
                    vi = raw_i
                    is_int = True
            elif e.kind == VALUE_INT:
                vi = raw_i * e.ifactor + e.ioffset
                is_int = True
            elif e.kind == VALUE_INT_FLOAT:
                v = <double>(raw_i * e.ifactor) + e.offset
            else:
                v = (raw_f if e.float_bits else <double>raw_i) * e.factor + e.offset
            if e.enum_count >= 0:
                if is_int:
                    key = vi
                    found = True
                else:  # int(value) of a finite double, which fits int64 or matches no key
                    found = -9.223372036854775808e18 <= v < 9.223372036854775808e18
                    key = <int64_t>trunc(v) if found else 0
                if found:
                    found = False
                    for k in range(e.enum_start, e.enum_start + e.enum_count):
                        if self.enum_keys[k] == key:
                            v = self.enum_values[k]
                            found = True
                            break
                if not found:
                    self.rejected += 1
                    clean[0] = False
                    continue
            elif is_int:
                v = <double>vi
            v = v * e.scale
            if e.float_bits and not isfinite(v):
                self.rejected += 1
                clean[0] = False
                continue
            self.scratch_entry[n] = j
            self.scratch_value[n] = v
            n += 1
        self.decoded += 1
        return n

    cdef int _decode(self, int index, frame_t* f, bint* clean) except -1:
        """Decode one frame of a mapped id into the scratch arrays; the count (`clean`: all of them)."""
        cdef message_t* m = &self.messages[index]
        cdef int n = 0, j
        cdef Py_ssize_t rejected
        clean[0] = True
        if f.size != m.length:  # a DLC other than the DBC message's is garbage, not a prefix
            self.rejected += 1
            clean[0] = False
            return 0
        if m.native:
            return self._decode_native(m, f.data, clean)
        pairs, rejected, decoded = self._fallbacks[index](PyBytes_FromStringAndSize(<char*>f.data, f.size))
        self.rejected += rejected
        clean[0] = rejected == 0
        if not decoded:
            return 0
        self.decoded += 1
        for j, value in pairs:
            if not 0 <= j < m.entry_count:
                raise ValueError(f"fallback decoder returned entry {j} of {m.entry_count}")
            self.scratch_entry[n] = j
            self.scratch_value[n] = value
            n += 1
        return n

    cdef int _reserve(self, Py_ssize_t more) except -1:
        cdef Py_ssize_t capacity
        cdef int64_t* ids
        cdef double* values
        if self.nout + more <= self.out_capacity:
            return 0
        capacity = max(2 * self.out_capacity, self.nout + more)
        ids = <int64_t*>realloc(self.out_ids, capacity * sizeof(int64_t))
        if ids == NULL:
            raise MemoryError()
        self.out_ids = ids
        values = <double*>realloc(self.out_values, capacity * sizeof(double))
        if values == NULL:
            raise MemoryError()
        self.out_values = values
        self.out_capacity = capacity
        return 0

    cdef inline void _out(self, int64_t signal_id, double value) noexcept nogil:
        self.out_ids[self.nout] = signal_id
        self.out_values[self.nout] = value
        self.nout += 1

    cdef int _frame(self, int index, frame_t* f, int64_t now_ns, bint on_change) except -1:
        cdef message_t* m = &self.messages[index]
        cdef int n, j, k, slot
        cdef bint clean, same
        cdef entry_t* e
        self._reserve(m.entry_count)
        if on_change and m.has_key and f.size == m.length:
            same = True
            for k in range(m.length):
                if (f.data[k] & m.mask[k]) != m.key[k]:
                    same = False
                    break
            if same:
                self.unchanged += 1
                if now_ns < m.refresh_at_ns:
                    return 0
                m.refresh_at_ns = now_ns + self.refresh_ns
                for k in range(m.norder):
                    slot = self.order[m.entry_start + k]
                    self._out(self.entries[slot].signal_id, self.last[slot])
                return 0
        n = self._decode(index, f, &clean)
        if not on_change:
            for k in range(n):
                self._out(self.entries[m.entry_start + self.scratch_entry[k]].signal_id, self.scratch_value[k])
            return 0
        # Only a clean frame may stand for its repetitions: a rejected one is decoded again each time.
        m.has_key = clean
        if clean:
            for k in range(m.length):
                m.key[k] = f.data[k] & m.mask[k]
        if now_ns >= m.refresh_at_ns:
            if clean:  # a signal left out of this frame is still due for its refresh
                m.refresh_at_ns = now_ns + self.refresh_ns
            for k in range(n):
                e = &self.entries[m.entry_start + self.scratch_entry[k]]
                self._out(e.signal_id, self.scratch_value[k])
        else:
            for k in range(n):
                e = &self.entries[m.entry_start + self.scratch_entry[k]]
                if not self.has_last[e.slot] or self.last[e.slot] != self.scratch_value[k]:
                    self._out(e.signal_id, self.scratch_value[k])
        for k in range(n):
            slot = self.entries[m.entry_start + self.scratch_entry[k]].slot
            if not self.has_last[slot]:
                self.has_last[slot] = True
                self.order[m.entry_start + m.norder] = slot
                m.norder += 1
            self.last[slot] = self.scratch_value[k]
        return 0

    def process(self, FrameBatch batch, int64_t now_ns, monitor=None, bint on_change=True):
        """Decode a batch received at `now_ns`; the number of samples now in `output()`.

        With a `monitor` (edge.sources.can_bus.BusMonitor) every frame is accounted there first
        and error and remote frames go no further, as `DbcSource.handle` does; without one they
        are counted as ignored. `on_change` False (or refresh_ns 0): every mapped frame decoded,
        all its signals returned, no state kept or changed (`DbcDecoder.decode`).
        """
        cdef Py_ssize_t i, run = 0
        cdef frame_t* f
        cdef int index
        cdef bint changes = on_change and self.refresh_ns > 0
        self.nout = 0
        for i in range(batch.count):
            f = &batch.frames[i]
            if f.flags & (FRAME_ERROR | FRAME_REMOTE):
                if monitor is None:
                    self.ignored += 1
                elif f.flags & FRAME_ERROR:
                    if run:
                        monitor.observe_frames(run, now_ns)
                        run = 0
                    monitor.observe_error(f.arbitration_id, now_ns)
                else:
                    run += 1  # a remote frame: traffic for the monitor, nothing to decode
                continue
            run += 1
            index = self._lookup(f.arbitration_id)
            if index < 0:
                self.ignored += 1
                continue
            self._frame(index, f, now_ns, changes)
        if run and monitor is not None:
            monitor.observe_frames(run, now_ns)
        return self.nout

    def output(self):
        """[(signal id, value)] of the last `process`, in order."""
        cdef Py_ssize_t i
        return [(self.out_ids[i], self.out_values[i]) for i in range(self.nout)]

    def emit(self, sink, sample, int64_t mono_ns):
        """Hand the last `process`'s samples to `sink` as `sample(mono_ns, signal id, value)`."""
        cdef Py_ssize_t i
        for i in range(self.nout):
            sink(sample(mono_ns, self.out_ids[i], self.out_values[i]))
        return self.nout
