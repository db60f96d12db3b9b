"""One preview build on a worker: sources from storage -> Metro -> bundle, assets and metadata
in storage. Called by the `build_preview` activity; everything it writes locally lives in a
workspace that is removed whatever happens."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import brotli

from contracts.errors import ErrorCode
from contracts.previews import AssetInfo, BuildPhase, PreviewArtifacts, PreviewBuildInput
from core.clock import utc_now
from core.errors import PreviewError
from core.storage import ObjectNotFound, Storage
from services.previews import layout
from services.previews.bundler import BundleResult, BundlerPool, Workspace
from services.previews.sources import extract_archive

# Brotli 5 compresses a Metro bundle within a few % of level 11, in a fraction of the time.
BROTLI_QUALITY = 5
GZIP_LEVEL = 9
UPLOAD_THREADS = 8
CACHE_FOREVER = "public, max-age=31536000, immutable"  # build ids name their contents


@dataclass(frozen=True)
class Builder:
    storage: Storage
    bundler: BundlerPool
    toolchain_versions: dict[str, str]

    async def build(
        self, request: PreviewBuildInput, on_phase: Callable[[BuildPhase], None]
    ) -> PreviewArtifacts:
        async with self.bundler.workspace() as workspace:
            await self._fetch_sources(request, workspace)
            on_phase(BuildPhase.BUNDLING)
            result = await self.bundler.bundle(
                workspace,
                entry_file=request.entry_file,
                platform=request.platform,
                production=request.environment == "production",
                timeout_s=request.timeout_ms / 1000,
            )
            on_phase(BuildPhase.UPLOADING)
            return await asyncio.to_thread(self._store, request, workspace, result)

    async def _fetch_sources(self, request: PreviewBuildInput, workspace: Workspace) -> None:
        try:
            archive = await asyncio.to_thread(
                self.storage.get_bytes, layout.source_key(request.source_hash)
            )
        except ObjectNotFound:
            raise PreviewError(
                "The build's sources are no longer stored; send them again",
                code=ErrorCode.PREVIEW_INVALID_SOURCE,
            ) from None
        await asyncio.to_thread(extract_archive, archive, workspace.app_dir)

    def _store(
        self, request: PreviewBuildInput, workspace: Workspace, result: BundleResult
    ) -> PreviewArtifacts:
        """Compress and upload (in a worker thread: boto3 and compression block)."""
        bundle = workspace.bundle_path.read_bytes()
        gzipped = gzip.compress(bundle, compresslevel=GZIP_LEVEL, mtime=0)
        brotli_bytes = brotli.compress(bundle, quality=BROTLI_QUALITY)
        assets = [
            AssetInfo(path=relative, size=len(data), sha256=hashlib.sha256(data).hexdigest())
            for relative in result.assets
            for data in [(workspace.assets_dir / relative).read_bytes()]
        ]
        build_id = request.build_id

        def put_asset(asset: AssetInfo) -> None:
            self.storage.upload_file(
                layout.build_key(build_id, f"{layout.ASSETS}/{asset.path}"),
                workspace.assets_dir / asset.path,
                content_type=_content_type(asset.path),
                cache_control=CACHE_FOREVER,
            )

        with ThreadPoolExecutor(UPLOAD_THREADS) as uploads:
            list(uploads.map(put_asset, assets))  # list(): re-raise the first failure
        javascript = "application/javascript; charset=utf-8"
        self.storage.upload_bytes(
            layout.build_key(build_id, layout.BUNDLE),
            gzipped,
            content_type=javascript,
            content_encoding="gzip",
            cache_control=CACHE_FOREVER,
        )
        self.storage.upload_bytes(
            layout.build_key(build_id, layout.BUNDLE_BROTLI),
            brotli_bytes,
            content_type=javascript,
            content_encoding="br",
            cache_control=CACHE_FOREVER,
        )
        artifacts = PreviewArtifacts(
            build_id=build_id,
            bundle_size=len(bundle),
            bundle_sha256=hashlib.sha256(bundle).hexdigest(),
            compressed_sizes={"gzip": len(gzipped), "br": len(brotli_bytes)},
            assets=assets,
            bundle_ms=result.duration_ms,
            storage_prefix=layout.build_prefix(build_id),
        )
        metadata = {
            "build_id": build_id,
            "project_id": str(request.project_id),
            "platform": request.platform,
            "entry_file": request.entry_file,
            "environment": request.environment,
            "created_at": utc_now().isoformat(),
            "bundle": {
                "path": layout.BUNDLE,
                "size": artifacts.bundle_size,
                "sha256": artifacts.bundle_sha256,
                "encodings": {"gzip": len(gzipped), "br": len(brotli_bytes)},
            },
            "assets": [asset.model_dump() for asset in assets],
            "toolchain": self.toolchain_versions,
        }
        # Written last: a build whose metadata exists is complete.
        self.storage.upload_bytes(
            layout.build_key(build_id, layout.METADATA),
            json.dumps(metadata, indent=2).encode(),
            content_type="application/json",
        )
        return artifacts


_CONTENT_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".svg": "image/svg+xml",
    ".ttf": "font/ttf",
    ".otf": "font/otf",
    ".json": "application/json",
    ".mp3": "audio/mpeg",
    ".mp4": "video/mp4",
}


def _content_type(path: str) -> str:
    return _CONTENT_TYPES.get(Path(path).suffix.lower(), "application/octet-stream")
