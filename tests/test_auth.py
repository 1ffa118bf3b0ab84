"""Client auth: tokens by hash, Basic and Bearer, scopes per prefix, the admin gate, real clients."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml

from artifact_vault.auth import credentials, hash_token, new_token, read_tokens_file
from artifact_vault.cli import main as cli_main
from artifact_vault.config import parse_config
from artifact_vault.errors import ConfigError

from .conftest import http_backend
from .pypi_index import Index, wheel
from .registry_fixtures import MANIFEST_ACCEPT, build_image, push, skopeo_copy
from .test_pypi_clients import new_venv, pip, versions

READ = new_token()
PYPI_ONLY = new_token()
ADMIN = new_token()


def tokens() -> dict:
    return {"tokens": [
        {"name": "ci", "hash": hash_token(READ), "scopes": ["read"]},
        {"name": "pypi-only", "hash": hash_token(PYPI_ONLY), "scopes": ["read"],
         "prefixes": ["/pypi/"]},
        {"name": "ops", "hash": hash_token(ADMIN), "scopes": ["admin"]}]}


@pytest.fixture
def guarded(upstream, make_vault):
    upstream.add("/a.txt", b"hello\n")
    return make_vault([http_backend(upstream.url)], auth=tokens())


def get(url: str, token: str | None = None, *, bearer: bool = False, **kw: object):
    headers = dict(kw.pop("headers", {}))  # type: ignore[arg-type]
    auth = None
    if token and bearer:
        headers["Authorization"] = f"Bearer {token}"
    elif token:
        auth = ("anyone", token)
    return requests.get(url, headers=headers, auth=auth, timeout=10, **kw)  # type: ignore[arg-type]


def test_auth_is_off_by_default(upstream, make_vault):
    upstream.add("/a.txt", b"hello\n")
    vault = make_vault([http_backend(upstream.url)])
    assert not vault.config.auth.enabled
    assert requests.get(f"{vault.url}/files/a.txt", timeout=10).content == b"hello\n"


def test_no_token_is_401_with_a_basic_challenge_and_no_upstream_request(guarded, upstream):
    resp = get(f"{guarded.url}/files/a.txt")
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"] == 'Basic realm="artifact-vault"'
    assert upstream.count("/a.txt") == 0


def test_an_unknown_path_says_401_not_which_prefixes_exist(guarded):
    resp = get(f"{guarded.url}/nothing/here")
    assert resp.status_code == 401 and "/files/" not in resp.text


def test_the_token_as_basic_password_with_any_username_or_as_bearer(guarded):
    assert get(f"{guarded.url}/files/a.txt", READ).content == b"hello\n"
    assert get(f"{guarded.url}/files/a.txt", READ, bearer=True).content == b"hello\n"
    assert requests.get(f"{guarded.url}/files/a.txt", auth=(READ, ""), timeout=10).ok  # curl -u T:


def test_a_wrong_token_is_401_and_logged_without_the_secret(guarded, caplog):
    wrong = new_token()
    with caplog.at_level(logging.WARNING, logger="artifact_vault.auth"):
        assert get(f"{guarded.url}/files/a.txt", wrong).status_code == 401
        assert get(f"{guarded.url}/files/a.txt", wrong, bearer=True).status_code == 401
    assert "rejected" in caplog.text and wrong not in caplog.text


def test_malformed_authorization_headers_are_401(guarded):
    for header in ("Basic !!!", "Basic " + "QQ==", "Digest x", "Bearer", "Basic"):
        resp = get(f"{guarded.url}/files/a.txt", headers={"Authorization": header})
        assert resp.status_code == 401, header


def test_a_read_token_limited_to_other_prefixes_is_403(guarded):
    resp = get(f"{guarded.url}/files/a.txt", PYPI_ONLY)
    assert resp.status_code == 403 and "pypi-only" in resp.text


def test_health_and_ready_stay_open_and_metrics_needs_a_token(guarded):
    assert get(f"{guarded.url}/health").status_code == 200
    assert get(f"{guarded.url}/ready").status_code == 200
    assert get(f"{guarded.url}/metrics").status_code == 401
    assert get(f"{guarded.url}/metrics", READ).status_code == 200


@pytest.mark.parametrize("path", ["/-/admin/stats", "/-/admin/purge", "/-/%61dmin/stats",
                                  "/-//admin/stats"])
def test_the_admin_prefix_needs_the_admin_scope(guarded, path):
    assert get(guarded.url + path).status_code == 401
    assert get(guarded.url + path, READ).status_code == 403
    # admin gets through: to the endpoint (GET stats 200, GET purge 405), or for the odd
    # spellings, to a 400/404
    assert get(guarded.url + path, ADMIN).status_code in (200, 400, 404, 405)


def test_the_catalog_needs_read_and_anonymous_users_see_only_the_public_status(guarded,
                                                                                 upstream):
    get(f"{guarded.url}/files/a.txt", READ)
    for path in ("/-/catalog", "/-/api/catalog", "/-/api/catalog?backend=files"):
        assert get(guarded.url + path).status_code == 401
        assert get(guarded.url + path, READ).status_code == 200
    assert get(guarded.url + "/", "not-a-token").status_code == 401
    assert get(guarded.url + "////").status_code == 401  # not "/": was a 500 (found by fuzz)
    for path in ("/", "/-/api/status"):
        public, full = get(guarded.url + path), get(guarded.url + path, READ)
        assert public.status_code == 200 and full.status_code == 200
        assert upstream.url.encode() in full.content
        for private in (b"a.txt", upstream.url.encode()):  # (Vault's own address is shown)
            assert private not in public.content, (path, private)


def test_the_clients_authorization_is_never_sent_upstream(guarded, upstream):
    get(f"{guarded.url}/files/a.txt", READ)
    get(f"{guarded.url}/files/a.txt?x", READ, bearer=True)
    sent = json.dumps(upstream.log)
    assert READ not in sent and "authorization" not in sent.lower()


def test_a_tokens_file_is_reread_so_create_and_revoke_need_no_restart(upstream, make_vault,
                                                                       tmp_path, capsys):
    upstream.add("/a.txt", b"hello\n")
    path = tmp_path / "tokens.yml"
    vault = make_vault([http_backend(upstream.url)], auth={"tokens_file": str(path)})
    assert get(f"{vault.url}/files/a.txt").status_code == 401
    cli_main(["token", "--tokens-file", str(path), "create", "--name", "ci"])
    token = capsys.readouterr().out.strip()
    assert get(f"{vault.url}/files/a.txt", token).status_code == 200
    assert token not in path.read_text() and hash_token(token) in path.read_text()
    cli_main(["token", "--tokens-file", str(path), "revoke", "ci"])
    assert get(f"{vault.url}/files/a.txt", token).status_code == 401


def test_token_cli_create_list_revoke(tmp_path):
    path = tmp_path / "t.yml"
    run = [sys.executable, "-m", "artifact_vault", "token", "--tokens-file", str(path)]
    made = subprocess.run([*run, "create", "--name", "ci", "--scope", "read", "--prefix", "/pypi/"],
                          capture_output=True, text=True, check=True)
    token = made.stdout.strip()
    assert token.startswith("av_") and len(token) > 40
    (spec,) = read_tokens_file(path)
    assert spec.hash == hash_token(token) and spec.prefixes == ("/pypi/",)
    assert (path.stat().st_mode & 0o077) == 0
    again = subprocess.run([*run, "create", "--name", "ci"], capture_output=True, text=True)
    assert again.returncode == 1 and "exists" in again.stderr
    listed = subprocess.run([*run, "list"], capture_output=True, text=True, check=True).stdout
    assert listed.startswith("ci\tread\t/pypi/") and token not in listed
    subprocess.run([*run, "revoke", "ci"], capture_output=True, check=True)
    assert read_tokens_file(path) == ()
    missing = subprocess.run([*run, "revoke", "ci"], capture_output=True, text=True)
    assert missing.returncode == 1


def test_token_cli_without_a_tokens_file_exits_2_with_one_line():
    env = {k: v for k, v in os.environ.items() if k != "ARTIFACT_VAULT_CONFIG"}
    result = subprocess.run([sys.executable, "-m", "artifact_vault", "token", "list"],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1


def test_token_cli_finds_the_config_through_the_environment_like_serve(tmp_path):
    """The container image sets $ARTIFACT_VAULT_CONFIG: ``token`` must use that config's
    tokens file, as ``serve`` uses that config, without --config."""
    tokens = tmp_path / "tokens.yml"
    config = tmp_path / "vault.yml"
    config.write_text(yaml.safe_dump({
        "backends": [http_backend("http://127.0.0.1:1")],
        "auth": {"tokens_file": str(tokens)}}))
    env = {**os.environ, "ARTIFACT_VAULT_CONFIG": str(config)}
    subprocess.run([sys.executable, "-m", "artifact_vault", "token", "create", "--name", "ci"],
                   capture_output=True, text=True, check=True, env=env)
    assert [spec.name for spec in read_tokens_file(tokens)] == ["ci"]


@pytest.mark.parametrize("auth, key", [
    ({"tokens": [{"name": "x", "hash": "plain-token"}]}, "config.auth.tokens[0].hash"),
    ({"tokens": [{"name": "x", "hash": hash_token("a"), "scopes": ["write"]}]}, "scopes"),
    ({"tokens": [{"name": "x", "hash": hash_token("a"), "prefixes": ["pypi"]}]}, "prefixes"),
    ({"tokens": [{"name": "x", "hash": hash_token("a")}, {"name": "x", "hash": hash_token("b")}]},
     "used twice"),
    ({"tokenz": []}, "did you mean 'tokens'"),
])
def test_bad_auth_config_names_the_key(auth, key):
    with pytest.raises(ConfigError) as err:
        parse_config({"backends": [http_backend("http://127.0.0.1:1")], "auth": auth}, env={})
    assert key in err.value.message


def test_a_bad_tokens_file_stops_start_up_with_exit_2(tmp_path, upstream):
    (tmp_path / "t.yml").write_text("tokens: [{name: x, hash: nope}]\n")
    config = tmp_path / "c.yml"
    config.write_text(json.dumps({"cache_dir": str(tmp_path / "c"), "auth": {
        "tokens_file": str(tmp_path / "t.yml")}, "backends": [http_backend(upstream.url)]}))
    result = subprocess.run([sys.executable, "-m", "artifact_vault", "--config", str(config)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "hash" in result.stderr


def test_credentials_parsing():
    import base64
    basic = "Basic " + base64.b64encode(b"u:tok").decode()
    assert credentials(basic) == ("u", "tok")
    assert credentials("bearer tok") == ("", "tok")
    assert credentials("Basic " + base64.b64encode(b"tok:").decode()) == ("", "tok")
    assert credentials("Basic " + base64.b64encode(b"nocolon").decode()) is None
    assert credentials("Basic \xff") is None


# -- real clients ---------------------------------------------------------------------------

def test_pip_installs_with_the_token_in_the_index_url(upstream, make_vault, tmp_path):
    Index(upstream, fmt="json").add(wheel("alpha", "1.0"))
    vault = make_vault([{"type": "pypi", "config": {
        "prefix": "/pypi/", "base_url": f"{upstream.url}/simple/", "retries": 0}}], auth=tokens())
    python = new_venv(tmp_path, "venv")
    port = vault.url.rsplit(":", 1)[1]
    pip(tmp_path, python, "install", "--index-url",
        f"http://ci:{PYPI_ONLY}@127.0.0.1:{port}/pypi/simple/", "alpha")
    assert versions(python, "alpha") == ["1.0"]
    refused = subprocess.run(
        [sys.executable, "-m", "pip", "--isolated", "--python", str(python), "download",
         "--no-cache-dir", "-d", str(tmp_path / "d"), "--index-url",
         f"http://127.0.0.1:{port}/pypi/simple/", "alpha"],
        capture_output=True, text=True, timeout=120, input="")
    assert refused.returncode != 0


def registry_backend(registry) -> dict:
    return {"type": "registry-v2", "config": {"prefix": "/hub/", "base_url": registry.url,
                                              "retries": 0}}


def test_skopeo_pulls_with_src_creds_and_fails_without(registry, make_vault, tmp_path):
    pushed = push(build_image(tmp_path / "img", "v1", [b"layer\n" * 100]), "team/app:v1", registry)
    vault = make_vault([registry_backend(registry)], auth=tokens())
    host = vault.url.removeprefix("http://")
    ok = skopeo_copy(f"{host}/hub/team/app:v1", tmp_path / "out", "--src-creds", f"ci:{READ}")
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "out" / "manifest.json").read_bytes() == pushed.manifest
    denied = skopeo_copy(f"{host}/hub/team/app:v1", tmp_path / "no", "--src-creds", "ci:wrong")
    assert denied.returncode != 0
    anonymous = skopeo_copy(f"{host}/hub/team/app:v1", tmp_path / "anon")
    assert anonymous.returncode != 0


def test_registry_401_and_403_are_oci_errors(registry, make_vault):
    vault = make_vault([registry_backend(registry)], auth=tokens())
    root = requests.get(f"{vault.url}/v2/", timeout=10)
    assert root.status_code == 401 and root.headers["WWW-Authenticate"].startswith("Basic ")
    assert root.json()["errors"][0]["code"] == "UNAUTHORIZED"
    assert root.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    assert requests.get(f"{vault.url}/v2/", auth=("u", READ), timeout=10).status_code == 200
    manifest = f"{vault.url}/v2/hub/team/app/manifests/v1"
    assert requests.get(manifest, timeout=10).json()["errors"][0]["code"] == "UNAUTHORIZED"
    denied = requests.get(manifest, auth=("u", PYPI_ONLY), timeout=10,
                          headers={"Accept": MANIFEST_ACCEPT})
    assert denied.status_code == 403 and denied.json()["errors"][0]["code"] == "DENIED"
    assert not registry.log  # nothing reached the upstream


def test_a_tokens_file_path_in_a_config_is_used_by_token_create(tmp_path, capsys):
    config = tmp_path / "c.yml"
    config.write_text(json.dumps({"auth": {"tokens_file": str(tmp_path / "t.yml")},
                                  "backends": [http_backend("http://127.0.0.1:1")]}))
    cli_main(["token", "--config", str(config), "create", "--name", "ci"])
    token = capsys.readouterr().out.strip()
    assert read_tokens_file(Path(tmp_path / "t.yml"))[0].hash == hash_token(token)
