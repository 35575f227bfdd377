"""The suite's helpers: the processes it runs (servers.py: redis-server, campus; nginx_proxy.py,
redis_topologies.py, nspawn.py: nginx, a Redis Cluster and Sentinel group, a systemd
container), campus in-process (apps.py), raw HTTP (rawhttp.py), log lines (logs.py), the
units (units.py), many IPv6 clients of one /64 in a network namespace (netns_ipv6.py), and what
each test needs and may start (needs.py, processes.py)."""
