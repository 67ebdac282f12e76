"""selfreward: one model that writes its prompts, judges its answers and trains on its own judgments."""

__version__ = "0.1.0"
