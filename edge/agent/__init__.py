"""The agent runtime: config, wiring (sources → detectors → uplink), run loop, status, downlink."""
