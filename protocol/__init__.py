"""The lienwatch wire format shared by edge and cloud (see docs/protocol.md)."""
