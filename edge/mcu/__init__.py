"""edge/mcu: the companion MCU's supervisor, in MicroPython (also runs on CPython for tests).

`frame` is the UART link's framing (shared with the Linux side, edge/power/mculink.py),
`eventlog` the event log that survives the SoC being off, `supervisor` the logic (wake-on-motion,
tilt, supply sampling and unplug, the link's commands), `hal` the thin hardware layer and its
simulated twin, `board` the STM32 implementation of the layer (MicroPython only). See
docs/power.md, "The supervisor".
"""
