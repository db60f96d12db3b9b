"""What the mobile preview app reads: a ready build's metadata with fresh signed URLs, for
whoever holds the build's stateless preview token (no account)."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from contracts.previews import BuildPhase
from core.config import Settings
from core.db import without_connection
from core.errors import AuthError, NotFound
from core.security import InvalidToken, decode_preview_token
from core.storage import ObjectNotFound, Storage
from services.previews import layout
from services.previews.repository import PreviewRepository
from services.previews.schemas import ManifestAsset, ManifestRead

log = logging.getLogger(__name__)


class ManifestService:
    """Errors: 401 AUTH_ERROR for a bad, expired or missing token; 404 NOT_FOUND for a build
    that no longer exists (its project deleted, or expired), one that is not ready (details:
    `status`) and one whose files are gone; 503 STORAGE_ERROR when storage cannot be read."""

    def __init__(self, session: AsyncSession, settings: Settings, storage: Storage) -> None:
        self.session = session
        self.settings = settings
        self.storage = storage
        self.builds = PreviewRepository(session)

    async def manifest(self, token: str) -> ManifestRead:
        try:
            claims = decode_preview_token(self.settings, token)
        except InvalidToken as exc:
            log.info("preview token rejected: %s", exc)
            raise AuthError("Invalid or expired preview token") from None
        build = await self.builds.get(claims.build_id)
        if build is None or build.project_id != claims.project_id:
            raise NotFound("Build not found")
        if build.status != BuildPhase.READY:  # running (again), failed or cancelled
            raise NotFound(
                "The build is not ready",
                details={"build_id": build.build_id, "status": build.status},
            )
        try:
            raw = await without_connection(
                self.session,
                self.storage.get_bytes,
                layout.build_key(build.build_id, layout.METADATA),
            )
        except ObjectNotFound:  # expired, or removed: requesting the build again rebuilds it
            raise NotFound(
                "The build's files are no longer stored; request the build again",
                details={"build_id": build.build_id},
            ) from None
        metadata: dict[str, Any] = json.loads(raw)
        ttl = self.settings.signed_url_ttl_s

        def sign(name: str) -> str:
            return self.storage.get_signed_url(layout.build_key(build.build_id, name), ttl)

        return ManifestRead(
            build_id=build.build_id,
            project_id=build.project_id,
            platform=metadata["platform"],
            entry_file=metadata["entry_file"],
            environment=metadata["environment"],
            created_at=datetime.fromisoformat(metadata["created_at"]),
            bundle_url=sign(layout.BUNDLE),
            bundle_brotli_url=sign(layout.BUNDLE_BROTLI),
            bundle=metadata["bundle"],
            assets=[
                ManifestAsset(url=sign(f"{layout.ASSETS}/{asset['path']}"), **asset)
                for asset in metadata["assets"]
            ],
            toolchain=metadata["toolchain"],
            expires_in=ttl,
        )
