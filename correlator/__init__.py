"""correlator: one trace ID in, everything the three pillars know about that request out."""

__version__ = "0.1.0"
