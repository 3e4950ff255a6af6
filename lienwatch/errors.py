"""The root of lienwatch's typed errors; the CLI turns any of them into exit code 2."""


class LienwatchError(Exception):
    """Bad input or an unusable setting: the message says what is wrong and what to do."""

    exit_code: int = 2


class ConfigError(LienwatchError):
    """A configuration file or value is invalid (`ConfigError: detect.tow.radius_m must be > 0`)."""


class ServiceError(LienwatchError):
    """A local service (PostgreSQL, mosquitto) could not be found, started or reached."""
