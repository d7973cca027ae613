"""Grafana dashboards as code: the command-center wall and the per-site drill-down.

:mod:`~crowdwatch.dashboards.grafana.dashboards` builds them from the site config with the
typed builders of :mod:`~crowdwatch.dashboards.grafana.model`;
:mod:`~crowdwatch.dashboards.grafana.provisioning` writes Grafana's provisioning files
(``crowdwatch dashboards generate``); :mod:`~crowdwatch.dashboards.grafana.push` creates or
updates them in a running Grafana over its HTTP API (``crowdwatch dashboards push``).
"""
