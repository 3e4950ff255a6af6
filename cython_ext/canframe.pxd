# cython: language_level=3
"""The CAN frame path's C level: one received frame as a struct, a batch of them.

A `FrameBatch` holds frames as python-can would deliver them (id, flags, DLC, payload), read
straight from a socket (`read_datagrams`) or copied from `can.Message`s (`append_message`);
`ChangeDecoder.process` walks it without a Python object per frame.
"""

from libc.stdint cimport int64_t, uint8_t, uint32_t

cdef enum:
    FRAME_EXTENDED = 1
    FRAME_REMOTE = 2
    FRAME_ERROR = 4
    FRAME_FD = 8
    FRAME_BRS = 16
    FRAME_ESI = 32
    FRAME_MAX_DATA = 64


ctypedef struct frame_t:
    double timestamp           # the sender's (python-can's `timestamp`), seconds
    uint32_t arbitration_id
    uint8_t flags              # FRAME_* bits
    uint8_t dlc                # python-can's `dlc` (bytes, not the DLC code), capped at 255
    uint8_t size               # payload bytes received, capped at 255 (only 64 are kept)
    uint8_t data[FRAME_MAX_DATA]


cdef class FrameBatch:
    cdef frame_t* frames
    cdef Py_ssize_t capacity
    cdef Py_ssize_t count
    cdef int _grow(self, Py_ssize_t needed) except -1
    cdef bint _unpack_unsure(self, datagram, unpack) except -1
