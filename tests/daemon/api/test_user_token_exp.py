"""A user token past its ``exp`` is refused with a clear sentence, whatever ``exp`` holds.

``exp`` comes from the caller (the daemon reads it unverified, fields.py), so
a forged one far outside ``time_t`` (-1e300, -1e400 which JSON reads as
-infinity) must still give the 400 "expired at ..." answer, not an exception
while wording it.
"""

from __future__ import annotations

import base64
import time

import pytest

from agentid_daemon.api.bodies import refuse_expired_user_token
from agentid_daemon.core.errors import InvalidRequest


def jwt_with_exp(exp_json: str) -> str:
    def part(text: str) -> str:
        return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()

    header, payload = part('{"alg": "RS256"}'), part('{"exp": ' + exp_json + "}")
    return f"{header}.{payload}.c2ln"


@pytest.mark.parametrize(
    ("exp_json", "said"),
    [
        ("0", "1970-01-01T00:00:00Z"),
        ("-1e300", "epoch -1e+300"),
        ("-1e400", "epoch -inf"),
    ],
)
def test_expired_exp_is_worded_whatever_its_size(exp_json: str, said: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        refuse_expired_user_token({"user_token": jwt_with_exp(exp_json)}, time.time())
    assert refused.value.description == f"the user token expired at {said} (its exp claim)"


def test_a_future_exp_passes() -> None:
    later = jwt_with_exp(str(int(time.time()) + 600))
    refuse_expired_user_token({"user_token": later}, time.time())
