#!/usr/bin/env bash
# Start a throw-away Redis server on 127.0.0.1 for the shared per-key limit tests; prints its URL.
set -euo pipefail
if ! command -v redis-server >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  (apt-get update -qq && apt-get install -y -qq redis-server) >&2
fi
port=${REDIS_PORT_CI:-$(python3 -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")}
data=$(mktemp -d /tmp/barkserve-redis.XXXXXX)
# In memory only (no snapshots), forked into the background; --daemonize returns once it listens.
redis-server --bind 127.0.0.1 --port "$port" --dir "$data" --save "" --appendonly no \
  --daemonize yes --pidfile "$data/redis.pid" --logfile "$data/log" >&2
for _ in $(seq 100); do
  if redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -q PONG; then
    echo "redis://127.0.0.1:$port/0"
    exit 0
  fi
  sleep 0.1
done
echo "redis-server did not answer on port $port (log: $data/log)" >&2
exit 1
