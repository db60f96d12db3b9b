"""One preview build on a worker: sources from storage -> Metro -> bundle, assets and metadata
in storage. Called by the `build_preview` activity; everything it writes locally lives in a
workspace that is removed whatever happens."""

from __future__ import annotations

import asyncio
import errno
import gzip
import hashlib
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import brotli

from contracts.errors import ErrorCode
from contracts.previews import AssetInfo, BuildPhase, PreviewArtifacts, PreviewBuildInput
from core.clock import utc_now
from core.errors import PreviewError
from core.storage import ObjectNotFound, Storage, content_headers
from services.previews import layout
from services.previews.bundler import BundleResult, BundlerPool, Workspace, scrub_paths
from services.previews.sources import extract_archive

# Brotli 5 compresses a Metro bundle within a few % of level 11, in a fraction of the time.
# Writing the sources failed because of what they hold (a file where a directory must be, a name
# too long, ...): the sources' fault, final. Other OS errors (disk full, I/O) may pass.
_SOURCE_ERRNOS = frozenset(
    {errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.ENAMETOOLONG, errno.ELOOP, errno.EINVAL}
)
BROTLI_QUALITY = 5
GZIP_LEVEL = 9
UPLOAD_THREADS = 8


class WorkspaceError(Exception):
    """The worker's disk failed a build (disk full, I/O error, ...): maybe not the sources'
    fault, so retried. `client_message` names no path of the worker."""

    def __init__(self, cause: OSError, client_message: str) -> None:
        super().__init__(client_message)
        self.client_message = client_message
        self.cause = cause


@dataclass(frozen=True)
class Builder:
    storage: Storage
    bundler: BundlerPool
    toolchain_versions: dict[str, str]

    async def build(
        self, request: PreviewBuildInput, on_phase: Callable[[BuildPhase], None]
    ) -> PreviewArtifacts:
        async with self.bundler.workspace() as workspace:
            try:
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
            except OSError as exc:
                raise WorkspaceError(exc, self.client_text(str(exc), workspace)) from exc

    def client_text(self, text: str, workspace: Workspace | None = None) -> str:
        """`text` without this worker's paths (source paths made relative to the sources)."""
        return scrub_paths(text, self.bundler.server_paths(workspace))

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
        try:
            await asyncio.to_thread(extract_archive, archive, workspace.app_dir)
        except OSError as exc:
            if exc.errno not in _SOURCE_ERRNOS:
                raise
            where = self.client_text(str(exc.filename or ""), workspace)
            raise PreviewError(
                f"The sources cannot be unpacked: {where}: {exc.strerror}",
                code=ErrorCode.PREVIEW_INVALID_SOURCE,
                details={"path": where, "reason": exc.strerror},
            ) from None

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

        # Objects are private (Cache-Control: the storage's default). Assets that browsers
        # could run script from (SVG, HTML, ...) are stored as downloads.
        def put_asset(asset: AssetInfo) -> None:
            headers = content_headers(asset.path)
            self.storage.upload_file(
                layout.build_key(build_id, f"{layout.ASSETS}/{asset.path}"),
                workspace.assets_dir / asset.path,
                content_type=headers.content_type,
                content_disposition=headers.disposition,
            )

        with ThreadPoolExecutor(UPLOAD_THREADS) as uploads:
            list(uploads.map(put_asset, assets))  # list(): re-raise the first failure
        javascript = "application/javascript; charset=utf-8"
        self.storage.upload_bytes(
            layout.build_key(build_id, layout.BUNDLE),
            gzipped,
            content_type=javascript,
            content_encoding="gzip",
        )
        self.storage.upload_bytes(
            layout.build_key(build_id, layout.BUNDLE_BROTLI),
            brotli_bytes,
            content_type=javascript,
            content_encoding="br",
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
