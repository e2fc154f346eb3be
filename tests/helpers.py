"""Assertions shared by the test modules."""

import httpx


def assert_openai_error(resp: httpx.Response, status: int, code: str | None = None, param: str | None = None):
    """The reply is `status` with exactly OpenAI's error shape; returns the inner error."""
    assert resp.status_code == status, (resp.status_code, resp.text)
    body = resp.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code, body
    if param is not None:
        assert body["error"]["param"] == param, body
    return body["error"]
