"""Create or update the crowdwatch folder, data source and dashboards in a running Grafana.

For Grafanas that are not provisioned from files (Grafana Cloud, a shared instance): the
same objects as ``configs/grafana/provisioning`` through the HTTP API, with ``grafana-client``
and a service-account token.  Each object is looked up by its uid first; a 404 means create,
anything found is updated in place, so pushing twice changes nothing but the versions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import niquests
from grafana_client.api import GrafanaApi
from grafana_client.client import GrafanaClientError, GrafanaException, GrafanaUnauthorizedError

from crowdwatch.contracts.config import CrowdwatchConfig
from crowdwatch.contracts.errors import GrafanaError
from crowdwatch.dashboards.grafana.provisioning import (
    DATASOURCE_UID,
    FOLDER_TITLE,
    FOLDER_UID,
    DataSourceSettings,
    dashboard_models,
    datasource_model,
)

logger = logging.getLogger(__name__)

TOKEN_ENV = "CROWDWATCH_GRAFANA_TOKEN"


@dataclass(slots=True)
class PushResult:
    """What the push did to each object: ``created`` or ``updated``, by kind and uid."""

    actions: list[tuple[str, str, str]] = field(default_factory=list)

    def record(self, kind: str, uid: str, action: str) -> None:
        logger.info("grafana %s %s: %s", kind, uid, action)
        self.actions.append((kind, uid, action))


def _exists(lookup: Any, uid: str) -> bool:
    try:
        lookup(uid)
    except GrafanaClientError as exc:
        if exc.status_code == 404:
            return False
        raise
    return True


def push_dashboards(
    config: CrowdwatchConfig,
    url: str,
    token: str,
    datasource: DataSourceSettings,
    *,
    timeout_s: float = 10.0,
) -> PushResult:
    """Create or update the folder, the PostgreSQL data source and every dashboard.

    Args:
        config: the site config the dashboards are built from.
        url: Grafana's base URL, e.g. ``https://grafana.example.org`` (a sub-path is kept).
        token: a service-account token with the Editor role (folders, dashboards) and data
            source write permission.
        datasource: how Grafana reaches PostgreSQL (a read-only role is enough).
        timeout_s: per-request timeout.

    Returns:
        What was created and what was updated.

    Raises:
        GrafanaError: Grafana is unreachable, refused the token (401) or a request.
    """
    if not token:
        raise GrafanaError(f"no Grafana token: pass --token or set {TOKEN_ENV}")
    api = GrafanaApi.from_url(url, credential=token, timeout=timeout_s)
    result = PushResult()
    try:
        _push(api, config, datasource, result)
    except GrafanaUnauthorizedError as exc:
        raise GrafanaError(
            f"Grafana at {url} refused the token (401 Unauthorized): check --token or "
            f"{TOKEN_ENV}, and that the service account is not disabled"
        ) from exc
    except GrafanaException as exc:
        raise GrafanaError(f"Grafana at {url} refused a request: {exc.message}") from exc
    except niquests.exceptions.RequestException as exc:
        raise GrafanaError(f"cannot reach Grafana at {url}: {exc}") from exc
    finally:
        api.client.s.close()
    return result


def _push(
    api: GrafanaApi, config: CrowdwatchConfig, settings: DataSourceSettings, result: PushResult
) -> None:
    if _exists(api.folder.get_folder, FOLDER_UID):
        api.folder.update_folder(FOLDER_UID, title=FOLDER_TITLE, overwrite=True)
        result.record("folder", FOLDER_UID, "updated")
    else:
        api.folder.create_folder(FOLDER_TITLE, uid=FOLDER_UID)
        result.record("folder", FOLDER_UID, "created")

    model = datasource_model(settings)
    if _exists(api.datasource.get_datasource_by_uid, DATASOURCE_UID):
        api.datasource.update_datasource_by_uid(DATASOURCE_UID, model)
        result.record("datasource", DATASOURCE_UID, "updated")
    else:
        api.datasource.create_datasource(model)
        result.record("datasource", DATASOURCE_UID, "created")

    for dashboard in dashboard_models(config):
        uid = dashboard["uid"]
        existed = _exists(api.dashboard.get_dashboard, uid)
        api.dashboard.update_dashboard(
            {
                "dashboard": {**dashboard, "id": None},
                "folderUid": FOLDER_UID,
                # Overwrite only what we know is ours: on create, a uid taken meanwhile fails.
                "overwrite": existed,
                "message": "crowdwatch dashboards push",
            }
        )
        result.record("dashboard", uid, "updated" if existed else "created")
