from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.exceptions import RequestValidationError
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import ValidationError

from api.deps import AuthServiceDep, ClientIP
from services.auth.schemas import RegisterResponse, TokenResponse
from services.users.schemas import UserCreate, UserLogin, UserRead

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post("/register", status_code=201)
async def register(body: UserCreate, auth: AuthServiceDep, client_ip: ClientIP) -> RegisterResponse:
    user, token = await auth.register(body, client_ip)
    return RegisterResponse(
        access_token=token.token, expires_in=token.expires_in, user=UserRead.model_validate(user)
    )


@router.post("/login")
async def login(body: UserLogin, auth: AuthServiceDep, client_ip: ClientIP) -> TokenResponse:
    """Log in with a username or an email."""
    token = await auth.login(body.username, body.password, client_ip)
    return TokenResponse(access_token=token.token, expires_in=token.expires_in)


@router.post("/token")
async def token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    auth: AuthServiceDep,
    client_ip: ClientIP,
) -> TokenResponse:
    """The OAuth2 password flow (form fields), for the "Authorize" button of /docs."""
    try:
        credentials = UserLogin(username=form.username, password=form.password)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
        ) from None
    issued = await auth.login(credentials.username, credentials.password, client_ip)
    return TokenResponse(access_token=issued.token, expires_in=issued.expires_in)
