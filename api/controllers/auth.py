"""/auth: self-registration and password login."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Response, post
from litestar.exceptions import PermissionDeniedException

from api.authorization import authorize
from api.controllers.responses import written
from api.presenters import user_from_aggregate
from api.schemas import Login, One, RegisterUser, TokenPair
from api.services import Services


class AuthController(Controller):
    path = "/api/v1/auth"
    tags = ["auth"]
    guards = [authorize]

    @post("/register", sync_to_thread=True, status_code=201)
    def register(self, data: RegisterUser, services: Services) -> Response[Any]:
        if not services.allow_registration:
            raise PermissionDeniedException("self-registration is turned off")
        result = services.identity.register_user(
            username=data.username, email=data.email, password=data.password, full_name=data.full_name
        )
        user = user_from_aggregate(services.identity.get_user(result.id))
        return written(user, result, status=201, location=f"/api/v1/users/{result.id}")

    @post("/login", sync_to_thread=True, status_code=200)
    def login(self, data: Login, services: Services) -> Response[Any]:
        result = services.identity.authenticate(data.username, data.password)
        token = services.tokens.issue(result.id)
        pair = TokenPair(
            access_token=token,
            token_type="bearer",  # noqa: S106 (a token type, not a secret)
            expires_in=int(services.tokens.lifetime.total_seconds()),
        )
        return Response(One(data=pair), headers={"X-Event-Position": str(result.position)})
