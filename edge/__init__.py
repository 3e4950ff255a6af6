"""The on-vehicle agent: sources → ring buffers/features → detectors → events → uplink."""
