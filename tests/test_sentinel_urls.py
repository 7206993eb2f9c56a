"""sentinel:// URLs: what a user writes, what the clients and Celery get, and the errors for a malformed one.
(The failover itself, on real Sentinels, is test_sentinel.py.)"""

from __future__ import annotations

import ssl

import pytest

from devtools.processes import settings_for
from maoocr.errors import ConfigError
from maoocr.store.sentinel import SentinelTarget, is_sentinel_url, parse_sentinel_url
from workers.celery_app import create_celery_app


def test_a_full_url():
    target = parse_sentinel_url("sentinel://app:p%40ss@s1:26379,s2:26380,[::1]/2?master=mymaster"
                                "&sentinel_password=sp&sentinel_username=watch")
    assert target == SentinelTarget(sentinels=(("s1", 26379), ("s2", 26380), ("::1", 26379)), master="mymaster",
                                    db=2, username="app", password="p@ss", sentinel_username="watch",
                                    sentinel_password="sp")
    assert target.redis_options() == {"db": 2, "username": "app", "password": "p@ss"}
    assert target.sentinel_options()["password"] == "sp" and target.sentinel_options()["username"] == "watch"
    # Celery's form: one sentinel:// per Sentinel, joined by ';', the master's credentials on each.
    assert target.kombu_url() == ("sentinel://app:p%40ss@s1:26379/2;sentinel://app:p%40ss@s2:26380/2;"
                                  "sentinel://app:p%40ss@[::1]:26379/2")
    assert target.celery_transport_options()["master_name"] == "mymaster"


def test_the_shortest_url_and_plain_urls():
    target = parse_sentinel_url("sentinel://sentinel-host?master=m")
    assert target.sentinels == (("sentinel-host", 26379),) and target.db == 0 and target.password is None
    assert target.tls is None and target.celery_tls() is None
    assert "password" not in target.sentinel_options()
    assert is_sentinel_url("SENTINEL://h?master=m")
    assert not is_sentinel_url("redis://127.0.0.1:6379/0") and not is_sentinel_url("rediss://h:6380/0")


def test_tls_for_sentinels_and_master():
    target = parse_sentinel_url("sentinel://:pw@h1,h2/0?master=m&ssl=true&ssl_ca_certs=/etc/ca.pem")
    assert target.tls == {"ssl_ca_certs": "/etc/ca.pem", "ssl_cert_reqs": "required"}
    assert target.redis_options()["ssl"] is True and target.sentinel_options()["ssl"] is True
    assert target.celery_tls() == {"ssl_ca_certs": "/etc/ca.pem", "ssl_cert_reqs": ssl.CERT_REQUIRED}
    relaxed = parse_sentinel_url("sentinel://h?master=m&ssl=true&ssl_cert_reqs=none")
    assert relaxed.celery_tls()["ssl_cert_reqs"] == ssl.CERT_NONE


@pytest.mark.parametrize("url, reason", [
    ("sentinel://h1:26379,h2:26379/0", "name the master"),
    ("sentinel://h1:26379;sentinel://h2:26379/0?master=m", "separate the Sentinels with commas"),
    ("sentinel:///0?master=m", "no Sentinel hosts"),
    ("sentinel://:secret@/0?master=m", "no Sentinel hosts"),
    ("sentinel://h1:abc/0?master=m", "Sentinel port must be a number"),
    ("sentinel://h1:70000/0?master=m", "Sentinel port must be a number"),
    ("sentinel://h1,,h2/0?master=m", "empty Sentinel host"),
    ("sentinel://h1/db1?master=m", "database after the hosts must be a number"),
    ("sentinel://h1/0?master=m&mastr=x", "unknown option(s) mastr"),
    ("sentinel://h1/0?master=m&ssl=maybe", "ssl must be true or false"),
    ("sentinel://h1/0?master=m&ssl_ca_certs=/ca.pem", "ssl_ca_certs needs ssl=true"),
    ("sentinel://h1/0?master=m&ssl=true&ssl_cert_reqs=always", "ssl_cert_reqs must be one of"),
])
def test_malformed_urls_name_the_setting_and_the_mistake(url, reason):
    with pytest.raises(ConfigError) as caught:
        parse_sentinel_url(url)
    assert caught.value.message.startswith("redis_url: malformed sentinel:// URL: ")
    assert reason in caught.value.message
    assert "secret" not in caught.value.message


def test_settings_refuse_a_malformed_url_at_start_up_without_echoing_its_password(tmp_path):
    with pytest.raises(ConfigError) as caught:
        settings_for("sentinel://:secret@h1:26379,h2:x/0?master=m", tmp_path)
    assert "MAOOCR_REDIS_URL: redis_url:" in caught.value.message and "Sentinel port" in caught.value.message
    assert "secret" not in caught.value.message
    assert settings_for("sentinel://:secret@h1,h2/0?master=m", tmp_path).redis_url.startswith("sentinel://")


def test_celery_gets_its_own_form_of_the_url(tmp_path):
    app = create_celery_app(settings_for("sentinel://:pw@h1:26379,h2:26379/1?master=mymaster&sentinel_password=sp",
                                         tmp_path))
    assert app.conf.broker_url == "sentinel://:pw@h1:26379/1;sentinel://:pw@h2:26379/1"
    assert app.conf.result_backend == app.conf.broker_url
    assert app.conf.broker_transport == "workers.batched_intake:SentinelTransport"
    for options in (app.conf.broker_transport_options, app.conf.result_backend_transport_options):
        assert options["master_name"] == "mymaster" and options["sentinel_kwargs"]["password"] == "sp"
    assert app.conf.broker_transport_options["visibility_timeout"] > 0  # the usual options are kept
    plain = create_celery_app(settings_for("redis://127.0.0.1:6379/0", tmp_path))
    assert plain.conf.broker_url == "redis://127.0.0.1:6379/0" and "master_name" not in \
        plain.conf.broker_transport_options
