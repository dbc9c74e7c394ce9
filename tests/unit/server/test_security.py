"""The local-server attacks, refused: DNS rebinding, cross-origin writes, missing token, XSS, CDNs."""

from __future__ import annotations

import re
from importlib.resources import files

import pytest
from fastapi.testclient import TestClient

from tests.helpers.server import BASE, PROMPT, TOKEN, XSS
from whyllm.server.app import ENDPOINTS
from whyllm.server.security import cookie_name, split_host

BODY = {"prompt": PROMPT, "top_k": 2}
STATIC = files("whyllm.server") / "static"


BAD_HOSTS = ["evil.example", "evil.example:8000", "127.0.0.1.nip.io", "localhost.evil.example",
             "192.168.1.5:8000", "", "[::2]:8000"]


@pytest.mark.parametrize("host", BAD_HOSTS)
def test_non_local_host_is_refused(app, host):
    with TestClient(app, base_url=BASE) as c:
        for method, path in [("get", "/"), ("get", "/static/app.js"), ("get", "/openapi.json"),
                             ("post", "/api/predict")]:
            r = c.request(method, path, headers={"host": host, "x-whyllm-token": TOKEN}, json=BODY)
            assert r.status_code == 400, (host, path)
            assert "DNS rebinding" in r.json()["detail"]


@pytest.mark.parametrize("host", ["localhost:8000", "127.0.0.1:8000", "[::1]:8000", "LOCALHOST", "127.0.0.1"])
def test_local_hosts_are_served(client, host):
    assert client.post("/api/predict", json=BODY, headers={"host": host}).status_code == 200


def test_allowed_hosts_extend_the_list(model):
    from whyllm.server import create_app

    app = create_app(model, token=TOKEN, allowed_hosts=["mybox.lan"])
    with TestClient(app, base_url="http://mybox.lan:8000", headers={"x-whyllm-token": TOKEN}) as c:
        assert c.post("/api/predict", json=BODY).status_code == 200
        assert c.post("/api/predict", json=BODY, headers={"host": "other.lan"}).status_code == 400


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "http://localhost:9999", "https://127.0.0.1:8001",
                                    "http://127.0.0.1:8000.evil.example"])
def test_cross_origin_post_is_403_even_with_the_token(client, origin):
    for name in ENDPOINTS:
        r = client.post(f"/api/{name}", json=BODY, headers={"origin": origin})
        assert r.status_code == 403, (name, origin)
        assert "cross-origin" in r.json()["detail"]


def test_cross_site_fetch_without_origin_is_403(client):
    r = client.post("/api/predict", json=BODY, headers={"sec-fetch-site": "cross-site"})
    assert r.status_code == 403


def test_same_origin_post_is_served(client):
    r = client.post("/api/predict", json=BODY, headers={"origin": BASE, "sec-fetch-site": "same-origin"})
    assert r.status_code == 200


def test_no_cors_headers_ever(client):
    r = client.options("/api/predict", headers={"origin": "http://evil.example",
                                                "access-control-request-method": "POST"})
    assert "access-control-allow-origin" not in r.headers
    r = client.get("/api/info", headers={"origin": "http://evil.example"})
    assert "access-control-allow-origin" not in r.headers


def test_missing_token_is_401_and_wrong_token_403(anon):
    for name in ENDPOINTS:
        assert anon.post(f"/api/{name}", json=BODY).status_code == 401
        assert anon.post(f"/api/{name}", json=BODY, headers={"x-whyllm-token": "nope"}).status_code == 403
    assert anon.get("/api/info").status_code == 401
    assert anon.get("/api/status").status_code == 401
    r = anon.post("/api/predict", json=BODY, headers={"x-whyllm-token": TOKEN[:-1]})
    assert r.status_code == 403 and "wrong token" in r.json()["detail"]


def test_index_needs_the_token_and_sets_a_strict_cookie(anon):
    assert anon.get("/").status_code == 401
    assert anon.get("/?token=wrong").status_code == 403
    r = anon.get(f"/?token={TOKEN}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{cookie_name('127.0.0.1:8000')}={TOKEN}")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    page = anon.get("/")  # the client kept the cookie
    assert page.status_code == 200 and "<title>whyllm explorer</title>" in page.text
    assert anon.post("/api/predict", json=BODY).status_code == 200  # same-origin use through the cookie
    anon.cookies.clear()
    assert anon.post("/api/predict", json=BODY).status_code == 401


def test_cookie_names_differ_by_port():
    assert cookie_name("127.0.0.1:8000") != cookie_name("localhost:8001")
    assert split_host("[::1]:8000") == ("::1", "8000")
    assert split_host("LocalHost") == ("localhost", None)


def test_security_headers_on_every_response(client, anon):
    answers = [client.get("/api/info"), anon.get("/"), client.get("/static/app.js"),
               anon.get("/static/app.css"), client.post("/api/predict", json={"prompt": ""}),
               anon.get("/openapi.json")]
    for r in answers:
        csp = r.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "no-referrer"
    assert client.get("/api/info").headers["cache-control"] == "no-store"


def test_no_request_field_names_a_file_or_model():
    for schema, _ in ENDPOINTS.values():
        assert schema.model_config["extra"] == "forbid"
        for name in schema.model_fields:
            assert not re.search(r"path|file|model|dir|url", name), (schema.__name__, name)


def test_xss_prompt_is_escaped_in_html_reports(client):
    requests = [("predict", {"prompt": XSS, "target": XSS[:30]}), ("lens", {"prompt": XSS}),
                ("generate", {"prompt": XSS, "seed": 0, "max_new_tokens": 3}),
                ("components", {"prompt": XSS}), ("explain", {"prompt": XSS, "method": "saliency"}),
                ("attention", {"prompt": XSS})]
    for name, body in requests:
        r = client.post(f"/api/{name}?format=html", json=body)
        assert r.status_code == 200, (name, r.text)
        html = r.text
        assert "<img" not in html and "<script" not in html.lower(), name
        assert "onerror=alert(1)" not in html.replace("onerror=alert(1)&gt;", ""), name
        assert "&lt;" in html, name  # shown, escaped (whole, or token by token)
        if name in ("predict", "generate", "lens"):
            assert "&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in html, name


def test_static_files_need_nothing_from_the_network():
    names = sorted(f.name for f in STATIC.iterdir() if f.name.endswith((".html", ".js", ".css")))
    assert {"index.html", "app.js", "circuit.js", "app.css"} <= set(names)
    text = "".join((STATIC / n).read_text(encoding="utf-8") for n in names)
    assert not re.findall(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, flags=re.I)
    assert "@import" not in text and "<script>" not in text  # no inline scripts: CSP forbids them


def test_the_page_never_inserts_html():
    js = "".join(f.read_text(encoding="utf-8") for f in STATIC.iterdir() if f.name.endswith(".js"))
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in js, sink
    assert 'setAttribute("style"' not in js  # CSP without unsafe-inline: styles via the CSSOM only


def test_default_bind_is_loopback():
    import inspect

    from whyllm.cli.serve import serve
    from whyllm.server.run import running
    from whyllm.server.run import serve as serve_fn

    for fn in (serve, running, serve_fn):
        assert inspect.signature(fn).parameters["host"].default == "127.0.0.1"
