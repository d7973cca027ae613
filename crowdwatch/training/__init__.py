"""Training our own models (needs torch: ``pip install 'crowdwatch[train]'``); never imported by the edge."""
