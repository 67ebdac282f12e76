"""The one error type users see: bad configuration or input. Its own module so that every other
module (the schema, resources, the testbed) can raise it without importing the config machinery."""


class ConfigError(ValueError):
    """A bad key, value or input file. The CLI prints the message and exits with code 2."""
