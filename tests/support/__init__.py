"""The suite's helpers: the processes it runs (redis-server, campus, nginx, a Redis Cluster
and Sentinel group, a systemd container), raw HTTP, waiting for a condition."""
