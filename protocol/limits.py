"""Size and range limits of the wire format (docs/protocol.md, "Size limits").

Decoders check these before allocating anything proportional to a claimed length; encoders
check them so that a device never sends what a receiver must refuse.
"""

from __future__ import annotations

MAJOR_VERSION = 1

MAX_MESSAGE_BYTES = 256 * 1024  # one MQTT payload
MAX_UNPACKED_BYTES = 512 * 1024  # one packed column block after inflating
MAX_DEPTH = 6  # CBOR container nesting, deepest legitimate message is 4
MAX_FIXES = 3600  # one hour at 1 Hz
MAX_SAMPLES = 16384
MAX_DEVICE_ID = 64
MAX_NAME = 64  # detector names, feature names, setting names, firmware version
MAX_TEXT = 256  # free-text detail lines, string setting values
MAX_FEATURES = 64
MAX_SETTINGS = 256
NONCE_BYTES = 16
SIGNATURE_BYTES = 64

MAX_SPAN_MS = 2**30 - 1  # about 12.4 days between the oldest and newest time in one batch
MAX_TIME_MS = 9_000_000_000_000  # 2255-03-14, so times in ns stay within int64
MAX_TIME_NS = MAX_TIME_MS * 1_000_000
UINT32_MAX = 2**32 - 1
INT63_MAX = 2**63 - 1
MAX_RECEIPT_BOOTS = 16  # boots named in one stored receipt
MAX_RECEIPT_RANGES = 2048  # seq ranges in one stored receipt, over all its boots
MAX_RECEIPT_SPAN = 65536  # seqs one range may cover (a receipt confirms a few seconds of messages)
