"""Dashboards: the web API and phone page (:mod:`crowdwatch.dashboards.web`)."""
