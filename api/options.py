"""OPTIONS answers with every method of the path.

Litestar answers OPTIONS itself, but when it merges a path's handlers into a new route it keeps
the OPTIONS handler of the route it replaces, whose ``Allow`` lists only that route's methods
(``GET, OPTIONS`` for a path that takes POST too). Each route's own OPTIONS handler is put back.
"""

from __future__ import annotations

from litestar.plugins import ReceiveRoutePlugin
from litestar.routes import BaseRoute, HTTPRoute

LITESTARS_OWN = "HTTPRoute.create_options_handler.<locals>.options_handler"


class CompleteAllow(ReceiveRoutePlugin):
    def receive_route(self, route: BaseRoute) -> None:
        if not isinstance(route, HTTPRoute) or "OPTIONS" not in route.route_handler_map:
            return
        handler, _ = route.route_handler_map["OPTIONS"]
        if getattr(handler.fn, "__qualname__", "") == LITESTARS_OWN:
            handler._fn = route.create_options_handler(route.path).fn  # Allow: this route's methods
