"""lienwatch: telematics for vehicles that serve as loan collateral.

This package holds what every stage shares: the command line, the injectable clock, the error
base class and the local service harness (PostgreSQL, mosquitto) used by tests and the demo.
"""

__version__ = "0.1.0"
