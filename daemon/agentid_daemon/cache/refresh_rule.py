"""When a cached token is refreshed ahead of its expiry: the rule alone.

Free of trio and of the cache's state, because two processes apply it: the
token cache (:func:`.schedule.refresh_at`, which draws the fraction at random
so that keys fetched together are not refreshed together) and an autostarted
daemon's engine host, which answers the first request before the cache exists
(``process/first_answer.py``) and pins that token's refresh at the earliest
point the rule allows, so the ``refresh_on`` it answers is the one the cache
then keeps.
"""

from __future__ import annotations

from ..core.models import AcquiredToken

#: A token is refreshed once this fraction of its lifetime (drawn in the range
#: per fetch) has passed, or earlier when the identity provider says so.
REFRESH_FRACTION = (2 / 3, 3 / 4)


def refresh_in(token: AcquiredToken, fraction: float) -> float:
    """Seconds from the token's request to its refresh-ahead: ``fraction`` of its
    lifetime, or the identity provider's ``refresh_in`` when that is sooner."""
    at = fraction * max(0.0, float(token.expires_in))
    if token.refresh_in is not None and token.refresh_in >= 0:
        at = min(at, float(token.refresh_in))
    return at


def earliest_refresh_in(token: AcquiredToken) -> float:
    """:func:`refresh_in` at the low end of :data:`REFRESH_FRACTION`: a token whose
    ``refresh_in`` is this is refreshed then by the cache, whatever fraction it draws."""
    return refresh_in(token, REFRESH_FRACTION[0])
