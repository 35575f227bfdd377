"""A real Prometheus (Debian's package) scrapes a running campus; the alert rules load and pass
their unit tests. Skipped, with one line saying why, where the package is not installed."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.servers import REPO, Campus, campus_env, free_port

RULES = REPO / "config" / "prometheus" / "alerts.yml"
RULE_TESTS = REPO / "config" / "prometheus" / "alerts.test.yml"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (Debian: apt-get install prometheus; .ci/run does)")
    return path


def test_promtool_checks_the_alert_rules() -> None:
    promtool = tool("promtool")
    checked = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert b"SUCCESS: 5 rules found" in checked.stdout
    tested = subprocess.run([promtool, "test", "rules", str(RULE_TESTS)], capture_output=True)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_the_example_scrape_config_is_valid() -> None:
    promtool = tool("promtool")
    config = REPO / "config" / "prometheus" / "prometheus.yml"
    checked = subprocess.run([promtool, "check", "config", str(config)], capture_output=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


class Prometheus:
    def __init__(self, directory: Path, target_port: int) -> None:
        self.port = free_port()
        config = directory / "prometheus.yml"
        shutil.copy(RULES, directory / "alerts.yml")
        config.write_text(
            json.dumps(  # JSON is YAML
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": ["alerts.yml"],
                    "scrape_configs": [
                        {
                            "job_name": "campus",
                            "static_configs": [{"targets": [f"127.0.0.1:{target_port}"]}],
                        }
                    ],
                }
            )
        )
        self.process = subprocess.Popen(
            [
                tool("prometheus"),
                f"--config.file={config}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def api(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?{query}"
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]

    def until(self, path: str, check: Any, timeout: float = 60, **params: str) -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(self.process.stderr.read().decode())  # type: ignore[union-attr]
            try:
                last = self.api(path, **params)
                if check(last):
                    return last
            except OSError:
                pass  # not listening yet
            time.sleep(0.5)
        raise AssertionError(f"{path} {params}: never satisfied; last answer {last}")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(20)


@pytest.fixture
def campus() -> Iterator[Campus]:
    server = Campus(campus_env())
    yield server
    server.stop()


def test_prometheus_scrapes_a_running_campus(campus: Campus, tmp_path: Path) -> None:
    prometheus = Prometheus(tmp_path, campus.port)
    stop = threading.Event()

    def traffic() -> None:  # a trickle of requests between scrapes, so rates are not zero
        while not stop.is_set():
            for path in ("/api/me", "/healthz", "/courses/7"):
                campus.request(path)
            time.sleep(0.05)

    worker = threading.Thread(target=traffic, daemon=True)
    worker.start()
    try:
        targets = prometheus.until(
            "targets", lambda d: [t for t in d["activeTargets"] if t["health"] == "up"]
        )
        assert targets["activeTargets"][0]["labels"]["job"] == "campus"
        counted = prometheus.until(
            "query",
            lambda d: d["result"],
            query='campus_http_requests_total{route="/api/me",status="401"}',
        )
        assert float(counted["result"][0]["value"][1]) > 0
        quantile = prometheus.until(
            "query",
            lambda d: d["result"] and d["result"][0]["value"][1] not in ("NaN", "+Inf"),
            query="histogram_quantile(0.99, sum by (le) "
            '(rate(campus_http_request_duration_seconds_bucket{route="/api/me"}[10s])))',
        )
        p99 = float(quantile["result"][0]["value"][1])
        assert 0 < p99 <= 2.0  # seconds, within the buckets
        rules = prometheus.api("rules")["groups"][0]["rules"]
        assert {r["name"] for r in rules} >= {"CampusStoreUnavailable", "CampusHigh5xxRate"}
        assert all(r["health"] == "ok" for r in rules), rules
    finally:
        stop.set()
        worker.join(10)
        prometheus.stop()


DASHBOARD = REPO / "config" / "grafana" / "campus.json"


def dashboard_queries() -> list[str]:
    """Every PromQL query of the Grafana dashboard, its Grafana variables filled in."""
    board = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for panel in board["panels"] for t in panel["targets"]]
    return [q.replace("$__rate_interval", "5m").replace("$instance", ".*") for q in queries]


def test_the_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    promtool = tool("promtool")
    queries = dashboard_queries()
    assert len(queries) >= 10
    records = [{"record": f"dashboard:q{n}", "expr": q} for n, q in enumerate(queries)]
    rules = {"groups": [{"name": "dashboard", "rules": records}]}
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(json.dumps(rules))
    checked = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_dashboard_only_names_metrics_campus_exports() -> None:
    import re

    from campus.observability.metrics import Metrics

    text = Metrics().exposition(None)[0].decode()
    exported = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1] != "#"}
    exported |= {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    exported |= {name + "_bucket" for name in exported}  # label-less histograms show no bucket
    used = {m for q in dashboard_queries() for m in re.findall(r"\bcampus_[a-z_]+", q)}
    assert used and used <= exported, used - exported
    board = json.loads(DASHBOARD.read_text())
    titles = " ".join(p["title"] for p in board["panels"]).lower()
    for topic in ("requests", "latency", "errors", "store", "logins"):
        assert topic in titles
