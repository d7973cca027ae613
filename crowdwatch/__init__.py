"""crowdwatch: real-time tourist-traffic and beach-crowd monitoring."""

__version__ = "0.1.0"
