"""The stored receipt (kind 18, downlink): which (boot, seq) of a device the receiver committed.

`encode_body` validates and returns the CBOR-ready body map; `decode_body` takes decoded,
untrusted CBOR. `receipt_for` builds the receipt of a set of seqs (ranges of consecutive seqs),
`split_receipt` keeps each message within the range limit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from protocol import cbor
from protocol import fields as f
from protocol.errors import InvalidFieldError, ProtocolError
from protocol.limits import (
    INT63_MAX,
    MAX_RECEIPT_BOOTS,
    MAX_RECEIPT_RANGES,
    MAX_RECEIPT_SPAN,
    MAX_TIME_NS,
    UINT32_MAX,
)
from protocol.messages import BootReceipt, StoredReceipt


def _ranges(value: object, what: str, budget: int) -> tuple[tuple[int, int], ...]:
    items = f.array(value, what, 1, budget)
    out: list[tuple[int, int]] = []
    previous = -2
    for index, item in enumerate(items):
        pair = f.array(item, f"{what}[{index}]", 2, 2)
        first = f.integer(pair[0], f"{what}[{index}] first seq", 0, INT63_MAX)
        last = f.integer(pair[1], f"{what}[{index}] last seq", first, INT63_MAX)
        if last - first >= MAX_RECEIPT_SPAN:
            raise InvalidFieldError(f"{what}[{index}] covers more than {MAX_RECEIPT_SPAN} seqs")
        if first <= previous + 1:
            raise InvalidFieldError(f"{what} must be ascending, disjoint and not adjacent")
        previous = last
        out.append((first, last))
    return tuple(out)


def _check(receipt: StoredReceipt) -> list[Any]:
    f.device_id(receipt.target_device_id, "target_device_id")
    f.integer(receipt.issued_ns, "issued_ns", 0, MAX_TIME_NS)
    if not isinstance(receipt.boots, tuple) or not 1 <= len(receipt.boots) <= MAX_RECEIPT_BOOTS:
        raise InvalidFieldError(f"a stored receipt names 1..{MAX_RECEIPT_BOOTS} boots")
    budget = MAX_RECEIPT_RANGES
    boots: list[Any] = []
    for boot in receipt.boots:
        boot_id = f.integer(boot.boot_id, "boot_id", 0, UINT32_MAX)
        wire = [list(r) for r in boot.ranges] if isinstance(boot.ranges, tuple) else None
        ranges = _ranges(wire, f"boot {boot_id} ranges", budget)
        budget -= len(ranges)
        boots.append([boot_id, [list(r) for r in ranges]])
    return boots


def encode_body(receipt: StoredReceipt) -> dict[int, Any]:
    return {1: receipt.target_device_id, 2: receipt.issued_ns, 3: _check(receipt)}


def decode_body(body: Mapping[Any, Any]) -> StoredReceipt:
    target = f.device_id(body.get(1), "target_device_id")
    issued = f.integer(body.get(2), "issued_ns", 0, MAX_TIME_NS)
    items = f.array(body.get(3), "receipt boots", 1, MAX_RECEIPT_BOOTS)
    budget = MAX_RECEIPT_RANGES
    boots: list[BootReceipt] = []
    seen: set[int] = set()
    for item in items:
        pair = f.array(item, "boot receipt", 2, 2)
        boot_id = f.integer(pair[0], "boot_id", 0, UINT32_MAX)
        if boot_id in seen:
            raise InvalidFieldError(f"boot {boot_id} appears twice in one receipt")
        seen.add(boot_id)
        ranges = _ranges(pair[1], f"boot {boot_id} ranges", budget)
        budget -= len(ranges)
        if budget < 0:
            raise InvalidFieldError(f"a stored receipt holds at most {MAX_RECEIPT_RANGES} ranges")
        boots.append(BootReceipt(boot_id, ranges))
    return StoredReceipt(target, issued, tuple(boots))


def seq_ranges(seqs: Iterable[int]) -> list[tuple[int, int]]:
    """Consecutive runs of `seqs` as inclusive (first, last) ranges, ascending."""
    out: list[tuple[int, int]] = []
    for seq in sorted(set(seqs)):
        if out and seq == out[-1][1] + 1 and seq - out[-1][0] < MAX_RECEIPT_SPAN:
            out[-1] = (out[-1][0], seq)
        else:
            out.append((seq, seq))
    return out


def receipts_for(device_id: str, stored: Mapping[int, Iterable[int]], issued_ns: int) -> list[StoredReceipt]:
    """The receipts (as few as the limits allow) confirming `stored`: boot id -> seqs."""
    receipts: list[StoredReceipt] = []
    boots: list[BootReceipt] = []
    budget = MAX_RECEIPT_RANGES
    for boot_id in sorted(stored):
        ranges = seq_ranges(stored[boot_id])
        while ranges:
            if len(boots) == MAX_RECEIPT_BOOTS or budget == 0:
                receipts.append(StoredReceipt(device_id, issued_ns, tuple(boots)))
                boots, budget = [], MAX_RECEIPT_RANGES
            part, ranges = ranges[:budget], ranges[budget:]
            boots.append(BootReceipt(boot_id, tuple(part)))
            budget -= len(part)
    if boots:
        receipts.append(StoredReceipt(device_id, issued_ns, tuple(boots)))
    return receipts


def uplink_key(payload: bytes) -> tuple[int, int] | None:
    """(boot_id, seq) of an encoded uplink message, None if it is not one. Reads the CBOR items
    only (packed telemetry columns stay byte strings): a few microseconds for a batch."""
    try:
        envelope = cbor.loads(payload)
    except ProtocolError:
        return None
    if type(envelope) is not list or len(envelope) != 4 or type(envelope[2]) is not list:
        return None
    header = envelope[2]
    if len(header) < 3 or type(header[1]) is not int or type(header[2]) is not int:
        return None
    return header[1], header[2]
