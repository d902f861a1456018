"""/auth: self-registration and password login."""

from __future__ import annotations

from litestar import Controller, Response, post
from litestar.exceptions import PermissionDeniedException

from api.authorization import authorize
from api.controllers.responses import written
from api.presenters import user_from_aggregate
from api.rate_limit import login_subject
from api.schemas import Login, One, Refresh, RegisterUser, TokenPair, UserOut
from api.security import Principal
from api.services import Services
from domain.audit import current_audit_context
from eventstore.identity import SessionTokens

LOGIN_PROBLEMS = {
    401: "Wrong username or password, or the account is locked or inactive",
    429: "Too many login attempts from this client or for this account (Retry-After)",
}

REFRESH_PROBLEMS = {401: "The refresh token is not valid (unknown, used, expired or its session ended)"}


class AuthController(Controller):
    path = "/api/v1/auth"
    tags = ["auth"]
    guards = [authorize]

    @post("/register", status_code=201, opt={"problems": {403: "Self-registration is turned off"}})
    async def register(self, data: RegisterUser, services: Services) -> Response[One[UserOut]]:
        """Register yourself as a regular user (when self-registration is on)."""
        if not services.allow_registration:
            raise PermissionDeniedException("self-registration is turned off")
        return await services.with_password(_register, services, data)

    @post("/login", status_code=200, opt={"problems": LOGIN_PROBLEMS})
    async def login(self, data: Login, services: Services) -> Response[One[TokenPair]]:
        """Log in with a username (or e-mail address) and password: an access and a refresh token."""
        return await services.with_password(_log_in, services, data)

    @post("/refresh", sync_to_thread=True, status_code=200, opt={"problems": REFRESH_PROBLEMS})
    def refresh(self, data: Refresh, services: Services) -> Response[One[TokenPair]]:
        """Trade a refresh token for a new token pair (the old refresh token stops working)."""
        return _tokens(services, services.identity.refresh_session(data.refresh_token))

    @post("/logout", sync_to_thread=True, status_code=204, media_type="text/plain")
    def logout(self, services: Services, principal: Principal) -> Response[None]:
        """Ends the caller's login session (with an API key there is none: nothing to end)."""
        position = services.identity.head_position()
        if principal.credential_type == "access_token":
            position = services.identity.end_session(principal.credential_id).position
        return Response(
            None, status_code=204, headers={"X-Event-Position": str(position)}, media_type="text/plain"
        )


def _register(services: Services, data: RegisterUser) -> Response[One[UserOut]]:
    result = services.identity.register_user(
        username=data.username, email=data.email, password=data.password, full_name=data.full_name
    )
    user = user_from_aggregate(result.aggregate)
    return written(user, result, status=201, location=f"/api/v1/users/{result.id}")


def _log_in(services: Services, data: Login) -> Response[One[TokenPair]]:
    client = current_audit_context().ip_address or "unknown"
    services.login_limiter.check(f"ip:{client}", login_subject(services.identity, data.username))
    return _tokens(services, services.identity.log_in(data.username, data.password))


def _tokens(services: Services, session: SessionTokens) -> Response[One[TokenPair]]:
    pair = TokenPair(
        access_token=services.tokens.issue(session.user_id, session_id=session.session_id),
        token_type="bearer",  # noqa: S106 (a token type, not a secret)
        expires_in=int(services.tokens.lifetime.total_seconds()),
        refresh_token=session.refresh_token,
    )
    return Response(One(data=pair), headers={"X-Event-Position": str(session.result.position)})
