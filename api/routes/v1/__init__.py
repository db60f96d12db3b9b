from fastapi import APIRouter

from api.routes.v1 import auth, docs, notifications, preview, projects, users

router = APIRouter(prefix="/api/v1")
router.include_router(auth.router)
router.include_router(users.router)
router.include_router(projects.router)
router.include_router(notifications.router)
router.include_router(preview.router)
router.include_router(docs.router)
