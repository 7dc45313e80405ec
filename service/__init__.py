"""shopcast: recommendations and personalized marketing for multi-channel shops."""

__version__ = "0.1.0"
