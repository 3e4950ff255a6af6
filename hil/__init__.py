"""Hardware-in-the-loop: emulated ECUs, GNSS, power and motion, and scripted scenarios."""
