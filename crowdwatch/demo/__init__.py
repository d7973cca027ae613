"""``crowdwatch demo``: the whole district on one machine with only Python installed."""
